//! The consent flow: invitation link → provider consent screen → callback → writer → confirmation.
//!
//! What binds the steps together, with no server-side session:
//! - the **invitation token** (signed, expiring) names the participant and provider;
//! - the OAuth **`state`** is the invitation plus a random nonce, sealed (a changed state does
//!   not open);
//! - a **cookie** named after the invitation holds the same nonce and the PKCE verifier, sealed
//!   for another purpose. The callback needs both and they must agree, so a callback replayed in
//!   another browser, or a state swapped for another participant's, is refused.
//!
//! An invitation is used once: the writer marks it used in the transaction that stores the
//! credential and refuses a second use; the link page refuses one the database already shows as
//! used. Nothing is stored for any refused flow.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use fitlink_shared::domain::{ParticipantState, Provider, UtcInstant};
use fitlink_shared::fetch;
use fitlink_shared::linkage::invitation::InvitationError;
use fitlink_shared::linkage::oauth::{self, OAuthClient, OAuthError};
use fitlink_shared::linkage::pkce::Pkce;
use fitlink_shared::messages::{
    ConsentGrant, ConsentProblem, ConsentProblemKind, Invitation, ReplyBody, WriterCommand,
    now_instant,
};
use fitlink_shared::provider::{HealthProvider as _, Session};
use fitlink_shared::secret::Secret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{LINK_COMMIT_TIMEOUT, Portal, invitation_url, pages, redirect_uri};

/// Associated-data purposes of the two sealed values, so one cannot stand in for the other.
const STATE_PURPOSE: &str = "oauth-state";
const COOKIE_PURPOSE: &str = "consent-cookie";
/// How long a participant may stay on the provider's consent screen.
const FLOW_COOKIE_MAX_AGE_SECS: u64 = 30 * 60;

/// Sealed into the OAuth `state`.
#[derive(Serialize, Deserialize)]
struct FlowState {
    invitation: Invitation,
    nonce: String,
}

/// Sealed into the browser's cookie for this invitation.
#[derive(Serialize, Deserialize)]
struct FlowCookie {
    invitation_id: Uuid,
    nonce: String,
    code_verifier: String,
}

fn cookie_name(invitation_id: Uuid) -> String {
    format!("fitlink_consent_{}", invitation_id.simple())
}

