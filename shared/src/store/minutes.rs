//! Which minutes of a span hold intraday points: the completeness ledger's wear time (minutes
//! with a heart-rate sample) and its intraday counts. Truncating an instant to its minute is
//! the one backend-specific part: canonical UTC text (`YYYY-MM-DDTHH:MM:SSZ`, fixed width) cut
//! after the minute in SQLite, `date_trunc` on `timestamptz` in PostgreSQL.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::AssertSqlSafe;

use super::{ByBackend, Conn, IntradayTable};
use crate::domain::UtcInstant;

impl Conn<'_> {
    /// The distinct minutes (their starts) in which `participant` has a point of `table` in
    /// `[from, to)`, oldest first.
    pub async fn minutes_with_points(
        &mut self,
        table: IntradayTable,
        participant: &str,
        from: UtcInstant,
        to: UtcInstant,
    ) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
        let table = table.table();
        match self.exec() {
            ByBackend::Sqlite(c) => {
                let minutes: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT DISTINCT substr(datetime, 1, 16) AS minute FROM {table} \
                     WHERE participant_id = $1 AND datetime >= $2 AND datetime < $3 \
                     ORDER BY minute"
                )))
                .bind(participant)
                .bind(from)
                .bind(to)
                .fetch_all(c)
                .await?;
                minutes
                    .iter()
                    .map(|m| {
                        NaiveDateTime::parse_from_str(m, "%Y-%m-%dT%H:%M")
                            .map(|t| t.and_utc())
                            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
                    })
                    .collect()
            }
            ByBackend::Postgres(c) => {
                sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT DISTINCT date_trunc('minute', datetime) AS minute FROM {table} \
                     WHERE participant_id = $1 AND datetime >= $2 AND datetime < $3 \
                     ORDER BY minute"
                )))
                .bind(participant)
                .bind(from)
                .bind(to)
                .fetch_all(c)
                .await
            }
        }
    }
}
