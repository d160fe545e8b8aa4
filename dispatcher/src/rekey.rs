//! `fitlink credentials rekey`: every stored credential not sealed with the current token key is
//! sealed again with it, through the writer, so the older keys can then be dropped.
//!
//! The database is only read (keyset pages in participant order). Each credential is opened
//! with the key set and sealed with the current key; batches go to the writer as
//! [`WriterCommand::ResealCredentials`], which replaces a credential only where it still holds
//! the value read (a rotation or a re-consent committed meanwhile is newer and wins), and the
//! command waits for each batch to be committed before the next. Progress goes to stderr.
//! Resumable: a run that stopped leaves every credential either resealed or as it was, and the
//! next run picks what still needs it. A credential that opens with no key is reported by
//! participant and never sent: nothing about it changes.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use fitlink_shared::config::{BrokerArgs, DatabaseArgs, TokenKeyArgs};
use fitlink_shared::domain::ParticipantId;
use fitlink_shared::fetch;
use fitlink_shared::messages::{Reseal, ResealApplied, ResealBatch, WriterCommand};
use fitlink_shared::replies::ReplyQueue;
use fitlink_shared::secret::{KeyId, SealedToken, TokenKeys};
use fitlink_shared::store::Database;
use serde::Serialize;
use uuid::Uuid;

use crate::outbox::Outbox;

/// How many passes over the credentials one run makes at most: a credential that changed
/// between the read and the writer's commit is read again in the next pass.
const MAX_PASSES: usize = 3;

/// Settings of `fitlink credentials rekey`.
#[derive(clap::Args, Clone, Debug)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The key set: the new key first, then the older ones the credentials were sealed with.
    #[command(flatten)]
    pub token_key: TokenKeyArgs,
    /// Credentials per batch (one writer transaction each).
    #[arg(long, env = "FITLINK_REKEY_BATCH", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub batch: u32,
    /// How long to wait for a writer to commit one batch, in seconds (the batch stays queued
    /// and is applied when a writer runs; run the command again to finish).
    #[arg(long, default_value_t = 120)]
    pub wait_secs: u64,
}

/// A credential that opens with no key of the set.
#[derive(Clone, Debug, Serialize)]
pub struct Unopened {
    pub participant_id: String,
    pub problem: String,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RekeyReport {
    /// The current key, which every resealed credential now names.
    pub current_key: String,
    /// Credentials read (in the last pass).
    pub checked: u64,
    /// Sealed with the current key before this run (or by a rotation during it).
    pub already_current: u64,
    /// Sealed again by this run.
    pub resealed: u64,
    /// Not sealed with the current key at the end: they changed between the read and the
    /// commit in every pass (run again).
    pub remaining: u64,
    /// Credentials that open with no key of the set: reported, never changed.
    pub unopened: Vec<Unopened>,
}

impl RekeyReport {
    /// True when every stored credential is sealed with the current key: the older keys can go.
    pub fn complete(&self) -> bool {
        self.remaining == 0 && self.unopened.is_empty()
    }
}

impl fmt::Display for RekeyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} credential(s): {} resealed with key {}, {} already sealed with it",
            self.checked, self.resealed, self.current_key, self.already_current
        )?;
        if self.remaining > 0 {
            writeln!(
                f,
                "{} changed while being resealed and still use an older key: run the command again",
                self.remaining
            )?;
        }
        if !self.unopened.is_empty() {
            writeln!(
                f,
                "{} credential(s) open with no key of the set and were left unchanged:",
                self.unopened.len()
            )?;
            for u in &self.unopened {
                writeln!(f, "  {}: {}", u.participant_id, u.problem)?;
            }
        }
        if self.complete() {
            writeln!(
                f,
                "every credential is sealed with key {}: the older keys can be dropped once the retry queues are empty (docs/operations.md)",
                self.current_key
            )?;
        } else {
            writeln!(f, "keep the older keys in FITLINK_TOKEN_KEYS for now")?;
        }
        Ok(())
    }
}

/// The work of one pass.
#[derive(Default)]
struct Pass {
    checked: u64,
    already_current: u64,
    resealed: u64,
    changed_since_read: u64,
    unopened: Vec<Unopened>,
}

