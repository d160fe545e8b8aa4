//! Throwaway databases for tests, on either backend: a SQLite file in the temporary directory,
//! or a database of its own on the PostgreSQL server named by `FITLINK_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432`, trust auth, as CI has it). Each is removed when
//! dropped, so tests never see each other's rows.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::Backend;

/// Where the tests' PostgreSQL server is (without a database name).
pub fn postgres_server() -> String {
    std::env::var("FITLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// One test's database; dropped, it is deleted.
pub struct TestDatabase {
    url: String,
    backend: Backend,
    /// The SQLite file, or the PostgreSQL database's name.
    name: String,
}

impl TestDatabase {
    /// A new, empty database (not created yet for SQLite: the writer creates the file).
    pub async fn new(backend: Backend) -> TestDatabase {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("fitlink-test-{id}.db"));
                TestDatabase {
                    url: format!("sqlite://{}", path.display()),
                    backend,
                    name: path.display().to_string(),
                }
            }
            Backend::Postgres => {
                let name = format!("fitlink_test_{id}");
                let server = postgres_server();
                let mut conn = PgConnection::connect(&format!("{server}/postgres"))
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "the tests' PostgreSQL at {} is not reachable ({e}); start it \
                             (pg_ctlcluster 15 main start) or set FITLINK_TEST_POSTGRES_URL",
                            super::redact_url(&server)
                        )
                    });
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                conn.close().await.ok();
                TestDatabase {
                    url: format!("{server}/{name}"),
                    backend,
                    name,
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self.backend {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    std::fs::remove_file(format!("{}{suffix}", self.name)).ok();
                }
            }
            Backend::Postgres => {
                // Drop may run inside a runtime: the database is dropped from a thread of its own.
                let name = self.name.clone();
                let server = postgres_server();
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    runtime.block_on(async {
                        let mut conn = PgConnection::connect(&format!("{server}/postgres"))
                            .await
                            .ok()?;
                        sqlx::query(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await
                        .ok()
                    })
                });
                dropped.join().ok();
            }
        }
    }
}

/// Runs each named `async fn NAME(backend: Backend)` once per backend, as the tests
/// `NAME::sqlite` and `NAME::postgres`: one test body, two stores.
/// `on_both_backends!(multi_thread: NAME, …)` runs them on a two-thread runtime (fleet tests).
#[macro_export]
macro_rules! on_both_backends {
    (multi_thread: $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::store::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::store::Backend::Postgres).await
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::store::Backend::Sqlite).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::store::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A column's value as the SQLite schema writes it (text, canonical UTC instants, integers as
/// decimal), whichever backend stored it: one assertion for both.
#[macro_export]
macro_rules! column_text {
    ($row:expr, $index:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        if let Ok(v) = row.try_get::<Option<String>, _>($index) {
            v
        } else if let Ok(v) = row.try_get::<Option<$crate::domain::UtcInstant>, _>($index) {
            v.map(|t| t.to_text())
        } else if let Ok(v) = row.try_get::<Option<chrono::NaiveDate>, _>($index) {
            v.map(|d| d.to_string())
        } else if let Ok(v) = row.try_get::<Option<i64>, _>($index) {
            v.map(|n| n.to_string())
        } else if let Ok(v) = row.try_get::<Option<i32>, _>($index) {
            v.map(|n| n.to_string())
        } else if let Ok(v) = row.try_get::<Option<bool>, _>($index) {
            v.map(|b| i64::from(b).to_string())
        } else {
            panic!(
                "column {:?} is not text, an instant, a date or a number",
                $index
            )
        }
    }};
}
