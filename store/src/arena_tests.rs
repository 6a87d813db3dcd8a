//! The arena's allocator, reservation and spilling, in one process.
use super::*;

fn arena(size: u64) -> (tempfile::TempDir, Arc<Arena>) {
    let dir = tempfile::tempdir().unwrap();
    let arena = Arena::create(dir.path(), "test.arena", size, 1024).unwrap();
    (dir, arena)
}

#[test]
fn blocks_are_aligned_disjoint_and_freed() {
    let (_dir, arena) = arena(1 << 20);
    let mut a = arena.alloc(100).unwrap();
    let mut b = arena.alloc(5000).unwrap();
    a.as_mut_slice().fill(1);
    b.as_mut_slice().fill(2);
    let (a, b) = (a.freeze(), b.freeze());
    assert_eq!(a.offset() % BLOCK_ALIGN, 0);
    assert_eq!(b.offset() % BLOCK_ALIGN, 0);
    assert!(a.offset() + 128 <= b.offset() || b.offset() + 5056 <= a.offset());
    assert!(a.as_slice().iter().all(|&x| x == 1));
    assert!(b.as_slice().iter().all(|&x| x == 2));
    assert_eq!(arena.stats().live_blocks, 2);
    drop((a, b));
    assert_eq!(arena.stats().live_blocks, 0);
    assert_eq!(arena.stats().used_bytes, 0);
}

#[test]
fn full_arena_is_an_error_then_recovers() {
    let (_dir, arena) = arena(1 << 16);
    let big = arena.alloc(40_000).unwrap();
    match arena.alloc(40_000) {
        Err(ArenaError::Full {
            requested,
            capacity,
            ..
        }) => {
            assert_eq!(requested, 40_000);
            assert_eq!(capacity, 1 << 16);
        }
        other => panic!("expected Full, got {other:?}"),
    }
    drop(big);
    assert!(arena.alloc(40_000).is_ok());
}

#[test]
fn unusable_dir_and_bad_size_are_reported() {
    let err = Arena::create(Path::new("/nonexistent/owl"), "x", 1 << 20, 64).unwrap_err();
    assert!(matches!(err, ArenaError::Dir { .. }), "{err}");
    assert!(err.to_string().contains("OWL_STORE_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let err = Arena::create(dir.path(), "x", 10, 64).unwrap_err();
    assert!(matches!(err, ArenaError::Size { .. }), "{err}");
}

#[test]
fn block_slots_run_out_with_a_distinct_error() {
    let dir = tempfile::tempdir().unwrap();
    let arena = Arena::create(dir.path(), "slots", 1 << 20, 16).unwrap();
    let blocks: Vec<_> = (0..16).map(|_| arena.alloc(64).unwrap()).collect();
    match arena.alloc(64) {
        Err(ArenaError::TooManyBlocks { max: 16 }) => {}
        other => panic!("expected TooManyBlocks, got {other:?}"),
    }
    drop(blocks);
    assert!(arena.alloc(64).is_ok());
}

#[test]
fn file_removed_on_drop() {
    let (dir, arena) = arena(1 << 16);
    let path = arena.path().to_path_buf();
    assert!(path.exists());
    drop(arena);
    assert!(!path.exists());
    drop(dir);
}

fn spilling(size: u64) -> (tempfile::TempDir, Arc<Arena>) {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    let arena = Arena::with_spill(dir.path(), "owl-1-1.arena", size, 1024, &spill).unwrap();
    (dir, arena)
}

fn filled(arena: &Arc<Arena>, len: usize, seed: u8) -> Block {
    let mut b = arena.alloc(len).unwrap();
    for (i, x) in b.as_mut_slice().iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    b.freeze()
}

fn intact(b: &Block, seed: u8) -> bool {
    b.as_slice()
        .iter()
        .enumerate()
        .all(|(i, &x)| x == (i as u8).wrapping_mul(31).wrapping_add(seed))
}

#[test]
fn live_blocks_three_times_the_size_spill_and_stay_intact() {
    let (dir, arena) = spilling(4 << 20);
    let blocks: Vec<_> = (0..12).map(|i| filled(&arena, 1 << 20, i)).collect();
    let s = arena.stats();
    assert!(s.resident_bytes <= s.capacity, "{s:?}");
    assert!(s.spilled_bytes >= 8 << 20, "{s:?}");
    assert!(blocks.iter().filter(|b| b.is_spilled()).count() >= 8);
    for (i, b) in blocks.iter().enumerate() {
        assert!(intact(b, i as u8), "block {i} changed");
    }
    // The spill file was unlinked at creation: nothing in the directory.
    assert_eq!(
        std::fs::read_dir(dir.path().join("spill")).unwrap().count(),
        0
    );
    drop(blocks);
    let s = arena.stats();
    assert_eq!(
        (
            s.live_blocks,
            s.used_bytes,
            s.resident_bytes,
            s.spilled_bytes
        ),
        (0, 0, 0, 0)
    );
    // Freed ranges are arena pages again: new blocks there hold their bytes.
    let again: Vec<_> = (0..4).map(|i| filled(&arena, 1 << 20, 100 + i)).collect();
    assert!(again
        .iter()
        .enumerate()
        .all(|(i, b)| intact(b, 100 + i as u8)));
}

#[test]
fn without_a_spill_dir_the_size_is_a_hard_limit() {
    let (_dir, arena) = arena(4 << 20);
    let _a = arena.alloc(3 << 20).unwrap();
    assert!(matches!(arena.alloc(2 << 20), Err(ArenaError::Full { .. })));
}

#[test]
fn readers_see_the_same_bytes_while_a_block_spills() {
    let (_dir, arena) = spilling(64 << 20);
    let block = Arc::new(filled(&arena, 8 << 20, 7));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (block, stop) = (Arc::clone(&block), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) || reads == 0 {
                assert!(intact(&block, 7), "a reader saw other bytes");
                reads += 1;
            }
            reads
        })
    };
    assert!(arena.spill_all().unwrap() >= (8 << 20) - 8192);
    assert!(block.is_spilled());
    arena.evict_spilled().unwrap();
    assert!(intact(&block, 7));
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

#[test]
fn a_block_shared_with_a_peer_stays_in_the_file() {
    let (dir, arena) = spilling(16 << 20);
    let shared = filled(&arena, 1 << 20, 1);
    let other = filled(&arena, 1 << 20, 2);
    let offset = shared.share_offset().expect("resident");
    arena.spill_all().unwrap();
    assert!(!shared.is_spilled() && other.is_spilled());
    assert_eq!(other.share_offset(), None);
    let mut dst = vec![0u8; 1 << 20];
    crate::read_peer_arena(dir.path(), arena.path(), offset as u64, &mut dst).unwrap();
    assert_eq!(dst, shared.as_slice());
}
