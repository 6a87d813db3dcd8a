//! Stand-in for the transport's `Link`/`Handler` traits until they land.
use owl_transport::proto::Msg;

pub trait Handler: Send + Sync + 'static {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>);
    fn on_peer_down(&self, peer: u32, why: PeerDown);
}

pub trait Link: Send + Sync + 'static {
    fn send(&self, to: u32, msg: Msg);
    fn me(&self) -> u32;
    fn nodes(&self) -> u32;
}

#[derive(Debug, Clone)]
pub enum PeerDown {
    Closed,
}
