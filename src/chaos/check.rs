//! The end of a chaos run: every row against the simulator's truth, every participant synced
//! or stopped with a reason, no credential lost.

use std::collections::BTreeMap;

use fitlink_shared::domain::{ParticipantId, UtcInstant};
use fitlink_shared::fetch;
use fitlink_shared::secret::{SealedToken, TokenKeys};
use fitlink_shared::store::Database;
use fitlink_simulator::SimConfig;

use crate::checker::{self, Diff, History};

/// Compares the database with the truth and prints the per-table counts.
#[allow(clippy::too_many_arguments)]
pub(super) async fn check(
    db: &Database,
    sim_config: &SimConfig,
    http: &reqwest::Client,
    sim_base: &str,
    key: &TokenKeys,
    fitbit_ids: &[String],
    revoked: &[String],
    latest: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut totals: BTreeMap<&'static str, Diff> = BTreeMap::new();
    let participants: Vec<(String, String, Option<String>, UtcInstant)> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT participant_id, state, state_reason, sync_cursor FROM participants \
                 ORDER BY participant_id",
        ),
        all
    )?;
    let participants: Vec<(String, String, Option<String>, String)> = participants
        .into_iter()
        .map(|(id, state, reason, cursor)| (id, state, reason, cursor.to_text()))
        .collect();
    let mut not_synced = Vec::new();
    for (id, state, reason, cursor) in &participants {
        let history = if fitbit_ids.contains(id) {
            History::Fitbit
        } else {
            History::Google
        };
        let result =
            checker::check_participant(db, sim_config, id, history, &BTreeMap::new()).await?;
        for (table, diff) in &result.tables {
            totals.entry(table).or_default().add(diff);
        }
        if !result.is_clean() {
            problems.push(format!("{id} differs from the truth:\n{result}"));
        }
        let syncing = state == "active" || state == "intraday_not_permitted";
        if syncing && latest.get(id).is_some_and(|l| cursor < l) {
            problems.push(format!(
                "{id} is {state} but not synced (cursor {cursor}) and has no reason"
            ));
        } else if !syncing {
            not_synced.push(format!(
                "{id}: {state} — {}",
                reason.as_deref().unwrap_or("(no reason!)")
            ));
            if reason.as_deref().unwrap_or("").is_empty() {
                problems.push(format!("{id} is {state} without a reason"));
            }
        }
    }
    for id in revoked {
        // A refused grant: Google says revoked; legacy Fitbit cannot tell a revocation from a
        // spent single-use token, and the participant must consent again either way.
        let expected = if fitbit_ids.contains(id) {
            "needs_reconsent"
        } else {
            "revoked"
        };
        let state = participants
            .iter()
            .find(|p| &p.0 == id)
            .map(|p| p.1.as_str());
        if state != Some(expected) {
            problems.push(format!(
                "{id} revoked access but is {state:?}, not {expected}"
            ));
        }
    }

    // Credentials: every legacy participant's stored token is the provider's live one.
    let live: serde_json::Value = http
        .get(format!("{sim_base}/_sim/participants"))
        .send()
        .await?
        .json()
        .await?;
    let mut credentials_lost = 0;
    for p in live["participants"].as_array().into_iter().flatten() {
        let id = p["participant_id"].as_str().unwrap_or_default();
        if !fitbit_ids.iter().any(|f| f == id) || revoked.iter().any(|r| r == id) {
            continue;
        }
        let (sealed,): (SealedToken,) = fetch!(
            db.exec(),
            sqlx::query_as(
                "SELECT sealed_refresh_token FROM credentials WHERE participant_id = $1"
            )
            .bind(id),
            one
        )?;
        let stored = key
            .open(&ParticipantId::new(id)?, &sealed)
            .map(|t| t.expose().clone())
            .unwrap_or_default();
        if p["legacy"]["refresh_token"].as_str() != Some(stored.as_str()) {
            credentials_lost += 1;
            problems.push(format!(
                "{id}: the stored refresh token is not the provider's live one (credential lost)"
            ));
        }
    }

    println!(
        "\n{:<28} {:>10} {:>8} {:>11} {:>8}",
        "table", "expected", "lost", "duplicated", "wrong"
    );
    for (table, d) in &totals {
        println!(
            "{table:<28} {:>10} {:>8} {:>11} {:>8}",
            d.expected, d.lost, d.duplicated, d.wrong
        );
    }
    println!("credentials lost: {credentials_lost}");
    println!("participants not synced ({}):", not_synced.len());
    for line in &not_synced {
        println!("  {line}");
    }
    Ok(problems)
}
