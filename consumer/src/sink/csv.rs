//! The CSV format of version 2: a header, then one row per window.

use std::io;

use super::{Layout, RowFormat};
use crate::units::Tenths;
use crate::window::WindowSummary;

pub struct Csv(pub Layout);

impl Csv {
    fn writer<'a>(&self, out: &'a mut dyn io::Write) -> csv::Writer<&'a mut dyn io::Write> {
        csv::WriterBuilder::new().buffer_capacity(256).from_writer(out)
    }
}

impl RowFormat for Csv {
    fn write_header(&self, out: &mut dyn io::Write) -> io::Result<()> {
        let mut header = vec![self.0.size.id_column(), "avg_temp", "avg_co", "avg_humidity"];
        if self.0.sensor_column {
            header.insert(0, "sensor_id");
        }
        let mut writer = self.writer(out);
        writer.write_record(&header)?;
        writer.flush()
    }

    fn write_row(&self, out: &mut dyn io::Write, w: &WindowSummary) -> io::Result<()> {
        let a = w.averages(self.0.unit);
        let values = [
            w.window_id.to_string(),
            Tenths(a.temperature_tenths).to_string(),
            a.co_concentration.to_string(),
            a.humidity.to_string(),
        ];
        let mut writer = self.writer(out);
        if self.0.sensor_column {
            writer.write_field(&w.sensor_id)?;
        }
        writer.write_record(&values)?;
        writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::week;
    use crate::units::Unit;
    use crate::window::WindowSize;

    fn render(layout: Layout, windows: &[WindowSummary]) -> String {
        let csv = Csv(layout);
        let mut out = Vec::new();
        csv.write_header(&mut out).unwrap();
        for w in windows {
            csv.write_row(&mut out, w).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    /// The exact bytes of version 2's file: header, then weekly Fahrenheit rows.
    #[test]
    fn walkthrough_bytes() {
        let layout = Layout { size: WindowSize::WEEK, unit: Unit::Fahrenheit, sensor_column: false };
        // 20.333.. °C is 68.6 °F (not the walkthrough's 68.60000000000001); -0.1 °C is 31.82 °F
        let text = render(layout, &[week("sensor-1", 1, 1423, 4900, 350), week("sensor-1", 2, -7, 357, 11)]);
        assert_eq!(text, "week_id,avg_temp,avg_co,avg_humidity\n1,68.6,700,50\n2,31.8,51,2\n");
    }

    /// With several sensors the first column is the sensor id.
    #[test]
    fn sensor_column_first() {
        let layout = Layout { size: WindowSize::MONTH, unit: Unit::Celsius, sensor_column: true };
        let month = WindowSummary { readings: 30, ..week("sensor-3", 4, -30, 1500, 3000) };
        assert_eq!(
            render(layout, &[month]),
            "sensor_id,month_id,avg_temp,avg_co,avg_humidity\nsensor-3,4,-0.1,50,100\n"
        );
    }

    /// Other window sizes get a neutral id column.
    #[test]
    fn custom_window_column() {
        let layout = Layout { size: WindowSize::days(10).unwrap(), unit: Unit::Celsius, sensor_column: false };
        assert_eq!(render(layout, &[]), "window_id,avg_temp,avg_co,avg_humidity\n");
    }
}
