//! Connecting to the broker, in plain text (`amqp://`) or over TLS (`amqps://`), within a
//! timeout, with errors that name the problem and never the URL's password.
//!
//! TLS is rustls with the ring provider, the HTTP client's ([`crate::provider::http`]): the
//! broker's certificate is checked against the system's roots (rustls-platform-verifier, as for
//! HTTPS) plus the CAs of `FITLINK_AMQP_CA_FILE`, and its name against the URL's host. A client
//! certificate (`FITLINK_AMQP_CLIENT_CERT_FILE` + `FITLINK_AMQP_CLIENT_KEY_FILE`) is presented
//! to a broker that verifies peers.
//!
//! An `amqp://` URL with TLS files configured is refused rather than connected in plain text:
//! the files say the operator meant TLS, and a plain connection would send the password in
//! clear.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, ErrorKind};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{BrokerArgs, BrokerTlsArgs};

/// How long a connection may take, TCP, TLS and AMQP handshakes together, before we call it
/// failed. A listener that never answers (a TLS port spoken to in plain text by some brokers, a
/// firewall that drops packets) must fail a role's start-up with a reason, not hang it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

static TLS: OnceLock<BrokerTlsArgs> = OnceLock::new();

/// Sets this process's broker TLS files; the `fitlink` command does it once, from its global
/// flags, before any role connects. The first call wins; without one, `amqps://` trusts the
/// system's roots and presents no client certificate.
pub fn use_tls(args: BrokerTlsArgs) {
    let _ = TLS.set(args);
}

/// The TLS files set by [`use_tls`] (none if it was not called).
pub fn tls_in_use() -> BrokerTlsArgs {
    TLS.get().cloned().unwrap_or_default()
}

/// Why no connection to the broker was made. Every message names the broker by host and port,
/// never by its URL, and carries no password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A setting is wrong (the URL, the TLS files, or the two together): fix it and restart.
    #[error("{0}")]
    Config(String),
    /// An `amqp://` URL at a listener that answered something other than AMQP (a TLS listener
    /// answers a plain AMQP greeting with a TLS alert).
    #[error(
        "the broker at {at} did not answer the AMQP handshake: is it a TLS listener? use amqps:// (and FITLINK_AMQP_CA_FILE for a private CA)"
    )]
    NotAmqp { at: String },
    /// An `amqps://` URL at a listener that does not speak TLS.
    #[error(
        "the broker at {at} did not answer the TLS handshake ({detail}): is it a plain AMQP listener? use amqp://, or the broker's TLS port (5671 by default)"
    )]
    NotTls { at: String, detail: String },
    /// The broker's certificate is not trusted, or not for the URL's host.
    #[error(
        "certificate verification failed for the broker at {at} ({detail}): set FITLINK_AMQP_CA_FILE to the CA that signed the broker's certificate, and use a host name the certificate names"
    )]
    Certificate { at: String, detail: String },
    /// The broker ended the TLS handshake with an alert: typically it verifies peers and got no
    /// client certificate, or one it does not trust.
    #[error(
        "the broker at {at} refused the TLS connection ({detail}): if it verifies peers, set FITLINK_AMQP_CLIENT_CERT_FILE and FITLINK_AMQP_CLIENT_KEY_FILE to a certificate signed by a CA it trusts"
    )]
    TlsRefused { at: String, detail: String },
    /// The broker reset the TLS connection before a word of AMQP. With TLS 1.3 the client's
    /// side of the handshake ends before the broker has checked the client's certificate, so a
    /// refused (or missing) certificate often arrives as a reset rather than an alert. A broker
    /// going down resets too, so this one is retried.
    #[error(
        "the broker at {at} reset the TLS connection ({detail}): if it verifies peers, set FITLINK_AMQP_CLIENT_CERT_FILE and FITLINK_AMQP_CLIENT_KEY_FILE to a certificate signed by a CA it trusts; otherwise it may be restarting"
    )]
    TlsReset { at: String, detail: String },
    /// The broker refused the user, the password or the vhost.
    #[error("the broker at {at} refused the login ({detail})")]
    AccessRefused { at: String, detail: String },
    /// No complete handshake within [`CONNECT_TIMEOUT`].
    #[error("the broker at {at} did not complete the connection within {} s{hint}", CONNECT_TIMEOUT.as_secs())]
    Timeout { at: String, hint: &'static str },
    /// The broker is not there or went away (not running yet, restarting, the network): retry.
    #[error("cannot connect to the broker at {at}: {detail}")]
    Unavailable { at: String, detail: String },
}

