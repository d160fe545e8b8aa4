//! The lost / duplicated / wrong checker: compares what a fleet stored for a participant with the
//! simulator's ground truth for `[sync_from, cursor)`, table by table, and the completeness
//! ledger with the gaps the truth has (`coverage`). Used by `fitlink chaos` and by the fleet
//! tests, so both judge the same way.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use fitlink_shared::domain::{UtcInstant, format_instant};
use fitlink_shared::fetch;
use fitlink_shared::store::Database;
use fitlink_simulator::{SimConfig, truth};

mod coverage;
mod families;

/// Which provider served a participant's data, which decides what the truth looks like.
#[derive(Clone, Copy, Debug)]
pub enum History {
    /// Google Health: raw heart-rate samples, Google zones, kcal with decimals.
    Google,
    /// Legacy Fitbit: 1-minute heart rate, legacy zones, whole kcal.
    Fitbit,
    /// Fitbit until `switch` (its cursor then), Google after.
    Migrated { switch: DateTime<Utc> },
}

/// One table's comparison for one participant (or, summed, for a fleet).
#[derive(Clone, Debug, Default)]
pub struct Diff {
    /// Rows the truth has.
    pub expected: usize,
    /// In the truth, not stored.
    pub lost: usize,
    /// Stored more than once for one key.
    pub duplicated: usize,
    /// Stored with other values than the truth, or stored without being in the truth.
    pub wrong: usize,
    /// A few examples, for the failure message.
    pub examples: Vec<String>,
}

impl Diff {
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.wrong == 0
    }

    pub fn add(&mut self, other: &Diff) {
        self.expected += other.expected;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.wrong += other.wrong;
        if self.examples.len() < 5 {
            self.examples.extend(other.examples.iter().take(5).cloned());
        }
    }

    fn compare(expected: BTreeMap<String, String>, stored: Vec<(String, String)>) -> Diff {
        let mut diff = Diff {
            expected: expected.len(),
            ..Diff::default()
        };
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in stored {
            if seen.insert(key.clone(), value).is_some() {
                diff.duplicated += 1;
                diff.note(format!("duplicated {key}"));
            }
        }
        for (key, value) in &expected {
            match seen.get(key) {
                None => {
                    diff.lost += 1;
                    diff.note(format!("lost {key} = {value}"));
                }
                Some(stored) if stored != value => {
                    diff.wrong += 1;
                    diff.note(format!("wrong {key}: stored {stored}, expected {value}"));
                }
                Some(_) => {}
            }
        }
        for (key, value) in &seen {
            if !expected.contains_key(key) {
                diff.wrong += 1;
                diff.note(format!("unexpected {key} = {value}"));
            }
        }
        diff
    }

    fn note(&mut self, example: String) {
        if self.examples.len() < 5 {
            self.examples.push(example);
        }
    }
}

/// Every table's comparison for one participant.
#[derive(Debug, Default)]
pub struct ParticipantCheck {
    pub tables: BTreeMap<&'static str, Diff>,
}

impl ParticipantCheck {
    pub fn is_clean(&self) -> bool {
        self.tables.values().all(Diff::is_clean)
    }
}

impl fmt::Display for ParticipantCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (table, d) in &self.tables {
            writeln!(
                f,
                "  {table:<28} expected {:>7}  lost {:>5}  duplicated {:>5}  wrong {:>5}  {}",
                d.expected,
                d.lost,
                d.duplicated,
                d.wrong,
                d.examples.join("; ")
            )?;
        }
        Ok(())
    }
}

