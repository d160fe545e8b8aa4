//! `fitlink coverage`: the completeness ledger (`coverage_daily`, `docs/coverage.md`) as an
//! analyst or a coordinator reads it — one row per participant, local day and family, with how
//! much was due, how much is stored, how long the tracker was worn and why a day is not complete.
//!
//! Read-only, like `status`: the database is opened for reading and nothing is written. A whole
//! cohort's ledger is large (10,000 participants × 365 days × 11 families is 40 M rows), so the
//! rows are read in keyset pages in primary-key order and written out as they arrive: memory
//! holds one page, never the ledger. The order is the key's, `(participant_id, date, family)`,
//! compared as the database compares text (SQLite bytewise; PostgreSQL by the database's
//! collation), which lets the primary-key index serve both the order and the paging.
//!
//! What this module must not know: how the ledger is computed (the writer's job,
//! `shared::coverage::decide`). It prints the stored reasons as they are.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::Args;
use fitlink_shared::config::DatabaseArgs;
use fitlink_shared::coverage::GapReason;
use fitlink_shared::domain::ParticipantId;
pub use fitlink_shared::domain::parse_local_date;
use fitlink_shared::families::Family;
use fitlink_shared::fetch;
use fitlink_shared::store::Database;
use serde::Serialize;

mod render;

pub use render::Format;

/// Rows read per query: large enough that a 40 M-row ledger is 4,000 round trips, small enough
/// that a page is a few megabytes.
pub const PAGE_ROWS: usize = 10_000;

/// `fitlink coverage [PARTICIPANT…]`: the flags, as parsed.
#[derive(Args, Clone, Debug)]
pub struct CoverageArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Only these participants (every participant when none is named). An id that is not a
    /// participant is an error, and nothing is printed.
    pub participants: Vec<String>,
    /// First local day to print, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = parse_local_date)]
    pub since: Option<NaiveDate>,
    /// Last local day to print, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = parse_local_date)]
    pub until: Option<NaiveDate>,
    /// Only these families (repeat the flag or separate by commas: `--family sleep,activity`).
    #[arg(
        long = "family",
        value_name = "FAMILY",
        value_delimiter = ',',
        value_parser = parse_ledger_family
    )]
    pub families: Vec<Family>,
    /// Only the rows of days that are not complete (reason other than `ok`).
    #[arg(long)]
    pub gaps_only: bool,
    /// JSON Lines: one object per row, the CSV's columns as keys.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV with a header row, one row per participant, day and family.
    #[arg(long)]
    pub csv: bool,
}

/// Which ledger rows to print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// As given (trimmed), sorted and without duplicates; empty: every participant. Checked
    /// against the database before anything is printed.
    pub participants: Vec<String>,
    pub since: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
    /// Sorted and without duplicates; empty: every family of the ledger.
    pub families: Vec<Family>,
    pub gaps_only: bool,
}

impl Selection {
    /// Checks what the flags cannot check one at a time: `since <= until`. Participant ids are
    /// checked against the database ([`write_coverage`]), so one error names every unknown id,
    /// malformed or not.
    pub fn new(
        participants: &[String],
        since: Option<NaiveDate>,
        until: Option<NaiveDate>,
        families: &[Family],
        gaps_only: bool,
    ) -> Result<Selection, SelectionError> {
        if let (Some(since), Some(until)) = (since, until)
            && since > until
        {
            return Err(SelectionError::EmptyRange { since, until });
        }
        let mut ids: Vec<String> = participants.iter().map(|p| p.trim().to_owned()).collect();
        ids.sort();
        ids.dedup();
        let mut families = families.to_vec();
        families.sort();
        families.dedup();
        Ok(Selection {
            participants: ids,
            since,
            until,
            families,
            gaps_only,
        })
    }

    /// The families a row may have: the chosen ones, or the whole ledger.
    fn family_names(&self) -> Vec<&'static str> {
        let families: &[Family] = if self.families.is_empty() {
            &Family::LEDGER
        } else {
            &self.families
        };
        families.iter().map(|f| f.as_str()).collect()
    }
}

/// A selection that cannot be printed. Nothing was printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectionError {
    /// Ids that are not participants of this program (malformed, or not in the database).
    UnknownParticipants(Vec<String>),
    EmptyRange {
        since: NaiveDate,
        until: NaiveDate,
    },
}

