//! Large results: the executor holds the value, the owner records where it
//! is, readers pull it from there (or read it there), the owner pulls it
//! only when a reader here demands it; deaths on either side rebuild it.

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

pub(super) fn release(object: ObjectId) -> OwlMsg {
    OwlMsg::Release {
        object: object.into(),
    }
}

pub(super) fn pull(from: NodeId, object: ObjectId, offset: usize, len: usize) -> Action {
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

/// The owner's side: task 1 placed on node 1, whose result is held there;
/// with the program's handle to it.
fn held_on_1(ctx: &Recorder, owner: &Owner, len: usize) -> (Arc<ObjectCell>, RawRef) {
    held_on_1_at(ctx, owner, len, None)
}

/// [`held_on_1`], its block in node 1's arena file `shared` (same host).
pub(super) fn held_on_1_at(
    ctx: &Recorder,
    owner: &Owner,
    len: usize,
    shared: Option<SharedBlock>,
) -> (Arc<ObjectCell>, RawRef) {
    let t = task(1, vec![], 0);
    let cell = Arc::clone(&t.cell);
    cell.handles
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let handle = RawRef::adopt(Arc::clone(&cell));
    assert!(owner.dispatch(ctx, t, N1).is_ok());
    ctx.take();
    let held = OwlMsg::TaskHeld {
        object: cell.id().into(),
        len: len as u64,
        refs: Vec::new(),
        shared,
    };
    owner.on_msg(ctx, N1, held);
    (cell, handle)
}

#[test]
fn a_held_result_stays_with_its_executor_until_a_reader_here_demands_it() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let len = CHUNK + 100;
    let (cell, _handle) = held_on_1(&ctx, &owner, len);
    let tid = cell.id();
    assert_eq!(ctx.take(), vec![], "nothing moves while nobody reads it");
    assert!(cell.is_located() && cell.is_done() && !cell.is_ready());
    assert_eq!(
        (owner.counts().located, owner.counts().remote_tasks),
        (1, 0)
    );
    owner.demand(&ctx, &cell);
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
fn a_reader_on_another_node_is_sent_to_the_holder() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let (cell, handle) = held_on_1(&ctx, &owner, CHUNK + 1);
    // Its ref went to node 2 (so node 2 may fetch it).
    owner.refs().ship(&ctx, N2, &handle);
    ctx.take();
    owner.send_value(&ctx, N2, &cell);
    let sent = ctx.take();
    let [Action::Send(N2, OwlMsg::ValueHeader { holder, len, .. })] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!((*holder, *len), (1, CHUNK as u64 + 1));
    // Node 2 found node 1 could not serve it: the task runs again.
    owner.on_msg(
        &ctx,
        N2,
        OwlMsg::Fetch {
            object: cell.id().into(),
            lost: Some(1),
        },
    );
    let sent = ctx.take();
    assert_eq!(
        sent,
        vec![
            Action::Send(N1, release(cell.id())),
            Action::Enqueue(Some(ShardId(0)), cell.id(), 1),
            Action::WhenReady(cell.id(), N2),
        ]
    );
    assert!(!cell.is_done());
    // A second report of the same loss starts nothing more.
    owner.on_msg(
        &ctx,
        N2,
        OwlMsg::Fetch {
            object: cell.id().into(),
            lost: Some(1),
        },
    );
    assert_eq!(ctx.take(), vec![Action::WhenReady(cell.id(), N2)]);
}

#[test]
fn the_holder_dies_and_the_task_runs_again_when_the_value_is_wanted() {
    for demanded in [false, true] {
        let _r = Routed::new();
        let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
        let (cell, _handle) = held_on_1(&ctx, &owner, 2 * CHUNK);
        let tid = cell.id();
        if demanded {
            owner.demand(&ctx, &cell);
            let chunk = OwlMsg::Chunk {
                object: tid.into(),
                offset: 0,
                data: vec![1; CHUNK],
            };
            owner.on_msg(&ctx, N1, chunk);
            assert_eq!(owner.counts().pulls, 1);
        }
        ctx.take();
        ctx.dead.borrow_mut().insert(N1);
        owner.node_gone(&ctx, N1);
        let rerun = Action::Enqueue(Some(ShardId(0)), tid, 1);
        if demanded {
            // A reader was pulling it: rebuilt at once.
            let mut want = vec![rerun];
            want.extend(node_gone_tables(N1));
            assert_eq!(ctx.take(), want, "retried here, not failed");
        } else {
            // Nobody reads it: nothing runs until someone does.
            assert_eq!(ctx.take(), node_gone_tables(N1));
            assert!(cell.is_done());
            owner.demand(&ctx, &cell);
            assert_eq!(ctx.take(), vec![rerun]);
        }
        assert!(!cell.is_done());
        let c = owner.counts();
        assert_eq!((c.pulls, c.remote_tasks, c.located), (0, 0, 0));
        let retry = ctx.take_queued().pop().unwrap();
        assert_eq!(retry.tried.len(), 1);
        assert!(
            retry.tried[0].cause.contains("lost with n1"),
            "{:?}",
            retry.tried
        );
        drop(retry);
        assert!(matches!(error_kind(&cell), TaskErrorKind::Shutdown));
    }
}

