//! A slice's daily families into their tables: the one place in the writer a family is added.
//!
//! - **Daily rows** (activity, heart-rate zones, resting heart rate, HRV, SpO2, breathing rate,
//!   skin temperature, active zone minutes) and **device snapshots** are stored with
//!   [`Conn::upsert`](fitlink_shared::store::Conn::upsert): an unchanged day writes nothing, a
//!   restated day replaces its row. A family adds its row's [`Stored`] impl here, its table in
//!   `copy::TABLES` and a migration; nothing else in the writer changes.
//! - **Sleep sessions** are keyed by the provider's session id: an edited or merged session
//!   replaces the old one and its levels are replaced with it, in the same transaction. A
//!   stored session of a day the slice is complete for ([`DailyFamilies::complete_days`]) that
//!   the provider no longer returns was deleted there, and is deleted here.
//! - **Refused families** ([`DailyFamilies::not_permitted`]) are recorded in
//!   `family_permissions` and nothing of theirs is deleted; a family read again is permitted
//!   again.

use std::collections::BTreeSet;

use fitlink_shared::domain::UtcInstant;
use fitlink_shared::execute;
use fitlink_shared::families::{
    ActiveZoneMinutesDay, ActivityDay, BreathingRateDay, DailyFamilies, DeviceSnapshot, Family,
    HeartRateVariabilityDay, HeartRateZoneDay, OxygenSaturationDay, PairedDevice,
    RestingHeartRateDay, SkinTemperatureDay, SleepSession,
};
use fitlink_shared::fetch;
use fitlink_shared::store::copy::Value;

use super::{Applied, CommandResult, Tx};

/// Whose rows these are and when they are written: the columns every family table shares.
#[derive(Clone, Copy)]
pub(super) struct Owner<'a> {
    pub participant: &'a str,
    pub provider: &'a str,
    pub now: UtcInstant,
}

impl Owner<'_> {
    fn participant(&self) -> Value {
        Value::Text(Some(self.participant.to_owned()))
    }
    fn provider(&self) -> Value {
        Value::Text(Some(self.provider.to_owned()))
    }
    fn now(&self) -> Value {
        Value::Instant(Some(self.now))
    }
}

/// A family's row as its table's columns, in the order `copy::TABLES` describes them.
trait Stored {
    const TABLE: &'static str;
    fn values(&self, owner: &Owner) -> Vec<Value>;
}

fn int(v: Option<i64>) -> Value {
    Value::Integer(v)
}
fn real(v: Option<f64>) -> Value {
    Value::Real(v)
}
fn date(d: chrono::NaiveDate) -> Value {
    Value::Date(Some(d))
}
fn text(s: &Option<String>) -> Value {
    Value::Text(s.clone())
}

impl Stored for ActivityDay {
    const TABLE: &'static str = "activity_summary";
    fn values(&self, o: &Owner) -> Vec<Value> {
        vec![
            o.participant(),
            date(self.date),
            int(self.steps),
            real(self.distance),
            int(self.floors),
            real(self.elevation),
            real(self.calories_out),
            real(self.activity_calories),
            real(self.sedentary_minutes),
            real(self.lightly_active_minutes),
            real(self.fairly_active_minutes),
            real(self.very_active_minutes),
            o.provider(),
            o.now(),
        ]
    }
}

impl Stored for HeartRateZoneDay {
    const TABLE: &'static str = "heart_rate_summary";
    fn values(&self, o: &Owner) -> Vec<Value> {
        vec![
            o.participant(),
            date(self.date),
            Value::Text(Some(self.zone_name.clone())),
            int(self.min_heart_rate),
            int(self.max_heart_rate),
            int(self.minute_in_zone),
            real(self.calorie_count),
            o.provider(),
            o.now(),
        ]
    }
}

