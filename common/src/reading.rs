//! The reading: what one message on the `weather` topic carries, and its JSON form.
//!
//! This is the wire contract between the sensor and the consumer. Parsing borrows from the
//! Kafka payload and validates everything the sensor promises (types, bounds, resolution), so
//! a bad message is diagnosed once, here, with a category the consumer can count.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::units::Tenths;

/// Temperature bounds of the sensor, in tenths of a degree Celsius.
pub const TEMPERATURE_TENTHS: (i32, i32) = (-100, 350);
/// Humidity bounds of the sensor, in percent.
pub const HUMIDITY: (u32, u32) = (1, 100);
/// CO concentration bounds of the sensor, in ppm.
pub const CO_CONCENTRATION: (u32, u32) = (50, 1500);
/// A reading is about 100 bytes; anything far larger is not one.
pub const MAX_READING_BYTES: usize = 64 * 1024;
/// The sensor id used when a message carries neither a `sensor_id` field nor a key, as the
/// walkthrough's original sensor did.
pub const DEFAULT_SENSOR_ID: &str = "sensor-1";
const MAX_SENSOR_ID_LEN: usize = 64;

/// One reading of one sensor for one simulated day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading<'a> {
    pub sensor_id: Cow<'a, str>,
    /// The simulated day, from 1: it places the reading in its window.
    pub record_id: u64,
    /// Tenths of a degree Celsius, so that sums are exact.
    pub temperature_tenths: i32,
    pub co_concentration: u32,
    pub humidity: u32,
}

/// The JSON object on the wire, field names as in the walkthrough.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    sensor_id: Option<Cow<'a, str>>,
    record_id: i64,
    temperature: f64,
    #[serde(rename = "CO_concentration")]
    co_concentration: i64,
    humidity: i64,
}

/// The JSON fields every reading must carry, with the JSON type each must have.
const REQUIRED_FIELDS: [(&str, &str); 4] = [
    ("record_id", "an integer"),
    ("temperature", "a number"),
    ("CO_concentration", "an integer"),
    ("humidity", "an integer"),
];

/// Why a message is not a reading. Each variant is one category in the consumer's counts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadReading {
    #[error("empty or null value")]
    Empty,
    #[error("value of {bytes} bytes is larger than the {MAX_READING_BYTES} bytes a reading can be")]
    Oversized { bytes: usize },
    #[error("value is not UTF-8")]
    NotUtf8,
    #[error("value is not JSON: {0}")]
    NotJson(String),
    #[error("value is JSON but not an object")]
    NotAnObject,
    #[error("field `{0}` is missing")]
    MissingField(&'static str),
    #[error("field `{field}` should be {expected}")]
    WrongType { field: &'static str, expected: &'static str },
    #[error("field `{field}` is {value}, outside {expected}")]
    OutOfBounds { field: &'static str, value: String, expected: &'static str },
    #[error("sensor id {0:?} is not 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    InvalidSensorId(String),
}

impl BadReading {
    /// A short, stable name for counting and for the dead-letter header.
    pub fn category(&self) -> &'static str {
        match self {
            BadReading::Empty => "empty",
            BadReading::Oversized { .. } => "oversized",
            BadReading::NotUtf8 => "not-utf8",
            BadReading::NotJson(_) | BadReading::NotAnObject => "not-json",
            BadReading::MissingField(_) => "missing-field",
            BadReading::WrongType { .. } => "wrong-type",
            BadReading::OutOfBounds { .. } => "out-of-bounds",
            BadReading::InvalidSensorId(_) => "invalid-sensor-id",
        }
    }
}

impl<'a> Reading<'a> {
    /// Parses a Kafka message value. The sensor id is the `sensor_id` field, else the message
    /// key, else [`DEFAULT_SENSOR_ID`].
    pub fn parse(value: Option<&'a [u8]>, key: Option<&'a [u8]>) -> Result<Self, BadReading> {
        match value.and_then(canonical) {
            Some(reading) => Ok(reading),
            None => Self::parse_json(value, key),
        }
    }

