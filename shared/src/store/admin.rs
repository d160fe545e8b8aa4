//! Whole databases, for tools that make their own (benchmarks): derive a sibling's URL, drop
//! one, start one afresh. Never used on a study's database by the roles.

use sqlx::migrate::MigrateDatabase;
use sqlx::{Postgres, Sqlite};

use super::{Backend, DbError, redact_url};

/// The URL of a database beside `url` whose name ends in `_suffix`: `sqlite://dir/bench.db` →
/// `sqlite://dir/bench_ceiling.db`, `postgres://h/bench` → `postgres://h/bench_ceiling`.
pub fn sibling_url(url: &str, suffix: &str) -> Result<String, DbError> {
    let backend = Backend::of_url(url)?;
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let sibling = match backend {
        Backend::Sqlite => match base.strip_suffix(".db") {
            Some(stem) => format!("{stem}_{suffix}.db"),
            None => format!("{base}_{suffix}"),
        },
        Backend::Postgres => {
            let after_scheme = base.find("://").map_or(0, |i| i + 3);
            match base[after_scheme..].find('/') {
                Some(i) if after_scheme + i + 1 < base.len() => format!("{base}_{suffix}"),
                _ => {
                    return Err(DbError::Unsupported(format!(
                        "{} names no database (add /NAME)",
                        redact_url(url)
                    )));
                }
            }
        }
    };
    Ok(format!("{sibling}{query}"))
}

/// Drops the database if it exists (SQLite: the file and its WAL; PostgreSQL: `DROP DATABASE …
/// WITH (FORCE)`, closing other sessions).
pub async fn drop_database(url: &str) -> Result<(), DbError> {
    let failed = |e| DbError::Sqlx(redact_url(url), e);
    match Backend::of_url(url)? {
        Backend::Sqlite => {
            let path = url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap_or_default();
            for suffix in ["", "-wal", "-shm"] {
                match std::fs::remove_file(format!("{path}{suffix}")) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(DbError::Io(format!("{path}{suffix}"), e));
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        Backend::Postgres => {
            if Postgres::database_exists(url).await.map_err(failed)? {
                Postgres::force_drop_database(url).await.map_err(failed)?;
            }
            Ok(())
        }
    }
}

/// Drops the database and creates it empty (the writer's open then migrates it).
pub async fn recreate_database(url: &str) -> Result<(), DbError> {
    drop_database(url).await?;
    let failed = |e| DbError::Sqlx(redact_url(url), e);
    match Backend::of_url(url)? {
        Backend::Sqlite => Sqlite::create_database(url).await.map_err(failed),
        Backend::Postgres => Postgres::create_database(url).await.map_err(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_sit_beside_their_database() {
        assert_eq!(
            sibling_url("sqlite://dir/bench.db", "ceiling").unwrap(),
            "sqlite://dir/bench_ceiling.db"
        );
        assert_eq!(
            sibling_url("postgres://u:pw@h:5432/bench?sslmode=disable", "p2").unwrap(),
            "postgres://u:pw@h:5432/bench_p2?sslmode=disable"
        );
        let err = sibling_url("postgres://u:pw@h:5432", "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("names no database") && !err.contains("pw"),
            "{err}"
        );
    }
}
