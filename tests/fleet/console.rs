//! The coordinators' console in a real browser (headless Chromium through chromedriver) against
//! a fleet of real processes: sign in, find the participant whose battery is lowest, open their
//! page, sync them now and see the data arrive, make a consent link, retry a group of dead
//! letters and see them leave the queue and the participant sync, discard one with a reason; a
//! forged form and a viewer are refused (403) and change nothing; every action is in the audit
//! table.
//!
//! Set `FITLINK_SCREENSHOT_DIR` to keep the screenshots (the README's come from here).

use std::time::Duration;

use reqwest::StatusCode;

use fitlink_shared::fetch;

use crate::browser::screenshot;
use crate::harness::{Options, TestFleet};
use crate::webdriver::Browser;

pub const ADMIN_USER: &str = "coordinator";
pub const ADMIN_PASSWORD: &str = "a long test password";

/// Starts `fitlink console` for the fleet; returns its base URL once it answers.
pub async fn start_console(t: &mut TestFleet, env: &[(&str, &str)]) -> String {
    let port = fitlink::fleet::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let portal = t.portal_url.clone().unwrap_or_default();
    let mut all: Vec<(&str, &str)> = vec![
        ("FITLINK_CONSOLE_ADDR", &addr),
        ("FITLINK_CONSOLE_ADMIN_USER", ADMIN_USER),
        ("FITLINK_CONSOLE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("FITLINK_PUBLIC_URL", &portal),
    ];
    all.extend_from_slice(env);
    t.fleet
        .spawn_with_env("console", &["console"], &all)
        .unwrap();
    let base = format!("http://{addr}");
    t.wait_answering("the console", &format!("{base}/login"))
        .await;
    base
}

/// Signs in with the admin credential on the sign-in page the console sent the browser to.
async fn sign_in(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/")).await;
    assert!(
        browser.url().await.contains("/login"),
        "a session is needed"
    );
    browser.fill("#user", ADMIN_USER).await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.click_to_next_page("#sign-in").await;
}

async fn audit_actions(t: &TestFleet) -> Vec<(String, String, Option<String>)> {
    fetch!(
        t.db.exec(),
        sqlx::query_as(
            "SELECT actor, action, participant_id FROM operator_actions ORDER BY action_id"
        ),
        all
    )
    .unwrap()
}

async fn jobs_of(t: &TestFleet, id: &str) -> i64 {
    let (n,): (i64,) = fetch!(
        t.db.exec(),
        sqlx::query_as("SELECT count(*) FROM sync_jobs WHERE participant_id = $1").bind(id),
        one
    )
    .unwrap();
    n
}

#[tokio::test]
async fn a_coordinator_finds_acts_and_every_action_is_audited() {
    let mut t = TestFleet::start(Options {
        participants: 4,
        days: 2,
        portal: true,
        start_sync: false,
        env: vec![("FITLINK_MAX_ATTEMPTS", "2".into())],
        // The provider's clock is now, so the pages read like a study running today.
        sim_args: vec![
            "--until".into(),
            chrono::Utc::now().format("%Y-%m-%dT%H:00:00Z").to_string(),
        ],
        ..Options::default()
    })
    .await;
    // sim-0002's provider keeps failing: its job ends in the dead-letter queue.
    t.fail_provider_for(Some("sim-0002")).await;
    t.import_roster().await;
    t.start_workers(2);
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
    let others: Vec<String> = ["sim-0001", "sim-0003", "sim-0004"]
        .map(String::from)
        .to_vec();
    t.wait_synced(&others, 90).await;
    t.wait_state("sim-0002", "dead_lettered", 90).await;

    let issuer = format!("{}/oidc", t.sim.base_url);
    let base = start_console(
        &mut t,
        &[
            ("FITLINK_OIDC_ISSUER", &issuer),
            ("FITLINK_OIDC_CLIENT_SECRET", "sim-console-secret"),
        ],
    )
    .await;
    let shots = t.dir.path().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = Browser::start().await;
    sign_in(&browser, &base).await;
    let cohort = browser.text().await;
    assert!(
        cohort.contains("Cohort") && cohort.contains("coordinator (operator)"),
        "{cohort}"
    );
    assert_eq!(browser.text_of("#total").await, "4", "{cohort}");
    screenshot(&browser, &shots, "console-cohort.png").await;

    // The list by battery, lowest first: its first row is the participant whose tracker is
    // running out (the lowest level on anyone's latest device snapshot).
    let (lowest,): (String,) = fetch!(
        t.db.exec(),
        sqlx::query_as(
            "SELECT d.participant_id FROM device d WHERE d.battery_level IS NOT NULL \
               AND d.device_date = (SELECT max(device_date) FROM device \
                                    WHERE participant_id = d.participant_id) \
             ORDER BY d.battery_level, d.participant_id LIMIT 1"
        ),
        one
    )
    .unwrap();
    browser.goto(&format!("{base}/participants")).await;
    browser.select("#sort", "battery").await;
    browser.click_to_next_page("#apply").await;
    browser
        .click_to_next_page("#participants tbody tr:first-child td:first-child a")
        .await;
    assert!(
        browser
            .url()
            .await
            .ends_with(&format!("/participants/{lowest}")),
        "the first row of the battery order is {lowest}: {}",
        browser.url().await
    );
    let page = browser.text().await;
    assert!(
        page.contains(&format!("Participant {lowest}")) && page.contains("Devices"),
        "{page}"
    );
    screenshot(&browser, &shots, "console-participant.png").await;

    // Sync now: the provider has two more hours of data; the button asks for a sync, and the
    // data arrives (the cursor moves and the page shows it).
    // The provider's webhooks are turned off first, so what brings the data is the button.
    let before = t.participant(&lowest).await;
    t.sim_control(
        "/_sim/webhooks",
        serde_json::json!({ "google_webhook_url": null }),
    )
    .await;
    t.sim_control("/_sim/advance", serde_json::json!({ "minutes": 120 }))
        .await;
    t.advance_truth(120);
    browser.click_to_next_page("#sync-now").await;
    assert!(browser.text().await.contains("Sync requested"));
    let id = lowest.clone();
    let cursor = before.sync_cursor.clone();
    t.wait_until("the console's sync to store new data", 60, move |db| {
        let (id, cursor) = (id.clone(), cursor.clone());
        async move {
            let row: (String, Option<String>) = fetch!(
                db.exec(),
                sqlx::query_as(
                    "SELECT CAST(sync_cursor AS TEXT), in_flight_job_id FROM participants WHERE participant_id = $1"
                )
                .bind(id),
                one
            )
            .unwrap();
            row.0 != cursor && row.1.is_none()
        }
    })
    .await;
    let after = t.participant(&lowest).await;
    browser.goto(&format!("{base}/participants/{lowest}")).await;
    let page = browser.text().await;
    let shown = after.sync_cursor.get(..16).unwrap().replace('T', " ");
    assert!(
        page.contains(&shown),
        "the page shows the new cursor {shown}: {page}"
    );
    assert!(
        page.contains("manual"),
        "the sync history names the manual sync: {page}"
    );
    t.assert_matches_truth(&lowest, &Default::default()).await;

    // A new consent link: a working link to the portal, recorded as an invitation.
    browser.click_to_next_page("#consent-link").await;
    let link = browser.attribute("#link", "value").await.unwrap();
    let portal = t.portal_url.clone().unwrap();
    assert!(link.starts_with(&format!("{portal}/link/")), "{link}");
    let answer = t.http.get(&link).send().await.unwrap();
    assert!(
        answer.status().is_redirection() || answer.status().is_success(),
        "{}",
        answer.status()
    );
    let id = lowest.clone();
    t.wait_until("the invitation to be recorded", 30, move |db| {
        let id = id.clone();
        async move {
            let (n,): (i64,) = fetch!(
                db.exec(),
                sqlx::query_as("SELECT count(*) FROM invitations WHERE participant_id = $1")
                    .bind(id),
                one
            )
            .unwrap();
            n == 1
        }
    })
    .await;

    // Dead letters, grouped by reason; the provider recovers; retrying the group empties the
    // queue and sim-0002 syncs.
    browser.goto(&format!("{base}/dead-letters")).await;
    let page = browser.text().await;
    assert!(
        page.contains("Dead jobs: 1") && page.contains("sim-0002"),
        "{page}"
    );
    screenshot(&browser, &shots, "console-dead-letters.png").await;
    t.fail_provider_for(None).await;
    browser
        .click_to_next_page("#groups tbody tr:first-child button[id^=retry-]")
        .await;
    assert!(browser.url().await.contains("/dead-letters/replays/"));
    let mut done = String::new();
    for _ in 0..100 {
        done = browser.text().await;
        if done.contains("Done:") {
            break;
        }
        browser.goto(&browser.url().await).await;
    }
    assert!(done.contains("Done: 1 participant(s)"), "{done}");
    assert_eq!(t.queue_depth(&t.topology.jobs_dead).await, 0);
    t.wait_synced(&["sim-0002".to_owned()], 60).await;
    assert_eq!(t.participant("sim-0002").await.state, "active");

    // A dead letter nobody wants replayed is discarded, with the reason the audit keeps.
    t.fail_provider_for(Some("sim-0003")).await;
    browser.goto(&format!("{base}/participants/sim-0003")).await;
    browser.click_to_next_page("#sync-now").await;
    t.wait_state("sim-0003", "dead_lettered", 90).await;
    t.fail_provider_for(None).await;
    browser.goto(&format!("{base}/dead-letters")).await;
    assert!(browser.text().await.contains("Dead jobs: 1"));
    browser
        .fill(
            "#groups tbody tr:first-child input[name=why]",
            "superseded by a newer sync",
        )
        .await;
    browser
        .click_to_next_page("#groups tbody tr:first-child button[id^=discard-]")
        .await;
    let page = browser.text().await;
    assert!(page.contains("1 dead letter(s) discarded"), "{page}");
    assert_eq!(t.queue_depth(&t.topology.jobs_dead).await, 0);
    let (detail,): (String,) = fetch!(
        t.db.exec(),
        sqlx::query_as("SELECT detail FROM operator_actions WHERE action = 'dead_letters_discard'"),
        one
    )
    .unwrap();
    assert!(detail.contains("superseded by a newer sync"), "{detail}");

    // A forged form (this session's cookie, not its token) is refused and does nothing.
    let cookie = browser.cookie("fitlink_console").await.unwrap();
    let jobs_before = jobs_of(&t, "sim-0001").await;
    let audited_before = audit_actions(&t).await.len();
    let forged = t
        .http
        .post(format!("{base}/participants/sim-0001/sync"))
        .header("cookie", &cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        forged
            .text()
            .await
            .unwrap()
            .contains("not issued by the console")
    );
    // Without any session, an action goes to the sign-in page.
    let anonymous = t
        .http
        .post(format!("{base}/dead-letters/retry"))
        .form(&[("csrf", "x"), ("scope", "all")])
        .send()
        .await
        .unwrap();
    assert!(
        anonymous.url().path().starts_with("/login"),
        "{}",
        anonymous.url()
    );

    // Every action is audited, by who did it; the refused ones are not.
    let audited = audit_actions(&t).await;
    let actions: Vec<&str> = audited.iter().map(|(_, a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "sync_now",
            "consent_link",
            "dead_letters_retry",
            "sync_now",
            "dead_letters_discard"
        ],
        "{audited:?}"
    );
    assert!(
        audited.iter().all(|(actor, _, _)| actor == ADMIN_USER),
        "{audited:?}"
    );
    assert_eq!(audited[0].2.as_deref(), Some(lowest.as_str()));
    assert_eq!(audited.len(), audited_before);
    assert_eq!(
        jobs_of(&t, "sim-0001").await,
        jobs_before,
        "the forged form did nothing"
    );
    browser.goto(&format!("{base}/audit")).await;
    let page = browser.text().await;
    assert!(
        page.contains("dead letters retry") && page.contains(ADMIN_USER),
        "{page}"
    );

    browser.close().await;

    // Through the program's identity provider: a viewer sees every page but cannot act (403,
    // nothing done, nothing audited); someone in neither group is not let in.
    let viewer = Browser::start().await;
    sign_in_with_provider(&viewer, &base, "viewer@example.org").await;
    let page = viewer.text().await;
    assert!(page.contains("viewer@example.org (viewer)"), "{page}");
    // Everyone is linked and syncing (sim-0003's dead letter was discarded, not a consent
    // problem): nobody needs a consent link, and the page says so.
    viewer.goto(&format!("{base}/consent")).await;
    let page = viewer.text().await;
    assert!(page.contains("Nobody needs a consent."), "{page}");
    viewer.goto(&format!("{base}/participants/sim-0001")).await;
    assert_eq!(
        viewer.attribute("#sync-now", "disabled").await.as_deref(),
        Some("true"),
        "a viewer's button is disabled"
    );
    let csrf = viewer
        .attribute("form[action$='/sync'] input[name=csrf]", "value")
        .await
        .unwrap();
    let cookie = viewer.cookie("fitlink_console").await.unwrap();
    let refused = t
        .http
        .post(format!("{base}/participants/sim-0001/sync"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("Viewers cannot act"));
    assert_eq!(
        audit_actions(&t).await.len(),
        audited_before,
        "nothing audited"
    );
    assert_eq!(jobs_of(&t, "sim-0001").await, jobs_before, "nothing done");
    viewer.close().await;

    let outsider = Browser::start().await;
    sign_in_with_provider(&outsider, &base, "outsider@example.org").await;
    let page = outsider.text().await;
    assert!(page.contains("No access to the console"), "{page}");
    outsider.goto(&format!("{base}/")).await;
    assert!(
        outsider.url().await.contains("/login"),
        "no session was started"
    );
    outsider.close().await;

    t.finish().await;
}

/// Signs in as `email` on the identity provider's (the simulator's) sign-in page.
async fn sign_in_with_provider(browser: &Browser, base: &str, email: &str) {
    browser.goto(&format!("{base}/")).await;
    browser.click_to_next_page("#sign-in-oidc").await;
    assert!(
        browser.text().await.contains("Staff sign-in"),
        "the provider's page"
    );
    browser.select("#user", email).await;
    browser.click_to_next_page("#sign-in").await;
    // A signed-in person lands on a page that moves on by itself (a same-site navigation, so the
    // session cookie goes with it); a refused one stays on the callback's page.
    for _ in 0..100 {
        let url = browser.url().await;
        if !url.contains("/login/callback") || !browser.text().await.contains("Signed in as") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the signed-in page did not move on");
}

/// Where the web roles stop reading: a console form is read up to 64 KiB (a sign-in just
/// under it works), and past it the answer is 413 before any handler runs, signed in or not,
/// and nothing changes; the consent portal takes no body at all (its routes are `GET`s).
#[tokio::test]
async fn an_oversized_form_is_refused_before_any_handler_runs() {
    const FORM_LIMIT: usize = 64 * 1024;
    let mut t = TestFleet::start(Options {
        participants: 1,
        days: 1,
        portal: true,
        start_sync: false,
        ..Options::default()
    })
    .await;
    t.import_roster().await;
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
    let base = start_console(&mut t, &[]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |url: String, body: String, cookie: Option<String>| {
        let mut request = http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        async move { request.send().await.unwrap() }
    };
    // A form of exactly `size` bytes: its fields, then padding the handler ignores.
    let form = |fields: &str, size: usize| {
        let mut body = format!("{fields}&pad=");
        body.push_str(&"x".repeat(size - body.len()));
        body
    };
    let sign_in = format!("user={ADMIN_USER}&password={ADMIN_PASSWORD}&next=/");

    let refused = post(
        format!("{base}/login"),
        form(&sign_in, FORM_LIMIT + 1),
        None,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(refused.headers().get("set-cookie").is_none(), "no session");

    let signed_in = post(
        format!("{base}/login"),
        form(&sign_in, FORM_LIMIT - 1),
        None,
    )
    .await;
    assert_eq!(
        signed_in.status(),
        StatusCode::SEE_OTHER,
        "read and signed in"
    );
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .expect("a session")
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let audited = audit_actions(&t).await;
    let links = post(
        format!("{base}/consent/links"),
        form("csrf=unread&format=csv", FORM_LIMIT + 1),
        Some(cookie),
    )
    .await;
    // Read, the wrong csrf would be a 403: 413 says the body was refused unread.
    assert_eq!(links.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(audit_actions(&t).await, audited, "nothing was done");

    let portal = t.portal_url.clone().expect("the portal");
    t.wait_answering("the portal", &format!("{portal}/")).await;
    for route in ["/", "/oauth/callback", "/link/any"] {
        // Small enough to be sent whole before the refusal: the server answers without reading
        // it, and closes the connection on what it did not read.
        let answer = post(format!("{portal}{route}"), "x".repeat(8 * 1024), None).await;
        assert_eq!(
            answer.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{route} takes no body"
        );
    }
    t.finish().await;
}
