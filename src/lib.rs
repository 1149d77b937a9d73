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
pub mod llm;
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
        Err(e) => {
            let code = exit_code(&e);
            eprintln!("ccproxy: {}", one_line(&e));
            code
        }
    }
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

/// Run one CLI command; the returned value is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Start(args) => daemon::start(&cli, args).await,
        Command::Stop => daemon::stop(&load_config(&cli, None, None)?).await,
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
