//! Spend anomalies, apart from any store: a robust detector over one daily
//! series (a subscription × service's usage cost), the incidents it makes
//! of consecutive anomalous days, and "new usage" (cost in a region or on a
//! service a subscription never had cost in before).
//!
//! The expected cost of a day is the median of the same weekday over the
//! four weeks before it (weekly rhythm, robust to one odd week); a day is
//! anomalous when its residual is far out in units of the robust spread
//! (1.4826 × MAD, the normal's σ) of the residuals of the 56 days before
//! it, and large in money and in share of the expected cost, so a noisy
//! cheap series never pages anyone.

use chrono::{Duration, NaiveDate};

use crate::names::names;

names! {
    /// What an incident is.
    pub enum IncidentKind("incident kind") {
        /// Consecutive days whose cost left the expected range.
        Anomaly = "anomaly",
        /// The first cost on a service the subscription never used before.
        NewService = "new_service",
        /// The first cost in a region the subscription never used before.
        NewRegion = "new_region",
    }
}

names! {
    /// What explains part of an incident.
    pub enum ContributorKind("contributor kind") {
        Resource = "resource",
        Meter = "meter",
    }
}

names! {
    /// Which way an anomaly went.
    pub enum Direction("direction") {
        Up = "up",
        Down = "down",
    }
}

names! {
    /// The periods top movers compare: the last 7 or 30 days to a day,
    /// against as many days before.
    pub enum MoverPeriod("mover period") {
        Week = "week",
        Month = "month",
    }
}

impl MoverPeriod {
    pub fn days(self) -> i64 {
        match self {
            MoverPeriod::Week => 7,
            MoverPeriod::Month => 30,
        }
    }
}

names! {
    /// What top movers are grouped by.
    pub enum MoverDimension("movers grouping") {
        Service = "service",
        ResourceGroup = "resource_group",
        Resource = "resource",
    }
}

impl MoverDimension {
    pub fn dimension(self) -> crate::spend::SpendDimension {
        use crate::spend::SpendDimension;
        match self {
            MoverDimension::Service => SpendDimension::Service,
            MoverDimension::ResourceGroup => SpendDimension::ResourceGroup,
            MoverDimension::Resource => SpendDimension::Resource,
        }
    }
}

/// The detector's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalySettings {
    /// |z| at or above this is anomalous.
    pub z: f64,
    /// The least |Δ| in the billing currency that counts.
    pub min_delta: f64,
    /// The least |Δ| as a share of the expected cost that counts.
    pub min_share: f64,
    /// Days of history a day needs before it can be judged.
    pub min_history: usize,
    /// Days of residuals the spread is measured over.
    pub window: usize,
    /// The spread is at least this share of the expected cost (a flat
    /// series would otherwise make every cent an anomaly).
    pub scale_floor: f64,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        AnomalySettings {
            z: 3.5,
            min_delta: 5.0,
            min_share: 0.2,
            min_history: 42,
            window: 56,
            scale_floor: 0.02,
        }
    }
}

/// 1.4826 × MAD estimates σ for normal noise.
const MAD_TO_SIGMA: f64 = 1.4826;

/// What the detector concluded of one day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayVerdict {
    pub day: NaiveDate,
    pub actual: f64,
    pub expected: f64,
    pub scale: f64,
    pub z: f64,
    pub anomalous: bool,
}

/// A run of consecutive anomalous days of one series (one direction).
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub direction: Direction,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// Sums over the episode's days.
    pub expected: f64,
    pub actual: f64,
    /// The largest |z| of its days, with its sign.
    pub max_z: f64,
    /// Whether a later day is judged and back in range: the episode is over.
    pub ended: bool,
}

impl Episode {
    pub fn delta(&self) -> f64 {
        self.actual - self.expected
    }
}

