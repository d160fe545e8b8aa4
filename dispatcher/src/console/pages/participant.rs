//! One participant (`/participants/{id}`): their state and why, a days × families grid of the
//! completeness ledger, their devices with battery, their syncs and errors, their invitations,
//! what operators did for them; and the two things an operator does for one participant: sync
//! now, and a new consent link.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Days, NaiveDate, Utc};
use fitlink_shared::domain::{ParticipantId, Provider};
use fitlink_shared::families::Family;
use maud::{Markup, html};
use serde::Deserialize;

use super::{ago, authorized, layout, when};
use crate::console::Console;
use crate::console::read;
use crate::console::session::Session;

/// Days of the ledger the grid shows, ending today.
const GRID_DAYS: u64 = 14;

#[derive(Deserialize)]
pub(crate) struct Flash {
    done: Option<String>,
}

pub(crate) async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    axum::extract::Query(flash): axum::extract::Query<Flash>,
) -> Response {
    let db = match console.db().await {
        Ok(db) => db,
        Err(page) => return page,
    };
    let now = Utc::now();
    let since = now.date_naive() - Days::new(GRID_DAYS - 1);
    let read = async {
        let Some(p) = read::participant(&db, &id).await? else {
            return anyhow::Ok(None);
        };
        let jobs = read::jobs(&db, &id, 20).await?;
        let coverage = read::coverage(&db, &id, since).await?;
        let devices = read::devices(&db, &id).await?;
        let invitations = read::invitations(&db, &id).await?;
        let actions = read::actions(&db, Some(&id), 20).await?;
        Ok(Some((p, jobs, coverage, devices, invitations, actions)))
    };
    let (p, jobs, coverage, devices, invitations, actions) = match read.await {
        Ok(Some(all)) => all,
        Ok(None) => {
            return layout::not_found(&session, &format!("No participant {id:?} in this study."));
        }
        Err(error) => return layout::unavailable("read the participant", &error),
    };
    let done = match flash.done.as_deref() {
        Some("sync") => Some(
            "Sync requested: the writer grants it unless a sync is already running. New data shows here as it is stored.",
        ),
        _ => None,
    };
    let body = html! {
        @if let Some(done) = done { section.notice role="status" id="done" { p { (done) } } }
        section {
            h2 { "Now" }
            p { (layout::state_badge(&p.state)) " " (p.state_reason.as_deref().unwrap_or("")) }
            table {
                tbody {
                    tr { th scope="row" { "Provider" } td { (p.provider) } }
                    tr { th scope="row" { "Stored up to (cursor)" } td id="cursor" { (when(Some(p.sync_cursor), now)) } }
                    tr { th scope="row" { "Tracker last synced" } td { (when(p.latest_device_sync, now)) } }
                    tr { th scope="row" { "Last successful sync" } td { (when(p.last_success_at, now)) } }
                    tr { th scope="row" { "Last error" } td { (p.last_error.as_deref().unwrap_or("none")) } }
                }
            }
            p {
                (layout::action_button(&session, &format!("/participants/{id}/sync"), "Sync now", "sync-now", &[]))
                " "
                (layout::action_button(&session, &format!("/participants/{id}/consent-link"), "New consent link", "consent-link", &[]))
            }
        }
        section {
            h2 { "Coverage, last " (GRID_DAYS) " days" }
            (grid(since, &coverage))
            p.muted { "✓ complete · ½ partial · ✗ missing; hover or focus a cell for the reason." }
        }
        section {
            h2 { "Devices" }
            @if devices.is_empty() { p.muted { "No device reported yet." } }
            @else {
                div.scroll { table id="devices" {
                    thead { tr { th scope="col" { "Device" } th scope="col" { "Type" } th.num scope="col" { "Battery" } th scope="col" { "Last synced" } } }
                    tbody { @for d in &devices { tr {
                        td { (d.device_version.as_deref().unwrap_or(&d.device_id)) }
                        td { (d.device_type.as_deref().unwrap_or("")) }
                        td.num { (d.battery_level.map(|b| format!("{b} %")).unwrap_or_default()) " " (d.battery.as_deref().unwrap_or("")) }
                        td { (when(d.last_sync_time, now)) }
                    } } }
                } }
            }
        }
        section {
            h2 { "Syncs" }
            @if jobs.is_empty() { p.muted { "No sync yet." } }
            @else {
                div.scroll { table id="syncs" {
                    thead { tr { th scope="col" { "Granted" } th scope="col" { "Job" } th scope="col" { "Asked by" } th scope="col" { "Outcome" } th.num scope="col" { "Rows" } th scope="col" { "Detail" } } }
                    tbody { @for j in &jobs { tr {
                        td { (when(Some(j.granted_at), now)) }
                        td { code title=(j.job_id) { (j.job_id.get(..8).unwrap_or(&j.job_id)) } }
                        td { (j.requested_by) }
                        td { @match (&j.outcome, j.finished_at) {
                            (Some(o), Some(at)) => { (o) span.muted { " after " (ago(j.granted_at, at.get())) } }
                            (Some(o), None) => { (o) }
                            (None, _) => { span.badge.none { "running" } }
                        } }
                        td.num { (j.rows_stored) }
                        td { (j.detail.as_deref().unwrap_or("")) }
                    } } }
                } }
            }
        }
        section {
            h2 { "Consent and invitations" }
            @if invitations.is_empty() { p.muted { "No invitation recorded." } }
            @else {
                div.scroll { table id="invitations" {
                    thead { tr { th scope="col" { "Issued" } th scope="col" { "Provider" } th scope="col" { "Expires" } th scope="col" { "Used" } th scope="col" { "Problem" } } }
                    tbody { @for i in &invitations { tr {
                        td { (when(i.issued_at, now)) } td { (i.provider) } td { (when(i.expires_at, now)) }
                        td { (when(i.used_at, now)) } td { (i.last_problem.as_deref().unwrap_or("")) }
                    } } }
                } }
            }
        }
        section {
            h2 { "What operators did" }
            @if actions.is_empty() { p.muted { "Nothing yet." } }
            @else { (super::audit::table(&actions, now)) }
        }
    };
    layout::page(
        &session,
        "/participants",
        &format!("Participant {id}"),
        body,
    )
}

