//! The store seam against real databases: what each backend must keep true beyond the writer's
//! contract tests (`writer/src/store/tests.rs`).

use chrono::TimeDelta;
use fitlink_shared::config::DatabaseArgs;
use fitlink_shared::domain::UtcInstant;
use fitlink_shared::messages::IntradayPoint;
use fitlink_shared::on_backend;
use fitlink_shared::secret::SealedToken;
use fitlink_shared::store::testing::TestDatabase;
use fitlink_shared::store::{Backend, ByBackend, Durability, IntradayTable};

fn at(text: &str) -> UtcInstant {
    UtcInstant::parse(text).unwrap()
}

/// A database the previous release made opens with today's writer: the migrations it applied
/// are recognised (same versions and checksums), nothing is lost, and it takes new data.
#[tokio::test]
async fn a_database_made_by_the_previous_release_migrates_forward_with_nothing_lost() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/release-0.1-sqlite.db"
    );
    let path = std::env::temp_dir().join(format!(
        "fitlink-release-0.1-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::copy(fixture, &path).unwrap();
    let url = format!("sqlite://{}", path.display());
    let db = DatabaseArgs::url(&url)
        .open_for_writing()
        .await
        .expect("today's writer opens and migrates the previous release's database");

    let (cursor, state): (UtcInstant, String) = on_backend!(db.exec(), |e| {
        sqlx::query_as("SELECT sync_cursor, state FROM participants WHERE participant_id = 'p1'")
            .fetch_one(e)
            .await
    })
    .unwrap();
    assert_eq!(
        (cursor, state.as_str()),
        (at("2026-11-02T00:00:00Z"), "active")
    );
    let sealed: SealedToken = on_backend!(db.exec(), |e| {
        sqlx::query_scalar(
            "SELECT sealed_refresh_token FROM credentials WHERE participant_id = 'p1'",
        )
        .fetch_one(e)
        .await
    })
    .unwrap();
    assert!(
        sealed.as_str().starts_with("bm5ubm5u"),
        "the sealed token is kept as it was"
    );
    for (table, rows) in [
        ("participants", 2),
        ("credentials", 1),
        ("heart_rate_intraday", 144),
        ("steps_intraday", 144),
        ("activity_summary", 1),
        ("resting_heart_rate", 1),
        ("sync_jobs", 1),
        ("imports", 1),
    ] {
        let n: i64 = on_backend!(db.exec(), |e| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(e)
                .await
        })
        .unwrap();
        assert_eq!(n, rows, "{table}");
    }

    // New rows go in beside the old ones; an old point sent again is not stored twice.
    let points = [at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")].map(|t| IntradayPoint {
        datetime: t,
        utc_offset_seconds: -18_000,
        value: 70,
    });
    let mut conn = db.acquire_for_writing().await.unwrap();
    let mut tx = conn.begin(Durability::Data).await.unwrap();
    let written = tx
        .conn()
        .insert_intraday(IntradayTable::HeartRate, "p1", "google-health", &points)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    conn.finish(Durability::Data).await;
    assert_eq!(written, 1, "the point the release stored stays as it was");
    db.close().await;
    for suffix in ["", "-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", path.display())).ok();
    }
}

