//! The outcome of discovery: a [`Placement`], and [`Plan::execute`] that
//! makes one. Executing is the only step that touches files and sockets; it
//! is kept apart from planning so the rules can be tested on variables alone.

use std::fmt;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::SystemTime;

use crate::rendezvous::{publish, wait_for_head};
use crate::secret::load_secret;
use crate::{HeadPlan, LaunchError, Plan, Source};

/// This process's place in the cluster.
pub struct Placement {
    /// This node's index, `0..size`; 0 is the head.
    pub rank: u32,
    /// Number of nodes.
    pub size: u32,
    /// Where the head listens; every rank, the head included, agrees on it.
    pub head: SocketAddr,
    /// Where this node should listen. Port 0 means any free port; on the
    /// head it is the head's port. When [`Placement::head_listener`] is set,
    /// this is that listener's address.
    pub listen: SocketAddr,
    /// The cluster secret shared by all nodes (never printed by `Debug`).
    pub secret: [u8; 32],
    /// Which launcher placed this process.
    pub source: Source,
    /// The launcher's job name (Slurm `JOB.STEP`, the mpirun namespace).
    pub job: Option<String>,
    /// On rank 0 under Slurm and mpirun: the head's socket, already bound
    /// (see the crate docs); serve on it instead of binding `listen`.
    pub head_listener: Option<TcpListener>,
    /// Under mpirun: the rendezvous file that carries the head's address.
    /// It is left in place (late ranks still read it); delete it with
    /// [`Placement::remove_rendezvous_file`] once every node has joined.
    pub rendezvous_file: Option<PathBuf>,
}

impl Placement {
    /// Whether this node is the head (rank 0).
    pub fn is_head(&self) -> bool {
        self.rank == 0
    }

    /// Deletes the mpirun rendezvous file, if any (head only; others no-op).
    pub fn remove_rendezvous_file(&self) -> io::Result<()> {
        match (&self.rendezvous_file, self.is_head()) {
            (Some(path), true) => match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Placement")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("head", &self.head)
            .field("listen", &self.listen)
            .field("secret", &"<redacted>")
            .field("source", &self.source)
            .field("job", &self.job)
            .field("head_listener", &self.head_listener.is_some())
            .field("rendezvous_file", &self.rendezvous_file)
            .finish()
    }
}

impl Plan {
    /// Carries the plan out: reads or creates the secret, binds the head's
    /// port on rank 0, publishes or waits for the rendezvous file.
    pub fn execute(self) -> Result<Placement, LaunchError> {
        let started = SystemTime::now();
        let secret = load_secret(&self.secret, self.rank, self.timeout)?;
        let mut listen = self.listen;
        let head_listener = if self.bind_head {
            let l = TcpListener::bind(listen).map_err(|source| LaunchError::Bind {
                addr: listen,
                source,
                hint: "another program holds the port; set OWL_HEAD_PORT to a free port (the same for all ranks)",
            })?;
            listen = l.local_addr().map_err(|source| LaunchError::Bind {
                addr: listen,
                source,
                hint: "the socket has no local address",
            })?;
            Some(l)
        } else {
            None
        };
        let (head, rendezvous_file) = match self.head {
            HeadPlan::Known(h) => (h, None),
            HeadPlan::Rendezvous { file } => {
                let head = if self.rank == 0 {
                    publish(&file, listen)?;
                    listen
                } else {
                    wait_for_head(&file, self.timeout, started)?
                };
                (head, Some(file))
            }
        };
        Ok(Placement {
            rank: self.rank,
            size: self.size,
            head,
            listen,
            secret,
            source: self.source,
            job: self.job,
            head_listener,
            rendezvous_file,
        })
    }
}