#[test]
fn past_the_lineage_budget_the_oldest_task_is_evicted_and_its_result_cannot_be_rebuilt() {
    let _r = Routed::new();
    let ctx = Recorder::default();
    // Room for one task spec (256 bytes and its arguments), not two.
    let owner = Owner::new(N0, SERIAL, [&TEST_FN]).with_lineage_budget(400);
    let mut cells = Vec::new();
    for i in 1..=2 {
        let t = task(i, vec![], 0);
        let cell = Arc::clone(&t.cell);
        cell.handles
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        cells.push((Arc::clone(&cell), RawRef::adopt(Arc::clone(&cell))));
        assert!(owner.dispatch(&ctx, t, N1).is_ok());
        let held = OwlMsg::TaskHeld {
            object: cell.id().into(),
            len: CHUNK as u64 + 1,
            refs: Vec::new(),
            shared: None,
        };
        owner.on_msg(&ctx, N1, held);
    }
    assert!(owner.lineage_bytes() <= 400, "{}", owner.lineage_bytes());
    let (old, new) = (&cells[0].0, &cells[1].0);
    assert!(old.is_located(), "an evicted task does not fail its object");
    ctx.take();
    ctx.dead.borrow_mut().insert(N1);
    owner.node_gone(&ctx, N1);
    owner.demand(&ctx, old);
    owner.demand(&ctx, new);
    let sent = ctx.take();
    assert!(
        sent.contains(&Action::Enqueue(Some(ShardId(0)), new.id(), 1)),
        "{sent:?}"
    );
    assert!(!sent
        .iter()
        .any(|a| matches!(a, Action::Enqueue(_, id, _) if *id == old.id())));
    let err = error_kind(old);
    assert!(matches!(err, TaskErrorKind::LineageEvicted(N1)), "{err:?}");
    assert!(err.to_string().contains("OWL_LINEAGE_BYTES"), "{err}");
    assert_eq!(owner.counts().located, 0);
}

#[test]
fn a_held_result_nobody_can_read_any_more_is_released_at_once() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    // The program dropped its handle while the task ran, and no ref went out.
    let t = task(1, vec![], 0);
    let tid = t.cell.id();
    assert!(owner.dispatch(&ctx, t, N1).is_ok());
    ctx.take();
    let held = OwlMsg::TaskHeld {
        object: tid.into(),
        len: CHUNK as u64 + 1,
        refs: Vec::new(),
        shared: None,
    };
    owner.on_msg(&ctx, N1, held);
    assert_eq!(ctx.take(), vec![Action::Send(N1, release(tid))]);
    assert_eq!(owner.counts(), crate::owner::OwnerCounts::default());
}

#[test]
fn a_held_result_from_a_node_the_task_no_longer_runs_on_is_released_at_once() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let (cell, _handle) = held_on_1(&ctx, &owner, CHUNK + 1);
    ctx.take();
    let stale = OwlMsg::TaskHeld {
        object: cell.id().into(),
        len: 9,
        refs: Vec::new(),
        shared: None,
    };
    owner.on_msg(&ctx, N2, stale);
    assert_eq!(ctx.take(), vec![Action::Send(N2, release(cell.id()))]);
    assert_eq!(owner.counts().located, 1, "node 1's copy stays the one");
}

