//! Linkage, webhooks, withdrawal and keep-alive against a real SQLite file and a real
//! PostgreSQL database (one test body, two stores): each test proves one rule of the writer.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use fitlink_shared::domain::{ParticipantState, Provider};
use fitlink_shared::messages::*;
use fitlink_shared::{execute, fetch, on_backend};
use uuid::Uuid;

use fitlink_shared::store::Backend;
use fitlink_shared::store::testing::TestDatabase;

use super::tests::{
    at, column, completed, count, finish, grant, import, open, pid, request, sealed, slice,
    stored_token, with_p1,
};
use super::*;

fn invitation(participant: &str, invitation_id: Uuid) -> Invitation {
    Invitation {
        invitation_id,
        participant_id: pid(participant),
        provider: Provider::GoogleHealth,
        sync_from: at("2026-09-01T00:00:00Z"),
        issued_at: at("2026-10-05T09:00:00Z"),
        expires_at: at("2026-10-12T09:00:00Z"),
    }
}

fn consent(participant: &str, invitation_id: Uuid, health_user_id: &str) -> ConsentGrant {
    ConsentGrant {
        request_id: Uuid::new_v4(),
        invitation: invitation(participant, invitation_id),
        participant_id: pid(participant),
        provider: Provider::GoogleHealth,
        sealed_refresh_token: sealed("sealed-consent"),
        refresh_token_expires_at: None,
        granted_scopes: vec!["activity".into(), "heart_rate".into()],
        identity: Some(ProviderIdentity {
            health_user_id: health_user_id.into(),
            legacy_user_id: None,
        }),
        fitbit_user_id: None,
        consented_at: at("2026-10-06T10:00:00Z"),
        reply_to: Some("amq.gen-portal".into()),
    }
}

async fn apply_one(store: &mut Store, command: WriterCommand) -> Effect {
    store.apply(&[command]).await.unwrap().effects.remove(0)
}

/// Applies a consent and returns its reply and the job it granted.
async fn link(store: &mut Store, grant: ConsentGrant) -> (ReplyBody, Option<SyncJob>) {
    let request_id = grant.request_id;
    match apply_one(store, WriterCommand::LinkParticipant(grant)).await {
        Effect::Replied {
            reply_to,
            reply,
            job,
        } => {
            assert_eq!(reply_to.as_deref(), Some("amq.gen-portal"));
            assert_eq!(reply.request_id, request_id);
            (reply.reply, job)
        }
        other => panic!("no reply: {other:?}"),
    }
}

fn refused_code(reply: &ReplyBody) -> &str {
    match reply {
        ReplyBody::Refused { code, .. } => code,
        other => panic!("not refused: {other:?}"),
    }
}

fn notification(participant: &str, ids: &[&str], start: &str) -> WriterCommand {
    WriterCommand::ProviderNotified(ProviderNotification {
        notification_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        participant_id: pid(participant),
        provider: Provider::GoogleHealth,
        data_types: vec!["steps".into()],
        intervals: vec![NotifiedInterval {
            start: at(start),
            end: at("2026-10-01T12:00:00Z"),
        }],
        received_at: now_instant(),
    })
}

fn withdrawal(participant: &str, purge: bool) -> Withdrawal {
    Withdrawal {
        request_id: Uuid::new_v4(),
        participant_id: pid(participant),
        purge,
        requested_by: "coordinator-ann".into(),
        provider_revocation: "revoked".into(),
        at: at("2026-10-07T08:00:00Z"),
        reply_to: Some("amq.gen-cli".into()),
    }
}

async fn withdraw(store: &mut Store, w: Withdrawal) -> ReplyBody {
    match apply_one(store, WriterCommand::Withdraw(w)).await {
        Effect::Replied {
            reply, job: None, ..
        } => reply.reply,
        other => panic!("no reply: {other:?}"),
    }
}

async fn state(store: &Store, participant: &str) -> String {
    column(store, "state", participant).await.unwrap()
}

async fn rows(store: &Store, table: &str, participant: &str) -> i64 {
    fetch!(
        store.database().exec(),
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE participant_id = $1"
        )))
        .bind(participant),
        one
    )
    .unwrap()
}

