//! How many minutes of a span hold intraday points: the completeness ledger's wear time
//! (minutes with a heart-rate sample) and its intraday counts. Truncating an instant to its
//! minute is the one backend-specific part: canonical UTC text (`YYYY-MM-DDTHH:MM:SSZ`, fixed
//! width) cut after the minute in SQLite, `date_trunc` on `timestamptz` in PostgreSQL. The
//! database counts: nothing but a number crosses the connection.

use sqlx::AssertSqlSafe;

use super::{ByBackend, Conn, IntradayTable};
use crate::domain::UtcInstant;

impl Conn<'_> {
    /// The distinct minutes in which `participant` has a point of `table` in `[from, to)`.
    pub async fn minutes_with_points(
        &mut self,
        table: IntradayTable,
        participant: &str,
        from: UtcInstant,
        to: UtcInstant,
    ) -> Result<i64, sqlx::Error> {
        let minute = match self.exec() {
            ByBackend::Sqlite(_) => "substr(datetime, 1, 16)",
            ByBackend::Postgres(_) => "date_trunc('minute', datetime)",
        };
        let sql = format!(
            "SELECT count(DISTINCT {minute}) FROM {} \
             WHERE participant_id = $1 AND datetime >= $2 AND datetime < $3",
            table.table()
        );
        crate::fetch!(
            self.exec(),
            sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(participant)
                .bind(from)
                .bind(to),
            one
        )
    }

    /// The latest point of `table` the participant has in `[from, to)`: days after it need
    /// no count.
    pub async fn latest_point(
        &mut self,
        table: IntradayTable,
        participant: &str,
        from: UtcInstant,
        to: UtcInstant,
    ) -> Result<Option<UtcInstant>, sqlx::Error> {
        let sql = format!(
            "SELECT max(datetime) FROM {} \
             WHERE participant_id = $1 AND datetime >= $2 AND datetime < $3",
            table.table()
        );
        crate::fetch!(
            self.exec(),
            sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(participant)
                .bind(from)
                .bind(to),
            one
        )
    }
}
