//! Tasks placed on other nodes and tasks run here for others, with the
//! deaths that can hit them: the executor dies with tasks in flight, the
//! owner dies while its task runs here, a node dies during a ship.

use owl_proto::{WireArg, WireError, WireValue};

use super::*;
use crate::object::objref::{deserialize_stored, ObjectRef};
use crate::object::value::store;
use crate::owner::{wire, Owner};
use crate::spec::{Arg, CallOpts};
use crate::testkit::call::ArgsCall;
pub(super) use crate::testkit::call::ARGS_FN as TEST_FN;

/// A task of node 0's, pending, with `retries` extra attempts.
pub(super) fn task(index: u32, args: Vec<Arg<u64>>, retries: u32) -> Task {
    Task {
        cell: Arc::new(ObjectCell::new(id(N0, index), SERIAL, 0)),
        func: &TEST_FN,
        call: Box::new(ArgsCall(args)),
        opts: (retries > 0).then(|| Box::new(CallOpts::new().max_retries(retries))),
        attempt: 0,
        reply_to: None,
        tried: Vec::new(),
    }
}

fn value(ctx: &Recorder, n: u64) -> WireValue {
    let stored = store(&n, ctx.arena(), ctx.inline_max()).unwrap();
    WireValue {
        bytes: stored.bytes().to_vec(),
        refs: Vec::new(),
    }
}

fn done(object: ObjectId, outcome: Result<WireValue, WireError>) -> OwlMsg {
    OwlMsg::TaskDone {
        object: object.into(),
        outcome,
    }
}

fn read(cell: &ObjectCell) -> u64 {
    match cell.result() {
        Some(Ok(stored)) => deserialize_stored::<u64>(stored).unwrap(),
        other => panic!("not a value: {other:?}"),
    }
}

pub(super) fn error_kind(cell: &ObjectCell) -> TaskErrorKind {
    match cell.result() {
        Some(Err(e)) => e.kind.clone(),
        other => panic!("not an error: {other:?}"),
    }
}

pub(super) fn node_gone_tables(node: NodeId) -> Vec<Action> {
    (0..SHARDS)
        .map(|s| Action::Table(ShardId(s), TableOp::NodeGone(node)))
        .collect()
}

#[test]
fn a_placed_task_is_sent_kept_and_completed_by_its_executor_only() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let t = task(1, vec![Arg::Value(Some(5))], 0);
    let cell = Arc::clone(&t.cell);
    assert!(owner.dispatch(&ctx, t, N1).is_ok());
    let sent = ctx.take();
    let [Action::Send(N1, OwlMsg::Submit { func, args, .. })] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(*func, TEST_FN.id.0);
    assert_eq!(args, &vec![WireArg::Value(value(&ctx, 5))]);
    assert_eq!(owner.counts().remote_tasks, 1);
    // An answer from a node the task does not run on changes nothing.
    assert!(owner
        .on_msg(&ctx, N2, done(id(N0, 1), Ok(value(&ctx, 6))))
        .is_none());
    assert!(!cell.is_ready());
    assert_eq!(owner.counts().remote_tasks, 1);
    owner.on_msg(&ctx, N1, done(id(N0, 1), Ok(value(&ctx, 7))));
    assert_eq!(read(&cell), 7);
    assert_eq!(owner.counts().remote_tasks, 0);
    // A duplicate answer finds nothing.
    owner.on_msg(&ctx, N1, done(id(N0, 1), Ok(value(&ctx, 8))));
    assert_eq!(read(&cell), 7);
    assert_eq!(ctx.take(), vec![]);
}

#[test]
fn a_task_is_refused_at_once_by_a_node_that_cannot_run_it() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    ctx.dead.borrow_mut().insert(N3);
    ctx.foreign.borrow_mut().insert(N2);
    let refused = |target: NodeId| match owner.dispatch(&ctx, task(1, vec![], 0), target) {
        Err((t, kind)) => {
            drop(t);
            kind
        }
        Ok(()) => panic!("sent to {target}"),
    };
    assert!(
        matches!(refused(NodeId(9)), TaskErrorKind::Unplaceable(m) if m.contains("does not exist"))
    );
    assert!(matches!(refused(N3), TaskErrorKind::WorkerDied(N3)));
    assert!(
        matches!(refused(N2), TaskErrorKind::Unplaceable(m) if m.contains("different program"))
    );
    assert_eq!(ctx.take(), vec![]);
    assert_eq!(owner.counts().remote_tasks, 0);
}

