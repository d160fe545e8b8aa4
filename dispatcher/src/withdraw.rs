//! `fitlink participants withdraw PARTICIPANT [--purge]`: a participant leaves the study.
//!
//! In this order, so that a failure leaves nothing half done:
//! 1. the grant is revoked at the provider (the program can no longer read their account, even
//!    with a copy of the token) — if the provider cannot be reached, nothing changes and the
//!    operator is told to try again (or to pass `--no-revoke` and revoke by other means);
//! 2. the writer, in one transaction, stops syncing them, deletes the credential, with `--purge`
//!    deletes every stored row of theirs, and writes an audit row (who, when, row counts; no
//!    token). The command waits for that commit and prints what was done.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use fitlink_shared::config::{BrokerArgs, DatabaseArgs, FitbitArgs, GoogleArgs, TokenKeyArgs};
use fitlink_shared::domain::{ParticipantId, ParticipantState, Provider};
use fitlink_shared::fetch;
use fitlink_shared::linkage::oauth::OAuthClient;
use fitlink_shared::messages::{ReplyBody, Withdrawal, WriterCommand, WriterReply, now_instant};
use fitlink_shared::replies::ReplyQueue;
use fitlink_shared::secret::SealedToken;
use serde::Serialize;
use uuid::Uuid;

use crate::outbox::Outbox;

/// Settings of `fitlink participants withdraw`.
#[derive(clap::Args, Clone, Debug)]
pub struct WithdrawArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub token_key: TokenKeyArgs,
    #[command(flatten)]
    pub google: GoogleArgs,
    #[command(flatten)]
    pub fitbit: FitbitArgs,
    /// Also delete every stored row of the participant (in the same transaction).
    #[arg(long)]
    pub purge: bool,
    /// Who asks (recorded in the audit row). Default: $USER.
    #[arg(long = "by", env = "USER", default_value = "unknown operator")]
    pub requested_by: String,
    /// Do not revoke the grant at the provider (when it cannot be reached and the grant is
    /// revoked by other means); the audit row says so.
    #[arg(long)]
    pub no_revoke: bool,
    /// How long to wait for the writer, in seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
    /// The participant id.
    pub participant: String,
}

/// What was done.
#[derive(Clone, Debug, Serialize)]
pub struct WithdrawReport {
    pub participant_id: ParticipantId,
    pub provider_revocation: String,
    pub purged: bool,
    pub rows_deleted: BTreeMap<String, u64>,
}

impl fmt::Display for WithdrawReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} is withdrawn: no more syncing, credential deleted, audit row written",
            self.participant_id
        )?;
        let grant = match self.provider_revocation.as_str() {
            "revoked" => "revoked at the provider",
            "already_invalid" => "already invalid at the provider",
            "no_credential" => "no credential was stored",
            "not_attempted" => "not revoked (--no-revoke): revoke it by other means",
            other => other,
        };
        writeln!(f, "  provider grant: {grant}")?;
        if self.purged {
            let total: u64 = self.rows_deleted.values().sum();
            writeln!(f, "  data purged: {total} row(s)")?;
            for (table, rows) in &self.rows_deleted {
                writeln!(f, "    {table}: {rows}")?;
            }
        } else {
            writeln!(f, "  stored data kept (use --purge to delete it)")?;
        }
        Ok(())
    }
}

