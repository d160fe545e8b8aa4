//! Every table of the schema, described once: its columns with the kind of value each holds,
//! and its primary key. The copy reads, writes and checksums rows by these kinds, so a column's
//! type per backend (text or `timestamptz`, base64 text or `bytea`, `INTEGER` 0/1 or `boolean`)
//! is the store's business, not the copy's. A table the migrations create that is not listed
//! here fails `every_migrated_table_is_described` (both backends).

/// What a column holds, whichever backend stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A UTC instant (`UtcInstant`): canonical text in SQLite, `timestamptz` in PostgreSQL.
    Instant,
    /// A local day: `YYYY-MM-DD` text in SQLite, `date` in PostgreSQL.
    Date,
    /// `INTEGER` in SQLite; `bigint` or `integer` in PostgreSQL (read as `BIGINT`).
    Integer,
    Real,
    /// `INTEGER` 0/1 in SQLite, `boolean` in PostgreSQL.
    Bool,
    /// A sealed refresh token (`SealedToken`): base64 text in SQLite, `bytea` in PostgreSQL.
    /// Copied sealed; never opened, never printed.
    Sealed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: false,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: true,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// Primary-key columns, in key order (the copy's keyset order).
    pub key: &'static [&'static str],
}

/// The column every row names its participant by.
pub const PARTICIPANT: &str = "participant_id";

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The key's columns, described.
    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.key
            .iter()
            .map(|k| self.column(k).expect("key columns are columns"))
    }

    /// Whether rows carry `participant_id` (every table but `imports`).
    pub fn has_participant(&self) -> bool {
        self.column(PARTICIPANT).is_some()
    }

    /// The intraday tables are partitioned by month on `datetime` (PostgreSQL): a batch needs
    /// its months' partitions first.
    pub fn partitioned_on(&self) -> Option<usize> {
        super::super::IntradayTable::ALL
            .iter()
            .any(|t| t.table() == self.name)
            .then(|| self.columns.iter().position(|c| c.name == "datetime"))
            .flatten()
    }
}

use Kind::*;

