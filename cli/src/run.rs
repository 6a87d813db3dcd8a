//! `owl run`: N local nodes of one program.
//!
//! A fresh 32-byte secret goes into a 0600 file in a new 0700 temporary
//! directory (removed at the end); the head's port is a free loopback port
//! picked here (bound, read, released: another program could take it in
//! between, which node 0 then reports). Each child gets `OWL_NODE_ID`,
//! `OWL_NODES`, `OWL_HEAD=127.0.0.1:PORT`, `OWL_SECRET_FILE` and, when
//! `--transport` is given, `OWL_TRANSPORT`. With N > 1 each child's stdout
//! and stderr lines are prefixed with `[i] `. Children have stdin from
//! /dev/null and run in their own process groups, so a signal reaches each
//! node and everything it started exactly once: Ctrl-C, SIGTERM and SIGHUP
//! sent to `owl run` are forwarded (a second Ctrl-C kills).
//!
//! Node 0 is the driver: it runs `main` and owns the run's work, so its
//! exit decides the run's. A worker (node 1..N) that dies or exits while
//! node 0 runs is reported and the others go on: that is a fault owl
//! handles (its tasks are retried on the survivors; a worker its peers
//! declared dead exits by itself). When node 0 fails, the others get
//! SIGTERM, then SIGKILL after `--grace` seconds, and `owl run` exits with
//! node 0's code (128 + signal if it was killed). When node 0 succeeds,
//! the workers leave by themselves; one that fails after that (a leak
//! check, a panic while leaving) fails the run with its code, since
//! nothing is left to absorb it. On `--timeout` it exits 124; when
//! interrupted, 128 + signal. Arena files of nodes that died without
//! removing theirs are removed before `owl run` exits.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::verdict::{signal_name, Action, Verdict};
use crate::Transport;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Number of nodes to start (at least 1).
    #[arg(short = 'n', long = "nodes", value_parser = clap::value_parser!(u32).range(1..=4096))]
    nodes: u32,
    /// Transport the nodes use (sets OWL_TRANSPORT; unset: the program's default).
    #[arg(long, value_enum)]
    transport: Option<Transport>,
    /// Stop all nodes after this many seconds (exit code 124).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Seconds between SIGTERM and SIGKILL when stopping nodes.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    grace: f64,
    /// The program and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    command: Vec<OsString>,
}

const USAGE_ERROR: u8 = 2;

fn fail_usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("owl run: {msg}");
    ExitCode::from(USAGE_ERROR)
}

fn signal_group(pgid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        // The group may be gone already; that is fine.
        let _ = kill_process_group(pid, sig);
    }
}

/// One node: its child process (None once reaped) and how it ended.
struct Node {
    child: Option<Child>,
    pgid: u32,
    status: Option<ExitStatus>,
}

