//! Schema migrations: the SQL files in `migrations/`, embedded in the binary,
//! applied in order, each in its own transaction under an advisory lock and
//! recorded in `ccproxy_schema_migrations`, so running them twice (or from two
//! processes at once) is harmless.

use tokio_postgres::Client;

use super::row::{sql_type, COLUMNS, TABLE};
use super::StoreError;

/// Every migration, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_init",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (2, "0002_llm", include_str!("../../migrations/0002_llm.sql")),
    (
        3,
        "0003_team",
        include_str!("../../migrations/0003_team.sql"),
    ),
    (
        4,
        "0004_websocket",
        include_str!("../../migrations/0004_websocket.sql"),
    ),
];

/// Key for `pg_advisory_xact_lock` ("ccproxy" in ASCII).
const LOCK_KEY: i64 = 0x0063_6370_726f_7879;

/// The schema version this binary writes.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Apply pending migrations, partition the table by day (converting or
/// finishing the conversion of an unpartitioned one, see
/// [`super::partition`]), then check the table has every column the writer
/// fills. Returns how many migrations were applied now.
pub async fn migrate(client: &mut Client) -> Result<usize, StoreError> {
    let mut applied = 0;
    let mut llm_added = false;
    for (version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({LOCK_KEY});
             CREATE TABLE IF NOT EXISTS ccproxy_schema_migrations (
                 version    INT PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );"
        ))
        .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM ccproxy_schema_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(sql)
                .await
                .map_err(|e| StoreError::Migration {
                    name: (*name).to_string(),
                    source: e,
                })?;
            tx.execute(
                "INSERT INTO ccproxy_schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
            applied += 1;
            llm_added |= *version == 2;
            tracing::info!(migration = name, "applied");
        }
        tx.commit().await?;
    }
    super::partition::ensure(client).await?;
    check_columns(client).await?;
    if llm_added {
        // Fill the new columns of the rows stored before, when that is quick;
        // a big table is left to `ccproxy db backfill`.
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
            .await?
            .get(0);
        if rows <= super::llm::BACKFILL_AT_MIGRATE {
            let done = super::llm::backfill(client, crate::llm::PriceTable::shared()).await?;
            tracing::info!(
                rows = done.rows,
                llm = done.llm,
                "backfilled the LLM columns"
            );
        } else {
            tracing::warn!(
                rows,
                "run `ccproxy db backfill` to fill the LLM columns of older rows"
            );
        }
    }
    Ok(applied)
}

/// The highest applied migration, `None` when none ever ran.
pub async fn current_version(client: &Client) -> Result<Option<i32>, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('ccproxy_schema_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_one("SELECT max(version) FROM ccproxy_schema_migrations", &[])
        .await?
        .get(0))
}

/// A table that exists but lacks a column the writer fills is an error that
/// names the column and the statement that fixes it.
pub async fn check_columns(client: &Client) -> Result<(), StoreError> {
    let rows = client
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'CCProxy_HttpTraces'",
            &[],
        )
        .await?;
    let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if have.is_empty() {
        return Err(StoreError::Schema(format!(
            "table {TABLE} does not exist: run `ccproxy db migrate`"
        )));
    }
    let wanted = COLUMNS
        .iter()
        .map(|(n, t)| (*n, sql_type(t)))
        .chain(std::iter::once(("created_at", "TIMESTAMP")));
    for (name, ty) in wanted {
        if !have.iter().any(|h| h == name) {
            return Err(StoreError::Schema(format!(
                "table {TABLE} has no column `{name}`: add it with \
                 ALTER TABLE {TABLE} ADD COLUMN {name} {ty}; \
                 (or drop the table and run `ccproxy db migrate`)"
            )));
        }
    }
    Ok(())
}
