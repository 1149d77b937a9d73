//! The certificate authority and the per-host leaf certificate cache.
//!
//! TLS interception needs a CA the client trusts: ccproxy creates one on first
//! use in `<home>/ca/` (or loads an enterprise CA from `cert_dir`) and signs a
//! leaf certificate for every host a client connects to. Leaves are ECDSA
//! P-256, valid for [`LEAF_VALIDITY_DAYS`], and their `ServerConfig`s are
//! cached (bounded, TTL well inside the validity) so a host costs one key
//! generation and one signature per day at most.
//!
//! Creation is atomic: the files are written into a fresh temporary directory
//! that is renamed into place, so two processes starting at once both end up
//! with the same, complete CA.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{Datelike, Utc};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::capture::host::normalize as normalize_host;
use crate::config::Config;
pub use crate::home::CaFiles;
use crate::home::Home;

/// Midnight UTC of `t`'s day, in rcgen's time type.
macro_rules! day {
    ($t:expr) => {{
        let t: chrono::DateTime<Utc> = $t;
        rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
    }};
}

/// The CA certificate file in the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key file in the CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// System roots plus our CA, for tools that take one bundle file.
pub const BUNDLE_FILE: &str = "bundle.pem";
/// How long a leaf certificate is valid.
pub const LEAF_VALIDITY_DAYS: i64 = 30;
/// How long a leaf stays in the cache (well inside its validity).
pub const LEAF_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// How many hosts keep a cached leaf at once.
pub const LEAF_CACHE_CAPACITY: u64 = 4096;
/// How long a CA created by ccproxy is valid.
const CA_VALIDITY_DAYS: i64 = 3650;
/// Where Debian-family systems keep the system roots, used when the native
/// loader finds nothing.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Errors creating or loading the CA or issuing a leaf; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {path}: {source}; check its permissions, or use another --home")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// `cert_dir` is set but does not hold the CA files.
    #[error("cert_dir {dir} has no {file}: put the CA certificate there as ca.pem and its unencrypted PKCS#8 key as ca-key.pem, or remove cert_dir from the config to let ccproxy create its own CA")]
    MissingEnterpriseCa { dir: PathBuf, file: &'static str },
    /// The CA directory holds only part of a CA.
    #[error("{dir} holds {present} but not {missing}: restore the missing file, or move the directory away so ccproxy creates a new CA (clients must then trust the new one)")]
    Incomplete {
        dir: PathBuf,
        present: &'static str,
        missing: &'static str,
    },
    /// The certificate file is not a usable CA certificate.
    #[error("{path} is not a usable CA certificate ({reason}): replace it, or move its directory away so ccproxy creates a new CA")]
    BadCert { path: PathBuf, reason: String },
    /// The key file cannot be used for signing.
    #[error("{path} is not a usable CA key ({reason}): it must be an unencrypted PKCS#8 \"PRIVATE KEY\" (ECDSA P-256/P-384, RSA or Ed25519); convert with `openssl pkcs8 -topk8 -nocrypt -in KEY -out {path}`")]
    BadKey { path: PathBuf, reason: String },
    /// The key does not belong to the certificate.
    #[error("{key} does not match {cert}: put the key that signed this certificate there, or move the directory away so ccproxy creates a new CA")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// The CA certificate is past its validity.
    #[error("the CA certificate {path} expired: move its directory away so ccproxy creates a new CA, then trust the new one (`ccproxy ca`)")]
    Expired { path: PathBuf },
    /// Generating the CA itself failed.
    #[error("cannot generate the CA certificate: {0}")]
    Generate(#[source] rcgen::Error),
    /// A leaf certificate could not be issued for this host.
    #[error("cannot issue a certificate for {host:?}: {reason}")]
    Leaf { host: String, reason: String },
    /// Building the TLS configuration failed.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// Find the files of the CA an engine in this home uses, without loading or
/// creating anything (for `ccproxy run`, whose engine already made them):
/// the bundle is the first candidate that ends with our certificate.
pub fn locate(cfg: &Config) -> CaFiles {
    let home = Home::new(cfg);
    let dir = home.ca_dir().to_path_buf();
    let cert = dir.join(CA_CERT_FILE);
    let candidates = bundle_candidates(&home, cfg.mitm.cert_dir.is_some());
    let ca_pem = fs::read_to_string(&cert).unwrap_or_default();
    let bundle = candidates
        .iter()
        .find(|p| !ca_pem.is_empty() && fs::read_to_string(p).is_ok_and(|b| b.ends_with(&ca_pem)))
        .or_else(|| candidates.iter().find(|p| p.is_file()))
        .unwrap_or(&candidates[0])
        .clone();
    CaFiles { dir, cert, bundle }
}

/// How to trust the CA, as data: `(where, command)` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// The certificate and bundle paths.
    pub files: CaFiles,
    /// System-wide trust, per platform.
    pub system: Vec<(&'static str, String)>,
    /// Per-process trust, per runtime.
    pub per_process: Vec<(&'static str, String)>,
}

/// Where the bundle may go: beside the CA, and for an enterprise `cert_dir`
/// (which may be read-only) `<home>/ca/` as the fallback.
fn bundle_candidates(home: &Home, enterprise: bool) -> Vec<PathBuf> {
    let mut candidates = vec![home.ca_dir().join(BUNDLE_FILE)];
    if enterprise {
        candidates.push(home.own_ca_dir().join(BUNDLE_FILE));
    }
    candidates
}

/// Our CA: signs a leaf certificate per intercepted host and serves the
/// matching TLS configuration from a cache.
pub struct CertAuthority {
    dir: PathBuf,
    bundle: PathBuf,
    cert_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Certificate,
    key: KeyPair,
    /// Seconds since the epoch after which the CA is no longer valid.
    ca_not_after: i64,
    provider: Arc<CryptoProvider>,
    leaves: moka::sync::Cache<String, Arc<ServerConfig>>,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("dir", &self.dir)
            .field("cached_leaves", &self.leaves.entry_count())
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Load the CA from [`Home::ca_dir`], creating it there on first use (unless
    /// `cert_dir` names an enterprise CA, which must exist). Also makes sure
    /// `bundle.pem` exists.
    pub fn load_or_create(cfg: &Config) -> Result<Arc<Self>, CaError> {
        let home = Home::new(cfg);
        let dir = home.ca_dir().to_path_buf();
        let enterprise = cfg.mitm.cert_dir.is_some();
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {}
            (false, _) if enterprise => {
                return Err(CaError::MissingEnterpriseCa {
                    dir,
                    file: CA_CERT_FILE,
                })
            }
            (true, false) if enterprise => {
                return Err(CaError::MissingEnterpriseCa {
                    dir,
                    file: CA_KEY_FILE,
                })
            }
            (false, false) => create_ca_dir(&dir)?,
            (true, false) => {
                return Err(CaError::Incomplete {
                    dir,
                    present: CA_CERT_FILE,
                    missing: CA_KEY_FILE,
                })
            }
            (false, true) => {
                return Err(CaError::Incomplete {
                    dir,
                    present: CA_KEY_FILE,
                    missing: CA_CERT_FILE,
                })
            }
        }
        let ca = Self::load(&dir, &cert_path, &key_path)?;
        let bundle = ensure_bundle(&bundle_candidates(&home, enterprise), &ca.cert_pem)?;
        Ok(Arc::new(Self { bundle, ..ca }))
    }

    fn load(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let cert_pem = read_text(cert_path)?;
        let key_pem = read_text(key_path)?;
        warn_if_key_readable(key_path);

        let bad_cert = |reason: String| CaError::BadCert {
            path: cert_path.to_path_buf(),
            reason,
        };
        let ca_der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .ok_or_else(|| bad_cert("no CERTIFICATE block".into()))?
            .map_err(|e| bad_cert(e.to_string()))?;
        let params =
            CertificateParams::from_ca_cert_der(&ca_der).map_err(|e| bad_cert(e.to_string()))?;
        if !matches!(params.is_ca, IsCa::Ca(_)) {
            return Err(bad_cert(
                "it is not a CA certificate (basicConstraints CA:FALSE or missing)".into(),
            ));
        }
        let ca_not_after = params.not_after.unix_timestamp();
        if ca_not_after <= Utc::now().timestamp() {
            return Err(CaError::Expired {
                path: cert_path.to_path_buf(),
            });
        }

        let bad_key = |reason: String| CaError::BadKey {
            path: key_path.to_path_buf(),
            reason,
        };
        let key_der = match rustls_pemfile::private_key(&mut key_pem.as_bytes()) {
            Ok(Some(PrivateKeyDer::Pkcs8(der))) => der,
            Ok(Some(PrivateKeyDer::Sec1(_))) => {
                return Err(bad_key("it is a SEC1 \"EC PRIVATE KEY\"".into()))
            }
            Ok(Some(PrivateKeyDer::Pkcs1(_))) => {
                return Err(bad_key("it is a PKCS#1 \"RSA PRIVATE KEY\"".into()))
            }
            Ok(Some(_)) => return Err(bad_key("unsupported key format".into())),
            Ok(None) => return Err(bad_key("no PRIVATE KEY block (is it encrypted?)".into())),
            Err(e) => return Err(bad_key(e.to_string())),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        match CertifiedKey::from_der(
            vec![ca_der.clone()],
            PrivateKeyDer::Pkcs8(key_der.clone_key()),
            &provider,
        ) {
            Ok(_) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(CaError::KeyMismatch {
                    cert: cert_path.to_path_buf(),
                    key: key_path.to_path_buf(),
                })
            }
            Err(e) => return Err(bad_key(e.to_string())),
        }
        let key =
            KeyPair::try_from(key_der.secret_pkcs8_der()).map_err(|e| bad_key(e.to_string()))?;
        // The issuer's name and key identifier come from the parsed
        // certificate, byte for byte; the re-signed copy is only a carrier.
        let issuer = params
            .self_signed(&key)
            .map_err(|e| bad_cert(e.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            bundle: dir.join(BUNDLE_FILE),
            cert_pem: pem_block_text(&ca_der),
            ca_der,
            issuer,
            key,
            ca_not_after,
            provider,
            leaves: moka::sync::Cache::builder()
                .max_capacity(LEAF_CACHE_CAPACITY)
                .time_to_live(LEAF_CACHE_TTL)
                .build(),
        })
    }

    /// The TLS configuration to accept an intercepted connection for `host`
    /// (the SNI name, or the CONNECT host when there is none): a leaf
    /// certificate for that DNS name or IP address, ALPN `h2` and `http/1.1`.
    /// Built once per host and cached; concurrent first calls build it once.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let key = normalize_host(host);
        self.leaves
            .try_get_with_by_ref(&key, || self.build_server_config(&key))
            .map_err(|e| match Arc::try_unwrap(e) {
                Ok(e) => e,
                Err(shared) => CaError::Leaf {
                    host: key.clone(),
                    reason: shared.to_string(),
                },
            })
    }

    fn build_server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let leaf_err = |reason: String| CaError::Leaf {
            host: host.to_string(),
            reason,
        };
        if host.is_empty() {
            return Err(leaf_err("empty host name".into()));
        }
        let mut params =
            CertificateParams::new(vec![host.to_string()]).map_err(|e| leaf_err(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, host);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "ccproxy");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = Utc::now();
        params.not_before = day!(now - chrono::Duration::days(1));
        let not_after = (now + chrono::Duration::days(LEAF_VALIDITY_DAYS))
            .min(chrono::DateTime::from_timestamp(self.ca_not_after, 0).unwrap_or(now));
        params.not_after = day!(not_after);
        let leaf_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| leaf_err(e.to_string()))?;
        let leaf = params
            .signed_by(&leaf_key, &self.issuer, &self.key)
            .map_err(|e| leaf_err(e.to_string()))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key_der)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// `<ca_dir>/ca.pem`: what clients must trust.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// The bundle of system roots plus our CA (`<ca_dir>/bundle.pem`; for a
    /// read-only `cert_dir`, `<home>/ca/bundle.pem`), for `SSL_CERT_FILE`,
    /// `REQUESTS_CA_BUNDLE` and `CURL_CA_BUNDLE`.
    pub fn bundle_path(&self) -> PathBuf {
        self.bundle.clone()
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER (for trust stores built in-process, e.g. tests).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// Where its files are: what clients trust and the bundle they load.
    pub fn files(&self) -> CaFiles {
        CaFiles {
            dir: self.dir.clone(),
            cert: self.cert_path(),
            bundle: self.bundle_path(),
        }
    }

    /// Where the CA is and how to trust it, as data for `ccproxy ca` to show.
    pub fn trust(&self) -> Trust {
        let files = self.files();
        let cert = files.cert.display().to_string();
        let bundle = files.bundle.display().to_string();
        Trust {
            system: vec![
                ("Debian/Ubuntu", format!("sudo cp {cert} /usr/local/share/ca-certificates/ccproxy.crt && sudo update-ca-certificates")),
                ("macOS", format!("sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {cert}")),
            ],
            per_process: vec![
                ("Node.js", format!("export NODE_EXTRA_CA_CERTS={cert}")),
                ("Python, curl, others", format!("export SSL_CERT_FILE={bundle} REQUESTS_CA_BUNDLE={bundle} CURL_CA_BUNDLE={bundle}")),
            ],
            files,
        }
    }

    /// How many hosts have a cached leaf right now.
    pub fn cached_leaves(&self) -> u64 {
        self.leaves.run_pending_tasks();
        self.leaves.entry_count()
    }
}

/// Write a new CA into a temporary directory beside `dir` and rename it into
/// place. When another process won the race, its CA is kept and ours dropped.
fn create_ca_dir(dir: &Path) -> Result<(), CaError> {
    let parent = dir.parent().unwrap_or_else(|| Path::new("."));
    // Only the CA directory itself is private; <home> keeps the usual mode
    // (the managed database's user may need to enter it).
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(|source| CaError::Io {
            action: "create",
            path: parent.to_path_buf(),
            source,
        })?;
    let tmp = parent.join(format!(
        ".ca-tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = write_new_ca(&tmp).and_then(|()| match fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Someone else created it first (ENOTEMPTY / EEXIST): use theirs.
        Err(_) if dir.join(CA_CERT_FILE).exists() && dir.join(CA_KEY_FILE).exists() => Ok(()),
        Err(source) => Err(CaError::Io {
            action: "move the new CA into",
            path: dir.to_path_buf(),
            source,
        }),
    });
    if tmp.exists() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn write_new_ca(tmp: &Path) -> Result<(), CaError> {
    DirBuilder::new()
        .mode(0o700)
        .create(tmp)
        .map_err(|source| CaError::Io {
            action: "create",
            path: tmp.to_path_buf(),
            source,
        })?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Generate)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    // A per-installation suffix: two ccproxy CAs in one trust store must not
    // share a name, or path building tries the wrong one.
    let id = uuid::Uuid::new_v4().simple().to_string();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("ccproxy CA {}", &id[..8]));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ccproxy");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = Utc::now();
    params.not_before = day!(now - chrono::Duration::days(1));
    params.not_after = day!(now + chrono::Duration::days(CA_VALIDITY_DAYS));
    let cert = params.self_signed(&key).map_err(CaError::Generate)?;
    // The key file is created 0600 from the start, never widened.
    write_file(
        &tmp.join(CA_KEY_FILE),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&tmp.join(CA_CERT_FILE), cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// Create `path` (it must not exist) with `mode`, write and sync it.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    // The umask may have narrowed a public file; a public file may be widened.
    if mode & 0o044 != 0 {
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io)?;
    }
    f.sync_all().map_err(io)
}

