//! A launched cluster keeps its survivors (issue 11), on real processes:
//! `owl run -n 3` of `owl-pi` whose tasks take a few milliseconds each,
//! spread over the three nodes. A worker SIGKILLed at a random moment of
//! the work: the owner (node 0) retries its tasks on the survivors, the
//! answer is exactly an undisturbed run's, and node 0's exit is the run's.
//! Node 0 SIGKILLed: the run ends with its status and a line saying so.
//! After each, no process of the run and no arena file is left.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

use common::{clean, files, per_node, pick, pids_with_env, succeeded, OWL, PI};

const TASKS: u64 = 600;
/// Long enough that a third of the tasks are still queued on each worker
/// when node 0 has seen half of the results.
const TASK_MS: u64 = 5;
/// Node 0 prints a progress line every TASKS / 20 results.
const STEPS: u64 = 20;

/// The JSON line `owl-pi` printed on node 0.
fn result(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .map(|l| l.trim_start_matches("[0] "))
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no result line in {stdout}"));
    serde_json::from_str(line).unwrap()
}

/// Points inside for `TASKS` tasks, from one undisturbed node: the answer
/// does not depend on which node ran which task.
fn undisturbed_inside() -> u64 {
    let out = clean(PI).arg(TASKS.to_string()).output().unwrap();
    result(&succeeded(&out))["inside"].as_u64().unwrap()
}

/// An `owl run` in progress, its stderr read line by line.
struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    /// In every node's environment: finds this run's processes.
    mark: String,
}

impl Run {
    fn start(transport: &str, store: &Path) -> Run {
        let mark = format!("{}-{}", std::process::id(), pick(0, 1 << 40));
        let mut cmd = clean(OWL);
        cmd.args(["run", "-n", "3", "--transport", transport])
            .args(["--timeout", "50", "--", PI])
            .args([TASKS.to_string(), TASK_MS.to_string()])
            .env("OWL_STORE_DIR", store)
            .env("OWL_TEST_MARK", &mark)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if transport == "quic" {
            // A SIGKILLed QUIC peer sends no close: silence tells.
            cmd.env("OWL_DEAD_AFTER_S", "3");
        }
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run {
            child,
            lines,
            stderr: Vec::new(),
            stdout: Some(stdout),
            mark,
        }
    }

    /// Waits (at most 50 s) until node 0 has `k` results.
    fn wait_for_progress(&mut self, k: u64) {
        let deadline = Instant::now() + Duration::from_secs(50);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!(
                    "node 0 never reported {k} results; stderr:\n{}",
                    self.stderr.join("\n")
                );
            };
            let done = line
                .strip_prefix("[0] progress ")
                .and_then(|p| p.split('/').next()?.parse::<u64>().ok());
            self.stderr.push(line);
            if done.is_some_and(|d| d >= k) {
                return;
            }
        }
    }

    /// The pid of node `node` of this run.
    fn node_pid(&self, node: u32) -> u32 {
        let id = node.to_string();
        let pids = pids_with_env(&[("OWL_TEST_MARK", &self.mark), ("OWL_NODE_ID", &id)]);
        assert_eq!(pids.len(), 1, "node {node}: {pids:?}");
        pids[0]
    }

    /// Waits for `owl run` to end (it has its own 50 s timeout); its exit
    /// status, stdout and stderr.
    fn finish(mut self) -> (ExitStatus, String, String) {
        let status = self.child.wait().unwrap();
        self.stderr.extend(self.lines.iter());
        let stdout = self.stdout.take().unwrap().join().unwrap();
        let left = pids_with_env(&[("OWL_TEST_MARK", &self.mark)]);
        assert!(left.is_empty(), "processes of the run left: {left:?}");
        (status, stdout, self.stderr.join("\n"))
    }
}

impl Drop for Run {
    /// A failed test stops its run: SIGTERM to `owl run`, which stops its
    /// nodes and reaps them.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), Signal::TERM);
            let _ = self.child.wait();
        }
    }
}

fn sigkill(pid: u32) {
    kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
}

fn a_worker_killed_mid_run(transport: &str) {
    let expected = undisturbed_inside();
    let store = tempfile::tempdir().unwrap();
    let mut run = Run::start(transport, store.path());
    // Somewhere in the first half: node 2 still holds a third of the
    // tasks, most of them queued.
    let at = pick(1, STEPS / 2) * (TASKS / STEPS);
    eprintln!("killing node 2 after {at} results");
    run.wait_for_progress(at);
    sigkill(run.node_pid(2));
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(0), "node 0's exit decides: {stderr}");
    assert!(
        stderr
            .contains("owl run: node 2 was killed by signal 9 (SIGKILL); the other 2 nodes go on"),
        "{stderr}"
    );
    let v = result(&stdout);
    assert_eq!(v["inside"], expected, "the answer: {v}");
    let per_node = per_node(&v);
    assert_eq!(per_node.iter().sum::<u64>(), TASKS, "{v}");
    assert!(
        per_node[0] > 0 && per_node[1] > 0,
        "the survivors ran tasks: {v}"
    );
    assert_eq!(
        files(store.path()),
        Vec::<String>::new(),
        "arena files left"
    );
}

#[test]
fn a_worker_killed_mid_run_over_tcp() {
    a_worker_killed_mid_run("tcp");
}

#[test]
fn a_worker_killed_mid_run_over_quic() {
    a_worker_killed_mid_run("quic");
}

#[test]
fn node_0_killed_mid_run_ends_the_run() {
    let store = tempfile::tempdir().unwrap();
    let mut run = Run::start("tcp", store.path());
    let at = pick(1, STEPS / 2) * (TASKS / STEPS);
    eprintln!("killing node 0 after {at} results");
    run.wait_for_progress(at);
    sigkill(run.node_pid(0));
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(128 + 9), "{stderr}");
    assert!(
        stderr.contains(
            "owl run: node 0 (the driver) was killed by signal 9 (SIGKILL); stopping the other"
        ),
        "{stderr}"
    );
    assert!(!stdout.contains('{'), "no result: {stdout}");
    assert_eq!(
        files(store.path()),
        Vec::<String>::new(),
        "arena files left"
    );
}
