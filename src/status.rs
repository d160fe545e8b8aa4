//! `fitlink status`: every participant, why each is or is not syncing, how far behind each is,
//! what is stored, and what is waiting on the queues.
//!
//! Read-only: the database is opened `query_only` and the queues are measured by passive
//! declares, so `status` can run at any moment next to a busy fleet. The database part needs
//! the database; the queue part is best effort (an unreachable broker gives `queues: null` and a
//! warning, because "is the data flowing" is the question status exists to answer even when the
//! broker is the thing that is down).
//!
//! # The JSON format (`fitlink status --json`), version 1
//!
//! Stable: fields are only ever added; a change of meaning bumps `format_version`. Keys are
//! snake_case; instants are RFC 3339 UTC text `YYYY-MM-DDTHH:MM:SSZ`; absent values are `null`.
//!
//! ```text
//! {
//!   "format_version": 1,
//!   "generated_at": "2026-11-01T12:00:00Z",
//!   "participants": [                      // sorted by participant_id
//!     {
//!       "participant_id": "P-0001",
//!       "provider": "google-health",         // or "fitbit" (the legacy API)
//!       "state": "active",                   // active | revoked | scope_missing |
//!                                            // provider_data_invalid | dead_lettered | needs_reconsent |
//!                                            // intraday_not_permitted | invited | consent_expired |
//!                                            // withdrawn
//!       "state_reason": null,                // why, when not active
//!       "sync_from": "2026-01-01T00:00:00Z",
//!       "cursor": "2026-11-01T10:00:00Z",    // everything in [sync_from, cursor) is stored
//!       "latest_device_sync": "2026-11-01T11:00:00Z",
//!       "lag_seconds": 3600,                 // latest_device_sync - cursor; null unless both known
//!       "last_success_at": "2026-11-01T11:05:00Z",
//!       "last_error": null,
//!       "last_error_at": null,
//!       "in_flight_job_id": null,            // the one job in flight, if any
//!       "in_flight_since": null,
//!       "retry_at": null,                    // waiting out a rate limit or retry until then
//!       "time_zone": "America/New_York",
//!       "granted_scopes": ["activity", "heart_rate"], // at the last consent; null if never consented
//!       "consented_at": "2026-10-01T00:00:00Z",
//!       "refresh_token_expires_at": null,    // set for grants that expire on a date (7-day testing grants)
//!       "credential_used_at": "2026-11-01T11:05:00Z", // last time the provider accepted the refresh token
//!       "not_permitted": {                   // families the provider refused (scope not granted)
//!         "sleep": "list sleep: HTTP 403 PERMISSION_DENIED …"
//!       },
//!       "rows": {                            // rows stored for this participant, every data table
//!         "activity_summary": 305, "heart_rate_summary": 1220, "resting_heart_rate": 305,
//!         "heart_rate_intraday": 439200, "steps_intraday": 439200, "device": 305,
//!         "sleep_daily_summary": 320, "sleep_level": 9100, …
//!       },
//!       "days_worn_enough": 5,               // days of the compliance window worn long enough;
//!       "compliant": true,                   // both null for a withdrawn participant (not counted)
//!       "gaps": { "not_worn": 1, "device_not_synced": 1 } // window days with a gap, by reason
//!     }
//!   ],
//!   "totals": {
//!     "participants": 1,
//!     "by_provider": { "fitbit": 0, "google-health": 1 },   // every provider, 0 included
//!     "by_state": { "active": 1, "dead_lettered": 0, ... }, // every state, 0 included
//!     "by_provider_and_state": { "google-health": { "active": 1 } }, // non-zero only
//!     "rows": { "activity_summary": 305, ... }              // all rows per table
//!   },
//!   "queues": {                              // null if the broker was unreachable
//!     "namespace": "fitlink",
//!     "jobs": 0,                             // messages ready; null if the queue does not exist
//!     "retry": [ { "delay_secs": 5, "queue": "fitlink.jobs.retry.5s", "depth": 0 }, ... ],
//!     "results": 0,                          // all results partitions together
//!     "results_partitions": [ { "queue": "fitlink.results", "depth": 0, "consumers": 1 } ], // one per partition
//!     "jobs_dead": 0,
//!     "results_dead": 0
//!   },
//!   "invitations": {                         // consent invitations (`fitlink invite`)
//!     "issued": 3, "used": 1,
//!     "pending": 1,                          // unused and not expired
//!     "expired_unused": 1,
//!     "with_problem": 1                      // unused, last flow declined or missing a scope
//!   },
//!   "webhooks": {
//!     "notifications_recorded_7d": 42,       // distinct provider notifications, last 7 days
//!     "deletions": { "rows_deleted": 15, "notifications": 1 }  // provider DELETE notifications
//!   },
//!   "withdrawals": { "count": 1, "purged": 1 },
//!   "expiring_grants": [                     // grants that stop working within 48 hours
//!     { "participant_id": "P-0002", "refresh_token_expires_at": "2026-11-02T09:00:00Z" }
//!   ],
//!   "compliance": {                          // cohort wear compliance (status/compliance.rs)
//!     "as_of": "2026-11-04",                 // --as-of (default: today's UTC date), excluded
//!     "window_days": 7,
//!     "first_day": "2026-10-28", "last_day": "2026-11-03", // the window's local days, inclusive
//!     "min_wear_hours": 10.0, "min_days": 4,
//!     "participants": 10,                    // every participant not withdrawn
//!     "compliant": 8,
//!     "not_compliant": ["P-0003", "P-0007"], // by id, the first 50
//!     "not_compliant_count": 2               // all of them
//!   },
//!   "warnings": []                           // e.g. "broker unreachable: ..."
//! }
//! ```
//!
//! Added in format 1 without a version bump (issue 4, linkage): the states `invited`,
//! `consent_expired` and `withdrawn`; the participant fields `granted_scopes`, `consented_at`,
//! `refresh_token_expires_at` and `credential_used_at`; the top-level `invitations`, `webhooks`,
//! `withdrawals` and `expiring_grants`.
//!
//! Added in format 1 without a version bump (the completeness ledger, `docs/coverage.md`): the
//! top-level `compliance` and the participant fields `days_worn_enough`, `compliant`, `gaps`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use chrono::TimeDelta;
use fitlink_shared::broker::{self, Topology};
use fitlink_shared::config::{BrokerArgs, DatabaseArgs};
use fitlink_shared::domain::{ParticipantState, Provider, UtcInstant};
use fitlink_shared::fetch;
use fitlink_shared::messages::now_instant;
use fitlink_shared::store::DATA_TABLES;
use fitlink_shared::store::Database;
use serde::Serialize;