pub async fn withdraw(args: &WithdrawArgs) -> anyhow::Result<WithdrawReport> {
    let participant_id = ParticipantId::new(args.participant.trim())
        .map_err(|e| anyhow::anyhow!("{:?} is not a participant id: {e}", args.participant))?;
    let db = args.database.open_for_reading("withdraw").await?;
    let row: Option<(String, String, Option<SealedToken>)> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT p.provider, p.state, c.sealed_refresh_token
             FROM participants p LEFT JOIN credentials c ON c.participant_id = p.participant_id
             WHERE p.participant_id = $1",
        )
        .bind(participant_id.as_str()),
        optional
    )
    .context("cannot read the participant")?;
    db.close().await;
    let Some((provider, state, sealed)) = row else {
        anyhow::bail!("unknown participant {participant_id}; nothing was changed");
    };
    anyhow::ensure!(
        state != ParticipantState::Withdrawn.as_str(),
        "{participant_id} has already withdrawn; nothing was changed"
    );
    let provider: Provider = provider
        .parse()
        .map_err(|e| anyhow::anyhow!("participant {participant_id}: {e}"))?;

    let provider_revocation = if args.no_revoke {
        "not_attempted".to_owned()
    } else {
        match sealed {
            None => "no_credential".to_owned(),
            Some(sealed) => revoke(args, &participant_id, provider, sealed).await?,
        }
    };

    let outbox = Outbox::open(&args.broker, "withdraw").await?;
    let replies = ReplyQueue::<WriterReply>::start(&outbox.conn)
        .await
        .context("cannot open a reply queue")?;
    let request_id = Uuid::now_v7();
    let reply = replies.expect(request_id);
    outbox
        .send(&WriterCommand::Withdraw(Withdrawal {
            request_id,
            participant_id: participant_id.clone(),
            purge: args.purge,
            requested_by: args.requested_by.clone(),
            provider_revocation: provider_revocation.clone(),
            at: now_instant(),
            reply_to: Some(replies.queue().to_owned()),
        }))
        .await
        .context("cannot hand the withdrawal to the writer")?;
    let wait = Duration::from_secs(args.wait_secs.max(1));
    let reply = reply.answer_within(wait).await;
    outbox.close().await;
    let reply = match reply {
        Ok(reply) => reply.reply,
        Err(_) => anyhow::bail!(
            "the writer has not confirmed the withdrawal of {participant_id} within {}s (is a writer running?); it stays queued and is applied when the writer runs. Provider grant: {provider_revocation}",
            wait.as_secs()
        ),
    };
    match reply {
        ReplyBody::Withdrawn {
            purged,
            rows_deleted,
            ..
        } => Ok(WithdrawReport {
            participant_id,
            provider_revocation,
            purged,
            rows_deleted,
        }),
        ReplyBody::Refused { reason, .. } => {
            anyhow::bail!("the writer refused the withdrawal of {participant_id}: {reason}")
        }
        ReplyBody::Linked { .. } => anyhow::bail!("the writer answered unexpectedly"),
    }
}

/// Revokes the stored grant at its provider; the text goes to the audit row.
async fn revoke(
    args: &WithdrawArgs,
    participant_id: &ParticipantId,
    provider: Provider,
    sealed: SealedToken,
) -> anyhow::Result<String> {
    let client = match provider {
        Provider::GoogleHealth => {
            anyhow::ensure!(
                !args.google.client_id.is_empty(),
                "revoking a Google grant needs FITLINK_GOOGLE_CLIENT_ID and FITLINK_GOOGLE_CLIENT_SECRET (or pass --no-revoke); nothing was changed"
            );
            OAuthClient::google(&args.google)
        }
        Provider::Fitbit => {
            anyhow::ensure!(
                !args.fitbit.client_id.is_empty(),
                "revoking a Fitbit grant needs FITLINK_FITBIT_CLIENT_ID and FITLINK_FITBIT_CLIENT_SECRET (or pass --no-revoke); nothing was changed"
            );
            OAuthClient::fitbit(&args.fitbit)
        }
    };
    let key = args.token_key.keys()?;
    let token = key
        .open(participant_id, &sealed)
        .context("cannot open the stored credential with these token keys; nothing was changed")?;
    match client.revoke(&token).await {
        Ok(revocation) => Ok(revocation.as_str().to_owned()),
        Err(error) => Err(anyhow::anyhow!(
            "cannot revoke {participant_id}'s grant at {provider}: {error}; nothing was changed (try again, or pass --no-revoke)"
        )),
    }
}
