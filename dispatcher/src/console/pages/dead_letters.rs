//! Dead letters (`/dead-letters`), handled the way people like to handle failed jobs: grouped
//! by reason with counts; one letter's detail (from its headers: never its body, which holds a
//! sealed token); retry one, a group or all (a replay in the background, with a progress page);
//! discard with a recorded reason. Results the writer could not apply are shown too, for an
//! engineer: they are not replayed from here.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use super::{authorized, layout, when};
use crate::console::Console;
use crate::console::session::Session;
use crate::dlq::{DeadLetter, dlq_list};

/// Letters listed per group on the page (all are counted and acted on).
const LISTED_PER_GROUP: usize = 25;

/// Dead jobs grouped by reason, largest group first.
fn groups(letters: &[DeadLetter]) -> Vec<(String, Vec<&DeadLetter>)> {
    let mut groups: Vec<(String, Vec<&DeadLetter>)> = Vec::new();
    for letter in letters {
        match groups.iter_mut().find(|(r, _)| *r == letter.reason) {
            Some((_, members)) => members.push(letter),
            None => groups.push((letter.reason.clone(), vec![letter])),
        }
    }
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    groups
}

async fn list(console: &Console) -> Result<(Vec<DeadLetter>, Vec<DeadLetter>), Response> {
    let letters = dlq_list(&console.actions.broker)
        .await
        .map_err(|error| layout::unavailable("read the dead-letter queues", &error))?;
    Ok(letters
        .into_iter()
        .partition(|l| l.queue.ends_with(".jobs.dead")))
}

pub(crate) async fn page(State(console): State<Arc<Console>>, session: Session) -> Response {
    let (jobs, results) = match list(&console).await {
        Ok(lists) => lists,
        Err(page) => return page,
    };
    let now = Utc::now();
    let by_reason = groups(&jobs);
    let body = html! {
        section {
            h2 { "Dead jobs: " (jobs.len()) }
            @if jobs.is_empty() { p { "No dead job: every sync that failed for good has been handled." } }
            @else {
                p.muted { "A retry asks the writer for a new sync of each participant from where their data ends; \
                           the dead letters leave the queue once it is asked." }
                p { (layout::action_button(&session, "/dead-letters/retry", "Retry all", "retry-all", &[("scope", "all")])) }
                div.scroll { table id="groups" {
                    thead { tr { th scope="col" { "Reason" } th.num scope="col" { "Letters" } th scope="col" { "Participants" } th scope="col" { "Act" } } }
                    tbody { @for (reason, members) in &by_reason { tr {
                        td { (reason) }
                        td.num { (members.len()) }
                        td { @for (i, l) in members.iter().take(LISTED_PER_GROUP).enumerate() {
                            @if i > 0 { ", " }
                            @match &l.job_id {
                                Some(job) => { a href={"/dead-letters/" (job)} { (l.participant_id.as_deref().unwrap_or("?")) } }
                                None => { (l.participant_id.as_deref().unwrap_or("?")) }
                            }
                        }
                        @if members.len() > LISTED_PER_GROUP { " … and " (members.len() - LISTED_PER_GROUP) " more" } }
                        td {
                            (layout::action_button(&session, "/dead-letters/retry", "Retry group", &format!("retry-{}", slug(reason)), &[("scope", "group"), ("reason", reason)]))
                            " "
                            (discard_form(&session, "group", reason, &format!("discard-{}", slug(reason))))
                        }
                    } } }
                } }
            }
        }
        section {
            h2 { "Results the writer could not apply: " (results.len()) }
            @if results.is_empty() { p.muted { "None." } }
            @else {
                p.muted { "These need an engineer (" code { "fitlink dlq list" } "): each is a change the writer refused." }
                div.scroll { table id="results" {
                    thead { tr { th scope="col" { "Kind" } th scope="col" { "Participant" } th scope="col" { "Reason" } th scope="col" { "When" } } }
                    tbody { @for l in &results { tr {
                        td { (l.kind.as_deref().unwrap_or("?")) } td { (l.participant_id.as_deref().unwrap_or("")) }
                        td { (l.reason) } td { (when(l.dead_lettered_at, now)) }
                    } } }
                } }
            }
        }
    };
    layout::page(&session, "/dead-letters", "Dead letters", body)
}

