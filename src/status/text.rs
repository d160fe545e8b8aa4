//! `fitlink status` for a terminal: the report as lines a coordinator reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use fitlink_shared::domain::UtcInstant;

use super::*;

/// The report as a table for a terminal: one line per participant (with a second line saying
/// why, for any participant that is not syncing or last failed), then totals, queues, warnings.
pub fn render_text(report: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "fitlink status at {}", report.generated_at);
    let _ = writeln!(out);

    if report.participants.is_empty() {
        let _ = writeln!(
            out,
            "no participants yet (import some with `fitlink participants import FILE.csv`)"
        );
    } else {
        let header = [
            "PARTICIPANT",
            "PROVIDER",
            "STATE",
            "CURSOR",
            "LAG",
            "LAST SUCCESS",
            "IN FLIGHT",
            "RETRY AT",
            "ACTIVITY",
            "HR ZONES",
            "RESTING",
            "HR INTRADAY",
            "STEPS INTRADAY",
        ];
        let rows: Vec<Vec<String>> = report
            .participants
            .iter()
            .map(|p| {
                vec![
                    p.participant_id.clone(),
                    p.provider.clone(),
                    p.state.clone(),
                    p.cursor.to_text(),
                    p.lag_seconds.map_or_else(|| "-".into(), human_duration),
                    dash(&p.last_success_at),
                    p.in_flight_job_id
                        .as_deref()
                        .map_or_else(|| "-".into(), |j| j.chars().take(8).collect()),
                    dash(&p.retry_at),
                    p.rows.get("activity_summary").to_string(),
                    p.rows.get("heart_rate_summary").to_string(),
                    p.rows.get("resting_heart_rate").to_string(),
                    p.rows.get("heart_rate_intraday").to_string(),
                    p.rows.get("steps_intraday").to_string(),
                ]
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        // Counts are right-aligned (columns from ACTIVITY on), text left-aligned.
        let numeric_from = 8;
        let line = |out: &mut String, cells: &[&str]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let w = widths[i];
                if i > 0 {
                    text.push_str("  ");
                }
                if i >= numeric_from {
                    let _ = write!(text, "{cell:>w$}");
                } else {
                    let _ = write!(text, "{cell:<w$}");
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&mut out, &header);
        for (p, row) in report.participants.iter().zip(&rows) {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            line(&mut out, &cells);
            if let Some(why) = explanation(p) {
                let _ = writeln!(out, "    \u{21b3} {why}");
            }
            for (family, reason) in &p.not_permitted {
                let _ = writeln!(out, "    \u{21b3} {family} not permitted: {reason}");
            }
        }
    }

    let t = &report.totals;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "participants: {} (by provider: {}; by state: {})",
        t.participants,
        counts(&t.by_provider),
        counts(&t.by_state)
    );
    for (provider, states) in &t.by_provider_and_state {
        let _ = writeln!(out, "  {provider}: {}", counts(states));
    }
    let per_table: Vec<String> = DATA_TABLES
        .iter()
        .map(|table| format!("{table} {}", t.rows.get(table)))
        .collect();
    let _ = writeln!(
        out,
        "rows: {} (total {})",
        per_table.join(", "),
        t.rows.total()
    );
    match &report.queues {
        Some(q) => {
            let depth = |d: Option<u32>| d.map_or_else(|| "missing".into(), |d| d.to_string());
            let retry: Vec<String> = q
                .retry
                .iter()
                .map(|r| format!("{}s {}", r.delay_secs, depth(r.depth)))
                .collect();
            let _ = writeln!(
                out,
                "queues ({}): jobs {}, retry [{}], results {}, jobs.dead {}, results.dead {}",
                q.namespace,
                depth(q.jobs),
                retry.join(", "),
                depth(q.results),
                depth(q.jobs_dead),
                depth(q.results_dead)
            );
        }
        None => {
            let _ = writeln!(out, "queues: unknown");
        }
    }
    let i = &report.invitations;
    let _ = writeln!(
        out,
        "invitations: {} issued, {} used, {} pending, {} expired unused, {} with a problem",
        i.issued, i.used, i.pending, i.expired_unused, i.with_problem
    );
    let w = &report.webhooks;
    let _ = writeln!(
        out,
        "webhooks: {} notifications in 7 days; deletions: {} notifications, {} rows deleted",
        w.notifications_recorded_7d, w.deletions.notifications, w.deletions.rows_deleted
    );
    let _ = writeln!(
        out,
        "withdrawals: {} ({} purged)",
        report.withdrawals.count, report.withdrawals.purged
    );
    let days_worn = |id: &str| {
        report
            .participants
            .iter()
            .find(|p| p.participant_id == id)
            .and_then(|p| p.days_worn_enough)
    };
    out.push_str(&compliance::render_text(&report.compliance, days_worn));
    if !report.expiring_grants.is_empty() {
        let expiring: Vec<String> = report
            .expiring_grants
            .iter()
            .map(|g| format!("{} at {}", g.participant_id, g.refresh_token_expires_at))
            .collect();
        let _ = writeln!(
            out,
            "grants expiring within 48h (invite again): {}",
            expiring.join(", ")
        );
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

/// Why a participant is not syncing, or what went wrong last time; `None` if all is well.
fn explanation(p: &ParticipantStatus) -> Option<String> {
    let error = p.last_error.as_deref().map(|e| match &p.last_error_at {
        Some(at) => format!("last error at {at}: {e}"),
        None => format!("last error: {e}"),
    });
    if p.state != ParticipantState::Active.as_str() {
        let reason = p.state_reason.as_deref().unwrap_or("no reason recorded");
        return Some(match error {
            Some(error) => format!("{}: {reason} ({error})", p.state),
            None => format!("{}: {reason}", p.state),
        });
    }
    // Active: mention an error only if it is newer than the last success.
    let unresolved = match (&p.last_error_at, &p.last_success_at) {
        (Some(error_at), Some(success_at)) => error_at > success_at,
        (_, None) => true,
        (None, Some(_)) => false,
    };
    let retry = p.retry_at.map(|at| format!("waiting until {at}"));
    match (error.filter(|_| unresolved), retry) {
        (Some(error), Some(retry)) => Some(format!("{retry}; {error}")),
        (Some(error), None) => Some(error),
        (None, Some(retry)) => Some(retry),
        (None, None) => None,
    }
}

fn dash(value: &Option<UtcInstant>) -> String {
    value.map_or_else(|| "-".into(), UtcInstant::to_text)
}

fn counts(map: &BTreeMap<String, i64>) -> String {
    let nonzero: Vec<String> = map
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if nonzero.is_empty() {
        "none".into()
    } else {
        nonzero.join(", ")
    }
}

/// `3d 4h`, `2h 5m`, `7m 30s`, `45s`; negative lags (a cursor past the device) keep their sign.
fn human_duration(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let text = if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    };
    format!("{sign}{text}")
}
