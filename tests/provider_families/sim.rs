//! The simulator in this test process, bound to an ephemeral loopback port.

use fitlink_simulator::{SimConfig, SimParticipant};
use tokio::sync::oneshot;

/// A running simulator; stops when dropped.
pub struct Sim {
    /// `http://127.0.0.1:PORT`, the base of every simulated host (Google Health API, its token
    /// endpoint at `/token`, the legacy Fitbit API and its `/oauth2/token`).
    pub base_url: String,
    pub config: SimConfig,
    pub roster: Vec<SimParticipant>,
    _stop: oneshot::Sender<()>,
}

impl Sim {
    /// Starts the simulator with these command-line flags (e.g. `["--participants", "13",
    /// "--days", "14"]`).
    pub async fn start(flags: &[&str]) -> Sim {
        let config = SimConfig::from_flags(flags.iter().copied()).expect("simulator flags");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let served = config.clone();
        tokio::spawn(async move {
            fitlink_simulator::run(served, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("the simulator serves");
        });
        Sim {
            base_url,
            roster: fitlink_simulator::roster(&config),
            config,
            _stop: stop,
        }
    }

    /// `POST {base}/_sim/{path}` with a JSON body: the control API (restatements, scopes, ...).
    pub async fn control(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = fitlink_shared::provider::http_client()
            .post(format!("{}/_sim/{path}", self.base_url))
            .json(&body)
            .send()
            .await
            .expect("the control API answers");
        assert!(
            response.status().is_success(),
            "POST /_sim/{path}: {}",
            response.status()
        );
        response.json().await.expect("the control API answers JSON")
    }

    /// `GET {base}/_sim/stats`: every request the simulator served, by endpoint and participant.
    pub async fn stats(&self) -> serde_json::Value {
        fitlink_shared::provider::http_client()
            .get(format!("{}/_sim/stats", self.base_url))
            .send()
            .await
            .expect("the stats answer")
            .json()
            .await
            .expect("the stats are JSON")
    }

    pub fn participant(&self, id: &str) -> &SimParticipant {
        self.roster
            .iter()
            .find(|p| p.participant_id == id)
            .unwrap_or_else(|| panic!("{id} is not in the roster"))
    }
}
