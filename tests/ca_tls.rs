//! Leaf certificates in real TLS handshakes on loopback: they chain to the CA
//! (for rustls and for curl/OpenSSL), name the host (DNS or IP), negotiate
//! h2 or http/1.1, are cached per host; an enterprise CA from `cert_dir`
//! made by the openssl CLI signs them the same way.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use ccproxy::config::{Config, Overrides};
use ccproxy::proxy::ca::{CaError, CertAuthority};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

fn config(home: &Path) -> Config {
    Config::load_with(
        &Overrides {
            home: Some(home.to_path_buf()),
            ..Overrides::default()
        },
        &|_| None,
    )
    .expect("config")
}

/// A TLS server on 127.0.0.1:0 that picks its certificate by SNI (falling
/// back to "127.0.0.1", as the proxy falls back to the CONNECT host) and
/// answers every request with `200 ok` over HTTP/1.1.
async fn serve(ca: Arc<CertAuthority>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let ca = Arc::clone(&ca);
            tokio::spawn(async move {
                let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
                let Ok(start) = acceptor.await else { return };
                let host = start
                    .client_hello()
                    .server_name()
                    .unwrap_or("127.0.0.1")
                    .to_string();
                let Ok(config) = ca.server_config(&host) else {
                    return;
                };
                let Ok(mut tls) = start.into_stream(config).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn client(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> TlsConnector {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).expect("root");
    }
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(store)
            .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(cfg))
}

/// Handshake as a client expecting `name`; the negotiated ALPN and the leaf.
async fn handshake(
    port: u16,
    connector: &TlsConnector,
    name: &str,
) -> Result<(Option<Vec<u8>>, CertificateDer<'static>), std::io::Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let server_name = ServerName::try_from(name.to_string()).expect("server name");
    let tls = connector.connect(server_name, tcp).await?;
    let (_, conn) = tls.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .expect("peer certificate");
    Ok((conn.alpn_protocol().map(<[u8]>::to_vec), leaf))
}

async fn curl(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "10", "--noproxy", "*"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run curl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn openssl_text(der: &[u8], dir: &Path) -> String {
    let path = dir.join("leaf.der");
    std::fs::write(&path, der).expect("write leaf");
    let out = tokio::process::Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .await
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn leaf_chains_to_the_ca_for_names_and_ips() {
    let home = tempfile::tempdir().expect("tempdir");
    let ca = CertAuthority::load_or_create(&config(home.path())).expect("ca");
    let port = serve(Arc::clone(&ca)).await;
    let roots = [ca.cert_der()];

    // DNS name, h2 preferred.
    let (alpn, leaf) = handshake(port, &client(&roots, &[b"h2", b"http/1.1"]), "localhost")
        .await
        .expect("handshake localhost");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    // http/1.1 only.
    let (alpn, _) = handshake(port, &client(&roots, &[b"http/1.1"]), "localhost")
        .await
        .expect("handshake http/1.1");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    // IP address: no SNI is sent, the fallback host gets an IP SAN.
    handshake(port, &client(&roots, &[]), "127.0.0.1")
        .await
        .expect("handshake by IP");

    // The leaf is ECDSA P-256, a server certificate for the host, not a CA.
    let text = openssl_text(&leaf, home.path()).await;
    for needle in [
        "id-ecPublicKey",
        "prime256v1",
        "DNS:localhost",
        "TLS Web Server Authentication",
        "CA:FALSE",
        "ecdsa-with-SHA256",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(text.contains("Issuer: CN = ccproxy CA"), "{text}");
}

#[tokio::test]
async fn leaf_is_refused_without_the_ca_or_for_another_name() {
    let home = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    let ca = CertAuthority::load_or_create(&config(home.path())).expect("ca");
    let stranger = CertAuthority::load_or_create(&config(other.path())).expect("ca");
    let port = serve(Arc::clone(&ca)).await;

    // Trusting a different CA: refused.
    let err = handshake(port, &client(&[stranger.cert_der()], &[]), "localhost")
        .await
        .expect_err("untrusted CA");
    assert!(
        err.to_string().to_lowercase().contains("unknownissuer"),
        "{err}"
    );

    // A leaf for one host does not pass for another.
    let config = ca.server_config("a.test").expect("leaf");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await;
        }
    });
    let err = handshake(port, &client(&[ca.cert_der()], &[]), "b.test")
        .await
        .expect_err("wrong name");
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn curl_trusts_the_leaf_through_ca_pem_and_bundle() {
    let home = tempfile::tempdir().expect("tempdir");
    let ca = CertAuthority::load_or_create(&config(home.path())).expect("ca");
    let port = serve(Arc::clone(&ca)).await;
    let ca_pem = ca.cert_path().to_string_lossy().into_owned();
    let bundle = ca.bundle_path().to_string_lossy().into_owned();

    for (cafile, url) in [
        (&ca_pem, format!("https://localhost:{port}/")),
        (&bundle, format!("https://localhost:{port}/")),
        (&ca_pem, format!("https://127.0.0.1:{port}/")),
    ] {
        let (ok, out) = curl(&["--cacert", cafile, &url]).await;
        assert!(ok, "curl --cacert {cafile} {url}: {out}");
        assert_eq!(out, "ok");
    }
    // Without our CA, curl refuses.
    let empty = home.path().join("empty.pem");
    std::fs::write(&empty, ca_pem_of_stranger().await).expect("write");
    let (ok, out) = curl(&[
        "--cacert",
        &empty.to_string_lossy(),
        &format!("https://localhost:{port}/"),
    ])
    .await;
    assert!(!ok, "curl accepted an untrusted leaf: {out}");
}

async fn ca_pem_of_stranger() -> String {
    let other = tempfile::tempdir().expect("tempdir");
    CertAuthority::load_or_create(&config(other.path()))
        .expect("ca")
        .cert_pem()
        .to_string()
}

#[tokio::test]
async fn leaves_are_cached_per_host() {
    let home = tempfile::tempdir().expect("tempdir");
    let ca = CertAuthority::load_or_create(&config(home.path())).expect("ca");
    let a1 = ca.server_config("api.anthropic.com").expect("leaf");
    let a2 = ca.server_config("API.Anthropic.com.").expect("leaf");
    let b = ca.server_config("api.openai.com").expect("leaf");
    assert!(Arc::ptr_eq(&a1, &a2), "same host must hit the cache");
    assert!(!Arc::ptr_eq(&a1, &b));
    assert_eq!(ca.cached_leaves(), 2);
    assert_eq!(
        a1.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    // IPv6 literals get an IP SAN; bracketed and bare share an entry.
    let v6 = ca.server_config("[::1]").expect("leaf");
    assert!(Arc::ptr_eq(&v6, &ca.server_config("::1").expect("leaf")));
    // Concurrent first use of one host builds one config.
    let host = "concurrent.test";
    let configs: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| ca.server_config(host))).collect();
        hs.into_iter()
            .map(|h| h.join().expect("thread").expect("leaf"))
            .collect()
    });
    assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])));
    // A name that cannot be in a certificate is an error, not a panic.
    let err = ca.server_config("").expect_err("empty host");
    assert!(matches!(err, CaError::Leaf { .. }), "{err}");
}

