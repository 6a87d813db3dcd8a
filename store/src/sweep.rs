//! Arena files left behind by processes that are gone.
//!
//! An arena file is removed when its arena drops, which a process killed
//! by a signal (SIGKILL, or SIGTERM without a handler) never does. Each
//! arena holds an exclusive `flock` on its file for as long as it lives;
//! the kernel drops it when the process dies, however it dies. So a file
//! whose lock can be taken belongs to nobody, whatever its name says: a
//! pid that was reused (by any process, owl or not) or a node in another
//! pid namespace changes nothing. Two cases need the pid after all: the
//! window between a node creating its file and locking it (a few
//! microseconds), and arenas made by owl versions that did not lock. So a
//! free lock is not enough while the named pid is alive: the file must
//! also be older than `FRESH` and not mapped by that process (its
//! `/proc/<pid>/maps` does not show the file's inode), which is what
//! tells a reused pid from the arena's creator.
//!
//! Same-host peers read an arena by path (see `peer`), so the file must
//! stay while its node lives; removing it only once the lock says the node
//! is gone keeps that.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{flock, FlockOperation};

/// A file this young with a free lock may be in its creation window.
const FRESH: Duration = Duration::from_secs(2);

/// Takes the arena's lock (never blocks: the file was just created).
pub(crate) fn lock(file: &File) -> io::Result<()> {
    flock(file, FlockOperation::NonBlockingLockExclusive).map_err(Into::into)
}

/// The pid in an arena file's name `owl-<pid>-<serial>.arena`.
fn arena_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("owl-")?.strip_suffix(".arena")?;
    let (pid, serial) = rest.split_once('-')?;
    serial.parse::<u32>().ok()?;
    pid.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM: alive, someone else's.
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Whether process `pid` maps a file with inode `ino`; `None` if its
/// maps cannot be read (another user's process: assume it does).
fn maps_inode(pid: u32, ino: u64) -> Option<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let ino = ino.to_string();
    // address perms offset dev inode path
    Some(
        maps.lines()
            .any(|l| l.split_whitespace().nth(4) == Some(ino.as_str())),
    )
}

/// Whether nobody holds the arena file at `path`: its lock is free. The
/// file is opened read-only and closed again.
pub fn arena_is_orphaned(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| lock(&f).is_ok())
}

/// Removes the arena files in `dir` whose process is gone: their lock is
/// free, and their pid is in `dead` (processes the caller reaped), or no
/// longer exists, or the file is older than the creation window. Returns
/// the files removed. Files of live arenas, other files, and files this
/// user may not open are left alone.
pub fn sweep(dir: &Path, dead: &[u32]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(arena_pid) else {
            continue;
        };
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if lock(&file).is_err() {
            continue;
        }
        let Ok(meta) = file.metadata() else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > FRESH);
        let gone = dead.contains(&pid)
            || !pid_alive(pid)
            || (old && maps_inode(pid, meta.ino()) == Some(false));
        if gone && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Arena;

    #[test]
    fn names_parse() {
        assert_eq!(arena_pid("owl-12-3.arena"), Some(12));
        assert_eq!(arena_pid("owl-12-3.inbox"), None);
        assert_eq!(arena_pid("owl-x-3.arena"), None);
        assert_eq!(arena_pid("owl-12.arena"), None);
    }

    #[test]
    fn only_unlocked_files_of_gone_processes_go() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        // A live arena, even one whose name says its pid is gone.
        let live = Arena::create(dir.path(), "owl-4000000-1.arena", 1 << 20, 16).unwrap();
        // Unlocked: a dead pid; our own (live) pid but old (the pid was
        // reused); our own pid and fresh (maybe being created).
        let write = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            p
        };
        let dead = write("owl-4000001-1.arena");
        let reused = write(&format!("owl-{me}-900.arena"));
        let old = SystemTime::now() - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&reused)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let fresh = write(&format!("owl-{me}-901.arena"));
        let other = write("notes.txt");
        // An arena of an owl that did not lock: old, but mapped by its
        // (live) process.
        let unlocked = write(&format!("owl-{me}-902.arena"));
        let f = File::options()
            .read(true)
            .write(true)
            .open(&unlocked)
            .unwrap();
        f.set_modified(old).unwrap();
        let map = memmap2::MmapRaw::map_raw(&f).unwrap();
        let removed = sweep(dir.path(), &[]);
        assert!(live.path().exists() && unlocked.exists());
        drop((map, f));
        std::fs::remove_file(&unlocked).unwrap();
        assert!(!dead.exists() && !reused.exists());
        assert!(fresh.exists() && other.exists());
        assert_eq!(removed.len(), 2, "{removed:?}");
        // A pid the caller knows is dead goes even when fresh.
        sweep(dir.path(), &[me]);
        assert!(!fresh.exists());
        assert!(!arena_is_orphaned(live.path()));
        drop(live);
        assert!(std::fs::read_dir(dir.path()).unwrap().count() == 1);
    }
}
