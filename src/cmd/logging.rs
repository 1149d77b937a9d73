//! The one logging initialisation: `tracing` to stderr when headless, to
//! `<home>/ccproxy.log` while a TUI owns the terminal.

use std::path::Path;
use std::sync::Arc;

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("CCPROXY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Log to stderr (headless, and the detached engine whose stderr is its log file).
pub fn to_stderr(ansi: bool) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Log to `path` (appended), so no log line ever lands on a TUI's screen.
/// Global when no subscriber is set yet (engine tasks on every thread log to
/// the file); otherwise for this thread, until the guard drops.
pub fn to_file(path: &Path) -> Option<tracing::subscriber::DefaultGuard> {
    if let Some(dir) = path.parent() {
        let _ = crate::engine::create_home(dir);
    }
    let file = Arc::new(
        std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new().create(true).append(true),
            0o600,
        )
        .open(path)
        .ok()?,
    );
    let build = || {
        tracing_subscriber::fmt()
            .with_writer(Arc::clone(&file))
            .with_ansi(false)
            .with_env_filter(filter())
            .finish()
    };
    if tracing::subscriber::set_global_default(build()).is_ok() {
        return None;
    }
    Some(tracing::subscriber::set_default(build()))
}
