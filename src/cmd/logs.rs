//! `ccproxy logs [-f] [-n N]`: the engine log and the gateway log, like `tail`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::capture::sanitize::sanitize_log;
use crate::cli::LogsArgs;
use crate::config::Config;
use crate::engine::logtail::last_lines;
use crate::home::Home;

/// `ccproxy logs`.
pub async fn logs(cfg: &Config, args: &LogsArgs) -> anyhow::Result<i32> {
    let home = Home::new(cfg);
    let files: Vec<PathBuf> = home.log_files().into();
    let existing: Vec<&PathBuf> = files.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() && !args.follow {
        eprintln!(
            "ccproxy: no logs yet in {} (a detached engine writes ccproxy.log, the gateway litellm.log)",
            home.root().display()
        );
        return Ok(1);
    }
    let mut out = std::io::stdout().lock();
    let mut offsets = Vec::new();
    let mut shown = None;
    for (i, path) in files.iter().enumerate() {
        let Ok(bytes) = std::fs::read(path) else {
            offsets.push(0);
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        writeln!(out, "==> {} <==", path.display())?;
        shown = Some(i);
        out.write_all(sanitize_log(last_lines(&text, args.lines)).as_bytes())?;
        if !text.is_empty() && !text.ends_with('\n') {
            writeln!(out)?;
        }
        offsets.push(bytes.len() as u64);
    }
    out.flush()?;
    drop(out);
    if !args.follow {
        return Ok(0);
    }
    follow(&files, offsets, shown).await
}

/// Print what the files gain, with a `==> name <==` header whenever the source changes.
async fn follow(
    files: &[PathBuf],
    mut offsets: Vec<u64>,
    mut last: Option<usize>,
) -> anyhow::Result<i32> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        for (i, path) in files.iter().enumerate() {
            let Some(chunk) = read_from(path, &mut offsets[i]) else {
                continue;
            };
            let mut out = std::io::stdout().lock();
            if last != Some(i) {
                writeln!(out, "==> {} <==", path.display())?;
                last = Some(i);
            }
            out.write_all(sanitize_log(&String::from_utf8_lossy(&chunk)).as_bytes())?;
            out.flush()?;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = int.recv() => return Ok(0),
            _ = term.recv() => return Ok(0),
        }
    }
}

/// New bytes since `offset` (from the start again when the file was truncated or replaced).
fn read_from(path: &Path, offset: &mut u64) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len < *offset {
        *offset = 0;
    }
    if len == *offset {
        return None;
    }
    file.seek(SeekFrom::Start(*offset)).ok()?;
    let mut buf = Vec::new();
    file.take(len - *offset).read_to_end(&mut buf).ok()?;
    // A character cut by the writer mid-way is read whole next time.
    if let Err(e) = std::str::from_utf8(&buf) {
        if e.error_len().is_none() && buf.len() - e.valid_up_to() < 4 {
            buf.truncate(e.valid_up_to());
        }
    }
    *offset += buf.len() as u64;
    (!buf.is_empty()).then_some(buf)
}
