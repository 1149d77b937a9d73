//! The CA on disk: files and modes, persistence, concurrent first use by
//! threads and by real `ccproxy` processes, broken directories, `ccproxy ca`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use ccproxy::config::{Config, Overrides};
use ccproxy::home;
use ccproxy::proxy::ca::{CaError, CertAuthority};

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

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn pem_count(text: &str) -> usize {
    text.matches("-----BEGIN CERTIFICATE-----").count()
}

#[test]
fn first_use_creates_files_with_modes() {
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = config(home.path());
    let ca = CertAuthority::load_or_create(&cfg).expect("ca");
    let dir = home.path().join("ca");

    assert_eq!(ca.cert_path(), dir.join("ca.pem"));
    assert_eq!(ca.bundle_path(), dir.join("bundle.pem"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&dir.join("bundle.pem")), 0o644);

    let on_disk = fs::read_to_string(dir.join("ca.pem")).expect("ca.pem");
    assert_eq!(on_disk, ca.cert_pem());
    assert_eq!(pem_count(&on_disk), 1);
    let key = fs::read_to_string(dir.join("ca-key.pem")).expect("key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");

    // The bundle is the system roots followed by ours.
    let bundle = fs::read_to_string(dir.join("bundle.pem")).expect("bundle");
    assert!(bundle.ends_with(ca.cert_pem()));
    let system = fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    if pem_count(&system) > 0 {
        assert!(
            pem_count(&bundle) > 1,
            "system roots missing from the bundle"
        );
    }

    // Nothing temporary is left behind.
    let leftovers: Vec<_> = fs::read_dir(home.path())
        .expect("read_dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn second_use_loads_the_same_ca() {
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = config(home.path());
    let first = CertAuthority::load_or_create(&cfg).expect("ca");
    let second = CertAuthority::load_or_create(&cfg).expect("ca");
    assert_eq!(first.cert_pem(), second.cert_pem());
    // A deleted bundle is rebuilt from the existing CA.
    fs::remove_file(first.bundle_path()).expect("rm bundle");
    let third = CertAuthority::load_or_create(&cfg).expect("ca");
    assert_eq!(third.cert_pem(), first.cert_pem());
    let bundle = fs::read_to_string(third.bundle_path()).expect("bundle");
    assert!(bundle.ends_with(first.cert_pem()));
}

#[test]
fn concurrent_first_use_by_threads_agrees() {
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = config(home.path());
    let pems: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| CertAuthority::load_or_create(&cfg).map(|ca| ca.cert_pem().to_string()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("ca"))
            .collect()
    });
    let on_disk = fs::read_to_string(home.path().join("ca/ca.pem")).expect("ca.pem");
    for pem in &pems {
        assert_eq!(pem, &on_disk);
    }
    // The key on disk belongs to the certificate on disk.
    CertAuthority::load_or_create(&cfg).expect("consistent CA");
}

#[test]
fn concurrent_first_use_by_processes_agrees() {
    let home = tempfile::tempdir().expect("tempdir");
    // Spawn them all before waiting on any, so their first use overlaps.
    let spawned: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_ccproxy"))
                .arg("--home")
                .arg(home.path())
                .args(["ca", "--pem"])
                .env_remove("CCPROXY_HOME")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn ccproxy")
        })
        .collect();
    let outputs: Vec<_> = spawned
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let on_disk = fs::read_to_string(home.path().join("ca/ca.pem")).expect("ca.pem");
    for out in outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), on_disk);
    }
    let cfg = config(home.path());
    CertAuthority::load_or_create(&cfg).expect("consistent CA");
}

