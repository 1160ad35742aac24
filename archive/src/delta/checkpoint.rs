//! A snapshot as a classic checkpoint (`<version>.checkpoint.parquet`, "V1 Spec"): one row per
//! action, each action a struct column (`txn`, `add`, `remove`, `metaData`, `protocol`), the
//! other columns of its row null ("All of these actions are stored as their individual columns
//! in parquet as struct fields. Any missing column should be treated as null"). Readers start
//! from the newest checkpoint instead of replaying every entry before it, and so does the
//! archive when it opens the table ([`decode`]). Pure: actions in, Parquet bytes out, and back.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, MapBuilder, MapFieldNames, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, ListArray, MapArray, RecordBatch, StringArray, StructArray,
};
use arrow_schema::{Field, Fields, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::log::{Action, Add, Format, Metadata, Protocol, Remove, Txn};

/// The checkpoint of `actions` (see [`super::log::Snapshot::checkpoint_actions`]).
pub fn encode(actions: &[Action]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let pick = |f: fn(&Action) -> bool| -> Vec<bool> { actions.iter().map(f).collect() };
    let txns: Vec<_> = actions.iter().map(|a| if let Action::Txn(t) = a { Some(t) } else { None }).collect();
    let adds: Vec<_> = actions.iter().map(|a| if let Action::Add(x) = a { Some(x) } else { None }).collect();
    let removes: Vec<_> = actions.iter().map(|a| if let Action::Remove(x) = a { Some(x) } else { None }).collect();
    let metas: Vec<_> = actions.iter().map(|a| if let Action::Metadata(x) = a { Some(x) } else { None }).collect();
    let protocols: Vec<_> = actions.iter().map(|a| if let Action::Protocol(x) = a { Some(x) } else { None }).collect();

    let txn = structure(
        &pick(|a| matches!(a, Action::Txn(_))),
        vec![
            ("appId", strings(txns.iter().map(|t| t.map(|t| t.app_id.as_str())))),
            ("version", longs(txns.iter().map(|t| t.map(|t| t.version)))),
            ("lastUpdated", longs(txns.iter().map(|t| t.and_then(|t| t.last_updated)))),
        ],
    );
    let add = structure(
        &pick(|a| matches!(a, Action::Add(_))),
        vec![
            ("path", strings(adds.iter().map(|a| a.map(|a| a.path.as_str())))),
            ("partitionValues", map(adds.iter().map(|a| a.map(|a| &a.partition_values)))),
            ("size", longs(adds.iter().map(|a| a.map(|a| a.size)))),
            ("modificationTime", longs(adds.iter().map(|a| a.map(|a| a.modification_time)))),
            ("dataChange", booleans(adds.iter().map(|a| a.map(|a| a.data_change)))),
            ("stats", strings(adds.iter().map(|a| a.and_then(|a| a.stats.as_deref())))),
        ],
    );
    // "the remove struct does not contain the stats and tags fields".
    let remove = structure(
        &pick(|a| matches!(a, Action::Remove(_))),
        vec![
            ("path", strings(removes.iter().map(|r| r.map(|r| r.path.as_str())))),
            ("deletionTimestamp", longs(removes.iter().map(|r| r.and_then(|r| r.deletion_timestamp)))),
            ("dataChange", booleans(removes.iter().map(|r| r.map(|r| r.data_change)))),
            ("extendedFileMetadata", booleans(removes.iter().map(|r| r.and_then(|r| r.extended_file_metadata)))),
            ("partitionValues", map(removes.iter().map(|r| r.and_then(|r| r.partition_values.as_ref())))),
            ("size", longs(removes.iter().map(|r| r.and_then(|r| r.size)))),
        ],
    );
    let no_options: BTreeMap<String, Option<String>> = BTreeMap::new();
    let configurations: Vec<Option<BTreeMap<String, Option<String>>>> = metas
        .iter()
        .map(|m| m.map(|m| m.configuration.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect()))
        .collect();
    let meta_data = structure(
        &pick(|a| matches!(a, Action::Metadata(_))),
        vec![
            ("id", strings(metas.iter().map(|m| m.map(|m| m.id.as_str())))),
            ("name", strings(metas.iter().map(|_| None))),
            ("description", strings(metas.iter().map(|_| None))),
            (
                "format",
                structure(
                    &pick(|a| matches!(a, Action::Metadata(_))),
                    vec![
                        ("provider", strings(metas.iter().map(|m| m.map(|m| m.format.provider.as_str())))),
                        ("options", map(metas.iter().map(|m| m.map(|_| &no_options)))),
                    ],
                ),
            ),
            ("schemaString", strings(metas.iter().map(|m| m.map(|m| m.schema_string.as_str())))),
            ("partitionColumns", list(metas.iter().map(|m| m.map(|m| &m.partition_columns[..])))),
            ("createdTime", longs(metas.iter().map(|m| m.and_then(|m| m.created_time)))),
            ("configuration", map(configurations.iter().map(Option::as_ref))),
        ],
    );
    let protocol = structure(
        &pick(|a| matches!(a, Action::Protocol(_))),
        vec![
            (
                "minReaderVersion",
                Arc::new(protocols.iter().map(|p| p.map(|p| p.min_reader_version)).collect::<Int32Array>()),
            ),
            (
                "minWriterVersion",
                Arc::new(protocols.iter().map(|p| p.map(|p| p.min_writer_version)).collect::<Int32Array>()),
            ),
        ],
    );
    let columns = [("txn", txn), ("add", add), ("remove", remove), ("metaData", meta_data), ("protocol", protocol)];
    let schema = Schema::new(
        columns.iter().map(|(name, array)| Field::new(*name, array.data_type().clone(), true)).collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect())
        .map_err(|e| parquet::errors::ParquetError::General(e.to_string()))?;
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties))?;
    writer.write(&batch)?;
    writer.into_inner()
}

