//! A window's averages as one record of a compacted aggregates topic, the table of averages
//! that other jobs read instead of recomputing it. The key names the window (compaction keeps
//! the latest value per key, and a null value deletes it); the value holds the window's
//! numbers exactly as the consumer's CSV row writes them. The consumer's topic sink writes these
//! records and the report reads them: the bytes are defined here, once.
//!
//! Key: `{"sensor_id":"sensor-1","window_days":7,"window_id":12}`, compact, in that order:
//! compaction compares key bytes, so one window must have one key.
//!
//! Value: `{"sensor_id":"sensor-1","window_days":7,"window_id":12,"unit":"fahrenheit",
//! "avg_temp":68.6,"avg_co":700,"avg_humidity":50,"readings":7,"first_record_id":78,
//! "last_record_id":84}`: no wall-clock field, so a rerun writes identical bytes.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::reading::{integer, is_valid_sensor_id, sensor_id, signed_tenths};
use crate::units::{Tenths, Unit};

/// The longest window the consumer computes, in days (ten years).
pub const MAX_WINDOW_DAYS: u32 = 3660;

/// Which window an aggregate is: the record's key. Its sensor id is a `String`, or borrowed
/// from the record it was read from ([`parse_record`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowKey<Id = String> {
    pub sensor_id: Id,
    /// Readings (simulated days) per window: the rules' window length.
    pub window_days: u32,
    /// `(record_id - 1) div window_days + 1`, from 1.
    pub window_id: u64,
}

/// A window's averages: the record's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate<Id = String> {
    pub key: WindowKey<Id>,
    /// The unit of `avg_temp`.
    pub unit: Unit,
    /// The mean temperature in tenths of `unit`, rounded once (ties to even).
    pub avg_temp: Tenths,
    /// The mean CO concentration (ppm), rounded to an integer.
    pub avg_co: i64,
    /// The mean relative humidity (%), rounded to an integer.
    pub avg_humidity: i64,
    /// Readings averaged: the window's length, fewer for a partial window.
    pub readings: u32,
    pub first_record_id: u64,
    pub last_record_id: u64,
}

/// What one record does to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    /// The window's latest averages, the sensor id borrowed from the record when it can be.
    Put(Aggregate<Cow<'a, str>>),
    /// A tombstone (null value): the window is gone from the table.
    Delete(WindowKey),
}

/// Why a record of the aggregates topic is not a window's averages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAggregate {
    #[error("its key or value is not JSON: {0}")]
    NotJson(String),
    #[error("wrong key: {0}")]
    WrongKey(String),
    #[error("its value is not a window's averages: {0}")]
    BadValue(String),
    #[error("its key names {key} but its value {value}")]
    Disagree { key: WindowKey, value: WindowKey },
}

impl BadAggregate {
    /// A short name to count bad records by.
    pub fn category(&self) -> &'static str {
        match self {
            BadAggregate::NotJson(_) => "not-json",
            BadAggregate::WrongKey(_) => "wrong-key",
            BadAggregate::BadValue(_) => "bad-value",
            BadAggregate::Disagree { .. } => "disagree",
        }
    }
}

impl<Id: fmt::Display> fmt::Display for WindowKey<Id> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} window {} of {} days", self.sensor_id, self.window_id, self.window_days)
    }
}

/// The name of a window's id column in the consumer's CSV, and the report's.
pub fn id_column(window_days: u32) -> &'static str {
    match window_days {
        30 => "month_id",
        7 => "week_id",
        _ => "window_id",
    }
}

