//! The completeness ledger (`coverage_daily`) against the truth: for every local day from
//! `sync_from`'s to the ledger's last, and every ledger family, the units the truth served in
//! `[sync_from, cursor)`, the wear, and the status and reason `docs/coverage.md` gives them.
//!
//! What data exists, and so whether a fetched day is `not_worn` and whether the tracker had
//! synced past a day, comes from the truth. What the fleet decided about the participant
//! (a refused family, a lost consent, a dead letter, a withdrawal) comes from its own rows:
//! those decisions are judged by the tests that cause them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use fitlink_shared::coverage::{CoverageStatus, GapReason};
use fitlink_shared::domain::ParticipantState;
use fitlink_shared::families::Family;
use fitlink_shared::fetch;
use fitlink_shared::store::Database;
use fitlink_simulator::{SimConfig, truth};

use super::{Diff, History};

/// One participant's ledger and what the truth says it must hold.
pub(super) struct Ledger<'a> {
    pub db: &'a Database,
    pub sim: &'a SimConfig,
    pub id: &'a str,
    pub history: History,
    pub from: DateTime<Utc>,
    pub cursor: DateTime<Utc>,
    /// The local days the synced range touches (the days the daily tables are judged on).
    pub days: &'a [NaiveDate],
    pub version: &'a dyn Fn(&NaiveDate) -> u32,
    /// Unix minutes with a heart-rate sample, and with steps, in `[from, cursor)` (sorted).
    pub heart_rate_minutes: &'a [i64],
    pub steps_minutes: &'a [i64],
}

/// What the fleet decided about the participant.
struct Standing {
    /// The fleet has learnt the participant's zone (from a job); before, the ledger's days are
    /// UTC days, as documented.
    zone_known: bool,
    state: Option<ParticipantState>,
    purged: bool,
    refused: BTreeSet<String>,
}

impl Ledger<'_> {
    pub async fn judge(&self) -> anyhow::Result<Diff> {
        let standing = self.standing().await?;
        type Row = (
            NaiveDate,
            String,
            i64,
            i64,
            Option<i64>,
            String,
            String,
            Option<String>,
        );
        let rows: Vec<Row> = fetch!(
            self.db.exec(),
            sqlx::query_as(
                "SELECT date, family, expected, received, worn_minutes, status, reason, \
                 dead_letter_id FROM coverage_daily WHERE participant_id = $1",
            )
            .bind(self.id),
            all
        )?;
        let last_stored = rows.iter().map(|r| r.0).max();
        let stored = rows
            .into_iter()
            .map(|(date, family, e, r, worn, status, reason, dead_letter)| {
                (
                    format!("{date} {family}"),
                    text(e, r, worn, &status, &reason, dead_letter.is_some()),
                )
            })
            .collect();

        let bounds = |date: NaiveDate| {
            if standing.zone_known {
                truth::local_day_bounds_utc(self.sim, self.id, date)
            } else {
                let midnight = |d: NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
                Some((midnight(date), midnight(date.succ_opt()?)))
            }
        };
        let day_of = |at: DateTime<Utc>| {
            let utc = at.date_naive();
            [utc.pred_opt()?, utc, utc.succ_opt()?]
                .into_iter()
                .find(|d| bounds(*d).is_some_and(|(s, e)| s <= at && at < e))
        };
        let Some(first) = day_of(self.from) else {
            return Ok(Diff::compare(BTreeMap::new(), stored));
        };
        // The ledger reaches the writer's today; at least the cursor's day must be there.
        let last = last_stored
            .into_iter()
            .chain(day_of(self.cursor))
            .max()
            .unwrap_or(first);
        let latest_sync = truth::paired_devices(self.sim, self.id)
            .iter()
            .map(|d| d.last_sync_time)
            .max();
        let mut expected = BTreeMap::new();
        for date in first.iter_days().take_while(|d| *d <= last) {
            let Some((start, end)) = bounds(date) else {
                continue;
            };
            let start = start.max(self.from);
            if start >= end {
                continue;
            }
            let worn = count_in(self.heart_rate_minutes, start, end);
            let fetched = self.cursor >= end;
            for family in Family::LEDGER {
                let (units, received) = match family {
                    Family::HeartRateIntraday => (whole_minutes(start, end), worn),
                    Family::StepsIntraday => (
                        whole_minutes(start, end),
                        count_in(self.steps_minutes, start, end),
                    ),
                    _ if standing.refused.contains(family.as_str()) => (1, 0),
                    _ => (1, self.daily_units(family, date)),
                };
                let received = if standing.purged { 0 } else { received };
                let (status, reason) = rule(
                    received,
                    fetched,
                    latest_sync.is_some_and(|s| s >= end),
                    standing.refused.contains(family.as_str())
                        || (family.is_intraday()
                            && standing.state == Some(ParticipantState::IntradayNotPermitted)),
                    &standing,
                );
                let worn = (!standing.purged).then_some(worn);
                expected.insert(
                    format!("{date} {family}"),
                    text(
                        units,
                        received,
                        worn,
                        status.as_str(),
                        reason.as_str(),
                        reason == GapReason::ProviderError
                            && standing.state == Some(ParticipantState::DeadLettered),
                    ),
                );
            }
        }
        Ok(Diff::compare(expected, stored))
    }

    /// Units the truth served of a daily family on `date`, if the synced range touches it.
    fn daily_units(&self, family: Family, date: NaiveDate) -> i64 {
        if !self.days.contains(&date) {
            return 0;
        }
        let (sim, id, v) = (self.sim, self.id, (self.version)(&date));
        let legacy = matches!(self.history, History::Fitbit);
        let one = |present: bool| i64::from(present);
        match family {
            Family::Activity => one(truth::activity_day(sim, id, date, v).is_some()),
            Family::HeartRateZones if legacy => {
                one(!truth::legacy::heart_rate_zones(sim, id, date, v).is_empty())
            }
            Family::HeartRateZones => one(!truth::heart_rate_zones(sim, id, date, v).is_empty()),
            Family::RestingHeartRate => one(truth::resting_heart_rate(sim, id, date, v).is_some()),
            Family::Sleep => truth::sleep_sessions(sim, id, date, v).len() as i64,
            Family::HeartRateVariability => {
                one(truth::heart_rate_variability(sim, id, date, v).is_some())
            }
            Family::OxygenSaturation => one(truth::oxygen_saturation(sim, id, date, v).is_some()),
            Family::BreathingRate => one(truth::breathing_rate(sim, id, date, v).is_some()),
            Family::SkinTemperature if legacy => {
                one(truth::legacy::skin_temperature(sim, id, date, v).is_some())
            }
            Family::SkinTemperature => one(truth::skin_temperature(sim, id, date, v).is_some()),
            Family::ActiveZoneMinutes => {
                one(truth::active_zone_minutes(sim, id, date, v).is_some())
            }
            Family::HeartRateIntraday | Family::StepsIntraday | Family::Devices => 0,
        }
    }

    async fn standing(&self) -> anyhow::Result<Standing> {
        let row: Option<(String, Option<String>)> = fetch!(
            self.db.exec(),
            sqlx::query_as("SELECT state, time_zone FROM participants WHERE participant_id = $1")
                .bind(self.id),
            optional
        )?;
        let (state, zone) = row.unzip();
        let purged: Option<bool> = fetch!(
            self.db.exec(),
            sqlx::query_scalar(
                "SELECT purged FROM withdrawals WHERE participant_id = $1 \
                 ORDER BY withdrawn_at DESC LIMIT 1",
            )
            .bind(self.id),
            optional
        )?;
        let refused: Vec<String> = fetch!(
            self.db.exec(),
            sqlx::query_scalar("SELECT family FROM family_permissions WHERE participant_id = $1")
                .bind(self.id),
            all
        )?;
        let state = state.and_then(|s| s.parse().ok());
        Ok(Standing {
            zone_known: zone.flatten().is_some(),
            purged: state == Some(ParticipantState::Withdrawn) && purged.unwrap_or(false),
            state,
            refused: refused.into_iter().collect(),
        })
    }
}

