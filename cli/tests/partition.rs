//! A partition between two network namespaces, on real processes: node 0
//! (the driver) in one, node 1 in the other, joined by a veth pair the test
//! takes down in the middle of the work, for longer than `dead_after`, and
//! brings back. The driver's side declares node 1 dead and finishes node
//! 1's tasks itself: the answer is the undisturbed one. Node 1 declares
//! the driver lost and ends by itself; once the link is back, its late
//! messages are not applied (the answer stays right). Neither leaves an
//! arena file.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{clean, files, succeeded, Netns, PI};

const TASKS: u64 = 400;
/// 8 s of work, about 4 s on two nodes: the cut comes well inside it.
const TASK_MS: u64 = 20;

fn inside(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no result line in {stdout}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["inside"].as_u64().unwrap()
}

/// Takes the first namespace's end of the veth pair down or up.
fn link(ns: &Netns, up: bool) {
    let id = std::process::id() % 100_000;
    let state = if up { "up" } else { "down" };
    let ok = Command::new("ip")
        .args(["-n", &ns.names[0], "link", "set", &format!("v{id}a"), state])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip link set {state}");
}

/// Waits for `child` at most 30 s (a node that never sees the partition
/// would wait for the other forever); kills it and fails past that.
fn wait_bounded(mut child: Child, transport: &str, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{transport}: {what} still runs 30 s after the cut: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_partition_longer_than_dead_after_leaves_the_answer_right() {
    let Some(ns) = Netns::create_or_skip() else {
        return;
    };
    let undisturbed = inside(&succeeded(
        &clean(PI)
            .args([TASKS.to_string(), "0".into()])
            .output()
            .unwrap(),
    ));
    let store = tempfile::tempdir().unwrap();
    let secret = "cd".repeat(32);
    let head = "10.231.7.1:7412";
    for transport in ["tcp", "quic"] {
        let node = |i: usize, listen: &str| {
            let mut c = clean("ip");
            c.args(["netns", "exec", &ns.names[i], PI])
                .args([TASKS.to_string(), TASK_MS.to_string()])
                .env("OWL_NODE_ID", i.to_string())
                .env("OWL_NODES", "2")
                .env("OWL_HEAD", head)
                .env("OWL_LISTEN", listen)
                .env("OWL_SECRET", &secret)
                .env("OWL_TRANSPORT", transport)
                .env("OWL_DEAD_AFTER_S", "2")
                .env("OWL_STORE_DIR", store.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        };
        let mut n0 = node(0, head);
        let n1 = node(1, "10.231.7.2:0");
        // Once results come in (the cluster formed and works), cut for
        // twice dead_after.
        let (tx, progress) = std::sync::mpsc::channel();
        let stderr0 = n0.stderr.take().unwrap();
        let log0 = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr0).lines().map_while(Result::ok) {
                if line.starts_with("progress") {
                    let _ = tx.send(());
                }
                lines.push(line);
            }
            lines.join("\n")
        });
        progress
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{transport}: no result came in"));
        link(&ns, false);
        std::thread::sleep(Duration::from_secs(4));
        link(&ns, true);
        let out0 = wait_bounded(n0, transport, "node 0");
        let stdout0 = String::from_utf8_lossy(&out0.stdout).to_string();
        let log0 = log0.join().unwrap();
        assert!(
            out0.status.success(),
            "{transport}: node 0: {}\n{stdout0}{log0}",
            out0.status
        );
        assert_eq!(
            inside(&stdout0),
            undisturbed,
            "{transport}: the driver's answer"
        );
        // Node 1, declared dead, ends by itself.
        let out1 = wait_bounded(n1, transport, "node 1");
        // It was cut off for longer than dead_after: it declared the head
        // lost, or learned that it was declared dead (a partition shorter
        // than dead_after is survived, and node 1 then exits 0).
        let stderr1 = String::from_utf8_lossy(&out1.stderr);
        assert!(
            !out1.status.success()
                && (stderr1.contains("HeadLost") || stderr1.contains("DeclaredDead")),
            "{transport}: node 1 was not cut off: {}\n{stderr1}",
            out1.status
        );
        assert_eq!(
            files(store.path()),
            Vec::<String>::new(),
            "{transport}: arena files left"
        );
    }
}
