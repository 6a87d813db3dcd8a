//! Results lost with their node are rebuilt from their tasks (issue 11), on
//! real processes: `owl run -n 3` of `owl-lineage`, whose results above
//! 64 KiB stay on the node that made them. A worker SIGKILLed at a random
//! moment of a tree, a chain or nested tasks: the answer is exactly an
//! undisturbed run's and a plain computation's, node 0 exits 0, and no
//! process of the run and no arena file is left. The driver SIGKILLed
//! mid-tree: every other node ends and nothing is left either.
//!
//! Sizes are the shapes at a test's scale (256 KiB values, still
//! four times the size above which results stay where they are made): the
//! issue's sizes (a 10,000-task tree of 1 MiB leaves, a 1,000-step chain of
//! 1 MiB values) take minutes in a debug build on two cores. `owl-bench
//! recovery` runs the full tree; `owl-lineage` defaults to the full sizes.

mod common;

use std::path::Path;

use serde_json::Value;

use common::run::{result, sigkill, signal, Run};
use common::{clean, files, pick, succeeded, LINEAGE, OWL};
use rustix::process::Signal;

const BYTES: u64 = 256 << 10;
/// Workloads print 20 progress lines per run.
const STEPS: u64 = 20;

/// Debug logs of the owner's rebuilds, to count them.
const REBUILD_LOG: (&str, &str) = ("OWL_LOG", "owl::owner::located=debug");
const REBUILD_LINE: &str = "running its task again";

/// `owl run -n 3 -- owl-lineage workload n BYTES --check` over TCP.
fn start(workload: &str, n: u64, store: &Path, env: &[(&str, &str)]) -> Run {
    let program = [
        LINEAGE.to_string(),
        workload.to_string(),
        n.to_string(),
        BYTES.to_string(),
        "--check".to_string(),
    ];
    Run::start("tcp", store, &program, env)
}

/// The result line of a run that must have ended well, with its answer
/// equal to the plain computation's.
fn answer_of(status: std::process::ExitStatus, stdout: &str, stderr: &str) -> Value {
    assert_eq!(status.code(), Some(0), "node 0's exit decides: {stderr}");
    let v = result(stdout);
    assert!(v["answer"].is_u64(), "{v}");
    assert_eq!(
        v["answer"], v["expected"],
        "the answer is the plain one: {v}"
    );
    v
}

fn no_arena_files(store: &Path) {
    assert_eq!(files(store), Vec::<String>::new(), "arena files left");
}

/// An undisturbed run, then one with node `victim` SIGKILLed once node 0
/// or a task has reported progress somewhere in the first half of `units`.
fn a_worker_killed_mid(workload: &str, n: u64, units: u64, victim: u32) {
    let store = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = start(workload, n, store.path(), &[]).finish();
    let undisturbed = answer_of(status, &stdout, &stderr);
    no_arena_files(store.path());

    let at = pick(1, STEPS / 2) * (units / STEPS).max(1);
    eprintln!("{workload}: killing node {victim} at progress {at}");
    let mut run = start(workload, n, store.path(), &[REBUILD_LOG]);
    run.wait_for_progress(at);
    sigkill(run.node_pid(victim));
    let (status, stdout, stderr) = run.finish();
    assert!(
        stderr.contains(&format!(
            "owl run: node {victim} was killed by signal 9 (SIGKILL); the other 2 nodes go on"
        )),
        "{stderr}"
    );
    let v = answer_of(status, &stdout, &stderr);
    assert_eq!(v["answer"], undisturbed["answer"], "{v} vs {undisturbed}");
    no_arena_files(store.path());
    let rebuilt = stderr.matches(REBUILD_LINE).count();
    eprintln!("{workload}: {rebuilt} results rebuilt after node {victim} died");
}

#[test]
fn a_tree_survives_a_worker_killed_mid_run() {
    // 400 leaves: 100 blocks of 7 tasks, and 99 joins.
    a_worker_killed_mid("tree", 400, 100, pick(1, 3) as u32);
}

#[test]
fn a_chain_survives_a_worker_killed_mid_run() {
    // Node 1: spread places step i on node i % 3, and a step on node 0
    // (the owner) brings its input here, so node 2's values are all on the
    // owner when node 2 dies and nothing of it is rebuilt; node 1's are
    // read by node 2 only and stay where they were made.
    a_worker_killed_mid("chain", 100, 100, 1);
}

#[test]
fn nested_tasks_survive_a_worker_killed_mid_run() {
    // 40 outers of 21 tasks each.
    a_worker_killed_mid("nested", 40, 40, pick(1, 3) as u32);
}

