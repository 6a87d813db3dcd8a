//! Open clusters (`owl start`): a head that runs until stopped, and nodes
//! and programs that attach to it while it runs.
//!
//! `owl start --head` records the cluster in this host's *state directory*
//! (`OWL_STATE_DIR`, else `$XDG_RUNTIME_DIR/owl`, else `/tmp/owl-<uid>`;
//! mode 0700, and refused unless it is the user's and writable only by
//! them: [`check_state_dir`]): `cluster` holds the head's address and
//! transport, `secret` the cluster secret (0600). A node or program finds the head with
//! `OWL_ADDRESS=HOST:PORT` (or `auto`: the cluster recorded here) and the
//! secret from `OWL_SECRET_FILE`/`OWL_SECRET`, else from the state
//! directory (same host, or a state directory shared between hosts).

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::addr::parse_host_port;
use crate::error::io_err;
use crate::secret::{explicit_secret, load_secret};
use crate::vars::get;
use crate::{LaunchError, Resolve, Vars};

/// What `owl start --head` records about its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRecord {
    /// Where the head listens.
    pub address: SocketAddr,
    /// The transport every node must use (`quic`, `tcp`, `tcp-plain`).
    pub transport: String,
    /// The head's process id (for `owl stop`).
    pub pid: u32,
}

/// Where a node or program attaching to an open cluster goes.
pub struct Attach {
    pub head: SocketAddr,
    /// Where this node listens: `OWL_LISTEN`, else port 0 on the address
    /// this host reaches the head from (loopback for a local head).
    pub listen: SocketAddr,
    pub secret: [u8; 32],
    /// `OWL_TRANSPORT`, else the recorded cluster's (for `auto`), else unset.
    pub transport: Option<String>,
}

impl std::fmt::Debug for Attach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attach")
            .field("head", &self.head)
            .field("listen", &self.listen)
            .field("secret", &"<redacted>")
            .field("transport", &self.transport)
            .finish()
    }
}

/// This host's state directory for open clusters (see the module docs).
pub fn state_dir(vars: &Vars) -> PathBuf {
    if let Some(d) = get(vars, "OWL_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = get(vars, "XDG_RUNTIME_DIR") {
        return Path::new(d).join("owl");
    }
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    std::env::temp_dir().join(format!("owl-{uid}"))
}

/// Checks that `dir` is private enough to hold the cluster's secret and
/// the pids `owl stop` signals, as ssh checks `~/.ssh`: a directory owned
/// by this user and writable by nobody else (a symlink to it must be this
/// user's too). Anyone who can write there could plant a cluster record
/// that points programs at their own head, or a node file that makes
/// `owl stop` signal a process of their choosing.
pub fn check_state_dir(dir: &Path) -> Result<(), LaunchError> {
    let me = rustix::process::geteuid().as_raw();
    let refuse = |reason: String| LaunchError::UnsafeStateDir {
        path: dir.to_path_buf(),
        reason,
    };
    let link = fs::symlink_metadata(dir).map_err(io_err("cannot read the state directory", dir))?;
    if link.file_type().is_symlink() && link.uid() != me {
        return Err(refuse(format!(
            "is a symlink owned by uid {}, not by you (uid {me})",
            link.uid()
        )));
    }
    let meta = fs::metadata(dir).map_err(io_err("cannot read the state directory", dir))?;
    if !meta.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    if meta.uid() != me {
        return Err(refuse(format!(
            "is owned by uid {}, not by you (uid {me})",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!("has mode {mode:04o}: writable by others")));
    }
    Ok(())
}

/// Creates the state directory with `nodes/` and `logs/` (all 0700) where
/// missing, then checks it ([`check_state_dir`]). Subdirectories an older
/// owl made 0755 are narrowed to 0700.
pub fn prepare_state_dir(dir: &Path) -> Result<(), LaunchError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("cannot create the state directory", dir))?;
    check_state_dir(dir)?;
    for sub in ["nodes", "logs"] {
        let path = dir.join(sub);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(io_err("cannot create", &path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
            .map_err(io_err("cannot restrict", &path))?;
    }
    Ok(())
}

/// [`check_state_dir`] when `dir` exists; a missing one holds nothing to
/// distrust.
pub fn check_state_dir_if_present(dir: &Path) -> Result<(), LaunchError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        _ => check_state_dir(dir),
    }
}

