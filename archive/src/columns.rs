//! The rows of one file, kept as they arrive and made columns when the file is encoded, and
//! their Parquet form: the schema every file of the lake shares, Snappy-compressed, one row
//! group per file (a file holds at most `--max-rows` rows), statistics on every column so that
//! readers skip what a query does not need.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use weather_common::sensor_ids::SensorIds;
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

/// A file's rows as they arrive: fixed-size, in chunks that are never copied as the file
/// grows, each naming its sensor by its place in the file's list of sensors. The columns are
/// built from them when the file is encoded, off the loop that reads.
#[derive(Default)]
pub struct Rows {
    sensors: SensorIds,
    chunks: Vec<Vec<Row>>,
    len: usize,
}

struct Row {
    record_id: i64,
    event_ms: i64,
    offset: i64,
    temperature_tenths: i32,
    co_concentration: i32,
    humidity: i32,
    partition: i32,
    sensor: u32,
}

/// Rows in a full chunk: 384 KiB.
const CHUNK: usize = 8_192;

impl Rows {
    /// Adds `reading`, stored in `partition` at `offset`, stamped `event_ms`.
    pub fn push(&mut self, reading: &Reading<'_>, event_ms: i64, partition: i32, offset: i64) {
        let sensor = self.place_of(&reading.sensor_id);
        if self.chunks.last().is_none_or(|chunk| chunk.len() == chunk.capacity()) {
            // 1,024 rows, then as many as the file holds, up to a full chunk.
            self.chunks.push(Vec::with_capacity(self.len.clamp(1_024, CHUNK)));
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        chunk.push(Row {
            record_id: reading.record_id as i64,
            event_ms,
            offset,
            temperature_tenths: reading.temperature_tenths,
            co_concentration: reading.co_concentration as i32,
            humidity: reading.humidity as i32,
            partition,
            sensor,
        });
        self.len += 1;
    }

    /// The sensor's place in the file's list; a partition's readings mostly come from the
    /// sensor of the row before.
    fn place_of(&mut self, sensor_id: &str) -> u32 {
        match self.chunks.last().and_then(|chunk| chunk.last()) {
            Some(last) if self.sensors.id(last.sensor) == sensor_id => last.sensor,
            _ => self.sensors.place(sensor_id),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows as a batch of the lake's schema.
    pub fn finish(self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let rows = || self.chunks.iter().flatten();
        let bytes = rows().map(|row| self.sensors.id(row.sensor).len()).sum();
        let mut sensor_id = StringBuilder::with_capacity(self.len, bytes);
        for row in rows() {
            sensor_id.append_value(self.sensors.id(row.sensor));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(sensor_id.finish()),
            Arc::new(Int64Array::from_iter_values(rows().map(|row| row.record_id))),
            Arc::new(Float64Array::from_iter_values(rows().map(|row| f64::from(row.temperature_tenths) / 10.0))),
            Arc::new(Int32Array::from_iter_values(rows().map(|row| row.co_concentration))),
            Arc::new(Int32Array::from_iter_values(rows().map(|row| row.humidity))),
            Arc::new(TimestampMillisecondArray::from_iter_values(rows().map(|row| row.event_ms)).with_timezone("UTC")),
            Arc::new(Int32Array::from_iter_values(rows().map(|row| row.partition))),
            Arc::new(Int64Array::from_iter_values(rows().map(|row| row.offset))),
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
    // them, by callgrind; see docs/performance.md). They rise in steps instead, and so does
    // the partition (which never changes in a file): as differences from value to value
    // (delta binary packed) they take a few bits each, where Snappy left several bytes. The
    // lake is a third of the size for the same CPU.
    let stepping = ["record_id", "event_time", "offset", "partition"].map(ColumnPath::from);
    let properties = stepping
        .into_iter()
        .fold(WriterProperties::builder(), |builder, column| {
            builder
                .set_column_dictionary_enabled(column.clone(), false)
                .set_column_encoding(column, Encoding::DELTA_BINARY_PACKED)
        })
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
            let mut rows = Rows::default();
            rows.push(&reading("sensor-1", 1, 203), 1_000, 2, 40);
            rows.push(&reading("sensor-2", 9, -15), 2_000, 2, 41);
            rows
        };
        let bytes = encode(&fill().finish().unwrap()).unwrap();
        assert_eq!(bytes, encode(&fill().finish().unwrap()).unwrap());
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

    /// Rows come out in the order they went in, across chunks (the first ones smaller) and
    /// with each row's own sensor, whichever sensor the row before came from.
    #[test]
    fn rows_keep_their_order_and_sensor_across_chunks() {
        let n = 3 * CHUNK + 17;
        let sensor = |i: usize| match i % 5 {
            0 | 1 => "sensor-a".to_string(),
            2 => format!("sensor-{}", i / 1000),
            _ => "sensor-b".to_string(),
        };
        let mut rows = Rows::default();
        for i in 0..n {
            rows.push(&reading(&sensor(i), i as u64, i as i32 % 400 - 200), 1_000 + i as i64, 3, 40 + i as i64);
        }
        assert_eq!(rows.len(), n);
        let batch = rows.finish().unwrap();
        assert_eq!(batch.num_rows(), n);
        let strings = batch.column(0).as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        let longs = |c: usize| batch.column(c).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec();
        let temperature = batch.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..n {
            assert_eq!(strings.value(i), sensor(i), "row {i}");
            assert_eq!(temperature.value(i), f64::from(i as i32 % 400 - 200) / 10.0, "row {i}");
        }
        assert_eq!(longs(1), (0..n as i64).collect::<Vec<_>>());
        assert_eq!(longs(7), (40..40 + n as i64).collect::<Vec<_>>());
    }

    /// Offsets, days, stamps and the partition, which step up (or stay) from row to row, are
    /// written as differences, without a dictionary (hashing each value for nothing); the
    /// sensor id, which repeats, with one.
    #[test]
    fn only_repeating_columns_have_a_dictionary() {
        let mut rows = Rows::default();
        for i in 0..64 {
            rows.push(&reading("sensor-1", i + 1, 203), 1_000 + i as i64, 2, 40 + i as i64);
        }
        let file = SerializedFileReader::new(bytes::Bytes::from(encode(&rows.finish().unwrap()).unwrap())).unwrap();
        let group = file.metadata().row_group(0);
        let dictionary = |i: usize| group.column(i).dictionary_page_offset().is_some();
        assert!(dictionary(0), "sensor_id");
        for (i, name) in [(1, "record_id"), (5, "event_time"), (6, "partition"), (7, "offset")] {
            assert!(!dictionary(i), "{name} has a dictionary");
            let encodings: Vec<Encoding> = group.column(i).encodings().collect();
            assert!(encodings.contains(&Encoding::DELTA_BINARY_PACKED), "{name}: {encodings:?}");
        }
    }
}
