//! The ledger printed from both stores: rows seeded as the writer leaves them, read back
//! through `write_coverage` into a buffer.

use clap::Parser as _;
use fitlink_shared::families::Family::{self, Activity, HeartRateIntraday, Sleep};
use fitlink_shared::store::Backend;

use super::testing::{add_ledger_rows, add_participant, day, ledger_database, ledger_row};
use super::*;
use crate::cli::{Cli, Command};

fitlink_shared::on_both_backends!(
    csv_has_every_row_in_key_order_with_its_header,
    flags_select_days_families_participants_and_gaps,
    keyset_pages_cross_boundaries_without_losing_or_repeating_rows,
    text_has_a_line_per_participant_day_with_its_gaps,
    text_says_which_named_participants_have_no_days,
    an_unknown_participant_fails_before_anything_is_printed,
);

/// p1: three days (complete; sleep not worn; the tracker not synced, intraday partial).
/// p2: one day of a dead-lettered job, wear unknown. p3: never synced. Inserted out of order.
async fn seeded(backend: Backend) -> (fitlink_shared::store::testing::TestDatabase, Database) {
    let (test_db, args, db) = ledger_database(backend).await;
    for (id, state) in [("p3", "active"), ("p2", "dead_lettered"), ("p1", "active")] {
        add_participant(&db, id, state).await;
    }
    let mut rows = Vec::new();
    for family in [Sleep, HeartRateIntraday, Activity] {
        let mut dead = ledger_row("p2", "2026-11-01", family, None, "provider_error");
        dead.dead_letter_id = Some("job-7".into());
        rows.push(dead);
        let mut unsynced = ledger_row("p1", "2026-11-03", family, Some(300), "device_not_synced");
        if family == HeartRateIntraday {
            (unsynced.status, unsynced.received) = ("partial".into(), 300);
        }
        rows.push(unsynced);
        let reason = if family == Sleep { "not_worn" } else { "ok" };
        rows.push(ledger_row("p1", "2026-11-02", family, Some(190), reason));
        rows.push(ledger_row("p1", "2026-11-01", family, Some(1325), "ok"));
    }
    add_ledger_rows(&db, &rows).await;
    db.close().await;
    let reader = args.open_for_reading("coverage-test").await.unwrap();
    (test_db, reader)
}

fn select(participants: &[&str], families: &[Family]) -> Selection {
    let ids: Vec<String> = participants.iter().map(|p| p.to_string()).collect();
    Selection::new(&ids, None, None, families, false).unwrap()
}

async fn printed(db: &Database, selection: &Selection, format: Format, page: usize) -> String {
    let mut out = Vec::new();
    write_coverage(db, selection, format, page, &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// The `(participant, date, family)` of each JSON line.
async fn keys(db: &Database, selection: &Selection) -> Vec<String> {
    printed(db, selection, Format::JsonLines, PAGE_ROWS)
        .await
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            format!(
                "{} {} {}",
                row["participant_id"], row["date"], row["family"]
            )
            .replace('"', "")
        })
        .collect()
}

async fn csv_has_every_row_in_key_order_with_its_header(backend: Backend) {
    let (_test_db, db) = seeded(backend).await;
    let csv = printed(&db, &Selection::default(), Format::Csv, PAGE_ROWS).await;
    assert_eq!(
        csv,
        "participant_id,date,family,expected,received,worn_minutes,status,reason,dead_letter_id
p1,2026-11-01,activity,1,1,1325,complete,ok,
p1,2026-11-01,heart_rate_intraday,1440,1325,1325,complete,ok,
p1,2026-11-01,sleep,1,1,1325,complete,ok,
p1,2026-11-02,activity,1,1,190,complete,ok,
p1,2026-11-02,heart_rate_intraday,1440,190,190,complete,ok,
p1,2026-11-02,sleep,1,0,190,missing,not_worn,
p1,2026-11-03,activity,1,0,300,missing,device_not_synced,
p1,2026-11-03,heart_rate_intraday,1440,300,300,partial,device_not_synced,
p1,2026-11-03,sleep,1,0,300,missing,device_not_synced,
p2,2026-11-01,activity,1,0,,missing,provider_error,job-7
p2,2026-11-01,heart_rate_intraday,1440,0,,missing,provider_error,job-7
p2,2026-11-01,sleep,1,0,,missing,provider_error,job-7
"
    );
    // JSON Lines: the same rows, the same names, null for NULL.
    let json = printed(&db, &Selection::default(), Format::JsonLines, PAGE_ROWS).await;
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert_eq!(
        lines[9],
        serde_json::json!({
            "participant_id": "p2", "date": "2026-11-01", "family": "activity",
            "expected": 1, "received": 0, "worn_minutes": null, "status": "missing",
            "reason": "provider_error", "dead_letter_id": "job-7"
        })
    );
    let names: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut header = render::CSV_HEADER.to_vec();
    header.sort();
    assert_eq!(names, header);
}

