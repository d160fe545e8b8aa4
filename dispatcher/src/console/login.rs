//! Signing in and out: the single admin credential from the environment (an operator), and
//! the program's OpenID Connect identity provider, whose `groups` claim gives the role.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use fitlink_shared::secret::Secret;
use maud::html;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::layout;
use super::oidc::{OidcConfig, OidcLogin, PendingLogin};
use super::session::{PENDING_COOKIE, Role, SESSION_COOKIE, Session};
use super::{Console, ConsoleArgs};

/// How people may sign in to this console.
pub(crate) struct Login {
    admin: Option<(String, Secret<String>)>,
    oidc: Option<IdentityProvider>,
}

/// The program's identity provider and which of its groups give which role.
struct IdentityProvider {
    login: OidcLogin,
    operator_group: String,
    viewer_group: String,
}

impl IdentityProvider {
    /// The role `groups` give; `None` for someone in neither group.
    fn role(&self, groups: &[String]) -> Option<Role> {
        role_of(groups, &self.operator_group, &self.viewer_group)
    }
}

/// Operator wins over viewer for someone in both groups.
fn role_of(groups: &[String], operator_group: &str, viewer_group: &str) -> Option<Role> {
    let member = |group: &str| groups.iter().any(|g| g == group);
    if member(operator_group) {
        Some(Role::Operator)
    } else if member(viewer_group) {
        Some(Role::Viewer)
    } else {
        None
    }
}

/// How long a wrong admin password waits before it is answered.
const WRONG_PASSWORD_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Purpose of the sealed cookie that carries a sign-in in progress.
const PENDING_PURPOSE: &str = "console-oidc";

/// A sign-in at the identity provider in progress, and where to go afterwards.
#[derive(Serialize, Deserialize)]
struct Pending {
    login: PendingLogin,
    next: String,
}

impl Login {
    pub(crate) async fn configure(args: &ConsoleArgs, public_base: &str) -> anyhow::Result<Login> {
        let oidc = match args.oidc_issuer.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(issuer) => {
                anyhow::ensure!(
                    !args.oidc_client_id.trim().is_empty(),
                    "FITLINK_OIDC_ISSUER is set: set FITLINK_OIDC_CLIENT_ID too"
                );
                let login = OidcLogin::discover(OidcConfig {
                    issuer_url: issuer.to_owned(),
                    client_id: args.oidc_client_id.trim().to_owned(),
                    client_secret: args.oidc_client_secret.clone(),
                    redirect_url: format!("{public_base}/login/callback"),
                })
                .await?;
                Some(IdentityProvider {
                    login,
                    operator_group: args.operator_group.clone(),
                    viewer_group: args.viewer_group.clone(),
                })
            }
        };
        let admin = match (&args.admin_user, &args.admin_password) {
            (Some(user), Some(password)) if !user.trim().is_empty() => {
                anyhow::ensure!(
                    password.expose().chars().count() >= 12,
                    "FITLINK_CONSOLE_ADMIN_PASSWORD must be at least 12 characters"
                );
                Some((user.trim().to_owned(), password.clone()))
            }
            (None, None) => None,
            _ => anyhow::bail!(
                "set both FITLINK_CONSOLE_ADMIN_USER and FITLINK_CONSOLE_ADMIN_PASSWORD, or neither"
            ),
        };
        anyhow::ensure!(
            admin.is_some() || oidc.is_some(),
            "the console needs a way to sign in: set FITLINK_CONSOLE_ADMIN_USER and \
             FITLINK_CONSOLE_ADMIN_PASSWORD, or FITLINK_OIDC_ISSUER"
        );
        Ok(Login { admin, oidc })
    }

    /// The role of the admin credential, if `user` and `password` are it. Both compared in
    /// constant time (as digests, so neither length shows).
    fn check_admin(&self, user: &str, password: &str) -> Option<Role> {
        let (admin_user, admin_password) = self.admin.as_ref()?;
        let same = |a: &str, b: &str| bool::from(Sha256::digest(a).ct_eq(&Sha256::digest(b)));
        let user_ok = same(user.trim(), admin_user);
        let password_ok = same(password, admin_password.expose());
        (user_ok & password_ok).then_some(Role::Operator)
    }
}

#[derive(Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// Only a path on this console (never another host) is followed after sign-in.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

/// Percent-encodes a query component.
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) async fn page(
    State(console): State<Arc<Console>>,
    Query(next): Query<Next>,
) -> Response {
    sign_in_page(&console, safe_next(next.next.as_deref()), None)
}

