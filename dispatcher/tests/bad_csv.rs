//! Bad participant-import files, fed to [`parse_import`] (what `fitlink participants import`
//! runs on a file's text): never a panic, and a file is either accepted whole (every token
//! sealed for its participant) or refused as `ImportError::Invalid` with the line of each
//! problem and never a token in the message.
//!
//! Property tests build valid files and break them the way coordinators' files break (cells in
//! the wrong column, a row pasted twice, a missing or extra cell, quoting, a BOM, CRLF, blank
//! lines, a cut); the corpus in `tests/corpus/csv/` holds real-shaped files (under `ok/` the
//! ones that must be accepted). No broker or database is involved.

use std::collections::HashSet;
use std::path::Path;

use fitlink_dispatcher::import::COLUMNS;
use fitlink_dispatcher::{ImportError, MAX_IMPORT_BYTES, parse_import, read_roster};
use fitlink_shared::messages::ImportedParticipant;
use fitlink_shared::secret::{Secret, TokenKeys};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn key() -> TokenKeys {
    TokenKeys::parse(&Secret::new("ab".repeat(32))).unwrap()
}

/// A bounded run, as in `fitlink-shared`'s `bad_input` tests.
fn config(cases: u32) -> Config {
    Config {
        // `PROPTEST_CASES=20000 cargo test ...` soaks locally; CI runs the bounded count.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

/// What every outcome must be: the participants with tokens that open to tokens of the file, or
/// every problem with a line of the file, the message naming no token.
fn check(text: &str, tokens: &[String], result: Result<Vec<ImportedParticipant>, ImportError>) {
    let key = key();
    match result {
        Ok(participants) => {
            assert!(!participants.is_empty());
            let mut ids = HashSet::new();
            for p in &participants {
                assert!(
                    ids.insert(p.participant_id.clone()),
                    "{} twice",
                    p.participant_id
                );
                let token = key
                    .open(&p.participant_id, &p.sealed_refresh_token)
                    .unwrap();
                assert!(
                    !token.expose().is_empty() && !token.expose().contains(char::is_whitespace)
                );
                assert!(fitlink_shared::domain::UtcInstant::parse(&p.sync_from.to_text()).is_ok());
            }
        }
        Err(ImportError::Invalid(problems)) => {
            assert!(!problems.is_empty());
            let lines = text.lines().count().max(1) as u64;
            for p in &problems {
                assert!(
                    (1..=lines + 1).contains(&p.line),
                    "line {} of {lines}: {p}",
                    p.line
                );
            }
            let message = ImportError::Invalid(problems).to_string();
            assert!(message.contains("nothing was imported"), "{message}");
            for token in tokens {
                assert!(!message.contains(token.as_str()), "{token} in {message}");
            }
        }
        Err(other) => panic!("parse_import only refuses a file as Invalid, not {other:?}"),
    }
}

/// A token as the providers issue them: Google's `1//0…` or Fitbit's 64 hex digits (which is a
/// valid participant id: the dangerous kind in a misaligned file).
fn token() -> impl Strategy<Value = String> {
    prop_oneof!["1//0[A-Za-z0-9_-]{40,60}", "[0-9a-f]{64}",]
}

/// Cells that break a row.
fn hostile_cell() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "Fitbit",
            "GOOGLE-HEALTH",
            "garmin",
            "2026-13-40",
            "+12345-01-01",
            "-0001-01-01",
            "11/03/2026",
            "2026-11-01 05:30",
            "2026-11-01T05:30",
            "9999-12-31T23:59:59-23:59",
            "0000-01-01T00:00:00+01:00",
            "a,b",
            "a\"b",
            "\"",
            "line\nbreak",
            "line\r\nbreak",
            "\u{feff}",
            "tok with space",
            "P 0001",
            "p;1",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,30}",
        any::<String>(),
        Just("x".repeat(100)),
    ]
}

#[derive(Debug, Clone)]
enum Break {
    /// Two cells of a row trade places (a token in the id or date column).
    Swap(usize, usize, usize),
    Replace(usize, usize, String),
    Remove(usize, usize),
    Add(usize, String),
    /// A row pasted twice.
    Repeat(usize),
    /// A token of another row, in any cell.
    Borrow(usize, usize, usize),
}