impl fmt::Display for SelectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectionError::UnknownParticipants(ids) => write!(
                f,
                "unknown participant(s): {}; nothing was printed",
                ids.join(", ")
            ),
            SelectionError::EmptyRange { since, until } => write!(
                f,
                "--since {since} is after --until {until}: no day is in that range"
            ),
        }
    }
}

impl std::error::Error for SelectionError {}

/// A `--family` value: one of the ledger's families ([`Family::LEDGER`]), by its name.
pub fn parse_ledger_family(text: &str) -> Result<Family, String> {
    let valid = || {
        Family::LEDGER
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match Family::parse(text.trim()) {
        Some(family) if Family::LEDGER.contains(&family) => Ok(family),
        Some(family) => Err(format!(
            "{family} is not in the completeness ledger (a device row is a snapshot at a sync, \
             not a day's data); the ledger's families are: {}",
            valid()
        )),
        None => Err(format!(
            "unknown family {text:?}; the ledger's families are: {}",
            valid()
        )),
    }
}

/// One row of `coverage_daily`, as stored. `status` and `reason` stay text: the ledger's
/// vocabulary is `shared::coverage`, and a value this release does not know is still printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LedgerRow {
    pub participant_id: String,
    pub date: NaiveDate,
    pub family: String,
    pub expected: i64,
    pub received: i64,
    /// `None` once the participant's rows are purged.
    pub worn_minutes: Option<i64>,
    pub status: String,
    pub reason: String,
    /// The dead-lettered job behind a `provider_error`.
    pub dead_letter_id: Option<String>,
}

impl LedgerRow {
    /// Complete: the ledger's `ok`.
    pub fn is_gap(&self) -> bool {
        self.reason != GapReason::Ok.as_str()
    }
}

/// The primary key of the last row printed: the next page starts after it.
#[derive(Clone, Debug)]
struct Key {
    participant_id: String,
    date: NaiveDate,
    family: String,
}

/// A bound value of a page's query.
enum Value {
    Text(String),
    Date(NaiveDate),
    Integer(i64),
}

/// One page's statement: the selection's conditions, after `after` if given, `limit` rows.
/// Only fixed fragments and `$N` markers make up the text; every value is bound.
fn page_query(selection: &Selection, after: Option<&Key>, limit: usize) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let param = |values: &mut Vec<Value>, value: Value| {
        values.push(value);
        format!("${}", values.len())
    };
    if let Some(key) = after {
        let p = param(&mut values, Value::Text(key.participant_id.clone()));
        let d = param(&mut values, Value::Date(key.date));
        let f = param(&mut values, Value::Text(key.family.clone()));
        conditions.push(format!("(participant_id, date, family) > ({p}, {d}, {f})"));
    }
    if !selection.participants.is_empty() {
        let ids: Vec<String> = selection
            .participants
            .iter()
            .map(|id| param(&mut values, Value::Text(id.clone())))
            .collect();
        conditions.push(format!("participant_id IN ({})", ids.join(", ")));
    }
    if let Some(since) = selection.since {
        conditions.push(format!(
            "date >= {}",
            param(&mut values, Value::Date(since))
        ));
    }
    if let Some(until) = selection.until {
        conditions.push(format!(
            "date <= {}",
            param(&mut values, Value::Date(until))
        ));
    }
    if !selection.families.is_empty() {
        let families: Vec<String> = selection
            .families
            .iter()
            .map(|f| param(&mut values, Value::Text(f.as_str().to_owned())))
            .collect();
        conditions.push(format!("family IN ({})", families.join(", ")));
    }
    if selection.gaps_only {
        let ok = param(&mut values, Value::Text(GapReason::Ok.as_str().to_owned()));
        conditions.push(format!("reason <> {ok}"));
    }
    let limit = param(&mut values, Value::Integer(limit as i64));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT participant_id, date, family, expected, received, worn_minutes, status, reason,
            dead_letter_id
         FROM coverage_daily{filter}
         ORDER BY participant_id, date, family
         LIMIT {limit}"
    );
    (sql, values)
}

async fn read_page(
    db: &Database,
    selection: &Selection,
    after: Option<&Key>,
    limit: usize,
) -> Result<Vec<LedgerRow>, sqlx::Error> {
    let (sql, values) = page_query(selection, after, limit);
    fitlink_shared::on_backend!(db.exec(), |e| {
        let mut query = sqlx::query_as::<_, LedgerRow>(sqlx::AssertSqlSafe(sql.as_str()));
        for value in &values {
            query = match value {
                Value::Text(v) => query.bind(v.as_str()),
                Value::Date(v) => query.bind(*v),
                Value::Integer(v) => query.bind(*v),
            };
        }
        query.fetch_all(e).await
    })
}

