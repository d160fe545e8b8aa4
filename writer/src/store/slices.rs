//! `StoreSlice`: a slice's data, and the cursor over it, in one transaction.
//!
//! - Intraday points are inserted with `ON CONFLICT DO NOTHING`: a point is stored once however
//!   often its slice arrives (invariant 2).
//! - Daily summaries are upserted with a `WHERE` that compares every value column, so an
//!   unchanged day writes nothing (its `updated_at` stays) and a changed day replaces the row.
//! - The cursor moves only contiguously (invariant 3): a slice that starts after the cursor is
//!   recorded in `sync_slices` and waits there until the gap before it is filled.
//! - The first slice of a job carries the paired devices: one `device` row per device and day.
//! - A slice for a withdrawn participant (a job in flight when they withdrew) is dropped: a
//!   withdrawal, and a purge with it, is final.

use fitlink_shared::domain::{ParticipantState, UtcInstant};
use fitlink_shared::messages::{ActivityDay, HeartRateZoneDay, RestingHeartRateDay, SliceResult};
use fitlink_shared::store::IntradayTable;
use fitlink_shared::{execute, fetch};

use super::{Applied, CommandResult, Effect, Rejection, Tx, job_text};

const UPSERT_ACTIVITY: &str = "INSERT INTO activity_summary (participant_id, date, steps, \
     distance, floors, elevation, calories_out, activity_calories, sedentary_minutes, \
     lightly_active_minutes, fairly_active_minutes, very_active_minutes, provider, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
     ON CONFLICT (participant_id, date) DO UPDATE SET steps = excluded.steps, \
     distance = excluded.distance, floors = excluded.floors, elevation = excluded.elevation, \
     calories_out = excluded.calories_out, activity_calories = excluded.activity_calories, \
     sedentary_minutes = excluded.sedentary_minutes, \
     lightly_active_minutes = excluded.lightly_active_minutes, \
     fairly_active_minutes = excluded.fairly_active_minutes, \
     very_active_minutes = excluded.very_active_minutes, provider = excluded.provider, \
     updated_at = excluded.updated_at \
     WHERE activity_summary.steps IS DISTINCT FROM excluded.steps \
     OR activity_summary.distance IS DISTINCT FROM excluded.distance \
     OR activity_summary.floors IS DISTINCT FROM excluded.floors \
     OR activity_summary.elevation IS DISTINCT FROM excluded.elevation \
     OR activity_summary.calories_out IS DISTINCT FROM excluded.calories_out \
     OR activity_summary.activity_calories IS DISTINCT FROM excluded.activity_calories \
     OR activity_summary.sedentary_minutes IS DISTINCT FROM excluded.sedentary_minutes \
     OR activity_summary.lightly_active_minutes IS DISTINCT FROM excluded.lightly_active_minutes \
     OR activity_summary.fairly_active_minutes IS DISTINCT FROM excluded.fairly_active_minutes \
     OR activity_summary.very_active_minutes IS DISTINCT FROM excluded.very_active_minutes \
     OR activity_summary.provider IS DISTINCT FROM excluded.provider";

const UPSERT_HEART_RATE_ZONE: &str = "INSERT INTO heart_rate_summary (participant_id, date, \
     zone_name, min_heart_rate, max_heart_rate, minute_in_zone, calorie_count, provider, \
     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (participant_id, date, zone_name) DO UPDATE SET \
     min_heart_rate = excluded.min_heart_rate, max_heart_rate = excluded.max_heart_rate, \
     minute_in_zone = excluded.minute_in_zone, calorie_count = excluded.calorie_count, \
     provider = excluded.provider, updated_at = excluded.updated_at \
     WHERE heart_rate_summary.min_heart_rate IS DISTINCT FROM excluded.min_heart_rate \
     OR heart_rate_summary.max_heart_rate IS DISTINCT FROM excluded.max_heart_rate \
     OR heart_rate_summary.minute_in_zone IS DISTINCT FROM excluded.minute_in_zone \
     OR heart_rate_summary.calorie_count IS DISTINCT FROM excluded.calorie_count \
     OR heart_rate_summary.provider IS DISTINCT FROM excluded.provider";

