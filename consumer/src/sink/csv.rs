//! The CSV format of version 2: a header, then one row per window.

use std::fmt::Write as _;

use super::RowFormat;
use crate::rules::Rules;
use crate::units::Tenths;
use crate::window::WindowSummary;

pub struct Csv {
    rules: Rules,
    /// The header or row being formatted, reused.
    text: Vec<u8>,
    /// The temperature's text, reused.
    temperature: String,
}

impl Csv {
    pub fn new(rules: Rules) -> Csv {
        Csv { rules, text: Vec::new(), temperature: String::new() }
    }
}

/// `fields` as one CSV record, in `text`.
fn record<'a, 'f>(text: &'a mut Vec<u8>, fields: impl IntoIterator<Item = &'f [u8]>) -> &'a [u8] {
    text.clear();
    let mut writer = csv::WriterBuilder::new().buffer_capacity(256).from_writer(&mut *text);
    writer.write_record(fields).expect("writing into memory");
    writer.flush().expect("writing into memory");
    drop(writer);
    text
}

impl RowFormat for Csv {
    fn header(&mut self) -> &[u8] {
        let sensor = self.rules.sensor_column.then_some("sensor_id");
        let columns = [self.rules.window.id_column(), "avg_temp", "avg_co", "avg_humidity"];
        record(&mut self.text, sensor.into_iter().chain(columns).map(str::as_bytes))
    }

    fn row(&mut self, w: &WindowSummary) -> &[u8] {
        let a = w.averages(self.rules.unit);
        self.temperature.clear();
        write!(self.temperature, "{}", Tenths(a.temperature_tenths)).expect("formatting into memory");
        let (mut id, mut co, mut humidity) = (itoa::Buffer::new(), itoa::Buffer::new(), itoa::Buffer::new());
        let sensor = self.rules.sensor_column.then_some(w.sensor_id.as_str());
        let values =
            [id.format(w.window_id), &self.temperature, co.format(a.co_concentration), humidity.format(a.humidity)];
        record(&mut self.text, sensor.into_iter().chain(values).map(str::as_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{rules, week, Format};
    use crate::units::Unit;
    use crate::window::WindowSize;

    fn render(rules: Rules, windows: &[WindowSummary]) -> String {
        let mut csv = Csv::new(rules);
        let mut out = csv.header().to_vec();
        for w in windows {
            out.extend_from_slice(csv.row(w));
        }
        String::from_utf8(out).unwrap()
    }

    /// The exact bytes of version 2's file: header, then weekly Fahrenheit rows.
    #[test]
    fn walkthrough_bytes() {
        let layout = rules(WindowSize::WEEK, Unit::Fahrenheit, Format::Csv, false);
        // 20.333.. °C is 68.6 °F (not the walkthrough's 68.60000000000001); -0.1 °C is 31.82 °F
        let text = render(layout, &[week("sensor-1", 1, 1423, 4900, 350), week("sensor-1", 2, -7, 357, 11)]);
        assert_eq!(text, "week_id,avg_temp,avg_co,avg_humidity\n1,68.6,700,50\n2,31.8,51,2\n");
    }

    /// With several sensors the first column is the sensor id.
    #[test]
    fn sensor_column_first() {
        let layout = rules(WindowSize::MONTH, Unit::Celsius, Format::Csv, true);
        let month = WindowSummary { readings: 30, ..week("sensor-3", 4, -30, 1500, 3000) };
        assert_eq!(
            render(layout, &[month]),
            "sensor_id,month_id,avg_temp,avg_co,avg_humidity\nsensor-3,4,-0.1,50,100\n"
        );
    }

    /// Other window sizes get a neutral id column.
    #[test]
    fn custom_window_column() {
        let layout = rules(WindowSize::days(10).unwrap(), Unit::Celsius, Format::Csv, false);
        assert_eq!(render(layout, &[]), "window_id,avg_temp,avg_co,avg_humidity\n");
    }
}