pub mod compliance;
mod text;

use compliance::{Compliance, ComplianceArgs, ComplianceRule};
pub use text::render_text;

/// Bumped only when a field changes meaning or disappears; new fields do not bump it.
pub const FORMAT_VERSION: u32 = 1;

/// A grant that stops working within this is listed in `expiring_grants`.
const EXPIRING_WITHIN: TimeDelta = TimeDelta::hours(48);
/// The window of `webhooks.notifications_recorded_7d`.
const NOTIFICATIONS_WINDOW: TimeDelta = TimeDelta::days(7);

/// How long to try reaching the broker before reporting without queues.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole report; its JSON form is the stable format documented on this module.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub format_version: u32,
    pub generated_at: UtcInstant,
    pub participants: Vec<ParticipantStatus>,
    pub totals: Totals,
    /// `None` (JSON `null`) when the broker could not be reached; `warnings` says why.
    pub queues: Option<QueueDepths>,
    pub invitations: InvitationCounts,
    pub webhooks: Webhooks,
    pub withdrawals: WithdrawalCounts,
    /// Grants that stop working within 48 hours (soonest first): invite these participants
    /// again before they stop syncing.
    pub expiring_grants: Vec<ExpiringGrant>,
    /// Who wore their tracker long enough on enough recent days.
    pub compliance: Compliance,
    pub warnings: Vec<String>,
}

/// What became of the consent invitations issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct InvitationCounts {
    pub issued: i64,
    pub used: i64,
    /// Unused and not expired: participants who may still follow their link.
    pub pending: i64,
    pub expired_unused: i64,
    /// Unused invitations whose last consent flow ended without a grant (declined, or a scope
    /// the program needs left out): the coordinator may need to talk to the participant.
    pub with_problem: i64,
}

