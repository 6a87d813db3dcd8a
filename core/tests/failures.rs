//! Cancel, timeouts, retries, a full arena and bad configuration: each case
//! asserts the exact error the user sees.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use owl::{CallOpts, GetError, PutError, Runtime, StartError, TaskErrorKind};

#[owl::remote]
async fn sleepy(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[owl::remote]
async fn sleepy_parent(rt: Runtime, ms: u64) -> u64 {
    let child = sleepy.remote(&rt, ms).unwrap();
    CHILD.lock().unwrap().replace(child.clone());
    child.get_owned().await.unwrap_or(0)
}

static CHILD: Mutex<Option<owl::ObjectRef<u64>>> = Mutex::new(None);

#[owl::remote]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[owl::remote]
fn big(n: u64) -> Vec<u8> {
    vec![7u8; n as usize]
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[owl::remote]
fn flaky(fail_times: u32, v: Vec<u64>) -> Result<u64, String> {
    let call = FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    if call < fail_times {
        return Err(format!("transient failure {call}"));
    }
    Ok(v.iter().sum())
}

static ORDER: Mutex<Vec<i32>> = Mutex::new(Vec::new());

#[owl::remote]
fn record(p: i32) {
    ORDER.lock().unwrap().push(p);
}

use common::two_shards as rt;

#[test]
fn cancel_pending_task_and_its_children() {
    let rt = rt();
    let parent = sleepy_parent.remote(&rt, 60_000).unwrap();
    // Wait until the parent has submitted its child.
    let t0 = Instant::now();
    while CHILD.lock().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(5), "parent never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(rt.cancel(&parent));
    match parent.get_blocking_timeout(Duration::from_secs(5)) {
        Err(GetError::Cancelled { object, .. }) => assert_eq!(object, parent.id()),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    let child = CHILD.lock().unwrap().take().unwrap();
    assert!(matches!(
        child.get_blocking_timeout(Duration::from_secs(5)),
        Err(GetError::Cancelled { .. })
    ));
    assert!(!rt.cancel(&parent), "already finished");
    drop((parent, child));
    rt.assert_no_leaks();
}

#[test]
fn get_timeout_is_distinct_from_cancel() {
    let rt = rt();
    let slow = sleepy.remote(&rt, 60_000).unwrap();
    match slow.get_blocking_timeout(Duration::from_millis(20)) {
        Err(GetError::Timeout { object, after }) => {
            assert_eq!(object, slow.id());
            assert_eq!(after, Duration::from_millis(20));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    let inside = rt.block_on({
        let slow = slow.clone();
        move |_| async move {
            slow.get_timeout(Duration::from_millis(20))
                .await
                .map(|_| ())
        }
    });
    assert!(
        matches!(inside, Err(GetError::Timeout { .. })),
        "{inside:?}"
    );
    rt.cancel(&slow);
    drop(slow);
    rt.assert_no_leaks();
}

#[test]
fn get_blocking_inside_a_task_is_refused() {
    let rt = rt();
    let x = rt.put(1u64).unwrap();
    let r = rt.block_on(move |_| async move { x.get_blocking().map(|_| ()) });
    assert!(matches!(r, Err(GetError::BlockingInTask { .. })), "{r:?}");
    rt.assert_no_leaks();
}

#[test]
fn wait_for_some_of_many() {
    let rt = rt();
    rt.block_on(|rt| async move {
        let fast: Vec<_> = (0..3).map(|i| add.remote(&rt, i, 1).unwrap()).collect();
        let slow = sleepy.remote(&rt, 60_000).unwrap();
        let all: Vec<owl::ObjectRef<u64>> = fast.iter().cloned().chain([slow.clone()]).collect();
        let (ready, pending) = rt.wait(&all, 3, None).await;
        assert_eq!(ready.len(), 3);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id(), slow.id());
        let (ready, pending) = rt.wait(&all, 4, Some(Duration::from_millis(20))).await;
        assert_eq!((ready.len(), pending.len()), (3, 1));
        rt.cancel(&slow);
    });
    rt.assert_no_leaks();
}

#[test]
fn retries_application_errors_only_when_asked() {
    let rt = rt();
    FLAKY_CALLS.store(0, Ordering::SeqCst);
    let opts = CallOpts::new().max_retries(3).retry_on_error(true);
    let ok = flaky.options(opts).remote(&rt, 2, vec![1, 2, 3]).unwrap();
    assert_eq!(*ok.get_blocking().unwrap(), 6u64);
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 3);

    FLAKY_CALLS.store(0, Ordering::SeqCst);
    let no_retry = flaky
        .options(CallOpts::new().max_retries(3))
        .remote(&rt, 2, vec![1])
        .unwrap();
    match no_retry.get_blocking() {
        Err(GetError::Task(e)) => {
            assert_eq!(e.kind, TaskErrorKind::Failed("transient failure 0".into()));
            assert_eq!(e.attempts, 1);
        }
        other => panic!("unexpected {other:?}"),
    }

    FLAKY_CALLS.store(0, Ordering::SeqCst);
    let exhausted = flaky
        .options(CallOpts::new().max_retries(1).retry_on_error(true))
        .remote(&rt, 5, vec![1])
        .unwrap();
    match exhausted.get_blocking() {
        Err(GetError::Task(e)) => {
            assert_eq!(e.kind, TaskErrorKind::Failed("transient failure 1".into()));
            assert_eq!(e.attempts, 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    drop((ok, no_retry, exhausted));
    rt.assert_no_leaks();
}

#[test]
fn priorities_order_tasks_within_a_shard() {
    let rt = Runtime::builder()
        .shards(1)
        .store_size(16 << 20)
        .build()
        .unwrap();
    ORDER.lock().unwrap().clear();
    rt.block_on(|rt| async move {
        // Nothing runs until this root task yields: all are queued first.
        let prios = [0, 5, -3, 5, 1, 0, 9, -3];
        let refs: Vec<_> = prios
            .iter()
            .map(|&p| {
                record
                    .options(CallOpts::new().priority(p))
                    .remote(&rt, p)
                    .unwrap()
            })
            .collect();
        rt.wait(&refs, refs.len(), None).await;
    });
    assert_eq!(*ORDER.lock().unwrap(), vec![9, 5, 5, 1, 0, 0, -3, -3]);
    rt.assert_no_leaks();
}

#[test]
fn full_arena_is_a_typed_error() {
    let rt = Runtime::builder()
        .shards(2)
        .store_size(1 << 20)
        .inline_max(1024)
        .build()
        .unwrap();
    let err = rt.put(vec![1u8; 2 << 20]).unwrap_err();
    match &err {
        PutError::StoreFull(owl_store_err) => {
            let msg = owl_store_err.to_string();
            assert!(msg.contains("object store is full"), "{msg}");
            assert!(msg.contains("OWL_STORE_SIZE"), "{msg}");
        }
        other => panic!("expected StoreFull, got {other:?}"),
    }
    // A task whose result does not fit fails with a Store error.
    let r = big.remote(&rt, 2 << 20).unwrap();
    match r.get_blocking() {
        Err(GetError::Task(e)) => match &e.kind {
            TaskErrorKind::Store(m) => assert!(m.contains("object store is full"), "{m}"),
            k => panic!("unexpected {k:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
    // Values that fit still work, in the arena and inline.
    let ok = big.remote(&rt, 100_000).unwrap();
    let got = ok.get_blocking().unwrap();
    assert!(got.in_arena());
    assert_eq!(got.len(), 100_000);
    drop((got, ok, r));
    rt.assert_no_leaks();
}

#[test]
fn misconfiguration_fails_at_start() {
    match Runtime::builder().shards(0).build() {
        Err(StartError::ZeroShards) => {}
        other => panic!("expected ZeroShards, got {other:?}"),
    }
    let err = Runtime::builder()
        .store_dir("/proc/owl-nope")
        .build()
        .unwrap_err();
    assert!(matches!(err, StartError::Store(_)), "{err:?}");
    assert!(err.to_string().contains("OWL_STORE_DIR"), "{err}");
}

#[test]
fn shutdown_fails_pending_and_parked_tasks_instead_of_hanging() {
    let rt = rt();
    let running = sleepy.remote(&rt, 60_000).unwrap();
    let parked = add.remote(&rt, &running, 1).unwrap();
    let done = add.remote(&rt, 1, 2).unwrap();
    assert_eq!(*done.get_blocking().unwrap(), 3u64);
    drop(rt);
    for r in [&running, &parked] {
        match r.get_blocking_timeout(Duration::from_secs(5)) {
            Err(GetError::Task(e)) => {
                assert!(
                    matches!(
                        e.kind,
                        TaskErrorKind::Shutdown | TaskErrorKind::DependencyFailed(_)
                    ),
                    "{e}"
                );
            }
            other => panic!("expected a shutdown error, got {other:?}"),
        }
    }
    // A task that finished before shutdown keeps its value.
    assert_eq!(*done.get_blocking().unwrap(), 3u64);
}
