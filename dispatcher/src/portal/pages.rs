//! The pages a participant sees. Plain HTML (no script, no external resources), readable on a
//! phone, with headings and landmarks a screen reader can follow. Every page says what happened
//! and what to do next in everyday words; none shows a token, a code or a stack trace.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use fitlink_shared::domain::Provider;

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
margin:0;background:#f6f7f9;color:#1b1f24;line-height:1.5}\
main{max-width:36rem;margin:3rem auto;background:#fff;padding:2rem 2.25rem;border-radius:12px;\
box-shadow:0 1px 4px rgba(0,0,0,.12)}\
h1{font-size:1.5rem;margin-top:0}ul{padding-left:1.25rem}li{margin:.35rem 0}\
.ok{border-left:6px solid #1e7f3c}.problem{border-left:6px solid #b3261e}\
a.button{display:inline-block;background:#0b57d0;color:#fff;padding:.6rem 1.1rem;\
border-radius:8px;text-decoration:none;font-weight:600}a.button:focus{outline:3px solid #f9ab00}\
.small{color:#4a5058;font-size:.9rem}";

/// A whole page: `tone` is `ok` or `problem` (a coloured edge, never colour alone: the heading
/// says it too).
fn page(status: StatusCode, title: &str, tone: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head>\
<body><main class=\"{tone}\" aria-labelledby=\"title\"><h1 id=\"title\">{title}</h1>{body}</main></body></html>",
        title = escape(title),
    );
    (
        status,
        [("cache-control", "no-store"), ("x-frame-options", "DENY")],
        Html(html),
    )
        .into_response()
}

fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::GoogleHealth => "Google (Fitbit)",
        Provider::Fitbit => "Fitbit",
    }
}

/// What a granted scope lets the program read, in everyday words.
fn scope_meaning(scope: &str) -> &'static str {
    let short = scope.rsplit('/').next().unwrap_or(scope);
    let short = short.strip_prefix("googlehealth.").unwrap_or(short);
    match short.split('.').next().unwrap_or(short) {
        "activity_and_fitness" | "activity" => {
            "Your activity: steps (minute by minute), distance, floors, active minutes and calories"
        }
        "health_metrics_and_measurements" | "heartrate" => {
            "Your heart rate (every few seconds to every minute) and daily heart-rate summaries"
        }
        "settings" => {
            "Your device list and time zone (to know when your device last synced, and your local days)"
        }
        "profile" => "Basic profile settings such as your time zone",
        _ => "Other data in this permission",
    }
}

fn scope_list(scopes: &[String]) -> String {
    let mut items: Vec<&str> = scopes.iter().map(|s| scope_meaning(s)).collect();
    items.dedup();
    let items: String = items
        .iter()
        .map(|m| format!("<li>{}</li>", escape(m)))
        .collect();
    format!("<ul>{items}</ul>")
}

pub(crate) fn home(program: &str) -> Response {
    page(
        StatusCode::OK,
        "Link your Fitbit account",
        "ok",
        &format!(
            "<p>This page links a participant's Fitbit account to {}. Please use the personal link the study team sent you.</p>",
            escape(program)
        ),
    )
}

/// Shown once the writer committed the participant's consent.
pub(crate) fn linked(
    program: &str,
    provider: Provider,
    participant: &str,
    scopes: &[String],
) -> Response {
    page(
        StatusCode::OK,
        "Thank you: your account is linked",
        "ok",
        &format!(
            "<p role=\"status\">Your {provider} account is now linked to {program} as participant <strong>{participant}</strong>.</p>\
<h2>What {program} will receive</h2>{scopes}\
<p>Data is copied as your device syncs, including the days since you joined. You do not need to do anything else. You can close this page.</p>\
<p class=\"small\">You can stop sharing at any time: tell the study team, or remove access for this app in your {provider} account settings.</p>",
            provider = provider_name(provider),
            program = escape(program),
            participant = escape(participant),
            scopes = scope_list(scopes),
        ),
    )
}

/// The participant unticked permissions the program needs.
pub(crate) fn scope_missing(program: &str, missing: &[String], retry: &str) -> Response {
    page(
        StatusCode::OK,
        "Some permissions were not given",
        "problem",
        &format!(
            "<p role=\"alert\">These permissions were not ticked, and {program} needs all of them:</p>{missing}\
<p>Nothing was saved. Please try again and leave these ticked.</p>\
<p><a class=\"button\" href=\"{retry}\">Try again</a></p>",
            program = escape(program),
            missing = scope_list(missing),
            retry = escape(retry),
        ),
    )
}

pub(crate) fn declined(program: &str, retry: &str) -> Response {
    page(
        StatusCode::OK,
        "You chose not to share your data",
        "problem",
        &format!(
            "<p role=\"status\">Nothing was shared with {program}. If you pressed “Cancel” by mistake, you can try again.</p>\
<p><a class=\"button\" href=\"{retry}\">Try again</a></p>\
<p class=\"small\">If you have questions about what is shared, please contact the study team.</p>",
            program = escape(program),
            retry = escape(retry),
        ),
    )
}

/// A problem the participant can only solve with the study team (or by waiting).
pub(crate) fn refused(status: StatusCode, title: &str, explanation: &str) -> Response {
    page(
        status,
        title,
        "problem",
        &format!(
            "<p role=\"alert\">{}</p><p class=\"small\">Nothing was saved. If you need help, please contact the study team.</p>",
            escape(explanation)
        ),
    )
}

/// A refusal the participant can retry (a different account, a provider hiccup).
pub(crate) fn retryable(
    status: StatusCode,
    title: &str,
    explanation: &str,
    retry: &str,
) -> Response {
    page(
        status,
        title,
        "problem",
        &format!(
            "<p role=\"alert\">{}</p><p><a class=\"button\" href=\"{}\">Try again</a></p>",
            escape(explanation),
            escape(retry)
        ),
    )
}

/// The consent reached the program but the writer has not confirmed it yet (it stays queued and
/// is applied when the writer catches up).
pub(crate) fn received(program: &str) -> Response {
    page(
        StatusCode::ACCEPTED,
        "Thank you: your consent was received",
        "ok",
        &format!(
            "<p role=\"status\">Your consent reached {} and is being recorded. You do not need to do anything else. You can close this page.</p>",
            escape(program)
        ),
    )
}