/// The median of some numbers (the mean of the middle two when even);
/// `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The expected value at index `i` of a dense daily series: the median of
/// the same weekday over the 4 weeks before; `None` before 4 weeks.
pub fn expected_at(values: &[f64], i: usize) -> Option<f64> {
    if i < 28 || i >= values.len() {
        return None;
    }
    median(&[
        values[i - 7],
        values[i - 14],
        values[i - 21],
        values[i - 28],
    ])
}

/// Judges every day of a dense daily series (one value per day from
/// `start`, zero where there was no cost) that has enough history.
pub fn judge(start: NaiveDate, values: &[f64], s: &AnomalySettings) -> Vec<DayVerdict> {
    let residuals: Vec<Option<f64>> = (0..values.len())
        .map(|i| expected_at(values, i).map(|e| values[i] - e))
        .collect();
    let first = s.min_history.max(28);
    let mut out = Vec::new();
    for i in first..values.len() {
        let Some(expected) = expected_at(values, i) else {
            continue;
        };
        let window: Vec<f64> = residuals[i.saturating_sub(s.window)..i]
            .iter()
            .flatten()
            .copied()
            .collect();
        let mad = median(&window)
            .and_then(|m| median(&window.iter().map(|r| (r - m).abs()).collect::<Vec<_>>()))
            .unwrap_or(0.0);
        // A tiny positive floor keeps z finite on an all-zero series; the
        // money threshold below decides those.
        let scale = (MAD_TO_SIGMA * mad)
            .max(s.scale_floor * expected.abs())
            .max(1e-9);
        let actual = values[i];
        let delta = actual - expected;
        let z = delta / scale;
        let anomalous =
            z.abs() >= s.z && delta.abs() >= s.min_delta.max(s.min_share * expected.abs());
        out.push(DayVerdict {
            day: start + Duration::days(i as i64),
            actual,
            expected,
            scale,
            z,
            anomalous,
        });
    }
    out
}

/// Consecutive anomalous days of one direction, as episodes.
pub fn episodes(verdicts: &[DayVerdict]) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    let mut open = false;
    for v in verdicts {
        if !v.anomalous {
            if open {
                if let Some(e) = out.last_mut() {
                    e.ended = true;
                }
            }
            open = false;
            continue;
        }
        let direction = if v.z >= 0.0 {
            Direction::Up
        } else {
            Direction::Down
        };
        let extends = open
            && out.last().is_some_and(|e| {
                e.direction == direction && e.last_day + Duration::days(1) == v.day
            });
        if extends {
            if let Some(e) = out.last_mut() {
                e.last_day = v.day;
                e.expected += v.expected;
                e.actual += v.actual;
                if v.z.abs() > e.max_z.abs() {
                    e.max_z = v.z;
                }
            }
        } else {
            if open {
                if let Some(e) = out.last_mut() {
                    e.ended = true;
                }
            }
            out.push(Episode {
                direction,
                first_day: v.day,
                last_day: v.day,
                expected: v.expected,
                actual: v.actual,
                max_z: v.z,
                ended: false,
            });
        }
        open = true;
    }
    out
}

/// The episodes of a dense daily series.
pub fn detect(start: NaiveDate, values: &[f64], s: &AnomalySettings) -> Vec<Episode> {
    episodes(&judge(start, values, s))
}

/// Whether a first day of cost (on a service or in a region) is new usage:
/// the subscription had cost for at least `min_history` days before it.
pub fn is_new_usage(
    subscription_first_day: NaiveDate,
    first_day: NaiveDate,
    s: &AnomalySettings,
) -> bool {
    (first_day - subscription_first_day).num_days() >= s.min_history as i64
}

