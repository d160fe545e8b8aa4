//! Intraday loads for `fitlink bench writer`: the writer's own insert, the alternative it was
//! measured against, and each backend's ceiling, so the bench can time them on the same rows in
//! the same run without naming a backend.
//!
//! - [`LoadMethod::Writer`]: [`Conn::insert_intraday`](super::Conn::insert_intraday), what the
//!   writer runs (SQLite multi-row `INSERT … ON CONFLICT DO NOTHING`; PostgreSQL `UNNEST`
//!   arrays, inserted plainly and again with `ON CONFLICT` only when a point is stored).
//! - [`LoadMethod::UnnestOnConflict`] (PostgreSQL): the same arrays with `ON CONFLICT DO
//!   NOTHING` every time, what the plain-first insert is measured against.
//! - [`LoadMethod::CopyThenInsert`] (PostgreSQL): `COPY` a transaction's rows into a temporary
//!   table, then one `INSERT … SELECT … ON CONFLICT DO NOTHING` per table — the other way
//!   PostgreSQL people load batches idempotently (see BENCHMARKS.md for how it compares).
//! - [`LoadMethod::Bare`]: the ceiling — rows straight into the tables with no conflict
//!   handling (SQLite multi-row `INSERT`; PostgreSQL a bare `COPY`), into a fresh schema.

use sqlx::{AssertSqlSafe, PgConnection, SqliteConnection};

use super::{
    Backend, ByBackend, Database, DbError, Durability, IntradayTable, WriteTx, postgres, sqlite,
};
use crate::messages::IntradayPoint;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMethod {
    Writer,
    UnnestOnConflict,
    CopyThenInsert,
    Bare,
}

impl LoadMethod {
    /// The methods a backend has, the writer's first.
    pub fn available(backend: Backend) -> &'static [LoadMethod] {
        match backend {
            Backend::Sqlite => &[LoadMethod::Writer, LoadMethod::Bare],
            Backend::Postgres => &[
                LoadMethod::Writer,
                LoadMethod::UnnestOnConflict,
                LoadMethod::CopyThenInsert,
                LoadMethod::Bare,
            ],
        }
    }

    /// A short name, for the bench's database of this method (`fitlink_bench_ceiling`).
    pub fn name(self) -> &'static str {
        match self {
            LoadMethod::Writer => "load_writer",
            LoadMethod::UnnestOnConflict => "load_unnest",
            LoadMethod::CopyThenInsert => "load_copy",
            LoadMethod::Bare => "ceiling",
        }
    }

    /// What the method does on this backend, for the bench's output.
    pub fn describe(self, backend: Backend) -> &'static str {
        match (self, backend) {
            (LoadMethod::Writer, Backend::Sqlite) => "writer's multi-row INSERT … ON CONFLICT",
            (LoadMethod::Writer, Backend::Postgres) => "writer's UNNEST arrays, plain first",
            (LoadMethod::UnnestOnConflict, _) => "UNNEST arrays … ON CONFLICT every time",
            (LoadMethod::CopyThenInsert, _) => "COPY to temp table + INSERT … ON CONFLICT",
            (LoadMethod::Bare, Backend::Sqlite) => "ceiling: bare multi-row INSERT",
            (LoadMethod::Bare, Backend::Postgres) => "ceiling: bare COPY",
        }
    }
}

/// One participant's points for one intraday table.
pub struct IntradayRows<'a> {
    pub table: IntradayTable,
    pub participant: &'a str,
    pub provider: &'a str,
    pub points: &'a [IntradayPoint],
}

