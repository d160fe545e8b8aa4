//! `fitlink-simulator`: a faithful local Google Health API v4 plus Google OAuth token
//! endpoint, serving deterministic synthetic participants.
//!
//! Tests of the fleet run it as a real process (`fitlink simulator ...` calls [`serve`])
//! and link it as a library to compute the ground truth ([`truth`]) they compare the
//! database against. It only ever binds loopback addresses.
//!
//! The same server also speaks the legacy Fitbit Web API (`/1/user/-/...`, Fitbit OAuth
//! at `/oauth2/token`) for the same participants, so one fleet can be tested on both
//! providers and through the migration between them (`legacy`).
//!
//! Layout: [`config`](SimConfig) (CLI/env), `clock` (time-zone arithmetic), `generator`
//! (deterministic data), `catalog` (data types, scopes), `filter` (AIP-160 subset),
//! `wire` (JSON shapes and error envelopes), `consent` (the consent pages and
//! authorization codes of both providers), `oauth` (`/token`, `/revoke`), `oidc` (the staff
//! OpenID Connect issuer the console signs in with, `/oidc`), `api` (`/v4`),
//! `legacy` (Fitbit Web API and OAuth), `webhooks` (notifications, signatures,
//! handshakes), `faults`, `control` (`/_sim/`), `state` and [`truth`] (with
//! [`truth::legacy`]).

mod api;
mod catalog;
mod clock;
mod config;
mod consent;
mod control;
mod faults;
mod filter;
mod generator;
mod hold;
mod legacy;
mod oauth;
mod oidc;
mod state;
pub mod truth;
mod webhooks;
mod wire;

#[cfg(test)]
mod families_tests;
#[cfg(test)]
mod linkage_tests;
#[cfg(test)]
mod oidc_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wear_tests;

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

pub use config::{Deletion, IntradayType, SimConfig};
pub use faults::{Faults, ParticipantFaults};

use crate::clock::rfc3339;
use crate::generator::profiles;
use crate::state::{AppState, Attribution};

/// One synthetic participant of the roster.
#[derive(Clone, Debug, PartialEq)]
pub struct SimParticipant {
    /// `sim-0001`, `sim-0002`, ...
    pub participant_id: String,
    /// Deterministic refresh token (`simrt_<participant>_<hex>`), accepted by `/token`.
    pub refresh_token: String,
    /// The participant's time zone (also served by `users/me/settings`).
    pub time_zone: Tz,
    /// Start of the history: `until - days`.
    pub sync_from: DateTime<Utc>,
    /// Latest device sync: `until + advance_minutes - (0..=30 min)`. Data exists only in
    /// `[sync_from, latest_sync)`.
    pub latest_sync: DateTime<Utc>,
    /// Heart-rate sample spacing (1 for "fine" participants).
    pub hr_interval_secs: u32,
    /// The Google Health user id served by `users/me/identity`.
    pub health_user_id: String,
    /// The legacy Fitbit user id (`encodedId`, 6 characters of `[0-9A-Z]`): `user_id` of
    /// the legacy token response, `profile.json`'s `encodedId` and the Google identity's
    /// `legacyUserId`.
    pub encoded_id: String,
    /// Initial legacy Fitbit refresh token (`simfrt_<participant>_<hex>`), accepted once by
    /// `/oauth2/token` (refresh tokens rotate on every use).
    pub legacy_refresh_token: String,
}

/// The participants of `config`, deterministic from it.
pub fn roster(config: &SimConfig) -> Vec<SimParticipant> {
    profiles(config)
        .into_iter()
        .map(|p| SimParticipant {
            latest_sync: p.latest_sync(config.until, config.advance_minutes),
            participant_id: p.id,
            refresh_token: p.refresh_token,
            time_zone: p.tz,
            sync_from: p.sync_from,
            hr_interval_secs: p.hr_interval_secs,
            health_user_id: p.health_user_id,
            encoded_id: p.encoded_id,
            legacy_refresh_token: p.legacy_refresh_token,
        })
        .collect()
}