/// A worker SIGSTOPped mid-tree (hung, its connections still open) is
/// declared dead within `dead_after`, and the run goes on without it: its
/// tasks run again elsewhere, and results it held are rebuilt when read
/// (on one host, readers mostly copy them from its arena file, which a
/// stopped process keeps). Woken once the run has gone on without it, it
/// learns it was declared dead and leaves, which fails nothing.
#[test]
fn a_tree_survives_a_worker_stopped_mid_run() {
    let store = tempfile::tempdir().unwrap();
    let victim = pick(1, 3) as u32;
    let at = pick(1, STEPS / 2) * (100 / STEPS);
    eprintln!("tree: stopping node {victim} at progress {at}");
    let env = [REBUILD_LOG, ("OWL_DEAD_AFTER_S", "2")];
    let mut run = start("tree", 400, store.path(), &env);
    run.wait_for_progress(at);
    let pid = run.node_pid(victim);
    signal(pid, Signal::STOP);
    // Blocks finish after it stopped: the driver went on without it.
    run.wait_for_progress(at + 2 * (100 / STEPS));
    signal(pid, Signal::CONT);
    let (status, stdout, stderr) = run.finish();
    answer_of(status, &stdout, &stderr);
    assert!(
        stderr.contains(&format!("[{victim}] owl worker: this node did not run for"))
            && stderr.contains("the cluster declared it dead and went on without it"),
        "node {victim} learns it was declared dead: {stderr}"
    );
    no_arena_files(store.path());
    let rebuilt = stderr.matches(REBUILD_LINE).count();
    eprintln!("tree: {rebuilt} results rebuilt after node {victim} stopped");
}

/// `owl` with the open cluster's state in `state` and arenas in `store`.
fn owl_in(state: &Path, store: &Path, args: &[&str]) -> std::process::Output {
    let mut c = clean(OWL);
    c.env("OWL_STATE_DIR", state).env("OWL_STORE_DIR", store);
    c.args(args).output().unwrap()
}

/// Pids of the nodes `owl start` started in `state`.
fn started(state: &Path) -> Vec<u32> {
    files(&state.join("nodes"))
        .iter()
        .filter_map(|f| f.parse().ok())
        .collect()
}

/// Stops the open cluster of a failed test, so no node outlives it.
struct StopOnDrop<'a>(&'a Path, &'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = owl_in(self.0, self.1, &["stop", "--grace", "2"]);
        }
    }
}

/// The same in an open cluster: a head (`owl start --head`), two
/// `owl-lineage` workers that joined it, and a driver that attaches; a
/// worker SIGKILLed in the first half of `units`. The driver's answer is
/// the plain one, and `owl stop` finds the head and the other worker with
/// empty tables and arenas.
fn a_worker_killed_in_an_open_cluster(workload: &str, n: u64, units: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (state, store) = (dir.path().join("state"), dir.path().join("store"));
    std::fs::create_dir_all(&store).unwrap();
    let _stop = StopOnDrop(&state, &store);
    let head = ["start", "--head", "--port", "0", "--transport", "tcp"];
    succeeded(&owl_in(&state, &store, &head));
    let head = started(&state);
    for _ in 0..2 {
        let out = owl_in(
            &state,
            &store,
            &["start", "--address", "auto", "--", LINEAGE],
        );
        succeeded(&out);
    }
    let workers: Vec<u32> = started(&state)
        .into_iter()
        .filter(|p| !head.contains(p))
        .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    let mut driver = clean(LINEAGE);
    driver
        .env("OWL_STATE_DIR", &state)
        .env("OWL_STORE_DIR", &store)
        .env("OWL_ADDRESS", "auto")
        .env(REBUILD_LOG.0, REBUILD_LOG.1)
        .args([workload, &n.to_string(), &BYTES.to_string(), "--check"]);
    let mut run = Run::spawn(driver);
    let at = pick(1, STEPS / 2) * (units / STEPS).max(1);
    let victim = workers[pick(0, 2) as usize];
    eprintln!("open cluster, {workload}: killing worker pid {victim} at progress {at}");
    run.wait_for_progress(at);
    sigkill(victim);
    let (status, stdout, stderr) = run.finish();
    answer_of(status, &stdout, &stderr);
    let rebuilt = stderr.matches(REBUILD_LINE).count();
    eprintln!("open cluster, {workload}: {rebuilt} results rebuilt after the worker died");
    let stop = succeeded(&owl_in(&state, &store, &["stop"]));
    assert!(stop.contains("2 node(s) stopped, 0 killed"), "{stop}");
    no_arena_files(&store);
    let logs: String = files(&state.join("logs"))
        .iter()
        .map(|f| std::fs::read_to_string(state.join("logs").join(f)).unwrap())
        .collect();
    assert!(
        !logs.contains("panicked") && !logs.contains("leak"),
        "{logs}"
    );
}

#[test]
fn a_tree_survives_a_worker_killed_in_an_open_cluster() {
    a_worker_killed_in_an_open_cluster("tree", 400, 100);
}

#[test]
fn a_chain_survives_a_worker_killed_in_an_open_cluster() {
    a_worker_killed_in_an_open_cluster("chain", 100, 100);
}

#[test]
fn nested_tasks_survive_a_worker_killed_in_an_open_cluster() {
    a_worker_killed_in_an_open_cluster("nested", 40, 40);
}

#[test]
fn the_driver_killed_mid_tree_ends_every_node() {
    let store = tempfile::tempdir().unwrap();
    let run = start("tree", 400, store.path(), &[]);
    let at = pick(1, STEPS / 2) * (100 / STEPS);
    eprintln!("tree: killing node 0 at progress {at}");
    run.kill_driver_at(at);
    no_arena_files(store.path());
}