impl Database {
    /// Loads `rows` in one data transaction by `method`; the rows written. PostgreSQL needs the
    /// partitions first ([`Database::prepare_intraday`]).
    pub async fn load_intraday(
        &self,
        method: LoadMethod,
        rows: &[IntradayRows<'_>],
    ) -> Result<u64, DbError> {
        let failed = |e| DbError::Sqlx(self.url().to_owned(), e);
        if !LoadMethod::available(self.backend()).contains(&method) {
            return Err(DbError::Unsupported(format!(
                "{method:?} loads on {}",
                self.backend().as_str()
            )));
        }
        let mut conn = self.acquire_for_writing().await.map_err(failed)?;
        let mut tx = conn.begin(Durability::Data).await.map_err(failed)?;
        let written = load(&mut tx, method, rows).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        conn.finish(Durability::Data).await;
        Ok(written)
    }
}

async fn load(
    tx: &mut WriteTx<'_>,
    method: LoadMethod,
    rows: &[IntradayRows<'_>],
) -> Result<u64, sqlx::Error> {
    let mut written = 0;
    if method == LoadMethod::Writer {
        for part in rows {
            written += tx
                .conn()
                .insert_intraday(part.table, part.participant, part.provider, part.points)
                .await?;
        }
        return Ok(written);
    }
    match &mut tx.0 {
        ByBackend::Postgres(t) if method == LoadMethod::UnnestOnConflict => {
            for part in rows {
                let conflicts = postgres::Conflicts::AlwaysSkip;
                written += postgres::insert_intraday(
                    t,
                    part.table,
                    part.participant,
                    part.provider,
                    part.points,
                    conflicts,
                )
                .await?;
            }
        }
        ByBackend::Sqlite(t) => {
            for part in rows {
                written += bare_insert(t, part).await?;
            }
        }
        // One COPY per table for the whole transaction: sqlx sends a COPY's data and its end in
        // separate writes on a socket without TCP_NODELAY, so every COPY waits out a delayed
        // ACK (~40 ms on Linux) before the server answers. Per slice that is the cost of the
        // COPY; per transaction it is noise.
        ByBackend::Postgres(t) => {
            for table in IntradayTable::ALL {
                let parts: Vec<&IntradayRows> = rows.iter().filter(|r| r.table == table).collect();
                if parts.is_empty() {
                    continue;
                }
                written += if method == LoadMethod::Bare {
                    let statement = format!(
                        "COPY {} (participant_id, datetime, utc_offset_seconds, {}, provider) \
                         FROM STDIN",
                        table.table(),
                        table.value_column()
                    );
                    copy_in(t, &statement, &parts).await?
                } else {
                    copy_then_insert(t, table, &parts).await?
                };
            }
        }
    }
    Ok(written)
}

/// SQLite's ceiling: the writer's statement shape without its conflict handling.
async fn bare_insert(
    conn: &mut SqliteConnection,
    rows: &IntradayRows<'_>,
) -> Result<u64, sqlx::Error> {
    let mut written = 0;
    for chunk in rows.points.chunks(sqlite::MAX_ROWS) {
        let sql = format!(
            "INSERT INTO {} (participant_id, datetime, utc_offset_seconds, {}, provider) VALUES {}",
            rows.table.table(),
            rows.table.value_column(),
            vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for p in chunk {
            query = query
                .bind(rows.participant)
                .bind(p.datetime.to_text())
                .bind(p.utc_offset_seconds)
                .bind(p.value)
                .bind(rows.provider);
        }
        written += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(written)
}

/// `COPY … FROM STDIN` of the rows, in PostgreSQL's text format.
async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    parts: &[&IntradayRows<'_>],
) -> Result<u64, sqlx::Error> {
    use std::fmt::Write as _;
    let points: usize = parts.iter().map(|r| r.points.len()).sum();
    let mut data = String::with_capacity(points * 64);
    for rows in parts {
        let participant = copy_text(rows.participant);
        let provider = copy_text(rows.provider);
        for p in rows.points {
            let _ = writeln!(
                data,
                "{participant}\t{}\t{}\t{}\t{provider}",
                p.datetime, p.utc_offset_seconds, p.value
            );
        }
    }
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data.into_bytes()).await?;
    copy.finish().await
}

/// The alternative to `UNNEST`: stage a table's rows in a temporary table, then insert them
/// with one statement.
async fn copy_then_insert(
    conn: &mut PgConnection,
    table: IntradayTable,
    parts: &[&IntradayRows<'_>],
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "CREATE TEMPORARY TABLE IF NOT EXISTS intraday_load (participant_id text, \
         datetime timestamptz, utc_offset_seconds integer, value integer, provider text) \
         ON COMMIT DELETE ROWS",
    )
    .execute(&mut *conn)
    .await?;
    copy_in(
        conn,
        "COPY intraday_load (participant_id, datetime, utc_offset_seconds, value, provider) \
         FROM STDIN",
        parts,
    )
    .await?;
    let written = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {} (participant_id, datetime, utc_offset_seconds, {}, provider) \
         SELECT participant_id, datetime, utc_offset_seconds, value, provider FROM intraday_load \
         ON CONFLICT (participant_id, datetime) DO NOTHING",
        table.table(),
        table.value_column()
    )))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("TRUNCATE intraday_load")
        .execute(&mut *conn)
        .await?;
    Ok(written)
}

/// A value in `COPY`'s text format: backslash, tab and line breaks escaped.
fn copy_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_copy_text(&mut out, value);
    out
}

/// Appends `value` escaped as `COPY`'s text format escapes it (also the copy's canonical text).
pub(super) fn push_copy_text(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_the_format_reserves() {
        assert_eq!(copy_text("p-1"), "p-1");
        assert_eq!(copy_text("a\tb\\c\nd\re"), "a\\tb\\\\c\\nd\\re");
    }
}
