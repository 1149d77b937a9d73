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
pub mod llm;
pub mod otel;
pub mod proxy;
pub mod store;
pub mod tls;
pub mod tui;

use cli::{Cli, Command};
use config::ConfigError;

pub use cmd::ExitError;

/// jemalloc instead of glibc's malloc: the proxy allocates and frees small
/// buffers per request on several threads, where glibc's per-thread arenas
/// and their locks cost CPU (README "Choices where DESIGN.md is silent").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        Command::Start(args) => cmd::start::start(&cli, args).await,
        Command::Stop => cmd::stop::stop(&cmd::config_for_stop(&cli)?).await,
        Command::Status(args) => cmd::status::status(&cmd::config(&cli)?, args, false).await,
        Command::Run(args) => cmd::run::run_command(&cmd::config(&cli)?, args).await,
        Command::Mitm(c) => cmd::mitm::mitm(&cli, c).await,
        Command::Tui => cmd::tui::tui(&cli).await,
        Command::Db(c) => cmd::db::db(&cmd::config(&cli)?, c).await,
        Command::Ca(args) => cmd::ca::ca(&cmd::config(&cli)?, args),
        Command::Export(args) => cmd::export::export(&cmd::config(&cli)?, args).await,
        Command::Logs(args) => cmd::logs::logs(&cmd::config(&cli)?, args).await,
        Command::Sessions(args) => cmd::sessions::sessions(&cmd::config(&cli)?, args).await,
        Command::Session(args) => cmd::session::session(&cmd::config(&cli)?, args).await,
        Command::Stats(args) => cmd::stats::stats(&cmd::config(&cli)?, args).await,
        Command::Engine(args) => cmd::engine::engine_main(&cli, args).await,
    }
}
