//! The simulator's command-line / environment configuration.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The data types a participant can delete at the provider
/// (`POST /_sim/participants/{id}/delete-data`): the intraday types, whose points are
/// deleted by their time, and sleep, whose sessions are deleted by their **end** (a
/// session is gone when a sleep deletion's interval contains its end instant). The name
/// stays `IntradayType` because the checker already links it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntradayType {
    HeartRate,
    Steps,
    Sleep,
}

impl IntradayType {
    /// The Google Health data type id (`dataType` of a webhook notification).
    pub fn kebab(self) -> &'static str {
        match self {
            IntradayType::HeartRate => "heart-rate",
            IntradayType::Steps => "steps",
            IntradayType::Sleep => "sleep",
        }
    }
}

/// Points of one type a participant deleted at the provider: from then on neither the API
/// nor [`crate::truth`] has them. `GET /_sim/deletions` returns the list in this shape, so a
/// test can put it into [`SimConfig::deletions`] to compute the same truth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub participant: String,
    pub data_type: IntradayType,
    /// Inclusive start of the deleted interval.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
}

impl Deletion {
    /// Whether a point of `data_type` at Unix second `t` is deleted (a steps minute is
    /// identified by its start, a sleep session by its end).
    pub(crate) fn covers(&self, data_type: IntradayType, t: i64) -> bool {
        self.data_type == data_type && self.start.timestamp() <= t && t < self.end.timestamp()
    }
}

