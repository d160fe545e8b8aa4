//! The processes of a chaos run: spawned, killed, armed at a fault point and replaced.

use rand::Rng;
use rand::rngs::StdRng;

use fitlink_shared::faults::{FAULT_POINT_ENV, FaultPoint};

use crate::fleet::Fleet;

/// The processes of a chaos run and the names it gives them.
pub(super) struct Cast {
    pub(super) fleet: Fleet,
    pub(super) next: usize,
    pub(super) workers: Vec<String>,
    /// Writer processes and the partitions each consumes (`--partitions`), oldest first: on
    /// each partition the oldest writer holding it is the active one (single-active-consumer).
    pub(super) writers: Vec<(String, String)>,
    /// Processes armed at a fault point (they may have aborted already).
    pub(super) doomed: Vec<String>,
    /// The running dispatcher.
    pub(super) dispatcher: String,
}

impl Cast {
    pub(super) fn spawn(&mut self, role: &str, env: &[(&str, &str)]) -> anyhow::Result<String> {
        self.next += 1;
        let name = format!("{role}-{}", self.next);
        self.fleet.spawn_with_env(&name, &[role], env)?;
        Ok(name)
    }

    pub(super) fn spawn_writer(&mut self, partitions: &str) -> anyhow::Result<()> {
        self.next += 1;
        let name = format!("writer-{}", self.next);
        self.fleet
            .spawn_with_env(&name, &["writer", "--partitions", partitions], &[])?;
        self.writers.push((name, partitions.to_owned()));
        Ok(())
    }

    /// SIGKILLs a process; one that already died (an armed one that struck) is only forgotten.
    pub(super) async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let process = self.fleet.get(name);
        if process.child.try_wait()?.is_none() {
            process.kill().await?;
        }
        self.fleet.forget(name);
        Ok(())
    }

    /// Stops the dispatcher (if one runs) and starts another with `env`.
    pub(super) async fn replace_dispatcher(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        let old = std::mem::take(&mut self.dispatcher);
        if self.fleet.processes.iter().any(|p| p.name == old) {
            self.kill(&old).await?;
        }
        self.dispatcher = self.spawn("dispatcher", env)?;
        Ok(())
    }

    /// Starts a process armed at `point`: a worker beside the others; a writer in place of a
    /// killed active one (it stands by and aborts when it takes over and gets there); the
    /// dispatcher in place of the running one.
    pub(super) async fn arm(&mut self, point: FaultPoint, rng: &mut StdRng) -> anyhow::Result<()> {
        let env = [(FAULT_POINT_ENV, point.name())];
        let doomed = match point.role() {
            "writer" => {
                let i = rng.random_range(0..self.writers.len());
                let (active, partitions) = self.writers.remove(i);
                self.kill(&active).await?;
                self.next += 1;
                let name = format!("writer-{}", self.next);
                self.fleet
                    .spawn_with_env(&name, &["writer", "--partitions", &partitions], &env)?;
                self.writers.push((name.clone(), partitions));
                name
            }
            "dispatcher" => {
                self.replace_dispatcher(&env).await?;
                self.dispatcher.clone()
            }
            _ => self.spawn("worker", &env)?,
        };
        self.doomed.push(doomed);
        Ok(())
    }

    /// Stops every armed process (aborted or not) and starts an unarmed one in its place, so
    /// the fleet heals with every role and every partition served.
    pub(super) async fn disarm(&mut self, workers: usize) -> anyhow::Result<()> {
        for name in std::mem::take(&mut self.doomed) {
            if let Some(p) = self.fleet.processes.iter_mut().find(|p| p.name == name) {
                let _ = p.kill().await;
            }
            self.fleet.forget(&name);
        }
        let running = |fleet: &Fleet, name: &str| fleet.processes.iter().any(|p| p.name == name);
        self.workers.retain(|w| running(&self.fleet, w));
        while self.workers.len() < workers {
            let w = self.spawn("worker", &[])?;
            self.workers.push(w);
        }
        let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.writers)
            .into_iter()
            .partition(|(w, _)| running(&self.fleet, w));
        self.writers = kept;
        for (_, partitions) in gone {
            self.spawn_writer(&partitions)?;
        }
        if !running(&self.fleet, &self.dispatcher) {
            self.replace_dispatcher(&[]).await?;
        }
        Ok(())
    }
}
