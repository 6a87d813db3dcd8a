//! Open clusters (`owl start`): a head that runs until stopped, and nodes
//! and programs that attach to it while it runs.
//!
//! `owl start --head` records the cluster in this host's *state directory*
//! (`OWL_STATE_DIR`, else `$XDG_RUNTIME_DIR/owl`, else `/tmp/owl-<uid>`;
//! mode 0700): `cluster` holds the head's address and transport, `secret`
//! the cluster secret (0600). A node or program finds the head with
//! `OWL_ADDRESS=HOST:PORT` (or `auto`: the cluster recorded here) and the
//! secret from `OWL_SECRET_FILE`/`OWL_SECRET`, else from the state
//! directory (same host, or a state directory shared between hosts).

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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

/// Where to attach, from `OWL_ADDRESS` (`HOST:PORT` or `auto`); `None`
/// when it is not set.
pub fn attach_from(vars: &Vars, resolver: &dyn Resolve) -> Result<Option<Attach>, LaunchError> {
    let Some(address) = get(vars, "OWL_ADDRESS") else {
        return Ok(None);
    };
    let dir = state_dir(vars);
    let (head, recorded) = if address == "auto" {
        let rec = read_cluster(&dir)?.ok_or(LaunchError::NoCluster { dir: dir.clone() })?;
        (rec.address, Some(rec.transport))
    } else {
        let head = parse_host_port(resolver, "OWL_ADDRESS", address)?;
        let rec = read_cluster(&dir)
            .ok()
            .flatten()
            .filter(|r| r.address == head);
        (head, rec.map(|r| r.transport))
    };
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
