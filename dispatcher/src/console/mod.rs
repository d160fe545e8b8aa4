//! `fitlink console`: the study coordinators' web view of the cohort, and the operators' way to
//! act on it without a terminal.
//!
//! A role of its own (its own process and port), in this crate because everything it does is
//! what the dispatcher's commands do: it reads the database (read-only at the connection) and
//! every action is a message to the writer, through the same functions as `fitlink enqueue`,
//! `fitlink invite` and `fitlink dlq` ([`actions`]), each first written to the audit.
//!
//! - **Access** ([`session`], [`login`]): every page needs a signed-in person, by the program's
//!   OpenID Connect identity provider or by the single admin credential from the environment (a
//!   laptop, the demo). Viewers see; operators act. Sessions are sealed cookies that expire.
//! - **Pages** (`pages/`): cohort, participants (keyset pages, CSV), a participant, needing
//!   consent, dead letters, audit. Server-rendered ([`layout`], maud), charts as inline SVG
//!   ([`chart`]), no script.
//! - **Reading** ([`read`]): bounded queries over the store seam.

mod actions;
mod chart;
mod layout;
mod login;
pub mod oidc;
mod pages;
pub mod read;
pub mod session;
mod snapshot;

pub use pages::cohort::{CohortFacts, read_cohort};

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use fitlink_shared::compliance::ComplianceArgs;
use fitlink_shared::config::{BrokerArgs, DatabaseArgs, OpsArgs, TokenKeyArgs};
use fitlink_shared::linkage::sealed::FlowSealer;
use fitlink_shared::secret::Secret;
use fitlink_shared::telemetry::{self, Readiness};
use tokio_util::sync::CancellationToken;

use crate::portal::ReadOnlyDatabase;
use actions::{Actions, Replays};
use session::{Session, Sessions};

/// Settings of `fitlink console`.
#[derive(clap::Args, Clone, Debug)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Keys the session cookies and signs consent links (derived sub-keys).
    #[command(flatten)]
    pub token_key: TokenKeyArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
    #[command(flatten)]
    pub compliance: ComplianceArgs,
    /// Where to serve the console (put it behind the program's HTTPS proxy).
    #[arg(long, env = "FITLINK_CONSOLE_ADDR", default_value = "127.0.0.1:8091")]
    pub addr: SocketAddr,
    /// The console's address as its users reach it, e.g. `https://console.example.org`: the
    /// identity provider's redirect goes to `<this>/login/callback`, and with `https://`
    /// cookies are `Secure`. Default: `http://<addr>`.
    #[arg(long, env = "FITLINK_CONSOLE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The single admin credential (an operator), for a laptop or a demo. With an identity
    /// provider, leave it unset.
    #[arg(long, env = "FITLINK_CONSOLE_ADMIN_USER")]
    pub admin_user: Option<String>,
    #[arg(long, env = "FITLINK_CONSOLE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret<String>>,
    /// The program's OpenID Connect issuer (its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`).
    #[arg(long, env = "FITLINK_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    #[arg(
        long,
        env = "FITLINK_OIDC_CLIENT_ID",
        default_value = "fitlink-console"
    )]
    pub oidc_client_id: String,
    #[arg(
        long,
        env = "FITLINK_OIDC_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub oidc_client_secret: Secret<String>,
    /// Members of this identity-provider group (the ID token's `groups` claim) act.
    #[arg(
        long,
        env = "FITLINK_CONSOLE_OPERATOR_GROUP",
        default_value = "fitlink-operators"
    )]
    pub operator_group: String,
    /// Members of this group see; anyone in neither group is refused.
    #[arg(
        long,
        env = "FITLINK_CONSOLE_VIEWER_GROUP",
        default_value = "fitlink-viewers"
    )]
    pub viewer_group: String,
    /// A session ends this many hours after sign-in.
    #[arg(long, env = "FITLINK_CONSOLE_SESSION_HOURS", default_value_t = 8)]
    pub session_hours: u32,
    /// The participant portal's public URL, which consent links point at (the dispatcher's
    /// FITLINK_PUBLIC_URL).
    #[arg(long = "portal-url", env = "FITLINK_PUBLIC_URL")]
    pub portal_url: Option<String>,
    /// How long a consent link made here works, in hours.
    #[arg(long, env = "FITLINK_INVITATION_TTL_HOURS", default_value_t = 168)]
    pub invitation_ttl_hours: u32,
}

impl ConsoleArgs {
    /// The public base URL without a trailing slash.
    pub fn public_base(&self, bound: SocketAddr) -> anyhow::Result<String> {
        crate::portal::public_base(self.public_url.as_deref(), Some(bound))
            .context("FITLINK_CONSOLE_PUBLIC_URL")
    }
}