impl ConnectError {
    /// Whether retrying with the same settings can succeed: a broker that is down or restarting
    /// comes back; a wrong URL, a wrong certificate or a refused login do not fix themselves.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Unavailable { .. } | Self::TlsReset { .. }
        )
    }
}

/// Whether `error` (anywhere in its chain) is a broker connection that no restart can make: the
/// role supervisor stops on it instead of retrying.
pub fn is_permanent_connect_error(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<ConnectError>())
        .any(|e| !e.is_transient())
}

/// Connects with explicit TLS files (tests; the roles use [`super::connect`], which takes the
/// process's, see [`use_tls`]).
pub async fn connect_with(
    args: &BrokerArgs,
    tls: &BrokerTlsArgs,
    purpose: &str,
) -> Result<Connection, ConnectError> {
    let raw = args.amqp_url.expose();
    let uri = parse(raw)?;
    let at = format!("{}:{}", uri.authority.host, uri.authority.port);
    let secrets = Scrubber::new(raw, &uri);
    let config = match uri.scheme {
        AMQPScheme::AMQPS => tls_config(tls)?,
        AMQPScheme::AMQP if tls.any() => {
            return Err(ConnectError::Config(format!(
                "FITLINK_AMQP_URL is a plain-text amqp:// URL (broker at {at}) but TLS files are set (FITLINK_AMQP_CA_FILE or a client certificate): use amqps:// to connect over TLS, or unset the TLS files"
            )));
        }
        AMQPScheme::AMQP => OwnedTLSConfig::default(),
    };
    let plain = uri.scheme == AMQPScheme::AMQP;
    let props =
        ConnectionProperties::default().with_connection_name(format!("fitlink-{purpose}").into());
    let runtime = lapin::runtime::default_runtime()
        .map_err(|e| ConnectError::Config(secrets.scrub(&e.to_string())))?;
    let connecting = Connection::connect_uri_with_config(uri, props, config, runtime);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(&e, at, plain, &secrets)),
        Err(_) => Err(ConnectError::Timeout {
            at,
            hint: if plain {
                " (if it is a TLS listener, use amqps://)"
            } else {
                " (if it is a plain AMQP listener, use amqp://)"
            },
        }),
    }
}

/// Parses the URL, without ever putting it in an error (lapin's own parse errors quote it).
fn parse(raw: &str) -> Result<AMQPUri, ConnectError> {
    let bad = |why: &str| {
        ConnectError::Config(format!(
            "FITLINK_AMQP_URL is not an AMQP URL ({why}): expected amqp[s]://USER:PASSWORD@HOST[:PORT]/VHOST"
        ))
    };
    let url = reqwest::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    let mut uri: AMQPUri = raw.parse().map_err(|_| {
        bad(match url.scheme() {
            "amqp" | "amqps" => "a part of it does not parse",
            _ => "the scheme must be amqp or amqps",
        })
    })?;
    // lapin takes the host from `Url::domain`, which is empty for an IP address, and then
    // connects to "localhost" instead: keep the address the URL names (and that TLS checks).
    if let Some(host) = url.host_str() {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_ok() {
            uri.authority.host = bare.to_owned();
        }
    }
    Ok(uri)
}