const UPSERT_RESTING: &str = "INSERT INTO resting_heart_rate (participant_id, date, \
     resting_heart_rate, provider, updated_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (participant_id, date) DO UPDATE SET \
     resting_heart_rate = excluded.resting_heart_rate, provider = excluded.provider, \
     updated_at = excluded.updated_at \
     WHERE resting_heart_rate.resting_heart_rate IS DISTINCT FROM excluded.resting_heart_rate \
     OR resting_heart_rate.provider IS DISTINCT FROM excluded.provider";

impl Tx<'_> {
    pub(super) async fn store_slice(
        &mut self,
        result: &SliceResult,
        applied: &mut Applied,
    ) -> CommandResult<Effect> {
        let participant = &result.participant_id;
        let slice = result.slice;
        if slice.start > slice.end {
            return Err(Rejection::InvertedSlice {
                start: slice.start,
                end: slice.end,
            }
            .into());
        }
        let row: Option<(UtcInstant, String)> = fetch!(
            self.conn.exec(),
            sqlx::query_as("SELECT sync_cursor, state FROM participants WHERE participant_id = $1")
                .bind(participant.as_str()),
            optional
        )?;
        let Some((cursor, state)) = row else {
            return Err(Rejection::UnknownParticipant(participant.clone()).into());
        };
        if state == ParticipantState::Withdrawn.as_str() {
            tracing::debug!(participant_id = %participant, job_id = %result.job_id, "slice for a withdrawn participant; dropped");
            return Ok(Effect::SliceDropped { state });
        }

        let mut rows = 0;
        for (table, points) in [
            (IntradayTable::HeartRate, &result.heart_rate),
            (IntradayTable::Steps, &result.steps),
        ] {
            let written = self
                .conn
                .insert_intraday(
                    table,
                    result.participant_id.as_str(),
                    result.provider.as_str(),
                    points,
                )
                .await?;
            applied.add_rows(table.table(), written);
            rows += written;
        }
        let provider = result.provider.as_str();
        let written = self
            .upsert_activity(result, provider, &result.daily.activity)
            .await?;
        applied.add_rows("activity_summary", written);
        rows += written;
        let written = self
            .upsert_zones(result, provider, &result.daily.heart_rate_zones)
            .await?;
        applied.add_rows("heart_rate_summary", written);
        rows += written;
        let written = self
            .upsert_resting(result, provider, &result.daily.resting_heart_rate)
            .await?;
        applied.add_rows("resting_heart_rate", written);
        rows += written;
        if let Some(snapshot) = &result.devices {
            let written = self
                .upsert_devices(participant.as_str(), provider, snapshot)
                .await?;
            applied.add_rows("device", written);
            rows += written;
        }

        let cursor = self.advance_cursor(result, cursor).await?;

        // Counts rows actually written, so a redelivered slice does not inflate the ledger.
        execute!(
            self.conn.exec(),
            sqlx::query(
                "UPDATE sync_jobs SET slices_stored = slices_stored + 1, \
                 rows_stored = rows_stored + $2 WHERE job_id = $1",
            )
            .bind(job_text(&result.job_id))
            .bind(rows as i64)
        )?;
        tracing::debug!(
            participant_id = %participant,
            job_id = %result.job_id,
            slice_start = %slice.start,
            slice_end = %slice.end,
            rows,
            cursor = %cursor,
            "slice stored"
        );
        Ok(Effect::SliceStored {
            rows_written: rows,
            cursor,
        })
    }

    async fn upsert_activity(
        &mut self,
        result: &SliceResult,
        provider: &str,
        days: &[ActivityDay],
    ) -> CommandResult<u64> {
        let mut written = 0;
        for day in days {
            written += execute!(
                self.conn.exec(),
                sqlx::query(UPSERT_ACTIVITY)
                    .bind(result.participant_id.as_str())
                    .bind(day.date)
                    .bind(day.steps)
                    .bind(day.distance)
                    .bind(day.floors)
                    .bind(day.elevation)
                    .bind(day.calories_out)
                    .bind(day.activity_calories)
                    .bind(day.sedentary_minutes)
                    .bind(day.lightly_active_minutes)
                    .bind(day.fairly_active_minutes)
                    .bind(day.very_active_minutes)
                    .bind(provider)
                    .bind(self.now)
            )?;
        }
        Ok(written)
    }

    async fn upsert_zones(
        &mut self,
        result: &SliceResult,
        provider: &str,
        zones: &[HeartRateZoneDay],
    ) -> CommandResult<u64> {
        let mut written = 0;
        for zone in zones {
            written += execute!(
                self.conn.exec(),
                sqlx::query(UPSERT_HEART_RATE_ZONE)
                    .bind(result.participant_id.as_str())
                    .bind(zone.date)
                    .bind(&zone.zone_name)
                    .bind(zone.min_heart_rate)
                    .bind(zone.max_heart_rate)
                    .bind(zone.minute_in_zone)
                    .bind(zone.calorie_count)
                    .bind(provider)
                    .bind(self.now)
            )?;
        }
        Ok(written)
    }

    async fn upsert_resting(
        &mut self,
        result: &SliceResult,
        provider: &str,
        days: &[RestingHeartRateDay],
    ) -> CommandResult<u64> {
        let mut written = 0;
        for day in days {
            written += execute!(
                self.conn.exec(),
                sqlx::query(UPSERT_RESTING)
                    .bind(result.participant_id.as_str())
                    .bind(day.date)
                    .bind(day.resting_heart_rate)
                    .bind(provider)
                    .bind(self.now)
            )?;
        }
        Ok(written)
    }

    /// Records the slice and moves the cursor over every stored slice that touches it, one after
    /// another, stopping at the first gap. Returns the cursor after.
    async fn advance_cursor(
        &mut self,
        result: &SliceResult,
        before: UtcInstant,
    ) -> CommandResult<UtcInstant> {
        let participant = result.participant_id.as_str();
        let slice = result.slice;
        if slice.end <= before {
            // Entirely behind the cursor (a re-sync): the data is stored, the cursor stays.
            return Ok(before);
        }
        execute!(
            self.conn.exec(),
            sqlx::query(
                "INSERT INTO sync_slices (participant_id, slice_start, slice_end, job_id) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(participant)
            .bind(slice.start)
            .bind(slice.end)
            .bind(job_text(&result.job_id))
        )?;

        let mut cursor = before;
        loop {
            let next: Option<UtcInstant> = fetch!(
                self.conn.exec(),
                sqlx::query_scalar(
                    "SELECT max(slice_end) FROM sync_slices \
                     WHERE participant_id = $1 AND slice_start <= $2 AND slice_end > $2",
                )
                .bind(participant)
                .bind(cursor),
                one
            )?;
            match next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        if cursor != before {
            execute!(
                self.conn.exec(),
                sqlx::query(
                    "UPDATE participants SET sync_cursor = $2, updated_at = $3 \
                     WHERE participant_id = $1",
                )
                .bind(participant)
                .bind(cursor)
                .bind(self.now)
            )?;
            execute!(
                self.conn.exec(),
                sqlx::query(
                    "DELETE FROM sync_slices WHERE participant_id = $1 AND slice_end <= $2"
                )
                .bind(participant)
                .bind(cursor)
            )?;
        } else if slice.start > before {
            tracing::debug!(
                participant_id = %result.participant_id,
                job_id = %result.job_id,
                cursor = %before,
                slice_start = %slice.start,
                "slice arrived ahead of a gap; stored, cursor waits"
            );
        }
        Ok(cursor)
    }
}
