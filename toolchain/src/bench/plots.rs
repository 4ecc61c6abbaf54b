//! SVG plots of `shunt bench invoke` (plotters, SVG backend: no fonts or
//! system libraries needed).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

const COLORS: [RGBColor; 4] = [RGBColor(200, 60, 50), RGBColor(90, 90, 90), RGBColor(230, 150, 30), RGBColor(30, 110, 200)];

fn color(config: &str) -> RGBColor {
    match config {
        "stock" => COLORS[0],
        "native" => COLORS[1],
        "shunt-kernel" => COLORS[2],
        _ => COLORS[3],
    }
}

/// Figure 5: latency CDF per configuration, one panel per language.
pub fn cdf(path: &Path, data: &BTreeMap<String, BTreeMap<&str, Vec<f64>>>) -> Result<()> {
    let panels = data.len().max(1) as u32;
    let root = SVGBackend::new(path, (640 * panels, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    for ((lang, by), area) in data.iter().zip(root.split_evenly((1, panels as usize))) {
        let max = by.values().flatten().cloned().fold(0.0f64, f64::max) * 1.05;
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("AES ({lang}): sequential invocations, latency CDF"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..max.max(1.0), 0.0..1.0)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("latency at the client (us)")
            .y_desc("fraction of invocations")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (config, v) in by {
            let mut s = v.clone();
            s.sort_by(f64::total_cmp);
            let n = s.len() as f64;
            let pts: Vec<(f64, f64)> = s.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64 / n)).collect();
            let c = color(config);
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(config.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Figure 6: p50 (dashed) and p99 (solid) latency against offered load.
pub fn load_curves(path: &Path, data: &BTreeMap<String, BTreeMap<&str, Vec<serde_json::Value>>>) -> Result<()> {
    let panels = data.len().max(1) as u32;
    let root = SVGBackend::new(path, (640 * panels, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    for ((lang, by), area) in data.iter().zip(root.split_evenly((1, panels as usize))) {
        let pts = |c: &Vec<serde_json::Value>, k: &str| -> Vec<(f64, f64)> {
            c.iter().filter_map(|p| Some((p["offered_rps"].as_f64()?, p[k].as_f64()?))).filter(|(_, y)| y.is_finite()).collect()
        };
        let xmax = by.values().flat_map(|c| pts(c, "p99_ms")).map(|(x, _)| x).fold(0.0f64, f64::max) * 1.05;
        let ymax = by.values().flat_map(|c| pts(c, "p99_ms")).map(|(_, y)| y).fold(0.0f64, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("AES ({lang}): latency vs offered load (open loop)"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..xmax.max(1.0), 0.0..ymax.max(0.1))
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("offered load (requests/s)")
            .y_desc("latency (ms): p99 solid, p50 dashed")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (config, c) in by {
            let col = color(config);
            chart
                .draw_series(LineSeries::new(pts(c, "p99_ms"), col.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(format!("{config} p99"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
            chart
                .draw_series(DashedLineSeries::new(pts(c, "p50_ms"), 4, 4, col.stroke_width(1)))
                .map_err(|e| anyhow!("{e}"))?;
        }
        chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Grouped bars, one panel per language: for each measure (a group), one
/// bar per configuration. `data[lang][config]` = (measure, value) pairs,
/// the same measures in the same order for every configuration.
pub fn bars(path: &Path, y_desc: &str, data: &BTreeMap<String, BTreeMap<&str, Vec<(String, f64)>>>) -> Result<()> {
    let panels = data.len().max(1) as u32;
    let root = SVGBackend::new(path, (640 * panels, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    for ((lang, by), area) in data.iter().zip(root.split_evenly((1, panels as usize))) {
        let measures: Vec<String> = by.values().next().map(|v| v.iter().map(|(m, _)| m.clone()).collect()).unwrap_or_default();
        let configs = by.len().max(1);
        let ymax = by.values().flatten().map(|(_, y)| *y).filter(|y| y.is_finite()).fold(0.0f64, f64::max) * 1.15;
        let groups = measures.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("AES ({lang}): {y_desc}"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..groups, 0.0..ymax.max(0.1))
            .map_err(|e| anyhow!("{e}"))?;
        let names = measures.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(measures.len() * 2 + 1)
            .x_label_formatter(&move |x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 { names.get(i).cloned().unwrap_or_default() } else { String::new() }
            })
            .y_desc(y_desc)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        let width = 0.8 / configs as f64;
        for (k, (config, values)) in by.iter().enumerate() {
            let c = color(config);
            let rects: Vec<_> = values
                .iter()
                .enumerate()
                .filter(|(_, (_, y))| y.is_finite())
                .map(|(g, (_, y))| {
                    let x0 = g as f64 + 0.1 + k as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.9, *y)], c.filled())
                })
                .collect();
            chart
                .draw_series(rects)
                .map_err(|e| anyhow!("{e}"))?
                .label(config.to_string())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
        }
        chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Lines against x, one panel per measure: `data[measure][config]` = (x, y)
/// points (the density curve).
pub fn lines(path: &Path, x_desc: &str, data: &BTreeMap<String, BTreeMap<&str, Vec<(f64, f64)>>>) -> Result<()> {
    let panels = data.len().max(1) as u32;
    let root = SVGBackend::new(path, (560 * panels, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    for ((measure, by), area) in data.iter().zip(root.split_evenly((1, panels as usize))) {
        let finite = |v: &Vec<(f64, f64)>| v.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect::<Vec<_>>();
        let xmax = by.values().flat_map(finite).map(|(x, _)| x).fold(0.0f64, f64::max) * 1.05;
        let ymax = by.values().flat_map(finite).map(|(_, y)| y).fold(0.0f64, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(&area)
            .caption(measure.clone(), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..xmax.max(1.0), 0.0..ymax.max(0.1))
            .map_err(|e| anyhow!("{e}"))?;
        chart.configure_mesh().x_desc(x_desc).draw().map_err(|e| anyhow!("{e}"))?;
        for (config, v) in by {
            let c = color(config);
            let pts = finite(v);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(config.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled()))).map_err(|e| anyhow!("{e}"))?;
        }
        chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