/// Records a running head: `cluster` and `secret` in `dir` (created 0700),
/// each written to a temporary name and renamed into place.
pub fn write_cluster(
    dir: &Path,
    rec: &ClusterRecord,
    secret: &[u8; 32],
) -> Result<(), LaunchError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("cannot create the state directory", dir))?;
    let put = |name: &str, text: String| -> Result<(), LaunchError> {
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let dest = dir.join(name);
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("cannot write", &tmp))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io_err("cannot write", &tmp))?;
        fs::rename(&tmp, &dest).map_err(io_err("cannot write", &dest))
    };
    put("secret", format!("{}\n", crate::to_hex(secret)))?;
    put(
        "cluster",
        format!(
            "address={}\ntransport={}\npid={}\n",
            rec.address, rec.transport, rec.pid
        ),
    )
}

/// The cluster recorded in `dir`, if any.
pub fn read_cluster(dir: &Path) -> Result<Option<ClusterRecord>, LaunchError> {
    let path = dir.join("cluster");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot read", &path)(e)),
    };
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    let bad = || LaunchError::BadRendezvous {
        file: path.clone(),
        content: text.clone(),
    };
    Ok(Some(ClusterRecord {
        address: field("address")
            .and_then(|a| a.parse().ok())
            .ok_or_else(bad)?,
        transport: field("transport").ok_or_else(bad)?.to_string(),
        pid: field("pid").and_then(|p| p.parse().ok()).ok_or_else(bad)?,
    }))
}

/// Removes what [`write_cluster`] wrote, if it is still `pid`'s.
pub fn remove_cluster(dir: &Path, pid: u32) {
    if matches!(read_cluster(dir), Ok(Some(r)) if r.pid == pid) {
        let _ = fs::remove_file(dir.join("cluster"));
        let _ = fs::remove_file(dir.join("secret"));
    }
}

/// The address this host sends from to reach `head` (no packet is sent:
/// a connected UDP socket only picks a route).
fn local_ip_toward(head: SocketAddr) -> IpAddr {
    if head.ip().is_loopback() {
        return head.ip();
    }
    let any = match head {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    UdpSocket::bind((any, 0))
        .and_then(|s| s.connect(head).and_then(|()| s.local_addr()))
        .map_or(any, |a| a.ip())
}

/// An address others can dial for a listener on `listen`: `listen`
/// itself, unless it is a wildcard (`0.0.0.0`, `::`): then this host's
/// name if it resolves beyond loopback, else the address of the route
/// outward, else loopback (this host only).
pub fn reachable_address(listen: SocketAddr, resolver: &dyn Resolve) -> SocketAddr {
    if !listen.ip().is_unspecified() {
        return listen;
    }
    let by_name = resolver
        .hostname()
        .and_then(|h| resolver.resolve(&h).ok())
        .and_then(|a| crate::addr::pick(&a))
        .filter(|a| !a.is_loopback() && a.is_ipv4() == listen.is_ipv4());
    // A documentation address (RFC 5737/3849) only picks the route; no
    // packet is sent.
    let outward: SocketAddr = if listen.is_ipv4() {
        "192.0.2.254:9".parse().expect("literal")
    } else {
        "[2001:db8::1]:9".parse().expect("literal")
    };
    let routed = Some(local_ip_toward(outward)).filter(|a| !a.is_unspecified());
    let loopback = if listen.is_ipv4() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    };
    SocketAddr::new(by_name.or(routed).unwrap_or(loopback), listen.port())
}

