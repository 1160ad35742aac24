//! The walkthrough's text format: everything on one line, each window contributing
//! `id,avg_temp,avg_co,avg_humidity,` (every value followed by a comma), no header.

use super::RowFormat;
use crate::rules::Rules;
use crate::window::WindowSummary;

pub struct Txt {
    rules: Rules,
    /// The row being formatted, reused.
    text: Vec<u8>,
}

impl Txt {
    pub fn new(rules: Rules) -> Txt {
        Txt { rules, text: Vec::new() }
    }
}

impl RowFormat for Txt {
    fn header(&mut self) -> &[u8] {
        &[]
    }

    /// The window's values (see [`super::row`]), each followed by a comma.
    fn row(&mut self, w: &WindowSummary) -> &[u8] {
        super::row(&mut self.text, &self.rules, w, b',')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Format;
    use crate::sink::{render, rules, week};
    use crate::units::Unit;
    use crate::window::WindowSize;

    /// The exact bytes of the walkthrough's file: one line, a comma after every value.
    #[test]
    fn walkthrough_bytes() {
        let layout = rules(WindowSize::MONTH, Unit::Celsius, Format::Txt, false);
        let month = |id, t, co, h| WindowSummary { readings: 30, ..week("sensor-1", id, t, co, h) };
        let text = render(
            Txt::new(layout),
            &[month(1, 203 * 30, 702 * 30, 55 * 30), month(2, 189 * 30 - 1, 688 * 30, 61 * 30)],
        );
        assert_eq!(text, "1,20.3,702,55,2,18.9,688,61,");
    }

    /// With several sensors every group starts with the sensor id.
    #[test]
    fn sensor_column_leads_each_group() {
        let layout = rules(WindowSize::WEEK, Unit::Fahrenheit, Format::Txt, true);
        let text =
            render(Txt::new(layout), &[week("sensor-2", 1, 200 * 7, 700, 70), week("sensor-1", 1, -100 * 7, 350, 7)]);
        assert_eq!(text, "sensor-2,1,68.0,100,10,sensor-1,1,14.0,50,1,");
    }
}
