//! The copy's proof: every table counted on both sides, and a SHA-256 per participant per table
//! over that participant's rows in primary-key order, each row its canonical text (the same
//! [`Value`]s the copy wrote, so a `timestamptz` and its SQLite text hash alike).

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::AssertSqlSafe;

use super::{CopyError, Dialect, Kind, PARTICIPANT, TABLES, Table, Value, decode_row, select_list};
use crate::on_backend;
use crate::store::Database;

/// One participant's rows of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sum {
    pub rows: u64,
    pub sha256: [u8; 32],
}

/// A table's sums by participant (`""` for `imports`, which names none).
type TableSums = BTreeMap<String, Sum>;

/// Each participant's rows in key order: the participant first (in the database's own order,
/// which keeps each participant's rows together), then the rest of the key bytewise.
fn checksum_sql(d: Dialect, t: &Table) -> String {
    let mut order: Vec<String> = Vec::new();
    if t.has_participant() {
        order.push(PARTICIPANT.to_owned());
    }
    order.extend(
        t.key_columns()
            .filter(|c| c.name != PARTICIPANT)
            .map(|c| d.bytewise(c)),
    );
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        select_list(t.columns.iter()),
        t.name,
        order.join(", ")
    )
}

/// One row's canonical text: the values' texts, tab-separated, ending in a newline.
pub(super) fn canonical_row(values: &[Value], out: &mut String) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        v.canonical(out);
    }
    out.push('\n');
}

async fn table_sums(db: &Database, t: &Table) -> Result<TableSums, CopyError> {
    let sql = checksum_sql(Dialect::of(db), t);
    let participant = t.columns.iter().position(|c| c.name == PARTICIPANT);
    let mut hashers: BTreeMap<String, (u64, Sha256)> = BTreeMap::new();
    let mut line = String::new();
    let result: Result<(), sqlx::Error> = on_backend!(db.exec(), |e| {
        let mut rows = sqlx::query(AssertSqlSafe(sql.as_str())).fetch(e);
        loop {
            let values = match rows.try_next().await {
                Ok(Some(row)) => match decode_row!(row, t.columns) {
                    Ok(values) => values,
                    Err(e) => break Err(e),
                },
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let who = match participant.map(|i| &values[i]) {
                Some(Value::Text(Some(id))) => id.as_str(),
                _ => "",
            };
            line.clear();
            canonical_row(&values, &mut line);
            if !hashers.contains_key(who) {
                hashers.insert(who.to_owned(), (0, Sha256::new()));
            }
            if let Some((n, hasher)) = hashers.get_mut(who) {
                *n += 1;
                hasher.update(line.as_bytes());
            }
        }
    });
    result.map_err(|e| CopyError::Sqlx(db.url().to_owned(), e))?;
    Ok(hashers
        .into_iter()
        .map(|(who, (rows, hasher))| {
            (
                who,
                Sum {
                    rows,
                    sha256: hasher.finalize().into(),
                },
            )
        })
        .collect())
}

/// One table, both sides.
#[derive(Debug)]
pub struct TableComparison {
    pub table: &'static str,
    pub source_rows: u64,
    pub destination_rows: u64,
    /// Participants with rows on either side (`imports`: 0).
    pub participants: usize,
    /// Participants whose rows differ (count or checksum) or are on one side only; `""` is
    /// the whole of a table without participants.
    pub differing: Vec<String>,
}

impl TableComparison {
    pub fn matches(&self) -> bool {
        self.source_rows == self.destination_rows && self.differing.is_empty()
    }
}

/// Every table, both sides.
#[derive(Debug)]
pub struct Comparison {
    pub tables: Vec<TableComparison>,
    /// SHA-256 over every table's per-participant sums, per side: equal digests, equal data.
    pub source_digest: String,
    pub destination_digest: String,
}

impl Comparison {
    pub fn matches(&self) -> bool {
        self.tables.iter().all(TableComparison::matches)
            && self.source_digest == self.destination_digest
    }

    pub fn source_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.source_rows).sum()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(sums: &[(&str, TableSums)]) -> String {
    let mut hasher = Sha256::new();
    for (table, by_participant) in sums {
        for (who, sum) in by_participant {
            hasher.update(format!(
                "{table}\t{who}\t{}\t{}\n",
                sum.rows,
                hex(&sum.sha256)
            ));
        }
    }
    hex(&hasher.finalize())
}

pub(super) async fn compare(src: &Database, dest: &Database) -> Result<Comparison, CopyError> {
    let mut tables = Vec::new();
    let mut source_sums = Vec::new();
    let mut destination_sums = Vec::new();
    for t in &TABLES {
        let (ours, theirs) = tokio::try_join!(table_sums(src, t), table_sums(dest, t))?;
        let mut differing: Vec<String> = ours
            .iter()
            .filter(|(who, sum)| theirs.get(*who) != Some(sum))
            .map(|(who, _)| who.clone())
            .collect();
        differing.extend(theirs.keys().filter(|w| !ours.contains_key(*w)).cloned());
        differing.sort();
        let mut everyone: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
        everyone.sort();
        everyone.dedup();
        tables.push(TableComparison {
            table: t.name,
            source_rows: ours.values().map(|s| s.rows).sum(),
            destination_rows: theirs.values().map(|s| s.rows).sum(),
            participants: if t.has_participant() {
                everyone.len()
            } else {
                0
            },
            differing,
        });
        source_sums.push((t.name, ours));
        destination_sums.push((t.name, theirs));
    }
    Ok(Comparison {
        tables,
        source_digest: digest(&source_sums),
        destination_digest: digest(&destination_sums),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Backend;
    use crate::store::copy::table;

    #[test]
    fn rows_are_summed_per_participant_in_key_order() {
        let t = table("heart_rate_summary").unwrap();
        assert_eq!(
            checksum_sql(Dialect(Backend::Postgres), t),
            "SELECT participant_id, date, zone_name, CAST(min_heart_rate AS BIGINT) AS min_heart_rate, \
             CAST(max_heart_rate AS BIGINT) AS max_heart_rate, CAST(minute_in_zone AS BIGINT) AS minute_in_zone, \
             calorie_count, provider, updated_at FROM heart_rate_summary \
             ORDER BY participant_id, date, zone_name COLLATE \"C\""
        );
        assert!(
            checksum_sql(Dialect(Backend::Sqlite), table("imports").unwrap())
                .ends_with("ORDER BY import_id")
        );
    }
}