/// A participant named on the command line, as the database knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedParticipant {
    pub participant_id: String,
    /// False for a participant who never synced: ledger rows start with the first job.
    pub has_ledger_rows: bool,
}

/// Every named participant must exist (all or nothing, as `fitlink enqueue`): the error names
/// every unknown one. One query per name: names are typed by a person.
async fn named_participants(
    db: &Database,
    selection: &Selection,
) -> anyhow::Result<Vec<NamedParticipant>> {
    let mut named = Vec::with_capacity(selection.participants.len());
    let mut unknown = Vec::new();
    for id in &selection.participants {
        // A malformed id is no participant (imports refuse them): no need to ask.
        if ParticipantId::new(id.as_str()).is_err() {
            unknown.push(id.clone());
            continue;
        }
        let found: Option<(bool,)> = fetch!(
            db.exec(),
            sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM coverage_daily c
                                WHERE c.participant_id = p.participant_id)
                 FROM participants p WHERE p.participant_id = $1",
            )
            .bind(id.as_str()),
            optional
        )
        .context("cannot read participants")?;
        match found {
            Some((has_ledger_rows,)) => named.push(NamedParticipant {
                participant_id: id.clone(),
                has_ledger_rows,
            }),
            None => unknown.push(id.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(SelectionError::UnknownParticipants(unknown).into());
    }
    Ok(named)
}

/// Participants without a single ledger row: they never synced (rows start with the first
/// job). Said at the end of the text form when no participant is named.
async fn never_synced(db: &Database) -> anyhow::Result<Vec<String>> {
    fetch!(
        db.exec(),
        sqlx::query_scalar(
            "SELECT participant_id FROM participants p
             WHERE NOT EXISTS (SELECT 1 FROM coverage_daily c
                               WHERE c.participant_id = p.participant_id)
             ORDER BY participant_id",
        ),
        all
    )
    .context("cannot read participants")
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Ledger rows (participant-day-families).
    pub rows: u64,
    /// Queries it took.
    pub pages: u64,
}

/// Writes the selected ledger rows to `out` in `format`, reading `page_rows` rows per query.
/// Unknown participants fail before anything is written.
pub async fn write_coverage(
    db: &Database,
    selection: &Selection,
    format: Format,
    page_rows: usize,
    out: &mut impl Write,
) -> anyhow::Result<Written> {
    anyhow::ensure!(page_rows > 0, "a page holds at least one row");
    let named = named_participants(db, selection).await?;
    let families: BTreeSet<&'static str> = selection.family_names().into_iter().collect();
    let mut renderer = render::Renderer::new(format, named, families, selection.gaps_only, out)?;
    let mut written = Written::default();
    let mut after: Option<Key> = None;
    loop {
        let page = read_page(db, selection, after.as_ref(), page_rows)
            .await
            .context("cannot read the completeness ledger (coverage_daily)")?;
        written.pages += 1;
        written.rows += page.len() as u64;
        let full = page.len() == page_rows;
        after = page.last().map(|row| Key {
            participant_id: row.participant_id.clone(),
            date: row.date,
            family: row.family.clone(),
        });
        for row in page {
            renderer.row(row)?;
        }
        if !full {
            break;
        }
    }
    let never_synced = if selection.participants.is_empty() && format == Format::Text {
        never_synced(db).await?
    } else {
        Vec::new()
    };
    renderer.finish(&never_synced)?;
    Ok(written)
}

/// `fitlink coverage`: the selection from the flags, printed on stdout.
pub async fn run(args: CoverageArgs) -> anyhow::Result<()> {
    let format = match (args.json, args.csv) {
        (true, _) => Format::JsonLines,
        (_, true) => Format::Csv,
        _ => Format::Text,
    };
    let selection = Selection::new(
        &args.participants,
        args.since,
        args.until,
        &args.families,
        args.gaps_only,
    )?;
    let db = args.database.open_for_reading("coverage").await?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
    let result = write_coverage(&db, &selection, format, PAGE_ROWS, &mut out).await;
    db.close().await;
    let result = result.and_then(|_| out.flush().map_err(anyhow::Error::from));
    match result {
        // `fitlink coverage --csv | head`: the reader has what it wanted.
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
