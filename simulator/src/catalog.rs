//! The data-type catalogue: which kebab-case ids exist, their record shape (which decides
//! the filter members), the scope bundle that guards them and which methods they allow.
//!
//! Only a handful of types carry synthetic data; the rest are known so that a client
//! gets the same 400/403 behaviour as from Google rather than a simulator-specific 404.

/// Record shape of a data type (section 4.3 of the reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Interval,
    Sample,
    Daily,
    Session,
    Catalogue,
}

/// OAuth scope bundle guarding a data type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bundle {
    ActivityAndFitness,
    HealthMetrics,
    Sleep,
    Nutrition,
    Ecg,
    Irn,
    Settings,
}

pub(crate) const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/googlehealth.";

impl Bundle {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Bundle::ActivityAndFitness => "activity_and_fitness",
            Bundle::HealthMetrics => "health_metrics_and_measurements",
            Bundle::Sleep => "sleep",
            Bundle::Nutrition => "nutrition",
            Bundle::Ecg => "ecg",
            Bundle::Irn => "irn",
            Bundle::Settings => "settings",
        }
    }

    /// Whether `granted` (full scope URLs) allows reading this bundle. The pre-2026-05-26
    /// unsuffixed read/write scope is accepted too, as Google still honours old grants.
    pub(crate) fn readable_with(self, granted: &[String]) -> bool {
        let readonly = format!("{SCOPE_PREFIX}{}.readonly", self.name());
        let legacy = format!("{SCOPE_PREFIX}{}", self.name());
        granted.iter().any(|s| *s == readonly || *s == legacy)
    }
}

/// The scopes a fresh grant has unless the control API changes them: every bundle the
/// fleet reads (sleep included, so a roster grant serves every family).
pub(crate) fn default_scopes() -> Vec<String> {
    [
        Bundle::ActivityAndFitness,
        Bundle::HealthMetrics,
        Bundle::Sleep,
        Bundle::Settings,
    ]
    .iter()
    .map(|b| format!("{SCOPE_PREFIX}{}.readonly", b.name()))
    .collect()
}

/// One data type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DataType {
    pub kebab: &'static str,
    pub shape: Shape,
    pub bundle: Bundle,
    /// `list` is allowed (false for rollup-only types such as `total-calories`).
    pub list: bool,
    /// `dailyRollUp` is allowed.
    pub daily_rollup: bool,
    /// Maximum `dailyRollUp` range in days.
    pub rollup_cap_days: i64,
}

const fn t(
    kebab: &'static str,
    shape: Shape,
    bundle: Bundle,
    list: bool,
    daily_rollup: bool,
    cap: i64,
) -> DataType {
    DataType {
        kebab,
        shape,
        bundle,
        list,
        daily_rollup,
        rollup_cap_days: cap,
    }
}

use Bundle::{ActivityAndFitness as AF, Ecg, HealthMetrics as HM, Irn, Nutrition, Sleep};
use Shape::{Catalogue, Daily, Interval, Sample, Session};

