//! The command layer: one file per CLI command. Only this layer (and
//! `main.rs`/`lib.rs`) prints, picks exit codes and builds [`ExitError`];
//! the subsystems below it return data and their own errors.
//!
//! ```text
//! main → lib::run → cmd::<command> → engine (composition root) → proxy, store, …
//! ```

pub mod ca;
pub mod db;
pub mod engine;
pub mod export;
pub mod flowlog;
pub mod logging;
pub mod logs;
pub mod mitm;
pub mod run;
pub mod session;
pub mod sessions;
pub mod start;
pub mod stats;
pub mod status;
pub mod stop;
pub mod tui;

use std::fmt;

use crate::cli::Cli;
use crate::config::{Config, ConfigError, Overrides};

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
pub fn config_for_stop(cli: &Cli) -> Result<Config, ConfigError> {
    let (cfg, error) = Config::load_or_defaults(&crate::config::Overrides {
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

/// [`load_config`] without flag overrides (most commands).
pub fn config(cli: &Cli) -> Result<Config, ConfigError> {
    load_config(cli, None, None)
}
