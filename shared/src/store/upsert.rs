//! One statement per table to store a keyed row, written from the table's description
//! ([`copy::TABLES`](super::copy::TABLES)), so a new daily family needs its table described
//! once and its row turned into [`Value`]s, never another hand-written upsert.
//!
//! The row is inserted, or on a key conflict its other columns replaced, but only when one of
//! them changed (`IS DISTINCT FROM`, `updated_at` left out of the comparison): a re-read that
//! finds nothing new writes nothing and keeps `updated_at`, and the rows-written count says how
//! much really changed.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use sqlx::AssertSqlSafe;

use super::Conn;
use super::copy::{TABLES, Table, Value, bind_value};
use crate::on_backend;

/// The column the comparison leaves out: when the row was last written.
const WRITTEN_AT: &str = "updated_at";

static STATEMENTS: LazyLock<BTreeMap<&'static str, String>> =
    LazyLock::new(|| TABLES.iter().map(|t| (t.name, statement(t))).collect());

fn statement(table: &Table) -> String {
    statement_of_rows(table, 1)
}

/// The statement storing `rows` rows of `table` at once (`$1…` numbered row after row).
fn statement_of_rows(table: &Table, rows: usize) -> String {
    let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let params: Vec<String> = (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=names.len())
                .map(|n| format!("${}", r * names.len() + n))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect();
    let values: Vec<&str> = names
        .iter()
        .copied()
        .filter(|c| !table.key.contains(c))
        .collect();
    let set: Vec<String> = values
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let changed: Vec<String> = values
        .iter()
        .filter(|c| **c != WRITTEN_AT)
        .map(|c| format!("{t}.{c} IS DISTINCT FROM excluded.{c}", t = table.name))
        .collect();
    let conflict = if set.is_empty() {
        "DO NOTHING".to_owned()
    } else if changed.is_empty() {
        format!("DO UPDATE SET {}", set.join(", "))
    } else {
        format!(
            "DO UPDATE SET {} WHERE {}",
            set.join(", "),
            changed.join(" OR ")
        )
    };
    format!(
        "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) {conflict}",
        table.name,
        names.join(", "),
        params.join(", "),
        table.key.join(", "),
    )
}

/// Rows per multi-row statement: few statement texts to prepare, far below either backend's
/// limit on parameters.
const ROWS_PER_STATEMENT: usize = 64;

impl Conn<'_> {
    /// Stores many rows of `table` (each as [`upsert`](Self::upsert) takes it) in statements of
    /// up to [`ROWS_PER_STATEMENT`] rows; the rows written. No two rows may share a key
    /// (PostgreSQL refuses to change one row twice in a statement).
    ///
    /// # Panics
    /// As [`upsert`](Self::upsert).
    pub async fn upsert_rows(
        &mut self,
        table: &'static str,
        rows: Vec<Vec<Value>>,
    ) -> Result<u64, sqlx::Error> {
        let described = TABLES
            .iter()
            .find(|t| t.name == table)
            .unwrap_or_else(|| panic!("{table} is not described in copy::TABLES"));
        let mut written = 0;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = statement_of_rows(described, chunk.len());
            assert!(
                chunk.iter().all(|r| r.len() == described.columns.len()),
                "{table}: one value per described column"
            );
            written += on_backend!(self.exec(), |e| {
                let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
                for value in chunk.iter().flatten().cloned() {
                    query = bind_value!(query, value);
                }
                query.execute(e).await.map(|done| done.rows_affected())
            })?;
        }
        Ok(written)
    }

    /// Stores one row of `table`, its values in the order the table describes its columns;
    /// the rows written (0 when the stored row already holds these values).
    ///
    /// # Panics
    /// If `table` is not described or `values` does not match its columns: a programming
    /// error, caught by the first test that stores such a row.
    pub async fn upsert(
        &mut self,
        table: &'static str,
        values: Vec<Value>,
    ) -> Result<u64, sqlx::Error> {
        let sql = STATEMENTS
            .get(table)
            .unwrap_or_else(|| panic!("{table} is not described in copy::TABLES"));
        let described = TABLES
            .iter()
            .find(|t| t.name == table)
            .map_or(0, |t| t.columns.len());
        assert_eq!(
            values.len(),
            described,
            "{table}: one value per described column"
        );
        on_backend!(self.exec(), |e| {
            let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
            for value in values.iter().cloned() {
                query = bind_value!(query, value);
            }
            query.execute(e).await.map(|done| done.rows_affected())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daily_table_is_replaced_only_when_a_value_changed() {
        let sql = &STATEMENTS["breathing_rate_daily"];
        assert_eq!(
            sql,
            "INSERT INTO breathing_rate_daily (participant_id, date, breathing_rate, provider, \
             updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (participant_id, date) DO UPDATE \
             SET breathing_rate = excluded.breathing_rate, provider = excluded.provider, \
             updated_at = excluded.updated_at WHERE breathing_rate_daily.breathing_rate IS \
             DISTINCT FROM excluded.breathing_rate OR breathing_rate_daily.provider IS DISTINCT \
             FROM excluded.provider"
        );
    }

    #[test]
    fn many_rows_go_in_one_statement_numbered_row_after_row() {
        let table = super::super::copy::table("breathing_rate_daily").unwrap();
        let sql = statement_of_rows(table, 2);
        assert!(
            sql.contains("VALUES ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10) ON CONFLICT"),
            "{sql}"
        );
        assert_eq!(
            statement_of_rows(table, 1),
            STATEMENTS["breathing_rate_daily"]
        );
    }

    #[test]
    fn a_table_of_keys_only_is_inserted_once() {
        let sql = statement(&Table {
            name: "t",
            columns: &[super::super::copy::Column {
                name: "k",
                kind: super::super::copy::Kind::Text,
                nullable: false,
            }],
            key: &["k"],
        });
        assert!(sql.ends_with("ON CONFLICT (k) DO NOTHING"), "{sql}");
    }
}
