//! The deterministic synthetic-data generator.
//!
//! Every value is a pure function of `(seed, participant, instant)`: nothing is stored,
//! so any time range can be produced on demand, by the HTTP handlers and by
//! [`crate::truth`] alike, and the two always agree because they run this same code.
//!
//! The model, per participant and per UTC minute:
//! * a daily plan keyed by the participant's *local* date (wake/bed time, a 15–40 minute
//!   off-wrist window after waking, weekends sleep in);
//! * when the tracker is on the wrist (`wear`): besides that window, about 1 night in 10
//!   without a device, about 1 day in 12 not worn at all and 1 in 22 mostly on the charger
//!   (at most one of them a week), and a low-adherence subset (index 4 modulo 5: sim-0004,
//!   sim-0009, …) not wearing it properly on 4 days of each week, so never compliant. A
//!   minute off the wrist is sedentary, with no steps and no heart rate;
//! * 15-minute activity blocks whose probability depends on the local hour (commutes,
//!   lunch, evenings), each a light walk, a brisk walk or (for "runners") a run;
//! * outside blocks, occasional pottering (a few steps, lightly active);
//! * heart rate following activity (sleep ≈ resting − 4, rest ≈ resting + 10, walking
//!   90–140, running 140–175), smoothed over the previous two minutes so it lags effort;
//!   resting heart rate from the worn minutes asleep (else awake and at rest), none on a day
//!   without them;
//! * distance from steps × stride, floors on some walking minutes, calories = BMR share +
//!   activity calories.
//!
//! Daily values are aggregated over the participant's local day (23 or 25 hours on DST
//! days) from exactly the minutes that exist in the data window.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::clock::{from_unix, local, local_day_bounds, offset_secs};
use crate::config::SimConfig;

mod battery;
mod nightly;
mod sleep;
mod wear;

pub(crate) use nightly::Nightly;
pub(crate) use sleep::{SleepKind, SleepSession};
pub(crate) use wear::DayWear;

/// Time zones assigned round-robin (`sim-0001` gets the first). New York and Los Angeles
/// leave DST on 2026-11-01 (inside the default window); Kolkata and Kathmandu have
/// non-whole-hour offsets; Sydney is far east of UTC so its local days straddle UTC days.
pub(crate) const ZONES: [Tz; 7] = [
    Tz::America__New_York,
    Tz::America__Los_Angeles,
    Tz::Europe__London,
    Tz::Asia__Kolkata,
    Tz::Australia__Sydney,
    Tz::UTC,
    Tz::Asia__Kathmandu,
];

const TRACKERS: [&str; 4] = ["Charge 6", "Inspire 3", "Pixel Watch 3", "Sense 2"];

/// Zone names in the order used for arrays indexed by zone.
pub(crate) const ZONE_TYPES: [&str; 4] = ["LIGHT", "MODERATE", "VIGOROUS", "PEAK"];

/// SplitMix64 finaliser: a cheap, well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Independent random streams, so that changing one model detail does not reshuffle
/// every other value.
#[derive(Clone, Copy)]
enum Tag {
    Profile = 1,
    Day,
    Block,
    Intensity,
    Steps,
    Putter,
    PutterSteps,
    Floor,
    HrNoise,
    SampleNoise,
    Device,
    Sleep,
    Stage,
    Nightly,
    Battery,
    Wear,
}

/// Per-participant hash source.
#[derive(Clone, Copy, Debug)]
struct Noise {
    base: u64,
}

impl Noise {
    fn new(seed: u64, index: usize) -> Self {
        Noise {
            base: mix(mix(seed) ^ (index as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)),
        }
    }

    fn hash(self, tag: Tag, key: i64) -> u64 {
        mix(mix(self.base ^ tag as u64) ^ key as u64)
    }

    /// Uniform in `[0, 1)`.
    fn unit(self, tag: Tag, key: i64) -> f64 {
        (self.hash(tag, key) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `lo..=hi`.
    fn pick(self, tag: Tag, key: i64, lo: i64, hi: i64) -> i64 {
        lo + (self.hash(tag, key) % (hi - lo + 1) as u64) as i64
    }
}

/// Activity level of one minute (Fitbit's classification, plus sleep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Asleep,
    Sedentary,
    Light,
    Moderate,
    Vigorous,
}

/// How a day's resting heart rate was derived (`dailyRestingHeartRateMetadata`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestingMethod {
    WithSleep,
    OnlyWithAwakeData,
}

impl RestingMethod {
    pub(crate) fn as_wire(self) -> &'static str {
        match self {
            RestingMethod::WithSleep => "WITH_SLEEP",
            RestingMethod::OnlyWithAwakeData => "ONLY_WITH_AWAKE_DATA",
        }
    }
}

