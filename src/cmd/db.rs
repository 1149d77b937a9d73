//! `ccproxy db migrate|url|status|prune`.

use anyhow::Context as _;

use crate::cli::DbCommand;
use crate::config::Config;
use crate::home::Home;
use crate::store::{self, migrate, StoreError, Target};

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
    let mut client = store::connect(&url)
        .await
        .map_err(StoreError::Db)
        .with_context(|| {
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
    let client = match store::connect(url).await {
        Ok(c) => c,
        Err(e) => {
            println!("server:   unreachable ({})", store::describe(&e));
            return Ok(1);
        }
    };
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
    }
    Ok(0)
}
