//! `owl start`, `owl stop`, `owl status`: long-lived (open) clusters.
//!
//! `owl start --head` runs node 0 of a cluster that nodes join and leave
//! while it runs; `owl start --address HOST:PORT|auto` runs a node that
//! joins it and serves tasks: owl's own (this binary's functions) or, with
//! `-- PROGRAM ARGS`, a program's, the program then being the node
//! (`OWL_ROLE=worker`). Programs attach as drivers with `OWL_ADDRESS`.
//! A joined node whose head dies keeps serving until stopped; joining
//! fails at once while this host's records show the head gone.
//!
//! Without `--block` the node runs in the background: `owl start` starts
//! itself again with `--block` in a new process group, its output going to
//! a log file in the state directory, and returns once the node is up (its
//! node file exists) or prints the log when it failed. The state directory
//! (see `owl_launch::open`; refused unless it is the user's and writable
//! only by them) records the cluster (`cluster`, `secret`) and each node
//! started here (`nodes/<pid>`, see `nodes`); `owl stop` sends every
//! recorded node that is verifiably still that node SIGTERM (workers
//! first, then the head), waits, and kills what is left after `--grace`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use owl_launch::nodefile::{read_node_file, Identity, NodeRecord};
use owl_launch::open::{self as open, ClusterRecord};
use rustix::process::Signal;

use crate::nodes::{self, nodes_dir, Held};
use crate::Transport;

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Start the head (node 0) of a new cluster.
    #[arg(long, conflicts_with = "address")]
    head: bool,
    /// Head: the port to listen on (0: any free port, printed).
    #[arg(
        long,
        requires = "head",
        default_value_t = 6390,
        conflicts_with = "listen"
    )]
    port: u16,
    /// Head: the address to listen on, ADDR:PORT (default 127.0.0.1:--port;
    /// give this host's address for nodes on other hosts).
    #[arg(long, requires = "head", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Join the cluster whose head is at HOST:PORT (`auto`: the one
    /// recorded on this host).
    #[arg(long, value_name = "HOST:PORT")]
    address: Option<String>,
    /// Transport (head: for the whole cluster, default quic; others:
    /// default the head's when recorded here, else quic).
    #[arg(long, value_enum)]
    transport: Option<Transport>,
    /// Shards (threads) of this node (default: all cores).
    #[arg(long)]
    shards: Option<usize>,
    /// Labels of this node, comma-separated (placement constraints).
    #[arg(long)]
    labels: Option<String>,
    /// Stay in the foreground until stopped (SIGTERM/SIGINT) or, for a
    /// joined node, until the head leaves.
    #[arg(long)]
    block: bool,
    /// Seconds to wait for the node to be up.
    #[arg(long, default_value_t = 60)]
    wait: u64,
    /// A program to run as this node (after `--`; joined nodes only): it
    /// serves the cluster's tasks of its own functions.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM",
        requires = "address"
    )]
    command: Vec<OsString>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Ask the cluster itself: join it briefly (as a driver node with one
    /// shard) and list every member it knows, on any host.
    #[arg(long)]
    cluster: bool,
    /// With --cluster: the head, HOST:PORT (default: OWL_ADDRESS, else
    /// the cluster recorded on this host).
    #[arg(long, value_name = "HOST:PORT", requires = "cluster")]
    address: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    grace: u64,
}

fn fail(what: &str, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("owl {what}: {msg}");
    ExitCode::from(1)
}

fn vars() -> owl_launch::Vars {
    std::env::vars().collect()
}

pub fn start(args: StartArgs) -> ExitCode {
    if !args.head && args.address.is_none() {
        eprintln!("owl start: give --head, or --address HOST:PORT (or auto) to join a cluster");
        return ExitCode::from(2);
    }
    if args.transport == Some(Transport::Shm) {
        eprintln!("owl start: the shm transport needs a fixed set of nodes (owl run); use quic, tcp or tcp-plain");
        return ExitCode::from(2);
    }
    let state = open::state_dir(&vars());
    if let Err(e) = open::prepare_state_dir(&state) {
        return fail("start", e);
    }
    if let Some(address) = &args.address {
        // A head known to be gone fails here, at once, rather than in the
        // background node's log.
        let mut v = vars();
        v.insert("OWL_ADDRESS".into(), address.clone());
        if let Err(e @ owl_launch::LaunchError::HeadGone { .. }) =
            open::attach_from(&v, &owl_launch::SystemResolver)
        {
            return fail("start", e);
        }
    }
    if args.block {
        run_node(args, &state)
    } else {
        background(&state, args.wait, args.head)
    }
}