fn count(provider: &str, outcome: &'static str) {
    metrics::counter!("fitlink_portal_consent_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

pub(super) async fn home(State(portal): State<Arc<Portal>>) -> Response {
    pages::home(&portal.program_name)
}

/// `GET /link/{invitation}`: checks the invitation and sends the participant to the provider.
pub(super) async fn link(State(portal): State<Arc<Portal>>, Path(token): Path<String>) -> Response {
    let invitation = match portal.signer.verify(&token, Utc::now()) {
        Ok(invitation) => invitation,
        Err(InvitationError::Expired { .. }) => {
            count("unknown", "invitation_expired");
            return expired_page();
        }
        Err(error) => {
            count("unknown", "invitation_invalid");
            tracing::info!(error = %error, "refused an invitation link that does not verify");
            return pages::refused(
                StatusCode::NOT_FOUND,
                "This link is not valid",
                "The link may have been copied incompletely or changed. Please open the link from your invitation again, or ask the study team for a new one.",
            );
        }
    };
    let provider = invitation.provider.as_str();
    if let Some(page) = portal.refusal_from_database(&invitation).await {
        count(provider, "invitation_refused");
        return page;
    }
    let Some(client) = portal.client(invitation.provider) else {
        count(provider, "provider_disabled");
        return pages::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "Linking is not available right now",
            "This program does not currently link accounts of this kind.",
        );
    };

    let pkce = Pkce::generate();
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    let cookie = portal.sealer.seal(
        COOKIE_PURPOSE,
        &FlowCookie {
            invitation_id: invitation.invitation_id,
            nonce: nonce.clone(),
            code_verifier: pkce.verifier.expose().clone(),
        },
    );
    let state = portal.sealer.seal(
        STATE_PURPOSE,
        &FlowState {
            invitation: invitation.clone(),
            nonce,
        },
    );
    let url = client.authorize_url(
        &redirect_uri(&portal.public_base),
        &state,
        &pkce.challenge,
        None,
    );
    tracing::info!(
        participant_id = %invitation.participant_id,
        invitation_id = %invitation.invitation_id,
        provider,
        "sending a participant to the provider's consent screen"
    );
    count(provider, "redirected");
    let secure = if portal.public_base.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let set_cookie = format!(
        "{}={cookie}; Path=/oauth/callback; HttpOnly; SameSite=Lax; Max-Age={FLOW_COOKIE_MAX_AGE_SECS}{secure}",
        cookie_name(invitation.invitation_id)
    );
    redirect(&url, &set_cookie)
}

/// `GET /oauth/callback`: the provider sends the participant back here.
pub(super) async fn callback(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let flow = match verified_flow(&portal, &headers, &query) {
        Ok(flow) => flow,
        Err(page) => return *page,
    };
    let (invitation, code_verifier) = flow;
    let provider = invitation.provider;
    let retry = invitation_url(&portal.public_base, &portal.signer.sign(&invitation));
    if invitation.expires_at.get() < Utc::now() {
        count(provider.as_str(), "invitation_expired");
        return expired_page();
    }
    if let Some(page) = portal.refusal_from_database(&invitation).await {
        count(provider.as_str(), "invitation_refused");
        return page;
    }

    if let Some(error) = query.get("error") {
        count(provider.as_str(), "declined");
        portal
            .record_problem(
                &invitation,
                ConsentProblemKind::Declined {
                    error: error.chars().take(100).collect(),
                },
            )
            .await;
        return pages::declined(&portal.program_name, &retry);
    }
    let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
        count(provider.as_str(), "no_code");
        return pages::retryable(
            StatusCode::BAD_REQUEST,
            "This sign-in could not be completed",
            "The answer from the provider was incomplete. Please try again.",
            &retry,
        );
    };
    let Some(client) = portal.client(provider) else {
        return pages::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "Linking is not available right now",
            "This program does not currently link accounts of this kind.",
        );
    };

    let grant = match client
        .exchange_code(code, &redirect_uri(&portal.public_base), &code_verifier)
        .await
    {
        Ok(grant) => grant,
        Err(error) => {
            return exchange_failed(&invitation, &error, &retry);
        }
    };
    let missing = oauth::missing_scopes(provider, &grant.granted_scopes);
    if !missing.is_empty() {
        count(provider.as_str(), "scope_missing");
        tracing::info!(
            participant_id = %invitation.participant_id,
            missing = missing.join(" "),
            "a participant did not grant every scope the program needs"
        );
        portal
            .record_problem(
                &invitation,
                ConsentProblemKind::ScopeMissing {
                    missing: missing.clone(),
                },
            )
            .await;
        return pages::scope_missing(&portal.program_name, &missing, &retry);
    }
    let Some(refresh_token) = grant.refresh_token else {
        count(provider.as_str(), "no_refresh_token");
        tracing::error!(
            participant_id = %invitation.participant_id,
            "the provider granted access without a refresh token (the consent request must ask for offline access with prompt=consent)"
        );
        return pages::refused(
            StatusCode::BAD_GATEWAY,
            "Linking is not working right now",
            "The provider did not give the access the program needs. The study team can see this problem.",
        );
    };

    let identity = match provider {
        Provider::GoogleHealth => {
            let session = Session::new(grant.access_token, portal.google_api.request_budget());
            match portal.google_api.identity(&session).await {
                Ok(identity) => Some(identity),
                Err(error) => {
                    count(provider.as_str(), "identity_unavailable");
                    tracing::warn!(participant_id = %invitation.participant_id, error = %error, "cannot ask Google who the consenting account is");
                    return pages::retryable(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The provider is not answering right now",
                        "Your account could not be checked. Please try again in a few minutes.",
                        &retry,
                    );
                }
            }
        }
        Provider::Fitbit => None,
    };

    let participant_id = invitation.participant_id.clone();
    let request_id = Uuid::now_v7();
    let command = WriterCommand::LinkParticipant(ConsentGrant {
        request_id,
        sealed_refresh_token: portal.key.seal(&participant_id, &refresh_token),
        refresh_token_expires_at: grant
            .refresh_token_expires_at
            .map(fitlink_shared::messages::instant),
        granted_scopes: grant.granted_scopes.clone(),
        identity,
        fitbit_user_id: match provider {
            Provider::Fitbit => grant.provider_user_id.clone(),
            Provider::GoogleHealth => None,
        },
        consented_at: now_instant(),
        reply_to: Some(portal.replies.queue().to_owned()),
        participant_id: participant_id.clone(),
        provider,
        invitation: invitation.clone(),
    });
    let reply = portal.replies.expect(request_id);
    if let Err(error) = portal.outbox.send(&command).await {
        count(provider.as_str(), "not_published");
        tracing::error!(%participant_id, error = %error, "cannot hand a consent to the writer");
        return pages::retryable(
            StatusCode::SERVICE_UNAVAILABLE,
            "Your consent could not be saved right now",
            "Nothing was saved. Please try again in a few minutes.",
            &retry,
        );
    }
    let reply = match reply.answer_within(LINK_COMMIT_TIMEOUT).await {
        Ok(reply) => reply.reply,
        Err(_) => {
            count(provider.as_str(), "commit_unconfirmed");
            tracing::warn!(%participant_id, "the writer has not confirmed a consent in time; it stays queued");
            return pages::received(&portal.program_name);
        }
    };
    let cleared = format!(
        "{}=; Path=/oauth/callback; HttpOnly; SameSite=Lax; Max-Age=0",
        cookie_name(invitation.invitation_id)
    );
    let mut page = match reply {
        ReplyBody::Linked { .. } => {
            count(provider.as_str(), "linked");
            tracing::info!(%participant_id, provider = provider.as_str(), "participant linked");
            pages::linked(
                &portal.program_name,
                provider,
                participant_id.as_str(),
                &grant.granted_scopes,
            )
        }
        ReplyBody::Refused { code, reason } => {
            count(provider.as_str(), "refused_by_writer");
            tracing::info!(%participant_id, code, reason, "the writer refused a consent");
            refused_page(&code, &retry)
        }
        ReplyBody::Withdrawn { .. } => pages::refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The program answered unexpectedly.",
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        page.headers_mut().append(header::SET_COOKIE, value);
    }
    page
}

