//! `fitlink store copy` as a process: a real SQLite pilot (made by `fitlink demo`, the fleet
//! against the simulator, then topped up through the writer's store so every table has rows)
//! into a real PostgreSQL database of the test's own. The copy must verify itself, finish after
//! a SIGKILL at any batch, and refuse (writing nothing) while a writer runs or on bad input.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use chrono::TimeDelta;
use fitlink_shared::config::{BrokerArgs, DatabaseArgs};
use fitlink_shared::domain::{ParticipantId, Provider, Slice, UtcInstant};
use fitlink_shared::fetch;
use fitlink_shared::messages::*;
use fitlink_shared::secret::{SealedToken, Secret, TokenKeys};
use fitlink_shared::store::copy::TABLES;
use fitlink_shared::store::testing::TestDatabase;
use fitlink_shared::store::{Backend, Database};
use uuid::Uuid;

use crate::harness::BIN;

fn amqp_url() -> String {
    std::env::var("FITLINK_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A namespace of the test's own, so no other run's writer is taken for this one's.
fn namespace() -> String {
    format!("t-copy-{}", &Uuid::new_v4().simple().to_string()[..10])
}

fn copy_args<'a>(from: &'a str, to: &'a str, namespace: &'a str) -> Vec<&'a str> {
    vec![
        "store",
        "copy",
        "--from",
        from,
        "--to",
        to,
        "--namespace",
        namespace,
    ]
}

fn fitlink(args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .args(args)
        .env("FITLINK_AMQP_URL", amqp_url())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `identical: …, digest D` line of a successful copy.
fn digest_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("identical: "))
        .unwrap_or_else(|| panic!("no verdict:\n{}", text(out)))
        .to_owned()
}

fn pid(id: &str) -> ParticipantId {
    ParticipantId::new(id).unwrap()
}

fn at(text: &str) -> UtcInstant {
    UtcInstant::parse(text).unwrap()
}

/// Rows of every table.
async fn counts(url: &str) -> BTreeMap<&'static str, i64> {
    let db = Database::reader(url, "test").await.unwrap();
    let mut counts = BTreeMap::new();
    for t in &TABLES {
        let n: i64 = fetch!(
            db.exec(),
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {}",
                t.name
            ))),
            one
        )
        .unwrap();
        counts.insert(t.name, n);
    }
    db.close().await;
    counts
}

/// Tables in a PostgreSQL database (a backend-only fact: "nothing was written" there).
async fn postgres_tables(url: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    tables
}

/// A slice of one-minute points for `participant` from `start`.
fn slice(participant: &str, start: &str, minutes: i64) -> WriterCommand {
    let start = at(start);
    let points: Vec<IntradayPoint> = (0..minutes)
        .map(|m| IntradayPoint {
            datetime: UtcInstant::new(start.get() + TimeDelta::minutes(m)),
            utc_offset_seconds: -18_000,
            value: 70 + m % 30,
        })
        .collect();
    WriterCommand::StoreSlice(SliceResult {
        job_id: Uuid::new_v4(),
        participant_id: pid(participant),
        provider: Provider::GoogleHealth,
        slice: Slice {
            start,
            end: UtcInstant::new(start.get() + TimeDelta::minutes(minutes)),
        },
        daily: Default::default(),
        devices: None,
        time_zone: None,
        heart_rate: points.clone(),
        steps: points,
    })
}

