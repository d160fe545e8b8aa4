//! Compliance counted from ledger rows seeded on both stores, at and around its thresholds.

use clap::{CommandFactory as _, Parser as _};
use fitlink_shared::families::Family::{Activity, HeartRateIntraday, Sleep};
use fitlink_shared::store::{Backend, Database};

use super::*;
use crate::cli::{Cli, Command};
use crate::coverage::LedgerRow;
use crate::coverage::testing::{
    add_ledger_rows, add_participant, day, ledger_database, ledger_row,
};

fitlink_shared::on_both_backends!(
    counts_wear_at_its_thresholds_and_only_inside_the_window,
    the_window_moves_with_as_of_and_the_thresholds_with_the_flags,
);

/// A day's heart-rate row with this wear (the row compliance reads).
fn worn(participant: &str, date: &str, minutes: i64) -> LedgerRow {
    ledger_row(participant, date, HeartRateIntraday, Some(minutes), "ok")
}

/// The window of the default rule on 2026-11-08 is 2026-11-01 to 2026-11-07.
///
/// - a: exactly 600 minutes on 4 days (and 599 on a fifth): compliant.
/// - b: 600 on 3 days and 599 on a fourth, whose other families read 600: not.
/// - c: 900 on 3 days inside, and on the day before the window and on `as_of`: not.
/// - d: no ledger rows: not. e: revoked, worn every day: compliant (counted).
/// - w: withdrawn, worn every day: not counted.
async fn seeded(backend: Backend) -> (fitlink_shared::store::testing::TestDatabase, Database) {
    let (test_db, args, db) = ledger_database(backend).await;
    for (id, state) in [
        ("a", "active"),
        ("b", "active"),
        ("c", "intraday_not_permitted"),
        ("d", "active"),
        ("e", "revoked"),
        ("w", "withdrawn"),
    ] {
        add_participant(&db, id, state).await;
    }
    let mut rows = Vec::new();
    for d in ["01", "02", "03", "04"] {
        rows.push(worn("a", &format!("2026-11-{d}"), 600));
    }
    rows.push(worn("a", "2026-11-05", 599));
    for d in ["01", "02", "03"] {
        rows.push(worn("b", &format!("2026-11-{d}"), 600));
    }
    rows.push(worn("b", "2026-11-04", 599));
    for (family, reason) in [(Activity, "ok"), (Sleep, "not_worn")] {
        // Not the family compliance reads, whatever its wear says.
        rows.push(ledger_row("b", "2026-11-04", family, Some(600), reason));
    }
    for date in [
        "2026-10-31",
        "2026-11-02",
        "2026-11-03",
        "2026-11-04",
        "2026-11-08",
    ] {
        rows.push(worn("c", date, 900));
    }
    rows.push(ledger_row("c", "2026-10-31", Sleep, Some(900), "not_worn"));
    for d in 1..=7 {
        let date = format!("2026-11-0{d}");
        rows.push(worn("e", &date, 1440));
        rows.push(worn("w", &date, 1440));
    }
    for family in [Sleep, Activity] {
        rows.push(ledger_row(
            "e",
            "2026-11-07",
            family,
            Some(1440),
            "not_permitted",
        ));
        rows.push(ledger_row(
            "w",
            "2026-11-06",
            family,
            Some(1440),
            "withdrawn",
        ));
        rows.push(ledger_row(
            "w",
            "2026-11-07",
            family,
            Some(1440),
            "withdrawn",
        ));
    }
    add_ledger_rows(&db, &rows).await;
    db.close().await;
    (
        test_db,
        args.open_for_reading("compliance-test").await.unwrap(),
    )
}

fn rule(as_of: &str, window_days: u32, min_wear_hours: f64, min_days: u32) -> ComplianceRule {
    ComplianceRule::new(day(as_of), window_days, min_wear_hours, min_days).unwrap()
}

/// Each participant's days worn enough, `None` when not counted.
fn days(c: &CohortCompliance) -> Vec<(&str, Option<i64>)> {
    c.by_participant
        .iter()
        .map(|(id, w)| (id.as_str(), w.days_worn_enough))
        .collect()
}

