//! Configuration shared by several roles: every setting is a CLI flag with a matching
//! `FITLINK_*` environment variable, so the same binary runs from a shell, a systemd unit or a
//! container without a config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};

use crate::domain::parse_date_or_instant;
use crate::secret::{SealError, Secret, TokenKeys};
use crate::store::{Database, DbError, StoreSettings};

/// Where the broker is and which names this fleet uses on it.
#[derive(Args, Clone, Debug)]
pub struct BrokerArgs {
    /// AMQP URL of the RabbitMQ broker.
    #[arg(
        long = "amqp-url",
        env = "FITLINK_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: Secret<String>,
    /// Prefix of every queue this fleet declares; lets several fleets (or test runs) share one
    /// broker without seeing each other's messages.
    #[arg(long, env = "FITLINK_NAMESPACE", default_value = "fitlink")]
    pub namespace: String,
    /// Results partitions (1–64): queues the writers' work is split into by participant, each
    /// with one active writer. Every role of a fleet must use the same number; changing it is
    /// the re-partitioning procedure in the README (drain, re-declare, restart).
    #[arg(
        long,
        env = "FITLINK_RESULTS_PARTITIONS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=crate::broker::MAX_RESULTS_PARTITIONS as i64)
    )]
    pub results_partitions: u16,
}

impl BrokerArgs {
    /// The broker at `amqp_url`, namespace `namespace`, one results partition (tests, tools).
    pub fn new(amqp_url: impl Into<String>, namespace: impl Into<String>) -> BrokerArgs {
        BrokerArgs {
            amqp_url: Secret::new(amqp_url.into()),
            namespace: namespace.into(),
            results_partitions: 1,
        }
    }

    /// This fleet's queue names.
    pub fn topology(&self) -> crate::broker::Topology {
        crate::broker::Topology::partitioned(&self.namespace, self.results_partitions)
    }
}

/// TLS to the broker, for `amqps://` URLs: which certificate authorities to trust and the client
/// certificate to present when the broker asks for one.
///
/// These are process-wide (one broker per process) and global flags of the `fitlink` command,
/// not fields of [`BrokerArgs`]: every role and tool connects through `broker::connect`, which
/// reads them from [`crate::broker::use_tls`]. The files are read at every connect, so a
/// certificate rotated on disk (a Kubernetes secret) is used from the next connection on.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerTlsArgs {
    /// PEM file of the certificate authorities that may sign the broker's certificate (amqps://),
    /// trusted in addition to the system's roots. A private CA needs this.
    #[arg(long, env = "FITLINK_AMQP_CA_FILE", global = true)]
    pub amqp_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (and its chain) to present to a broker that verifies
    /// peers; needs --amqp-client-key-file.
    #[arg(long, env = "FITLINK_AMQP_CLIENT_CERT_FILE", global = true)]
    pub amqp_client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1, unencrypted);
    /// needs --amqp-client-cert-file.
    #[arg(long, env = "FITLINK_AMQP_CLIENT_KEY_FILE", global = true)]
    pub amqp_client_key_file: Option<PathBuf>,
}

impl BrokerTlsArgs {
    /// Whether any TLS file is configured (an `amqp://` URL then is refused: see
    /// `broker::connect`).
    pub fn any(&self) -> bool {
        self.amqp_ca_file.is_some()
            || self.amqp_client_cert_file.is_some()
            || self.amqp_client_key_file.is_some()
    }
}

/// Where the research database is, and how this role uses it.
#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// Database URL: a SQLite file (`sqlite://PATH`, the default) or a PostgreSQL database
    /// (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`). A password in it is never logged.
    #[arg(
        long = "database-url",
        env = "FITLINK_DATABASE_URL",
        default_value = "sqlite://fitlink.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Connections in this role's pool (PostgreSQL).
    #[arg(long, env = "FITLINK_DATABASE_POOL_SIZE", default_value_t = 4)]
    pub database_pool_size: u32,
    /// The server cancels a statement of this role that runs longer (PostgreSQL); 0: no limit.
    #[arg(
        long,
        env = "FITLINK_DATABASE_STATEMENT_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub database_statement_timeout_secs: u64,
    /// What the server shows for this role's connections (`pg_stat_activity.application_name`);
    /// `fitlink-<role>` when not set.
    #[arg(long, env = "FITLINK_DATABASE_APPLICATION_NAME")]
    pub database_application_name: Option<String>,
}

