//! `ResealCredentials` on both backends: the compare-and-swap that lets a newer token win.

use fitlink_shared::fetch;
use fitlink_shared::messages::{Reseal, ResealApplied, ResealBatch, WriterCommand};
use fitlink_shared::store::Backend;
use uuid::Uuid;

use super::Effect;
use super::tests::{import, open, pid, sealed, stored_token};

fitlink_shared::on_both_backends!(
    a_reseal_replaces_only_the_value_it_read_and_keeps_updated_at,
    a_token_stored_since_the_read_wins_over_the_reseal,
);

fn reseal(people: &[(&str, &str, &str)]) -> (Uuid, WriterCommand) {
    let request_id = Uuid::now_v7();
    let command = WriterCommand::ResealCredentials(ResealBatch {
        request_id,
        credentials: people
            .iter()
            .map(|(id, expected, new)| Reseal {
                participant_id: pid(id),
                expected: sealed(expected),
                sealed: sealed(new),
            })
            .collect(),
        reply_to: Some("amq.gen-rekey".into()),
    });
    (request_id, command)
}

async fn updated_at(store: &super::Store, participant: &str) -> String {
    let at: fitlink_shared::domain::UtcInstant = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT updated_at FROM credentials WHERE participant_id = $1")
            .bind(participant),
        one
    )
    .unwrap();
    at.to_string()
}

async fn a_reseal_replaces_only_the_value_it_read_and_keeps_updated_at(backend: Backend) {
    let (_db, mut store) = open(backend).await;
    store
        .apply(&[import(
            Uuid::now_v7(),
            &[("p1", "under-a"), ("p2", "under-a-2")],
        )])
        .await
        .unwrap();
    let before = updated_at(&store, "p1").await;
    let (request_id, command) = reseal(&[
        ("p1", "under-a", "under-b"),
        ("p2", "under-a-2", "under-b-2"),
    ]);
    let applied = store.apply(&[command]).await.unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::Resealed {
            reply_to: Some("amq.gen-rekey".into()),
            applied: ResealApplied {
                request_id,
                replaced: 2,
                changed_since_read: 0,
            },
        }]
    );
    assert_eq!(
        applied.effects[0].reseal_reply().unwrap().0,
        "amq.gen-rekey"
    );
    assert_eq!(stored_token(&store, "p1").await.as_deref(), Some("under-b"));
    assert_eq!(
        stored_token(&store, "p2").await.as_deref(),
        Some("under-b-2")
    );
    assert_eq!(
        updated_at(&store, "p1").await,
        before,
        "the token did not change"
    );
    // Run again (a redelivery, or a second rekey that read before the first committed): the
    // stored value is no longer the one it read, so nothing changes.
    let (_, again) = reseal(&[("p1", "under-a", "under-b-again")]);
    let applied = store.apply(&[again]).await.unwrap();
    assert!(matches!(
        &applied.effects[0],
        Effect::Resealed {
            applied: ResealApplied {
                replaced: 0,
                changed_since_read: 1,
                ..
            },
            ..
        }
    ));
    assert_eq!(stored_token(&store, "p1").await.as_deref(), Some("under-b"));
}

async fn a_token_stored_since_the_read_wins_over_the_reseal(backend: Backend) {
    let (_db, mut store) = open(backend).await;
    store
        .apply(&[import(Uuid::now_v7(), &[("p1", "old"), ("p2", "old-2")])])
        .await
        .unwrap();
    // After the rekey read "old": a new consent stores a newer token for p1.
    store
        .apply(&[import(Uuid::now_v7(), &[("p1", "newer")])])
        .await
        .unwrap();
    // One batch: p1 changed since the read, p2 did not, p3 has no credential at all.
    let (_, command) = reseal(&[
        ("p1", "old", "old-resealed"),
        ("p2", "old-2", "old-2-resealed"),
        ("p3", "gone", "gone-resealed"),
    ]);
    let applied = store.apply(&[command]).await.unwrap();
    assert!(matches!(
        &applied.effects[0],
        Effect::Resealed {
            applied: ResealApplied {
                replaced: 1,
                changed_since_read: 2,
                ..
            },
            ..
        }
    ));
    assert_eq!(stored_token(&store, "p1").await.as_deref(), Some("newer"));
    assert_eq!(
        stored_token(&store, "p2").await.as_deref(),
        Some("old-2-resealed")
    );
    assert_eq!(
        stored_token(&store, "p3").await,
        None,
        "no credential is created"
    );
}