/// Configuration of one simulator instance.
///
/// It is a `clap::Args` so the `fitlink` binary can `#[command(flatten)]` it; every flag
/// also reads an environment variable `FITLINK_SIM_*`. Tests that link the crate build it
/// with [`SimConfig::default`] (identical to the CLI defaults) and tweak fields.
///
/// Everything the simulator serves is a pure function of this struct plus the runtime
/// control state (restatements, `advance`), which is why the [`crate::truth`] functions
/// only need a `&SimConfig`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// TCP port (0 = ephemeral).
    #[arg(long = "port", env = "FITLINK_SIM_PORT", default_value_t = 0)]
    pub port: u16,
    /// Address to listen on. Loopback unless you opt in, e.g. `0.0.0.0` inside a container
    /// network (docker compose's `simulator` profile); tests and the demo keep 127.0.0.1.
    #[arg(long = "bind", env = "FITLINK_SIM_BIND", default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Number of synthetic participants (`sim-0001`, `sim-0002`, ...).
    #[arg(
        long = "participants",
        env = "FITLINK_SIM_PARTICIPANTS",
        default_value_t = 10
    )]
    pub participants: usize,
    /// History length in days: every participant's `sync_from` is `until - days`.
    #[arg(long = "days", env = "FITLINK_SIM_DAYS", default_value_t = 7)]
    pub days: u32,
    /// Synthetic clock: each participant's latest device sync is at or up to 30 minutes
    /// before this instant (plus `advance_minutes`). The default window covers the US DST
    /// end of 2026-11-01.
    #[arg(
        long = "until",
        env = "FITLINK_SIM_UNTIL",
        default_value = "2026-11-04T06:00:00Z"
    )]
    pub until: DateTime<Utc>,
    /// Seed of the deterministic generator.
    #[arg(long = "seed", env = "FITLINK_SIM_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Heart-rate sample spacing in seconds for ordinary participants.
    #[arg(
        long = "hr-interval-secs",
        env = "FITLINK_SIM_HR_INTERVAL_SECS",
        default_value_t = 60
    )]
    pub hr_interval_secs: u32,
    /// Every Nth participant (sim-000N, sim-00(2N), ...) gets 1-second heart rate; 0 = none.
    #[arg(
        long = "fine-hr-every",
        env = "FITLINK_SIM_FINE_HR_EVERY",
        default_value_t = 0
    )]
    pub fine_hr_every: usize,
    /// OAuth client id the token endpoint accepts.
    #[arg(
        long = "client-id",
        env = "FITLINK_SIM_CLIENT_ID",
        default_value = "sim-client"
    )]
    pub client_id: String,
    /// OAuth client secret the token endpoint accepts.
    #[arg(
        long = "client-secret",
        env = "FITLINK_SIM_CLIENT_SECRET",
        default_value = "sim-secret"
    )]
    pub client_secret: String,
    /// Per-participant requests per sliding minute before 429 (Google's default is 300).
    #[arg(
        long = "rate-limit-per-minute",
        env = "FITLINK_SIM_RATE_LIMIT_PER_MINUTE",
        default_value_t = 300
    )]
    pub rate_limit_per_minute: u32,
    /// Minutes the synthetic clock has already been advanced (what `POST /_sim/advance`
    /// accumulates at runtime). Truth computations must use the total the server reports.
    #[arg(
        long = "advance-minutes",
        env = "FITLINK_SIM_ADVANCE_MINUTES",
        default_value_t = 0
    )]
    pub advance_minutes: u64,
    /// Initial fault: added latency per API/token request, in milliseconds.
    #[arg(
        long = "latency-ms",
        env = "FITLINK_SIM_LATENCY_MS",
        default_value_t = 0
    )]
    pub latency_ms: u64,
    /// Initial fault: probability (0..1) that an API/token request fails with 503.
    #[arg(
        long = "error-rate",
        env = "FITLINK_SIM_ERROR_RATE",
        default_value_t = 0.0
    )]
    pub error_rate: f64,
    /// Initial fault: probability (0..1) that an API/token request fails with 429.
    #[arg(
        long = "rate-limit-rate",
        env = "FITLINK_SIM_RATE_LIMIT_RATE",
        default_value_t = 0.0
    )]
    pub rate_limit_rate: f64,
    /// Initial fault: `Retry-After` seconds sent with 429 responses (none when unset).
    #[arg(long = "retry-after-secs", env = "FITLINK_SIM_RETRY_AFTER_SECS")]
    pub retry_after_secs: Option<u64>,
    /// Legacy Fitbit API: for this many seconds after a refresh, re-using the refresh token
    /// just rotated out returns the same new pair again (unverified behaviour some clients
    /// rely on); 0 = off, every used refresh token is refused at once.
    #[arg(
        long = "legacy-refresh-grace-secs",
        env = "FITLINK_SIM_LEGACY_REFRESH_GRACE_SECS",
        default_value_t = 0
    )]
    pub legacy_refresh_grace_secs: u64,
    /// Legacy Fitbit API: requests per participant per clock hour before 429 (Fitbit: 150).
    #[arg(
        long = "legacy-rate-limit-per-hour",
        env = "FITLINK_SIM_LEGACY_RATE_LIMIT_PER_HOUR",
        default_value_t = 150
    )]
    pub legacy_rate_limit_per_hour: u32,
    /// Legacy Fitbit API: length of the quota window in seconds. Windows are aligned to
    /// multiples of it in Unix time, so 3600 is Fitbit's clock hour; tests shorten it to see
    /// the reset (the quota above then applies per window).
    #[arg(
        long = "legacy-rate-limit-window-secs",
        env = "FITLINK_SIM_LEGACY_RATE_LIMIT_WINDOW_SECS",
        default_value_t = 3600
    )]
    pub legacy_rate_limit_window_secs: u64,
    /// Google OAuth "Testing" publishing status: code exchanges add
    /// `refresh_token_expires_in` (7 days) to the token response.
    #[arg(long = "testing-mode", env = "FITLINK_SIM_TESTING_MODE")]
    pub testing_mode: bool,
    /// In testing mode, how long (real seconds) a consent's refresh token works: Google's is
    /// 7 days; tests shorten it to see a grant run out. Afterwards the token is refused with
    /// `invalid_grant` like a revoked one.
    #[arg(
        long = "testing-grant-secs",
        env = "FITLINK_SIM_TESTING_GRANT_SECS",
        default_value_t = 604_800
    )]
    pub testing_grant_secs: u64,
    /// Google Health webhooks: the subscriber's `endpointUri` notifications are POSTed to
    /// (none sent when unset).
    #[arg(long = "google-webhook-url", env = "FITLINK_SIM_GOOGLE_WEBHOOK_URL")]
    pub google_webhook_url: Option<String>,
    /// Google Health webhooks: the subscriber's `endpointAuthorization.secret`, sent
    /// verbatim as `Authorization` (the receiver compares it, so it must be configurable).
    #[arg(
        long = "google-webhook-secret",
        env = "FITLINK_SIM_GOOGLE_WEBHOOK_SECRET",
        default_value = "Bearer sim-webhook-secret"
    )]
    pub google_webhook_secret: String,
    /// Google Health webhooks: the signature header's name. Discovery names
    /// `X-HEALTHAPI-SIGNATURE`, the later guide `GOOGLE-HEALTH-API-SIGNATURE` (unverified
    /// which is live, so receivers must accept both and tests can send either).
    #[arg(
        long = "google-signature-header",
        env = "FITLINK_SIM_GOOGLE_SIGNATURE_HEADER",
        default_value = "X-HEALTHAPI-SIGNATURE"
    )]
    pub google_signature_header: String,
    /// Legacy Fitbit subscriptions: the subscriber URL notifications are POSTed to (none
    /// sent when unset).
    #[arg(long = "fitbit-webhook-url", env = "FITLINK_SIM_FITBIT_WEBHOOK_URL")]
    pub fitbit_webhook_url: Option<String>,
    /// Legacy Fitbit subscriptions: the verification code of the subscriber (`?verify=`).
    #[arg(
        long = "fitbit-verification-code",
        env = "FITLINK_SIM_FITBIT_VERIFICATION_CODE",
        default_value = "sim-verify-code"
    )]
    pub fitbit_verification_code: String,
    /// Legacy Fitbit subscriptions: the subscriber id (`X-Fitbit-Subscriber-Id`) reported
    /// by `GET /_sim/webhooks`; the simulator has no subscription API, every live grant is
    /// subscribed.
    #[arg(
        long = "fitbit-subscriber-id",
        env = "FITLINK_SIM_FITBIT_SUBSCRIBER_ID",
        default_value = "1"
    )]
    pub fitbit_subscriber_id: String,
    /// Devices sync on their own: every N real seconds the synthetic clock advances by
    /// N/60 whole minutes (at least one) and notifications are sent as for
    /// `POST /_sim/advance`; 0 = off.
    #[arg(
        long = "device-sync-every-secs",
        env = "FITLINK_SIM_DEVICE_SYNC_EVERY_SECS",
        default_value_t = 0
    )]
    pub device_sync_every_secs: u64,
    /// Provider-side deletions already made (what `GET /_sim/deletions` reports): the
    /// server starts with them and [`crate::truth`] excludes them.
    #[arg(skip)]
    pub deletions: Vec<Deletion>,
}

