//! The research database behind one seam: SQLite (the zero-setup default) or PostgreSQL (for
//! programs that outgrow one machine), chosen by the scheme of `FITLINK_DATABASE_URL`.
//!
//! Both backends hold the same schema contract: the same tables and columns (the All of Us
//! names), the same keys, the same invariants. The code that reads and writes them is written
//! once, in portable SQL with `$N` parameters and domain types ([`UtcInstant`], dates,
//! [`SealedToken`](crate::secret::SealedToken)) that each backend stores in its own proper type
//! (canonical text in SQLite; `timestamptz`, `date`, `bytea` in PostgreSQL). A query runs on
//! whichever backend the database is with [`on_backend!`](crate::on_backend): the macro compiles
//! its body once per backend, so every query is type-checked against both drivers.
//!
//! What genuinely differs lives here and only here: opening and migrating (`sqlite.rs`,
//! `postgres.rs`), write transactions and their durability, bulk intraday inserts (multi-row
//! statements in SQLite, `UNNEST` arrays in PostgreSQL) and PostgreSQL's monthly partitions.
//! Nothing outside this module names a backend.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool};

use crate::domain::UtcInstant;
use crate::messages::IntradayPoint;

pub mod admin;
pub mod bulk;
pub mod copy;
mod minutes;
mod postgres;
mod sqlite;
mod types;
mod upsert;

pub mod testing;

pub use postgres::{months_touched, partition_name};

/// The data tables, for counts, checks and purges.
pub const DATA_TABLES: [&str; 13] = [
    "activity_summary",
    "heart_rate_summary",
    "resting_heart_rate",
    "heart_rate_intraday",
    "steps_intraday",
    "device",
    "sleep_daily_summary",
    "sleep_level",
    "heart_rate_variability_daily",
    "oxygen_saturation_daily",
    "breathing_rate_daily",
    "skin_temperature_daily",
    "active_zone_minutes_daily",
];

/// Which database engine a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names by its scheme.
    pub fn of_url(url: &str) -> Result<Backend, DbError> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(DbError::UnknownScheme(redact_url(url))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// True if several writer processes may write at once (each its own partitions of the
    /// results). SQLite takes one writer at a time: a second would only wait for the lock.
    pub fn allows_concurrent_writers(self) -> bool {
        matches!(self, Backend::Postgres)
    }
}

/// One value per backend: a pool, a connection, a transaction. Matched by
/// [`on_backend!`](crate::on_backend).
#[derive(Clone, Copy, Debug)]
pub enum ByBackend<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// Runs `$body` with `$e` bound to the backend's own executor (a pool or a connection), so the
/// same query text and binds compile against each driver. The closure-like form (`|e| body`)
/// is the one to write: rustfmt formats it; it is not a closure (the body may `.await`).
///
/// ```ignore
/// let n: i64 = on_backend!(db.exec(), |e| {
///     sqlx::query_scalar("SELECT count(*) FROM participants")
///         .fetch_one(e)
///         .await
/// })?;
/// ```
#[macro_export]
macro_rules! on_backend {
    ($exec:expr, |$e:ident| $body:expr) => {
        $crate::on_backend!($exec, $e => $body)
    };
    ($exec:expr, $e:ident => $body:expr) => {
        match $exec {
            $crate::store::ByBackend::Sqlite($e) => $body,
            $crate::store::ByBackend::Postgres($e) => $body,
        }
    };
}

/// Executes a statement with [`on_backend!`](crate::on_backend); the rows it changed.
///
/// ```ignore
/// let changed = execute!(db.exec(), sqlx::query("DELETE FROM imports WHERE import_id = $1").bind(id))?;
/// ```
#[macro_export]
macro_rules! execute {
    ($exec:expr, $query:expr) => {
        $crate::on_backend!($exec, |e| $query
            .execute(e)
            .await
            .map(|done| done.rows_affected()))
    };
}

