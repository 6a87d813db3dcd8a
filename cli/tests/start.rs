//! `owl start`, `owl stop`, `owl status` as real processes on loopback: a
//! head, an `owl-pi` worker and a plain owl worker run in the background;
//! `owl-pi` drivers attach with `OWL_ADDRESS=auto`, their tasks go only to
//! the members that run their function, and every node checks its tables
//! and arena are empty when it stops.

mod common;

use std::path::Path;
use std::process::Command;

use common::{bounded, clean, succeeded, Netns, OWL, PI};
use serde_json::Value;

fn in_state(mut c: Command, state: &Path) -> Command {
    c.env("OWL_STATE_DIR", state);
    c
}

fn owl(state: &Path, args: &[&str]) -> std::process::Output {
    in_state(clean(OWL), state).args(args).output().unwrap()
}

/// Stops whatever the test started in `state` even when it fails midway,
/// so no node outlives its test.
struct StopOnDrop<'a>(&'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = owl(self.0, &["stop", "--grace", "2"]);
        }
    }
}

fn pids(state: &Path) -> Vec<u32> {
    std::fs::read_dir(state.join("nodes"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Running (a zombie waiting for a parent that does not reap is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Attaches an `owl-pi` driver; returns its per-node task counts.
fn drive(state: &Path, tasks: u64) -> Vec<u64> {
    let mut c = in_state(bounded(PI), state);
    c.env("OWL_ADDRESS", "auto").arg(tasks.to_string());
    per_node(&c.output().unwrap())
}

/// The per-node task counts of an `owl-pi` run that must have succeeded.
fn per_node(out: &std::process::Output) -> Vec<u64> {
    let stdout = succeeded(out);
    let line = stdout.lines().find(|l| l.starts_with('{')).unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    let pi = v["pi"].as_f64().unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.05, "{v}");
    common::per_node(&v)
}

fn long_lived_cluster(transport: &str) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let _stop = StopOnDrop(state);
    let head = owl(
        state,
        &["start", "--head", "--port", "0", "--transport", transport],
    );
    let out = succeeded(&head);
    assert!(out.contains("owl head started at 127.0.0.1:"), "{out}");
    let pi_worker = owl(state, &["start", "--address", "auto", "--", PI]);
    assert!(succeeded(&pi_worker).contains("owl node 1 joined"));
    let address = out.split_whitespace().nth(4).unwrap().to_string();
    let plain_worker = owl(state, &["start", "--address", &address]);
    assert!(succeeded(&plain_worker).contains("owl node 2 joined"));
    let status = succeeded(&owl(state, &["status"]));
    assert_eq!(status.matches("running").count(), 3, "{status}");
    // The cluster's own view: the three nodes and the node asking.
    let view = succeeded(&owl(state, &["status", "--cluster"]));
    let rows: Vec<Vec<&str>> = view
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 4, "{view}");
    assert!(rows.iter().all(|r| r[1] == "up"), "{view}");
    assert_eq!(
        (rows[1][0], rows[1][2]),
        ("1", "other"),
        "owl-pi is another program: {view}"
    );
    assert_eq!((rows[2][0], rows[2][2]), ("2", "owl"), "{view}");
    assert_eq!(rows[3][2..4], ["(this", "query)"], "{view}");

    // Only the driver (node 4; the query was 3) and the owl-pi worker run
    // `hits`: the head and the plain worker (the owl binary) get none.
    let per_node = drive(state, 400);
    assert_eq!(per_node.iter().sum::<u64>(), 400, "{per_node:?}");
    assert_eq!(
        (per_node[0], per_node[2], per_node[3]),
        (0, 0, 0),
        "{per_node:?}"
    );
    assert!(per_node[1] > 0 && per_node[4] > 0, "{per_node:?}");
    // A second driver after the first left: a new id, the same workers.
    let per_node = drive(state, 200);
    assert!(per_node[1] > 0 && per_node[5] > 0, "{per_node:?}");

    let nodes = pids(state);
    assert_eq!(nodes.len(), 3);
    let stop = succeeded(&owl(state, &["stop"]));
    assert!(stop.contains("3 node(s) stopped, 0 killed"), "{stop}");
    assert!(nodes.iter().all(|&p| !alive(p)), "all stopped");
    assert!(!state.join("cluster").exists() && pids(state).is_empty());
    // Every node's leak check passed (a failure panics into its log).
    for log in std::fs::read_dir(state.join("logs")).unwrap() {
        let text = std::fs::read_to_string(log.unwrap().path()).unwrap();
        assert!(
            !text.contains("panicked") && !text.contains("leak"),
            "{text}"
        );
    }
}

#[test]
fn start_attach_and_stop_over_tcp() {
    long_lived_cluster("tcp");
}

#[test]
fn start_attach_and_stop_over_quic() {
    long_lived_cluster("quic");
}

/// A plain worker stopped (SIGSTOP) for longer than `dead_after` is
/// declared dead by the cluster; woken, it joins again as a new member (a
/// new id, so nothing meant for the old one reaches it) and serves on,
/// until `owl stop` stops it with its tables and arena empty.
#[test]
fn a_worker_declared_dead_joins_again_as_a_new_member() {
    use rustix::process::{kill_process, Pid, Signal};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let _stop = StopOnDrop(state);
    let start = |args: &[&str]| {
        let mut c = in_state(clean(OWL), state);
        c.env("OWL_DEAD_AFTER_S", "2").args(args).output().unwrap()
    };
    succeeded(&start(&[
        "start",
        "--head",
        "--port",
        "0",
        "--transport",
        "tcp",
    ]));
    let head = pids(state);
    assert!(succeeded(&start(&["start", "--address", "auto"])).contains("owl node 1 joined"));
    let worker = *pids(state).iter().find(|p| !head.contains(p)).unwrap();
    let signal = |sig| kill_process(Pid::from_raw(worker as i32).unwrap(), sig).unwrap();
    signal(Signal::STOP);
    std::thread::sleep(std::time::Duration::from_secs(5));
    signal(Signal::CONT);
    // Its new id is the next: the cluster's view lists it up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let view = loop {
        let view = succeeded(&owl(state, &["status", "--cluster"]));
        let rejoined = view.lines().any(|l| {
            let row: Vec<&str> = l.split_whitespace().collect();
            row.len() >= 3 && row[0] != "1" && row[0] != "0" && row[1] == "up" && row[2] == "owl"
        });
        if rejoined {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not join again: {view}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(alive(worker), "the same process serves on: {view}");
    let stop = succeeded(&owl(state, &["stop"]));
    assert!(stop.contains("2 node(s) stopped, 0 killed"), "{stop}");
    let logs: String = std::fs::read_dir(state.join("logs"))
        .unwrap()
        .map(|l| std::fs::read_to_string(l.unwrap().path()).unwrap())
        .collect();
    assert!(logs.contains("joining again as a new member"), "{logs}");
    assert!(
        !logs.contains("panicked") && !logs.contains("leak"),
        "{logs}"
    );
}

#[test]
fn start_explains_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let _stop = StopOnDrop(state);
    let none = owl(state, &["start"]);
    assert_eq!(none.status.code(), Some(2));
    let shm = owl(state, &["start", "--head", "--transport", "shm"]);
    assert_eq!(shm.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&shm.stderr).contains("owl run"));
    let orphan = owl(state, &["start", "--address", "auto", "--wait", "20"]);
    assert_eq!(orphan.status.code(), Some(1));
    let err = String::from_utf8_lossy(&orphan.stderr);
    assert!(err.contains("owl start --head"), "{err}");
    let driver = in_state(bounded(PI), state)
        .env("OWL_ADDRESS", "auto")
        .output()
        .unwrap();
    assert!(!driver.status.success());
    assert!(String::from_utf8_lossy(&driver.stderr).contains("owl start --head"));
    let bad_secret = in_state(clean(OWL), state)
        .env("OWL_SECRET", "not-hex")
        .args(["start", "--head", "--port", "0", "--block"])
        .output()
        .unwrap();
    assert_eq!(bad_secret.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_secret.stderr).contains("OWL_SECRET is not valid"));
    let stop = succeeded(&owl(state, &["stop"]));
    assert!(stop.contains("0 node(s)"), "{stop}");
}

