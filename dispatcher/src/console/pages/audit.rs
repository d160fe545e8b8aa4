//! The audit page (`/audit`): the newest operator actions, who, when, what.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::{layout, when};
use crate::console::Console;
use crate::console::read::{self, ActionRow};
use crate::console::session::Session;

/// Actions the page lists.
const SHOWN: i64 = 200;

pub(crate) async fn page(State(console): State<Arc<Console>>, session: Session) -> Response {
    let db = match console.db().await {
        Ok(db) => db,
        Err(page) => return page,
    };
    let actions = match read::actions(&db, None, SHOWN).await {
        Ok(actions) => actions,
        Err(error) => return layout::unavailable("read the audit", &error),
    };
    let now = Utc::now();
    let body = html! {
        section {
            p.muted { "Every action taken in the console, newest first (the last " (SHOWN) "). \
                       The full record is the operator_actions table." }
            @if actions.is_empty() { p { "No action yet." } } @else { (table(&actions, now)) }
        }
    };
    layout::page(&session, "/audit", "Audit", body)
}

/// Actions as a table (also on a participant's page).
pub(crate) fn table(actions: &[ActionRow], now: DateTime<Utc>) -> Markup {
    html! {
        div.scroll { table id="audit" {
            thead { tr {
                th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                th scope="col" { "Participant" } th scope="col" { "Detail" }
            } }
            tbody { @for a in actions { tr {
                td { (when(Some(a.at), now)) }
                td { (a.actor) span.muted { " (" (a.role) ")" } }
                td { (a.action.replace('_', " ")) }
                td { @if let Some(p) = &a.participant_id { a href={"/participants/" (p)} { (p) } } }
                td { code { (a.detail) } }
            } } }
        } }
    }
}