    /// [`Reading::parse`] without the fast path: any JSON, and a precise reason for a refusal.
    fn parse_json(value: Option<&'a [u8]>, key: Option<&'a [u8]>) -> Result<Self, BadReading> {
        let value = match value {
            None | Some([]) => return Err(BadReading::Empty),
            Some(v) if v.len() > MAX_READING_BYTES => return Err(BadReading::Oversized { bytes: v.len() }),
            Some(v) => v,
        };
        let wire: Wire = serde_json::from_slice(value).map_err(|e| diagnose(value, e))?;
        let sensor_id = match wire.sensor_id {
            Some(id) => id,
            None => match key.map(std::str::from_utf8) {
                Some(Ok(k)) if !k.is_empty() => Cow::Borrowed(k),
                _ => Cow::Borrowed(DEFAULT_SENSOR_ID),
            },
        };
        if !is_valid_sensor_id(&sensor_id) {
            return Err(BadReading::InvalidSensorId(sensor_id.into_owned()));
        }
        let record_id = u64::try_from(wire.record_id)
            .ok()
            .filter(|&id| id >= 1)
            .ok_or_else(|| out_of_bounds("record_id", wire.record_id, "1 and above"))?;
        Ok(Reading {
            sensor_id,
            record_id,
            temperature_tenths: temperature_tenths(wire.temperature)?,
            co_concentration: within("CO_concentration", wire.co_concentration, CO_CONCENTRATION, "50..=1500 ppm")?,
            humidity: within("humidity", wire.humidity, HUMIDITY, "1..=100 %")?,
        })
    }

    /// The message value: one JSON object with the walkthrough's field names plus `sensor_id`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.write_json(&mut out);
        out
    }

    /// [`Reading::to_json`] into a buffer the caller reuses. Written directly, byte for byte
    /// what serde_json writes for the same fields (a test compares them), because the sensor
    /// spends a fifth of its time here otherwise; an id that would need escaping goes through
    /// serde_json.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        if !is_valid_sensor_id(&self.sensor_id) {
            return self.write_json_with_serde(out);
        }
        let mut number = itoa::Buffer::new();
        out.extend_from_slice(br#"{"sensor_id":""#);
        out.extend_from_slice(self.sensor_id.as_bytes());
        out.extend_from_slice(br#"","record_id":"#);
        out.extend_from_slice(number.format(self.record_id).as_bytes());
        out.extend_from_slice(br#","temperature":"#);
        Tenths(i64::from(self.temperature_tenths)).write_to(out);
        out.extend_from_slice(br#","CO_concentration":"#);
        out.extend_from_slice(number.format(self.co_concentration).as_bytes());
        out.extend_from_slice(br#","humidity":"#);
        out.extend_from_slice(number.format(self.humidity).as_bytes());
        out.push(b'}');
    }

    fn write_json_with_serde(&self, out: &mut Vec<u8>) {
        let wire = Wire {
            sensor_id: Some(Cow::Borrowed(&self.sensor_id)),
            record_id: self.record_id as i64,
            temperature: f64::from(self.temperature_tenths) / 10.0,
            co_concentration: i64::from(self.co_concentration),
            humidity: i64::from(self.humidity),
        };
        serde_json::to_writer(out, &wire).expect("a reading always serializes into memory")
    }

    pub fn into_owned(self) -> Reading<'static> {
        Reading { sensor_id: Cow::Owned(self.sensor_id.into_owned()), ..self }
    }
}

impl fmt::Display for Reading<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_json()))
    }
}

/// Sensor ids become the first column of the output files, so they stay plain.
pub fn is_valid_sensor_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_SENSOR_ID_LEN && id.bytes().all(|b| SENSOR_ID_BYTES[usize::from(b)])
}

const fn is_sensor_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// [`is_sensor_id_byte`] by table: the fast paths look up every byte of every id.
const SENSOR_ID_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_sensor_id_byte(b as u8);
        b += 1;
    }
    table
};