/// Push-driven sync: what the providers' webhooks told us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Webhooks {
    /// Distinct notifications recorded in the last 7 days (duplicates are recorded once).
    pub notifications_recorded_7d: i64,
    pub deletions: Deletions,
}

/// Provider `DELETE` notifications applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Deletions {
    /// Stored points removed because the provider removed them.
    pub rows_deleted: i64,
    pub notifications: i64,
}

/// Participants who left the study.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct WithdrawalCounts {
    pub count: i64,
    /// Of those, how many had their data deleted.
    pub purged: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ExpiringGrant {
    pub participant_id: String,
    pub refresh_token_expires_at: UtcInstant,
}

/// One participant: the `participants` row as an operator needs it, plus stored row counts.
#[derive(Clone, Debug, Serialize)]
pub struct ParticipantStatus {
    pub participant_id: String,
    pub provider: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub sync_from: UtcInstant,
    /// `sync_cursor`: every point in `[sync_from, cursor)` is stored.
    pub cursor: UtcInstant,
    pub latest_device_sync: Option<UtcInstant>,
    /// `latest_device_sync - cursor` in seconds: how much the device holds that we do not.
    pub lag_seconds: Option<i64>,
    pub last_success_at: Option<UtcInstant>,
    pub last_error: Option<String>,
    pub last_error_at: Option<UtcInstant>,
    pub in_flight_job_id: Option<String>,
    pub in_flight_since: Option<UtcInstant>,
    pub retry_at: Option<UtcInstant>,
    pub time_zone: Option<String>,
    /// The scopes granted at the last consent; `None` if the participant never consented
    /// through fitlink (imported with a token, or only invited).
    pub granted_scopes: Option<Vec<String>>,
    pub consented_at: Option<UtcInstant>,
    /// When the grant stops working, if the provider said (time-limited grants).
    pub refresh_token_expires_at: Option<UtcInstant>,
    /// The last time the provider accepted the refresh token (a job or a keep-alive touch).
    pub credential_used_at: Option<UtcInstant>,
    /// Data families the provider refused for this participant (scope not granted), with the
    /// provider's reason: the other families keep syncing; a new consent may grant these.
    pub not_permitted: BTreeMap<String, String>,
    pub rows: TableRows,
    /// Days of the compliance window with at least `min_wear_hours` of wear; `None` for a
    /// participant the compliance does not count (withdrawn).
    pub days_worn_enough: Option<i64>,
    /// `days_worn_enough >= min_days`; `None` when not counted.
    pub compliant: Option<bool>,
    /// Days of the compliance window with a gap in the ledger, by reason: why data is missing.
    pub gaps: BTreeMap<String, i64>,
}

/// Row counts of the data tables ([`DATA_TABLES`], names as in the database), every table
/// present (0 when empty), so dashboards need no special case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TableRows(BTreeMap<&'static str, i64>);

impl Default for TableRows {
    fn default() -> Self {
        TableRows(DATA_TABLES.iter().map(|t| (*t, 0)).collect())
    }
}

impl TableRows {
    /// Rows of `table` (0 for a table that is not a data table).
    pub fn get(&self, table: &str) -> i64 {
        self.0.get(table).copied().unwrap_or(0)
    }

    fn add(&mut self, table: &'static str, n: i64) {
        *self.0.entry(table).or_default() += n;
    }

