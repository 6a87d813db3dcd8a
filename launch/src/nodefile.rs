//! Node files: what a node started by `owl start` records about itself
//! (`nodes/<pid>` in the state directory), and how `owl stop` and
//! `owl status` tell that the process behind a recorded pid is still that
//! node.
//!
//! A pid alone names a process only while it lives: a node killed with
//! SIGKILL leaves its file behind, and its pid is soon reused (pid_max is
//! 32,768 on many hosts). So the file also records the process's start
//! time (clock ticks since boot, `/proc/<pid>/stat` field 22) and the
//! kernel's boot id; a process is the node only if both still match. A
//! record without them (planted, or written by an older owl) verifies
//! nothing, and nobody should signal on its word.
//!
//! ```text
//! node=3
//! address=127.0.0.1:40123
//! pid=4242
//! start=123456          clock ticks after boot
//! boot=8e0c…            /proc/sys/kernel/random/boot_id
//! ```

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// When and in which boot a process started: with its pid, a name no
/// other process will ever have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStart {
    /// Clock ticks from boot to the process's start.
    pub ticks: u64,
    /// The kernel's boot id (a fresh UUID at every boot).
    pub boot: String,
}

/// What a process probe finds behind a pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// No such process, or a zombie (it has exited; only its parent's
    /// wait is missing).
    Gone,
    /// A live process that started then.
    Running(ProcessStart),
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): a record with
/// another was written on another host, or before a reboot.
pub fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

/// Looks at the process `pid` now.
pub fn probe(pid: u32) -> Probe {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Probe::Gone;
    };
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so the
    // fields start after the last ')'. After it come field 3 (state) on.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Probe::Gone;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields
        .first()
        .is_none_or(|s| s.starts_with('Z') || s.starts_with('X'))
    {
        return Probe::Gone;
    }
    match (fields.get(22 - 3).and_then(|t| t.parse().ok()), boot_id()) {
        (Some(ticks), Some(boot)) => Probe::Running(ProcessStart { ticks, boot }),
        _ => Probe::Gone,
    }
}

/// What a node file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub node: u32,
    pub address: String,
    pub pid: u32,
    /// `None` in a record that carries no identity (see the module docs).
    pub start: Option<ProcessStart>,
    /// The node's store directory (where its arena file is), when recorded.
    pub store: Option<PathBuf>,
}

/// Whether the process behind a record is the node that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The same pid, start time and boot: that node.
    Node,
    /// The node has exited (a stale record).
    Gone,
    /// The pid now belongs to another process (reused after the node died,
    /// or the record was planted).
    Other,
    /// The record carries no start time, so nothing can be verified.
    Unverifiable,
}

impl NodeRecord {
    /// Compares the record with the process now behind its pid.
    pub fn identity(&self) -> Identity {
        let Some(recorded) = &self.start else {
            return Identity::Unverifiable;
        };
        match probe(self.pid) {
            Probe::Gone => Identity::Gone,
            Probe::Running(now) if &now == recorded => Identity::Node,
            Probe::Running(_) => Identity::Other,
        }
    }
}

/// Reads a node file; `None` if it is missing or not a node file.
pub fn read_node_file(path: &Path) -> Option<NodeRecord> {
    let text = fs::read_to_string(path).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(|v| v.trim().to_string())
    };
    let start = match (field("start").and_then(|t| t.parse().ok()), field("boot")) {
        (Some(ticks), Some(boot)) if !boot.is_empty() => Some(ProcessStart { ticks, boot }),
        _ => None,
    };
    Some(NodeRecord {
        node: field("node")?.parse().ok()?,
        address: field("address")?,
        pid: field("pid")?.parse().ok()?,
        start,
        store: field("store").map(PathBuf::from),
    })
}

/// Writes this process's node file: readable by the user only (0600),
/// written under a temporary name and renamed into place so that a reader
/// never sees half of it.
pub fn write_node_file(path: &Path, node: u32, address: &str, store: &Path) -> io::Result<()> {
    let pid = std::process::id();
    let Probe::Running(me) = probe(pid) else {
        return Err(io::Error::other(
            "cannot read this process's start time from /proc/self/stat",
        ));
    };
    let text = format!(
        "node={node}\naddress={address}\npid={pid}\nstart={}\nboot={}\nstore={}\n",
        me.ticks,
        me.boot,
        store.display()
    );
    let name = path
        .file_name()
        .map_or_else(|| "node".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    drop(f);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_record_names_its_process_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(std::process::id().to_string());
        write_node_file(&path, 3, "127.0.0.1:9", Path::new("/dev/shm")).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let rec = read_node_file(&path).unwrap();
        assert_eq!((rec.node, rec.pid), (3, std::process::id()));
        assert_eq!(rec.store.as_deref(), Some(Path::new("/dev/shm")));
        assert_eq!(rec.identity(), Identity::Node);

        // The same pid with another start time: the pid was reused.
        let mut reused = rec.clone();
        reused.start.as_mut().unwrap().ticks += 1;
        assert_eq!(reused.identity(), Identity::Other);
        // No identity recorded: nothing to go on.
        let bare = NodeRecord {
            start: None,
            ..rec.clone()
        };
        assert_eq!(bare.identity(), Identity::Unverifiable);

        // A child that has exited (and been reaped) is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = NodeRecord { pid, ..rec };
        assert_eq!(dead.identity(), Identity::Gone);
    }

    #[test]
    fn partial_or_foreign_files_are_not_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1");
        fs::write(&path, "node=1\n").unwrap();
        assert!(read_node_file(&path).is_none());
        fs::write(&path, "node=1\naddress=a\npid=7\n").unwrap();
        assert_eq!(read_node_file(&path).unwrap().start, None);
    }
}
