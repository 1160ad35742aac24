//! The CSV format of version 2: a header, then one row per window.

use super::RowFormat;
use crate::rules::Rules;
use crate::window::WindowSummary;

pub struct Csv {
    rules: Rules,
    /// The header or row being formatted, reused.
    text: Vec<u8>,
}

impl Csv {
    pub fn new(rules: Rules) -> Csv {
        Csv { rules, text: Vec::new() }
    }
}

impl RowFormat for Csv {
    fn header(&mut self) -> &[u8] {
        let sensor = self.rules.sensor_column.then_some("sensor_id");
        let columns = [self.rules.window.id_column(), "avg_temp", "avg_co", "avg_humidity"];
        let names: Vec<&str> = sensor.into_iter().chain(columns).collect();
        self.text = format!("{}\n", names.join(",")).into_bytes();
        &self.text
    }

    /// The window's values (see [`super::row`]), none of which needs quoting, on a line.
    fn row(&mut self, w: &WindowSummary) -> &[u8] {
        super::row(&mut self.text, &self.rules, w, b'\n')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Format;
    use crate::sink::{render, rules, week};
    use crate::units::Unit;
    use crate::window::WindowSize;

    /// The exact bytes of version 2's file: header, then weekly Fahrenheit rows.
    #[test]
    fn walkthrough_bytes() {
        let layout = rules(WindowSize::WEEK, Unit::Fahrenheit, Format::Csv, false);
        // 20.333.. °C is 68.6 °F (not the walkthrough's 68.60000000000001); -0.1 °C is 31.82 °F
        let text = render(Csv::new(layout), &[week("sensor-1", 1, 1423, 4900, 350), week("sensor-1", 2, -7, 357, 11)]);
        assert_eq!(text, "week_id,avg_temp,avg_co,avg_humidity\n1,68.6,700,50\n2,31.8,51,2\n");
    }

    /// With several sensors the first column is the sensor id.
    #[test]
    fn sensor_column_first() {
        let layout = rules(WindowSize::MONTH, Unit::Celsius, Format::Csv, true);
        let month = WindowSummary { readings: 30, ..week("sensor-3", 4, -30, 1500, 3000) };
        assert_eq!(
            render(Csv::new(layout), &[month]),
            "sensor_id,month_id,avg_temp,avg_co,avg_humidity\nsensor-3,4,-0.1,50,100\n"
        );
    }

    /// Other window sizes get a neutral id column.
    #[test]
    fn custom_window_column() {
        let layout = rules(WindowSize::days(10).unwrap(), Unit::Celsius, Format::Csv, false);
        assert_eq!(render(Csv::new(layout), &[]), "window_id,avg_temp,avg_co,avg_humidity\n");
    }
}
