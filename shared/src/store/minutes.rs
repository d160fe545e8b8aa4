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
        self.over_span(
            &format!("count(DISTINCT {minute})"),
            table,
            participant,
            from,
            to,
        )
        .await
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
        self.over_span("max(datetime)", table, participant, from, to)
            .await
    }

    /// One aggregate over the participant's points of `table` in `[from, to)`.
    async fn over_span<T>(
        &mut self,
        aggregate: &str,
        table: IntradayTable,
        participant: &str,
        from: UtcInstant,
        to: UtcInstant,
    ) -> Result<T, sqlx::Error>
    where
        T: Send + Unpin,
        (T,): for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let sql = format!(
            "SELECT {aggregate} FROM {} \
             WHERE participant_id = $1 AND datetime >= $2 AND datetime < $3",
            table.table()
        );
        let (value,): (T,) = crate::fetch!(
            self.exec(),
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(participant)
                .bind(from)
                .bind(to),
            one
        )?;
        Ok(value)
    }
}