/// Opens the `state` and this invitation's cookie and checks they belong together. Returns the
/// invitation and the PKCE verifier, or the page refusing the callback.
fn verified_flow(
    portal: &Portal,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(Invitation, Secret<String>), Box<Response>> {
    let Some(state) = query.get("state") else {
        count("unknown", "no_state");
        return Err(Box::new(start_again_page()));
    };
    let Ok(flow) = portal.sealer.open::<FlowState>(STATE_PURPOSE, state) else {
        count("unknown", "state_invalid");
        tracing::info!("refused a consent callback whose state does not open (changed or forged)");
        return Err(Box::new(pages::refused(
            StatusCode::BAD_REQUEST,
            "This sign-in could not be verified",
            "The answer from the provider was changed on the way. Please open the link from your invitation again.",
        )));
    };
    let cookie = cookie_value(headers, &cookie_name(flow.invitation.invitation_id))
        .and_then(|sealed| {
            portal
                .sealer
                .open::<FlowCookie>(COOKIE_PURPOSE, &sealed)
                .ok()
        })
        .filter(|c| c.invitation_id == flow.invitation.invitation_id && c.nonce == flow.nonce);
    let Some(cookie) = cookie else {
        count(flow.invitation.provider.as_str(), "flow_mismatch");
        tracing::info!(
            participant_id = %flow.invitation.participant_id,
            "refused a consent callback that was not started in this browser"
        );
        return Err(Box::new(pages::refused(
            StatusCode::BAD_REQUEST,
            "This sign-in was started somewhere else",
            "For your security, a link must be finished in the browser where it was opened, within 30 minutes. Please open the link from your invitation again.",
        )));
    };
    Ok((flow.invitation, Secret::new(cookie.code_verifier)))
}

fn exchange_failed(invitation: &Invitation, error: &OAuthError, retry: &str) -> Response {
    let provider = invitation.provider.as_str();
    match error {
        OAuthError::Refused { .. } => {
            count(provider, "code_refused");
            tracing::info!(participant_id = %invitation.participant_id, error = %error, "the provider refused the authorization code");
            pages::retryable(
                StatusCode::BAD_REQUEST,
                "This sign-in could not be completed",
                "The provider did not accept the sign-in (it may have been used already or taken too long). Please try again.",
                retry,
            )
        }
        OAuthError::Unavailable { .. } => {
            count(provider, "provider_unavailable");
            tracing::warn!(participant_id = %invitation.participant_id, error = %error, "the provider's token endpoint is not answering");
            pages::retryable(
                StatusCode::SERVICE_UNAVAILABLE,
                "The provider is not answering right now",
                "Nothing was saved. Please try again in a few minutes.",
                retry,
            )
        }
        OAuthError::Misconfigured { .. } => {
            count(provider, "misconfigured");
            tracing::error!(participant_id = %invitation.participant_id, error = %error, "the provider refused this program's OAuth client: check the client id, secret and redirect URI");
            pages::refused(
                StatusCode::BAD_GATEWAY,
                "Linking is not working right now",
                "The study team can see this problem and will fix it. Please try your link again later.",
            )
        }
    }
}

fn refused_page(code: &str, retry: &str) -> Response {
    match code {
        "invitation_used" => used_page(),
        "withdrawn" => withdrawn_page(),
        "different_account" => pages::retryable(
            StatusCode::CONFLICT,
            "This is not the account linked before",
            "You signed in with a different account than the one you linked when you joined. Please try again and choose that account.",
            retry,
        ),
        _ => pages::refused(
            StatusCode::CONFLICT,
            "Your account could not be linked",
            "The program could not accept this link.",
        ),
    }
}

fn used_page() -> Response {
    pages::refused(
        StatusCode::GONE,
        "This invitation has already been used",
        "Each invitation link works once. If you need to link your account again, please ask the study team for a new invitation.",
    )
}

fn expired_page() -> Response {
    pages::refused(
        StatusCode::GONE,
        "This invitation has expired",
        "Invitation links work for a limited time. Please ask the study team for a new one.",
    )
}

fn withdrawn_page() -> Response {
    pages::refused(
        StatusCode::GONE,
        "You have left the study",
        "This account cannot be linked because you withdrew from the study. If you want to take part again, please contact the study team.",
    )
}

fn start_again_page() -> Response {
    pages::refused(
        StatusCode::BAD_REQUEST,
        "This sign-in could not be completed",
        "The answer from the provider was incomplete. Please open the link from your invitation again.",
    )
}

fn redirect(location: &str, set_cookie: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Ok(cookie) = HeaderValue::from_str(set_cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl Portal {
    pub(super) fn client(&self, provider: Provider) -> Option<&OAuthClient> {
        match provider {
            Provider::GoogleHealth => self.google.as_ref(),
            Provider::Fitbit => self.fitbit.as_ref(),
        }
    }

    /// The page refusing this invitation if the database already says no (used, withdrawn);
    /// `None` to go on. The writer checks again when it stores the consent.
    async fn refusal_from_database(&self, invitation: &Invitation) -> Option<Response> {
        let db = match self.database.get().await {
            Ok(Some(db)) => db,
            Ok(None) => return None,
            Err(error) => {
                tracing::error!(error = %error, "the portal cannot read the database");
                return Some(pages::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Linking is not available right now",
                    "Please try again in a few minutes.",
                ));
            }
        };
        let used: Result<Option<(Option<UtcInstant>,)>, _> = fetch!(
            db.exec(),
            sqlx::query_as("SELECT used_at FROM invitations WHERE invitation_id = $1")
                .bind(invitation.invitation_id.hyphenated().to_string()),
            optional
        );
        let state: Result<Option<(String,)>, _> = fetch!(
            db.exec(),
            sqlx::query_as("SELECT state FROM participants WHERE participant_id = $1")
                .bind(invitation.participant_id.as_str()),
            optional
        );
        match (used, state) {
            (Ok(Some((Some(_),))), _) => Some(used_page()),
            (_, Ok(Some((state,)))) if state == ParticipantState::Withdrawn.as_str() => {
                Some(withdrawn_page())
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(error = %error, "the portal cannot read invitations");
                Some(pages::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Linking is not available right now",
                    "Please try again in a few minutes.",
                ))
            }
            _ => None,
        }
    }

    /// Tells the writer how a flow ended without a grant, so the coordinator sees it. Best
    /// effort: the participant's page does not depend on it.
    async fn record_problem(&self, invitation: &Invitation, problem: ConsentProblemKind) {
        let command = WriterCommand::RecordConsentProblem(ConsentProblem {
            invitation_id: invitation.invitation_id,
            participant_id: invitation.participant_id.clone(),
            provider: invitation.provider,
            problem,
            at: now_instant(),
        });
        if let Err(error) = self.outbox.send(&command).await {
            tracing::warn!(participant_id = %invitation.participant_id, error = %error, "cannot record a consent problem");
        }
    }
}
