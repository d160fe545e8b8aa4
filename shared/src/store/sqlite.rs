//! SQLite: one file, WAL mode, one writer connection; readers open it `query_only`.
//!
//! Intraday points go in with multi-row statements built once per row count. One row per
//! statement costs a round trip through sqlx and SQLite's VM per point (about 50k rows/s);
//! 100–200 rows per statement amortise that (about 10× faster). Row counts are powers of two up
//! to [`MAX_ROWS`], so a table needs at most eight statements, all of which stay in sqlx's
//! per-connection prepared-statement cache. Their parameters are anonymous (`?`): numbered ones
//! make sqlx look every parameter's name up, and SQLite's lookup is linear in the named
//! parameters, which measured as 40% of the writer's time.

use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, Sqlite, SqliteConnection, SqlitePool};

use super::{DbError, Durability, IntradayTable, redact_url};
use crate::messages::IntradayPoint;

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

fn options(url: &str) -> Result<SqliteConnectOptions, DbError> {
    SqliteConnectOptions::from_str(url)
        .map(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        })
        .map_err(|e| DbError::BadUrl(redact_url(url), e))
}

/// The writer's pool: creates the file if needed, `synchronous=NORMAL` (data and cursor roll
/// back together after a power loss; durable transactions switch to `FULL`, see [`begin`]),
/// and applies migrations. One connection: one writer task.
pub(super) async fn open_for_writing(url: &str) -> Result<SqlitePool, DbError> {
    let opts = options(url)?
        .create_if_missing(true)
        .synchronous(SqliteSynchronous::Normal)
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory");
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .map_err(|e| DbError::Sqlx(redact_url(url), e))?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| DbError::Migrate(redact_url(url), e))?;
    Ok(pool)
}

pub(super) async fn open_for_reading(url: &str) -> Result<SqlitePool, DbError> {
    let opts = options(url)?
        .create_if_missing(false)
        .pragma("query_only", "ON");
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|_| DbError::NotInitialised(redact_url(url)))?;
    let migrated: Option<(i64,)> = sqlx::query_as(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'participants'",
    )
    .fetch_optional(&pool)
    .await
    .map_err(|e| DbError::Sqlx(redact_url(url), e))?;
    if migrated.map(|(n,)| n) != Some(1) {
        return Err(DbError::NotInitialised(redact_url(url)));
    }
    Ok(pool)
}

/// `BEGIN IMMEDIATE`, after switching to `synchronous=FULL` for a durable transaction.
pub(super) async fn begin(
    conn: &mut PoolConnection<Sqlite>,
    durability: Durability,
) -> Result<sqlx::Transaction<'_, Sqlite>, sqlx::Error> {
    if durability == Durability::Durable {
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut **conn)
            .await?;
    }
    Connection::begin_with(&mut **conn, "BEGIN IMMEDIATE").await
}

/// Back to `synchronous=NORMAL` after a durable transaction.
pub(super) async fn finish(mut conn: PoolConnection<Sqlite>, durability: Durability) {
    if durability != Durability::Durable {
        return;
    }
    if let Err(e) = sqlx::query("PRAGMA synchronous = NORMAL")
        .execute(&mut *conn)
        .await
    {
        // The outcome stands (a commit is a commit); only the connection is suspect, so the
        // pool replaces it with a fresh one, opened with `synchronous=NORMAL`.
        tracing::warn!(error = %e, "cannot reset synchronous=NORMAL; reopening the connection");
        conn.close_on_drop();
    }
}

/// How often a standby writer tries the writer lock again.
const LOCK_POLL: Duration = Duration::from_millis(250);

/// Waits for the exclusive lock on `<database>.writer-lock` (see `Database::writer_lock`);
/// `None` if `shutdown` came first.
pub(super) async fn writer_lock(
    database: &std::path::Path,
    shutdown: &tokio_util::sync::CancellationToken,
) -> std::io::Result<Option<std::fs::File>> {
    let path = format!("{}.writer-lock", database.display());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        if !told {
            tracing::info!(lock = %path, "another writer holds the database; standing by until it stops");
            told = true;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(LOCK_POLL) => {}
        }
    }
}

/// Most rows in one statement (5 parameters each, far under SQLite's parameter limit).
pub(super) const MAX_ROWS: usize = 128;
const SIZES: usize = MAX_ROWS.trailing_zeros() as usize + 1;

struct Statements {
    /// `[table][log2(rows)]`.
    intraday: [[Arc<str>; SIZES]; 2],
}

static STATEMENTS: LazyLock<Statements> = LazyLock::new(|| {
    let build = |t: IntradayTable| std::array::from_fn(|i| intraday_insert(t, 1 << i).into());
    Statements {
        intraday: [build(IntradayTable::HeartRate), build(IntradayTable::Steps)],
    }
});

impl Statements {
    /// The insert for exactly `rows` rows; `rows` must be a power of two ≤ [`MAX_ROWS`].
    fn intraday(&self, table: IntradayTable, rows: usize) -> Arc<str> {
        debug_assert!(rows.is_power_of_two() && rows <= MAX_ROWS);
        self.intraday[table as usize][rows.trailing_zeros() as usize].clone()
    }
}

/// Splits `n` rows into chunks that have a prepared statement: full chunks of [`MAX_ROWS`], then
/// the remainder by its binary digits, largest first.
fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    let full = n / MAX_ROWS;
    let rest = n % MAX_ROWS;
    std::iter::repeat_n(MAX_ROWS, full).chain(
        (0..SIZES)
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

fn intraday_insert(table: IntradayTable, rows: usize) -> String {
    let mut sql = format!(
        "INSERT INTO {} (participant_id, datetime, utc_offset_seconds, {}, provider) VALUES ",
        table.table(),
        table.value_column()
    );
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?)");
    }
    sql.push_str(" ON CONFLICT (participant_id, datetime) DO NOTHING");
    sql
}

pub(super) async fn insert_intraday(
    conn: &mut SqliteConnection,
    table: IntradayTable,
    participant: &str,
    provider: &str,
    points: &[IntradayPoint],
) -> Result<u64, sqlx::Error> {
    let mut written = 0;
    let mut rest = points;
    // Shared, so binding them on every row copies a pointer, not the text.
    let participant: Arc<str> = Arc::from(participant);
    let provider: Arc<str> = Arc::from(provider);
    for size in chunk_sizes(points.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut query = sqlx::query(AssertSqlSafe(STATEMENTS.intraday(table, size)));
        for point in chunk {
            query = query
                .bind(participant.clone())
                .bind(point.datetime.to_text())
                .bind(point.utc_offset_seconds)
                .bind(point.value)
                .bind(provider.clone());
        }
        written += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_with_known_sizes() {
        for n in [0, 1, 2, 3, 127, 128, 129, 1000, 1440, 5000] {
            let sizes: Vec<usize> = chunk_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "{n}: {sizes:?}");
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= MAX_ROWS));
        }
        assert_eq!(chunk_sizes(1000).count(), 7 + 3); // 7×128 + 64 + 32 + 8
    }

    #[test]
    fn statements_have_one_tuple_per_row() {
        assert_eq!(
            &*STATEMENTS.intraday(IntradayTable::Steps, 2),
            "INSERT INTO steps_intraday (participant_id, datetime, utc_offset_seconds, steps, provider) \
             VALUES (?,?,?,?,?),(?,?,?,?,?) ON CONFLICT (participant_id, datetime) DO NOTHING"
        );
        let full = STATEMENTS.intraday(IntradayTable::HeartRate, MAX_ROWS);
        assert_eq!(full.matches('?').count(), 5 * MAX_ROWS);
    }
}
