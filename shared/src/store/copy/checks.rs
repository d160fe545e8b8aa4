//! What the copy checks before it writes anything: what is at each URL (looked at without
//! changing it), the schema, the source's writer lock, and whether a non-empty destination is
//! an interrupted copy of this source (then: where each table resumes).

use std::collections::BTreeSet;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::{
    Column, CopyError, Dialect, Kind, TABLES, Table, TablePlan, Value, bind_value, decode_row,
    select_list, settings,
};
use crate::store::{Backend, ByBackend, Database, DbError, WriterLock, redact_url};
use crate::{execute, fetch, on_backend};

/// What is at a URL, looked at without changing it (no migration, no journal-mode switch).
pub(super) enum Found {
    Nothing,
    Tables(Vec<String>),
}

pub(super) async fn look_at(url: &str) -> Result<Found, CopyError> {
    let redacted = redact_url(url);
    let failed = |e| CopyError::Sqlx(redacted.clone(), e);
    let sql = match Backend::of_url(url)? {
        Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| DbError::BadUrl(redacted.clone(), e))?;
            if !options.get_filename().exists() {
                return Ok(Found::Nothing);
            }
            // Not the store's options: those switch the file to WAL, a write to someone else's.
            let mut conn = options
                .create_if_missing(false)
                .pragma("query_only", "ON")
                .connect()
                .await
                .map_err(failed)?;
            let tables = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .fetch_all(&mut conn)
            .await;
            conn.close().await.ok();
            tables
        }
        Backend::Postgres => {
            let options = sqlx::postgres::PgConnectOptions::from_str(url)
                .map_err(|e| DbError::BadUrl(redacted.clone(), e))?;
            let mut conn = match options.connect().await {
                Ok(conn) => conn,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
                    return Ok(Found::Nothing);
                }
                Err(e) => return Err(failed(e)),
            };
            let tables = sqlx::query_scalar(
                "SELECT c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            )
            .fetch_all(&mut conn)
            .await;
            conn.close().await.ok();
            tables
        }
    };
    Ok(Found::Tables(sql.map_err(failed)?))
}

/// The database holds this release's schema: every migration applied, none unknown, every
/// described column there.
pub(super) async fn check_schema(db: &Database, side: &'static str) -> Result<(), CopyError> {
    let url = db.url().to_owned();
    let found: Vec<i64> = fetch!(
        db.exec(),
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version"),
        all
    )
    .map_err(|e| CopyError::Schema {
        side,
        url: url.clone(),
        detail: format!("no migration ledger ({e})"),
    })?;
    let migrator = match db.backend() {
        Backend::Sqlite => &crate::store::sqlite::MIGRATOR,
        Backend::Postgres => &crate::store::postgres::MIGRATOR,
    };
    let expected: Vec<i64> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    if found != expected {
        return Err(CopyError::SchemaVersion {
            side,
            url,
            found,
            expected,
        });
    }
    for t in &TABLES {
        let sql = format!(
            "SELECT {} FROM {} WHERE 1 = 0",
            select_list(t.columns.iter()),
            t.name
        );
        execute!(db.exec(), sqlx::query(AssertSqlSafe(sql))).map_err(|e| CopyError::Schema {
            side,
            url: url.clone(),
            detail: format!("table {}: {e}", t.name),
        })?;
    }
    Ok(())
}

pub(super) async fn count(db: &Database, t: &Table) -> Result<u64, CopyError> {
    let n: i64 = fetch!(
        db.exec(),
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", t.name))),
        one
    )
    .map_err(|e| CopyError::Sqlx(db.url().to_owned(), e))?;
    Ok(n.max(0) as u64)
}

/// The database a copy reads, opened read-only, its writer lock held (SQLite) while it lives.
pub struct Source {
    pub(super) db: Database,
    /// The URL as given (it may carry a password: never printed), to tell it from `--to`.
    pub(super) url: String,
    lock: Option<(WriterLock, String)>,
}

impl Source {
    /// Opens the source: it must exist and be a fitlink database of this release, and (SQLite)
    /// no writer may hold it. Nothing is written to it but its lock file.
    pub async fn open(url: &str) -> Result<Source, CopyError> {
        let redacted = redact_url(url);
        match look_at(url).await? {
            Found::Nothing => return Err(CopyError::SourceMissing(redacted)),
            Found::Tables(tables) if !tables.iter().any(|t| t == "participants") => {
                return Err(CopyError::NotFitlink {
                    side: "source",
                    url: redacted,
                    tables,
                });
            }
            Found::Tables(_) => {}
        }
        let db = Database::open_for_reading(url, &settings()).await?;
        let lock = match db.exec() {
            ByBackend::Sqlite(pool) => {
                let path = format!(
                    "{}.writer-lock",
                    pool.connect_options().get_filename().display()
                );
                Some((try_writer_lock(&path)?, path))
            }
            ByBackend::Postgres(_) => None,
        };
        check_schema(&db, "source").await?;
        Ok(Source {
            db,
            url: url.to_owned(),
            lock,
        })
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        self.db.url()
    }

    /// The writer lock this copy holds, if the backend has one: while it is held no writer can
    /// change the source. `None` (PostgreSQL): make sure no writer runs some other way.
    pub fn writer_lock(&self) -> Option<&str> {
        self.lock.as_ref().map(|(_, path)| path.as_str())
    }
}