#[test]
fn the_executor_dies_with_tasks_in_flight_and_each_is_retried_once_or_failed() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let mut cells = Vec::new();
    // (index, max_retries, attempts made, executor): a death is retried up
    // to max(max_retries, SYSTEM_RETRIES) times.
    let system = super::super::retry::SYSTEM_RETRIES;
    let tasks = [
        (1, 0, system, N1),
        (2, 0, 0, N1),
        (3, 5, 4, N1),
        (4, 0, 0, N2),
    ];
    for (index, retries, attempt, node) in tasks {
        let mut t = task(index, vec![], retries);
        t.attempt = attempt;
        cells.push(Arc::clone(&t.cell));
        assert!(owner.dispatch(&ctx, t, node).is_ok());
    }
    assert_eq!(ctx.take().len(), 4);
    owner.node_gone(&ctx, N1);
    let mut want = vec![
        Action::Enqueue(Some(ShardId(0)), id(N0, 2), 1),
        Action::Enqueue(Some(ShardId(0)), id(N0, 3), 5),
    ];
    want.extend(node_gone_tables(N1));
    assert_eq!(ctx.take(), want, "two retries queued here, in id order");
    let e = match cells[0].result() {
        Some(Err(e)) => Arc::clone(e),
        other => panic!("{other:?}"),
    };
    assert!(matches!(e.kind, TaskErrorKind::WorkerDied(N1)));
    assert_eq!((e.node, e.attempts), (N1, system + 1));
    assert!(!cells[1].is_ready() && !cells[2].is_ready() && !cells[3].is_ready());
    assert_eq!(owner.counts().remote_tasks, 1, "node 2's task is still out");
    // The retries run here or anywhere: their placement is cleared.
    for t in ctx.take_queued() {
        assert_eq!(t.opts.as_ref().and_then(|o| o.node), None);
        // Queued work a test drops fails its object (nothing waits forever).
        drop(t);
    }
    // A second report of the same death does nothing more.
    owner.node_gone(&ctx, N1);
    assert_eq!(ctx.take(), node_gone_tables(N1));
}

#[test]
fn a_node_dies_during_a_ship_and_nothing_it_was_given_stays_counted() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    // Arguments: a ref owned here and a ref owned by node 2 (lent to the
    // executor until node 2 has registered it), both still pending.
    let mine = handle(id(N0, 50));
    let theirs = handle(id(N2, 60));
    let (mine_id, theirs_id) = (mine.id(), theirs.id());
    let args = vec![
        Arg::Ref(ObjectRef::from_raw(mine)),
        Arg::Ref(ObjectRef::from_raw(theirs)),
    ];
    let t = task(1, args, 0);
    let cell = Arc::clone(&t.cell);
    assert!(owner.dispatch(&ctx, t, N1).is_ok());
    let sent = ctx.take();
    assert_eq!(
        sent[0],
        Action::Table(
            ShardId(0),
            TableOp::Borrow {
                id: mine_id,
                node: N1,
                delta: 1,
                shipped: true
            }
        )
    );
    assert!(
        matches!(&sent[1], Action::Send(N1, OwlMsg::Submit { args, .. })
            if *args == vec![WireArg::Ref(mine_id.into()), WireArg::Ref(theirs_id.into())])
    );
    assert_eq!(owner.counts().lent, 1);
    assert_eq!(owner.counts().exports, 1);
    // The executor dies before node 2 answered `Lent`.
    owner.node_gone(&ctx, N1);
    let mut want = vec![Action::Enqueue(Some(ShardId(0)), cell.id(), 1)];
    want.extend(node_gone_tables(N1));
    assert_eq!(ctx.take(), want, "retried here");
    assert_eq!(
        owner.counts().lent,
        0,
        "the hold lent to the dead node is dropped"
    );
    assert_eq!(owner.counts().remote_tasks, 0);
    assert_eq!(ended(), vec![], "the retry still holds its arguments");
    // When the retry ends (here: dropped unrun, which fails its object),
    // both handle groups end: nothing it was given stays counted.
    drop(ctx.take_queued());
    assert!(matches!(error_kind(&cell), TaskErrorKind::Shutdown));
    let mut gone = ended();
    gone.sort_unstable();
    assert_eq!(gone, vec![mine_id, theirs_id]);
}

