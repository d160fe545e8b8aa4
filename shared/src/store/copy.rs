//! `fitlink store copy`: a whole database into another, e.g. a laptop pilot's SQLite file into
//! the program's PostgreSQL. Written against the store seam, so any direction works; what
//! differs per backend (the SQL dialect of a keyset scan, the writer lock, how to look at a
//! database without changing it) stays in this module.
//!
//! - **Tables by kind.** Every table is described once ([`TABLES`]): columns with a [`Kind`]
//!   each, and the primary key. Rows are read by kind into [`Value`]s, written by kind, and
//!   checksummed from the same values, so a `timestamptz` and its SQLite text compare equal.
//! - **Resumable.** Each table is copied in primary-key order, bytewise (PostgreSQL text keys
//!   are compared `COLLATE "C"`, SQLite's order), in batches of one durable destination
//!   transaction each, inserted `ON CONFLICT DO NOTHING`. A rerun starts each table after the
//!   destination's greatest key, so a copy killed at any moment finishes on the next run with
//!   nothing lost or twice. Parents (`participants`) come before children.
//! - **Never a merge.** A destination that holds anything not in the source (another
//!   participant, a table of another program, a row the source does not have) is refused
//!   before anything is written.
//! - **No writer on the source.** A SQLite source's writer lock (`<db>.writer-lock`) is taken
//!   without waiting and held for the whole copy: a running writer makes the copy refuse, a
//!   writer started meanwhile waits. (PostgreSQL has no such lock; the caller asks the broker.)
//! - **Verified.** [`Copier::compare`] counts every table on both sides and compares a SHA-256
//!   per participant per table over the rows in key order (module `verify`).

mod checks;
mod tables;
mod verify;

use std::time::{Duration, Instant as Clock};

use chrono::NaiveDate;
use futures_util::TryStreamExt;
use sqlx::AssertSqlSafe;

pub use checks::Source;
pub use tables::{Column, Kind, PARTICIPANT, TABLES, Table, table};
pub use verify::{Comparison, TableComparison};

use checks::{Found, check_schema, count, look_at, plan_resume, same_database};

use super::{Backend, Database, DbError, Durability, StoreSettings, redact_url};
use crate::domain::UtcInstant;
use crate::on_backend;
use crate::secret::SealedToken;

/// Most parameters in one insert statement (under SQLite's 32766 and PostgreSQL's 65535).
const MAX_PARAMS: usize = 30_000;
/// Most rows in one insert statement.
const MAX_ROWS: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("source {0} does not exist: check the path or URL given to --from")]
    SourceMissing(String),
    #[error(
        "{side} {url} is not a fitlink database: it has no participants table ({})",
        list(tables)
    )]
    NotFitlink {
        side: &'static str,
        url: String,
        tables: Vec<String>,
    },
    #[error(
        "{side} {url} has schema versions {found:?} but this fitlink has {expected:?}: copy with \
         the fitlink release that wrote it, or run this release's writer on it once first"
    )]
    SchemaVersion {
        side: &'static str,
        url: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("{side} {url} does not have the tables of a fitlink database: {detail}")]
    Schema {
        side: &'static str,
        url: String,
        detail: String,
    },
    #[error(
        "a writer is running on the source: its writer lock {0} is held. Stop every \
         `fitlink writer` of this database, then run the copy again"
    )]
    WriterActive(String),
    #[error("cannot take the source's writer lock {0}: {1}")]
    Lock(String, std::io::Error),
    #[error("--from and --to name the same database ({0})")]
    SameDatabase(String),
    #[error(
        "destination {url} holds tables of another program ({}): copy into a new or empty \
         database",
        list(tables)
    )]
    ForeignDestination { url: String, tables: Vec<String> },
    #[error(
        "destination {url} is not an interrupted copy of this source: {detail}. Nothing was \
         written; copy into a new, empty database (or drop this one and copy again)"
    )]
    NotACopy { url: String, detail: String },
    #[error("database {0}: {1}")]
    Sqlx(String, sqlx::Error),
}

fn list(items: &[String]) -> String {
    match items.len() {
        0 => "no tables".to_owned(),
        n if n <= 6 => format!("tables: {}", items.join(", ")),
        n => format!("{n} tables: {}, …", items[..6].join(", ")),
    }
}