/// Every table, parents before children (`credentials` references `participants`).
pub const TABLES: [Table; 25] = [
    Table {
        name: "participants",
        columns: &[
            col("participant_id", Text),
            col("provider", Text),
            col("state", Text),
            opt("state_reason", Text),
            col("sync_from", Instant),
            col("sync_cursor", Instant),
            opt("time_zone", Text),
            opt("latest_device_sync", Instant),
            opt("last_success_at", Instant),
            opt("last_error", Text),
            opt("last_error_at", Instant),
            opt("in_flight_job_id", Text),
            opt("in_flight_since", Instant),
            opt("retry_at", Instant),
            col("created_at", Instant),
            col("updated_at", Instant),
            opt("fitbit_user_id", Text),
            opt("health_user_id", Text),
            opt("legacy_user_id", Text),
            opt("granted_scopes", Text),
            opt("consented_at", Instant),
            opt("refresh_token_expires_at", Instant),
            opt("credential_used_at", Instant),
            opt("notified_from", Instant),
            opt("notified_at", Instant),
        ],
        key: &["participant_id"],
    },
    Table {
        name: "credentials",
        columns: &[
            col("participant_id", Text),
            col("provider", Text),
            col("sealed_refresh_token", Sealed),
            col("updated_at", Instant),
        ],
        key: &["participant_id"],
    },
    Table {
        name: "sync_jobs",
        columns: &[
            col("job_id", Text),
            col("participant_id", Text),
            col("requested_by", Text),
            col("granted_at", Instant),
            opt("finished_at", Instant),
            opt("outcome", Text),
            opt("detail", Text),
            col("slices_stored", Integer),
            col("rows_stored", Integer),
        ],
        key: &["job_id"],
    },
    Table {
        name: "sync_slices",
        columns: &[
            col("participant_id", Text),
            col("slice_start", Instant),
            col("slice_end", Instant),
            col("job_id", Text),
        ],
        key: &["participant_id", "slice_start", "slice_end"],
    },
    Table {
        name: "imports",
        columns: &[
            col("import_id", Text),
            col("source", Text),
            col("participants", Integer),
            col("imported_at", Instant),
        ],
        key: &["import_id"],
    },
    Table {
        name: "activity_summary",
        columns: &[
            col("participant_id", Text),
            col("date", Date),
            opt("steps", Integer),
            opt("distance", Real),
            opt("floors", Integer),
            opt("elevation", Real),
            opt("calories_out", Real),
            opt("activity_calories", Real),
            opt("sedentary_minutes", Real),
            opt("lightly_active_minutes", Real),
            opt("fairly_active_minutes", Real),
            opt("very_active_minutes", Real),
            col("provider", Text),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "date"],
    },
    Table {
        name: "heart_rate_summary",
        columns: &[
            col("participant_id", Text),
            col("date", Date),
            col("zone_name", Text),
            opt("min_heart_rate", Integer),
            opt("max_heart_rate", Integer),
            opt("minute_in_zone", Integer),
            opt("calorie_count", Real),
            col("provider", Text),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "date", "zone_name"],
    },
    Table {
        name: "resting_heart_rate",
        columns: &[
            col("participant_id", Text),
            col("date", Date),
            col("resting_heart_rate", Integer),
            col("provider", Text),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "date"],
    },
    Table {
        name: "device",
        columns: &[
            col("participant_id", Text),
            col("device_id", Text),
            col("device_date", Date),
            opt("battery", Text),
            opt("battery_level", Integer),
            opt("device_version", Text),
            opt("device_type", Text),
            opt("last_sync_time", Instant),
            col("provider", Text),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "device_id", "device_date"],
    },
    Table {
        name: "sleep_daily_summary",
        columns: &[
            col("participant_id", Text),
            col("provider", Text),
            col("session_id", Text),
            col("sleep_date", Date),
            col("is_main_sleep", Bool),
            col("start_datetime", Instant),
            col("start_utc_offset_seconds", Integer),
            col("end_datetime", Instant),
            col("end_utc_offset_seconds", Integer),
            opt("minute_in_bed", Integer),
            opt("minute_asleep", Integer),
            opt("minute_after_wakeup", Integer),
            opt("minute_awake", Integer),
            opt("minute_restless", Integer),
            opt("minute_deep", Integer),
            opt("minute_light", Integer),
            opt("minute_rem", Integer),
            opt("minute_wake", Integer),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "provider", "session_id"],
    },
    Table {
        name: "sleep_level",
        columns: &[
            col("participant_id", Text),
            col("provider", Text),
            col("session_id", Text),
            col("sleep_date", Date),
            col("is_main_sleep", Bool),
            col("level", Text),
            col("start_datetime", Instant),
            col("utc_offset_seconds", Integer),
            col("duration_in_min", Real),
        ],
        key: &["participant_id", "provider", "session_id", "start_datetime"],
    },
    Table {
        name: "heart_rate_variability_daily",
        columns: &[
            col("participant_id", Text),
            col("date", Date),
            opt("daily_rmssd", Real),
            opt("deep_rmssd", Real),
            col("provider", Text),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "date"],
    },
    Table {
        name: "oxygen_saturation_daily",
        columns: &[
            col("participant_id", Text),
            col("date", Date),
            opt("average", Real),
            opt("lower_bound", Real),
            opt("upper_bound", Real),
            col("provider", Text),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "date"],
    },
    Table {
        name: "breathing_rate_daily",
        columns: &[
            col("participant_id", Text),
            col("date", Date),
            col("breathing_rate", Real),
            col("provider", Text),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "date"],
    },
    Table {
        name: "skin_temperature_daily",
        columns: &[
            col("participant_id", Text),
            col("date", Date),
            col("nightly_relative", Real),
            col("provider", Text),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "date"],
    },
    Table {
        name: "active_zone_minutes_daily",
        columns: &[
            col("participant_id", Text),
            col("date", Date),
            col("fat_burn", Integer),
            col("cardio", Integer),
            col("peak", Integer),
            col("total", Integer),
            col("provider", Text),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "date"],
    },
    Table {
        name: "family_permissions",
        columns: &[
            col("participant_id", Text),
            col("family", Text),
            col("reason", Text),
            col("since", Instant),
        ],
        key: &["participant_id", "family"],
    },
    Table {
        name: "coverage_daily",
        columns: &[
            col("participant_id", Text),
            col("date", Date),
            col("family", Text),
            col("expected", Integer),
            col("received", Integer),
            opt("worn_minutes", Integer),
            col("status", Text),
            col("reason", Text),
            opt("dead_letter_id", Text),
            col("updated_at", Instant),
        ],
        key: &["participant_id", "date", "family"],
    },
    Table {
        name: "operator_actions",
        columns: &[
            col("action_id", Text),
            col("at", Instant),
            col("actor", Text),
            col("role", Text),
            col("action", Text),
            opt("participant_id", Text),
            col("detail", Text),
        ],
        key: &["action_id"],
    },
    Table {
        name: "heart_rate_intraday",
        columns: &[
            col("participant_id", Text),
            col("datetime", Instant),
            col("utc_offset_seconds", Integer),
            col("heart_rate_value", Integer),
            col("provider", Text),
        ],
        key: &["participant_id", "datetime"],
    },
    Table {
        name: "steps_intraday",
        columns: &[
            col("participant_id", Text),
            col("datetime", Instant),
            col("utc_offset_seconds", Integer),
            col("steps", Integer),
            col("provider", Text),
        ],
        key: &["participant_id", "datetime"],
    },
    Table {
        name: "invitations",
        columns: &[
            col("invitation_id", Text),
            col("participant_id", Text),
            col("provider", Text),
            opt("issued_at", Instant),
            opt("expires_at", Instant),
            opt("used_at", Instant),
            opt("used_by_request", Text),
            opt("used_new_participant", Bool),
            opt("last_problem", Text),
            opt("last_problem_at", Instant),
        ],
        key: &["invitation_id"],
    },
    Table {
        name: "provider_notifications",
        columns: &[
            col("notification_id", Text),
            col("participant_id", Text),
            col("received_at", Instant),
        ],
        key: &["notification_id"],
    },
    Table {
        name: "provider_deletions",
        columns: &[
            col("notification_id", Text),
            col("participant_id", Text),
            col("provider", Text),
            col("data_type", Text),
            col("interval_start", Instant),
            col("interval_end", Instant),
            col("rows_deleted", Integer),
            col("received_at", Instant),
        ],
        key: &["notification_id", "interval_start", "interval_end"],
    },
    Table {
        name: "withdrawals",
        columns: &[
            col("participant_id", Text),
            col("withdrawn_at", Instant),
            col("withdrawn_by", Text),
            col("purged", Bool),
            col("provider_revocation", Text),
            col("activity_summary_rows", Integer),
            col("heart_rate_summary_rows", Integer),
            col("resting_heart_rate_rows", Integer),
            col("heart_rate_intraday_rows", Integer),
            col("steps_intraday_rows", Integer),
            col("device_rows", Integer),
            col("sync_slices_rows", Integer),
            col("provider_notifications_rows", Integer),
            opt("request_id", Text),
            col("sleep_daily_summary_rows", Integer),
            col("sleep_level_rows", Integer),
            col("heart_rate_variability_daily_rows", Integer),
            col("oxygen_saturation_daily_rows", Integer),
            col("breathing_rate_daily_rows", Integer),
            col("skin_temperature_daily_rows", Integer),
            col("active_zone_minutes_daily_rows", Integer),
            col("family_permissions_rows", Integer),
        ],
        key: &["participant_id", "withdrawn_at"],
    },
];