pub(super) fn submit(object: ObjectId, func: u64, args: Vec<WireArg>) -> OwlMsg {
    OwlMsg::Submit {
        object: object.into(),
        func,
        name: None,
        priority: 0,
        max_retries: 0,
        retry_on_error: false,
        args,
    }
}

#[test]
fn a_call_from_another_node_runs_here_and_its_outcome_goes_back() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let task_id = id(N1, 5);
    let arg_ref = id(N2, 8);
    let args = vec![WireArg::Value(value(&ctx, 3)), WireArg::Ref(arg_ref.into())];
    owner.on_msg(&ctx, N1, submit(task_id, TEST_FN.id.0, args));
    assert_eq!(
        ctx.take(),
        vec![
            Action::Send(N2, add(arg_ref, N0, N1)),
            Action::Send(
                N2,
                OwlMsg::Fetch {
                    object: arg_ref.into(),
                    lost: None,
                }
            ),
            Action::Enqueue(None, task_id, 0),
        ]
    );
    assert_eq!(owner.counts().executing, 1);
    let t = ctx.take_queued().pop().unwrap();
    assert_eq!(t.reply_to, Some(N1));
    let nine = store(&9u64, ctx.arena(), ctx.inline_max()).unwrap();
    t.cell.complete(Ok(nine));
    owner.task_done(&ctx, N1, &t.cell);
    assert_eq!(
        ctx.take(),
        vec![Action::Send(N1, done(task_id, Ok(value(&ctx, 9))))]
    );
    assert_eq!(owner.counts().executing, 0);
    // The task's ref argument ends this node's handle group for it; its
    // registrations go back to node 2 in one message.
    let proxy = owner.refs().proxy(arg_ref).unwrap();
    drop(t);
    assert_eq!(ended(), vec![arg_ref]);
    owner.refs().group_ended(&ctx, &proxy);
    assert_eq!(ctx.take(), vec![Action::Send(N2, remove(arg_ref, N0, 1))]);
    assert_eq!(owner.counts().lent, 1, "node 2 has not answered yet");
    // Node 2's answer goes on to node 1, which lent the ref.
    owner.on_msg(
        &ctx,
        N2,
        OwlMsg::Registered {
            object: arg_ref.into(),
            lender: N1.0,
            count: 1,
        },
    );
    assert_eq!(
        ctx.take(),
        vec![Action::Send(
            N1,
            OwlMsg::Lent {
                object: arg_ref.into(),
                borrower: N0.0,
                count: 1
            }
        )]
    );
    assert_eq!(owner.counts(), super::super::OwnerCounts::default());
}

#[test]
fn the_owner_dies_while_its_task_runs_here_and_the_task_is_cancelled() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    owner.on_msg(&ctx, N1, submit(id(N1, 5), TEST_FN.id.0, vec![]));
    owner.on_msg(&ctx, N2, submit(id(N2, 6), TEST_FN.id.0, vec![]));
    ctx.take();
    let queued = ctx.take_queued();
    owner.node_gone(&ctx, N1);
    let mut want = vec![Action::WakeShards];
    want.extend(node_gone_tables(N1));
    assert_eq!(ctx.take(), want);
    assert!(matches!(
        error_kind(&queued[0].cell),
        TaskErrorKind::Cancelled
    ));
    assert!(!queued[1].cell.is_ready(), "node 2's task runs on");
    assert_eq!(owner.counts().executing, 1);
}

#[test]
fn a_call_of_an_unknown_function_is_answered_with_a_typed_error() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    owner.on_msg(&ctx, N1, submit(id(N1, 5), 0xdead, vec![]));
    let sent = ctx.take();
    let [Action::Send(
        N1,
        OwlMsg::TaskDone {
            outcome: Err(e), ..
        },
    )] = &sent[..]
    else {
        panic!("{sent:?}")
    };
    let e = wire::task_error(id(N1, 5), e.clone());
    assert!(
        matches!(&e.kind, TaskErrorKind::Unplaceable(m) if m.contains("not registered")),
        "{e}"
    );
    assert_eq!(owner.counts().executing, 0);
    assert!(ctx.take_queued().is_empty());
}

