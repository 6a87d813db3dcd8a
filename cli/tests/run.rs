//! `owl run`, `owl env` and `owl start` as a user runs them.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn owl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_owl"))
        .args(args)
        .env_remove("OWL_NODE_ID")
        .env_remove("OWL_NODES")
        .env_remove("OWL_HEAD")
        .output()
        .unwrap()
}

fn lines(b: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(b)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn run_three_nodes_prefixes_lines() {
    let out = owl(&[
        "run",
        "-n",
        "3",
        "--",
        "sh",
        "-c",
        "echo $OWL_NODE_ID $OWL_NODES; echo e$OWL_NODE_ID >&2",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines(&out.stdout), ["[0] 0 3", "[1] 1 3", "[2] 2 3"]);
    assert_eq!(lines(&out.stderr), ["[0] e0", "[1] e1", "[2] e2"]);
}

#[test]
fn one_node_output_is_not_prefixed() {
    let out = owl(&["run", "-n", "1", "sh", "-c", "echo $OWL_NODE_ID $OWL_NODES"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines(&out.stdout), ["0 1"]);
}

#[test]
fn nodes_share_head_secret_and_transport() {
    let script = r#"
        mode=$(stat -c %a "$OWL_SECRET_FILE"); dmode=$(stat -c %a "$(dirname "$OWL_SECRET_FILE")")
        echo "$OWL_HEAD $OWL_SECRET_FILE $mode $dmode $(wc -c < "$OWL_SECRET_FILE") $OWL_TRANSPORT"
    "#;
    let out = owl(&[
        "run",
        "-n",
        "2",
        "--transport",
        "tcp-plain",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert!(out.status.success(), "{out:?}");
    let l = lines(&out.stdout);
    let a: Vec<&str> = l[0].split_whitespace().skip(1).collect();
    let b: Vec<&str> = l[1].split_whitespace().skip(1).collect();
    assert_eq!(a, b, "both nodes see the same settings");
    assert!(a[0].starts_with("127.0.0.1:"), "{a:?}");
    assert_eq!(&a[2..], ["600", "700", "65", "tcp-plain"]);
    assert!(
        !std::path::Path::new(a[1]).exists(),
        "the secret is removed at the end"
    );
}

#[test]
fn failing_driver_fails_the_run_and_stops_the_workers() {
    let t = Instant::now();
    let out = owl(&[
        "run",
        "-n",
        "3",
        "--",
        "sh",
        "-c",
        "if [ $OWL_NODE_ID = 0 ]; then sleep 0.2; exit 7; fi; sleep 60",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "workers were not stopped promptly: {:?}",
        t.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node 0 (the driver) exited with code 7; stopping the other 2 nodes"),
        "{err}"
    );
}

#[test]
fn worker_ignoring_sigterm_is_killed_after_the_grace() {
    let t = Instant::now();
    let out = owl(&[
        "run",
        "-n",
        "2",
        "--grace",
        "0.5",
        "--",
        "sh",
        "-c",
        "if [ $OWL_NODE_ID = 0 ]; then exit 3; fi; trap '' TERM; sleep 60",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn driver_killed_by_a_signal_reports_it() {
    let out = owl(&[
        "run",
        "-n",
        "2",
        "--",
        "sh",
        "-c",
        "if [ $OWL_NODE_ID = 0 ]; then kill -9 $$; fi; sleep 60",
    ]);
    assert_eq!(out.status.code(), Some(128 + 9), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("node 0 (the driver) was killed by signal 9 (SIGKILL)"));
}

/// Each node writes its pid to `$OWL_TEST_DIR/<node id>`; `wait_gone N`
/// waits until node N has exited (a zombie, or reaped), `wait_reaped N`
/// until `owl run` has reaped it (so it has judged that exit).
const PIDS: &str = r#"
    echo $$ > "$OWL_TEST_DIR/$OWL_NODE_ID"
    pid_of() {
        while [ ! -s "$OWL_TEST_DIR/$1" ]; do sleep 0.01; done
        cat "$OWL_TEST_DIR/$1"
    }
    wait_gone() {
        p=$(pid_of $1)
        while [ -e /proc/$p/stat ] && [ "$(cut -d' ' -f3 /proc/$p/stat)" != Z ]; do sleep 0.01; done
    }
    wait_reaped() {
        p=$(pid_of $1)
        while [ -e /proc/$p ]; do sleep 0.01; done
    }
"#;

fn owl_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_owl"))
        .args(args)
        .env_remove("OWL_NODE_ID")
        .env_remove("OWL_NODES")
        .env_remove("OWL_HEAD")
        .env("OWL_TEST_DIR", dir)
        .output()
        .unwrap()
}

#[test]
fn failing_workers_are_reported_and_node_0_decides() {
    // Node 0 ends only after both workers did, so their ends are judged
    // while it runs (`owl run` looks at the workers first in each pass).
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "{PIDS}
        case $OWL_NODE_ID in
            0) wait_gone 1; wait_gone 2; echo done ;;
            1) exit 7 ;;
            2) kill -9 $$ ;;
        esac"
    );
    let out = owl_in(
        dir.path(),
        &[
            "run",
            "-n",
            "3",
            "--timeout",
            "30",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(lines(&out.stdout), ["[0] done"]);
    assert!(
        err.contains("owl run: node 1 exited with code 7; the other"),
        "{err}"
    );
    assert!(
        err.contains("owl run: node 2 was killed by signal 9 (SIGKILL); the other"),
        "{err}"
    );
    assert!(
        err.contains("go on (node 0, the driver, decides the exit code)"),
        "{err}"
    );

    // The driver's failure is still the run's.
    let script = format!(
        "{PIDS}
        case $OWL_NODE_ID in
            0) wait_gone 1; exit 5 ;;
            1) exit 7 ;;
        esac"
    );
    let out = owl_in(
        dir.path(),
        &[
            "run",
            "-n",
            "2",
            "--timeout",
            "30",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");
}

#[test]
fn worker_failing_after_node_0_succeeded_fails_the_run() {
    // Nothing is left to absorb it (a failed leak check, a panic while
    // leaving): the run fails with its code.
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "{PIDS}
        case $OWL_NODE_ID in
            1) wait_reaped 0; exit 3 ;;
        esac"
    );
    let out = owl_in(
        dir.path(),
        &[
            "run",
            "-n",
            "2",
            "--timeout",
            "30",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(
            "owl run: node 1 exited with code 3 after node 0 finished; the run fails with its code"
        ),
        "{err}"
    );
}

#[test]
fn timeout_stops_the_run() {
    let t = Instant::now();
    let out = owl(&["run", "-n", "2", "--timeout", "0.5", "--", "sleep", "60"]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn sigterm_is_forwarded() {
    let child = Command::new(env!("CARGO_BIN_EXE_owl"))
        .args([
            "run",
            "-n",
            "2",
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 0' TERM; sleep 60 & wait",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(128 + 15), "{out:?}");
    assert_eq!(lines(&out.stdout), ["[0] got-term", "[1] got-term"]);
}

#[test]
fn bad_invocations_exit_2() {
    for args in [
        &["run", "-n", "0", "--", "true"][..],
        &["run", "-n", "2"][..],
        &["run", "-n", "2", "--"][..],
        &["run", "--", "true"][..],
        &["run", "-n", "2", "--", "/nonexistent/owl-program"][..],
        &["run", "-n", "2", "--", "owl-no-such-program-on-path"][..],
        &["run", "-n", "2", "--timeout", "-1", "--", "true"][..],
        &["run", "-n", "2", "--timeout", "1e300", "--", "true"][..],
        &["run", "-n", "2", "--grace", "nan", "--", "true"][..],
        &[
            "run",
            "-n",
            "2",
            "--transport",
            "carrier-pigeon",
            "--",
            "true",
        ][..],
        &["start"][..],
        &["start", "--head", "--transport", "shm"][..],
        &["start", "--address", "127.0.0.1:1", "--transport", "shm"][..],
    ] {
        let out = owl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
    let out = owl(&["run", "-n", "2", "--", "/nonexistent/owl-program"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/owl-program: not found"));
    let out = owl(&["start"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--head"));
}

#[test]
fn env_prints_what_discover_finds() {
    // Under owl run: each node sees its own rank.
    let exe = env!("CARGO_BIN_EXE_owl");
    let out = owl(&[
        "run",
        "-n",
        "2",
        "--",
        exe,
        "env",
        "--json",
        "--check-head",
        "--wait",
        "20",
    ]);
    assert!(out.status.success(), "{out:?}");
    let l = lines(&out.stdout);
    let v: Vec<serde_json::Value> = l
        .iter()
        .map(|s| serde_json::from_str(s.split_once("] ").unwrap().1).unwrap())
        .collect();
    for (i, j) in v.iter().enumerate() {
        assert_eq!(j["rank"], i as u64);
        assert_eq!(j["size"], 2);
        assert_eq!(j["source"], "owl");
        assert_eq!(j["head"], v[0]["head"]);
        assert_eq!(j["head_reachable"], true);
    }
    // With no launcher around: a single node.
    let out = Command::new(exe)
        .args(["env", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((j["rank"].as_u64(), j["size"].as_u64()), (Some(0), Some(1)));
    assert_eq!(j["source"], "single");
}
