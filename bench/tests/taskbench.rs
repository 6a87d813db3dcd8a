//! owl-taskbench runs every Task Bench pattern with its inputs validated, and
//! reports what the reference implementations report.

use std::process::Command;

fn owl_taskbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_owl-taskbench"))
        .env("OWL_SHARDS", "2")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_pattern_runs_and_validates() {
    let patterns = taskbench::DependenceType::ALL
        .into_iter()
        .filter(|d| d.is_implemented());
    for pattern in patterns.map(|d| d.name()) {
        for kernel in [
            ["-kernel", "compute_bound", "-iter", "8"],
            ["-kernel", "memory_bound", "-iter", "2"],
        ] {
            let mut args = vec!["-steps", "6", "-width", "8", "-type", pattern];
            args.extend(kernel);
            args.extend(["-scratch", "4096", "-output", "64"]);
            let out = owl_taskbench(&args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let expected = taskbench::App::parse(&args).unwrap().total_tasks();
            assert!(
                stdout.contains(&format!("Total Tasks {expected}\n")),
                "{args:?}: {stdout}"
            );
            assert!(stdout.contains("Elapsed Time "), "{args:?}");
            assert!(stdout.contains("FLOP/s "), "{args:?}");
        }
    }
}

#[test]
fn several_graphs_run_together() {
    let args = [
        "-steps",
        "5",
        "-width",
        "4",
        "-type",
        "stencil_1d",
        "-kernel",
        "compute_bound",
        "-iter",
        "4",
        "-and",
        "-steps",
        "3",
        "-width",
        "2",
        "-type",
        "tree",
    ];
    let out = owl_taskbench(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Task Graph 2:"), "{stdout}");
    // 5 rows of 4, then a tree of 1 + 2 + 2.
    assert_eq!(taskbench::App::parse(args).unwrap().total_tasks(), 25);
    assert!(stdout.contains("Total Tasks 25\n"), "{stdout}");
}

#[test]
fn bad_flags_are_refused() {
    let out = owl_taskbench(&["-type", "no_such_pattern"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_pattern"));
    let out = owl_taskbench(&["-steps", "abc"]);
    assert_eq!(out.status.code(), Some(2));
}