/// Starts this command again with `--block`, detached, and waits for its
/// node file (and for a head, its cluster record, which `OWL_ADDRESS=auto`
/// reads: the node writes it just after its node file).
fn background(state: &Path, wait: u64, head: bool) -> ExitCode {
    let logs = state.join("logs");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let log_path = logs.join(format!("node-{stamp}-{}.log", std::process::id()));
    let log = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&log_path)
    {
        Ok(f) => f,
        Err(e) => {
            return fail(
                "start",
                format!("cannot create {}: {e}", log_path.display()),
            )
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail("start", format!("cannot find this program: {e}")),
    };
    let mut argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    // `--block` goes before a trailing program's `--`.
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv.insert(at, "--block".into());
    let child = Command::new(exe)
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_or_else(|_| Stdio::null(), Stdio::from))
        .stderr(Stdio::from(log))
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail("start", format!("cannot start the node: {e}")),
    };
    let node_file = nodes_dir(state).join(child.id().to_string());
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        let recorded = || matches!(open::read_cluster(state), Ok(Some(r)) if r.pid == child.id());
        if let Some(info) = read_node_file(&node_file).filter(|_| !head || recorded()) {
            print_started(&info, state, Some(&log_path));
            return ExitCode::SUCCESS;
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                eprint!("{log}");
                return fail(
                    "start",
                    format!(
                        "the node exited ({status}) before it was up; log: {}",
                        log_path.display()
                    ),
                );
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                return fail(
                    "start",
                    format!(
                        "the node was not up after {wait} s; log: {}",
                        log_path.display()
                    ),
                );
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The address to give others for `listen`: itself, unless it is a
/// wildcard (`0.0.0.0`, `::`), which nobody can dial from elsewhere.
fn reachable(listen: &str) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(a) => open::reachable_address(a, &owl_launch::SystemResolver).to_string(),
        Err(_) => listen.to_string(),
    }
}

fn print_started(info: &NodeRecord, state: &Path, log: Option<&Path>) {
    if info.node == 0 {
        let address = reachable(&info.address);
        if let Ok(listen) = info.address.parse::<SocketAddr>() {
            if !listen.ip().is_loopback() {
                eprintln!(
                    "owl start: warning: the head listens on {listen}, beyond loopback: the cluster is reachable from the network. \
                     Its traffic is encrypted and only holders of the cluster secret can join, but anyone who reaches the port can try; \
                     firewall it, or use the default 127.0.0.1 when every node runs on this host."
                );
            }
        }
        println!("owl head started at {address} (pid {})", info.pid);
        println!("  join it:        owl start --address {address} [-- PROGRAM ARGS]");
        println!("  attach a program: OWL_ADDRESS={address} PROGRAM ARGS");
        println!(
            "  (on this host OWL_ADDRESS=auto works; other hosts need OWL_SECRET_FILE with the secret in {})",
            state.join("secret").display()
        );
    } else {
        println!(
            "owl node {} joined, listening on {} (pid {})",
            info.node, info.address, info.pid
        );
    }
    if let Some(log) = log {
        println!("  log: {}", log.display());
    }
    println!("  stop everything started here: owl stop");
}

