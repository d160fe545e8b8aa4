//! The sleep and nightly-metric tables against the truth, for the local days a participant's
//! synced range touches. Sessions are keyed by their provider id without the provider, so a
//! session stored once by each provider of a migrated participant counts as duplicated.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use fitlink_shared::domain::{UtcInstant, format_instant};
use fitlink_shared::fetch;
use fitlink_shared::store::Database;
use fitlink_simulator::{SimConfig, truth};

use super::{Diff, History};

/// What the participant's tables of these families should hold for `days`.
pub(super) struct Judged<'a> {
    pub db: &'a Database,
    pub sim: &'a SimConfig,
    pub id: &'a str,
    pub history: History,
    pub days: &'a [NaiveDate],
    pub version: &'a dyn Fn(&NaiveDate) -> u32,
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

fn real(v: Option<f64>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| format!("{v:.6}"))
}

impl Judged<'_> {
    pub async fn tables(&self) -> anyhow::Result<Vec<(&'static str, Diff)>> {
        let (sessions, levels) = self.sleep().await?;
        let mut tables = vec![
            ("sleep_daily_summary", sessions),
            ("sleep_level", levels),
            ("heart_rate_variability_daily", self.hrv().await?),
            ("oxygen_saturation_daily", self.spo2().await?),
            ("breathing_rate_daily", self.breathing().await?),
            ("active_zone_minutes_daily", self.azm().await?),
        ];
        // Each provider's skin temperature is true to its own rounding; a migrated
        // participant holds some of each.
        if !matches!(self.history, History::Migrated { .. }) {
            tables.push(("skin_temperature_daily", self.skin().await?));
        }
        Ok(tables)
    }

    /// Rows of a daily table as `date → value text`, `select` naming the value columns.
    async fn stored_daily<R>(
        &self,
        sql: &'static str,
        text: impl Fn(R) -> (NaiveDate, String),
    ) -> anyhow::Result<Vec<(String, String)>>
    where
        R: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let rows: Vec<R> = fetch!(
            self.db.exec(),
            sqlx::query_as::<_, R>(sql).bind(self.id),
            all
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let (d, v) = text(r);
                (d.to_string(), v)
            })
            .collect())
    }

    fn expected<T>(
        &self,
        truth: impl Fn(NaiveDate, u32) -> Option<T>,
        text: impl Fn(T) -> String,
    ) -> BTreeMap<String, String> {
        self.days
            .iter()
            .filter_map(|d| truth(*d, (self.version)(d)).map(|t| (d.to_string(), text(t))))
            .collect()
    }

    async fn hrv(&self) -> anyhow::Result<Diff> {
        let expected = self.expected(
            |d, v| truth::heart_rate_variability(self.sim, self.id, d, v),
            |t| format!("{} {}", real(Some(t.daily_rmssd)), real(Some(t.deep_rmssd))),
        );
        let stored = self
            .stored_daily(
                "SELECT date, daily_rmssd, deep_rmssd FROM heart_rate_variability_daily \
                 WHERE participant_id = $1",
                |(d, a, b): (NaiveDate, Option<f64>, Option<f64>)| {
                    (d, format!("{} {}", real(a), real(b)))
                },
            )
            .await?;
        Ok(Diff::compare(expected, stored))
    }

    async fn spo2(&self) -> anyhow::Result<Diff> {
        let expected = self.expected(
            |d, v| truth::oxygen_saturation(self.sim, self.id, d, v),
            |t| {
                format!(
                    "{} {} {}",
                    real(Some(t.average)),
                    real(Some(t.lower_bound)),
                    real(Some(t.upper_bound))
                )
            },
        );
        let stored = self
            .stored_daily(
                "SELECT date, average, lower_bound, upper_bound FROM oxygen_saturation_daily \
                 WHERE participant_id = $1",
                |(d, a, l, u): (NaiveDate, Option<f64>, Option<f64>, Option<f64>)| {
                    (d, format!("{} {} {}", real(a), real(l), real(u)))
                },
            )
            .await?;
        Ok(Diff::compare(expected, stored))
    }

    async fn breathing(&self) -> anyhow::Result<Diff> {
        let expected = self.expected(
            |d, v| truth::breathing_rate(self.sim, self.id, d, v),
            |t| real(Some(t)),
        );
        let stored = self
            .stored_daily(
                "SELECT date, breathing_rate FROM breathing_rate_daily WHERE participant_id = $1",
                |(d, r): (NaiveDate, f64)| (d, real(Some(r))),
            )
            .await?;
        Ok(Diff::compare(expected, stored))
    }

    async fn skin(&self) -> anyhow::Result<Diff> {
        let legacy = matches!(self.history, History::Fitbit);
        let expected = self.expected(
            |d, v| {
                if legacy {
                    truth::legacy::skin_temperature(self.sim, self.id, d, v)
                } else {
                    truth::skin_temperature(self.sim, self.id, d, v)
                }
            },
            |t| real(Some(t)),
        );
        let stored = self
            .stored_daily(
                "SELECT date, nightly_relative FROM skin_temperature_daily \
                 WHERE participant_id = $1",
                |(d, t): (NaiveDate, f64)| (d, real(Some(t))),
            )
            .await?;
        Ok(Diff::compare(expected, stored))
    }

    async fn azm(&self) -> anyhow::Result<Diff> {
        let expected = self.expected(
            |d, v| truth::active_zone_minutes(self.sim, self.id, d, v),
            |t| format!("{} {} {} {}", t.fat_burn, t.cardio, t.peak, t.total),
        );
        let stored = self
            .stored_daily(
                "SELECT date, fat_burn, cardio, peak, total FROM active_zone_minutes_daily \
                 WHERE participant_id = $1",
                |(d, f, c, p, t): (NaiveDate, i64, i64, i64, i64)| (d, format!("{f} {c} {p} {t}")),
            )
            .await?;
        Ok(Diff::compare(expected, stored))
    }

    /// Sessions (`session_id → summary`) and levels (`session_id start → level`).
    async fn sleep(&self) -> anyhow::Result<(Diff, Diff)> {
        let mut sessions = BTreeMap::new();
        let mut levels = BTreeMap::new();
        for d in self.days {
            for s in truth::sleep_sessions(self.sim, self.id, *d, (self.version)(d)) {
                for l in &s.levels {
                    levels.insert(
                        format!("{} {}", s.session_id, format_instant(l.start)),
                        format!(
                            "{} {} {}",
                            l.level, l.utc_offset_seconds, l.duration_seconds
                        ),
                    );
                }
                let summary = [
                    Some(s.minute_in_bed),
                    Some(s.minute_asleep),
                    Some(s.minute_after_wakeup),
                    Some(s.minute_awake),
                    s.minute_restless,
                    s.minute_deep,
                    s.minute_light,
                    s.minute_rem,
                    s.minute_wake,
                ]
                .map(opt)
                .join(" ");
                sessions.insert(
                    s.session_id,
                    format!(
                        "{} {} {} {} {} {} {summary}",
                        s.sleep_date,
                        s.is_main_sleep,
                        format_instant(s.start),
                        s.start_utc_offset_seconds,
                        format_instant(s.end),
                        s.end_utc_offset_seconds
                    ),
                );
            }
        }
        let stored_sessions = self.stored_sessions().await?;
        let stored_levels: Vec<(String, UtcInstant, String, i64, f64)> = fetch!(
            self.db.exec(),
            sqlx::query_as(
                "SELECT session_id, start_datetime, level, utc_offset_seconds, duration_in_min \
                 FROM sleep_level WHERE participant_id = $1",
            )
            .bind(self.id),
            all
        )?;
        let stored_levels = stored_levels
            .into_iter()
            .map(|(id, start, level, offset, minutes)| {
                (
                    format!("{id} {}", start.to_text()),
                    format!("{level} {offset} {}", (minutes * 60.0).round() as i64),
                )
            })
            .collect();
        Ok((
            Diff::compare(sessions, stored_sessions),
            Diff::compare(levels, stored_levels),
        ))
    }

    async fn stored_sessions(&self) -> anyhow::Result<Vec<(String, String)>> {
        type Minutes = Option<i64>;
        type SessionRow = (
            String,
            NaiveDate,
            bool,
            UtcInstant,
            i64,
            UtcInstant,
            i64,
            Minutes,
            Minutes,
            Minutes,
            Minutes,
            Minutes,
            Minutes,
            Minutes,
            Minutes,
            Minutes,
        );
        let rows: Vec<SessionRow> = fetch!(
            self.db.exec(),
            sqlx::query_as(
                "SELECT session_id, sleep_date, is_main_sleep, start_datetime, \
                 start_utc_offset_seconds, end_datetime, end_utc_offset_seconds, minute_in_bed, \
                 minute_asleep, minute_after_wakeup, minute_awake, minute_restless, minute_deep, \
                 minute_light, minute_rem, minute_wake \
                 FROM sleep_daily_summary WHERE participant_id = $1",
            )
            .bind(self.id),
            all
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let summary = [r.7, r.8, r.9, r.10, r.11, r.12, r.13, r.14, r.15]
                    .map(opt)
                    .join(" ");
                (
                    r.0,
                    format!(
                        "{} {} {} {} {} {} {summary}",
                        r.1,
                        r.2,
                        r.3.to_text(),
                        r.4,
                        r.5.to_text(),
                        r.6
                    ),
                )
            })
            .collect())
    }
}