async fn counts_wear_at_its_thresholds_and_only_inside_the_window(backend: Backend) {
    let (_test_db, db) = seeded(backend).await;
    let c = read_compliance(&db, &rule("2026-11-08", 7, 10.0, 4))
        .await
        .unwrap();
    assert_eq!(
        c.summary,
        Compliance {
            as_of: day("2026-11-08"),
            window_days: 7,
            first_day: day("2026-11-01"),
            last_day: day("2026-11-07"),
            min_wear_hours: 10.0,
            min_days: 4,
            participants: 5,
            compliant: 2,
            not_compliant: vec!["b".into(), "c".into(), "d".into()],
            not_compliant_count: 3,
        }
    );
    assert_eq!(
        days(&c),
        [
            ("a", Some(4)),
            ("b", Some(3)),
            ("c", Some(3)),
            ("d", Some(0)),
            ("e", Some(7)),
            ("w", None)
        ]
    );
    assert_eq!(c.by_participant["a"].compliant, Some(true));
    assert_eq!(c.by_participant["d"].compliant, Some(false));
    assert_eq!(c.by_participant["w"].compliant, None);
    // Gap days by reason, inside the window only (c's gap is the day before it); two families
    // refused on one day are one day.
    let gaps = |id: &str| {
        c.by_participant[id]
            .gaps
            .clone()
            .into_iter()
            .collect::<Vec<_>>()
    };
    assert_eq!(gaps("b"), [("not_worn".to_owned(), 1)]);
    assert_eq!(gaps("c"), Vec::<(String, i64)>::new());
    assert_eq!(gaps("e"), [("not_permitted".to_owned(), 1)]);
    assert_eq!(gaps("w"), [("withdrawn".to_owned(), 2)]);

    let text = render_text(&c.summary, |id| c.by_participant[id].days_worn_enough);
    assert_eq!(
        text,
        "compliance: 2 of 5 participants wore their tracker \u{2265}10 h on \u{2265}4 of the 7 days before 2026-11-08
  not compliant: b (3 days), c (3 days), d (0 days)
"
    );
}

async fn the_window_moves_with_as_of_and_the_thresholds_with_the_flags(backend: Backend) {
    let (_test_db, db) = seeded(backend).await;
    let read = |rule: ComplianceRule| {
        let db = db.clone();
        async move { read_compliance(&db, &rule).await.unwrap() }
    };
    // A day later: 2026-11-02 to 2026-11-08. a loses 11-01, c gains 11-08.
    let later = read(rule("2026-11-09", 7, 10.0, 4)).await;
    assert_eq!(
        days(&later),
        [
            ("a", Some(3)),
            ("b", Some(2)),
            ("c", Some(4)),
            ("d", Some(0)),
            ("e", Some(6)),
            ("w", None)
        ]
    );
    assert_eq!(later.summary.not_compliant, ["a", "b", "d"]);
    // Exactly min_days counts.
    let three = read(rule("2026-11-08", 7, 10.0, 3)).await;
    assert_eq!(three.summary.compliant, 4);
    assert_eq!(three.summary.not_compliant, ["d"]);
    // 9.99 h is 599.4 minutes: 600 still needed. 9.98 h is 598.8: 599 is enough.
    let just_under = read(rule("2026-11-08", 7, 9.99, 4)).await;
    assert_eq!(just_under.by_participant["b"].days_worn_enough, Some(3));
    let lower = read(rule("2026-11-08", 7, 9.98, 4)).await;
    assert_eq!(lower.by_participant["a"].days_worn_enough, Some(5));
    assert_eq!(lower.by_participant["b"].days_worn_enough, Some(4));
    assert_eq!(lower.summary.not_compliant, ["c", "d"]);
    // Three days, 2026-11-05 to 2026-11-07: only e wore it.
    let short = read(rule("2026-11-08", 3, 10.0, 1)).await;
    assert_eq!(short.summary.compliant, 1);
    assert_eq!(short.summary.not_compliant, ["a", "b", "c", "d"]);
    assert_eq!(short.by_participant["b"].gaps.len(), 0);
}