/// `p1` imported, with one hour stored (cursor 01:00) and no job in flight.
async fn p1_with_an_hour(backend: Backend) -> (TestDatabase, Store) {
    let (dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    store
        .apply(&[
            WriterCommand::StoreSlice(slice(job, "p1", "2026-10-01T00:00:00Z", 60)),
            finish(job, "p1", completed()),
        ])
        .await
        .unwrap();
    (dir, store)
}

async fn an_invitation_creates_an_invited_participant_once_and_never_reinvites_a_withdrawn_one(
    backend: Backend,
) {
    let (_dir, mut store) = open(backend).await;
    let id = Uuid::new_v4();
    let effect = apply_one(
        &mut store,
        WriterCommand::RecordInvitation(invitation("p9", id)),
    )
    .await;
    assert_eq!(
        effect,
        Effect::InvitationRecorded {
            new: true,
            created: true
        }
    );
    assert_eq!(state(&store, "p9").await, "invited");
    assert_eq!(
        column(&store, "state_reason", "p9").await.as_deref(),
        Some("invited 2026-10-05, waiting for consent")
    );
    assert_eq!(
        column(&store, "sync_cursor", "p9").await.as_deref(),
        Some("2026-09-01T00:00:00Z")
    );
    assert_eq!(count(&store, "credentials").await, 0);
    // An invited participant is not synced, not even when forced.
    let mut forced = request(Uuid::new_v4(), "p9");
    forced.force = true;
    assert!(matches!(
        grant(&mut store, forced).await,
        Effect::NotGranted(NotGranted::NoGrant { .. })
    ));

    // The same invitation again: recorded once, nothing else changes.
    let again = apply_one(
        &mut store,
        WriterCommand::RecordInvitation(invitation("p9", id)),
    )
    .await;
    assert_eq!(
        again,
        Effect::InvitationRecorded {
            new: false,
            created: false
        }
    );
    assert_eq!(count(&store, "invitations").await, 1);

    // A known participant (a re-consent invitation) is left as it is.
    let (_dir, mut store) = with_p1(backend).await;
    let mut inv = invitation("p1", Uuid::new_v4());
    inv.sync_from = at("2027-01-01T00:00:00Z");
    apply_one(&mut store, WriterCommand::RecordInvitation(inv)).await;
    assert_eq!(state(&store, "p1").await, "active");
    assert_eq!(
        column(&store, "sync_from", "p1").await.as_deref(),
        Some("2026-10-01T00:00:00Z")
    );

    // A withdrawn participant is never invited again: refused, nothing recorded.
    withdraw(&mut store, withdrawal("p1", false)).await;
    let refused = apply_one(
        &mut store,
        WriterCommand::RecordInvitation(invitation("p1", Uuid::new_v4())),
    )
    .await;
    assert!(matches!(refused, Effect::Refused { .. }), "{refused:?}");
    assert_eq!(count(&store, "invitations").await, 1);
    assert_eq!(state(&store, "p1").await, "withdrawn");
}

async fn a_consent_links_a_new_participant_and_grants_their_first_job(backend: Backend) {
    let (_dir, mut store) = open(backend).await;
    let inv = Uuid::new_v4();
    apply_one(
        &mut store,
        WriterCommand::RecordInvitation(invitation("p9", inv)),
    )
    .await;
    let mut grant = consent("p9", inv, "health-9");
    grant.refresh_token_expires_at = Some(at("2026-10-13T10:00:00Z"));
    let (reply, job) = link(&mut store, grant.clone()).await;
    assert_eq!(
        reply,
        ReplyBody::Linked {
            participant_id: pid("p9"),
            cursor: at("2026-09-01T00:00:00Z"),
            new_participant: true,
        }
    );
    let job = job.expect("a first job");
    assert_eq!(job.job_id, grant.request_id);
    assert_eq!(job.from, at("2026-09-01T00:00:00Z"));
    assert_eq!(job.sealed_refresh_token, sealed("sealed-consent"));
    assert!(!job.touch_only);
    assert_eq!(state(&store, "p9").await, "active");
    assert_eq!(column(&store, "state_reason", "p9").await, None);
    for (col, want) in [
        ("granted_scopes", "activity heart_rate"),
        ("consented_at", "2026-10-06T10:00:00Z"),
        ("credential_used_at", "2026-10-06T10:00:00Z"),
        ("refresh_token_expires_at", "2026-10-13T10:00:00Z"),
        ("health_user_id", "health-9"),
        ("provider", "google-health"),
    ] {
        assert_eq!(
            column(&store, col, "p9").await.as_deref(),
            Some(want),
            "{col}"
        );
    }
    assert_eq!(
        stored_token(&store, "p9").await.as_deref(),
        Some("sealed-consent")
    );
    let requested_by: String = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT requested_by FROM sync_jobs WHERE job_id = $1")
            .bind(job.job_id.to_string()),
        one
    )
    .unwrap();
    assert_eq!(requested_by, "consent");
    let used: Option<UtcInstant> = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT used_at FROM invitations WHERE invitation_id = $1")
            .bind(inv.to_string()),
        one
    )
    .unwrap();
    assert_eq!(used, Some(at("2026-10-06T10:00:00Z")));
    // SQLite: committed with synchronous=FULL, and the connection is back to NORMAL after.
    if let fitlink_shared::store::ByBackend::Sqlite(pool) = store.database().exec() {
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(synchronous, 1);
    }

    // The same consent redelivered (the writer died before acking): the same answer, the same
    // job published again, nothing stored twice.
    let (again, job_again) = link(&mut store, grant.clone()).await;
    assert_eq!(again, reply);
    assert_eq!(job_again, Some(job));
    assert_eq!(count(&store, "sync_jobs").await, 1);

    // Another consent with the same invitation: refused, nothing changed.
    let mut replay = consent("p9", inv, "health-9");
    replay.sealed_refresh_token = sealed("sealed-other");
    let (reply, job) = link(&mut store, replay).await;
    assert_eq!(refused_code(&reply), "invitation_used");
    assert_eq!(job, None);
    assert_eq!(
        stored_token(&store, "p9").await.as_deref(),
        Some("sealed-consent")
    );
}

async fn a_consent_whose_invitation_was_never_recorded_records_it_and_links(backend: Backend) {
    let (_dir, mut store) = open(backend).await;
    let inv = Uuid::new_v4();
    let (reply, job) = link(&mut store, consent("p9", inv, "health-9")).await;
    assert!(matches!(
        reply,
        ReplyBody::Linked {
            new_participant: true,
            ..
        }
    ));
    assert!(job.is_some());
    assert_eq!(count(&store, "invitations").await, 1);
    assert_eq!(
        column(&store, "sync_from", "p9").await.as_deref(),
        Some("2026-09-01T00:00:00Z")
    );
}

