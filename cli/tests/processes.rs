//! A multi-node owl program (`owl-pi`) as real processes: launched by
//! `owl run` over each transport on loopback, and by hand inside two network
//! namespaces joined by a veth pair, where the nodes have distinct addresses.
//! Every node checks its tables and arena are empty before it exits
//! (`OWL_CHECK_LEAKS`), so a leak fails the run.

use std::process::Stdio;

use serde_json::Value;

mod common;

use common::{bounded as clean, per_node, succeeded, Netns, OWL, PI};

/// The result line node 0 printed; checks every node ran its share.
fn check_pi(stdout: &str, nodes: u64, tasks: u64) {
    let line = stdout
        .lines()
        .map(|l| l.trim_start_matches("[0] "))
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no result line in {stdout}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["nodes"], nodes, "{v}");
    assert_eq!(v["tasks"], tasks, "{v}");
    let per_node = per_node(&v);
    assert_eq!(per_node.iter().sum::<u64>(), tasks, "{v}");
    assert!(per_node.iter().all(|&n| n > 0), "every node ran tasks: {v}");
    let pi = v["pi"].as_f64().unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.05, "{v}");
}

fn owl_run(transport: &str, nodes: u64, tasks: u64) {
    let out = clean(OWL)
        .args([
            "run",
            "-n",
            &nodes.to_string(),
            "--transport",
            transport,
            "--timeout",
            "50",
            "--",
            PI,
        ])
        .arg(tasks.to_string())
        .output()
        .unwrap();
    check_pi(&succeeded(&out), nodes, tasks);
}

#[test]
fn owl_run_over_quic() {
    owl_run("quic", 3, 3000);
}

#[test]
fn owl_run_over_tcp() {
    owl_run("tcp", 3, 3000);
}

#[test]
fn owl_run_over_shared_memory() {
    owl_run("shm", 3, 3000);
}

#[test]
fn owl_run_over_plaintext_tcp() {
    owl_run("tcp-plain", 2, 2000);
}

#[test]
fn nodes_in_two_network_namespaces() {
    let Some(ns) = Netns::create_or_skip() else {
        return;
    };
    let secret = "ab".repeat(32);
    let head = "10.231.7.1:7411";
    for transport in ["tcp", "quic"] {
        let node = |i: usize, listen: &str| {
            let mut c = clean("ip");
            c.args(["netns", "exec", &ns.names[i], PI, "1000"])
                .env("OWL_NODE_ID", i.to_string())
                .env("OWL_NODES", "2")
                .env("OWL_HEAD", head)
                .env("OWL_LISTEN", listen)
                .env("OWL_SECRET", &secret)
                .env("OWL_TRANSPORT", transport)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        };
        let n0 = node(0, head);
        let n1 = node(1, "10.231.7.2:0");
        let out0 = n0.wait_with_output().unwrap();
        let out1 = n1.wait_with_output().unwrap();
        // Both nodes' output on a failure: one that exits early leaves the
        // other waiting, and the waiting one has nothing to say.
        let both = |o: &std::process::Output| {
            format!(
                "{}\n{}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        assert!(
            out0.status.success() && out1.status.success(),
            "{transport}: node 0: {}\nnode 1: {}",
            both(&out0),
            both(&out1)
        );
        check_pi(&succeeded(&out0), 2, 1000);
    }
}
