//! The table as CSV, sorted by sensor and window, in the columns of the consumer's CSV with
//! `--sensor-column` for the same window length, numbers written alike: a consumer's file
//! and the report of its topic compare row for row.

use anyhow::bail;
use weather_common::aggregate::id_column;

use crate::summary::Report;

/// The CSV of the report's one window length (and unit).
pub fn render(report: &Report) -> anyhow::Result<Vec<u8>> {
    let section = match report.sections.as_slice() {
        [section] => section,
        [] => bail!("--csv: `{}` holds no window to write", report.topic),
        sections => {
            let mut lengths: Vec<u32> = sections.iter().map(|s| s.window_days).collect();
            lengths.dedup();
            if lengths.len() > 1 {
                let listed: Vec<String> = lengths.iter().map(u32::to_string).collect();
                bail!(
                    "--csv writes one window length, and `{}` holds windows of {} days: choose one with \
                     --window-days (e.g. --window-days {})",
                    report.topic,
                    listed.join(", "),
                    lengths[0]
                );
            }
            bail!(
                "--csv: the {}-day windows of `{}` are in both °C and °F (a replay under other rules has not \
                 finished, or two consumers with other units write to the topic); the CSV would mix them",
                lengths[0],
                report.topic
            );
        }
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["sensor_id", id_column(section.window_days), "avg_temp", "avg_co", "avg_humidity"])?;
    for series in &section.sensors {
        for w in &series.windows {
            let (id, co, humidity) = (w.window_id.to_string(), w.avg_co.to_string(), w.avg_humidity.to_string());
            writer.write_record([&series.sensor_id, &id, &w.avg_temp.to_string(), &co, &humidity])?;
        }
    }
    Ok(writer.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Read;
    use crate::table::tests::{month, week};
    use crate::table::Table;
    use weather_common::aggregate::Aggregate;
    use weather_common::units::Unit;

    fn report(rows: &[Aggregate], only: Option<u32>) -> Report {
        let mut table = Table::default();
        for (i, a) in rows.iter().enumerate() {
            table.apply(0, i as i64, Some(&a.key.to_json()), Some(&a.to_json()));
        }
        Report::new("agg", Read::default(), table, only)
    }

    /// The consumer's CSV with --sensor-column, byte for byte: the header, then rows by sensor
    /// and window, temperatures with one decimal.
    #[test]
    fn the_consumers_columns_and_numbers() {
        let rows = [week("sensor-2", 1, -5), week("sensor-1", 2, 686), week("sensor-1", 1, 0)];
        let text = String::from_utf8(render(&report(&rows, None)).unwrap()).unwrap();
        assert_eq!(
            text,
            "sensor_id,week_id,avg_temp,avg_co,avg_humidity\nsensor-1,1,0.0,700,50\nsensor-1,2,68.6,700,50\nsensor-2,1,-0.5,700,50\n"
        );
    }

    /// Several window lengths need --window-days; mixed units are refused.
    #[test]
    fn one_window_length_and_unit() {
        let month = month("sensor-1");
        let both = [week("sensor-1", 1, 0), month.clone()];
        let err = render(&report(&both, None)).unwrap_err().to_string();
        assert!(err.contains("windows of 7, 30 days") && err.contains("--window-days 7"), "{err}");
        let text = String::from_utf8(render(&report(&both, Some(30))).unwrap()).unwrap();
        assert_eq!(text, "sensor_id,month_id,avg_temp,avg_co,avg_humidity\nsensor-1,1,0.0,700,50\n");
        let mixed = [week("sensor-1", 1, 0), Aggregate { unit: Unit::Fahrenheit, ..week("sensor-1", 2, 0) }];
        let err = render(&report(&mixed, None)).unwrap_err().to_string();
        assert!(err.contains("both °C and °F"), "{err}");
        assert!(render(&report(&[], None)).unwrap_err().to_string().contains("no window"));
    }
}