async fn a_re_consent_continues_from_the_cursor_and_a_different_account_is_refused(
    backend: Backend,
) {
    let (_dir, mut store) = p1_with_an_hour(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    store
        .apply(&[finish(
            job,
            "p1",
            Outcome::Failed {
                state: ParticipantState::Revoked,
                reason: "invalid_grant".into(),
                rejected_token: None,
            },
        )])
        .await
        .unwrap();
    assert_eq!(state(&store, "p1").await, "revoked");

    let (reply, job) = link(&mut store, consent("p1", Uuid::new_v4(), "health-1")).await;
    assert_eq!(
        reply,
        ReplyBody::Linked {
            participant_id: pid("p1"),
            cursor: at("2026-10-01T01:00:00Z"),
            new_participant: false,
        }
    );
    // No gap and no re-fetch: the job starts at the cursor, sync_from is kept.
    assert_eq!(job.unwrap().from, at("2026-10-01T01:00:00Z"));
    assert_eq!(
        column(&store, "sync_from", "p1").await.as_deref(),
        Some("2026-10-01T00:00:00Z")
    );
    assert_eq!(state(&store, "p1").await, "active");
    assert_eq!(column(&store, "last_error", "p1").await, None);

    // Another Google account for the same participant: refused, nothing changed.
    let before = column(&store, "consented_at", "p1").await;
    let mut other = consent("p1", Uuid::new_v4(), "health-other");
    other.consented_at = at("2026-10-08T00:00:00Z");
    let (reply, job) = link(&mut store, other).await;
    assert_eq!(refused_code(&reply), "different_account");
    let ReplyBody::Refused { reason, .. } = &reply else {
        unreachable!()
    };
    assert!(
        reason.contains("health-other") && reason.contains("health-1"),
        "{reason}"
    );
    assert_eq!(job, None);
    assert_eq!(column(&store, "consented_at", "p1").await, before);
    assert_eq!(
        column(&store, "health_user_id", "p1").await.as_deref(),
        Some("health-1")
    );
}

async fn a_fitbit_participant_moving_to_google_keeps_their_cursor_and_must_bring_their_account(
    backend: Backend,
) {
    let (_dir, mut store) = p1_with_an_hour(backend).await;
    execute!(
        store.database().exec(),
        sqlx::query(
            "UPDATE participants SET provider = 'fitbit', fitbit_user_id = 'FB1', \
         state = 'needs_reconsent'",
        )
    )
    .unwrap();

    // A Google account that maps to another Fitbit user: refused.
    let mut wrong = consent("p1", Uuid::new_v4(), "health-1");
    wrong.identity.as_mut().unwrap().legacy_user_id = Some("FB2".into());
    let (reply, _) = link(&mut store, wrong).await;
    assert_eq!(refused_code(&reply), "different_account");
    assert_eq!(state(&store, "p1").await, "needs_reconsent");

    let mut right = consent("p1", Uuid::new_v4(), "health-1");
    right.identity.as_mut().unwrap().legacy_user_id = Some("FB1".into());
    let (reply, job) = link(&mut store, right).await;
    assert!(matches!(
        reply,
        ReplyBody::Linked {
            new_participant: false,
            ..
        }
    ));
    let job = job.unwrap();
    assert_eq!(job.provider, Provider::GoogleHealth);
    assert_eq!(job.from, at("2026-10-01T01:00:00Z"));
    assert_eq!(
        column(&store, "provider", "p1").await.as_deref(),
        Some("google-health")
    );
    assert_eq!(
        column(&store, "fitbit_user_id", "p1").await.as_deref(),
        Some("FB1")
    );
    assert_eq!(
        column(&store, "legacy_user_id", "p1").await.as_deref(),
        Some("FB1")
    );
}

async fn a_consent_while_a_job_is_in_flight_grants_no_second_job(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let running = Uuid::new_v4();
    grant(&mut store, request(running, "p1")).await;
    let (reply, job) = link(&mut store, consent("p1", Uuid::new_v4(), "health-1")).await;
    assert!(matches!(reply, ReplyBody::Linked { .. }));
    assert_eq!(job, None);
    assert_eq!(
        column(&store, "in_flight_job_id", "p1").await,
        Some(running.to_string())
    );
}

async fn a_withdrawn_participant_cannot_consent_again(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    withdraw(&mut store, withdrawal("p1", false)).await;
    let (reply, job) = link(&mut store, consent("p1", Uuid::new_v4(), "health-1")).await;
    assert_eq!(refused_code(&reply), "withdrawn");
    assert_eq!(job, None);
    assert_eq!(state(&store, "p1").await, "withdrawn");
    assert_eq!(count(&store, "credentials").await, 0);
}

async fn consent_problems_show_on_the_invitation_and_on_participants_without_a_grant(
    backend: Backend,
) {
    let (_dir, mut store) = open(backend).await;
    let inv = Uuid::new_v4();
    apply_one(
        &mut store,
        WriterCommand::RecordInvitation(invitation("p9", inv)),
    )
    .await;
    let problem = |kind: ConsentProblemKind, participant: &str, invitation_id: Uuid| {
        WriterCommand::RecordConsentProblem(ConsentProblem {
            invitation_id,
            participant_id: pid(participant),
            provider: Provider::GoogleHealth,
            problem: kind,
            at: at("2026-10-06T11:00:00Z"),
        })
    };
    let declined = || ConsentProblemKind::Declined {
        error: "access_denied".into(),
    };
    let scope = || ConsentProblemKind::ScopeMissing {
        missing: vec!["heart_rate".into(), "sleep".into()],
    };

    apply_one(&mut store, problem(declined(), "p9", inv)).await;
    assert_eq!(state(&store, "p9").await, "invited");
    assert_eq!(
        column(&store, "state_reason", "p9").await.as_deref(),
        Some("declined consent on 2026-10-06")
    );
    let (last, used): (Option<String>, Option<String>) = fetch!(
        store.database().exec(),
        sqlx::query_as("SELECT last_problem, used_at FROM invitations WHERE invitation_id = $1")
            .bind(inv.to_string()),
        one
    )
    .unwrap();
    assert_eq!(last.as_deref(), Some("declined: access_denied"));
    assert_eq!(used, None, "the invitation stays usable");

    apply_one(&mut store, problem(scope(), "p9", inv)).await;
    assert_eq!(state(&store, "p9").await, "scope_missing");
    assert_eq!(
        column(&store, "state_reason", "p9").await.as_deref(),
        Some("consent given without: heart_rate sleep")
    );

    // An active participant re-consenting with fewer scopes keeps syncing with the old grant.
    let (_dir, mut store) = with_p1(backend).await;
    let inv = Uuid::new_v4();
    apply_one(&mut store, problem(scope(), "p1", inv)).await;
    assert_eq!(state(&store, "p1").await, "active");
    let last: Option<String> = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT last_problem FROM invitations WHERE invitation_id = $1")
            .bind(inv.to_string()),
        one
    )
    .unwrap();
    assert_eq!(last.as_deref(), Some("scope missing: heart_rate sleep"));

    // An unknown participant (the invitation's record was lost) is created with what is known;
    // their first completed consent starts them where the invitation says.
    let inv = Uuid::new_v4();
    apply_one(&mut store, problem(scope(), "p7", inv)).await;
    assert_eq!(state(&store, "p7").await, "scope_missing");
    let issued: Option<String> = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT issued_at FROM invitations WHERE invitation_id = $1")
            .bind(inv.to_string()),
        one
    )
    .unwrap();
    assert_eq!(issued, None);
    let (reply, job) = link(&mut store, consent("p7", inv, "health-7")).await;
    assert!(matches!(
        reply,
        ReplyBody::Linked {
            new_participant: true,
            ..
        }
    ));
    assert_eq!(job.unwrap().from, at("2026-09-01T00:00:00Z"));
    assert_eq!(
        column(&store, "sync_from", "p7").await.as_deref(),
        Some("2026-09-01T00:00:00Z")
    );
}

