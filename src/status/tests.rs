//! The report on both stores: rows written as the writer would, read by `status`.

use super::*;
use fitlink_shared::execute;
use fitlink_shared::secret::Secret;
use fitlink_shared::store::Backend;
use fitlink_shared::store::testing::TestDatabase;

fitlink_shared::on_both_backends!(
    reports_the_database_even_without_a_broker,
    reports_linkage_consents_webhooks_and_withdrawals,
    reports_queue_depths_and_missing_queues,
    reports_cohort_compliance_and_each_participants_wear,
);

fn at(text: &str) -> UtcInstant {
    UtcInstant::parse(text).unwrap()
}

/// The database the tests write with (the writer's open: migrated, read-write).
async fn writable(database: &DatabaseArgs) -> Database {
    database.open_for_writing().await.unwrap()
}

async fn database(backend: Backend) -> (TestDatabase, DatabaseArgs) {
    let test_db = TestDatabase::new(backend).await;
    let args = DatabaseArgs::url(test_db.url());
    let db = writable(&args).await;
    for (id, provider, state, reason, latest, error, error_at) in [
        (
            "p1",
            "google-health",
            "active",
            None,
            Some("2026-11-01T12:30:00Z"),
            None,
            None,
        ),
        (
            "p2",
            "fitbit",
            "revoked",
            Some("invalid_grant"),
            None,
            Some("token refresh refused"),
            Some("2026-11-01T09:00:00Z"),
        ),
    ] {
        execute!(
            db.exec(),
            sqlx::query(
                "INSERT INTO participants (participant_id, provider, state, state_reason, sync_from,
                    sync_cursor, latest_device_sync, last_error, last_error_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, '2026-10-01T00:00:00Z', '2026-11-01T10:00:00Z', $5, $6, $7,
                    '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z')",
            )
            .bind(id)
            .bind(provider)
            .bind(state)
            .bind(reason)
            .bind(latest.map(at))
            .bind(error)
            .bind(error_at.map(at))
        )
        .unwrap();
    }
    let minutes: Vec<UtcInstant> = (0..3)
        .map(|m| at(&format!("2026-11-01T10:0{m}:00Z")))
        .collect();
    db.prepare_intraday(minutes.iter().copied()).await.unwrap();
    for minute in minutes {
        execute!(
            db.exec(),
            sqlx::query("INSERT INTO steps_intraday VALUES ('p1', $1, 0, 10, 'google-health')")
                .bind(minute)
        )
        .unwrap();
    }
    execute!(
        db.exec(),
        sqlx::query(
            "INSERT INTO activity_summary (participant_id, date, steps, provider, updated_at)
             VALUES ('p2', '2026-10-31', 1000, 'fitbit', '2026-11-01T00:00:00Z')",
        )
    )
    .unwrap();
    db.close().await;
    (test_db, args)
}

async fn reports_the_database_even_without_a_broker(backend: Backend) {
    let (_db, database) = database(backend).await;
    let broker = BrokerArgs {
        // Nothing listens on port 1.
        amqp_url: Secret::new("amqp://guest:guest@127.0.0.1:1/%2f".into()),
        namespace: "t-status".into(),
        results_partitions: 1,
    };
    let report = status(&database, &broker, &ComplianceArgs::default())
        .await
        .unwrap();
    assert!(report.queues.is_none());
    assert!(report.warnings[0].contains("broker unreachable"));
    let p1 = &report.participants[0];
    assert_eq!(p1.lag_seconds, Some(9000));
    assert_eq!(p1.rows.get("steps_intraday"), 3);
    assert_eq!(report.participants[1].rows.get("activity_summary"), 1);
    assert_eq!(report.totals.by_state["revoked"], 1);
    assert_eq!(report.totals.by_state["scope_missing"], 0);
    assert_eq!(report.totals.by_provider["fitbit"], 1);
    assert_eq!(
        report.totals.by_provider_and_state["fitbit"]
            .values()
            .sum::<i64>(),
        1
    );
    assert_eq!(report.totals.rows.get("steps_intraday"), 3);

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["format_version"], 1);
    assert!(json["queues"].is_null());
    assert_eq!(json["participants"][0]["cursor"], "2026-11-01T10:00:00Z");
    assert_eq!(json["participants"][1]["state_reason"], "invalid_grant");

    let text = render_text(&report);
    assert!(text.contains("2h 30m"), "{text}");
    assert!(
        text.contains(
            "revoked: invalid_grant (last error at 2026-11-01T09:00:00Z: token refresh refused)"
        ),
        "{text}"
    );
    assert!(text.contains("queues: unknown"), "{text}");
}

