//! Nightly metrics (heart-rate variability, oxygen saturation, breathing rate, skin
//! temperature) and the daily active zone minutes.
//!
//! A night's metrics belong to the date of its main sleep (the local date on which it
//! ends) and exist once that sleep has synced. Provider-side deletions of the sleep
//! session do not remove them: they are separate data types at the provider.
//! * HRV and SpO2 need at least 3 hours asleep (restatements included);
//! * breathing rate exists for every main sleep;
//! * skin temperature needs a sensor (an Inspire 3 has none); on Google, about 1 night in
//!   12 has a `"NaN"` baseline (the client stores no row), the legacy API still serves the
//!   relative value of that night.
//!
//! Every value is generated in tenths (SpO2 standard deviation too), so its shortest JSON
//! form is one decimal and parses back to the same `f64` on both providers. The Google
//! skin temperature is a nightly and a baseline whose difference is the relative value up
//! to floating-point rounding (below 1e-13): the baseline is a multiple of 0.25 °C and the
//! nightly value is given in hundredths.
//!
//! Active zone minutes are the day's heart-rate zone minutes: fat burn = MODERATE,
//! cardio = VIGOROUS, peak = PEAK (restatements included), so they agree with the
//! heart-rate data; Fitbit credits a cardio or peak minute twice.

use chrono::{Datelike, NaiveDate};

use super::{DaySummary, Profile, Tag, Window};

/// Asleep minutes a night needs for HRV and SpO2.
pub(crate) const MIN_ASLEEP_FOR_HRV: i64 = 180;

/// Oxygen saturation of a night, percent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Spo2 {
    pub average: f64,
    pub lower: f64,
    pub upper: f64,
    pub stddev: f64,
}

/// Skin temperature of a night.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SkinTemperature {
    /// Nightly relative to the baseline, °C, one decimal (the legacy `nightlyRelative`).
    pub relative: f64,
    /// Google `nightlyTemperatureCelsius` (hundredths).
    pub nightly: f64,
    /// Google `baselineTemperatureCelsius`; `None` is served as `"NaN"`.
    pub baseline: Option<f64>,
    /// Google `relativeNightlyStddev30dCelsius`.
    pub stddev: f64,
}

/// The nightly metrics of one date.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Nightly {
    pub date: NaiveDate,
    /// `(daily RMSSD, deep-sleep RMSSD)`, ms.
    pub hrv: Option<(f64, f64)>,
    pub spo2: Option<Spo2>,
    /// Breaths per minute.
    pub breathing: Option<f64>,
    pub skin: Option<SkinTemperature>,
}

fn tenths(x: i64) -> f64 {
    x as f64 / 10.0
}

impl Profile {
    /// A per-participant constant in `lo..=hi` (key < 0 keeps it apart from the nights).
    fn nightly_base(&self, k: i64, lo: i64, hi: i64) -> i64 {
        self.noise.pick(Tag::Nightly, -1 - k, lo, hi)
    }

    fn nightly_pick(&self, date: NaiveDate, k: i64, lo: i64, hi: i64) -> i64 {
        self.noise.pick(
            Tag::Nightly,
            i64::from(date.num_days_from_ce()) * 16 + k,
            lo,
            hi,
        )
    }

    /// Whether the tracker measures skin temperature.
    pub(crate) fn has_temperature_sensor(&self) -> bool {
        self.tracker != "Inspire 3"
    }

    /// The metrics of local `date` at restatement `version`, `None` when the date has no
    /// synced main sleep.
    pub(crate) fn nightly(&self, window: Window, date: NaiveDate, version: u32) -> Option<Nightly> {
        let main = self
            .sleep_night(date, version)
            .into_iter()
            .find(|s| s.main && Self::session_synced(window, s))?;
        let long = main.minutes_asleep() >= MIN_ASLEEP_FOR_HRV;
        let rmssd =
            (self.nightly_base(0, 250, 650) + self.nightly_pick(date, 0, -60, 60)).clamp(200, 800);
        let deep = (rmssd + self.nightly_pick(date, 1, -50, 30)).clamp(150, 800);
        let average = self.nightly_base(1, 950, 975) + self.nightly_pick(date, 2, -10, 5);
        let spo2 = Spo2 {
            average: tenths(average),
            lower: tenths(average - self.nightly_pick(date, 3, 10, 40)),
            upper: tenths((average + self.nightly_pick(date, 4, 5, 20)).min(1000)),
            stddev: tenths(self.nightly_pick(date, 5, 5, 15)),
        };
        let breathing =
            (self.nightly_base(2, 135, 175) + self.nightly_pick(date, 6, -15, 15)).clamp(120, 200);
        let skin = self.has_temperature_sensor().then(|| {
            let relative = self.nightly_pick(date, 7, -15, 15);
            let baseline_quarters = self.nightly_base(3, 132, 140);
            let nan = self.nightly_pick(date, 8, 0, 11) == 0;
            SkinTemperature {
                relative: tenths(relative),
                nightly: (baseline_quarters * 25 + relative * 10) as f64 / 100.0,
                baseline: (!nan).then_some(baseline_quarters as f64 / 4.0),
                stddev: tenths(self.nightly_pick(date, 9, 1, 6)),
            }
        });
        Some(Nightly {
            date,
            hrv: long.then_some((tenths(rmssd), tenths(deep))),
            spo2: long.then_some(spo2),
            breathing: Some(tenths(breathing)),
            skin,
        })
    }
}

impl DaySummary {
    /// Minutes in the fat-burn, cardio and peak zones, `None` when all are zero (the
    /// providers then serve no point for the day).
    pub(crate) fn zone_minutes_azm(&self) -> Option<[i64; 3]> {
        let m = [self.zone_min[1], self.zone_min[2], self.zone_min[3]];
        (m.iter().any(|&x| x != 0)).then_some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    #[test]
    fn values_are_realistic_and_round_trip() {
        let c = SimConfig::default();
        let mut short = 0;
        for i in 1..=10 {
            let p = Profile::new(&c, i);
            let w = p.window(p.latest_sync(c.until, 0));
            for date in p.sleep_dates(w) {
                let Some(n) = p.nightly(w, date, 0) else {
                    continue;
                };
                let br = n.breathing.unwrap();
                assert!((12.0..=20.0).contains(&br));
                if let Some((daily, deep)) = n.hrv {
                    assert!((20.0..=80.0).contains(&daily) && deep > 0.0);
                    let s = n.spo2.unwrap();
                    assert!(s.lower < s.average && s.average < s.upper && s.upper <= 100.0);
                    assert!((94.0..=98.0).contains(&s.average), "{}", s.average);
                } else {
                    short += 1;
                }
                if let Some(t) = n.skin {
                    assert!(t.relative.abs() <= 1.5);
                    let text = serde_json::to_string(&t.relative).unwrap();
                    assert!(text.len() <= 4, "{text}");
                    if let Some(b) = t.baseline {
                        assert!((t.nightly - b - t.relative).abs() < 1e-12);
                    }
                }
            }
        }
        assert!(short > 0, "no short night");
    }
}
