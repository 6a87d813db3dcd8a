//! No arena file outlives `owl run` or `owl stop`, however the nodes end:
//! killed by SIGTERM without a handler (node 0 of a program), or by SIGKILL
//! after the grace. Each test uses its own store directory and checks it
//! is empty at the end.

mod common;

use std::path::Path;
use std::process::Output;

use common::{clean, OWL};

/// Set in a node run by the tests below: `polite` dies of SIGTERM (no
/// handler), `stubborn` ignores it.
const NODE: &str = "OWL_LEAK_TEST_NODE";

/// Not a test of its own: the node program (this binary, re-run).
#[test]
fn node() {
    let Ok(kind) = std::env::var(NODE) else {
        return;
    };
    let rt = owl::Runtime::builder()
        .shards(1)
        .pin(false)
        .store_dir(owl_store::store_dir_from_env())
        .store_size(8 << 20)
        .build()
        .unwrap();
    let _x = rt.put(vec![1u8; 1 << 20]).unwrap();
    let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if kind == "stubborn" {
        signal_hook::flag::register(signal_hook::consts::SIGTERM, term).unwrap();
    }
    println!("ready");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn run_nodes(store: &Path, kind: &str, grace: &str) -> Output {
    let exe = std::env::current_exe().unwrap();
    clean("timeout")
        .args([
            "60",
            OWL,
            "run",
            "-n",
            "2",
            "--timeout",
            "3",
            "--grace",
            grace,
            "--",
        ])
        .arg(exe)
        .args(["--exact", "node", "--nocapture", "--test-threads=1"])
        .env(NODE, kind)
        .env("OWL_STORE_DIR", store)
        .output()
        .unwrap()
}

fn assert_ran_and_left_nothing(out: &Output, store: &Path) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(124), "{stdout}");
    // Both nodes made their arena before the timeout stopped them.
    assert_eq!(stdout.matches("ready").count(), 2, "{stdout}");
    assert_eq!(files(store), Vec::<String>::new(), "arena files left");
}

/// `owl run --timeout`: SIGTERM kills nodes that have no handler.
#[test]
fn owl_run_stopped_by_its_timeout_leaves_no_arena() {
    let store = tempfile::tempdir().unwrap();
    let out = run_nodes(store.path(), "polite", "2");
    assert_ran_and_left_nothing(&out, store.path());
}

/// Nodes that ignore SIGTERM are killed after the grace.
#[test]
fn owl_run_killing_nodes_after_the_grace_leaves_no_arena() {
    let store = tempfile::tempdir().unwrap();
    let out = run_nodes(store.path(), "stubborn", "0.3");
    assert_ran_and_left_nothing(&out, store.path());
}

/// `owl stop` kills a node that does not stop within the grace (here a
/// stopped process): its arena goes too.
#[test]
fn owl_stop_killing_a_node_leaves_no_arena() {
    let (state, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let owl = |args: &[&str]| {
        clean(OWL)
            .args(args)
            .env("OWL_STATE_DIR", state.path())
            .env("OWL_STORE_DIR", store.path())
            .output()
            .unwrap()
    };
    let head = owl(&["start", "--head", "--port", "0"]);
    assert!(head.status.success(), "{head:?}");
    let pid: i32 = std::fs::read_dir(state.path().join("nodes"))
        .unwrap()
        .flatten()
        .find_map(|e| e.file_name().to_str()?.parse().ok())
        .expect("the head's node file");
    assert_eq!(files(store.path()).len(), 1, "the head's arena");
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let stop = owl(&["stop", "--grace", "1"]);
    let stdout = String::from_utf8_lossy(&stop.stdout);
    assert!(stdout.contains("1 killed"), "{stdout}");
    assert_eq!(
        files(store.path()),
        Vec::<String>::new(),
        "arena files left"
    );
}
