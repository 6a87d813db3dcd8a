//! A launched cluster keeps its survivors (issue 11), on real processes:
//! `owl run -n 3` of `owl-pi` whose tasks take a few milliseconds each,
//! spread over the three nodes. A worker SIGKILLed at a random moment of
//! the work: the owner (node 0) retries its tasks on the survivors, the
//! answer is exactly an undisturbed run's, and node 0's exit is the run's.
//! Node 0 SIGKILLed: the run ends with its status and a line saying so.
//! After each, no process of the run and no arena file is left.

mod common;

use std::path::Path;

use common::run::{result, sigkill, Run};
use common::{clean, files, per_node, pick, succeeded, PI};

const TASKS: u64 = 600;
/// Long enough that a third of the tasks are still queued on each worker
/// when node 0 has seen half of the results.
const TASK_MS: u64 = 5;
/// Node 0 prints a progress line every TASKS / 20 results.
const STEPS: u64 = 20;

/// Points inside for `TASKS` tasks, from one undisturbed node: the answer
/// does not depend on which node ran which task.
fn undisturbed_inside() -> u64 {
    let out = clean(PI).arg(TASKS.to_string()).output().unwrap();
    result(&succeeded(&out))["inside"].as_u64().unwrap()
}

/// `owl run -n 3` of `owl-pi` with `TASKS` tasks of `TASK_MS` each.
fn start(transport: &str, store: &Path) -> Run {
    let program = [PI.to_string(), TASKS.to_string(), TASK_MS.to_string()];
    Run::start(transport, store, &program, &[])
}

fn a_worker_killed_mid_run(transport: &str) {
    let expected = undisturbed_inside();
    let store = tempfile::tempdir().unwrap();
    let mut run = start(transport, store.path());
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
    let run = start("tcp", store.path());
    let at = pick(1, STEPS / 2) * (TASKS / STEPS);
    eprintln!("killing node 0 after {at} results");
    run.kill_driver_at(at);
    assert_eq!(
        files(store.path()),
        Vec::<String>::new(),
        "arena files left"
    );
}