impl DatabaseArgs {
    /// The URL alone, with the default settings (tests and tools that only know a URL).
    pub fn url(url: impl Into<String>) -> DatabaseArgs {
        DatabaseArgs {
            database_url: url.into(),
            database_pool_size: 4,
            database_statement_timeout_secs: 60,
            database_application_name: None,
        }
    }

    /// The store settings of `role` (`writer`, `dispatcher`, `status`, …).
    pub fn settings(&self, role: &str) -> StoreSettings {
        StoreSettings {
            pool_size: self.database_pool_size.max(1),
            statement_timeout: (self.database_statement_timeout_secs > 0)
                .then(|| std::time::Duration::from_secs(self.database_statement_timeout_secs)),
            application_name: self
                .database_application_name
                .clone()
                .unwrap_or_else(|| format!("fitlink-{role}")),
        }
    }

    /// Opens the database read-only for `role`.
    pub async fn open_for_reading(&self, role: &str) -> Result<Database, DbError> {
        Database::open_for_reading(&self.database_url, &self.settings(role)).await
    }

    /// Opens (creating and migrating) the database for the writer.
    pub async fn open_for_writing(&self) -> Result<Database, DbError> {
        Database::open_for_writing(&self.database_url, &self.settings("writer")).await
    }
}

/// The keys that seal refresh tokens at rest and in messages: give one of the three settings.
///
/// The current key (the first) seals; every key opens what it sealed, so after a new key is put
/// first, tokens sealed with the older ones keep working until `fitlink credentials rekey` has
/// sealed them again and the older key is dropped (docs/operations.md, "Rotating the token key").
#[derive(Args, Clone, Debug, Default)]
pub struct TokenKeyArgs {
    /// The token keys, comma-separated, the current one first, then older ones still needed to
    /// open tokens sealed with them. Each 32 bytes, base64 or hex. Never logged.
    #[arg(
        long = "token-keys",
        env = "FITLINK_TOKEN_KEYS",
        hide_env_values = true
    )]
    pub token_keys: Option<Secret<String>>,
    /// A file with the token keys (a mounted secret): one a line or comma-separated, the current
    /// one first; `#` starts a comment.
    #[arg(long = "token-keys-file", env = "FITLINK_TOKEN_KEYS_FILE")]
    pub token_keys_file: Option<PathBuf>,
    /// One token key (32 bytes, base64 or hex; `fitlink keygen` makes one): the same as
    /// FITLINK_TOKEN_KEYS with one key. Never logged.
    #[arg(long = "token-key", env = "FITLINK_TOKEN_KEY", hide_env_values = true)]
    pub token_key: Option<Secret<String>>,
}

impl TokenKeyArgs {
    /// One key, as `FITLINK_TOKEN_KEY` (tests and tools that make their own).
    pub fn one(key: Secret<String>) -> Self {
        Self {
            token_key: Some(key),
            ..Self::default()
        }
    }

    /// The key set; an error names the setting that is missing or wrong, never a key.
    pub fn keys(&self) -> anyhow::Result<TokenKeys> {
        self.keys_if_given()?.ok_or_else(|| SealError::NoKey.into())
    }

    /// The key set, or `None` when no key setting is given (roles that need a key only for some
    /// of their work, such as the dispatcher's portal).
    ///
    /// An empty setting counts as not given, so a deployment can pass every variable and fill
    /// only the one it uses (docker-compose's `${FITLINK_TOKEN_KEYS:-}`, a Helm Secret key
    /// left empty).
    pub fn keys_if_given(&self) -> anyhow::Result<Option<TokenKeys>> {
        let text_given = |value: &Option<Secret<String>>| {
            value
                .as_ref()
                .filter(|text| !text.expose().trim().is_empty())
                .cloned()
        };
        let (token_keys, token_key) = (text_given(&self.token_keys), text_given(&self.token_key));
        let token_keys_file = self
            .token_keys_file
            .as_ref()
            .filter(|path| !path.as_os_str().is_empty());
        let given = [
            token_keys.is_some().then_some("FITLINK_TOKEN_KEYS"),
            token_keys_file
                .is_some()
                .then_some("FITLINK_TOKEN_KEYS_FILE"),
            token_key.is_some().then_some("FITLINK_TOKEN_KEY"),
        ];
        let given: Vec<&str> = given.into_iter().flatten().collect();
        anyhow::ensure!(
            given.len() <= 1,
            "{} are all set: set only one of them (FITLINK_TOKEN_KEYS holds the current key and the older ones)",
            given.join(" and ")
        );
        let (setting, text) = match (token_keys, token_keys_file, token_key) {
            (Some(text), _, _) => ("FITLINK_TOKEN_KEYS", text),
            (_, Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read FITLINK_TOKEN_KEYS_FILE {}: {e}",
                        path.display()
                    )
                })?;
                let keys: Vec<&str> = text
                    .lines()
                    .map(|line| line.split('#').next().unwrap_or_default())
                    .collect();
                ("FITLINK_TOKEN_KEYS_FILE", Secret::new(keys.join("\n")))
            }
            (_, _, Some(text)) => ("FITLINK_TOKEN_KEY", text),
            (None, None, None) => return Ok(None),
        };
        let keys = TokenKeys::parse(&text).map_err(|e| anyhow::anyhow!("{setting}: {e}"))?;
        Ok(Some(keys))
    }
}

