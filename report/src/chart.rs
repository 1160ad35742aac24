//! One chart of a sensor's windows as inline SVG, drawn by plotters: an average over the
//! window ids, one line per run of consecutive windows (so a missing window shows as a break),
//! a dot for a window alone.

use std::ops::{Range, RangeInclusive};

use anyhow::anyhow;
use plotters::prelude::*;

/// What one chart shows.
pub struct Chart {
    /// Width and height in pixels (the page scales it down to fit).
    pub size: (u32, u32),
    /// The window ids the x axis spans (the same for every sensor of a section, so charts
    /// compare at a glance).
    pub x: RangeInclusive<u64>,
    /// The values the y axis spans.
    pub y: Range<f64>,
    pub x_desc: String,
    pub y_desc: String,
    /// Decimals of the y axis labels.
    pub y_decimals: usize,
    pub color: RGBColor,
    /// Runs of consecutive windows: (window id, value).
    pub runs: Vec<Vec<(u64, f64)>>,
}

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
        for run in &self.runs {
            match run.as_slice() {
                [single] => {
                    chart.draw_series(std::iter::once(Circle::new(*single, 3, self.color.filled())))?;
                }
                points => {
                    chart.draw_series(LineSeries::new(points.iter().copied(), self.color.stroke_width(2)))?;
                }
            }
        }
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each run is one polyline with a point per window; a lone window is a dot; the axis
    /// descriptions are on the chart.
    #[test]
    fn runs_become_lines_and_dots() {
        let chart = Chart {
            size: (600, 200),
            x: 1..=10,
            y: y_range(10.0, 20.0),
            x_desc: "week".into(),
            y_desc: "avg_temp (°F)".into(),
            y_decimals: 1,
            color: RGBColor(200, 60, 40),
            runs: vec![vec![(1, 10.0), (2, 12.5), (3, 20.0)], vec![(5, 11.0)], vec![(8, 15.0), (9, 16.0)]],
        };
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
}
