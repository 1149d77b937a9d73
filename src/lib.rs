//! ccproxy: an intercepting proxy for LLM traffic with a live terminal UI and
//! PostgreSQL capture. `run` dispatches the CLI to `cmd`; the layers point one
//! way (README "Architecture"): main → cmd → engine → {proxy, store} →
//! capture → flow.

pub mod capture;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod engine;
pub mod flow;
pub mod home;
pub mod proxy;
pub mod store;
pub mod tui;

use cli::{Cli, Command};
use config::ConfigError;

pub use cmd::ExitError;

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

/// Run one CLI command; the returned value is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Start(args) => cmd::start::start(&cli, args).await,
        Command::Stop => cmd::stop::stop(&cmd::config(&cli)?).await,
        Command::Status(args) => cmd::status::status(&cmd::config(&cli)?, args, false).await,
        Command::Run(args) => cmd::run::run_command(&cmd::config(&cli)?, args).await,
        Command::Mitm(c) => cmd::mitm::mitm(&cli, c).await,
        Command::Tui => cmd::tui::tui(&cli).await,
        Command::Db(c) => cmd::db::db(&cmd::config(&cli)?, c).await,
        Command::Ca(args) => cmd::ca::ca(&cmd::config(&cli)?, args),
        Command::Export(args) => cmd::export::export(&cmd::config(&cli)?, args).await,
        Command::Logs(args) => cmd::logs::logs(&cmd::config(&cli)?, args).await,
        Command::Engine(args) => cmd::engine::engine_main(&cli, args).await,
    }
}
