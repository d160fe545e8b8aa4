//! The research database: how each role opens it, and the schema.
//!
//! Only the writer opens it for writing (invariant: one writer). Everyone else opens it with
//! `query_only`, so a bug in a reader fails loudly instead of taking the write lock.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL {0:?} is not a SQLite URL (sqlite://PATH); {1}")]
    BadUrl(String, sqlx::Error),
    #[error(
        "database {0} does not exist or is not initialised yet: start `fitlink writer` (it creates and migrates the database)"
    )]
    NotInitialised(String),
    #[error("database {0}: {1}")]
    Sqlx(String, sqlx::Error),
    #[error("database {0}: migration failed: {1}")]
    Migrate(String, sqlx::migrate::MigrateError),
}

fn options(url: &str) -> Result<SqliteConnectOptions, DbError> {
    SqliteConnectOptions::from_str(url)
        .map(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        })
        .map_err(|e| DbError::BadUrl(url.to_owned(), e))
}

/// Opens the database for the writer: creates the file if needed, WAL mode, `synchronous=NORMAL`
/// (data and cursor roll back together after a power loss; credentials get `FULL` per
/// transaction, see the writer), and applies migrations. One connection: one writer task.
pub async fn open_for_writing(url: &str) -> Result<SqlitePool, DbError> {
    let opts = options(url)?
        .create_if_missing(true)
        .synchronous(SqliteSynchronous::Normal)
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory");
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .map_err(|e| DbError::Sqlx(url.to_owned(), e))?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| DbError::Migrate(url.to_owned(), e))?;
    Ok(pool)
}

/// Opens the database for reading (dispatcher, status, checks). Fails clearly if the writer has
/// not created it yet.
pub async fn open_for_reading(url: &str) -> Result<SqlitePool, DbError> {
    let opts = options(url)?
        .create_if_missing(false)
        .pragma("query_only", "ON");
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|_| DbError::NotInitialised(url.to_owned()))?;
    let migrated: Option<(i64,)> = sqlx::query_as(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'participants'",
    )
    .fetch_optional(&pool)
    .await
    .map_err(|e| DbError::Sqlx(url.to_owned(), e))?;
    if migrated.map(|(n,)| n) != Some(1) {
        return Err(DbError::NotInitialised(url.to_owned()));
    }
    Ok(pool)
}

/// The data tables, with the column that holds each row's value, for counts and checks.
pub const DATA_TABLES: [&str; 5] = [
    "activity_summary",
    "heart_rate_summary",
    "resting_heart_rate",
    "heart_rate_intraday",
    "steps_intraday",
];
