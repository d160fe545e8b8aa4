//! The participant portal and the provider webhooks: the dispatcher's HTTP server.
//!
//! - **Consent** ([`consent`]): `GET /link/{invitation}` sends the participant to the provider's
//!   consent screen (PKCE S256, `state` bound to the invitation and to this browser);
//!   `GET /oauth/callback` exchanges the code, checks who the account is, and has the writer store
//!   the sealed refresh token. The confirmation page is shown only after the writer committed.
//! - **Webhooks** ([`webhooks`]): Google Health subscriber notifications and legacy Fitbit
//!   subscriptions. Checked (secret, signature, size, shape), answered at once, and turned into
//!   sync requests through a [`coalesce::Coalescer`], so a burst of notifications is one job.
//!
//! Like the rest of the dispatcher, the portal never writes the database: every change is a
//! [`WriterCommand`] on the results queue. It keeps no session either: the OAuth `state` and a
//! cookie are sealed values ([`FlowSealer`]), so the portal can restart (or run as several
//! replicas) in the middle of a participant's consent.

pub(crate) mod coalesce;
mod consent;
mod pages;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use fitlink_shared::broker;
use fitlink_shared::config::{BrokerArgs, DatabaseArgs, FitbitArgs, GoogleArgs, TokenKeyArgs};
use fitlink_shared::linkage::invitation::InvitationSigner;
use fitlink_shared::linkage::oauth::OAuthClient;
use fitlink_shared::linkage::sealed::FlowSealer;
use fitlink_shared::messages::WriterReply;
use fitlink_shared::provider::google::GoogleHealthClient;
use fitlink_shared::replies::ReplyQueue;
use fitlink_shared::secret::{Secret, TokenKeys};
use fitlink_shared::store::{Database, DbError};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;

/// Settings of the portal (served by `fitlink dispatcher` when `--portal-addr` is set).
#[derive(clap::Args, Clone, Debug)]
pub struct PortalArgs {
    /// Where to serve the participant portal and the provider webhooks (put a TLS proxy in front:
    /// providers deliver webhooks over HTTPS only). Unset: neither is served.
    #[arg(long, env = "FITLINK_PORTAL_ADDR")]
    pub portal_addr: Option<SocketAddr>,
    /// The portal's address as participants and providers reach it, e.g.
    /// `https://link.example.org`. Invitation links and the OAuth redirect URI
    /// (`<public-url>/oauth/callback`, to register with each provider) are built from it.
    /// Default: `http://<portal-addr>`.
    #[arg(long, env = "FITLINK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The program's name as participants know it, shown on the consent pages.
    #[arg(
        long,
        env = "FITLINK_PROGRAM_NAME",
        default_value = "the research program"
    )]
    pub program_name: String,
    /// Seal the refresh tokens the portal receives; also key invitation signatures and the
    /// consent flow's sealed state (derived sub-keys). Required with `--portal-addr`; when given,
    /// the dispatcher checks at start that they open the stored credentials.
    #[command(flatten)]
    pub token_key: TokenKeyArgs,
    /// The Google Health subscriber's `endpointAuthorization.secret`, exactly as configured
    /// (e.g. `Bearer <random>`): the verification handshake must present it.
    #[arg(
        long,
        env = "FITLINK_GOOGLE_WEBHOOK_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub google_webhook_secret: Secret<String>,
    /// Google's public keyset for webhook signatures (Tink JSON): a URL or a file path.
    #[arg(
        long,
        env = "FITLINK_GOOGLE_WEBHOOK_KEYSET",
        default_value = fitlink_shared::linkage::webhook::google::PUBLIC_KEYSET_URL
    )]
    pub google_webhook_keyset: String,
    /// The legacy Fitbit subscriber's verification code (from the app's settings page).
    #[arg(
        long,
        env = "FITLINK_FITBIT_WEBHOOK_VERIFICATION_CODE",
        default_value = "",
        hide_env_values = true
    )]
    pub fitbit_verification_code: Secret<String>,
    /// Notifications for one participant within this window (milliseconds) become one sync
    /// request.
    #[arg(long, env = "FITLINK_WEBHOOK_COALESCE_MS", default_value_t = 1000)]
    pub webhook_coalesce_ms: u64,
    /// Larger webhook bodies are refused (413) and counted.
    #[arg(long, env = "FITLINK_WEBHOOK_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub webhook_max_body_bytes: usize,
}

impl PortalArgs {
    /// The public base URL without a trailing slash.
    pub fn public_base(&self) -> anyhow::Result<String> {
        public_base(self.public_url.as_deref(), self.portal_addr)
    }

    pub fn key(&self) -> anyhow::Result<TokenKeys> {
        self.token_key.keys_if_given()?.context(
            "the portal needs FITLINK_TOKEN_KEYS or FITLINK_TOKEN_KEY (it seals the tokens it receives)",
        )
    }
}

