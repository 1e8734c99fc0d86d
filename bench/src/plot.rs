//! The report's pictures, as SVG (plotters' SVG backend: no fonts or system libraries needed).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// One named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Joined by a line (otherwise points only).
    pub line: bool,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
];

/// An x/y chart of `series` (log scales on request) written to `path`.
pub fn chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series], log_x: bool, log_y: bool) -> Result<()> {
    let all: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    if all.is_empty() {
        return Ok(());
    }
    let (mut x0, mut x1) = bounds(all.iter().map(|p| p.0));
    let (mut y0, mut y1) = bounds(all.iter().map(|p| p.1));
    if log_x {
        (x0, x1) = (x0 * 0.8, x1 * 1.25);
    } else {
        let pad = ((x1 - x0) * 0.05).max(0.5);
        (x0, x1) = (x0 - pad, x1 + pad);
    }
    if log_y {
        (y0, y1) = (y0 * 0.7, y1 * 1.4);
    } else {
        (y0, y1) = (0.0, y1 * 1.15 + f64::EPSILON);
    }
    let root = SVGBackend::new(path, (820, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    macro_rules! draw {
        ($x:expr, $y:expr) => {{
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d($x, $y)
                .map_err(|e| anyhow!("{e:?}"))?;
            chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|e| anyhow!("{e:?}"))?;
            for (i, s) in series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let points: Vec<(f64, f64)> = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
                let drawn = if s.line {
                    chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2))).map_err(|e| anyhow!("{e:?}"))?;
                    chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(|e| anyhow!("{e:?}"))?
                } else {
                    chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(|e| anyhow!("{e:?}"))?
                };
                drawn.label(s.name.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], color.filled()));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| anyhow!("{e:?}"))?;
        }};
    }
    match (log_x, log_y) {
        (false, false) => draw!(x0..x1, y0..y1),
        (true, false) => draw!((x0..x1).log_scale(), y0..y1),
        (false, true) => draw!(x0..x1, (y0..y1).log_scale()),
        (true, true) => draw!((x0..x1).log_scale(), (y0..y1).log_scale()),
    }
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

/// Horizontal bars: one per (label, value), written to `path`.
pub fn bars(path: &Path, title: &str, unit: &str, bars: &[(String, f64)]) -> Result<()> {
    if bars.is_empty() {
        return Ok(());
    }
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max) * 1.15 + f64::EPSILON;
    let height = 90 + 40 * bars.len() as u32;
    let root = SVGBackend::new(path, (820, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let n = bars.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(170)
        .build_cartesian_2d(0.0..max, 0.0..n as f64)
        .map_err(|e| anyhow!("{e:?}"))?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(unit)
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y: &f64| {
            let slot = *y - 0.5;
            let i = slot.round();
            if (slot - i).abs() < 0.01 && i >= 0.0 && (i as usize) < labels.len() {
                labels[labels.len() - 1 - i as usize].clone()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, value))| {
            let y = (n - 1 - i) as f64;
            Rectangle::new([(0.0, y + 0.2), (*value, y + 0.8)], COLORS[i % COLORS.len()].filled())
        }))
        .map_err(|e| anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}