#[test]
fn a_task_on_the_holder_reads_the_holder_s_copy_without_moving_it() {
    let _r = Routed::new();
    // Node 0 runs task `tid` for node 1 and holds its large result.
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let tid = id(N1, 5);
    owner.on_msg(&ctx, N1, submit(tid, TEST_FN.id.0, vec![]));
    let t = ctx.take_queued().pop().unwrap();
    let len = CHUNK + 3;
    t.cell.complete(Ok(large(&ctx, len)));
    owner.task_done(&ctx, N1, &t.cell);
    drop(t);
    ctx.take();
    // A later task of node 1's, sent here, takes that result as a ref;
    // node 1 answers the fetch by naming this node as the holder.
    let r = owner.refs().resolve(&ctx, tid, N1);
    ctx.take();
    owner.on_msg(
        &ctx,
        N1,
        OwlMsg::ValueHeader {
            object: tid.into(),
            len: len as u64,
            holder: 0,
            refs: Vec::new(),
            shared: None,
        },
    );
    assert_eq!(ctx.take(), vec![], "no pull, no copy");
    match r.cell().result() {
        Some(Ok(v)) => assert!(v
            .bytes()
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8)),
        other => panic!("{other:?}"),
    }
    // Node 1 pulled it meanwhile and said `Release`: the reader's value
    // lives on, and what is left is its proxy.
    owner.on_msg(&ctx, N1, release(tid));
    assert_eq!(owner.counts().held, 0);
    assert_eq!(r.cell().result().map(|v| v.is_ok()), Some(true));
}

#[test]
fn a_holder_that_no_longer_has_the_value_sends_the_reader_back_to_the_owner() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let xid = id(N2, 4);
    let x = owner.refs().resolve(&ctx, xid, N2);
    owner.on_msg(
        &ctx,
        N2,
        OwlMsg::ValueHeader {
            object: xid.into(),
            len: CHUNK as u64 + 1,
            holder: 3,
            refs: Vec::new(),
            shared: None,
        },
    );
    ctx.take();
    let refused = OwlMsg::Value {
        object: xid.into(),
        outcome: Err(crate::owner::wire::wire_error(
            &crate::owner::refs::owner_died(xid),
        )),
    };
    owner.on_msg(&ctx, N3, refused);
    assert_eq!(
        ctx.take(),
        vec![Action::Send(
            N2,
            OwlMsg::Fetch {
                object: xid.into(),
                lost: Some(3),
            }
        )]
    );
    assert!(
        !x.cell().is_ready(),
        "the reader waits for the owner's answer"
    );
    assert_eq!(owner.counts().pulls, 0);
    // The same when the holder dies mid-pull.
    owner.on_msg(
        &ctx,
        N2,
        OwlMsg::ValueHeader {
            object: xid.into(),
            len: CHUNK as u64 + 1,
            holder: 3,
            refs: Vec::new(),
            shared: None,
        },
    );
    ctx.take();
    ctx.dead.borrow_mut().insert(N3);
    owner.node_gone(&ctx, N3);
    let sent = ctx.take();
    assert!(
        sent.contains(&Action::Send(
            N2,
            OwlMsg::Fetch {
                object: xid.into(),
                lost: Some(3),
            }
        )),
        "{sent:?}"
    );
    assert!(!x.cell().is_ready());
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

#[test]
fn a_result_kept_in_two_copies_loses_one_without_running_again() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let mut t = task(1, vec![], 0);
    t.opts = Some(Box::new(crate::spec::CallOpts::new().replicas(2)));
    let cell = Arc::clone(&t.cell);
    cell.handles
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _handle = RawRef::adopt(Arc::clone(&cell));
    let tid = cell.id();
    assert!(owner.dispatch(&ctx, t, N1).is_ok());
    ctx.take();
    let len = CHUNK as u64 + 1;
    let held = OwlMsg::TaskHeld {
        object: tid.into(),
        len,
        refs: Vec::new(),
        shared: None,
    };
    owner.on_msg(&ctx, N1, held);
    let replicate = |to: NodeId, holder: u32| {
        Action::Send(
            to,
            OwlMsg::Replicate {
                object: tid.into(),
                holder,
                len,
            },
        )
    };
    // The next node after the executor is asked for the second copy.
    assert_eq!(ctx.take(), vec![replicate(N2, 1)]);
    assert_eq!(owner.copies(tid), 1, "a copy counts once acknowledged");
    let ack = OwlMsg::Replicated {
        object: tid.into(),
        ok: true,
        shared: None,
    };
    owner.on_msg(&ctx, N2, ack);
    assert_eq!(owner.copies(tid), 2);
    // The executor dies: node 2's copy serves, node 3 makes another.
    ctx.dead.borrow_mut().insert(N1);
    owner.node_gone(&ctx, N1);
    let sent = ctx.take();
    assert!(sent.contains(&replicate(N3, 2)), "{sent:?}");
    assert!(
        !sent.iter().any(|a| matches!(a, Action::Enqueue(..))),
        "nothing runs again: {sent:?}"
    );
    assert!(cell.is_located());
    owner.demand(&ctx, &cell);
    assert_eq!(ctx.take()[0], pull(N2, tid, 0, CHUNK));
}