/// The actions of a checkpoint, as [`encode`] writes them (or another writer of the "V1 Spec",
/// with the same columns and types): one per row, from the struct column that is not null.
pub fn decode(bytes: Vec<u8>) -> Result<Vec<Action>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    let mut actions = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let column = |name: &str| batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StructArray>());
        let (txn, add, remove) = (column("txn"), column("add"), column("remove"));
        let (meta_data, protocol) = (column("metaData"), column("protocol"));
        for row in 0..batch.num_rows() {
            fn valid(s: Option<&StructArray>, row: usize) -> Option<&StructArray> {
                s.filter(|s| s.is_valid(row))
            }
            let action = if let Some(s) = valid(txn, row) {
                Action::Txn(Txn {
                    app_id: string(s, "appId", row)?,
                    version: long(s, "version", row)?,
                    last_updated: optional_long(s, "lastUpdated", row),
                })
            } else if let Some(s) = valid(add, row) {
                Action::Add(Add {
                    path: string(s, "path", row)?,
                    partition_values: entries(child(s, "partitionValues")?, row),
                    size: long(s, "size", row)?,
                    modification_time: long(s, "modificationTime", row)?,
                    data_change: child::<BooleanArray>(s, "dataChange")?.value(row),
                    stats: optional_string(s, "stats", row),
                })
            } else if let Some(s) = valid(remove, row) {
                Action::Remove(Remove {
                    path: string(s, "path", row)?,
                    deletion_timestamp: optional_long(s, "deletionTimestamp", row),
                    data_change: child::<BooleanArray>(s, "dataChange")?.value(row),
                    extended_file_metadata: child::<BooleanArray>(s, "extendedFileMetadata")
                        .ok()
                        .and_then(|a| a.is_valid(row).then(|| a.value(row))),
                    partition_values: child::<MapArray>(s, "partitionValues")
                        .ok()
                        .filter(|a| a.is_valid(row))
                        .map(|a| entries(a, row)),
                    size: optional_long(s, "size", row),
                })
            } else if let Some(s) = valid(meta_data, row) {
                let format = child::<StructArray>(s, "format")?;
                let partition_columns = child::<ListArray>(s, "partitionColumns")?.value(row);
                let partition_columns = partition_columns
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or("metaData.partitionColumns is not a list of strings")?;
                Action::Metadata(Metadata {
                    id: string(s, "id", row)?,
                    format: Format {
                        provider: string(format, "provider", row)?,
                        options: child::<MapArray>(format, "options")
                            .map(|a| entries(a, row).into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
                            .unwrap_or_default(),
                    },
                    schema_string: string(s, "schemaString", row)?,
                    partition_columns: partition_columns.iter().flatten().map(str::to_string).collect(),
                    created_time: optional_long(s, "createdTime", row),
                    configuration: entries(child(s, "configuration")?, row)
                        .into_iter()
                        .filter_map(|(k, v)| Some((k, v?)))
                        .collect(),
                })
            } else if let Some(s) = valid(protocol, row) {
                Action::Protocol(Protocol {
                    min_reader_version: child::<Int32Array>(s, "minReaderVersion")?.value(row),
                    min_writer_version: child::<Int32Array>(s, "minWriterVersion")?.value(row),
                })
            } else {
                continue;
            };
            actions.push(action);
        }
    }
    Ok(actions)
}

