//! Configuration: `<home>/ccproxy.yaml`, environment and flags merged in one place.
//!
//! Precedence is flag > environment > file > default. A missing file means
//! defaults; an unknown key, a wrong type or a bad value is an error that names
//! the key and the line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Errors loading the configuration; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown key, a wrong type or a bad value.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// An environment variable or flag holds a bad value.
    #[error("{name}: {message}")]
    Override { name: String, message: String },
    /// No home directory could be determined.
    #[error("cannot find a home directory: set --home or CCPROXY_HOME")]
    NoHome,
}

/// The fully merged configuration the engine runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// State directory (`--home`, `CCPROXY_HOME`, `~/.ccproxy`).
    pub home: PathBuf,
    /// The configuration file that was read (it may not exist).
    pub config_path: PathBuf,
    /// `ccproxy.mitm`: capture settings.
    pub mitm: MitmConfig,
    /// `ccproxy.upstream`: base URL for direct mode (no gateway).
    pub upstream: Option<String>,
    /// `ccproxy.litellm`: how to start the gateway.
    pub gateway: GatewayConfig,
    /// Top-level `litellm`: where the reverse listener binds (port 4000).
    pub litellm: ListenConfig,
    /// `ccproxy.identity`: who this machine's rows are recorded as.
    pub identity: IdentityConfig,
    /// `ccproxy.prices`: a price table file replacing the bundled `assets/prices.json`.
    pub prices: Option<PathBuf>,
    /// `ccproxy.otel` (the `OTEL_EXPORTER_OTLP_*` variables win): where spans go; `None` = no export.
    pub otel: Option<OtelConfig>,
}

/// `ccproxy.otel`: OTLP/HTTP span export of every completed LLM exchange.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OtelConfig {
    /// Base URL of the collector (`/v1/traces` is added), or the full traces URL.
    pub endpoint: String,
    /// `http/protobuf` (default) or `http/json`.
    pub protocol: OtelProtocol,
    /// Extra request headers (e.g. an API key of the tracing backend).
    pub headers: Vec<(String, String)>,
    /// Attach prompts and answers (`gen_ai.input.messages`, …), redacted; off by default.
    pub capture_content: bool,
}

/// The OTLP/HTTP encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtelProtocol {
    /// `http/protobuf`.
    #[default]
    Protobuf,
    /// `http/json`.
    Json,
}

impl OtelProtocol {
    /// The name `OTEL_EXPORTER_OTLP_PROTOCOL` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protobuf => "http/protobuf",
            Self::Json => "http/json",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "http/protobuf" | "protobuf" => Ok(Self::Protobuf),
            "http/json" | "json" => Ok(Self::Json),
            "grpc" => Err(
                "`grpc` is not supported: use http/protobuf (port 4318 on most collectors)".into(),
            ),
            other => Err(format!("`{other}` is not http/protobuf or http/json")),
        }
    }
}