/// Runs a query with [`on_backend!`](crate::on_backend) and fetches its one row
/// (`fetch!(exec, query, one)`), an optional row (`optional`) or every row (`all`).
#[macro_export]
macro_rules! fetch {
    ($exec:expr, $query:expr, one) => {
        $crate::on_backend!($exec, |e| $query.fetch_one(e).await)
    };
    ($exec:expr, $query:expr, optional) => {
        $crate::on_backend!($exec, |e| $query.fetch_optional(e).await)
    };
    ($exec:expr, $query:expr, all) => {
        $crate::on_backend!($exec, |e| $query.fetch_all(e).await)
    };
}

/// How a role uses the database: its pool, its timeouts, and the name it shows the server.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// Connections in the pool (PostgreSQL; a SQLite writer always has one).
    pub pool_size: u32,
    /// Statements running longer than this are cancelled by the server (PostgreSQL).
    pub statement_timeout: Option<Duration>,
    /// What `pg_stat_activity` shows for this role's connections.
    pub application_name: String,
}

impl StoreSettings {
    pub fn for_role(role: &str) -> StoreSettings {
        StoreSettings {
            pool_size: 4,
            statement_timeout: Some(Duration::from_secs(60)),
            application_name: format!("fitlink-{role}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "database URL {0:?} names no supported database: use sqlite://PATH or postgres://USER@HOST/DATABASE"
    )]
    UnknownScheme(String),
    #[error("database URL {0:?} is not valid: {1}")]
    BadUrl(String, sqlx::Error),
    #[error(
        "database {0} does not exist or is not initialised yet: start `fitlink writer` (it creates and migrates the database)"
    )]
    NotInitialised(String),
    #[error("database {0}: {1}")]
    Sqlx(String, sqlx::Error),
    #[error("database {0}: migration failed: {1}")]
    Migrate(String, sqlx::migrate::MigrateError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} is not supported by this database")]
    Unsupported(String),
}

