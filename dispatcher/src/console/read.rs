//! What the console reads from the database: the cohort's counts, a page of participants in any
//! of the list's orders, and one participant's history. Read-only, portable SQL over the store
//! seam; every query is bounded (a grouped scan, or `LIMIT`), so a page costs the same for ten
//! participants as for the first page of 100,000.

use std::fmt;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use fitlink_shared::domain::{ParticipantState, UtcInstant};
use fitlink_shared::store::Database;
use fitlink_shared::{fetch, on_backend};
use sqlx::AssertSqlSafe;

/// Participants by state and provider.
pub struct StateCount {
    pub provider: String,
    pub state: String,
    pub count: i64,
}

/// Participants by state and provider, of one provider if `provider` is not empty.
pub async fn states(db: &Database, provider: &str) -> anyhow::Result<Vec<StateCount>> {
    let rows: Vec<(String, String, i64)> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT provider, state, CAST(count(*) AS BIGINT) FROM participants \
             WHERE ($1 = '' OR provider = $1) \
             GROUP BY provider, state ORDER BY provider, state"
        )
        .bind(provider),
        all
    )
    .context("cannot count participants by state")?;
    Ok(rows
        .into_iter()
        .map(|(provider, state, count)| StateCount {
            provider,
            state,
            count,
        })
        .collect())
}

/// The lag buckets of syncing (`active`) participants: how far behind now their cursor is.
pub const LAG_BUCKETS: [&str; 5] = ["< 6 h", "6–24 h", "1–3 days", "3–7 days", "> 7 days"];

/// Active participants (of one provider if `provider` is not empty) per [`LAG_BUCKETS`] entry.
pub async fn lag_histogram(
    db: &Database,
    now: DateTime<Utc>,
    provider: &str,
) -> anyhow::Result<[i64; 5]> {
    let ago = |delta: TimeDelta| UtcInstant::new(now - delta);
    let row: (i64, i64, i64, i64, i64) = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT CAST(count(*) FILTER (WHERE sync_cursor >= $1) AS BIGINT),
                    CAST(count(*) FILTER (WHERE sync_cursor < $1 AND sync_cursor >= $2) AS BIGINT),
                    CAST(count(*) FILTER (WHERE sync_cursor < $2 AND sync_cursor >= $3) AS BIGINT),
                    CAST(count(*) FILTER (WHERE sync_cursor < $3 AND sync_cursor >= $4) AS BIGINT),
                    CAST(count(*) FILTER (WHERE sync_cursor < $4) AS BIGINT)
             FROM participants WHERE state = $5 AND ($6 = '' OR provider = $6)"
        )
        .bind(ago(TimeDelta::hours(6)))
        .bind(ago(TimeDelta::hours(24)))
        .bind(ago(TimeDelta::days(3)))
        .bind(ago(TimeDelta::days(7)))
        .bind(ParticipantState::Active.as_str())
        .bind(provider),
        one
    )
    .context("cannot read sync lag")?;
    Ok([row.0, row.1, row.2, row.3, row.4])
}

/// A participant's latest error.
pub struct Failure {
    pub participant_id: String,
    pub error: String,
    pub at: UtcInstant,
}

/// The newest errors (`participants_last_error_at` serves it).
pub async fn newest_failures(db: &Database, limit: i64) -> anyhow::Result<Vec<Failure>> {
    let rows: Vec<(String, String, UtcInstant)> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT participant_id, last_error, last_error_at FROM participants \
             WHERE last_error_at IS NOT NULL AND last_error IS NOT NULL \
             ORDER BY last_error_at DESC LIMIT $1"
        )
        .bind(limit),
        all
    )
    .context("cannot read the newest failures")?;
    Ok(rows
        .into_iter()
        .map(|(participant_id, error, at)| Failure {
            participant_id,
            error,
            at,
        })
        .collect())
}

/// The orders of the participants list. Each is ascending and ends with the participant id, so
/// a page continues after the last id shown (keyset: no offset, no participant data in the URL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Id,
    /// Longest since the tracker last synced with the provider first (never first of all).
    LastDeviceSync,
    /// Furthest behind first: the oldest cursor.
    Lag,
    /// Lowest battery first (participants without a device last).
    Battery,
    State,
}

impl Order {
    pub const ALL: [Order; 5] = [
        Order::Id,
        Order::LastDeviceSync,
        Order::Lag,
        Order::Battery,
        Order::State,
    ];

    pub fn parse(text: &str) -> Option<Order> {
        Order::ALL.into_iter().find(|o| o.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Order::Id => "id",
            Order::LastDeviceSync => "last_device_sync",
            Order::Lag => "lag",
            Order::Battery => "battery",
            Order::State => "state",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Order::Id => "participant id",
            Order::LastDeviceSync => "last device sync (oldest first)",
            Order::Lag => "sync lag (largest first)",
            Order::Battery => "battery (lowest first)",
            Order::State => "state",
        }
    }

