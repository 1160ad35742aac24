//! The rows of one file, built column by column as readings arrive, and their Parquet form:
//! the schema every file of the lake shares, Snappy-compressed, one row group per file (a file
//! holds at most `--max-rows` rows), statistics on every column so that readers skip what a
//! query does not need.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use weather_common::Reading;

/// The lake's schema: the reading as sent (°C), then where and when Kafka stored it.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("record_id", DataType::Int64, false),
        Field::new("temperature", DataType::Float64, false),
        Field::new("co_concentration", DataType::Int32, false),
        Field::new("humidity", DataType::Int32, false),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
    ]))
}

/// The rows of a file being filled.
pub struct Rows {
    sensor_id: StringBuilder,
    record_id: Int64Builder,
    temperature: Float64Builder,
    co_concentration: Int32Builder,
    humidity: Int32Builder,
    event_time: TimestampMillisecondBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    len: usize,
}

impl Rows {
    pub fn with_capacity(rows: usize) -> Rows {
        Rows {
            sensor_id: StringBuilder::with_capacity(rows, rows * 10),
            record_id: Int64Builder::with_capacity(rows),
            temperature: Float64Builder::with_capacity(rows),
            co_concentration: Int32Builder::with_capacity(rows),
            humidity: Int32Builder::with_capacity(rows),
            event_time: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            partition: Int32Builder::with_capacity(rows),
            offset: Int64Builder::with_capacity(rows),
            len: 0,
        }
    }

    /// Adds `reading`, stored in `partition` at `offset`, stamped `event_ms`.
    pub fn push(&mut self, reading: &Reading<'_>, event_ms: i64, partition: i32, offset: i64) {
        self.sensor_id.append_value(&reading.sensor_id);
        self.record_id.append_value(reading.record_id as i64);
        self.temperature.append_value(f64::from(reading.temperature_tenths) / 10.0);
        self.co_concentration.append_value(reading.co_concentration as i32);
        self.humidity.append_value(reading.humidity as i32);
        self.event_time.append_value(event_ms);
        self.partition.append_value(partition);
        self.offset.append_value(offset);
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows as one Parquet file. The same rows always give the same bytes.
    pub fn encode(self) -> Result<Vec<u8>, parquet::errors::ParquetError> {
        encode(&self.finish()?)
    }

    /// The rows as a batch of the lake's schema.
    pub fn finish(mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.sensor_id.finish()),
            Arc::new(self.record_id.finish()),
            Arc::new(self.temperature.finish()),
            Arc::new(self.co_concentration.finish()),
            Arc::new(self.humidity.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

/// A batch of the lake's schema as one Parquet file: Snappy, one row group, statistics on
/// every column. The same rows always give the same bytes.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let rows = batch.num_rows();
    // Dictionary encoding hashes every value, and pays only where values repeat: in a file's
    // offsets, days and stamps they hardly do (a tenth of the archive's CPU went to hashing
    // them, by callgrind; see docs/performance.md).
    let unique = ["record_id", "event_time", "offset"].map(ColumnPath::from);
    let properties = unique
        .into_iter()
        .fold(WriterProperties::builder(), |builder, column| builder.set_column_dictionary_enabled(column, false))
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(rows.max(1)))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::with_capacity(rows * 24), batch.schema(), Some(properties))?;
    writer.write(batch)?;
    writer.into_inner()
}

/// The rows of a Parquet file of the lake, as one batch.
pub fn decode(bytes: Vec<u8>) -> Result<RecordBatch, parquet::errors::ParquetError> {
    Ok(arrow_select::concat::concat_batches(&schema(), &batches(bytes)?)?)
}

/// The rows of any Parquet file (the lake's, a table checkpoint), in batches of the file's own
/// schema.
pub fn batches(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?
        .with_batch_size(1 << 20)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    fn reading(sensor: &str, record_id: u64, tenths: i32) -> Reading<'static> {
        Reading {
            sensor_id: sensor.to_string().into(),
            record_id,
            temperature_tenths: tenths,
            co_concentration: 700,
            humidity: 55,
        }
    }

    /// A file holds its rows in order with the lake's schema, in one Snappy row group with
    /// statistics; the same rows give the same bytes.
    #[test]
    fn rows_encode_as_one_row_group_with_statistics() {
        let fill = || {
            let mut rows = Rows::with_capacity(4);
            rows.push(&reading("sensor-1", 1, 203), 1_000, 2, 40);
            rows.push(&reading("sensor-2", 9, -15), 2_000, 2, 41);
            rows
        };
        let bytes = fill().encode().unwrap();
        assert_eq!(bytes, fill().encode().unwrap());
        let file = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).unwrap();
        let meta = file.metadata();
        assert_eq!((meta.num_row_groups(), meta.file_metadata().num_rows()), (1, 2));
        let column = meta.row_group(0).column(7);
        assert_eq!(column.compression(), Compression::SNAPPY);
        let stats = column.statistics().expect("offset statistics");
        assert_eq!(
            (stats.min_bytes_opt(), stats.max_bytes_opt()),
            (Some(&40i64.to_le_bytes()[..]), Some(&41i64.to_le_bytes()[..]))
        );
        let batch = batches(bytes).unwrap().remove(0);
        assert_eq!(batch.schema(), schema());
        let temperature = batch.column(2).as_any().downcast_ref::<arrow_array::Float64Array>().unwrap();
        assert_eq!(temperature.values(), &[20.3, -1.5]);
    }

    /// Offsets, days and stamps, which hardly repeat in a file, are written without a
    /// dictionary (hashing each value for nothing); the sensor id, which repeats, with one.
    #[test]
    fn only_repeating_columns_have_a_dictionary() {
        let mut rows = Rows::with_capacity(64);
        for i in 0..64 {
            rows.push(&reading("sensor-1", i + 1, 203), 1_000 + i as i64, 2, 40 + i as i64);
        }
        let file = SerializedFileReader::new(bytes::Bytes::from(rows.encode().unwrap())).unwrap();
        let group = file.metadata().row_group(0);
        let dictionary = |i: usize| group.column(i).dictionary_page_offset().is_some();
        assert!(dictionary(0), "sensor_id");
        for (i, name) in [(1, "record_id"), (5, "event_time"), (7, "offset")] {
            assert!(!dictionary(i), "{name} has a dictionary");
        }
    }
}
