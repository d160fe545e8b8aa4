//! Multi-row statements for the intraday tables, built once per row count and reused.
//!
//! One row per statement costs a round trip through sqlx and SQLite's VM per point (about 50k
//! rows/s); 100–200 rows per statement amortise that (about 10× faster). Row counts are powers
//! of two up to [`MAX_ROWS`], so a table needs at most eight statements, all of which stay in
//! sqlx's per-connection prepared-statement cache.
//!
//! Parameters are anonymous (`?`), five per row. Numbered ones (`?1` for the participant once
//! per statement) would bind fewer values, but sqlx looks every parameter's name up, and
//! SQLite's lookup is linear in the named parameters: quadratic per statement, which measured
//! as 40% of the writer's time.

use std::sync::Arc;

/// Most rows in one statement (5 parameters each, far under SQLite's parameter limit).
pub(super) const MAX_ROWS: usize = 128;
const SIZES: usize = MAX_ROWS.trailing_zeros() as usize + 1;

/// An intraday table and its value column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Intraday {
    HeartRate,
    Steps,
}

impl Intraday {
    pub(super) fn table(self) -> &'static str {
        match self {
            Intraday::HeartRate => "heart_rate_intraday",
            Intraday::Steps => "steps_intraday",
        }
    }

    fn value_column(self) -> &'static str {
        match self {
            Intraday::HeartRate => "heart_rate_value",
            Intraday::Steps => "steps",
        }
    }
}

pub(super) struct Statements {
    /// `[table][log2(rows)]`.
    intraday: [[Arc<str>; SIZES]; 2],
}

impl Statements {
    pub(super) fn new() -> Self {
        let build = |t: Intraday| std::array::from_fn(|i| intraday_insert(t, 1 << i).into());
        Self {
            intraday: [build(Intraday::HeartRate), build(Intraday::Steps)],
        }
    }

    /// The insert for exactly `rows` rows; `rows` must be a power of two ≤ [`MAX_ROWS`].
    pub(super) fn intraday(&self, table: Intraday, rows: usize) -> Arc<str> {
        debug_assert!(rows.is_power_of_two() && rows <= MAX_ROWS);
        self.intraday[table as usize][rows.trailing_zeros() as usize].clone()
    }
}

/// Splits `n` rows into chunks that have a prepared statement: full chunks of [`MAX_ROWS`], then
/// the remainder by its binary digits, largest first.
pub(super) fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    let full = n / MAX_ROWS;
    let rest = n % MAX_ROWS;
    std::iter::repeat_n(MAX_ROWS, full).chain(
        (0..SIZES)
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

fn intraday_insert(table: Intraday, rows: usize) -> String {
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
        let s = Statements::new();
        assert_eq!(
            &*s.intraday(Intraday::Steps, 2),
            "INSERT INTO steps_intraday (participant_id, datetime, utc_offset_seconds, steps, provider) \
             VALUES (?,?,?,?,?),(?,?,?,?,?) ON CONFLICT (participant_id, datetime) DO NOTHING"
        );
        let full = s.intraday(Intraday::HeartRate, MAX_ROWS);
        assert_eq!(full.matches('?').count(), 5 * MAX_ROWS);
    }
}
