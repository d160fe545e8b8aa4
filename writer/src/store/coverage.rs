//! The completeness ledger (`coverage_daily`, `docs/coverage.md`): for each local day and data
//! family, how much is due, how much is stored, the day's wear, and why a day is not complete.
//!
//! The ledger is recomputed from what is stored, never counted up: a redelivered slice, a
//! restated day or a deletion gives the same rows as a first delivery. Each command that changes
//! what a day counts recomputes that day in its own transaction ([`Days`] says which), so the
//! ledger is never behind the data. Unchanged rows are not written (`IS DISTINCT FROM`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use fitlink_shared::coverage::{DayFacts, Standing, decide};
use fitlink_shared::domain::{
    ParticipantId, ParticipantState, UtcInstant, local_day_span, zone_or_utc,
};
use fitlink_shared::families::Family;
use fitlink_shared::fetch;
use fitlink_shared::messages::WriterCommand;
use fitlink_shared::store::IntradayTable;
use fitlink_shared::store::copy::Value;
use sqlx::AssertSqlSafe;

use super::{Applied, CommandResult, Effect, Tx};

const TABLE: &str = "coverage_daily";

/// Days of the ledger's history recomputed at most per job outcome when a participant's ledger
/// starts after `sync_from` (a database made before the ledger existed): the history fills in a
/// month per job, so no single transaction reads years of data.
const BACKFILL_DAYS: i64 = 31;

/// Which of a participant's local days a command changed.
pub(super) enum Days {
    /// The days a stored slice touched (its UTC range, through the cursor when the slice let
    /// the cursor past slices stored ahead of it, and the local days its daily families are
    /// complete for, cut in the slice's zone), or the intervals a provider deletion named.
    Touched {
        from: UtcInstant,
        to: UtcInstant,
        dates: Option<Range<NaiveDate>>,
        zone: Option<String>,
    },
    /// From the cursor's day to the writer's today: what a job's outcome or a change of
    /// standing (consent lost or given) decides for the days not fetched yet. Also fills in
    /// history the ledger is missing, a month at a time.
    Ahead,
    /// Every day since `sync_from` (a withdrawal).
    All,
}

/// Where a family's stored units are counted.
enum Source {
    /// Rows of a daily table by its local-date column (`received` is 1 for a day with a row,
    /// or the number of rows when `count_rows`: sleep sessions).
    Daily {
        table: &'static str,
        date: &'static str,
        count_rows: bool,
    },
    /// Minutes with a point.
    Intraday(IntradayTable),
}

/// Where the ledger counts `family`; `None` for a family outside the ledger.
fn source(family: Family) -> Option<Source> {
    let daily = |table, date| Source::Daily {
        table,
        date,
        count_rows: false,
    };
    Some(match family {
        Family::Activity => daily("activity_summary", "date"),
        Family::HeartRateZones => daily("heart_rate_summary", "date"),
        Family::RestingHeartRate => daily("resting_heart_rate", "date"),
        Family::HeartRateIntraday => Source::Intraday(IntradayTable::HeartRate),
        Family::StepsIntraday => Source::Intraday(IntradayTable::Steps),
        Family::Sleep => Source::Daily {
            table: "sleep_daily_summary",
            date: "sleep_date",
            count_rows: true,
        },
        Family::HeartRateVariability => daily("heart_rate_variability_daily", "date"),
        Family::OxygenSaturation => daily("oxygen_saturation_daily", "date"),
        Family::BreathingRate => daily("breathing_rate_daily", "date"),
        Family::SkinTemperature => daily("skin_temperature_daily", "date"),
        Family::ActiveZoneMinutes => daily("active_zone_minutes_daily", "date"),
        // Snapshots taken at each sync, not a day's data (`Family::LEDGER`).
        Family::Devices => return None,
    })
}

