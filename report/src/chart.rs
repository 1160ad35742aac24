//! One chart as inline SVG, drawn by plotters: an average over the window ids of one sensor,
//! or of several to compare them (a color each, and a legend), one line per run of consecutive
//! windows (so a missing window shows as a break), a dot for a window alone.

use std::ops::{Range, RangeInclusive};

use anyhow::anyhow;
use plotters::prelude::*;

/// What one chart shows.
pub struct Chart {
    /// Width and height in pixels (the page scales it down to fit).
    pub size: (u32, u32),
    /// The window ids the x axis spans: a sensor's own, so that a short series fills its chart.
    pub x: RangeInclusive<u64>,
    /// The values the y axis spans.
    pub y: Range<f64>,
    pub x_desc: String,
    pub y_desc: String,
    /// Decimals of the y axis labels.
    pub y_decimals: usize,
    pub lines: Vec<Line>,
}

/// One sensor's values on a chart.
pub struct Line {
    /// Its name in the legend; a chart whose lines have none has no legend.
    pub label: Option<String>,
    pub color: RGBColor,
    /// Runs of consecutive windows: (window id, value).
    pub runs: Vec<Vec<(u64, f64)>>,
}

/// Colors told apart at a glance (Tableau 10), for the lines of a comparison.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The y range of values from `min` to `max`, with a margin so that no line runs along an
/// edge of the chart.
pub fn y_range(min: f64, max: f64) -> Range<f64> {
    let margin = ((max - min) * 0.08).max(0.5);
    min - margin..max + margin
}

impl Chart {
    /// The chart as an `<svg>` element.
    pub fn svg(&self) -> anyhow::Result<String> {
        let mut svg = String::new();
        self.draw(&mut svg).map_err(|e| anyhow!("drawing a chart: {e}"))?;
        Ok(svg)
    }

    fn draw(&self, svg: &mut String) -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(svg, self.size).into_drawing_area();
        root.fill(&WHITE)?;
        // A single window still gets an axis of some width.
        let (first, last) = (*self.x.start(), (*self.x.end()).max(*self.x.start() + 1));
        let small = self.size.1 < 240;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(if small { 34 } else { 40 })
            .y_label_area_size(if small { 52 } else { 60 })
            .build_cartesian_2d(first..last, self.y.clone())?;
        let y_label = |v: &f64| format!("{v:.*}", self.y_decimals);
        // plotters' SVG text comes out at 1/1.24 of the size asked for: 15 is about 12 px.
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .x_labels(if small { 6 } else { 12 })
            .y_labels(if small { 5 } else { 8 })
            .y_label_formatter(&y_label)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()?;
        for line in &self.lines {
            let mut labelled = line.label.is_none();
            for run in &line.runs {
                let drawn = match run.as_slice() {
                    [single] => chart.draw_series(std::iter::once(Circle::new(*single, 3, line.color.filled())))?,
                    points => chart.draw_series(LineSeries::new(points.iter().copied(), line.color.stroke_width(2)))?,
                };
                // Once per sensor in the legend, however many runs its line has.
                if let (false, Some(label)) = (labelled, &line.label) {
                    let color = line.color;
                    drawn
                        .label(label)
                        .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], color.filled()));
                    labelled = true;
                }
            }
        }
        if self.lines.iter().any(|l| l.label.is_some()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .draw()?;
        }
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chart of avg_temp (°F) by week over weeks 1 to 10, `size` big, from `low` to `high`.
    fn weeks(size: (u32, u32), (low, high): (f64, f64), lines: Vec<Line>) -> Chart {
        Chart {
            size,
            x: 1..=10,
            y: y_range(low, high),
            x_desc: "week".into(),
            y_desc: "avg_temp (°F)".into(),
            y_decimals: 1,
            lines,
        }
    }

    /// Each run is one polyline with a point per window; a lone window is a dot; the axis
    /// descriptions are on the chart.
    #[test]
    fn runs_become_lines_and_dots() {
        let runs = vec![vec![(1, 10.0), (2, 12.5), (3, 20.0)], vec![(5, 11.0)], vec![(8, 15.0), (9, 16.0)]];
        let chart = weeks((600, 200), (10.0, 20.0), vec![Line { label: None, color: RGBColor(200, 60, 40), runs }]);
        let svg = chart.svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("viewBox=\"0 0 600 200\""), "{svg}");
        let lines: Vec<usize> = svg
            .split("<polyline")
            .skip(1)
            .filter(|p| p.contains("#C83C28"))
            .map(|p| p.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split_whitespace().count())
            .collect();
        assert_eq!(lines, [3, 2]);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains(">\navg_temp (°F)\n</text>") && svg.contains(">\nweek\n</text>"), "{svg}");
    }

    /// A comparison draws a line per sensor in its own color, and names each in a legend once,
    /// whatever its runs.
    #[test]
    fn a_comparison_has_a_legend() {
        let line = |name: &str, color, runs| Line { label: Some(name.into()), color, runs };
        let chart = weeks(
            (900, 300),
            (0.0, 20.0),
            vec![
                line("sensor-1", PALETTE[0], vec![vec![(1, 1.0), (2, 2.0)], vec![(4, 4.0), (5, 5.0)]]),
                line("sensor-2", PALETTE[1], vec![vec![(1, 10.0), (2, 12.0), (3, 13.0)]]),
            ],
        );
        let svg = chart.svg().unwrap();
        assert_eq!(svg.matches(">\nsensor-1\n</text>").count(), 1, "{svg}");
        assert_eq!(svg.matches(">\nsensor-2\n</text>").count(), 1, "{svg}");
        assert!(svg.contains("#1F77B4") && svg.contains("#FF7F0E"), "a color each: {svg}");
    }
}
