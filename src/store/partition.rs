//! Daily range partitions of `"CCProxy_HttpTraces"` by `start_time` (UTC).
//!
//! - Partitions are named `CCProxy_HttpTraces_pYYYYMMDD` and hold one UTC day,
//!   `[D, D+1)`. The engine creates today's and the next [`DAYS_AHEAD`] days'
//!   at start and hourly; `CCProxy_HttpTraces_default` takes anything else
//!   (a spool replayed days later, a skewed clock), so no row is ever
//!   refused, and the hourly pass moves such rows into a day of their own.
//! - The primary key is `(trace_id, start_time)`: PostgreSQL requires the
//!   partition key in every unique index. Trace ids are UUIDs made by the
//!   engine that saw the flow, and a replayed row repeats its `start_time`,
//!   so `ON CONFLICT DO NOTHING` still makes a replay harmless.
//! - An unpartitioned table (an older ccproxy's, or the Python original's)
//!   is converted in place: in one transaction it is renamed to
//!   [`OLD`] (its indexes too) and the partitioned table is created beside it;
//!   then rows move in batches of [`MOVE_BATCH`], oldest first, each batch one
//!   transaction that deletes them from the old table and inserts them into
//!   the new one; progress is kept in `ccproxy_partition_conversion`. An
//!   interrupted conversion continues where it stopped at the next start (or
//!   `ccproxy db migrate`); the old table is dropped once empty.
//! - Retention drops whole partitions older than the cutoff and deletes
//!   (in batches) only inside the partition the cutoff falls in and the
//!   default partition.

use chrono::{Days, NaiveDate, NaiveDateTime, Utc};
use tokio_postgres::Client;

use super::row::TABLE;
use super::StoreError;

/// The parent table's name (unquoted).
pub const PARENT: &str = "CCProxy_HttpTraces";
/// Where an unpartitioned table waits while its rows move.
pub const OLD: &str = "CCProxy_HttpTraces_unpartitioned";
/// The default partition.
pub const DEFAULT: &str = "CCProxy_HttpTraces_default";
/// Days of partitions created ahead of today.
pub const DAYS_AHEAD: u64 = 7;
/// Rows per conversion transaction.
pub const MOVE_BATCH: i64 = 20_000;
/// Rows per retention `DELETE`.
pub const DELETE_BATCH: u64 = 5_000;
/// Session lock serialising partition changes between engines.
const LOCK_KEY: i64 = 0x0063_6370_7061_7274;

/// The indexes of the seed (and ours), recreated on the partitioned table.
const INDEXES: &[&str] = &[
    "start_time",
    "host",
    "traffic_type",
    "created_at",
    "status_code",
    "capture_host",
];

/// What [`ensure`] found or did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Partitions created now.
    pub created: usize,
    /// Rows moved from an unpartitioned table now.
    pub moved: u64,
    /// True when an unpartitioned table was converted (or finished converting) now.
    pub converted: bool,
}

/// The name of the partition holding `day`.
pub fn partition_name(day: NaiveDate) -> String {
    format!("{PARENT}_p{}", day.format("%Y%m%d"))
}

fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// `r` (plain table), `p` (partitioned), or `None` when there is no table.
async fn kind(client: &Client, name: &str) -> Result<Option<i8>, StoreError> {
    let row = client
        .query_opt(
            "SELECT c.relkind::\"char\" FROM pg_class c \
             WHERE c.oid = to_regclass(quote_ident($1))",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| r.get::<_, i8>(0)))
}

/// Whether the table is partitioned (`None`: no table).
pub async fn is_partitioned(client: &Client) -> Result<Option<bool>, StoreError> {
    Ok(kind(client, PARENT).await?.map(|k| k == b'p' as i8))
}

/// Make the table partitioned (converting an unpartitioned one, resuming an
/// interrupted conversion), and make sure today's and the next
/// [`DAYS_AHEAD`] days' partitions exist. Safe to run from many engines at
/// once: one works, the others wait on a lock and then find it done.
pub async fn ensure(client: &mut Client) -> Result<Report, StoreError> {
    ensure_limited(client, None).await
}

