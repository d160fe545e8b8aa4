//! PostgreSQL: a server that analysts query while fitlink writes, with several writer processes
//! at once (each its own partitions of the results queue).
//!
//! - Intraday points go in as arrays, one statement per slice chunk
//!   (`INSERT … SELECT … FROM UNNEST($3::timestamptz[], …)`): one round trip and one plan for
//!   thousands of rows, tried as a plain insert first and again with `ON CONFLICT DO NOTHING`
//!   only when a point is already stored ([`insert_intraday`]).
//! - The intraday tables are range-partitioned by month on the UTC instant. A month's partition
//!   is created, in a short transaction of its own under an advisory lock (so two writers do not
//!   race on the catalogue), before the first data transaction that needs it; the data
//!   transactions themselves never take a DDL lock.
//! - Readers connect with `default_transaction_read_only=on`: a reader that tries to write fails.
//! - Data transactions commit with `synchronous_commit=off` (after a server crash, data and
//!   cursor roll back together and are fetched again); credentials and decisions someone was
//!   told about commit with `synchronous_commit=on`.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::migrate::MigrateDatabase;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres};

use super::{DbError, Durability, IntradayTable, StoreSettings, redact_url};
use crate::domain::UtcInstant;
use crate::messages::IntradayPoint;

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Most points in one array insert (bounds one statement's size, not its speed).
const MAX_ROWS: usize = 8192;

/// Any constant: the advisory lock that serialises partition creation across writers.
const PARTITION_LOCK: i64 = 0x6669_746c_696e_6b01;

/// A calendar month (UTC) of the intraday tables: one partition each.
pub type Month = (i32, u32);

fn options(url: &str, settings: &StoreSettings) -> Result<PgConnectOptions, DbError> {
    let mut opts = PgConnectOptions::from_str(url)
        .map_err(|e| DbError::BadUrl(redact_url(url), e))?
        .application_name(&settings.application_name);
    if let Some(timeout) = settings.statement_timeout {
        opts = opts.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
    }
    Ok(opts)
}

/// The writer's pool: creates the database if it does not exist, applies the migrations and
/// makes this month's and the next months' partitions.
pub(super) async fn open_for_writing(
    url: &str,
    settings: &StoreSettings,
) -> Result<PgPool, DbError> {
    let redacted = redact_url(url);
    let exists = Postgres::database_exists(url)
        .await
        .map_err(|e| DbError::Sqlx(redacted.clone(), e))?;
    if !exists {
        tracing::info!(database = %redacted, "database does not exist; creating it");
        if let Err(e) = Postgres::create_database(url).await {
            // Another writer may have created it in the meantime.
            if !Postgres::database_exists(url).await.unwrap_or(false) {
                return Err(DbError::Sqlx(redacted, e));
            }
        }
    }
    let pool = PgPoolOptions::new()
        // One connection for the writer's transactions, one for partition creation.
        .max_connections(settings.pool_size.max(2))
        .connect_with(options(url, settings)?)
        .await
        .map_err(|e| DbError::Sqlx(redacted.clone(), e))?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| DbError::Migrate(redacted.clone(), e))?;
    let now = Utc::now();
    let ahead = (0..3).map(|m| add_months(month_of(now), m)).collect();
    ensure_partitions(&pool, ahead)
        .await
        .map_err(|e| DbError::Sqlx(redacted, e))?;
    Ok(pool)
}

pub(super) async fn open_for_reading(
    url: &str,
    settings: &StoreSettings,
) -> Result<PgPool, DbError> {
    let redacted = redact_url(url);
    let opts = options(url, settings)?.options([("default_transaction_read_only", "on")]);
    let pool = PgPoolOptions::new()
        .max_connections(settings.pool_size.max(1))
        .connect_with(opts)
        .await
        .map_err(|_| DbError::NotInitialised(redacted.clone()))?;
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('participants') IS NOT NULL")
        .fetch_one(&pool)
        .await
        .map_err(|e| DbError::Sqlx(redacted.clone(), e))?;
    if !migrated {
        return Err(DbError::NotInitialised(redacted));
    }
    Ok(pool)
}

pub(super) async fn begin(
    conn: &mut PoolConnection<Postgres>,
    durability: Durability,
) -> Result<sqlx::Transaction<'_, Postgres>, sqlx::Error> {
    let mut tx = Connection::begin(&mut **conn).await?;
    let setting = match durability {
        Durability::Data => "SET LOCAL synchronous_commit = off",
        Durability::Durable => "SET LOCAL synchronous_commit = on",
    };
    sqlx::query(setting).execute(&mut *tx).await?;
    Ok(tx)
}

