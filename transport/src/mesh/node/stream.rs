//! One connected peer's two tasks: the reader (frames to the handler, the
//! transport's own messages acted on) and the paced writer (the peer's queue
//! into frames, bulk data about `WRITE_PIECE` per write).

use std::rc::Rc;
use std::sync::atomic::Ordering;

use super::Node;
use crate::api::PeerDown;
use crate::driver::{Net, Rd, Wr};
use crate::peer::UP;
use crate::proto::Msg;

/// Bulk bytes (object chunks) per write; see `Node::writer`.
const WRITE_PIECE: usize = 1 << 20;

impl<N: Net> Node<N> {
    pub(super) async fn reader(
        self: Rc<Self>,
        peer: u32,
        mut rd: N::R,
        mut dec: crate::proto::FrameDecoder,
    ) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // Frames first: the handshake may have left whole frames in the
            // decoder that no further read will announce.
            loop {
                match dec.next_batch() {
                    Ok(Some(msgs)) => {
                        if !self.deliver(peer, msgs) {
                            return;
                        }
                        self.touch();
                    }
                    Ok(None) => break,
                    Err(e) => {
                        if self.sh.state(peer) == UP {
                            tracing::warn!(
                                node = self.cfg.node,
                                peer,
                                "closing the connection: {e}"
                            );
                        }
                        return self.down(peer, PeerDown::Protocol(e));
                    }
                }
            }
            let (r, b) = rd.read(buf).await;
            buf = b;
            match r {
                Ok(0) => {
                    let why = match dec.finish() {
                        Ok(()) => PeerDown::ConnectionLost("closed by the peer".into()),
                        Err(e) => PeerDown::Protocol(e),
                    };
                    return self.down(peer, why);
                }
                Ok(n) => dec.feed(&buf[..n]),
                Err(e) => return self.down(peer, PeerDown::ConnectionLost(e.to_string())),
            }
        }
    }

    /// Hands a batch to the handler after taking out what the transport
    /// consumes itself, and acts on that. False once the peer is gone.
    fn deliver(self: &Rc<Self>, peer: u32, msgs: Vec<Msg>) -> bool {
        let Some(c) = self.sh.deliver(peer, self.now_ms(), msgs) else {
            return false;
        };
        let me = self.cfg.node;
        for node in c.dead {
            self.down(node, PeerDown::Announced);
        }
        for node in c.left_nodes {
            self.sh.announced_left(node);
        }
        if let Some((addr, info)) = c.joined.filter(|_| me == 0) {
            self.on_join(peer, addr, info);
        }
        for m in c.members {
            self.on_members(m);
        }
        if c.left {
            self.sh.mark_left(peer);
            self.close_peer(peer);
            if me == 0 {
                // Members not connected to it learn it from the head.
                self.joined_gone(peer);
                self.sh.announce_left(peer);
            } else if peer == 0 && !self.cfg.open {
                // A launched cluster's head (its driver) left: the run is
                // over and every node leaves. Nobody announces those that
                // leave first, so silences are no deaths from here on.
                self.sh.muted.store(true, Ordering::Release);
            }
            return false;
        }
        true
    }

    pub(super) async fn writer(
        self: Rc<Self>,
        peer: u32,
        mut wr: N::W,
        mut enc: crate::proto::FrameEncoder,
    ) {
        let p = &self.sh.peers[peer];
        let mut batch = Vec::new();
        let mut out = Vec::with_capacity(64 << 10);
        loop {
            std::mem::swap(&mut *p.queue.lock(), &mut batch);
            if batch.is_empty() {
                if p.state.load(Ordering::Acquire) != UP {
                    break;
                }
                p.wake.notified().await;
                continue;
            }
            // Nothing follows `Shutdown` (a heartbeat queued behind it would
            // skip the flush below and let the close discard the frame).
            let shutdown_at = batch.iter().position(|m| matches!(m, Msg::Shutdown));
            if let Some(i) = shutdown_at {
                batch.truncate(i + 1);
            }
            let last_is_shutdown = shutdown_at.is_some();
            // Bulk data goes out in pieces of about `WRITE_PIECE`, each
            // sealed and written before the next is encoded: the peer
            // decodes one piece while this side seals the next, instead of
            // both waiting on one frame of every queued chunk.
            let mut rest = std::mem::take(&mut batch);
            let mut failed = false;
            while !rest.is_empty() {
                let mut bulk = 0;
                let cut = rest
                    .iter()
                    .position(|m| {
                        bulk += m.bulk_len();
                        bulk > WRITE_PIECE
                    })
                    .map_or(rest.len(), |i| i.max(1));
                let tail = rest.split_off(cut);
                out.clear();
                for (i, e) in enc.encode_split(std::mem::replace(&mut rest, tail), &mut out) {
                    tracing::error!(
                        node = self.cfg.node,
                        peer,
                        index = i,
                        "message dropped: {e}"
                    );
                }
                self.sh
                    .bytes_out
                    .fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
                let (r, b) = wr.write_all(out).await;
                out = b;
                self.touch();
                if let Err(e) = r {
                    self.down(peer, PeerDown::ConnectionLost(e.to_string()));
                    failed = true;
                    break;
                }
            }
            if failed {
                break;
            }
            if last_is_shutdown {
                wr.finish().await;
                break;
            }
        }
        self.writers.set(self.writers.get() - 1);
        self.writers_done.notify_one();
    }
}
