//! `StoreSlice`: a slice's data, and the cursor over it, in one transaction.
//!
//! - Intraday points are inserted with `ON CONFLICT DO NOTHING`: a point is stored once however
//!   often its slice arrives (invariant 2).
//! - Daily families, sleep sessions and device snapshots are stored by `families`: an
//!   unchanged day writes nothing (its `updated_at` stays) and a changed day replaces the row.
//! - The cursor moves only contiguously (invariant 3): a slice that starts after the cursor is
//!   recorded in `sync_slices` and waits there until the gap before it is filled.
//! - A slice for a withdrawn participant (a job in flight when they withdrew) is dropped: a
//!   withdrawal, and a purge with it, is final.

use fitlink_shared::domain::{ParticipantState, UtcInstant};
use fitlink_shared::messages::SliceResult;
use fitlink_shared::store::IntradayTable;
use fitlink_shared::{execute, fetch};

use super::coverage::Days;
use super::families::Owner;
use super::{Applied, CommandResult, Effect, Rejection, Tx, job_text};

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
        let owner = Owner {
            participant: participant.as_str(),
            provider: result.provider.as_str(),
            now: self.now,
        };
        rows += self
            .store_families(owner, &result.daily, result.devices.as_ref(), applied)
            .await?;

        if let Some(zone) = &result.time_zone {
            // The zone the worker cut the slice's days in is the participant's zone from now
            // on: every later ledger day (a deletion, an outcome) is cut in it too.
            execute!(
                self.conn.exec(),
                sqlx::query(
                    "UPDATE participants SET time_zone = $2 WHERE participant_id = $1                      AND time_zone IS DISTINCT FROM $2",
                )
                .bind(participant.as_str())
                .bind(zone)
            )?;
        }
        let before = cursor;
        let cursor = self.advance_cursor(result, before).await?;
        // The ledger of the days this slice touched, and of the days the cursor now passed.
        let days = Days::Touched {
            from: slice.start,
            to: if cursor > before {
                cursor.max(slice.end)
            } else {
                slice.end
            },
            dates: result.daily.complete_days.clone(),
            zone: result.time_zone.clone(),
        };
        self.refresh_coverage(participant.as_str(), days, applied)
            .await?;

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
