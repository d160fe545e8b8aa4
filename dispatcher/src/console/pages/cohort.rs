//! The cohort page (`/`): how many participants are in each state, how far behind the syncing
//! ones are, who wore their tracker enough, what needs attention (consent, dead letters), and
//! the newest failures. Every number is one bounded query, so the page answers as fast for
//! 100,000 participants as for ten (`fitlink bench console`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use fitlink_shared::compliance::{ComplianceRule, count_compliant};
use fitlink_shared::domain::UtcInstant;
use fitlink_shared::store::Database;
use maud::html;
use serde::Deserialize;

use super::{layout, when};
use crate::console::Console;
use crate::console::chart::{self, Bar};
use crate::console::read::{self, LAG_BUCKETS};
use crate::console::session::Session;

/// Everything the cohort page reads from the database.
pub struct CohortFacts {
    pub states: Vec<read::StateCount>,
    /// Syncing participants per [`LAG_BUCKETS`] entry.
    pub lag: [i64; 5],
    /// Participants counted for compliance, and how many are compliant.
    pub counted: i64,
    pub compliant: i64,
    pub needing: usize,
    pub failures: Vec<read::Failure>,
}

/// The cohort page's queries (of one provider if `provider` is not empty): what the page costs
/// the database, which `fitlink bench console` times beside the whole page.
pub async fn read_cohort(
    db: &Database,
    rule: &ComplianceRule,
    now: DateTime<Utc>,
    provider: &str,
) -> anyhow::Result<CohortFacts> {
    let states = read::states(db, provider).await?;
    let lag = read::lag_histogram(db, now, provider).await?;
    let (counted, compliant) = count_compliant(db, rule).await?;
    let needing = crate::invite::needing_consent(db, now).await?.len();
    let failures = read::newest_failures(db, 10).await?;
    Ok(CohortFacts {
        states,
        lag,
        counted,
        compliant,
        needing,
        failures,
    })
}

#[derive(Deserialize, Default)]
pub(crate) struct CohortQuery {
    #[serde(default)]
    provider: String,
}

pub(crate) async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(query): Query<CohortQuery>,
) -> Response {
    let db = match console.db().await {
        Ok(db) => db,
        Err(page) => return page,
    };
    let provider = match query.provider.as_str() {
        "" | "google-health" | "fitbit" => query.provider.as_str(),
        _ => "",
    };
    let now = Utc::now();
    let rule = match console.compliance.rule(now.date_naive()) {
        Ok(rule) => rule,
        Err(error) => return layout::unavailable("apply the compliance rule", &error),
    };
    let snapshot = match provider {
        "google-health" => &console.cohorts[1],
        "fitbit" => &console.cohorts[2],
        _ => &console.cohorts[0],
    };
    let owned_provider = provider.to_owned();
    let taken = match snapshot
        .get(move || async move { read_cohort(&db, &rule, Utc::now(), &owned_provider).await })
        .await
    {
        Ok(taken) => taken,
        Err(error) => return layout::unavailable("read the cohort", &error),
    };
    let CohortFacts {
        states,
        lag,
        counted,
        compliant,
        needing,
        failures,
    } = &*taken.value;
    let dead = console.dead_letter_depths().await;

    let total: i64 = states.iter().map(|s| s.count).sum();
    let mut by_state: Vec<(String, i64)> = Vec::new();
    for s in states {
        match by_state.iter_mut().find(|(state, _)| *state == s.state) {
            Some((_, n)) => *n += s.count,
            None => by_state.push((s.state.clone(), s.count)),
        }
    }
    by_state.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let active = by_state
        .iter()
        .find(|(s, _)| s == "active")
        .map_or(0, |(_, n)| *n);
    let state_bars: Vec<Bar<'_>> = by_state
        .iter()
        .map(|(state, count)| Bar {
            label: state,
            count: *count,
            tone: layout::state_tone(state),
        })
        .collect();
    let lag_tones = ["ok", "ok", "warn", "bad", "bad"];
    let lag_bars: Vec<Bar<'_>> = LAG_BUCKETS
        .iter()
        .zip(*lag)
        .zip(lag_tones)
        .map(|((label, count), tone)| Bar { label, count, tone })
        .collect();

    let body = html! {
        section aria-label="Filter" {
            form.filters method="get" action="/participants" {
                div { label for="q" { "Find a participant" } input id="q" name="q" placeholder="participant id"; }
                button type="submit" { "Find" }
            }
            form.filters method="get" action="/" style="margin-top:.6rem" {
                div {
                    label for="provider" { "Provider" }
                    select id="provider" name="provider" {
                        option value="" selected[provider.is_empty()] { "all" }
                        option value="google-health" selected[provider == "google-health"] { "Google Health" }
                        option value="fitbit" selected[provider == "fitbit"] { "Fitbit (legacy)" }
                    }
                }
                button.secondary type="submit" { "Show" }
            }
        }
        div.grid {
            section { h2 { "Participants" } p.big id="total" { (total) } p.muted { (active) " syncing" } }
            section {
                h2 { "Wore it enough" }
                p.big id="compliant" { (compliant) " of " (counted) }
                p.muted { (rule.describe()) }
            }
            section {
                h2 { "Need a consent" }
                p.big id="needing" { (needing) }
                p { a href="/consent" { "Consent links" } }
            }
            section {
                h2 { "Dead letters" }
                @match dead {
                    Some((jobs, results)) => {
                        p.big id="dead" { (jobs + results) }
                        p.muted { (jobs) " jobs, " (results) " results · " a href="/dead-letters" { "handle them" } }
                    }
                    None => { p.muted { "the broker did not answer" } }
                }
            }
        }
        div.grid {
            section {
                h2 { "By state" }
                (chart::bars("states-chart", "Participants by state", &state_bars))
            }
            section {
                h2 { "Sync lag of syncing participants" }
                (chart::bars("lag-chart", "How far behind now each syncing participant's data is", &lag_bars))
                p.muted { "Lag: now minus the end of what is stored (the cursor)." }
            }
        }
        p.muted id="as-of" { "Counted " (when(Some(UtcInstant::new(taken.at)), now))
            "; the counts are taken again at most every 30 seconds, the lists and pages are live." }
        section {
            h2 { "By provider and state" }
            div.scroll { table {
                thead { tr { th scope="col" { "Provider" } th scope="col" { "State" } th.num scope="col" { "Participants" } } }
                tbody {
                    @for s in states {
                        tr {
                            td { (s.provider) }
                            td { a href={"/participants?state=" (s.state) "&provider=" (s.provider)} { (layout::state_badge(&s.state)) } }
                            td.num { (s.count) }
                        }
                    }
                }
            } }
        }
        section {
            h2 { "Newest failures" }
            @if failures.is_empty() { p.muted { "No participant has an error." } }
            @else {
                div.scroll { table id="failures" {
                    thead { tr { th scope="col" { "Participant" } th scope="col" { "Error" } th scope="col" { "When" } } }
                    tbody {
                        @for f in failures {
                            tr {
                                td { a href={"/participants/" (f.participant_id)} { (f.participant_id) } }
                                td { (f.error) }
                                td { (when(Some(f.at), now)) }
                            }
                        }
                    }
                } }
            }
        }
    };
    layout::page(&session, "/", "Cohort", body)
}
