//! `RecordOperatorAction`: one row of the console's audit (`operator_actions`). The console
//! cannot write the database, so its record of who did what comes here like every other change;
//! a redelivered record (same `action_id`) lands once.

use fitlink_shared::execute;
use fitlink_shared::messages::OperatorAction;

use super::{CommandResult, Effect, Tx, capped};

/// Bytes of JSON kept in `operator_actions.detail`.
const MAX_DETAIL: usize = 16 * 1024;

impl Tx<'_> {
    pub(super) async fn record_operator_action(
        &mut self,
        action: &OperatorAction,
    ) -> CommandResult<Effect> {
        // The console keeps a detail small (a count and the first ids); a larger one is not
        // cut mid-JSON but replaced by its size, so the column always holds valid JSON.
        let mut detail = action.detail.to_string();
        if detail.len() > MAX_DETAIL {
            detail = serde_json::json!({ "detail_too_long": detail.len() }).to_string();
        }
        execute!(
            self.conn.exec(),
            sqlx::query(
                "INSERT INTO operator_actions \
                     (action_id, at, actor, role, action, participant_id, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (action_id) DO NOTHING",
            )
            .bind(action.action_id.hyphenated().to_string())
            .bind(action.at)
            .bind(capped(&action.actor))
            .bind(capped(&action.role))
            .bind(capped(&action.action))
            .bind(action.participant_id.as_ref().map(|p| p.as_str()))
            .bind(capped(&detail))
        )?;
        tracing::info!(
            action_id = %action.action_id,
            actor = %action.actor,
            action = %action.action,
            "operator action recorded"
        );
        Ok(Effect::ActionRecorded)
    }
}
