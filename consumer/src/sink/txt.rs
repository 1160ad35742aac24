//! The walkthrough's text format: everything on one line, each window contributing
//! `id,avg_temp,avg_co,avg_humidity,` (every value followed by a comma), no header.

use std::io;

use super::{Layout, RowFormat};
use crate::units::Tenths;
use crate::window::WindowSummary;

pub struct Txt(pub Layout);

impl RowFormat for Txt {
    fn write_header(&self, _out: &mut dyn io::Write) -> io::Result<()> {
        Ok(())
    }

    fn write_row(&self, out: &mut dyn io::Write, w: &WindowSummary) -> io::Result<()> {
        let a = w.averages(self.0.unit);
        if self.0.sensor_column {
            write!(out, "{},", w.sensor_id)?;
        }
        write!(out, "{},{},{},{},", w.window_id, Tenths(a.temperature_tenths), a.co_concentration, a.humidity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::week;
    use crate::units::Unit;
    use crate::window::WindowSize;

    fn render(layout: Layout, windows: &[WindowSummary]) -> String {
        let txt = Txt(layout);
        let mut out = Vec::new();
        txt.write_header(&mut out).unwrap();
        for w in windows {
            txt.write_row(&mut out, w).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    /// The exact bytes of the walkthrough's file: one line, a comma after every value.
    #[test]
    fn walkthrough_bytes() {
        let layout = Layout { size: WindowSize::MONTH, unit: Unit::Celsius, sensor_column: false };
        let month = |id, t, co, h| WindowSummary { readings: 30, ..week("sensor-1", id, t, co, h) };
        let text = render(layout, &[month(1, 203 * 30, 702 * 30, 55 * 30), month(2, 189 * 30 - 1, 688 * 30, 61 * 30)]);
        assert_eq!(text, "1,20.3,702,55,2,18.9,688,61,");
    }

    /// With several sensors every group starts with the sensor id.
    #[test]
    fn sensor_column_leads_each_group() {
        let layout = Layout { size: WindowSize::WEEK, unit: Unit::Fahrenheit, sensor_column: true };
        let text = render(layout, &[week("sensor-2", 1, 200 * 7, 700, 70), week("sensor-1", 1, -100 * 7, 350, 7)]);
        assert_eq!(text, "sensor-2,1,68.0,100,10,sensor-1,1,14.0,50,1,");
    }
}