    fn total(&self) -> i64 {
        self.0.values().sum()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub participants: i64,
    /// Every provider, zero counts included (dashboards need no special case for "none yet").
    pub by_provider: BTreeMap<String, i64>,
    /// Every state, zero counts included.
    pub by_state: BTreeMap<String, i64>,
    /// Provider → state → participants, non-zero counts only: who still has to re-consent,
    /// and on which provider.
    pub by_provider_and_state: BTreeMap<String, BTreeMap<String, i64>>,
    pub rows: TableRows,
}

/// Messages ready in each queue of the fleet; `None` (null) for a queue that does not exist.
#[derive(Clone, Debug, Serialize)]
pub struct QueueDepths {
    pub namespace: String,
    pub jobs: Option<u32>,
    pub retry: Vec<RetryDepth>,
    /// All results partitions together (`None` if any of them does not exist).
    pub results: Option<u32>,
    /// Each results partition (one entry when the fleet has one results queue).
    pub results_partitions: Vec<QueueDepth>,
    pub jobs_dead: Option<u32>,
    pub results_dead: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueueDepth {
    pub queue: String,
    pub depth: Option<u32>,
    /// Writers consuming it (the active one and any standby).
    pub consumers: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RetryDepth {
    pub delay_secs: u64,
    pub queue: String,
    pub depth: Option<u32>,
}

/// Builds the report: the database part (required) and the queue part (best effort), with
/// compliance under `compliance`'s thresholds (checked before anything is read).
pub async fn status(
    database: &DatabaseArgs,
    broker: &BrokerArgs,
    compliance: &ComplianceArgs,
) -> anyhow::Result<StatusReport> {
    let generated_at = now_instant();
    let rule = compliance.rule(generated_at.get().date_naive())?;
    let (participants, queues) = tokio::join!(read_database(database, &rule), read_queues(broker));
    let Tables {
        participants,
        totals,
        linkage,
        compliance,
    } = participants?;
    let mut warnings = Vec::new();
    let queues = match queues {
        Ok(queues) => {
            let missing: Vec<String> = queues
                .named()
                .into_iter()
                .filter(|(_, depth)| depth.is_none())
                .map(|(name, _)| name)
                .collect();
            if missing.len() == queues.named().len() {
                warnings.push(format!(
                    "no queues of namespace {} exist yet (no role has declared them; is this the fleet's FITLINK_NAMESPACE?)",
                    queues.namespace
                ));
            } else if !missing.is_empty() {
                warnings.push(format!(
                    "queues that do not exist yet (no role has declared them): {}",
                    missing.join(", ")
                ));
            }
            warnings.extend(waiting_for_a_writer(&queues));
            Some(queues)
        }
        Err(error) => {
            warnings.push(format!(
                "broker unreachable, queue depths unknown: {error:#}"
            ));
            None
        }
    };
    Ok(StatusReport {
        format_version: FORMAT_VERSION,
        generated_at,
        participants,
        totals,
        queues,
        invitations: linkage.invitations,
        webhooks: linkage.webhooks,
        withdrawals: linkage.withdrawals,
        expiring_grants: linkage.expiring_grants,
        compliance,
        warnings,
    })
}

/// Results partitions whose messages no writer consumes: a queued import, consent or data
/// waits there until a writer runs (nothing is lost).
fn waiting_for_a_writer(queues: &QueueDepths) -> Vec<String> {
    queues
        .results_partitions
        .iter()
        .filter(|p| p.depth.is_some_and(|d| d > 0) && p.consumers == Some(0))
        .map(|p| {
            format!(
                "{} message(s) wait on {} and no writer consumes it: queued imports, consents and data are applied when a writer runs",
                p.depth.unwrap_or_default(),
                p.queue
            )
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct ParticipantRow {
    participant_id: String,
    provider: String,
    state: String,
    state_reason: Option<String>,
    sync_from: UtcInstant,
    sync_cursor: UtcInstant,
    latest_device_sync: Option<UtcInstant>,
    last_success_at: Option<UtcInstant>,
    last_error: Option<String>,
    last_error_at: Option<UtcInstant>,
    in_flight_job_id: Option<String>,
    in_flight_since: Option<UtcInstant>,
    retry_at: Option<UtcInstant>,
    time_zone: Option<String>,
    granted_scopes: Option<String>,
    consented_at: Option<UtcInstant>,
    refresh_token_expires_at: Option<UtcInstant>,
    credential_used_at: Option<UtcInstant>,
}

/// What the database part of the report holds.
struct Tables {
    participants: Vec<ParticipantStatus>,
    totals: Totals,
    linkage: Linkage,
    compliance: Compliance,
}

/// Invitations, webhooks, withdrawals and expiring grants.
struct Linkage {
    invitations: InvitationCounts,
    webhooks: Webhooks,
    withdrawals: WithdrawalCounts,
    expiring_grants: Vec<ExpiringGrant>,
}

async fn read_database(database: &DatabaseArgs, rule: &ComplianceRule) -> anyhow::Result<Tables> {
    let db = database.open_for_reading("status").await?;
    let result = read_tables(&db, rule).await;
    db.close().await;
    result
}

async fn read_tables(db: &Database, rule: &ComplianceRule) -> anyhow::Result<Tables> {
    let rows: Vec<ParticipantRow> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT participant_id, provider, state, state_reason, sync_from, sync_cursor,
                latest_device_sync, last_success_at, last_error, last_error_at,
                in_flight_job_id, in_flight_since, retry_at, time_zone,
                granted_scopes, consented_at, refresh_token_expires_at, credential_used_at
         FROM participants ORDER BY participant_id",
        ),
        all
    )
    .context("cannot read participants")?;
    let compliance::CohortCompliance {
        summary: compliance,
        by_participant: mut wear,
    } = compliance::read_compliance(db, rule).await?;

    let mut counts: BTreeMap<String, TableRows> = BTreeMap::new();
    let mut table_totals = TableRows::default();
    let refused: Vec<(String, String, String)> = fetch!(
        db.exec(),
        sqlx::query_as("SELECT participant_id, family, reason FROM family_permissions"),
        all
    )
    .context("cannot read refused data families")?;
    let mut not_permitted: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (participant, family, reason) in refused {
        not_permitted
            .entry(participant)
            .or_default()
            .insert(family, reason);
    }
    for table in DATA_TABLES {
        // Table names come from a constant list, never from input.
        let query = format!("SELECT participant_id, count(*) FROM {table} GROUP BY participant_id");
        let per_participant: Vec<(String, i64)> =
            fetch!(db.exec(), sqlx::query_as(sqlx::AssertSqlSafe(query)), all)
                .with_context(|| format!("cannot count rows of {table}"))?;
        for (participant, n) in per_participant {
            counts.entry(participant).or_default().add(table, n);
            table_totals.add(table, n);
        }
    }

    let mut by_provider: BTreeMap<String, i64> = [Provider::GoogleHealth, Provider::Fitbit]
        .into_iter()
        .map(|p| (p.as_str().to_owned(), 0))
        .collect();
    let mut by_state: BTreeMap<String, i64> = ParticipantState::ALL
        .into_iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    let mut by_provider_and_state: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let participants: Vec<ParticipantStatus> = rows
        .into_iter()
        .map(
            |ParticipantRow {
                 participant_id,
                 provider,
                 state,
                 state_reason,
                 sync_from,
                 sync_cursor: cursor,
                 latest_device_sync,
                 last_success_at,
                 last_error,
                 last_error_at,
                 in_flight_job_id,
                 in_flight_since,
                 retry_at,
                 time_zone,
                 granted_scopes,
                 consented_at,
                 refresh_token_expires_at,
                 credential_used_at,
             }| {
                *by_provider.entry(provider.clone()).or_default() += 1;
                *by_state.entry(state.clone()).or_default() += 1;
                *by_provider_and_state
                    .entry(provider.clone())
                    .or_default()
                    .entry(state.clone())
                    .or_default() += 1;
                let lag_seconds =
                    latest_device_sync.map(|latest| (latest.get() - cursor.get()).num_seconds());
                let wear = wear.remove(&participant_id).unwrap_or_default();
                ParticipantStatus {
                    days_worn_enough: wear.days_worn_enough,
                    compliant: wear.compliant,
                    gaps: wear.gaps,
                    rows: counts.remove(&participant_id).unwrap_or_default(),
                    not_permitted: not_permitted.remove(&participant_id).unwrap_or_default(),
                    participant_id,
                    provider,
                    state,
                    state_reason,
                    sync_from,
                    cursor,
                    latest_device_sync,
                    lag_seconds,
                    last_success_at,
                    last_error,
                    last_error_at,
                    in_flight_job_id,
                    in_flight_since,
                    retry_at,
                    time_zone,
                    granted_scopes: granted_scopes
                        .map(|s| s.split_whitespace().map(str::to_owned).collect()),
                    consented_at,
                    refresh_token_expires_at,
                    credential_used_at,
                }
            },
        )
        .collect();
    let totals = Totals {
        participants: participants.len() as i64,
        by_provider,
        by_state,
        by_provider_and_state,
        rows: table_totals,
    };
    let linkage = read_linkage(db, now_instant()).await?;
    Ok(Tables {
        participants,
        totals,
        linkage,
        compliance,
    })
}

/// The linkage part of the report, as of `now`.
async fn read_linkage(db: &Database, now: UtcInstant) -> anyhow::Result<Linkage> {
    let invitations: InvitationCounts = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT count(*) AS issued,
                count(used_at) AS used,
                count(*) FILTER (WHERE used_at IS NULL AND (expires_at IS NULL OR expires_at > $1))
                    AS pending,
                count(*) FILTER (WHERE used_at IS NULL AND expires_at <= $1) AS expired_unused,
                count(*) FILTER (WHERE used_at IS NULL AND last_problem IS NOT NULL)
                    AS with_problem
         FROM invitations",
        )
        .bind(now),
        one
    )
    .context("cannot read invitations")?;
    let since = UtcInstant::new(now.get() - NOTIFICATIONS_WINDOW);
    let notifications_recorded_7d: i64 = fetch!(
        db.exec(),
        sqlx::query_scalar("SELECT count(*) FROM provider_notifications WHERE received_at >= $1")
            .bind(since),
        one
    )
    .context("cannot read provider notifications")?;
    let deletions: Deletions = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT CAST(coalesce(sum(rows_deleted), 0) AS BIGINT) AS rows_deleted,
                count(DISTINCT notification_id) AS notifications
         FROM provider_deletions",
        ),
        one
    )
    .context("cannot read provider deletions")?;
    let withdrawals: WithdrawalCounts = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT count(*) AS count, count(*) FILTER (WHERE purged) AS purged FROM withdrawals",
        ),
        one
    )
    .context("cannot read withdrawals")?;
    let until = UtcInstant::new(now.get() + EXPIRING_WITHIN);
    let expiring_grants: Vec<ExpiringGrant> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT participant_id, refresh_token_expires_at FROM participants
         WHERE refresh_token_expires_at > $1 AND refresh_token_expires_at <= $2
           AND state != 'withdrawn'
         ORDER BY refresh_token_expires_at, participant_id",
        )
        .bind(now)
        .bind(until),
        all
    )
    .context("cannot read expiring grants")?;
    Ok(Linkage {
        invitations,
        webhooks: Webhooks {
            notifications_recorded_7d,
            deletions,
        },
        withdrawals,
        expiring_grants,
    })
}