#[test]
fn thresholds_that_cannot_hold_are_refused_naming_the_flag() {
    let as_of = day("2026-11-08");
    let refused = |window: u32, hours: f64, min_days: u32| {
        ComplianceRule::new(as_of, window, hours, min_days)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refused(0, 10.0, 0),
        "--window-days (FITLINK_COMPLIANCE_WINDOW_DAYS) is 0: the window needs at least one day"
    );
    assert_eq!(
        refused(7, 10.0, 8),
        "--min-days (FITLINK_COMPLIANCE_MIN_DAYS) is 8: it must be 1 to --window-days (7)"
    );
    assert!(refused(7, 10.0, 0).starts_with("--min-days (FITLINK_COMPLIANCE_MIN_DAYS) is 0"));
    for hours in [24.5, -1.0, f64::NAN] {
        assert!(
            refused(7, hours, 4).contains("a day's wear is 0 to 24 hours"),
            "{hours}"
        );
    }
    assert!(
        ComplianceRule::new(day("0000-01-03"), 7, 10.0, 4)
            .unwrap_err()
            .to_string()
            .contains("before the first date")
    );
    // The edges themselves hold.
    let edges = ComplianceRule::new(as_of, 1, 24.0, 1).unwrap();
    assert_eq!(
        (edges.first_day(), edges.last_day()),
        (day("2026-11-07"), day("2026-11-07"))
    );
    assert_eq!(edges.min_wear_minutes(), 1440);
    assert_eq!(rule("2026-11-08", 7, 0.0, 7).min_wear_minutes(), 0);
}

#[test]
fn thresholds_come_from_flags_or_their_environment_variables() {
    let cli = Cli::try_parse_from([
        "fitlink",
        "status",
        "--min-wear-hours",
        "8.5",
        "--min-days",
        "3",
        "--window-days",
        "5",
        "--as-of",
        "2026-11-04",
    ])
    .unwrap();
    let Command::Status { compliance, .. } = cli.command else {
        panic!("not status: {:?}", cli.command)
    };
    let rule = compliance.rule(day("2030-01-01")).unwrap();
    assert_eq!(
        rule,
        ComplianceRule::new(day("2026-11-04"), 5, 8.5, 3).unwrap()
    );
    assert_eq!(rule.min_wear_minutes(), 510);

    // Without flags: the documented defaults, as of the given today.
    let Command::Status { compliance, .. } =
        Cli::try_parse_from(["fitlink", "status"]).unwrap().command
    else {
        unreachable!()
    };
    assert_eq!(
        compliance.rule(day("2026-11-04")).unwrap(),
        ComplianceRule::new(day("2026-11-04"), 7, 10.0, 4).unwrap()
    );

    // Each threshold reads its variable (clap reads it when the flag is absent; the test sets
    // no variable, which would race with the other tests reading the environment).
    let command = Cli::command();
    let status = command.find_subcommand("status").unwrap();
    let env = |id: &str| {
        let arg = status.get_arguments().find(|a| a.get_id() == id).unwrap();
        arg.get_env().map(|e| e.to_string_lossy().into_owned())
    };
    assert_eq!(
        env("min_wear_hours").as_deref(),
        Some("FITLINK_COMPLIANCE_MIN_WEAR_HOURS")
    );
    assert_eq!(
        env("min_days").as_deref(),
        Some("FITLINK_COMPLIANCE_MIN_DAYS")
    );
    assert_eq!(
        env("window_days").as_deref(),
        Some("FITLINK_COMPLIANCE_WINDOW_DAYS")
    );

    let bad = Cli::try_parse_from(["fitlink", "status", "--as-of", "2026-11-4x"]).unwrap_err();
    assert!(
        bad.to_string().contains("invalid date \"2026-11-4x\""),
        "{bad}"
    );
}