/// Rows per local day of every daily family, in one round trip: `(family, date, rows)`.
static DAILY_COUNTS: LazyLock<String> = LazyLock::new(|| {
    Family::LEDGER
        .iter()
        .filter_map(|f| match source(*f)? {
            Source::Daily { table, date, .. } => Some(format!(
                "SELECT '{family}' AS family, {date} AS day, count(*) AS n FROM {table} \
                 WHERE participant_id = $1 AND {date} >= $2 AND {date} < $3 GROUP BY {date}",
                family = f.as_str()
            )),
            Source::Intraday(_) => None,
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
});

/// What the participant's row says, for every day alike.
struct Participant {
    sync_from: UtcInstant,
    cursor: UtcInstant,
    latest_device_sync: Option<UtcInstant>,
    zone: chrono_tz::Tz,
    refused: BTreeSet<String>,
    intraday_refused: bool,
    standing: Standing,
}

/// The days a command (other than a slice, which says so itself) changed for the ledger, and
/// whose they are: the one place that says which commands move the ledger.
pub(super) fn changed_days<'c>(
    command: &'c WriterCommand,
    effect: &Effect,
) -> Option<(&'c str, Days)> {
    let ahead = |p: &'c ParticipantId| Some((p.as_str(), Days::Ahead));
    match command {
        WriterCommand::FinishJob(o) => ahead(&o.participant_id),
        WriterCommand::LinkParticipant(g) => ahead(&g.participant_id),
        WriterCommand::RecordConsentProblem(p) => ahead(&p.participant_id),
        WriterCommand::ConsentLost(l) => ahead(&l.participant_id),
        // An operator's forced sync or a replay takes a parked participant back to syncing.
        WriterCommand::RequestSync(r)
            if (r.force || r.replaces.is_some()) && matches!(effect, Effect::Granted(_)) =>
        {
            ahead(&r.participant_id)
        }
        WriterCommand::Withdraw(w) => Some((w.participant_id.as_str(), Days::All)),
        WriterCommand::DeleteProviderData(d) => {
            let from = d.intervals.iter().map(|i| i.start).min()?;
            let to = d.intervals.iter().map(|i| i.end).max()?;
            Some((
                d.participant_id.as_str(),
                Days::Touched {
                    from,
                    to,
                    dates: None,
                    zone: None,
                },
            ))
        }
        _ => None,
    }
}

impl Tx<'_> {
    /// Recomputes `participant`'s ledger rows for `days`.
    pub(super) async fn refresh_coverage(
        &mut self,
        participant: &str,
        days: Days,
        applied: &mut Applied,
    ) -> CommandResult<()> {
        let Some(p) = self.coverage_participant(participant, &days).await? else {
            return Ok(());
        };
        let first_day = p.sync_from.get().with_timezone(&p.zone).date_naive();
        let today = self.now.get().with_timezone(&p.zone).date_naive();
        let day_of = |at: UtcInstant| at.get().with_timezone(&p.zone).date_naive();
        let mut ranges = Vec::new();
        match &days {
            Days::Touched {
                from, to, dates, ..
            } => {
                let last = (to.get() - TimeDelta::seconds(1)).max(from.get());
                let mut range = day_of(*from)..succ(last.with_timezone(&p.zone).date_naive());
                if let Some(dates) = dates {
                    range = range.start.min(dates.start)..range.end.max(dates.end);
                }
                ranges.push(range);
            }
            Days::Ahead => {
                ranges.push(day_of(p.cursor)..succ(today));
                if let Some(missing) = self.missing_history(participant, first_day).await? {
                    ranges.push(missing);
                }
            }
            Days::All => ranges.push(first_day..succ(today)),
        }
        for range in ranges {
            let range = range.start.max(first_day)..range.end;
            if range.start < range.end {
                self.write_coverage(participant, &p, range, applied).await?;
            }
        }
        Ok(())
    }

    async fn coverage_participant(
        &mut self,
        participant: &str,
        days: &Days,
    ) -> CommandResult<Option<Participant>> {
        type Row = (
            String,
            UtcInstant,
            UtcInstant,
            Option<UtcInstant>,
            Option<String>,
        );
        let row: Option<Row> = fetch!(
            self.conn.exec(),
            sqlx::query_as(
                "SELECT state, sync_from, sync_cursor, latest_device_sync, time_zone \
                 FROM participants WHERE participant_id = $1",
            )
            .bind(participant),
            optional
        )?;
        let Some((state, sync_from, cursor, latest_device_sync, stored_zone)) = row else {
            return Ok(None);
        };
        let slice_zone = match days {
            Days::Touched { zone, .. } => zone.clone(),
            _ => None,
        };
        let zone = zone_or_utc(slice_zone.or(stored_zone).as_deref());
        let refused: Vec<String> = fetch!(
            self.conn.exec(),
            sqlx::query_scalar("SELECT family FROM family_permissions WHERE participant_id = $1")
                .bind(participant),
            all
        )?;
        let standing = self.standing(participant, &state).await?;
        Ok(Some(Participant {
            sync_from,
            cursor,
            latest_device_sync,
            zone,
            refused: refused.into_iter().collect(),
            intraday_refused: state == ParticipantState::IntradayNotPermitted.as_str(),
            standing,
        }))
    }

    /// Why the participant is or is not fetching new days, from their state.
    async fn standing(&mut self, participant: &str, state: &str) -> CommandResult<Standing> {
        Ok(match state.parse::<ParticipantState>().ok() {
            Some(ParticipantState::Withdrawn) => {
                let purged: Option<bool> = fetch!(
                    self.conn.exec(),
                    sqlx::query_scalar(
                        "SELECT purged FROM withdrawals WHERE participant_id = $1 \
                         ORDER BY withdrawn_at DESC LIMIT 1",
                    )
                    .bind(participant),
                    optional
                )?;
                Standing::Withdrawn {
                    purged: purged.unwrap_or(false),
                }
            }
            Some(ParticipantState::DeadLettered) => {
                let dead_letter_id: Option<String> = fetch!(
                    self.conn.exec(),
                    sqlx::query_scalar(
                        "SELECT job_id FROM sync_jobs WHERE participant_id = $1 \
                         AND outcome = 'dead_lettered' ORDER BY finished_at DESC LIMIT 1",
                    )
                    .bind(participant),
                    optional
                )?;
                Standing::ProviderError { dead_letter_id }
            }
            Some(ParticipantState::ProviderDataInvalid) => Standing::ProviderError {
                dead_letter_id: None,
            },
            Some(
                ParticipantState::Revoked
                | ParticipantState::ConsentExpired
                | ParticipantState::NeedsReconsent
                | ParticipantState::ScopeMissing
                | ParticipantState::Invited,
            ) => Standing::ConsentLost,
            _ => Standing::Syncing,
        })
    }

    /// The days before the ledger's first one, back to `sync_from`'s day, at most
    /// [`BACKFILL_DAYS`] of them (the latest first).
    async fn missing_history(
        &mut self,
        participant: &str,
        first_day: NaiveDate,
    ) -> CommandResult<Option<Range<NaiveDate>>> {
        let earliest: Option<NaiveDate> = fetch!(
            self.conn.exec(),
            sqlx::query_scalar(
                "SELECT min(date) FROM coverage_daily WHERE participant_id = $1 AND family = $2",
            )
            .bind(participant)
            .bind(Family::HeartRateIntraday.as_str()),
            one
        )?;
        Ok(earliest
            .filter(|e| *e > first_day)
            .map(|e| (e - TimeDelta::days(BACKFILL_DAYS)).max(first_day)..e))
    }

    async fn write_coverage(
        &mut self,
        participant: &str,
        p: &Participant,
        range: Range<NaiveDate>,
        applied: &mut Applied,
    ) -> CommandResult<()> {
        let spans: Vec<(NaiveDate, DateTime<Utc>, DateTime<Utc>)> = dates(&range)
            .map(|d| {
                let (start, end) = local_day_span(d, p.zone);
                (d, start.max(p.sync_from.get()), end)
            })
            .filter(|(_, start, end)| start < end)
            .collect();
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
            return Ok(());
        };
        let (from, to) = (UtcInstant::new(first.1), UtcInstant::new(last.2));
        let daily = self.daily_counts(participant, &range).await?;
        // Minutes per table and day, counted by the database; days after a table's latest
        // point hold none (the days a job outcome adds ahead of the cursor, mostly).
        let mut minutes: BTreeMap<(&str, NaiveDate), i64> = BTreeMap::new();
        for table in IntradayTable::ALL {
            let Some(latest) = self.conn.latest_point(table, participant, from, to).await? else {
                continue;
            };
            for (date, start, end) in spans.iter().filter(|s| UtcInstant::new(s.1) <= latest) {
                let (start, end) = (UtcInstant::new(*start), UtcInstant::new(*end));
                let n = self
                    .conn
                    .minutes_with_points(table, participant, start, end)
                    .await?;
                minutes.insert((table.table(), *date), n);
            }
        }
        let purged = matches!(p.standing, Standing::Withdrawn { purged: true });
        let mut rows = Vec::with_capacity(spans.len() * Family::LEDGER.len());
        for (date, start, end) in spans {
            let minutes_of = |table: IntradayTable| {
                minutes
                    .get(&(table.table(), date))
                    .copied()
                    .unwrap_or_default()
            };
            let worn = minutes_of(IntradayTable::HeartRate);
            for (family, source) in Family::LEDGER
                .iter()
                .filter_map(|f| Some((*f, source(*f)?)))
            {
                let (expected, received) = match source {
                    Source::Intraday(table) => (whole_minutes(start, end), minutes_of(table)),
                    Source::Daily { count_rows, .. } => {
                        let rows = daily
                            .get(&(family.as_str().to_owned(), date))
                            .copied()
                            .unwrap_or_default();
                        (1, if count_rows { rows } else { rows.min(1) })
                    }
                };
                let end = UtcInstant::new(end);
                let day = decide(&DayFacts {
                    received,
                    fetched: p.cursor >= end,
                    device_synced_past: p.latest_device_sync.is_some_and(|s| s >= end),
                    family_refused: p.refused.contains(family.as_str())
                        || (family.is_intraday() && p.intraday_refused),
                    standing: p.standing.clone(),
                });
                rows.push(vec![
                    Value::Text(Some(participant.to_owned())),
                    Value::Date(Some(date)),
                    Value::Text(Some(family.as_str().to_owned())),
                    Value::Integer(Some(expected)),
                    Value::Integer(Some(received)),
                    Value::Integer((!purged).then_some(worn)),
                    Value::Text(Some(day.status.as_str().to_owned())),
                    Value::Text(Some(day.reason.as_str().to_owned())),
                    Value::Text(day.dead_letter_id),
                    Value::Instant(Some(self.now)),
                ]);
            }
        }
        let written = self.conn.upsert_rows(TABLE, rows).await?;
        applied.add_rows(TABLE, written);
        Ok(())
    }

    /// Rows per `(family, date)` of the daily families in `range`.
    async fn daily_counts(
        &mut self,
        participant: &str,
        range: &Range<NaiveDate>,
    ) -> CommandResult<BTreeMap<(String, NaiveDate), i64>> {
        let rows: Vec<(String, NaiveDate, i64)> = fetch!(
            self.conn.exec(),
            sqlx::query_as(AssertSqlSafe(DAILY_COUNTS.as_str()))
                .bind(participant)
                .bind(range.start)
                .bind(range.end),
            all
        )?;
        Ok(rows.into_iter().map(|(f, d, n)| ((f, d), n)).collect())
    }
}

fn succ(d: NaiveDate) -> NaiveDate {
    d.succ_opt().unwrap_or(d)
}

fn dates(range: &Range<NaiveDate>) -> impl Iterator<Item = NaiveDate> + '_ {
    range.start.iter_days().take_while(|d| *d < range.end)
}

/// Whole minutes in `[start, end)` (a `sync_from` inside a minute does not count that minute).
fn whole_minutes(start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    let first = start.timestamp().div_euclid(60) + i64::from(start.timestamp() % 60 != 0);
    (end.timestamp().div_euclid(60) - first).max(0)
}
