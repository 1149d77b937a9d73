//! `ccproxy export --har FILE [--filter EXPR] [--since 1h]`: stored flows,
//! filtered, as HAR 1.2 (the conversion itself is [`crate::flow::har`],
//! shared with the TUI's `w`).

use std::io::Write;
use std::path::Path;

use chrono::Utc;

use crate::cli::ExportArgs;
use crate::config::Config;

use crate::flow::filter;
use crate::flow::har::{self, HarError};
use crate::flow::Flow;
use crate::store::query::Reader;

/// Errors of the export path; each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `--filter` did not parse.
    #[error("--filter {expr:?} {source}")]
    Filter {
        expr: String,
        source: filter::FilterError,
    },
    /// No database is configured or reachable.
    #[error("no stored flows: storage is off (set CCPROXY_DATABASE_URL, or start ccproxy with a managed database)")]
    NoStorage,
    /// Writing the document failed.
    #[error(transparent)]
    Har(#[from] HarError),
}

/// Rows read per database round trip.
const PAGE: i64 = 5_000;

/// Write `doc` to `path`, or to stdout when `path` is `-`.
fn write_out(doc: &har::Document, path: &Path) -> Result<(), HarError> {
    if path.as_os_str() != "-" {
        return har::write_har(doc, path);
    }
    let json = har::to_json(doc)?;
    let write_err = |source| HarError::Write {
        path: "-".to_string(),
        source,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(json.as_bytes()).map_err(write_err)?;
    out.write_all(b"\n").map_err(write_err)?;
    out.flush().map_err(write_err)
}

/// Read every stored flow at or after `since`, oldest first, keeping those `keep` accepts.
pub async fn read_flows(
    reader: &Reader,
    since: Option<chrono::DateTime<Utc>>,
    keep: &filter::Filter,
) -> anyhow::Result<Vec<Flow>> {
    let mut out = Vec::new();
    let mut cursor = since;
    let mut seen_at_cursor = std::collections::HashSet::new();
    loop {
        let page = reader.since(cursor, PAGE).await?;
        let full = page.len() as i64 >= PAGE;
        let mut advanced = false;
        for f in page {
            if seen_at_cursor.contains(&f.id) {
                continue;
            }
            if cursor != Some(f.start_time) {
                cursor = Some(f.start_time);
                seen_at_cursor.clear();
                advanced = true;
            }
            seen_at_cursor.insert(f.id);
            if keep.matches(&f) {
                out.push(f);
            }
        }
        // A full page that only repeats one timestamp cannot move on: stop rather than loop.
        if !full || !advanced {
            break;
        }
    }
    Ok(out)
}

/// `ccproxy export --har FILE [--filter EXPR] [--since 1h]`.
pub async fn export(cfg: &Config, args: &ExportArgs) -> anyhow::Result<i32> {
    let expr = args.filter.as_deref().unwrap_or("");
    let keep = filter::parse(expr).map_err(|source| ExportError::Filter {
        expr: expr.to_string(),
        source,
    })?;
    let since = match args.since {
        Some(d) => Some(Utc::now() - chrono::Duration::from_std(d)?),
        None => None,
    };
    let reader = Reader::connect(cfg).await?.ok_or(ExportError::NoStorage)?;
    let mut flows = read_flows(&reader, since, &keep).await?;
    if let Some(host) = &args.host {
        flows.retain(|f| {
            f.capture_host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
        });
    }
    write_out(&har::to_har(&flows), &args.har)?;
    if args.har.as_os_str() != "-" {
        eprintln!(
            "wrote {} flow{} to {}",
            flows.len(),
            if flows.len() == 1 { "" } else { "s" },
            args.har.display()
        );
    }
    Ok(0)
}