async fn flags_select_days_families_participants_and_gaps(backend: Backend) {
    let (_test_db, db) = seeded(backend).await;
    let one_day = Selection::new(
        &[],
        Some(day("2026-11-02")),
        Some(day("2026-11-02")),
        &[],
        false,
    );
    assert_eq!(
        keys(&db, &one_day.unwrap()).await,
        [
            "p1 2026-11-02 activity",
            "p1 2026-11-02 heart_rate_intraday",
            "p1 2026-11-02 sleep"
        ]
    );
    assert_eq!(
        keys(&db, &select(&[], &[Sleep])).await,
        [
            "p1 2026-11-01 sleep",
            "p1 2026-11-02 sleep",
            "p1 2026-11-03 sleep",
            "p2 2026-11-01 sleep"
        ]
    );
    let gaps = Selection::new(&[], None, None, &[], true).unwrap();
    assert_eq!(
        keys(&db, &gaps).await,
        [
            "p1 2026-11-02 sleep",
            "p1 2026-11-03 activity",
            "p1 2026-11-03 heart_rate_intraday",
            "p1 2026-11-03 sleep",
            "p2 2026-11-01 activity",
            "p2 2026-11-01 heart_rate_intraday",
            "p2 2026-11-01 sleep"
        ]
    );
    // Everything at once: one participant, from a day, two families, gaps only.
    let narrow = Selection::new(
        &["p1".into(), "p1".into()],
        Some(day("2026-11-02")),
        None,
        &[HeartRateIntraday, Sleep],
        true,
    )
    .unwrap();
    assert_eq!(
        keys(&db, &narrow).await,
        [
            "p1 2026-11-02 sleep",
            "p1 2026-11-03 heart_rate_intraday",
            "p1 2026-11-03 sleep"
        ]
    );
    assert_eq!(
        keys(&db, &select(&["p2"], &[Activity])).await,
        ["p2 2026-11-01 activity"]
    );
    // A named participant without rows prints nothing in the analysts' forms.
    assert_eq!(keys(&db, &select(&["p3"], &[])).await, Vec::<String>::new());
    assert_eq!(
        printed(&db, &select(&["p3"], &[]), Format::Csv, PAGE_ROWS).await,
        format!("{}\n", render::CSV_HEADER.join(","))
    );
}

async fn keyset_pages_cross_boundaries_without_losing_or_repeating_rows(backend: Backend) {
    let (_test_db, db) = seeded(backend).await;
    let all = Selection::default();
    let csv = printed(&db, &all, Format::Csv, PAGE_ROWS).await;
    let text = printed(&db, &all, Format::Text, PAGE_ROWS).await;
    let gaps = Selection::new(&[], None, None, &[], true).unwrap();
    let gaps_csv = printed(&db, &gaps, Format::Csv, PAGE_ROWS).await;
    for page in 1..=13 {
        // Pages of 2 and 4 end inside a day (three rows each), 3 and 9 between participants.
        let mut out = Vec::new();
        let written = write_coverage(&db, &all, Format::Csv, page, &mut out)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), csv, "pages of {page}");
        // A last full page is followed by one empty page.
        let pages = 12 / page as u64 + 1;
        assert_eq!(written, Written { rows: 12, pages }, "pages of {page}");
        assert_eq!(
            printed(&db, &all, Format::Text, page).await,
            text,
            "pages of {page}"
        );
        assert_eq!(
            printed(&db, &gaps, Format::Csv, page).await,
            gaps_csv,
            "pages of {page}"
        );
    }
}

async fn text_has_a_line_per_participant_day_with_its_gaps(backend: Backend) {
    let (_test_db, db) = seeded(backend).await;
    assert_eq!(
        printed(&db, &Selection::default(), Format::Text, 5).await,
        "p1
  2026-11-01  22h05  complete
  2026-11-02  03h10  not_worn: sleep
  2026-11-03  05h00  device_not_synced: activity, heart_rate_intraday, sleep
p2
  2026-11-01      -  provider_error (dead letter job-7): activity, heart_rate_intraday, sleep

4 participant-day(s) of 2 participant(s), 3 with gaps
never synced, no ledger days yet (1): p3
"
    );
    // Every family selected missing for one reason is said once.
    let three = select(&[], &[Activity, HeartRateIntraday, Sleep]);
    let text = printed(&db, &three, Format::Text, PAGE_ROWS).await;
    assert!(
        text.contains("  2026-11-03  05h00  device_not_synced: every family\n"),
        "{text}"
    );
    assert!(
        text.contains("  2026-11-01      -  provider_error (dead letter job-7): every family\n"),
        "{text}"
    );
    let gaps = Selection::new(&[], None, None, &[], true).unwrap();
    let text = printed(&db, &gaps, Format::Text, PAGE_ROWS).await;
    assert!(!text.contains("complete"), "{text}");
    assert!(
        text.contains("3 participant-day(s) with gaps, of 2 participant(s)\n"),
        "{text}"
    );
}

