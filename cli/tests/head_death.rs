//! An open cluster whose head dies (issue 11), on real processes: the head
//! is on no task's path, so a member keeps serving the driver attached to
//! it, whose answer is exactly an undisturbed run's; a node that tries to
//! join fails at once with an error saying the head is gone, until a head
//! is back. `owl stop` then stops every node, the old members included,
//! and no process or arena file is left.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

use common::{alive, bounded, clean, files, pick, succeeded, OWL, PI};

const TASKS: u64 = 400;
const TASK_MS: u64 = 5;

/// A cluster's state and store directories; whatever the test started
/// there is stopped when it ends, passed or not.
struct Cluster {
    state: tempfile::TempDir,
    store: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            state: tempfile::tempdir().unwrap(),
            store: tempfile::tempdir().unwrap(),
        }
    }

    fn env(&self, program: &str, bounded_run: bool) -> std::process::Command {
        let mut c = if bounded_run {
            bounded(program)
        } else {
            clean(program)
        };
        c.env("OWL_STATE_DIR", self.state.path())
            .env("OWL_STORE_DIR", self.store.path());
        c
    }

    fn owl(&self, args: &[&str]) -> Output {
        self.env(OWL, false).args(args).output().unwrap()
    }

    /// The pids recorded in `nodes/`.
    fn pids(&self) -> Vec<u32> {
        std::fs::read_dir(self.state.path().join("nodes"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The head's pid and address, as recorded.
    fn head(&self) -> (u32, String) {
        let text = std::fs::read_to_string(self.state.path().join("cluster")).unwrap();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        (field("pid=").parse().unwrap(), field("address="))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.owl(&["stop", "--grace", "2"]);
    }
}

fn result(out: &Output) -> Value {
    let stdout = succeeded(out);
    let line = stdout.lines().find(|l| l.starts_with('{')).unwrap();
    serde_json::from_str(line).unwrap()
}

fn start_head(c: &Cluster) {
    let out = c.owl(&["start", "--head", "--port", "0", "--transport", "tcp"]);
    assert!(succeeded(&out).contains("owl head started"));
}

fn join(c: &Cluster, address: &str) -> Output {
    c.owl(&["start", "--address", address, "--", PI])
}

#[test]
fn members_outlive_their_head_and_joins_wait_for_a_new_one() {
    let expected = result(&clean(PI).arg(TASKS.to_string()).output().unwrap())["inside"].clone();
    let c = Cluster::new();
    start_head(&c);
    let (head_pid, address) = c.head();
    assert!(succeeded(&join(&c, "auto")).contains("owl node 1 joined"));
    let member = c.pids().into_iter().find(|&p| p != head_pid).unwrap();

    // A driver spreads its tasks over itself and the member; the head
    // dies at a random moment in the first half of them.
    let mut driver = c
        .env(PI, true)
        .env("OWL_ADDRESS", "auto")
        .args([TASKS.to_string(), TASK_MS.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let at = pick(1, 10) * (TASKS / 20);
    eprintln!("killing the head after {at} results");
    let mut lines = BufReader::new(driver.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let done = line
            .strip_prefix("progress ")
            .and_then(|p| p.split('/').next()?.parse::<u64>().ok());
        seen.push(line);
        if done.is_some_and(|d| d >= at) {
            break;
        }
    }
    kill_process(Pid::from_raw(head_pid as i32).unwrap(), Signal::KILL).unwrap();
    seen.extend(lines.map_while(Result::ok));
    let mut out = driver.wait_with_output().unwrap();
    out.stderr = seen.join("\n").into_bytes();
    let v = result(&out);
    assert_eq!(v["inside"], expected, "{v}");
    let per_node = v["per_node"].as_array().unwrap();
    assert!(
        per_node[1].as_u64().unwrap() > TASKS / 4,
        "the member served on after the head died: {v}"
    );
    assert!(alive(member), "the member outlived its head");

    // No head: a join says so at once, by either name of the cluster.
    for a in ["auto", address.as_str()] {
        let out = join(&c, a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{a}: {err}");
        assert!(
            err.contains(&format!("the cluster's head at {address} (pid {head_pid}"))
                && err.contains("is gone, so no node can join")
                && err.contains("owl start --head"),
            "{a}: {err}"
        );
    }

    // A head is back (a new cluster): joins work again. The dead head's
    // arena goes with the next sweep once its pid is free: it was started
    // in the background, so PID 1 reaps it (here only every ~2 s), and
    // until then a young file of a pid in use is left alone.
    let t = std::time::Instant::now();
    while Path::new(&format!("/proc/{head_pid}")).exists()
        && t.elapsed() < std::time::Duration::from_secs(20)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    start_head(&c);
    assert!(succeeded(&join(&c, "auto")).contains("joined"));
    let pids = c.pids();
    let stop = succeeded(&c.owl(&["stop", "--grace", "2"]));
    assert!(
        stop.contains(" 0 killed"),
        "every node stopped on SIGTERM: {stop}"
    );
    for pid in pids.into_iter().chain([head_pid, member]) {
        assert!(!alive(pid), "node {pid} left running");
    }
    assert_eq!(
        files(c.store.path()),
        Vec::<String>::new(),
        "arena files left"
    );
}