impl WindowKey {
    /// The record key, compact JSON in field order.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a key always serializes")
    }

    /// The key of a record; only the canonical form of [`WindowKey::to_json`] is one.
    pub fn parse(bytes: &[u8]) -> Result<WindowKey, BadAggregate> {
        let key: WindowKey = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => BadAggregate::WrongKey(format!("{e}; a key looks like {EXAMPLE_KEY}")),
            _ => BadAggregate::NotJson(format!("key: {e}")),
        })?;
        key.check().map_err(BadAggregate::WrongKey)?;
        if !key.written_as(bytes) {
            return Err(BadAggregate::WrongKey(format!(
                "not written as {} (compaction keeps each spelling of a key apart)",
                String::from_utf8_lossy(&key.to_json())
            )));
        }
        Ok(key)
    }

    /// Whether `bytes` are this key as [`WindowKey::to_json`] writes it, without writing it: a
    /// valid sensor id needs no escape, so the key is its parts between fixed texts.
    fn written_as(&self, bytes: &[u8]) -> bool {
        debug_assert!(is_valid_sensor_id(&self.sensor_id));
        let (mut days, mut id) = (itoa::Buffer::new(), itoa::Buffer::new());
        let parts = [
            &br#"{"sensor_id":""#[..],
            self.sensor_id.as_bytes(),
            br#"","window_days":"#,
            days.format(self.window_days).as_bytes(),
            br#","window_id":"#,
            id.format(self.window_id).as_bytes(),
            b"}",
        ];
        let mut rest = bytes;
        for part in parts {
            match rest.strip_prefix(part) {
                Some(after) => rest = after,
                None => return false,
            }
        }
        rest.is_empty()
    }

    fn check(&self) -> Result<(), String> {
        check_sensor_id(&self.sensor_id)?;
        self.check_window()
    }
}

/// Whether `id` is a sensor id, and if not, why (the fast paths read only sensor ids).
fn check_sensor_id(id: &str) -> Result<(), String> {
    if !is_valid_sensor_id(id) {
        return Err(format!("`{id}` is not a sensor id"));
    }
    Ok(())
}

impl<Id> WindowKey<Id> {
    /// The window's length and id, checked.
    fn check_window(&self) -> Result<(), String> {
        if !(1..=MAX_WINDOW_DAYS).contains(&self.window_days) {
            return Err(format!("window_days {} is not between 1 and {MAX_WINDOW_DAYS}", self.window_days));
        }
        if self.window_id == 0 {
            return Err("window_id 0: windows count from 1".into());
        }
        Ok(())
    }

    /// The record ids a window holds.
    pub fn record_ids(&self) -> std::ops::RangeInclusive<u64> {
        let days = u64::from(self.window_days);
        (self.window_id - 1) * days + 1..=self.window_id * days
    }

    fn with_id<T>(self, id: impl FnOnce(Id) -> T) -> WindowKey<T> {
        WindowKey { sensor_id: id(self.sensor_id), window_days: self.window_days, window_id: self.window_id }
    }
}

const EXAMPLE_KEY: &str = r#"{"sensor_id":"sensor-1","window_days":7,"window_id":12}"#;

/// The value as it is on the wire, in field order.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    sensor_id: Cow<'a, str>,
    window_days: u32,
    window_id: u64,
    unit: Unit,
    /// One decimal, as the CSV row: written as the JSON number of the tenths.
    avg_temp: f64,
    avg_co: i64,
    avg_humidity: i64,
    readings: u32,
    first_record_id: u64,
    last_record_id: u64,
}

impl Aggregate {
    /// The record value, compact JSON in field order; `avg_temp` reads as the CSV row writes it.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = Wire {
            sensor_id: Cow::Borrowed(&self.key.sensor_id),
            window_days: self.key.window_days,
            window_id: self.key.window_id,
            unit: self.unit,
            // The double nearest to n/10 prints as n/10 with one decimal (shortest round trip).
            avg_temp: self.avg_temp.0 as f64 / 10.0,
            avg_co: self.avg_co,
            avg_humidity: self.avg_humidity,
            readings: self.readings,
            first_record_id: self.first_record_id,
            last_record_id: self.last_record_id,
        };
        serde_json::to_vec(&wire).expect("an aggregate always serializes")
    }

    /// A record value, checked: numbers in range, record ids within the window.
    pub fn parse(bytes: &[u8]) -> Result<Aggregate, BadAggregate> {
        parse_value(bytes).map(Aggregate::into_owned)
    }

    /// [`Aggregate::parse`] without the fast path.
    #[cfg(test)]
    fn parse_json(bytes: &[u8]) -> Result<Aggregate, BadAggregate> {
        parse_json_value(bytes).map(Aggregate::into_owned)
    }
}

impl Aggregate<Cow<'_, str>> {
    fn into_owned(self) -> Aggregate {
        self.with_id(Cow::into_owned)
    }
}

impl<Id> Aggregate<Id> {
    fn with_id<T>(self, id: impl FnOnce(Id) -> T) -> Aggregate<T> {
        Aggregate {
            key: self.key.with_id(id),
            unit: self.unit,
            avg_temp: self.avg_temp,
            avg_co: self.avg_co,
            avg_humidity: self.avg_humidity,
            readings: self.readings,
            first_record_id: self.first_record_id,
            last_record_id: self.last_record_id,
        }
    }
}