/// A URL without its password, for errors and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or("");
            let masked = if user_info.contains(':') {
                format!("{user}:[redacted]")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// A pool on the research database, on whichever backend its URL names.
#[derive(Clone)]
pub struct Database {
    pool: ByBackend<SqlitePool, PgPool>,
    /// The URL without its password, for messages.
    url: String,
    /// Intraday months whose partitions this process knows exist (PostgreSQL), so a batch asks
    /// the catalogue only when it reaches a new month.
    partitions: Arc<Mutex<BTreeSet<postgres::Month>>>,
}

impl Database {
    /// Opens the database for the writer: creates it if needed and applies the migrations.
    pub async fn open_for_writing(
        url: &str,
        settings: &StoreSettings,
    ) -> Result<Database, DbError> {
        let pool = match Backend::of_url(url)? {
            Backend::Sqlite => ByBackend::Sqlite(sqlite::open_for_writing(url).await?),
            Backend::Postgres => {
                ByBackend::Postgres(postgres::open_for_writing(url, settings).await?)
            }
        };
        Ok(Database {
            pool,
            url: redact_url(url),
            partitions: Arc::default(),
        })
    }

    /// Opens the database for reading (dispatcher, status, checks): read-only connections, so
    /// a bug in a reader fails loudly instead of writing. Fails clearly if the writer has not
    /// created the database yet.
    pub async fn open_for_reading(
        url: &str,
        settings: &StoreSettings,
    ) -> Result<Database, DbError> {
        let pool = match Backend::of_url(url)? {
            Backend::Sqlite => ByBackend::Sqlite(sqlite::open_for_reading(url).await?),
            Backend::Postgres => {
                ByBackend::Postgres(postgres::open_for_reading(url, settings).await?)
            }
        };
        Ok(Database {
            pool,
            url: redact_url(url),
            partitions: Arc::default(),
        })
    }

    /// [`open_for_reading`](Self::open_for_reading) with the role's default settings.
    pub async fn reader(url: &str, role: &str) -> Result<Database, DbError> {
        Self::open_for_reading(url, &StoreSettings::for_role(role)).await
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            ByBackend::Sqlite(_) => Backend::Sqlite,
            ByBackend::Postgres(_) => Backend::Postgres,
        }
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The pool, for [`on_backend!`](crate::on_backend).
    pub fn exec(&self) -> ByBackend<&SqlitePool, &PgPool> {
        match &self.pool {
            ByBackend::Sqlite(p) => ByBackend::Sqlite(p),
            ByBackend::Postgres(p) => ByBackend::Postgres(p),
        }
    }

    /// The writer's connection, for one write transaction after another.
    pub async fn acquire_for_writing(&self) -> Result<WriteConnection, sqlx::Error> {
        Ok(WriteConnection(match &self.pool {
            ByBackend::Sqlite(p) => ByBackend::Sqlite(p.acquire().await?),
            ByBackend::Postgres(p) => ByBackend::Postgres(p.acquire().await?),
        }))
    }

    /// Takes the right to write for this process, waiting as long as another writer holds it.
    ///
    /// SQLite takes one writer at a time, so a writer process holds an exclusive lock on
    /// `<database file>.writer-lock` while it consumes; a second writer process waits here as
    /// the standby and takes over when the first one exits or dies (the OS releases the lock).
    /// PostgreSQL needs no such lock: each results partition has its own active writer. `None`
    /// if `shutdown` came first.
    pub async fn writer_lock(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<Option<WriterLock>, DbError> {
        match &self.pool {
            ByBackend::Postgres(_) => Ok(Some(WriterLock { _file: None })),
            ByBackend::Sqlite(pool) => {
                let path = pool.connect_options().get_filename().to_owned();
                sqlite::writer_lock(&path, shutdown)
                    .await
                    .map(|file| file.map(|f| WriterLock { _file: Some(f) }))
                    .map_err(|e| DbError::Io(format!("{}.writer-lock", path.display()), e))
            }
        }
    }

    /// Makes sure the intraday tables can take rows at every instant in `instants` (PostgreSQL
    /// creates the missing monthly partitions, each in a short transaction of its own, before
    /// the data's transaction needs them; SQLite has nothing to do).
    pub async fn prepare_intraday(
        &self,
        instants: impl Iterator<Item = UtcInstant>,
    ) -> Result<(), sqlx::Error> {
        let ByBackend::Postgres(pool) = &self.pool else {
            return Ok(());
        };
        let mut months = months_touched(instants);
        {
            let known = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            months.retain(|m| !known.contains(m));
        }
        if months.is_empty() {
            return Ok(());
        }
        postgres::ensure_partitions(pool, months.clone()).await?;
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(months);
        Ok(())
    }

    /// Closes the pool (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        match &self.pool {
            ByBackend::Sqlite(p) => p.close().await,
            ByBackend::Postgres(p) => p.close().await,
        }
    }
}

/// The right to write the database, held while it lives (see [`Database::writer_lock`]).
pub struct WriterLock {
    _file: Option<std::fs::File>,
}

/// How much a write transaction's commit must survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Data and the cursor over it: after a power loss they roll back together and the next
    /// sync fetches them again (SQLite `synchronous=NORMAL`, PostgreSQL
    /// `synchronous_commit=off`).
    Data,
    /// Credentials and decisions someone was told about: durable on disk before the commit
    /// returns (SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit=on`).
    Durable,
}

/// The writer's connection (one at a time: one writer task per process).
pub struct WriteConnection(ByBackend<PoolConnection<Sqlite>, PoolConnection<Postgres>>);