/// Invitations, consent facts, webhooks, withdrawals and expiring grants, relative to now.
async fn reports_linkage_consents_webhooks_and_withdrawals(backend: Backend) {
    let (_db, database) = database(backend).await;
    let db = writable(&database).await;
    let now = chrono::Utc::now();
    // Whole seconds, as the writer stores instants.
    let in_hours = |h: i64| at(&UtcInstant::new(now + TimeDelta::hours(h)).to_text());
    let statements: Vec<(&str, Vec<UtcInstant>)> = vec![
        // p1 consented through fitlink; its grant expires in 30 h.
        (
            "UPDATE participants SET granted_scopes = 'activity heart_rate',
                consented_at = $1, refresh_token_expires_at = $2, credential_used_at = $1
             WHERE participant_id = 'p1'",
            vec![in_hours(-24), in_hours(30)],
        ),
        // p3: expires in 3 days (not listed); p4: withdrawn (not listed).
        (
            "INSERT INTO participants (participant_id, provider, state, sync_from, sync_cursor,
                refresh_token_expires_at, created_at, updated_at)
             VALUES ('p3', 'google-health', 'active', $1, $1, $2, $1, $1),
                    ('p4', 'google-health', 'withdrawn', $1, $1, $3, $1, $1)",
            vec![in_hours(-100), in_hours(72), in_hours(10)],
        ),
        // Used; pending; pending with a problem; expired; expired with a problem.
        (
            "INSERT INTO invitations (invitation_id, participant_id, provider, issued_at,
                expires_at, used_at, last_problem, last_problem_at) VALUES
                ('i1', 'p1', 'google-health', $1, $2, $1, NULL, NULL),
                ('i2', 'p3', 'google-health', $1, $2, NULL, NULL, NULL),
                ('i3', 'p5', 'google-health', $1, $2, NULL, 'declined: access_denied', $1),
                ('i4', 'p6', 'google-health', $3, $1, NULL, NULL, NULL),
                ('i5', 'p7', 'google-health', $3, $1, NULL, 'scope missing: sleep', $3)",
            vec![in_hours(-24), in_hours(100), in_hours(-200)],
        ),
        (
            "INSERT INTO provider_notifications (notification_id, participant_id, received_at)
             VALUES ('n1', 'p1', $1), ('n2', 'p1', $1), ('n-old', 'p1', $2)",
            vec![in_hours(-1), in_hours(-8 * 24)],
        ),
        (
            "INSERT INTO provider_deletions (notification_id, participant_id, provider,
                data_type, interval_start, interval_end, rows_deleted, received_at) VALUES
                ('d1', 'p1', 'google-health', 'steps', $2, $3, 10, $1),
                ('d1', 'p1', 'google-health', 'steps', $3, $4, 5, $1)",
            vec![in_hours(-1), in_hours(-30), in_hours(-29), in_hours(-28)],
        ),
        (
            "INSERT INTO withdrawals (participant_id, withdrawn_at, withdrawn_by, purged,
                provider_revocation) VALUES ('p4', $1, 'ann', TRUE, 'revoked')",
            vec![in_hours(-2)],
        ),
    ];
    for (sql, binds) in statements {
        fitlink_shared::on_backend!(db.exec(), |e| {
            let mut query = sqlx::query(sql);
            for bind in &binds {
                query = query.bind(*bind);
            }
            query.execute(e).await.map(|_| ())
        })
        .unwrap();
    }
    db.close().await;

    let broker = BrokerArgs {
        amqp_url: Secret::new("amqp://guest:guest@127.0.0.1:1/%2f".into()),
        namespace: "t-status".into(),
        results_partitions: 1,
    };
    let report = status(&database, &broker, &ComplianceArgs::default())
        .await
        .unwrap();
    assert_eq!(
        report.invitations,
        InvitationCounts {
            issued: 5,
            used: 1,
            pending: 2,
            expired_unused: 2,
            with_problem: 2,
        }
    );
    assert_eq!(report.webhooks.notifications_recorded_7d, 2);
    assert_eq!(
        report.webhooks.deletions,
        Deletions {
            rows_deleted: 15,
            notifications: 1
        }
    );
    assert_eq!(
        report.withdrawals,
        WithdrawalCounts {
            count: 1,
            purged: 1
        }
    );
    assert_eq!(
        report.expiring_grants,
        [ExpiringGrant {
            participant_id: "p1".into(),
            refresh_token_expires_at: in_hours(30),
        }]
    );
    let p1 = &report.participants[0];
    assert_eq!(
        p1.granted_scopes.as_deref(),
        Some(&["activity".to_owned(), "heart_rate".to_owned()][..])
    );
    assert_eq!(p1.consented_at, Some(in_hours(-24)));
    assert_eq!(report.participants[1].granted_scopes, None);

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["invitations"]["pending"], 2);
    assert_eq!(json["webhooks"]["deletions"]["rows_deleted"], 15);
    assert_eq!(json["withdrawals"]["count"], 1);
    assert_eq!(json["expiring_grants"][0]["participant_id"], "p1");
    assert_eq!(json["participants"][0]["granted_scopes"][1], "heart_rate");
    assert!(json["participants"][1]["credential_used_at"].is_null());

    let text = render_text(&report);
    for line in [
        "invitations: 5 issued, 1 used, 2 pending, 2 expired unused, 2 with a problem",
        "webhooks: 2 notifications in 7 days; deletions: 1 notifications, 15 rows deleted",
        "withdrawals: 1 (1 purged)",
        "grants expiring within 48h (invite again): p1 at ",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
}