/// `docs/coverage.md`'s rule, written out again from the document so the writer's
/// implementation is judged, not copied.
fn rule(
    received: i64,
    fetched: bool,
    synced_past: bool,
    refused: bool,
    standing: &Standing,
) -> (CoverageStatus, GapReason) {
    use ParticipantState as S;
    let status = if received > 0 && fetched {
        return (CoverageStatus::Complete, GapReason::Ok);
    } else if received > 0 {
        CoverageStatus::Partial
    } else {
        CoverageStatus::Missing
    };
    let reason =
        match standing.state {
            Some(S::Withdrawn) if standing.purged || !fetched => GapReason::Withdrawn,
            _ if refused => GapReason::NotPermitted,
            Some(
                S::Revoked | S::ConsentExpired | S::NeedsReconsent | S::ScopeMissing | S::Invited,
            ) if !fetched => GapReason::NotPermitted,
            _ if fetched => GapReason::NotWorn,
            Some(S::DeadLettered | S::ProviderDataInvalid) => GapReason::ProviderError,
            _ if !synced_past => GapReason::DeviceNotSynced,
            _ => GapReason::NotFetched,
        };
    (status, reason)
}

fn text(
    expected: i64,
    received: i64,
    worn: Option<i64>,
    status: &str,
    reason: &str,
    names_dead_letter: bool,
) -> String {
    let worn = worn.map_or_else(|| "null".to_owned(), |w| w.to_string());
    let dead_letter = if names_dead_letter {
        " dead_letter"
    } else {
        ""
    };
    format!("{expected} {received} worn {worn} {status} {reason}{dead_letter}")
}

/// Sorted, distinct Unix minutes of instants given as canonical text.
pub(super) fn minutes<'k>(instants: impl Iterator<Item = &'k String>) -> Vec<i64> {
    let set: BTreeSet<i64> = instants
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp().div_euclid(60))
        .collect();
    set.into_iter().collect()
}

/// Minutes of `minutes` whose start lies in `[start, end)`.
fn count_in(minutes: &[i64], start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    let first = minutes.partition_point(|m| m * 60 < start.timestamp());
    let past = minutes.partition_point(|m| m * 60 < end.timestamp());
    (past - first) as i64
}

fn whole_minutes(start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    let first = start + TimeDelta::seconds((60 - start.timestamp().rem_euclid(60)) % 60);
    ((end - first).num_seconds().div_euclid(60)).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_counted_by_their_start() {
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        let keys: Vec<String> = [
            "2026-11-01T04:00:00Z",
            "2026-11-01T04:00:30Z",
            "2026-11-01T04:01:00Z",
            "2026-11-02T04:59:59Z",
        ]
        .map(String::from)
        .to_vec();
        let m = minutes(keys.iter());
        assert_eq!(m.len(), 3);
        assert_eq!(
            count_in(&m, at("2026-11-01T04:00:00Z"), at("2026-11-02T05:00:00Z")),
            3
        );
        assert_eq!(
            count_in(&m, at("2026-11-01T04:01:00Z"), at("2026-11-02T04:59:00Z")),
            1
        );
        assert_eq!(
            whole_minutes(at("2026-11-01T04:00:30Z"), at("2026-11-01T04:03:00Z")),
            2
        );
    }
}