/// The head in one network namespace, an `owl-pi` worker and driver in
/// another: nodes with distinct addresses that find each other from the
/// head's address and a shared secret file, as on separate hosts.
#[test]
fn a_cluster_across_two_network_namespaces() {
    let Some(ns) = Netns::create_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    owl_launch::write_secret_file(&secret, &owl_launch::random_secret()).unwrap();
    let (state_a, state_b) = (dir.path().join("a"), dir.path().join("b"));
    let (_stop_a, _stop_b) = (StopOnDrop(&state_a), StopOnDrop(&state_b));
    let head = "10.231.7.1:7412";
    let in_ns = |i: usize, state: &Path, program: &str| {
        let mut c = in_state(clean("ip"), state);
        c.args(["netns", "exec", &ns.names[i], program])
            .env("OWL_SECRET_FILE", &secret);
        c
    };
    let out = in_ns(0, &state_a, OWL)
        .args(["start", "--head", "--listen", head, "--transport", "tcp"])
        .output()
        .unwrap();
    assert!(succeeded(&out).contains(head));
    let out = in_ns(1, &state_b, OWL)
        .args(["start", "--address", head, "--transport", "tcp", "--", PI])
        .output()
        .unwrap();
    assert!(succeeded(&out).contains("listening on 10.231.7.2:"));
    let mut driver = in_ns(1, &state_b, "timeout");
    driver
        .args(["60", PI, "300"])
        .env("OWL_ADDRESS", head)
        .env("OWL_TRANSPORT", "tcp");
    let counts = per_node(&driver.output().unwrap());
    assert_eq!(counts[0], 0, "{counts:?}");
    assert!(counts[1] > 0 && counts[2] > 0, "{counts:?}");
    for state in [&state_b, &state_a] {
        let stop = succeeded(&owl(state, &["stop"]));
        assert!(stop.contains("1 node(s) stopped, 0 killed"), "{stop}");
    }
}

