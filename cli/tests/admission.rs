//! What a head does with connections that do not authenticate, as real
//! processes on loopback: idle connections cannot use up its descriptors
//! and lock nodes out (it runs under `prlimit`), it raises its soft
//! descriptor limit, repeated refusals are logged a few times rather than
//! once each, and a node with another cluster secret is refused once,
//! clearly, on both sides.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{clean, succeeded, OWL};
use socket2::{Domain, SockAddr, Socket, Type};

/// Stops whatever the test started in `state`, even when it fails midway.
struct StopOnDrop<'a>(&'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = clean(OWL)
            .env("OWL_STATE_DIR", self.0)
            .args(["stop", "--grace", "2"])
            .output();
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts a head under `prlimit --nofile=LIMITS`, logging warnings;
/// returns its address and pid.
fn head_under(state: &Path, nofile: &str, transport: &str) -> (SocketAddr, u32) {
    let mut c = clean("prlimit");
    c.arg(format!("--nofile={nofile}"))
        .arg(OWL)
        .args(["start", "--head", "--port", "0", "--transport", transport])
        .env("OWL_STATE_DIR", state)
        .env("OWL_LOG", "warn");
    let said = succeeded(&c.output().unwrap());
    let address = said
        .split_whitespace()
        .nth(4)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {said}"));
    let pid = said
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {said}"));
    (address, pid)
}

/// The head's log (the only node started in `state`).
fn head_log(state: &Path) -> String {
    std::fs::read_dir(state.join("logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

/// `owl stop` in `state`, which must succeed; what it printed.
fn stop(state: &Path) -> String {
    let out = clean(OWL).env("OWL_STATE_DIR", state).arg("stop").output();
    succeeded(&out.unwrap())
}

/// `owl start --address` into its own state directory.
fn join(state: &Path, head: SocketAddr, transport: &str) -> std::process::Command {
    let mut c = clean(OWL);
    c.env("OWL_STATE_DIR", state)
        .env("OWL_LOG", "warn")
        .env("OWL_CONNECT_TIMEOUT_S", "20")
        .args(["start", "--address", &head.to_string()])
        .args(["--transport", transport, "--wait", "40"]);
    c
}

/// Lets this test process hold `n` sockets.
fn allow_fds(n: u64) -> bool {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current.is_none_or(|c| c >= n) {
        return true;
    }
    let raised = Rlimit {
        current: Some(n),
        maximum: lim.maximum,
    };
    setrlimit(Resource::Nofile, raised).is_ok()
}

/// 1,100 connections from 127.0.0.2 that never say a word, against a head
/// allowed 1,024 descriptors: a node from 127.0.0.1 still joins, and the
/// head logs its refusals a few times, not once each.
#[test]
fn idle_connections_cannot_lock_nodes_out() {
    const IDLE: usize = 1100;
    if !allow_fds(IDLE as u64 + 200) {
        panic!(
            "this test needs {} open files; raise the hard limit (ulimit -Hn)",
            IDLE + 200
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (state, joiner) = (dir.path().join("head"), dir.path().join("node"));
    let (_stop, _stop_joiner) = (StopOnDrop(&state), StopOnDrop(&joiner));
    let (head, _) = head_under(&state, "1024:1024", "tcp");

    let from = SockAddr::from("127.0.0.2:0".parse::<SocketAddr>().unwrap());
    let to = SockAddr::from(head);
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&from).unwrap();
        // A head that stopped accepting lets its backlog fill; then a
        // connect waits. Bounded: what matters is what the head does.
        if s.connect_timeout(&to, Duration::from_secs(2)).is_ok() {
            idle.push(s);
        }
    }
    assert!(idle.len() > 1000, "only {} connections opened", idle.len());

    let out = join(&joiner, head, "tcp")
        .env("OWL_SECRET_FILE", state.join("secret"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("owl node 1 joined"),
        "a node could not join past {IDLE} idle connections: {}",
        stderr(&out)
    );
    drop(idle);
    let said = stop(&joiner);
    assert!(said.contains("1 node(s) stopped"), "{said}");
    let said = stop(&state);
    assert!(said.contains("1 node(s) stopped"), "{said}");

    let log = head_log(&state);
    // One line per kind and source per 10 s: turned away over the cap,
    // and timed out waiting to authenticate.
    let refusals = log.matches("turned a connection away").count()
        + log.matches("refused a connection").count();
    assert!(
        (1..=10).contains(&refusals),
        "{refusals} refusal lines:\n{log}"
    );
    assert!(log.contains("already waiting to authenticate"), "{log}");
    assert!(log.matches("accept failed").count() <= 10, "{log}");
}

/// A head started with a soft limit of 1,024 open files and a hard one of
/// 4,096 runs with 4,096.
#[test]
fn a_node_raises_its_soft_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("head");
    let _stop = StopOnDrop(&state);
    let (_, pid) = head_under(&state, "1024:4096", "tcp");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let figures: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(figures, ["4096", "4096"], "{line}");
}

/// A node holding another cluster secret is refused at its first attempt:
/// it stops with an error that names the secret, and the head logs the
/// refusal once rather than at every retry for the connect timeout.
fn another_secret_is_refused_once(transport: &str, says: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (state, joiner) = (dir.path().join("head"), dir.path().join("node"));
    let (_stop, _stop_joiner) = (StopOnDrop(&state), StopOnDrop(&joiner));
    let (head, _) = head_under(&state, "4096:4096", transport);
    let out = join(&joiner, head, transport)
        .env("OWL_SECRET", "ab".repeat(32))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(says), "{err}");
    assert!(err.matches("refused").count() <= 3, "{err}");
    let said = stop(&state);
    assert!(said.contains("1 node(s) stopped"), "{said}");
    let log = head_log(&state);
    let refusals = log.matches("refused a connection").count();
    assert!(
        (1..=2).contains(&refusals),
        "{refusals} refusal lines:\n{log}"
    );
}

#[test]
fn another_secret_is_refused_once_over_quic() {
    another_secret_is_refused_once("quic", "holds a different cluster secret");
}

#[test]
fn another_secret_is_refused_once_over_tcp() {
    another_secret_is_refused_once("tcp", "did not prove knowledge of the cluster secret");
}
