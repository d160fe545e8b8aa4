//! The operators' commands: `enqueue`, `dlq list` / `dlq replay`, `participants import`.

use super::*;

#[tokio::test]
async fn enqueue_checks_every_id_before_publishing_anything() {
    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        db.participant(active("p1")).await;
        db.participant(active("p2")).await;
        let peek = Peek::open(&broker).await;

        let ids = ["p1", "ghost", "p2", "bad id!"].map(String::from);
        let error = enqueue(&broker, &db.args, &ids, None).await.unwrap_err();
        let unknown = error
            .downcast_ref::<UnknownParticipants>()
            .expect("typed error");
        assert_eq!(unknown.0, ["ghost", "bad id!"]);
        assert!(error.to_string().contains("ghost, bad id!"), "{error}");
        assert_eq!(peek.depth(&peek.topology.results[0]).await, Some(0));

        let from = UtcInstant::parse("2026-03-01T00:00:00Z").unwrap();
        let ids = ["p2", "p1", "p2"].map(String::from);
        let report = enqueue(&broker, &db.args, &ids, Some(from.get()))
            .await
            .unwrap();
        let asked: Vec<&str> = report
            .jobs
            .iter()
            .map(|j| j.participant_id.as_str())
            .collect();
        assert_eq!(asked, ["p2", "p1"]);
        peek.wait_depth(&peek.topology.results[0], 2).await;
        let first = request(peek.take_command().await);
        assert_eq!(first.job_id, report.jobs[0].job_id);
        assert_eq!(first.trigger, SyncTrigger::Manual);
        assert!(first.force);
        assert_eq!(first.from, Some(from));
        assert_eq!(first.replaces, None);
    })
    .await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_from_the_current_state() {
    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        let dead_job = Uuid::now_v7();
        db.participant(Row {
            state: "dead_lettered",
            in_flight: Some(dead_job),
            in_flight_since: Some(-TimeDelta::hours(1)),
            ..active("p1")
        })
        .await;
        db.participant(active("p2")).await;
        let peek = Peek::open(&broker).await;
        let publisher = peek.publisher().await;
        let t = &peek.topology;

        // 1. A job the worker gave up on, with our headers.
        let headers: Headers = vec![
            (REASON_HEADER, long_string("provider kept answering 503")),
            (PARTICIPANT_HEADER, long_string("p1")),
            (JOB_HEADER, long_string(&dead_job.to_string())),
            (ATTEMPT_HEADER, AMQPValue::LongInt(5)),
        ];
        publisher
            .publish_json(&t.jobs_dead, &sync_job(dead_job, "p1"), headers)
            .await
            .unwrap();
        // 2. A job RabbitMQ dead-lettered itself (rejected without requeue): only x-death.
        let rejected_job = Uuid::now_v7();
        publisher
            .publish_json(&t.jobs, &sync_job(rejected_job, "p2"), Vec::new())
            .await
            .unwrap();
        let channel = peek.conn.create_channel().await.unwrap();
        let job = channel
            .basic_get(t.jobs.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .unwrap();
        job.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        // 3. A job of a participant the database does not know.
        let ghost_job = Uuid::now_v7();
        publisher
            .publish_json(&t.jobs_dead, &sync_job(ghost_job, "ghost"), Vec::new())
            .await
            .unwrap();
        // 4. A poison result.
        publisher
            .publish(&t.results_dead, b"{not json", Vec::new())
            .await
            .unwrap();
        peek.wait_depth(&t.jobs_dead, 3).await;

        let letters = dlq_list(&broker).await.unwrap();
        assert_eq!(letters.len(), 4, "{letters:#?}");
        let by_job = |job: Uuid| letters.iter().find(|l| l.job_id == Some(job)).unwrap();
        let ours = by_job(dead_job);
        assert_eq!(ours.queue, t.jobs_dead);
        assert_eq!(ours.reason, "provider kept answering 503");
        assert_eq!(ours.participant_id.as_deref(), Some("p1"));
        assert_eq!(ours.attempts, Some(5));
        let rabbit = by_job(rejected_job);
        assert_eq!(rabbit.reason, "rejected");
        assert_eq!(rabbit.participant_id.as_deref(), Some("p2"));
        assert!(rabbit.dead_lettered_at.is_some());
        assert_eq!(by_job(ghost_job).reason, "unknown");
        let poison = letters.iter().find(|l| l.queue == t.results_dead).unwrap();
        assert_eq!((poison.job_id, poison.reason.as_str()), (None, "unknown"));
        let rendered = fitlink_dispatcher::render_dead_letters(&letters);
        assert!(
            rendered.contains("provider kept answering 503"),
            "{rendered}"
        );
        assert!(
            !rendered.contains("c2VhbGVk"),
            "a body was printed: {rendered}"
        );
        // Listing left everything in place.
        peek.wait_depth(&t.jobs_dead, 3).await;
        peek.wait_depth(&t.results_dead, 1).await;

        // Replay one job by id, and one that is not there.
        let missing = Uuid::now_v7();
        let report = dlq_replay(
            &broker,
            &db.args,
            ReplaySelection::Jobs(vec![dead_job, missing]),
        )
        .await
        .unwrap();
        assert_eq!(report.replayed.len(), 1, "{report}");
        assert_eq!(report.replayed[0].replaces, dead_job);
        assert_eq!(report.not_found, [missing]);
        assert!(report.skipped.is_empty(), "{report}");
        peek.wait_depth(&t.results[0], 1).await;
        let replay = request(peek.take_command().await);
        assert_eq!(replay.participant_id.as_str(), "p1");
        assert_eq!(replay.job_id, report.replayed[0].job_id);
        assert_eq!(replay.trigger, SyncTrigger::Replay);
        assert!(replay.force);
        assert_eq!(replay.replaces, Some(dead_job));
        assert_eq!(replay.from, None);
        peek.wait_depth(&t.jobs_dead, 2).await;

        // Replay the rest: the known participant's job goes, the ghost's stays and is reported.
        let report = dlq_replay(&broker, &db.args, ReplaySelection::All)
            .await
            .unwrap();
        assert_eq!(report.replayed.len(), 1, "{report}");
        assert_eq!(report.replayed[0].replaces, rejected_job);
        assert_eq!(report.skipped.len(), 1, "{report}");
        assert_eq!(report.skipped[0].job_id, Some(ghost_job));
        assert!(report.skipped[0].why.contains("not in the database"));
        peek.wait_depth(&t.jobs_dead, 1).await;
        peek.wait_depth(&t.results_dead, 1).await;
        let left = dlq_list(&broker).await.unwrap();
        assert!(left.iter().any(|l| l.job_id == Some(ghost_job)));
        assert!(left.iter().all(|l| l.job_id != Some(dead_job)));
    })
    .await;
}

