//! ccproxy: an intercepting proxy for LLM traffic with a live terminal UI and
//! PostgreSQL capture. `run` dispatches the CLI; each subsystem lives in its
//! own module (see STYLE.md for the layout).

pub mod capture;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod export;
pub mod flow;
pub mod proxy;
pub mod store;
pub mod tui;

use std::fmt;

use cli::{Cli, Command};
use config::{Config, ConfigError, Overrides};

/// An error that ends the program with a specific exit code and one line for the user.
#[derive(Debug)]
pub struct ExitError {
    /// Process exit code.
    pub code: i32,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl ExitError {
    /// An error with an explicit exit code.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

/// Parse-free entry point used by `main`: run the command, print the error, return the exit code.
pub fn main_with(cli: Cli) -> i32 {
    quiet_broken_pipe();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccproxy: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            let code = exit_code(&e);
            eprintln!("ccproxy: {}", capture::sanitize::sanitize(&one_line(&e)));
            code
        }
    }
}

/// The reader of our stdout went away (`| head`): not an error to report.
/// Only a bare I/O error counts (a command's own `writeln!(out, …)?`); a
/// broken socket inside a subsystem arrives wrapped in that subsystem's error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn exit_code(e: &anyhow::Error) -> i32 {
    if let Some(x) = e.downcast_ref::<ExitError>() {
        return x.code;
    }
    if e.downcast_ref::<ConfigError>().is_some() {
        return 2;
    }
    1
}

fn one_line(e: &anyhow::Error) -> String {
    // `{:#}` joins the context chain with ": " on one line.
    format!("{e:#}")
}

/// Load the configuration for a command, with its flag overrides.
pub fn load_config(
    cli: &Cli,
    port: Option<u16>,
    upstream: Option<String>,
) -> Result<Config, ConfigError> {
    Config::load(&Overrides {
        home: cli.home.clone(),
        config: cli.config.clone(),
        port,
        upstream,
    })
}

/// The configuration for `stop`: a broken file must not keep the engine
/// running, so the defaults for the same home are used (with a warning).
fn load_config_for_stop(cli: &Cli) -> Result<Config, ConfigError> {
    let (cfg, error) = Config::load_or_defaults(&Overrides {
        home: cli.home.clone(),
        config: cli.config.clone(),
        port: None,
        upstream: None,
    })?;
    if let Some(e) = error {
        eprintln!(
            "ccproxy: {e}; stopping from the pid files in {}",
            cfg.home.display()
        );
    }
    Ok(cfg)
}

/// A closed stdout (`ccproxy db status | head -c1`) ends the command
/// quietly with exit 0: `println!` panics on EPIPE, and this hook turns
/// exactly that panic into a silent exit. Every other panic is reported as
/// before.
pub fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if payload.starts_with("failed printing to std") && payload.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Run one CLI command; the returned value is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Start(args) => daemon::start(&cli, args).await,
        Command::Stop => daemon::stop(&load_config_for_stop(&cli)?).await,
        Command::Status(args) => daemon::status(&load_config(&cli, None, None)?, args, false).await,
        Command::Run(args) => daemon::run_command(&load_config(&cli, None, None)?, args).await,
        Command::Mitm(cmd) => daemon::mitm(&cli, cmd).await,
        Command::Tui => tui::command(&cli).await,
        Command::Db(cmd) => store::command(&load_config(&cli, None, None)?, cmd).await,
        Command::Ca(args) => proxy::ca::command(&load_config(&cli, None, None)?, args),
        Command::Export(args) => export::command(&load_config(&cli, None, None)?, args).await,
        Command::Logs(args) => daemon::logs(&load_config(&cli, None, None)?, args).await,
        Command::Engine(args) => daemon::engine_main(&cli, args).await,
    }
}
