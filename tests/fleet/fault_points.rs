//! Every named fault point (`fitlink_shared::faults`), hit exactly: a process armed at the point
//! aborts there, the fleet is healed with an unarmed one, and the checker finds nothing lost,
//! duplicated or wrong, and no credential lost.
//!
//! The two points around a token rotation (`refresh-before-store`, `store-before-use`) are in
//! `legacy.rs` (`a_worker_killed_right_after_a_refresh_loses_no_credential`,
//! `a_worker_killed_after_storing_a_rotation_is_retried_with_the_stored_token`), beside the
//! rotating tokens they need.

use std::collections::BTreeMap;

use fitlink_shared::faults::{FAULT_POINT_ENV, FaultPoint};

use crate::harness::{Options, TestFleet};

/// A small mixed fleet, nothing started but the writer: Google participants with 1-second
/// heart rate for some (several slices per job), or legacy Fitbit ones (rotating tokens).
fn fleet(provider: &'static str) -> Options {
    Options {
        participants: 4,
        days: 2,
        provider,
        start_sync: false,
        sim_args: vec!["--fine-hr-every".into(), "2".into()],
        env: vec![("FITLINK_SLICE_HOURS", "6".into())],
        ..Options::default()
    }
}

/// The provider until the armed process has struck.
#[derive(Clone, Copy, PartialEq)]
enum UntilStruck {
    Healthy,
    /// The first participant's provider fails (so its job is retried), and heals after.
    FirstParticipantFailing,
}

/// Runs a fleet with the process of `point`'s role armed (`FITLINK_FAULT_POINT=<arming>`),
/// waits for it to abort, starts an unarmed one in its place, and checks every participant.
///
/// An armed worker does the first sync. An armed writer takes over after it, for a second
/// sync asked for every participant (as the dispatcher asks): the import grants the first jobs
/// itself, and its batch is the import's, not a sync's.
async fn strike_and_heal(
    point: FaultPoint,
    arming: &str,
    provider: &'static str,
    until_struck: UntilStruck,
) -> TestFleet {
    let env = [(FAULT_POINT_ENV, arming)];
    let writer_point = point.role() == "writer";
    let mut t = TestFleet::start(Options {
        start_sync: writer_point,
        ..fleet(provider)
    })
    .await;
    let ids = t.participant_ids();
    let failing = until_struck == UntilStruck::FirstParticipantFailing;
    if failing {
        t.fail_provider_for(Some(&ids[0])).await;
    }
    if writer_point {
        t.wait_synced(&ids, 180).await;
        // Ten minutes: the simulated days end just before Europe's clocks go back, and a
        // legacy device sync time in the repeated hour reads as its first pass.
        t.sim_control("/_sim/advance", serde_json::json!({ "minutes": 10 }))
            .await;
        t.advance_truth(10);
        stop(&mut t, "writer").await;
        t.fleet.spawn_with_env("armed", &["writer"], &env).unwrap();
        t.enqueue(&ids);
    } else {
        t.import_roster().await;
        // One job at a time. With several, another legacy job may be between its refresh and
        // the store of the rotated token when the point strikes, and without the provider's
        // grace window that token is lost with the process: the `refresh-before-store` window,
        // which has its own test (`legacy.rs`) and must not be hit by chance here.
        let one_job = [env[0], ("FITLINK_WORKER_CONCURRENCY", "1")];
        t.fleet
            .spawn_with_env("armed", &["worker"], &one_job)
            .unwrap();
        t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
    }
    wait_struck(&mut t, point).await;
    if failing {
        t.fail_provider_for(None).await;
    }
    t.fleet.spawn("healer", &[point.role()]).unwrap();
    t.wait_cursors_at_latest_sync(&ids, 180).await;
    t.wait_synced(&ids, 60).await;
    assert_nothing_lost(&t, &ids).await;
    t
}