/// The import CSV for fitlink: header `participant_id,provider,refresh_token,sync_from`,
/// provider `google-health`, `sync_from` in RFC 3339.
pub fn roster_csv(config: &SimConfig) -> String {
    roster_csv_for(config, "google-health")
}

/// The import CSV for one provider: `google-health` (the Google refresh tokens) or
/// `fitbit` (the initial legacy refresh tokens). Same header and `sync_from` as
/// [`roster_csv`]; any other provider yields the header only.
pub fn roster_csv_for(config: &SimConfig, provider: &str) -> String {
    let mut out = String::from("participant_id,provider,refresh_token,sync_from\n");
    if provider != "google-health" && provider != "fitbit" {
        return out;
    }
    for p in roster(config) {
        let token = if provider == "fitbit" {
            &p.legacy_refresh_token
        } else {
            &p.refresh_token
        };
        out.push_str(&format!(
            "{},{provider},{token},{}\n",
            p.participant_id,
            rfc3339(p.sync_from)
        ));
    }
    out
}

/// Latency injection and request statistics for everything except the control API.
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with("/_sim/") {
        return next.run(request).await;
    }
    let latency = state.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let response = next.run(request).await;
    let attribution = response.extensions().get::<Attribution>().copied();
    let endpoint = if legacy::is_legacy_path(&path) {
        legacy::endpoint_name(&path)
    } else {
        api::endpoint_name(&path)
    };
    state.record(endpoint, response.status().as_u16(), attribution);
    response
}

/// Unknown paths: Fitbit's 404 under the legacy prefixes, Google's elsewhere.
async fn not_found(uri: Uri) -> Response {
    if legacy::is_legacy_path(uri.path()) {
        legacy::not_found()
    } else {
        api::not_found().await
    }
}

async fn method_not_allowed(uri: Uri) -> Response {
    if legacy::is_legacy_path(uri.path()) {
        legacy::method_not_allowed()
    } else {
        api::method_not_allowed().await
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/token", post(oauth::token))
        .route("/revoke", post(oauth::revoke))
        .route("/o/oauth2/v2/auth", get(consent::google_authorize))
        .route("/o/oauth2/v2/auth/decision", post(consent::decision))
        .merge(legacy::routes())
        .nest("/oidc", oidc::routes())
        .nest("/v4", api::routes())
        .nest("/v4beta", api::routes())
        .nest("/_sim", control::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            legacy::layer,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

/// Serves the simulator on `listener` until `shutdown` resolves.
///
/// The listener must be bound to a loopback address, or to the address the configuration
/// explicitly names in `bind` (a container network): the simulator is never reachable from
/// another host by accident.
pub async fn run(
    config: SimConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let addr = listener
        .local_addr()
        .context("simulator listener address")?;
    anyhow::ensure!(
        addr.ip().is_loopback() || addr.ip() == config.bind,
        "the simulator only serves on loopback addresses unless --bind names another, not {addr}"
    );
    tracing::info!(%addr, participants = config.participants, days = config.days, until = %config.until, "simulator serving");
    let every = config.device_sync_every_secs;
    let state = Arc::new(AppState::new(config));
    let ticker = (every > 0).then(|| webhooks::spawn_device_sync(&state, every));
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("simulator server");
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    served
}

/// Binds `bind:port` (127.0.0.1 by default), prints exactly one line `simulator listening on
/// http://ADDR:PORT` to stdout (flushed), then serves until Ctrl-C or SIGTERM.
pub async fn serve(config: SimConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((config.bind, config.port))
        .await
        .with_context(|| format!("binding {}:{}", config.bind, config.port))?;
    let addr = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "simulator listening on http://{addr}")?;
        stdout.flush()?;
    }
    run(config, listener, shutdown_signal()).await
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