async fn a_thousand_duplicate_notifications_make_one_job(backend: Backend) {
    let (_dir, mut store) = p1_with_an_hour(backend).await;
    let commands: Vec<WriterCommand> = (0..1000)
        .map(|_| notification("p1", &["n-1"], "2026-10-01T02:00:00Z"))
        .collect();
    let applied = store.apply(&commands).await.unwrap();
    assert_eq!(applied.jobs().count(), 1);
    let Effect::Notified(Notified::Job(job)) = &applied.effects[0] else {
        panic!("{:?}", applied.effects[0])
    };
    // The notified interval starts after the cursor: the job starts at the cursor.
    assert_eq!(job.from, at("2026-10-01T01:00:00Z"));
    assert!(
        applied.effects[1..]
            .iter()
            .all(|e| *e == Effect::Notified(Notified::Duplicate))
    );
    assert_eq!(count(&store, "provider_notifications").await, 1);

    // Later, the same notification again (the provider redelivers): nothing.
    let again = apply_one(
        &mut store,
        notification("p1", &["n-1"], "2026-10-01T02:00:00Z"),
    )
    .await;
    assert_eq!(again, Effect::Notified(Notified::Duplicate));
    assert_eq!(count(&store, "sync_jobs").await, 2);
}

async fn notifications_during_a_job_make_one_follow_up_from_the_earliest_notified_start(
    backend: Backend,
) {
    let (_dir, mut store) = p1_with_an_hour(backend).await;
    let running = Uuid::new_v4();
    let Effect::Granted(_) = grant(&mut store, request(running, "p1")).await else {
        panic!("not granted")
    };
    // A burst of distinct notifications while the job runs; one restates data before the
    // cursor, one before sync_from (clamped).
    let applied = store
        .apply(&[
            notification("p1", &["a"], "2026-10-01T00:30:00Z"),
            notification("p1", &["b", "c"], "2026-10-01T03:00:00Z"),
            notification("p1", &["d"], "2026-09-01T00:00:00Z"),
        ])
        .await
        .unwrap();
    assert_eq!(applied.jobs().count(), 0);
    assert!(applied.effects.iter().all(|e| matches!(
        e,
        Effect::Notified(Notified::Coalesced { in_flight }) if *in_flight == running.to_string()
    )));
    assert_eq!(
        column(&store, "notified_from", "p1").await.as_deref(),
        Some("2026-10-01T00:00:00Z"),
        "clamped to sync_from"
    );

    let mut done = finish(running, "p1", completed());
    if let WriterCommand::FinishJob(o) = &mut done {
        o.at = at("2026-10-02T02:00:00Z");
    }
    let applied = store.apply(&[done]).await.unwrap();
    let [
        Effect::JobFinished {
            released: true,
            follow_up: Some(follow_up),
        },
    ] = applied.effects.as_slice()
    else {
        panic!("{:?}", applied.effects)
    };
    assert_eq!(follow_up.from, at("2026-10-01T00:00:00Z"));
    assert_eq!(column(&store, "notified_at", "p1").await, None);
    assert_eq!(column(&store, "notified_from", "p1").await, None);
    let requested_by: String = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT requested_by FROM sync_jobs WHERE job_id = $1")
            .bind(follow_up.job_id.to_string()),
        one
    )
    .unwrap();
    assert_eq!(requested_by, "webhook");

    // The follow-up ends with nothing new noted: no further job.
    let applied = store
        .apply(&[finish(follow_up.job_id, "p1", completed())])
        .await
        .unwrap();
    assert_eq!(applied.jobs().count(), 0);
}

async fn a_re_read_behind_the_cursor_stores_without_moving_it_and_an_overlap_moves_it_on(
    backend: Backend,
) {
    let (_dir, mut store) = p1_with_an_hour(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    // Entirely behind the cursor (a notified restatement): stored, cursor stays.
    let mut behind = slice(job, "p1", "2026-10-01T00:00:00Z", 30);
    behind.steps[0].value = 999;
    behind.steps[0].datetime = at("2026-09-30T23:00:00Z");
    let applied = store
        .apply(&[WriterCommand::StoreSlice(behind)])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::SliceStored {
            rows_written: 1,
            cursor: at("2026-10-01T01:00:00Z")
        }]
    );
    assert_eq!(count(&store, "sync_slices").await, 0);
    // Overlapping the cursor: the cursor moves to its end.
    let applied = store
        .apply(&[WriterCommand::StoreSlice(slice(
            job,
            "p1",
            "2026-10-01T00:30:00Z",
            90,
        ))])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::SliceStored {
            rows_written: 120,
            cursor: at("2026-10-01T02:00:00Z")
        }]
    );
    assert_eq!(count(&store, "sync_slices").await, 0);
}

