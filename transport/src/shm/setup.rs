//! Start-up of the shm driver: the TCP control mesh, then the exchange that
//! creates, maps and unlinks every inbox (see the module doc of `shm`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Instant;

use ring::rand::SecureRandom;

use super::ring::Inbox;
use crate::api::{Handler, Link, PeerDown};
use crate::config::{MeshConfig, MeshError, ShmConfig, TransportKind};
use crate::peer::Shared;
use crate::proto::{Msg, ShmStep};
use crate::Mesh;

/// What the control mesh tells the shm driver.
#[derive(Debug)]
pub(crate) enum Ctl {
    /// From the head: the cluster id that names every inbox.
    Cluster([u8; 16]),
    /// The sender's inbox exists.
    Ready,
    /// The sender has mapped our inbox.
    Mapped,
    /// The control mesh lost the sender (its process died, most likely).
    Down(PeerDown),
}

/// The start-up exchange's message; only the control mesh carries it, and
/// its handler is [`CtlHandler`], so it never reaches the runtime.
fn ctl_msg(step: ShmStep) -> Msg {
    Msg::ShmSetup { step }
}

/// The control mesh's handler: forwards to the shm I/O thread.
struct CtlHandler {
    tx: Sender<(u32, Ctl)>,
    pending: Arc<AtomicBool>,
    sh: Arc<Shared>,
}

impl CtlHandler {
    fn forward(&self, from: u32, ctl: Ctl) {
        let _ = self.tx.send((from, ctl));
        self.pending.store(true, Ordering::SeqCst);
        self.sh.kick();
    }
}

impl Handler for CtlHandler {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
        for m in msgs {
            let Msg::ShmSetup { step } = m else {
                continue; // heartbeats of the control mesh
            };
            let ctl = match step {
                ShmStep::Cluster { id } if from == 0 => Ctl::Cluster(id),
                ShmStep::Ready => Ctl::Ready,
                ShmStep::Mapped => Ctl::Mapped,
                // Only the head names the cluster.
                ShmStep::Cluster { .. } => continue,
            };
            self.forward(from, ctl);
        }
    }
    fn on_peer_down(&self, peer: u32, why: PeerDown) {
        self.forward(peer, Ctl::Down(why));
    }
}

/// What start-up hands the driver.
pub(crate) struct Setup {
    /// The TCP control mesh; shut down (or killed) with the node.
    pub(crate) control: Arc<Mesh>,
    /// Control events; `pending` is set (then the bell rung) after each.
    pub(crate) events: Receiver<(u32, Ctl)>,
    pub(crate) pending: Arc<AtomicBool>,
    /// This node's inbox, already unlinked.
    pub(crate) mine: Arc<Inbox>,
    /// Each peer's inbox (`None` at our own index).
    pub(crate) peers: Vec<Option<Arc<Inbox>>>,
}

/// Unlinks the file on drop: once every peer mapped it, or on failure.
struct Linked(PathBuf);

impl Drop for Linked {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove a shared-memory inbox");
        }
    }
}

pub(crate) fn setup(
    cfg: &MeshConfig,
    shm: ShmConfig,
    sh: &Arc<Shared>,
) -> Result<Setup, MeshError> {
    let (tx, events) = channel();
    let pending = Arc::new(AtomicBool::new(false));
    let mut ctl_cfg = cfg.clone();
    ctl_cfg.kind = TransportKind::Tcp { plaintext: false };
    let handler = Arc::new(CtlHandler {
        tx,
        pending: pending.clone(),
        sh: sh.clone(),
    });
    let control = crate::mesh::start_sockets(ctl_cfg, handler)?;
    let (mine, peers) = exchange(cfg, shm, sh, &control, &events)?;
    Ok(Setup {
        control,
        events,
        pending,
        mine,
        peers,
    })
}

type Inboxes = (Arc<Inbox>, Vec<Option<Arc<Inbox>>>);

fn exchange(
    cfg: &MeshConfig,
    shm: ShmConfig,
    sh: &Arc<Shared>,
    control: &Mesh,
    events: &Receiver<(u32, Ctl)>,
) -> Result<Inboxes, MeshError> {
    let (me, n) = (cfg.node, cfg.nodes);
    let dir = super::dir(cfg);
    let deadline = Instant::now() + cfg.connect_timeout;
    let mut cluster = None;
    if me == 0 {
        let mut id = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| MeshError::Setup("no system randomness for the cluster id".into()))?;
        for p in 1..n {
            control.send(p, ctl_msg(ShmStep::Cluster { id }));
        }
        cluster = Some(id);
    }
    let mut mine: Option<(Arc<Inbox>, Linked)> = None;
    let mut ready = vec![false; n as usize];
    let mut mapped_by = vec![false; n as usize];
    let mut peers: Vec<Option<Arc<Inbox>>> = (0..n).map(|_| None).collect();
    let others = || (0..n).filter(move |&p| p != me);
    loop {
        if let (Some(id), None) = (&cluster, &mine) {
            let path = super::inbox_path(&dir, id, me);
            let inbox = Inbox::create(&path, me, n, shm.ring_bytes)
                .map(Arc::new)
                .map_err(|e| {
                    MeshError::Setup(format!(
                        "cannot create the shared-memory inbox {}: {e}",
                        path.display()
                    ))
                })?;
            let linked = Linked(path);
            let bell = inbox.clone();
            let _ = sh.kick.set(Box::new(move || bell.bell().ring()));
            for p in others() {
                control.send(p, ctl_msg(ShmStep::Ready));
            }
            mine = Some((inbox, linked));
        }
        if let (Some(id), Some(_)) = (&cluster, &mine) {
            for p in others() {
                if ready[p as usize] && peers[p as usize].is_none() {
                    let path = super::inbox_path(&dir, id, p);
                    let inbox = Inbox::open(&path, p, n, shm.ring_bytes).map_err(|e| {
                        MeshError::Setup(format!(
                            "cannot map node {p}'s shared-memory inbox {}: {e}; every node must run on this host with the same ring size",
                            path.display()
                        ))
                    })?;
                    peers[p as usize] = Some(Arc::new(inbox));
                    control.send(p, ctl_msg(ShmStep::Mapped));
                }
            }
            if others().all(|p| peers[p as usize].is_some() && mapped_by[p as usize]) {
                break;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok((0, Ctl::Cluster(id))) => cluster = Some(id),
            Ok((p, Ctl::Ready)) => ready[p as usize] = true,
            Ok((p, Ctl::Mapped)) => mapped_by[p as usize] = true,
            Ok((p, Ctl::Down(why))) => {
                return Err(MeshError::Setup(format!(
                    "node {p} went down while setting up shared memory: {why:?}"
                )))
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                return Err(MeshError::Timeout {
                    missing: others()
                        .filter(|&p| peers[p as usize].is_none() || !mapped_by[p as usize])
                        .collect(),
                    after: cfg.connect_timeout,
                    stage: "mapping the shared-memory inboxes",
                })
            }
        }
    }
    let (inbox, linked) = mine.expect("created before the loop ends");
    drop(linked); // every peer mapped it: unlink now
    Ok((inbox, peers))
}
