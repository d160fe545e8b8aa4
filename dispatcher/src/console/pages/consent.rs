//! Needing consent (`/consent`): the participants `fitlink invite --needing-consent` would
//! invite (a consent to give or give again, a grant running out, a family not permitted), and
//! the operator's button that makes a link for each, shown to copy or downloaded as CSV for a
//! mail merge.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use fitlink_shared::domain::{ParticipantId, Provider};
use maud::html;
use serde::Deserialize;

use super::{authorized, layout};
use crate::console::Console;
use crate::console::session::Session;
use crate::invite::{IssuedInvitation, needing_consent};

/// The participants needing consent, with why and their provider.
async fn needing(console: &Console) -> Result<Vec<(ParticipantId, String, Provider)>, Response> {
    let db = console.db().await?;
    needing_consent(&db, Utc::now())
        .await
        .map_err(|error| layout::unavailable("read who needs a consent", &error))
}

pub(crate) async fn page(State(console): State<Arc<Console>>, session: Session) -> Response {
    let people = match needing(&console).await {
        Ok(people) => people,
        Err(page) => return page,
    };
    let body = html! {
        section {
            @if people.is_empty() { p { "Nobody needs a consent." } }
            @else {
                p { (people.len()) " participant(s) need a consent link. Each link works once." }
                p {
                    (layout::action_button(&session, "/consent/links", "Make links for all", "make-links", &[("format", "html")]))
                    " "
                    (layout::action_button(&session, "/consent/links", "Make links for all (CSV)", "make-links-csv", &[("format", "csv")]))
                }
                div.scroll { table id="needing" {
                    thead { tr { th scope="col" { "Participant" } th scope="col" { "Provider" } th scope="col" { "Why" } } }
                    tbody { @for (id, reason, provider) in &people { tr {
                        td { a href={"/participants/" (id)} { (id) } }
                        td { (provider) }
                        td { (reason.replace('_', " ")) }
                    } } }
                } }
            }
        }
    };
    layout::page(&session, "/consent", "Needing consent", body)
}

#[derive(Deserialize)]
pub(crate) struct LinksForm {
    csrf: String,
    #[serde(default)]
    format: String,
}

pub(crate) async fn links(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<LinksForm>,
) -> Response {
    if let Err(refused) = authorized(&session, &form.csrf) {
        return refused;
    }
    let people = match needing(&console).await {
        Ok(people) => people,
        Err(page) => return page,
    };
    let chosen: Vec<(ParticipantId, Provider)> =
        people.iter().map(|(id, _, p)| (id.clone(), *p)).collect();
    let issued = match console
        .actions
        .consent_links_needing(&session, &chosen)
        .await
    {
        Ok(issued) => issued,
        Err(error) => return layout::unavailable("issue the consent links", &error),
    };
    tracing::info!(user = %session.user, links = issued.len(), "console: consent links for everyone needing one");
    let reason = |id: &ParticipantId| {
        people
            .iter()
            .find(|(p, _, _)| p == id)
            .map(|(_, r, _)| r.clone())
            .unwrap_or_default()
    };
    if form.format == "csv" {
        return csv(&issued, reason);
    }
    layout::page(
        &session,
        "/consent",
        "Consent links",
        html! {
            section.notice {
                p { (issued.len()) " link(s) made. Each works once, until the time shown." }
                div.scroll { table id="links" {
                    thead { tr { th scope="col" { "Participant" } th scope="col" { "Why" } th scope="col" { "Link" } th scope="col" { "Until" } } }
                    tbody { @for i in &issued { tr {
                        td { (i.participant_id) }
                        td { (reason(&i.participant_id)) }
                        td { code { (i.invitation_url) } }
                        td { (i.expires_at.get().format("%Y-%m-%d %H:%M UTC")) }
                    } } }
                } }
            }
        },
    )
}

/// The links as `fitlink invite --csv` writes them.
fn csv(issued: &[IssuedInvitation], reason: impl Fn(&ParticipantId) -> String) -> Response {
    let mut out = csv::Writer::from_writer(Vec::new());
    let _ = out.write_record([
        "participant_id",
        "provider",
        "invitation_url",
        "expires_at",
        "reason",
    ]);
    for i in issued {
        let _ = out.write_record([
            i.participant_id.to_string(),
            i.provider.to_string(),
            i.invitation_url.clone(),
            i.expires_at.to_text(),
            reason(&i.participant_id),
        ]);
    }
    let body = out.into_inner().unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"consent-links.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
