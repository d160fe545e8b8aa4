//! What a chaos run breaks, drawn from the seed, and how each fault is struck.

use std::collections::BTreeMap;

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;

use fitlink_shared::faults::FaultPoint;
use fitlink_simulator::{SimConfig, SimParticipant};

use super::cast::Cast;
use super::{SimControl, restart_broker};

/// One thing the schedule breaks.
#[derive(Clone, Copy, Debug)]
pub(super) enum Fault {
    KillWorker,
    KillActiveWriter,
    KillDispatcher,
    /// A process of the point's role that aborts when it first gets there.
    AbortAt(FaultPoint),
    Storm5xx,
    Storm429 {
        retry_after: bool,
    },
    SlowResponses,
    TruncatedBodies,
    /// Every device syncs this many minutes of new data; the simulator notifies.
    DeviceSync {
        minutes: u64,
    },
    /// One notification delivered a hundred times.
    NotificationFlood,
    /// Notifications with a bad signature (they must create nothing).
    ForgedNotifications,
    BrokerRestart,
}

impl Fault {
    pub(super) fn draw(rng: &mut StdRng, broker_restart: bool) -> Fault {
        let kinds = if broker_restart { 13 } else { 12 };
        match rng.random_range(0..kinds) {
            0 | 1 => Fault::KillWorker,
            2 => Fault::KillActiveWriter,
            3 => Fault::KillDispatcher,
            4 => Fault::AbortAt(FaultPoint::ALL[rng.random_range(0..FaultPoint::ALL.len())]),
            5 => Fault::Storm5xx,
            6 => Fault::Storm429 {
                retry_after: rng.random_bool(0.5),
            },
            7 => Fault::SlowResponses,
            8 => Fault::TruncatedBodies,
            9 => Fault::DeviceSync {
                minutes: rng.random_range(5..=30),
            },
            10 => Fault::NotificationFlood,
            11 => Fault::ForgedNotifications,
            _ => Fault::BrokerRestart,
        }
    }

    /// Strikes this fault at `target`.
    pub(super) async fn strike(
        self,
        target: &mut Target<'_>,
        rng: &mut StdRng,
    ) -> anyhow::Result<()> {
        match self {
            Fault::KillWorker => {
                if let Some(i) = (!target.cast.workers.is_empty())
                    .then(|| rng.random_range(0..target.cast.workers.len()))
                {
                    let name = target.cast.workers.remove(i);
                    target.cast.kill(&name).await?;
                }
                let w = target.cast.spawn("worker", &[])?;
                target.cast.workers.push(w);
            }
            Fault::KillActiveWriter => {
                // One of the oldest writers (active on its partitions); it comes back as a
                // standby for the same partitions.
                let i = rng.random_range(0..target.active_writers.min(target.cast.writers.len()));
                let (active, partitions) = target.cast.writers.remove(i);
                target.cast.kill(&active).await?;
                target.cast.spawn_writer(&partitions)?;
            }
            Fault::KillDispatcher => {
                target.cast.replace_dispatcher(&[]).await?;
            }
            Fault::AbortAt(point) => target.cast.arm(point, rng).await?,
            Fault::Storm5xx => {
                target
                    .sim
                    .post("/_sim/faults", json!({ "error_rate": 0.3 }))
                    .await?;
            }
            Fault::Storm429 { retry_after } => {
                let retry = retry_after.then_some(2);
                target
                    .sim
                    .post(
                        "/_sim/faults",
                        json!({ "rate_limit_rate": 0.3, "retry_after_secs": retry }),
                    )
                    .await?;
            }
            Fault::SlowResponses => {
                target
                    .sim
                    .post("/_sim/faults", json!({ "latency_ms": 300 }))
                    .await?;
            }
            Fault::TruncatedBodies => {
                let victims: BTreeMap<String, serde_json::Value> = target
                    .roster
                    .iter()
                    .filter(|_| rng.random_bool(0.1))
                    .map(|p| (p.participant_id.clone(), json!({ "truncate_body": true })))
                    .collect();
                target
                    .sim
                    .post("/_sim/faults", json!({ "participants": victims }))
                    .await?;
            }
            Fault::DeviceSync { minutes } => {
                target
                    .sim
                    .post("/_sim/advance", json!({ "minutes": minutes }))
                    .await?;
                target.sim_config.advance_minutes += minutes;
            }
            Fault::NotificationFlood => target.notify_one(rng, "steps", 100, false).await?,
            Fault::ForgedNotifications => target.notify_one(rng, "heart-rate", 10, true).await?,
            Fault::BrokerRestart => {
                restart_broker().await?;
            }
        }
        Ok(())
    }
}

/// What a fault acts on.
pub(super) struct Target<'a> {
    pub(super) cast: &'a mut Cast,
    pub(super) sim: &'a SimControl,
    pub(super) roster: &'a [SimParticipant],
    /// The simulator's settings, kept in step with its clock (the truth is computed from them).
    pub(super) sim_config: &'a mut SimConfig,
    /// `--writers`: the oldest this many writers are the active ones.
    pub(super) active_writers: usize,
}

impl Target<'_> {
    /// Has the simulator send `copies` Google notifications (`data_type` UPSERTs) about one
    /// participant drawn from the roster; `forged` ones carry a bad signature.
    async fn notify_one(
        &self,
        rng: &mut StdRng,
        data_type: &str,
        copies: u32,
        forged: bool,
    ) -> anyhow::Result<()> {
        let p = &self.roster[rng.random_range(0..self.roster.len())];
        let mut notice = json!({"participant": p.participant_id, "provider": "google-health",
                                "operation": "UPSERT", "data_type": data_type, "copies": copies});
        if forged {
            notice["bad_signature"] = json!(true);
        }
        self.sim.post("/_sim/webhooks/send", notice).await
    }
}
