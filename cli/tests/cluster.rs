//! `owl env` launched by a real Slurm (`srun`, `sbatch`) and a real Open MPI
//! (`mpirun`) on this machine: every rank must find its rank, the size, the
//! same head (reachable: `--check-head` connects every rank to it) and the
//! same secret.
//!
//! Skipped, with a line saying so, where `srun` (with a controller that
//! answers) or `mpirun` is missing — unless `OWL_REQUIRE_SLURM` /
//! `OWL_REQUIRE_MPI` is set, as `.ci/run` does, which turns a skip into a
//! failure. `scripts/slurm-local.sh start --with-mpi` sets both up.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const OWL: &str = env!("CARGO_BIN_EXE_owl");

fn on_path(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether to run; panics when required but unavailable.
fn available(what: &str, require_var: &str, ok: bool, how: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os(require_var).is_some() {
        panic!("{require_var} is set but {what} is not available: {how}");
    }
    eprintln!(
        "skipped: {what} is not available ({how}; set {require_var}=1 to make this a failure)"
    );
    false
}

/// A command with none of the launchers' variables leaking in from the
/// test's own environment, and a private HOME (the shared cluster secret
/// goes to `$HOME/.owl`).
fn launcher(program: &str, home: &Path) -> Command {
    let mut c = Command::new("timeout");
    c.arg("60").arg(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("OWL_")
            || k.starts_with("SLURM_")
            || k.starts_with("OMPI_")
            || k.starts_with("PMIX_")
        {
            c.env_remove(k);
        }
    }
    c.env("HOME", home);
    c
}

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "launch failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// All ranks 0..n present once, one size, one head, one secret, all reached
/// the head.
fn check_cluster(ranks: &[Value], n: u64, source: &str) {
    assert_eq!(ranks.len() as u64, n, "{ranks:?}");
    let got: BTreeSet<u64> = ranks.iter().map(|r| r["rank"].as_u64().unwrap()).collect();
    assert_eq!(got, (0..n).collect::<BTreeSet<_>>(), "{ranks:?}");
    for r in ranks {
        assert_eq!(r["size"], n, "{r}");
        assert_eq!(r["source"], source, "{r}");
        assert_eq!(r["head"], ranks[0]["head"], "{ranks:?}");
        assert_eq!(r["secret_fp"], ranks[0]["secret_fp"], "{ranks:?}");
        assert_eq!(r["job"], ranks[0]["job"], "{ranks:?}");
        assert_eq!(r["head_reachable"], true, "{r}");
    }
    let head = ranks.iter().find(|r| r["rank"] == 0).unwrap();
    assert_eq!(head["head_listener"], true, "rank 0 bound the head: {head}");
    assert_eq!(head["listen"], head["head"], "{head}");
}

fn slurm_ready() -> bool {
    let ok = on_path("srun")
        && Command::new("timeout")
            .args(["3", "sinfo", "-h"])
            .output()
            .is_ok_and(|o| o.status.success());
    available(
        "Slurm (srun with a running controller)",
        "OWL_REQUIRE_SLURM",
        ok,
        "run scripts/slurm-local.sh start",
    )
}

#[test]
fn srun_places_two_ranks() {
    if !slurm_ready() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let out = launcher("srun", home.path())
        .args([
            "-n",
            "2",
            "--overcommit",
            OWL,
            "env",
            "--json",
            "--check-head",
            "--wait",
            "30",
        ])
        .output()
        .unwrap();
    let ranks = json_lines(&out);
    check_cluster(&ranks, 2, "slurm");
    let secret = home.path().join(".owl/cluster-secret");
    assert!(secret.exists(), "rank 0 created the shared secret");
}

#[test]
fn sbatch_script_without_srun_is_a_single_node() {
    if !slurm_ready() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("job.out");
    let script = format!("{OWL} env --json; srun {OWL} env --json --check-head --wait 30");
    // `sbatch --wait` polls every ~10 s; asking squeue every 50 ms is faster.
    let out = launcher("sbatch", home.path())
        .args(["--parsable", "-n", "2", "--overcommit", "-o"])
        .arg(&log)
        .args(["--wrap", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "sbatch: {out:?}");
    let job = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let q = Command::new("timeout")
            .args(["10", "squeue", "-h", "-j", &job])
            .output()
            .unwrap();
        let gone = String::from_utf8_lossy(&q.stderr).contains("Invalid job id");
        if gone || (q.status.success() && q.stdout.iter().all(u8::is_ascii_whitespace)) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = Command::new("scancel").arg(&job).status();
            panic!(
                "batch job {job} did not finish in 60 s; log: {:?}",
                std::fs::read_to_string(&log)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        lines[0]["source"], "single",
        "the batch script itself: {text}"
    );
    assert_eq!(lines[0]["size"], 1);
    check_cluster(&lines[1..], 2, "slurm");
}

#[test]
fn mpirun_places_two_ranks_through_the_rendezvous_file() {
    if !available(
        "mpirun",
        "OWL_REQUIRE_MPI",
        on_path("mpirun"),
        "apt-get install openmpi-bin",
    ) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let out = launcher("mpirun", home.path())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args([
            "-n",
            "2",
            "--oversubscribe",
            OWL,
            "env",
            "--json",
            "--check-head",
            "--wait",
            "30",
        ])
        .output()
        .unwrap();
    let ranks = json_lines(&out);
    check_cluster(&ranks, 2, "mpi");
    let file = ranks[0]["rendezvous_file"].as_str().unwrap();
    assert!(file.ends_with(".head"), "{file}");
    assert_eq!(
        std::fs::read_to_string(file).unwrap().trim(),
        ranks[0]["head"].as_str().unwrap()
    );
    let _ = std::fs::remove_file(file);
    // A second mpirun is a different job: a different rendezvous file.
    let again = json_lines(
        &launcher("mpirun", home.path())
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .args([
                "-n",
                "2",
                "--oversubscribe",
                OWL,
                "env",
                "--json",
                "--check-head",
                "--wait",
                "30",
            ])
            .output()
            .unwrap(),
    );
    check_cluster(&again, 2, "mpi");
    assert_ne!(again[0]["job"], ranks[0]["job"]);
    let _ = std::fs::remove_file(again[0]["rendezvous_file"].as_str().unwrap());
}

const PI: &str = env!("CARGO_BIN_EXE_owl-pi");

/// The line `owl-pi` printed on node 0: both nodes ran tasks.
fn check_pi_run(out: &Output, nodes: u64) {
    let lines = json_lines(out);
    assert_eq!(lines.len(), 1, "only node 0 runs main: {lines:?}");
    let per_node = lines[0]["per_node"].as_array().unwrap();
    assert_eq!(per_node.len() as u64, nodes, "{lines:?}");
    assert!(
        per_node.iter().all(|n| n.as_u64().unwrap() > 0),
        "{lines:?}"
    );
}

#[test]
fn srun_runs_an_owl_program_on_two_nodes() {
    if !slurm_ready() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    for transport in ["tcp", "quic"] {
        let out = launcher("srun", home.path())
            .env("OWL_TRANSPORT", transport)
            .env("OWL_CHECK_LEAKS", "1")
            .env("OWL_SHARDS", "1")
            .args(["-n", "2", "--overcommit", PI, "2000"])
            .output()
            .unwrap();
        check_pi_run(&out, 2);
    }
}

#[test]
fn mpirun_runs_an_owl_program_on_two_nodes() {
    if !available(
        "mpirun",
        "OWL_REQUIRE_MPI",
        on_path("mpirun"),
        "apt-get install openmpi-bin",
    ) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let out = launcher("mpirun", home.path())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args([
            "-n",
            "2",
            "--oversubscribe",
            "-x",
            "OWL_CHECK_LEAKS=1",
            "-x",
            "OWL_SHARDS=1",
            "-x",
            "OWL_TRANSPORT=tcp",
            PI,
            "2000",
        ])
        .output()
        .unwrap();
    check_pi_run(&out, 2);
}

/// Tasks and milliseconds per task of the runs a rank dies in: long enough
/// that rank 2 still holds queued tasks when rank 0 has a quarter of the
/// results.
const TASKS: u64 = 600;
const TASK_MS: u64 = 5;

/// How a launch ended when rank 2 was SIGKILLed after rank 0 had
/// `TASKS / 4` results: its status, stdout and stderr.
fn kill_rank_2(mut launch: Command, rank_var: &str) -> (std::process::ExitStatus, String, String) {
    use std::io::BufRead;
    let store = tempfile::tempdir().unwrap();
    let mark = format!("{}-{}", std::process::id(), rank_var);
    let mut child = launch
        .args([PI, &TASKS.to_string(), &TASK_MS.to_string()])
        .env("OWL_TEST_MARK", &mark)
        .env("OWL_STORE_DIR", store.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = Vec::new();
    // The launch is bounded by `timeout 60`: the lines end with it.
    for line in lines.by_ref().map_while(Result::ok) {
        let done = line
            .strip_prefix("progress ")
            .and_then(|p| p.split('/').next()?.parse::<u64>().ok());
        stderr.push(line);
        if done.is_some_and(|d| d >= TASKS / 4) {
            break;
        }
    }
    let ranks = marked(&mark, None);
    let rank_2 = marked(&mark, Some((rank_var, "2")));
    assert_eq!(rank_2.len(), 1, "rank 2: {rank_2:?}\n{}", stderr.join("\n"));
    let pid = rustix::process::Pid::from_raw(rank_2[0] as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    stderr.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    // The launcher reaps its ranks as it ends; a moment for the last.
    let t = std::time::Instant::now();
    while !marked(&mark, None).is_empty() && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(marked(&mark, None), Vec::<u32>::new(), "ranks left running");
    // Ranks the launcher did not reap are orphans, which PID 1 here reaps
    // only every ~2 s; until then their pids hold their arena files.
    while ranks
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
        && t.elapsed() < std::time::Duration::from_secs(20)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A rank killed by a signal cannot remove its arena file, and no
    // `owl run` is there to: the next node started on this host sweeps
    // it. Sweeping here must leave nothing, so every file left was a
    // dead rank's.
    owl_store::sweep(store.path(), &[]);
    let left: Vec<_> = std::fs::read_dir(store.path()).unwrap().collect();
    assert!(left.is_empty(), "arena files of live processes: {left:?}");
    (status, stdout.join().unwrap(), stderr.join("\n"))
}

/// Live `owl-pi` ranks with `OWL_TEST_MARK=mark` (and `var=value`).
fn marked(mark: &str, var: Option<(&str, &str)>) -> Vec<u32> {
    let want = |environ: &[u8], kv: String| environ.split(|&b| b == 0).any(|v| v == kv.as_bytes());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
            let running = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            });
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            running
                && exe.is_ok_and(|e| e == Path::new(PI))
                && want(&env, format!("OWL_TEST_MARK={mark}"))
                && var.is_none_or(|(k, v)| want(&env, format!("{k}={v}")))
        })
        .collect()
}