/// The writer's lock (see `Database::writer_lock`), taken now or not at all.
fn try_writer_lock(path: &str) -> Result<WriterLock, CopyError> {
    let failed = |e| CopyError::Lock(path.to_owned(), e);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => Ok(WriterLock { _file: Some(file) }),
        Err(std::fs::TryLockError::WouldBlock) => Err(CopyError::WriterActive(path.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(failed(e)),
    }
}

/// Whether two URLs name one database (one SQLite file, or one server's database).
pub(super) fn same_database(a: &str, b: &str) -> Result<bool, CopyError> {
    let bad_url = |url: &str, e| DbError::BadUrl(redact_url(url), e);
    match (Backend::of_url(a)?, Backend::of_url(b)?) {
        (Backend::Sqlite, Backend::Sqlite) => {
            let path = |url: &str| -> Result<std::path::PathBuf, CopyError> {
                let options = SqliteConnectOptions::from_str(url).map_err(|e| bad_url(url, e))?;
                let file = options.get_filename();
                Ok(file
                    .canonicalize()
                    .or_else(|_| std::path::absolute(file))
                    .unwrap_or_else(|_| file.to_owned()))
            };
            Ok(path(a)? == path(b)?)
        }
        (Backend::Postgres, Backend::Postgres) => {
            let server = |url: &str| -> Result<(String, u16, Option<String>), CopyError> {
                let o =
                    sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| bad_url(url, e))?;
                Ok((
                    o.get_host().to_owned(),
                    o.get_port(),
                    o.get_database().map(str::to_owned),
                ))
            };
            Ok(server(a)? == server(b)?)
        }
        _ => Ok(false),
    }
}

/// Where each table resumes, after checking that the destination holds nothing the source
/// does not: its participants are the source's, no table has more rows, and each table's
/// greatest key is a row the source has, with the same values.
pub(super) async fn plan_resume(
    src: &Database,
    dest: &Database,
) -> Result<Vec<TablePlan>, CopyError> {
    let not_a_copy = |detail: String| CopyError::NotACopy {
        url: dest.url().to_owned(),
        detail,
    };
    let ids = |db: &Database| {
        let db = db.clone();
        async move {
            fetch!(
                db.exec(),
                sqlx::query_scalar::<_, String>("SELECT participant_id FROM participants"),
                all
            )
            .map(|ids| ids.into_iter().collect::<BTreeSet<String>>())
            .map_err(|e| CopyError::Sqlx(db.url().to_owned(), e))
        }
    };
    let (theirs, ours) = (ids(src).await?, ids(dest).await?);
    let extra: Vec<&String> = ours.difference(&theirs).collect();
    if !extra.is_empty() {
        let some: Vec<&str> = extra.iter().take(5).map(|s| s.as_str()).collect();
        return Err(not_a_copy(format!(
            "it has {} participant(s) the source does not ({})",
            extra.len(),
            some.join(", ")
        )));
    }
    let mut plan = Vec::new();
    for table in &TABLES {
        let source_rows = count(src, table).await?;
        let destination_rows = count(dest, table).await?;
        if destination_rows > source_rows {
            return Err(not_a_copy(format!(
                "its {} has {destination_rows} rows, the source's {source_rows}",
                table.name
            )));
        }
        let resume_after = if destination_rows == 0 {
            None
        } else {
            let key = greatest_key(dest, table).await?;
            let theirs = row_by_key(src, table, &key).await?;
            if theirs.is_none() || theirs != row_by_key(dest, table, &key).await? {
                return Err(not_a_copy(format!(
                    "its {} row with key {key:?} is {} the source",
                    table.name,
                    if theirs.is_none() {
                        "not in"
                    } else {
                        "not the same in"
                    }
                )));
            }
            Some(key)
        };
        plan.push(TablePlan {
            table,
            source_rows,
            destination_rows,
            resume_after,
        });
    }
    Ok(plan)
}

/// The table's greatest key in the copy's (bytewise) order.
async fn greatest_key(db: &Database, t: &Table) -> Result<Vec<Value>, CopyError> {
    let key: Vec<&Column> = t.key_columns().collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {} LIMIT 1",
        select_list(key.iter().copied()),
        t.name,
        Dialect::of(db).key_order(t, "DESC")
    );
    on_backend!(db.exec(), |e| {
        let row = sqlx::query(AssertSqlSafe(sql.as_str())).fetch_one(e).await;
        row.and_then(|row| decode_row!(row, key))
    })
    .map_err(|e| CopyError::Sqlx(db.url().to_owned(), e))
}

async fn row_by_key(
    db: &Database,
    t: &Table,
    key: &[Value],
) -> Result<Option<Vec<Value>>, CopyError> {
    let d = Dialect::of(db);
    let conditions: Vec<String> = t
        .key
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} = {}", d.param(i + 1)))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {}",
        select_list(t.columns.iter()),
        t.name,
        conditions.join(" AND ")
    );
    on_backend!(db.exec(), |e| {
        let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
        for value in key {
            query = bind_value!(query, value.clone());
        }
        match query.fetch_optional(e).await {
            Ok(Some(row)) => decode_row!(row, t.columns).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .map_err(|e| CopyError::Sqlx(db.url().to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_database_is_recognised() {
        assert!(same_database("sqlite://a.db", "sqlite://./a.db").unwrap());
        assert!(!same_database("sqlite://a.db", "sqlite://b.db").unwrap());
        assert!(
            same_database("postgres://u:x@h/db", "postgres://u:y@h/db?sslmode=disable").unwrap()
        );
        assert!(!same_database("postgres://u@h/db", "postgres://u@h/db2").unwrap());
        assert!(!same_database("sqlite://db", "postgres://u@h/db").unwrap());
    }
}