async fn notifications_for_a_participant_not_syncing_are_recorded_only(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    execute!(
        store.database().exec(),
        sqlx::query("UPDATE participants SET state = 'revoked'")
    )
    .unwrap();
    let effect = apply_one(
        &mut store,
        notification("p1", &["x"], "2026-10-01T00:00:00Z"),
    )
    .await;
    assert_eq!(
        effect,
        Effect::Notified(Notified::NotSyncing {
            state: "revoked".into()
        })
    );
    assert_eq!(count(&store, "provider_notifications").await, 1);
    assert_eq!(count(&store, "sync_jobs").await, 0);

    // Unknown participant: a dead letter, nothing recorded.
    let err = store
        .apply(&[notification("nobody", &["y"], "2026-10-01T00:00:00Z")])
        .await
        .unwrap_err();
    assert!(err.is_dead_letter());
    assert_eq!(count(&store, "provider_notifications").await, 1);
}

async fn old_notification_digests_are_pruned(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let old = UtcInstant::new(chrono::Utc::now() - chrono::TimeDelta::days(9));
    let recent = UtcInstant::new(chrono::Utc::now() - chrono::TimeDelta::days(6));
    for (id, received) in [("old", &old), ("recent", &recent)] {
        execute!(
            store.database().exec(),
            sqlx::query(
                "INSERT INTO provider_notifications (notification_id, participant_id, received_at) \
             VALUES ($1, 'p1', $2)",
            )
            .bind(id)
            .bind(received)
        )
        .unwrap();
    }
    apply_one(
        &mut store,
        notification("p1", &["new"], "2026-10-01T00:00:00Z"),
    )
    .await;
    let left: Vec<String> = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT notification_id FROM provider_notifications ORDER BY 1"),
        all
    )
    .unwrap();
    assert_eq!(left, ["new", "recent"]);
}

async fn a_provider_deletion_removes_exactly_the_notified_points_once_and_re_reads(
    backend: Backend,
) {
    let (_dir, mut store) = p1_with_an_hour(backend).await;
    let deletion = |id: &str, data_type: &str| {
        WriterCommand::DeleteProviderData(ProviderDeletion {
            notification_id: id.into(),
            participant_id: pid("p1"),
            provider: Provider::GoogleHealth,
            data_type: data_type.into(),
            intervals: vec![
                NotifiedInterval {
                    start: at("2026-10-01T00:10:00Z"),
                    end: at("2026-10-01T00:20:00Z"),
                },
                NotifiedInterval {
                    start: at("2026-10-01T00:50:00Z"),
                    end: at("2026-10-01T00:55:00Z"),
                },
            ],
            received_at: at("2026-10-02T00:10:00Z"),
        })
    };
    let effect = apply_one(&mut store, deletion("del-1", "heart-rate")).await;
    let Effect::ProviderDataDeleted {
        rows_deleted: 15,
        notified: Notified::Job(job),
    } = &effect
    else {
        panic!("{effect:?}")
    };
    // The re-read starts at the earliest deleted start (it restates those days' summaries).
    assert_eq!(job.from, at("2026-10-01T00:10:00Z"));
    assert_eq!(rows(&store, "heart_rate_intraday", "p1").await, 45);
    assert_eq!(rows(&store, "steps_intraday", "p1").await, 60);
    let remaining: Vec<UtcInstant> = fetch!(
        store.database().exec(),
        sqlx::query_scalar(
            "SELECT datetime FROM heart_rate_intraday WHERE datetime >= '2026-10-01T00:09:00Z' \
         AND datetime <= '2026-10-01T00:20:00Z' ORDER BY 1",
        ),
        all
    )
    .unwrap();
    assert_eq!(
        remaining,
        [at("2026-10-01T00:09:00Z"), at("2026-10-01T00:20:00Z")]
    );
    let recorded: Vec<(UtcInstant, i64)> = fetch!(
        store.database().exec(),
        sqlx::query_as(
            "SELECT interval_start, rows_deleted FROM provider_deletions ORDER BY interval_start",
        ),
        all
    )
    .unwrap();
    assert_eq!(
        recorded,
        [
            (at("2026-10-01T00:10:00Z"), 10),
            (at("2026-10-01T00:50:00Z"), 5)
        ]
    );

    // The same notification again: nothing more deleted, no second job.
    let again = apply_one(&mut store, deletion("del-1", "heart-rate")).await;
    assert!(matches!(
        again,
        Effect::ProviderDataDeleted {
            rows_deleted: 0,
            ..
        }
    ));
    assert_eq!(count(&store, "provider_deletions").await, 2);
    assert_eq!(count(&store, "sync_jobs").await, 2);

    // A data type without stored points: recorded with 0 rows.
    let other = apply_one(&mut store, deletion("del-2", "sleep")).await;
    assert!(matches!(
        other,
        Effect::ProviderDataDeleted {
            rows_deleted: 0,
            notified: Notified::Coalesced { .. }
        }
    ));
    assert_eq!(count(&store, "provider_deletions").await, 4);
    assert_eq!(rows(&store, "steps_intraday", "p1").await, 60);
}