/// What the demo does not make, through the writer's own store: a refused family, invitations (one used by a
/// consent, one declined), webhook notifications and a provider deletion, slices ahead of the
/// cursor (one in a month no partition exists for yet), withdrawals with and without purge.
async fn top_up(url: &str) {
    let key = TokenKeys::parse(&fitlink_shared::secret::TokenKey::generate()).unwrap();
    let mut store = fitlink_writer::Store::open(&DatabaseArgs::url(url), Duration::from_secs(3600))
        .await
        .unwrap();
    let invitation = |id: Uuid, participant: &str| Invitation {
        invitation_id: id,
        participant_id: pid(participant),
        provider: Provider::GoogleHealth,
        sync_from: at("2026-10-01T00:00:00Z"),
        issued_at: at("2026-11-05T09:00:00Z"),
        expires_at: at("2026-11-12T09:00:00Z"),
    };
    let (used, declined) = (Uuid::new_v4(), Uuid::new_v4());
    // sim-0002's provider refused skin temperature on a later sync (a family_permissions row).
    let mut refused = slice("sim-0002", "2026-11-05T00:00:00Z", 5);
    if let WriterCommand::StoreSlice(s) = &mut refused {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 5).unwrap();
        s.daily.complete_days = Some(day..day.succ_opt().unwrap());
        s.daily.not_permitted = [(
            fitlink_shared::families::Family::SkinTemperature,
            "list daily-sleep-temperature-derivations: HTTP 403".to_owned(),
        )]
        .into();
    }
    let commands = vec![
        refused,
        slice("sim-0001", "2026-11-05T00:00:00Z", 30),
        slice("sim-0001", "2027-06-01T00:00:00Z", 10),
        WriterCommand::RecordInvitation(invitation(used, "invitee-1")),
        WriterCommand::LinkParticipant(ConsentGrant {
            request_id: Uuid::new_v4(),
            invitation: invitation(used, "invitee-1"),
            participant_id: pid("invitee-1"),
            provider: Provider::GoogleHealth,
            sealed_refresh_token: key.seal(&pid("invitee-1"), &Secret::new("consent-token".into())),
            refresh_token_expires_at: Some(at("2026-11-13T10:00:00Z")),
            granted_scopes: vec!["activity".into(), "heart_rate".into()],
            identity: Some(ProviderIdentity {
                health_user_id: "health-invitee-1".into(),
                legacy_user_id: None,
            }),
            fitbit_user_id: None,
            consented_at: at("2026-11-06T10:00:00Z"),
            reply_to: None,
        }),
        WriterCommand::RecordInvitation(invitation(declined, "sim-0002")),
        WriterCommand::RecordConsentProblem(ConsentProblem {
            invitation_id: declined,
            participant_id: pid("sim-0002"),
            provider: Provider::GoogleHealth,
            problem: ConsentProblemKind::Declined {
                error: "access_denied".into(),
            },
            at: at("2026-11-06T11:00:00Z"),
        }),
        WriterCommand::ProviderNotified(ProviderNotification {
            notification_ids: vec!["digest-1".into(), "digest-2".into()],
            participant_id: pid("sim-0002"),
            provider: Provider::GoogleHealth,
            data_types: vec!["steps".into()],
            intervals: vec![NotifiedInterval {
                start: at("2026-11-02T00:00:00Z"),
                end: at("2026-11-02T06:00:00Z"),
            }],
            received_at: now_instant(),
        }),
        WriterCommand::DeleteProviderData(ProviderDeletion {
            notification_id: "deletion-1".into(),
            participant_id: pid("sim-0002"),
            provider: Provider::GoogleHealth,
            data_type: "steps".into(),
            intervals: vec![NotifiedInterval {
                start: at("2026-11-02T00:00:00Z"),
                end: at("2026-11-02T01:00:00Z"),
            }],
            received_at: now_instant(),
        }),
        WriterCommand::RecordOperatorAction(OperatorAction {
            action_id: Uuid::new_v4(),
            at: now_instant(),
            actor: "coordinator@example.org".into(),
            role: "operator".into(),
            action: "sync_now".into(),
            participant_id: Some(pid("sim-0001")),
            detail: serde_json::json!({}),
        }),
    ];
    store.apply(&commands).await.unwrap();
    for (participant, purge) in [("sim-0003", true), ("sim-0004", false)] {
        let withdrawal = WriterCommand::Withdraw(Withdrawal {
            request_id: Uuid::new_v4(),
            participant_id: pid(participant),
            purge,
            requested_by: "coordinator".into(),
            provider_revocation: "revoked".into(),
            at: now_instant(),
            reply_to: None,
        });
        store.apply(&[withdrawal]).await.unwrap();
    }
    store.close().await;
}

