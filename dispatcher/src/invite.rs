//! `fitlink invite`: consent links for coordinators to send.
//!
//! An invitation is a signed, expiring token naming one participant and one provider; the link
//! is `<public-url>/link/<token>`. It is recorded through the writer (so `fitlink status` shows
//! who was invited and whether they finished) and works once. `--needing-consent` invites every
//! participant whose grant is gone (revoked, expired, retired, missing a scope, never finished)
//! or runs out within two days.

use std::fmt;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use fitlink_shared::config::{BrokerArgs, DatabaseArgs, TokenKeyArgs};
use fitlink_shared::domain::{
    ParticipantId, ParticipantState, Provider, UtcInstant, parse_date_or_instant,
};
use fitlink_shared::linkage::invitation::InvitationSigner;
use fitlink_shared::messages::{Invitation, WriterCommand, instant};
use fitlink_shared::store::{Database, DbError};
use fitlink_shared::{fetch, on_backend};
use serde::Serialize;
use uuid::Uuid;

use crate::outbox::Outbox;
use crate::portal::{invitation_url, public_base};

/// Settings of `fitlink invite`.
#[derive(clap::Args, Clone, Debug)]
pub struct InviteArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub token_key: TokenKeyArgs,
    /// The portal's address as participants reach it (the dispatcher's FITLINK_PUBLIC_URL).
    #[arg(long, env = "FITLINK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Without FITLINK_PUBLIC_URL, links point at the portal directly: `http://<this>`.
    #[arg(long, env = "FITLINK_PORTAL_ADDR")]
    pub portal_addr: Option<std::net::SocketAddr>,
    /// Which provider's consent the link asks for.
    #[arg(long, default_value = "google-health")]
    pub provider: Provider,
    /// How long a link works, in hours.
    #[arg(long, env = "FITLINK_INVITATION_TTL_HOURS", default_value_t = 168)]
    pub ttl_hours: u32,
    /// For participants fitlink does not know yet: the first date or instant to sync. Default:
    /// `--backfill-days` before today.
    #[arg(long, value_parser = parse_date_or_instant)]
    pub sync_from: Option<DateTime<Utc>>,
    /// For new participants without `--sync-from`: how many days before today to start.
    #[arg(long, default_value_t = 30)]
    pub backfill_days: u32,
    /// Print CSV (participant_id,provider,invitation_url,expires_at,reason) for a mail merge.
    #[arg(long)]
    pub csv: bool,
    /// Invite every participant who needs a (new) consent, instead of naming them.
    #[arg(long, conflicts_with = "participants")]
    pub needing_consent: bool,
    /// Participant ids.
    #[arg(required_unless_present = "needing_consent")]
    pub participants: Vec<String>,
}

/// One link to send.
#[derive(Clone, Debug, Serialize)]
pub struct IssuedInvitation {
    pub participant_id: ParticipantId,
    pub provider: Provider,
    pub invitation_url: String,
    pub expires_at: UtcInstant,
    /// Why they are invited: `new`, or the state that needs consent.
    pub reason: String,
}

/// What `fitlink invite` issued.
#[derive(Clone, Debug, Serialize)]
pub struct InviteReport {
    pub invitations: Vec<IssuedInvitation>,
    #[serde(skip)]
    pub csv: bool,
}

impl fmt::Display for InviteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.csv {
            writeln!(
                f,
                "participant_id,provider,invitation_url,expires_at,reason"
            )?;
            for i in &self.invitations {
                writeln!(
                    f,
                    "{},{},{},{},{}",
                    i.participant_id, i.provider, i.invitation_url, i.expires_at, i.reason
                )?;
            }
            return Ok(());
        }
        if self.invitations.is_empty() {
            return writeln!(f, "nobody needs an invitation");
        }
        writeln!(
            f,
            "{} invitation(s); each link works once, until the time shown:",
            self.invitations.len()
        )?;
        for i in &self.invitations {
            writeln!(
                f,
                "  {}  ({}, {}, until {})\n    {}",
                i.participant_id, i.provider, i.reason, i.expires_at, i.invitation_url
            )?;
        }
        Ok(())
    }
}

/// What the database knows of a participant being invited.
struct Known {
    state: String,
}

