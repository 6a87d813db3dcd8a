//! Helpers shared by the process tests.
#![allow(dead_code)] // each test binary uses its own subset

pub mod run;

use std::process::{Command, Output};

pub const OWL: &str = env!("CARGO_BIN_EXE_owl");
pub const PI: &str = env!("CARGO_BIN_EXE_owl-pi");
pub const LINEAGE: &str = env!("CARGO_BIN_EXE_owl-lineage");

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

/// Two namespaces with one veth pair between them; removed on drop.
pub struct Netns {
    pub names: [String; 2],
}

impl Netns {
    /// The namespaces (10.231.7.1 in the first, .2 in the second), or
    /// `None` after saying why they were skipped; a skip panics when
    /// `OWL_REQUIRE_NETNS` is set.
    pub fn create_or_skip() -> Option<Netns> {
        let ns = Self::create();
        if ns.is_none() {
            if std::env::var_os("OWL_REQUIRE_NETNS").is_some() {
                panic!("OWL_REQUIRE_NETNS is set but network namespaces cannot be created (needs root and iproute2)");
            }
            eprintln!("skipped: cannot create network namespaces (needs root and iproute2; set OWL_REQUIRE_NETNS=1 to make this a failure)");
        }
        ns
    }

    fn create() -> Option<Netns> {
        let id = std::process::id() % 100_000;
        let names = [format!("owl{id}a"), format!("owl{id}b")];
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !ip(&["netns", "add", &names[0]]) {
            return None;
        }
        let ns = Netns { names };
        let (a, b) = (&ns.names[0], &ns.names[1]);
        let (va, vb) = (format!("v{id}a"), format!("v{id}b"));
        let ok = ip(&["netns", "add", b])
            && ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])
            && ip(&["link", "set", &va, "netns", a])
            && ip(&["link", "set", &vb, "netns", b])
            && ip(&["-n", a, "addr", "add", "10.231.7.1/24", "dev", &va])
            && ip(&["-n", b, "addr", "add", "10.231.7.2/24", "dev", &vb])
            && ip(&["-n", a, "link", "set", &va, "up"])
            && ip(&["-n", b, "link", "set", &vb, "up"])
            && ip(&["-n", a, "link", "set", "lo", "up"])
            && ip(&["-n", b, "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Running: a zombie (exited, not yet reaped) is not.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with(['Z', 'X'])
    })
}

/// Live processes whose environment holds every `KEY=VALUE` of `env`.
pub fn pids_with_env(env: &[(&str, &str)]) -> Vec<u32> {
    let wanted: Vec<Vec<u8>> = env
        .iter()
        .map(|(k, v)| format!("{k}={v}").into_bytes())
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
                wanted.iter().all(|w| vars.contains(&w.as_slice()))
            })
        })
        .filter(|&pid| alive(pid))
        .collect()
}

/// A random-enough number in `lo..hi` (the test picks a moment; it prints
/// the pick, so a failure can be replayed by hand).
pub fn pick(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    lo + u64::from(nanos ^ std::process::id()) % (hi - lo)
}

/// Names of the files in `dir`.
pub fn files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The per-node task counts in an `owl-pi` result line.
pub fn per_node(v: &serde_json::Value) -> Vec<u64> {
    v["per_node"]
        .as_array()
        .unwrap_or_else(|| panic!("no per_node in {v}"))
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect()
}