impl QueueDepths {
    /// Every queue with its depth, by full name.
    fn named(&self) -> Vec<(String, Option<u32>)> {
        let t = Topology::new(&self.namespace);
        let mut out = vec![(t.jobs, self.jobs)];
        out.extend(self.retry.iter().map(|r| (r.queue.clone(), r.depth)));
        out.extend(
            self.results_partitions
                .iter()
                .map(|r| (r.queue.clone(), r.depth)),
        );
        out.push((t.jobs_dead, self.jobs_dead));
        out.push((t.results_dead, self.results_dead));
        out
    }
}

async fn read_queues(broker: &BrokerArgs) -> anyhow::Result<QueueDepths> {
    let conn = tokio::time::timeout(BROKER_TIMEOUT, broker::connect(broker, "status"))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", BROKER_TIMEOUT.as_secs()))??;
    let topology = broker.topology();
    // A passive declare of a missing queue closes its channel: one fresh channel per queue.
    let mut retry = Vec::with_capacity(topology.retry.len());
    for (delay, queue) in &topology.retry {
        retry.push(RetryDepth {
            delay_secs: delay.as_secs(),
            queue: queue.clone(),
            depth: broker::queue_depth_on_fresh_channel(&conn, queue).await?,
        });
    }
    let mut results_partitions = Vec::with_capacity(topology.results.len());
    for queue in &topology.results {
        results_partitions.push(QueueDepth {
            queue: queue.clone(),
            depth: broker::queue_depth_on_fresh_channel(&conn, queue).await?,
            consumers: broker::queue_consumers_on_fresh_channel(&conn, queue).await?,
        });
    }
    let results = results_partitions
        .iter()
        .map(|r| r.depth)
        .sum::<Option<u32>>();
    let depths = QueueDepths {
        namespace: broker.namespace.clone(),
        jobs: broker::queue_depth_on_fresh_channel(&conn, &topology.jobs).await?,
        retry,
        results,
        results_partitions,
        jobs_dead: broker::queue_depth_on_fresh_channel(&conn, &topology.jobs_dead).await?,
        results_dead: broker::queue_depth_on_fresh_channel(&conn, &topology.results_dead).await?,
    };
    let _ = conn.close(200, "OK".into()).await;
    Ok(depths)
}

#[cfg(test)]
mod tests;