/// `k1=v1,k2=v2` as `OTEL_EXPORTER_OTLP_HEADERS` writes it (values percent-decoded).
fn parse_otel_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not key=value"))?;
            Ok((k.trim().to_string(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    while pos < bytes.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (
            bytes[pos],
            bytes.get(pos + 1).copied().and_then(hex),
            bytes.get(pos + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                pos += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                pos += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `ccproxy.identity: {host, user}`: overrides for `capture_host` (default:
/// the hostname) and `capture_user` (default: the OS user).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityConfig {
    pub host: Option<String>,
    pub user: Option<String>,
}

/// `ccproxy.mitm` exactly as in the seed, plus the extras of DESIGN.md.
// One field per YAML key: the bools are independent switches.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, PartialEq)]
pub struct MitmConfig {
    pub enabled: bool,
    /// Interface the forward listener binds (127.0.0.1 unless configured).
    pub host: String,
    pub port: u16,
    pub upstream_proxy: String,
    pub max_body_size: usize,
    pub capture_bodies: bool,
    pub excluded_hosts: Vec<String>,
    pub cert_dir: Option<PathBuf>,
    pub llm_hosts: Vec<String>,
    /// Resolved database URL (env > file); `None` means managed or memory.
    pub database_url: Option<String>,
    pub buffer_size: usize,
    /// Extra header names (lowercase) redacted like `authorization`.
    pub redact_headers: Vec<String>,
    /// Extra URL query parameter names (any case) redacted like `key`.
    pub redact_query: Vec<String>,
    pub spool_max_bytes: u64,
    pub retention: Option<Duration>,
    pub upstream_ca: Option<PathBuf>,
    pub ssl_insecure: bool,
    /// `durability`: when a completed flow counts as stored (default `batch`).
    pub durability: Durability,
    /// `proxy_auth`: both listeners require the token in `<home>/proxy.token`.
    pub proxy_auth: bool,
    /// `timeouts`: how long a client or an upstream may stall the proxy.
    pub timeouts: MitmTimeouts,
    /// `max_connections`: open client connections before idle ones are
    /// closed to make room; `None` derives it from the file-descriptor limit.
    pub max_connections: Option<usize>,
}

/// `ccproxy.mitm.durability`: what an engine killed with SIGKILL can lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Rows wait in memory for at most one batch (100 ms or 1,000 rows).
    #[default]
    Batch,
    /// Every completed flow is fsync'd to the spool before the client gets
    /// the end of its response; the writer replays the spool.
    SpoolFirst,
}

/// `ccproxy.mitm.timeouts`: what a stalled peer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MitmTimeouts {
    /// A request head must be complete this long after its first byte
    /// (after the accept, for a connection's first request); then 408 and close.
    pub request_head: Duration,
    /// A kept-alive connection with no request in progress is closed after this.
    pub idle_keepalive: Duration,
    /// The CONNECT peek and the TLS accept of an intercepted tunnel.
    pub handshake: Duration,
    /// A streaming upstream body that sends no byte for this long fails with `timeout`.
    pub upstream_idle: Duration,
}

impl Default for MitmTimeouts {
    fn default() -> Self {
        Self {
            request_head: Duration::from_secs(30),
            idle_keepalive: Duration::from_secs(300),
            handshake: Duration::from_secs(10),
            upstream_idle: Duration::from_secs(600),
        }
    }
}

/// `ccproxy.litellm`: the gateway child process.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatewayConfig {
    /// Command line to start the gateway (default: `litellm` when on PATH).
    pub command: Option<Vec<String>>,
    /// LiteLLM config file (default `<home>/config.yaml`).
    pub config: Option<PathBuf>,
    /// Extra environment, `${VAR}` and `${VAR:-default}` expanded at start.
    pub environment: BTreeMap<String, String>,
}

/// Top-level `litellm: {host, port}`: the reverse listener's address.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenConfig {
    pub host: String,
    pub port: u16,
}

/// Default `llm_hosts` from the seed.
pub const DEFAULT_LLM_HOSTS: &[&str] = &[
    "api.anthropic.com",
    "api.openai.com",
    "generativelanguage.googleapis.com",
];

impl Default for MitmConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 8081,
            upstream_proxy: "http://localhost:4000".into(),
            max_body_size: 65_536,
            capture_bodies: true,
            excluded_hosts: Vec::new(),
            cert_dir: None,
            llm_hosts: DEFAULT_LLM_HOSTS.iter().map(|s| (*s).to_string()).collect(),
            database_url: None,
            buffer_size: 1000,
            redact_headers: Vec::new(),
            redact_query: Vec::new(),
            spool_max_bytes: 1 << 30,
            retention: None,
            upstream_ca: None,
            ssl_insecure: false,
            durability: Durability::Batch,
            proxy_auth: false,
            timeouts: MitmTimeouts::default(),
            max_connections: None,
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 4000,
        }
    }
}