#[test]
fn a_local_cancel_forgets_the_remote_task_and_tells_its_executor() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let (a, b) = (task(1, vec![], 0), task(2, vec![], 0));
    let (a_cell, b_id) = (Arc::clone(&a.cell), b.cell.id());
    assert!(owner.dispatch(&ctx, a, N1).is_ok());
    assert!(owner.dispatch(&ctx, b, N2).is_ok());
    ctx.take();
    a_cell.complete(Err(Arc::new(crate::error::TaskError {
        kind: TaskErrorKind::Cancelled,
        task: "a".into(),
        object: a_cell.id(),
        node: N0,
        shard: ShardId(0),
        attempts: 0,
        history: Vec::new(),
    })));
    owner.cancel_remote(&ctx);
    assert_eq!(
        ctx.take(),
        vec![Action::Send(
            N1,
            OwlMsg::Cancel {
                object: a_cell.id().into()
            }
        )]
    );
    assert_eq!(owner.counts().remote_tasks, 1);
    // The executor runs the cancel; its late answer is dropped.
    owner.on_msg(&ctx, N1, done(a_cell.id(), Ok(value(&ctx, 1))));
    assert!(matches!(error_kind(&a_cell), TaskErrorKind::Cancelled));
    assert!(owner.remote_node(b_id) == Some(N2));
}

#[test]
fn the_error_after_the_last_try_lists_every_attempt() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let t = task(1, vec![], 0);
    let cell = Arc::clone(&t.cell);
    assert!(owner.dispatch(&ctx, t, N1).is_ok());
    owner.node_gone(&ctx, N1);
    let retry = ctx.take_queued().pop().unwrap();
    assert!(owner.dispatch(&ctx, retry, N2).is_ok());
    owner.node_gone(&ctx, N2);
    let retry = ctx.take_queued().pop().unwrap();
    assert!(owner.dispatch(&ctx, retry, N3).is_ok());
    // The last executor ran it, retried a panic once itself, and failed.
    let last = crate::error::TaskError {
        kind: TaskErrorKind::Panicked("boom".into()),
        task: "t".into(),
        object: cell.id(),
        node: N3,
        shard: ShardId(0),
        attempts: 2,
        history: vec![crate::error::Attempt {
            node: N3,
            cause: "panicked: boom".into(),
        }],
    };
    owner.on_msg(&ctx, N3, done(cell.id(), Err(wire::wire_error(&last))));
    let e = match cell.result() {
        Some(Err(e)) => Arc::clone(e),
        other => panic!("{other:?}"),
    };
    assert_eq!(e.attempts, 4);
    let tried: Vec<NodeId> = e.history.iter().map(|a| a.node).collect();
    assert_eq!(tried, vec![N1, N2, N3]);
    assert!(
        e.history[0].cause.contains("died"),
        "{}",
        e.history[0].cause
    );
    let shown = e.to_string();
    assert!(
        shown.contains("earlier attempts: 1. on n1: ")
            && shown.contains("3. on n3: panicked: boom"),
        "{shown}"
    );
}

#[test]
fn a_task_whose_executors_keep_dying_fails_naming_each_of_them() {
    let _r = Routed::new();
    let (ctx, owner) = (Recorder::default(), Owner::new(N0, SERIAL, [&TEST_FN]));
    let system = super::super::retry::SYSTEM_RETRIES;
    let t = task(1, vec![], 0);
    let cell = Arc::clone(&t.cell);
    let mut next = Some(t);
    let mut nodes = Vec::new();
    for i in 0..=system {
        let node = NodeId(1 + i % 3);
        nodes.push(node);
        assert!(owner.dispatch(&ctx, next.take().unwrap(), node).is_ok());
        owner.node_gone(&ctx, node);
        // The recorder forgets deaths between tries: each node "comes back".
        next = ctx.take_queued().pop();
    }
    assert!(next.is_none(), "no retry after the last");
    let e = match cell.result() {
        Some(Err(e)) => Arc::clone(e),
        other => panic!("{other:?}"),
    };
    assert!(matches!(e.kind, TaskErrorKind::WorkerDied(n) if n == nodes[system as usize]));
    assert_eq!(e.attempts, system + 1);
    let tried: Vec<NodeId> = e.history.iter().map(|a| a.node).collect();
    assert_eq!(tried, nodes[..system as usize].to_vec());
}