/// [`ensure`], stopping a conversion after `max_batches` batches (as an
/// interruption would); the next [`ensure`] continues it.
pub async fn ensure_limited(
    client: &mut Client,
    max_batches: Option<usize>,
) -> Result<Report, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = ensure_locked(client, max_batches).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn ensure_locked(
    client: &mut Client,
    max_batches: Option<usize>,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    if kind(client, PARENT).await? == Some(b'r' as i8) {
        start_conversion(client, &mut report).await?;
    }
    if kind(client, OLD).await?.is_some() {
        report.moved = move_rows(client, max_batches).await?;
        report.converted = true;
    }
    let from = today();
    let to = from + Days::new(DAYS_AHEAD);
    report.created += ensure_days(client, from, to).await?;
    report.created += split_default(client).await?;
    Ok(report)
}

/// Rename the plain table aside and create the partitioned one, in one transaction.
async fn start_conversion(client: &mut Client, report: &mut Report) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    let old = q(OLD);
    tx.batch_execute(&format!(
        "ALTER TABLE {TABLE} RENAME TO {old};
         DO $$
         DECLARE r record;
         BEGIN
             FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                      WHERE i.indrelid = to_regclass('{old}')
             LOOP
                 EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, 'old_' || r.relname);
             END LOOP;
         END
         $$;
         CREATE TABLE {TABLE} (LIKE {old} INCLUDING ALL EXCLUDING INDEXES EXCLUDING STATISTICS)
             PARTITION BY RANGE (start_time);
         ALTER TABLE {TABLE} ALTER COLUMN start_time SET NOT NULL;
         ALTER TABLE {TABLE} ADD PRIMARY KEY (trace_id, start_time);
         CREATE TABLE {default} PARTITION OF {TABLE} DEFAULT;
         CREATE TABLE IF NOT EXISTS ccproxy_partition_conversion (
             id            INT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
             started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
             rows_total    BIGINT NOT NULL,
             rows_moved    BIGINT NOT NULL DEFAULT 0,
             moved_through TIMESTAMP,
             updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
             finished_at   TIMESTAMPTZ
         );
         DELETE FROM ccproxy_partition_conversion;
         INSERT INTO ccproxy_partition_conversion (rows_total) SELECT count(*) FROM {old};",
        default = q(DEFAULT),
    ))
    .await?;
    for col in INDEXES {
        let has: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2)",
                &[&PARENT, col],
            )
            .await?
            .get(0);
        if has {
            tx.batch_execute(&format!(
                "CREATE INDEX {} ON {TABLE} ({col})",
                q(&format!("{PARENT}_{col}_idx"))
            ))
            .await?;
        }
    }
    // Every day the old rows cover gets its partition before they move.
    let days = tx
        .query(
            &format!(
                "SELECT DISTINCT (date_trunc('day', start_time))::date FROM {old} \
                 WHERE start_time IS NOT NULL"
            ),
            &[],
        )
        .await?;
    for d in days {
        if create_day(&tx, d.get(0)).await? {
            report.created += 1;
        }
    }
    tx.commit().await?;
    tracing::info!("converting {TABLE} to daily partitions; rows move in batches");
    Ok(())
}

/// The columns both tables have, in the old table's order.
async fn common_columns(client: &Client) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT o.column_name::text FROM information_schema.columns o
             JOIN information_schema.columns n
               ON n.table_schema = o.table_schema AND n.column_name = o.column_name AND n.table_name = $2
             WHERE o.table_schema = current_schema() AND o.table_name = $1
             ORDER BY o.ordinal_position",
            &[&OLD, &PARENT],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Move the old table's rows over, batch by batch, then drop it.
