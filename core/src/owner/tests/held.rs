//! Results too large for one message: the executor holds the value and
//! the owner pulls it, then releases it; deaths on either side.

use owl_proto::SharedBlock;

use super::tasks::{error_kind, node_gone_tables, submit, task, TEST_FN};
use super::*;
use crate::object::value::Stored;
use crate::owner::fetch::CHUNK;
use crate::owner::Owner;
use crate::spec::Arg;
use owl_proto::WireArg;

/// A value of `len` bytes in the recorder's arena, as a task's result.
fn large(ctx: &Recorder, len: usize) -> Stored {
    let mut block = ctx.arena().alloc(len).unwrap();
    for (i, b) in block.as_mut_slice().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    Stored::from_block(block.freeze(), Vec::new())
}

fn release(object: ObjectId) -> OwlMsg {
    OwlMsg::Release {
        object: object.into(),
    }
}

fn pull(from: NodeId, object: ObjectId, offset: usize, len: usize) -> Action {
    Action::Send(
        from,
        OwlMsg::Pull {
            object: object.into(),
            offset: offset as u64,
            len: len as u32,
        },
    )
}

#[test]
fn the_executor_holds_a_large_result_until_the_owner_releases_it() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let tid = id(N1, 5);
    owner.on_msg(&ctx, N1, submit(tid, TEST_FN.id.0, vec![]));
    ctx.take();
    let t = ctx.take_queued().pop().unwrap();
    let len = CHUNK + 10;
    t.cell.complete(Ok(large(&ctx, len)));
    owner.task_done(&ctx, N1, &t.cell);
    let sent = ctx.take();
    let [Action::Send(
        N1,
        OwlMsg::TaskHeld {
            object,
            len: l,
            refs,
            shared,
        },
    )] = &sent[..]
    else {
        panic!("{sent:?}")
    };
    assert_eq!(
        (ObjectId::from(*object), *l, refs.len()),
        (tid, len as u64, 0)
    );
    assert!(
        matches!(shared, Some(SharedBlock { .. })),
        "same-host readers may copy"
    );
    drop(t);
    assert_eq!((owner.counts().held, owner.counts().executing), (1, 0));
    // The owner pulls from the held copy, then releases it.
    owner.on_msg(
        &ctx,
        N1,
        OwlMsg::Pull {
            object: tid.into(),
            offset: CHUNK as u64,
            len: 10,
        },
    );
    let sent = ctx.take();
    let [Action::Send(N1, OwlMsg::Chunk { data, .. })] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(
        data,
        &(CHUNK..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>()
    );
    owner.on_msg(&ctx, N1, release(tid));
    assert_eq!(owner.counts(), crate::owner::OwnerCounts::default());
}

#[test]
fn an_owner_that_dies_before_releasing_loses_its_held_result() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    owner.on_msg(&ctx, N1, submit(id(N1, 5), TEST_FN.id.0, vec![]));
    let t = ctx.take_queued().pop().unwrap();
    t.cell.complete(Ok(large(&ctx, CHUNK + 1)));
    owner.task_done(&ctx, N1, &t.cell);
    drop(t);
    ctx.take();
    owner.node_gone(&ctx, N1);
    assert_eq!(owner.counts(), crate::owner::OwnerCounts::default());
}

/// The owner's side: task 1 placed on node 1, whose result is held there.
fn held_on_1(ctx: &Recorder, owner: &Owner, len: usize) -> Arc<ObjectCell> {
    let t = task(1, vec![], 0);
    let cell = Arc::clone(&t.cell);
    assert!(owner.dispatch(ctx, t, N1).is_ok());
    ctx.take();
    let held = OwlMsg::TaskHeld {
        object: cell.id().into(),
        len: len as u64,
        refs: Vec::new(),
        shared: None,
    };
    owner.on_msg(ctx, N1, held);
    cell
}

