//! Reading and checking a roster file: its columns, every row's problems (by line, never by a
//! cell's value), and the sealed participants of a good file.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use fitlink_shared::domain::{ParticipantId, Provider, UtcInstant, parse_date_or_instant};
use fitlink_shared::messages::ImportedParticipant;
use fitlink_shared::secret::{Secret, TokenKeys};
use indicatif::ProgressBar;
use serde::Serialize;

use super::ImportError;

/// The columns of an import file, in any order.
pub const COLUMNS: [&str; 4] = ["participant_id", "provider", "refresh_token", "sync_from"];

/// The largest roster file one import takes. An import travels as one message per results
/// partition, which the broker caps (RabbitMQ's `max_message_size`, 128 MiB by default) and
/// every writer holds whole in memory; sealed tokens make a row about twice its line. 32 MiB
/// is well over 100,000 participants; a larger roster is refused before anything is read past
/// the cap, and is imported as several files (each applied whole, idempotently).
pub const MAX_IMPORT_BYTES: u64 = 32 * 1024 * 1024;

/// Reads a roster file whole, refusing one larger than [`MAX_IMPORT_BYTES`] without reading
/// past the cap (a pipe or a growing file has no size to trust beforehand).
pub async fn read_roster(path: &Path) -> Result<String, ImportError> {
    use tokio::io::AsyncReadExt as _;
    let read_error = |source| ImportError::Read {
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_IMPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_IMPORT_BYTES {
        return Err(ImportError::TooLarge {
            path: path.to_owned(),
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Files with fewer rows than this are checked too fast for a progress bar to be worth drawing.
pub(super) const PROGRESS_MIN_ROWS: u64 = 1000;

/// What is wrong with one line of the file. Never contains a cell's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RowProblem {
    /// 1-based line number in the file; the header is line 1.
    pub line: u64,
    pub problem: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// Checks and seals a whole import file. Returns every participant, or every problem (with its
/// line) and no participants.
pub fn parse_import(text: &str, key: &TokenKeys) -> Result<Vec<ImportedParticipant>, ImportError> {
    parse_with_progress(text, key, &ProgressBar::hidden())
}

pub(super) fn parse_with_progress(
    text: &str,
    key: &TokenKeys,
    bar: &ProgressBar,
) -> Result<Vec<ImportedParticipant>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader.byte_records();
    let invalid = |line: u64, problem: &str| {
        ImportError::Invalid(vec![RowProblem {
            line,
            problem: problem.to_owned(),
        }])
    };
    let columns = match records.next() {
        None => {
            return Err(invalid(
                1,
                "the file is empty: expected the header participant_id,provider,refresh_token,sync_from",
            ));
        }
        Some(Err(_)) => return Err(invalid(1, "the header is not readable CSV")),
        Some(Ok(header)) => Columns::from_header(&header).map_err(ImportError::Invalid)?,
    };

    let mut problems = Vec::new();
    let mut participants = Vec::new();
    let mut first_seen: HashMap<ParticipantId, u64> = HashMap::new();
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                problems.push(RowProblem {
                    line,
                    problem: "not readable CSV from here on".into(),
                });
                break;
            }
        };
        bar.inc(1);
        let line = record.position().map_or(0, |p| p.line());
        if record.len() == 1 && record[0].is_empty() {
            continue; // a line of blanks
        }
        match check_row(&record, &columns) {
            Ok(row) => {
                if let Some(first) = first_seen.get(&row.participant_id) {
                    problems.push(RowProblem {
                        line,
                        problem: repeated_participant(&row.participant_id, *first),
                    });
                    continue;
                }
                first_seen.insert(row.participant_id.clone(), line);
                if problems.is_empty() {
                    // Sealing is the expensive part; no point once the file is rejected.
                    participants.push(ImportedParticipant {
                        sealed_refresh_token: key.seal(&row.participant_id, &row.token),
                        participant_id: row.participant_id,
                        provider: row.provider,
                        sync_from: row.sync_from,
                        identity: None,
                    });
                }
            }
            Err(row_problems) => problems.extend(
                row_problems
                    .into_iter()
                    .map(|problem| RowProblem { line, problem }),
            ),
        }
    }
    bar.finish_and_clear();
    if participants.is_empty() && problems.is_empty() {
        problems.push(RowProblem {
            line: 1,
            problem: "the file has a header but no participants".into(),
        });
    }
    if problems.is_empty() {
        Ok(participants)
    } else {
        Err(ImportError::Invalid(problems))
    }
}

/// Where each column is in this file.
struct Columns {
    participant_id: usize,
    provider: usize,
    refresh_token: usize,
    sync_from: usize,
    count: usize,
}

impl Columns {
    /// Header names must be exactly ours, each once, nothing else. An unknown name is reported by
    /// position, not by text: a file without a header has a token in its first line.
    fn from_header(header: &csv::ByteRecord) -> Result<Self, Vec<RowProblem>> {
        let mut problems = Vec::new();
        let mut positions: [Option<usize>; 4] = [None; 4];
        for (index, name) in header.iter().enumerate() {
            match COLUMNS.iter().position(|c| c.as_bytes() == name) {
                Some(c) if positions[c].is_some() => problems.push(format!(
                    "column {} repeats the column {}",
                    index + 1,
                    COLUMNS[c]
                )),
                Some(c) => positions[c] = Some(index),
                None => problems.push(format!(
                    "column {} of the header is not one of {} (names are exact and lower case; extra columns are not allowed)",
                    index + 1,
                    COLUMNS.join(", ")
                )),
            }
        }
        for (c, position) in positions.iter().enumerate() {
            if position.is_none() {
                problems.push(format!("the header has no {} column", COLUMNS[c]));
            }
        }
        match positions {
            [
                Some(participant_id),
                Some(provider),
                Some(refresh_token),
                Some(sync_from),
            ] if problems.is_empty() => Ok(Self {
                participant_id,
                provider,
                refresh_token,
                sync_from,
                count: header.len(),
            }),
            _ => Err(problems
                .into_iter()
                .map(|problem| RowProblem { line: 1, problem })
                .collect()),
        }
    }
}

struct GoodRow {
    participant_id: ParticipantId,
    provider: Provider,
    token: Secret<String>,
    sync_from: UtcInstant,
}

/// Every problem of one row, each described without the cell's value.
fn check_row(record: &csv::ByteRecord, columns: &Columns) -> Result<GoodRow, Vec<String>> {
    if record.len() != columns.count {
        return Err(vec![format!(
            "expected {} fields ({}), found {}",
            columns.count,
            COLUMNS.join(", "),
            record.len()
        )]);
    }
    let mut problems = Vec::new();
    let mut cell = |index: usize, name: &str| match std::str::from_utf8(&record[index]) {
        Ok(text) => Some(text),
        Err(_) => {
            problems.push(format!("{name} is not valid UTF-8"));
            None
        }
    };
    let id = cell(columns.participant_id, "participant_id");
    let provider = cell(columns.provider, "provider");
    let token = cell(columns.refresh_token, "refresh_token");
    let sync_from = cell(columns.sync_from, "sync_from");

    let participant_id = id.and_then(|id| match ParticipantId::new(id) {
        Ok(id) => Some(id),
        Err(_) => {
            problems.push(describe_bad_id(id));
            None
        }
    });
    let provider = provider.and_then(|p| match p.parse::<Provider>() {
        Ok(provider) => Some(provider),
        Err(_) if p.is_empty() => {
            problems.push("provider is empty (expected google-health or fitbit)".into());
            None
        }
        Err(_) => {
            problems.push("provider is not google-health or fitbit (names are lower case)".into());
            None
        }
    });
    let token = token.and_then(|t| {
        if t.is_empty() {
            problems.push("refresh_token is empty".into());
            None
        } else if t.chars().any(char::is_whitespace) {
            problems.push("refresh_token contains whitespace (value not shown)".into());
            None
        } else {
            Some(Secret::new(t.to_owned()))
        }
    });
    let sync_from = sync_from.and_then(|s| match parse_date_or_instant(s) {
        Ok(at) => Some(UtcInstant::new(at)),
        Err(_) if s.is_empty() => {
            problems.push("sync_from is empty".into());
            None
        }
        Err(_) => {
            problems.push(
                "sync_from is not an ISO date (2026-11-01) or an RFC 3339 instant (2026-11-01T00:00:00Z)"
                    .into(),
            );
            None
        }
    });
    match (participant_id, provider, token, sync_from) {
        (Some(participant_id), Some(provider), Some(token), Some(sync_from))
            if problems.is_empty() =>
        {
            Ok(GoodRow {
                participant_id,
                provider,
                token,
                sync_from,
            })
        }
        _ => Err(problems),
    }
}

/// A participant repeating an earlier line. The id is named only when it is short: a Fitbit
/// refresh token (64 hex digits) is a valid id, so a misaligned file whose rows are repeated
/// (a file pasted twice) used to print a token here.
fn repeated_participant(id: &ParticipantId, first: u64) -> String {
    if id.as_str().len() < 24 {
        format!("participant {id} is already on line {first}")
    } else {
        format!(
            "participant_id is already on line {first} (an id this long is not shown: it may be a token in the wrong column)"
        )
    }
}

fn describe_bad_id(id: &str) -> String {
    if id.is_empty() {
        "participant_id is empty".into()
    } else if id.len() > 64 {
        format!(
            "participant_id is {} characters long (at most 64)",
            id.len()
        )
    } else {
        "participant_id has characters other than A-Z a-z 0-9 - _ .".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKeys {
        TokenKeys::parse(&fitlink_shared::secret::TokenKey::generate()).unwrap()
    }

    fn problems(result: Result<Vec<ImportedParticipant>, ImportError>) -> Vec<RowProblem> {
        match result {
            Err(ImportError::Invalid(problems)) => problems,
            Err(other) => panic!("expected row problems, got {other}"),
            Ok(rows) => panic!("expected row problems, got {} participants", rows.len()),
        }
    }

    fn lines(problems: &[RowProblem]) -> Vec<u64> {
        problems.iter().map(|p| p.line).collect()
    }

    #[test]
    fn a_good_file_gives_every_participant_with_a_sealed_token() {
        let key = key();
        let text = "\u{feff}provider,sync_from,participant_id,refresh_token\n\
                    google-health,2026-10-01,P-0001,1//tok-aaaa\n\
                    \n\
                    fitbit , 2026-10-01T12:00:00+02:00 , P_0002 , fitbit-tok-bbbb\n";
        let rows = parse_import(text, &key).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].participant_id.as_str(), "P-0001");
        assert_eq!(rows[0].provider, Provider::GoogleHealth);
        assert_eq!(rows[0].sync_from.to_text(), "2026-10-01T00:00:00Z");
        assert_eq!(rows[1].provider, Provider::Fitbit);
        assert_eq!(rows[1].sync_from.to_text(), "2026-10-01T10:00:00Z");
        assert!(!rows[0].sealed_refresh_token.as_str().contains("tok-aaaa"));
        let opened = key
            .open(&rows[1].participant_id, &rows[1].sealed_refresh_token)
            .unwrap();
        assert_eq!(opened.expose(), "fitbit-tok-bbbb");
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_nothing_is_returned() {
        let text = "participant_id,provider,refresh_token,sync_from\n\
                    good-1,google-health,secret-good-1,2026-10-01\n\
                    bad id!,google-health,secret-bad-id,2026-10-01\n\
                    p3,garmin,secret-bad-provider,2026-10-01\n\
                    p4,fitbit,,2026-10-01\n\
                    p5,fitbit,secret with-space,2026-10-01\n\
                    p6,fitbit,secret-bad-date,yesterday\n\
                    p7,fitbit,secret-short-row\n\
                    p8,Fitbit,secret-two-problems,soon\n\
                    good-1,fitbit,secret-duplicate,2026-10-01\n\
                    ,fitbit,secret-no-id,2026-10-01\n";
        let problems = problems(parse_import(text, &key()));
        assert_eq!(
            lines(&problems),
            [3, 4, 5, 6, 7, 8, 9, 9, 10, 11],
            "{problems:#?}"
        );
        let text_of = |line: u64| {
            problems
                .iter()
                .filter(|p| p.line == line)
                .map(|p| p.problem.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        };
        assert!(text_of(3).contains("participant_id has characters"));
        assert!(text_of(4).contains("provider"));
        assert!(text_of(5).contains("refresh_token is empty"));
        assert!(text_of(6).contains("refresh_token contains whitespace"));
        assert!(text_of(7).contains("sync_from"));
        assert!(text_of(8).contains("expected 4 fields"));
        assert!(text_of(9).contains("provider") && text_of(9).contains("sync_from"));
        assert!(text_of(10).contains("participant good-1 is already on line 2"));
        assert!(text_of(11).contains("participant_id is empty"));
    }

    #[test]
    fn errors_never_repeat_a_token_even_from_a_misaligned_file() {
        // Tokens that look like valid ids, dates or providers are the dangerous ones: a checker
        // that echoed "the bad value" would print them.
        let text = "participant_id,provider,refresh_token,sync_from\n\
                    p1,secret-token-in-provider-column,google-health,2026-10-01\n\
                    secrettokenasid!,google-health,p2,2026-10-01\n\
                    p3,fitbit,secret token with spaces,2026-10-01\n\
                    p4,fitbit,2026-10-01,secret-token-in-date-column\n\
                    p5,fitbit,secret-token-extra-field,2026-10-01,secret-token-extra-value\n";
        let error = parse_import(text, &key()).unwrap_err();
        let message = error.to_string();
        assert_eq!(lines(&problems(Err(error))), [2, 3, 4, 5, 6]);
        assert!(!message.contains("secret"), "{message}");
        assert!(message.contains("nothing was imported"), "{message}");

        // A file with no header has a token on line 1.
        let headerless = "p1,google-health,secret-token-on-line-1,2026-10-01\n";
        let message = parse_import(headerless, &key()).unwrap_err().to_string();
        assert!(message.contains("line 1"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn duplicate_ids_are_reported_on_each_repeat() {
        let text = "participant_id,provider,refresh_token,sync_from\n\
                    a,fitbit,t1,2026-10-01\n\
                    b,fitbit,t2,2026-10-01\n\
                    a,fitbit,t3,2026-10-01\n\
                    a,google-health,t4,2026-10-01\n";
        let problems = problems(parse_import(text, &key()));
        assert_eq!(lines(&problems), [4, 5]);
        assert!(
            problems
                .iter()
                .all(|p| p.problem.contains("already on line 2"))
        );
    }

    #[test]
    fn the_header_must_name_exactly_our_columns() {
        for (header, expected) in [
            (
                "participant_id,provider,refresh_token",
                "no sync_from column",
            ),
            (
                "participant_id,provider,refresh_token,sync_from,notes",
                "column 5 of the header",
            ),
            (
                "Participant_ID,provider,refresh_token,sync_from",
                "column 1",
            ),
            (
                "participant_id,provider,provider,refresh_token,sync_from",
                "repeats the column provider",
            ),
        ] {
            let text = format!("{header}\np1,fitbit,tok,2026-10-01\n");
            let problems = problems(parse_import(&text, &key()));
            assert!(
                problems.iter().all(|p| p.line == 1)
                    && problems.iter().any(|p| p.problem.contains(expected)),
                "{header}: {problems:#?}"
            );
        }
        let problems = problems(parse_import("", &key()));
        assert_eq!(lines(&problems), [1]);
        let problems = problems_of("participant_id,provider,refresh_token,sync_from\n");
        assert!(problems[0].problem.contains("no participants"));
    }

    fn problems_of(text: &str) -> Vec<RowProblem> {
        problems(parse_import(text, &key()))
    }
}
