//! SVG plots of a run's figures.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::harness::Figure;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e}")
}

/// Latency against percentile (x: 0, 90, 99, 99.9, 99.99 equally spaced).
pub fn latency(path: &Path, title: &str, hist: &Histogram<u64>) -> anyhow::Result<()> {
    let points: Vec<(f64, f64)> = (0..=400)
        .map(|i| {
            let x = i as f64 / 100.0; // "nines": 1 → 90%, 2 → 99%, ...
            let q = 1.0 - 10f64.powf(-x);
            (x, hist.value_at_quantile(q.min(1.0)) as f64 / 1e3)
        })
        .collect();
    let ymax = points.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..4f64, 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .x_labels(5)
        .y_desc("latency (µs)")
        .x_label_formatter(&|x| format!("{:.2}%", 100.0 * (1.0 - 10f64.powf(-x))))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(err)?;
    root.present().map_err(err)
}

/// One horizontal bar per rate figure, on a log scale.
pub fn rates(path: &Path, title: &str, figures: &[&Figure]) -> anyhow::Result<()> {
    let bars: Vec<(String, f64)> = figures
        .iter()
        .filter(|f| f.value > 0.0)
        .map(|f| (format!("{} {} ({})", f.workload, f.metric, f.unit), f.value))
        .collect();
    if bars.is_empty() {
        return Ok(());
    }
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 2.0;
    let min = bars.iter().map(|b| b.1).fold(f64::MAX, f64::min).max(1e-3) / 2.0;
    let height = 80 + 28 * bars.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(330)
        .build_cartesian_2d((min..max).log_scale(), 0..bars.len())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_labels(8)
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .y_labels(bars.len())
        .y_label_formatter(&|i| bars.get(*i).map(|b| b.0.clone()).unwrap_or_default())
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .map(|(i, (_, v))| Rectangle::new([(min, i), (*v, i + 1)], BLUE.mix(0.6).filled())),
        )
        .map_err(err)?;
    root.present().map_err(err)
}

/// Throughput and efficiency against task grain.
pub fn grain(path: &Path, points: &[(f64, f64, Option<f64>)]) -> anyhow::Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(450);
    let xs = |v: f64| v.max(0.5);
    let xmax = points.iter().map(|p| xs(p.0)).fold(1.0, f64::max) * 2.0;
    let ymax = points.iter().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&left)
        .caption("throughput vs task grain", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0.25..xmax).log_scale(), (1.0..ymax).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("grain (µs; 0 plotted at 0.5)")
        .y_desc("tasks/s")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (xs(p.0), p.1)),
            &BLUE,
        ))
        .map_err(err)?;
    chart
        .draw_series(
            points
                .iter()
                .map(|p| Circle::new((xs(p.0), p.1), 3, BLUE.filled())),
        )
        .map_err(err)?;
    let eff: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.2.map(|e| (xs(p.0), e)))
        .collect();
    let mut chart = ChartBuilder::on(&right)
        .caption("efficiency vs task grain", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0.25..xmax).log_scale(), 0.0..105.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("grain (µs)")
        .y_desc("efficiency (%)")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(eff.iter().copied(), &RED))
        .map_err(err)?;
    chart
        .draw_series(eff.iter().map(|p| Circle::new(*p, 3, RED.filled())))
        .map_err(err)?;
    root.present().map_err(err)
}

/// Writes every plot that the figures support into `dir`; returns the files.
pub fn all(dir: &Path, figures: &[Figure]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for f in figures {
        if let Some(h) = &f.hist {
            let p = dir.join(format!("latency_{}.svg", f.workload));
            latency(&p, &format!("{} latency (all repetitions)", f.workload), h)?;
            written.push(p);
        }
    }
    let rates: Vec<&Figure> = figures
        .iter()
        .filter(|f| f.unit == "tasks/s" && !f.workload.starts_with("grain"))
        .collect();
    if !rates.is_empty() {
        let p = dir.join("throughput.svg");
        self::rates(&p, "owl throughput per workload (median)", &rates)?;
        written.push(p);
    }
    let grain_points: Vec<(f64, f64, Option<f64>)> = crate::workloads::GRAINS_US
        .iter()
        .filter_map(|us| {
            let tp = figures
                .iter()
                .find(|f| f.workload == "grain" && f.metric == format!("throughput_{us}us"))?;
            let eff = figures
                .iter()
                .find(|f| f.workload == "grain" && f.metric == format!("efficiency_{us}us"))
                .map(|f| f.value);
            Some((*us as f64, tp.value, eff))
        })
        .collect();
    if !grain_points.is_empty() {
        let p = dir.join("grain.svg");
        grain(&p, &grain_points)?;
        written.push(p);
    }
    Ok(written)
}