/// Compares one participant's rows with the truth for `[sync_from, cursor)`. `restatements`
/// are the restate versions the simulator was told about, per local date.
pub async fn check_participant(
    db: &Database,
    sim: &SimConfig,
    id: &str,
    history: History,
    restatements: &BTreeMap<NaiveDate, u32>,
) -> anyhow::Result<ParticipantCheck> {
    let (from, cursor): (UtcInstant, UtcInstant) = fetch!(
        db.exec(),
        sqlx::query_as("SELECT sync_from, sync_cursor FROM participants WHERE participant_id = $1")
            .bind(id),
        one
    )?;
    let (from, cursor) = (from.get(), cursor.get());
    let version = |d: &NaiveDate| restatements.get(d).copied().unwrap_or(0);
    let point =
        |t: DateTime<Utc>, offset: i32, v: i64| (format_instant(t), format!("{offset} {v}"));

    let google_hr = |a, b| {
        truth::heart_rate(sim, id, a, b, 0)
            .into_iter()
            .map(|s| point(s.time, s.utc_offset_seconds, s.bpm))
            .collect::<Vec<_>>()
    };
    let legacy_hr = |a, b| {
        truth::legacy::heart_rate_minutes(sim, id, a, b)
            .into_iter()
            .map(|s| point(s.time, s.utc_offset_seconds, s.bpm))
            .collect::<Vec<_>>()
    };
    let heart_rate: BTreeMap<String, String> = match history {
        History::Google => google_hr(from, cursor),
        History::Fitbit => legacy_hr(from, cursor),
        History::Migrated { switch } => {
            let mut points = legacy_hr(from, switch);
            points.extend(google_hr(switch, cursor));
            points
        }
    }
    .into_iter()
    .collect();
    let steps: BTreeMap<String, String> = truth::steps(sim, id, from, cursor, 0)
        .into_iter()
        .map(|s| point(s.start, s.utc_offset_seconds, s.steps))
        .collect();
    let heart_rate_minutes = coverage::minutes(heart_rate.keys());
    let steps_minutes = coverage::minutes(steps.keys());

    // Fitbit serves whole kilocalories; once Fitbit served a day, compare whole numbers.
    let whole_kcal = !matches!(history, History::Google);
    let kcal = |v: f64| {
        if whole_kcal {
            format!("{:.0}", v.round())
        } else {
            format!("{v:.2}")
        }
    };
    // Days the synced range touches: a participant stopped early is judged on what it covered.
    let days: Vec<NaiveDate> = truth::dates(sim, id)
        .into_iter()
        .filter(|d| {
            truth::local_day_bounds_utc(sim, id, *d)
                .is_some_and(|(start, end)| from < cursor && start < cursor && end > from)
        })
        .collect();
    let activity: BTreeMap<String, String> = days
        .iter()
        .filter_map(|d| truth::activity_day(sim, id, *d, version(d)))
        .map(|a| {
            (
                a.date.to_string(),
                format!(
                    "{} {:.6} {} {:.3}",
                    a.steps,
                    a.distance_km,
                    kcal(a.calories_out),
                    a.very_active_minutes
                ),
            )
        })
        .collect();
    let zones: BTreeMap<String, String> = days
        .iter()
        .flat_map(|d| match history {
            History::Google => truth::heart_rate_zones(sim, id, *d, version(d)),
            History::Fitbit => truth::legacy::heart_rate_zones(sim, id, *d, version(d)),
            // Both providers' zone models exist for a migrated participant; the intraday
            // tables are what the migration must keep whole.
            History::Migrated { .. } => Vec::new(),
        })
        .map(|z| {
            (
                format!("{} {}", z.date, z.zone_name),
                format!("{} {}", z.min_heart_rate, z.minute_in_zone),
            )
        })
        .collect();
    let resting: BTreeMap<String, String> = days
        .iter()
        .filter_map(|d| {
            truth::resting_heart_rate(sim, id, *d, version(d))
                .map(|r| (d.to_string(), r.to_string()))
        })
        .collect();

    let mut check = ParticipantCheck::default();
    // Keys as the truth writes them: instants in their canonical text, dates as `YYYY-MM-DD`.
    let stored = |sql: &'static str| async move {
        fetch!(
            db.exec(),
            sqlx::query_as::<_, (String, String)>(sql).bind(id),
            all
        )
    };
    let stored_at = |sql: &'static str| async move {
        fetch!(
            db.exec(),
            sqlx::query_as::<_, (UtcInstant, String)>(sql).bind(id),
            all
        )
        .map(|rows| rows.into_iter().map(|(t, v)| (t.to_text(), v)).collect())
    };
    let stored_on = |sql: &'static str| async move {
        fetch!(
            db.exec(),
            sqlx::query_as::<_, (NaiveDate, String)>(sql).bind(id),
            all
        )
        .map(|rows| rows.into_iter().map(|(d, v)| (d.to_string(), v)).collect())
    };
    check.tables.insert(
        "heart_rate_intraday",
        Diff::compare(
            heart_rate,
            stored_at("SELECT datetime, CAST(utc_offset_seconds AS TEXT) || ' ' || CAST(heart_rate_value AS TEXT) FROM heart_rate_intraday WHERE participant_id = $1").await?,
        ),
    );
    check.tables.insert(
        "steps_intraday",
        Diff::compare(
            steps,
            stored_at("SELECT datetime, CAST(utc_offset_seconds AS TEXT) || ' ' || CAST(steps AS TEXT) FROM steps_intraday WHERE participant_id = $1").await?,
        ),
    );
    type ActivityRow = (
        NaiveDate,
        Option<i64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );
    let null = || "null".to_owned();
    let stored_activity: Vec<(String, String)> = fetch!(db.exec(), sqlx::query_as::<_, ActivityRow>(
            "SELECT date, steps, distance, calories_out, very_active_minutes FROM activity_summary WHERE participant_id = $1",
        )
        .bind(id), all)?
    .into_iter()
    .map(|(date, steps, distance, calories, very)| {
        let text = format!(
            "{} {} {} {}",
            steps.map_or_else(null, |v| v.to_string()),
            distance.map_or_else(null, |v| format!("{v:.6}")),
            calories.map_or_else(null, kcal),
            very.map_or_else(null, |v| format!("{v:.3}")),
        );
        (date.to_string(), text)
    })
    .collect();
    check
        .tables
        .insert("activity_summary", Diff::compare(activity, stored_activity));
    if !matches!(history, History::Migrated { .. }) {
        check.tables.insert(
            "heart_rate_summary",
            Diff::compare(
                zones,
                stored("SELECT CAST(date AS TEXT) || ' ' || zone_name, CAST(min_heart_rate AS TEXT) || ' ' || CAST(minute_in_zone AS TEXT) FROM heart_rate_summary WHERE participant_id = $1").await?,
            ),
        );
    }
    check.tables.insert(
        "resting_heart_rate",
        Diff::compare(
            resting,
            stored_on("SELECT date, CAST(resting_heart_rate AS TEXT) FROM resting_heart_rate WHERE participant_id = $1").await?,
        ),
    );
    let judged = families::Judged {
        db,
        sim,
        id,
        history,
        days: &days,
        version: &version,
    };
    for (table, diff) in judged.tables().await? {
        check.tables.insert(table, diff);
    }
    let ledger = coverage::Ledger {
        db,
        sim,
        id,
        history,
        from,
        cursor,
        days: &days,
        version: &version,
        heart_rate_minutes: &heart_rate_minutes,
        steps_minutes: &steps_minutes,
    };
    check.tables.insert("coverage_daily", ledger.judge().await?);
    if let Some(devices) = check_devices(db, sim, id).await? {
        check.tables.insert("device", devices);
    }
    Ok(check)
}

