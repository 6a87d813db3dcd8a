//! A healthy run is never cut short by the failure detector: `owl-pi`
//! with a million tasks over QUIC (the default transport) and a 3 s
//! `dead_after`. Before heartbeats had a thread of their own, the driver's
//! shard 0 was busy submitting and collecting for longer than that, its
//! workers declared it dead, and the run failed.

mod common;

use common::{clean, succeeded, OWL, PI};

#[test]
fn a_million_tasks_with_a_three_second_dead_after() {
    let out = clean("timeout")
        .arg("600")
        .arg(OWL)
        .args([
            "run",
            "-n",
            "3",
            "--transport",
            "quic",
            "--timeout",
            "590",
            "--",
        ])
        .arg(PI)
        .arg("1000000")
        .env("OWL_DEAD_AFTER_S", "3")
        // As a new user runs it: every node takes every core.
        .env_remove("OWL_SHARDS")
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    let line = stdout
        .lines()
        .map(|l| l.trim_start_matches("[0] "))
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no result line in {stdout}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["tasks"], 1_000_000, "{v}");
    assert_eq!(v["nodes"], 3, "{v}");
}
