//! Command-line types (clap derive only; behaviour lives in the library).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::config::parse_duration;

/// ccproxy: see, stream and store every exchange between LLM clients and providers.
#[derive(Debug, Parser)]
#[command(name = "ccproxy", version, about, propagate_version = true)]
pub struct Cli {
    /// State directory (CA, pid files, logs, spool, managed database).
    #[arg(long, global = true, env = "CCPROXY_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Configuration file [default: <home>/ccproxy.yaml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every top-level command of the CLI contract in DESIGN.md.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway; with --mitm the dual-proxy capture engine.
    Start(StartArgs),
    /// Stop the engine and the gateway.
    Stop,
    /// Show what runs, ports, storage state and counters.
    Status(StatusArgs),
    /// Run a command with its traffic routed through the running engine.
    Run(RunArgs),
    /// The forward capture proxy alone.
    #[command(subcommand)]
    Mitm(MitmCommand),
    /// Watch live flows (attaches to the running engine or starts one in-process).
    Tui,
    /// Database: migrate, url, status, prune.
    #[command(subcommand)]
    Db(DbCommand),
    /// Where the CA certificate is and how to trust it.
    Ca(CaArgs),
    /// Export stored flows as HAR 1.2.
    Export(ExportArgs),
    /// Show the engine and gateway logs.
    Logs(LogsArgs),
    /// Agent sessions: requests, conversations, tokens, cost, cache hit ratio.
    Sessions(SessionsArgs),
    /// One session: its conversations, turns, tool calls and cache verdicts.
    Session(SessionArgs),
    /// LLM usage from the database: requests, tokens, cost, cache hit rate, TTFT, errors.
    Stats(StatsArgs),
    /// Internal: the detached engine process.
    #[command(name = "__engine", hide = true)]
    Engine(EngineArgs),
}

/// Flags of `ccproxy start`.
#[derive(Debug, Args, Clone, Default)]
pub struct StartArgs {
    /// Start the dual-proxy capture engine (reverse on litellm.port, forward on mitm.port).
    #[arg(long)]
    pub mitm: bool,
    /// No TUI: logs to stderr (or to the log file when detached).
    #[arg(long)]
    pub headless: bool,
    /// Run in the background; return once everything accepts connections.
    #[arg(short, long)]
    pub detach: bool,
}

/// Flags of `status` and `mitm status`.
#[derive(Debug, Args, Clone, Default)]
pub struct StatusArgs {
    /// Machine-readable output (schema in README.md).
    #[arg(long)]
    pub json: bool,
}

/// `ccproxy run [--] CMD ARGS…`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// `ccproxy mitm …`.
#[derive(Debug, Subcommand)]
pub enum MitmCommand {
    /// Start the forward capture proxy.
    Start(MitmStartArgs),
    /// Stop the forward capture proxy.
    Stop,
    /// Status of the forward capture proxy.
    Status(StatusArgs),
}

/// Flags of `ccproxy mitm start`.
#[derive(Debug, Args, Clone, Default)]
pub struct MitmStartArgs {
    /// Listen port of the forward proxy (overrides mitm.port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Where origin-form requests go (overrides mitm.upstream_proxy).
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// No TUI.
    #[arg(long)]
    pub headless: bool,
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
}

/// `ccproxy db …`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations.
    Migrate,
    /// Print the connection string (psql accepts it).
    Url,
    /// Server, schema version, row count, table size.
    Status,
    /// Delete flows older than a duration.
    Prune(PruneArgs),
    /// Fill the LLM columns (api, tokens, cost, …) of rows stored before them.
    Backfill,
}

/// Flags of `ccproxy db prune`.
#[derive(Debug, Args, Clone)]
pub struct PruneArgs {
    /// Age, e.g. 30d, 12h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: std::time::Duration,
}

/// Flags of `ccproxy ca`.
#[derive(Debug, Args, Clone, Default)]
pub struct CaArgs {
    /// Print the CA certificate (PEM) instead of the instructions.
    #[arg(long)]
    pub pem: bool,
}

/// Flags of `ccproxy export`.
#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    /// Write HAR 1.2 to this file (- for stdout).
    #[arg(long, value_name = "FILE")]
    pub har: PathBuf,
    /// Filter expression (same language as the TUI's `/`).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Only flows newer than this, e.g. 1h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Only flows captured on this machine (`capture_host`, case-insensitive).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

/// Flags of `ccproxy sessions`.
#[derive(Debug, Args, Clone)]
pub struct SessionsArgs {
    /// Only sessions with requests newer than this, e.g. 1d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1d")]
    pub since: std::time::Duration,
    /// Machine-readable output (schema in README.md).
    #[arg(long)]
    pub json: bool,
    /// Only flows captured on this machine (`capture_host`, case-insensitive).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

/// Flags of `ccproxy stats`.
#[derive(Debug, Args, Clone, Default)]
pub struct StatsArgs {
    /// Only flows newer than this, e.g. 1h, 7d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Group by model, session, agent or host.
    #[arg(long, value_name = "KEY", value_parser = ["model", "session", "agent", "host"])]
    pub by: Option<String>,
    /// An array of JSON objects, one per group.
    #[arg(long)]
    pub json: bool,
    /// Only flows captured on this machine (`capture_host`, case-insensitive).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

/// Flags of `ccproxy session ID`.
#[derive(Debug, Args, Clone)]
pub struct SessionArgs {
    /// The session id (`x-claude-code-session-id`).
    pub id: String,
    /// Machine-readable output (schema in README.md).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// A readable transcript for a bug report.
    #[arg(long)]
    pub markdown: bool,
}

/// Flags of `ccproxy logs`.
#[derive(Debug, Args, Clone)]
pub struct LogsArgs {
    /// Keep printing as the logs grow.
    #[arg(short, long)]
    pub follow: bool,
    /// Lines to show from the end.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
}

/// Flags of the hidden detached engine process.
#[derive(Debug, Args, Clone, Default)]
pub struct EngineArgs {
    /// Dual-proxy mode (reverse + forward + gateway).
    #[arg(long)]
    pub mitm: bool,
    /// Forward listener only (`mitm start`).
    #[arg(long)]
    pub forward_only: bool,
    /// Port override for the forward listener.
    #[arg(long)]
    pub port: Option<u16>,
    /// Upstream override for origin-form requests.
    #[arg(long)]
    pub upstream: Option<String>,
}