#[test]
fn ca_command_says_where_and_how_to_trust() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_ccproxy"))
        .arg("--home")
        .arg(home.path())
        .arg("ca")
        .env_remove("CCPROXY_HOME")
        .output()
        .expect("run ccproxy ca");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let cert = home.path().join("ca/ca.pem");
    let bundle = home.path().join("ca/bundle.pem");
    for needle in [
        cert.to_string_lossy().as_ref(),
        bundle.to_string_lossy().as_ref(),
        "update-ca-certificates",
        "security add-trusted-cert",
        "NODE_EXTRA_CA_CERTS=",
        "SSL_CERT_FILE=",
        "ccproxy run",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn incomplete_directory_is_an_error_that_says_what_to_do() {
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = config(home.path());
    let ca = CertAuthority::load_or_create(&cfg).expect("ca");
    fs::remove_file(home.path().join("ca/ca-key.pem")).expect("rm key");
    let err = CertAuthority::load_or_create(&cfg).expect_err("no key");
    assert!(matches!(err, CaError::Incomplete { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("ca-key.pem") && msg.contains("move the directory away"),
        "{msg}"
    );
    // The certificate was not replaced behind the user's back.
    assert_eq!(
        fs::read_to_string(ca.cert_path()).expect("ca.pem"),
        ca.cert_pem()
    );
}

#[test]
fn foreign_key_is_rejected() {
    let home = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    CertAuthority::load_or_create(&config(home.path())).expect("ca");
    CertAuthority::load_or_create(&config(other.path())).expect("ca");
    fs::copy(
        other.path().join("ca/ca-key.pem"),
        home.path().join("ca/ca-key.pem"),
    )
    .expect("swap key");
    let err = CertAuthority::load_or_create(&config(home.path())).expect_err("mismatch");
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
}

#[test]
fn garbage_certificate_is_rejected() {
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = config(home.path());
    CertAuthority::load_or_create(&cfg).expect("ca");
    fs::write(home.path().join("ca/ca.pem"), "not a certificate\n").expect("write");
    let err = CertAuthority::load_or_create(&cfg).expect_err("garbage");
    assert!(matches!(err, CaError::BadCert { .. }), "{err}");
}

/// A read-only enterprise `cert_dir`: the CA writes its bundle under
/// `<home>/ca/`, and the variables `ccproxy run` and the gateway child get
/// name that file, which exists and ends with the CA.
#[test]
fn read_only_cert_dir_routes_clients_to_the_bundle_that_exists() {
    let home_dir = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    let maker = tempfile::tempdir().expect("tempdir");
    CertAuthority::load_or_create(&config(maker.path())).expect("make a CA");
    for f in ["ca.pem", "ca-key.pem"] {
        fs::copy(maker.path().join("ca").join(f), certs.path().join(f)).expect("copy");
    }
    // Unwritable even for root: `bundle.pem` there is a directory a file cannot replace.
    fs::create_dir(certs.path().join("bundle.pem")).expect("mkdir");
    fs::set_permissions(certs.path(), fs::Permissions::from_mode(0o555)).expect("chmod");

    let mut cfg = config(home_dir.path());
    cfg.mitm.cert_dir = Some(certs.path().to_path_buf());
    let ca = CertAuthority::load_or_create(&cfg).expect("enterprise ca");
    assert_eq!(ca.bundle_path(), home_dir.path().join("ca/bundle.pem"));
    assert_eq!(ca.cert_path(), certs.path().join("ca.pem"));
    // `ccproxy run` finds the same files without loading the CA.
    assert_eq!(ccproxy::proxy::ca::locate(&cfg), ca.files());

    let forward = "127.0.0.1:8081".parse().expect("addr");
    let run_env = home::client_env(forward, None, &ccproxy::proxy::ca::locate(&cfg), &|_| None);
    let gateway_env = home::routing_env(forward, &ca.files());
    for env in [&run_env, &gateway_env] {
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map_or_else(|| panic!("{k} is set"), |(_, v)| v.clone())
        };
        for k in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
            let path = get(k);
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{k}={path}: {e}"));
            assert!(text.ends_with(ca.cert_pem()), "{k}={path} ends with the CA");
            assert!(pem_count(&text) >= 1);
        }
        let node = get("NODE_EXTRA_CA_CERTS");
        assert_eq!(
            fs::read_to_string(&node).expect("ca.pem"),
            ca.cert_pem(),
            "NODE_EXTRA_CA_CERTS={node} is the CA itself"
        );
    }
    fs::set_permissions(certs.path(), fs::Permissions::from_mode(0o755)).expect("chmod back");
}
