//! SVG plots of `shunt bench invoke` (plotters, SVG backend: no fonts or
//! system libraries needed).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

const COLORS: [RGBColor; 3] = [RGBColor(200, 60, 50), RGBColor(90, 90, 90), RGBColor(30, 110, 200)];

fn color(config: &str) -> RGBColor {
    match config {
        "stock" => COLORS[0],
        "native" => COLORS[1],
        _ => COLORS[2],
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
