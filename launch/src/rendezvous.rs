//! The mpirun rendezvous: rank 0 publishes the head's `host:port` in a file
//! and the other ranks wait for it, since Open MPI gives no node list to
//! derive the head from.

use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::error::io_err;
use crate::LaunchError;

/// Rendezvous files older than this (relative to when `discover` started)
/// are taken to be left over from an earlier run with the same job name.
const STALE_AFTER: Duration = Duration::from_secs(120);

/// Rank 0 under mpirun: writes `host:port` to `file` atomically (a
/// temporary file renamed over it).
pub(crate) fn publish(file: &Path, addr: SocketAddr) -> Result<(), LaunchError> {
    let dir = file.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("cannot create the rendezvous directory", dir))?;
    let tmp = file.with_extension(format!("head.{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{addr}\n").as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, file)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("cannot write the rendezvous file", file)(e)
    })
}

/// Non-head ranks under mpirun: polls `file` until it holds an address
/// written by this run (not a leftover of an earlier one).
pub(crate) fn wait_for_head(
    file: &Path,
    timeout: Duration,
    started: SystemTime,
) -> Result<SocketAddr, LaunchError> {
    let deadline = Instant::now() + timeout;
    let oldest = started
        .checked_sub(STALE_AFTER)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut pause = Duration::from_millis(5);
    loop {
        let fresh = fs::metadata(file)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= oldest);
        if fresh {
            if let Ok(text) = fs::read_to_string(file) {
                return text.trim().parse().map_err(|_| LaunchError::BadRendezvous {
                    file: file.to_path_buf(),
                    content: text,
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::RendezvousTimeout {
                file: file.to_path_buf(),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