pub async fn rekey(args: &RekeyArgs) -> anyhow::Result<RekeyReport> {
    let keys = args.token_key.keys()?;
    let current = keys.current().id();
    let db = args.database.open_for_reading("rekey").await?;
    let outbox = Outbox::open(&args.broker, "rekey").await?;
    let replies = ReplyQueue::<ResealApplied>::start(&outbox.conn)
        .await
        .context("cannot open a reply queue for the writer's answers")?;
    let total: i64 = fetch!(
        db.exec(),
        sqlx::query_scalar("SELECT count(*) FROM credentials"),
        one
    )
    .context("cannot count the stored credentials")?;
    eprintln!(
        "rekey: {total} stored credential(s); sealing those not sealed with key {current} again (keys held: {})",
        keys.ids()
    );
    let mut resealed = 0;
    let mut pass = Pass::default();
    for number in 1..=MAX_PASSES {
        pass = one_pass(args, &db, &keys, current, &outbox, &replies, total).await?;
        resealed += pass.resealed;
        if pass.changed_since_read == 0 {
            break;
        }
        eprintln!(
            "rekey: pass {number}: {} credential(s) changed while being resealed; reading them again",
            pass.changed_since_read
        );
    }
    outbox.close().await;
    db.close().await;
    Ok(RekeyReport {
        current_key: current.to_string(),
        checked: pass.checked,
        already_current: pass.already_current,
        resealed,
        remaining: pass.changed_since_read,
        unopened: pass.unopened,
    })
}

async fn one_pass(
    args: &RekeyArgs,
    db: &Database,
    keys: &TokenKeys,
    current: KeyId,
    outbox: &Outbox,
    replies: &ReplyQueue<ResealApplied>,
    total: i64,
) -> anyhow::Result<Pass> {
    let mut pass = Pass::default();
    let mut after = String::new();
    loop {
        let page: Vec<(String, SealedToken)> = fetch!(
            db.exec(),
            sqlx::query_as(
                "SELECT participant_id, sealed_refresh_token FROM credentials \
                 WHERE participant_id > $1 ORDER BY participant_id LIMIT $2"
            )
            .bind(&after)
            .bind(i64::from(args.batch)),
            all
        )
        .context("cannot read the stored credentials")?;
        let Some((last, _)) = page.last() else {
            return Ok(pass);
        };
        after = last.clone();
        pass.checked += page.len() as u64;
        let mut batch = Vec::new();
        for (participant, sealed) in page {
            if sealed.key_id() == Some(current) {
                pass.already_current += 1;
                continue;
            }
            match reseal(keys, &participant, sealed) {
                Ok(reseal) => batch.push(reseal),
                Err(problem) => pass.unopened.push(Unopened {
                    participant_id: participant,
                    problem,
                }),
            }
        }
        if !batch.is_empty() {
            let applied = send_and_wait(args, outbox, replies, batch).await?;
            pass.resealed += u64::from(applied.replaced);
            pass.changed_since_read += u64::from(applied.changed_since_read);
        }
        eprintln!(
            "rekey: {} of {total} checked, {} resealed, {} already current, {} changed meanwhile, {} do not open",
            pass.checked,
            pass.resealed,
            pass.already_current,
            pass.changed_since_read,
            pass.unopened.len()
        );
    }
}

/// The credential sealed with the current key, or why it cannot be (never the token).
fn reseal(keys: &TokenKeys, participant: &str, sealed: SealedToken) -> Result<Reseal, String> {
    let participant_id = ParticipantId::new(participant)
        .map_err(|e| format!("the stored participant id is not valid: {e}"))?;
    let token = keys
        .open(&participant_id, &sealed)
        .map_err(|e| e.to_string())?;
    Ok(Reseal {
        sealed: keys.seal(&participant_id, &token),
        participant_id,
        expected: sealed,
    })
}

/// Publishes one batch (a part per results partition) and waits until each part's writer
/// committed it; the counts of every part added up.
async fn send_and_wait(
    args: &RekeyArgs,
    outbox: &Outbox,
    replies: &ReplyQueue<ResealApplied>,
    credentials: Vec<Reseal>,
) -> anyhow::Result<ResealApplied> {
    let request_id = Uuid::now_v7();
    let batch = ResealBatch {
        request_id,
        credentials,
        reply_to: Some(replies.queue().to_owned()),
    };
    let mut waiting = Vec::new();
    for (partition, part) in batch.split_by_partition(outbox.topology.partitions()) {
        let request_id = part.request_id;
        let reply = replies.expect(request_id);
        if let Err(e) = outbox
            .send_to_partition(partition, &WriterCommand::ResealCredentials(part))
            .await
        {
            return Err(anyhow::Error::new(e).context(
                "cannot hand a batch to the writer; nothing of it changed (run the command again)",
            ));
        }
        waiting.push(reply);
    }
    let wait = Duration::from_secs(args.wait_secs.max(1));
    let mut total = ResealApplied {
        request_id,
        replaced: 0,
        changed_since_read: 0,
    };
    for reply in waiting {
        match reply.answer_within(wait).await {
            Ok(applied) => {
                total.replaced += applied.replaced;
                total.changed_since_read += applied.changed_since_read;
            }
            Err(_) => {
                anyhow::bail!(
                    "no writer committed a batch within {}s (is a writer running?); it stays queued and is applied when a writer runs. Nothing is lost: run `fitlink credentials rekey` again to finish",
                    wait.as_secs()
                );
            }
        }
    }
    Ok(total)
}