static TYPES: &[DataType] = &[
    t("active-energy-burned", Interval, AF, true, true, 90),
    t("active-minutes", Interval, AF, true, true, 14),
    t("active-zone-minutes", Interval, AF, true, true, 90),
    t("activity-level", Interval, AF, true, false, 90),
    t("altitude", Interval, AF, true, true, 90),
    t("basal-energy-burned", Interval, AF, true, false, 90),
    t("blood-glucose", Sample, HM, true, true, 90),
    t("body-fat", Sample, HM, true, true, 90),
    t("calories-in-heart-rate-zone", Interval, AF, false, true, 14),
    t("core-body-temperature", Sample, HM, true, true, 90),
    t("daily-heart-rate-variability", Daily, HM, true, true, 90),
    t("daily-heart-rate-zones", Daily, HM, true, false, 90),
    t("daily-oxygen-saturation", Daily, HM, true, false, 90),
    t("daily-respiratory-rate", Daily, HM, true, false, 90),
    t("daily-resting-heart-rate", Daily, HM, true, true, 90),
    t(
        "daily-sleep-temperature-derivations",
        Daily,
        HM,
        true,
        false,
        90,
    ),
    t("daily-vo2-max", Daily, AF, true, false, 90),
    t("distance", Interval, AF, true, true, 90),
    t("electrocardiogram", Session, Ecg, true, false, 90),
    t("exercise", Session, AF, true, false, 90),
    t("floors", Interval, AF, false, true, 90),
    t("food", Catalogue, Nutrition, true, false, 90),
    t(
        "food-measurement-unit",
        Catalogue,
        Nutrition,
        true,
        false,
        90,
    ),
    t("heart-rate", Sample, HM, true, true, 14),
    t("heart-rate-variability", Sample, HM, true, false, 90),
    t("height", Sample, HM, true, false, 90),
    t("hydration-log", Session, Nutrition, true, true, 90),
    t(
        "irregular-rhythm-notification",
        Session,
        Irn,
        true,
        false,
        90,
    ),
    t("nutrition-log", Session, Nutrition, true, true, 90),
    t("oxygen-saturation", Sample, HM, true, false, 90),
    t(
        "respiratory-rate-sleep-summary",
        Sample,
        HM,
        true,
        false,
        90,
    ),
    t("run-vo2-max", Sample, AF, true, true, 90),
    t("sedentary-period", Interval, AF, true, true, 90),
    t("sleep", Session, Sleep, true, false, 90),
    t("steps", Interval, AF, true, true, 90),
    t("swim-lengths-data", Interval, AF, true, true, 90),
    t("time-in-heart-rate-zone", Interval, AF, true, true, 90),
    t("total-calories", Interval, AF, false, true, 14),
    t("vo2-max", Sample, AF, true, false, 90),
    t("weight", Sample, HM, true, true, 90),
];

/// Looks a kebab-case id up.
pub(crate) fn lookup(kebab: &str) -> Option<&'static DataType> {
    TYPES.iter().find(|t| t.kebab == kebab)
}

impl DataType {
    /// The id as used in filter expressions (`heart_rate`).
    pub(crate) fn snake(&self) -> String {
        self.kebab.replace('-', "_")
    }

    /// The id as used for JSON union keys (`heartRate`).
    pub(crate) fn camel(&self) -> String {
        let mut out = String::with_capacity(self.kebab.len());
        let mut upper = false;
        for c in self.kebab.chars() {
            if c == '-' {
                upper = true;
            } else if upper {
                out.push(c.to_ascii_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Filter members this type accepts, with the literal kind each expects.
    pub(crate) fn filter_members(&self) -> &'static [(&'static str, MemberKind)] {
        use MemberKind::{Civil, Date, Physical};
        match (self.shape, self.kebab) {
            (Shape::Interval, _) => &[
                ("interval.start_time", Physical),
                ("interval.civil_start_time", Civil),
            ],
            (Shape::Sample, _) => &[
                ("sample_time.physical_time", Physical),
                ("sample_time.civil_time", Civil),
            ],
            (Shape::Daily, _) => &[("date", Date)],
            (Shape::Session, "sleep") => &[
                ("interval.end_time", Physical),
                ("interval.civil_end_time", Civil),
            ],
            (Shape::Session, "electrocardiogram" | "irregular-rhythm-notification") => {
                &[("interval.start_time", Physical)]
            }
            (Shape::Session, _) => &[("interval.civil_start_time", Civil)],
            (Shape::Catalogue, _) => &[],
        }
    }

    /// Only sleep accepts `OR` between its end-time comparisons.
    pub(crate) fn allows_or(&self) -> bool {
        self.kebab == "sleep"
    }

    /// Default and maximum `list` page size.
    pub(crate) fn page_size_limits(&self) -> (usize, usize) {
        match self.kebab {
            "sleep" | "exercise" => (25, 25),
            _ => (1440, 10_000),
        }
    }
}

/// Literal kind a filter member expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemberKind {
    /// RFC 3339 timestamp.
    Physical,
    /// `YYYY-MM-DD[THH:mm:ss]` local time, no zone.
    Civil,
    /// `YYYY-MM-DD`.
    Date,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let hr = lookup("daily-resting-heart-rate").unwrap();
        assert_eq!(hr.snake(), "daily_resting_heart_rate");
        assert_eq!(hr.camel(), "dailyRestingHeartRate");
        assert!(!lookup("total-calories").unwrap().list);
        assert!(lookup("heart_rate").is_none());
    }

    #[test]
    fn scopes() {
        let granted = default_scopes();
        assert!(Bundle::HealthMetrics.readable_with(&granted));
        assert!(Bundle::Sleep.readable_with(&granted));
        assert!(!Bundle::Nutrition.readable_with(&granted));
    }
}