/// Stops a fleet process with SIGTERM; it must exit cleanly.
async fn stop(t: &mut TestFleet, name: &str) {
    let clean = t
        .fleet
        .get(name)
        .terminate(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert!(clean, "{name} stopped cleanly");
    t.fleet.forget(name);
}

/// Waits for the armed process to abort, and checks that it died at `point`, not elsewhere.
async fn wait_struck(t: &mut TestFleet, point: FaultPoint) {
    t.wait_process_exit("armed", 90).await;
    let log = std::fs::read_to_string(t.dir.path().join("logs/armed.log")).unwrap();
    let struck = log
        .lines()
        .any(|l| l.contains("fault point: aborting the process now") && l.contains(point.name()));
    assert!(struck, "the armed process did not die at {point}:\n{log}");
}

/// Every participant active and matching the truth; a legacy participant's stored refresh
/// token is the provider's live one.
async fn assert_nothing_lost(t: &TestFleet, ids: &[String]) {
    for id in ids {
        let row = t.participant(id).await;
        assert_eq!(row.state, "active", "{id}: {:?}", row.state_reason);
        if t.provider == "fitbit" {
            t.assert_matches_legacy_truth(id).await;
            let stored = t.stored_refresh_token(id).await;
            assert!(
                t.legacy_refresh_works(&stored).await,
                "{id}: credential lost"
            );
        } else {
            t.assert_matches_truth(id, &BTreeMap::new()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_dead_after_its_commit_and_before_its_ack_loses_and_duplicates_nothing() {
    // The second batch: past the grants, among the slices.
    strike_and_heal(
        FaultPoint::CommitBeforeAck,
        "commit-before-ack@2",
        "google-health",
        UntilStruck::Healthy,
    )
    .await
    .finish()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_dead_between_a_grant_and_its_publish_leaves_no_participant_stuck() {
    // The grant is committed and its job exists nowhere: the request comes again, finds its own
    // job holding the claim, and publishes it.
    strike_and_heal(
        FaultPoint::GrantBeforePublish,
        "grant-before-publish",
        "fitbit",
        UntilStruck::Healthy,
    )
    .await
    .finish()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dead_after_a_confirmed_publish_it_never_saw_duplicates_nothing() {
    // The second publish: a slice (or a rotation) is queued, the worker never learns it, the job
    // comes again and publishes it again. (That the point sits after the confirm, with the
    // message on its queue, is shown by `import.rs`.)
    strike_and_heal(
        FaultPoint::PublishBeforeConfirm,
        "publish-before-confirm@2",
        "fitbit",
        UntilStruck::Healthy,
    )
    .await
    .finish()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dead_after_publishing_a_retry_copy_leaves_one_participant_synced_once() {
    // One participant's provider fails until the armed worker has queued its retry copy and
    // died: then both the original (redelivered) and the copy run.
    strike_and_heal(
        FaultPoint::RetryBeforeAck,
        "retry-before-ack",
        "google-health",
        UntilStruck::FirstParticipantFailing,
    )
    .await
    .finish()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_dead_inside_a_webhook_before_its_204_loses_no_notification() {
    // Synced once; the dispatcher is then replaced by one armed inside its webhook handler. A
    // device sync notifies it, it hands the notification on and dies before answering; the
    // provider delivers again to the next dispatcher. The schedule is 15 minutes away: only the
    // notifications can bring the new data in.
    let mut t = TestFleet::start(Options {
        start_sync: true,
        portal: true,
        ..fleet("google-health")
    })
    .await;
    let ids = t.participant_ids();
    t.wait_synced(&ids, 180).await;
    stop(&mut t, "dispatcher").await;
    let env = [(FAULT_POINT_ENV, "webhook-before-204")];
    t.fleet
        .spawn_with_env("armed", &["dispatcher"], &env)
        .unwrap();
    t.sim_control("/_sim/advance", serde_json::json!({ "minutes": 30 }))
        .await;
    t.advance_truth(30);
    wait_struck(&mut t, FaultPoint::WebhookBefore204).await;
    t.fleet.spawn("healer", &["dispatcher"]).unwrap();
    t.wait_cursors_at_latest_sync(&ids, 120).await;
    t.wait_synced(&ids, 60).await;
    assert_nothing_lost(&t, &ids).await;
    // The notification the armed dispatcher took was delivered again and answered.
    let deliveries: serde_json::Value = t.sim_get("/_sim/webhooks").await;
    let attempts = deliveries["deliveries"].as_array().expect("a delivery log");
    assert!(
        attempts
            .iter()
            .any(|a| a["attempt"].as_u64() > Some(1) && a["status"] == 204),
        "a redelivery was answered 204: {deliveries}"
    );
    t.finish().await;
}
