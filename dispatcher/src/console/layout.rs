//! The frame every console page shares: navigation, who is signed in, the style sheet, and the
//! small pieces pages are built from (an action button, a status badge, a refusal page).
//!
//! Server-rendered HTML with no script: it works on a phone, in a screen reader, and in a
//! screenshot. Colour never carries meaning alone (badges and cells say it in words too), focus
//! is always visible, and contrast meets WCAG AA on the page's white.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::{Refusal, Session};

const STYLE: &str = "\
*{box-sizing:border-box}body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
margin:0;background:#f4f5f7;color:#1b1f24;line-height:1.45}\
header{background:#12355b;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;\
align-items:center}header a{color:#fff}header .who{margin-left:auto;font-size:.9rem}\
nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:.2rem 1rem;margin:0;padding:0}\
nav a[aria-current=page]{font-weight:700;text-decoration-thickness:3px}\
main{max-width:72rem;margin:1rem auto;padding:0 1rem}\
section{background:#fff;border-radius:10px;padding:1rem 1.2rem;margin:0 0 1rem;box-shadow:0 1px 3px rgba(0,0,0,.1)}\
h1{font-size:1.45rem;margin:.4rem 0 1rem}h2{font-size:1.1rem;margin:0 0 .6rem}\
table{border-collapse:collapse;width:100%;font-size:.92rem}th,td{text-align:left;padding:.35rem .5rem;\
border-bottom:1px solid #dde1e6;vertical-align:top}th{background:#eef1f4}\
.scroll{overflow-x:auto}.num{text-align:right;font-variant-numeric:tabular-nums}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(15rem,1fr));gap:1rem}\
.big{font-size:1.8rem;font-weight:700}.muted{color:#4d5560;font-size:.9rem}\
.badge{display:inline-block;padding:.05rem .45rem;border-radius:6px;font-size:.85rem;border:1px solid}\
.ok{background:#e6f4ea;border-color:#1e7f3c;color:#14532d}.warn{background:#fff4d6;border-color:#9a6700;color:#5c3d00}\
.bad{background:#fde7e7;border-color:#b3261e;color:#7a1410}.none{background:#eef1f4;border-color:#6b7480;color:#2f353d}\
button,.button{font:inherit;background:#0b57d0;color:#fff;border:0;border-radius:7px;padding:.45rem .9rem;\
cursor:pointer;text-decoration:none;display:inline-block}button.secondary{background:#4d5560}\
button.danger{background:#b3261e}form.inline{display:inline}\
a:focus,button:focus,input:focus,select:focus{outline:3px solid #f9ab00;outline-offset:2px}\
label{font-weight:600;margin-right:.3rem}input,select{font:inherit;padding:.3rem .4rem;border:1px solid #6b7480;border-radius:6px}\
.filters{display:flex;flex-wrap:wrap;gap:.6rem 1rem;align-items:end}.filters div{display:flex;flex-direction:column}\
.notice{border-left:6px solid #1e7f3c}.problem{border-left:6px solid #b3261e}\
td.cell{text-align:center;font-size:.8rem;padding:.2rem}code{font-size:.85rem;word-break:break-all}\
svg text{font-family:inherit}";

/// The pages in the navigation, by path.
const PAGES: [(&str, &str); 5] = [
    ("/", "Cohort"),
    ("/participants", "Participants"),
    ("/consent", "Needing consent"),
    ("/dead-letters", "Dead letters"),
    ("/audit", "Audit"),
];

/// A whole page for a signed-in person. `current` is the navigation entry it belongs to.
pub fn page(session: &Session, current: &str, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    strong { "fitlink console" }
                    nav aria-label="Console" {
                        ul {
                            @for (path, name) in PAGES {
                                li {
                                    @if path == current {
                                        a href=(path) aria-current="page" { (name) }
                                    } @else {
                                        a href=(path) { (name) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        (session.user) " (" (session.role.as_str()) ") "
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    respond(StatusCode::OK, markup)
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · fitlink console" }
            style { (maud::PreEscaped(STYLE)) }
        }
    }
}

/// A page outside a session (sign-in, errors before sign-in).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main id="main" style="max-width:30rem;margin-top:3rem" {
                    section { h1 { (title) } (body) }
                }
            }
        }
    };
    respond(status, markup)
}

fn respond(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// An action refused before anything was done: 403 with what happened and what to do.
pub fn refused(refusal: Refusal) -> Response {
    let (title, text) = match refusal {
        Refusal::NotAnOperator => (
            "Viewers cannot act",
            "Your role is viewer: you can see every page, but actions need the operator role. \
             Nothing was done. Ask your study's administrator for the operator role.",
        ),
        Refusal::ForgedForm => (
            "This form was not issued by the console",
            "The form did not carry this session's security token (a page elsewhere may have \
             tried to act in your name, or your session changed). Nothing was done. Go back, \
             reload the page and try again.",
        ),
    };
    bare(
        StatusCode::FORBIDDEN,
        title,
        html! { p { (text) } p { a href="/" { "Back to the console" } } },
    )
}

/// A problem reading or acting (the database or the broker is down): 503, nothing else changed.
pub fn unavailable(what: &str, error: &anyhow::Error) -> Response {
    tracing::warn!(error = format!("{error:#}"), "console: {what}");
    bare(
        StatusCode::SERVICE_UNAVAILABLE,
        "The console cannot answer just now",
        html! {
            p { "Could not " (what) ": " (format!("{error:#}")) "." }
            p { "Nothing was changed. Try again in a moment; if it persists, check that the \
                 broker and the database are running (" code { "fitlink status" } ")." }
        },
    )
}

/// 404 for an unknown participant or dead letter.
pub fn not_found(session: &Session, what: &str) -> Response {
    let mut response = page(
        session,
        "",
        "Not found",
        html! { section.problem { p { (what) } p { a href="/participants" { "All participants" } } } },
    );
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// A button that posts one action with the session's CSRF token; shown disabled, with why, to
/// viewers.
pub fn action_button(
    session: &Session,
    action: &str,
    label: &str,
    id: &str,
    hidden: &[(&str, &str)],
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(session.csrf);
            @for (name, value) in hidden {
                input type="hidden" name=(name) value=(value);
            }
            @if session.can_act() {
                button type="submit" id=(id) { (label) }
            } @else {
                button type="submit" id=(id) disabled title="Viewers cannot act" { (label) }
            }
        }
    }
}

/// The tone a participant state is shown in: `ok` syncing, `bad` broken, `warn` waiting for
/// someone, `none` neither.
pub fn state_tone(state: &str) -> &'static str {
    match state {
        "active" => "ok",
        "invited" | "withdrawn" => "none",
        "revoked" | "dead_lettered" | "provider_data_invalid" => "bad",
        _ => "warn",
    }
}

/// A participant state as a badge (words and colour).
pub fn state_badge(state: &str) -> Markup {
    html! { span class={"badge " (state_tone(state))} { (state.replace('_', " ")) } }
}
