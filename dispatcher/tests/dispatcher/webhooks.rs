//! The webhooks as the running dispatcher serves them.

use super::*;

/// Every check a webhook request must pass, in the dispatcher as it runs: the verification
/// handshake both ways, then requests that are unsigned, badly signed, oversized, malformed or
/// carry the wrong secret are refused with the right status and counted, and none of them reaches
/// the writer; the one good notification does.
#[tokio::test]
async fn webhook_requests_failing_a_check_are_refused_counted_and_create_no_work() {
    use fitlink_shared::linkage::webhook::{fitbit as fitbit_hooks, google as google_hooks};

    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        // Parked, so the schedule's first round asks nothing for it.
        db.participant(Row {
            state: "dead_lettered",
            ..active("p1")
        })
        .await;
        on_backend!(db.db.exec(), |e| {
            sqlx::query("UPDATE participants SET health_user_id = 'hu-1', fitbit_user_id = 'FB1' WHERE participant_id = 'p1'")
                .execute(e)
                .await
                .map(|done| done.rows_affected())
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let signing = p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
        let forger = p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
        let keyset = dir.path().join("keyset.json");
        std::fs::write(
            &keyset,
            google_hooks::PublicKeyset::tink_json_for(&[(7, *signing.verifying_key())], 7),
        )
        .unwrap();

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut args = dispatcher_args(broker.clone(), db.args.clone());
        args.portal.portal_addr = Some(format!("127.0.0.1:{port}").parse().unwrap());
        args.portal.token_key = fitlink_shared::config::TokenKeyArgs::one(fitlink_shared::secret::TokenKey::generate());
        args.portal.google_webhook_secret = Secret::new("Bearer s3cret".into());
        args.portal.google_webhook_keyset = keyset.display().to_string();
        args.portal.fitbit_verification_code = Secret::new("verify-me".into());
        args.portal.webhook_coalesce_ms = 50;
        args.portal.webhook_max_body_bytes = 64 * 1024;
        args.fitbit.client_secret = Secret::new("fitbit-secret".into());
        let peek = Peek::open(&broker).await;
        let shutdown = CancellationToken::new();
        let role = tokio::spawn(fitlink_dispatcher::run(args, shutdown.clone()));
        let http = fitlink_shared::provider::http_client();
        let base = format!("http://127.0.0.1:{port}");
        let google = format!("{base}/webhooks/google");
        let fitbit = format!("{base}/webhooks/fitbit");
        for _ in 0..100 {
            if http.get(&base).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let post = |url: &str, body: Vec<u8>, headers: Vec<(&'static str, String)>| {
            let mut request = http.post(url).header("content-type", "application/json").body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            async move { request.send().await.unwrap().status().as_u16() }
        };

        // The handshakes.
        let verification = br#"{"type":"verification"}"#.to_vec();
        let auth = ("authorization", "Bearer s3cret".to_owned());
        assert_eq!(post(&google, verification.clone(), vec![auth.clone()]).await, 201);
        assert_eq!(post(&google, verification.clone(), vec![]).await, 401);
        assert_eq!(
            post(&google, verification, vec![("authorization", "Bearer guess".into())]).await,
            401
        );
        let verify = |code: &str| http.get(format!("{fitbit}?verify={code}")).send();
        assert_eq!(verify("verify-me").await.unwrap().status().as_u16(), 204);
        assert_eq!(verify("wrong").await.unwrap().status().as_u16(), 404);

        let body = |user: &str| {
            format!(
                r#"{{"data":{{"version":"1","clientProvidedSubscriptionName":"s","healthUserId":"{user}","operation":"UPSERT","dataType":"steps","intervals":[{{"physicalTimeInterval":{{"startTime":"2026-11-02T10:00:00Z","endTime":"2026-11-02T10:05:00Z"}}}}]}}}}"#
            )
            .into_bytes()
        };
        let signed = |key: &p256::ecdsa::SigningKey, body: &[u8]| {
            ("x-healthapi-signature", google_hooks::sign_notification(key, 7, body))
        };
        let good = body("hu-1");
        // Unsigned, forged, wrong secret, oversized, malformed: refused.
        assert_eq!(post(&google, good.clone(), vec![]).await, 401, "unsigned");
        assert_eq!(
            post(&google, good.clone(), vec![signed(&forger, &good)]).await,
            401,
            "forged"
        );
        assert_eq!(
            post(
                &google,
                good.clone(),
                vec![signed(&signing, &good), ("authorization", "Bearer guess".into())]
            )
            .await,
            401,
            "wrong secret"
        );
        let huge = vec![b' '; 100 * 1024];
        assert_eq!(post(&google, huge.clone(), vec![signed(&signing, &huge)]).await, 413);
        let malformed = br#"{"data":{"operation":"UPSERT"}}"#.to_vec();
        assert_eq!(
            post(&google, malformed.clone(), vec![signed(&signing, &malformed)]).await,
            400
        );
        let fitbit_body =
            br#"[{"collectionType":"activities","date":"2026-11-02","ownerId":"FB1","ownerType":"user","subscriptionId":"1"}]"#
                .to_vec();
        assert_eq!(post(&fitbit, fitbit_body.clone(), vec![]).await, 404, "unsigned");
        assert_eq!(
            post(
                &fitbit,
                fitbit_body.clone(),
                vec![("x-fitbit-signature", fitbit_hooks::sign("other-secret", &fitbit_body))]
            )
            .await,
            404,
            "forged"
        );
        let not_json = b"collectionType=activities".to_vec();
        assert_eq!(
            post(
                &fitbit,
                not_json.clone(),
                vec![("x-fitbit-signature", fitbit_hooks::sign("fitbit-secret", &not_json))]
            )
            .await,
            400
        );

        // The one good notification, the second time with the other documented header name.
        assert_eq!(post(&google, good.clone(), vec![signed(&signing, &good)]).await, 204);
        let (_, signature) = signed(&signing, &good);
        assert_eq!(
            post(&google, good.clone(), vec![("google-health-api-signature", signature)]).await,
            204
        );
        peek.wait_depth(&peek.topology.results[0], 1).await;
        match peek.take_command().await {
            WriterCommand::ProviderNotified(n) => {
                assert_eq!(n.participant_id.as_str(), "p1");
                assert_eq!(n.notification_ids.len(), 1, "the same notification twice is one");
                assert_eq!(n.intervals.len(), 1);
            }
            other => panic!("expected the notification, got {}", other.kind()),
        }
        assert_eq!(peek.depth(&peek.topology.results[0]).await, Some(0));

        let metrics = fitlink_shared::telemetry::metrics_handle().render();
        for outcome in ["unsigned", "bad_signature", "unauthorized", "oversized", "malformed", "accepted"] {
            assert!(
                metrics.lines().any(|l| l.starts_with("fitlink_webhook_requests_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))),
                "{outcome} is counted:\n{metrics}"
            );
        }
        shutdown.cancel();
        role.await.unwrap().unwrap();
    })
    .await;
}