/// One column's value, decoded by its [`Kind`]; `None` is SQL `NULL`.
#[derive(Clone, PartialEq)]
pub enum Value {
    Text(Option<String>),
    Instant(Option<UtcInstant>),
    Date(Option<NaiveDate>),
    Integer(Option<i64>),
    Real(Option<f64>),
    Bool(Option<bool>),
    Sealed(Option<SealedToken>),
}

impl Value {
    fn instant(&self) -> Option<UtcInstant> {
        match self {
            Value::Instant(at) => *at,
            _ => None,
        }
    }

    /// The value's canonical text, the same from either backend: instants `…Z`, dates
    /// `YYYY-MM-DD`, booleans `t`/`f`, sealed tokens their base64, text with `\`, tab and line
    /// breaks escaped, `NULL` as `\N`.
    pub fn canonical(&self, out: &mut String) {
        use std::fmt::Write as _;
        let null = match self {
            Value::Text(Some(s)) => {
                super::bulk::push_copy_text(out, s);
                false
            }
            Value::Instant(Some(at)) => write!(out, "{at}").is_err(),
            Value::Date(Some(d)) => write!(out, "{}", d.format("%Y-%m-%d")).is_err(),
            Value::Integer(Some(n)) => write!(out, "{n}").is_err(),
            Value::Real(Some(x)) => write!(out, "{x:?}").is_err(),
            Value::Bool(Some(b)) => {
                out.push(if *b { 't' } else { 'f' });
                false
            }
            Value::Sealed(Some(token)) => {
                out.push_str(token.as_str());
                false
            }
            _ => true,
        };
        if null {
            out.push_str("\\N");
        }
    }
}

/// Keys are printed in refusals; a sealed token never is.
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Value::Sealed(Some(_)) = self {
            return f.write_str("[sealed]");
        }
        let mut text = String::new();
        self.canonical(&mut text);
        f.write_str(&text)
    }
}

/// Decodes a row's columns by kind (inside [`on_backend!`], so once per backend).
macro_rules! decode_row {
    ($row:expr, $columns:expr) => {
        (|| -> Result<Vec<Value>, sqlx::Error> {
            use sqlx::Row as _;
            let row = &$row;
            let mut values = Vec::with_capacity($columns.len());
            for (i, column) in $columns.iter().enumerate() {
                values.push(match column.kind {
                    Kind::Text => Value::Text(row.try_get(i)?),
                    Kind::Instant => Value::Instant(row.try_get(i)?),
                    Kind::Date => Value::Date(row.try_get(i)?),
                    Kind::Integer => Value::Integer(row.try_get(i)?),
                    Kind::Real => Value::Real(row.try_get(i)?),
                    Kind::Bool => Value::Bool(row.try_get(i)?),
                    Kind::Sealed => Value::Sealed(row.try_get(i)?),
                });
            }
            Ok(values)
        })()
    };
}
pub(crate) use decode_row;

/// Binds a value by its kind (a `NULL` keeps its column's type).
macro_rules! bind_value {
    ($query:expr, $value:expr) => {
        match $value {
            Value::Text(v) => $query.bind(v),
            Value::Instant(v) => $query.bind(v),
            Value::Date(v) => $query.bind(v),
            Value::Integer(v) => $query.bind(v),
            Value::Real(v) => $query.bind(v),
            Value::Bool(v) => $query.bind(v),
            Value::Sealed(v) => $query.bind(v),
        }
    };
}
pub(crate) use bind_value;

/// The SQL of one backend. The statements differ only in parameter markers and in comparing
/// text keys bytewise, the order both sides must agree on for a resumable keyset scan.
#[derive(Clone, Copy)]
struct Dialect(Backend);

impl Dialect {
    fn of(db: &Database) -> Dialect {
        Dialect(db.backend())
    }

    /// Anonymous `?` in SQLite (numbered ones cost a name lookup per parameter), `$n` in
    /// PostgreSQL.
    fn param(self, n: usize) -> String {
        match self.0 {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${n}"),
        }
    }

