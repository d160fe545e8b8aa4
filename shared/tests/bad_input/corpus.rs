//! The corpus of real-shaped payloads in `tests/corpus/` (see its README): every file is fed to
//! the parser its name starts with. Files in a folder must fail with the class that parser gives
//! bad input; files in its `ok/` must be accepted.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use fitlink_shared::domain::{ParticipantId, ParticipantState, UtcInstant};
use fitlink_shared::errors::SyncError;
use fitlink_shared::messages::{CredentialStored, SyncJob, WriterCommand};
use fitlink_shared::provider::fitbit::parse as fitbit;
use fitlink_shared::provider::google::parse as google;
use fitlink_shared::provider::{RequestBudget, Session};
use fitlink_shared::secret::{SealError, SealedToken, Secret};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::messages::check_next_trip;

/// One corpus file.
pub struct Case {
    /// The file name up to its first dot: which parser it is for.
    pub parser: String,
    pub name: String,
    pub text: String,
}

/// The cases of one folder: (must fail, must be accepted).
pub fn cases(folder: &str) -> (Vec<Case>, Vec<Case>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus")
        .join(folder);
    let read = |dir: PathBuf| {
        let mut cases: Vec<Case> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let bytes = std::fs::read(&path).unwrap();
                Case {
                    parser: name.split('.').next().unwrap().to_owned(),
                    text: String::from_utf8(bytes).expect("corpus files are UTF-8"),
                    name,
                }
            })
            .collect();
        cases.sort_by(|a, b| a.name.cmp(&b.name));
        cases
    };
    let (bad, ok) = (read(root.clone()), read(root.join("ok")));
    assert!(
        (5..=15).contains(&bad.len()) && !ok.is_empty(),
        "{folder}: {} files, {} ok",
        bad.len(),
        ok.len()
    );
    (bad, ok)
}

/// What a caller does with a failure: the class a corpus file's failure must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Invalid,
    ScopeMissing,
    Revoked,
    NeedsReconsent,
    Transient,
}

fn class(error: &SyncError) -> Option<Class> {
    match error {
        SyncError::Transient { .. } => Some(Class::Transient),
        SyncError::Permanent { state, .. } => match state {
            ParticipantState::ProviderDataInvalid => Some(Class::Invalid),
            ParticipantState::ScopeMissing => Some(Class::ScopeMissing),
            ParticipantState::Revoked => Some(Class::Revoked),
            ParticipantState::NeedsReconsent => Some(Class::NeedsReconsent),
            _ => None,
        },
        _ => None,
    }
}

fn status(parser: &str) -> StatusCode {
    let code = parser
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .expect("an error file names its status");
    StatusCode::from_u16(code).unwrap()
}

fn check<T: Debug>(
    folder: &str,
    run: impl Fn(&Case) -> Result<T, SyncError>,
    expected: impl Fn(&Case) -> Class,
) {
    let (bad, ok) = cases(folder);
    for case in &bad {
        match run(case) {
            Ok(value) => panic!("{folder}/{}: accepted: {value:?}", case.name),
            Err(e) => assert_eq!(
                class(&e),
                Some(expected(case)),
                "{folder}/{}: {e:?}",
                case.name
            ),
        }
    }
    for case in &ok {
        if let Err(e) = run(case) {
            panic!("{folder}/ok/{}: refused: {e:?}", case.name);
        }
    }
}

