//! Arena files outlive a SIGKILLed node, and pids are reused: a new node
//! whose pid matches a dead one's must not fail to start on the leftover
//! file (seen as "object store directory /dev/shm is not usable (File
//! exists)" in a test run).

use std::time::Duration;

use owl::Runtime;

#[test]
fn a_leftover_arena_with_this_pid_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    // The serial this process's next runtime takes is not known: cover the
    // first hundred.
    for serial in 1..=100 {
        std::fs::write(
            dir.path().join(format!("owl-{pid}-{serial}.arena")),
            b"stale",
        )
        .unwrap();
    }
    let rt = Runtime::builder()
        .shards(1)
        .pin(false)
        .store_dir(dir.path())
        .store_size(8 << 20)
        .spin(Duration::ZERO)
        .build()
        .expect("starts despite the leftover file");
    let x = rt.put(7u64).unwrap();
    assert_eq!(*x.get_blocking().unwrap(), 7);
    drop(x);
    rt.assert_no_leaks();
}
