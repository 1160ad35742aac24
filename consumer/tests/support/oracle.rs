//! The spec's formulas, written independently of the consumer's window and unit code: the
//! expected rows computed from the readings in the topic with plain integer arithmetic. The
//! walkthrough checks small runs against it; each crash test checks its uninterrupted
//! reference run against it once, at the crash tests' scale.

use std::collections::BTreeMap;

use serde_json::Value;

/// Groups the readings among `records` (anything that is not a reading is skipped) by sensor
/// and `(record_id - 1) div size + 1`, keeps the complete windows (with `partial`, the
/// incomplete ones too, averaged over the readings they have, as `--emit-partial` writes
/// them), averages, and rounds once with ties to even. Per sensor, the rows
/// `id,avg_temp,avg_co,avg_humidity` in window order.
pub fn windows(
    records: &[testkit::Record],
    size: u64,
    fahrenheit: bool,
    partial: bool,
) -> BTreeMap<String, Vec<String>> {
    // (sensor, window id) -> day -> (temperature tenths, CO, humidity)
    type Days = BTreeMap<u64, (i64, i64, i64)>;
    let mut windows: BTreeMap<(String, u64), Days> = BTreeMap::new();
    for record in records {
        let Some(Ok(v)) = record.value.as_deref().map(serde_json::from_slice::<Value>) else { continue };
        let (Some(sensor), Some(day)) = (v["sensor_id"].as_str(), v["record_id"].as_u64()) else { continue };
        let tenths = (v["temperature"].as_f64().unwrap() * 10.0).round() as i64;
        let (co, humidity) = (v["CO_concentration"].as_i64().unwrap(), v["humidity"].as_i64().unwrap());
        windows.entry((sensor.to_string(), (day - 1) / size + 1)).or_default().insert(day, (tenths, co, humidity));
    }
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((sensor, id), days) in windows {
        if days.len() as u64 != size && !partial {
            continue;
        }
        let n = days.len() as i64;
        let sum = |f: fn(&(i64, i64, i64)) -> i64| days.values().map(f).sum::<i64>();
        let t = if fahrenheit { round(18 * sum(|d| d.0), 10 * n) + 320 } else { round(sum(|d| d.0), n) };
        let temp = format!("{}{}.{}", if t < 0 { "-" } else { "" }, t.abs() / 10, t.abs() % 10);
        rows.entry(sensor).or_default().push(format!(
            "{id},{temp},{},{}",
            round(sum(|d| d.1), n),
            round(sum(|d| d.2), n)
        ));
    }
    rows
}

/// [`windows`] of the crash tests' rules (complete 7-day windows in °F), as the rows of a CSV
/// with a sensor column: `sensor,week,avg_temp,avg_co,avg_humidity`, by sensor and week.
pub fn weekly_fahrenheit_rows(records: &[testkit::Record]) -> Vec<String> {
    windows(records, 7, true, false)
        .into_iter()
        .flat_map(|(sensor, rows)| rows.into_iter().map(move |row| format!("{sensor},{row}")))
        .collect()
}

/// `num / den` rounded half to even, by truncating division and comparing the remainder.
fn round(num: i64, den: i64) -> i64 {
    let (q, r) = (num / den, num % den);
    let away = if num < 0 { -1 } else { 1 };
    match (2 * r.abs()).cmp(&den) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + away,
        std::cmp::Ordering::Equal if q % 2 == 0 => q,
        std::cmp::Ordering::Equal => q + away,
    }
}

/// Fails unless `reference` (an uninterrupted run's `sensor,week,...` rows, by sensor and
/// week) is what the spec's formulas give for the crash tests' rules on `records`: a crash
/// test compares its crashed runs with that reference, so the reference must be right itself.
/// Names the first row that differs rather than printing 14,000.
pub fn assert_reference_is_the_spec(reference: &[String], records: &[testkit::Record]) {
    let spec = weekly_fahrenheit_rows(records);
    if let Some(i) = (0..reference.len().min(spec.len())).find(|&i| reference[i] != spec[i]) {
        panic!("the uninterrupted run's row {} is {:?}; the spec's formulas give {:?}", i + 1, reference[i], spec[i]);
    }
    assert_eq!(reference.len(), spec.len(), "rows of the uninterrupted run and of the spec's formulas");
}