/// The participant's latest device snapshot (the newest `device_date` of each device) against
/// the devices the simulator reports now. Judged only when the participant's last job saw the
/// truth's latest sync (`latest_device_sync`): a participant stopped earlier (revoked, say)
/// holds an older, equally true snapshot.
async fn check_devices(db: &Database, sim: &SimConfig, id: &str) -> anyhow::Result<Option<Diff>> {
    let devices = truth::paired_devices(sim, id);
    let (latest,): (Option<UtcInstant>,) = fetch!(
        db.exec(),
        sqlx::query_as("SELECT latest_device_sync FROM participants WHERE participant_id = $1")
            .bind(id),
        one
    )?;
    let truth_latest = devices.iter().map(|d| d.last_sync_time).max();
    if latest.map(UtcInstant::get) != truth_latest {
        return Ok(None);
    }
    let expected = devices
        .into_iter()
        .map(|d| {
            let value = format!(
                "{} {} {} {} {}",
                d.battery,
                d.battery_level,
                d.device_version,
                d.device_type,
                format_instant(d.last_sync_time)
            );
            (d.device_id, value)
        })
        .collect();
    type DeviceRow = (
        String,
        NaiveDate,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<UtcInstant>,
    );
    let rows: Vec<DeviceRow> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT device_id, device_date, battery, battery_level, device_version, device_type, \
             last_sync_time FROM device WHERE participant_id = $1 ORDER BY device_id, device_date",
        )
        .bind(id),
        all
    )?;
    // The newest day of each device (rows come ordered by device, then day).
    let mut newest: BTreeMap<String, String> = BTreeMap::new();
    let text = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    for (device, _, battery, level, version, kind, synced) in rows {
        let value = format!(
            "{} {} {} {} {}",
            text(battery),
            text(level.map(|l| l.to_string())),
            text(version),
            text(kind),
            text(synced.map(|t| t.to_text()))
        );
        newest.insert(device, value);
    }
    Ok(Some(Diff::compare(expected, newest.into_iter().collect())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_counts_lost_duplicated_and_wrong_rows() {
        let expected: BTreeMap<String, String> = [("a", "1"), ("b", "2"), ("c", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let stored = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "9".to_owned()),
            ("z".to_owned(), "0".to_owned()),
        ];
        let diff = Diff::compare(expected, stored);
        assert_eq!(
            (diff.expected, diff.lost, diff.duplicated, diff.wrong),
            (3, 1, 1, 2)
        );
        assert!(!diff.is_clean());
        assert!(diff.examples.iter().any(|e| e.starts_with("lost c")));
    }
}
