//! The simulated network: ordering, determinism and every fault.

use owl_transport::proto::OwlMsg;
use std::sync::Arc;
use std::time::Duration;

use owl_transport::proto::{FrameError, Msg, WireId};
use owl_transport::sim::{SimConfig, SimNet};
use owl_transport::{Handler, Link, PeerDown};
use parking_lot::Mutex;

#[derive(Default)]
struct Recorder {
    msgs: Mutex<Vec<(u32, u64)>>,
    beats: Mutex<u64>,
    down: Mutex<Vec<(u32, PeerDown)>>,
}

impl Handler for Recorder {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
        for m in msgs {
            match m {
                Msg::Owl(OwlMsg::Pull { offset, .. }) => self.msgs.lock().push((from, offset)),
                Msg::Heartbeat { .. } => *self.beats.lock() += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    fn on_peer_down(&self, peer: u32, why: PeerDown) {
        self.down.lock().push((peer, why));
    }
}

fn pull(k: u64) -> Msg {
    Msg::Owl(OwlMsg::Pull {
        object: WireId {
            node: 0,
            shard: 0,
            index: 0,
            gen: 0,
        },
        offset: k,
        len: 1,
    })
}

fn net(
    seed: u64,
    n: usize,
    cfg: SimConfig,
) -> (
    SimNet,
    Vec<Arc<owl_transport::sim::SimLink>>,
    Vec<Arc<Recorder>>,
) {
    let recs: Vec<Arc<Recorder>> = (0..n).map(|_| Arc::new(Recorder::default())).collect();
    let handlers = recs.iter().map(|r| r.clone() as Arc<dyn Handler>).collect();
    let (sim, links) = SimNet::new(seed, cfg, handlers);
    (sim, links, recs)
}

fn from(rec: &Recorder, peer: u32) -> Vec<u64> {
    rec.msgs
        .lock()
        .iter()
        .filter(|(f, _)| *f == peer)
        .map(|(_, k)| *k)
        .collect()
}

#[test]
fn fifo_per_peer_under_random_delays_and_deterministic() {
    let mut clocks = Vec::new();
    for _ in 0..2 {
        let (sim, links, recs) = net(7, 3, SimConfig::default());
        for k in 0..200 {
            links[0].send(1, pull(k));
            links[2].send(1, pull(k));
            if k % 7 == 0 {
                sim.advance(Duration::from_micros(13)); // many frames in flight at once
            }
        }
        sim.run_until_idle();
        assert_eq!(from(&recs[1], 0), (0..200).collect::<Vec<_>>());
        assert_eq!(from(&recs[1], 2), (0..200).collect::<Vec<_>>());
        clocks.push((sim.now(), recs[1].msgs.lock().clone()));
    }
    assert_eq!(clocks[0], clocks[1], "same seed, same run");
}

#[test]
fn duplicated_frame_is_dropped_silently() {
    let (sim, links, recs) = net(1, 2, SimConfig::default());
    links[0].send(1, pull(0));
    sim.duplicate_next_frame(0, 1);
    sim.run_until_idle();
    links[0].send(1, pull(1));
    sim.run_until_idle();
    assert_eq!(from(&recs[1], 0), vec![0, 1]);
    assert_eq!(sim.duplicates_dropped(0, 1), 1);
    assert!(recs[1].down.lock().is_empty());
}

#[test]
fn lost_frame_closes_the_link_and_reports_both_ends() {
    let (sim, links, recs) = net(2, 3, SimConfig::default());
    links[0].send(1, pull(0));
    sim.run_until_idle();
    sim.drop_next_frame(0, 1);
    links[0].send(1, pull(1));
    sim.run_until_idle();
    links[0].send(1, pull(2));
    sim.run_until_idle();
    assert_eq!(
        from(&recs[1], 0),
        vec![0],
        "nothing after the gap is delivered"
    );
    assert_eq!(
        *recs[1].down.lock(),
        vec![(
            0,
            PeerDown::Protocol(FrameError::Gap {
                expected: 1,
                got: 2
            })
        )]
    );
    assert_eq!(recs[0].down.lock().len(), 1);
    assert!(!sim.link_up(0, 1) && !sim.link_up(1, 0));
    // Other links are untouched.
    links[2].send(1, pull(9));
    sim.run_until_idle();
    assert_eq!(from(&recs[1], 2), vec![9]);
}

#[test]
fn crash_reports_every_peer_once_and_silences_the_node() {
    let (sim, links, recs) = net(3, 3, SimConfig::default());
    links[2].send(0, pull(0));
    sim.crash(2);
    sim.run_until_idle();
    for r in &recs[..2] {
        assert_eq!(*r.down.lock(), vec![(2, PeerDown::Crashed)]);
    }
    assert!(
        from(&recs[0], 2).is_empty(),
        "in-flight frames of a crashed node vanish"
    );
    assert!(recs[2].down.lock().is_empty());
    links[0].send(2, pull(1));
    sim.crash(2);
    sim.run_until_idle();
    assert_eq!(recs[0].down.lock().len(), 1);
}

#[test]
fn short_partition_holds_frames_in_order() {
    let (sim, links, recs) = net(4, 2, SimConfig::default());
    sim.partition(0, 1);
    for k in 0..10 {
        links[0].send(1, pull(k));
        sim.advance(Duration::from_micros(50));
    }
    assert!(from(&recs[1], 0).is_empty());
    sim.heal(0, 1);
    sim.run_until_idle();
    assert_eq!(from(&recs[1], 0), (0..10).collect::<Vec<_>>());
    assert!(recs[0].down.lock().is_empty() && recs[1].down.lock().is_empty());
}

#[test]
fn long_partition_times_out_by_heartbeat() {
    let cfg = SimConfig {
        heartbeat: Some(Duration::from_millis(10)),
        dead_after: Duration::from_millis(50),
        ..SimConfig::default()
    };
    let (sim, _links, recs) = net(5, 3, cfg);
    sim.advance(Duration::from_millis(100));
    assert!(*recs[0].beats.lock() > 10, "heartbeats flow");
    assert!(recs.iter().all(|r| r.down.lock().is_empty()));
    sim.partition(0, 1);
    sim.advance(Duration::from_millis(100));
    let d0 = recs[0].down.lock().clone();
    let d1 = recs[1].down.lock().clone();
    assert_eq!(d0.len(), 1);
    assert_eq!(d1.len(), 1);
    assert!(
        matches!(d0[0], (1, PeerDown::HeartbeatTimeout(_))),
        "{d0:?}"
    );
    assert!(
        matches!(d1[0], (0, PeerDown::HeartbeatTimeout(_))),
        "{d1:?}"
    );
    assert!(recs[2].down.lock().is_empty(), "node 2 still hears both");
}

#[test]
fn auto_mode_delivers_in_real_time() {
    let (sim, links, recs) = net(6, 2, SimConfig::default());
    let auto = sim.start_auto(Duration::from_millis(1));
    links[1].send(0, pull(5));
    let t = std::time::Instant::now();
    while from(&recs[0], 1).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(auto);
    assert_eq!(from(&recs[0], 1), vec![5]);
}