async fn move_rows(client: &mut Client, max_batches: Option<usize>) -> Result<u64, StoreError> {
    let cols = common_columns(client).await?;
    let list = cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
    let select = cols
        .iter()
        .map(|c| {
            if c == "start_time" {
                "COALESCE(start_time, created_at, now() AT TIME ZONE 'UTC')".to_string()
            } else {
                q(c)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let old = q(OLD);
    let stmt = client
        .prepare(&format!(
            "WITH moved AS (
                 DELETE FROM {old} WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM {old} ORDER BY start_time LIMIT {MOVE_BATCH}))
                 RETURNING *
             ), ins AS (
                 INSERT INTO {TABLE} ({list}) SELECT {select} FROM moved ON CONFLICT DO NOTHING
             )
             SELECT count(*), max(start_time) FROM moved"
        ))
        .await?;
    let mut total = 0u64;
    let mut batches = 0;
    loop {
        if max_batches.is_some_and(|m| batches >= m) {
            return Ok(total);
        }
        batches += 1;
        let tx = client.transaction().await?;
        let row = tx.query_one(&stmt, &[]).await?;
        let n: i64 = row.get(0);
        let through: Option<NaiveDateTime> = row.get(1);
        tx.execute(
            "UPDATE ccproxy_partition_conversion SET rows_moved = rows_moved + $1, \
             moved_through = COALESCE($2, moved_through), updated_at = now()",
            &[&n, &through],
        )
        .await?;
        if n == 0 {
            tx.batch_execute(&format!(
                "DROP TABLE {old};
                 UPDATE ccproxy_partition_conversion SET finished_at = now(), updated_at = now();"
            ))
            .await?;
            tx.commit().await?;
            tracing::info!(rows = total, "{TABLE} is now partitioned by day");
            return Ok(total);
        }
        tx.commit().await?;
        total += n as u64;
        tracing::debug!(rows = total, "moving rows into partitions");
    }
}

/// Create the partition for `day` if missing; rows of that day already in
/// the default partition move into it. True when it was created.
async fn create_day(
    client: &impl tokio_postgres::GenericClient,
    day: NaiveDate,
) -> Result<bool, StoreError> {
    let name = partition_name(day);
    let exists: bool = client
        .query_one("SELECT to_regclass(quote_ident($1)) IS NOT NULL", &[&name])
        .await?
        .get(0);
    if exists {
        return Ok(false);
    }
    let lo = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    let hi = lo + chrono::Duration::days(1);
    let (p, d) = (q(&name), q(DEFAULT));
    let bounds = format!(
        "FROM ('{}') TO ('{}')",
        lo.format("%Y-%m-%d %H:%M:%S"),
        hi.format("%Y-%m-%d %H:%M:%S")
    );
    let in_default: bool = client
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {d} WHERE start_time >= $1 AND start_time < $2)"
            ),
            &[&lo, &hi],
        )
        .await?
        .get(0);
    if in_default {
        client
            .batch_execute(&format!(
                "CREATE TABLE {p} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE);
                 WITH moved AS (DELETE FROM {d} WHERE start_time >= '{lo}' AND start_time < '{hi}' RETURNING *)
                 INSERT INTO {p} SELECT * FROM moved;
                 ALTER TABLE {TABLE} ATTACH PARTITION {p} FOR VALUES {bounds};"
            ))
            .await?;
    } else {
        client
            .batch_execute(&format!(
                "CREATE TABLE {p} PARTITION OF {TABLE} FOR VALUES {bounds}"
            ))
            .await?;
    }
    Ok(true)
}

