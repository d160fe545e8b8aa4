//! The participants list (`/participants`): filtered by state, provider and id, in one of the
//! list's orders (last device sync, lag, battery, state), a page at a time by keyset (the next
//! page starts after the last id shown), and the same selection as CSV for a spreadsheet.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use fitlink_shared::domain::{ParticipantId, ParticipantState};
use maud::html;
use serde::Deserialize;

use super::{ago, layout, when};
use crate::console::Console;
use crate::console::read::{self, ListQuery, Order, ParticipantRow};
use crate::console::session::Session;

/// Participants on one page.
const PAGE: i64 = 50;
/// Rows read per query while writing the CSV.
const CSV_BATCH: i64 = 1000;

#[derive(Deserialize, Default)]
pub(crate) struct ListParams {
    #[serde(default)]
    sort: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    q: String,
    after: Option<String>,
}

impl ListParams {
    /// The query these parameters ask for, or what is wrong with them.
    fn query(&self) -> Result<ListQuery, String> {
        let order = match self.sort.as_str() {
            "" => Order::Id,
            sort => Order::parse(sort).ok_or_else(|| {
                let all: Vec<&str> = Order::ALL.iter().map(|o| o.as_str()).collect();
                format!("unknown order {sort:?}: use one of {}", all.join(", "))
            })?,
        };
        if !self.state.is_empty()
            && !ParticipantState::ALL
                .iter()
                .any(|s| s.as_str() == self.state)
        {
            return Err(format!("unknown state {:?}", self.state));
        }
        if !matches!(self.provider.as_str(), "" | "google-health" | "fitbit") {
            return Err(format!("unknown provider {:?}", self.provider));
        }
        let after = match self.after.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(id) => Some(
                ParticipantId::new(id)
                    .map_err(|e| format!("after: {e}"))?
                    .to_string(),
            ),
        };
        Ok(ListQuery {
            order,
            state: self.state.clone(),
            provider: self.provider.clone(),
            search: self.q.trim().to_owned(),
            after,
        })
    }

    /// This selection's query string, continuing after `after`.
    fn link(&self, after: Option<&str>) -> String {
        let mut parts = vec![format!("sort={}", self.sort)];
        for (name, value) in [
            ("state", &self.state),
            ("provider", &self.provider),
            ("q", &self.q),
        ] {
            if !value.is_empty() {
                parts.push(format!(
                    "{name}={}",
                    crate::console::login::encode_component(value)
                ));
            }
        }
        if let Some(after) = after {
            parts.push(format!(
                "after={}",
                crate::console::login::encode_component(after)
            ));
        }
        parts.join("&")
    }
}

fn bad_request(problem: String) -> Response {
    layout::bare(
        StatusCode::BAD_REQUEST,
        "That list cannot be shown",
        html! { p { (problem) "." } p { a href="/participants" { "All participants" } } },
    )
}

