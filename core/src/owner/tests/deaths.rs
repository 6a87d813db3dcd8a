//! Deaths that race with this node's own steps: the holder of a value
//! being copied from its arena file dies, or its copy cannot be read; a
//! node dies after a thread checked it lives and before what that thread
//! sent there stood, its death handled in between by another thread.

use owl_proto::SharedBlock;

use super::held::{held_on_1_at, pull, release};
use super::tasks::{node_gone_tables, task, TEST_FN};
use super::*;
use crate::owner::fetch::CHUNK;
use crate::owner::Owner;

/// A block of node 1's arena file, on this host.
fn on_this_host(ctx: &Recorder) -> SharedBlock {
    let dir = ctx.arena().path().parent().expect("the arena's directory");
    let path = dir.join("owl-1-1.arena");
    std::fs::write(&path, b"").expect("node 1's arena file");
    SharedBlock {
        host: owl_store::host_id(),
        path: path.to_string_lossy().into_owned(),
        offset: 0,
    }
}

/// Node 1 holds task 1's result on this host, and a reader here demanded
/// it: the same-host copy started (its number).
fn copying(ctx: &Recorder, owner: &Owner) -> (Arc<ObjectCell>, RawRef, u64) {
    let at = on_this_host(ctx);
    let (cell, handle) = held_on_1_at(ctx, owner, 2 * CHUNK, Some(at));
    owner.demand(ctx, &cell);
    let copy = match &ctx.take()[..] {
        [Action::CopySameHost(id, copy)] if *id == cell.id() => *copy,
        other => panic!("{other:?}"),
    };
    assert_eq!(owner.counts().pulls, 1, "the copy stands like a pull");
    (cell, handle, copy)
}

#[test]
fn a_same_host_copy_whose_holder_dies_is_given_up_and_the_value_rebuilt_at_once() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let (cell, _handle, copy) = copying(&ctx, &owner);
    ctx.dead.borrow_mut().insert(N1);
    owner.node_gone(&ctx, N1);
    let mut want = vec![Action::Enqueue(Some(ShardId(0)), cell.id(), 1)];
    want.extend(node_gone_tables(N1));
    assert_eq!(ctx.take(), want, "a reader waits: it runs again at once");
    assert!(!cell.is_done());
    // The copy ends after all (the file outlived its node): too late, it
    // changes nothing.
    let block = ctx.copies.borrow_mut().pop().expect("the copy's block");
    owner.copied(&ctx, N1, cell.id(), copy, Ok(block.freeze()));
    assert_eq!(ctx.take(), vec![]);
    assert!(!cell.is_done());
    let c = owner.counts();
    assert_eq!((c.pulls, c.located), (0, 0));
    drop(ctx.take_queued());
}

#[test]
fn a_same_host_copy_that_cannot_be_read_counts_as_its_holder_lost() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let (cell, _handle, copy) = copying(&ctx, &owner);
    owner.copied(&ctx, N1, cell.id(), copy, Err("no such file".into()));
    assert_eq!(
        ctx.take(),
        vec![
            Action::Send(N1, release(cell.id())),
            Action::Enqueue(Some(ShardId(0)), cell.id(), 1),
        ],
        "not failed with the copy's error: made again"
    );
    assert!(!cell.is_done());
    assert_eq!(owner.counts().pulls, 0);
    drop(ctx.take_queued());
}

#[test]
fn a_task_sent_to_a_node_whose_death_was_just_handled_runs_again() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    ctx.dies_on_send.borrow_mut().insert(N1);
    let t = task(1, vec![], 1);
    let tid = t.cell.id();
    assert!(owner.dispatch(&ctx, t, N1).is_ok());
    let sent = ctx.take();
    assert!(matches!(sent[0], Action::Send(N1, OwlMsg::Submit { .. })));
    let mut want = vec![Action::Enqueue(Some(ShardId(0)), tid, 1)];
    want.extend(node_gone_tables(N1));
    assert_eq!(sent[1..], want[..], "not left waiting for a dead node");
    assert_eq!(owner.counts().remote_tasks, 0);
    drop(ctx.take_queued());
}

#[test]
fn a_pull_from_a_holder_whose_death_was_just_handled_is_given_up() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let (cell, _handle) = held_on_1_at(&ctx, &owner, CHUNK + 1, None);
    ctx.take();
    ctx.dies_on_send.borrow_mut().insert(N1);
    owner.demand(&ctx, &cell);
    let mut want = vec![
        pull(N1, cell.id(), 0, CHUNK),
        pull(N1, cell.id(), CHUNK, 1),
        Action::Enqueue(Some(ShardId(0)), cell.id(), 1),
    ];
    want.extend(node_gone_tables(N1));
    assert_eq!(ctx.take(), want, "rebuilt, not left pulling from the dead");
    assert_eq!(owner.counts().pulls, 0);
    drop(ctx.take_queued());
}

#[test]
fn a_same_host_copy_is_taken_only_once_its_holder_says_it_still_held_the_value() {
    for holder_kept_it in [true, false] {
        let _r = Routed::new();
        let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
        let (cell, _handle, copy) = copying(&ctx, &owner);
        let len = 2 * CHUNK;
        let mut block = ctx.copies.borrow_mut().pop().expect("the copy's block");
        block.as_mut_slice().fill(9);
        owner.copied(&ctx, N1, cell.id(), copy, Ok(block.freeze()));
        let confirm = Action::Send(
            N1,
            OwlMsg::Pull {
                object: cell.id().into(),
                offset: len as u64,
                len: 0,
            },
        );
        assert_eq!(ctx.take(), vec![confirm]);
        assert!(!cell.is_ready(), "the bytes wait for the holder's word");
        if holder_kept_it {
            let end = OwlMsg::Chunk {
                object: cell.id().into(),
                offset: len as u64,
                data: Vec::new(),
            };
            owner.on_msg(&ctx, N1, end);
            match cell.result() {
                Some(Ok(stored)) => assert!(stored.bytes().iter().all(|&b| b == 9)),
                other => panic!("{other:?}"),
            }
            assert_eq!(ctx.take(), vec![Action::Send(N1, release(cell.id()))]);
        } else {
            // It had let the block go (it may hold another value now): the
            // bytes read are dropped and the value made again.
            let refused = OwlMsg::Value {
                object: cell.id().into(),
                outcome: Err(crate::owner::wire::wire_error(
                    &crate::owner::refs::owner_died(cell.id()),
                )),
            };
            owner.on_msg(&ctx, N1, refused);
            assert_eq!(
                ctx.take(),
                vec![
                    Action::Send(N1, release(cell.id())),
                    Action::Enqueue(Some(ShardId(0)), cell.id(), 1),
                ]
            );
            assert!(!cell.is_ready());
            drop(ctx.take_queued());
        }
        assert_eq!(owner.counts().pulls, 0);
    }
}
