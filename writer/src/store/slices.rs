//! `StoreSlice`: a slice's data, and the cursor over it, in one transaction.
//!
//! - Intraday points are inserted with `ON CONFLICT DO NOTHING`: a point is stored once however
//!   often its slice arrives (invariant 2).
//! - Daily summaries are upserted with a `WHERE` that compares every value column, so an
//!   unchanged day writes nothing (its `updated_at` stays) and a changed day replaces the row.
//! - The cursor moves only contiguously (invariant 3): a slice that starts after the cursor is
//!   recorded in `sync_slices` and waits there until the gap before it is filled.
//! - A slice for a withdrawn participant (a job in flight when they withdrew) is dropped: a
//!   withdrawal, and a purge with it, is final.

use std::sync::Arc;

use fitlink_shared::domain::{ParticipantState, UtcInstant};
use fitlink_shared::messages::{
    ActivityDay, HeartRateZoneDay, IntradayPoint, RestingHeartRateDay, SliceResult,
};
use sqlx::AssertSqlSafe;

use super::sql::{Intraday, chunk_sizes};
use super::{Applied, CommandResult, Effect, Rejection, Tx, job_text};

const UPSERT_ACTIVITY: &str = "INSERT INTO activity_summary (participant_id, date, steps, \
     distance, floors, elevation, calories_out, activity_calories, sedentary_minutes, \
     lightly_active_minutes, fairly_active_minutes, very_active_minutes, provider, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
     ON CONFLICT (participant_id, date) DO UPDATE SET steps = excluded.steps, \
     distance = excluded.distance, floors = excluded.floors, elevation = excluded.elevation, \
     calories_out = excluded.calories_out, activity_calories = excluded.activity_calories, \
     sedentary_minutes = excluded.sedentary_minutes, \
     lightly_active_minutes = excluded.lightly_active_minutes, \
     fairly_active_minutes = excluded.fairly_active_minutes, \
     very_active_minutes = excluded.very_active_minutes, provider = excluded.provider, \
     updated_at = excluded.updated_at \
     WHERE activity_summary.steps IS NOT excluded.steps \
     OR activity_summary.distance IS NOT excluded.distance \
     OR activity_summary.floors IS NOT excluded.floors \
     OR activity_summary.elevation IS NOT excluded.elevation \
     OR activity_summary.calories_out IS NOT excluded.calories_out \
     OR activity_summary.activity_calories IS NOT excluded.activity_calories \
     OR activity_summary.sedentary_minutes IS NOT excluded.sedentary_minutes \
     OR activity_summary.lightly_active_minutes IS NOT excluded.lightly_active_minutes \
     OR activity_summary.fairly_active_minutes IS NOT excluded.fairly_active_minutes \
     OR activity_summary.very_active_minutes IS NOT excluded.very_active_minutes \
     OR activity_summary.provider IS NOT excluded.provider";

const UPSERT_HEART_RATE_ZONE: &str = "INSERT INTO heart_rate_summary (participant_id, date, \
     zone_name, min_heart_rate, max_heart_rate, minute_in_zone, calorie_count, provider, \
     updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
     ON CONFLICT (participant_id, date, zone_name) DO UPDATE SET \
     min_heart_rate = excluded.min_heart_rate, max_heart_rate = excluded.max_heart_rate, \
     minute_in_zone = excluded.minute_in_zone, calorie_count = excluded.calorie_count, \
     provider = excluded.provider, updated_at = excluded.updated_at \
     WHERE heart_rate_summary.min_heart_rate IS NOT excluded.min_heart_rate \
     OR heart_rate_summary.max_heart_rate IS NOT excluded.max_heart_rate \
     OR heart_rate_summary.minute_in_zone IS NOT excluded.minute_in_zone \
     OR heart_rate_summary.calorie_count IS NOT excluded.calorie_count \
     OR heart_rate_summary.provider IS NOT excluded.provider";

