//! Opening a PostgreSQL session the way libpq would: the TLS options
//! tokio-postgres does not know (`sslmode=verify-ca|verify-full`,
//! `sslrootcert`, `sslcert`, `sslkey`), and the password from the URL,
//! `PGPASSWORD` or the pgpass file (`PGPASSFILE`, default `~/.pgpass`).
//!
//! The URL (or key=value string) is split here: the TLS keys are taken out
//! and turned into a rustls configuration, everything else goes to
//! tokio-postgres unchanged. The libpq environment variables `PGSSLMODE`,
//! `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY` fill what the URL leaves out.
//!
//! | sslmode | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | not checked |
//! | `require` | always | not checked (checked against `sslrootcert` when given, as libpq does) |
//! | `verify-ca` | always | signed by `sslrootcert` (or a system root) |
//! | `verify-full` | always | as verify-ca, and names the host |

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::tls::NoVerify;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::Client;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            ))
            }
        })
    }

    /// The name libpq uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// The TLS part of a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of CA certificates; `None` (or `system`) means the system roots.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: the client certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

/// A parsed connection string, ready to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// What tokio-postgres is given (TLS keys removed, password filled in).
    pub config: tokio_postgres::Config,
    pub tls: TlsOptions,
    /// `host:port` (or the socket directory) for messages.
    pub server: String,
    /// Where the password came from: `url`, `PGPASSWORD`, a pgpass path, or none.
    pub password_from: Option<String>,
    /// Something the user should know (a pgpass file with loose permissions).
    pub warnings: Vec<String>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("server", &self.server)
            .field("tls", &self.tls)
            .field("password_from", &self.password_from)
            .finish_non_exhaustive()
    }
}

/// Keys this module handles instead of tokio-postgres.
const TLS_KEYS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey", "passfile"];

/// Parse `url` (URL or key=value form) with the process environment.
pub fn parse(url: &str) -> Result<ConnectOptions, String> {
    parse_with(url, &|k| std::env::var(k).ok())
}