/// The table called `name`.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::store::testing::TestDatabase;
    use crate::store::{Backend, Database, StoreSettings};

    #[test]
    fn keys_are_columns_and_parents_come_first() {
        for t in &TABLES {
            assert!(!t.key.is_empty(), "{}", t.name);
            for c in t.key_columns() {
                assert!(!c.nullable, "{}.{} is a key column", t.name, c.name);
                assert!(
                    matches!(c.kind, Text | Instant | Date),
                    "{}.{}: keys are text, instants or dates",
                    t.name,
                    c.name
                );
            }
            let names: BTreeSet<_> = t.columns.iter().map(|c| c.name).collect();
            assert_eq!(names.len(), t.columns.len(), "{}: a column twice", t.name);
        }
        assert_eq!(TABLES[0].name, "participants");
        assert_eq!(TABLES[1].name, "credentials");
        assert_eq!(
            TABLES
                .iter()
                .filter(|t| t.partitioned_on().is_some())
                .count(),
            2
        );
    }

    /// Every `CREATE TABLE` and `ADD COLUMN` of both migration directories names a described
    /// table and column, so a new migration cannot add what the copy would silently leave out.
    #[test]
    fn every_table_and_column_of_both_migration_directories_is_described() {
        for dir in ["migrations/sqlite", "migrations/postgres"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            let mut created = BTreeSet::new();
            for entry in std::fs::read_dir(&path).unwrap() {
                let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
                let words: Vec<String> = sql
                    .lines()
                    .map(|l| l.split("--").next().unwrap_or_default())
                    .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == '(' || c == ';'))
                    .filter(|w| !w.is_empty())
                    .map(str::to_lowercase)
                    .collect();
                for w in words.windows(6) {
                    if w[0] == "create" && w[1] == "table" {
                        created.insert(w[2].clone());
                    }
                    if w[0] == "alter" && w[1] == "table" && w[3] == "add" && w[4] == "column" {
                        let t = table(&w[2]).unwrap_or_else(|| panic!("{dir}: table {}", w[2]));
                        assert!(t.column(&w[5]).is_some(), "{dir}: {}.{}", w[2], w[5]);
                    }
                }
            }
            let described: BTreeSet<String> = TABLES.iter().map(|t| t.name.to_owned()).collect();
            assert_eq!(created, described, "{dir}: tables created vs described");
        }
    }

    /// How each backend's catalogue names the type of a column of `kind`.
    fn stored_as(backend: Backend, kind: Kind) -> &'static [&'static str] {
        match (backend, kind) {
            (Backend::Sqlite, Text | Instant | Date | Sealed) => &["TEXT"],
            (Backend::Sqlite, Integer | Bool) => &["INTEGER"],
            (Backend::Sqlite, Real) => &["REAL"],
            (Backend::Postgres, Text) => &["text"],
            (Backend::Postgres, Instant) => &["timestamp with time zone"],
            (Backend::Postgres, Date) => &["date"],
            (Backend::Postgres, Integer) => &["bigint", "integer"],
            (Backend::Postgres, Real) => &["double precision"],
            (Backend::Postgres, Bool) => &["boolean"],
            (Backend::Postgres, Sealed) => &["bytea"],
        }
    }

    /// (table, column) → (type, not null, position in the primary key), from the catalogue.
    type Catalogue = BTreeMap<(String, String), (String, bool, i64)>;

    async fn catalogue(db: &Database) -> Catalogue {
        let rows: Vec<(String, String, String, bool, i64)> = match db.exec() {
            crate::store::ByBackend::Sqlite(pool) => sqlx::query_as(
                "SELECT m.name, c.name, c.type, c.\"notnull\" OR c.pk > 0, c.pk \
                 FROM sqlite_master m JOIN pragma_table_info(m.name) c \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
                   AND m.name <> '_sqlx_migrations'",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            crate::store::ByBackend::Postgres(pool) => sqlx::query_as(
                "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                        a.attnotnull, \
                        COALESCE((SELECT k.n FROM unnest(i.indkey::int2[]) WITH ORDINALITY \
                                  AS k(att, n) WHERE k.att = a.attnum), 0)::bigint \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid \
                 LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
                   AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> '_sqlx_migrations'",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
        };
        rows.into_iter()
            .map(|(t, c, ty, not_null, pk)| ((t, c), (ty, not_null, pk)))
            .collect()
    }

    /// The migrated schema of each backend, table by table and column by column, is what the
    /// copy describes: no table or column unknown to it, every kind stored as expected.
    async fn every_migrated_table_is_described(backend: Backend) {
        let test_db = TestDatabase::new(backend).await;
        let db = Database::open_for_writing(test_db.url(), &StoreSettings::for_role("test"))
            .await
            .unwrap();
        let found = catalogue(&db).await;
        db.close().await;
        let mut expected = BTreeSet::new();
        for t in &TABLES {
            for c in t.columns {
                let key = (t.name.to_owned(), c.name.to_owned());
                let (ty, not_null, pk) = found.get(&key).unwrap_or_else(|| {
                    panic!("{backend:?}: {}.{} is not in the schema", t.name, c.name)
                });
                assert!(
                    stored_as(backend, c.kind).contains(&ty.as_str()),
                    "{backend:?}: {}.{} is {ty}, described as {:?}",
                    t.name,
                    c.name,
                    c.kind
                );
                assert_eq!(
                    *not_null, !c.nullable,
                    "{backend:?}: {}.{} nullability",
                    t.name, c.name
                );
                let position = t
                    .key
                    .iter()
                    .position(|k| *k == c.name)
                    .map_or(0, |i| i as i64 + 1);
                assert_eq!(
                    *pk, position,
                    "{backend:?}: {}.{} key position",
                    t.name, c.name
                );
                expected.insert(key);
            }
        }
        let unknown: Vec<_> = found.keys().filter(|k| !expected.contains(*k)).collect();
        assert!(
            unknown.is_empty(),
            "{backend:?}: not described for the copy: {unknown:?}"
        );
    }

    crate::on_both_backends!(every_migrated_table_is_described);
}