/// Everything the handlers share.
pub(crate) struct Console {
    database: ReadOnlyDatabase,
    sessions: Sessions,
    login: login::Login,
    actions: Actions,
    replays: Replays,
    compliance: ComplianceArgs,
    /// The dead-letter queues' depths, read from the broker at most every few seconds.
    depths: tokio::sync::Mutex<Option<(std::time::Instant, (u32, u32))>>,
    /// The cohort page's numbers for all providers, Google Health and legacy Fitbit.
    cohorts: [Arc<snapshot::Snapshot<CohortFacts>>; 3],
}

/// How old the cohort page's numbers may be before a visit has them counted again.
const COHORT_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// How long the cohort page reuses the dead-letter queues' depths.
const DEPTHS_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(5);

impl Console {
    /// Messages in the jobs and results dead-letter queues; `None` if the broker did not answer.
    async fn dead_letter_depths(&self) -> Option<(u32, u32)> {
        let mut cached = self.depths.lock().await;
        if let Some((at, depths)) = *cached
            && at.elapsed() < DEPTHS_FRESH_FOR
        {
            return Some(depths);
        }
        match crate::dlq::dlq_depths(&self.actions.broker).await {
            Ok(depths) => {
                *cached = Some((std::time::Instant::now(), depths));
                Some(depths)
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "console: cannot read the dead-letter queues"
                );
                None
            }
        }
    }

    /// The database, or the page to show while no writer has created it.
    async fn db(&self) -> Result<fitlink_shared::store::Database, Response> {
        match self.database.get().await {
            Ok(Some(db)) => Ok(db),
            Ok(None) => Err(layout::unavailable(
                "open the database",
                &anyhow::anyhow!("no writer has created it yet (start `fitlink writer`)"),
            )),
            Err(error) => Err(layout::unavailable("open the database", &error.into())),
        }
    }
}

/// Every page needs a session; without one the browser goes to the sign-in page and comes back.
impl FromRequestParts<Arc<Console>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        console.sessions.read(&parts.headers).ok_or_else(|| {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let to = format!("/login?next={}", login::encode_component(next));
            Redirect::to(&to).into_response()
        })
    }
}

/// Serves the console on `args.addr` until `shutdown`; returns the bound address.
pub async fn start(args: &ConsoleArgs, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let key = args.token_key.keys()?;
    crate::keycheck::check_keys(&args.database, &key, "console").await?;
    // A wrong threshold is a configuration error: say so at start, not on the first page.
    args.compliance.rule(chrono::Utc::now().date_naive())?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot serve the console on {}", args.addr))?;
    let bound = listener.local_addr()?;
    let public_base = args.public_base(bound)?;
    let login = login::Login::configure(args, &public_base).await?;
    let console = Arc::new(Console {
        database: ReadOnlyDatabase::new(&args.database),
        sessions: Sessions::new(
            FlowSealer::with_keys(key.derive_all("console-session")),
            args.session_hours,
            public_base.starts_with("https://"),
        ),
        login,
        actions: Actions {
            broker: args.broker.clone(),
            database: args.database.clone(),
            token_key: args.token_key.clone(),
            portal_url: args.portal_url.clone(),
            invitation_ttl_hours: args.invitation_ttl_hours,
        },
        replays: Replays::default(),
        compliance: args.compliance.clone(),
        depths: tokio::sync::Mutex::new(None),
        cohorts: std::array::from_fn(|_| snapshot::Snapshot::new(COHORT_FRESH_FOR)),
    });
    let app = routes().with_state(console);
    tracing::info!(%bound, %public_base, "serving the console");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(error = %error, "the console stopped serving");
        }
    });
    Ok(bound)
}

fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/login", get(login::page).post(login::admin))
        .route("/login/oidc", get(login::oidc_start))
        .route("/login/callback", get(login::oidc_callback))
        .route("/logout", post(login::logout))
        .route("/", get(pages::cohort::page))
        .route("/participants", get(pages::participants::page))
        .route("/participants.csv", get(pages::participants::csv))
        .route("/participants/{id}", get(pages::participant::page))
        .route(
            "/participants/{id}/sync",
            post(pages::participant::sync_now),
        )
        .route(
            "/participants/{id}/consent-link",
            post(pages::participant::consent_link),
        )
        .route("/consent", get(pages::consent::page))
        .route("/consent/links", post(pages::consent::links))
        .route("/dead-letters", get(pages::dead_letters::page))
        .route("/dead-letters/retry", post(pages::dead_letters::retry))
        .route("/dead-letters/discard", post(pages::dead_letters::discard))
        .route(
            "/dead-letters/replays/{id}",
            get(pages::dead_letters::replay),
        )
        .route("/dead-letters/{job}", get(pages::dead_letters::letter))
        .route("/audit", get(pages::audit::page))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
}

/// `fitlink console`: serves until SIGTERM, with `/livez` `/readyz` `/metrics` on the ops
/// address.
pub async fn run(args: ConsoleArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let ready = Readiness::default();
    telemetry::serve_ops(args.ops.ops_addr, ready.clone(), shutdown.clone())
        .await
        .context("cannot serve the ops endpoint")?;
    start(&args, shutdown.clone()).await?;
    ready.set(true);
    shutdown.cancelled().await;
    Ok(())
}
