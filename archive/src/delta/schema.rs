//! What the table says about its files: its schema in Delta's terms ("Schema Serialization
//! Format"), each file's partition values ("Partition Value Serialization") and its statistics
//! ("Per-file Statistics"), from the same columns the Parquet files hold. Pure.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use serde_json::{json, Map, Value};

use crate::columns;
use crate::layout::{PartitionBy, Slot};

/// The partition columns of a table of this layout: `date`, and `hour` when by hour.
pub fn partition_columns(by: PartitionBy) -> Vec<String> {
    match by {
        PartitionBy::Hour => vec!["date".into(), "hour".into()],
        PartitionBy::Day => vec!["date".into()],
    }
}

/// The table's schema as `schemaString`: the files' columns, then the partition columns
/// (`date` a date, `hour` an integer), which the files do not hold ("Actual partition values
/// for a file must be read from the transaction log").
pub fn schema_string(by: PartitionBy) -> String {
    let mut fields: Vec<Value> = columns::schema()
        .fields()
        .iter()
        .map(|f| {
            let kind = match f.data_type() {
                DataType::Utf8 => "string",
                DataType::Int64 => "long",
                DataType::Int32 => "integer",
                DataType::Float64 => "double",
                // "timestamp: ... stored in a parquet file, its isAdjustedToUTC must be set
                // to true": the files' event_time is UTC (milliseconds; readers widen it).
                DataType::Timestamp(TimeUnit::Millisecond, Some(_)) => "timestamp",
                other => unreachable!("the lake's schema has no {other} column"),
            };
            json!({"name": f.name(), "type": kind, "nullable": f.is_nullable(), "metadata": {}})
        })
        .collect();
    fields.push(json!({"name": "date", "type": "date", "nullable": true, "metadata": {}}));
    if by == PartitionBy::Hour {
        fields.push(json!({"name": "hour", "type": "integer", "nullable": true, "metadata": {}}));
    }
    json!({"type": "struct", "fields": fields}).to_string()
}

/// A file's partition values: the date as `YYYY-MM-DD`, the hour as its number.
pub fn partition_values(slot: Slot) -> Vec<(String, String)> {
    let (date, hour) = slot.date_and_hour();
    let mut values = vec![("date".to_string(), date)];
    if let Some(hour) = hour {
        values.push(("hour".to_string(), hour.to_string()));
    }
    values
}

/// Strings longer than this get no min/max ("String columns are cut off at a fixed prefix
/// length": a cut maximum would no longer be one; sensor ids are short).
const MAX_STRING_STAT: usize = 32;

/// A file's statistics, as the `stats` string of its `add`: the number of records, and each
/// column's minimum, maximum and null count (none are nullable), so that readers skip files a
/// filter excludes. Timestamps as ISO 8601 in UTC, to the millisecond ("Timestamp columns are
/// truncated down to milliseconds").
pub fn stats(batch: &RecordBatch) -> String {
    let (mut min, mut max, mut nulls) = (Map::new(), Map::new(), Map::new());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = field.name().clone();
        nulls.insert(name.clone(), json!(column.null_count()));
        let bounds: Option<(Value, Value)> = match column.data_type() {
            DataType::Utf8 => {
                let values = column.as_string::<i32>();
                let lo = values.iter().flatten().min();
                let hi = values.iter().flatten().max();
                lo.zip(hi)
                    .filter(|(lo, hi)| lo.len().max(hi.len()) <= MAX_STRING_STAT)
                    .map(|(l, h)| (json!(l), json!(h)))
            }
            DataType::Int64 => bounds_of(column.as_primitive::<Int64Type>().values().iter().copied()),
            DataType::Int32 => bounds_of(column.as_primitive::<Int32Type>().values().iter().copied()),
            DataType::Float64 => {
                let values = column.as_primitive::<Float64Type>().values();
                let lo = values.iter().copied().reduce(f64::min);
                let hi = values.iter().copied().reduce(f64::max);
                lo.zip(hi).filter(|(l, h)| l.is_finite() && h.is_finite()).map(|(l, h)| (json!(l), json!(h)))
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                let values = column.as_primitive::<TimestampMillisecondType>().values();
                let lo = values.iter().copied().min();
                let hi = values.iter().copied().max();
                lo.zip(hi).map(|(l, h)| (json!(iso_ms(l)), json!(iso_ms(h))))
            }
            _ => None,
        };
        if let Some((lo, hi)) = bounds {
            min.insert(name.clone(), lo);
            max.insert(name, hi);
        }
    }
    json!({"numRecords": batch.num_rows(), "minValues": min, "maxValues": max, "nullCount": nulls}).to_string()
}

fn bounds_of<T: Ord + Copy + Into<Value>>(values: impl Iterator<Item = T> + Clone) -> Option<(Value, Value)> {
    Some((values.clone().min()?.into(), values.max()?.into()))
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn iso_ms(ms: i64) -> String {
    let slot = PartitionBy::Day.slot(ms);
    let (date, _) = slot.date_and_hour();
    let in_day = ms - slot.start_ms;
    let (h, m, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{date}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::Rows;
    use weather_common::Reading;

    /// The schema names every column in Delta's types, partition columns last; an hour's
    /// file has its date and hour as values.
    #[test]
    fn schema_and_partition_values() {
        let schema: Value = serde_json::from_str(&schema_string(PartitionBy::Hour)).unwrap();
        let types: Vec<String> =
            schema["fields"].as_array().unwrap().iter().map(|f| format!("{}:{}", f["name"], f["type"])).collect();
        assert_eq!(
            types.join(" ").replace('"', ""),
            "sensor_id:string record_id:long temperature:double co_concentration:integer humidity:integer \
             event_time:timestamp partition:integer offset:long date:date hour:integer"
        );
        let slot = PartitionBy::Hour.slot(1_764_403_199_999);
        assert_eq!(partition_values(slot), [("date".into(), "2025-11-29".into()), ("hour".into(), "7".into())]);
        assert_eq!(partition_values(PartitionBy::Day.slot(0)), [("date".to_string(), "1970-01-01".to_string())]);
    }

    /// Statistics hold the count and each column's bounds, timestamps in UTC to the ms.
    #[test]
    fn stats_bound_every_column() {
        let mut rows = Rows::default();
        let reading = |sensor: &str, tenths| Reading {
            sensor_id: sensor.to_string().into(),
            record_id: 3,
            temperature_tenths: tenths,
            co_concentration: 700,
            humidity: 55,
        };
        rows.push(&reading("sensor-2", 203), 1_764_403_199_999, 1, 41);
        rows.push(&reading("sensor-1", -15), 1_764_403_100_000, 1, 42);
        let stats: Value = serde_json::from_str(&stats(&rows.finish().unwrap())).unwrap();
        assert_eq!(stats["numRecords"], 2);
        assert_eq!((&stats["minValues"]["offset"], &stats["maxValues"]["offset"]), (&json!(41), &json!(42)));
        assert_eq!(stats["minValues"]["sensor_id"], "sensor-1");
        assert_eq!(stats["minValues"]["temperature"], -1.5);
        assert_eq!(stats["maxValues"]["event_time"], "2025-11-29T07:59:59.999Z");
        assert_eq!(stats["minValues"]["event_time"], "2025-11-29T07:58:20.000Z");
        assert_eq!(stats["nullCount"]["humidity"], 0);
    }
}
