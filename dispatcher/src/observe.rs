//! The fleet as gauges, read at each schedule tick: participants by state, the sync lag's
//! distribution, grants about to expire, and every queue's depth and consumers. The dispatcher
//! already reads the database and holds a broker connection every tick, and there is exactly one
//! schedule loop per fleet, so these are exported once (`deploy/grafana/fitlink.json`,
//! `deploy/prometheus/alerts.yml` read them).

use chrono::{DateTime, TimeDelta, Utc};
use fitlink_shared::broker::{self, Topology};
use fitlink_shared::domain::{ParticipantState, UtcInstant};
use fitlink_shared::fetch;
use fitlink_shared::store::Database;
use lapin::Connection;

/// A grant expiring within this long counts as expiring (as `invite --needing-consent` says).
const EXPIRING_WITHIN: TimeDelta = TimeDelta::hours(48);

/// The quantiles of the lag exported.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (1.0, "1")];

/// Participants by state, the lag of the syncing ones, and grants expiring soon.
pub(crate) async fn cohort(db: &Database, now: DateTime<Utc>) -> anyhow::Result<()> {
    let by_state: Vec<(String, i64)> = fetch!(
        db.exec(),
        sqlx::query_as("SELECT state, count(*) FROM participants GROUP BY state"),
        all
    )?;
    for state in ParticipantState::ALL {
        let n = by_state
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("fitlink_participants", "state" => state.as_str()).set(n as f64);
    }

    let synced: Vec<(UtcInstant, UtcInstant)> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT sync_cursor, latest_device_sync FROM participants \
             WHERE state IN ('active', 'intraday_not_permitted') \
             AND latest_device_sync IS NOT NULL",
        ),
        all
    )?;
    let mut lags: Vec<i64> = synced
        .iter()
        .map(|(cursor, latest)| (latest.get() - cursor.get()).num_seconds().max(0))
        .collect();
    lags.sort_unstable();
    for (q, label) in QUANTILES {
        metrics::gauge!("fitlink_sync_lag_seconds", "quantile" => label)
            .set(quantile(&lags, q) as f64);
    }

    let expiring: i64 = fetch!(
        db.exec(),
        sqlx::query_scalar(
            "SELECT count(*) FROM participants WHERE refresh_token_expires_at IS NOT NULL \
             AND refresh_token_expires_at < $1 \
             AND state NOT IN ('withdrawn', 'revoked', 'consent_expired', 'invited')",
        )
        .bind(UtcInstant::new(now + EXPIRING_WITHIN)),
        one
    )?;
    metrics::gauge!("fitlink_grants_expiring").set(expiring as f64);
    Ok(())
}

/// Messages and consumers of every queue of the fleet (a queue not declared yet is skipped).
pub(crate) async fn queues(conn: &Connection, topology: &Topology) -> anyhow::Result<()> {
    for queue in topology.all_queues() {
        if let Some(depth) = broker::queue_depth_on_fresh_channel(conn, queue).await? {
            metrics::gauge!("fitlink_queue_messages", "queue" => queue.to_owned())
                .set(f64::from(depth));
        }
        if let Some(consumers) = broker::queue_consumers_on_fresh_channel(conn, queue).await? {
            metrics::gauge!("fitlink_queue_consumers", "queue" => queue.to_owned())
                .set(f64::from(consumers));
        }
    }
    Ok(())
}

/// The nearest-rank quantile `q` of sorted `values` (0 for none).
fn quantile(values: &[i64], q: f64) -> i64 {
    if values.is_empty() {
        return 0;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.9), 90);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.5), 7);
        assert_eq!(quantile(&[], 0.9), 0);
    }
}
