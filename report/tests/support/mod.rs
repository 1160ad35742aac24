//! What the report's tests share: the windows they publish.

use weather_common::aggregate::{Aggregate, WindowKey};
use weather_common::units::{Tenths, Unit};

/// Sensor `s`'s week `id` in °F: CO `100 s + id`, humidity `10 s + id`, so that every number
/// of a row says where it comes from.
pub fn week(s: u64, id: u64, temp_tenths: i64) -> Aggregate {
    Aggregate {
        key: WindowKey { sensor_id: format!("sensor-{s}"), window_days: 7, window_id: id },
        unit: Unit::Fahrenheit,
        avg_temp: Tenths(temp_tenths),
        avg_co: (100 * s + id) as i64,
        avg_humidity: (10 * s + id) as i64,
        readings: 7,
        first_record_id: id * 7 - 6,
        last_record_id: id * 7,
    }
}