/// Values given on the command line; they beat everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--home`.
    pub home: Option<PathBuf>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--port` (forward listener).
    pub port: Option<u16>,
    /// `--upstream` (origin-form target).
    pub upstream: Option<String>,
}

impl Config {
    /// Load from the real process environment.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with(overrides, &|k| std::env::var(k).ok())
    }

    /// For commands that must work even when the file is broken (`stop`):
    /// the full configuration, or, when the file cannot be read or parsed,
    /// the defaults for the same home together with the error (so the
    /// caller can say it is using them). Pid files and sockets are located
    /// from the home alone.
    pub fn load_or_defaults(
        overrides: &Overrides,
    ) -> Result<(Self, Option<ConfigError>), ConfigError> {
        match Self::load(overrides) {
            Ok(cfg) => Ok((cfg, None)),
            Err(
                e @ (ConfigError::Invalid { .. }
                | ConfigError::Read { .. }
                | ConfigError::Override { .. }),
            ) => {
                let bare = Overrides {
                    config: Some(PathBuf::from("/dev/null")),
                    ..overrides.clone()
                };
                let mut cfg = Self::load_with(&bare, &|k| {
                    // Only where things are, never the values that failed.
                    (k == "CCPROXY_HOME" || k == "HOME")
                        .then(|| std::env::var(k).ok())
                        .flatten()
                })?;
                cfg.config_path = overrides
                    .config
                    .clone()
                    .unwrap_or_else(|| cfg.home.join("ccproxy.yaml"));
                Ok((cfg, Some(e)))
            }
            Err(e) => Err(e),
        }
    }

    /// Load with an injected environment (tests pass a table).
    pub fn load_with(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let home = match (&overrides.home, env("CCPROXY_HOME")) {
            (Some(h), _) => h.clone(),
            (None, Some(h)) if !h.is_empty() => PathBuf::from(h),
            _ => env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".ccproxy"))
                .ok_or(ConfigError::NoHome)?,
        };
        // Pid files, sockets and the managed cluster are located from home:
        // a relative --home must mean the same directory from everywhere.
        let home = std::path::absolute(&home).unwrap_or(home);
        let config_path = overrides
            .config
            .clone()
            .unwrap_or_else(|| home.join("ccproxy.yaml"));
        let file = match read_bounded(&config_path) {
            Ok(text) => parse_file(&text).map_err(|message| ConfigError::Invalid {
                path: config_path.clone(),
                message,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && overrides.config.is_none() => {
                FileConfig::default()
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(ConfigError::Invalid {
                    path: config_path,
                    message: e.to_string(),
                })
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: config_path,
                    source,
                })
            }
        };
        let mut cfg = Self::from_file(home, config_path, file);
        cfg.apply_env(env)?;
        if let Some(port) = overrides.port {
            cfg.mitm.port = port;
        }
        if let Some(up) = &overrides.upstream {
            cfg.mitm.upstream_proxy =
                validate_url(up).map_err(|message| ConfigError::Override {
                    name: "--upstream".into(),
                    message,
                })?;
        }
        Ok(cfg)
    }

    fn from_file(home: PathBuf, config_path: PathBuf, file: FileConfig) -> Self {
        let d = MitmConfig::default();
        let ccp = file.ccproxy.unwrap_or_default();
        let m = ccp.mitm.unwrap_or_default();
        let gw = ccp.litellm.unwrap_or_default();
        let listen = file.litellm.unwrap_or_default();
        let identity = ccp.identity.unwrap_or_default();
        let resolve = |p: PathBuf| if p.is_relative() { home.join(p) } else { p };
        let mitm = MitmConfig {
            enabled: m.enabled.unwrap_or(d.enabled),
            host: m.host.unwrap_or(d.host),
            port: m.port.map_or(d.port, |p| p.0),
            upstream_proxy: m.upstream_proxy.map_or(d.upstream_proxy, |u| u.0),
            max_body_size: m.max_body_size.unwrap_or(d.max_body_size),
            capture_bodies: m.capture_bodies.unwrap_or(d.capture_bodies),
            excluded_hosts: m
                .excluded_hosts
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            cert_dir: m.cert_dir.map(resolve),
            llm_hosts: m
                .llm_hosts
                .map(|v| v.into_iter().map(|h| h.to_ascii_lowercase()).collect())
                .unwrap_or(d.llm_hosts),
            database_url: m.database_url.filter(|s| !s.is_empty()),
            buffer_size: m.buffer_size.map_or(d.buffer_size, |n| n.0),
            redact_headers: m
                .redact_headers
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            redact_query: m
                .redact_query
                .unwrap_or_default()
                .into_iter()
                .map(|q| q.to_ascii_lowercase())
                .collect(),
            spool_max_bytes: m.spool_max_bytes.unwrap_or(d.spool_max_bytes),
            retention: m.retention.map(|r| r.0),
            upstream_ca: m.upstream_ca.map(resolve),
            ssl_insecure: m.ssl_insecure.unwrap_or(false),
            durability: m.durability.unwrap_or_default(),
            proxy_auth: m.proxy_auth.unwrap_or(false),
            timeouts: m.timeouts.map_or(d.timeouts, |t| t.resolve(d.timeouts)),
            max_connections: m.max_connections.map(|n| n.0),
        };
        let defaults = ListenConfig::default();
        Self {
            mitm,
            upstream: ccp.upstream.map(|u| u.0),
            gateway: GatewayConfig {
                command: gw.command.map(CommandLine::into_vec),
                config: gw.config.map(resolve),
                environment: gw.environment.unwrap_or_default(),
            },
            litellm: ListenConfig {
                host: listen.host.unwrap_or(defaults.host),
                port: listen.port.map_or(defaults.port, |p| p.0),
            },
            identity: IdentityConfig {
                host: identity.host,
                user: identity.user,
            },
            prices: ccp.prices.map(resolve),
            otel: ccp.otel.map(|o| OtelConfig {
                endpoint: o.endpoint.unwrap_or_default(),
                protocol: o.protocol.map_or(OtelProtocol::Protobuf, |p| p.0),
                headers: o.headers.unwrap_or_default().into_iter().collect(),
                capture_content: o.capture_content.unwrap_or(false),
            }),
            home,
            config_path,
        }
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let bad = |name: &str, message: String| ConfigError::Override {
            name: name.into(),
            message,
        };
        if let Some(v) = env("CCPROXY_MITM_PORT").filter(|v| !v.is_empty()) {
            self.mitm.port = parse_port(&v).map_err(|m| bad("CCPROXY_MITM_PORT", m))?;
        }
        if let Some(v) = env("CCPROXY_MITM_UPSTREAM").filter(|v| !v.is_empty()) {
            self.mitm.upstream_proxy =
                validate_url(&v).map_err(|m| bad("CCPROXY_MITM_UPSTREAM", m))?;
        }
        if let Some(v) = env("CCPROXY_MITM_MAX_BODY_SIZE").filter(|v| !v.is_empty()) {
            self.mitm.max_body_size = v.trim().parse().map_err(|_| {
                bad(
                    "CCPROXY_MITM_MAX_BODY_SIZE",
                    format!("`{v}` is not a byte count"),
                )
            })?;
        }
        self.apply_otel_env(env)?;
        for name in ["CCPROXY_DATABASE_URL", "DATABASE_URL"] {
            if let Some(v) = env(name).filter(|v| !v.is_empty()) {
                self.mitm.database_url = Some(v);
                break;
            }
        }
        Ok(())
    }
}

/// Check a configuration text the way `load` does (shape, types, values)
/// without touching the environment or the disk: the entry point of the
/// config fuzz target and property test.
pub fn check_text(text: &str) -> Result<(), String> {
    parse_file(text).map(|_| ())
}

impl Config {
    /// The `OTEL_EXPORTER_OTLP_*` variables (the traces-specific ones first) win over the file.
    fn apply_otel_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let bad = |name: &str, message: String| ConfigError::Override {
            name: name.into(),
            message,
        };
        let traces = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|v| !v.trim().is_empty());
        let base = env("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.trim().is_empty());
        if let Some(url) = traces.or(base) {
            self.otel.get_or_insert_with(OtelConfig::default).endpoint = url;
        }
        let Some(otel) = self.otel.as_mut() else {
            return Ok(());
        };
        if let Some((name, v)) = get([
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]) {
            otel.protocol = OtelProtocol::parse(&v).map_err(|m| bad(name, m))?;
        }
        if let Some((name, v)) = get([
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ]) {
            for (k, val) in parse_otel_headers(&v).map_err(|m| bad(name, m))? {
                otel.headers.retain(|(h, _)| !h.eq_ignore_ascii_case(&k));
                otel.headers.push((k, val));
            }
        }
        if otel.endpoint.trim().is_empty() {
            self.otel = None;
        }
        Ok(())
    }
}

fn parse_file(text: &str) -> Result<FileConfig, String> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    prescan(text)?;
    serde_yaml::from_str::<Option<FileConfig>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            let message = e.to_string();
            // Name the key on the error's line when serde did not (bad values).
            let key = e.location().and_then(|loc| {
                let line = text.lines().nth(loc.line().checked_sub(1)?)?;
                let key = line.split(':').next()?.trim().trim_start_matches("- ");
                (!key.is_empty() && !message.contains(key)).then(|| key.to_string())
            });
            let mut message = match key {
                Some(key) => format!("`{key}`: {message}"),
                None => message,
            };
            // Errors at the document root carry no location; find the key ourselves.
            if !message.contains(" line ") {
                if let Some(name) = message.split('`').nth(1) {
                    let found = text.lines().position(|l| {
                        l.trim_start()
                            .strip_prefix(name)
                            .is_some_and(|r| r.trim_start().starts_with(':'))
                    });
                    if let Some(n) = found {
                        message = format!("{message} at line {}", n + 1);
                    }
                }
            }
            message
        })
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{s}` is not a port (1-65535)")),
        Ok(p) => Ok(p),
    }
}

fn validate_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(s.trim_end_matches('/').to_string()),
        _ => Err(format!(
            "`{s}` is not an http(s) URL; use e.g. http://localhost:4000"
        )),
    }
}

// ---- the file's shape; every struct rejects unknown keys ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    ccproxy: Option<FileCcproxy>,
    litellm: Option<FileListen>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCcproxy {
    mitm: Option<FileMitm>,
    upstream: Option<UrlValue>,
    litellm: Option<FileGateway>,
    identity: Option<FileIdentity>,
    prices: Option<PathBuf>,
    otel: Option<FileOtel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOtel {
    endpoint: Option<String>,
    protocol: Option<ProtocolValue>,
    headers: Option<BTreeMap<String, String>>,
    capture_content: Option<bool>,
}

/// `http/protobuf` or `http/json`, checked while parsing so the error names the line.
#[derive(Debug)]
struct ProtocolValue(OtelProtocol);

impl<'de> Deserialize<'de> for ProtocolValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OtelProtocol::parse(&s)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    host: Option<String>,
    user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMitm {
    enabled: Option<bool>,
    host: Option<String>,
    port: Option<PortValue>,
    upstream_proxy: Option<UrlValue>,
    max_body_size: Option<usize>,
    capture_bodies: Option<bool>,
    excluded_hosts: Option<Vec<String>>,
    cert_dir: Option<PathBuf>,
    llm_hosts: Option<Vec<String>>,
    database_url: Option<String>,
    buffer_size: Option<NonZero>,
    redact_headers: Option<Vec<String>>,
    redact_query: Option<Vec<String>>,
    spool_max_bytes: Option<u64>,
    retention: Option<DurationValue>,
    upstream_ca: Option<PathBuf>,
    ssl_insecure: Option<bool>,
    durability: Option<Durability>,
    proxy_auth: Option<bool>,
    timeouts: Option<FileTimeouts>,
    max_connections: Option<NonZero>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    request_head: Option<PositiveDuration>,
    idle_keepalive: Option<PositiveDuration>,
    handshake: Option<PositiveDuration>,
    upstream_idle: Option<PositiveDuration>,
}

impl FileTimeouts {
    fn resolve(self, d: MitmTimeouts) -> MitmTimeouts {
        MitmTimeouts {
            request_head: self.request_head.map_or(d.request_head, |v| v.0),
            idle_keepalive: self.idle_keepalive.map_or(d.idle_keepalive, |v| v.0),
            handshake: self.handshake.map_or(d.handshake, |v| v.0),
            upstream_idle: self.upstream_idle.map_or(d.upstream_idle, |v| v.0),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGateway {
    command: Option<CommandLine>,
    config: Option<PathBuf>,
    environment: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListen {
    host: Option<String>,
    port: Option<PortValue>,
}

/// A command given as a string (split on whitespace) or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CommandLine {
    Line(String),
    Argv(Vec<String>),
}

impl CommandLine {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::Line(s) => s.split_whitespace().map(str::to_string).collect(),
            Self::Argv(v) => v,
        }
    }
}

/// Validating wrappers: a bad value fails inside serde so the error carries its line.
macro_rules! validated {
    ($name:ident, $inner:ty, $raw:ty, $check:expr) => {
        #[derive(Debug)]
        struct $name($inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <$raw>::deserialize(d)?;
                let check: fn($raw) -> Result<$inner, String> = $check;
                check(raw).map($name).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated!(PortValue, u16, u64, |p| match u16::try_from(p) {
    Ok(p) if p > 0 => Ok(p),
    _ => Err(format!("invalid port {p}: expected 1-65535")),
});
validated!(NonZero, usize, usize, |n| if n == 0 {
    Err("must be at least 1".to_string())
} else if n > MAX_BUFFER_SIZE {
    Err(format!("must be at most {MAX_BUFFER_SIZE}"))
} else {
    Ok(n)
});
validated!(UrlValue, String, String, |s| validate_url(&s));
validated!(DurationValue, Duration, String, |s| { parse_duration(&s) });
validated!(PositiveDuration, Duration, String, |s| {
    match parse_duration(&s) {
        Ok(d) if d.is_zero() => Err(format!("`{s}` must be longer than zero, e.g. 30s")),
        other => other,
    }
});

/// Parse `30d`, `12h`, `90m`, `1h30m` and friends (config values and CLI flags).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); use e.g. 30d, 12h, 15m"))
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "forward {}:{} reverse {}:{} home {}",
            self.mitm.host,
            self.mitm.port,
            self.litellm.host,
            self.litellm.port,
            self.home.display()
        )
    }
}

// ---- what is read before serde sees it: size, nesting, aliases, tags ----

/// The largest configuration file read (`--config /dev/zero` ends here).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The deepest nesting (block indentation plus flow brackets) accepted; the
/// real schema is 4 deep. Deeper YAML is refused before the parser, whose
/// time grows with the square of the depth.
pub const MAX_CONFIG_DEPTH: usize = 64;
/// The most aliases (`*name`) a file may use: each one can expand a whole
/// anchored subtree, so a few hundred kilobytes could otherwise become
/// gigabytes.
pub const MAX_CONFIG_ALIASES: usize = 64;
/// Largest `buffer_size` (rows queued for the store); the queue is allocated
/// lazily, but a channel this large is a typo, not a setting.
pub const MAX_BUFFER_SIZE: usize = 1_000_000;
/// Tags the YAML core schema defines; any other `!tag` is refused.
const CORE_TAGS: &[&str] = &[
    "!!str", "!!int", "!!float", "!!bool", "!!null", "!!seq", "!!map",
];

/// Read at most [`MAX_CONFIG_BYTES`] of a file as UTF-8; more, or bytes that
/// are not UTF-8, is `InvalidData` with a message for the user.
fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "is a directory, not a YAML file",
        ));
    }
    let mut data = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} KiB; a ccproxy configuration is a few lines of YAML",
                MAX_CONFIG_BYTES / 1024
            ),
        ));
    }
    String::from_utf8(data).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// One linear pass over the text that refuses, with the line, what would
/// make the YAML parser slow or the document huge: nesting deeper than
/// [`MAX_CONFIG_DEPTH`], more than [`MAX_CONFIG_ALIASES`] aliases, and tags
/// outside the core schema (serde would ignore them silently). It knows
/// quotes, comments, flow brackets and block scalars; anything it cannot
/// judge is left to the parser, which reports the real syntax error.
fn prescan(text: &str) -> Result<(), String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut flow = 0usize;
    let mut block: Vec<usize> = Vec::new();
    let mut block_scalar: Option<usize> = None;
    let mut aliases = 0usize;
    let too_deep = |line: usize| {
        format!("nested deeper than {MAX_CONFIG_DEPTH} levels at line {line}; flatten the file")
    };
    for (n, line) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let chars: Vec<char> = line.chars().collect();
        let indent = chars.iter().take_while(|c| **c == ' ').count();
        let content = chars[indent..].iter().collect::<String>();
        let content = content.trim_end();
        if let Some(parent) = block_scalar {
            if content.is_empty() || indent > parent {
                continue;
            }
            block_scalar = None;
        }
        let mut i = indent;
        if quote == Quote::None && flow == 0 {
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            while block.last().is_some_and(|&top| top >= indent) {
                block.pop();
            }
            block.push(indent);
            // `- - - x`: every dash opens one more level on the same line.
            while chars.get(i) == Some(&'-') && chars.get(i + 1).is_none_or(|c| c.is_whitespace()) {
                i += 1;
                while chars.get(i) == Some(&' ') {
                    i += 1;
                }
                block.push(i);
                if block.len() > MAX_CONFIG_DEPTH {
                    return Err(too_deep(line_no));
                }
            }
            if block.len() + flow > MAX_CONFIG_DEPTH {
                return Err(too_deep(line_no));
            }
        }
        let mut node_start = quote == Quote::None;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Quote::Double => {
                    match c {
                        '\\' => i += 1,
                        '"' => quote = Quote::None,
                        _ => {}
                    }
                    i += 1;
                    continue;
                }
                Quote::Single => {
                    if c == '\'' {
                        if chars.get(i + 1) == Some(&'\'') {
                            i += 1;
                        } else {
                            quote = Quote::None;
                        }
                    }
                    i += 1;
                    continue;
                }
                Quote::None => {}
            }
            let next_blank = chars.get(i + 1).is_none_or(|c| c.is_whitespace());
            match c {
                ' ' | '\t' => {}
                '#' if i == 0 || chars[i - 1].is_whitespace() => break,
                '"' if node_start => {
                    quote = Quote::Double;
                    node_start = false;
                }
                '\'' if node_start => {
                    quote = Quote::Single;
                    node_start = false;
                }
                '[' | '{' if node_start || flow > 0 => {
                    flow += 1;
                    if block.len() + flow > MAX_CONFIG_DEPTH {
                        return Err(too_deep(line_no));
                    }
                    node_start = true;
                }
                ']' | '}' if flow > 0 => {
                    flow -= 1;
                    node_start = false;
                }
                ',' if flow > 0 => node_start = true,
                ':' if next_blank || flow > 0 => node_start = true,
                '-' | '?' if node_start && next_blank => {}
                '|' | '>' if node_start && flow == 0 => {
                    block_scalar = Some(indent);
                    break;
                }
                '!' | '&' | '*' if node_start => {
                    let start = i;
                    while chars
                        .get(i + 1)
                        .is_some_and(|c| !c.is_whitespace() && !",[]{}".contains(*c))
                    {
                        i += 1;
                    }
                    let token: String = chars[start..=i].iter().collect();
                    match c {
                        '!' if !CORE_TAGS.contains(&token.as_str()) => {
                            return Err(format!(
                                "unknown tag `{token}` at line {line_no}; remove it (ccproxy reads plain YAML)"
                            ));
                        }
                        '*' => {
                            aliases += 1;
                            if aliases > MAX_CONFIG_ALIASES {
                                return Err(format!(
                                    "more than {MAX_CONFIG_ALIASES} aliases (`*name`) at line {line_no}; write the values out"
                                ));
                            }
                            node_start = false;
                        }
                        _ => {}
                    }
                }
                _ => node_start = false,
            }
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        yaml: Option<&str>,
        env: &[(&str, &str)],
        ov: Overrides,
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(y) = yaml {
            std::fs::write(dir.path().join("ccproxy.yaml"), y).expect("write");
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let ov = Overrides {
            home: Some(dir.path().to_path_buf()),
            ..ov
        };
        Config::load_with(&ov, &|k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn precedence_table() {
        let file = "ccproxy:\n  mitm:\n    port: 9001\n    upstream_proxy: http://file:1\n    max_body_size: 10\n";
        // (file, env, flag port, flag upstream) -> (port, upstream, max_body)
        type Case<'a> = (
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            Option<u16>,
            Option<&'a str>,
            u16,
            &'a str,
            usize,
        );
        let cases: &[Case] = &[
            (None, &[], None, None, 8081, "http://localhost:4000", 65_536),
            (Some(file), &[], None, None, 9001, "http://file:1", 10),
            (
                Some(file),
                &[
                    ("CCPROXY_MITM_PORT", "9002"),
                    ("CCPROXY_MITM_UPSTREAM", "http://env:2"),
                    ("CCPROXY_MITM_MAX_BODY_SIZE", "20"),
                ],
                None,
                None,
                9002,
                "http://env:2",
                20,
            ),
            (
                Some(file),
                &[
                    ("CCPROXY_MITM_PORT", "9002"),
                    ("CCPROXY_MITM_UPSTREAM", "http://env:2"),
                ],
                Some(9003),
                Some("http://flag:3"),
                9003,
                "http://flag:3",
                10,
            ),
            (
                None,
                &[("CCPROXY_MITM_PORT", "9002")],
                Some(9003),
                None,
                9003,
                "http://localhost:4000",
                65_536,
            ),
        ];
        for (i, (yaml, env, port, up, want_port, want_up, want_max)) in cases.iter().enumerate() {
            let cfg = load(
                *yaml,
                env,
                Overrides {
                    port: *port,
                    upstream: up.map(str::to_string),
                    ..Overrides::default()
                },
            )
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(cfg.mitm.port, *want_port, "case {i} port");
            assert_eq!(cfg.mitm.upstream_proxy, *want_up, "case {i} upstream");
            assert_eq!(cfg.mitm.max_body_size, *want_max, "case {i} max_body_size");
        }
    }

    #[test]
    fn database_url_precedence() {
        let file = "ccproxy:\n  mitm:\n    database_url: postgres://file\n";
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "postgres://file"),
            (&[("DATABASE_URL", "postgres://db")], "postgres://db"),
            (
                &[
                    ("DATABASE_URL", "postgres://db"),
                    ("CCPROXY_DATABASE_URL", "postgres://ccp"),
                ],
                "postgres://ccp",
            ),
        ];
        for (env, want) in cases {
            let cfg = load(Some(file), env, Overrides::default()).expect("load");
            assert_eq!(cfg.mitm.database_url.as_deref(), Some(*want));
        }
        let cfg = load(None, &[], Overrides::default()).expect("load");
        assert_eq!(cfg.mitm.database_url, None);
    }

    #[test]
    fn full_seed_example_parses() {
        let yaml = r#"
ccproxy:
  upstream: https://api.anthropic.com
  mitm:
    enabled: true
    port: 8081
    upstream_proxy: "http://localhost:4000"
    max_body_size: 65536
    capture_bodies: true
    excluded_hosts: ["Internal-API.company.com"]
    cert_dir: null
    llm_hosts:
      - "api.anthropic.com"
    buffer_size: 500
    redact_headers: [X-Secret]
    spool_max_bytes: 1000000
    retention: 30d
    upstream_ca: extra.pem
    ssl_insecure: false
  litellm:
    command: litellm --debug
    environment:
      KEY: "${HOME}"
litellm:
  host: 127.0.0.1
  port: 4001
"#;
        let cfg = load(Some(yaml), &[], Overrides::default()).expect("load");
        assert!(cfg.mitm.enabled);
        assert_eq!(cfg.mitm.excluded_hosts, ["internal-api.company.com"]);
        assert_eq!(cfg.mitm.redact_headers, ["x-secret"]);
        assert_eq!(cfg.mitm.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(cfg.mitm.buffer_size, 500);
        assert!(cfg
            .mitm
            .upstream_ca
            .as_ref()
            .is_some_and(|p| p.is_absolute()));
        assert_eq!(
            cfg.gateway.command,
            Some(vec!["litellm".into(), "--debug".into()])
        );
        assert_eq!(cfg.litellm.port, 4001);
        assert_eq!(cfg.upstream.as_deref(), Some("https://api.anthropic.com"));
    }

    #[test]
    fn errors_name_key_and_line() {
        let cases: &[(&str, &[&str])] = &[
            ("ccproxy:\n  mitm:\n    prot: 1\n", &["prot", "line 3"]),
            ("ccproxy:\n  mitm:\n    port: 70000\n", &["port", "line 3"]),
            ("ccproxy:\n  mitm:\n    port: \"abc\"\n", &["line 3"]),
            (
                "ccproxy:\n  mitm:\n    capture_bodies: maybe\n",
                &["line 3"],
            ),
            (
                "ccproxy:\n  mitm:\n\n    retention: soon\n",
                &["retention", "line 4"],
            ),
            (
                "ccproxy:\n  mitm:\n    upstream_proxy: ftp://x\n",
                &["upstream_proxy", "line 3"],
            ),
            (
                "ccproxy:\n  mitm:\n    buffer_size: 0\n",
                &["buffer_size", "line 3"],
            ),
            ("ccproxy: [\n", &["line"]),
            ("proxy:\n  x: 1\n", &["proxy", "line 1"]),
        ];
        for (yaml, needles) in cases {
            let err = load(Some(yaml), &[], Overrides::default())
                .expect_err(yaml)
                .to_string();
            for n in *needles {
                assert!(err.contains(n), "{yaml:?}: `{err}` lacks `{n}`");
            }
        }
    }

    #[test]
    fn bad_env_and_flag_values() {
        let err =
            load(None, &[("CCPROXY_MITM_PORT", "0")], Overrides::default()).expect_err("port 0");
        assert!(err.to_string().contains("CCPROXY_MITM_PORT"));
        let err = load(
            None,
            &[("CCPROXY_MITM_MAX_BODY_SIZE", "lots")],
            Overrides::default(),
        )
        .expect_err("size");
        assert!(err.to_string().contains("CCPROXY_MITM_MAX_BODY_SIZE"));
        let err = load(
            None,
            &[],
            Overrides {
                upstream: Some("nope".into()),
                ..Overrides::default()
            },
        )
        .expect_err("flag");
        assert!(err.to_string().contains("--upstream"));
    }

    #[test]
    fn relative_home_is_made_absolute() {
        let cfg = Config::load_with(
            &Overrides {
                home: Some(PathBuf::from("some/relative/home")),
                ..Overrides::default()
            },
            &|_| None,
        )
        .expect("load");
        assert!(cfg.home.is_absolute(), "{}", cfg.home.display());
        assert!(cfg.home.ends_with("some/relative/home"));
        assert!(cfg.config_path.starts_with(&cfg.home));
    }

    #[test]
    fn prescan_refuses_what_would_explode_and_keeps_the_rest() {
        let refused: &[(&str, &str)] = &[
            (
                &format!("a: {}1{}", "[".repeat(65), "]".repeat(65)),
                "nested deeper",
            ),
            (&format!("a:\n  {}x\n", "- ".repeat(70)), "nested deeper"),
            (
                &format!("a: &a [x]\nb: [{}]\n", vec!["*a"; 65].join(", ")),
                "aliases",
            ),
            ("a: !foo 1\n", "unknown tag `!foo` at line 1"),
            ("a:\n  - !<tag:yaml.org,2002:str> x\n", "unknown tag"),
        ];
        for (text, needle) in refused {
            let err = prescan(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let kept = [
            "a: \"*not an alias\" # and ! not a tag\n",
            "a: 'it''s *fine* !'\n",
            "a: |\n  [[[[ !x *y &z\n   - - - -\nb: 1\n",
            "a: !!str 1\nb: &x 2\nc: *x\n",
            "cmd: ls *.py -l\nurl: http://h/!x\n",
            &format!("a: {}1{}", "[".repeat(60), "]".repeat(60)),
        ];
        for text in kept {
            assert_eq!(prescan(text), Ok(()), "{text:?}");
        }
    }

    #[test]
    fn timeouts_and_connection_cap() {
        let cfg = load(None, &[], Overrides::default()).expect("load");
        assert_eq!(cfg.mitm.timeouts, MitmTimeouts::default());
        assert_eq!(cfg.mitm.max_connections, None);
        let yaml = "ccproxy:\n  mitm:\n    max_connections: 100\n    timeouts:\n      request_head: 500ms\n      upstream_idle: 2m\n";
        let cfg = load(Some(yaml), &[], Overrides::default()).expect("load");
        assert_eq!(cfg.mitm.max_connections, Some(100));
        assert_eq!(cfg.mitm.timeouts.request_head, Duration::from_millis(500));
        assert_eq!(cfg.mitm.timeouts.upstream_idle, Duration::from_secs(120));
        assert_eq!(cfg.mitm.timeouts.handshake, Duration::from_secs(10));
        for (yaml, key) in [
            (
                "ccproxy:\n  mitm:\n    timeouts:\n      handshake: 0s\n",
                "handshake",
            ),
            ("ccproxy:\n  mitm:\n    timeouts:\n      idle: 1s\n", "idle"),
            (
                "ccproxy:\n  mitm:\n    max_connections: 0\n",
                "max_connections",
            ),
        ] {
            let err = load(Some(yaml), &[], Overrides::default())
                .expect_err(yaml)
                .to_string();
            assert!(err.contains(key) && err.contains("line"), "{err}");
        }
    }

    #[test]
    fn stop_falls_back_to_defaults_for_a_broken_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ccproxy.yaml"), "ccproxy: [\n").expect("write");
        let ov = Overrides {
            home: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        assert!(Config::load(&ov).is_err());
        let (cfg, err) = Config::load_or_defaults(&ov).expect("defaults");
        assert!(err.is_some());
        assert_eq!(cfg.home, dir.path());
        assert_eq!(cfg.config_path, dir.path().join("ccproxy.yaml"));
        assert_eq!(cfg.mitm.port, MitmConfig::default().port);
    }

    #[test]
    fn explicit_missing_config_is_an_error() {
        let err = load(
            None,
            &[],
            Overrides {
                config: Some(PathBuf::from("/nonexistent/ccproxy.yaml")),
                ..Overrides::default()
            },
        )
        .expect_err("missing explicit file");
        assert!(err.to_string().contains("/nonexistent/ccproxy.yaml"));
    }
}
