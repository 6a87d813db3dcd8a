//! The hostlist expander against Slurm's own (`scontrol show hostnames`),
//! where Slurm is installed; skipped (with a line saying so) where not.

use std::process::Command;

#[test]
fn same_as_scontrol() {
    let cases = [
        "vm",
        "node[01-03,7],gpu5",
        "n[8-11]",
        "n[098-101]",
        "n[1,01]",
        "n[007]",
        "rack[1-2]-n[01-02]",
        "a,b[1-3],c[9-10],d",
        "x[0-2],y[00-02,5-6]",
    ];
    let probe = Command::new("scontrol").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: scontrol is not installed (scripts/slurm-local.sh start installs it)");
        return;
    }
    for expr in cases {
        // `scontrol show hostnames` parses locally; no controller needed.
        let out = Command::new("scontrol")
            .args(["show", "hostnames", expr])
            .output()
            .unwrap();
        assert!(out.status.success(), "scontrol rejected {expr}");
        let theirs: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(
            owl_launch::hostlist::expand(expr).unwrap(),
            theirs,
            "{expr}"
        );
    }
}
