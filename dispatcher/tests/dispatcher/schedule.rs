//! The schedule: who is due, what it asks for and when, rate-limit resets, a missing database.

use super::*;

#[tokio::test]
async fn the_due_query_picks_exactly_the_due_participants() {
    let db = TestDb::new().await;
    let h = TimeDelta::hours;
    let m = TimeDelta::minutes;
    for row in [
        active("due-never-synced"),
        Row {
            last_success: Some(-h(2)),
            ..active("due-synced-long-ago")
        },
        Row {
            last_success: Some(-m(5)),
            ..active("not-synced-recently")
        },
        Row {
            in_flight: Some(Uuid::now_v7()),
            in_flight_since: Some(-m(10)),
            ..active("not-in-flight")
        },
        Row {
            in_flight: Some(Uuid::now_v7()),
            in_flight_since: Some(-h(4)),
            last_success: Some(-h(5)),
            ..active("due-claim-lost")
        },
        Row {
            retry_at: Some(m(10)),
            ..active("not-rate-limited")
        },
        Row {
            retry_at: Some(-m(1)),
            ..active("due-retry-passed")
        },
        Row {
            state: "revoked",
            ..active("not-revoked")
        },
        Row {
            state: "dead_lettered",
            ..active("not-dead-lettered")
        },
        Row {
            state: "needs_reconsent",
            last_success: Some(-h(48)),
            ..active("not-needs-reconsent")
        },
    ] {
        db.participant(row).await;
    }
    let reader = db.args.open_for_reading("dispatcher").await.unwrap();
    let due = due_participants(
        &reader,
        Utc::now(),
        Duration::from_secs(900),
        Duration::from_secs(3 * 3600),
    )
    .await
    .unwrap();
    let mut ids: Vec<&str> = due.iter().map(|d| d.participant_id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "due-claim-lost",
            "due-never-synced",
            "due-retry-passed",
            "due-synced-long-ago"
        ]
    );
}

#[tokio::test]
async fn the_schedule_requests_the_due_participants_and_stops_on_shutdown() {
    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        db.participant(active("due")).await;
        db.participant(Row {
            last_success: Some(-TimeDelta::minutes(1)),
            ..active("fresh")
        })
        .await;
        let peek = Peek::open(&broker).await;
        let shutdown = CancellationToken::new();
        let args = dispatcher_args(broker.clone(), db.args.clone());
        let role = tokio::spawn(fitlink_dispatcher::run(args, shutdown.clone()));
        peek.wait_depth(&peek.topology.results[0], 1).await;
        shutdown.cancel();
        role.await.unwrap().unwrap();
        let request = request(peek.take_command().await);
        assert_eq!(request.participant_id.as_str(), "due");
        assert_eq!(request.trigger, SyncTrigger::Schedule);
        assert!(!request.force);
        assert_eq!((request.from, request.replaces), (None, None));
    })
    .await;
}

/// A rate-limited participant is asked for again at each reset, also when the writer's grant
/// and the next rate-limited outcome land in the second of the request: `updated_at` (whole
/// seconds) is then unchanged, and only the new reset says the request was answered. Here the
/// test plays that writer: it moves `retry_at` and nothing else.
#[tokio::test]
async fn each_rate_limit_reset_is_asked_for_even_within_one_second() {
    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        db.participant(Row {
            last_success: Some(-TimeDelta::minutes(5)),
            retry_at: Some(-TimeDelta::seconds(1)),
            ..active("limited")
        })
        .await;
        let peek = Peek::open(&broker).await;
        let shutdown = CancellationToken::new();
        let args = dispatcher_args(broker.clone(), db.args.clone());
        let role = tokio::spawn(fitlink_dispatcher::run(args, shutdown.clone()));
        let first = request(peek.take_command().await);
        assert_eq!(first.participant_id.as_str(), "limited");

        let reset = UtcInstant::new(Utc::now() + TimeDelta::seconds(2));
        on_backend!(db.db.exec(), |e| {
            sqlx::query("UPDATE participants SET retry_at = $1 WHERE participant_id = 'limited'")
                .bind(reset)
                .execute(e)
                .await
                .map(|done| done.rows_affected())
        })
        .unwrap();
        // The schedule's own round is an hour away: only the reset can bring this request.
        let second = request(peek.take_command().await);
        assert_eq!(second.participant_id.as_str(), "limited");
        assert_ne!(second.job_id, first.job_id);
        assert!(
            second.requested_at >= reset,
            "asked at {}, before the reset at {}",
            second.requested_at.to_text(),
            reset.to_text()
        );
        shutdown.cancel();
        role.await.unwrap().unwrap();
        assert_eq!(
            peek.depth(&peek.topology.results[0]).await,
            Some(0),
            "asked once per reset"
        );
    })
    .await;
}

#[tokio::test]
async fn the_schedule_waits_for_a_database_that_does_not_exist_yet() {
    in_namespace(|broker| async move {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let args = dispatcher_args(
            broker,
            DatabaseArgs::url(format!("sqlite://{}", dir.path().join("none.db").display())),
        );
        let role = tokio::spawn(fitlink_dispatcher::run(args, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !role.is_finished(),
            "the dispatcher exited without a database"
        );
        shutdown.cancel();
        role.await.unwrap().unwrap();
        assert!(
            !dir.path().join("none.db").exists(),
            "a reader created the database"
        );
    })
    .await;
}
