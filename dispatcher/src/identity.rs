//! Moving a participant from the legacy Fitbit Web API to Google Health: the Google account that
//! consented must be the one the participant linked through Fitbit, or their new data would be
//! someone else's. Google's `users/me/identity` maps the account to its legacy Fitbit user id;
//! the import compares it with the Fitbit user id fitlink stored, and refuses a mismatch before
//! anything is published.

use std::collections::HashMap;

use fitlink_shared::domain::Provider;
use fitlink_shared::fetch;
use fitlink_shared::messages::ImportedParticipant;
use fitlink_shared::provider::google::GoogleHealthClient;
use fitlink_shared::provider::{HealthProvider, Session};
use fitlink_shared::secret::TokenKeys;
use fitlink_shared::store::Database;

/// What the database knows of a participant already linked through Fitbit.
struct LinkedThroughFitbit {
    fitbit_user_id: Option<String>,
}

/// For every row that moves a Fitbit-linked participant to Google Health: asks Google who the
/// account is, refuses a wrong account, and records the identity on the row. Returns one
/// problem per refused row (nothing is imported if there is any).
pub async fn check_migrations(
    db: &Database,
    rows: &mut [ImportedParticipant],
    google: Option<&GoogleHealthClient>,
    key: &TokenKeys,
) -> Result<Vec<String>, sqlx::Error> {
    let fitbit_linked: Vec<(String, Option<String>)> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT participant_id, fitbit_user_id FROM participants WHERE provider = 'fitbit'",
        ),
        all
    )?;
    let linked: HashMap<String, LinkedThroughFitbit> = fitbit_linked
        .into_iter()
        .map(|(id, fitbit_user_id)| (id, LinkedThroughFitbit { fitbit_user_id }))
        .collect();

    let mut problems = Vec::new();
    for row in rows
        .iter_mut()
        .filter(|r| r.provider == Provider::GoogleHealth)
    {
        let Some(previous) = linked.get(row.participant_id.as_str()) else {
            continue;
        };
        let id = &row.participant_id;
        let Some(google) = google else {
            problems.push(format!(
                "participant {id} moves from Fitbit to Google Health, and its Google account must be checked: set FITLINK_GOOGLE_TOKEN_URL, FITLINK_GOOGLE_API_BASE, FITLINK_GOOGLE_CLIENT_ID and FITLINK_GOOGLE_CLIENT_SECRET"
            ));
            continue;
        };
        let identity = async {
            let token = key
                .open(id, &row.sealed_refresh_token)
                .map_err(|e| e.to_string())?;
            let grant = google.refresh(&token).await.map_err(|e| e.to_string())?;
            let session = Session::new(grant.access_token, google.request_budget());
            google.identity(&session).await.map_err(|e| e.to_string())
        }
        .await;
        let identity = match identity {
            Ok(identity) => identity,
            Err(e) => {
                problems.push(format!(
                    "participant {id}: cannot check the Google account's identity: {e}"
                ));
                continue;
            }
        };
        if let Some(expected) = &previous.fitbit_user_id
            && identity.legacy_user_id.as_deref() != Some(expected.as_str())
        {
            problems.push(format!(
                "participant {id}: wrong account linked: the Google account maps to Fitbit user {}, but this participant was linked through Fitbit user {expected}",
                identity.legacy_user_id.as_deref().unwrap_or("(none)")
            ));
            continue;
        }
        row.identity = Some(identity);
    }
    Ok(problems)
}