/// The days × families grid: one row per ledger family, one column per day.
fn grid(since: NaiveDate, coverage: &[(NaiveDate, String, String, String)]) -> Markup {
    let days: Vec<NaiveDate> = (0..GRID_DAYS).map(|i| since + Days::new(i)).collect();
    html! {
        div.scroll { table id="coverage" {
            thead { tr {
                th scope="col" { "Family" }
                @for d in &days { th scope="col" { (d.format("%m-%d")) } }
            } }
            tbody {
                @for family in Family::LEDGER {
                    tr {
                        th scope="row" { (family.as_str()) }
                        @for d in &days {
                            @let cell = coverage.iter().find(|(date, f, _, _)| date == d && f == family.as_str());
                            @match cell {
                                Some((_, _, status, reason)) => {
                                    @let (mark, tone) = match status.as_str() {
                                        "complete" => ("✓", "ok"),
                                        "partial" => ("½", "warn"),
                                        _ => ("✗", "bad"),
                                    };
                                    td class={"cell " (tone)} title={(status) ": " (reason)} tabindex="0"
                                        aria-label={(family.as_str()) " " (d) ": " (status) ", " (reason)} { (mark) }
                                }
                                None => { td.cell.none title="not in the ledger" { "·" } }
                            }
                        }
                    }
                }
            }
        } }
    }
}

#[derive(Deserialize)]
pub(crate) struct ActionForm {
    csrf: String,
}

/// The gate of an action on one participant: an operator's form from this console, and a
/// well-formed participant id.
#[expect(
    clippy::result_large_err,
    reason = "the refusal is the response itself, made once per request"
)]
fn acting_on(session: &Session, form: &ActionForm, id: &str) -> Result<ParticipantId, Response> {
    authorized(session, &form.csrf)?;
    ParticipantId::new(id).map_err(|e| {
        layout::bare(
            axum::http::StatusCode::BAD_REQUEST,
            "Not a participant id",
            html! { p { (e.to_string()) } },
        )
    })
}

pub(crate) async fn sync_now(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let pid = match acting_on(&session, &form, &id) {
        Ok(pid) => pid,
        Err(page) => return page,
    };
    match console.actions.sync_now(&session, &pid).await {
        Ok(job_id) => {
            tracing::info!(user = %session.user, participant_id = %pid, %job_id, "console: sync now");
            Redirect::to(&format!("/participants/{id}?done=sync")).into_response()
        }
        Err(error) => layout::unavailable("request the sync", &error),
    }
}

pub(crate) async fn consent_link(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let pid = match acting_on(&session, &form, &id) {
        Ok(pid) => pid,
        Err(page) => return page,
    };
    let db = match console.db().await {
        Ok(db) => db,
        Err(page) => return page,
    };
    let provider = match read::provider_of(&db, &id).await {
        Ok(Some(p)) => p.parse::<Provider>().unwrap_or(Provider::GoogleHealth),
        Ok(None) => {
            return layout::not_found(&session, &format!("No participant {id:?} in this study."));
        }
        Err(error) => return layout::unavailable("read the participant", &error),
    };
    match console.actions.consent_link(&session, &pid, provider).await {
        Ok(link) => layout::page(
            &session,
            "/participants",
            &format!("Consent link for {id}"),
            html! {
                section.notice {
                    p { "Send this link to the participant. It works once, until " (link.expires_at.get().format("%Y-%m-%d %H:%M UTC")) "." }
                    p { label for="link" { "Link" } }
                    p { input id="link" readonly value=(link.invitation_url) size="80" style="width:100%"; }
                    p { a href={"/participants/" (id)} { "Back to " (id) } }
                }
            },
        ),
        Err(error) => layout::unavailable("issue the consent link", &error),
    }
}
