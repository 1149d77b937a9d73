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
}

/// `ccproxy.mitm` exactly as in the seed, plus the extras of DESIGN.md.
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
    pub spool_max_bytes: u64,
    pub retention: Option<Duration>,
    pub upstream_ca: Option<PathBuf>,
    pub ssl_insecure: bool,
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
            spool_max_bytes: 1 << 30,
            retention: None,
            upstream_ca: None,
            ssl_insecure: false,
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
        let file = match std::fs::read_to_string(&config_path) {
            Ok(text) => parse_file(&text).map_err(|message| ConfigError::Invalid {
                path: config_path.clone(),
                message,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && overrides.config.is_none() => {
                FileConfig::default()
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
            spool_max_bytes: m.spool_max_bytes.unwrap_or(d.spool_max_bytes),
            retention: m.retention.map(|r| r.0),
            upstream_ca: m.upstream_ca.map(resolve),
            ssl_insecure: m.ssl_insecure.unwrap_or(false),
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
        for name in ["CCPROXY_DATABASE_URL", "DATABASE_URL"] {
            if let Some(v) = env(name).filter(|v| !v.is_empty()) {
                self.mitm.database_url = Some(v);
                break;
            }
        }
        Ok(())
    }
}

fn parse_file(text: &str) -> Result<FileConfig, String> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
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
    spool_max_bytes: Option<u64>,
    retention: Option<DurationValue>,
    upstream_ca: Option<PathBuf>,
    ssl_insecure: Option<bool>,
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
} else {
    Ok(n)
});
validated!(UrlValue, String, String, |s| validate_url(&s));
validated!(DurationValue, Duration, String, |s| { parse_duration(&s) });

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