/// Google Health API endpoints and this program's OAuth client. Default to the real hosts;
/// tests and the demo point them at the simulator.
#[derive(Args, Clone, Debug)]
pub struct GoogleArgs {
    #[arg(
        long = "google-api-base",
        env = "FITLINK_GOOGLE_API_BASE",
        default_value = "https://health.googleapis.com"
    )]
    pub api_base: String,
    #[arg(
        long = "google-token-url",
        env = "FITLINK_GOOGLE_TOKEN_URL",
        default_value = "https://oauth2.googleapis.com/token"
    )]
    pub token_url: String,
    /// Where the consent portal sends a participant to grant access.
    #[arg(
        long = "google-authorize-url",
        env = "FITLINK_GOOGLE_AUTHORIZE_URL",
        default_value = "https://accounts.google.com/o/oauth2/v2/auth"
    )]
    pub authorize_url: String,
    /// RFC 7009 revocation endpoint, called when a participant withdraws.
    #[arg(
        long = "google-revoke-url",
        env = "FITLINK_GOOGLE_REVOKE_URL",
        default_value = "https://oauth2.googleapis.com/revoke"
    )]
    pub revoke_url: String,
    #[arg(
        long = "google-client-id",
        env = "FITLINK_GOOGLE_CLIENT_ID",
        default_value = ""
    )]
    pub client_id: String,
    #[arg(
        long = "google-client-secret",
        env = "FITLINK_GOOGLE_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub client_secret: Secret<String>,
}

/// Legacy Fitbit Web API endpoints and this program's Fitbit OAuth client. Default to the real
/// hosts; tests and the demo point them at the simulator.
#[derive(Args, Clone, Debug)]
pub struct FitbitArgs {
    #[arg(
        long = "fitbit-api-base",
        id = "fitbit_api_base",
        env = "FITLINK_FITBIT_API_BASE",
        default_value = "https://api.fitbit.com"
    )]
    pub api_base: String,
    #[arg(
        long = "fitbit-token-url",
        id = "fitbit_token_url",
        env = "FITLINK_FITBIT_TOKEN_URL",
        default_value = "https://api.fitbit.com/oauth2/token"
    )]
    pub token_url: String,
    /// Where the consent portal sends a participant to grant access.
    #[arg(
        long = "fitbit-authorize-url",
        id = "fitbit_authorize_url",
        env = "FITLINK_FITBIT_AUTHORIZE_URL",
        default_value = "https://www.fitbit.com/oauth2/authorize"
    )]
    pub authorize_url: String,
    /// RFC 7009 revocation endpoint, called when a participant withdraws.
    #[arg(
        long = "fitbit-revoke-url",
        id = "fitbit_revoke_url",
        env = "FITLINK_FITBIT_REVOKE_URL",
        default_value = "https://api.fitbit.com/oauth2/revoke"
    )]
    pub revoke_url: String,
    #[arg(
        long = "fitbit-client-id",
        id = "fitbit_client_id",
        env = "FITLINK_FITBIT_CLIENT_ID",
        default_value = ""
    )]
    pub client_id: String,
    #[arg(
        long = "fitbit-client-secret",
        id = "fitbit_client_secret",
        env = "FITLINK_FITBIT_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub client_secret: Secret<String>,
    /// Intraday heart-rate resolution to request: per minute, or per second (what the app's
    /// intraday approval allows; All of Us TPC data is per second).
    #[arg(
        long = "fitbit-heart-rate-detail",
        env = "FITLINK_FITBIT_HEART_RATE_DETAIL",
        value_enum,
        default_value = "1min"
    )]
    pub heart_rate_detail: HeartRateDetail,
    /// The legacy API's turn-off (an RFC 3339 instant, or a date meaning its midnight UTC).
    /// From then on the client sends nothing and answers every call with "provider retired"
    /// (the participant needs Google Health consent), instead of waiting for 410s.
    #[arg(
        long = "fitbit-retired-after",
        env = "FITLINK_FITBIT_RETIRED_AFTER",
        value_parser = parse_date_or_instant
    )]
    pub retired_after: Option<DateTime<Utc>>,
}