/// Issues and records invitations. All or nothing: a malformed id or a withdrawn participant
/// refuses the whole call before anything is published.
pub async fn invite(args: &InviteArgs) -> anyhow::Result<InviteReport> {
    let key = args.token_key.keys()?;
    let signer = InvitationSigner::new(key.derive("invitation"));
    let public_base = public_base(args.public_url.as_deref(), args.portal_addr)?;
    let db = match args.database.open_for_reading("invite").await {
        Ok(db) => Some(db),
        Err(DbError::NotInitialised(_)) if !args.needing_consent => None,
        Err(error) => return Err(error.into()),
    };
    let now = Utc::now();

    let mut chosen: Vec<(ParticipantId, String)> = Vec::new();
    if args.needing_consent {
        let db = db.as_ref().expect("opened above");
        chosen = needing_consent(db, now)
            .await?
            .into_iter()
            .map(|(id, reason, _)| (id, reason))
            .collect();
    } else {
        let mut problems = Vec::new();
        for raw in &args.participants {
            let id = match ParticipantId::new(raw.trim()) {
                Ok(id) => id,
                Err(error) => {
                    problems.push(format!("{raw:?}: {error}"));
                    continue;
                }
            };
            if chosen.iter().any(|(c, _)| *c == id) {
                continue;
            }
            let known = match &db {
                Some(db) => known(db, &id).await?,
                None => None,
            };
            match known {
                Some(k) if k.state == ParticipantState::Withdrawn.as_str() => problems.push(
                    format!("{id} has withdrawn from the study and cannot be invited"),
                ),
                Some(k) => chosen.push((id, k.state)),
                None => chosen.push((id, "new".to_owned())),
            }
        }
        if !problems.is_empty() {
            anyhow::bail!("nothing was issued: {}", problems.join("; "));
        }
    }
    if let Some(db) = db {
        db.close().await;
    }

    let ttl = TimeDelta::hours(i64::from(args.ttl_hours.max(1)));
    let sync_from = args.sync_from.unwrap_or_else(|| {
        let day = (now - TimeDelta::days(i64::from(args.backfill_days))).date_naive();
        day.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
    });
    let mut report = InviteReport {
        invitations: Vec::with_capacity(chosen.len()),
        csv: args.csv,
    };
    if chosen.is_empty() {
        return Ok(report);
    }
    let outbox = Outbox::open(&args.broker, "invite").await?;
    for (participant_id, reason) in chosen {
        let invitation = Invitation {
            invitation_id: Uuid::now_v7(),
            participant_id: participant_id.clone(),
            provider: args.provider,
            sync_from: instant(sync_from),
            issued_at: instant(now),
            expires_at: instant(now + ttl),
        };
        let url = invitation_url(&public_base, &signer.sign(&invitation));
        outbox
            .send(&WriterCommand::RecordInvitation(invitation.clone()))
            .await
            .with_context(|| {
                format!(
                    "cannot record the invitation of {participant_id} (recorded before it: {})",
                    report.invitations.len()
                )
            })?;
        tracing::info!(%participant_id, invitation_id = %invitation.invitation_id, "issued an invitation");
        report.invitations.push(IssuedInvitation {
            participant_id,
            provider: args.provider,
            invitation_url: url,
            expires_at: invitation.expires_at,
            reason,
        });
    }
    outbox.close().await;
    Ok(report)
}

async fn known(db: &Database, id: &ParticipantId) -> anyhow::Result<Option<Known>> {
    let row: Option<(String,)> = fetch!(
        db.exec(),
        sqlx::query_as("SELECT state FROM participants WHERE participant_id = $1")
            .bind(id.as_str()),
        optional
    )
    .context("cannot read participants")?;
    Ok(row.map(|(state,)| Known { state }))
}

/// Participants in a state that needs consent, linked ones whose time-limited grant ends
/// within two days (re-consent before it runs out keeps the data flowing without a gap), and
/// syncing ones who did not permit a data family (`family_not_permitted`: unticked on the
/// consent page, e.g. sleep; a new consent may grant it).
pub async fn needing_consent(
    db: &Database,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<(ParticipantId, String, Provider)>> {
    let soon = UtcInstant::new(now + TimeDelta::hours(48));
    let states: Vec<&str> = ParticipantState::NEEDING_CONSENT
        .iter()
        .map(|s| s.as_str())
        .collect();
    let placeholders = (0..states.len())
        .map(|i| format!("${}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT participant_id, provider, CASE WHEN state IN ({placeholders}) THEN state
                WHEN refresh_token_expires_at IS NOT NULL AND refresh_token_expires_at <= $1 THEN 'grant_expiring'
                ELSE 'family_not_permitted' END
         FROM participants
         WHERE state IN ({placeholders})
            OR (state <> 'withdrawn' AND refresh_token_expires_at IS NOT NULL AND refresh_token_expires_at <= $1)
            OR (state <> 'withdrawn' AND EXISTS (SELECT 1 FROM family_permissions f
                                                 WHERE f.participant_id = participants.participant_id))
         ORDER BY participant_id"
    );
    // Only placeholders are interpolated; the states are bound.
    let rows: Vec<(String, String, String)> = on_backend!(db.exec(), |e| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(soon);
        for state in &states {
            query = query.bind(*state);
        }
        query.fetch_all(e).await
    })
    .context("cannot read participants needing consent")?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, provider, reason)| {
            let id = ParticipantId::new(id).ok()?;
            Some((id, reason, provider.parse().ok()?))
        })
        .collect())
}