/// Partitions for every day in `[from, to]`; how many were created.
pub async fn ensure_days(
    client: &mut Client,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<usize, StoreError> {
    if is_partitioned(client).await? != Some(true) {
        return Ok(0);
    }
    let mut created = 0;
    let mut day = from;
    while day <= to {
        let tx = client.transaction().await?;
        if create_day(&tx, day).await? {
            created += 1;
        }
        tx.commit().await?;
        day = day + Days::new(1);
    }
    Ok(created)
}

/// Give each day found in the default partition a partition of its own.
async fn split_default(client: &mut Client) -> Result<usize, StoreError> {
    let days = client
        .query(
            &format!(
                "SELECT DISTINCT (date_trunc('day', start_time))::date FROM {}",
                q(DEFAULT)
            ),
            &[],
        )
        .await?;
    let mut created = 0;
    for d in days {
        let tx = client.transaction().await?;
        if create_day(&tx, d.get(0)).await? {
            created += 1;
        }
        tx.commit().await?;
    }
    Ok(created)
}

/// Hourly upkeep: partitions ahead, the default partition split by day.
pub async fn maintain(client: &mut Client) -> Result<Report, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = async {
        let from = today();
        let mut r = Report {
            created: ensure_days(client, from, from + Days::new(DAYS_AHEAD)).await?,
            ..Report::default()
        };
        if is_partitioned(client).await? == Some(true) {
            r.created += split_default(client).await?;
        }
        Ok(r)
    }
    .await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

/// One daily partition as `db status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    /// `None` for the default partition.
    pub day: Option<NaiveDate>,
}

/// The partitions of the table, oldest day first, the default last.
pub async fn list(client: &Client) -> Result<Vec<Partition>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = to_regclass(quote_ident($1)) ORDER BY 1",
            &[&PARENT],
        )
        .await?;
    let prefix = format!("{PARENT}_p");
    let mut out: Vec<Partition> = rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let day = name
                .strip_prefix(&prefix)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok());
            Partition { name, day }
        })
        .collect();
    out.sort_by_key(|p| (p.day.is_none(), p.day));
    Ok(out)
}

/// Progress of an unfinished conversion: (rows moved, rows at the start).
pub async fn conversion_progress(client: &Client) -> Result<Option<(i64, i64)>, StoreError> {
    if kind(client, OLD).await?.is_none() {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT rows_moved, rows_total FROM ccproxy_partition_conversion",
            &[],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Retention: drop the partitions wholly older than `cutoff`, and delete
/// older rows only inside the partition `cutoff` falls in, the default
/// partition and a table still being converted. Returns the rows removed.
pub async fn prune_before(client: &Client, cutoff: NaiveDateTime) -> Result<u64, StoreError> {
    let mut total = 0;
    let mut delete_in: Vec<String> = Vec::new();
    match kind(client, PARENT).await? {
        Some(k) if k == b'p' as i8 => {
            for p in list(client).await? {
                match p.day {
                    Some(day) => {
                        let hi = (day + Days::new(1))
                            .and_hms_opt(0, 0, 0)
                            .unwrap_or_default();
                        let lo = day.and_hms_opt(0, 0, 0).unwrap_or_default();
                        if hi <= cutoff {
                            let n: i64 = client
                                .query_one(&format!("SELECT count(*) FROM {}", q(&p.name)), &[])
                                .await?
                                .get(0);
                            client
                                .batch_execute(&format!("DROP TABLE IF EXISTS {}", q(&p.name)))
                                .await?;
                            total += n as u64;
                        } else if lo < cutoff {
                            delete_in.push(p.name);
                        }
                    }
                    None => delete_in.push(p.name),
                }
            }
        }
        Some(_) => delete_in.push(PARENT.to_string()),
        None => {}
    }
    if kind(client, OLD).await?.is_some() {
        delete_in.push(OLD.to_string());
    }
    for table in delete_in {
        let t = q(&table);
        let stmt = client
            .prepare(&format!(
                "DELETE FROM {t} WHERE ctid = ANY(ARRAY(\
                 SELECT ctid FROM {t} WHERE start_time < $1 LIMIT {DELETE_BATCH}))"
            ))
            .await?;
        loop {
            let n = client.execute(&stmt, &[&cutoff]).await?;
            total += n;
            if n < DELETE_BATCH {
                break;
            }
        }
    }
    Ok(total)
}
