//! A small chaos run on every submission: kills, storms and processes aborting at named fault
//! points, then the lost / duplicated / wrong check (`fitlink chaos`).

use fitlink_shared::store::Backend;
use fitlink_shared::store::testing::TestDatabase;

use crate::harness::BIN;

/// `fitlink chaos` at test size (12 participants × 2 days, 10 faults in 12 s) with `extra`
/// flags; asserts it passed and printed its counts.
async fn small_chaos_run(seed: &str, dir: &std::path::Path, extra: &[&str]) {
    let out = tokio::process::Command::new(BIN)
        .args([
            "chaos",
            "--participants",
            "12",
            "--days",
            "2",
            "--faults",
            "10",
            "--fault-window-secs",
            "12",
            "--timeout-secs",
            "240",
            "--seed",
            seed,
        ])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "seed {seed}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("lost"),
        "the run prints its counts:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_chaos_run_loses_duplicates_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for seed in ["42", "7"] {
        small_chaos_run(seed, &dir.path().join(seed), &[]).await;
    }
}

/// The same on PostgreSQL with two active writers on four results partitions (and a standby):
/// the kills hit active writers, whose partitions the standby takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_chaos_run_on_postgres_with_two_active_writers_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(Backend::Postgres).await;
    // Seed 3's schedule kills active writers twice.
    small_chaos_run(
        "3",
        dir.path(),
        &[
            "--writers",
            "2",
            "--partitions",
            "4",
            "--database-url",
            database.url(),
        ],
    )
    .await;
}
