//! A second, private PostgreSQL that only speaks TLS on 127.0.0.1: `ssl = on`
//! with a server certificate (for `localhost` and 127.0.0.1) from a test CA
//! made with rcgen, and a `pg_hba.conf` of
//!
//! ```text
//! local   all all                    trust           (setup over the socket)
//! hostssl all certuser 127.0.0.1/32  cert            (client-certificate login)
//! hostssl all all      127.0.0.1/32  scram-sha-256
//! ```
//!
//! so a plain connection is refused and a password user must use TLS.
//! Made from the managed-cluster code ([`super::db::own_cluster`]) and
//! stopped when dropped.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use super::db::{own_cluster, OwnCluster};

/// The password user's name and password.
pub const USER: &str = "team";
pub const PASSWORD: &str = "s3cret-pw";
/// The database the password user owns.
pub const DATABASE: &str = "teamdb";
/// A user that logs in with a client certificate only.
pub const CERT_USER: &str = "certuser";

/// A running TLS-only server and the client-side files.
pub struct TlsPg {
    pub cluster: OwnCluster,
    pub port: u16,
    /// The CA that signed the server certificate (PEM).
    pub ca: PathBuf,
    /// A CA that did not sign it.
    pub wrong_ca: PathBuf,
    /// A client certificate and key for [`CERT_USER`], signed by the CA.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    _files: tempfile::TempDir,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("ca key");
    let cert = params.self_signed(&key).expect("ca cert");
    (cert, key)
}

fn leaf(names: &[&str], cn: &str, ca: &rcgen::Certificate, ca_key: &KeyPair) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| (*s).to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, ca, ca_key).expect("leaf cert");
    (cert.pem(), key.serialize_pem())
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Start the TLS-only server.
pub async fn start() -> TlsPg {
    let cluster = own_cluster().await;
    let port = super::engine::free_port();
    // Roles and the database first, over the trusted unix socket.
    let admin = super::db::with_dbname(&cluster.managed.url, "postgres");
    let c = ccproxy::store::connect(&admin).await.expect("admin");
    c.batch_execute(&format!(
        "CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}';
         CREATE ROLE {CERT_USER} LOGIN;"
    ))
    .await
    .expect("roles");
    c.batch_execute(&format!("CREATE DATABASE {DATABASE} OWNER {USER}"))
        .await
        .expect("database");
    drop(c);

    let (ca_cert, ca_key) = ca("ccproxy test PostgreSQL CA");
    let (wrong, _) = ca("some other CA");
    let (server_pem, server_key) =
        leaf(&["localhost", "127.0.0.1"], "localhost", &ca_cert, &ca_key);
    let (client_pem, client_key) = leaf(&[], CERT_USER, &ca_cert, &ca_key);

    // Server side: in the cluster directory, owned by the server user.
    let dir = &cluster.managed.cluster_dir;
    let owner = std::fs::metadata(dir).expect("cluster dir");
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        (owner.uid(), owner.gid())
    };
    let give = |p: &Path| {
        nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .expect("chown");
    };
    for (name, text, mode) in [
        ("server.crt", server_pem.as_str(), 0o644),
        ("server.key", server_key.as_str(), 0o600),
        ("root.crt", ca_cert.pem().as_str(), 0o644),
    ] {
        let p = dir.join(name);
        write(&p, text, mode);
        give(&p);
    }
    let data = &cluster.managed.data_dir;
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).expect("conf");
    let _ = write!(
        text,
        "\n# tests/common/tls_pg.rs\nlisten_addresses = '127.0.0.1'\nport = {port}\nssl = on\n\
         ssl_cert_file = '{d}/server.crt'\nssl_key_file = '{d}/server.key'\nssl_ca_file = '{d}/root.crt'\n\
         password_encryption = 'scram-sha-256'\n",
        d = dir.display()
    );
    std::fs::write(&conf, text).expect("conf");
    let hba = data.join("pg_hba.conf");
    std::fs::write(
        &hba,
        format!(
            "local   all all trust\n\
             hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n"
        ),
    )
    .expect("hba");
    give(&hba);
    let log = dir.join("server.log").display().to_string();
    cluster.pg_ctl(&["restart", "-s", "-w", "-m", "fast", "-l", &log]);

    // Client side.
    let files = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| files.path().join(n);
    write(&path("ca.pem"), &ca_cert.pem(), 0o644);
    write(&path("wrong-ca.pem"), &wrong.pem(), 0o644);
    write(&path("client.crt"), &client_pem, 0o644);
    write(&path("client.key"), &client_key, 0o600);
    TlsPg {
        port,
        ca: path("ca.pem"),
        wrong_ca: path("wrong-ca.pem"),
        client_cert: path("client.crt"),
        client_key: path("client.key"),
        cluster,
        _files: files,
    }
}

impl TlsPg {
    /// `postgres://team:…@127.0.0.1:PORT/teamdb?<params>` (host `127.0.0.1`).
    pub fn url(&self, params: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}?{params}",
            self.port
        )
    }

    /// The same without a password (for PGPASSWORD / pgpass).
    pub fn url_without_password(&self, params: &str) -> String {
        format!(
            "postgres://{USER}@127.0.0.1:{}/{DATABASE}?{params}",
            self.port
        )
    }

    /// A trusted superuser session over the unix socket, on the team database.
    pub fn admin_url(&self) -> String {
        super::db::with_dbname(&self.cluster.managed.url, DATABASE)
    }
}
