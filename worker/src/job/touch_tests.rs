//! Keep-alive jobs against the real broker (RabbitMQ on 127.0.0.1:5672, or `FITLINK_AMQP_URL`)
//! and a provider that counts what is asked of it. Each test uses its own namespace and deletes
//! its queues at the end.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use fitlink_shared::broker::{self, queue_depth};
use fitlink_shared::config::BrokerArgs;
use fitlink_shared::domain::{ParticipantId, Provider};
use fitlink_shared::messages::CredentialStored;
use fitlink_shared::provider::{AccessGrant, DailyFamilies, Intraday, PairedDevice, RequestBudget};
use futures_util::{FutureExt as _, StreamExt as _};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use uuid::Uuid;

use super::*;

/// What the fake provider's token endpoint does.
#[derive(Clone, Copy)]
enum Refresh {
    Rotates,
    Revoked,
}

struct CountingProvider {
    refresh: Refresh,
    refreshes: AtomicU32,
    data_calls: AtomicU32,
}

impl CountingProvider {
    fn new(refresh: Refresh) -> Self {
        Self {
            refresh,
            refreshes: AtomicU32::new(0),
            data_calls: AtomicU32::new(0),
        }
    }

    fn data_call<T>(&self) -> Result<T, SyncError> {
        self.data_calls.fetch_add(1, Ordering::SeqCst);
        Err(SyncError::transient("a keep-alive must not ask for data"))
    }
}

impl HealthProvider for CountingProvider {
    fn request_budget(&self) -> RequestBudget {
        RequestBudget::new(150, std::time::Duration::from_secs(3600))
    }

    async fn refresh(&self, _token: &Secret<String>) -> Result<AccessGrant, SyncError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        match self.refresh {
            Refresh::Rotates => Ok(AccessGrant {
                access_token: Secret::new("access-new".into()),
                expires_at: Utc::now() + TimeDelta::hours(8),
                rotated_refresh_token: Some(Secret::new("refresh-rotated".into())),
                scopes: vec![],
                provider_user_id: None,
            }),
            Refresh::Revoked => Err(SyncError::permanent(
                ParticipantState::Revoked,
                "invalid_grant",
            )),
        }
    }

    async fn paired_devices(&self, _: &Session) -> Result<Vec<PairedDevice>, SyncError> {
        self.data_call()
    }

    async fn time_zone(&self, _: &Session) -> Result<Option<String>, SyncError> {
        self.data_call()
    }

    async fn daily_families(
        &self,
        _: &Session,
        _: Range<NaiveDate>,
    ) -> Result<DailyFamilies, SyncError> {
        self.data_call()
    }

    async fn intraday(&self, _: &Session, _: Slice) -> Result<Intraday, SyncError> {
        self.data_call()
    }
}

struct Broker {
    conn: lapin::Connection,
    topology: Topology,
    publisher: Publisher,
    commits: RotationCommits,
}

impl Broker {
    async fn new() -> Broker {
        let args = BrokerArgs {
            amqp_url: Secret::new(
                std::env::var("FITLINK_AMQP_URL")
                    .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
            ),
            namespace: format!("t-touch-{}", Uuid::new_v4().simple()),
            results_partitions: 1,
        };
        let conn = broker::connect(&args, "worker-touch-test")
            .await
            .expect("RabbitMQ must be running on 127.0.0.1:5672 (or set FITLINK_AMQP_URL)");
        let topology = Topology::new(&args.namespace);
        topology
            .declare(&conn.create_channel().await.unwrap())
            .await
            .unwrap();
        let publisher = Publisher::open(&conn).await.unwrap();
        let commits = RotationCommits::start(&conn).await.unwrap();
        Broker {
            conn,
            topology,
            publisher,
            commits,
        }
    }