/// The portal's base URL without a trailing slash: `public_url`, or `http://<portal_addr>`
/// when the portal is reached directly (a laptop, a test).
pub fn public_base(
    public_url: Option<&str>,
    portal_addr: Option<SocketAddr>,
) -> anyhow::Result<String> {
    match (public_url, portal_addr) {
        (Some(url), _) => {
            let url = url.trim().trim_end_matches('/');
            anyhow::ensure!(
                url.starts_with("https://") || url.starts_with("http://"),
                "FITLINK_PUBLIC_URL must be an http(s) URL, got {url:?}"
            );
            Ok(url.to_owned())
        }
        (None, Some(addr)) => Ok(format!("http://{addr}")),
        (None, None) => anyhow::bail!(
            "set FITLINK_PUBLIC_URL (the portal's address as participants reach it) or FITLINK_PORTAL_ADDR"
        ),
    }
}

/// The portal's link URL for an invitation token.
pub fn invitation_url(public_base: &str, token: &str) -> String {
    format!("{public_base}/link/{token}")
}

/// The redirect URI to register with each provider.
pub fn redirect_uri(public_base: &str) -> String {
    format!("{public_base}/oauth/callback")
}

/// Everything the handlers share.
pub(crate) struct Portal {
    program_name: String,
    public_base: String,
    signer: InvitationSigner,
    sealer: FlowSealer,
    key: TokenKeys,
    /// The consent flows this deployment offers (a provider without a client id is off).
    google: Option<OAuthClient>,
    fitbit: Option<OAuthClient>,
    /// Asks Google Health who the consenting account is.
    google_api: GoogleHealthClient,
    outbox: Arc<Outbox>,
    replies: ReplyQueue<WriterReply>,
    /// The connection the replies arrive on (kept open as long as the portal serves).
    _replies_conn: lapin::Connection,
    database: ReadOnlyDatabase,
    webhooks: webhooks::WebhookSettings,
    coalescer: coalesce::Coalescer,
}

/// How long the callback waits for the writer to commit a consent before telling the
/// participant it was received but not yet confirmed.
const LINK_COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the portal on `args.portal_addr` (if set) until `shutdown`; returns the bound address.
pub(crate) async fn start(
    args: &PortalArgs,
    broker: &BrokerArgs,
    google: &GoogleArgs,
    fitbit: &FitbitArgs,
    database: &DatabaseArgs,
    outbox: Arc<Outbox>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = args.portal_addr else {
        return Ok(None);
    };
    let key = args.key()?;
    let public_base = args.public_base()?;
    // Replies are consumed on a connection of their own: a resource alarm blocks publishing
    // connections, and the participant's page waits on this one.
    let replies_conn = broker::connect(broker, "portal-replies")
        .await
        .context("cannot connect to the broker for the portal's replies")?;
    let replies = ReplyQueue::start(&replies_conn)
        .await
        .context("cannot open the portal's reply queue")?;
    let coalescer = coalesce::Coalescer::start(
        outbox.clone(),
        Duration::from_millis(args.webhook_coalesce_ms.max(1)),
        shutdown.clone(),
    );
    let portal = Arc::new(Portal {
        program_name: args.program_name.clone(),
        signer: InvitationSigner::with_keys(key.derive_all("invitation")),
        sealer: FlowSealer::with_keys(key.derive_all("consent-flow")),
        key,
        google: (!google.client_id.is_empty()).then(|| OAuthClient::google(google)),
        fitbit: (!fitbit.client_id.is_empty()).then(|| OAuthClient::fitbit(fitbit)),
        google_api: GoogleHealthClient::new(google),
        public_base,
        outbox,
        replies,
        _replies_conn: replies_conn,
        database: ReadOnlyDatabase::new(database),
        webhooks: webhooks::WebhookSettings::load(args, fitbit).await,
        coalescer,
    });
    let app = Router::new()
        .route("/", get(consent::home))
        .route("/link/{invitation}", get(consent::link))
        .route("/oauth/callback", get(consent::callback))
        .merge(webhooks::routes())
        .with_state(portal);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve the portal on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "serving the participant portal and the provider webhooks");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(error = %error, "the portal stopped serving");
        }
    });
    Ok(Some(bound))
}

/// The database, opened read-only once the writer has created it.
pub(crate) struct ReadOnlyDatabase {
    args: DatabaseArgs,
    db: Mutex<Option<Database>>,
}

impl ReadOnlyDatabase {
    pub(crate) fn new(args: &DatabaseArgs) -> Self {
        Self {
            args: args.clone(),
            db: Mutex::new(None),
        }
    }

    /// `None` while no writer has created the database yet (nobody is known then).
    pub(crate) async fn get(&self) -> Result<Option<Database>, DbError> {
        let mut db = self.db.lock().await;
        if let Some(db) = db.as_ref() {
            return Ok(Some(db.clone()));
        }
        match self.args.open_for_reading("portal").await {
            Ok(opened) => {
                *db = Some(opened.clone());
                Ok(Some(opened))
            }
            Err(DbError::NotInitialised(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }
}