/// A valid sensor id at the start of `rest`, up to its first byte that cannot be in one:
/// `rest` moves past it.
pub(crate) fn sensor_id<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    let len = rest.iter().position(|&b| !SENSOR_ID_BYTES[usize::from(b)])?;
    if len == 0 || len > MAX_SENSOR_ID_LEN {
        return None;
    }
    let (id, after) = rest.split_at(len);
    *rest = after;
    // SAFETY: every byte of `id` is an ASCII letter, digit, `.`, `_` or `-` (the table), so it
    // is UTF-8. Checking it again costs the replay a twentieth of its own work per reading.
    Some(unsafe { std::str::from_utf8_unchecked(id) })
}

fn temperature_tenths(celsius: f64) -> Result<i32, BadReading> {
    const EXPECTED: &str = "-10..=35 °C in steps of 0.1";
    let tenths = (celsius * 10.0).round();
    let (low, high) = TEMPERATURE_TENTHS;
    if (celsius * 10.0 - tenths).abs() > 1e-6 || tenths < f64::from(low) || tenths > f64::from(high) {
        return Err(out_of_bounds("temperature", celsius, EXPECTED));
    }
    Ok(tenths as i32)
}

fn within(field: &'static str, value: i64, (low, high): (u32, u32), expected: &'static str) -> Result<u32, BadReading> {
    match u32::try_from(value) {
        Ok(v) if (low..=high).contains(&v) => Ok(v),
        _ => Err(out_of_bounds(field, value, expected)),
    }
}

fn out_of_bounds(field: &'static str, value: impl fmt::Display, expected: &'static str) -> BadReading {
    BadReading::OutOfBounds { field, value: value.to_string(), expected }
}

