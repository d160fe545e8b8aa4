use super::*;
use crate::execute;
use crate::store::testing::TestDatabase;

#[test]
fn statements_speak_each_dialect() {
    let t = table("heart_rate_summary").unwrap();
    assert_eq!(
        scan_sql(Dialect(Backend::Postgres), t, true),
        "SELECT participant_id, date, zone_name, CAST(min_heart_rate AS BIGINT) AS min_heart_rate, \
         CAST(max_heart_rate AS BIGINT) AS max_heart_rate, CAST(minute_in_zone AS BIGINT) AS minute_in_zone, \
         calorie_count, provider, updated_at FROM heart_rate_summary \
         WHERE (participant_id COLLATE \"C\", date, zone_name COLLATE \"C\") > ($1, $2, $3) \
         ORDER BY participant_id COLLATE \"C\" ASC, date ASC, zone_name COLLATE \"C\" ASC"
    );
    let t = table("credentials").unwrap();
    assert_eq!(
        insert_sql(Dialect(Backend::Sqlite), t, 2),
        "INSERT INTO credentials (participant_id, provider, sealed_refresh_token, updated_at) \
         VALUES (?, ?, ?, ?), (?, ?, ?, ?) ON CONFLICT (participant_id) DO NOTHING"
    );
    assert!(insert_sql(Dialect(Backend::Postgres), t, 2).contains("($5, $6, $7, $8)"));
    for t in &TABLES {
        assert!(rows_per_statement(t) * t.columns.len() <= MAX_PARAMS);
    }
}

#[test]
fn canonical_text_is_unambiguous_and_hides_tokens() {
    let row = [
        Value::Text(Some("a\tb\\N".into())),
        Value::Text(None),
        Value::Instant(Some(
            UtcInstant::parse("2026-11-01T05:00:00+01:00").unwrap(),
        )),
        Value::Date(NaiveDate::from_ymd_opt(2026, 3, 1)),
        Value::Integer(Some(-3)),
        Value::Real(Some(1.0)),
        Value::Bool(Some(false)),
        Value::Sealed(Some(SealedToken::from_stored("c2VhbGVk".into()))),
    ];
    let texts: Vec<String> = row
        .iter()
        .map(|v| {
            let mut s = String::new();
            v.canonical(&mut s);
            s
        })
        .collect();
    assert_eq!(
        texts,
        [
            "a\\tb\\\\N",
            "\\N",
            "2026-11-01T04:00:00Z",
            "2026-03-01",
            "-3",
            "1.0",
            "f",
            "c2VhbGVk"
        ]
    );
    assert_eq!(format!("{:?}", row[7]), "[sealed]");
}

/// A PostgreSQL database whose collation (ICU `en-US`) does not order text bytewise, so keys
/// like `B_2` and `a.3` sort one way there and the other way in SQLite.
struct IcuDatabase {
    url: String,
    name: String,
}

