//! Every workload at a tiny size, so the harness never rots (not timed), and
//! the bad invocations a user can make.

use std::process::Command;

fn owl_bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_owl-bench"))
}

#[test]
fn every_workload_runs_tiny_and_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = owl_bench()
        .args([
            "all", "limits", "--tiny", "--reps", "1", "--json", "--shards", "2", "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "owl-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let workloads = [
        "noop_throughput",
        "rtt",
        "chain",
        "tree",
        "nested",
        "big_arg",
        "put_get",
        "grain",
        "pending_memory",
        "spill",
        "limits",
    ];
    for w in workloads {
        assert!(
            lines.iter().any(|l| l["workload"] == w),
            "no figure for {w}"
        );
    }
    for l in &lines {
        assert!(
            l["value"].as_f64().is_some_and(f64::is_finite),
            "bad value in {l}"
        );
        assert!(l["unit"].is_string() && l["metric"].is_string(), "{l}");
        let config = &l["config"];
        assert_eq!(config["reps"].as_array().map(Vec::len), Some(1), "{l}");
        assert!(config["machine"]["cores"].as_u64().is_some(), "{l}");
        assert!(config["machine"]["kernel"].is_string(), "{l}");
    }
    for metric in ["p50", "p90", "p99", "p99.9", "max"] {
        assert!(
            lines
                .iter()
                .any(|l| l["workload"] == "rtt" && l["metric"] == metric),
            "rtt {metric}"
        );
    }
    for limit in [
        "memcpy_4KiB",
        "pingpong_atomic_rtt",
        "tcp_rtt_p50",
        "tcp_bw",
        "quic_rtt_p50",
        "quic_bw",
        "tokio_spawn",
    ] {
        assert!(lines.iter().any(|l| l["metric"] == limit), "limit {limit}");
    }
    assert!(lines.iter().any(|l| l["metric"]
        .as_str()
        .is_some_and(|m| m.starts_with("ratio_"))));
    for file in [
        "results.jsonl",
        "results.md",
        "latency_rtt.svg",
        "throughput.svg",
        "grain.svg",
    ] {
        let p = dir.path().join(file);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(!text.is_empty(), "{file} is empty");
    }
}

#[test]
fn bad_invocations_fail_with_a_message() {
    for (args, needle) in [
        (vec!["nope"], "unknown workload `nope`"),
        (vec![], "no workload given"),
        (
            vec!["rtt", "--reps", "0"],
            "--reps needs a positive whole number",
        ),
        (
            vec!["rtt", "--shards", "x"],
            "--shards needs a positive whole number",
        ),
        (vec!["rtt", "--frobnicate"], "unknown option `--frobnicate`"),
    ] {
        let out = owl_bench().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: owl-bench"), "{args:?}");
    }
}

#[test]
fn recovery_runs_tiny() {
    let out = owl_bench()
        .args(["recovery", "--tiny", "--reps", "1", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "owl-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let metrics: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            assert_eq!(v["workload"], "recovery", "{v}");
            v["metric"].as_str().unwrap().to_string()
        })
        .collect();
    for m in [
        "undisturbed_ms",
        "killed_ms",
        "ratio_killed_to_undisturbed",
        "reexecuted_tasks",
    ] {
        assert!(metrics.iter().any(|x| x == m), "no {m} in {metrics:?}");
    }
}