/// A discard form: needs a reason in words, which the audit keeps.
fn discard_form(session: &Session, scope: &str, value: &str, id: &str) -> maud::Markup {
    html! {
        form.inline method="post" action="/dead-letters/discard" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="scope" value=(scope);
            input type="hidden" name=(if scope == "one" { "job" } else { "reason" }) value=(value);
            label for={(id) "-why"} { "Why" }
            input id={(id) "-why"} name="why" required minlength="3" size="18" placeholder="reason to discard";
            @if session.can_act() { button.danger type="submit" id=(id) { "Discard" } }
            @else { button.danger type="submit" id=(id) disabled title="Viewers cannot act" { "Discard" } }
        }
    }
}

/// An HTML id from a reason.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

pub(crate) async fn letter(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(job): Path<String>,
) -> Response {
    let Ok(job_id) = Uuid::parse_str(&job) else {
        return layout::not_found(&session, "That is not a job id.");
    };
    let (jobs, _) = match list(&console).await {
        Ok(lists) => lists,
        Err(page) => return page,
    };
    let Some(l) = jobs.iter().find(|l| l.job_id == Some(job_id)) else {
        return layout::not_found(
            &session,
            "That dead letter is not in the queue (replayed or discarded already).",
        );
    };
    let now = Utc::now();
    let job_text = job_id.to_string();
    let body = html! {
        section {
            table { tbody {
                tr { th scope="row" { "Participant" } td { @if let Some(p) = &l.participant_id { a href={"/participants/" (p)} { (p) } } } }
                tr { th scope="row" { "Job" } td { code { (job_text) } } }
                tr { th scope="row" { "Reason" } td id="reason" { (l.reason) } }
                tr { th scope="row" { "Attempts" } td { (l.attempts.map(|a| a.to_string()).unwrap_or_default()) } }
                tr { th scope="row" { "Dead-lettered" } td { (when(l.dead_lettered_at, now)) } }
                tr { th scope="row" { "Queue" } td { (l.queue) } }
            } }
            p.muted { "The message body is not shown: it holds the participant's sealed token." }
            p {
                (layout::action_button(&session, "/dead-letters/retry", "Retry", "retry-one", &[("scope", "one"), ("job", &job_text)]))
                " " (discard_form(&session, "one", &job_text, "discard-one"))
            }
        }
    };
    layout::page(&session, "/dead-letters", "Dead letter", body)
}

#[derive(Deserialize)]
pub(crate) struct Pick {
    csrf: String,
    /// `all`, `group` (with `reason`) or `one` (with `job`).
    scope: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    job: String,
    #[serde(default)]
    why: String,
}

impl Pick {
    /// The dead jobs picked, now, and the pick in words.
    fn select(&self, jobs: &[DeadLetter]) -> Result<(String, Vec<Uuid>), String> {
        let ids = |f: &dyn Fn(&DeadLetter) -> bool| -> Vec<Uuid> {
            jobs.iter()
                .filter(|l| f(l))
                .filter_map(|l| l.job_id)
                .collect()
        };
        match self.scope.as_str() {
            "all" => Ok(("all".into(), ids(&|_| true))),
            "group" => Ok((
                format!("group: {}", self.reason),
                ids(&|l| l.reason == self.reason),
            )),
            "one" => {
                let job = Uuid::parse_str(self.job.trim())
                    .map_err(|_| format!("{:?} is not a job id", self.job))?;
                Ok((format!("job {job}"), vec![job]))
            }
            other => Err(format!("unknown scope {other:?}: use all, group or one")),
        }
    }
}

fn bad_pick(problem: &str) -> Response {
    layout::bare(
        StatusCode::BAD_REQUEST,
        "Nothing was done",
        html! { p { (problem) "." } p { a href="/dead-letters" { "Back to the dead letters" } } },
    )
}