    /// The sort key of table alias `t`, never NULL (`$1` is the instant "never" sorts as).
    fn key(self, t: &str) -> String {
        match self {
            Order::Id => format!("{t}.participant_id"),
            Order::LastDeviceSync => format!("COALESCE({t}.latest_device_sync, $1)"),
            Order::Lag => format!("{t}.sync_cursor"),
            Order::Battery => format!("COALESCE({}, 101)", battery_level(t)),
            Order::State => format!("{t}.state"),
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lowest battery level among the participant's devices on their latest device snapshot.
fn battery_level(t: &str) -> String {
    format!(
        "(SELECT min(d.battery_level) FROM device d WHERE d.participant_id = {t}.participant_id \
           AND d.device_date = (SELECT max(d2.device_date) FROM device d2 \
                                WHERE d2.participant_id = {t}.participant_id))"
    )
}

/// Which participants the list shows.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub order: Order,
    /// Only this state (empty: all).
    pub state: String,
    /// Only this provider (empty: all).
    pub provider: String,
    /// Only ids starting with this (empty: all).
    pub search: String,
    /// Continue after this participant id.
    pub after: Option<String>,
}

/// One row of the participants list.
pub struct ParticipantRow {
    pub participant_id: String,
    pub provider: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub sync_cursor: UtcInstant,
    pub latest_device_sync: Option<UtcInstant>,
    pub last_success_at: Option<UtcInstant>,
    pub last_error: Option<String>,
    pub battery_level: Option<i64>,
}

type ParticipantTuple = (
    String,
    String,
    String,
    Option<String>,
    UtcInstant,
    Option<UtcInstant>,
    Option<UtcInstant>,
    Option<String>,
    Option<i64>,
);

/// Up to `limit` participants in `query`'s order, after `query.after`.
pub async fn participants(
    db: &Database,
    query: &ListQuery,
    limit: i64,
) -> anyhow::Result<Vec<ParticipantRow>> {
    let key_p = query.order.key("p");
    let after = if query.after.is_some() {
        format!(
            "AND ({key_p}, p.participant_id) > \
                 (SELECT {}, q.participant_id FROM participants q WHERE q.participant_id = $6)",
            query.order.key("q")
        )
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT p.participant_id, p.provider, p.state, p.state_reason, p.sync_cursor,
                p.latest_device_sync, p.last_success_at, p.last_error,
                CAST({battery} AS BIGINT)
         FROM participants p
         WHERE ($2 = '' OR p.state = $2) AND ($3 = '' OR p.provider = $3)
           AND ($4 = '' OR substr(p.participant_id, 1, length($4)) = $4)
           {after}
         ORDER BY {key_p}, p.participant_id
         LIMIT $5",
        battery = battery_level("p"),
    );
    let never = UtcInstant::new(DateTime::<Utc>::UNIX_EPOCH);
    // Only the order's fixed expressions are interpolated; every value is bound.
    let rows: Vec<ParticipantTuple> = on_backend!(db.exec(), |e| {
        sqlx::query_as(AssertSqlSafe(sql))
            .bind(never)
            .bind(&query.state)
            .bind(&query.provider)
            .bind(&query.search)
            .bind(limit)
            .bind(query.after.as_deref().unwrap_or(""))
            .fetch_all(e)
            .await
    })
    .context("cannot read participants")?;
    Ok(rows.into_iter().map(participant_row).collect())
}

fn participant_row(row: ParticipantTuple) -> ParticipantRow {
    ParticipantRow {
        participant_id: row.0,
        provider: row.1,
        state: row.2,
        state_reason: row.3,
        sync_cursor: row.4,
        latest_device_sync: row.5,
        last_success_at: row.6,
        last_error: row.7,
        battery_level: row.8,
    }
}

/// One participant as the list shows them, `None` if unknown.
pub async fn participant(db: &Database, id: &str) -> anyhow::Result<Option<ParticipantRow>> {
    let query = ListQuery {
        search: id.to_owned(),
        ..ListQuery::default()
    };
    Ok(participants(db, &query, 1)
        .await?
        .into_iter()
        .find(|p| p.participant_id == id))
}

/// A granted job and how it ended.
pub struct JobRow {
    pub job_id: String,
    pub requested_by: String,
    pub granted_at: UtcInstant,
    pub finished_at: Option<UtcInstant>,
    pub outcome: Option<String>,
    pub detail: Option<String>,
    pub rows_stored: i64,
}

pub async fn jobs(db: &Database, id: &str, limit: i64) -> anyhow::Result<Vec<JobRow>> {
    type Row = (
        String,
        String,
        UtcInstant,
        Option<UtcInstant>,
        Option<String>,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT job_id, requested_by, granted_at, finished_at, outcome, detail, rows_stored \
             FROM sync_jobs WHERE participant_id = $1 ORDER BY granted_at DESC LIMIT $2"
        )
        .bind(id)
        .bind(limit),
        all
    )
    .context("cannot read the participant's sync history")?;
    Ok(rows
        .into_iter()
        .map(|r| JobRow {
            job_id: r.0,
            requested_by: r.1,
            granted_at: r.2,
            finished_at: r.3,
            outcome: r.4,
            detail: r.5,
            rows_stored: r.6,
        })
        .collect())
}

/// The participant's ledger from `since`: `(date, family, status, reason)`.
pub async fn coverage(
    db: &Database,
    id: &str,
    since: NaiveDate,
) -> anyhow::Result<Vec<(NaiveDate, String, String, String)>> {
    fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT date, family, status, reason FROM coverage_daily \
             WHERE participant_id = $1 AND date >= $2 ORDER BY date, family"
        )
        .bind(id)
        .bind(since),
        all
    )
    .context("cannot read the participant's coverage")
}

