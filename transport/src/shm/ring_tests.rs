use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// A private directory removed (with a check that it is empty) on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("owl-ring-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates node 1's inbox (2 nodes), opens it a second time as node 0
/// would, and unlinks the file: the mappings outlive it.
fn pair(dir: &Dir, ring: usize) -> (Producer, Consumer, Arc<Inbox>) {
    let path = dir.0.join("inbox-1");
    let owner = Arc::new(Inbox::create(&path, 1, 2, ring).unwrap());
    let peer = Arc::new(Inbox::open(&path, 1, 2, ring).unwrap());
    std::fs::remove_file(&path).unwrap();
    (
        Producer::new(peer, 0),
        Consumer::new(owner.clone(), 0),
        owner,
    )
}

#[test]
fn open_refuses_wrong_layout_and_create_refuses_existing() {
    let dir = Dir::new("layout");
    let path = dir.0.join("inbox");
    let _a = Inbox::create(&path, 1, 2, 1024).unwrap();
    assert!(
        Inbox::create(&path, 1, 2, 1024).is_err(),
        "must not reuse a file"
    );
    assert!(Inbox::open(&path, 1, 2, 2048).is_err(), "size mismatch");
    assert!(Inbox::open(&path, 0, 2, 1024).is_err(), "owner mismatch");
    Inbox::open(&path, 1, 2, 1024).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Messages of many sizes, some far larger than the 64-byte ring, arrive
/// whole and in order: writes wrap around and split.
#[test]
fn ordering_with_wrap_and_split_under_a_tiny_ring() {
    let dir = Dir::new("order");
    let (mut tx, mut rx, _owner) = pair(&dir, MIN_RING);
    let msgs: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            let len = (i as usize * 37) % 300 + 1;
            (0..len).map(|j| (i as usize + j) as u8).collect()
        })
        .collect();
    let expect: Vec<u8> = msgs.iter().flatten().copied().collect();
    let writer = std::thread::spawn(move || {
        for m in msgs {
            let mut off = 0;
            while off < m.len() {
                off += tx.write(&m[off..]).unwrap();
                std::hint::spin_loop();
            }
        }
    });
    let mut got = Vec::new();
    while got.len() < expect.len() {
        // Odd read sizes so reads straddle the wrap point too.
        rx.read(&mut got, 7).unwrap();
    }
    writer.join().unwrap();
    assert_eq!(got, expect);
    assert_eq!(rx.available().unwrap(), 0);
}

#[test]
fn full_ring_pushes_back_and_never_overwrites() {
    let dir = Dir::new("full");
    let (mut tx, mut rx, _owner) = pair(&dir, 128);
    let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    assert_eq!(tx.write(&data).unwrap(), 128);
    assert_eq!(tx.write(&data[128..]).unwrap(), 0, "full: nothing written");
    assert_eq!(tx.free().unwrap(), 0);
    let mut got = Vec::new();
    assert_eq!(rx.read(&mut got, 50).unwrap(), 50);
    assert_eq!(tx.write(&data[128..]).unwrap(), 50);
    rx.read(&mut got, usize::MAX).unwrap();
    assert_eq!(got, data[..178]);
}

/// Many short bursts with pauses between them, the consumer asleep on the
/// futex with a 20 s backstop: a lost wake-up would stall a burst for 20 s.
#[test]
fn sleep_and_wake_lose_no_wake_up() {
    let dir = Dir::new("wake");
    let (mut tx, mut rx, owner) = pair(&dir, 4096);
    const BURSTS: u64 = 400;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (d, s) = (done.clone(), stop.clone());
    let consumer = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut sleeps = 0u64;
        while !s.load(Ordering::Acquire) {
            if rx.read(&mut got, usize::MAX).unwrap() > 0 {
                d.store(got.len() as u64, Ordering::Release);
                continue;
            }
            sleeps += 1;
            owner.bell().sleep(Duration::from_secs(20), || {
                rx.available().unwrap() == 0 && !s.load(Ordering::SeqCst)
            });
        }
        (got, sleeps)
    });
    let mut worst = Duration::ZERO;
    let mut sent = 0u64;
    for burst in 0..BURSTS {
        let t0 = Instant::now();
        for _ in 0..(burst % 3 + 1) {
            let b = [sent as u8];
            while tx.write(&b).unwrap() == 0 {}
            tx.bell().ring();
            sent += 1;
        }
        while done.load(Ordering::Acquire) < sent {
            std::hint::spin_loop();
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "burst {burst}: wake-up lost"
            );
        }
        worst = worst.max(t0.elapsed());
        // Vary the pause so some bursts land while the consumer is going to
        // sleep, some while it sleeps.
        std::thread::sleep(Duration::from_micros(burst * 7 % 300));
    }
    stop.store(true, Ordering::SeqCst);
    tx.bell().ring();
    let (got, sleeps) = consumer.join().unwrap();
    assert_eq!(got, (0..sent).map(|i| i as u8).collect::<Vec<_>>());
    assert!(
        sleeps > BURSTS / 4,
        "the consumer should have slept often ({sleeps})"
    );
    assert!(worst < Duration::from_secs(1), "slowest burst {worst:?}");
}

#[test]
fn corrupt_indices_are_detected() {
    let dir = Dir::new("corrupt");
    let (tx, rx, owner) = pair(&dir, 256);
    // A misbehaving producer publishing more than the ring holds.
    owner.tail(0).store(10_000, Ordering::Release);
    assert!(rx.available().is_err());
    owner.tail(0).store(0, Ordering::Release);
    owner.head(0).store(5, Ordering::Release);
    assert!(tx.free().is_err());
}