/// Points inside for `TASKS` tasks on one undisturbed node.
fn undisturbed_inside() -> Value {
    let out = Command::new(PI)
        .arg(TASKS.to_string())
        .env_remove("OWL_NODE_ID")
        .env_remove("SLURM_PROCID")
        .output()
        .unwrap();
    json_lines(&out)[0]["inside"].clone()
}

/// A rank SIGKILLed mid-run under `srun --no-kill --kill-on-bad-exit=0`
/// (the README's flags): the step goes on, rank 0 retries the dead rank's
/// tasks on the survivors and prints the exact answer. With
/// `--kill-on-bad-exit=1` (what a site's `KillOnBadExit=1` sets) the same
/// death ends the step: the flags keep it, not luck.
#[test]
fn srun_keeps_the_step_when_a_rank_dies() {
    if !slurm_ready() {
        return;
    }
    let expected = undisturbed_inside();
    let home = tempfile::tempdir().unwrap();
    let srun = |kill_on_bad_exit: &str| {
        let mut c = launcher("srun", home.path());
        c.env("OWL_TRANSPORT", "tcp")
            .env("OWL_SHARDS", "1")
            .env("OWL_CHECK_LEAKS", "1")
            .args(["-n", "3", "--overcommit", "--no-kill"])
            .arg(format!("--kill-on-bad-exit={kill_on_bad_exit}"));
        c
    };
    let (status, stdout, stderr) = kill_rank_2(srun("0"), "SLURM_PROCID");
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "rank 0's answer: {stdout}\n{stderr}");
    assert_eq!(lines[0]["inside"], expected, "{stdout}");
    assert!(stderr.contains("task 2: Killed"), "{stderr}");
    assert!(!stderr.contains("CANCELLED"), "the step survived: {stderr}");
    // srun's status is the worst task's: 128 + SIGKILL.
    assert_eq!(status.code(), Some(128 + 9), "{stderr}");

    let (_, stdout, stderr) = kill_rank_2(srun("1"), "SLURM_PROCID");
    assert!(!stdout.contains('{'), "no answer: {stdout}");
    assert!(stderr.contains("CANCELLED"), "the step ended: {stderr}");
}