impl Stored for RestingHeartRateDay {
    const TABLE: &'static str = "resting_heart_rate";
    fn values(&self, o: &Owner) -> Vec<Value> {
        vec![
            o.participant(),
            date(self.date),
            int(Some(self.resting_heart_rate)),
            o.provider(),
            o.now(),
        ]
    }
}

impl Stored for HeartRateVariabilityDay {
    const TABLE: &'static str = "heart_rate_variability_daily";
    fn values(&self, o: &Owner) -> Vec<Value> {
        vec![
            o.participant(),
            date(self.date),
            real(self.daily_rmssd),
            real(self.deep_rmssd),
            o.provider(),
            o.now(),
        ]
    }
}

impl Stored for OxygenSaturationDay {
    const TABLE: &'static str = "oxygen_saturation_daily";
    fn values(&self, o: &Owner) -> Vec<Value> {
        vec![
            o.participant(),
            date(self.date),
            real(self.average),
            real(self.lower_bound),
            real(self.upper_bound),
            o.provider(),
            o.now(),
        ]
    }
}

impl Stored for BreathingRateDay {
    const TABLE: &'static str = "breathing_rate_daily";
    fn values(&self, o: &Owner) -> Vec<Value> {
        vec![
            o.participant(),
            date(self.date),
            real(Some(self.breathing_rate)),
            o.provider(),
            o.now(),
        ]
    }
}

impl Stored for SkinTemperatureDay {
    const TABLE: &'static str = "skin_temperature_daily";
    fn values(&self, o: &Owner) -> Vec<Value> {
        vec![
            o.participant(),
            date(self.date),
            real(Some(self.nightly_relative)),
            o.provider(),
            o.now(),
        ]
    }
}

impl Stored for ActiveZoneMinutesDay {
    const TABLE: &'static str = "active_zone_minutes_daily";
    fn values(&self, o: &Owner) -> Vec<Value> {
        vec![
            o.participant(),
            date(self.date),
            int(Some(self.fat_burn)),
            int(Some(self.cardio)),
            int(Some(self.peak)),
            int(Some(self.total)),
            o.provider(),
            o.now(),
        ]
    }
}

/// One device of a snapshot, on the snapshot's day.
struct DeviceDay<'a>(&'a PairedDevice, chrono::NaiveDate);

impl Stored for DeviceDay<'_> {
    const TABLE: &'static str = "device";
    fn values(&self, o: &Owner) -> Vec<Value> {
        let DeviceDay(device, day) = self;
        vec![
            o.participant(),
            Value::Text(Some(device.device_id.clone())),
            date(*day),
            text(&device.battery),
            int(device.battery_level),
            text(&device.device_version),
            text(&device.device_type),
            Value::Instant(device.last_sync_time),
            o.provider(),
            o.now(),
        ]
    }
}

/// A sleep session's summary row.
impl Stored for SleepSession {
    const TABLE: &'static str = "sleep_daily_summary";
    fn values(&self, o: &Owner) -> Vec<Value> {
        vec![
            o.participant(),
            o.provider(),
            Value::Text(Some(self.session_id.clone())),
            date(self.sleep_date),
            Value::Bool(Some(self.is_main_sleep)),
            Value::Instant(Some(self.start)),
            int(Some(i64::from(self.start_utc_offset_seconds))),
            Value::Instant(Some(self.end)),
            int(Some(i64::from(self.end_utc_offset_seconds))),
            int(self.minute_in_bed),
            int(self.minute_asleep),
            int(self.minute_after_wakeup),
            int(self.minute_awake),
            int(self.minute_restless),
            int(self.minute_deep),
            int(self.minute_light),
            int(self.minute_rem),
            int(self.minute_wake),
            o.now(),
        ]
    }
}

