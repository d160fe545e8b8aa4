//! The three forms of `fitlink coverage`, each fed one ledger row at a time in key order so
//! nothing but the current day is held: CSV and JSON Lines for analysts (a row per
//! participant-day-family), text for a coordinator (a line per participant-day).

use std::collections::{BTreeSet, HashSet};
use std::io::{self, Write};

use chrono::NaiveDate;

use super::{LedgerRow, NamedParticipant};

/// The CSV header: the ledger's columns, without `updated_at` (when the writer last recomputed
/// a row says nothing about the day).
pub const CSV_HEADER: [&str; 9] = [
    "participant_id",
    "date",
    "family",
    "expected",
    "received",
    "worn_minutes",
    "status",
    "reason",
    "dead_letter_id",
];

/// Ids listed at most in one line of the text form (the rest are counted).
const IDS_LISTED: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A participant heading, then a line per local day: worn time, `complete` or the gaps.
    Text,
    /// [`CSV_HEADER`], then one row per participant-day-family; empty cells for `NULL`.
    Csv,
    /// One JSON object per line and per row, keyed by [`CSV_HEADER`]'s names; `null` for `NULL`.
    JsonLines,
}

pub(super) enum Renderer<'w, W: Write> {
    Csv(csv::Writer<&'w mut W>),
    JsonLines(&'w mut W),
    Text(Text<'w, W>),
}

impl<'w, W: Write> Renderer<'w, W> {
    /// A renderer that has written its header, if its form has one.
    pub(super) fn new(
        format: Format,
        named: Vec<NamedParticipant>,
        families: BTreeSet<&'static str>,
        gaps_only: bool,
        out: &'w mut W,
    ) -> io::Result<Self> {
        Ok(match format {
            Format::Csv => {
                let mut csv = csv::Writer::from_writer(out);
                csv.write_record(CSV_HEADER).map_err(io_error)?;
                Renderer::Csv(csv)
            }
            Format::JsonLines => Renderer::JsonLines(out),
            Format::Text => Renderer::Text(Text {
                out,
                unseen: named,
                families,
                gaps_only,
                participant: None,
                day: None,
                totals: Totals::default(),
            }),
        })
    }

    pub(super) fn row(&mut self, row: LedgerRow) -> io::Result<()> {
        match self {
            Renderer::Csv(csv) => {
                let number = |n: i64| n.to_string();
                csv.write_record([
                    row.participant_id.as_str(),
                    &row.date.to_string(),
                    &row.family,
                    &number(row.expected),
                    &number(row.received),
                    &row.worn_minutes.map(number).unwrap_or_default(),
                    &row.status,
                    &row.reason,
                    row.dead_letter_id.as_deref().unwrap_or(""),
                ])
                .map_err(io_error)
            }
            Renderer::JsonLines(out) => {
                serde_json::to_writer(&mut **out, &row)?;
                out.write_all(b"\n")
            }
            Renderer::Text(text) => text.row(row),
        }
    }

    /// Ends the output: the text form's participants without rows and its totals.
    /// `never_synced`: participants with no ledger row at all (text form, none named).
    pub(super) fn finish(self, never_synced: &[String]) -> io::Result<()> {
        match self {
            Renderer::Csv(mut csv) => csv.flush(),
            Renderer::JsonLines(out) => out.flush(),
            Renderer::Text(text) => text.finish(never_synced),
        }
    }
}

#[derive(Default)]
struct Totals {
    participants: u64,
    days: u64,
    days_with_gaps: u64,
}

/// The day being gathered: its rows arrive one family at a time.
struct Day {
    date: NaiveDate,
    worn_minutes: Option<i64>,
    /// One entry per reason (and dead letter), families in row order.
    gaps: Vec<Gap>,
}

struct Gap {
    reason: String,
    dead_letter_id: Option<String>,
    families: Vec<String>,
}

pub(super) struct Text<'w, W: Write> {
    out: &'w mut W,
    /// Participants named on the command line not met among the rows yet.
    unseen: Vec<NamedParticipant>,
    /// The families selected, to say "every family" rather than list eleven names.
    families: BTreeSet<&'static str>,
    gaps_only: bool,
    participant: Option<String>,
    day: Option<Day>,
    totals: Totals,
}

impl<W: Write> Text<'_, W> {
    fn row(&mut self, row: LedgerRow) -> io::Result<()> {
        let same_participant = self.participant.as_deref() == Some(row.participant_id.as_str());
        if !same_participant || self.day.as_ref().is_some_and(|d| d.date != row.date) {
            self.end_day()?;
        }
        if !same_participant {
            self.unseen
                .retain(|n| n.participant_id != row.participant_id);
            writeln!(self.out, "{}", row.participant_id)?;
            self.totals.participants += 1;
            self.participant = Some(row.participant_id.clone());
        }
        let day = self.day.get_or_insert_with(|| Day {
            date: row.date,
            worn_minutes: None,
            gaps: Vec::new(),
        });
        day.worn_minutes = day.worn_minutes.or(row.worn_minutes);
        if row.is_gap() {
            let gap = match day
                .gaps
                .iter_mut()
                .find(|g| g.reason == row.reason && g.dead_letter_id == row.dead_letter_id)
            {
                Some(gap) => gap,
                None => {
                    day.gaps.push(Gap {
                        reason: row.reason,
                        dead_letter_id: row.dead_letter_id,
                        families: Vec::new(),
                    });
                    day.gaps.last_mut().expect("just pushed")
                }
            };
            gap.families.push(row.family);
        }
        Ok(())
    }

    fn end_day(&mut self) -> io::Result<()> {
        let Some(day) = self.day.take() else {
            return Ok(());
        };
        self.totals.days += 1;
        let what = if day.gaps.is_empty() {
            "complete".to_owned()
        } else {
            self.totals.days_with_gaps += 1;
            let gaps: Vec<String> = day.gaps.iter().map(|g| self.describe(g)).collect();
            gaps.join("; ")
        };
        writeln!(
            self.out,
            "  {}  {:>5}  {what}",
            day.date,
            worn(day.worn_minutes)
        )
    }

    /// `not_worn: sleep, oxygen_saturation`, `provider_error (dead letter J): every family`.
    fn describe(&self, gap: &Gap) -> String {
        let dead_letter = gap
            .dead_letter_id
            .as_deref()
            .map(|id| format!(" (dead letter {id})"))
            .unwrap_or_default();
        let named: HashSet<&str> = gap.families.iter().map(String::as_str).collect();
        let families = if gap.families.len() > 1 && self.families.iter().all(|f| named.contains(f))
        {
            "every family".to_owned()
        } else {
            gap.families.join(", ")
        };
        format!("{}{dead_letter}: {families}", gap.reason)
    }

    fn finish(mut self, never_synced: &[String]) -> io::Result<()> {
        self.end_day()?;
        let named_without_rows = !self.unseen.is_empty();
        for named in std::mem::take(&mut self.unseen) {
            writeln!(self.out, "{}", named.participant_id)?;
            if named.has_ledger_rows {
                writeln!(self.out, "  no ledger days match the selection")?;
            } else {
                writeln!(
                    self.out,
                    "  no ledger days yet: never synced (the ledger starts with the participant's first sync job)"
                )?;
            }
        }
        let t = &self.totals;
        if t.participants > 0 {
            writeln!(self.out)?;
            if self.gaps_only {
                writeln!(
                    self.out,
                    "{} participant-day(s) with gaps, of {} participant(s)",
                    t.days, t.participants
                )?;
            } else {
                writeln!(
                    self.out,
                    "{} participant-day(s) of {} participant(s), {} with gaps",
                    t.days, t.participants, t.days_with_gaps
                )?;
            }
        } else if never_synced.is_empty() && !named_without_rows {
            writeln!(self.out, "no ledger days match the selection")?;
        }
        if !never_synced.is_empty() {
            writeln!(
                self.out,
                "never synced, no ledger days yet ({}): {}",
                never_synced.len(),
                listed(never_synced)
            )?;
        }
        self.out.flush()
    }
}

/// The writer's own error when writing failed (so a closed pipe is still a closed pipe).
fn io_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => io::Error::other(format!("cannot write CSV: {other:?}")),
    }
}

/// Worn time as hours and minutes (`22h05`); `-` when unknown (purged).
pub(super) fn worn(minutes: Option<i64>) -> String {
    match minutes {
        Some(m) => format!("{:02}h{:02}", m / 60, m % 60),
        None => "-".to_owned(),
    }
}

/// At most [`IDS_LISTED`] ids, then how many more.
fn listed(ids: &[String]) -> String {
    let shown = ids[..ids.len().min(IDS_LISTED)].join(", ");
    match ids.len().saturating_sub(IDS_LISTED) {
        0 => shown,
        more => format!("{shown} … and {more} more"),
    }
}
