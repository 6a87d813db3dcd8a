//! Helpers shared by the process tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Command, Output};

pub const OWL: &str = env!("CARGO_BIN_EXE_owl");
pub const PI: &str = env!("CARGO_BIN_EXE_owl-pi");

/// `program` with no launcher variables leaking in from the test's own
/// environment, one shard, and leak checks at exit.
pub fn clean(program: &str) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if ["OWL_", "SLURM_", "OMPI_", "PMIX_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            c.env_remove(k);
        }
    }
    c.env("OWL_CHECK_LEAKS", "1").env("OWL_SHARDS", "1");
    c
}

/// [`clean`], killed after 60 s.
pub fn bounded(program: &str) -> Command {
    let mut c = clean("timeout");
    c.arg("60").arg(program);
    c
}

/// Stdout of a run that must have succeeded (else a panic with both streams).
pub fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "run failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