impl GoogleArgs {
    /// Every endpoint on the host `base`, at the paths fitlink's simulator serves (`/token`,
    /// `/o/oauth2/v2/auth`, `/revoke`, the API at the root): the simulator, or a test's server.
    pub fn on_one_host(base: &str, client_id: &str, client_secret: &str) -> GoogleArgs {
        GoogleArgs {
            api_base: base.to_owned(),
            token_url: format!("{base}/token"),
            authorize_url: format!("{base}/o/oauth2/v2/auth"),
            revoke_url: format!("{base}/revoke"),
            client_id: client_id.to_owned(),
            client_secret: Secret::new(client_secret.to_owned()),
        }
    }
}

impl FitbitArgs {
    /// Every endpoint on the host `base`, at the paths fitlink's simulator serves
    /// (`/oauth2/token`, `/oauth2/authorize`, `/oauth2/revoke`, the API at the root), heart rate
    /// per minute, not retired: the simulator, or a test's server.
    pub fn on_one_host(base: &str, client_id: &str, client_secret: &str) -> FitbitArgs {
        FitbitArgs {
            api_base: base.to_owned(),
            token_url: format!("{base}/oauth2/token"),
            authorize_url: format!("{base}/oauth2/authorize"),
            revoke_url: format!("{base}/oauth2/revoke"),
            client_id: client_id.to_owned(),
            client_secret: Secret::new(client_secret.to_owned()),
            heart_rate_detail: HeartRateDetail::OneMinute,
            retired_after: None,
        }
    }
}

/// Intraday heart-rate resolution of the legacy Fitbit API (its `detail-level` path segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HeartRateDetail {
    #[value(name = "1min")]
    OneMinute,
    #[value(name = "1sec")]
    OneSecond,
}

impl HeartRateDetail {
    /// The path segment: `1min` or `1sec`.
    pub fn as_str(self) -> &'static str {
        match self {
            HeartRateDetail::OneMinute => "1min",
            HeartRateDetail::OneSecond => "1sec",
        }
    }
}

/// Operations surface of a long-running role.
#[derive(Args, Clone, Debug)]
pub struct OpsArgs {
    /// Address for /livez, /readyz and /metrics (port 0 picks a free one and logs it).
    #[arg(
        long = "ops-addr",
        env = "FITLINK_OPS_ADDR",
        default_value = "127.0.0.1:0"
    )]
    pub ops_addr: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::TokenKey;

    fn key() -> Secret<String> {
        TokenKey::generate()
    }

    /// docker-compose passes every key variable, empty unless the operator set it: an empty
    /// one is not "set", so rotating to FITLINK_TOKEN_KEYS needs no edit of the file.
    #[test]
    fn an_empty_key_setting_counts_as_not_given() {
        let (new, old) = (key(), key());
        let args = TokenKeyArgs {
            token_keys: Some(Secret::new(format!("{},{}", new.expose(), old.expose()))),
            token_keys_file: None,
            token_key: Some(Secret::new(" ".into())),
        };
        let keys = args.keys().unwrap();
        assert_eq!(keys.ids().0.len(), 2, "both keys");
        assert_eq!(
            keys.current().id(),
            TokenKey::parse(&new).unwrap().id(),
            "the first is current"
        );

        let none = TokenKeyArgs {
            token_keys: Some(Secret::new(String::new())),
            token_keys_file: Some(PathBuf::new()),
            token_key: Some(Secret::new(String::new())),
        };
        assert!(none.keys_if_given().unwrap().is_none());
        let error = none.keys().unwrap_err().to_string();
        assert!(error.contains("no token key given"), "{error}");

        let both = TokenKeyArgs {
            token_keys: Some(new.clone()),
            token_keys_file: None,
            token_key: Some(old),
        };
        let error = both.keys().unwrap_err().to_string();
        assert!(
            error.contains("FITLINK_TOKEN_KEYS and FITLINK_TOKEN_KEY are all set"),
            "{error}"
        );
    }
}