const UPSERT_RESTING: &str = "INSERT INTO resting_heart_rate (participant_id, date, \
     resting_heart_rate, provider, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (participant_id, date) DO UPDATE SET \
     resting_heart_rate = excluded.resting_heart_rate, provider = excluded.provider, \
     updated_at = excluded.updated_at \
     WHERE resting_heart_rate.resting_heart_rate IS NOT excluded.resting_heart_rate \
     OR resting_heart_rate.provider IS NOT excluded.provider";

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
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT sync_cursor, state FROM participants WHERE participant_id = ?1")
                .bind(participant.as_str())
                .fetch_optional(&mut *self.conn)
                .await?;
        let Some((cursor, state)) = row else {
            return Err(Rejection::UnknownParticipant(participant.clone()).into());
        };
        if state == ParticipantState::Withdrawn.as_str() {
            tracing::debug!(participant_id = %participant, job_id = %result.job_id, "slice for a withdrawn participant; dropped");
            return Ok(Effect::SliceDropped { state });
        }

        let mut rows = 0;
        for (table, points) in [
            (Intraday::HeartRate, &result.heart_rate),
            (Intraday::Steps, &result.steps),
        ] {
            let written = self.insert_intraday(result, table, points).await?;
            applied.add_rows(table.table(), written);
            rows += written;
        }
        let provider = result.provider.as_str();
        let written = self
            .upsert_activity(result, provider, &result.activity)
            .await?;
        applied.add_rows("activity_summary", written);
        rows += written;
        let written = self
            .upsert_zones(result, provider, &result.heart_rate_zones)
            .await?;
        applied.add_rows("heart_rate_summary", written);
        rows += written;
        let written = self
            .upsert_resting(result, provider, &result.resting_heart_rate)
            .await?;
        applied.add_rows("resting_heart_rate", written);
        rows += written;

        let cursor = self.advance_cursor(result, cursor).await?;

        // Counts rows actually written, so a redelivered slice does not inflate the ledger.
        sqlx::query(
            "UPDATE sync_jobs SET slices_stored = slices_stored + 1, \
             rows_stored = rows_stored + ?2 WHERE job_id = ?1",
        )
        .bind(job_text(&result.job_id))
        .bind(rows as i64)
        .execute(&mut *self.conn)
        .await?;
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

    /// Inserts the points with cached multi-row statements; returns the rows actually inserted.
    async fn insert_intraday(
        &mut self,
        result: &SliceResult,
        table: Intraday,
        points: &[IntradayPoint],
    ) -> CommandResult<u64> {
        let mut written = 0;
        let mut rest = points;
        // Shared, so binding them on every row copies a pointer, not the text.
        let participant: Arc<str> = Arc::from(result.participant_id.as_str());
        let provider: Arc<str> = Arc::from(result.provider.as_str());
        for size in chunk_sizes(points.len()) {
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            let mut query = sqlx::query(AssertSqlSafe(self.sql.intraday(table, size)));
            for point in chunk {
                query = query
                    .bind(participant.clone())
                    .bind(point.datetime.to_text())
                    .bind(point.utc_offset_seconds)
                    .bind(point.value)
                    .bind(provider.clone());
            }
            written += query.execute(&mut *self.conn).await?.rows_affected();
        }
        Ok(written)
    }

    async fn upsert_activity(
        &mut self,
        result: &SliceResult,
        provider: &str,
        days: &[ActivityDay],
    ) -> CommandResult<u64> {
        let mut written = 0;
        for day in days {
            written += sqlx::query(UPSERT_ACTIVITY)
                .bind(result.participant_id.as_str())
                .bind(day.date.to_string())
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
                .bind(&self.now_text)
                .execute(&mut *self.conn)
                .await?
                .rows_affected();
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
            written += sqlx::query(UPSERT_HEART_RATE_ZONE)
                .bind(result.participant_id.as_str())
                .bind(zone.date.to_string())
                .bind(&zone.zone_name)
                .bind(zone.min_heart_rate)
                .bind(zone.max_heart_rate)
                .bind(zone.minute_in_zone)
                .bind(zone.calorie_count)
                .bind(provider)
                .bind(&self.now_text)
                .execute(&mut *self.conn)
                .await?
                .rows_affected();
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
            written += sqlx::query(UPSERT_RESTING)
                .bind(result.participant_id.as_str())
                .bind(day.date.to_string())
                .bind(day.resting_heart_rate)
                .bind(provider)
                .bind(&self.now_text)
                .execute(&mut *self.conn)
                .await?
                .rows_affected();
        }
        Ok(written)
    }

    /// Records the slice and moves the cursor over every stored slice that touches it, one after
    /// another, stopping at the first gap. Returns the cursor after.
    async fn advance_cursor(
        &mut self,
        result: &SliceResult,
        cursor_text: String,
    ) -> CommandResult<UtcInstant> {
        let participant = result.participant_id.as_str();
        let slice = result.slice;
        let parsed = UtcInstant::parse(&cursor_text).map_err(|_| Rejection::CorruptRow {
            participant: result.participant_id.clone(),
            what: "sync_cursor",
            value: cursor_text.chars().take(40).collect(),
        })?;
        if slice.end <= parsed {
            // Entirely behind the cursor (a re-sync): the data is stored, the cursor stays.
            return Ok(parsed);
        }
        sqlx::query(
            "INSERT INTO sync_slices (participant_id, slice_start, slice_end, job_id) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )
        .bind(participant)
        .bind(slice.start.to_text())
        .bind(slice.end.to_text())
        .bind(job_text(&result.job_id))
        .execute(&mut *self.conn)
        .await?;

        // Text order is time order (one canonical form), so SQL compares instants as text.
        let mut cursor = cursor_text;
        loop {
            let next: Option<String> = sqlx::query_scalar(
                "SELECT max(slice_end) FROM sync_slices \
                 WHERE participant_id = ?1 AND slice_start <= ?2 AND slice_end > ?2",
            )
            .bind(participant)
            .bind(&cursor)
            .fetch_one(&mut *self.conn)
            .await?;
            match next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        let moved = UtcInstant::parse(&cursor).map_err(|_| Rejection::CorruptRow {
            participant: result.participant_id.clone(),
            what: "sync_slices.slice_end",
            value: cursor.chars().take(40).collect(),
        })?;
        if moved != parsed {
            sqlx::query(
                "UPDATE participants SET sync_cursor = ?2, updated_at = ?3 WHERE participant_id = ?1",
            )
            .bind(participant)
            .bind(&cursor)
            .bind(&self.now_text)
            .execute(&mut *self.conn)
            .await?;
            sqlx::query("DELETE FROM sync_slices WHERE participant_id = ?1 AND slice_end <= ?2")
                .bind(participant)
                .bind(&cursor)
                .execute(&mut *self.conn)
                .await?;
        } else if slice.start > parsed {
            tracing::debug!(
                participant_id = %result.participant_id,
                job_id = %result.job_id,
                cursor = %parsed,
                slice_start = %slice.start,
                "slice arrived ahead of a gap; stored, cursor waits"
            );
        }
        Ok(moved)
    }
}
