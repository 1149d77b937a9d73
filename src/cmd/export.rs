//! `ccproxy export --har FILE [--filter EXPR] [--since 1h]`.

use chrono::Utc;

use crate::cli::ExportArgs;
use crate::config::Config;
use crate::export::{read_flows, to_har, write_har, ExportError};
use crate::store::query::Reader;
// MERGE: the filter moves to crate::flow::filter and the HAR functions to crate::flow::har.
use crate::tui::filter;

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
    let flows = read_flows(&reader, since, &keep).await?;
    write_har(&to_har(&flows), &args.har)?;
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