    /// A key column in byte order: PostgreSQL text otherwise follows the database's collation.
    fn bytewise(self, c: &Column) -> String {
        match (self.0, c.kind) {
            (Backend::Postgres, Kind::Text) => format!("{} COLLATE \"C\"", c.name),
            _ => c.name.to_owned(),
        }
    }

    fn key_order(self, t: &Table, direction: &str) -> String {
        let keys: Vec<String> = t
            .key_columns()
            .map(|c| format!("{} {direction}", self.bytewise(c)))
            .collect();
        keys.join(", ")
    }
}

/// A column as selected: integers as `BIGINT` (PostgreSQL has `integer` columns too).
fn select_expr(c: &Column) -> String {
    match c.kind {
        Kind::Integer => format!("CAST({0} AS BIGINT) AS {0}", c.name),
        _ => c.name.to_owned(),
    }
}

fn select_list<'a>(columns: impl Iterator<Item = &'a Column>) -> String {
    columns.map(select_expr).collect::<Vec<_>>().join(", ")
}

/// Every row in key order, after a key if `after`.
fn scan_sql(d: Dialect, t: &Table, after: bool) -> String {
    let mut sql = format!("SELECT {} FROM {}", select_list(t.columns.iter()), t.name);
    if after {
        let keys: Vec<String> = t.key_columns().map(|c| d.bytewise(c)).collect();
        let params: Vec<String> = (1..=t.key.len()).map(|n| d.param(n)).collect();
        sql.push_str(&format!(
            " WHERE ({}) > ({})",
            keys.join(", "),
            params.join(", ")
        ));
    }
    sql.push_str(&format!(" ORDER BY {}", d.key_order(t, "ASC")));
    sql
}

fn insert_sql(d: Dialect, t: &Table, rows: usize) -> String {
    let names: Vec<&str> = t.columns.iter().map(|c| c.name).collect();
    let mut sql = format!("INSERT INTO {} ({}) VALUES ", t.name, names.join(", "));
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> = t
            .columns
            .iter()
            .map(|_| {
                n += 1;
                d.param(n)
            })
            .collect();
        sql.push_str(&format!("({})", params.join(", ")));
    }
    sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", t.key.join(", ")));
    sql
}

fn rows_per_statement(t: &Table) -> usize {
    (MAX_PARAMS / t.columns.len()).clamp(1, MAX_ROWS)
}

/// The settings of the copy's connections: no statement timeout (a scan of a big table is one
/// long statement).
fn settings() -> StoreSettings {
    let mut settings = StoreSettings::for_role("store-copy");
    settings.statement_timeout = None;
    settings
}

/// One table's part of a copy.
#[derive(Debug)]
pub struct TablePlan {
    pub table: &'static Table,
    pub source_rows: u64,
    /// Rows already in the destination when the copy started (an interrupted copy's).
    pub destination_rows: u64,
    /// The destination's greatest key: the scan resumes after it.
    resume_after: Option<Vec<Value>>,
}

/// How far a table's copy is, after each batch and at its end.
#[derive(Debug)]
pub struct Progress<'a> {
    pub table: &'a str,
    /// Rows of the table in the destination now.
    pub done: u64,
    /// Rows of the table in the source.
    pub total: u64,
    /// Rows this run wrote.
    pub copied: u64,
    pub elapsed: Duration,
    pub finished: bool,
}

/// A copy from a [`Source`] into a destination opened with the writer's open (created and
/// migrated if new; PostgreSQL partitions made for the months copied).
pub struct Copier {
    source: Source,
    dest: Database,
    plan: Vec<TablePlan>,
    resuming: bool,
}

