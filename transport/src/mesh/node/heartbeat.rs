//! Heartbeats: every `MeshConfig::heartbeat`, each live peer gets one
//! (carrying this node's load) and each peer silent for `dead_after` is
//! reported down (the rules are `Shared::heartbeat_round`'s).

use std::rc::Rc;
use std::time::Duration;

use super::Node;
use crate::api::PeerDown;
use crate::driver::Net;

impl<N: Net> Node<N> {
    pub(super) async fn heartbeat_loop(self: Rc<Self>) {
        let mut tick = tokio::time::interval(self.cfg.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let dead_after = self.cfg.dead_after.as_millis() as u64;
        let mut seq = 0u64;
        loop {
            tick.tick().await;
            seq += 1;
            let now = self.now_ms();
            for (peer, silent) in self.sh.heartbeat_round(seq, now, dead_after) {
                self.down(
                    peer,
                    PeerDown::HeartbeatTimeout(Duration::from_millis(silent)),
                );
            }
        }
    }
}