/// A driver killed (SIGKILL) in the middle of its run: the worker that ran
/// its tasks drops them and everything it held for it, and still stops
/// with empty tables and arena (its leak check runs at exit).
#[test]
fn a_killed_driver_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let _stop = StopOnDrop(state);
    succeeded(&owl(
        state,
        &["start", "--head", "--port", "0", "--transport", "tcp"],
    ));
    succeeded(&owl(state, &["start", "--address", "auto", "--", PI]));
    // SIGKILL leaves the driver's arena behind: keep it in the test's
    // directory rather than /dev/shm.
    let mut driver = in_state(clean(PI), state)
        .env("OWL_ADDRESS", "auto")
        .env("OWL_STORE_DIR", state)
        .arg("2000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        driver.try_wait().unwrap().is_none(),
        "still running when killed"
    );
    driver.kill().unwrap();
    driver.wait().unwrap();
    // The worker saw it go and is idle again: the cluster no longer lists
    // the driver, and the worker reports nothing queued.
    let t = std::time::Instant::now();
    loop {
        let view = succeeded(&owl(state, &["status", "--cluster"]));
        let driver_listed = view.lines().any(|l| l.starts_with("2 "));
        let worker_idle = view.lines().any(|l| {
            l.split_whitespace()
                .take(5)
                .eq(["1", "up", "other", "1", "0"])
        });
        if (!driver_listed && worker_idle) || t.elapsed() > std::time::Duration::from_secs(20) {
            assert!(!driver_listed && worker_idle, "{view}");
            break;
        }
    }
    let stop = succeeded(&owl(state, &["stop"]));
    assert!(stop.contains("2 node(s) stopped, 0 killed"), "{stop}");
    for log in std::fs::read_dir(state.join("logs")).unwrap() {
        let text = std::fs::read_to_string(log.unwrap().path()).unwrap();
        assert!(
            !text.contains("panicked") && !text.contains("leak"),
            "{text}"
        );
    }
}