/// Make an enterprise CA with the openssl CLI in `dir`.
async fn openssl_ca(dir: &Path, key_args: &[&str]) {
    let status = tokio::process::Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "30", "-newkey"])
        .args(key_args)
        .args(["-subj", "/C=US/O=Example Corp/CN=Example Corp Root CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .arg("-keyout")
        .arg(dir.join("ca-key.pem"))
        .arg("-out")
        .arg(dir.join("ca.pem"))
        .stderr(Stdio::null())
        .status()
        .await
        .expect("run openssl");
    assert!(status.success());
}

#[tokio::test]
async fn enterprise_ca_from_cert_dir_signs_leaves() {
    for key_args in [
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        &["rsa:2048"][..],
    ] {
        let home = tempfile::tempdir().expect("tempdir");
        let certs = tempfile::tempdir().expect("tempdir");
        openssl_ca(certs.path(), key_args).await;
        let mut cfg = config(home.path());
        cfg.mitm.cert_dir = Some(certs.path().to_path_buf());

        let ca = CertAuthority::load_or_create(&cfg).expect("enterprise ca");
        assert_eq!(ca.cert_path(), certs.path().join("ca.pem"));
        let original = std::fs::read_to_string(certs.path().join("ca.pem")).expect("ca.pem");
        assert_eq!(ca.cert_pem(), original, "{key_args:?}");
        assert!(std::fs::read_to_string(ca.bundle_path())
            .expect("bundle")
            .ends_with(&original));
        // ccproxy did not create its own CA next to it.
        assert!(!home.path().join("ca/ca.pem").exists());

        let port = serve(Arc::clone(&ca)).await;
        handshake(port, &client(&[ca.cert_der()], &[]), "localhost")
            .await
            .expect("rustls trusts the enterprise-signed leaf");
        let (ok, out) = curl(&[
            "--cacert",
            &certs.path().join("ca.pem").to_string_lossy(),
            &format!("https://localhost:{port}/"),
        ])
        .await;
        assert!(ok, "curl with {key_args:?}: {out}");
    }
}

#[tokio::test]
async fn enterprise_ca_problems_are_explained() {
    let home = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(home.path());
    cfg.mitm.cert_dir = Some(certs.path().to_path_buf());

    let err = CertAuthority::load_or_create(&cfg).expect_err("empty cert_dir");
    assert!(
        matches!(err, CaError::MissingEnterpriseCa { file: "ca.pem", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("remove cert_dir"), "{err}");
    // Nothing was generated into the enterprise directory.
    assert!(!certs.path().join("ca.pem").exists());

    openssl_ca(certs.path(), &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]).await;
    std::fs::remove_file(certs.path().join("ca-key.pem")).expect("rm");
    let err = CertAuthority::load_or_create(&cfg).expect_err("no key");
    assert!(
        matches!(
            err,
            CaError::MissingEnterpriseCa {
                file: "ca-key.pem",
                ..
            }
        ),
        "{err}"
    );

    // A SEC1 "EC PRIVATE KEY" gets a conversion hint.
    let status = tokio::process::Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(certs.path().join("ca-key.pem"))
        .status()
        .await
        .expect("openssl ecparam");
    assert!(status.success());
    let err = CertAuthority::load_or_create(&cfg).expect_err("sec1 key");
    assert!(matches!(err, CaError::BadKey { .. }), "{err}");
    assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
}