pub fn run(args: RunArgs) -> ExitCode {
    let Some((program, rest)) = args.command.split_first() else {
        return fail_usage("missing the program to run: owl run -n N -- PROGRAM [ARGS...]");
    };
    let timeout = match args.timeout.map(Duration::try_from_secs_f64) {
        None => None,
        Some(Ok(t)) if !t.is_zero() && t < Duration::from_secs(1 << 40) => Some(t),
        Some(_) => return fail_usage("--timeout must be a positive number of seconds"),
    };
    let grace = match Duration::try_from_secs_f64(args.grace) {
        Ok(g) if g < Duration::from_secs(1 << 40) => g,
        _ => return fail_usage("--grace must be a non-negative number of seconds"),
    };
    let n = args.nodes;

    // Signals first, so one arriving while nodes start is not lost.
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("owl run: cannot handle signals: {e}");
            return ExitCode::from(1);
        }
    };

    let secret_dir = match tempfile::Builder::new()
        .prefix("owl-run-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("owl run: cannot create a temporary directory: {e}");
            return ExitCode::from(1);
        }
    };
    let secret_file = secret_dir.path().join("cluster-secret");
    if let Err(e) = write_secret(&secret_file) {
        eprintln!("owl run: cannot write {}: {e}", secret_file.display());
        return ExitCode::from(1);
    }
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => {
            eprintln!("owl run: cannot find a free port on 127.0.0.1: {e}");
            return ExitCode::from(1);
        }
    };
    let head = format!("127.0.0.1:{port}");

    let prefix = n > 1;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut readers = 0usize;
    let mut nodes: Vec<Node> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let mut cmd = Command::new(program);
        cmd.args(rest)
            .env("OWL_NODE_ID", i.to_string())
            .env("OWL_NODES", n.to_string())
            .env("OWL_HEAD", &head)
            .env("OWL_SECRET_FILE", &secret_file)
            .env_remove("OWL_SECRET")
            .stdin(Stdio::null())
            .process_group(0);
        if let Some(t) = args.transport {
            cmd.env("OWL_TRANSPORT", t.as_str());
        }
        if prefix {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let what = match e.kind() {
                    io::ErrorKind::NotFound => "not found".to_string(),
                    io::ErrorKind::PermissionDenied => {
                        "not executable (permission denied)".to_string()
                    }
                    _ => e.to_string(),
                };
                for node in &mut nodes {
                    signal_group(node.pgid, Signal::KILL);
                    if let Some(c) = node.child.as_mut() {
                        let _ = c.wait();
                    }
                }
                drop(secret_dir);
                return fail_usage(format!(
                    "cannot start node {i}: {}: {what}",
                    PathBuf::from(program).display()
                ));
            }
        };
        if prefix {
            if let Some(out) = child.stdout.take() {
                readers += 1;
                spawn_prefixer(out, format!("[{i}] "), false, done_tx.clone());
            }
            if let Some(err) = child.stderr.take() {
                readers += 1;
                spawn_prefixer(err, format!("[{i}] "), true, done_tx.clone());
            }
        }
        nodes.push(Node {
            pgid: child.id(),
            child: Some(child),
            status: None,
        });
    }
    drop(done_tx);

    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    let mut verdict = Verdict::default();
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;

    let stop_others = |nodes: &[Node], sig: Signal| {
        for node in nodes.iter().filter(|n| n.status.is_none()) {
            signal_group(node.pgid, sig);
        }
    };

    loop {
        for sig in signals.pending() {
            let repeat = verdict.interrupted_by().is_some();
            verdict.interrupted(sig);
            if repeat && sig == SIGINT {
                stop_others(&nodes, Signal::KILL);
                killed = true;
            } else if let Some(s) = Signal::from_named_raw(sig) {
                stop_others(&nodes, s);
                kill_at.get_or_insert(Instant::now() + grace);
            }
        }
        // Workers before node 0: a worker reaped in the same pass as node
        // 0 died while node 0 still ran, and is judged so.
        for i in (1..nodes.len()).chain(0..1) {
            let node = &mut nodes[i];
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            node.status = Some(status);
            node.child = None;
            let live = nodes.iter().filter(|n| n.status.is_none()).count();
            match verdict.node_ended(i as u32, status, live) {
                Action::Nothing => {}
                Action::Report(line) => eprintln!("owl run: {line}"),
                Action::StopOthers(line) => {
                    eprintln!("owl run: {line}");
                    stop_others(&nodes, Signal::TERM);
                    kill_at.get_or_insert(Instant::now() + grace);
                }
            }
        }
        if nodes.iter().all(|n| n.status.is_some()) {
            break;
        }
        if deadline.is_some_and(|d| !verdict.has_timed_out() && Instant::now() >= d) {
            verdict.timed_out();
            eprintln!(
                "owl run: timed out after {} s; stopping all nodes",
                args.timeout.unwrap_or_default()
            );
            stop_others(&nodes, Signal::TERM);
            kill_at.get_or_insert(Instant::now() + grace);
        }
        if !killed && kill_at.is_some_and(|k| Instant::now() >= k) {
            stop_others(&nodes, Signal::KILL);
            killed = true;
        }
        thread::sleep(Duration::from_millis(5));
    }

    // Let the prefixers drain what the nodes wrote, without waiting on
    // pipes that something a node started still holds open.
    let drain_until = Instant::now() + Duration::from_secs(1);
    for _ in 0..readers {
        let left = drain_until.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let _ = io::stdout().flush();
    // A node killed by a signal (SIGKILL after the grace, or SIGTERM on a
    // program without a handler) leaves its arena file: every node is
    // reaped now, so whatever they left goes.
    let pids: Vec<u32> = nodes.iter().map(|n| n.pgid).collect();
    owl_store::sweep(&owl_store::store_dir_from_env(), &pids);
    if let Err(e) = secret_dir.close() {
        eprintln!("owl run: cannot remove the secret's directory: {e}");
    }

    if let Some(sig) = verdict.interrupted_by() {
        eprintln!(
            "owl run: interrupted by signal {sig}{}; nodes stopped",
            signal_name(sig)
        );
    }
    ExitCode::from(verdict.exit_code())
}

fn write_secret(path: &std::path::Path) -> io::Result<()> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| io::Error::other(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(format!("{}\n", owl_launch::to_hex(&secret)).as_bytes())?;
    f.sync_all()
}

/// Copies lines from a child's pipe to our stdout or stderr with `prefix`.
fn spawn_prefixer(
    pipe: impl io::Read + Send + 'static,
    prefix: String,
    to_stderr: bool,
    done: mpsc::Sender<()>,
) {
    thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            // One write per line under the lock keeps lines whole; a closed
            // stdout (`owl run … | head`) must not stop the draining.
            let _ = if to_stderr {
                let mut e = io::stderr().lock();
                e.write_all(prefix.as_bytes())
                    .and_then(|_| e.write_all(&line))
                    .and_then(|_| e.flush())
            } else {
                let mut o = io::stdout().lock();
                o.write_all(prefix.as_bytes())
                    .and_then(|_| o.write_all(&line))
                    .and_then(|_| o.flush())
            };
        }
        let _ = done.send(());
    });
}
