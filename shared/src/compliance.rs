//! Cohort compliance, as `fitlink status` and the console report it: who wore their tracker long enough on enough of the
//! last complete local days, read from the completeness ledger's `worn_minutes`
//! (`docs/coverage.md`, "Cohort compliance").
//!
//! The rule: a participant is compliant when at least `min_days` of the `window_days` local
//! days before `as_of` (`as_of` itself excluded: today is not over) have
//! `worn_minutes >= min_wear_hours × 60` on their `heart_rate_intraday` row (every family's row
//! of a day carries the same wear). Every participant not `withdrawn` is counted, whatever their
//! state: a participant whose consent was lost is not sending data, which is what a coordinator
//! needs to hear about; a participant without ledger rows in the window (never synced, or not
//! fetched) has worn it on no counted day and is not compliant.
//!
//! Two grouped queries over the window (`coverage_daily_by_family_date` serves both), not a
//! loop over participants, so a cohort of 100,000 is two index range scans.

use std::collections::BTreeMap;

use anyhow::Context as _;
use chrono::{Datelike, Days, NaiveDate};
use clap::Args;
use serde::Serialize;

use crate::coverage::GapReason;
use crate::domain::{ParticipantState, parse_local_date};
use crate::families::Family;
use crate::fetch;
use crate::store::Database;

/// Not-compliant ids listed in the report (all are counted).
pub const NOT_COMPLIANT_LISTED: usize = 50;

/// The compliance thresholds of `fitlink status`.
#[derive(Args, Clone, Debug)]
pub struct ComplianceArgs {
    /// Wear that makes a day count, in hours (0–24; fractions allowed: 9.5).
    #[arg(
        long,
        env = "FITLINK_COMPLIANCE_MIN_WEAR_HOURS",
        default_value_t = 10.0
    )]
    pub min_wear_hours: f64,
    /// Days of the window that must count.
    #[arg(long, env = "FITLINK_COMPLIANCE_MIN_DAYS", default_value_t = 4)]
    pub min_days: u32,
    /// Complete local days looked at, ending the day before --as-of.
    #[arg(long, env = "FITLINK_COMPLIANCE_WINDOW_DAYS", default_value_t = 7)]
    pub window_days: u32,
    /// The day the window ends before (YYYY-MM-DD; default: today's UTC date).
    #[arg(long, value_parser = parse_local_date)]
    pub as_of: Option<NaiveDate>,
}

impl Default for ComplianceArgs {
    fn default() -> Self {
        ComplianceArgs {
            min_wear_hours: 10.0,
            min_days: 4,
            window_days: 7,
            as_of: None,
        }
    }
}

impl ComplianceArgs {
    /// The rule these flags give on `today` (the default `--as-of`).
    pub fn rule(&self, today: NaiveDate) -> anyhow::Result<ComplianceRule> {
        ComplianceRule::new(
            self.as_of.unwrap_or(today),
            self.window_days,
            self.min_wear_hours,
            self.min_days,
        )
    }
}

/// A checked compliance rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ComplianceRule {
    as_of: NaiveDate,
    window_days: u32,
    min_wear_hours: f64,
    min_days: u32,
}

impl ComplianceRule {
    pub fn new(
        as_of: NaiveDate,
        window_days: u32,
        min_wear_hours: f64,
        min_days: u32,
    ) -> anyhow::Result<ComplianceRule> {
        anyhow::ensure!(
            window_days >= 1,
            "--window-days (FITLINK_COMPLIANCE_WINDOW_DAYS) is {window_days}: the window needs at least one day"
        );
        anyhow::ensure!(
            (1..=window_days).contains(&min_days),
            "--min-days (FITLINK_COMPLIANCE_MIN_DAYS) is {min_days}: it must be 1 to --window-days ({window_days})"
        );
        anyhow::ensure!(
            (0.0..=24.0).contains(&min_wear_hours),
            "--min-wear-hours (FITLINK_COMPLIANCE_MIN_WEAR_HOURS) is {min_wear_hours}: a day's wear is 0 to 24 hours"
        );
        anyhow::ensure!(
            as_of
                .checked_sub_days(Days::new(window_days.into()))
                .is_some_and(|first| first.year() >= 0),
            "--window-days {window_days} before --as-of {as_of} is before the first date (0000-01-01)"
        );
        Ok(ComplianceRule {
            as_of,
            window_days,
            min_wear_hours,
            min_days,
        })
    }

    /// The rule in words: `≥10 h on ≥4 of the 7 days before 2026-11-04`.
    pub fn describe(&self) -> String {
        format!(
            "\u{2265}{} h on \u{2265}{} of the {} days before {}",
            self.min_wear_hours, self.min_days, self.window_days, self.as_of
        )
    }

    /// The window's first local day.
    pub fn first_day(&self) -> NaiveDate {
        self.as_of - Days::new(self.window_days.into())
    }

    /// The window's last local day: the day before `as_of`.
    pub fn last_day(&self) -> NaiveDate {
        self.as_of - Days::new(1)
    }

    /// Whole minutes a day needs: 10 h is 600 (599 is not enough).
    pub fn min_wear_minutes(&self) -> i64 {
        (self.min_wear_hours * 60.0).ceil() as i64
    }
}