#[test]
fn the_owner_pulls_a_held_result_then_releases_it() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let len = CHUNK + 100;
    let cell = held_on_1(&ctx, &owner, len);
    let tid = cell.id();
    assert_eq!(
        ctx.take(),
        vec![pull(N1, tid, 0, CHUNK), pull(N1, tid, CHUNK, 100)]
    );
    let data: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
    for offset in [0, CHUNK] {
        assert!(!cell.is_ready());
        let end = (offset + CHUNK).min(len);
        let chunk = OwlMsg::Chunk {
            object: tid.into(),
            offset: offset as u64,
            data: data[offset..end].to_vec(),
        };
        owner.on_msg(&ctx, N1, chunk);
    }
    match cell.result() {
        Some(Ok(stored)) => assert_eq!(stored.bytes(), &data[..]),
        other => panic!("{other:?}"),
    }
    assert_eq!(ctx.take(), vec![Action::Send(N1, release(tid))]);
    assert_eq!(owner.counts(), crate::owner::OwnerCounts::default());
}

#[test]
fn the_executor_dies_with_a_held_result_half_pulled_and_the_task_is_retried() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let cell = held_on_1(&ctx, &owner, 2 * CHUNK);
    let tid = cell.id();
    ctx.take();
    let chunk = OwlMsg::Chunk {
        object: tid.into(),
        offset: 0,
        data: vec![1; CHUNK],
    };
    owner.on_msg(&ctx, N1, chunk);
    assert_eq!(owner.counts().pulls, 1);
    owner.node_gone(&ctx, N1);
    let mut want = vec![Action::Enqueue(Some(ShardId(0)), tid, 1)];
    want.extend(node_gone_tables(N1));
    assert_eq!(ctx.take(), want, "retried here, not failed");
    assert!(!cell.is_ready());
    assert_eq!((owner.counts().pulls, owner.counts().remote_tasks), (0, 0));
    drop(ctx.take_queued());
    assert!(matches!(error_kind(&cell), TaskErrorKind::Shutdown));
}

#[test]
fn a_held_result_from_a_node_the_task_no_longer_runs_on_is_released_at_once() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let cell = held_on_1(&ctx, &owner, CHUNK + 1);
    ctx.take();
    let stale = OwlMsg::TaskHeld {
        object: cell.id().into(),
        len: 9,
        refs: Vec::new(),
        shared: None,
    };
    owner.on_msg(&ctx, N2, stale);
    assert_eq!(ctx.take(), vec![Action::Send(N2, release(cell.id()))]);
    assert_eq!(owner.counts().pulls, 1, "node 1's pull goes on");
}

#[test]
fn a_by_value_argument_too_large_for_a_message_goes_as_an_object() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let big = Arg::Kept(large(&ctx, CHUNK + 1));
    let t = task(1, vec![big, Arg::Value(Some(3))], 0);
    assert!(owner.dispatch(&ctx, t, N1).is_ok());
    let sent = ctx.take();
    let put = id(N0, 1000);
    assert_eq!(sent[0], Action::Put(put));
    assert_eq!(
        sent[1],
        Action::Table(
            ShardId(0),
            TableOp::Borrow {
                id: put,
                node: N1,
                delta: 1,
                shipped: true
            }
        )
    );
    let Action::Send(N1, OwlMsg::Submit { args, .. }) = &sent[2] else {
        panic!("{sent:?}")
    };
    assert!(matches!(&args[..], [WireArg::Ref(r), WireArg::Value(_)] if ObjectId::from(*r) == put));
    // A retry sends the same object again: the call keeps it.
    owner.node_gone(&ctx, N1);
    let retry = ctx.take_queued().pop().unwrap();
    assert!(owner.dispatch(&ctx, retry, N2).is_ok());
    let sent = ctx.take();
    assert!(
        sent.iter().all(|a| !matches!(a, Action::Put(_))),
        "{sent:?}"
    );
}

#[test]
fn a_call_s_inline_arguments_fit_one_message_together() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    // Each fits a message alone; the three together would not fit the
    // call's budget, so the second and third go as objects.
    let args = (0..3)
        .map(|_| Arg::Kept(large(&ctx, CHUNK / 2 + 1)))
        .collect();
    assert!(owner.dispatch(&ctx, task(1, args, 0), N1).is_ok());
    let sent = ctx.take();
    let puts = sent.iter().filter(|a| matches!(a, Action::Put(_))).count();
    assert_eq!(puts, 2, "{sent:?}");
    let Some(Action::Send(N1, OwlMsg::Submit { args, .. })) = sent.last() else {
        panic!("{sent:?}")
    };
    assert!(matches!(
        &args[..],
        [WireArg::Value(_), WireArg::Ref(_), WireArg::Ref(_)]
    ));
}