impl IcuDatabase {
    async fn new() -> IcuDatabase {
        let server = crate::store::testing::postgres_server();
        let name = format!("fitlink_test_icu_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu \
             ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )))
        .execute(&mut conn)
        .await
        .expect("a database with an ICU collation (PostgreSQL 15 built with ICU)");
        conn.close().await.ok();
        IcuDatabase {
            url: format!("{server}/{name}"),
            name,
        }
    }

    async fn drop_it(self) {
        let server = crate::store::testing::postgres_server();
        let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

use sqlx::Connection as _;

/// Participants whose ids sort differently bytewise and by ICU, each with heart rate and with
/// zone names of mixed case (a text key after the first).
async fn mixed_case_source(url: &str) {
    let db = Database::open_for_writing(url, &settings()).await.unwrap();
    let at = |m: i64| {
        UtcInstant::new(
            UtcInstant::parse("2026-11-01T00:00:00Z").unwrap().get()
                + chrono::TimeDelta::minutes(m),
        )
    };
    for id in ["b-1", "B_2", "a.3", "A-4", "a_1", "Z", "z"] {
        execute!(
            db.exec(),
            sqlx::query(
                "INSERT INTO participants (participant_id, provider, state, sync_from, \
                 sync_cursor, created_at, updated_at) VALUES ($1, 'google-health', 'active', \
                 $2, $2, $2, $2)"
            )
            .bind(id)
            .bind(at(0))
        )
        .unwrap();
        for m in 0..4 {
            execute!(
                db.exec(),
                sqlx::query(
                    "INSERT INTO heart_rate_intraday (participant_id, datetime, \
                     utc_offset_seconds, heart_rate_value, provider) \
                     VALUES ($1, $2, 0, $3, 'google-health')"
                )
                .bind(id)
                .bind(at(m))
                .bind(60 + m)
            )
            .unwrap();
        }
        for zone in ["light", "Light", "Peak", "fat_burn"] {
            execute!(
                db.exec(),
                sqlx::query(
                    "INSERT INTO heart_rate_summary (participant_id, date, zone_name, \
                     calorie_count, provider, updated_at) \
                     VALUES ($1, $2, $3, 1.5, 'google-health', $4)"
                )
                .bind(id)
                .bind(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap())
                .bind(zone)
                .bind(at(0))
            )
            .unwrap();
        }
    }
    db.close().await;
}

/// Drops `copy_table`'s future once it reported `rows` done: what a kill between two batches
/// leaves (a kill inside one rolls that batch back, the same state).
async fn interrupted(copier: &Copier, index: usize, rows: u64) {
    let stop = std::cell::Cell::new(false);
    let mut on_progress = |p: &Progress<'_>| {
        if p.done >= rows {
            stop.set(true);
        }
    };
    let copy = copier.copy_table(index, 2, &mut on_progress);
    let stopped = std::future::poll_fn(|cx| {
        if stop.get() {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    });
    tokio::select! {
        biased;
        _ = stopped => {}
        _ = copy => panic!("the table was copied whole before the interruption"),
    }
}

/// A key's canonical text: tab-joined, so sorting the texts sorts the keys bytewise.
fn canonical_key(key: &[Value]) -> String {
    let mut text = String::new();
    for (i, v) in key.iter().enumerate() {
        if i > 0 {
            text.push('\t');
        }
        v.canonical(&mut text);
    }
    text
}

/// Every key of the table, unordered.
async fn source_keys(url: &str, t: &Table) -> Vec<String> {
    let db = Database::reader(url, "test").await.unwrap();
    let key: Vec<&Column> = t.key_columns().collect();
    let sql = format!(
        "SELECT {} FROM {}",
        select_list(key.iter().copied()),
        t.name
    );
    let keys = on_backend!(db.exec(), |e| {
        let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
            .fetch_all(e)
            .await
            .unwrap();
        rows.iter()
            .map(|row| canonical_key(&decode_row!(row, key).unwrap()))
            .collect::<Vec<_>>()
    });
    db.close().await;
    keys
}

/// Copies `from` into `to`, interrupted halfway through `table`, then resumed by a new copy.
async fn copy_interrupted_in(from: &str, to: &str, table: &str) -> Comparison {
    let index = TABLES.iter().position(|t| t.name == table).unwrap();
    let copier = Copier::open(Source::open(from).await.unwrap(), to)
        .await
        .unwrap();
    for i in 0..index {
        copier.copy_table(i, 2, &mut |_| {}).await.unwrap();
    }
    interrupted(&copier, index, copier.plan()[index].source_rows / 2).await;
    copier.close().await;

    let copier = Copier::open(Source::open(from).await.unwrap(), to)
        .await
        .unwrap();
    assert!(copier.resuming());
    let plan = &copier.plan()[index];
    assert!(
        plan.destination_rows > 0 && plan.destination_rows < plan.source_rows,
        "{plan:?}"
    );
    // Exactly after the rows already there (bytewise order), not merely somewhere safe.
    let mut keys = source_keys(from, plan.table).await;
    keys.sort();
    let resume_at = plan.resume_after.as_deref().map(canonical_key);
    assert_eq!(
        resume_at.as_ref(),
        keys.get(plan.destination_rows as usize - 1)
    );
    for i in 0..TABLES.len() {
        copier.copy_table(i, 2, &mut |_| {}).await.unwrap();
    }
    let comparison = copier.compare().await.unwrap();
    copier.close().await;
    comparison
}

/// Keys are compared bytewise on both sides whatever PostgreSQL's collation: a copy into an
/// ICU-collated database, and one out of it, each interrupted inside a table with text keys,
/// resume at the right row and end identical.
#[tokio::test]
async fn resumes_by_byte_order_whatever_the_collation() {
    let source = TestDatabase::new(Backend::Sqlite).await;
    mixed_case_source(source.url()).await;
    let icu = IcuDatabase::new().await;
    let mut conn = sqlx::PgConnection::connect(&icu.url).await.unwrap();
    let bytewise: bool = sqlx::query_scalar("SELECT 'B_2' < 'a.3'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    assert!(!bytewise, "the ICU collation sorts B_2 after a.3");

    let into_icu = copy_interrupted_in(source.url(), &icu.url, "heart_rate_intraday").await;
    assert!(into_icu.matches(), "{into_icu:?}");
    assert_eq!(into_icu.source_rows(), 7 + 7 * 4 + 7 * 4);

    let back = TestDatabase::new(Backend::Sqlite).await;
    let out_of_icu = copy_interrupted_in(&icu.url, back.url(), "heart_rate_summary").await;
    assert!(out_of_icu.matches(), "{out_of_icu:?}");
    assert_eq!(out_of_icu.source_digest, into_icu.source_digest);
    icu.drop_it().await;
}