/// The part of a minute that does not depend on neighbouring minutes.
#[derive(Clone, Copy, Debug)]
struct Raw {
    index: i64,
    offset: i32,
    local: NaiveDateTime,
    level: Level,
    steps: i64,
    worn: bool,
    in_block: bool,
    target_hr: f64,
}

/// One fully generated minute.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Minute {
    /// Unix minute (`start = index * 60`).
    pub index: i64,
    pub offset_secs: i32,
    pub local: NaiveDateTime,
    pub level: Level,
    /// False while the tracker is off the wrist: no steps and no heart-rate samples.
    pub worn: bool,
    pub steps: i64,
    pub distance_mm: i64,
    pub floors: i64,
    pub active_kcal: f64,
    /// Mean heart rate of the minute; zone time is classified from it.
    pub bpm: i64,
}

/// One heart-rate sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct HrSample {
    pub t: i64,
    pub offset_secs: i32,
    pub local: NaiveDateTime,
    pub bpm: i64,
}

/// The physical range in which a participant has data: `[from, to)` in Unix seconds,
/// i.e. `[sync_from, latest_sync)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub from: i64,
    pub to: i64,
}

impl Window {
    /// A minute exists (steps, calories, daily aggregation) only when it lies completely
    /// inside the window: the device has not synced a minute that is still running.
    pub(crate) fn first_minute(&self) -> i64 {
        self.from.div_euclid(60) + i64::from(self.from.rem_euclid(60) != 0)
    }

    /// Exclusive end of the complete minutes.
    pub(crate) fn end_minute(&self) -> i64 {
        self.to.div_euclid(60)
    }
}

/// The planned day of one local date, in wall minutes of that date.
#[derive(Clone, Copy, Debug)]
struct DayPlan {
    wake: i64,
    bed: i64,
    /// The morning off-wrist window, unless `wear.rs` makes the day a charger day or a day
    /// not worn at all.
    off_wrist_start: i64,
    off_wrist_end: i64,
    weekend: bool,
    /// Day-to-day drift of the resting heart rate (bpm).
    rhr_shift: f64,
}

/// A paired device as served by `pairedDevices.list`.
#[derive(Clone, Debug)]
pub(crate) struct Device {
    pub id: u64,
    pub device_type: &'static str,
    pub version: &'static str,
    pub battery_level: i32,
    pub last_sync: DateTime<Utc>,
    pub mac: String,
    pub features: &'static [&'static str],
}

/// Daily values of one local day, before or after a restatement.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DaySummary {
    pub date: NaiveDate,
    pub steps: i64,
    pub distance_mm: i64,
    pub floors: i64,
    pub elevation_mm: i64,
    pub calories_kcal: f64,
    pub active_kcal: f64,
    pub sedentary_min: i64,
    pub light_min: i64,
    pub moderate_min: i64,
    pub vigorous_min: i64,
    pub zone_min: [i64; 4],
    pub zone_kcal: [f64; 4],
    /// LIGHT, MODERATE, VIGOROUS, PEAK minimum bpm, then PEAK maximum.
    pub zones: [i64; 5],
    pub resting: Option<(i64, RestingMethod)>,
    /// Worn minutes below the LIGHT zone and their kcal (the legacy "Out of Range" zone
    /// is these plus LIGHT). Never restated: the LIGHT zone carries the restatement.
    pub below_zone_min: i64,
    pub below_zone_kcal: f64,
}

impl DaySummary {
    /// Applies restatement `version`: each daily value moves by a fixed, visible step per
    /// version. Intraday points are never affected, mirroring Google rewriting a day's
    /// summaries after a late sync.
    pub(crate) fn restated(mut self, version: u32) -> Self {
        if version == 0 {
            return self;
        }
        let v = i64::from(version);
        let vf = f64::from(version);
        self.steps += 100 * v;
        self.distance_mm += 80_000 * v;
        self.floors += v;
        self.elevation_mm += 3_048 * v;
        self.calories_kcal = round2(self.calories_kcal + 25.0 * vf);
        self.active_kcal = round2(self.active_kcal + 25.0 * vf);
        self.sedentary_min += v;
        self.light_min += v;
        self.moderate_min += v;
        self.vigorous_min += v;
        for z in &mut self.zone_min {
            *z += v;
        }
        for k in &mut self.zone_kcal {
            *k = round2(*k + 5.0 * vf);
        }
        for t in &mut self.zones {
            *t += v;
        }
        self.resting = self.resting.map(|(bpm, method)| (bpm + v, method));
        self
    }
}

/// Heart-rate statistics of a day (the `heart-rate` daily rollup).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct HrStats {
    pub count: i64,
    pub sum: i64,
    pub min: i64,
    pub max: i64,
}