impl Copier {
    /// Checks the destination (new, empty, or an interrupted copy of this source: anything
    /// else is refused before a write), then opens it for writing.
    pub async fn open(source: Source, to: &str) -> Result<Copier, CopyError> {
        let redacted = redact_url(to);
        if same_database(&source.url, to)? {
            return Err(CopyError::SameDatabase(redacted));
        }
        let resuming = match look_at(to).await? {
            Found::Nothing => false,
            Found::Tables(tables) if tables.is_empty() => false,
            Found::Tables(tables) if tables.iter().any(|t| t == "participants") => true,
            Found::Tables(tables) => {
                return Err(CopyError::ForeignDestination {
                    url: redacted,
                    tables,
                });
            }
        };
        let plan = if resuming {
            let reader = Database::open_for_reading(to, &settings()).await?;
            let plan = match check_schema(&reader, "destination").await {
                Ok(()) => plan_resume(&source.db, &reader).await,
                Err(e) => Err(e),
            };
            reader.close().await;
            plan?
        } else {
            let mut plan = Vec::new();
            for table in &TABLES {
                plan.push(TablePlan {
                    table,
                    source_rows: count(&source.db, table).await?,
                    destination_rows: 0,
                    resume_after: None,
                });
            }
            plan
        };
        let dest = Database::open_for_writing(to, &settings()).await?;
        Ok(Copier {
            source,
            dest,
            plan,
            resuming,
        })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The destination's URL, without its password.
    pub fn destination_url(&self) -> &str {
        self.dest.url()
    }

    /// Whether the destination already held part of this copy.
    pub fn resuming(&self) -> bool {
        self.resuming
    }

    pub fn plan(&self) -> &[TablePlan] {
        &self.plan
    }

    /// Copies the rest of table `index` of the [`plan`](Self::plan) in batches of
    /// `batch_size` rows, telling `progress` after each; the rows written.
    pub async fn copy_table(
        &self,
        index: usize,
        batch_size: usize,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<u64, CopyError> {
        let plan = &self.plan[index];
        let table = plan.table;
        let batch_size = batch_size.max(1);
        let src = &self.source.db;
        let read_failed = |e| CopyError::Sqlx(src.url().to_owned(), e);
        let sql = scan_sql(Dialect::of(src), table, plan.resume_after.is_some());
        let started = Clock::now();
        let mut copied = 0;
        let mut report = |copied: u64, finished: bool| {
            progress(&Progress {
                table: table.name,
                done: plan.destination_rows + copied,
                total: plan.source_rows,
                copied,
                elapsed: started.elapsed(),
                finished,
            })
        };
        let mut batch = Vec::with_capacity(batch_size);
        on_backend!(src.exec(), |e| {
            let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
            for value in plan.resume_after.iter().flatten() {
                query = bind_value!(query, value.clone());
            }
            let mut rows = query.fetch(e);
            while let Some(row) = rows.try_next().await.map_err(read_failed)? {
                batch.push(decode_row!(row, table.columns).map_err(read_failed)?);
                if batch.len() >= batch_size {
                    copied += self.write_batch(table, std::mem::take(&mut batch)).await?;
                    report(copied, false);
                }
            }
        });
        if !batch.is_empty() {
            copied += self.write_batch(table, batch).await?;
        }
        report(copied, true);
        Ok(copied)
    }

    /// One batch in one durable destination transaction; the rows inserted.
    async fn write_batch(&self, table: &Table, rows: Vec<Vec<Value>>) -> Result<u64, CopyError> {
        let dest = &self.dest;
        let failed = |e| CopyError::Sqlx(dest.url().to_owned(), e);
        if let Some(i) = table.partitioned_on() {
            dest.prepare_intraday(rows.iter().filter_map(|r| r[i].instant()))
                .await
                .map_err(failed)?;
        }
        let d = Dialect::of(dest);
        let per_statement = rows_per_statement(table);
        let mut conn = dest.acquire_for_writing().await.map_err(failed)?;
        let mut tx = conn.begin(Durability::Durable).await.map_err(failed)?;
        let mut written = 0;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_statement).collect();
            let sql = insert_sql(d, table, chunk.len());
            let mut c = tx.conn();
            written += on_backend!(c.exec(), |e| {
                let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
                for value in chunk.into_iter().flatten() {
                    query = bind_value!(query, value);
                }
                query.execute(e).await.map(|done| done.rows_affected())
            })
            .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        conn.finish(Durability::Durable).await;
        Ok(written)
    }

    /// Counts and checksums both sides, table by table.
    pub async fn compare(&self) -> Result<Comparison, CopyError> {
        verify::compare(&self.source.db, &self.dest).await
    }

    pub async fn close(self) {
        self.dest.close().await;
        self.source.db.close().await;
    }
}

#[cfg(test)]
mod tests;
