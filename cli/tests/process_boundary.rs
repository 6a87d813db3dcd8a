//! What `owl start`, `owl stop` and `owl status` trust on this host, as
//! real processes: the state directory must be the user's and private,
//! what they write there is private, `owl stop` signals only processes
//! that are verifiably the nodes recorded, and a head listening beyond
//! loopback says so and prints an address others can dial.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::{bounded, clean, succeeded, Netns, OWL, PI};
use owl_launch::nodefile::{probe, Probe};

fn owl_in(state: &Path, args: &[&str]) -> Output {
    clean(OWL)
        .env("OWL_STATE_DIR", state)
        .args(args)
        .output()
        .unwrap()
}

/// Stops whatever the test started in `state`, even when it fails midway.
struct StopOnDrop<'a>(&'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = owl_in(self.0, &["stop", "--grace", "2"]);
    }
}

/// Unrelated processes (`sleep`) that `owl stop` must leave alone; killed
/// and reaped on drop.
struct Bystanders(Vec<Child>);

impl Bystanders {
    fn spawn(n: usize) -> Self {
        Self(
            (0..n)
                .map(|_| Command::new("sleep").arg("60").spawn().unwrap())
                .collect(),
        )
    }
    fn all_alive(&mut self) -> bool {
        self.0.iter_mut().all(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Bystanders {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn node_pids(state: &Path) -> Vec<u32> {
    std::fs::read_dir(state.join("nodes"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A head killed with SIGKILL leaves its node file behind; its pid then
/// belongs to someone else, or a file names a process it never described.
/// `owl stop` stops the real head and signals neither of the others.
#[test]
fn stop_signals_only_processes_that_are_the_recorded_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The killed head cannot remove its arena: keep it in the test's
    // directory rather than /dev/shm.
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let _stop = StopOnDrop(&state);
    let start_head = || {
        let out = clean(OWL)
            .env("OWL_STATE_DIR", &state)
            .env("OWL_STORE_DIR", &store)
            .args(["start", "--head", "--port", "0", "--transport", "tcp"])
            .output()
            .unwrap();
        succeeded(&out);
    };

    start_head();
    let killed = node_pids(&state)[0];
    let stale = std::fs::read_to_string(state.join("nodes").join(killed.to_string())).unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(killed as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let t = Instant::now();
    while probe(killed) != Probe::Gone {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the head survived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut others = Bystanders::spawn(2);
    let (reused, planted) = (others.0[0].id(), others.0[1].id());
    // The dead head's record as if its pid had been reused by `reused`.
    let stale_reused = stale.replace(&format!("pid={killed}"), &format!("pid={reused}"));
    let nodes = state.join("nodes");
    std::fs::write(nodes.join(reused.to_string()), stale_reused).unwrap();
    std::fs::write(
        nodes.join(planted.to_string()),
        format!("node=1\naddress=127.0.0.1:1\npid={planted}\n"),
    )
    .unwrap();

    start_head();
    let status = succeeded(&owl_in(&state, &["status"]));
    assert_eq!(status.matches(" running").count(), 1, "{status}");
    assert!(status.contains("gone (pid reused)"), "{status}");

    let out = owl_in(&state, &["stop", "--grace", "5"]);
    let said = succeeded(&out);
    assert!(
        said.contains("1 node(s) stopped, 0 killed, 2 stale record(s) removed"),
        "{said}\n{}",
        stderr(&out)
    );
    assert!(
        others.all_alive(),
        "owl stop signalled a process that is not a node"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("pid {reused} is no longer the node")),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {planted} not signalled")),
        "{err}"
    );
    // The planted file is kept (it may be a node of an older owl); the
    // stale ones are gone.
    assert_eq!(node_pids(&state), vec![planted]);
}

/// A state directory others can write, or that another user owns, is
/// refused by every command that reads or writes it; in a good one every
/// file is 0600 and every directory 0700.
#[test]
fn the_state_directory_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let _stop_open = StopOnDrop(&open);
    let refused = |state: &Path, why: &str| {
        let out = owl_in(state, &["start", "--head", "--port", "0", "--wait", "20"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        assert!(!state.join("nodes").exists(), "nothing started");
        for args in [&["stop"][..], &["status"][..]] {
            let out = owl_in(state, args);
            assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        }
        let driver = bounded(PI)
            .env("OWL_STATE_DIR", state)
            .env("OWL_ADDRESS", "auto")
            .output()
            .unwrap();
        assert!(!driver.status.success());
        assert!(stderr(&driver).contains(why), "{}", stderr(&driver));
    };
    refused(&open, "writable by others");
    if rustix::process::geteuid().is_root() {
        let foreign = dir.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        refused(&foreign, "owned by uid 65534");
    }

    // An existing directory from an older owl, logs/ 0755: narrowed.
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("logs")).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(state.join("logs"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _stop = StopOnDrop(&state);
    succeeded(&owl_in(&state, &["start", "--head", "--port", "0"]));
    for d in ["", "nodes", "logs"] {
        assert_eq!(mode(&state.join(d)), 0o700, "{d}/");
    }
    let pid = node_pids(&state)[0];
    assert_eq!(mode(&state.join("nodes").join(pid.to_string())), 0o600);
    assert_eq!(mode(&state.join("cluster")), 0o600);
    assert_eq!(mode(&state.join("secret")), 0o600);
    for log in std::fs::read_dir(state.join("logs")).unwrap() {
        assert_eq!(mode(&log.unwrap().path()), 0o600, "log file");
    }
    let stop = succeeded(&owl_in(&state, &["stop"]));
    assert!(stop.contains("1 node(s) stopped"), "{stop}");
}

/// A head listening on every interface warns that the cluster is exposed
/// and tells others an address they can reach (here, in a network
/// namespace of its own, the veth address), and a node in another
/// namespace joins through it.
#[test]
fn a_head_beyond_loopback_warns_and_prints_a_reachable_address() {
    let Some(ns) = Netns::create_or_skip() else {
        return;
    };
    // The route outward is how the head finds its address.
    let routed = Command::new("ip")
        .args(["-n", &ns.names[0], "route", "add", "default", "dev"])
        .arg(format!("v{}a", std::process::id() % 100_000))
        .status()
        .unwrap();
    assert!(routed.success());
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    owl_launch::write_secret_file(&secret, &owl_launch::random_secret()).unwrap();
    let (state_a, state_b) = (dir.path().join("a"), dir.path().join("b"));
    let (_stop_a, _stop_b) = (StopOnDrop(&state_a), StopOnDrop(&state_b));
    let in_ns = |i: usize, state: &Path| {
        let mut c = clean("ip");
        c.args(["netns", "exec", &ns.names[i], OWL])
            .env("OWL_STATE_DIR", state)
            .env("OWL_SECRET_FILE", &secret);
        c
    };
    let out = in_ns(0, &state_a)
        .args([
            "start",
            "--head",
            "--listen",
            "0.0.0.0:7414",
            "--transport",
            "tcp",
        ])
        .output()
        .unwrap();
    let said = succeeded(&out);
    assert!(
        stderr(&out).contains("beyond loopback: the cluster is reachable from the network"),
        "{}",
        stderr(&out)
    );
    assert!(
        said.contains("owl head started at 10.231.7.1:7414"),
        "{said}"
    );
    assert!(
        said.contains("owl start --address 10.231.7.1:7414"),
        "{said}"
    );
    let out = in_ns(1, &state_b)
        .args([
            "start",
            "--address",
            "10.231.7.1:7414",
            "--transport",
            "tcp",
        ])
        .output()
        .unwrap();
    assert!(succeeded(&out).contains("owl node 1 joined"));
    for state in [&state_b, &state_a] {
        let stop = succeeded(&owl_in(state, &["stop"]));
        assert!(stop.contains("1 node(s) stopped, 0 killed"), "{stop}");
    }
}
