//! Data families as a participant grants them: one who unticks sleep on the consent page keeps
//! every other family, is shown as not permitting sleep, and is offered a new consent.

use fitlink::checker::{self, History};

use crate::harness::{Options, TestFleet};
use crate::linkage::invitation_urls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_without_sleep_gets_every_other_family_and_is_offered_consent() {
    let mut t = TestFleet::start(Options {
        participants: 3,
        days: 3,
        start_sync: false,
        // The portal's address is what invitation links point at.
        portal: true,
        ..Options::default()
    })
    .await;
    // sim-0002 granted everything but sleep.
    t.sim_control(
        "/_sim/participants/sim-0002/scopes",
        serde_json::json!({ "granted": [
            "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly",
            "https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly",
            "https://www.googleapis.com/auth/googlehealth.settings.readonly",
        ] }),
    )
    .await;
    t.import_roster().await;
    t.start_workers(2);
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
    let ids = t.participant_ids();
    t.wait_synced(&ids, 120).await;

    for id in ["sim-0001", "sim-0003"] {
        t.assert_matches_truth(id, &Default::default()).await;
    }
    let check = checker::check_participant(
        &t.db,
        &t.sim_config,
        "sim-0002",
        History::Google,
        &Default::default(),
    )
    .await
    .unwrap();
    for (table, diff) in &check.tables {
        if table.starts_with("sleep") {
            assert!(diff.expected > 0, "the truth has {table} rows to withhold");
            assert_eq!(diff.lost, diff.expected, "sim-0002 {table}: nothing read");
            assert_eq!(diff.wrong + diff.duplicated, 0, "sim-0002 {table}");
        } else {
            assert!(diff.is_clean(), "sim-0002 {table}: {check}");
        }
    }
    assert!(
        check.tables["heart_rate_variability_daily"].expected > 0,
        "the nightly metrics were judged"
    );
    let row = t.participant("sim-0002").await;
    assert_eq!(
        row.state, "active",
        "refusing sleep does not stall the participant"
    );

    let status = t.status_json();
    let participant = |id: &str| {
        status["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["participant_id"] == id)
            .cloned()
            .unwrap()
    };
    let refused = participant("sim-0002")["not_permitted"].clone();
    assert!(
        refused["sleep"].as_str().is_some_and(|r| r.contains("403")),
        "{refused}"
    );
    assert_eq!(
        participant("sim-0001")["not_permitted"],
        serde_json::json!({})
    );
    let text = t.cli(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("sleep not permitted"), "{text}");

    let out = t.cli(&["invite", "--needing-consent", "--csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    let invited: Vec<String> = invitation_urls(&csv)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(invited, ["sim-0002"], "{csv}");
    t.finish().await;
}