/// Write `path` atomically: a temporary file beside it, renamed over it.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = write_file(&tmp, data, mode).and_then(|()| {
        fs::rename(&tmp, path).map_err(|source| CaError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Make sure a bundle (system roots + our CA) exists and ends with our CA;
/// returns its path: the first of `candidates` that holds it or can be
/// written (for an enterprise `cert_dir` that is not writable,
/// `<home>/ca/bundle.pem`).
fn ensure_bundle(candidates: &[PathBuf], ca_pem: &str) -> Result<PathBuf, CaError> {
    for path in candidates {
        if fs::read_to_string(path).is_ok_and(|b| b.ends_with(ca_pem)) {
            return Ok(path.clone());
        }
    }
    let bundle = build_bundle(ca_pem);
    let mut last_err = None;
    for path in candidates {
        let path = path.clone();
        if let Some(parent) = path.parent() {
            let _ = DirBuilder::new().recursive(true).mode(0o700).create(parent);
        }
        match write_atomic(&path, bundle.as_bytes(), 0o644) {
            Ok(()) => return Ok(path),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or(CaError::Io {
        action: "write",
        path: candidates.first().cloned().unwrap_or_default(),
        source: std::io::Error::other("no place for the bundle"),
    }))
}

/// System roots (deduplicated, without our CA) followed by our CA.
fn build_bundle(ca_pem: &str) -> String {
    let ours: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut ca_pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    let mut roots = rustls_native_certs::load_native_certs().certs;
    if roots.is_empty() {
        if let Ok(text) = fs::read(SYSTEM_BUNDLE) {
            roots = rustls_pemfile::certs(&mut text.as_slice())
                .filter_map(Result::ok)
                .collect();
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = String::new();
    for der in &roots {
        if ours.iter().any(|o| o.as_ref() == der.as_ref()) || !seen.insert(der.as_ref().to_vec()) {
            continue;
        }
        out.push_str(&pem_block_text(der));
    }
    out.push_str(ca_pem);
    out
}

/// One `CERTIFICATE` PEM block, 64 columns, ending in a newline.
fn pem_block_text(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    s.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(line));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

fn read_text(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

fn warn_if_key_readable(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the CA key is readable by other users: chmod 600 it"
            );
        }
    }
}
