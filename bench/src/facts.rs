//! Facts about the machine, recorded with every run.

use serde_json::{json, Value};

fn first_line_with(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn command(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// CPU model, cores, kernel, io_uring, git commit, and the build profile.
pub fn machine(event_loop: &str) -> Value {
    json!({
        "cpu": first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "memory_gib": first_line_with("/proc/meminfo", "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default(),
        "event_loop": event_loop,
        "io_uring": event_loop == "io_uring",
        "git_commit": command("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into()),
        "git_dirty": command("git", &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
