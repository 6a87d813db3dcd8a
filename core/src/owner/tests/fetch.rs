//! Values moving between nodes: a standing fetch answered when the value is
//! ready, small values whole, large ones pulled in chunks, and a holder
//! that dies with a pull half done.

use owl_proto::{WireError, WireValue};

use super::*;
use crate::object::value::store;
use crate::owner::fetch::CHUNK;
use crate::owner::Owner;

fn value_msg(object: ObjectId, outcome: Result<WireValue, WireError>) -> OwlMsg {
    OwlMsg::Value {
        object: object.into(),
        outcome,
    }
}

#[test]
fn a_fetch_of_a_freed_object_is_answered_with_a_typed_error() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, []));
    owner.on_msg(
        &ctx,
        N1,
        OwlMsg::Fetch {
            object: id(N0, 3).into(),
            lost: None,
        },
    );
    let sent = ctx.take();
    let [Action::Send(
        N1,
        OwlMsg::Value {
            outcome: Err(e), ..
        },
    )] = &sent[..]
    else {
        panic!("{sent:?}")
    };
    assert!(e.message.contains("no such object"), "{}", e.message);
}

#[test]
fn a_fetch_waits_for_the_value_then_sends_it_whole() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, []));
    let x = handle(id(N0, 1));
    owner.refs().ship(&ctx, N1, &x);
    ctx.take();
    owner.on_msg(
        &ctx,
        N1,
        OwlMsg::Fetch {
            object: x.id().into(),
            lost: None,
        },
    );
    assert_eq!(ctx.take(), vec![Action::WhenReady(x.id(), N1)]);
    let v = store(&11u64, ctx.arena(), ctx.inline_max()).unwrap();
    let bytes = v.bytes().to_vec();
    x.cell().complete(Ok(v));
    owner.send_value(&ctx, N1, x.cell());
    let want = WireValue {
        bytes,
        refs: Vec::new(),
    };
    assert_eq!(
        ctx.take(),
        vec![Action::Send(N1, value_msg(x.id(), Ok(want)))]
    );
}

/// Node 0 holds a proxy of node 2's object `x` and is told it is `len`
/// bytes: the pull starts.
fn start_pull(ctx: &Recorder, owner: &Owner, len: u64) -> (RawRef, ObjectId) {
    let xid = id(N2, 4);
    let x = owner.refs().resolve(ctx, xid, N2);
    ctx.take();
    owner.on_msg(
        ctx,
        N2,
        OwlMsg::ValueHeader {
            object: xid.into(),
            len,
            holder: 2,
            refs: Vec::new(),
            shared: None,
        },
    );
    (x, xid)
}

fn pull(object: ObjectId, offset: u64, len: usize) -> Action {
    Action::Send(
        N2,
        OwlMsg::Pull {
            object: object.into(),
            offset,
            len: len as u32,
        },
    )
}

fn chunk(object: ObjectId, offset: u64, data: &[u8]) -> OwlMsg {
    OwlMsg::Chunk {
        object: object.into(),
        offset,
        data: data.to_vec(),
    }
}

#[test]
fn a_large_value_is_pulled_in_chunks_into_the_arena() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, []));
    let len = 2 * CHUNK + 100;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let (x, xid) = start_pull(&ctx, &owner, len as u64);
    assert_eq!(
        ctx.take(),
        vec![
            pull(xid, 0, CHUNK),
            pull(xid, CHUNK as u64, CHUNK),
            pull(xid, 2 * CHUNK as u64, 100),
        ],
        "the whole value fits in the window"
    );
    // Chunks may arrive in any order.
    for offset in [2 * CHUNK, 0, CHUNK] {
        assert!(!x.cell().is_ready());
        let end = (offset + CHUNK).min(len);
        owner.on_msg(&ctx, N2, chunk(xid, offset as u64, &data[offset..end]));
    }
    match x.cell().result() {
        Some(Ok(stored)) => assert_eq!(stored.bytes(), &data[..]),
        other => panic!("{other:?}"),
    }
    assert_eq!(owner.counts().pulls, 0);
    assert_eq!(ctx.take(), vec![]);
}

#[test]
fn the_holder_dies_with_a_pull_half_done_and_the_reader_gets_a_typed_error() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, []));
    let (x, xid) = start_pull(&ctx, &owner, 2 * CHUNK as u64);
    ctx.take();
    owner.on_msg(&ctx, N2, chunk(xid, 0, &vec![7; CHUNK]));
    assert_eq!(owner.counts().pulls, 1);
    owner.node_gone(&ctx, N2);
    assert_eq!(owner.counts().pulls, 0);
    match x.cell().result() {
        Some(Err(e)) => assert!(matches!(e.kind, TaskErrorKind::OwnerDied(N2)), "{e}"),
        other => panic!("{other:?}"),
    }
    // The rest of the value, arriving late, is dropped.
    owner.on_msg(&ctx, N2, chunk(xid, CHUNK as u64, &vec![7; CHUNK]));
    assert_eq!(owner.counts().pulls, 0);
}

#[test]
fn a_chunk_outside_the_value_is_dropped_not_written() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, []));
    let (x, xid) = start_pull(&ctx, &owner, 100);
    ctx.take();
    owner.on_msg(&ctx, N2, chunk(xid, 90, &[1; 20]));
    owner.on_msg(&ctx, N2, chunk(xid, u64::MAX - 5, &[1; 20]));
    assert!(!x.cell().is_ready());
    assert_eq!(owner.counts().pulls, 1);
    owner.on_msg(&ctx, N2, chunk(xid, 0, &[3; 100]));
    assert!(x.cell().is_ready());
    assert_eq!(owner.counts().pulls, 0);
}