/// The TLS configuration of `tls`: the CA bundle and the client identity, read and checked now
/// so a wrong file is named here rather than in a handshake failure.
fn tls_config(tls: &BrokerTlsArgs) -> Result<OwnedTLSConfig, ConnectError> {
    let cert_chain = match &tls.amqp_ca_file {
        Some(path) => {
            let pem = read_pem("FITLINK_AMQP_CA_FILE", path)?;
            certificates("FITLINK_AMQP_CA_FILE", path, &pem)?;
            Some(String::from_utf8_lossy(&pem).into_owned())
        }
        None => None,
    };
    let identity = match (&tls.amqp_client_cert_file, &tls.amqp_client_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let pem = read_pem("FITLINK_AMQP_CLIENT_CERT_FILE", cert)?;
            certificates("FITLINK_AMQP_CLIENT_CERT_FILE", cert, &pem)?;
            let key_pem = read_pem("FITLINK_AMQP_CLIENT_KEY_FILE", key)?;
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                ConnectError::Config(format!(
                    "FITLINK_AMQP_CLIENT_KEY_FILE ({}) holds no usable private key ({e}): expected an unencrypted PEM key (PKCS#8, PKCS#1 or SEC1)",
                    key.display()
                ))
            })?;
            Some(OwnedIdentity::PKCS8 { pem, key: key_pem })
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(ConnectError::Config(
                "a client certificate needs both FITLINK_AMQP_CLIENT_CERT_FILE and FITLINK_AMQP_CLIENT_KEY_FILE (--amqp-client-cert-file, --amqp-client-key-file); only one is set".to_owned(),
            ));
        }
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

fn read_pem(setting: &str, path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|e| {
        ConnectError::Config(format!("cannot read {setting} ({}): {e}", path.display()))
    })
}

/// Checks that `pem` holds at least one certificate and nothing unparsable.
fn certificates(setting: &str, path: &Path, pem: &[u8]) -> Result<(), ConnectError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConnectError::Config(format!(
                "{setting} ({}) is not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ConnectError::Config(format!(
            "{setting} ({}) holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(())
}

/// Sorts a failed connection by what the operator must do, from lapin's error.
fn classify(e: &lapin::Error, at: String, plain: bool, secrets: &Scrubber) -> ConnectError {
    let detail = secrets.scrub(&e.to_string());
    match e.kind() {
        ErrorKind::ParsingError(_) if plain => ConnectError::NotAmqp { at },
        // 403: ACCESS_REFUSED (user, password or vhost).
        ErrorKind::ProtocolError(amqp) if amqp.get_id() == 403 => {
            ConnectError::AccessRefused { at, detail }
        }
        ErrorKind::IOError(io) if !plain => match tls_error(io) {
            Some(rustls::Error::InvalidCertificate(_)) => ConnectError::Certificate { at, detail },
            Some(rustls::Error::AlertReceived(_)) => ConnectError::TlsRefused { at, detail },
            Some(
                rustls::Error::InvalidMessage(_)
                | rustls::Error::InappropriateMessage { .. }
                | rustls::Error::InappropriateHandshakeMessage { .. },
            ) => ConnectError::NotTls { at, detail },
            None if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) =>
            {
                ConnectError::TlsReset { at, detail }
            }
            _ => ConnectError::Unavailable { at, detail },
        },
        _ => ConnectError::Unavailable { at, detail },
    }
}

/// The rustls error inside an I/O error, if the failure was TLS's.
fn tls_error(io: &std::io::Error) -> Option<&rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = io.get_ref().map(|e| e as _);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        source = e.source();
    }
    None
}

/// Removes the URL's password from text that came from elsewhere (lapin's errors), in case it
/// quotes the URL.
struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    fn new(raw: &str, uri: &AMQPUri) -> Self {
        let mut secrets = vec![raw.to_owned(), uri.authority.userinfo.password.clone()];
        if let Ok(url) = reqwest::Url::parse(raw)
            && let Some(password) = url.password()
        {
            secrets.push(password.to_owned());
        }
        secrets.retain(|s| !s.is_empty());
        // Longest first, so the whole URL goes before the password inside it.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "[redacted]"))
    }
}

#[cfg(test)]
mod tests;