/// The gate of a retry or a discard (an operator's form from this console), then the dead jobs
/// the pick names now and the pick in words; none left is a 400 that says so.
async fn picked(
    console: &Console,
    session: &Session,
    pick: &Pick,
) -> Result<(String, Vec<Uuid>), Response> {
    authorized(session, &pick.csrf)?;
    let (jobs, _) = list(console).await?;
    let (what, ids) = pick.select(&jobs).map_err(|problem| bad_pick(&problem))?;
    if ids.is_empty() {
        return Err(bad_pick(
            "No dead letter matches any more (replayed or discarded already)",
        ));
    }
    Ok((what, ids))
}

pub(crate) async fn retry(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(pick): Form<Pick>,
) -> Response {
    let (what, ids) = match picked(&console, &session, &pick).await {
        Ok(picked) => picked,
        Err(page) => return page,
    };
    match console
        .actions
        .start_replay(&session, &console.replays, what, ids)
        .await
    {
        Ok(replay) => Redirect::to(&format!("/dead-letters/replays/{}", replay.id)).into_response(),
        Err(error) => layout::unavailable("start the replay", &error),
    }
}

pub(crate) async fn discard(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(pick): Form<Pick>,
) -> Response {
    let why = pick.why.trim();
    if why.chars().count() < 3 {
        return bad_pick("Say why these dead letters are discarded (the audit keeps it)");
    }
    let (what, ids) = match picked(&console, &session, &pick).await {
        Ok(picked) => picked,
        Err(page) => return page,
    };
    match console.actions.discard(&session, &what, why, &ids).await {
        Ok(report) => layout::page(
            &session,
            "/dead-letters",
            "Dead letters discarded",
            html! { section.notice role="status" {
                p id="discarded" { (report.discarded.len()) " dead letter(s) discarded (" (what) "), recorded with the reason “" (why) "”." }
                @if !report.not_found.is_empty() { p { (report.not_found.len()) " were already gone." } }
                p { a href="/dead-letters" { "Back to the dead letters" } }
            } },
        ),
        Err(error) => layout::unavailable("discard the dead letters", &error),
    }
}

/// A replay's progress; refreshes itself while it runs (no script: a meta refresh).
pub(crate) async fn replay(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let Some(replay) = Uuid::parse_str(&id)
        .ok()
        .and_then(|id| console.replays.get(id))
    else {
        return layout::not_found(&session, "No such replay (the console keeps its last 20).");
    };
    let outcome = replay.outcome.lock().expect("replay outcome lock").clone();
    let done = replay.progress.position();
    let of = replay.progress.length().unwrap_or(0);
    let now = Utc::now();
    let body = html! {
        @if outcome.is_none() { meta http-equiv="refresh" content="1"; }
        section role="status" aria-live="polite" {
            p { "Retry of " (replay.jobs) " dead letter(s) (" (replay.what) "), started by " (replay.started_by) " " (when(Some(replay.started_at), now)) "." }
            @match &outcome {
                None => {
                    p id="progress" { "Running: " (done) " of " (of) " participant(s) asked to sync again." }
                    progress max=(of.max(1)) value=(done) aria-label="Participants replayed" {}
                }
                Some(Ok(report)) => {
                    p id="progress" { "Done: " (report.replayed.len()) " participant(s) asked to sync again; their dead letters left the queue." }
                    @if !report.skipped.is_empty() {
                        p { (report.skipped.len()) " left in the queue:" }
                        ul { @for s in &report.skipped { li { (s.participant_id.as_deref().unwrap_or("?")) ": " (s.why) } } }
                    }
                    @if !report.not_found.is_empty() { p { (report.not_found.len()) " were already gone." } }
                }
                Some(Err(error)) => { p.problem id="progress" { "Stopped: " (error) } }
            }
            p { a href="/dead-letters" { "Back to the dead letters" } }
        }
    };
    layout::page(&session, "/dead-letters", "Replay", body)
}