/// The node itself, in the foreground.
fn run_node(args: StartArgs, state: &Path) -> ExitCode {
    let node_file = nodes_dir(state).join(std::process::id().to_string());
    let mut env: Vec<(&str, String)> = vec![("OWL_NODE_FILE", node_file.display().to_string())];
    if let Some(t) = args.transport {
        env.push(("OWL_TRANSPORT", t.as_str().into()));
    }
    if let Some(n) = args.shards {
        env.push(("OWL_SHARDS", n.to_string()));
    }
    if let Some(l) = &args.labels {
        env.push(("OWL_LABELS", l.clone()));
    }
    if let Some(address) = &args.address {
        env.push(("OWL_ADDRESS", address.clone()));
        env.push(("OWL_ROLE", "worker".into()));
        if let Some((program, rest)) = args.command.split_first() {
            // The program is the node: same pid, so the node file and
            // `owl stop` name it.
            let err = Command::new(program).args(rest).envs(env).exec();
            return fail(
                "start",
                format!("cannot run {}: {err}", program.to_string_lossy()),
            );
        }
    }
    for (k, v) in &env {
        std::env::set_var(k, v);
    }
    let builder = match owl::Runtime::builder().from_env() {
        Ok(b) => b,
        Err(e) => return fail("start", e),
    };
    let head = if args.head {
        match head_network(&args) {
            Ok(network) => Some(network),
            Err(e) => return fail("start", e),
        }
    } else {
        None
    };
    let builder = match &head {
        Some(network) => builder.open_head(network.clone()),
        None => builder,
    };
    let rt = match builder.clone().build() {
        Ok(rt) => rt,
        Err(e) => return fail("start", e),
    };
    let pid = std::process::id();
    if let Some(network) = &head {
        let rec = ClusterRecord {
            // A wildcard listener is recorded as an address one can dial.
            address: open::reachable_address(
                rt.listen_addr().expect("a head listens"),
                &owl_launch::SystemResolver,
            ),
            transport: args.transport.unwrap_or(Transport::Quic).as_str().into(),
            pid,
        };
        if let Err(e) = open::write_cluster(state, &rec, &network.secret) {
            return fail("start", e);
        }
    }
    if let Some(info) = read_node_file(&node_file) {
        print_started(&info, state, None);
    }
    let served = if args.head {
        let served = rt.serve();
        open::remove_cluster(state, pid);
        drop(rt);
        served
    } else {
        // A worker declared dead while it did not run (SIGSTOP, a paused
        // VM) joins again as a new member, as `#[owl::main]` programs do.
        rt.serve_rejoining(builder)
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("start", format!("node stopped: {e}")),
    }
}

/// The head's network: its listen address, the secret (`OWL_SECRET_FILE`
/// or `OWL_SECRET`, else a fresh one) and the transport.
fn head_network(args: &StartArgs) -> Result<owl::Network, String> {
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], args.port)));
    let secret = match std::env::var("OWL_SECRET_FILE") {
        Ok(p) => owl_launch::read_secret_file(Path::new(&p)).map_err(|e| e.to_string())?,
        Err(_) => match std::env::var("OWL_SECRET") {
            Ok(hex) => owl_launch::parse_hex(&hex)
                .ok_or("OWL_SECRET is not valid: expected 64 hex characters (32 bytes)")?,
            Err(_) => owl_launch::random_secret(),
        },
    };
    let transport = match args.transport.unwrap_or(Transport::Quic) {
        Transport::Quic => owl::Transport::Quic,
        Transport::Tcp => owl::Transport::Tcp,
        Transport::TcpPlain => owl::Transport::TcpPlaintext,
        Transport::Shm => return Err("the shm transport needs a fixed set of nodes".into()),
    };
    Ok(owl::Network::new(listen, listen, secret, transport))
}