impl<'a> Aggregate<Cow<'a, str>> {
    /// The value's fields, checked; its sensor id already is one.
    fn checked(wire: Wire<'a>) -> Result<Self, BadAggregate> {
        debug_assert!(is_valid_sensor_id(&wire.sensor_id));
        let key = WindowKey { sensor_id: wire.sensor_id, window_days: wire.window_days, window_id: wire.window_id };
        key.check_window().map_err(BadAggregate::BadValue)?;
        let tenths = (wire.avg_temp * 10.0).round();
        if (wire.avg_temp * 10.0 - tenths).abs() > 1e-6 || tenths.abs() > 1e9 {
            return Err(BadAggregate::BadValue(format!("avg_temp {} is not a number with one decimal", wire.avg_temp)));
        }
        let bad = |what: String| Err(BadAggregate::BadValue(what));
        if wire.avg_co < 0 || wire.avg_humidity < 0 {
            return bad(format!("avg_co {} and avg_humidity {} cannot be negative", wire.avg_co, wire.avg_humidity));
        }
        if !(1..=key.window_days).contains(&wire.readings) {
            return bad(format!("{} readings in a window of {} days", wire.readings, key.window_days));
        }
        let ids = key.record_ids();
        if !(ids.contains(&wire.first_record_id)
            && ids.contains(&wire.last_record_id)
            && wire.first_record_id <= wire.last_record_id)
        {
            return bad(format!(
                "record ids {}..={} are not within {key} ({}..={})",
                wire.first_record_id,
                wire.last_record_id,
                ids.start(),
                ids.end()
            ));
        }
        Ok(Aggregate {
            key,
            unit: wire.unit,
            avg_temp: Tenths(tenths as i64),
            avg_co: wire.avg_co,
            avg_humidity: wire.avg_humidity,
            readings: wire.readings,
            first_record_id: wire.first_record_id,
            last_record_id: wire.last_record_id,
        })
    }
}