/// The `sleep_level` rows of a session (the table has no `updated_at`: a level is its values).
fn level_values(session: &SleepSession, o: &Owner) -> Vec<(UtcInstant, Vec<Value>)> {
    session
        .levels
        .iter()
        .map(|level| {
            (
                level.start,
                vec![
                    o.participant(),
                    o.provider(),
                    Value::Text(Some(session.session_id.clone())),
                    date(session.sleep_date),
                    Value::Bool(Some(session.is_main_sleep)),
                    Value::Text(Some(level.level.clone())),
                    Value::Instant(Some(level.start)),
                    int(Some(i64::from(level.utc_offset_seconds))),
                    real(Some(level.duration_seconds as f64 / 60.0)),
                ],
            )
        })
        .collect()
}

impl Tx<'_> {
    /// Every daily family and the device snapshot of one slice; the rows written.
    pub(super) async fn store_families(
        &mut self,
        owner: Owner<'_>,
        daily: &DailyFamilies,
        devices: Option<&DeviceSnapshot>,
        applied: &mut Applied,
    ) -> CommandResult<u64> {
        let mut rows = 0;
        rows += self.store_rows(&owner, &daily.activity, applied).await?;
        rows += self
            .store_rows(&owner, &daily.heart_rate_zones, applied)
            .await?;
        rows += self
            .store_rows(&owner, &daily.resting_heart_rate, applied)
            .await?;
        rows += self
            .store_rows(&owner, &daily.heart_rate_variability, applied)
            .await?;
        rows += self
            .store_rows(&owner, &daily.oxygen_saturation, applied)
            .await?;
        rows += self
            .store_rows(&owner, &daily.breathing_rate, applied)
            .await?;
        rows += self
            .store_rows(&owner, &daily.skin_temperature, applied)
            .await?;
        rows += self
            .store_rows(&owner, &daily.active_zone_minutes, applied)
            .await?;
        if let Some(snapshot) = devices {
            let days: Vec<DeviceDay> = snapshot
                .devices
                .iter()
                .map(|d| DeviceDay(d, snapshot.date))
                .collect();
            rows += self.store_rows(&owner, &days, applied).await?;
        }
        rows += self.store_sleep(&owner, daily, applied).await?;
        self.record_permissions(&owner, daily).await?;
        Ok(rows)
    }

    async fn store_rows<R: Stored>(
        &mut self,
        owner: &Owner<'_>,
        rows: &[R],
        applied: &mut Applied,
    ) -> CommandResult<u64> {
        let mut written = 0;
        for row in rows {
            written += self.conn.upsert(R::TABLE, row.values(owner)).await?;
        }
        applied.add_rows(R::TABLE, written);
        Ok(written)
    }

    /// Upserts each session and replaces its levels; deletes the sessions of complete days the
    /// provider no longer has (unless sleep was refused: then nothing was read).
    async fn store_sleep(
        &mut self,
        owner: &Owner<'_>,
        daily: &DailyFamilies,
        applied: &mut Applied,
    ) -> CommandResult<u64> {
        let (mut sessions, mut levels) = (0, 0);
        for session in &daily.sleep {
            sessions += self
                .conn
                .upsert(SleepSession::TABLE, session.values(owner))
                .await?;
            levels += self.replace_levels(owner, session).await?;
        }
        if let Some(days) = &daily.complete_days
            && !daily.not_permitted.contains_key(&Family::Sleep)
        {
            let served: BTreeSet<(&str, &str)> = daily
                .sleep
                .iter()
                .map(|s| (owner.provider, s.session_id.as_str()))
                .collect();
            let stored: Vec<(String, String)> = fetch!(
                self.conn.exec(),
                sqlx::query_as(
                    "SELECT provider, session_id FROM sleep_daily_summary \
                     WHERE participant_id = $1 AND sleep_date >= $2 AND sleep_date < $3",
                )
                .bind(owner.participant)
                .bind(days.start)
                .bind(days.end),
                all
            )?;
            for (provider, session_id) in stored {
                if !served.contains(&(provider.as_str(), session_id.as_str())) {
                    let (s, l) = self
                        .delete_session(owner.participant, &provider, &session_id)
                        .await?;
                    sessions += s;
                    levels += l;
                }
            }
        }
        applied.add_rows(SleepSession::TABLE, sessions);
        applied.add_rows("sleep_level", levels);
        Ok(sessions + levels)
    }

    /// Makes the stored levels of `session` exactly its levels; the rows written or deleted.
    async fn replace_levels(
        &mut self,
        owner: &Owner<'_>,
        session: &SleepSession,
    ) -> CommandResult<u64> {
        let wanted = level_values(session, owner);
        let starts: BTreeSet<UtcInstant> = wanted.iter().map(|(start, _)| *start).collect();
        let stored: Vec<UtcInstant> = fetch!(
            self.conn.exec(),
            sqlx::query_scalar(
                "SELECT start_datetime FROM sleep_level \
                 WHERE participant_id = $1 AND provider = $2 AND session_id = $3",
            )
            .bind(owner.participant)
            .bind(owner.provider)
            .bind(&session.session_id),
            all
        )?;
        let mut written = 0;
        for stale in stored.into_iter().filter(|s| !starts.contains(s)) {
            written += execute!(
                self.conn.exec(),
                sqlx::query(
                    "DELETE FROM sleep_level WHERE participant_id = $1 AND provider = $2 \
                     AND session_id = $3 AND start_datetime = $4",
                )
                .bind(owner.participant)
                .bind(owner.provider)
                .bind(&session.session_id)
                .bind(stale)
            )?;
        }
        for (_, values) in wanted {
            written += self.conn.upsert("sleep_level", values).await?;
        }
        Ok(written)
    }

    /// Deletes one stored session and its levels: (sessions, levels) deleted.
    pub(super) async fn delete_session(
        &mut self,
        participant: &str,
        provider: &str,
        session_id: &str,
    ) -> CommandResult<(u64, u64)> {
        let levels = execute!(
            self.conn.exec(),
            sqlx::query(
                "DELETE FROM sleep_level WHERE participant_id = $1 AND provider = $2 \
                 AND session_id = $3",
            )
            .bind(participant)
            .bind(provider)
            .bind(session_id)
        )?;
        let sessions = execute!(
            self.conn.exec(),
            sqlx::query(
                "DELETE FROM sleep_daily_summary WHERE participant_id = $1 AND provider = $2 \
                 AND session_id = $3",
            )
            .bind(participant)
            .bind(provider)
            .bind(session_id)
        )?;
        Ok((sessions, levels))
    }

    /// Records the refused families (keeping when each was first refused) and clears the
    /// families this slice read. Only slices that say which days they are complete for (every
    /// current worker's) tell what was read; older messages change nothing.
    async fn record_permissions(
        &mut self,
        owner: &Owner<'_>,
        daily: &DailyFamilies,
    ) -> CommandResult<()> {
        if daily.complete_days.is_none() {
            return Ok(());
        }
        let stored: Vec<String> = fetch!(
            self.conn.exec(),
            sqlx::query_scalar("SELECT family FROM family_permissions WHERE participant_id = $1")
                .bind(owner.participant),
            all
        )?;
        for family in stored {
            let still_refused = daily.not_permitted.keys().any(|f| f.as_str() == family);
            if !still_refused {
                execute!(
                    self.conn.exec(),
                    sqlx::query(
                        "DELETE FROM family_permissions WHERE participant_id = $1 AND family = $2"
                    )
                    .bind(owner.participant)
                    .bind(&family)
                )?;
            }
        }
        for (family, reason) in &daily.not_permitted {
            execute!(
                self.conn.exec(),
                sqlx::query(
                    "INSERT INTO family_permissions (participant_id, family, reason, since) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (participant_id, family) DO UPDATE \
                     SET reason = excluded.reason \
                     WHERE family_permissions.reason IS DISTINCT FROM excluded.reason",
                )
                .bind(owner.participant)
                .bind(family.as_str())
                .bind(super::capped(reason))
                .bind(owner.now)
            )?;
        }
        Ok(())
    }
}
