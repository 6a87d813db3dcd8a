//! Repetitions, medians and the figures a run reports.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// One measurement from one repetition.
#[derive(Debug)]
pub struct Sample {
    pub metric: String,
    pub value: f64,
    pub unit: &'static str,
    pub config: Value,
    /// Per-operation latencies in ns, where the workload has them.
    pub hist: Option<Histogram<u64>>,
}

impl Sample {
    pub fn new(metric: impl Into<String>, value: f64, unit: &'static str, config: Value) -> Sample {
        Sample {
            metric: metric.into(),
            value,
            unit,
            config,
            hist: None,
        }
    }
}

/// A reported figure: the median over repetitions, with every repetition kept.
#[derive(Debug)]
pub struct Figure {
    pub workload: String,
    pub metric: String,
    pub value: f64,
    pub unit: &'static str,
    pub config: Value,
    pub reps: Vec<f64>,
    /// Latencies of all repetitions merged (ns).
    pub hist: Option<Histogram<u64>>,
}

impl Figure {
    pub fn to_json(&self, machine: &Value) -> Value {
        let mut config = self.config.clone();
        if let Some(c) = config.as_object_mut() {
            c.insert("reps".into(), json!(self.reps));
            c.insert("machine".into(), machine.clone());
        }
        json!({
            "workload": self.workload,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "config": config,
        })
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `rep` once to warm up and `reps` more times, and folds the samples
/// of each metric into one figure (the median, all values kept).
pub fn repeat(
    workload: &str,
    reps: usize,
    mut rep: impl FnMut() -> anyhow::Result<Vec<Sample>>,
) -> anyhow::Result<Vec<Figure>> {
    rep()?;
    let mut figures: Vec<Figure> = Vec::new();
    for _ in 0..reps {
        for s in rep()? {
            match figures.iter_mut().find(|f| f.metric == s.metric) {
                Some(f) => {
                    f.reps.push(s.value);
                    if let (Some(h), Some(new)) = (&mut f.hist, &s.hist) {
                        h.add(new).expect("histograms share bounds");
                    }
                }
                None => figures.push(Figure {
                    workload: workload.to_string(),
                    metric: s.metric,
                    value: f64::NAN,
                    unit: s.unit,
                    config: s.config,
                    reps: vec![s.value],
                    hist: s.hist,
                }),
            }
        }
    }
    for f in &mut figures {
        f.value = median(&f.reps);
    }
    Ok(figures)
}

/// Latency percentiles of a histogram as samples (µs).
pub fn percentiles(hist: &Histogram<u64>, config: &Value) -> Vec<Sample> {
    let mut out: Vec<Sample> = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)]
        .iter()
        .map(|(name, q)| {
            Sample::new(
                *name,
                hist.value_at_quantile(*q) as f64 / 1e3,
                "us",
                config.clone(),
            )
        })
        .collect();
    out.push(Sample::new(
        "max",
        hist.max() as f64 / 1e3,
        "us",
        config.clone(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn repeat_keeps_every_rep_and_reports_the_median() {
        let mut calls = 0.0;
        let figs = repeat("w", 3, || {
            calls += 1.0;
            Ok(vec![Sample::new("m", calls, "ops/s", json!({}))])
        })
        .unwrap();
        assert_eq!(figs.len(), 1);
        // The warm-up (1.0) is discarded.
        assert_eq!(figs[0].reps, vec![2.0, 3.0, 4.0]);
        assert_eq!(figs[0].value, 3.0);
    }
}
