//! The console's audit rows, on a real SQLite file and a real PostgreSQL database.

use fitlink_shared::fetch;
use fitlink_shared::messages::{OperatorAction, WriterCommand};
use fitlink_shared::store::Backend;
use uuid::Uuid;

use super::Effect;
use super::tests::{at, count, pid, with_p1};

fitlink_shared::on_both_backends!(
    an_operator_action_is_recorded_once_with_who_when_and_what,
    an_oversized_detail_is_replaced_by_its_size_not_cut,
);

fn action(detail: serde_json::Value) -> OperatorAction {
    OperatorAction {
        action_id: Uuid::now_v7(),
        at: at("2026-11-04T10:00:00Z"),
        actor: "coordinator@example.org".into(),
        role: "operator".into(),
        action: "sync_now".into(),
        participant_id: Some(pid("p1")),
        detail,
    }
}

async fn an_operator_action_is_recorded_once_with_who_when_and_what(backend: Backend) {
    let (_db, mut store) = with_p1(backend).await;
    let record = WriterCommand::RecordOperatorAction(action(serde_json::json!({"job_id": "j"})));
    // A redelivery (same action id) lands once.
    for _ in 0..2 {
        let applied = store.apply(std::slice::from_ref(&record)).await.unwrap();
        assert_eq!(applied.effects, vec![Effect::ActionRecorded]);
    }
    assert_eq!(count(&store, "operator_actions").await, 1);
    let row: (String, String, String, Option<String>, String) = fetch!(
        store.database().exec(),
        sqlx::query_as("SELECT actor, role, action, participant_id, detail FROM operator_actions"),
        one
    )
    .unwrap();
    assert_eq!(
        row,
        (
            "coordinator@example.org".into(),
            "operator".into(),
            "sync_now".into(),
            Some("p1".into()),
            r#"{"job_id":"j"}"#.into()
        )
    );
}

async fn an_oversized_detail_is_replaced_by_its_size_not_cut(backend: Backend) {
    let (_db, mut store) = with_p1(backend).await;
    let ids: Vec<String> = (0..2000).map(|_| Uuid::now_v7().to_string()).collect();
    let record = WriterCommand::RecordOperatorAction(action(serde_json::json!({ "job_ids": ids })));
    store.apply(&[record]).await.unwrap();
    let (detail,): (String,) = fetch!(
        store.database().exec(),
        sqlx::query_as("SELECT detail FROM operator_actions"),
        one
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&detail).expect("valid JSON");
    assert!(
        json["detail_too_long"].as_u64().unwrap() > 16 * 1024,
        "{json}"
    );
}