/// On PostgreSQL the intraday tables are partitioned by month, so a week of one participant is
/// read from one or two partitions however many months are stored.
#[tokio::test]
async fn a_week_of_one_participant_is_read_from_one_or_two_monthly_partitions() {
    let test_db = TestDatabase::new(Backend::Postgres).await;
    let db = DatabaseArgs::url(test_db.url())
        .open_for_writing()
        .await
        .unwrap();
    // Six months of hourly heart rate for two participants.
    let start = at("2026-06-01T00:00:00Z");
    let points: Vec<IntradayPoint> = (0..24 * 183)
        .map(|h| IntradayPoint {
            datetime: UtcInstant::new(start.get() + TimeDelta::hours(h)),
            utc_offset_seconds: 0,
            value: 60 + h % 50,
        })
        .collect();
    db.prepare_intraday(points.iter().map(|p| p.datetime))
        .await
        .unwrap();
    let mut conn = db.acquire_for_writing().await.unwrap();
    let mut tx = conn.begin(Durability::Data).await.unwrap();
    for participant in ["p1", "p2"] {
        let n = tx
            .conn()
            .insert_intraday(
                IntradayTable::HeartRate,
                participant,
                "google-health",
                &points,
            )
            .await
            .unwrap();
        assert_eq!(n, points.len() as u64);
    }
    tx.commit().await.unwrap();
    conn.finish(Durability::Data).await;

    let ByBackend::Postgres(pool) = db.exec() else {
        unreachable!("a postgres:// URL")
    };
    let partitions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = 'heart_rate_intraday'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(
        partitions >= 7,
        "June to November, and the months ahead: {partitions}"
    );
    sqlx::query("ANALYZE heart_rate_intraday")
        .execute(pool)
        .await
        .unwrap();

    for (from, to, most) in [
        ("2026-09-08T00:00:00Z", "2026-09-15T00:00:00Z", 1),
        ("2026-09-28T00:00:00Z", "2026-10-05T00:00:00Z", 2),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN SELECT datetime, heart_rate_value FROM heart_rate_intraday \
             WHERE participant_id = $1 AND datetime >= $2 AND datetime < $3",
        )
        .bind("p1")
        .bind(at(from))
        .bind(at(to))
        .fetch_all(pool)
        .await
        .unwrap();
        // Scan nodes name their table: "Index Scan using … on heart_rate_intraday_p202609",
        // "Bitmap Heap Scan on …" (a "Bitmap Index Scan on" names an index instead).
        let mut scanned: Vec<&str> = plan
            .iter()
            .filter(|line| !line.contains("Bitmap Index Scan"))
            .filter_map(|line| line.split(" on ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .collect();
        scanned.sort();
        scanned.dedup();
        eprintln!("[{from}, {to}):\n{}", plan.join("\n"));
        assert!(
            !scanned.is_empty() && scanned.len() <= most,
            "[{from}, {to}) reads {scanned:?}"
        );
        assert!(
            scanned
                .iter()
                .all(|r| r.starts_with("heart_rate_intraday_p2026")),
            "{plan:?}"
        );
    }
    db.close().await;
    drop(test_db);
}

fn minutes(from: &str, n: i64, value: i64) -> Vec<IntradayPoint> {
    let start = at(from);
    (0..n)
        .map(|m| IntradayPoint {
            datetime: UtcInstant::new(start.get() + TimeDelta::minutes(m)),
            utc_offset_seconds: 3_600,
            value,
        })
        .collect()
}

/// Intraday points insert once whatever is already stored: a redelivered slice (all stored), a
/// re-read day overlapping the stored one (some stored) and a fresh one all go in the same
/// transaction, which stays usable after a chunk met a stored point; the stored value wins.
async fn intraday_points_are_stored_once(backend: Backend) {
    let test_db = TestDatabase::new(backend).await;
    let db = DatabaseArgs::url(test_db.url())
        .open_for_writing()
        .await
        .unwrap();
    let first = minutes("2026-11-01T00:00:00Z", 1_440, 60);
    let overlapping = minutes("2026-11-01T12:00:00Z", 1_440, 99);
    let fresh = minutes("2026-11-03T00:00:00Z", 10, 70);
    db.prepare_intraday(
        first
            .iter()
            .chain(&overlapping)
            .chain(&fresh)
            .map(|p| p.datetime),
    )
    .await
    .unwrap();

    let mut conn = db.acquire_for_writing().await.unwrap();
    let mut tx = conn.begin(Durability::Data).await.unwrap();
    let mut written = Vec::new();
    for points in [&first, &first, &overlapping, &fresh] {
        let n = tx
            .conn()
            .insert_intraday(IntradayTable::HeartRate, "p1", "google-health", points)
            .await
            .unwrap();
        written.push(n);
    }
    tx.commit().await.unwrap();
    conn.finish(Durability::Data).await;
    assert_eq!(written, [1_440, 0, 720, 10], "rows inserted by each call");

    let (rows, distinct, overwritten): (i64, i64, i64) = on_backend!(db.exec(), |e| {
        sqlx::query_as(
            "SELECT count(*), count(DISTINCT datetime), \
             count(*) FILTER (WHERE heart_rate_value = 99 AND datetime < $1) \
             FROM heart_rate_intraday WHERE participant_id = 'p1'",
        )
        .bind(at("2026-11-02T00:00:00Z"))
        .fetch_one(e)
        .await
    })
    .unwrap();
    assert_eq!((rows, distinct), (2_170, 2_170), "every point once");
    assert_eq!(overwritten, 0, "a stored point keeps its value");
    db.close().await;
    drop(test_db);
}

fitlink_shared::on_both_backends!(intraday_points_are_stored_once);
