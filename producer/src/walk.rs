//! The sensor's bounded random walk: pure, seeded, no I/O and no clock.
//!
//! Each reading depends on the previous one exactly as the walkthrough's table says. A walk
//! can resume from any reading, so a restarted sensor continues where the topic left it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weather_common::reading::{CO_CONCENTRATION, HUMIDITY, TEMPERATURE_TENTHS};
use weather_common::Reading;

const TEMPERATURE_STEP: f64 = 5.0;
const HUMIDITY_STEP: i64 = 20;
const CO_STEP: i64 = 100;

/// One sensor's walk.
#[derive(Debug, Clone)]
pub struct Walk {
    sensor_id: String,
    rng: StdRng,
    last: Option<Step>,
}

/// Where the walk stands: the values of its last reading.
#[derive(Debug, Clone, Copy)]
struct Step {
    record_id: u64,
    temperature_tenths: i32,
    co_concentration: u32,
    humidity: u32,
}

impl Walk {
    /// A fresh walk starting at `record_id` 1.
    pub fn new(sensor_id: impl Into<String>, seed: u64) -> Self {
        Walk::resume(sensor_id, seed, None)
    }

    /// Continues after `last` (the newest reading of this sensor in the topic), or starts
    /// afresh if there is none. The random stream depends on the seed and the resume point,
    /// so the same seed gives the same readings for the same history.
    pub fn resume(sensor_id: impl Into<String>, seed: u64, last: Option<Reading<'static>>) -> Self {
        let sensor_id = sensor_id.into();
        let resume_at = last.as_ref().map_or(0, |r| r.record_id);
        let rng = StdRng::seed_from_u64(mix(mix(seed ^ fnv1a(sensor_id.as_bytes())) ^ resume_at));
        let last = last.map(|r| Step {
            record_id: r.record_id,
            temperature_tenths: r.temperature_tenths,
            co_concentration: r.co_concentration,
            humidity: r.humidity,
        });
        Walk { sensor_id, rng, last }
    }

    pub fn sensor_id(&self) -> &str {
        &self.sensor_id
    }

    /// The next reading of the walk.
    pub fn next_reading(&mut self) -> Reading<'_> {
        let rng = &mut self.rng;
        let step = match self.last {
            None => Step {
                record_id: 1,
                temperature_tenths: to_tenths(
                    rng.random_range(tenths_to_f64(TEMPERATURE_TENTHS.0)..=tenths_to_f64(TEMPERATURE_TENTHS.1)),
                ),
                co_concentration: rng.random_range(CO_CONCENTRATION.0..=CO_CONCENTRATION.1),
                humidity: rng.random_range(HUMIDITY.0..=HUMIDITY.1),
            },
            Some(prev) => {
                let (low, high) = (tenths_to_f64(TEMPERATURE_TENTHS.0), tenths_to_f64(TEMPERATURE_TENTHS.1));
                let t = tenths_to_f64(prev.temperature_tenths);
                let temperature = rng.random_range(t - TEMPERATURE_STEP..=t + TEMPERATURE_STEP).clamp(low, high);
                Step {
                    record_id: prev.record_id + 1,
                    temperature_tenths: to_tenths(temperature),
                    co_concentration: step(rng, prev.co_concentration, CO_STEP, CO_CONCENTRATION),
                    humidity: step(rng, prev.humidity, HUMIDITY_STEP, HUMIDITY),
                }
            }
        };
        self.last = Some(step);
        Reading {
            sensor_id: self.sensor_id.as_str().into(),
            record_id: step.record_id,
            temperature_tenths: step.temperature_tenths,
            co_concentration: step.co_concentration,
            humidity: step.humidity,
        }
    }
}

/// Uniform integer in [prev - step, prev + step], clipped to the bounds.
fn step(rng: &mut StdRng, prev: u32, step: i64, (low, high): (u32, u32)) -> u32 {
    let prev = i64::from(prev);
    rng.random_range(prev - step..=prev + step).clamp(i64::from(low), i64::from(high)) as u32
}

fn tenths_to_f64(tenths: i32) -> f64 {
    f64::from(tenths) / 10.0
}

/// Rounds a temperature to one decimal, as tenths.
fn to_tenths(celsius: f64) -> i32 {
    (celsius * 10.0).round() as i32
}

/// SplitMix64's finaliser: spreads nearby seeds far apart.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable hash of the sensor id (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(walk: &mut Walk, n: usize) -> Vec<Reading<'static>> {
        (0..n).map(|_| walk.next_reading().into_owned()).collect()
    }

    /// Every value stays inside the sensor's bounds, over many seeds and long walks.
    #[test]
    fn values_stay_within_bounds() {
        for seed in 0..20 {
            for r in readings(&mut Walk::new("s", seed), 5_000) {
                assert!((-100..=350).contains(&r.temperature_tenths), "{r}");
                assert!((1..=100).contains(&r.humidity), "{r}");
                assert!((50..=1500).contains(&r.co_concentration), "{r}");
            }
        }
    }

    /// Each step moves at most ±5 °C, ±20 % and ±100 ppm, and record ids count up from 1.
    #[test]
    fn steps_are_bounded_and_record_ids_consecutive() {
        let walk = readings(&mut Walk::new("s", 7), 10_000);
        assert_eq!(walk[0].record_id, 1);
        for pair in walk.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert_eq!(b.record_id, a.record_id + 1);
            assert!((b.temperature_tenths - a.temperature_tenths).abs() <= 50, "{a} -> {b}");
            assert!((i64::from(b.humidity) - i64::from(a.humidity)).abs() <= 20, "{a} -> {b}");
            assert!((i64::from(b.co_concentration) - i64::from(a.co_concentration)).abs() <= 100, "{a} -> {b}");
        }
    }

    /// The walk really moves across its whole range, and sometimes sits on the bounds
    /// (clipping), rather than being stuck or biased to one value.
    #[test]
    fn walk_explores_its_range_and_clips() {
        let walk = readings(&mut Walk::new("s", 3), 20_000);
        let temps: Vec<i32> = walk.iter().map(|r| r.temperature_tenths).collect();
        assert_eq!(temps.iter().min(), Some(&-100));
        assert_eq!(temps.iter().max(), Some(&350));
        assert!(walk.iter().any(|r| r.humidity == 1) && walk.iter().any(|r| r.humidity == 100));
        assert!(walk.iter().any(|r| r.co_concentration == 50) && walk.iter().any(|r| r.co_concentration == 1500));
    }

    /// The same seed gives the same readings; another seed or sensor gives others.
    #[test]
    fn same_seed_same_readings() {
        assert_eq!(readings(&mut Walk::new("s", 42), 100), readings(&mut Walk::new("s", 42), 100));
        assert_ne!(readings(&mut Walk::new("s", 42), 100), readings(&mut Walk::new("s", 43), 100));
        assert_ne!(readings(&mut Walk::new("a", 42), 100), readings(&mut Walk::new("b", 42), 100));
    }

    /// A resumed walk continues from the last reading: the next record id, a bounded step
    /// from the last values, and deterministically so.
    #[test]
    fn resume_continues_from_the_last_reading() {
        let first = readings(&mut Walk::new("s", 5), 40);
        let last = first.last().cloned().unwrap();
        let next = Walk::resume("s", 5, Some(last.clone())).next_reading().into_owned();
        assert_eq!(next.record_id, 41);
        assert!((next.temperature_tenths - last.temperature_tenths).abs() <= 50);
        assert!((i64::from(next.humidity) - i64::from(last.humidity)).abs() <= 20);
        assert_eq!(next, Walk::resume("s", 5, Some(last)).next_reading().into_owned());
    }
}
