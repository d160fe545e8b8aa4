//! The dispatcher's one way to change anything: a confirmed publish of a [`WriterCommand`] to the
//! results queue, where the one active writer applies it.

use anyhow::Context as _;
use fitlink_shared::broker::{self, Headers, PublishError, Publisher, Topology};
use fitlink_shared::config::BrokerArgs;
use fitlink_shared::domain::ParticipantId;
use fitlink_shared::messages::{
    ImportBatch, JOB_HEADER, PARTICIPANT_HEADER, SyncRequest, SyncTrigger, WriterCommand,
    now_instant,
};
use lapin::Connection;
use uuid::Uuid;

/// A broker session for publishing: its own connection (a resource alarm blocks publishing
/// connections, and this one must not stall anyone's consumer), the topology declared (so a
/// fresh broker works), and a publisher with confirms.
pub(crate) struct Outbox {
    pub(crate) conn: Connection,
    pub(crate) topology: Topology,
    publisher: Publisher,
}

impl Outbox {
    pub(crate) async fn open(args: &BrokerArgs, purpose: &str) -> anyhow::Result<Self> {
        let conn = broker::connect(args, purpose)
            .await
            .context("cannot connect to the broker")?;
        let topology = args.topology();
        let channel = conn
            .create_channel()
            .await
            .context("cannot open a broker channel")?;
        topology
            .declare(&channel)
            .await
            .context("cannot declare the fleet's queues")?;
        let _ = channel.close(200, "OK".into()).await;
        let publisher = Publisher::open(&conn)
            .await
            .context("cannot open a publishing channel")?;
        Ok(Self {
            conn,
            topology,
            publisher,
        })
    }

    /// Publishes one command to the writer; returns once the broker has it durably.
    pub(crate) async fn send(&self, command: &WriterCommand) -> Result<(), PublishError> {
        let mut headers: Headers = Vec::new();
        if let Some(participant) = command.participant() {
            headers.push((
                PARTICIPANT_HEADER,
                broker::long_string(participant.as_str()),
            ));
        }
        if let WriterCommand::RequestSync(request) = command {
            headers.push((JOB_HEADER, broker::long_string(&request.job_id.to_string())));
        }
        // Everything about a participant goes to their partition's writer; an import is split
        // by participant before it gets here (`send_import`).
        let queue = match command.participant() {
            Some(participant) => self.topology.results_for(participant.as_str()),
            None => self.topology.results_default(),
        };
        self.publisher.publish_json(queue, command, headers).await
    }

    /// Publishes an import to the writers, one part per results partition; returns the import
    /// id of each part (the `imports` rows to wait for).
    pub(crate) async fn send_import(&self, batch: ImportBatch) -> Result<Vec<Uuid>, PublishError> {
        let mut ids = Vec::new();
        for (partition, part) in batch.split_by_partition(self.topology.partitions()) {
            let import_id = part.import_id;
            self.publisher
                .publish_json(
                    &self.topology.results[partition],
                    &WriterCommand::ImportParticipants(part),
                    Vec::new(),
                )
                .await?;
            ids.push(import_id);
        }
        Ok(ids)
    }

    /// Publishes a command that was split by partition itself (a reseal batch) to the writer of
    /// `partition`.
    pub(crate) async fn send_to_partition(
        &self,
        partition: usize,
        command: &WriterCommand,
    ) -> Result<(), PublishError> {
        self.publisher
            .publish_json(&self.topology.results[partition], command, Vec::new())
            .await
    }

    /// Asks the writer for a sync; returns the new job id.
    pub(crate) async fn request_sync(
        &self,
        participant_id: &ParticipantId,
        trigger: SyncTrigger,
        shape: RequestShape,
    ) -> Result<Uuid, PublishError> {
        let job_id = Uuid::now_v7();
        let command = WriterCommand::RequestSync(SyncRequest {
            job_id,
            participant_id: participant_id.clone(),
            trigger,
            force: shape.force,
            from: shape.from,
            replaces: shape.replaces,
            requested_at: now_instant(),
        });
        self.send(&command).await?;
        metrics::counter!("fitlink_dispatcher_requests_total", "trigger" => trigger.as_str())
            .increment(1);
        Ok(job_id)
    }

    pub(crate) async fn close(&self) {
        let _ = self.conn.close(200, "OK".into()).await;
    }
}

/// The optional parts of a [`SyncRequest`], by who asks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RequestShape {
    pub(crate) force: bool,
    pub(crate) from: Option<fitlink_shared::domain::UtcInstant>,
    pub(crate) replaces: Option<Uuid>,
}