/// The same under `mpirun --enable-recovery`; without it Open MPI aborts
/// the job when a rank dies.
#[test]
fn mpirun_with_recovery_keeps_the_job_when_a_rank_dies() {
    if !available(
        "mpirun",
        "OWL_REQUIRE_MPI",
        on_path("mpirun"),
        "apt-get install openmpi-bin",
    ) {
        return;
    }
    let expected = undisturbed_inside();
    let home = tempfile::tempdir().unwrap();
    let mpirun = |recovery: bool| {
        let mut c = launcher("mpirun", home.path());
        c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .args(["-n", "3", "--oversubscribe"])
            .args(["-x", "OWL_TRANSPORT=tcp", "-x", "OWL_SHARDS=1"])
            .args([
                "-x",
                "OWL_CHECK_LEAKS=1",
                "-x",
                "OWL_TEST_MARK",
                "-x",
                "OWL_STORE_DIR",
            ]);
        if recovery {
            c.arg("--enable-recovery");
        }
        c
    };
    let (status, stdout, stderr) = kill_rank_2(mpirun(true), "OMPI_COMM_WORLD_RANK");
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "rank 0's answer: {stdout}\n{stderr}");
    assert_eq!(lines[0]["inside"], expected, "{stdout}");
    assert!(status.success(), "{status}: {stderr}");

    let (status, stdout, stderr) = kill_rank_2(mpirun(false), "OMPI_COMM_WORLD_RANK");
    assert!(!stdout.contains('{'), "no answer: {stdout}");
    assert!(!status.success(), "{stderr}");
}