/// [`parse`] with an injected environment (tests pass a table).
pub fn parse_with(
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ConnectOptions, String> {
    let (rest, taken) = split_params(url)?;
    let get = |k: &str, var: &str| {
        taken
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| env(var).filter(|v| !v.is_empty()))
    };
    let mode = get("sslmode", "PGSSLMODE")
        .map(|m| SslMode::parse(&m))
        .transpose()?
        .unwrap_or_default();
    let path = |k: &str, var: &str| get(k, var).map(|p| expand_home(&p, env));
    let root_cert = path("sslrootcert", "PGSSLROOTCERT").filter(|p| p != Path::new("system"));
    let tls = TlsOptions {
        mode,
        root_cert,
        cert: path("sslcert", "PGSSLCERT"),
        key: path("sslkey", "PGSSLKEY"),
    };
    if tls.cert.is_some() != tls.key.is_some() {
        return Err("a client certificate needs both sslcert and sslkey".into());
    }
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| format!("bad database URL: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("ccproxy");
    }
    let unix = matches!(config.get_hosts().first(), Some(Host::Unix(_)));
    config.ssl_mode(match tls.mode {
        // No TLS over unix sockets (the server does not offer it there).
        _ if unix => PgSslMode::Disable,
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    let server = server_name(&config);
    let mut warnings = Vec::new();
    let password_from = if config.get_password().is_some() {
        Some("url".to_string())
    } else if let Some(pw) = env("PGPASSWORD").filter(|p| !p.is_empty()) {
        config.password(pw);
        Some("PGPASSWORD".to_string())
    } else {
        let file = get("passfile", "PGPASSFILE")
            .map(|p| expand_home(&p, env))
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")));
        match file.and_then(|f| pgpass_lookup(&f, &config, env, &mut warnings)) {
            Some((pw, file)) => {
                config.password(pw);
                Some(file.display().to_string())
            }
            None => None,
        }
    };
    Ok(ConnectOptions {
        config,
        tls,
        server,
        password_from,
        warnings,
    })
}

fn expand_home(p: &str, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match (p.strip_prefix("~/"), env("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

fn server_name(config: &tokio_postgres::Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(Host::Tcp(h)) => format!("{h}:{port}"),
        Some(Host::Unix(p)) => format!("{} (unix socket)", p.display()),
        None => match config.get_hostaddrs().first() {
            Some(a) => format!("{a}:{port}"),
            None => format!("localhost:{port}"),
        },
    }
}

/// Split the TLS keys out of a connection string; returns the rest and the taken keys.
fn split_params(url: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut taken = Vec::new();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), taken));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k)?;
            if TLS_KEYS.contains(&key.as_str()) {
                taken.push((key, percent_decode(v)?));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, taken));
    }
    let mut kept = Vec::new();
    for (k, v) in key_values(url)? {
        if TLS_KEYS.contains(&k.as_str()) {
            taken.push((k, v));
        } else {
            let quoted = v.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{k}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), taken))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in the database URL near `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the database URL is not UTF-8 after decoding".into())
}

/// libpq's `key=value key='quoted \' value'` form.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "bad connection string: `{key}` has no value (use key=value)"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(format!(
                            "bad connection string: unclosed quote after `{key}=`"
                        ))
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// The password for this host/port/database/user from a pgpass file, as libpq
/// reads it: `hostname:port:database:username:password`, `*` matches
/// anything, `\:` and `\\` escape; the first matching line wins. A file that
/// group or others can read is ignored with a warning (libpq does the same).
fn pgpass_lookup(
    file: &Path,
    config: &tokio_postgres::Config,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Option<(String, PathBuf)> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(file).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warnings.push(format!(
            "password file {} has group or world access and is ignored; chmod 0600 it",
            file.display()
        ));
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let hosts: Vec<String> = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => vec![h.clone()],
        Some(Host::Unix(p)) => vec!["localhost".into(), p.display().to_string()],
        None => vec!["localhost".into()],
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(|| env("USER"))
        .or_else(|| whoami::username().ok())
        .unwrap_or_default();
    let db = config
        .get_dbname()
        .map_or_else(|| user.clone(), str::to_string);
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = pgpass_fields(line);
        let [f_host, f_port, f_db, f_user, pw] = fields.as_slice() else {
            continue;
        };
        let fits = |pat: &str, v: &str| pat == "*" || pat == v;
        if hosts.iter().any(|x| fits(f_host, x))
            && fits(f_port, &port)
            && fits(f_db, &db)
            && fits(f_user, &user)
        {
            return Some((pw.clone(), file.to_path_buf()));
        }
    }
    None
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

/// Open a session with these options; the connection task runs in the
/// background until the client is dropped. Errors are one line that says
/// what to change.
pub async fn connect_with(opts: &ConnectOptions) -> Result<Client, String> {
    for w in &opts.warnings {
        tracing::warn!("{w}");
    }
    let result = if opts.config.get_ssl_mode() == PgSslMode::Disable {
        opts.config
            .connect(tokio_postgres::NoTls)
            .await
            .map(|(c, conn)| (c, spawn(conn)))
    } else {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_config(&opts.tls)?);
        opts.config
            .connect(tls)
            .await
            .map(|(c, conn)| (c, spawn(conn)))
    };
    match result {
        Ok((client, ())) => Ok(client),
        Err(e) => Err(explain(&e, opts)),
    }
}

fn spawn<F>(conn: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "database connection ended");
        }
    });
}

/// The rustls client configuration for these TLS options.
pub fn rustls_config(tls: &TlsOptions) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    // libpq: `require` with a root certificate file behaves like `verify-ca`.
    let mode = match tls.mode {
        SslMode::Require if tls.root_cert.is_some() => SslMode::VerifyCa,
        m => m,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(roots(tls.root_cert.as_deref())?);
            let inner = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            if mode == SslMode::VerifyFull {
                inner
            } else {
                Arc::new(AnyName(inner))
            }
        }
        _ => Arc::new(NoVerify(provider)),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let (certs, key) = client_identity(cert, key)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                format!("sslcert/sslkey: {e}; check that the key belongs to the certificate")
            })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn roots(file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let Some(path) = file else {
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if roots.is_empty() {
            return Err("no system root certificates found: set sslrootcert to the CA file that signed the server's certificate".into());
        }
        return Ok(roots);
    };
    let bad = |what: String| {
        format!(
            "sslrootcert {}: {what}; point sslrootcert at the PEM file of the CA that signed the server's certificate",
            path.display()
        )
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(roots)
}

fn client_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let read =
        |p: &Path, what: &str| std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()));
    let pem = read(cert, "sslcert")?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslcert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("sslcert {}: no certificate in it", cert.display()));
    }
    let pem = read(key, "sslkey")?;
    let key_der = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("sslkey {}: {e}", key.display()))?
        .ok_or_else(|| format!("sslkey {}: no private key in it", key.display()))?;
    Ok((certs, key_der))
}

/// One line for a failed connection, naming the fix where the cause is known.
fn explain(e: &tokio_postgres::Error, opts: &ConnectOptions) -> String {
    let server = &opts.server;
    if let Some(db) = e.as_db_error() {
        let hint = match db.code().code() {
            "28000" if db.message().contains("no encryption") => {
                "; the server accepts only TLS: add sslmode=verify-full (or require) to database_url"
            }
            "28P01" => "; check the password (URL, PGPASSWORD or ~/.pgpass)",
            _ => "",
        };
        return format!("{server}: {} ({}){hint}", db.message(), db.code().code());
    }
    if let Some(tls) = find_rustls_error(e) {
        let roots = opts.tls.root_cert.as_ref().map_or_else(
            || "the system roots".to_string(),
            |p| p.display().to_string(),
        );
        return match tls {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => format!(
                "TLS to {server}: the server's certificate is not signed by a CA in {roots}; \
                 set sslrootcert to the CA file that signed it"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "TLS to {server}: the server's certificate does not name this host; connect with a \
                 host name it lists, or use sslmode=verify-ca"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => format!("TLS to {server}: the server's certificate has expired; renew it on the server"),
            rustls::Error::AlertReceived(alert) => format!(
                "TLS to {server}: the server refused the handshake ({alert:?}); if it wants a client \
                 certificate, set sslcert and sslkey"
            ),
            other => format!(
                "TLS to {server}: handshake failed ({other}); check sslmode and sslrootcert"
            ),
        };
    }
    let text = super::describe(e);
    if text.contains("server does not support TLS") {
        return format!(
            "{server}: the server does not accept TLS; turn on ssl on the server or use sslmode=prefer"
        );
    }
    format!("{server}: {text}")
}

fn find_rustls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(t);
            }
        }
        cur = err.source();
    }
    None
}

/// How a connected session is secured, as the server reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Security {
    /// The server ccproxy talks to (`host:port` or the socket directory).
    pub server: String,
    /// Whether the session is encrypted.
    pub tls: bool,
    /// `TLSv1.3 TLS_AES_256_GCM_SHA384` when encrypted.
    pub tls_version: Option<String>,
    /// The sslmode in force.
    pub sslmode: String,
}

/// Ask the server whether this session uses TLS (`pg_stat_ssl`).
pub async fn security(client: &Client, opts: &ConnectOptions) -> Security {
    let row = client
        .query_opt(
            "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .ok()
        .flatten();
    let (tls, version) = match row {
        Some(r) => {
            let ssl: bool = r.get(0);
            let v: Option<String> = r.get(1);
            let c: Option<String> = r.get(2);
            (
                ssl,
                ssl.then(|| format!("{} {}", v.unwrap_or_default(), c.unwrap_or_default())),
            )
        }
        None => (false, None),
    };
    Security {
        server: opts.server.clone(),
        tls,
        tls_version: version,
        sslmode: opts.tls.mode.as_str().to_string(),
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn tls_keys_are_taken_out_of_urls_and_key_value_strings() {
        let o = parse_with(
            "postgres://u:pw@db.example:6432/traces?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
            &env(&[]),
        )
        .expect("parse");
        assert_eq!(o.tls.mode, SslMode::VerifyFull);
        assert_eq!(o.tls.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(o.config.get_ssl_mode(), PgSslMode::Require);
        assert_eq!(o.config.get_application_name(), Some("x"));
        assert_eq!(o.server, "db.example:6432");
        assert_eq!(o.password_from.as_deref(), Some("url"));

        let o = parse_with(
            "host=127.0.0.1 port=5433 user=u dbname='my db' sslmode=verify-ca sslcert=/c.pem sslkey='/k.pem'",
            &env(&[]),
        )
        .expect("parse");
        assert_eq!(o.tls.mode, SslMode::VerifyCa);
        assert_eq!(o.tls.key.as_deref(), Some(Path::new("/k.pem")));
        assert_eq!(o.config.get_dbname(), Some("my db"));
        assert_eq!(o.server, "127.0.0.1:5433");
        assert!(o.password_from.is_none());
    }

    #[test]
    fn the_environment_fills_what_the_url_leaves_out() {
        let vars = [
            ("PGSSLMODE", "require"),
            ("PGSSLROOTCERT", "system"),
            ("PGPASSWORD", "from-env"),
        ];
        let o = parse_with("postgres://u@h/db", &env(&vars)).expect("parse");
        assert_eq!(o.tls.mode, SslMode::Require);
        assert_eq!(o.tls.root_cert, None, "system means the system roots");
        assert_eq!(o.password_from.as_deref(), Some("PGPASSWORD"));
        let o = parse_with("postgres://u@h/db?sslmode=disable", &env(&vars)).expect("parse");
        assert_eq!(o.tls.mode, SslMode::Disable, "the URL wins");
        assert_eq!(o.config.get_ssl_mode(), PgSslMode::Disable);
        assert!(parse_with("postgres://u@h/db?sslmode=bogus", &env(&[]))
            .expect_err("bad mode")
            .contains("verify-full"));
        assert!(parse_with("postgres://u@h/db?sslcert=/c", &env(&[]))
            .expect_err("cert without key")
            .contains("sslkey"));
    }

    #[test]
    fn pgpass_matches_like_libpq_and_loose_permissions_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:u:nope\nh:5432:db:u:first\\:pw\n*:*:*:*:fallback\n",
        )
        .expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let f = file.display().to_string();
        let vars = [("PGPASSFILE", f.as_str())];
        let o = parse_with("postgres://u@h/db", &env(&vars)).expect("parse");
        assert_eq!(o.config.get_password(), Some(&b"first:pw"[..]));
        assert_eq!(o.password_from.as_deref(), Some(f.as_str()));
        let o = parse_with("postgres://x@elsewhere:1/y", &env(&vars)).expect("parse");
        assert_eq!(o.config.get_password(), Some(&b"fallback"[..]));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let o = parse_with("postgres://u@h/db", &env(&vars)).expect("parse");
        assert!(o.config.get_password().is_none());
        assert!(o.warnings[0].contains("0600"), "{:?}", o.warnings);
    }

    #[test]
    fn unix_sockets_never_try_tls() {
        let o = parse_with(
            "postgresql:///ccproxy?host=/tmp/pg&user=postgres&sslmode=require",
            &env(&[]),
        )
        .expect("parse");
        assert_eq!(o.config.get_ssl_mode(), PgSslMode::Disable);
        assert_eq!(o.server, "/tmp/pg (unix socket)");
    }
}
