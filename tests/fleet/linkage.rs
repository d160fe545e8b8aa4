//! Linkage as processes: invitations, the consent flow (driven over HTTP here; the browser test
//! drives it in Chromium), provider webhooks, re-consent and withdrawal.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use fitlink_shared::domain::UtcInstant;
use fitlink_shared::fetch;

use crate::harness::{FITBIT_VERIFICATION_CODE, Options, TestFleet};

/// What the participant saw at the end of a consent flow.
pub struct Finished {
    pub status: StatusCode,
    pub page: String,
}

/// Drives the consent flow the way a browser would, without one: follows the invitation to the
/// simulator's consent page, submits its form, and brings the answer back to the portal with the
/// portal's cookie.
pub struct ConsentDriver {
    http: reqwest::Client,
}

/// The consent page's form, as served.
pub struct ConsentForm {
    pub action: String,
    pub request: String,
    pub scopes: Vec<String>,
    /// `name=value` of the portal's flow cookie.
    pub cookie: String,
}

impl ConsentDriver {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// Opens an invitation link and reads the consent page it leads to.
    pub async fn open(&self, invitation_url: &str) -> Result<ConsentForm, Finished> {
        let response = self.http.get(invitation_url).send().await.unwrap();
        if response.status() != StatusCode::SEE_OTHER {
            return Err(Finished {
                status: response.status(),
                page: response.text().await.unwrap(),
            });
        }
        let authorize = header(&response, LOCATION);
        let cookie = header(&response, SET_COOKIE)
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let page = self.http.get(&authorize).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "the consent page");
        let base = {
            let url = reqwest::Url::parse(&authorize).unwrap();
            format!("{}://{}", url.scheme(), url.authority())
        };
        let html = page.text().await.unwrap();
        let action = attribute_after(&html, "<form", "action").unwrap();
        Ok(ConsentForm {
            action: format!("{base}{action}"),
            request: attribute_after(&html, "name=\"request\"", "value").unwrap(),
            scopes: all_values(&html, "name=\"scope\""),
            cookie,
        })
    }

    /// Submits the consent page as `account` with `decision` ("allow"/"deny") and `scopes`;
    /// returns the callback URL the provider redirects to.
    pub async fn decide(
        &self,
        form: &ConsentForm,
        account: &str,
        decision: &str,
        scopes: &[String],
    ) -> String {
        let mut fields = vec![
            ("request", form.request.as_str()),
            ("account", account),
            ("decision", decision),
        ];
        fields.extend(scopes.iter().map(|s| ("scope", s.as_str())));
        let response = self
            .http
            .post(&form.action)
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_redirection(),
            "the consent decision redirects: {}",
            response.status()
        );
        header(&response, LOCATION)
    }

    /// Brings the provider's answer back to the portal with the flow's cookie.
    pub async fn callback(&self, url: &str, cookie: Option<&str>) -> Finished {
        let mut request = self.http.get(url);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        Finished {
            status: response.status(),
            page: response.text().await.unwrap(),
        }
    }

    /// The whole flow: consent as `account` with every scope asked for.
    pub async fn consent(&self, invitation_url: &str, account: &str) -> Finished {
        let form = match self.open(invitation_url).await {
            Ok(form) => form,
            Err(finished) => return finished,
        };
        let callback = self.decide(&form, account, "allow", &form.scopes).await;
        self.callback(&callback, Some(&form.cookie)).await
    }
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The value of `attribute="…"` in the first tag at or after `marker`.
fn attribute_after(html: &str, marker: &str, attribute: &str) -> Option<String> {
    let start = html.find(marker)?;
    let tag_start = html[..start].rfind('<').unwrap_or(start);
    let tag_end = start + html[start..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let key = format!("{attribute}=\"");
    let from = tag.find(&key)? + key.len();
    let to = from + tag[from..].find('"')?;
    Some(tag[from..to].replace("&amp;", "&"))
}

fn all_values(html: &str, marker: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(marker) {
        if let Some(v) = attribute_after(rest, marker, "value") {
            values.push(v);
        }
        rest = &rest[at + marker.len()..];
    }
    values
}

impl TestFleet {
    /// `fitlink invite` for one participant; returns the link.
    pub fn invite(&self, participant: &str, extra: &[&str]) -> String {
        let mut args = vec!["invite", "--csv", participant];
        args.extend_from_slice(extra);
        let output = self.cli(&args);
        assert!(
            output.status.success(),
            "fitlink invite failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        invitation_urls(&String::from_utf8_lossy(&output.stdout))
            .into_iter()
            .find(|(id, _)| id == participant)
            .unwrap_or_else(|| panic!("no invitation for {participant}"))
            .1
    }

    /// The sync_from the simulator's data starts at, for `--sync-from`.
    pub fn roster_sync_from(&self, participant: &str) -> String {
        fitlink_simulator::roster(&self.sim_config)
            .into_iter()
            .find(|p| p.participant_id == participant)
            .unwrap()
            .sync_from
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// Invites and links `participants` through the consent flow (HTTP-driven).
    pub async fn link_through_consent(&self, participants: &[String]) {
        let driver = ConsentDriver::new();
        for id in participants {
            let from = self.roster_sync_from(id);
            let url = self.invite(id, &["--sync-from", &from]);
            let finished = driver.consent(&url, id).await;
            assert_eq!(finished.status, StatusCode::OK, "{}", finished.page);
            assert!(
                finished.page.contains("your account is linked"),
                "{}",
                finished.page
            );
        }
    }

    /// Waits until every participant's cursor has reached their device's latest sync (whole
    /// minutes) as the simulator's clock now has it.
    pub async fn wait_cursors_at_latest_sync(&mut self, participants: &[String], secs: u64) {
        let targets: Vec<(String, String)> = fitlink_simulator::roster(&self.sim_config)
            .into_iter()
            .filter(|p| participants.contains(&p.participant_id))
            .map(|p| {
                let minute = p.latest_sync.timestamp().div_euclid(60) * 60;
                let at = chrono::DateTime::from_timestamp(minute, 0).unwrap();
                (
                    p.participant_id,
                    fitlink_shared::domain::UtcInstant::new(at).to_text(),
                )
            })
            .collect();
        self.wait_until("cursors at the latest device sync", secs, move |db| {
            let targets = targets.clone();
            async move {
                for (id, target) in &targets {
                    let (cursor,): (String,) = fetch!(
                        db.exec(),
                        sqlx::query_as(
                            "SELECT sync_cursor FROM participants WHERE participant_id = $1",
                        )
                        .bind(id),
                        one
                    )
                    .unwrap();
                    if cursor < *target {
                        return false;
                    }
                }
                true
            }
        })
        .await;
    }

    /// Waits until a count of the participant's rows (`sql` binds the participant as `$1`)
    /// exceeds `above`.
    pub async fn wait_for_count(
        &mut self,
        what: &str,
        sql: &'static str,
        participant: &str,
        above: i64,
        secs: u64,
    ) {
        let id = participant.to_owned();
        self.wait_until(what, secs, move |db| {
            let id = id.clone();
            async move {
                let (n,): (i64,) = fetch!(db.exec(), sqlx::query_as(sql).bind(&id), one).unwrap();
                n > above
            }
        })
        .await;
    }

    /// Waits until the participant is in `state` (and its reason mentions `reason`, if given).
    pub async fn wait_for_state(
        &mut self,
        participant: &str,
        state: &'static str,
        reason: Option<&'static str>,
        secs: u64,
    ) {
        let id = participant.to_owned();
        self.wait_until(&format!("{participant} to be {state}"), secs, move |db| {
            let id = id.clone();
            async move {
                let (now, why): (String, Option<String>) =
                    fetch!(db.exec(), sqlx::query_as(
                        "SELECT state, state_reason FROM participants WHERE participant_id = $1",
                    )
                    .bind(&id), one)
                    .unwrap();
                now == state && reason.is_none_or(|r| why.is_some_and(|w| w.contains(r)))
            }
        })
        .await;
    }

    /// POSTs JSON to the simulator's control API; returns its JSON answer.
    pub async fn sim_post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.sim.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Jobs of a participant in the ledger, by trigger.
    pub async fn jobs_by(&self, participant: &str, trigger: &str) -> i64 {
        let (n,): (i64,) =
            fetch!(self.db.exec(), sqlx::query_as(
                "SELECT count(*) FROM sync_jobs WHERE participant_id = $1 AND requested_by = $2",
            )
            .bind(participant)
            .bind(trigger), one)
            .unwrap();
        n
    }
}

/// `(participant_id, invitation_url)` pairs of `fitlink invite --csv` output.
pub fn invitation_urls(csv: &str) -> Vec<(String, String)> {
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            let id = fields.next()?.to_owned();
            let _provider = fields.next()?;
            Some((id, fields.next()?.to_owned()))
        })
        .collect()
}

pub fn linked_fleet_options() -> Options {
    Options {
        participants: 3,
        days: 2,
        portal: true,
        start_sync: false,
        // Only the first tick polls: whatever syncs later was asked for by a webhook or a consent.
        env: vec![("FITLINK_SYNC_INTERVAL_SECS", "3600".to_owned())],
        ..Options::default()
    }
}

/// A fleet with the portal, a dispatcher and workers running; nobody linked yet.
pub async fn start_linked_fleet(options: Options) -> TestFleet {
    let workers = options.workers;
    let mut fleet = TestFleet::start(options).await;
    fleet.start_workers(workers);
    fleet.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
    let portal = fleet.portal_url.clone().unwrap();
    fleet
        .wait_answering("the portal", &format!("{portal}/"))
        .await;
    fleet
}

#[tokio::test]
async fn webhooks_verify_sync_coalesce_refuse_and_delete() {
    let mut fleet = start_linked_fleet(linked_fleet_options()).await;
    let ids = fleet.participant_ids();

    // The verification handshakes, both ways, as each provider runs them.
    let google = fleet
        .sim_post(
            "/_sim/webhooks/verify",
            json!({"provider": "google-health"}),
        )
        .await;
    assert_eq!(google["with_secret_status"], 201, "{google}");
    assert_eq!(google["without_secret_status"], 401, "{google}");
    let fitbit = fleet
        .sim_post("/_sim/webhooks/verify", json!({"provider": "fitbit"}))
        .await;
    assert_eq!(fitbit["correct_code_status"], 204, "{fitbit}");
    assert_eq!(fitbit["wrong_code_status"], 404, "{fitbit}");
    let wrong = fleet
        .http
        .get(format!(
            "{}/webhooks/fitbit?verify={FITBIT_VERIFICATION_CODE}x",
            fleet.portal_url.as_ref().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);

    fleet.link_through_consent(&ids).await;
    fleet.wait_synced(&ids, 120).await;

    // A device sync: the simulator notifies (signed UPSERTs) and the data is stored within
    // seconds, although the schedule will not poll for an hour.
    fleet
        .sim_post("/_sim/advance", json!({"minutes": 90}))
        .await;
    fleet.advance_truth(90);
    fleet.wait_cursors_at_latest_sync(&ids, 30).await;
    assert!(fleet.jobs_by(&ids[0], "webhook").await >= 1);
    fleet.wait_synced(&ids, 60).await;
    for id in &ids {
        fleet.assert_matches_truth(id, &Default::default()).await;
    }

    // 1,000 copies of one notification (ten rounds of 100 identical bodies): one job.
    let before = fleet.jobs_by(&ids[1], "webhook").await;
    for _ in 0..10 {
        let sent = fleet
            .sim_post(
                "/_sim/webhooks/send",
                json!({"participant": ids[1], "provider": "google-health", "operation": "UPSERT",
                       "data_type": "steps", "start": "2026-11-03T05:00:00Z", "end": "2026-11-03T05:30:00Z",
                       "copies": 100, "same_body": true}),
            )
            .await;
        let statuses = sent["statuses"].as_array().unwrap();
        assert_eq!(statuses.len(), 100);
        assert!(
            statuses.iter().all(|s| s == 204),
            "every copy answered 204: {sent}"
        );
    }
    // A bad signature: refused, counted, no work.
    let forged_before = fleet.jobs_by(&ids[2], "webhook").await;
    let forged = fleet
        .sim_post(
            "/_sim/webhooks/send",
            json!({"participant": ids[2], "provider": "google-health", "operation": "UPSERT",
                   "data_type": "steps", "start": "2026-11-03T05:00:00Z", "end": "2026-11-03T05:30:00Z",
                   "bad_signature": true}),
        )
        .await;
    assert!(
        forged["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s == 401),
        "{forged}"
    );
    // A barrier: a later notification for the first participant; once its job is done,
    // everything published before it has been applied.
    let barrier_before = fleet.jobs_by(&ids[0], "webhook").await;
    fleet
        .sim_post(
            "/_sim/webhooks/send",
            json!({"participant": ids[0], "provider": "google-health", "operation": "UPSERT",
                   "data_type": "heart-rate", "start": "2026-11-03T04:00:00Z", "end": "2026-11-03T04:10:00Z"}),
        )
        .await;
    fleet
        .wait_for_count(
            "the barrier notification's job",
            "SELECT count(*) FROM sync_jobs WHERE participant_id = $1 \
             AND requested_by = 'webhook' AND finished_at IS NOT NULL",
            &ids[0],
            barrier_before,
            30,
        )
        .await;
    fleet.wait_synced(&ids, 60).await;
    assert_eq!(
        fleet.jobs_by(&ids[1], "webhook").await - before,
        1,
        "1,000 duplicate notifications make one job"
    );
    assert_eq!(
        fleet.jobs_by(&ids[2], "webhook").await,
        forged_before,
        "a notification with a bad signature creates no work"
    );

    // DELETE: the provider removed some heart-rate points; exactly those go.
    let victim = ids[2].clone();
    let (start, end) = ("2026-11-03T03:00:00Z", "2026-11-03T03:20:00Z");
    let count_in = |db: fitlink_shared::store::Database,
                    id: String,
                    from: &'static str,
                    to: &'static str| async move {
        let (n,): (i64,) = fetch!(db.exec(), sqlx::query_as(
            "SELECT count(*) FROM heart_rate_intraday WHERE participant_id = $1 AND datetime >= $2 AND datetime < $3",
        )
        .bind(id)
        .bind(from)
        .bind(to), one)
        .unwrap();
        n
    };
    let inside = count_in(fleet.db.clone(), victim.clone(), start, end).await;
    let all_before = count_in(fleet.db.clone(), victim.clone(), "0", "9").await;
    assert!(inside > 0, "the interval holds stored points");
    fleet
        .sim_post(
            &format!("/_sim/participants/{victim}/delete-data"),
            json!({"data_type": "heart-rate", "start": start, "end": end}),
        )
        .await;
    fleet
        .wait_for_count(
            "the deletion to be recorded",
            "SELECT count(*) FROM provider_deletions WHERE participant_id = $1",
            &victim,
            0,
            30,
        )
        .await;
    fleet.wait_synced(&ids, 60).await;
    assert_eq!(
        count_in(fleet.db.clone(), victim.clone(), start, end).await,
        0
    );
    assert_eq!(
        count_in(fleet.db.clone(), victim.clone(), "0", "9").await,
        all_before - inside,
        "only the notified points were removed"
    );
    let (recorded,): (i64,) = fetch!(
        fleet.db.exec(),
        sqlx::query_as(
            "SELECT sum(rows_deleted) FROM provider_deletions WHERE participant_id = $1"
        )
        .bind(&victim),
        one
    )
    .unwrap();
    assert_eq!(recorded, inside, "the audit row counts what went");

    // The participant deletes a sleep session too: it goes with its levels, and the ledger's
    // days (one fewer session, fewer worn minutes) agree with the truth after both deletions.
    let (session, session_end): (String, UtcInstant) = fetch!(
        fleet.db.exec(),
        sqlx::query_as(
            "SELECT session_id, end_datetime FROM sleep_daily_summary WHERE participant_id = $1 \
             ORDER BY end_datetime DESC LIMIT 1"
        )
        .bind(&victim),
        one
    )
    .unwrap();
    let around = |minutes: i64| {
        fitlink_shared::domain::format_instant(
            session_end.get() + chrono::TimeDelta::minutes(minutes),
        )
    };
    fleet
        .sim_post(
            &format!("/_sim/participants/{victim}/delete-data"),
            json!({"data_type": "sleep", "start": around(-1), "end": around(1)}),
        )
        .await;
    fleet
        .wait_for_count(
            "the sleep deletion to be recorded",
            "SELECT count(*) FROM provider_deletions WHERE participant_id = $1",
            &victim,
            1,
            30,
        )
        .await;
    let (left,): (i64,) = fetch!(
        fleet.db.exec(),
        sqlx::query_as(
            "SELECT count(*) FROM sleep_level WHERE participant_id = $1 AND session_id = $2"
        )
        .bind(&victim)
        .bind(&session),
        one
    )
    .unwrap();
    assert_eq!(left, 0, "the deleted session's levels went with it");
    fleet.learn_deletions().await;
    fleet.wait_synced(&ids, 60).await;
    fleet
        .assert_matches_truth(&victim, &Default::default())
        .await;
    fleet.finish().await;
}

#[tokio::test]
async fn reconsent_after_revocation_continues_from_the_cursor_without_a_gap() {
    // The schedule polls (a revoked grant gets no notifications): it finds the revocation.
    let mut fleet = start_linked_fleet(Options {
        participants: 2,
        env: vec![("FITLINK_SYNC_INTERVAL_SECS", "2".to_owned())],
        ..linked_fleet_options()
    })
    .await;
    let ids = fleet.participant_ids();
    let id = ids[0].clone();
    fleet.link_through_consent(&ids).await;
    fleet.wait_synced(&ids, 120).await;
    let first_token = fleet.stored_refresh_token(&id).await;

    // The participant revokes access; their device keeps syncing at the provider.
    fleet
        .sim_post(&format!("/_sim/participants/{id}/revoke"), json!({}))
        .await;
    fleet
        .sim_post("/_sim/advance", json!({"minutes": 120}))
        .await;
    fleet.advance_truth(120);
    fleet.wait_for_state(&id, "revoked", None, 60).await;
    let cursor_before = fleet.participant(&id).await.sync_cursor;

    // The coordinator invites everyone who needs consent; the participant completes it.
    let output = fleet.cli(&["invite", "--needing-consent", "--csv"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let links = invitation_urls(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(
        links.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        vec![id.as_str()],
        "only the revoked participant needs consent"
    );
    let finished = ConsentDriver::new().consent(&links[0].1, &id).await;
    assert!(
        finished.page.contains("your account is linked"),
        "{}",
        finished.page
    );

    fleet.wait_cursors_at_latest_sync(&ids, 120).await;
    fleet.wait_synced(&ids, 120).await;
    let row = fleet.participant(&id).await;
    assert_eq!(row.state, "active");
    assert!(
        row.sync_cursor > cursor_before,
        "the cursor moved on from where it stopped"
    );
    // No gap: everything from the first sync_from to the new cursor matches the provider.
    fleet.assert_matches_truth(&id, &Default::default()).await;
    // The new grant is the one stored; the revoked one stays dead.
    assert_ne!(fleet.stored_refresh_token(&id).await, first_token);
    let (jobs_from_consent,): (i64,) =
        fetch!(fleet.db.exec(), sqlx::query_as(
            "SELECT count(*) FROM sync_jobs WHERE participant_id = $1 AND requested_by = 'consent'",
        )
        .bind(&id), one)
        .unwrap();
    assert_eq!(
        jobs_from_consent, 2,
        "first consent and re-consent each started a sync"
    );
    fleet.finish().await;
}

#[tokio::test]
async fn withdrawal_revokes_purges_and_leaves_an_audit_row() {
    let mut fleet = start_linked_fleet(Options {
        participants: 2,
        ..linked_fleet_options()
    })
    .await;
    let ids = fleet.participant_ids();
    fleet.link_through_consent(&ids).await;
    fleet.wait_synced(&ids, 120).await;
    let (leaving, staying) = (ids[0].clone(), ids[1].clone());
    let token = fleet.stored_refresh_token(&leaving).await;
    let (hr_rows,): (i64,) = fetch!(
        fleet.db.exec(),
        sqlx::query_as("SELECT count(*) FROM heart_rate_intraday WHERE participant_id = $1")
            .bind(&leaving),
        one
    )
    .unwrap();
    assert!(hr_rows > 0);

    let output = fleet.cli(&[
        "participants",
        "withdraw",
        &leaving,
        "--purge",
        "--by",
        "coordinator-7",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("withdrawn"), "{stdout}");
    assert!(stdout.contains("revoked at the provider"), "{stdout}");

    // Nothing of theirs is left but the participant row and the audit row; no token anywhere.
    for table in [
        "activity_summary",
        "heart_rate_summary",
        "resting_heart_rate",
        "heart_rate_intraday",
        "steps_intraday",
        "credentials",
    ] {
        let (n,): (i64,) = fetch!(
            fleet.db.exec(),
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table} WHERE participant_id = $1"
            )))
            .bind(&leaving),
            one
        )
        .unwrap();
        assert_eq!(n, 0, "{table} still holds rows of a purged participant");
    }
    let (by, purged, hr_deleted, revocation): (String, i64, i64, String) = fetch!(
        fleet.db.exec(),
        sqlx::query_as(
            "SELECT withdrawn_by, purged, heart_rate_intraday_rows, provider_revocation \
         FROM withdrawals WHERE participant_id = $1",
        )
        .bind(&leaving),
        one
    )
    .unwrap();
    assert_eq!(
        (by.as_str(), purged, hr_deleted, revocation.as_str()),
        ("coordinator-7", 1, hr_rows, "revoked")
    );
    assert_eq!(fleet.participant(&leaving).await.state, "withdrawn");
    // The grant is revoked at the provider.
    let refresh = fleet
        .http
        .post(format!("{}/token", fleet.sim.base_url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token.as_str()),
            ("client_id", "sim-client"),
            ("client_secret", "sim-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refresh.status(),
        StatusCode::BAD_REQUEST,
        "the revoked grant no longer refreshes"
    );
    // They cannot be invited or synced again; the other participant is untouched.
    let again = fleet.cli(&["invite", &leaving]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("withdrawn"));
    fleet
        .assert_matches_truth(&staying, &Default::default())
        .await;
    fleet.finish().await;
}

#[tokio::test]
async fn legacy_fitbit_consent_links_and_a_revocation_notice_stops_syncing() {
    let mut fleet = start_linked_fleet(Options {
        participants: 1,
        ..linked_fleet_options()
    })
    .await;
    let id = fleet.participant_ids()[0].clone();
    let from = fleet.roster_sync_from(&id);
    let link = fleet.invite(&id, &["--provider", "fitbit", "--sync-from", &from]);
    let finished = ConsentDriver::new().consent(&link, &id).await;
    assert_eq!(finished.status, StatusCode::OK, "{}", finished.page);
    assert!(
        finished.page.contains("Fitbit account is now linked"),
        "{}",
        finished.page
    );
    fleet
        .wait_cursors_at_latest_sync(std::slice::from_ref(&id), 120)
        .await;
    fleet.wait_synced(std::slice::from_ref(&id), 60).await;
    fleet.assert_matches_legacy_truth(&id).await;
    let (provider, fitbit_user_id): (String, Option<String>) = fetch!(
        fleet.db.exec(),
        sqlx::query_as(
            "SELECT provider, fitbit_user_id FROM participants WHERE participant_id = $1",
        )
        .bind(&id),
        one
    )
    .unwrap();
    assert_eq!(provider, "fitbit");
    assert!(
        fitbit_user_id.is_some(),
        "the Fitbit user id is kept for notifications"
    );

    // The participant removes the app in their Fitbit settings: Fitbit sends userRevokedAccess.
    fleet
        .sim_post(
            &format!("/_sim/participants/{id}/revoke"),
            json!({"provider": "fitbit"}),
        )
        .await;
    fleet
        .wait_for_state(&id, "revoked", Some("userRevokedAccess"), 30)
        .await;
    fleet.finish().await;
}

#[tokio::test]
async fn an_idle_grant_of_a_parked_participant_is_kept_alive_without_changing_its_state() {
    let mut fleet = start_linked_fleet(Options {
        participants: 1,
        env: vec![
            ("FITLINK_SYNC_INTERVAL_SECS", "1".to_owned()),
            ("FITLINK_TOKEN_TOUCH_AFTER_SECS", "3".to_owned()),
        ],
        ..linked_fleet_options()
    })
    .await;
    let id = fleet.participant_ids()[0].clone();
    fleet.link_through_consent(std::slice::from_ref(&id)).await;
    fleet.wait_synced(std::slice::from_ref(&id), 60).await;

    // The provider starts sending data fitlink cannot read: the participant is parked (not
    // synced until someone looks), but their grant must not expire meanwhile.
    fleet
        .sim_post(
            "/_sim/faults",
            json!({"participants": {id.clone(): {"malformed_json": true}}}),
        )
        .await;
    fleet
        .wait_for_state(&id, "provider_data_invalid", None, 60)
        .await;
    let refreshes_before = fleet.sim_stats().await["token_refreshes"].as_u64().unwrap();
    fleet
        .wait_for_count(
            "a keep-alive touch",
            "SELECT count(*) FROM sync_jobs WHERE participant_id = $1 \
             AND requested_by = 'keep_alive' AND outcome = 'touched'",
            &id,
            0,
            60,
        )
        .await;
    let row = fleet.participant(&id).await;
    assert_eq!(
        row.state, "provider_data_invalid",
        "a touch does not change the state"
    );
    assert!(
        fleet.sim_stats().await["token_refreshes"].as_u64().unwrap() > refreshes_before,
        "the provider saw the refresh token used"
    );
    let (used, failed_at): (Option<String>, Option<String>) =
        fetch!(fleet.db.exec(), sqlx::query_as(
            "SELECT credential_used_at, last_error_at FROM participants WHERE participant_id = $1",
        )
        .bind(&id), one)
        .unwrap();
    assert!(used >= failed_at, "credential_used_at moved with the touch");
    fleet.finish().await;
}

#[tokio::test]
async fn forged_expired_and_cross_participant_links_are_refused_and_store_nothing() {
    use fitlink_shared::linkage::invitation::InvitationSigner;
    use fitlink_shared::messages::{Invitation, instant};

    let fleet = start_linked_fleet(Options {
        participants: 2,
        ..linked_fleet_options()
    })
    .await;
    let ids = fleet.participant_ids();
    let driver = ConsentDriver::new();
    let portal = fleet.portal_url.clone().unwrap();

    // Forged: a changed character, or a link signed with another key.
    let link = fleet.invite(&ids[0], &[]);
    let token = link.rsplit('/').next().unwrap();
    let mut forged = token.to_owned().into_bytes();
    let i = forged.len() / 2;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = format!("{portal}/link/{}", String::from_utf8(forged).unwrap());
    let other_key =
        fitlink_shared::secret::TokenKeys::parse(&fitlink_shared::secret::TokenKey::generate())
            .unwrap();
    let now = chrono::Utc::now();
    let invitation = |expires: chrono::DateTime<chrono::Utc>| Invitation {
        invitation_id: uuid::Uuid::new_v4(),
        participant_id: fitlink_shared::domain::ParticipantId::new(ids[0].as_str()).unwrap(),
        provider: fitlink_shared::domain::Provider::GoogleHealth,
        sync_from: instant(now),
        issued_at: instant(now - chrono::TimeDelta::days(8)),
        expires_at: instant(expires),
    };
    let foreign = InvitationSigner::new(other_key.derive("invitation"))
        .sign(&invitation(now + chrono::TimeDelta::days(1)));
    // Expired: signed with the program's own key, a day past its expiry.
    let expired = InvitationSigner::new(fleet.key.derive("invitation"))
        .sign(&invitation(now - chrono::TimeDelta::days(1)));
    for (url, status, says) in [
        (forged, StatusCode::NOT_FOUND, "not valid"),
        (
            format!("{portal}/link/{foreign}"),
            StatusCode::NOT_FOUND,
            "not valid",
        ),
        (
            format!("{portal}/link/{expired}"),
            StatusCode::GONE,
            "expired",
        ),
    ] {
        let Err(refused) = driver.open(&url).await else {
            panic!("{url} led to a consent page");
        };
        assert_eq!(refused.status, status, "{}", refused.page);
        assert!(refused.page.contains(says), "{}", refused.page);
    }

    // Cross-participant: participant 2's browser (cookie) with participant 1's answer.
    let first = driver
        .open(&link)
        .await
        .unwrap_or_else(|_| panic!("consent page"));
    let second_link = fleet.invite(&ids[1], &[]);
    let second = driver
        .open(&second_link)
        .await
        .unwrap_or_else(|_| panic!("consent page"));
    let answer = driver.decide(&first, &ids[0], "allow", &first.scopes).await;
    let crossed = driver.callback(&answer, Some(&second.cookie)).await;
    assert_eq!(crossed.status, StatusCode::BAD_REQUEST, "{}", crossed.page);
    assert!(
        crossed.page.contains("started somewhere else"),
        "{}",
        crossed.page
    );

    let (credentials,): (i64,) = fetch!(
        fleet.db.exec(),
        sqlx::query_as("SELECT count(*) FROM credentials"),
        one
    )
    .unwrap();
    assert_eq!(credentials, 0, "no refused link stored anything");
    // The genuine answer with its own cookie still works.
    let finished = driver.callback(&answer, Some(&first.cookie)).await;
    assert!(
        finished.page.contains("your account is linked"),
        "{}",
        finished.page
    );
    fleet.finish().await;
}

#[tokio::test]
async fn imported_participants_learn_their_identity_once_and_then_sync_on_webhooks() {
    let mut fleet = TestFleet::start(Options {
        participants: 2,
        days: 1,
        portal: true,
        env: vec![("FITLINK_SYNC_INTERVAL_SECS", "3600".to_owned())],
        ..Options::default()
    })
    .await;
    let ids = fleet.participant_ids();
    fleet.wait_synced(&ids, 120).await;
    for p in fitlink_simulator::roster(&fleet.sim_config) {
        let (health_user_id,): (Option<String>,) = fetch!(
            fleet.db.exec(),
            sqlx::query_as("SELECT health_user_id FROM participants WHERE participant_id = $1")
                .bind(&p.participant_id),
            one
        )
        .unwrap();
        assert_eq!(health_user_id.as_deref(), Some(p.health_user_id.as_str()));
    }

    // A device sync: the notifications name the imported participants, so they sync now.
    fleet
        .sim_post("/_sim/advance", json!({"minutes": 60}))
        .await;
    fleet.advance_truth(60);
    fleet.wait_cursors_at_latest_sync(&ids, 30).await;
    fleet.wait_synced(&ids, 60).await;
    for id in &ids {
        assert!(fleet.jobs_by(id, "webhook").await >= 1);
        fleet.assert_matches_truth(id, &Default::default()).await;
    }
    let asked = fleet.sim_stats().await["by_endpoint"]["identity"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        asked,
        ids.len() as u64,
        "the identity is asked once per participant"
    );
    fleet.finish().await;
}

#[tokio::test]
async fn a_time_limited_grant_that_runs_out_needs_consent_and_reconsent_continues_without_a_gap() {
    // Google's "Testing" publishing status: a consent works for 7 days; here, for 6 seconds.
    let mut fleet = start_linked_fleet(Options {
        participants: 1,
        sim_args: vec![
            "--testing-mode".to_owned(),
            "--testing-grant-secs".to_owned(),
            "6".to_owned(),
        ],
        env: vec![("FITLINK_SYNC_INTERVAL_SECS", "1".to_owned())],
        ..linked_fleet_options()
    })
    .await;
    let id = fleet.participant_ids()[0].clone();
    fleet.link_through_consent(std::slice::from_ref(&id)).await;
    fleet.wait_synced(std::slice::from_ref(&id), 60).await;

    // The coordinator sees the grant ending soon, and it is offered a new invitation already.
    let status = fleet.cli(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let expiring = status["expiring_grants"].as_array().unwrap();
    assert!(
        expiring.iter().any(|g| g["participant_id"] == id.as_str()),
        "{status}"
    );
    let soon = fleet.cli(&["invite", "--needing-consent", "--csv"]);
    let soon = String::from_utf8_lossy(&soon.stdout);
    assert!(soon.contains(&format!("{id},")), "{soon}");
    assert!(soon.contains("grant_expiring"), "{soon}");

    // It runs out; the device keeps syncing at the provider meanwhile.
    fleet.wait_for_state(&id, "consent_expired", None, 60).await;
    let cursor_before = fleet.participant(&id).await.sync_cursor;
    fleet
        .sim_post("/_sim/advance", json!({"minutes": 60}))
        .await;
    fleet.advance_truth(60);

    let output = fleet.cli(&["invite", "--needing-consent", "--csv"]);
    let links = invitation_urls(&String::from_utf8_lossy(&output.stdout));
    let (_, link) = links.iter().find(|(p, _)| *p == id).expect("invited again");
    let finished = ConsentDriver::new().consent(link, &id).await;
    assert!(
        finished.page.contains("your account is linked"),
        "{}",
        finished.page
    );
    fleet
        .wait_cursors_at_latest_sync(std::slice::from_ref(&id), 60)
        .await;
    fleet.wait_synced(std::slice::from_ref(&id), 60).await;
    let row = fleet.participant(&id).await;
    assert!(row.sync_cursor > cursor_before);
    fleet.assert_matches_truth(&id, &Default::default()).await;
    fleet.finish().await;
}