#[test]
fn a_reader_is_sent_to_a_copy_on_its_own_host_first() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let (cell, _handle) = held_on_1(&ctx, &owner, CHUNK + 100);
    let tid = cell.id();
    let block = |host: u64, path: &str| SharedBlock {
        host,
        path: path.into(),
        offset: 64,
    };
    // Node 1 (the executor) holds it with no block; node 2, on host 7,
    // kept a copy (a reader there, or a replica).
    let ack = OwlMsg::Replicated {
        object: tid.into(),
        ok: true,
        shared: Some(block(7, "n2")),
    };
    owner.on_msg(&ctx, N2, ack);
    assert_eq!(owner.copies(tid), 2);
    let holder_for = |reader: NodeId| {
        owner.send_value(&ctx, reader, &cell);
        match &ctx.take()[..] {
            [Action::Send(to, OwlMsg::ValueHeader { holder, shared, .. })] if *to == reader => {
                (*holder, shared.clone())
            }
            other => panic!("{other:?}"),
        }
    };
    ctx.hosts.borrow_mut().insert(N3, 7);
    assert_eq!(holder_for(N3), (2, Some(block(7, "n2"))), "same host first");
    ctx.hosts.borrow_mut().insert(N3, 8);
    assert_eq!(holder_for(N3), (1, None), "else the first holder");
    // Node 1 dies: node 2 serves everyone, its block for its host.
    ctx.dead.borrow_mut().insert(N1);
    owner.node_gone(&ctx, N1);
    ctx.take();
    assert_eq!(holder_for(N3), (2, Some(block(7, "n2"))));
}

#[test]
fn a_lost_holder_s_block_goes_with_it() {
    // (The executor's block never names another holder.)
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let block = SharedBlock {
        host: 7,
        path: "n1".into(),
        offset: 64,
    };
    let (cell, _handle) = held_on_1_at(&ctx, &owner, CHUNK + 100, Some(block));
    let ack = OwlMsg::Replicated {
        object: cell.id().into(),
        ok: true,
        shared: None,
    };
    owner.on_msg(&ctx, N3, ack);
    owner.holder_lost(&ctx, cell.id(), N1);
    ctx.take();
    // A reader on node 1's host is not sent to node 1's block.
    ctx.hosts.borrow_mut().insert(N2, 7);
    owner.send_value(&ctx, N2, &cell);
    assert!(
        matches!(
            &ctx.take()[..],
            [Action::Send(
                N2,
                OwlMsg::ValueHeader {
                    holder: 3,
                    shared: None,
                    ..
                }
            )]
        ),
        "node 3 holds it, with no block"
    );
}

#[test]
fn a_node_asked_for_a_copy_pulls_it_keeps_it_and_serves_it() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let xid = id(N2, 7);
    let len = CHUNK + 5;
    let ask = OwlMsg::Replicate {
        object: xid.into(),
        holder: 3,
        len: len as u64,
    };
    owner.on_msg(&ctx, N2, ask);
    assert_eq!(
        ctx.take(),
        vec![pull(N3, xid, 0, CHUNK), pull(N3, xid, CHUNK, 5)]
    );
    let data: Vec<u8> = (0..len).map(|i| (i % 13) as u8).collect();
    for offset in [0, CHUNK] {
        let chunk = OwlMsg::Chunk {
            object: xid.into(),
            offset: offset as u64,
            data: data[offset..(offset + CHUNK).min(len)].to_vec(),
        };
        owner.on_msg(&ctx, N3, chunk);
    }
    let sent = ctx.take();
    assert!(
        matches!(
            &sent[..],
            [Action::Send(
                N2,
                OwlMsg::Replicated {
                    ok: true,
                    shared: Some(_),
                    ..
                }
            )]
        ),
        "acknowledged, with where readers on this host find it: {sent:?}"
    );
    assert_eq!(owner.counts().held, 1);
    // A reader pulls from this copy.
    owner.on_msg(
        &ctx,
        N1,
        OwlMsg::Pull {
            object: xid.into(),
            offset: CHUNK as u64,
            len: 5,
        },
    );
    let sent = ctx.take();
    let [Action::Send(N1, OwlMsg::Chunk { data: got, .. })] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(got, &data[CHUNK..]);
    owner.on_msg(&ctx, N2, release(xid));
    assert_eq!(owner.counts(), crate::owner::OwnerCounts::default());
}