    async fn delete_queues(&self) {
        let channel = self.conn.create_channel().await.unwrap();
        for queue in self.topology.all_queues() {
            let _ = channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self.conn.close(200, "test done".into()).await;
    }

    /// Plays the writer: records every command's kind and confirms rotated credentials to
    /// the waiting job, as the writer does after its commit.
    async fn fake_writer(&self) -> Arc<Mutex<Vec<&'static str>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let channel = self.conn.create_channel().await.unwrap();
        let mut results = channel
            .basic_consume(
                self.topology.results[0].as_str().into(),
                "fake-writer".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let (publisher, record) = (self.publisher.clone(), seen.clone());
        tokio::spawn(async move {
            let _channel = channel;
            while let Some(Ok(delivery)) = results.next().await {
                let command: WriterCommand = serde_json::from_slice(&delivery.data).unwrap();
                record.lock().unwrap().push(command.kind());
                if let WriterCommand::RotateCredential(rotation) = &command {
                    let stored = CredentialStored {
                        job_id: rotation.job_id,
                        participant_id: rotation.participant_id.clone(),
                    };
                    let queue = rotation.reply_to.as_deref().unwrap();
                    publisher
                        .publish_json(queue, &stored, vec![])
                        .await
                        .unwrap();
                }
                delivery.ack(BasicAckOptions::default()).await.unwrap();
            }
        });
        seen
    }
}

/// Runs `test` on a broker namespace of its own, whose queues are deleted afterwards even
/// when the test fails.
async fn with_broker(test: impl AsyncFnOnce(&Broker)) {
    let broker = Broker::new().await;
    let outcome = std::panic::AssertUnwindSafe(test(&broker))
        .catch_unwind()
        .await;
    broker.delete_queues().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn touch_job(key: &TokenKeys) -> SyncJob {
    let participant = ParticipantId::new("p1").unwrap();
    SyncJob {
        job_id: Uuid::now_v7(),
        sealed_refresh_token: key.seal(&participant, &Secret::new("refresh-old".into())),
        participant_id: participant,
        provider: Provider::Fitbit,
        from: UtcInstant::parse("2026-10-01T00:00:00Z").unwrap(),
        sync_from: None,
        touch_only: true,
        identity_unknown: false,
        time_zone: None,
        granted_at: UtcInstant::parse("2026-10-02T00:00:00Z").unwrap(),
    }
}

fn context<'a>(
    provider: &'a CountingProvider,
    key: &'a TokenKeys,
    tokens: &'a AccessTokens,
    broker: &'a Broker,
) -> JobContext<'a, CountingProvider> {
    JobContext {
        provider,
        key,
        tokens,
        commits: &broker.commits,
        publisher: &broker.publisher,
        topology: &broker.topology,
        shape: JobShape {
            slice: TimeDelta::hours(12),
            summary_lookback_days: 2,
            max_window: TimeDelta::days(7),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_refreshes_through_the_provider_stores_a_rotated_token_and_nothing_else() {
    with_broker(async |broker| {
        let key = TokenKeys::parse(&fitlink_shared::secret::TokenKey::generate()).unwrap();
        let provider = CountingProvider::new(Refresh::Rotates);
        let tokens = AccessTokens::default();
        let job = touch_job(&key);
        // A cached access token does not count: the refresh token must reach the provider.
        tokens.put(
            job.participant_id.clone(),
            Secret::new("access-cached".into()),
            Utc::now() + TimeDelta::hours(8),
        );
        let seen = broker.fake_writer().await;

        let ran = context(&provider, &key, &tokens, broker)
            .run(&job, Arrival::First)
            .await;
        assert!(matches!(ran, Ok(Ran::Touched)), "{ran:?}");
        assert_eq!(provider.refreshes.load(Ordering::SeqCst), 1);
        assert_eq!(provider.data_calls.load(Ordering::SeqCst), 0);
        // The rotation was published and confirmed by the (fake) writer before the job
        // ended; nothing else was published.
        assert_eq!(*seen.lock().unwrap(), ["rotate_credential"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_comes_again_refreshes_its_own_token_even_with_an_access_token_cached() {
    // A worker died between refreshing this job's token and storing the rotation: the
    // provider's live token is known to nobody until a refresh with the job's token gets
    // the same pair again. A worker that had cached an access token for the participant
    // must not skip that refresh.
    with_broker(async |broker| {
        let key = TokenKeys::parse(&fitlink_shared::secret::TokenKey::generate()).unwrap();
        let provider = CountingProvider::new(Refresh::Rotates);
        let tokens = AccessTokens::default();
        let job = SyncJob {
            touch_only: false,
            ..touch_job(&key)
        };
        let cache = || {
            tokens.put(
                job.participant_id.clone(),
                Secret::new("access-cached".into()),
                Utc::now() + TimeDelta::hours(8),
            )
        };
        let seen = broker.fake_writer().await;

        cache();
        let first = context(&provider, &key, &tokens, broker)
            .run(&job, Arrival::First)
            .await;
        assert!(first.is_err(), "the counting provider has no data");
        assert_eq!(provider.refreshes.load(Ordering::SeqCst), 0, "cache used");

        cache();
        let again = context(&provider, &key, &tokens, broker)
            .run(&job, Arrival::Again)
            .await;
        assert!(again.is_err(), "the counting provider has no data");
        assert_eq!(provider.refreshes.load(Ordering::SeqCst), 1);
        assert_eq!(*seen.lock().unwrap(), ["rotate_credential"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_keep_alive_fails_as_a_revocation_with_the_refused_token() {
    with_broker(async |broker| {
        let key = TokenKeys::parse(&fitlink_shared::secret::TokenKey::generate()).unwrap();
        let provider = CountingProvider::new(Refresh::Revoked);
        let tokens = AccessTokens::default();
        let job = touch_job(&key);

        let failed = match context(&provider, &key, &tokens, broker)
            .run(&job, Arrival::First)
            .await
        {
            Err(failed) => failed,
            Ok(ran) => panic!("not failed: {ran:?}"),
        };
        assert!(matches!(
            failed.error,
            SyncError::Permanent {
                state: ParticipantState::Revoked,
                ..
            }
        ));
        assert_eq!(
            failed.progress.rejected_token,
            Some(job.sealed_refresh_token.clone())
        );
        assert_eq!(provider.data_calls.load(Ordering::SeqCst), 0);
        let channel = broker.conn.create_channel().await.unwrap();
        assert_eq!(
            queue_depth(&channel, &broker.topology.results[0]).await,
            Some(0)
        );
    })
    .await;
}