/// Inserts one participant's points, each at most once, inside the caller's transaction.
///
/// Points past the cursor are new in the usual case, and a plain `INSERT` of them is about 1.6×
/// faster than `ON CONFLICT DO NOTHING` (which inserts speculatively, row by row). So each chunk
/// is tried plainly under a savepoint first; a point already stored (a redelivered slice, a
/// re-read day, a writer taking over a partition) fails it with a unique violation, the
/// savepoint undoes the chunk, and it goes in again with `ON CONFLICT DO NOTHING`. The primary
/// key decides either way, so no path can store a point twice.
pub(super) async fn insert_intraday(
    conn: &mut PgConnection,
    table: IntradayTable,
    participant: &str,
    provider: &str,
    points: &[IntradayPoint],
    conflicts: Conflicts,
) -> Result<u64, sqlx::Error> {
    let insert = format!(
        "INSERT INTO {} (participant_id, datetime, utc_offset_seconds, {}, provider) \
         SELECT $1, t.datetime, t.utc_offset_seconds, t.value, $2 \
         FROM UNNEST($3::timestamptz[], $4::integer[], $5::integer[]) \
         AS t(datetime, utc_offset_seconds, value)",
        table.table(),
        table.value_column()
    );
    let skipping_stored = format!("{insert} ON CONFLICT (participant_id, datetime) DO NOTHING");
    let mut written = 0;
    for chunk in points.chunks(MAX_ROWS) {
        let instants: Vec<DateTime<Utc>> = chunk.iter().map(|p| p.datetime.get()).collect();
        let offsets: Vec<i32> = chunk.iter().map(|p| p.utc_offset_seconds).collect();
        let values = chunk
            .iter()
            .map(|p| i32::try_from(p.value))
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let run = |sql: &str| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(participant)
                .bind(provider)
                .bind(&instants[..])
                .bind(&offsets[..])
                .bind(&values[..])
        };
        if conflicts == Conflicts::AlwaysSkip {
            written += run(&skipping_stored)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            continue;
        }
        sqlx::raw_sql("SAVEPOINT intraday_chunk")
            .execute(&mut *conn)
            .await?;
        let inserted = match run(&insert).execute(&mut *conn).await {
            Ok(done) => done.rows_affected(),
            Err(e) if is_unique_violation(&e) => {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT intraday_chunk")
                    .execute(&mut *conn)
                    .await?;
                run(&skipping_stored)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
            Err(e) => return Err(e),
        };
        sqlx::raw_sql("RELEASE SAVEPOINT intraday_chunk")
            .execute(&mut *conn)
            .await?;
        written += inserted;
    }
    Ok(written)
}

/// How [`insert_intraday`] meets points already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Conflicts {
    /// The writer's way: a plain insert, and `ON CONFLICT DO NOTHING` only when it must.
    PlainFirst,
    /// `ON CONFLICT DO NOTHING` every time (the bench's comparison).
    AlwaysSkip,
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The months the instants fall in (UTC).
pub fn months_touched(instants: impl Iterator<Item = UtcInstant>) -> BTreeSet<Month> {
    instants.map(|at| month_of(at.get())).collect()
}

fn month_of(at: DateTime<Utc>) -> Month {
    (at.year(), at.month())
}

fn add_months((year, month): Month, n: u32) -> Month {
    let index = year * 12 + (month as i32 - 1) + n as i32;
    (index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
}

/// The partition of `table` that holds `month`: `heart_rate_intraday_p202611`.
pub fn partition_name(table: &str, (year, month): Month) -> String {
    format!("{table}_p{year:04}{month:02}")
}

fn first_day((year, month): Month) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN)
}

/// Creates every intraday partition for `months` that does not exist yet.
pub(super) async fn ensure_partitions(
    pool: &PgPool,
    months: BTreeSet<Month>,
) -> Result<(), sqlx::Error> {
    if months.is_empty() {
        return Ok(());
    }
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = ANY($1)",
    )
    .bind(
        IntradayTable::ALL
            .iter()
            .map(|t| t.table().to_owned())
            .collect::<Vec<_>>(),
    )
    .fetch_all(pool)
    .await?;
    let missing: Vec<(IntradayTable, Month)> = months
        .iter()
        .flat_map(|m| IntradayTable::ALL.map(|t| (t, *m)))
        .filter(|(t, m)| !existing.contains(&partition_name(t.table(), *m)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PARTITION_LOCK)
        .execute(&mut *tx)
        .await?;
    for (table, month) in missing {
        let from = first_day(month);
        let to = first_day(add_months(month, 1));
        let name = partition_name(table.table(), month);
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {} \
             FOR VALUES FROM ('{from}T00:00:00Z') TO ('{to}T00:00:00Z')",
            table.table()
        );
        sqlx::query(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
        tracing::info!(partition = %name, "intraday partition created");
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_roll_over_years() {
        assert_eq!(add_months((2026, 11), 0), (2026, 11));
        assert_eq!(add_months((2026, 11), 2), (2027, 1));
        assert_eq!(add_months((2026, 12), 1), (2027, 1));
        assert_eq!(add_months((2026, 1), 24), (2028, 1));
        assert_eq!(
            partition_name("steps_intraday", (2027, 3)),
            "steps_intraday_p202703"
        );
    }

    #[test]
    fn instants_name_their_months() {
        let at = |t: &str| UtcInstant::parse(t).unwrap();
        let months = months_touched(
            [
                at("2026-10-31T23:59:59Z"),
                at("2026-11-01T00:00:00Z"),
                at("2026-11-15T12:00:00Z"),
            ]
            .into_iter(),
        );
        assert_eq!(
            months.into_iter().collect::<Vec<_>>(),
            [(2026, 10), (2026, 11)]
        );
    }
}
