//! `owl-bench metg-report DIR`: METG(50%) of Task Bench sweeps, side by side.
//!
//! Reads `DIR/<system>-<pattern>.log` (the concatenated output of every run
//! of one sweep, as scripts/taskbench-metg.sh writes them), computes each
//! sweep's efficiency curve and METG with the taskbench crate (efficiency
//! against the best FLOP/s observed in the sweep), and writes `metg.md`,
//! `metg.json` and `metg.svg` into DIR.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;
use serde_json::json;
use taskbench::metg::{metg_of_points, parse_log, points, Baseline, Point};

struct Sweep {
    system: String,
    pattern: String,
    points: Vec<Point>,
    metg: Result<f64, String>,
}

pub fn run(dir: &Path, cores: i64, threshold: f64) -> anyhow::Result<()> {
    let mut sweeps = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    entries.sort();
    for path in entries {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let Some((system, pattern)) = stem.split_once('-') else {
            continue;
        };
        let text = std::fs::read_to_string(&path)?;
        let runs =
            parse_log(&text, 1, cores).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let pts = points(&runs, Baseline::BestObserved)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let metg = metg_of_points(&pts, threshold).map_err(|e| e.to_string());
        sweeps.push(Sweep {
            system: system.into(),
            pattern: pattern.into(),
            points: pts,
            metg,
        });
    }
    anyhow::ensure!(
        !sweeps.is_empty(),
        "no <system>-<pattern>.log files in {}",
        dir.display()
    );

    let mut by_pattern: BTreeMap<&str, BTreeMap<&str, &Sweep>> = BTreeMap::new();
    for s in &sweeps {
        by_pattern
            .entry(&s.pattern)
            .or_default()
            .insert(&s.system, s);
    }
    let systems: Vec<&str> = {
        let mut v: Vec<&str> = sweeps.iter().map(|s| s.system.as_str()).collect();
        v.sort();
        v.dedup();
        v
    };
    let fmt = |m: &Result<f64, String>| match m {
        Ok(s) => format!("{:.2} µs", s * 1e6),
        Err(e) => format!("— ({e})"),
    };
    let mut md = format!(
        "# Task Bench METG({:.0}%)\n\nEfficiency against the best FLOP/s observed in each sweep; {cores} cores.\n\n| pattern | {} | owl ÷ mpi |\n| --- |{} --- |\n",
        threshold * 100.0,
        systems.join(" | "),
        " --- |".repeat(systems.len())
    );
    let mut rows = Vec::new();
    for (pattern, by_system) in &by_pattern {
        let cells: Vec<String> = systems
            .iter()
            .map(|s| by_system.get(s).map_or("—".into(), |w| fmt(&w.metg)))
            .collect();
        let ratio = match (
            by_system.get("owl").map(|s| &s.metg),
            by_system.get("mpi").map(|s| &s.metg),
        ) {
            (Some(Ok(o)), Some(Ok(m))) => Some(o / m),
            _ => None,
        };
        md.push_str(&format!(
            "| {pattern} | {} | {} |\n",
            cells.join(" | "),
            ratio.map_or("—".into(), |r| format!("{r:.2}×"))
        ));
        rows.push(json!({
            "pattern": pattern,
            "metg_us": by_system.iter().map(|(s, w)| (s.to_string(), json!(w.metg.as_ref().ok().map(|m| m * 1e6)))).collect::<serde_json::Map<_, _>>(),
            "owl_over_mpi": ratio,
        }));
    }
    md.push_str("\n## Sweeps\n");
    for s in &sweeps {
        md.push_str(&format!(
            "\n### {} {}\n\n| iterations | reps | µs per task (core time) | FLOP/s | efficiency |\n| ---: | ---: | ---: | ---: | ---: |\n",
            s.system, s.pattern
        ));
        for p in &s.points {
            md.push_str(&format!(
                "| {} | {} | {:.3} | {:.3e} | {:.3} |\n",
                p.iterations,
                p.reps,
                p.time_per_task_seconds * 1e6,
                p.flops_per_second,
                p.efficiency
            ));
        }
    }
    std::fs::write(dir.join("metg.md"), &md)?;
    std::fs::write(
        dir.join("metg.json"),
        serde_json::to_string_pretty(
            &json!({ "threshold": threshold, "cores": cores, "patterns": rows }),
        )?,
    )?;
    plot(&dir.join("metg.svg"), &sweeps, threshold)?;
    print!("{md}");
    Ok(())
}

fn plot(path: &Path, sweeps: &[Sweep], threshold: f64) -> anyhow::Result<()> {
    let e = |e: &dyn std::fmt::Display| anyhow::anyhow!("plotting failed: {e}");
    let all = sweeps.iter().flat_map(|s| s.points.iter());
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        let us = p.time_per_task_seconds * 1e6;
        (lo.min(us), hi.max(us))
    });
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Task Bench: efficiency against task granularity",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((lo.max(1e-3) / 2.0..hi * 2.0).log_scale(), 0.0..1.1)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("task granularity (µs of core time per task)")
        .y_desc("efficiency")
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(
            [(lo.max(1e-3) / 2.0, threshold), (hi * 2.0, threshold)],
            BLACK.mix(0.4),
        ))
        .map_err(|x| e(&x))?;
    for (i, s) in sweeps.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (p.time_per_task_seconds * 1e6, p.efficiency))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!("{} {}", s.system, s.pattern))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}
