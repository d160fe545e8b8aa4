//! The console's pages, one module per page, and what they share: how times read, and the one
//! gate every action passes ([`authorized`]).

pub(crate) mod audit;
pub mod cohort;
pub(crate) mod consent;
pub(crate) mod dead_letters;
pub(crate) mod participant;
pub(crate) mod participants;

use axum::response::Response;
use chrono::{DateTime, Utc};
use fitlink_shared::domain::UtcInstant;
use maud::{Markup, html};

use super::layout;
use super::session::Session;

/// The gate of every action: this console's form, an operator. A refusal is the 403 page.
#[expect(
    clippy::result_large_err,
    reason = "the refusal is the response itself, made once per request"
)]
fn authorized(session: &Session, csrf: &str) -> Result<(), Response> {
    session.authorize(csrf).map_err(|refusal| {
        tracing::warn!(user = %session.user, ?refusal, "console action refused");
        layout::refused(refusal)
    })
}

/// How long ago, in the largest whole unit: `5 min`, `3 h`, `2 days`.
fn ago(at: UtcInstant, now: DateTime<Utc>) -> String {
    let secs = (now - at.get()).num_seconds();
    if secs < 0 {
        return "in the future".into();
    }
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// A time as people read it (UTC, to the minute) with how long ago; `never` for none.
fn when(at: Option<UtcInstant>, now: DateTime<Utc>) -> Markup {
    match at {
        Some(at) => html! {
            time datetime=(at.to_text()) title=(at.to_text()) {
                (at.get().format("%Y-%m-%d %H:%M UTC")) " "
                span.muted { "(" (ago(at, now)) " ago)" }
            }
        },
        None => html! { span.muted { "never" } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_the_largest_whole_unit() {
        let now: DateTime<Utc> = "2026-11-04T12:00:00Z".parse().unwrap();
        let at = |t: &str| UtcInstant::new(t.parse::<DateTime<Utc>>().unwrap());
        assert_eq!(ago(at("2026-11-04T11:59:30Z"), now), "30 s");
        assert_eq!(ago(at("2026-11-04T11:00:00Z"), now), "1 h");
        assert_eq!(ago(at("2026-11-01T12:00:00Z"), now), "3 days");
        assert_eq!(ago(at("2026-11-05T12:00:00Z"), now), "in the future");
    }
}
