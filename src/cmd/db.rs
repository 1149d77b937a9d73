//! `ccproxy db migrate|url|status|prune|backfill`.

use anyhow::Context as _;

use crate::cli::DbCommand;
use crate::config::Config;
use crate::home::Home;
use crate::store::{self, connect, migrate, partition, StoreError, Target};

/// `ccproxy db …`.
pub async fn db(cfg: &Config, cmd: &DbCommand) -> anyhow::Result<i32> {
    let target = store::resolve(cfg).await?.ok_or(StoreError::NoDatabase)?;
    let url = target.url().to_string();
    if matches!(cmd, DbCommand::Url) {
        println!("{url}");
        return Ok(0);
    }
    if let DbCommand::Status = cmd {
        return status(cfg, &target).await;
    }
    let mut client = store::connect(&url).await.with_context(|| {
        format!(
            "cannot connect to {}; check that the server runs and the URL is right",
            store::redact_url(&url)
        )
    })?;
    match cmd {
        DbCommand::Migrate => {
            let n = migrate::migrate(&mut client).await?;
            let v = migrate::current_version(&client).await?.unwrap_or(0);
            println!("applied {n} migration(s); schema version {v}");
        }
        DbCommand::Prune(args) => {
            migrate::check_columns(&client).await?;
            let n = store::prune(&client, args.older_than).await?;
            println!(
                "deleted {n} flow(s) older than {}",
                humantime::format_duration(args.older_than)
            );
        }
        DbCommand::Backfill => {
            migrate::migrate(&mut client).await?;
            let prices = crate::llm::PriceTable::configured(cfg.prices.as_deref())?;
            let done = store::llm::backfill(&mut client, &prices).await?;
            println!(
                "analysed {} row(s): {} LLM/MCP exchange(s) filled in",
                done.rows, done.llm
            );
        }
        DbCommand::Url | DbCommand::Status => {}
    }
    Ok(0)
}

async fn status(cfg: &Config, target: &Target) -> anyhow::Result<i32> {
    let home = Home::new(cfg);
    let url = target.url();
    println!("database: {}", store::redact_url(url));
    match target {
        Target::Url(_) => println!("source:   configured URL"),
        Target::Managed(m) => {
            println!("source:   managed cluster in {}", m.cluster_dir.display());
            if !m.cluster_dir.starts_with(home.root()) {
                println!(
                    "          (not in {}: the postgres user cannot enter it, or the socket path would be too long)",
                    home.root().display()
                );
            }
            println!("log:      {}", m.cluster_dir.join("server.log").display());
        }
    }
    let spool_dir = home.spool();
    let (segments, spool_bytes) = store::spool_usage(&spool_dir);
    println!(
        "spool:    {segments} segment(s), {spool_bytes} bytes in {}",
        spool_dir.display()
    );
    let opts = connect::parse(url).map_err(StoreError::Connect)?;
    let client = match connect::connect_with(&opts).await {
        Ok(c) => c,
        Err(e) => {
            println!("server:   unreachable ({e})");
            return Ok(1);
        }
    };
    let sec = connect::security(&client, &opts).await;
    match &sec.tls_version {
        Some(v) if sec.tls => println!(
            "tls:      yes, {v} to {} (sslmode={})",
            sec.server, sec.sslmode
        ),
        _ => println!(
            "tls:      no, plain connection to {} (sslmode={})",
            sec.server, sec.sslmode
        ),
    }
    let info = store::server_info(&client).await?;
    println!("server:   PostgreSQL {}, up", info.version);
    match info.schema {
        Some(v) if v >= info.latest => println!("schema:   version {v} (current)"),
        Some(v) => println!(
            "schema:   version {v}; run `ccproxy db migrate` for {}",
            info.latest
        ),
        None => println!("schema:   none; run `ccproxy db migrate`"),
    }
    if let Some((rows, size)) = info.table {
        println!("rows:     {rows}");
        println!("size:     {size} (table, indexes and TOAST)");
        let parts = partition::list(&client).await?;
        let days: Vec<_> = parts.iter().filter_map(|p| p.day).collect();
        match (days.first(), days.last()) {
            (Some(a), Some(b)) => println!(
                "partitions: {} daily ({a} … {b}){}",
                days.len(),
                if parts.len() > days.len() {
                    " + default"
                } else {
                    ""
                }
            ),
            _ => println!("partitions: none (run `ccproxy db migrate`)"),
        }
        if let Some((moved, total)) = partition::conversion_progress(&client).await? {
            println!(
                "conversion: {moved} of {total} rows moved into partitions; \
                 `ccproxy db migrate` (or the next engine start) continues it"
            );
        }
    }
    Ok(0)
}