#[test]
fn google_corpus() {
    let slice = crate::google::slice();
    check(
        "google",
        |case| {
            let text = case.text.as_str();
            match case.parser.as_str() {
                "heart-rate" => google::parse_heart_rate_page(text, slice).map(|p| p.items.len()),
                "steps" => google::parse_steps_page(text, slice).map(|p| p.items.len()),
                "roll-up" => {
                    // The same body read as every type: each must come to the same verdict.
                    let mut verdicts = crate::google::ROLL_UP_TYPES.iter().map(|data_type| {
                        let mut merge = google::SummaryMerge::default();
                        merge
                            .add_daily_roll_up(data_type, text)
                            .map(|()| merge.finish().activity.len())
                    });
                    let first = verdicts.next().unwrap();
                    assert!(
                        verdicts.all(|v| v.is_ok() == first.is_ok()),
                        "{}",
                        case.name
                    );
                    first
                }
                "heart-rate-zones" => google::SummaryMerge::default()
                    .add_heart_rate_zones_page(text)
                    .map(|_| 0),
                "resting-heart-rate" => google::SummaryMerge::default()
                    .add_resting_heart_rate_page(text)
                    .map(|_| 0),
                "sleep" => google::parse_sleep_page(text).map(|p| p.items.len()),
                "hrv" => google::parse_heart_rate_variability_page(text).map(|p| p.items.len()),
                "spo2" => google::parse_oxygen_saturation_page(text).map(|p| p.items.len()),
                "breathing-rate" => google::parse_breathing_rate_page(text).map(|p| p.items.len()),
                "skin-temperature" => {
                    google::parse_skin_temperature_page(text).map(|p| p.items.len())
                }
                "paired-devices" => google::parse_paired_devices_page(text).map(|p| p.items.len()),
                "settings" => google::parse_settings(text).map(|z| z.map_or(0, |z| z.len())),
                "identity" => google::parse_identity(text).map(|_| 0),
                "token" => google::parse_token_response(text, "1//refresh", crate::google::now())
                    .map(|g| g.scopes.len()),
                p if p.starts_with("api-error-") => {
                    Err(google::classify_api_error("corpus", status(p), text))
                }
                p if p.starts_with("oauth-error-") => {
                    Err(google::classify_oauth_error(status(p), text))
                }
                other => panic!("google/{}: no parser {other:?}", case.name),
            }
        },
        |case| match case.parser.as_str() {
            "api-error-401" => Class::Transient,
            "api-error-403" => Class::ScopeMissing,
            p if p.starts_with("oauth-error-") && case.name.contains("invalid-grant") => {
                Class::Revoked
            }
            p if p.starts_with("oauth-error-") => Class::Transient,
            "token" if case.name.contains("scope-missing") => Class::ScopeMissing,
            _ if case.name.contains("truncated") => Class::Transient,
            _ => Class::Invalid,
        },
    );
}

/// The tokens in the Fitbit corpus: no reason may quote them.
const FITBIT_TOKENS: [&str; 2] = [
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyNkZXRkwifQ.c2lnbmF0dXJl",
    "c643a63c072f0f05478e9d18b991db80ef6061e4f8e6c822d83fed53e5fafdd7",
];

