//! An `owl run -n 3` in progress, for tests that kill one of its nodes at a
//! moment the program reports (`progress K/N` lines on stderr).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

use super::{clean, pick, pids_with_env, OWL};

/// The JSON line the program printed on node 0.
pub fn result(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .map(|l| l.trim_start_matches("[0] "))
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no result line in {stdout}"));
    serde_json::from_str(line).unwrap()
}

/// `K` of a `[node] progress K/N` line, from any node (or of a plain
/// `progress K/N` line, from a program run alone).
fn progress(line: &str) -> Option<u64> {
    let rest = match line.strip_prefix('[') {
        Some(tagged) => tagged.split_once("] progress ")?.1,
        None => line.strip_prefix("progress ")?,
    };
    rest.split('/').next()?.parse().ok()
}

/// An `owl run` in progress, its stderr read line by line.
pub struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    /// In every node's environment: finds this run's processes.
    mark: String,
}

impl Run {
    /// `owl run -n 3` of `program` (the binary, then its arguments) with
    /// its arenas in `store` and `env` set on every node; `owl run` gives
    /// up after 50 s.
    pub fn start(transport: &str, store: &Path, program: &[String], env: &[(&str, &str)]) -> Run {
        let mut cmd = clean(OWL);
        cmd.args(["run", "-n", "3", "--transport", transport])
            .args(["--timeout", "50", "--"])
            .args(program)
            .env("OWL_STORE_DIR", store)
            .envs(env.iter().copied());
        if transport == "quic" {
            // A SIGKILLed QUIC peer sends no close: silence tells.
            cmd.env("OWL_DEAD_AFTER_S", "3");
        }
        Run::spawn(cmd)
    }

    /// Runs `cmd` (a program that reports progress on stderr), its output
    /// read as it comes; `finish` checks none of its processes is left.
    pub fn spawn(mut cmd: Command) -> Run {
        let mark = format!("{}-{}", std::process::id(), pick(0, 1 << 40));
        cmd.env("OWL_TEST_MARK", &mark)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
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

    /// Waits (at most 50 s) until a node reports progress `k` or more.
    pub fn wait_for_progress(&mut self, k: u64) {
        let deadline = Instant::now() + Duration::from_secs(50);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!(
                    "no node reported progress {k}; stderr:\n{}",
                    self.stderr.join("\n")
                );
            };
            let done = progress(&line);
            self.stderr.push(line);
            if done.is_some_and(|d| d >= k) {
                return;
            }
        }
    }

    /// The pid of node `node` of this run.
    pub fn node_pid(&self, node: u32) -> u32 {
        let id = node.to_string();
        let pids = pids_with_env(&[("OWL_TEST_MARK", &self.mark), ("OWL_NODE_ID", &id)]);
        assert_eq!(pids.len(), 1, "node {node}: {pids:?}");
        pids[0]
    }

    /// Waits for `owl run` to end (it has its own 50 s timeout) and checks
    /// no process of the run is left; its exit status, stdout and stderr.
    pub fn finish(mut self) -> (ExitStatus, String, String) {
        let status = self.child.wait().unwrap();
        self.stderr.extend(self.lines.iter());
        let stdout = self.stdout.take().unwrap().join().unwrap();
        let left = pids_with_env(&[("OWL_TEST_MARK", &self.mark)]);
        assert!(left.is_empty(), "processes of the run left: {left:?}");
        (status, stdout, self.stderr.join("\n"))
    }
}

impl Run {
    /// SIGKILLs node 0 (the driver) once a node reports progress `at`, and
    /// checks the run ends with its status, says so, and prints no result;
    /// its stderr.
    pub fn kill_driver_at(mut self, at: u64) -> String {
        self.wait_for_progress(at);
        sigkill(self.node_pid(0));
        let (status, stdout, stderr) = self.finish();
        assert_eq!(status.code(), Some(128 + 9), "{stderr}");
        assert!(
            stderr.contains(
                "owl run: node 0 (the driver) was killed by signal 9 (SIGKILL); stopping the other"
            ),
            "{stderr}"
        );
        assert!(!stdout.contains('{'), "no result: {stdout}");
        stderr
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

pub fn sigkill(pid: u32) {
    signal(pid, Signal::KILL);
}

pub fn signal(pid: u32, sig: Signal) {
    kill_process(Pid::from_raw(pid as i32).unwrap(), sig).unwrap();
}