pub fn stop(args: StopArgs) -> ExitCode {
    let state = open::state_dir(&vars());
    if let Err(e) = open::check_state_dir_if_present(&state) {
        return fail("stop", e);
    }
    let head = open::read_cluster(&state).ok().flatten();
    let is_head = |r: &nodes::Recorded| {
        r.record.as_ref().is_some_and(|i| i.node == 0)
            || head.as_ref().is_some_and(|h| h.pid == r.pid)
    };
    let (heads, workers): (Vec<_>, Vec<_>) = nodes::recorded(&state).into_iter().partition(is_head);
    // Every node's store directory, for the arena files of nodes that
    // could not remove their own (killed after the grace).
    let mut stores = vec![owl_store::store_dir_from_env()];
    for dir in workers
        .iter()
        .chain(&heads)
        .filter_map(|r| r.record.as_ref()?.store.clone())
    {
        if !stores.contains(&dir) {
            stores.push(dir);
        }
    }
    let (mut stopped, mut killed, mut stale) = (0, 0, 0);
    let mut kept = Vec::new();
    // Recorded nodes that ended before (killed, say): their arena files
    // go too (a zombie nobody reaped still has its pid).
    let mut gone: Vec<u32> = Vec::new();
    let mut signalled: Vec<Held> = Vec::new();
    for group in [workers, heads] {
        let mut held = Vec::new();
        for rec in &group {
            match Held::verify(rec) {
                Ok(h) => held.push(h),
                Err(Identity::Unverifiable) => {
                    eprintln!(
                        "owl stop: {} does not say which process started as that node (a planted file, or one from an older owl); pid {} not signalled, file kept: stop the node yourself if it is one",
                        rec.path.display(),
                        rec.pid
                    );
                    kept.push(rec.pid);
                    continue;
                }
                Err(identity) => {
                    if identity == Identity::Other {
                        eprintln!(
                            "owl stop: pid {} is no longer the node recorded in {} (it died and the pid was reused); not signalled",
                            rec.pid,
                            rec.path.display()
                        );
                    }
                    stale += 1;
                    gone.push(rec.pid);
                    let _ = std::fs::remove_file(&rec.path);
                }
            }
        }
        for h in &held {
            h.signal(Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(args.grace);
        while held.iter().any(Held::alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for h in &held {
            if h.alive() {
                h.signal(Signal::KILL);
                killed += 1;
                eprintln!(
                    "owl stop: node pid {} did not stop within {} s; killed",
                    h.pid, args.grace
                );
            } else {
                stopped += 1;
            }
            let _ = std::fs::remove_file(nodes_dir(&state).join(h.pid.to_string()));
        }
        signalled.extend(held);
    }
    if let Some(h) = head.filter(|h| !kept.contains(&h.pid)) {
        open::remove_cluster(&state, h.pid);
    }
    // Nodes killed after the grace cannot remove their arena files; the
    // kernel releases a killed node's lock on its file as the node ends,
    // which SIGKILL makes certain (the wait is for a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(10);
    while signalled.iter().any(Held::alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pids: Vec<u32> = signalled.iter().map(|h| h.pid).chain(gone).collect();
    for dir in &stores {
        owl_store::sweep(dir, &pids);
    }
    println!(
        "owl stop: {stopped} node(s) stopped, {killed} killed, {stale} stale record(s) removed"
    );
    ExitCode::SUCCESS
}

pub fn status(args: StatusArgs) -> ExitCode {
    if args.cluster {
        return cluster_status(args.address);
    }
    let state = open::state_dir(&vars());
    if let Err(e) = open::check_state_dir_if_present(&state) {
        return fail("status", e);
    }
    let recorded = nodes::recorded(&state);
    match open::read_cluster(&state) {
        Ok(Some(c)) => {
            let running = recorded
                .iter()
                .any(|r| r.pid == c.pid && r.identity() == Identity::Node);
            println!(
                "cluster  head {} over {} (head pid {}{})",
                c.address,
                c.transport,
                c.pid,
                if running { "" } else { ", not running" }
            )
        }
        Ok(None) => println!("cluster  none recorded in {}", state.display()),
        Err(e) => return fail("status", e),
    }
    for rec in &recorded {
        let up = nodes::describe(&rec.identity());
        let pid = rec.pid;
        match &rec.record {
            Some(i) => println!("node {:<4} pid {pid:<8} {:<22} {up}", i.node, i.address),
            None => println!("node ?    pid {pid:<8} {:<22} {up}", "(unreadable)"),
        }
    }
    ExitCode::SUCCESS
}

/// `owl status --cluster`: the members as a node that just joined sees them.
fn cluster_status(address: Option<String>) -> ExitCode {
    let address = address
        .or_else(|| std::env::var("OWL_ADDRESS").ok())
        .unwrap_or_else(|| "auto".into());
    std::env::set_var("OWL_ADDRESS", &address);
    std::env::set_var("OWL_SHARDS", "1");
    std::env::remove_var("OWL_NODE_FILE");
    let rt = match owl::Runtime::builder()
        .from_env()
        .and_then(|b| b.worker(false).pin(false).build())
    {
        Ok(rt) => rt,
        Err(e) => return fail("status", e),
    };
    // One heartbeat round, so that every member's load is known.
    std::thread::sleep(Duration::from_millis(1200));
    let me = rt.node();
    println!(
        "{:<5} {:<6} {:<13} {:>9} {:>7} {:>5}  labels",
        "node", "state", "program", "functions", "queued", "idle"
    );
    for m in rt.members() {
        let state = if m.up {
            "up"
        } else if m.left {
            "left"
        } else {
            "gone"
        };
        if !m.up && m.same_program.is_none() {
            continue; // never seen by this node: gone before it joined
        }
        let program = match (m.node == me, m.same_program) {
            (true, _) => "(this query)",
            (false, Some(true)) => "owl",
            (false, Some(false)) => "other",
            (false, None) => "?",
        };
        let (queued, idle) = m.load.map_or(("-".into(), "-".into()), |(q, i)| {
            (q.to_string(), i.to_string())
        });
        println!(
            "{:<5} {:<6} {:<13} {:>9} {:>7} {:>5}  {}",
            m.node.0,
            state,
            program,
            m.functions,
            queued,
            idle,
            m.labels.join(",")
        );
    }
    ExitCode::SUCCESS
}