/// The cohort's compliance, as `status --json` reports it (`compliance`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Compliance {
    pub as_of: NaiveDate,
    pub window_days: u32,
    /// The window, inclusive: `as_of - window_days` to `as_of - 1`.
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub min_wear_hours: f64,
    pub min_days: u32,
    /// Participants counted: every one not withdrawn.
    pub participants: i64,
    pub compliant: i64,
    /// The first [`NOT_COMPLIANT_LISTED`] not-compliant ids, by id.
    pub not_compliant: Vec<String>,
    /// All of them (`participants - compliant`).
    pub not_compliant_count: i64,
}

/// One participant's wear in the window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wear {
    /// `None` for a participant not counted (withdrawn).
    pub days_worn_enough: Option<i64>,
    pub compliant: Option<bool>,
    /// Days of the window with a gap, by reason (a day with two reasons counts under both).
    pub gaps: BTreeMap<String, i64>,
}

/// The cohort and each participant (by id; participants without ledger rows or counting are
/// absent).
#[derive(Clone, Debug, PartialEq)]
pub struct CohortCompliance {
    pub summary: Compliance,
    pub by_participant: BTreeMap<String, Wear>,
}

/// Every counted participant (`w.days`: their days worn enough, NULL for none). Binds: `$1`
/// the family whose wear counts, `$2`..`$3` the window, `$4` the minutes a day needs, `$5` the
/// state not counted (withdrawn).
macro_rules! days_worn_enough {
    () => {
        " FROM participants p
          LEFT JOIN (SELECT participant_id, count(*) AS days
                     FROM coverage_daily
                     WHERE family = $1 AND date >= $2 AND date < $3 AND worn_minutes >= $4
                     GROUP BY participant_id) w
              ON w.participant_id = p.participant_id
          WHERE p.state <> $5"
    };
}

/// How many participants are counted and how many of them are compliant under `rule`, without
/// the per-participant detail: one grouped query, for a page that answers on every visit.
pub async fn count_compliant(db: &Database, rule: &ComplianceRule) -> anyhow::Result<(i64, i64)> {
    let counts: (i64, i64) = fetch!(
        db.exec(),
        sqlx::query_as(concat!(
            "SELECT CAST(count(*) AS BIGINT),
                        CAST(count(*) FILTER (WHERE coalesce(w.days, 0) >= $6) AS BIGINT)",
            days_worn_enough!()
        ),)
        .bind(Family::HeartRateIntraday.as_str())
        .bind(rule.first_day())
        .bind(rule.as_of)
        .bind(rule.min_wear_minutes())
        .bind(ParticipantState::Withdrawn.as_str())
        .bind(i64::from(rule.min_days)),
        one
    )
    .context("cannot count compliance in the completeness ledger (coverage_daily)")?;
    Ok(counts)
}

/// Reads the cohort's compliance under `rule`.
pub async fn read_compliance(
    db: &Database,
    rule: &ComplianceRule,
) -> anyhow::Result<CohortCompliance> {
    let (first, until) = (rule.first_day(), rule.as_of);
    let days_worn: Vec<(String, i64)> = fetch!(
        db.exec(),
        sqlx::query_as(concat!(
            "SELECT p.participant_id, CAST(coalesce(w.days, 0) AS BIGINT)",
            days_worn_enough!(),
            " ORDER BY p.participant_id"
        ),)
        .bind(Family::HeartRateIntraday.as_str())
        .bind(first)
        .bind(until)
        .bind(rule.min_wear_minutes())
        .bind(ParticipantState::Withdrawn.as_str()),
        all
    )
    .context("cannot read wear time from the completeness ledger (coverage_daily)")?;
    // Every ledger family named, so the (family, date) index serves the range.
    let families = Family::LEDGER.map(|f| f.as_str());
    let gap_days: Vec<(String, String, i64)> = crate::on_backend!(db.exec(), |e| {
        let mut query = sqlx::query_as(
            "SELECT participant_id, reason, CAST(count(DISTINCT date) AS BIGINT)
             FROM coverage_daily
             WHERE family IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               AND date >= $12 AND date < $13 AND reason <> $14
             GROUP BY participant_id, reason",
        );
        for family in families {
            query = query.bind(family);
        }
        query
            .bind(first)
            .bind(until)
            .bind(GapReason::Ok.as_str())
            .fetch_all(e)
            .await
    })
    .context("cannot read gaps from the completeness ledger (coverage_daily)")?;

    let mut by_participant: BTreeMap<String, Wear> = BTreeMap::new();
    let mut compliant = 0;
    let mut not_compliant = Vec::new();
    let participants = days_worn.len() as i64;
    for (participant, days) in days_worn {
        let ok = days >= i64::from(rule.min_days);
        if ok {
            compliant += 1;
        } else {
            not_compliant.push(participant.clone());
        }
        let wear = by_participant.entry(participant).or_default();
        wear.days_worn_enough = Some(days);
        wear.compliant = Some(ok);
    }
    for (participant, reason, days) in gap_days {
        by_participant
            .entry(participant)
            .or_default()
            .gaps
            .insert(reason, days);
    }
    let not_compliant_count = not_compliant.len() as i64;
    not_compliant.truncate(NOT_COMPLIANT_LISTED);
    Ok(CohortCompliance {
        summary: Compliance {
            as_of: rule.as_of,
            window_days: rule.window_days,
            first_day: rule.first_day(),
            last_day: rule.last_day(),
            min_wear_hours: rule.min_wear_hours,
            min_days: rule.min_days,
            participants,
            compliant,
            not_compliant,
            not_compliant_count,
        },
        by_participant,
    })
}