impl WriteConnection {
    /// Begins a write transaction (SQLite `BEGIN IMMEDIATE`: the write lock now, not at the
    /// first write).
    pub async fn begin(&mut self, durability: Durability) -> Result<WriteTx<'_>, sqlx::Error> {
        Ok(WriteTx(match &mut self.0 {
            ByBackend::Sqlite(c) => ByBackend::Sqlite(sqlite::begin(c, durability).await?),
            ByBackend::Postgres(c) => ByBackend::Postgres(postgres::begin(c, durability).await?),
        }))
    }

    /// After the transaction ended: puts the connection back to its everyday settings.
    pub async fn finish(self, durability: Durability) {
        if let ByBackend::Sqlite(c) = self.0 {
            sqlite::finish(c, durability).await;
        }
    }
}

/// One write transaction: everything in it commits or rolls back together.
pub struct WriteTx<'c>(ByBackend<sqlx::Transaction<'c, Sqlite>, sqlx::Transaction<'c, Postgres>>);

impl<'c> WriteTx<'c> {
    pub fn conn(&mut self) -> Conn<'_> {
        Conn(match &mut self.0 {
            ByBackend::Sqlite(t) => ByBackend::Sqlite(&mut **t),
            ByBackend::Postgres(t) => ByBackend::Postgres(&mut **t),
        })
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.0 {
            ByBackend::Sqlite(t) => t.commit().await,
            ByBackend::Postgres(t) => t.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.0 {
            ByBackend::Sqlite(t) => t.rollback().await,
            ByBackend::Postgres(t) => t.rollback().await,
        }
    }
}

/// A connection inside a write transaction.
pub struct Conn<'a>(ByBackend<&'a mut SqliteConnection, &'a mut PgConnection>);

/// An intraday table and its value column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntradayTable {
    HeartRate,
    Steps,
}

impl IntradayTable {
    pub const ALL: [IntradayTable; 2] = [IntradayTable::HeartRate, IntradayTable::Steps];

    pub fn table(self) -> &'static str {
        match self {
            IntradayTable::HeartRate => "heart_rate_intraday",
            IntradayTable::Steps => "steps_intraday",
        }
    }

    pub fn value_column(self) -> &'static str {
        match self {
            IntradayTable::HeartRate => "heart_rate_value",
            IntradayTable::Steps => "steps",
        }
    }
}

impl Conn<'_> {
    /// The connection, for [`on_backend!`](crate::on_backend).
    pub fn exec(&mut self) -> ByBackend<&mut SqliteConnection, &mut PgConnection> {
        match &mut self.0 {
            ByBackend::Sqlite(c) => ByBackend::Sqlite(&mut **c),
            ByBackend::Postgres(c) => ByBackend::Postgres(&mut **c),
        }
    }

    /// Inserts one participant's points, each at most once (`ON CONFLICT DO NOTHING`); returns
    /// the rows actually inserted. PostgreSQL needs the points' partitions to exist
    /// ([`Database::prepare_intraday`]).
    pub async fn insert_intraday(
        &mut self,
        table: IntradayTable,
        participant: &str,
        provider: &str,
        points: &[IntradayPoint],
    ) -> Result<u64, sqlx::Error> {
        if points.is_empty() {
            return Ok(0);
        }
        match &mut self.0 {
            ByBackend::Sqlite(c) => {
                sqlite::insert_intraday(c, table, participant, provider, points).await
            }
            ByBackend::Postgres(c) => {
                let conflicts = postgres::Conflicts::PlainFirst;
                postgres::insert_intraday(c, table, participant, provider, points, conflicts).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::of_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgres://postgres@127.0.0.1/fitlink").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::of_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        let err = Backend::of_url("mysql://root:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql://root:[redacted]@h/db"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn redacted_urls_keep_everything_but_the_password() {
        assert_eq!(
            redact_url("postgres://fitlink:s3cret@db.example:5432/research?sslmode=require"),
            "postgres://fitlink:[redacted]@db.example:5432/research?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(redact_url("sqlite://fitlink.db"), "sqlite://fitlink.db");
        assert_eq!(redact_url("sqlite:///tmp/a@b.db"), "sqlite:///tmp/a@b.db");
    }
}