/// The fast path, for exactly the bytes [`Aggregate::to_json`] writes: the fields in that order,
/// no whitespace, no escapes, plain non-negative integers, `avg_temp` with at most one decimal.
/// Anything else is `None` and goes to serde_json, which reads it or says what is wrong. It
/// gives the fields serde_json would: a number of tenths `n` below 2^53 parses to `n / 10`
/// either way (the quotient of two exact doubles, correctly rounded). The numbers are checked
/// the same for both ([`Aggregate::checked`]); the sensor id, by this scan, which takes only
/// the bytes of a sensor id, and by the slow path's check. The report parses every record of
/// the topic. With the fields, the length of the value's opening fields, those of its
/// window's key.
fn canonical(value: &[u8]) -> Option<(Wire<'_>, usize)> {
    let mut rest = value.strip_prefix(br#"{"sensor_id":""#)?;
    let sensor_id = sensor_id(&mut rest)?;
    rest = rest.strip_prefix(br#"","window_days":"#)?;
    let window_days = u32::try_from(integer(&mut rest)?).ok()?;
    rest = rest.strip_prefix(br#","window_id":"#)?;
    let window_id = integer(&mut rest)?;
    let key_len = value.len() - rest.len();
    rest = rest.strip_prefix(br#","unit":""#)?;
    let unit = if let Some(tail) = rest.strip_prefix(b"fahrenheit") {
        rest = tail;
        Unit::Fahrenheit
    } else {
        rest = rest.strip_prefix(b"celsius")?;
        Unit::Celsius
    };
    rest = rest.strip_prefix(br#"","avg_temp":"#)?;
    let avg_temp = decimal(&mut rest)?;
    rest = rest.strip_prefix(br#","avg_co":"#)?;
    let avg_co = i64::try_from(integer(&mut rest)?).ok()?;
    rest = rest.strip_prefix(br#","avg_humidity":"#)?;
    let avg_humidity = i64::try_from(integer(&mut rest)?).ok()?;
    rest = rest.strip_prefix(br#","readings":"#)?;
    let readings = u32::try_from(integer(&mut rest)?).ok()?;
    rest = rest.strip_prefix(br#","first_record_id":"#)?;
    let first_record_id = integer(&mut rest)?;
    rest = rest.strip_prefix(br#","last_record_id":"#)?;
    let last_record_id = integer(&mut rest)?;
    let wire = Wire {
        sensor_id: Cow::Borrowed(sensor_id),
        window_days,
        window_id,
        unit,
        avg_temp,
        avg_co,
        avg_humidity,
        readings,
        first_record_id,
        last_record_id,
    };
    (rest == b"}").then_some((wire, key_len))
}

/// A record value, checked ([`Aggregate::parse`]), its sensor id borrowed when it can be.
fn parse_value(bytes: &[u8]) -> Result<Aggregate<Cow<'_, str>>, BadAggregate> {
    match canonical(bytes) {
        Some((wire, _)) => Aggregate::checked(wire),
        None => parse_json_value(bytes),
    }
}

/// [`parse_value`] without the fast path: any JSON, and what is wrong with it.
fn parse_json_value(bytes: &[u8]) -> Result<Aggregate<Cow<'_, str>>, BadAggregate> {
    let wire: Wire<'_> = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => BadAggregate::BadValue(e.to_string()),
        _ => BadAggregate::NotJson(format!("value: {e}")),
    })?;
    check_sensor_id(&wire.sensor_id).map_err(BadAggregate::BadValue)?;
    Aggregate::checked(wire)
}

/// A number at the start of `rest` with at most one decimal ([`signed_tenths`]), as a double.
fn decimal(rest: &mut &[u8]) -> Option<f64> {
    let (negative, tenths) = signed_tenths(rest)?;
    let tenths = (tenths < 1 << 53).then_some(tenths)? as f64;
    Some(if negative { -tenths / 10.0 } else { tenths / 10.0 })
}

/// What a record of the aggregates topic does to the table: a value puts the window, a null
/// value (a tombstone) deletes it. The key must be a window's canonical key, and the value
/// must name the same window.
pub fn parse_record<'a>(key: Option<&[u8]>, value: Option<&'a [u8]>) -> Result<Change<'a>, BadAggregate> {
    // A good record's key is the canonical key of its value's window: one parse, not two. Any
    // other record is told what is wrong with it by the slow path, its key first.
    if let (Some(key), Some(value)) = (key, value) {
        if let Some(aggregate) = canonical_record(key, value) {
            return Ok(Change::Put(aggregate));
        }
    }
    parse_record_slowly(key, value)
}

/// The fast path of [`parse_record`]: a valid value in its canonical form, under its window's
/// canonical key. That key is the value's opening fields, closed: the value writes the key's
/// fields first, in the key's order, the same way.
fn canonical_record<'a>(key: &[u8], value: &'a [u8]) -> Option<Aggregate<Cow<'a, str>>> {
    let (wire, key_len) = canonical(value)?;
    (key.strip_suffix(b"}")? == &value[..key_len]).then_some(())?;
    Aggregate::checked(wire).ok()
}

/// [`parse_record`] without its fast path: the key, then the value, each parsed and checked.
fn parse_record_slowly<'a>(key: Option<&[u8]>, value: Option<&'a [u8]>) -> Result<Change<'a>, BadAggregate> {
    let key =
        WindowKey::parse(key.ok_or_else(|| BadAggregate::WrongKey(format!("none; a key looks like {EXAMPLE_KEY}")))?)?;
    let Some(value) = value else {
        return Ok(Change::Delete(key));
    };
    let aggregate = parse_value(value)?;
    let named = &aggregate.key;
    if (&*named.sensor_id, named.window_days, named.window_id) != (&*key.sensor_id, key.window_days, key.window_id) {
        return Err(BadAggregate::Disagree { key, value: aggregate.into_owned().key });
    }
    Ok(Change::Put(aggregate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::tests::damaged;

    /// What damaged copies are made of: JSON's punctuation, digits, and the units' letters.
    const ALPHABET: &[u8] = b"0123456789-.,:{}\" eE+sxfc";

    fn key(sensor: &str, days: u32, id: u64) -> WindowKey {
        WindowKey { sensor_id: sensor.into(), window_days: days, window_id: id }
    }

    fn week_12() -> Aggregate {
        Aggregate {
            key: key("sensor-1", 7, 12),
            unit: Unit::Fahrenheit,
            avg_temp: Tenths(686),
            avg_co: 700,
            avg_humidity: 50,
            readings: 7,
            first_record_id: 78,
            last_record_id: 84,
        }
    }

    /// The exact bytes of a key and a value, as the issue fixes them.
    #[test]
    fn wire_bytes() {
        assert_eq!(week_12().key.to_json(), br#"{"sensor_id":"sensor-1","window_days":7,"window_id":12}"#);
        assert_eq!(
            String::from_utf8(week_12().to_json()).unwrap(),
            r#"{"sensor_id":"sensor-1","window_days":7,"window_id":12,"unit":"fahrenheit","avg_temp":68.6,"avg_co":700,"avg_humidity":50,"readings":7,"first_record_id":78,"last_record_id":84}"#
        );
    }

    /// `avg_temp` reads exactly as the CSV row writes it (`Tenths`), over every temperature a
    /// window can average to in °C or °F, and parses back to the same tenths.
    #[test]
    fn avg_temp_is_written_as_the_csv_row() {
        for tenths in -2000..=2000 {
            let aggregate = Aggregate { avg_temp: Tenths(tenths), ..week_12() };
            let json = String::from_utf8(aggregate.to_json()).unwrap();
            assert!(json.contains(&format!(r#""avg_temp":{},"#, Tenths(tenths))), "{json}");
            assert_eq!(Aggregate::parse(json.as_bytes()).unwrap(), aggregate);
        }
    }

    /// A value puts its window, a null value deletes it.
    #[test]
    fn records_put_and_delete() {
        let a = week_12();
        assert_eq!(
            parse_record(Some(&a.key.to_json()), Some(&a.to_json())),
            Ok(Change::Put(a.clone().with_id(Cow::Owned)))
        );
        assert_eq!(parse_record(Some(&a.key.to_json()), None), Ok(Change::Delete(a.key.clone())));
        let partial = Aggregate { readings: 3, last_record_id: 80, ..week_12() };
        assert_eq!(Aggregate::parse(&partial.to_json()), Ok(partial));
    }

    /// Each kind of bad record is told apart, and says what is wrong.
    #[test]
    fn bad_records_say_why() {
        let a = week_12();
        let (k, v) = (a.key.to_json(), a.to_json());
        let category = |key: Option<&[u8]>, value: Option<&[u8]>| parse_record(key, value).unwrap_err().category();
        assert_eq!(category(Some(b"sensor-1"), Some(&v)), "not-json");
        assert_eq!(category(Some(&k), Some(b"{\"sensor_id\":")), "not-json");
        assert_eq!(category(Some(&k), Some(b"\xff\xfe")), "not-json");
        assert_eq!(category(None, Some(&v)), "wrong-key");
        assert_eq!(category(Some(br#"{"sensor_id":"sensor-1"}"#), Some(&v)), "wrong-key");
        assert_eq!(
            category(Some(br#"{"window_days":7,"sensor_id":"sensor-1","window_id":12}"#), Some(&v)),
            "wrong-key"
        );
        assert_eq!(
            category(Some(br#"{"sensor_id":"sensor-1", "window_days":7,"window_id":12}"#), Some(&v)),
            "wrong-key"
        );
        assert_eq!(category(Some(br#"{"sensor_id":"a b","window_days":7,"window_id":12}"#), Some(&v)), "wrong-key");
        assert_eq!(category(Some(br#"{"sensor_id":"s","window_days":7,"window_id":0}"#), None), "wrong-key");
        assert_eq!(category(Some(&k), Some(br#"{"sensor_id":"sensor-1"}"#)), "bad-value");
        let other = Aggregate { key: key("sensor-1", 7, 13), first_record_id: 85, last_record_id: 91, ..week_12() };
        let err = parse_record(Some(&k), Some(&other.to_json())).unwrap_err();
        assert_eq!(err.category(), "disagree");
        assert_eq!(
            err.to_string(),
            "its key names sensor-1 window 12 of 7 days but its value sensor-1 window 13 of 7 days"
        );
        let text = |v: &str| parse_record(Some(&k), Some(v.as_bytes())).unwrap_err().to_string();
        let json = String::from_utf8(v.clone()).unwrap();
        assert!(text(&json.replace("68.6", "68.65")).contains("one decimal"));
        assert!(text(&json.replace(r#""readings":7"#, r#""readings":8"#)).contains("8 readings"));
        assert!(text(&json.replace(r#""first_record_id":78"#, r#""first_record_id":77"#)).contains("78..=84"));
        assert!(text(&json.replace("fahrenheit", "kelvin")).contains("unknown variant"));
        assert!(text(&json.replace(r#""avg_co":700"#, r#""avg_co":-1"#)).contains("negative"));
        // A value read alone names a sensor id too.
        let value = json.replace("sensor-1", "a b");
        assert_eq!(Aggregate::parse(value.as_bytes()), Err(BadAggregate::BadValue("`a b` is not a sensor id".into())));
    }

    /// Whatever the bytes, the fast path never changes the outcome: damaged copies of a value
    /// parse (or are refused, with the same reason) as serde_json alone reads them.
    #[test]
    fn the_fast_path_never_changes_the_outcome() {
        let values = [
            week_12().to_json(),
            Aggregate { unit: Unit::Celsius, avg_temp: Tenths(-35), ..week_12() }.to_json(),
            Aggregate { avg_temp: Tenths(0), readings: 1, last_record_id: 78, ..week_12() }.to_json(),
        ];
        for (seed, value) in values.iter().enumerate() {
            assert_eq!(Aggregate::parse(value), Aggregate::parse_json(value));
            for bytes in damaged(value, ALPHABET, seed as u64, 30_000) {
                let text = String::from_utf8_lossy(&bytes);
                assert_eq!(Aggregate::parse(&bytes), Aggregate::parse_json(&bytes), "{text}");
            }
        }
        let edges = [
            r#""avg_temp":-0.0,"#,
            r#""avg_temp":-0,"#,
            r#""avg_temp":68.60,"#,
            r#""avg_temp":68.,"#,
            r#""avg_temp":900719925474099.1,"#,
            r#""avg_temp":9007199254740993,"#,
            r#""avg_temp":100000001.0,"#,
            r#""avg_temp":068.6,"#,
            r#""avg_co":99999999999999999999,"#,
            r#""readings":4294967303,"#,
            r#""window_days":4294967303,"#,
        ];
        let json = String::from_utf8(week_12().to_json()).unwrap();
        for edge in edges {
            let field = edge.split(':').next().unwrap();
            let at = json.find(field).unwrap();
            let end = at + json[at..].find(',').unwrap() + 1;
            let value = format!("{}{edge}{}", &json[..at], &json[end..]);
            assert_eq!(Aggregate::parse(value.as_bytes()), Aggregate::parse_json(value.as_bytes()), "{value}");
        }
    }

    /// Whatever the key and the value, a record's fast path never changes the outcome: damaged
    /// copies of a good record's key, and of its value, are read as the slow path reads them.
    #[test]
    fn the_fast_path_of_a_record_never_changes_the_outcome() {
        let records = [
            week_12(),
            Aggregate {
                key: key("s.2_x-Y", 30, 4_115_226),
                first_record_id: 123_456_751,
                last_record_id: 123_456_780,
                ..week_12()
            },
        ]
        .map(|a| (a.key.to_json(), a.to_json()));
        for (seed, (key, value)) in records.iter().enumerate() {
            let both = |key: &[u8], value: &[u8]| {
                let (fast, slow) = (parse_record(Some(key), Some(value)), parse_record_slowly(Some(key), Some(value)));
                assert_eq!(
                    fast,
                    slow,
                    "key {}, value {}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(value)
                );
            };
            assert!(matches!(parse_record(Some(key), Some(value)), Ok(Change::Put(_))));
            for damaged_key in damaged(key, ALPHABET, seed as u64, 20_000) {
                both(&damaged_key, value);
            }
            for damaged_value in damaged(value, ALPHABET, seed as u64, 20_000) {
                both(key, &damaged_value);
            }
        }
    }

    /// A key is checked against its canonical bytes without writing them: exactly as comparing
    /// with [`WindowKey::to_json`] would, damaged copies included.
    #[test]
    fn keys_are_checked_as_written() {
        for (seed, key) in
            [key("sensor-1", 7, 12), key("a", 3660, 1), key("s.2_x-Y", 30, 123_456_789)].iter().enumerate()
        {
            let written = key.to_json();
            assert!(key.written_as(&written));
            for bytes in damaged(&written, ALPHABET, seed as u64, 20_000) {
                assert_eq!(key.written_as(&bytes), bytes == written, "{}", String::from_utf8_lossy(&bytes));
            }
        }
    }

    /// The consumer's CSV id column names, by window length.
    #[test]
    fn id_columns() {
        assert_eq!([id_column(7), id_column(30), id_column(10)], ["week_id", "month_id", "window_id"]);
    }
}