fn a_break() -> impl Strategy<Value = Break> {
    let n = any::<usize>;
    prop_oneof![
        3 => (n(), n(), n()).prop_map(|(r, a, b)| Break::Swap(r, a, b)),
        3 => (n(), n(), hostile_cell()).prop_map(|(r, c, v)| Break::Replace(r, c, v)),
        1 => (n(), n()).prop_map(|(r, c)| Break::Remove(r, c)),
        1 => (n(), hostile_cell()).prop_map(|(r, v)| Break::Add(r, v)),
        2 => n().prop_map(Break::Repeat),
        1 => (n(), n(), n()).prop_map(|(r, c, t)| Break::Borrow(r, c, t)),
    ]
}

/// How the table is written out.
#[derive(Debug, Clone)]
struct Style {
    bom: bool,
    crlf: bool,
    /// 0: never quote, 1: quote what needs it, 2: quote every cell.
    quoting: u8,
    /// Spaces around unquoted cells (the import trims them).
    padding: bool,
    blank_after: Option<usize>,
    cut: Option<usize>,
}

fn style() -> impl Strategy<Value = Style> {
    (
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        any::<bool>(),
        prop::option::of(any::<usize>()),
        prop::option::weighted(0.2, any::<usize>()),
    )
        .prop_map(|(bom, crlf, quoting, padding, blank_after, cut)| Style {
            bom,
            crlf,
            quoting,
            padding,
            blank_after,
            cut,
        })
}