async fn consent_lost_revokes_and_keeps_the_data_and_cursor(backend: Backend) {
    let (_dir, mut store) = p1_with_an_hour(backend).await;
    let effect = apply_one(
        &mut store,
        WriterCommand::ConsentLost(ConsentLoss {
            participant_id: pid("p1"),
            provider: Provider::Fitbit,
            reason: "the participant revoked access (userRevokedAccess)".into(),
            at: at("2026-10-03T00:00:00Z"),
        }),
    )
    .await;
    assert_eq!(
        effect,
        Effect::ConsentLost {
            previous_state: "active".into()
        }
    );
    assert_eq!(state(&store, "p1").await, "revoked");
    assert_eq!(
        column(&store, "state_reason", "p1").await.as_deref(),
        Some("the participant revoked access (userRevokedAccess)")
    );
    assert_eq!(
        column(&store, "sync_cursor", "p1").await.as_deref(),
        Some("2026-10-01T01:00:00Z")
    );
    assert_eq!(rows(&store, "steps_intraday", "p1").await, 60);

    let err = store
        .apply(&[WriterCommand::ConsentLost(ConsentLoss {
            participant_id: pid("nobody"),
            provider: Provider::Fitbit,
            reason: "x".into(),
            at: at("2026-10-03T00:00:00Z"),
        })])
        .await
        .unwrap_err();
    assert!(err.is_dead_letter());
}

async fn a_purging_withdrawal_deletes_everything_in_one_go_and_leaves_an_audit_row(
    backend: Backend,
) {
    let (_dir, mut store) = p1_with_an_hour(backend).await;
    store
        .apply(&[import(Uuid::new_v4(), &[("p2", "sealed-2")])])
        .await
        .unwrap();
    let p2_job = Uuid::new_v4();
    grant(&mut store, request(p2_job, "p2")).await;
    store
        .apply(&[WriterCommand::StoreSlice(slice(
            p2_job,
            "p2",
            "2026-10-01T00:00:00Z",
            10,
        ))])
        .await
        .unwrap();
    // p1 has a job in flight, a slice waiting ahead of a gap, a notification and a note.
    let running = Uuid::new_v4();
    grant(&mut store, request(running, "p1")).await;
    let mut with_devices = slice(running, "p1", "2026-10-01T03:00:00Z", 10);
    with_devices.devices = Some(DeviceSnapshot {
        date: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
        devices: vec![fitlink_shared::families::PairedDevice {
            device_id: "816713257".into(),
            battery: Some("Low".into()),
            battery_level: Some(12),
            device_version: Some("Charge 6".into()),
            device_type: Some("TRACKER".into()),
            last_sync_time: Some(at("2026-10-01T03:00:00Z")),
        }],
    });
    let night = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    with_devices.daily = fitlink_shared::families::DailyFamilies {
        sleep: vec![fitlink_shared::families::SleepSession {
            session_id: "26000000000001".into(),
            sleep_date: night,
            is_main_sleep: true,
            start: at("2026-09-30T22:00:00Z"),
            start_utc_offset_seconds: 0,
            end: at("2026-09-30T23:00:00Z"),
            end_utc_offset_seconds: 0,
            minute_in_bed: Some(60),
            minute_asleep: Some(60),
            minute_after_wakeup: None,
            minute_awake: None,
            minute_restless: None,
            minute_deep: Some(60),
            minute_light: None,
            minute_rem: None,
            minute_wake: None,
            levels: vec![fitlink_shared::families::SleepLevel {
                level: "deep".into(),
                start: at("2026-09-30T22:00:00Z"),
                utc_offset_seconds: 0,
                duration_seconds: 3600,
            }],
        }],
        breathing_rate: vec![fitlink_shared::families::BreathingRateDay {
            date: night,
            breathing_rate: 14.5,
        }],
        not_permitted: [(
            fitlink_shared::families::Family::SkinTemperature,
            "HTTP 403".to_owned(),
        )]
        .into(),
        complete_days: Some(night..night.succ_opt().unwrap()),
        ..Default::default()
    };
    store
        .apply(&[
            WriterCommand::StoreSlice(with_devices),
            notification("p1", &["n"], "2026-10-01T00:00:00Z"),
        ])
        .await
        .unwrap();

    let w = withdrawal("p1", true);
    let reply = withdraw(&mut store, w.clone()).await;
    let want: BTreeMap<String, u64> = [
        ("activity_summary", 0),
        ("heart_rate_summary", 0),
        ("resting_heart_rate", 0),
        ("heart_rate_intraday", 70),
        ("steps_intraday", 70),
        ("device", 1),
        ("sleep_daily_summary", 1),
        ("sleep_level", 1),
        ("heart_rate_variability_daily", 0),
        ("oxygen_saturation_daily", 0),
        ("breathing_rate_daily", 1),
        ("skin_temperature_daily", 0),
        ("active_zone_minutes_daily", 0),
        ("family_permissions", 1),
        ("sync_slices", 1),
        ("provider_notifications", 1),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_owned(), n))
    .collect();
    assert_eq!(
        reply,
        ReplyBody::Withdrawn {
            participant_id: pid("p1"),
            purged: true,
            rows_deleted: want.clone(),
        }
    );
    assert_eq!(state(&store, "p1").await, "withdrawn");
    assert_eq!(
        column(&store, "state_reason", "p1").await.as_deref(),
        Some("withdrawn by coordinator-ann on 2026-10-07")
    );
    for col in [
        "in_flight_job_id",
        "in_flight_since",
        "notified_at",
        "notified_from",
    ] {
        assert_eq!(column(&store, col, "p1").await, None, "{col}");
    }
    assert_eq!(rows(&store, "credentials", "p1").await, 0);
    for table in want.keys() {
        assert_eq!(rows(&store, table, "p1").await, 0, "{table}");
    }
    // Someone else's data is untouched.
    assert_eq!(rows(&store, "steps_intraday", "p2").await, 10);
    assert_eq!(rows(&store, "credentials", "p2").await, 1);
    let audit: (String, bool, String, i64, i64) = fetch!(
        store.database().exec(),
        sqlx::query_as(
            "SELECT withdrawn_by, purged, provider_revocation, heart_rate_intraday_rows, \
         steps_intraday_rows FROM withdrawals WHERE participant_id = 'p1'",
        ),
        one
    )
    .unwrap();
    assert_eq!(
        audit,
        ("coordinator-ann".into(), true, "revoked".into(), 70, 70)
    );

    // Redelivered: the same answer, from the audit row. A second withdrawal is refused.
    assert_eq!(withdraw(&mut store, w).await, reply);
    let again = withdraw(&mut store, withdrawal("p1", true)).await;
    assert_eq!(refused_code(&again), "already_withdrawn");
    let unknown = withdraw(&mut store, withdrawal("nobody", false)).await;
    assert_eq!(refused_code(&unknown), "unknown_participant");
    assert_eq!(count(&store, "withdrawals").await, 1);

    // The job that was in flight cannot bring data back, nor change the participant.
    let applied = store
        .apply(&[
            WriterCommand::StoreSlice(slice(running, "p1", "2026-10-01T01:00:00Z", 60)),
            finish(running, "p1", completed()),
        ])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![
            Effect::SliceDropped {
                state: "withdrawn".into()
            },
            Effect::JobFinished {
                released: false,
                follow_up: None
            }
        ]
    );
    assert_eq!(rows(&store, "steps_intraday", "p1").await, 0);
    assert_eq!(state(&store, "p1").await, "withdrawn");
    // Nor store a token it rotated.
    let rotated = apply_one(
        &mut store,
        WriterCommand::RotateCredential(CredentialRotation {
            job_id: running,
            participant_id: pid("p1"),
            sealed_refresh_token: sealed("sealed-rotated"),
            replaces: None,
            reply_to: Some("amq.gen-worker".into()),
        }),
    )
    .await;
    assert!(matches!(rotated, Effect::Refused { .. }), "{rotated:?}");
    assert_eq!(rows(&store, "credentials", "p1").await, 0);
    let outcome: Option<String> = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT outcome FROM sync_jobs WHERE job_id = $1")
            .bind(running.to_string()),
        one
    )
    .unwrap();
    assert_eq!(outcome.as_deref(), Some("completed"));

    // Nothing brings them back: not a forced sync, a keep-alive, or an import.
    for trigger in [SyncTrigger::Manual, SyncTrigger::KeepAlive] {
        let mut forced = request(Uuid::new_v4(), "p1");
        forced.force = true;
        forced.trigger = trigger;
        assert!(matches!(
            grant(&mut store, forced).await,
            Effect::NotGranted(NotGranted::NoGrant { .. })
        ));
    }
    let applied = store
        .apply(&[import(
            Uuid::new_v4(),
            &[("p1", "sealed-back"), ("p3", "sealed-3")],
        )])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::Imported {
            created: 1,
            updated: 0,
            reactivated: 0,
            refused: 1
        }]
    );
    assert_eq!(state(&store, "p1").await, "withdrawn");
    assert_eq!(rows(&store, "credentials", "p1").await, 0);
}