#[test]
fn a_value_the_owner_read_while_its_ref_is_out_keeps_its_holder_s_copy() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let len = CHUNK + 100;
    let (cell, handle) = held_on_1(&ctx, &owner, len);
    let tid = cell.id();
    // Its ref went to node 2, which may be reading node 1's copy.
    owner.refs().ship(&ctx, N2, &handle);
    owner.demand(&ctx, &cell);
    ctx.take();
    for offset in [0, CHUNK] {
        let end = (offset + CHUNK).min(len);
        let chunk = OwlMsg::Chunk {
            object: tid.into(),
            offset: offset as u64,
            data: vec![7; end - offset],
        };
        owner.on_msg(&ctx, N1, chunk);
    }
    assert!(cell.is_ready());
    assert_eq!(ctx.take(), vec![], "node 1 keeps its copy (no Release)");
    assert_eq!(owner.counts().located, 1);
    // Readers elsewhere take turns over the two copies.
    let holders: Vec<u32> = (0..2)
        .map(|_| {
            owner.send_value(&ctx, N2, &cell);
            match &ctx.take()[..] {
                [Action::Send(N2, OwlMsg::ValueHeader { holder, .. })] => *holder,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert!(holders.contains(&0) && holders.contains(&1), "{holders:?}");
    // Node 1 dies: this node's copy is enough, nothing runs again.
    ctx.dead.borrow_mut().insert(N1);
    owner.node_gone(&ctx, N1);
    assert_eq!(ctx.take(), node_gone_tables(N1));
    assert!(cell.is_ready());
}

#[test]
fn a_reader_s_copies_go_when_the_arena_has_no_room() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    // Two values of node 2's, held by node 3, each 40 MiB: the 64 MiB
    // arena holds one.
    let len = 40 << 20;
    let read = |xid: ObjectId| {
        let x = owner.refs().resolve(&ctx, xid, N2);
        let header = OwlMsg::ValueHeader {
            object: xid.into(),
            len: len as u64,
            holder: 3,
            refs: Vec::new(),
            shared: None,
        };
        owner.on_msg(&ctx, N2, header);
        for offset in (0..len).step_by(CHUNK) {
            let chunk = OwlMsg::Chunk {
                object: xid.into(),
                offset: offset as u64,
                data: vec![7; CHUNK.min(len - offset)],
            };
            owner.on_msg(&ctx, N3, chunk);
        }
        assert!(matches!(x.cell().result(), Some(Ok(v)) if v.bytes().len() == len));
        let sent = ctx.take();
        assert!(
            matches!(sent.last(), Some(Action::Send(N2, OwlMsg::Replicated { ok: true, object, .. })) if *object == xid.into()),
            "the reader's node is a location: {sent:?}"
        );
        (x, sent)
    };
    let (xid, yid) = (id(N2, 4), id(N2, 5));
    let (x, _) = read(xid);
    assert_eq!(owner.counts().held, 1);
    // The reader lets go (its handle group ends here).
    let proxy = Arc::clone(x.cell());
    drop(x);
    owner.refs().group_ended(&ctx, &proxy);
    drop(proxy);
    ctx.take();
    // No room for the next: the copy goes, and node 2 hears of it.
    let (y, sent) = read(yid);
    let dropped = Action::Send(
        N2,
        OwlMsg::Replicated {
            object: xid.into(),
            ok: false,
            shared: None,
        },
    );
    let at = |want: &dyn Fn(&Action) -> bool| sent.iter().position(want);
    let told = at(&|a| *a == dropped).expect("node 2 told");
    let pulled = at(&|a| matches!(a, Action::Send(N3, OwlMsg::Pull { .. }))).expect("a pull");
    assert!(told < pulled, "{sent:?}");
    assert_eq!(owner.counts().held, 1, "only the new copy");
    drop(y);
    owner.on_msg(&ctx, N2, release(yid));
    assert_eq!(owner.counts().held, 0);
}

#[test]
fn an_owner_told_a_holder_dropped_its_copy_counts_it_lost() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let (cell, _handle) = held_on_1(&ctx, &owner, CHUNK + 100);
    let tid = cell.id();
    let says = |ok: bool| OwlMsg::Replicated {
        object: tid.into(),
        ok,
        shared: None,
    };
    owner.on_msg(&ctx, N2, says(true));
    assert_eq!(owner.copies(tid), 2);
    owner.on_msg(&ctx, N2, says(false));
    assert_eq!(owner.copies(tid), 1, "node 2's copy is gone");
    let rebuilt = |sent: &[Action]| {
        sent.iter().any(|a| {
            matches!(
                a,
                Action::Enqueue(..) | Action::Send(_, OwlMsg::Submit { .. })
            )
        })
    };
    assert!(!rebuilt(&ctx.take()), "node 1's copy serves; nothing runs");
    // The last copy dropped: the task runs again.
    owner.on_msg(&ctx, N1, says(false));
    assert_eq!(owner.copies(tid), 0);
    assert!(rebuilt(&ctx.take()), "rebuilt from its task");
}
