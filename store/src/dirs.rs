//! Where the arena and its spill file live, and whether there is room.

use std::path::{Path, PathBuf};

/// The default store directory: /dev/shm, else the temporary directory.
pub fn default_store_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// `OWL_STORE_DIR`, else [`default_store_dir`]: where a node started with
/// this environment keeps its arena.
pub fn store_dir_from_env() -> PathBuf {
    std::env::var_os("OWL_STORE_DIR").map_or_else(default_store_dir, PathBuf::from)
}

/// The default spill directory: `spill` in owl's state directory
/// (`$OWL_STATE_DIR`, else `$TMPDIR/owl-<uid>`, as `owl start` uses). Not
/// `$XDG_RUNTIME_DIR`, which `owl start` prefers for its small files: it
/// is a tmpfs, and spilling from memory into memory frees nothing.
pub fn default_spill_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OWL_STATE_DIR") {
        return PathBuf::from(d).join("spill");
    }
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    std::env::temp_dir()
        .join(format!("owl-{uid}"))
        .join("spill")
}

/// Bytes the filesystem of `dir` can still take from this user, if known.
pub fn room(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}
