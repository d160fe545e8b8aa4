//! The start-up canary of the roles in this crate that hold token keys and read the database
//! (the dispatcher with its portal, the console): see `fitlink_shared::secret::canary`.

use fitlink_shared::config::DatabaseArgs;
use fitlink_shared::secret::TokenKeys;
use fitlink_shared::secret::canary;

/// Refuses (a [`canary::KeySetRefused`], which the supervisor does not restart) when `keys`
/// open none of the stored credentials. A database that cannot be opened yet (a first start
/// before the writer made it) has nothing to check: the role goes on, and its own use of the
/// database reports what is wrong.
pub(crate) async fn check_keys(
    database: &DatabaseArgs,
    keys: &TokenKeys,
    role: &str,
) -> anyhow::Result<()> {
    let db = match database.open_for_reading(role).await {
        Ok(db) => db,
        Err(error) => {
            tracing::warn!(role, error = %error, "cannot open the database to check the token keys against the stored credentials; not checked");
            return Ok(());
        }
    };
    let checked = canary::check_stored_credentials(&db, keys, role).await;
    db.close().await;
    checked.map(drop)
}