async fn text_says_which_named_participants_have_no_days(backend: Backend) {
    let (_test_db, db) = seeded(backend).await;
    let ids = ["p3".to_owned(), "p1".to_owned(), "p2".to_owned()];
    let selection = Selection::new(&ids, Some(day("2026-11-03")), None, &[], false).unwrap();
    assert_eq!(
        printed(&db, &selection, Format::Text, PAGE_ROWS).await,
        "p1
  2026-11-03  05h00  device_not_synced: activity, heart_rate_intraday, sleep
p2
  no ledger days match the selection
p3
  no ledger days yet: never synced (the ledger starts with the participant's first sync job)

1 participant-day(s) of 1 participant(s), 1 with gaps
"
    );
}

async fn an_unknown_participant_fails_before_anything_is_printed(backend: Backend) {
    let (_test_db, db) = seeded(backend).await;
    let selection = select(&["p1", "nobody", "p2", " ghost ", "no such id!"], &[]);
    for format in [Format::Text, Format::Csv, Format::JsonLines] {
        let mut out = Vec::new();
        let error = write_coverage(&db, &selection, format, PAGE_ROWS, &mut out)
            .await
            .unwrap_err();
        assert_eq!(
            error.downcast_ref::<SelectionError>(),
            Some(&SelectionError::UnknownParticipants(vec![
                "ghost".into(),
                "no such id!".into(),
                "nobody".into()
            ]))
        );
        assert_eq!(
            error.to_string(),
            "unknown participant(s): ghost, no such id!, nobody; nothing was printed"
        );
        assert!(out.is_empty(), "{format:?} printed {out:?}");
    }
}

#[test]
fn an_empty_range_of_days_is_refused_naming_both_ends() {
    let error = Selection::new(
        &[],
        Some(day("2026-11-05")),
        Some(day("2026-11-01")),
        &[],
        false,
    );
    assert_eq!(
        error.unwrap_err().to_string(),
        "--since 2026-11-05 is after --until 2026-11-01: no day is in that range"
    );
}

#[test]
fn families_and_dates_are_checked_with_the_valid_values_named() {
    let error = parse_ledger_family("sleeps").unwrap_err();
    assert!(
        error.starts_with(
            "unknown family \"sleeps\"; the ledger's families are: activity, heart_rate_zones,"
        ),
        "{error}"
    );
    assert!(
        error.ends_with("skin_temperature, active_zone_minutes"),
        "{error}"
    );
    let error = parse_ledger_family("devices").unwrap_err();
    assert!(
        error.starts_with("devices is not in the completeness ledger"),
        "{error}"
    );
    for family in Family::LEDGER {
        assert_eq!(parse_ledger_family(family.as_str()), Ok(family));
    }
    assert_eq!(parse_local_date("2026-11-01"), Ok(day("2026-11-01")));
    for bad in ["2026-13-01", "2026-02-30", "01/11/2026", "+12026-01-01", ""] {
        let error = parse_local_date(bad).unwrap_err().to_string();
        assert!(
            error.contains("expected a local day as YYYY-MM-DD"),
            "{bad}: {error}"
        );
    }
}

#[test]
fn the_command_line_takes_families_dates_and_one_form() {
    let cli = Cli::try_parse_from([
        "fitlink",
        "coverage",
        "p2",
        "--family",
        "sleep,activity",
        "--family",
        "steps_intraday",
        "--since",
        "2026-11-01",
        "--gaps-only",
        "--csv",
        "p1",
    ])
    .unwrap();
    let Command::Coverage(args) = cli.command else {
        panic!("not coverage: {:?}", cli.command)
    };
    assert_eq!(args.participants, ["p2", "p1"]);
    assert_eq!(args.families, [Sleep, Activity, Family::StepsIntraday]);
    assert_eq!(args.since, Some(day("2026-11-01")));
    assert_eq!(args.until, None);
    assert!(args.gaps_only && args.csv && !args.json);

    let both = Cli::try_parse_from(["fitlink", "coverage", "--json", "--csv"]).unwrap_err();
    assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
    let bad = Cli::try_parse_from(["fitlink", "coverage", "--family", "sleep,hr"]).unwrap_err();
    assert!(bad.to_string().contains("unknown family \"hr\""), "{bad}");
    let bad = Cli::try_parse_from(["fitlink", "coverage", "--until", "2026-11-31"]).unwrap_err();
    assert!(
        bad.to_string().contains("invalid date \"2026-11-31\""),
        "{bad}"
    );
}

#[test]
fn worn_time_reads_as_hours_and_minutes() {
    assert_eq!(render::worn(Some(1325)), "22h05");
    assert_eq!(render::worn(Some(1500)), "25h00");
    assert_eq!(render::worn(Some(0)), "00h00");
    assert_eq!(render::worn(None), "-");
}

#[tokio::test]
async fn an_empty_ledger_is_a_header_or_a_sentence() {
    let (_test_db, args, db) = ledger_database(Backend::Sqlite).await;
    db.close().await;
    let db = args.open_for_reading("coverage-test").await.unwrap();
    let all = Selection::default();
    assert_eq!(
        printed(&db, &all, Format::Csv, PAGE_ROWS).await,
        format!("{}\n", render::CSV_HEADER.join(","))
    );
    assert_eq!(printed(&db, &all, Format::JsonLines, PAGE_ROWS).await, "");
    assert_eq!(
        printed(&db, &all, Format::Text, PAGE_ROWS).await,
        "no ledger days match the selection\n"
    );
}