/// The fast path, for exactly the bytes the sensor writes ([`Reading::write_json`]) when they
/// hold a valid reading: the five fields in that order, no whitespace, no escapes, plain
/// decimal numbers, a temperature with at most one decimal, every value within its bounds.
/// Anything else is `None` and goes to serde_json, which accepts or diagnoses it. Parsing is
/// the largest part of a replay's own work per reading, and nearly every message takes this
/// path.
fn canonical(value: &[u8]) -> Option<Reading<'_>> {
    let mut rest = value.strip_prefix(br#"{"sensor_id":""#)?;
    let sensor_id = sensor_id(&mut rest)?;
    rest = rest.strip_prefix(br#"","record_id":"#)?;
    let record_id = integer(&mut rest).filter(|&id| id >= 1)?;
    rest = rest.strip_prefix(br#","temperature":"#)?;
    let temperature_tenths = tenths(&mut rest)?;
    rest = rest.strip_prefix(br#","CO_concentration":"#)?;
    let co_concentration = bounded(&mut rest, CO_CONCENTRATION)?;
    rest = rest.strip_prefix(br#","humidity":"#)?;
    let humidity = bounded(&mut rest, HUMIDITY)?;
    (rest == b"}").then_some(Reading {
        sensor_id: Cow::Borrowed(sensor_id),
        record_id,
        temperature_tenths,
        co_concentration,
        humidity,
    })
}

/// A non-negative JSON integer at the start of `rest`, as JSON writes it: no leading zero, at
/// most 18 digits.
pub(crate) fn integer(rest: &mut &[u8]) -> Option<u64> {
    let (mut n, mut len) = (0u64, 0);
    // Past 18 digits `n` wraps, and the number is refused below.
    while let Some(digit) = rest.get(len).map(|b| b.wrapping_sub(b'0')).filter(|&d| d <= 9) {
        n = n.wrapping_mul(10).wrapping_add(u64::from(digit));
        len += 1;
    }
    if len == 0 || len > 18 || (len > 1 && rest[0] == b'0') {
        return None;
    }
    *rest = &rest[len..];
    Some(n)
}

/// An integer at the start of `rest` within `low..=high`.
fn bounded(rest: &mut &[u8], (low, high): (u32, u32)) -> Option<u32> {
    integer(rest).and_then(|n| u32::try_from(n).ok()).filter(|n| (low..=high).contains(n))
}

/// A temperature at the start of `rest` as the sensor writes it, in tenths and within the
/// sensor's bounds.
fn tenths(rest: &mut &[u8]) -> Option<i32> {
    let (negative, magnitude) = signed_tenths(rest)?;
    let magnitude = i32::try_from(magnitude).ok()?;
    let tenths = if negative { -magnitude } else { magnitude };
    (TEMPERATURE_TENTHS.0..=TEMPERATURE_TENTHS.1).contains(&tenths).then_some(tenths)
}

/// A number at the start of `rest` with at most one decimal (an optional `-`, digits as
/// [`integer`] reads them, and an optional `.` with one digit): whether it is negative, and its
/// magnitude in tenths.
pub(crate) fn signed_tenths(rest: &mut &[u8]) -> Option<(bool, u64)> {
    let negative = rest.first() == Some(&b'-');
    if negative {
        *rest = &rest[1..];
    }
    let whole = integer(rest)?;
    let tenth = match *rest {
        [b'.', d, after @ ..] if d.is_ascii_digit() => {
            *rest = after;
            u64::from(d - b'0')
        }
        [b'.', ..] => return None,
        _ => 0,
    };
    Some((negative, whole.checked_mul(10)?.checked_add(tenth)?))
}

/// The slow path, taken only for a message the typed parse refused: says precisely why.
fn diagnose(value: &[u8], parse_error: serde_json::Error) -> BadReading {
    let Ok(text) = std::str::from_utf8(value) else {
        return BadReading::NotUtf8;
    };
    let object = match serde_json::from_str::<Value>(text) {
        Err(e) => return BadReading::NotJson(e.to_string()),
        Ok(Value::Null) => return BadReading::Empty,
        Ok(Value::Object(object)) => object,
        Ok(_) => return BadReading::NotAnObject,
    };
    for (field, expected) in REQUIRED_FIELDS {
        let well_typed = match object.get(field) {
            None => return BadReading::MissingField(field),
            Some(v) if expected == "a number" => v.is_number(),
            Some(v) => v.is_i64() || v.is_u64(),
        };
        if !well_typed {
            return BadReading::WrongType { field, expected };
        }
    }
    match object.get("sensor_id") {
        Some(Value::String(_)) | None => BadReading::NotJson(parse_error.to_string()),
        Some(_) => BadReading::WrongType { field: "sensor_id", expected: "a string" },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn parse(value: &str) -> Result<Reading<'_>, BadReading> {
        Reading::parse(Some(value.as_bytes()), None)
    }

    /// The walkthrough's own example message parses, with the default sensor id.
    #[test]
    fn parses_the_walkthrough_example() {
        let r = parse(r#"{"record_id": 17, "temperature": 21.4, "CO_concentration": 734, "humidity": 52}"#).unwrap();
        assert_eq!(
            r,
            Reading {
                sensor_id: "sensor-1".into(),
                record_id: 17,
                temperature_tenths: 214,
                co_concentration: 734,
                humidity: 52
            }
        );
    }

    /// What the sensor writes is what the consumer reads, to the tenth of a degree.
    #[test]
    fn json_round_trips_exactly() {
        for tenths in [-100, -99, -1, 0, 1, 3, 214, 349, 350] {
            let r = Reading {
                sensor_id: "s-7".into(),
                record_id: 9,
                temperature_tenths: tenths,
                co_concentration: 50,
                humidity: 100,
            };
            let json = r.to_json();
            assert_eq!(Reading::parse(Some(&json), None).unwrap(), r, "{}", String::from_utf8_lossy(&json));
        }
    }

    /// The sensor's JSON is byte for byte what serde_json writes, for every temperature the
    /// sensor can measure and any record id, CO and humidity.
    #[test]
    fn written_json_is_serde_jsons() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for tenths in -1000..=1000 {
            let r = Reading {
                sensor_id: format!("sensor-{}", rng.random_range(1..100)).into(),
                record_id: rng.random_range(1..u64::MAX / 2),
                temperature_tenths: tenths,
                co_concentration: rng.random(),
                humidity: rng.random(),
            };
            let (mut ours, mut serde) = (Vec::new(), Vec::new());
            r.write_json(&mut ours);
            r.write_json_with_serde(&mut serde);
            assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(serde).unwrap());
        }
        let odd = Reading {
            sensor_id: "a\"b".into(),
            record_id: 1,
            temperature_tenths: 0,
            co_concentration: 50,
            humidity: 1,
        };
        assert!(String::from_utf8(odd.to_json()).unwrap().contains(r#""a\"b""#), "escaped by serde_json");
    }

    /// The JSON carries the walkthrough's field names, including the capitalised CO field.
    #[test]
    fn json_has_the_walkthrough_field_names() {
        let r = Reading {
            sensor_id: "sensor-2".into(),
            record_id: 17,
            temperature_tenths: 214,
            co_concentration: 734,
            humidity: 52,
        };
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            r#"{"sensor_id":"sensor-2","record_id":17,"temperature":21.4,"CO_concentration":734,"humidity":52}"#
        );
    }

    /// Without a `sensor_id` field the message key names the sensor.
    #[test]
    fn key_names_the_sensor_when_the_field_is_absent() {
        let v = br#"{"record_id": 1, "temperature": 0, "CO_concentration": 50, "humidity": 1}"#;
        assert_eq!(Reading::parse(Some(v), Some(b"north")).unwrap().sensor_id, "north");
    }

    /// Every kind of bad message gets its own category and a reason a person can act on.
    #[test]
    fn bad_messages_are_diagnosed_by_category() {
        let cases: [(&[u8], &str); 12] = [
            (b"", "empty"),
            (b"null", "empty"),
            (b"\xff\xfe{}", "not-utf8"),
            (b"{\"record_id\": 1,", "not-json"),
            (b"[1,2]", "not-json"),
            (br#"{"record_id": 1, "temperature": 1.0, "humidity": 5}"#, "missing-field"),
            (br#"{"record_id": "1", "temperature": 1.0, "CO_concentration": 60, "humidity": 5}"#, "wrong-type"),
            (br#"{"record_id": 1, "temperature": 1.0, "CO_concentration": 60.5, "humidity": 5}"#, "wrong-type"),
            (
                br#"{"sensor_id": 4, "record_id": 1, "temperature": 1.0, "CO_concentration": 60, "humidity": 5}"#,
                "wrong-type",
            ),
            (br#"{"record_id": 1, "temperature": 35.1, "CO_concentration": 60, "humidity": 5}"#, "out-of-bounds"),
            (br#"{"record_id": 0, "temperature": 1.0, "CO_concentration": 60, "humidity": 5}"#, "out-of-bounds"),
            (
                br#"{"sensor_id": "a,b", "record_id": 1, "temperature": 1.0, "CO_concentration": 60, "humidity": 5}"#,
                "invalid-sensor-id",
            ),
        ];
        for (value, category) in cases {
            let err = Reading::parse(Some(value), None).unwrap_err();
            assert_eq!(err.category(), category, "{:?} gave {err}", String::from_utf8_lossy(value));
        }
        assert_eq!(Reading::parse(None, None).unwrap_err(), BadReading::Empty);
        let huge = vec![b' '; 1 << 20];
        assert_eq!(Reading::parse(Some(&huge), None).unwrap_err().category(), "oversized");
    }

    /// Bounds are the sensor's, inclusive, and temperatures keep the sensor's 0.1 °C resolution.
    #[test]
    fn bounds_are_inclusive_and_resolution_is_a_tenth() {
        let ok = |t: &str, co: u32, h: u32| {
            let v = format!(r#"{{"record_id": 3, "temperature": {t}, "CO_concentration": {co}, "humidity": {h}}}"#);
            Reading::parse(Some(v.as_bytes()), None).map(|r| r.into_owned())
        };
        assert!(ok("-10", 50, 1).is_ok());
        assert!(ok("35.0", 1500, 100).is_ok());
        assert!(ok("-10.1", 50, 1).is_err());
        assert!(ok("0", 49, 1).is_err());
        assert!(ok("0", 1501, 1).is_err());
        assert!(ok("0", 60, 0).is_err());
        assert!(ok("0", 60, 101).is_err());
        assert!(ok("21.45", 60, 50).is_err());
    }

    /// The fast path reads what the sensor writes, as serde_json does.
    #[test]
    fn the_fast_path_reads_what_the_sensor_writes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..10_000 {
            let r = Reading {
                sensor_id: format!("s.{}_-{}", rng.random_range(0..1000), rng.random_range(0..9)).into(),
                record_id: rng.random_range(1..u64::from(u32::MAX)),
                temperature_tenths: rng.random_range(-100..=350),
                co_concentration: rng.random_range(50..=1500),
                humidity: rng.random_range(1..=100),
            };
            let json = r.to_json();
            assert_eq!(canonical(&json).as_ref(), Some(&r), "{}", String::from_utf8_lossy(&json));
            assert_eq!(Reading::parse_json(Some(&json), None), Ok(r));
        }
    }

    /// `count` damaged copies of `good`, each with one to three bytes of `alphabet` written over,
    /// inserted or removed at random (from `seed`): inputs for a fast path's equivalence test.
    pub(crate) fn damaged(good: &[u8], alphabet: &[u8], seed: u64, count: usize) -> Vec<Vec<u8>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let mut bytes = good.to_vec();
                for _ in 0..rng.random_range(1..=3) {
                    let at = rng.random_range(0..bytes.len());
                    let byte = alphabet[rng.random_range(0..alphabet.len())];
                    match rng.random_range(0..3) {
                        0 => bytes[at] = byte,
                        1 => bytes.insert(at, byte),
                        _ => {
                            bytes.remove(at);
                        }
                    }
                }
                bytes
            })
            .collect()
    }

    /// Whatever the bytes, the fast path never changes the outcome: damaged copies of the
    /// sensor's messages parse (or are refused, with the same reason) as serde_json alone would.
    #[test]
    fn the_fast_path_never_changes_the_outcome() {
        let fast = |value: &[u8]| Reading::parse(Some(value), None).map(Reading::into_owned);
        let general = |value: &[u8]| Reading::parse_json(Some(value), None).map(Reading::into_owned);
        let base =
            br#"{"sensor_id":"sensor-12","record_id":1017,"temperature":-3.5,"CO_concentration":734,"humidity":52}"#;
        for value in damaged(base, b"0123456789-.,:{}\" eE+sx", 11, 50_000) {
            assert_eq!(fast(&value), general(&value), "{}", String::from_utf8_lossy(&value));
        }
        for edge in [
            &br#"{"sensor_id":"a","record_id":0,"temperature":0,"CO_concentration":0,"humidity":0}"#[..],
            br#"{"sensor_id":"a","record_id":01,"temperature":0,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":-0.0,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":-0,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":0.10000000000000000001,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":123456789012345678,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":1.,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":99999999999999999999,"temperature":1,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"","record_id":1,"temperature":1,"CO_concentration":50,"humidity":1} "#,
            br#"{"sensor_id":"a","record_id":1,"temperature":35.0,"CO_concentration":1500,"humidity":100}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":35.1,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":-10.0,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":-10.1,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":21.40,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":21.45,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":2147483647,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":1,"CO_concentration":4294967346,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":1,"temperature":1,"CO_concentration":49,"humidity":101}"#,
            br#"{"sensor_id":"a\u0062","record_id":1,"temperature":1,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a b","record_id":1,"temperature":1,"CO_concentration":50,"humidity":1}"#,
            "{\"sensor_id\":\"caf\u{e9}\",\"record_id\":1,\"temperature\":1,\"CO_concentration\":50,\"humidity\":1}"
                .as_bytes(),
            br#"{"sensor_id":"a","record_id":999999999999999999,"temperature":1,"CO_concentration":50,"humidity":1}"#,
            br#"{"sensor_id":"a","record_id":9999999999999999999,"temperature":1,"CO_concentration":50,"humidity":1}"#,
        ] {
            assert_eq!(fast(edge), general(edge), "{}", String::from_utf8_lossy(edge));
        }
        for id_len in [63, 64, 65] {
            let id = "s".repeat(id_len);
            let edge =
                format!(r#"{{"sensor_id":"{id}","record_id":1,"temperature":1,"CO_concentration":50,"humidity":1}}"#);
            assert_eq!(fast(edge.as_bytes()), general(edge.as_bytes()), "an id of {id_len} bytes");
        }
    }
}