/// A device on its latest snapshot.
pub struct DeviceRow {
    pub device_id: String,
    pub device_type: Option<String>,
    pub device_version: Option<String>,
    pub battery: Option<String>,
    pub battery_level: Option<i64>,
    pub last_sync_time: Option<UtcInstant>,
}

pub async fn devices(db: &Database, id: &str) -> anyhow::Result<Vec<DeviceRow>> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<UtcInstant>,
    );
    let rows: Vec<Row> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT d.device_id, d.device_type, d.device_version, d.battery, d.battery_level, \
                    d.last_sync_time \
             FROM device d WHERE d.participant_id = $1 AND d.device_date = \
                 (SELECT max(d2.device_date) FROM device d2 \
                  WHERE d2.participant_id = d.participant_id AND d2.device_id = d.device_id) \
             ORDER BY d.device_id"
        )
        .bind(id),
        all
    )
    .context("cannot read the participant's devices")?;
    Ok(rows
        .into_iter()
        .map(|r| DeviceRow {
            device_id: r.0,
            device_type: r.1,
            device_version: r.2,
            battery: r.3,
            battery_level: r.4,
            last_sync_time: r.5,
        })
        .collect())
}

/// An invitation and what became of it.
pub struct InvitationRow {
    pub provider: String,
    pub issued_at: Option<UtcInstant>,
    pub expires_at: Option<UtcInstant>,
    pub used_at: Option<UtcInstant>,
    pub last_problem: Option<String>,
}

pub async fn invitations(db: &Database, id: &str) -> anyhow::Result<Vec<InvitationRow>> {
    type Row = (
        String,
        Option<UtcInstant>,
        Option<UtcInstant>,
        Option<UtcInstant>,
        Option<String>,
    );
    let rows: Vec<Row> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT provider, issued_at, expires_at, used_at, last_problem FROM invitations \
             WHERE participant_id = $1 ORDER BY issued_at DESC LIMIT 20"
        )
        .bind(id),
        all
    )
    .context("cannot read the participant's invitations")?;
    Ok(rows
        .into_iter()
        .map(|r| InvitationRow {
            provider: r.0,
            issued_at: r.1,
            expires_at: r.2,
            used_at: r.3,
            last_problem: r.4,
        })
        .collect())
}

/// One audited action.
pub struct ActionRow {
    pub at: UtcInstant,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub participant_id: Option<String>,
    pub detail: String,
}

/// The newest audited actions, of one participant if given.
pub async fn actions(
    db: &Database,
    participant: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<ActionRow>> {
    type Row = (UtcInstant, String, String, String, Option<String>, String);
    let rows: Vec<Row> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT at, actor, role, action, participant_id, detail FROM operator_actions \
             WHERE ($1 = '' OR participant_id = $1) ORDER BY at DESC LIMIT $2"
        )
        .bind(participant.unwrap_or(""))
        .bind(limit),
        all
    )
    .context("cannot read the audit of operator actions")?;
    Ok(rows
        .into_iter()
        .map(|r| ActionRow {
            at: r.0,
            actor: r.1,
            role: r.2,
            action: r.3,
            participant_id: r.4,
            detail: r.5,
        })
        .collect())
}

/// The participant's provider, `None` if unknown.
pub async fn provider_of(db: &Database, id: &str) -> anyhow::Result<Option<String>> {
    let row: Option<(String,)> = fetch!(
        db.exec(),
        sqlx::query_as("SELECT provider FROM participants WHERE participant_id = $1").bind(id),
        optional
    )
    .context("cannot read participants")?;
    Ok(row.map(|(p,)| p))
}
