//! `fitlink bench webhooks`: how long after a device sync its data is stored when the provider's
//! webhooks drive the fleet, and what each device sync costs in provider requests.
//!
//! The fleet runs with the portal and an hourly schedule (so nothing but the webhooks asks for
//! syncs after the first round); the simulator's devices sync `--minutes` of new data per round
//! and it sends its signed notifications. Each participant's latency is the time from the device
//! sync to the moment their cursor reached the new latest sync (the data committed).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use fitlink_shared::domain::UtcInstant;
use fitlink_shared::fetch;
use serde_json::json;

use crate::demo::{self, DemoArgs};
use crate::fleet;

#[derive(Args, Debug)]
pub struct WebhookBench {
    #[command(flatten)]
    pub fleet: DemoArgs,
    /// Device syncs to measure.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Minutes of new data each device sync brings.
    #[arg(long, default_value_t = 15)]
    pub minutes: u64,
    /// The dispatcher's coalescing window (FITLINK_WEBHOOK_COALESCE_MS).
    #[arg(long, default_value_t = 1000)]
    pub coalesce_ms: u64,
}

/// The Google webhook secret both sides of the benchmark use.
const SECRET: &str = "Bearer bench-webhook-secret";

pub async fn run(args: WebhookBench) -> anyhow::Result<()> {
    let port = fleet::free_port()?;
    let portal = format!("http://127.0.0.1:{port}");
    let portal_env = [
        ("FITLINK_PORTAL_ADDR", format!("127.0.0.1:{port}")),
        ("FITLINK_PUBLIC_URL", portal.clone()),
        ("FITLINK_GOOGLE_WEBHOOK_SECRET", SECRET.to_owned()),
        ("FITLINK_WEBHOOK_COALESCE_MS", args.coalesce_ms.to_string()),
        // Only the first round polls; later syncs are the webhooks' doing.
        ("FITLINK_SYNC_INTERVAL_SECS", "3600".to_owned()),
    ];
    let mut running = demo::start_fleet(&args.fleet, |sim| {
        let mut env: Vec<(String, String)> = portal_env.map(|(k, v)| (k.to_owned(), v)).to_vec();
        env.push((
            "FITLINK_GOOGLE_WEBHOOK_KEYSET".into(),
            format!("{sim}/_sim/webhooks/keyset.json"),
        ));
        env
    })
    .await?;
    running.wait_settled(&args.fleet).await?;
    let http = fitlink_shared::provider::http_client();
    let sim = running.sim.base_url.clone();
    let configured = http
        .post(format!("{sim}/_sim/webhooks"))
        .json(&json!({"google_webhook_url": format!("{portal}/webhooks/google"), "google_webhook_secret": SECRET}))
        .send()
        .await?;
    anyhow::ensure!(
        configured.status().is_success(),
        "cannot point the simulator's webhooks at the portal: {}",
        configured.status()
    );

    let mut latencies: Vec<Duration> = Vec::new();
    let mut requests_per_sync: Vec<f64> = Vec::new();
    let participants = args.fleet.participants;
    for round in 1..=args.rounds {
        let before = running.sim_stats().await?["requests_total"]
            .as_u64()
            .unwrap_or(0);
        running.sim_config.advance_minutes += args.minutes;
        let targets: BTreeMap<String, String> = fitlink_simulator::roster(&running.sim_config)
            .into_iter()
            .map(|p| {
                let minute = p.latest_sync.timestamp().div_euclid(60) * 60;
                let at = chrono::DateTime::from_timestamp(minute, 0).unwrap_or(p.latest_sync);
                (p.participant_id, UtcInstant::new(at).to_text())
            })
            .collect();
        let synced_at = Instant::now();
        let advanced = http
            .post(format!("{sim}/_sim/advance"))
            .json(&json!({"minutes": args.minutes}))
            .send()
            .await?;
        anyhow::ensure!(
            advanced.status().is_success(),
            "the simulator did not advance"
        );

        let mut waiting = targets;
        let deadline = synced_at + Duration::from_secs(args.fleet.timeout_secs);
        while !waiting.is_empty() {
            running.fleet.check_alive()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} participants had not caught up {} s after the device sync",
                waiting.len(),
                args.fleet.timeout_secs
            );
            let cursors: Vec<(String, UtcInstant)> = fetch!(
                running.db.exec(),
                sqlx::query_as("SELECT participant_id, sync_cursor FROM participants"),
                all
            )
            .context("cannot read cursors")?;
            for (id, cursor) in cursors {
                let cursor = cursor.to_text();
                if waiting.get(&id).is_some_and(|target| cursor >= *target) {
                    waiting.remove(&id);
                    latencies.push(synced_at.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        running.wait_settled(&args.fleet).await?;
        let after = running.sim_stats().await?["requests_total"]
            .as_u64()
            .unwrap_or(0);
        let per_participant = (after - before) as f64 / participants.max(1) as f64;
        requests_per_sync.push(per_participant);
        eprintln!(
            "round {round}: everyone stored {:.2} s after the device sync; {per_participant:.1} provider requests per participant",
            latencies.last().copied().unwrap_or_default().as_secs_f64()
        );
    }

    // For comparison: what a poll costs when the device has not synced since (the schedule's
    // price for each participant, each interval, with or without new data).
    let before = running.sim_stats().await?["requests_total"]
        .as_u64()
        .unwrap_or(0);
    let ids: Vec<String> = fitlink_simulator::roster(&running.sim_config)
        .into_iter()
        .map(|p| p.participant_id)
        .collect();
    let env = &running.fleet.env;
    fitlink_dispatcher::enqueue(&env.broker(), &env.database(), &ids, None).await?;
    let deadline = Instant::now() + Duration::from_secs(args.fleet.timeout_secs);
    loop {
        let (finished,): (i64,) = fetch!(
            running.db.exec(),
            sqlx::query_as(
                "SELECT count(*) FROM sync_jobs \
                 WHERE requested_by = 'manual' AND finished_at IS NOT NULL",
            ),
            one
        )?;
        if finished >= ids.len() as i64 {
            break;
        }
        running.fleet.check_alive()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "the comparison polls did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let empty_poll = (running.sim_stats().await?["requests_total"]
        .as_u64()
        .unwrap_or(0)
        - before) as f64
        / participants.max(1) as f64;
    running.stop().await;

    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or_default().as_secs_f64()
    };
    let requests = requests_per_sync.iter().sum::<f64>() / requests_per_sync.len().max(1) as f64;
    println!(
        "webhooks: {participants} participants × {} device syncs of {} min, {} workers × {} jobs, latency {} ms, coalescing {} ms: device sync → stored p50 {:.2} s, p95 {:.2} s, max {:.2} s; {requests:.1} provider requests per participant per device sync; a poll that finds nothing new costs {empty_poll:.1}",
        args.rounds,
        args.minutes,
        args.fleet.workers,
        args.fleet.concurrency,
        args.fleet.latency_ms,
        args.coalesce_ms,
        at(0.5),
        at(0.95),
        at(1.0),
    );
    Ok(())
}