async fn reports_queue_depths_and_missing_queues(backend: Backend) {
    let (_db, database) = database(backend).await;
    let namespace = format!("t-status-{}-{}", backend.as_str(), std::process::id());
    let broker = BrokerArgs {
        amqp_url: Secret::new("amqp://guest:guest@127.0.0.1:5672/%2f".into()),
        namespace: namespace.clone(),
        results_partitions: 1,
    };
    // Nothing declared yet: every queue is reported missing, none fails the report.
    let report = status(&database, &broker, &ComplianceArgs::default())
        .await
        .unwrap();
    let queues = report.queues.as_ref().expect("the test broker is running");
    assert_eq!(queues.jobs, None);
    assert_eq!(queues.results_dead, None);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("no queues of namespace"))
    );

    let conn = broker::connect(&broker, "status-test").await.unwrap();
    let topology = Topology::new(&namespace);
    topology
        .declare(&conn.create_channel().await.unwrap())
        .await
        .unwrap();
    let publisher = broker::Publisher::open(&conn).await.unwrap();
    publisher
        .publish(&topology.jobs_dead, b"{}", Vec::new())
        .await
        .unwrap();
    let report = status(&database, &broker, &ComplianceArgs::default()).await;

    // Clean up before asserting, so a failure leaves no queues behind.
    let channel = conn.create_channel().await.unwrap();
    for queue in topology.all_queues() {
        let _ = channel.queue_delete(queue.into(), Default::default()).await;
    }
    let report = report.unwrap();
    let queues = report.queues.as_ref().unwrap();
    assert_eq!(queues.jobs, Some(0));
    assert_eq!(queues.jobs_dead, Some(1));
    assert_eq!(queues.retry.len(), broker::RETRY_TIERS.len());
    assert!(queues.retry.iter().all(|r| r.depth == Some(0)));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["queues"]["jobs_dead"], 1);
    let _ = conn.close(200, "OK".into()).await;
}

/// p1 wore it long enough on 4 of the 7 days before 2026-11-08 (and not on a fifth, a gap);
/// p2 (revoked) has no ledger rows; p3 withdrew.
async fn reports_cohort_compliance_and_each_participants_wear(backend: Backend) {
    use crate::coverage::testing::{add_ledger_rows, add_participant, ledger_row};
    use fitlink_shared::families::Family;

    let (_db, database) = database(backend).await;
    let db = writable(&database).await;
    add_participant(&db, "p3", "withdrawn").await;
    let mut rows: Vec<_> = (1..=4)
        .map(|d| {
            ledger_row(
                "p1",
                &format!("2026-11-0{d}"),
                Family::HeartRateIntraday,
                Some(600),
                "ok",
            )
        })
        .collect();
    rows.push(ledger_row(
        "p1",
        "2026-11-05",
        Family::HeartRateIntraday,
        Some(0),
        "not_worn",
    ));
    rows.push(ledger_row(
        "p3",
        "2026-11-05",
        Family::HeartRateIntraday,
        None,
        "withdrawn",
    ));
    add_ledger_rows(&db, &rows).await;
    db.close().await;

    let broker = BrokerArgs {
        amqp_url: Secret::new("amqp://guest:guest@127.0.0.1:1/%2f".into()),
        namespace: "t-status".into(),
        results_partitions: 1,
    };
    let compliance = ComplianceArgs {
        as_of: Some(chrono::NaiveDate::from_ymd_opt(2026, 11, 8).unwrap()),
        ..ComplianceArgs::default()
    };
    let report = status(&database, &broker, &compliance).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["compliance"],
        serde_json::json!({
            "as_of": "2026-11-08", "window_days": 7,
            "first_day": "2026-11-01", "last_day": "2026-11-07",
            "min_wear_hours": 10.0, "min_days": 4,
            "participants": 2, "compliant": 1,
            "not_compliant": ["p2"], "not_compliant_count": 1
        })
    );
    let wear = |i: usize| {
        let p = &json["participants"][i];
        (
            p["participant_id"].clone(),
            p["days_worn_enough"].clone(),
            p["compliant"].clone(),
            p["gaps"].clone(),
        )
    };
    assert_eq!(
        wear(0),
        (
            "p1".into(),
            4.into(),
            true.into(),
            serde_json::json!({"not_worn": 1})
        )
    );
    assert_eq!(
        wear(1),
        ("p2".into(), 0.into(), false.into(), serde_json::json!({}))
    );
    assert_eq!(
        wear(2),
        (
            "p3".into(),
            serde_json::Value::Null,
            serde_json::Value::Null,
            serde_json::json!({"withdrawn": 1})
        )
    );

    let text = render_text(&report);
    assert!(
        text.contains(
            "compliance: 1 of 2 participants wore their tracker \u{2265}10 h on \u{2265}4 of the 7 days before 2026-11-08\n  not compliant: p2 (0 days)\n"
        ),
        "{text}"
    );

    // Thresholds that cannot hold fail before anything is read.
    let impossible = ComplianceArgs {
        min_days: 8,
        ..ComplianceArgs::default()
    };
    let error = status(&database, &broker, &impossible).await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("--min-days (FITLINK_COMPLIANCE_MIN_DAYS) is 8"),
        "{error:#}"
    );
}