/// Whether the head `rec` names is known to be gone: its node file
/// (`nodes/<pid>`, written once it was up) says it ran in this boot of
/// this host, and that process is no longer there. A joiner would
/// otherwise dial a dead address for the whole connect timeout and end
/// with a timeout that does not say why. A record from another host (a
/// shared state directory) or without a node file proves nothing: then
/// the join itself finds out.
fn head_gone(dir: &Path, rec: &ClusterRecord) -> bool {
    use crate::nodefile::{boot_id, read_node_file, Identity};
    let Some(node) = read_node_file(&dir.join("nodes").join(rec.pid.to_string())) else {
        return false;
    };
    let this_host = node
        .start
        .as_ref()
        .is_some_and(|s| Some(&s.boot) == boot_id().as_ref());
    this_host && matches!(node.identity(), Identity::Gone | Identity::Other)
}

/// Where to attach, from `OWL_ADDRESS` (`HOST:PORT` or `auto`); `None`
/// when it is not set.
pub fn attach_from(vars: &Vars, resolver: &dyn Resolve) -> Result<Option<Attach>, LaunchError> {
    let Some(address) = get(vars, "OWL_ADDRESS") else {
        return Ok(None);
    };
    let dir = state_dir(vars);
    check_state_dir_if_present(&dir)?;
    let (head, rec) = if address == "auto" {
        let rec = read_cluster(&dir)?.ok_or(LaunchError::NoCluster { dir: dir.clone() })?;
        (rec.address, Some(rec))
    } else {
        let head = parse_host_port(resolver, "OWL_ADDRESS", address)?;
        let rec = read_cluster(&dir)
            .ok()
            .flatten()
            .filter(|r| r.address == head);
        (head, rec)
    };
    if let Some(rec) = rec.as_ref().filter(|r| head_gone(&dir, r)) {
        return Err(LaunchError::HeadGone {
            address: rec.address,
            pid: rec.pid,
            dir,
        });
    }
    let recorded = rec.map(|r| r.transport);
    let secret = match explicit_secret(vars)? {
        Some(plan) => load_secret(&plan, 1, crate::DEFAULT_TIMEOUT)?,
        None => {
            let path = dir.join("secret");
            if !path.exists() {
                return Err(LaunchError::MissingSecret);
            }
            crate::read_secret_file(&path)?
        }
    };
    let listen = match get(vars, "OWL_LISTEN") {
        Some(l) => parse_host_port(resolver, "OWL_LISTEN", l)?,
        None => SocketAddr::new(local_ip_toward(head), 0),
    };
    let transport = get(vars, "OWL_TRANSPORT").map(str::to_string).or(recorded);
    Ok(Some(Attach {
        head,
        listen,
        secret,
        transport,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SystemResolver;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn records_round_trip_and_auto_finds_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let rec = ClusterRecord {
            address: "127.0.0.1:6390".parse().unwrap(),
            transport: "tcp".into(),
            pid: 4242,
        };
        write_cluster(&dir, &rec, &[9; 32]).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(dir.join("secret")).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(read_cluster(&dir).unwrap(), Some(rec.clone()));

        let v = vars(&[
            ("OWL_ADDRESS", "auto"),
            ("OWL_STATE_DIR", dir.to_str().unwrap()),
        ]);
        let a = attach_from(&v, &SystemResolver).unwrap().unwrap();
        assert_eq!(a.head, rec.address);
        assert_eq!(a.secret, [9; 32]);
        assert_eq!(a.transport.as_deref(), Some("tcp"));
        assert_eq!(a.listen, "127.0.0.1:0".parse().unwrap());

        // An explicit transport wins; another pid's record is not removed.
        let v = vars(&[
            ("OWL_ADDRESS", "127.0.0.1:6390"),
            ("OWL_STATE_DIR", dir.to_str().unwrap()),
            ("OWL_TRANSPORT", "quic"),
        ]);
        let a = attach_from(&v, &SystemResolver).unwrap().unwrap();
        assert_eq!(a.transport.as_deref(), Some("quic"));
        remove_cluster(&dir, 1);
        assert!(read_cluster(&dir).unwrap().is_some());
        remove_cluster(&dir, 4242);
        assert!(read_cluster(&dir).unwrap().is_none());
    }

    #[test]
    fn a_join_to_a_head_gone_from_this_host_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        prepare_state_dir(&dir).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let rec = ClusterRecord {
            address: "127.0.0.1:6390".parse().unwrap(),
            transport: "tcp".into(),
            pid,
        };
        write_cluster(&dir, &rec, &[9; 32]).unwrap();
        let node_file = |boot: &str| {
            fs::write(
                dir.join("nodes").join(pid.to_string()),
                format!("node=0\naddress=127.0.0.1:6390\npid={pid}\nstart=1\nboot={boot}\n"),
            )
            .unwrap();
        };
        let state = dir.to_str().unwrap();
        // No node file: nothing proves the head gone; the join finds out.
        for address in ["auto", "127.0.0.1:6390"] {
            let v = vars(&[("OWL_ADDRESS", address), ("OWL_STATE_DIR", state)]);
            assert!(attach_from(&v, &SystemResolver).is_ok());
        }
        node_file(&crate::nodefile::boot_id().unwrap());
        for address in ["auto", "127.0.0.1:6390"] {
            let v = vars(&[("OWL_ADDRESS", address), ("OWL_STATE_DIR", state)]);
            let err = attach_from(&v, &SystemResolver).unwrap_err();
            assert!(matches!(err, LaunchError::HeadGone { .. }), "{err}");
            assert!(err.to_string().contains("owl start --head"), "{err}");
        }
        // Another cluster's address is not judged by this record.
        let v = vars(&[("OWL_ADDRESS", "127.0.0.1:6391"), ("OWL_STATE_DIR", state)]);
        assert!(attach_from(&v, &SystemResolver).is_ok());
        // A head on another host (a shared state directory): unknown here.
        node_file("another-hosts-boot-id");
        let v = vars(&[("OWL_ADDRESS", "auto"), ("OWL_STATE_DIR", state)]);
        assert!(attach_from(&v, &SystemResolver).is_ok());
    }

    #[test]
    fn a_state_directory_others_can_write_or_own_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        prepare_state_dir(&dir).unwrap();
        for d in [dir.clone(), dir.join("nodes"), dir.join("logs")] {
            assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare_state_dir(&dir).unwrap_err();
        assert!(matches!(err, LaunchError::UnsafeStateDir { .. }), "{err}");
        assert!(err.to_string().contains("writable by others"), "{err}");
        // Reading the cluster from it is refused too.
        let v = vars(&[
            ("OWL_ADDRESS", "auto"),
            ("OWL_STATE_DIR", dir.to_str().unwrap()),
        ]);
        let err = attach_from(&v, &SystemResolver).unwrap_err();
        assert!(matches!(err, LaunchError::UnsafeStateDir { .. }), "{err}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        check_state_dir(&dir).unwrap();

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        check_state_dir(&link).unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(check_state_dir(&file).is_err());
        check_state_dir_if_present(&tmp.path().join("missing")).unwrap();

        // Another user's directory (root can make one to test with).
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            let err = check_state_dir(&dir).unwrap_err();
            assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        }
    }

    #[test]
    fn missing_pieces_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().to_str().unwrap();
        assert!(attach_from(&vars(&[("OWL_STATE_DIR", d)]), &SystemResolver)
            .unwrap()
            .is_none());
        let err = attach_from(
            &vars(&[("OWL_ADDRESS", "auto"), ("OWL_STATE_DIR", d)]),
            &SystemResolver,
        )
        .unwrap_err();
        assert!(err.to_string().contains("owl start --head"), "{err}");
        let err = attach_from(
            &vars(&[("OWL_ADDRESS", "127.0.0.1:1"), ("OWL_STATE_DIR", d)]),
            &SystemResolver,
        )
        .unwrap_err();
        assert!(matches!(err, LaunchError::MissingSecret), "{err}");
        let err = attach_from(
            &vars(&[("OWL_ADDRESS", "nonsense"), ("OWL_STATE_DIR", d)]),
            &SystemResolver,
        )
        .unwrap_err();
        assert!(err.to_string().contains("OWL_ADDRESS"), "{err}");
    }
}
