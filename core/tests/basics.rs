//! The API end to end on a real node: put, get, submit, refs as args.

mod common;

use owl::{CallOpts, GetError, TaskErrorKind};

#[owl::remote]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[owl::remote]
async fn add_async(a: u64, b: u64) -> u64 {
    a + b
}

#[owl::remote]
fn fails(msg: String) -> Result<u64, String> {
    Err(msg)
}

#[owl::remote]
fn panics(x: u64) -> u64 {
    if x > 0 {
        panic!("boom {x}");
    }
    x
}

use common::two_shards as rt;

#[test]
fn put_get_and_submit() {
    let rt = rt();
    rt.block_on(|rt| async move {
        let x = rt.put(40u64).unwrap();
        let y = add.remote(&rt, x.clone(), 2).unwrap();
        assert_eq!(*y.get().await.unwrap(), 42u64);
        let z = add_async.remote(&rt, &y, &x).unwrap();
        assert_eq!(z.get_owned().await.unwrap(), 82);
    });
    rt.assert_no_leaks();
}

#[test]
fn blocking_api_outside_tasks() {
    let rt = rt();
    let x = rt.put(1u64).unwrap();
    let y = add.remote(&rt, &x, 2).unwrap();
    assert_eq!(*y.get_blocking().unwrap(), 3u64);
    let s = rt.put(String::from("hello")).unwrap();
    assert_eq!(s.get_blocking().unwrap().as_str(), "hello");
    drop((x, y, s));
    rt.assert_no_leaks();
}

#[test]
fn errors_and_panics_are_values() {
    let rt = rt();
    let e = fails.remote(&rt, "bad input".to_string()).unwrap();
    match e.get_blocking() {
        Err(GetError::Task(err)) => {
            assert_eq!(err.kind, TaskErrorKind::Failed("bad input".into()));
            assert_eq!(err.task, "fails");
            assert_eq!(err.attempts, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    let p = panics.remote(&rt, 7).unwrap();
    match p.get_blocking() {
        Err(GetError::Task(err)) => assert_eq!(err.kind, TaskErrorKind::Panicked("boom 7".into())),
        other => panic!("unexpected {other:?}"),
    }
    // The shard survived: it still runs tasks.
    let ok = add.remote(&rt, 1, 1).unwrap();
    assert_eq!(*ok.get_blocking().unwrap(), 2u64);
    // A dependent of a failed task fails with DependencyFailed.
    let dep = add.remote(&rt, &p, 1).unwrap();
    match dep.get_blocking() {
        Err(GetError::Task(err)) => match &err.kind {
            TaskErrorKind::DependencyFailed(cause) => {
                assert_eq!(cause.kind, TaskErrorKind::Panicked("boom 7".into()))
            }
            k => panic!("unexpected {k:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
    let named = panics
        .options(CallOpts::new().name("my-task"))
        .remote(&rt, 1)
        .unwrap();
    match named.get_blocking() {
        Err(GetError::Task(err)) => assert_eq!(err.task, "my-task"),
        other => panic!("unexpected {other:?}"),
    }
    drop((e, p, ok, dep, named));
    rt.assert_no_leaks();
}
