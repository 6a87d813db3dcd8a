//! The nodes `owl start` recorded on this host (`nodes/<pid>` in the state
//! directory) and signalling them without ever signalling a process that
//! is not one of them.
//!
//! A recorded pid is trusted only when the process behind it has the start
//! time and boot id its node file records (`owl_launch::nodefile`). The
//! check and the signal name the same process: the process is first held
//! by a pidfd, then verified, and the signal goes through the pidfd, so a
//! pid reused between the check and the signal is never hit.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use owl_launch::nodefile::{self, Identity, NodeRecord};
use rustix::process::{kill_process, pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

pub fn nodes_dir(state: &Path) -> PathBuf {
    state.join("nodes")
}

/// One file in `nodes/`.
pub struct Recorded {
    /// The pid the file is named after.
    pub pid: u32,
    pub path: PathBuf,
    /// `None` until the node has written it (or if it is not a node file).
    pub record: Option<NodeRecord>,
}

impl Recorded {
    /// Whether the process behind the pid is the node that wrote the file.
    pub fn identity(&self) -> Identity {
        match &self.record {
            // A record naming a pid other than its file's is not trusted.
            Some(r) if r.pid == self.pid => r.identity(),
            _ => Identity::Unverifiable,
        }
    }
}

/// Every node file in `state`, in pid order.
pub fn recorded(state: &Path) -> Vec<Recorded> {
    let mut out: Vec<Recorded> = std::fs::read_dir(nodes_dir(state))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let path = e.path();
            Some(Recorded {
                pid,
                record: nodefile::read_node_file(&path),
                path,
            })
        })
        .collect();
    out.sort_by_key(|r| r.pid);
    out
}

/// A node process, verified and held.
pub struct Held {
    pub pid: u32,
    record: NodeRecord,
    /// The process itself; `None` on kernels without pidfds (before 5.3),
    /// where signals go by pid right after the check.
    fd: Option<OwnedFd>,
}

impl Held {
    /// Holds `rec`'s process if it is the recorded node; else says what
    /// is behind the pid instead.
    pub fn verify(rec: &Recorded) -> Result<Held, Identity> {
        let Some(record) = rec.record.clone().filter(|r| r.pid == rec.pid) else {
            return Err(Identity::Unverifiable);
        };
        let pid = Pid::from_raw(rec.pid as i32).ok_or(Identity::Unverifiable)?;
        // Open first, verify second: a pidfd keeps naming the process it
        // was opened for, so what was verified is what gets the signal.
        let fd = match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => Some(fd),
            Err(rustix::io::Errno::SRCH) => return Err(Identity::Gone),
            Err(_) => None,
        };
        match record.identity() {
            Identity::Node => Ok(Held {
                pid: rec.pid,
                record,
                fd,
            }),
            other => Err(other),
        }
    }

    /// Whether the node still runs. With a pidfd, a node counts as ended
    /// as soon as it has exited (its files, and the lock on its arena,
    /// are released then), even while it waits to be reaped: an orphaned
    /// node is reaped by init, which may take seconds.
    pub fn alive(&self) -> bool {
        match &self.fd {
            Some(fd) => {
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                let zero = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                !matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
            }
            None => self.record.identity() == Identity::Node,
        }
    }

    pub fn signal(&self, sig: Signal) {
        // A node that has exited meanwhile is fine: nothing to signal.
        let _ = match &self.fd {
            Some(fd) => pidfd_send_signal(fd, sig),
            None if self.alive() => {
                Pid::from_raw(self.pid as i32).map_or(Ok(()), |p| kill_process(p, sig))
            }
            None => Ok(()),
        };
    }
}

/// How `owl status` describes a recorded node.
pub fn describe(identity: &Identity) -> &'static str {
    match identity {
        Identity::Node => "running",
        Identity::Gone => "gone",
        Identity::Other => "gone (pid reused)",
        Identity::Unverifiable => "unverified",
    }
}