pub(crate) async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(params): Query<ListParams>,
) -> Response {
    let query = match params.query() {
        Ok(query) => query,
        Err(problem) => return bad_request(problem),
    };
    let db = match console.db().await {
        Ok(db) => db,
        Err(page) => return page,
    };
    let rows = match read::participants(&db, &query, PAGE).await {
        Ok(rows) => rows,
        Err(error) => return layout::unavailable("read participants", &error),
    };
    let now = Utc::now();
    let next = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|r| r.participant_id.clone()))
        .flatten();
    let body = html! {
        section aria-label="Filters" {
            form.filters method="get" action="/participants" {
                div { label for="q" { "Participant id starts with" } input id="q" name="q" value=(params.q); }
                div {
                    label for="state" { "State" }
                    select id="state" name="state" {
                        option value="" { "all" }
                        @for state in ParticipantState::ALL {
                            option value=(state.as_str()) selected[params.state == state.as_str()] { (state.as_str()) }
                        }
                    }
                }
                div {
                    label for="provider" { "Provider" }
                    select id="provider" name="provider" {
                        option value="" { "all" }
                        option value="google-health" selected[params.provider == "google-health"] { "Google Health" }
                        option value="fitbit" selected[params.provider == "fitbit"] { "Fitbit (legacy)" }
                    }
                }
                div {
                    label for="sort" { "Order by" }
                    select id="sort" name="sort" {
                        @for order in Order::ALL {
                            option value=(order.as_str()) selected[query.order == order] { (order.label()) }
                        }
                    }
                }
                button type="submit" id="apply" { "Show" }
                a.button href={"/participants.csv?" (params.link(None))} id="csv" { "Download CSV" }
            }
        }
        section {
            @if rows.is_empty() { p { "No participant matches." } }
            @else {
                div.scroll { table id="participants" {
                    thead { tr {
                        th scope="col" { "Participant" } th scope="col" { "Provider" } th scope="col" { "State" }
                        th scope="col" { "Last device sync" } th scope="col" { "Lag" } th.num scope="col" { "Battery" }
                        th scope="col" { "Last error" }
                    } }
                    tbody {
                        @for row in &rows {
                            tr {
                                td { a href={"/participants/" (row.participant_id)} { (row.participant_id) } }
                                td { (row.provider) }
                                td { (layout::state_badge(&row.state)) }
                                td { (when(row.latest_device_sync, now)) }
                                td { (ago(row.sync_cursor, now)) }
                                td.num { (battery(row)) }
                                td { (row.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                } }
            }
            p {
                @if query.after.is_some() { a href={"/participants?" (params.link(None))} { "First page" } " " }
                @if let Some(next) = &next { a.button href={"/participants?" (params.link(Some(next)))} id="next" { "Next page" } }
            }
        }
    };
    layout::page(&session, "/participants", "Participants", body)
}

fn battery(row: &ParticipantRow) -> String {
    row.battery_level
        .map(|b| format!("{b} %"))
        .unwrap_or_default()
}

/// The selection as CSV, every page of it, streamed.
pub(crate) async fn csv(
    State(console): State<Arc<Console>>,
    _session: Session,
    Query(params): Query<ListParams>,
) -> Response {
    let mut query = match params.query() {
        Ok(query) => query,
        Err(problem) => return bad_request(problem),
    };
    query.after = None;
    let db = match console.db().await {
        Ok(db) => db,
        Err(page) => return page,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let rows = match read::participants(&db, &query, CSV_BATCH).await {
                Ok(rows) => rows,
                Err(error) => {
                    let _ = tx
                        .send(Err(std::io::Error::other(format!("{error:#}"))))
                        .await;
                    return;
                }
            };
            let chunk = csv_rows(&rows, std::mem::take(&mut first));
            if tx.send(Ok(chunk)).await.is_err() {
                return; // the browser went away
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == CSV_BATCH => {
                    query.after = Some(last.participant_id.clone());
                }
                _ => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"participants.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One batch of the CSV (with the header row first if `header`).
fn csv_rows(rows: &[ParticipantRow], header: bool) -> Vec<u8> {
    let mut out = csv::WriterBuilder::new().from_writer(Vec::new());
    if header {
        let _ = out.write_record([
            "participant_id",
            "provider",
            "state",
            "state_reason",
            "sync_cursor",
            "latest_device_sync",
            "last_success_at",
            "battery_level",
            "last_error",
        ]);
    }
    let text =
        |t: Option<fitlink_shared::domain::UtcInstant>| t.map(|t| t.to_text()).unwrap_or_default();
    for r in rows {
        let _ = out.write_record([
            r.participant_id.clone(),
            r.provider.clone(),
            r.state.clone(),
            r.state_reason.clone().unwrap_or_default(),
            r.sync_cursor.to_text(),
            text(r.latest_device_sync),
            text(r.last_success_at),
            r.battery_level.map(|b| b.to_string()).unwrap_or_default(),
            r.last_error.clone().unwrap_or_default(),
        ]);
    }
    out.into_inner().unwrap_or_default()
}