impl HrStats {
    pub(crate) fn add(&mut self, bpm: i64) {
        if self.count == 0 {
            self.min = bpm;
            self.max = bpm;
        } else {
            self.min = self.min.min(bpm);
            self.max = self.max.max(bpm);
        }
        self.count += 1;
        self.sum += bpm;
    }

    pub(crate) fn merge(&mut self, other: &HrStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// Everything constant about one synthetic participant.
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    pub id: String,
    /// Roster position (`sim-0001` is 1).
    pub index: usize,
    pub tz: Tz,
    pub hr_interval_secs: u32,
    pub sync_from: DateTime<Utc>,
    /// How long before the synthetic clock the latest device sync happened.
    pub lag_secs: i64,
    pub refresh_token: String,
    pub health_user_id: String,
    /// The legacy Fitbit `encodedId` (6 characters of `[0-9A-Z]`, unique per roster).
    pub encoded_id: String,
    /// The initial legacy Fitbit refresh token (`simfrt_<participant>_<hex>`).
    pub legacy_refresh_token: String,
    pub tracker: &'static str,
    /// When the tracker's battery dies for good (every 13th participant): the latest sync
    /// never passes it, so no data of any family exists after it.
    pub battery_death: Option<DateTime<Utc>>,
    noise: Noise,
    age: i64,
    rhr: f64,
    max_hr: f64,
    bmr_per_min: f64,
    weight_factor: f64,
    stride_walk_mm: f64,
    stride_run_mm: f64,
    runner: bool,
    zones: [i64; 5],
}

/// All participants of a configuration, in roster order.
pub(crate) fn profiles(config: &SimConfig) -> Vec<Profile> {
    (1..=config.participants)
        .map(|i| Profile::new(config, i))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The legacy Fitbit `encodedId` of participant `index`: a bijective scramble of the index
/// over 30 bits (seeded), written as 6 base-32 characters from `[0-9A-Z]` without the
/// look-alikes `0 1 I O`. Distinct participants always get distinct ids.
fn encoded_id(seed: u64, index: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    const MASK: u64 = (1 << 30) - 1;
    let mut x = (index as u64).wrapping_add(mix(seed ^ 0x4C45_4741_4359)) & MASK;
    // xorshift-right and multiplication by an odd constant are both invertible mod 2^30.
    for k in [0x2C1B_3C6D_u64, 0x297A_2D39] {
        x ^= x >> 15;
        x = x.wrapping_mul(k) & MASK;
    }
    x ^= x >> 13;
    (0..6)
        .rev()
        .map(|k| ALPHABET[((x >> (5 * k)) & 31) as usize] as char)
        .collect()
}

fn activity_probability(hour: u32, weekend: bool) -> f64 {
    if weekend {
        match hour {
            9..=17 => 0.18,
            18..=21 => 0.10,
            _ => 0.03,
        }
    } else {
        match hour {
            7 | 8 | 12 | 17 | 18 => 0.25,
            9..=16 => 0.07,
            19..=21 => 0.10,
            _ => 0.03,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rounds to two decimals. Daily kcal values are kept at two decimals so that their
/// shortest JSON form is short enough for every JSON parser to read back exactly.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Profile {
    pub(crate) fn new(config: &SimConfig, index: usize) -> Self {
        let noise = Noise::new(config.seed, index);
        let id = format!("sim-{index:04}");
        let fine = config.fine_hr_every > 0 && index.is_multiple_of(config.fine_hr_every);
        let p = |k: i64, lo: i64, hi: i64| noise.pick(Tag::Profile, k, lo, hi);
        let rhr = p(0, 52, 66) as f64;
        let age = p(1, 22, 65) as f64;
        let max_hr = (220.0 - age).round();
        let reserve = max_hr - rhr;
        let zone = |f: f64| (rhr + reserve * f).round() as i64;
        let zones = [
            zone(0.30),
            zone(0.50),
            zone(0.65),
            zone(0.85),
            max_hr as i64,
        ];

        let digest = Sha256::digest(format!("fitlink-sim:{}:{}:refresh", config.seed, id));
        let refresh_token = format!("simrt_{}_{}", id, hex(&digest[..12]));
        let uid =
            noise.hash(Tag::Profile, 100) % 9_000_000_000_000_000_000 + 1_000_000_000_000_000_000;
        let digest = Sha256::digest(format!("fitlink-sim:{}:{}:legacy-refresh", config.seed, id));
        let legacy_refresh_token = format!("simfrt_{}_{}", id, hex(&digest[..16]));

        let sync_from = config.until - Duration::days(i64::from(config.days));
        Profile {
            index,
            battery_death: battery::death(noise, index, sync_from, config.days),
            tz: ZONES[(index - 1) % ZONES.len()],
            hr_interval_secs: if fine {
                1
            } else {
                config.hr_interval_secs.max(1)
            },
            sync_from,
            lag_secs: p(2, 0, 1800),
            refresh_token,
            health_user_id: uid.to_string(),
            encoded_id: encoded_id(config.seed, index),
            legacy_refresh_token,
            tracker: TRACKERS[p(3, 0, 3) as usize],
            noise,
            age: age as i64,
            rhr,
            max_hr,
            bmr_per_min: p(4, 1350, 1950) as f64 / 1440.0,
            weight_factor: p(5, 80, 130) as f64 / 100.0,
            stride_walk_mm: p(6, 650, 800) as f64,
            stride_run_mm: p(7, 1000, 1250) as f64,
            runner: p(8, 0, 9) < 4,
            zones,
            id,
        }
    }

    /// The participant's latest device sync given the synthetic clock, never after the
    /// tracker's battery died.
    pub(crate) fn latest_sync(&self, until: DateTime<Utc>, advance_minutes: u64) -> DateTime<Utc> {
        let advance = i64::try_from(advance_minutes).unwrap_or(i64::MAX / 120);
        let synced = until + Duration::minutes(advance) - Duration::seconds(self.lag_secs);
        self.battery_death.map_or(synced, |death| synced.min(death))
    }

    pub(crate) fn window(&self, latest_sync: DateTime<Utc>) -> Window {
        Window {
            from: self.sync_from.timestamp(),
            to: latest_sync.timestamp(),
        }
    }

    fn day_plan(&self, date: NaiveDate) -> DayPlan {
        let key = i64::from(date.num_days_from_ce());
        let p = |k: i64, lo: i64, hi: i64| self.noise.pick(Tag::Day, key * 8 + k, lo, hi);
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        let wake = 6 * 60 + p(0, 0, 90) + if weekend { 60 } else { 0 };
        let bed = (22 * 60 + p(1, 0, 90) + if weekend { 30 } else { 0 }).min(1439);
        let off_wrist_start = wake + p(2, 20, 60);
        DayPlan {
            wake,
            bed,
            off_wrist_start,
            off_wrist_end: off_wrist_start + p(3, 15, 40),
            weekend,
            rhr_shift: p(4, -3, 3) as f64,
        }
    }

    fn raw(&self, m: i64) -> Raw {
        let start = from_unix(m * 60);
        let offset = offset_secs(self.tz, start);
        let local = start.naive_utc() + Duration::seconds(i64::from(offset));
        let minute_of_day = i64::from(local.hour() * 60 + local.minute());
        let date = local.date();
        let plan = self.day_plan(date);
        let wear = self.day_wear(date, &plan);
        let n = self.noise;

        let (level, steps, worn, in_block) = if !self.worn_at(date, minute_of_day, &plan, wear) {
            (Level::Sedentary, 0, false, false)
        } else if minute_of_day < plan.wake || minute_of_day >= plan.bed {
            (Level::Asleep, 0, true, false)
        } else {
            let hour = local.hour();
            let block = m.div_euclid(15);
            if n.unit(Tag::Block, block) < activity_probability(hour, plan.weekend) {
                let u = n.unit(Tag::Intensity, block);
                let level = if self.runner && matches!(hour, 6..=8 | 17..=19) && u < 0.45 {
                    Level::Vigorous
                } else if u > 0.7 {
                    Level::Moderate
                } else {
                    Level::Light
                };
                let steps = match level {
                    Level::Light => n.pick(Tag::Steps, m, 60, 100),
                    Level::Moderate => n.pick(Tag::Steps, m, 100, 125),
                    _ => n.pick(Tag::Steps, m, 140, 175),
                };
                (level, steps, true, true)
            } else if n.unit(Tag::Putter, m) < 0.25 {
                (
                    Level::Light,
                    n.pick(Tag::PutterSteps, m, 5, 40),
                    true,
                    false,
                )
            } else {
                (Level::Sedentary, 0, true, false)
            }
        };

        let jitter = n.unit(Tag::HrNoise, m) * 2.0 - 1.0;
        let rhr = self.rhr + plan.rhr_shift;
        let reserve = self.max_hr - rhr;
        let s = steps as f64;
        let target_hr = match level {
            Level::Asleep => rhr - 4.0 + 3.0 * jitter,
            Level::Sedentary => rhr + 10.0 + 5.0 * jitter,
            Level::Light => rhr + reserve * (0.12 + 0.22 * s / 100.0) + 4.0 * jitter,
            Level::Moderate => rhr + reserve * (0.42 + 0.15 * (s - 100.0) / 25.0) + 5.0 * jitter,
            Level::Vigorous => rhr + reserve * (0.66 + 0.20 * (s - 140.0) / 35.0) + 5.0 * jitter,
        };
        Raw {
            index: m,
            offset,
            local,
            level,
            steps,
            worn,
            in_block,
            target_hr,
        }
    }

    /// Combines a minute with its two predecessors (heart rate lags effort).
    fn finish(&self, r0: &Raw, r1: &Raw, r2: &Raw) -> Minute {
        let m = r0.index;
        let bpm = (0.5 * r0.target_hr + 0.3 * r1.target_hr + 0.2 * r2.target_hr)
            .round()
            .clamp(38.0, self.max_hr) as i64;
        let stride = if r0.level == Level::Vigorous {
            self.stride_run_mm
        } else {
            self.stride_walk_mm
        };
        let floors = i64::from(
            r0.in_block
                && matches!(r0.level, Level::Light | Level::Moderate)
                && self.noise.unit(Tag::Floor, m) < 0.05,
        );
        let s = r0.steps as f64;
        let active = match r0.level {
            Level::Light => 0.8 + 0.025 * s,
            Level::Moderate => 3.0 + 0.025 * s,
            Level::Vigorous => 7.0 + 0.03 * s,
            Level::Asleep | Level::Sedentary => 0.0,
        };
        Minute {
            index: m,
            offset_secs: r0.offset,
            local: r0.local,
            level: r0.level,
            worn: r0.worn,
            steps: r0.steps,
            distance_mm: (s * stride).round() as i64,
            floors,
            active_kcal: round3(active * self.weight_factor),
            bpm,
        }
    }

    /// Generates one minute from scratch.
    pub(crate) fn minute(&self, m: i64) -> Minute {
        self.finish(&self.raw(m), &self.raw(m - 1), &self.raw(m - 2))
    }

    /// Generates consecutive minutes `[from, to)` ascending, reusing the neighbours.
    pub(crate) fn minutes(&self, from: i64, to: i64) -> impl Iterator<Item = Minute> + '_ {
        let mut r2 = self.raw(from - 2);
        let mut r1 = self.raw(from - 1);
        (from..to).map(move |m| {
            let r0 = self.raw(m);
            let minute = self.finish(&r0, &r1, &r2);
            r2 = r1;
            r1 = r0;
            minute
        })
    }

    /// Heart rate of the sample at second `t` inside `minute`.
    fn sample(&self, minute: &Minute, t: i64) -> HrSample {
        let wobble = (self.noise.hash(Tag::SampleNoise, t) % 5) as i64 - 2;
        HrSample {
            t,
            offset_secs: minute.offset_secs,
            local: minute.local + Duration::seconds(t - minute.index * 60),
            bpm: (minute.bpm + wobble).clamp(38, self.max_hr as i64),
        }
    }

    /// Heart-rate samples in `[lo, hi) ∩ window`, newest first, keeping those `keep`
    /// accepts, at most `limit`. The flag says whether more samples exist below the last
    /// one returned (so the caller knows whether to emit a `nextPageToken`).
    pub(crate) fn hr_desc(
        &self,
        window: Window,
        lo: i64,
        hi: i64,
        keep: &dyn Fn(&HrSample) -> bool,
        limit: usize,
    ) -> (Vec<HrSample>, bool) {
        let lo = lo.max(window.from);
        let hi = hi.min(window.to);
        let step = i64::from(self.hr_interval_secs);
        let mut out = Vec::new();
        if hi <= lo {
            return (out, false);
        }
        let mut t = (hi - 1).div_euclid(step) * step;
        let mut cached: Option<Minute> = None;
        while t >= lo {
            let mi = t.div_euclid(60);
            let minute = match cached {
                Some(c) if c.index == mi => c,
                _ => {
                    let c = self.minute(mi);
                    cached = Some(c);
                    c
                }
            };
            if minute.worn {
                let s = self.sample(&minute, t);
                if keep(&s) {
                    if out.len() == limit {
                        return (out, true);
                    }
                    out.push(s);
                }
            }
            t -= step;
        }
        (out, false)
    }

    /// Heart-rate samples in `[lo, hi) ∩ window`, oldest first.
    pub(crate) fn hr_asc(&self, window: Window, lo: i64, hi: i64) -> Vec<HrSample> {
        let (mut samples, _) = self.hr_desc(window, lo, hi, &|_| true, usize::MAX);
        samples.reverse();
        samples
    }

    /// The legacy `1min` heart rate: for every minute whose start is in `[lo, hi)` and
    /// that has at least one sample inside the window, the minute and the rounded mean
    /// bpm of those samples, oldest first. Samples whose second `keep` refuses (deleted at
    /// the provider) do not count.
    pub(crate) fn hr_minute_means(
        &self,
        window: Window,
        lo: i64,
        hi: i64,
        keep: &dyn Fn(i64) -> bool,
    ) -> Vec<(Minute, i64)> {
        let first = lo.div_euclid(60) + i64::from(lo.rem_euclid(60) != 0);
        let end = hi.div_euclid(60) + i64::from(hi.rem_euclid(60) != 0);
        // Only minutes that overlap the window can have samples.
        let first = first.max(window.from.div_euclid(60));
        let end = end.min(window.to.div_euclid(60) + 1);
        if end <= first {
            return Vec::new();
        }
        let step = i64::from(self.hr_interval_secs);
        let mut out = Vec::new();
        for minute in self.minutes(first, end) {
            if !minute.worn {
                continue;
            }
            let a = window.from.max(minute.index * 60);
            let b = window.to.min(minute.index * 60 + 60);
            let (mut sum, mut n) = (0i64, 0i64);
            let mut t = (a + step - 1).div_euclid(step) * step;
            while t < b {
                if keep(t) {
                    sum += self.sample(&minute, t).bpm;
                    n += 1;
                }
                t += step;
            }
            if n > 0 {
                out.push((minute, (sum as f64 / n as f64).round() as i64));
            }
        }
        out
    }

    /// Whether minute `m` lies completely inside the window (only such minutes have steps).
    pub(crate) fn minute_complete(window: Window, m: i64) -> bool {
        (window.first_minute()..window.end_minute()).contains(&m)
    }

    /// Age in years (the legacy profile's `age`).
    pub(crate) fn age(&self) -> i64 {
        self.age
    }

    /// Walking and running stride lengths in centimetres (legacy profile).
    pub(crate) fn strides_cm(&self) -> (f64, f64) {
        (self.stride_walk_mm / 10.0, self.stride_run_mm / 10.0)
    }

    /// Minutes with steps > 0 whose start is in `[lo, hi)` and that lie completely in the
    /// window, newest first, filtered by `keep`, at most `limit` (plus a "more" flag).
    pub(crate) fn steps_desc(
        &self,
        window: Window,
        lo: i64,
        hi: i64,
        keep: &dyn Fn(&Minute) -> bool,
        limit: usize,
    ) -> (Vec<Minute>, bool) {
        let first = window
            .first_minute()
            .max(lo.div_euclid(60) + i64::from(lo.rem_euclid(60) != 0));
        let end = window
            .end_minute()
            .min(hi.div_euclid(60) + i64::from(hi.rem_euclid(60) != 0));
        let mut out = Vec::new();
        let mut m = end - 1;
        while m >= first {
            let minute = self.minute(m);
            if minute.steps > 0 && keep(&minute) {
                if out.len() == limit {
                    return (out, true);
                }
                out.push(minute);
            }
            m -= 1;
        }
        (out, false)
    }

    /// Local dates that have at least one complete minute in the window, ascending.
    pub(crate) fn data_dates(&self, window: Window) -> Vec<NaiveDate> {
        let (first, end) = (window.first_minute(), window.end_minute());
        if end <= first {
            return Vec::new();
        }
        let d0 = local(self.tz, from_unix(first * 60)).date();
        let d1 = local(self.tz, from_unix((end - 1) * 60)).date();
        d0.iter_days().take_while(|d| *d <= d1).collect()
    }

    /// Complete minutes of local day `date` inside the window, as `[first, end)`.
    fn day_minutes(&self, window: Window, date: NaiveDate) -> (i64, i64) {
        let (start, end) = local_day_bounds(self.tz, date);
        let first = window.first_minute().max(start.timestamp().div_euclid(60));
        let end = window.end_minute().min(end.timestamp().div_euclid(60));
        (first, end)
    }

    /// A day without data: every value zero, the participant's zone thresholds.
    pub(crate) fn empty_day(&self, date: NaiveDate) -> DaySummary {
        DaySummary {
            date,
            steps: 0,
            distance_mm: 0,
            floors: 0,
            elevation_mm: 0,
            calories_kcal: 0.0,
            active_kcal: 0.0,
            sedentary_min: 0,
            light_min: 0,
            moderate_min: 0,
            vigorous_min: 0,
            zone_min: [0; 4],
            zone_kcal: [0.0; 4],
            zones: self.zones,
            resting: None,
            below_zone_min: 0,
            below_zone_kcal: 0.0,
        }
    }

    /// Daily values of local day `date` (unrestated), or `None` when the day has no
    /// complete minute in the window.
    pub(crate) fn day_summary(&self, window: Window, date: NaiveDate) -> Option<DaySummary> {
        let (first, end) = self.day_minutes(window, date);
        if end <= first {
            return None;
        }
        let mut d = self.empty_day(date);
        let (mut sleep_sum, mut sleep_n, mut rest_sum, mut rest_n) = (0i64, 0i64, 0i64, 0i64);
        for minute in self.minutes(first, end) {
            let kcal = self.bmr_per_min + minute.active_kcal;
            d.steps += minute.steps;
            d.distance_mm += minute.distance_mm;
            d.floors += minute.floors;
            d.elevation_mm += minute.floors * 3_048;
            d.calories_kcal += kcal;
            d.active_kcal += minute.active_kcal;
            match minute.level {
                Level::Asleep => {}
                Level::Sedentary => d.sedentary_min += 1,
                Level::Light => d.light_min += 1,
                Level::Moderate => d.moderate_min += 1,
                Level::Vigorous => d.vigorous_min += 1,
            }
            if !minute.worn {
                continue;
            }
            match minute.level {
                Level::Asleep => {
                    sleep_sum += minute.bpm;
                    sleep_n += 1;
                }
                Level::Sedentary => {
                    rest_sum += minute.bpm;
                    rest_n += 1;
                }
                _ => {}
            }
            if let Some(z) = (0..4).rev().find(|&z| minute.bpm >= self.zones[z]) {
                d.zone_min[z] += 1;
                d.zone_kcal[z] += kcal;
            } else {
                d.below_zone_min += 1;
                d.below_zone_kcal += kcal;
            }
        }
        d.below_zone_kcal = round2(d.below_zone_kcal);
        d.calories_kcal = round2(d.calories_kcal);
        d.active_kcal = round2(d.active_kcal);
        for k in &mut d.zone_kcal {
            *k = round2(*k);
        }
        d.resting = if sleep_n > 0 {
            Some((
                (sleep_sum as f64 / sleep_n as f64).round() as i64,
                RestingMethod::WithSleep,
            ))
        } else if rest_n > 0 {
            Some((
                (rest_sum as f64 / rest_n as f64 - 8.0).round() as i64,
                RestingMethod::OnlyWithAwakeData,
            ))
        } else {
            None
        };
        Some(d)
    }

    /// Heart-rate statistics over the samples of local day `date` inside the window.
    pub(crate) fn day_hr_stats(&self, window: Window, date: NaiveDate) -> HrStats {
        let (start, end) = local_day_bounds(self.tz, date);
        let lo = window.from.max(start.timestamp());
        let hi = window.to.min(end.timestamp());
        let mut stats = HrStats::default();
        if hi <= lo {
            return stats;
        }
        let step = i64::from(self.hr_interval_secs);
        let first_minute = lo.div_euclid(60);
        let end_minute = (hi + 59).div_euclid(60);
        for minute in self.minutes(first_minute, end_minute) {
            if !minute.worn {
                continue;
            }
            let a = lo.max(minute.index * 60);
            let b = hi.min(minute.index * 60 + 60);
            let mut t = (a + step - 1).div_euclid(step) * step;
            while t < b {
                stats.add(self.sample(&minute, t).bpm);
                t += step;
            }
        }
        stats
    }

    /// Paired devices: always the tracker that produced the data (its `lastSyncTime` is
    /// the latest sync, its battery level the one it reported then), sometimes a scale that synced hours earlier and an old tracker
    /// that has not synced for days. Clients must take the maximum.
    pub(crate) fn devices(&self, latest_sync: DateTime<Utc>) -> Vec<Device> {
        const TRACKER_FEATURES: &[&str] = &[
            "STEPS",
            "HEART_RATE",
            "ACTIVE_MINUTES",
            "ACTIVE_ZONE_MINUTES",
            "CALORIES",
            "DISTANCE",
            "SLEEP",
        ];
        const SCALE_FEATURES: &[&str] = &["WEIGHT", "BODY_FAT"];
        let n = self.noise;
        let count = n.pick(Tag::Device, 0, 1, 3);
        let id = |k: i64| 100_000_000 + n.hash(Tag::Device, 10 + k) % 900_000_000;
        let mac = |k: i64| format!("{:012X}", n.hash(Tag::Device, 20 + k) & 0xFFFF_FFFF_FFFF);
        let mut devices = vec![Device {
            id: id(0),
            device_type: "TRACKER",
            version: self.tracker,
            battery_level: self.tracker_battery(latest_sync),
            last_sync: latest_sync,
            mac: mac(0),
            features: TRACKER_FEATURES,
        }];
        if count >= 2 {
            devices.push(Device {
                id: id(1),
                device_type: "SCALE",
                version: "Aria Air",
                battery_level: n.pick(Tag::Device, 31, 40, 100) as i32,
                last_sync: latest_sync
                    - Duration::seconds(n.pick(Tag::Device, 40, 2 * 3600, 20 * 3600)),
                mac: mac(1),
                features: SCALE_FEATURES,
            });
        }
        if count >= 3 {
            devices.push(Device {
                id: id(2),
                device_type: "TRACKER",
                version: "Inspire 2",
                battery_level: n.pick(Tag::Device, 32, 0, 30) as i32,
                last_sync: latest_sync
                    - Duration::seconds(n.pick(Tag::Device, 41, 3 * 86_400, 30 * 86_400)),
                mac: mac(2),
                features: TRACKER_FEATURES,
            });
        }
        devices
    }
}

pub(crate) fn battery_status(level: i32) -> &'static str {
    match level {
        0 => "Empty",
        1..=25 => "Low",
        26..=70 => "Medium",
        _ => "High",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SimConfig {
        SimConfig::default()
    }

    #[test]
    fn deterministic_and_distinct() {
        let c = config();
        let a = Profile::new(&c, 1);
        let b = Profile::new(&c, 1);
        assert_eq!(a.refresh_token, b.refresh_token);
        assert!(a.refresh_token.starts_with("simrt_sim-0001_"));
        assert_ne!(a.refresh_token, Profile::new(&c, 2).refresh_token);
        let m = c.until.timestamp() / 60 - 600;
        assert_eq!(a.minute(m).bpm, b.minute(m).bpm);
        assert_eq!(a.health_user_id.len(), 19);
    }

    #[test]
    fn encoded_ids_are_unique_and_well_formed() {
        for seed in [42, 7] {
            let ids: std::collections::HashSet<String> =
                (1..=9999).map(|i| encoded_id(seed, i)).collect();
            assert_eq!(ids.len(), 9999);
            assert!(ids.iter().all(|id| {
                id.len() == 6
                    && id
                        .chars()
                        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            }));
        }
        let p = Profile::new(&config(), 1);
        assert!(p.legacy_refresh_token.starts_with("simfrt_sim-0001_"));
        assert_ne!(
            p.legacy_refresh_token,
            Profile::new(&config(), 2).legacy_refresh_token
        );
    }

    #[test]
    fn streamed_minutes_equal_single_minutes() {
        let c = config();
        let p = Profile::new(&c, 3);
        let from = c.until.timestamp() / 60 - 3000;
        for (k, minute) in p.minutes(from, from + 200).enumerate() {
            let single = p.minute(from + k as i64);
            assert_eq!(minute.bpm, single.bpm);
            assert_eq!(minute.steps, single.steps);
        }
    }

    #[test]
    fn realistic_rhythm() {
        let c = config();
        for i in 1..=7 {
            let p = Profile::new(&c, i);
            let w = p.window(p.latest_sync(c.until, 0));
            let date = p.data_dates(w)[3];
            let d = p.day_summary(w, date).unwrap();
            assert!(
                (3_000..30_000).contains(&d.steps),
                "{} steps {}",
                p.id,
                d.steps
            );
            let rhr = d.resting.unwrap().0;
            assert!((45..75).contains(&rhr), "rhr {rhr}");
            assert!(d.calories_kcal > 1_300.0);
            assert!(d.light_min > 60);
            // Night minutes have no steps.
            let (start, _) = local_day_bounds(p.tz, date);
            let three_am = start.timestamp() / 60 + 180;
            assert_eq!(p.minute(three_am).steps, 0);
            assert_eq!(p.minute(three_am).level, Level::Asleep);
        }
    }

    #[test]
    fn new_york_dst_day_has_1500_minutes() {
        let c = config();
        let p = Profile::new(&c, 1);
        assert_eq!(p.tz, Tz::America__New_York);
        let w = p.window(p.latest_sync(c.until, 0));
        let date = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let (first, end) = p.day_minutes(w, date);
        assert_eq!(end - first, 25 * 60);
        let d = p.day_summary(w, date).unwrap();
        let asleep = p
            .minutes(first, end)
            .filter(|m| m.level == Level::Asleep)
            .count() as i64;
        assert_eq!(
            d.sedentary_min + d.light_min + d.moderate_min + d.vigorous_min + asleep,
            1500
        );
    }

    #[test]
    fn devices_max_is_latest_sync() {
        let c = config();
        for i in 1..=10 {
            let p = Profile::new(&c, i);
            let latest = p.latest_sync(c.until, 0);
            let ds = p.devices(latest);
            assert!((1..=3).contains(&ds.len()));
            assert_eq!(ds.iter().map(|d| d.last_sync).max(), Some(latest));
        }
    }
}