fn sign_in_page(console: &Console, next: &str, problem: Option<&str>) -> Response {
    let status = if problem.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    layout::bare(
        status,
        "Sign in",
        html! {
            @if let Some(problem) = problem {
                p.problem role="alert" { (problem) }
            }
            @if console.login.oidc.is_some() {
                p { a.button id="sign-in-oidc" href={"/login/oidc?next=" (encode_component(next))} { "Sign in with your organisation" } }
            }
            @if console.login.admin.is_some() {
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    p { label for="user" { "User" } br; input id="user" name="user" autocomplete="username" required; }
                    p { label for="password" { "Password" } br;
                        input id="password" name="password" type="password" autocomplete="current-password" required; }
                    button type="submit" id="sign-in" { "Sign in" }
                }
            }
            p.muted { "The console shows participants' sync status and wear. Sign-ins and every action are recorded." }
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct AdminForm {
    user: String,
    password: String,
    next: Option<String>,
}

pub(crate) async fn admin(
    State(console): State<Arc<Console>>,
    Form(form): Form<AdminForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    match console.login.check_admin(&form.user, &form.password) {
        Some(role) => {
            tracing::info!(user = %form.user.trim(), "console sign-in (admin credential)");
            signed_in_response(&console, form.user.trim(), role, &next)
        }
        None => {
            tracing::warn!("console sign-in refused: wrong admin user or password");
            // Each wrong guess costs the guesser a second (and nobody else anything).
            tokio::time::sleep(WRONG_PASSWORD_DELAY).await;
            sign_in_page(&console, &next, Some("Wrong user or password."))
        }
    }
}

/// Starts a session and goes to `next`.
fn signed_in_response(console: &Console, user: &str, role: Role, next: &str) -> Response {
    let (_, cookie) = console.sessions.start(user, role);
    ([(header::SET_COOKIE, cookie)], Redirect::to(next)).into_response()
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

pub(crate) async fn logout(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Response {
    // Signing out needs no role, only a form this console made.
    if session.authorize(&form.csrf) == Err(super::session::Refusal::ForgedForm) {
        return layout::refused(super::session::Refusal::ForgedForm);
    }
    let cookie = console.sessions.clear(SESSION_COOKIE);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

fn no_identity_provider(console: &Console) -> Response {
    sign_in_page(
        console,
        "/",
        Some("This console has no identity provider set up."),
    )
}

pub(crate) async fn oidc_start(
    State(console): State<Arc<Console>>,
    Query(next): Query<Next>,
) -> Response {
    let Some(idp) = &console.login.oidc else {
        return no_identity_provider(&console);
    };
    let (url, login) = idp.login.begin();
    let pending = Pending {
        login,
        next: safe_next(next.next.as_deref()).to_owned(),
    };
    let cookie = console
        .sessions
        .seal_cookie(PENDING_COOKIE, PENDING_PURPOSE, &pending);
    ([(header::SET_COOKIE, cookie)], Redirect::to(&url)).into_response()
}

#[derive(Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    #[serde(default)]
    state: String,
    error: Option<String>,
    error_description: Option<String>,
}

pub(crate) async fn oidc_callback(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let Some(idp) = &console.login.oidc else {
        return no_identity_provider(&console);
    };
    let Some(pending) =
        console
            .sessions
            .open_cookie::<Pending>(&headers, PENDING_COOKIE, PENDING_PURPOSE)
    else {
        return sign_in_page(
            &console,
            "/",
            Some("That sign-in was not started in this browser, or took too long. Sign in again."),
        );
    };
    let next = pending.next.clone();
    let outcome = match (&callback.code, &callback.error) {
        (Some(code), None) => idp.login.finish(pending.login, code, &callback.state).await,
        (_, error) => Err(idp.login.refused(
            pending.login,
            &callback.state,
            error.as_deref().unwrap_or("no code"),
            callback.error_description.as_deref(),
        )),
    };
    let clear = console.sessions.clear(PENDING_COOKIE);
    let signed_in = match outcome {
        Ok(signed_in) => signed_in,
        Err(error) => {
            tracing::warn!(%error, "console sign-in at the identity provider failed");
            let mut page =
                sign_in_page(&console, &next, Some(&format!("Sign-in failed: {error}.")));
            page.headers_mut()
                .append(header::SET_COOKIE, header_value(&clear));
            return page;
        }
    };
    let Some(role) = idp.role(&signed_in.groups) else {
        tracing::warn!(subject = %signed_in.subject, "console sign-in refused: in neither console group");
        let mut page = layout::bare(
            StatusCode::FORBIDDEN,
            "No access to the console",
            html! { p { "You signed in as " (signed_in.display_name) ", who is in neither of the console's groups ("
            (idp.viewer_group) ", " (idp.operator_group) "). Ask your study's administrator for access." } },
        );
        page.headers_mut()
            .append(header::SET_COOKIE, header_value(&clear));
        return page;
    };
    tracing::info!(subject = %signed_in.subject, role = role.as_str(), "console sign-in (identity provider)");
    // Not a redirect: the identity provider's redirect here is a cross-site navigation, and a
    // browser does not send a `SameSite=Strict` cookie on the redirect that follows it. This
    // page moves on by itself, a navigation from this site, which does.
    let (_, cookie) = console.sessions.start(&signed_in.display_name, role);
    let mut response = layout::bare(
        StatusCode::OK,
        "Signed in",
        html! {
            meta http-equiv="refresh" content={"0;url=" (next)};
            p { "Signed in as " (signed_in.display_name) ". " a href=(next) id="continue" { "Continue" } }
        },
    );
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, header_value(&cookie));
    headers.append(header::SET_COOKIE, header_value(&clear));
    response
}

fn header_value(text: &str) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(text).expect("cookie text is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_give_the_role_and_no_group_gives_none() {
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let role = |g: &[&str]| role_of(&groups(g), "ops", "view");
        assert_eq!(role(&["view", "ops"]), Some(Role::Operator));
        assert_eq!(role(&["view"]), Some(Role::Viewer));
        assert_eq!(role(&["staff", "opsx"]), None);
        assert_eq!(role(&[]), None);
    }

    #[test]
    fn only_a_path_on_this_console_is_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/participants?sort=lag")),
            "/participants?sort=lag"
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "participants",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