/// The child column `name` of a struct column, of type `T`.
fn child<'a, T: 'static>(s: &'a StructArray, name: &str) -> Result<&'a T, String> {
    s.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("the checkpoint has no column `{name}` of the expected type"))
}

fn string(s: &StructArray, name: &str, row: usize) -> Result<String, String> {
    optional_string(s, name, row).ok_or_else(|| format!("the checkpoint's `{name}` is null in row {row}"))
}

fn optional_string(s: &StructArray, name: &str, row: usize) -> Option<String> {
    child::<StringArray>(s, name).ok().filter(|a| a.is_valid(row)).map(|a| a.value(row).to_string())
}

fn long(s: &StructArray, name: &str, row: usize) -> Result<i64, String> {
    optional_long(s, name, row).ok_or_else(|| format!("the checkpoint's `{name}` is null in row {row}"))
}

fn optional_long(s: &StructArray, name: &str, row: usize) -> Option<i64> {
    child::<Int64Array>(s, name).ok().filter(|a| a.is_valid(row)).map(|a| a.value(row))
}

/// The entries of row `row` of a `map<string,string>` column.
fn entries(map: &MapArray, row: usize) -> BTreeMap<String, Option<String>> {
    let entries = map.value(row);
    let keys = entries.column(0).as_any().downcast_ref::<StringArray>();
    let values = entries.column(1).as_any().downcast_ref::<StringArray>();
    match (keys, values) {
        (Some(keys), Some(values)) => (0..keys.len())
            .map(|i| (keys.value(i).to_string(), values.is_valid(i).then(|| values.value(i).to_string())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A struct column, null where `valid` is false; every child nullable.
fn structure(valid: &[bool], children: Vec<(&str, ArrayRef)>) -> ArrayRef {
    let fields: Fields = children
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect::<Vec<_>>()
        .into();
    let arrays = children.into_iter().map(|(_, a)| a).collect();
    Arc::new(StructArray::new(fields, arrays, Some(valid.iter().copied().collect())))
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn longs(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.collect::<Int64Array>())
}

fn booleans(values: impl Iterator<Item = Option<bool>>) -> ArrayRef {
    Arc::new(values.collect::<BooleanArray>())
}

fn list<'a>(values: impl Iterator<Item = Option<&'a [String]>>) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for value in values {
        match value {
            Some(items) => {
                for item in items {
                    builder.values().append_value(item);
                }
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    Arc::new(builder.finish())
}

/// `map<string,string>` ("partitionValues: map<string,string>"), entries named as Parquet's
/// MAP logical type has them (`key_value`, `key`, `value`).
fn map<'a>(values: impl Iterator<Item = Option<&'a BTreeMap<String, Option<String>>>>) -> ArrayRef {
    let names = MapFieldNames { entry: "key_value".into(), key: "key".into(), value: "value".into() };
    let mut builder = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for value in values {
        match value {
            Some(entries) => {
                for (key, value) in entries {
                    builder.keys().append_value(key);
                    builder.values().append_option(value.as_deref());
                }
                builder.append(true).expect("keys and values are appended in pairs");
            }
            None => builder.append(false).expect("keys and values are appended in pairs"),
        }
    }
    Arc::new(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::log::{Add, Format, Metadata, Protocol, Txn};

    /// What a checkpoint holds reads back as the snapshot it was made of: files with their
    /// partition values and statistics, tombstones, transaction versions, metadata, protocol.
    #[test]
    fn a_checkpoint_reads_back_as_its_snapshot() {
        use crate::delta::log::{Remove, Snapshot};
        let add = |path: &str, stats: Option<&str>| Add {
            path: path.into(),
            partition_values: BTreeMap::from([("date".into(), Some("2026-01-01".into())), ("hour".into(), None)]),
            size: 30,
            modification_time: 40,
            data_change: true,
            stats: stats.map(str::to_string),
        };
        let entries = vec![
            Action::Protocol(Protocol { min_reader_version: 1, min_writer_version: 2 }),
            Action::Metadata(Metadata {
                id: "id".into(),
                format: Format { provider: "parquet".into(), options: BTreeMap::new() },
                schema_string: "{\"type\":\"struct\"}".into(),
                partition_columns: vec!["date".into(), "hour".into()],
                created_time: Some(1),
                configuration: BTreeMap::from([("weather.topic".into(), "weather".into())]),
            }),
            Action::Txn(Txn { app_id: "weather-archive:weather:0".into(), version: 90, last_updated: Some(5) }),
            Action::Add(add("a.parquet", Some("{\"numRecords\":3}"))),
            Action::Add(add("b.parquet", None)),
        ];
        let mut snapshot = Snapshot::default();
        snapshot.apply(0, &entries);
        snapshot.apply(1, &[Action::Remove(Remove::of(&add("a.parquet", None), false, 50))]);
        let decoded = decode(encode(&snapshot.checkpoint_actions(0)).unwrap()).unwrap();
        assert_eq!(Snapshot::from_checkpoint(1, &decoded), snapshot);
    }

    /// A checkpoint holds one row per action, in its own struct column, the others null.
    #[test]
    fn a_checkpoint_has_a_row_per_action() {
        let actions = vec![
            Action::Protocol(Protocol { min_reader_version: 1, min_writer_version: 2 }),
            Action::Metadata(Metadata {
                id: "id".into(),
                format: Format { provider: "parquet".into(), options: BTreeMap::new() },
                schema_string: "{}".into(),
                partition_columns: vec!["date".into()],
                created_time: Some(1),
                configuration: BTreeMap::new(),
            }),
            Action::Txn(Txn { app_id: "a".into(), version: 9, last_updated: None }),
            Action::Add(Add {
                path: "x.parquet".into(),
                partition_values: BTreeMap::from([("date".into(), Some("2026-01-01".into()))]),
                size: 3,
                modification_time: 4,
                data_change: true,
                stats: Some("{}".into()),
            }),
        ];
        let bytes = encode(&actions).unwrap();
        let batch = crate::columns::batches(bytes).unwrap().remove(0);
        assert_eq!(batch.num_rows(), 4);
        let valid = |name: &str| -> Vec<bool> {
            let column = batch.column_by_name(name).unwrap();
            (0..4).map(|i| column.is_valid(i)).collect()
        };
        assert_eq!(valid("protocol"), [true, false, false, false]);
        assert_eq!(valid("metaData"), [false, true, false, false]);
        assert_eq!(valid("txn"), [false, false, true, false]);
        assert_eq!(valid("add"), [false, false, false, true]);
        assert_eq!(valid("remove"), [false, false, false, false]);
    }
}
