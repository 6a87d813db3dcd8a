//! The object store under pressure, on real processes: each case re-runs
//! this test binary inside a mount namespace (`unshare -m`) whose store
//! directory is a 32 MiB tmpfs, as Docker's /dev/shm is small. The tmpfs
//! goes with the namespace, so no arena file can outlive a case; each case
//! also checks its tables, arena and spill directory are empty at the end.
//!
//! Skipped (with a message) where `unshare -m` is refused; a failure
//! instead when `OWL_REQUIRE_NETNS` is set, as CI does.

use std::path::{Path, PathBuf};
use std::process::Command;

use owl::{GetError, PutError, Runtime};

/// Set in the re-run process: which case to run there.
const CHILD: &str = "OWL_PRESSURE_CASE";
const MIB: usize = 1 << 20;

#[owl::remote]
fn made(seed: u64) -> Vec<u8> {
    pattern(seed)
}

fn pattern(seed: u64) -> Vec<u8> {
    (0..MIB as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
        .collect()
}

fn node(store: &Path, spill: &Path, size: u64) -> Runtime {
    Runtime::builder()
        .shards(1)
        .pin(false)
        .spin(std::time::Duration::ZERO)
        .store_dir(store)
        .store_size(size)
        .spill_dir(Some(spill.to_path_buf()))
        .build()
        .expect("node starts")
}

fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var).expect(var).into()
}

/// Runs `case` of this binary in a mount namespace where `OWL_T_STORE` is
/// a 32 MiB tmpfs and, with `spill_mib`, `OWL_T_SPILL` one of that size
/// (else a directory on disk). Returns (stdout, stderr), or `None` when
/// namespaces are unavailable.
fn in_small_tmpfs(case: &str, spill_mib: Option<u32>) -> Option<(String, String)> {
    let ok = Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("OWL_REQUIRE_NETNS").is_some() {
            panic!("OWL_REQUIRE_NETNS is set but `unshare -m` fails (needs root and util-linux)");
        }
        eprintln!("skipped: `unshare -m` is not available (needs root and util-linux; set OWL_REQUIRE_NETNS=1 to make this a failure)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (store, spill) = (dir.path().join("store"), dir.path().join("spill"));
    std::fs::create_dir_all(&store).unwrap();
    std::fs::create_dir_all(&spill).unwrap();
    let mount_spill = match spill_mib {
        Some(m) => format!("mount -t tmpfs -o size={m}m tmpfs \"$OWL_T_SPILL\" && "),
        None => String::new(),
    };
    let script = format!(
        "mount -t tmpfs -o size=32m tmpfs \"$OWL_T_STORE\" && {mount_spill}exec \"$0\" --exact \"$1\" --nocapture --test-threads=1"
    );
    let out = Command::new("timeout")
        .args(["120", "unshare", "-m", "sh", "-c", &script])
        .arg(std::env::current_exe().unwrap())
        .arg(case)
        .env(CHILD, case)
        .env("OWL_T_STORE", &store)
        .env("OWL_T_SPILL", &spill)
        .env_remove("OWL_STORE_DIR")
        .env_remove("OWL_SPILL_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "case {case} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    // Outside the namespace the directories were never mounted over, and
    // the spill directory on disk is empty: nothing was left.
    assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
    Some((stdout, stderr))
}

fn child_case() -> Option<String> {
    std::env::var(CHILD).ok()
}

/// The arena is the default 4 GiB on a 32 MiB tmpfs, spilling to an
/// 8 MiB one: puts and task results past both are typed errors (the node
/// used to die of SIGBUS at the first page the tmpfs could not back), the
/// values already stored are intact, and everything is freed.
#[test]
fn a_full_store_directory_is_store_full_not_sigbus() {
    if child_case().is_some() {
        let (store, spill) = (env_path("OWL_T_STORE"), env_path("OWL_T_SPILL"));
        let rt = node(&store, &spill, 4 << 30);
        let mut kept = Vec::new();
        let mut err = None;
        for seed in 0..100u64 {
            match rt.put(pattern(seed)) {
                Ok(r) => kept.push(r),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.expect("100 MiB cannot fit in 32 + 8 MiB");
        assert!(matches!(err, PutError::StoreFull(_)), "{err}");
        println!("STOREFULL after {} MiB: {err}", kept.len());
        assert!(kept.len() >= 24, "only {} MiB fit", kept.len());
        // A task's result has no room either: its error says so.
        match made.remote(&rt, 1000).unwrap().get_blocking() {
            Err(GetError::Task(e)) => println!("RESULT FAILED: {e}"),
            other => panic!("expected a store error, got {other:?}"),
        }
        for (seed, r) in kept.iter().enumerate() {
            assert!(*r.get_blocking().unwrap() == pattern(seed as u64)[..]);
        }
        drop(kept);
        rt.assert_no_leaks();
        let arena = rt.store_stats();
        drop(rt);
        assert_eq!(arena.spilled_bytes, 0);
        assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0);
        return;
    }
    let Some((out, err)) =
        in_small_tmpfs("a_full_store_directory_is_store_full_not_sigbus", Some(8))
    else {
        return;
    };
    assert!(out.contains("STOREFULL after"), "{out}");
    assert!(out.contains("RESULT FAILED"), "{out}");
    assert!(out.contains("object store is full"), "{out}");
    // Start-up said the directory is smaller than the arena.
    assert!(err.contains("has room for"), "{err}");
}

/// Live objects (puts and task results) three times the arena's size: the
/// oldest spill to disk, every value reads back intact, and freeing them
/// empties the spill file.
#[test]
fn live_objects_three_times_the_arena_complete() {
    if child_case().is_some() {
        let (store, spill) = (env_path("OWL_T_STORE"), env_path("OWL_T_SPILL"));
        // The arena's size is the whole tmpfs: room runs out through both
        // the size and the filesystem (the tmpfs holds a little else).
        let rt = node(&store, &spill, 32 << 20);
        let puts: Vec<_> = (0..48u64).map(|s| rt.put(pattern(s)).unwrap()).collect();
        let results: Vec<_> = (48..96u64).map(|s| made.remote(&rt, s).unwrap()).collect();
        for (seed, r) in puts.iter().chain(&results).enumerate() {
            assert!(
                *r.get_blocking().unwrap() == pattern(seed as u64)[..],
                "object {seed} changed"
            );
        }
        let stats = rt.store_stats();
        println!("SPILLED {} MiB", stats.spilled_bytes >> 20);
        assert!(stats.resident_bytes <= stats.capacity, "{stats:?}");
        assert!(stats.spilled_bytes >= 60 * MIB, "{stats:?}");
        drop((puts, results));
        rt.assert_no_leaks();
        assert_eq!(rt.store_stats().spilled_bytes, 0);
        drop(rt);
        assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0);
        return;
    }
    if let Some((out, _)) = in_small_tmpfs("live_objects_three_times_the_arena_complete", None) {
        assert!(out.contains("SPILLED"), "{out}");
    }
}