async fn a_withdrawal_without_purge_keeps_the_data(backend: Backend) {
    let (_dir, mut store) = p1_with_an_hour(backend).await;
    let reply = withdraw(&mut store, withdrawal("p1", false)).await;
    assert_eq!(
        reply,
        ReplyBody::Withdrawn {
            participant_id: pid("p1"),
            purged: false,
            rows_deleted: BTreeMap::new(),
        }
    );
    assert_eq!(rows(&store, "steps_intraday", "p1").await, 60);
    assert_eq!(rows(&store, "credentials", "p1").await, 0);
    let purged: bool = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT purged FROM withdrawals"),
        one
    )
    .unwrap();
    assert!(!purged);
}

async fn a_keep_alive_touches_a_parked_participants_grant_without_changing_their_state(
    backend: Backend,
) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    store
        .apply(&[finish(
            job,
            "p1",
            Outcome::DeadLettered {
                reason: "HTTP 500 six times".into(),
            },
        )])
        .await
        .unwrap();

    let mut touch = request(Uuid::new_v4(), "p1");
    touch.trigger = SyncTrigger::KeepAlive;
    let Effect::Granted(job) = grant(&mut store, touch.clone()).await else {
        panic!("keep-alive not granted")
    };
    assert!(job.touch_only);
    assert_eq!(state(&store, "p1").await, "dead_lettered");
    // Redelivered: the same touch-only job again.
    assert_eq!(
        grant(&mut store, touch).await,
        Effect::Regranted(job.clone())
    );

    let applied = store
        .apply(&[finish(job.job_id, "p1", Outcome::Touched)])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::JobFinished {
            released: true,
            follow_up: None
        }]
    );
    assert_eq!(column(&store, "in_flight_job_id", "p1").await, None);
    assert_eq!(
        column(&store, "credential_used_at", "p1").await.as_deref(),
        Some("2026-10-02T01:00:00Z")
    );
    assert_eq!(state(&store, "p1").await, "dead_lettered");
    assert_eq!(
        column(&store, "state_reason", "p1").await.as_deref(),
        Some("HTTP 500 six times")
    );
    let outcome: Option<String> = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT outcome FROM sync_jobs WHERE job_id = $1")
            .bind(job.job_id.to_string()),
        one
    )
    .unwrap();
    assert_eq!(outcome.as_deref(), Some("touched"));

    // No keep-alive for a grant the provider already refused, or without a credential.
    for state in ["revoked", "consent_expired", "needs_reconsent"] {
        execute!(
            store.database().exec(),
            sqlx::query("UPDATE participants SET state = $1").bind(state)
        )
        .unwrap();
        let mut touch = request(Uuid::new_v4(), "p1");
        touch.trigger = SyncTrigger::KeepAlive;
        assert!(
            matches!(
                grant(&mut store, touch).await,
                Effect::NotGranted(NotGranted::NoGrant { .. })
            ),
            "{state}"
        );
    }
    for statement in [
        "UPDATE participants SET state = 'active'",
        "DELETE FROM credentials",
    ] {
        on_backend!(store.database().exec(), |e| {
            sqlx::query(statement).execute(e).await.map(|_| ())
        })
        .unwrap();
    }
    let mut forced = request(Uuid::new_v4(), "p1");
    forced.force = true;
    assert_eq!(
        grant(&mut store, forced).await,
        Effect::NotGranted(NotGranted::NoGrant {
            state: "active".into(),
            why: "no stored credential"
        })
    );
}

