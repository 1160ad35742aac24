//! Units and exact rounding: how an average is written, in every output (the consumer's
//! files, the aggregates topic, the report).
//!
//! Sums are kept exactly (temperatures in tenths of °C, CO and humidity as integers) and each
//! average is rounded once, ties to even, as Python's `round` does on exact values. Fahrenheit
//! is computed from the exact Celsius mean, so no float noise such as `68.60000000000001`
//! can reach a file.

use std::fmt;

/// The unit temperatures are written in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Celsius,
    Fahrenheit,
}

impl Unit {
    /// The mean of `count` temperatures summing to `sum_celsius_tenths`, in tenths of this unit:
    /// F = C x 1.8 + 32, rounded once.
    pub fn mean_tenths(self, sum_celsius_tenths: i64, count: u32) -> i64 {
        let count = i64::from(count);
        match self {
            Unit::Celsius => div_round_half_even(sum_celsius_tenths, count),
            // C x 1.8 in tenths is sum x 18 / (10 x count); +32 °F is +320 tenths, an integer,
            // so adding it after rounding is exact.
            Unit::Fahrenheit => div_round_half_even(9 * sum_celsius_tenths, 5 * count) + 320,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Unit::Celsius => "celsius",
            Unit::Fahrenheit => "fahrenheit",
        }
    }

    /// As people write it after a number: `°C`, `°F`.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Celsius => "°C",
            Unit::Fahrenheit => "°F",
        }
    }
}

/// `num / den` rounded to the nearest integer, exact ties to the even neighbour. A window's
/// sums are bounded (a window has at most a few thousand readings of bounded values), far
/// from overflowing an `i64`.
pub fn div_round_half_even(num: i64, den: i64) -> i64 {
    assert!(den > 0, "a mean over no readings");
    let (floor, rest) = (num.div_euclid(den), num.rem_euclid(den));
    match (2 * rest).cmp(&den) {
        std::cmp::Ordering::Less => floor,
        std::cmp::Ordering::Greater => floor + 1,
        std::cmp::Ordering::Equal => floor + (floor & 1),
    }
}

/// A value in tenths, written with exactly one decimal: `-0.5`, `0.0`, `68.6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenths(pub i64);

impl Tenths {
    /// Appends the value as [`Display`](fmt::Display) writes it, without the formatting
    /// machinery (a replay writes a row per window, and this was most of a row's cost).
    pub fn write_to(self, out: &mut Vec<u8>) {
        if self.0 < 0 {
            out.push(b'-');
        }
        let abs = self.0.unsigned_abs();
        out.extend_from_slice(itoa::Buffer::new().format(abs / 10).as_bytes());
        out.extend_from_slice(&[b'.', b'0' + (abs % 10) as u8]);
    }
}

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Vec::with_capacity(24);
        self.write_to(&mut text);
        f.write_str(std::str::from_utf8(&text).expect("digits, a sign and a point"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact ties go to the even neighbour, like Python's round(2.5) == 2, on both signs.
    #[test]
    fn ties_round_to_even() {
        let cases = [(5, 2, 2), (7, 2, 4), (-5, 2, -2), (-7, 2, -4), (1, 2, 0), (-1, 2, 0), (3, 2, 2)];
        for (num, den, expected) in cases {
            assert_eq!(div_round_half_even(num, den), expected, "{num}/{den}");
        }
    }

    /// Anything but an exact tie rounds to the nearest, on both signs.
    #[test]
    fn non_ties_round_to_nearest() {
        let cases = [(7, 3, 2), (8, 3, 3), (-7, 3, -2), (-8, 3, -3), (10, 5, 2), (0, 7, 0), (1001, 1000, 1)];
        for (num, den, expected) in cases {
            assert_eq!(div_round_half_even(num, den), expected, "{num}/{den}");
        }
    }

    /// Celsius means are the exact mean of the tenths, rounded once.
    #[test]
    fn celsius_mean() {
        // 20.1 + 20.2 = 40.3 / 2 = 20.15: a tie at the hundredth, to even -> 20.2
        assert_eq!(Unit::Celsius.mean_tenths(201 + 202, 2), 202);
        // 20.2 + 20.3 = 20.25 -> 20.2
        assert_eq!(Unit::Celsius.mean_tenths(202 + 203, 2), 202);
        // -0.1 + 0.0 = -0.05 -> -0.0, written 0.0
        assert_eq!(Unit::Celsius.mean_tenths(-1, 2), 0);
        assert_eq!(Unit::Celsius.mean_tenths(-100 * 30, 30), -100);
    }

    /// Fahrenheit is C x 1.8 + 32 from the exact mean, rounded once (the walkthrough's
    /// defect wrote 68.60000000000001 for 20.333.. °C).
    #[test]
    fn fahrenheit_from_the_exact_mean() {
        assert_eq!(Unit::Fahrenheit.mean_tenths(200, 1), 680);
        assert_eq!(Unit::Fahrenheit.mean_tenths(-100, 1), 140);
        assert_eq!(Unit::Fahrenheit.mean_tenths(350, 1), 950);
        // mean 20.333.. °C -> 68.6 °F
        assert_eq!(Unit::Fahrenheit.mean_tenths(203 + 203 + 204, 3), 686);
        // mean 0.25 °C -> 32.45 °F exactly, a tie -> 32.4
        assert_eq!(Unit::Fahrenheit.mean_tenths(2 + 3, 2), 324);
        // mean 0.75 °C -> 33.35 °F, a tie -> 33.4
        assert_eq!(Unit::Fahrenheit.mean_tenths(7 + 8, 2), 334);
        // -17.8 °C -> -0.04 °F -> 0.0
        assert_eq!(Unit::Fahrenheit.mean_tenths(-178, 1), 0);
    }

    /// Tenths print with exactly one decimal and a sign only when negative.
    #[test]
    fn tenths_display() {
        let shown: Vec<String> = [-100, -5, 0, 5, 686, 950].map(|t| Tenths(t).to_string()).into();
        assert_eq!(shown, ["-10.0", "-0.5", "0.0", "0.5", "68.6", "95.0"]);
    }
}