/// A `quota.*.http` file: a status line, then headers.
fn quota(text: &str) -> fitbit::Quota {
    let mut lines = text.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        headers.insert(
            HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    fitbit::parse_quota(StatusCode::from_u16(status).unwrap(), &headers)
}

#[test]
fn fitbit_corpus() {
    use crate::fitbit::{SENT_REFRESH_TOKEN, ZONE, date, now, range_family, series, slice, window};
    let none = HeaderMap::new();
    check(
        "fitbit",
        |case| {
            let text = case.text.as_str();
            let result = match case.parser.as_str() {
                "devices" => fitbit::parse_devices(text)
                    .and_then(|t| t.latest(fitbit::LocalZone::Named(ZONE)))
                    .map(|at| format!("{at:?}")),
                "profile" => fitbit::parse_profile(text)
                    .and_then(|p| p.local_zone())
                    .map(|z| format!("{z:?}")),
                "daily-summary" => {
                    fitbit::parse_daily_summary(text, date()).map(|d| format!("{d:?}"))
                }
                "heart-day" => fitbit::parse_heart_day(text, date()).map(|d| format!("{d:?}")),
                "token" => fitbit::parse_token_response(text, SENT_REFRESH_TOKEN, now())
                    .map(|g| format!("{:?}", g.rotated_refresh_token.is_some())),
                "quota" => {
                    let quota = quota(text);
                    if let fitbit::Quota::SpentFor(wait) = quota {
                        assert!(wait.as_secs() <= 3600, "{}: {wait:?}", case.name);
                        let session = Session::new(
                            Secret::new(String::new()),
                            RequestBudget::new(1, std::time::Duration::from_secs(1)),
                        );
                        session.set_quota_spent(Some(wait));
                    }
                    Ok(format!("{quota:?}"))
                }
                p if p.starts_with("data-error-") => Err(fitbit::classify_data_error(
                    "corpus",
                    status(p),
                    &none,
                    &fitbit::redact(text, &[FITBIT_TOKENS[0]]),
                    fitbit::PathKind::Data,
                )
                .into_error()),
                p if p.starts_with("token-error-") => Err(fitbit::classify_token_error(
                    status(p),
                    &none,
                    &fitbit::redact(text, &[SENT_REFRESH_TOKEN]),
                )),
                p => match (series(p), range_family(p, text)) {
                    (Some(series), _) => {
                        fitbit::parse_intraday_dataset(text, series, &window(), slice(), Some(ZONE))
                            .map(|points| format!("{} points", points.len()))
                    }
                    (None, Some(result)) => result,
                    (None, None) => panic!("fitbit/{}: no parser {p:?}", case.name),
                },
            };
            if let Err(e) = &result {
                for token in FITBIT_TOKENS {
                    assert!(!e.to_string().contains(token), "fitbit/{}: {e}", case.name);
                }
            }
            result
        },
        |case| match case.parser.as_str() {
            "data-error-401" | "token-error-400" => Class::Transient,
            "token" if case.name.contains("scope-missing") => Class::ScopeMissing,
            _ if case.name.contains("truncated") => Class::Transient,
            _ => Class::Invalid,
        },
    );
}

/// The range families (sleep logs, nightly metrics, active zone minutes) have a folder of their
/// own, `fitbit/families/`, so that each folder stays a readable handful of refusals.
#[test]
fn fitbit_families_corpus() {
    check(
        "fitbit/families",
        |case| {
            crate::fitbit::range_family(&case.parser, &case.text)
                .unwrap_or_else(|| panic!("fitbit/families/{}: no parser", case.name))
        },
        |_| Class::Invalid,
    );
}

/// Messages fail as the consumer sees them: a decode error (dead-lettered), a sealed token that
/// does not open, an instant that is no instant.
#[test]
fn messages_corpus() {
    #[derive(Debug)]
    enum Refusal {
        Decode(#[allow(dead_code)] serde_json::Error),
        Seal(SealError),
    }
    fn decode<T: serde::Serialize + serde::de::DeserializeOwned>(
        text: &str,
    ) -> Result<(), Refusal> {
        let message = serde_json::from_slice::<T>(text.as_bytes()).map_err(Refusal::Decode)?;
        check_next_trip(&message);
        Ok(())
    }
    let key = crate::messages::key();
    let participant = ParticipantId::new("P-0001").unwrap();
    let run = |case: &Case| match case.parser.as_str() {
        "writer-command" => decode::<WriterCommand>(&case.text),
        "sync-job" => decode::<SyncJob>(&case.text),
        "credential-stored" => decode::<CredentialStored>(&case.text),
        "sealed-token" => key
            .open(
                &participant,
                &SealedToken::from_stored(case.text.trim().to_owned()),
            )
            .map(|_| ())
            .map_err(Refusal::Seal),
        other => panic!("messages/{}: no parser {other:?}", case.name),
    };
    let (bad, ok) = cases("messages");
    for case in &bad {
        match (run(case), case.name.contains("another-participant")) {
            (Err(Refusal::Decode(_)), _) if case.parser != "sealed-token" => {}
            (Err(Refusal::Seal(SealError::WrongKeyOrParticipant { participant: p, .. })), true)
            | (Err(Refusal::Seal(SealError::Malformed(p))), false) => {
                assert_eq!(p, "P-0001");
            }
            (other, _) => panic!("messages/{}: {other:?}", case.name),
        }
    }
    for case in &ok {
        if let Err(e) = run(case) {
            panic!("messages/ok/{}: {e:?}", case.name);
        }
    }
    // The instant of the year-10000 regression is refused on its own too.
    assert!(UtcInstant::parse("9999-12-31T23:30:00-01:00").is_err());
}