/// A pilot's SQLite file with rows in every table: `fitlink demo`, then [`top_up`].
async fn pilot(dir: &Path) -> String {
    let demo_dir = dir.join("demo");
    let ns = namespace();
    let out = fitlink(&[
        "demo",
        "--participants",
        "4",
        "--days",
        "3",
        "--namespace",
        &ns,
        "--dir",
        demo_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let url = format!("sqlite://{}", demo_dir.join("fitlink.db").display());
    top_up(&url).await;
    let empty: Vec<_> = counts(&url)
        .await
        .into_iter()
        .filter(|(_, n)| *n == 0)
        .collect();
    assert!(
        empty.is_empty(),
        "the pilot has tables without rows: {empty:?}"
    );
    url
}

/// A small source made by the writer's store alone (for the refusals).
async fn small_source(dir: &Path) -> String {
    let url = format!("sqlite://{}", dir.join("small.db").display());
    import_one(&url, "p1", "c2VhbGVkLXAx").await;
    url
}

/// Imports one participant (with a sealed token that is only bytes) through the writer's store.
async fn import_one(url: &str, participant: &str, sealed: &str) {
    let mut store = fitlink_writer::Store::open(&DatabaseArgs::url(url), Duration::from_secs(3600))
        .await
        .unwrap();
    store
        .apply(&[WriterCommand::ImportParticipants(ImportBatch {
            import_id: Uuid::new_v4(),
            source: format!("{participant}.csv"),
            participants: vec![ImportedParticipant {
                participant_id: pid(participant),
                provider: Provider::GoogleHealth,
                sealed_refresh_token: SealedToken::from_stored(sealed.into()),
                sync_from: at("2026-10-01T00:00:00Z"),
                identity: None,
            }],
        })])
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_a_pilot_database_into_postgres_and_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = pilot(dir.path()).await;
    let dest = TestDatabase::new(Backend::Postgres).await;
    let ns = namespace();

    let out = fitlink(&copy_args(&source, dest.url(), &ns));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        digest_line(&out).starts_with(&format!("identical: {} tables, ", TABLES.len())),
        "{stdout}"
    );
    for t in &TABLES {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(t.name) && l.ends_with("same")),
            "{} not verified:\n{stdout}",
            t.name
        );
    }
    let expected = counts(&source).await;
    assert_eq!(counts(dest.url()).await, expected);

    // Sealed tokens arrive as the same sealed bytes, and are never printed.
    let tokens = |url: String| async move {
        let db = Database::reader(&url, "test").await.unwrap();
        let rows: Vec<(String, SealedToken)> = fetch!(
            db.exec(),
            sqlx::query_as(
                "SELECT participant_id, sealed_refresh_token FROM credentials ORDER BY participant_id"
            ),
            all
        )
        .unwrap();
        db.close().await;
        rows
    };
    let sealed = tokens(source.clone()).await;
    assert!(!sealed.is_empty());
    assert_eq!(tokens(dest.url().to_owned()).await, sealed);
    let all_output = text(&out);
    for (participant, token) in &sealed {
        assert!(
            !all_output.contains(token.as_str()),
            "{participant}'s sealed token printed"
        );
    }

    // Run again: nothing left to copy, verified again, nothing twice.
    let again = fitlink(&copy_args(&source, dest.url(), &ns));
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(digest_line(&again), digest_line(&out));
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(
        stdout.matches("(nothing left to copy)").count(),
        TABLES.len(),
        "{stdout}"
    );
    assert_eq!(counts(dest.url()).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_killed_mid_table_finishes_on_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let source = pilot(dir.path()).await;
    let expected = counts(&source).await;
    let heart_rate = expected["heart_rate_intraday"];
    let ns = namespace();

    // The uninterrupted copy, to compare with.
    let reference = TestDatabase::new(Backend::Postgres).await;
    let out = fitlink(&copy_args(&source, reference.url(), &ns));
    assert!(out.status.success(), "{}", text(&out));
    let uninterrupted = digest_line(&out);

    // Small batches, so the copy takes many transactions; SIGKILL once part of the largest
    // table is in.
    let dest = TestDatabase::new(Backend::Postgres).await;
    let mut args = copy_args(&source, dest.url(), &ns);
    args.extend(["--batch-size", "20"]);
    let log = std::fs::File::create(dir.path().join("killed-copy.log")).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(&args)
        .env("FITLINK_AMQP_URL", amqp_url())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut db: Option<Database> = None;
    let copied_before_kill = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the copy ended ({status}) before it could be killed mid-table");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heart rate copied within 60 s"
        );
        if db.is_none() {
            db = Database::reader(dest.url(), "test").await.ok();
        }
        if let Some(db) = &db {
            let n: Option<i64> = fetch!(
                db.exec(),
                sqlx::query_scalar("SELECT count(*) FROM heart_rate_intraday"),
                one
            )
            .ok();
            if let Some(n) = n.filter(|n| *n > 0 && *n < heart_rate / 2) {
                break n;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    let after_kill = counts(dest.url()).await;
    assert!(
        after_kill["heart_rate_intraday"] >= copied_before_kill
            && after_kill["heart_rate_intraday"] < heart_rate,
        "killed mid-table: {after_kill:?}"
    );
    assert_eq!(after_kill["steps_intraday"], 0, "{after_kill:?}");
    if let Some(db) = db {
        db.close().await;
    }

    // The same command again finishes the job: same counts, same digest, nothing twice.
    let out = fitlink(&copy_args(&source, dest.url(), &ns));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("resuming"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("participants") && l.contains("nothing left")),
        "tables done before the kill are not copied again:\n{stdout}"
    );
    assert_eq!(digest_line(&out), uninterrupted);
    assert_eq!(counts(dest.url()).await, expected);
    assert_eq!(counts(reference.url()).await, expected);
}

