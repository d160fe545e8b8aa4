//! `fitlink bench writer` on PostgreSQL, small: every figure it prints is there (each load, the
//! ceiling, the store, writer processes per partition count, each beside the ceiling), it
//! refuses a figure whose rows did not all go in once (checked inside the bench), and it leaves
//! none of its databases behind.

use std::process::Command;

use fitlink_shared::store::Backend;
use fitlink_shared::store::testing::{TestDatabase, postgres_server};
use sqlx::{Connection, PgConnection};

use crate::harness::BIN;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_writer_on_postgres_prints_every_figure_beside_the_ceiling_and_cleans_up() {
    let base = TestDatabase::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "bench",
            "writer",
            "--slices",
            "6",
            "--points",
            "40",
            "--participants",
            "3",
        ])
        .args(["--partitions", "1,2", "--database-url", base.url()])
        .arg("--dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("6 slices × 40 points = 240 intraday rows"),
        "{stdout}"
    );
    // The loads stand alone; the store and the writer processes are given beside the ceiling.
    for (line, ends) in [
        ("writer's UNNEST arrays, plain first", ")"),
        ("UNNEST arrays … ON CONFLICT every time", ")"),
        ("COPY to temp table + INSERT … ON CONFLICT", ")"),
        ("ceiling: bare COPY", ")"),
        ("writer's store in process", "% of ceiling"),
        ("1 writer process(es), 1 partition(s)", "% of ceiling"),
        ("2 writer process(es), 2 partition(s)", "% of ceiling"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(line) && l.contains("rows/s") && l.ends_with(ends)),
            "no {line:?} ending {ends:?}:\n{stdout}"
        );
    }

    let name = base.url().rsplit('/').next().unwrap().to_owned();
    let mut conn = PgConnection::connect(&format!("{}/postgres", postgres_server()))
        .await
        .unwrap();
    let left: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)")
            .bind(format!("{name}_"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.ok();
    assert!(left.is_empty(), "the bench left databases behind: {left:?}");
}