impl SimConfig {
    /// Builds a configuration from command-line flags (as `fitlink simulator serve` takes
    /// them), so a harness that starts a simulator process knows the same configuration and can
    /// compute its ground truth.
    pub fn from_flags<I, S>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        use clap::Parser;
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            sim: SimConfig,
        }
        let argv = std::iter::once("simulator".to_owned()).chain(flags.into_iter().map(Into::into));
        Flags::try_parse_from(argv).map(|f| f.sim)
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            port: 0,
            bind: std::net::IpAddr::from([127, 0, 0, 1]),
            participants: 10,
            days: 7,
            until: DateTime::parse_from_rfc3339("2026-11-04T06:00:00Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(DateTime::UNIX_EPOCH),
            seed: 42,
            hr_interval_secs: 60,
            fine_hr_every: 0,
            client_id: "sim-client".to_owned(),
            client_secret: "sim-secret".to_owned(),
            rate_limit_per_minute: 300,
            advance_minutes: 0,
            latency_ms: 0,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after_secs: None,
            legacy_refresh_grace_secs: 0,
            legacy_rate_limit_per_hour: 150,
            legacy_rate_limit_window_secs: 3600,
            testing_mode: false,
            testing_grant_secs: 604_800,
            google_webhook_url: None,
            google_webhook_secret: "Bearer sim-webhook-secret".to_owned(),
            google_signature_header: "X-HEALTHAPI-SIGNATURE".to_owned(),
            fitbit_webhook_url: None,
            fitbit_verification_code: "sim-verify-code".to_owned(),
            fitbit_subscriber_id: "1".to_owned(),
            device_sync_every_secs: 0,
            deletions: Vec::new(),
        }
    }
}

impl SimConfig {
    /// Rejects configurations the generator cannot serve meaningfully.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.hr_interval_secs >= 1,
            "hr_interval_secs must be at least 1"
        );
        anyhow::ensure!(self.days >= 1, "days must be at least 1");
        anyhow::ensure!(self.participants <= 9999, "at most 9999 participants");
        anyhow::ensure!(
            self.legacy_rate_limit_per_hour >= 1 && self.legacy_rate_limit_window_secs >= 1,
            "legacy_rate_limit_per_hour and legacy_rate_limit_window_secs must be at least 1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.error_rate) && (0.0..=1.0).contains(&self.rate_limit_rate),
            "error_rate and rate_limit_rate must be within 0..1"
        );
        anyhow::ensure!(
            self.deletions.iter().all(|d| d.start < d.end),
            "every deletion must have start < end"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimConfig,
    }

    #[test]
    fn default_matches_cli_defaults() {
        let cli = Cli::try_parse_from(["sim"]).unwrap();
        assert_eq!(cli.sim, SimConfig::default());
        SimConfig::default().validate().unwrap();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "sim",
            "--until",
            "2026-01-01T00:00:00Z",
            "--retry-after-secs",
            "3",
            "--participants",
            "2",
            "--legacy-refresh-grace-secs",
            "120",
            "--testing-mode",
            "--google-webhook-url",
            "http://127.0.0.1:9/hook",
            "--device-sync-every-secs",
            "60",
        ])
        .unwrap();
        assert_eq!(cli.sim.participants, 2);
        assert_eq!(cli.sim.legacy_refresh_grace_secs, 120);
        assert_eq!(cli.sim.legacy_rate_limit_per_hour, 150);
        assert_eq!(cli.sim.retry_after_secs, Some(3));
        assert!(cli.sim.testing_mode);
        assert_eq!(
            cli.sim.google_webhook_url.as_deref(),
            Some("http://127.0.0.1:9/hook")
        );
        assert_eq!(cli.sim.device_sync_every_secs, 60);
        assert_eq!(cli.sim.google_signature_header, "X-HEALTHAPI-SIGNATURE");
        assert_eq!(cli.sim.until.to_rfc3339(), "2026-01-01T00:00:00+00:00");
    }
}