#[tokio::test]
async fn refuses_while_a_writer_holds_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let source = small_source(dir.path()).await;
    let dest = TestDatabase::new(Backend::Postgres).await;
    let ns = namespace();

    // The writer's own lock, as a running `fitlink writer` holds it.
    let writer =
        Database::open_for_writing(&source, &DatabaseArgs::url(&source).settings("writer"))
            .await
            .unwrap();
    let lock = writer
        .writer_lock(&tokio_util::sync::CancellationToken::new())
        .await
        .unwrap()
        .expect("the lock is free");
    let out = fitlink(&copy_args(&source, dest.url(), &ns));
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a writer is running on the source")
            && stderr.contains("small.db.writer-lock"),
        "{}",
        text(&out)
    );
    assert!(
        postgres_tables(dest.url()).await.is_empty(),
        "nothing written"
    );

    // The writer stopped: the same command copies.
    drop(lock);
    writer.close().await;
    let out = fitlink(&copy_args(&source, dest.url(), &ns));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(counts(dest.url()).await["participants"], 1);
}

#[tokio::test]
async fn refuses_while_a_writer_consumes_the_results_queue() {
    use lapin::options::BasicConsumeOptions;
    use lapin::types::FieldTable;

    let dir = tempfile::tempdir().unwrap();
    let source = small_source(dir.path()).await;
    let dest = TestDatabase::new(Backend::Postgres).await;
    let ns = namespace();
    let broker = BrokerArgs::new(amqp_url(), ns.clone());
    let conn = fitlink_shared::broker::connect(&broker, "test")
        .await
        .unwrap();
    let topology = broker.topology();
    topology
        .declare(&conn.create_channel().await.unwrap())
        .await
        .unwrap();
    // A writer elsewhere (say, already pointed at the new database) consuming the results.
    let channel = conn.create_channel().await.unwrap();
    let consumer = channel
        .basic_consume(
            topology.results[0].as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let out = fitlink(&copy_args(&source, dest.url(), &ns));
    let skipped = fitlink(&{
        let mut args = copy_args(&source, dest.url(), &ns);
        args.push("--skip-broker-check");
        args
    });
    let _ = channel.close(200, "OK".into()).await;
    drop(consumer);
    let _ = fitlink::fleet::delete_queues(&broker).await;
    let _ = conn.close(200, "OK".into()).await;

    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a writer is running") && stderr.contains(&topology.results[0]),
        "{}",
        text(&out)
    );
    // Refused before the destination was touched; with the check skipped, it copies.
    assert!(skipped.status.success(), "{}", text(&skipped));
    assert!(String::from_utf8_lossy(&skipped.stdout).contains("broker not asked"));
}

#[tokio::test]
async fn refuses_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = small_source(dir.path()).await;
    let ns = namespace();
    let refused = |from: &str, to: &str, expected: &[&str]| {
        let out = fitlink(&copy_args(from, to, &ns));
        assert!(!out.status.success(), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for e in expected {
            assert!(stderr.contains(e), "{e:?} not in:\n{}", text(&out));
        }
    };
    let dest = TestDatabase::new(Backend::Postgres).await;

    // A source that is not there, not a database URL, not fitlink's.
    let missing = dir.path().join("missing.db");
    let missing_url = format!("sqlite://{}", missing.display());
    refused(&missing_url, dest.url(), &["does not exist", "missing.db"]);
    assert!(!missing.exists(), "no file created for a missing source");
    refused(
        "mysql://root:hunter2@h/db",
        dest.url(),
        &["names no supported database"],
    );
    let notes = dir.path().join("notes.db");
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", notes.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE notes (x TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    refused(
        &format!("sqlite://{}", notes.display()),
        dest.url(),
        &["is not a fitlink database", "notes"],
    );
    refused(&source, &source, &["same database"]);
    assert!(
        postgres_tables(dest.url()).await.is_empty(),
        "nothing written"
    );

    // A destination of another program, and another study's fitlink database.
    let pool = sqlx::PgPool::connect(dest.url()).await.unwrap();
    sqlx::query("CREATE TABLE notes (x text)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    refused(
        &source,
        dest.url(),
        &["holds tables of another program", "notes"],
    );
    assert_eq!(postgres_tables(dest.url()).await, ["notes"]);

    let other = TestDatabase::new(Backend::Postgres).await;
    std::fs::create_dir_all(dir.path().join("other")).unwrap();
    let other_study = small_source(&dir.path().join("other")).await;
    let out = fitlink(&copy_args(&other_study, other.url(), &ns));
    assert!(out.status.success(), "{}", text(&out));
    import_one(other.url(), "other-study-1", "b3RoZXI=").await;
    let before = counts(other.url()).await;
    refused(
        &source,
        other.url(),
        &["not an interrupted copy", "other-study-1"],
    );
    assert_eq!(counts(other.url()).await, before, "nothing merged");
}