fn render(rows: &[Vec<String>], style: &Style) -> String {
    let newline = if style.crlf { "\r\n" } else { "\n" };
    let mut text = String::new();
    if style.bom {
        text.push('\u{feff}');
    }
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .map(|cell| {
                let needs = cell.contains([',', '"', '\n', '\r']);
                if style.quoting == 2 || (style.quoting == 1 && needs) {
                    format!("\"{}\"", cell.replace('"', "\"\""))
                } else if style.padding {
                    // Only outside quotes: ` "x" ` reads as the text `"x"` (quotes and all).
                    format!(" {cell} ")
                } else {
                    cell.clone()
                }
            })
            .collect();
        text.push_str(&cells.join(","));
        text.push_str(newline);
        if style.blank_after.is_some_and(|b| b % rows.len() == i) {
            text.push_str(newline);
        }
    }
    if let Some(cut) = style.cut {
        let mut at = cut % (text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
    text
}

/// A valid file (header in any column order, 1 to 5 participants) as a table, and its tokens.
fn valid_table() -> impl Strategy<Value = (Vec<Vec<String>>, Vec<String>)> {
    (
        Just(COLUMNS.to_vec()).prop_shuffle(),
        prop::collection::vec(
            (
                prop::sample::select(vec!["google-health", "fitbit"]),
                token(),
                prop::sample::select(vec![
                    "2026-10-01",
                    "2026-10-01T12:00:00+02:00",
                    "2026-11-01T00:00:00Z",
                ]),
            ),
            1..6,
        ),
    )
        .prop_map(|(header, rows)| {
            let mut table = vec![header.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>()];
            let mut tokens = Vec::new();
            for (i, (provider, token, sync_from)) in rows.into_iter().enumerate() {
                let id = format!("P-{:04}", i + 1);
                let cell = |column: &str| match column {
                    "participant_id" => id.clone(),
                    "provider" => provider.to_owned(),
                    "refresh_token" => token.clone(),
                    _ => sync_from.to_owned(),
                };
                table.push(header.iter().map(|c| cell(c)).collect());
                tokens.push(token);
            }
            (table, tokens)
        })
}

fn apply(table: &mut Vec<Vec<String>>, tokens: &[String], brk: &Break) {
    // Row 0 is the header; breaks land on data rows (and the header only through Repeat).
    let len = table.len();
    let data = |r: usize| if len > 1 { 1 + r % (len - 1) } else { 0 };
    match brk {
        Break::Swap(r, a, b) => {
            let row = &mut table[data(*r)];
            if !row.is_empty() {
                let (a, b) = (a % row.len(), b % row.len());
                row.swap(a, b);
            }
        }
        Break::Replace(r, c, v) => {
            let row = &mut table[data(*r)];
            if !row.is_empty() {
                let c = c % row.len();
                row[c] = v.clone();
            }
        }
        Break::Remove(r, c) => {
            let row = &mut table[data(*r)];
            if !row.is_empty() {
                row.remove(c % row.len());
            }
        }
        Break::Add(r, v) => {
            table[data(*r)].push(v.clone());
        }
        Break::Repeat(r) => {
            let row = table[r % table.len()].clone();
            table.push(row);
        }
        Break::Borrow(r, c, t) => {
            let row = &mut table[data(*r)];
            if !row.is_empty() {
                let c = c % row.len();
                row[c] = tokens[t % tokens.len()].clone();
            }
        }
    }
}

#[test]
fn valid_files_are_accepted_however_they_are_written() {
    let mut runner = proptest::test_runner::TestRunner::new(config(64));
    runner
        .run(&(valid_table(), style()), |((table, _), mut style)| {
            style.cut = None;
            let text = render(&table, &style);
            let rows = parse_import(&text, &key()).unwrap_or_else(|e| panic!("{e}\n{text:?}"));
            prop_assert_eq!(rows.len(), table.len() - 1);
            Ok(())
        })
        .unwrap();
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_broken_file_is_accepted_whole_or_refused_by_line_without_a_token(
        (table, tokens) in valid_table(),
        breaks in prop::collection::vec(a_break(), 1..4),
        style in style(),
    ) {
        let mut table = table;
        for brk in &breaks {
            apply(&mut table, &tokens, brk);
        }
        let text = render(&table, &style);
        check(&text, &tokens, parse_import(&text, &key()));
    }

    #[test]
    fn any_text_is_a_file_or_refused_by_line(text in prop_oneof![
        any::<String>(),
        "[a-z_,\"\r\n -]{0,200}",
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        check(&text, &[], parse_import(&text, &key()));
    }
}

/// Every file of `tests/corpus/csv/` is refused by line without repeating any long cell (the
/// tokens); every file of its `ok/` is accepted.
#[test]
fn csv_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/csv");
    let files = |dir: &Path| {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    };
    let bad = files(&root);
    assert!((5..=15).contains(&bad.len()), "{} files", bad.len());
    for path in bad {
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let long_cells: Vec<String> = text
            .split([',', '\n', '\r', '\t', '"'])
            .map(str::trim)
            .filter(|cell| cell.len() >= 24)
            .map(str::to_owned)
            .collect();
        let result = parse_import(&text, &key());
        assert!(
            matches!(result, Err(ImportError::Invalid(_))),
            "{}: {:?}",
            path.display(),
            result.map(|rows| rows.len())
        );
        check(&text, &long_cells, result);
    }
    for path in files(&root.join("ok")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let result = parse_import(&text, &key());
        assert!(
            result.is_ok(),
            "{}: {}",
            path.display(),
            result.unwrap_err()
        );
        check(&text, &[], result);
    }
}

/// A roster over the cap is refused whole, by name, before anything is parsed or published;
/// one at the cap is read.
#[tokio::test]
async fn a_roster_larger_than_one_import_takes_is_refused_naming_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.csv");
    let file = std::fs::File::create(&path).unwrap();
    // Sparse: no disk is spent on it.
    file.set_len(MAX_IMPORT_BYTES + 1).unwrap();
    let refused = read_roster(&path).await.unwrap_err();
    assert!(matches!(refused, ImportError::TooLarge { .. }), "{refused}");
    let text = refused.to_string();
    assert!(
        text.contains("MAX_IMPORT_BYTES") && text.contains("split"),
        "{text}"
    );

    file.set_len(MAX_IMPORT_BYTES).unwrap();
    assert_eq!(
        read_roster(&path).await.unwrap().len() as u64,
        MAX_IMPORT_BYTES
    );
}