/// A contributor's change over an incident's days: its actual cost on those
/// days less, for each day, the median of its same weekday over the 4
/// weeks before. `series` is dense from `start`.
pub fn contribution(
    start: NaiveDate,
    series: &[f64],
    first_day: NaiveDate,
    last_day: NaiveDate,
) -> (f64, f64) {
    let (mut expected, mut actual) = (0.0, 0.0);
    let mut d = first_day;
    while d <= last_day {
        let i = (d - start).num_days();
        if i >= 0 && (i as usize) < series.len() {
            let i = i as usize;
            actual += series[i];
            expected += if i >= 28 {
                expected_at(series, i).unwrap_or(0.0)
            } else {
                // Not 4 weeks of it: the same weekdays it has.
                let prior: Vec<f64> = (1..=4)
                    .filter_map(|w| i.checked_sub(7 * w))
                    .map(|j| series[j])
                    .collect();
                median(&prior).unwrap_or(0.0)
            };
        }
        d += Duration::days(1);
    }
    (expected, actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day0() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 5).expect("date")
    }

    /// A weekly series with ±`noise` of deterministic wobble.
    fn series(days: usize, base: f64, noise: f64) -> Vec<f64> {
        (0..days)
            .map(|i| {
                let weekend = matches!(i % 7, 5 | 6);
                let w = ((i * 7919 % 101) as f64 / 100.0 - 0.5) * 2.0 * noise;
                base * if weekend { 0.6 } else { 1.0 } * (1.0 + w)
            })
            .collect()
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn a_quiet_series_has_no_episode() {
        let v = series(120, 100.0, 0.1);
        assert!(detect(day0(), &v, &AnomalySettings::default()).is_empty());
    }

    #[test]
    fn a_spike_is_one_incident_with_its_days_and_it_ends() {
        let mut v = series(120, 100.0, 0.1);
        for x in &mut v[100..103] {
            *x *= 5.0;
        }
        let e = detect(day0(), &v, &AnomalySettings::default());
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].direction, Direction::Up);
        assert_eq!(e[0].first_day, day0() + Duration::days(100));
        assert_eq!(e[0].last_day, day0() + Duration::days(102));
        assert!(e[0].ended);
        assert!(e[0].delta() > 500.0 && e[0].max_z > 3.5);
    }

    #[test]
    fn an_ongoing_spike_has_not_ended_and_a_drop_is_down() {
        let mut v = series(120, 100.0, 0.1);
        for x in &mut v[117..] {
            *x *= 4.0;
        }
        let e = detect(day0(), &v, &AnomalySettings::default());
        assert_eq!(e.len(), 1);
        assert!(!e[0].ended);
        let mut v = series(120, 100.0, 0.1);
        v[110] = 0.0;
        let e = detect(day0(), &v, &AnomalySettings::default());
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].direction, Direction::Down);
    }

    #[test]
    fn small_money_and_short_history_are_not_anomalies() {
        // 10× of a cent a day: under the absolute floor.
        let mut v = series(120, 0.01, 0.1);
        v[100] *= 10.0;
        assert!(detect(day0(), &v, &AnomalySettings::default()).is_empty());
        // A spike before 42 days of history is not judged.
        let mut v = series(120, 100.0, 0.1);
        v[35] *= 8.0;
        assert!(detect(day0(), &v, &AnomalySettings::default()).is_empty());
        // Under 20% of expected, however regular the series.
        let mut v = vec![1000.0; 120];
        v[100] = 1150.0;
        assert!(detect(day0(), &v, &AnomalySettings::default()).is_empty());
        v[100] = 1300.0;
        assert_eq!(detect(day0(), &v, &AnomalySettings::default()).len(), 1);
    }

    #[test]
    fn contributions_against_the_same_weekdays() {
        let mut v = vec![10.0; 60];
        v[50] = 40.0;
        v[51] = 30.0;
        let d = |i| day0() + Duration::days(i);
        assert_eq!(contribution(day0(), &v, d(50), d(51)), (20.0, 70.0));
    }

    #[test]
    fn new_usage_needs_history() {
        let s = AnomalySettings::default();
        assert!(!is_new_usage(day0(), day0() + Duration::days(10), &s));
        assert!(is_new_usage(day0(), day0() + Duration::days(42), &s));
    }
}
