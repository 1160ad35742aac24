//! A snapshot as a classic checkpoint (`<version>.checkpoint.parquet`, "V1 Spec"): one row per
//! action, each action a struct column (`txn`, `add`, `remove`, `metaData`, `protocol`), the
//! other columns of its row null ("All of these actions are stored as their individual columns
//! in parquet as struct fields. Any missing column should be treated as null"). Readers start
//! from the newest checkpoint instead of replaying every entry before it. Pure: actions in,
//! Parquet bytes out.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, MapBuilder, MapFieldNames, StringBuilder};
use arrow_array::{Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::log::Action;

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