const GOOD_FILE: &str = "participant_id,provider,refresh_token,sync_from\n\
                         p1,google-health,tok-1,2026-10-01\n\
                         p2,fitbit,tok-2,2026-10-01T00:00:00Z\n";

#[tokio::test]
async fn an_import_is_one_message_and_wait_sees_the_writer_apply_it() {
    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        db.participant(active("p1")).await;
        let peek = Peek::open(&broker).await;
        let key = TokenKeys::parse(&fitlink_shared::secret::TokenKey::generate()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consents.csv");

        // A bad file publishes nothing.
        std::fs::write(
            &path,
            "participant_id,provider,refresh_token,sync_from\np1,x,t,y\n",
        )
        .unwrap();
        let error = import_participants(&broker, &db.args, &key, &path, ImportWait::Queued, None)
            .await
            .unwrap_err();
        assert!(matches!(error, ImportError::Invalid(_)), "{error}");
        assert_eq!(peek.depth(&peek.topology.results[0]).await, Some(0));

        // No writer: queued, and --wait says so.
        std::fs::write(&path, GOOD_FILE).unwrap();
        let error = import_participants(
            &broker,
            &db.args,
            &key,
            &path,
            ImportWait::Applied {
                timeout: Some(Duration::from_millis(300)),
            },
            None,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, ImportError::NotAppliedYet { .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("will be applied when a writer runs")
        );
        let WriterCommand::ImportParticipants(batch) = peek.take_command().await else {
            panic!("expected an import");
        };
        assert_eq!(batch.source, "consents.csv");
        assert_eq!(batch.participants.len(), 2);
        let json = serde_json::to_string(&batch).unwrap();
        assert!(!json.contains("tok-1") && !json.contains("tok-2"), "{json}");

        // A "writer" that applies the import: --wait returns once the audit row exists.
        let writer_db = db.db.clone();
        let writer_peek = Peek::open(&broker).await;
        let writer = tokio::spawn(async move {
            writer_peek
                .wait_depth(&writer_peek.topology.results[0], 1)
                .await;
            let WriterCommand::ImportParticipants(batch) = writer_peek.take_command().await else {
                panic!("expected an import");
            };
            let imported_at = UtcInstant::parse("2026-01-01T00:00:00Z").unwrap();
            on_backend!(writer_db.exec(), |e| {
                sqlx::query(
                    "INSERT INTO imports (import_id, source, participants, imported_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(batch.import_id.to_string())
                .bind(batch.source)
                .bind(batch.participants.len() as i64)
                .bind(imported_at)
                .execute(e)
                .await
                .map(|done| done.rows_affected())
            })
            .unwrap();
            batch.import_id
        });
        let report = import_participants(
            &broker,
            &db.args,
            &key,
            &path,
            // No timeout: waits as long as it takes the writer to start and apply it.
            ImportWait::Applied { timeout: None },
            None,
        )
        .await
        .unwrap();
        assert_eq!(writer.await.unwrap(), report.import_id);
        assert!(report.applied);
        assert_eq!(
            (report.participants, report.new, report.already_known),
            (2, 1, 1)
        );
        assert!(report.compared_with_database);
    })
    .await;
}
