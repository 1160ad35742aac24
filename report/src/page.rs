//! The report as one self-contained HTML page: no script, no external file, the charts inline
//! as SVG. Per window length a table of every sensor (its name links to its charts), with
//! several sensors a chart comparing their `avg_temp`, then per sensor `avg_temp` over its
//! window ids and two small charts of `avg_co` and `avg_humidity`. A sensor's charts span its
//! own windows, so that a short series fills them; the values' axes are shared by every sensor
//! of a window length, so that their charts compare at a glance.

use std::fmt::Write as _;

use plotters::style::RGBColor;
use weather_common::meter::{counted, thousands};

use crate::chart::{y_range, Chart, Line, PALETTE};
use crate::summary::{ranges, Report, Section, Series};
use crate::table::Window;

const TEMPERATURE: RGBColor = RGBColor(200, 60, 40);
const CO: RGBColor = RGBColor(100, 100, 100);
const HUMIDITY: RGBColor = RGBColor(40, 110, 190);

const STYLE: &str = "
body { font-family: sans-serif; margin: 1.5rem auto; max-width: 1800px; padding: 0 1.5rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; margin-top: 2.5rem; } h3 { font-size: 1.05rem; margin: 0 0 .3rem; }
table { border-collapse: collapse; font-size: .85rem; font-variant-numeric: tabular-nums; }
th, td { padding: .15rem .5rem; text-align: right; border-bottom: 1px solid #e4e4e4; }
th:first-child, td:first-child { text-align: left; }
article { margin: 1.5rem 0; padding-top: .5rem; border-top: 1px solid #ccc; }
section > h3 { margin-top: 1.5rem; }
figure { margin: 0; }
svg { display: block; width: 100%; height: auto; }
.small { display: grid; grid-template-columns: 1fr 1fr; gap: .5rem; }
.note { color: #555; font-size: .9rem; }
";

/// The page.
pub fn render(report: &Report) -> anyhow::Result<String> {
    let mut html = String::new();
    let title = format!("Weather averages from {}", escape(&report.topic));
    write!(html, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")?;
    writeln!(html, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")?;
    write!(html, "<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n")?;
    write!(
        html,
        "<p class=\"note\">The topic read as a table, the latest value per window: {} from {}, {}.",
        counted(report.windows, "window"),
        counted(report.read.records, "record"),
        counted(report.bad_records(), "bad record")
    )?;
    if let Some((days, left_out)) = report.only {
        write!(html, " Only the {days}-day windows are shown ({} of other lengths left out).", thousands(left_out))?;
    }
    html.push_str("</p>\n");
    if report.sections.is_empty() {
        html.push_str("<p>No window to show.</p>\n");
    }
    for section in &report.sections {
        write_section(&mut html, section)?;
    }
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

fn write_section(html: &mut String, section: &Section) -> anyhow::Result<()> {
    let anchor = format!("w{}-{}", section.window_days, section.unit.name());
    writeln!(html, "<section id=\"{anchor}\">\n<h2>{}</h2>", escape(&section.title()))?;
    writeln!(
        html,
        "<table>\n<tr><th>sensor</th><th>windows</th><th>first</th><th>last</th><th>missing</th>\
         <th>avg_temp ({unit}) min / mean / max</th><th>avg_co (ppm) min / mean / max</th>\
         <th>avg_humidity (%) min / mean / max</th></tr>",
        unit = section.unit.symbol()
    )?;
    for s in &section.sensors {
        let [windows, first, last, missing, stats @ ..] = s.figures();
        write!(
            html,
            "<tr><td><a href=\"#{anchor}-{id}\">{id}</a></td><td>{windows}</td><td>{first}</td><td>{last}</td>\
             <td>{missing}</td>",
            id = escape(&s.sensor_id),
        )?;
        for [min, mean, max] in stats.as_chunks::<3>().0 {
            write!(html, "<td>{min} / {mean} / {max}</td>")?;
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");

    // Shared value axes: every value of the section. Window ids: each sensor's own.
    let all = || section.sensors.iter().flat_map(|s| s.windows.iter());
    let span = |value: fn(&Window) -> f64| {
        let (min, max) = all().map(value).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        y_range(min, max)
    };
    let axes = [
        ("temperature", TEMPERATURE, span(temperature), format!("avg_temp ({})", section.unit.symbol()), 1),
        ("co", CO, span(co), "avg_co (ppm)".to_string(), 0),
        ("humidity", HUMIDITY, span(humidity), "avg_humidity (%)".to_string(), 0),
    ];
    let values: [fn(&Window) -> f64; 3] = [temperature, co, humidity];
    let runs = |s: &Series, value: fn(&Window) -> f64| -> Vec<Vec<(u64, f64)>> {
        s.runs().iter().map(|run| run.iter().map(|w| (w.window_id, value(w))).collect()).collect()
    };
    if section.sensors.len() > 1 {
        let x = all().map(|w| w.window_id).min().unwrap_or(1)..=all().map(|w| w.window_id).max().unwrap_or(1);
        let (_, _, y, y_desc, y_decimals) = &axes[0];
        let chart = Chart {
            size: (1400, 420),
            x,
            y: y.clone(),
            x_desc: section.window_name(),
            y_desc: y_desc.clone(),
            y_decimals: *y_decimals,
            lines: section
                .sensors
                .iter()
                .zip(PALETTE.iter().cycle())
                .map(|(s, color)| Line { label: Some(s.sensor_id.clone()), color: *color, runs: runs(s, temperature) })
                .collect(),
        };
        writeln!(html, "<h3>avg_temp of every sensor</h3>\n<figure class=\"chart compare\">{}</figure>", chart.svg()?)?;
    }
    for s in &section.sensors {
        let id = escape(&s.sensor_id);
        writeln!(html, "<article id=\"{anchor}-{id}\">\n<h3>{id}</h3>\n<p class=\"note\">{}</p>", describe(s))?;
        for (i, ((class, color, y, y_desc, y_decimals), value)) in axes.iter().zip(values).enumerate() {
            let size = if i == 0 { (1400, 340) } else { (690, 230) };
            let chart = Chart {
                size,
                x: s.first()..=s.last(),
                y: y.clone(),
                x_desc: section.window_name(),
                y_desc: y_desc.clone(),
                y_decimals: *y_decimals,
                lines: vec![Line { label: None, color: *color, runs: runs(s, value) }],
            };
            if i == 1 {
                html.push_str("<div class=\"small\">\n");
            }
            writeln!(html, "<figure class=\"chart {class}\" data-sensor=\"{id}\">{}</figure>", chart.svg()?)?;
        }
        html.push_str("</div>\n</article>\n");
    }
    html.push_str("</section>\n");
    Ok(())
}

fn temperature(w: &Window) -> f64 {
    w.avg_temp.0 as f64 / 10.0
}

fn co(w: &Window) -> f64 {
    w.avg_co as f64
}

fn humidity(w: &Window) -> f64 {
    w.avg_humidity as f64
}

/// `208 windows, 1 to 208, none missing`.
fn describe(s: &Series) -> String {
    let missing = match s.missing() {
        0 => "none missing".to_string(),
        n => format!("{n} missing: {}", ranges(&s.gaps(), 20)),
    };
    format!("{}, {} to {}, {missing}", counted(s.windows.len() as u64, "window"), s.first(), s.last())
}

/// Text as HTML: sensor ids and topic names are plain, but the page must not depend on it.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Read;
    use crate::table::tests::week;
    use crate::table::Table;

    /// One section per window length, per sensor one article with a temperature chart with a
    /// point per window and two small charts, and a table row linking to it.
    #[test]
    fn a_chart_per_sensor() {
        let mut table = Table::default();
        let mut offset = 0;
        for (sensor, ids) in [("sensor-1", vec![1, 2, 3, 4]), ("sensor-2", vec![1, 3])] {
            for id in ids {
                let a = week(sensor, id, 100 + id as i64);
                table.apply(0, offset, Some(&a.key.to_json()), Some(&a.to_json()));
                offset += 1;
            }
        }
        let html = render(&Report::new("agg", Read::default(), table, None)).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert_eq!(html.matches("<figure class=\"chart temperature\"").count(), 2);
        assert_eq!(html.matches("<figure class=\"chart co\"").count(), 2);
        assert_eq!(html.matches("<figure class=\"chart humidity\"").count(), 2);
        assert!(html.contains("<a href=\"#w7-celsius-sensor-2\">sensor-2</a>"));
        assert!(html.contains("<article id=\"w7-celsius-sensor-2\">"));
        assert!(html.contains("2 windows, 1 to 3, 1 missing: 2"), "{html}");
        assert!(html.contains("avg_temp (°C)") && html.contains("avg_co (ppm)") && html.contains("avg_humidity (%)"));
        assert!(!html.contains("<script") && !html.contains("src="), "self-contained");
        assert_eq!(html.matches("<figure class=\"chart compare\">").count(), 1, "one chart compares the sensors");
    }

    /// Each sensor's charts span its own windows: a sensor of 3 weeks beside one of 200 gets
    /// an x axis of its 3 weeks, not a fifth of the other's. One sensor alone needs no comparison.
    #[test]
    fn a_short_series_fills_its_chart() {
        let mut table = Table::default();
        for (offset, (sensor, id)) in
            (1..=200).map(|id| ("sensor-1", id)).chain((10..=12).map(|id| ("sensor-2", id))).enumerate()
        {
            let a = week(sensor, id, 100 + id as i64);
            table.apply(0, offset as i64, Some(&a.key.to_json()), Some(&a.to_json()));
        }
        let html = render(&Report::new("agg", Read::default(), table, None)).unwrap();
        let short = html.split("<figure class=\"chart temperature\" data-sensor=\"sensor-2\">").nth(1).unwrap();
        let short = &short[..short.find("</figure>").unwrap()];
        // The x axis labels of sensor-2's chart: its own weeks, 10 to 12.
        let labels: Vec<u64> = short
            .split("<text")
            .filter_map(|t| t.split(">\n").nth(1)?.split('\n').next()?.trim().parse().ok())
            .filter(|&n: &u64| n < 100)
            .collect();
        assert!(labels.contains(&10) && labels.contains(&12), "{labels:?}");
        assert!(labels.iter().all(|&n| (10..=13).contains(&n)), "only sensor-2's weeks on its axis: {labels:?}");

        let mut alone = Table::default();
        let a = week("sensor-1", 1, 100);
        alone.apply(0, 0, Some(&a.key.to_json()), Some(&a.to_json()));
        let html = render(&Report::new("agg", Read::default(), alone, None)).unwrap();
        assert!(!html.contains("chart compare"), "nothing to compare with one sensor");
    }

    /// The page spreads over a wide window: nothing caps it at half of a 1,400 px screen.
    #[test]
    fn the_page_uses_a_wide_window() {
        let max_width: u32 = STYLE.split("max-width: ").nth(1).unwrap().split("px").next().unwrap().parse().unwrap();
        assert!(max_width >= 1400, "{max_width}");
    }
}
