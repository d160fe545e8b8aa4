//! Ledger rows for tests, written with SQL as the writer leaves them: participants and
//! `coverage_daily` rows on a throwaway database of either backend.

use chrono::NaiveDate;
use fitlink_shared::config::DatabaseArgs;
use fitlink_shared::domain::UtcInstant;
use fitlink_shared::execute;
use fitlink_shared::families::Family;
use fitlink_shared::store::testing::TestDatabase;
use fitlink_shared::store::{Backend, Database};

use super::LedgerRow;

pub(crate) fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// A migrated, empty database, and its arguments for the code under test (which opens its own
/// read-only connection).
pub(crate) async fn ledger_database(backend: Backend) -> (TestDatabase, DatabaseArgs, Database) {
    let test_db = TestDatabase::new(backend).await;
    let args = DatabaseArgs::url(test_db.url());
    let db = args.open_for_writing().await.unwrap();
    (test_db, args, db)
}

pub(crate) async fn add_participant(db: &Database, id: &str, state: &str) {
    execute!(
        db.exec(),
        sqlx::query(
            "INSERT INTO participants (participant_id, provider, state, sync_from, sync_cursor,
                created_at, updated_at)
             VALUES ($1, 'google-health', $2, '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z',
                '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z')",
        )
        .bind(id)
        .bind(state)
    )
    .unwrap();
}

/// A ledger row as the writer decides it: `ok` is a complete day, any other reason a missing
/// one; intraday families are due 1440 minutes, the others one value.
pub(crate) fn ledger_row(
    participant: &str,
    date: &str,
    family: Family,
    worn_minutes: Option<i64>,
    reason: &str,
) -> LedgerRow {
    let expected = if family.is_intraday() { 1440 } else { 1 };
    let complete = reason == "ok";
    let received = match (complete, family) {
        (false, _) => 0,
        (true, Family::HeartRateIntraday) => worn_minutes.unwrap_or(0),
        (true, _) => expected,
    };
    LedgerRow {
        participant_id: participant.into(),
        date: day(date),
        family: family.as_str().into(),
        expected,
        received,
        worn_minutes,
        status: if complete { "complete" } else { "missing" }.into(),
        reason: reason.into(),
        dead_letter_id: None,
    }
}

pub(crate) async fn add_ledger_rows(db: &Database, rows: &[LedgerRow]) {
    let updated_at = UtcInstant::parse("2026-11-10T00:00:00Z").unwrap();
    for row in rows {
        execute!(
            db.exec(),
            sqlx::query(
                "INSERT INTO coverage_daily (participant_id, date, family, expected, received,
                    worn_minutes, status, reason, dead_letter_id, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&row.participant_id)
            .bind(row.date)
            .bind(&row.family)
            .bind(row.expected)
            .bind(row.received)
            .bind(row.worn_minutes)
            .bind(&row.status)
            .bind(&row.reason)
            .bind(&row.dead_letter_id)
            .bind(updated_at)
        )
        .unwrap();
    }
}
