//! The consent flow in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver`) follows invitation links through the simulator's consent page back to the
//! portal. Covers the participant who consents (and whose data then arrives), one who denies,
//! one who unticks a scope, a replayed invitation, and a tampered `state`.
//!
//! Set `FITLINK_SCREENSHOT_DIR` to keep the screenshots (the README's come from here).

use std::path::PathBuf;

use reqwest::StatusCode;

use fitlink_shared::fetch;

use crate::harness::Options;
use crate::linkage::{ConsentDriver, linked_fleet_options, start_linked_fleet};
use crate::webdriver::Browser;

/// Saves a screenshot to the test's folder (and to `FITLINK_SCREENSHOT_DIR` if set), and checks
/// it is a real PNG.
pub(crate) async fn screenshot(browser: &Browser, dir: &std::path::Path, name: &str) {
    let path = dir.join(name);
    browser.screenshot(&path).await;
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"),
        "{name} is not a screenshot"
    );
    if let Ok(keep) = std::env::var("FITLINK_SCREENSHOT_DIR") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&path, keep.join(name)).unwrap();
    }
}

async fn has_credential(db: &fitlink_shared::store::Database, id: &str) -> bool {
    let (n,): (i64,) = fetch!(
        db.exec(),
        sqlx::query_as("SELECT count(*) FROM credentials WHERE participant_id = $1").bind(id),
        one
    )
    .unwrap();
    n > 0
}

#[tokio::test]
async fn a_participant_links_in_a_browser_and_their_data_arrives() {
    let mut fleet = start_linked_fleet(Options {
        participants: 3,
        days: 1,
        workers: 1,
        ..linked_fleet_options()
    })
    .await;
    let shots = fleet.dir.path().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let ids = fleet.participant_ids();
    let (alice, bob, carol) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let browser = Browser::start().await;

    // Consent: the invitation leads to the provider's consent page; the participant picks their
    // account and allows; the portal confirms only after the writer stored the grant.
    let from = fleet.roster_sync_from(&alice);
    let link = fleet.invite(&alice, &["--sync-from", &from]);
    browser.goto(&link).await;
    assert!(
        browser.text().await.contains("wants to access your"),
        "the consent page"
    );
    browser.select("#account", &alice).await;
    screenshot(&browser, &shots, "consent-page.png").await;
    browser.click_to_next_page("#allow").await;
    let page = browser.text().await;
    assert!(page.contains("your account is linked"), "{page}");
    assert!(page.contains(&alice), "{page}");
    assert!(
        page.contains("heart rate"),
        "the page says what is shared: {page}"
    );
    screenshot(&browser, &shots, "confirmation-page.png").await;
    assert!(
        has_credential(&fleet.db, &alice).await,
        "linked means stored"
    );
    fleet
        .wait_cursors_at_latest_sync(std::slice::from_ref(&alice), 120)
        .await;
    fleet.wait_synced(std::slice::from_ref(&alice), 60).await;
    fleet
        .assert_matches_truth(&alice, &Default::default())
        .await;

    // The same invitation again: refused, nothing changes.
    browser.goto(&link).await;
    let page = browser.text().await;
    assert!(page.contains("already been used"), "{page}");

    // Deny: nothing stored, the coordinator sees the participant is still waiting.
    let link = fleet.invite(&bob, &[]);
    browser.goto(&link).await;
    browser.select("#account", &bob).await;
    browser.click_to_next_page("#deny").await;
    let page = browser.text().await;
    assert!(page.contains("You chose not to share"), "{page}");
    assert!(!has_credential(&fleet.db, &bob).await);

    // Untick a scope the program needs: told which one, offered a retry; the coordinator sees
    // `scope_missing` in status. The same (unused) invitation works for the retry.
    browser.goto(&link).await;
    browser.select("#account", &bob).await;
    // The second scope the portal asks for is health metrics (heart rate).
    browser.click("#scope-1").await;
    assert!(!browser.is_selected("#scope-1").await);
    browser.click_to_next_page("#allow").await;
    let page = browser.text().await;
    assert!(page.contains("Some permissions were not given"), "{page}");
    assert!(
        page.contains("heart rate"),
        "names the missing permission: {page}"
    );
    screenshot(&browser, &shots, "scope-missing-page.png").await;
    assert!(!has_credential(&fleet.db, &bob).await);
    fleet.wait_for_state(&bob, "scope_missing", None, 30).await;
    let status = fleet.cli(&["status", "--json"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("scope_missing"), "{status}");
    browser.click_to_next_page("a.button").await;
    browser.select("#account", &bob).await;
    browser.click_to_next_page("#allow").await;
    assert!(browser.text().await.contains("your account is linked"));

    // A tampered state: the browser holds the flow's cookie, the answer's state was changed.
    let link = fleet.invite(&carol, &[]);
    browser.goto(&link).await;
    let driver = ConsentDriver::new();
    let form = driver
        .open(&link)
        .await
        .unwrap_or_else(|_| panic!("consent page"));
    let callback = driver.decide(&form, &carol, "allow", &form.scopes).await;
    let tampered = tamper_state(&callback);
    browser.goto(&tampered).await;
    let page = browser.text().await;
    assert!(page.contains("could not be verified"), "{page}");
    // And the genuine answer, in the browser that started this flow? The driver's flow belongs
    // to the driver: the browser refuses it (a cross-browser callback).
    browser.goto(&callback).await;
    let page = browser.text().await;
    assert!(page.contains("started somewhere else"), "{page}");
    assert!(
        !has_credential(&fleet.db, &carol).await,
        "no refused flow stored anything"
    );
    // The driver, which started it, completes it.
    let finished = driver.callback(&callback, Some(&form.cookie)).await;
    assert_eq!(finished.status, StatusCode::OK, "{}", finished.page);
    assert!(has_credential(&fleet.db, &carol).await);

    browser.close().await;
    fleet.finish().await;
}

/// Changes one character of the `state` parameter of a callback URL.
fn tamper_state(url: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                let mut chars: Vec<char> = v.chars().collect();
                let i = chars.len() / 2;
                chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
                chars.into_iter().collect()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}