async fn a_completed_job_records_the_credential_use_and_an_expired_grant_is_consent_expired(
    backend: Backend,
) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    store
        .apply(&[finish(job, "p1", completed())])
        .await
        .unwrap();
    assert_eq!(
        column(&store, "credential_used_at", "p1").await.as_deref(),
        Some("2026-10-02T01:00:00Z")
    );

    let revoked = || Outcome::Failed {
        state: ParticipantState::Revoked,
        reason: "invalid_grant".into(),
        rejected_token: None,
    };
    // The grant's known expiry has passed (finish() reports at 2026-10-02T01:00:00Z).
    execute!(
        store.database().exec(),
        sqlx::query("UPDATE participants SET refresh_token_expires_at = '2026-10-02T00:00:00Z'")
    )
    .unwrap();
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    store.apply(&[finish(job, "p1", revoked())]).await.unwrap();
    assert_eq!(state(&store, "p1").await, "consent_expired");
    assert_eq!(
        column(&store, "state_reason", "p1").await.as_deref(),
        Some("the time-limited grant expired on 2026-10-02; needs a new consent")
    );

    // Before the expiry, a refusal is a revocation.
    execute!(store.database().exec(), sqlx::query(
        "UPDATE participants SET state = 'active', refresh_token_expires_at = '2026-10-09T00:00:00Z'",
    ))
    .unwrap();
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    store.apply(&[finish(job, "p1", revoked())]).await.unwrap();
    assert_eq!(state(&store, "p1").await, "revoked");
}

/// A keep-alive whose token was rotated since its grant (its worker died after storing the new
/// one) is retried as a keep-alive: a parked participant's touch never turns into a sync.
async fn a_refused_keep_alive_with_a_newer_stored_token_is_retried_as_a_keep_alive(
    backend: Backend,
) {
    let (_dir, mut store) = with_p1(backend).await;
    execute!(
        store.database().exec(),
        sqlx::query("UPDATE participants SET state = 'dead_lettered', state_reason = 'parked'")
    )
    .unwrap();
    let mut touch = request(Uuid::new_v4(), "p1");
    touch.trigger = SyncTrigger::KeepAlive;
    let Effect::Granted(job) = grant(&mut store, touch).await else {
        panic!("keep-alive not granted")
    };
    store
        .apply(&[WriterCommand::RotateCredential(CredentialRotation {
            job_id: job.job_id,
            participant_id: pid("p1"),
            sealed_refresh_token: sealed("sealed-2"),
            replaces: None,
            reply_to: None,
        })])
        .await
        .unwrap();
    let applied = store
        .apply(&[finish(
            job.job_id,
            "p1",
            Outcome::Failed {
                state: ParticipantState::Revoked,
                reason: "invalid_grant".into(),
                rejected_token: Some(sealed("sealed-1")),
            },
        )])
        .await
        .unwrap();
    let [
        Effect::JobFinished {
            released: true,
            follow_up: Some(retry),
        },
    ] = applied.effects.as_slice()
    else {
        panic!("{:?}", applied.effects)
    };
    assert!(retry.touch_only);
    assert_eq!(retry.sealed_refresh_token, sealed("sealed-2"));
    assert_eq!(state(&store, "p1").await, "dead_lettered");
}

/// A note older than the finishing job's grant was covered by that job: cleared, no follow-up.
async fn a_note_older_than_the_job_that_finishes_makes_no_follow_up(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    execute!(
        store.database().exec(),
        sqlx::query(
            "UPDATE participants SET notified_at = '2026-01-01T00:00:00Z', \
         notified_from = '2026-10-01T00:00:00Z'",
        )
    )
    .unwrap();
    let applied = store
        .apply(&[finish(job, "p1", completed())])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::JobFinished {
            released: true,
            follow_up: None
        }]
    );
    assert_eq!(column(&store, "notified_at", "p1").await, None);
}

fitlink_shared::on_both_backends!(
    an_invitation_creates_an_invited_participant_once_and_never_reinvites_a_withdrawn_one,
    a_consent_links_a_new_participant_and_grants_their_first_job,
    a_consent_whose_invitation_was_never_recorded_records_it_and_links,
    a_re_consent_continues_from_the_cursor_and_a_different_account_is_refused,
    a_fitbit_participant_moving_to_google_keeps_their_cursor_and_must_bring_their_account,
    a_consent_while_a_job_is_in_flight_grants_no_second_job,
    a_withdrawn_participant_cannot_consent_again,
    consent_problems_show_on_the_invitation_and_on_participants_without_a_grant,
    a_thousand_duplicate_notifications_make_one_job,
    notifications_during_a_job_make_one_follow_up_from_the_earliest_notified_start,
    a_re_read_behind_the_cursor_stores_without_moving_it_and_an_overlap_moves_it_on,
    notifications_for_a_participant_not_syncing_are_recorded_only,
    old_notification_digests_are_pruned,
    a_provider_deletion_removes_exactly_the_notified_points_once_and_re_reads,
    consent_lost_revokes_and_keeps_the_data_and_cursor,
    a_purging_withdrawal_deletes_everything_in_one_go_and_leaves_an_audit_row,
    a_withdrawal_without_purge_keeps_the_data,
    a_keep_alive_touches_a_parked_participants_grant_without_changing_their_state,
    a_completed_job_records_the_credential_use_and_an_expired_grant_is_consent_expired,
    a_refused_keep_alive_with_a_newer_stored_token_is_retried_as_a_keep_alive,
    a_note_older_than_the_job_that_finishes_makes_no_follow_up,
);
