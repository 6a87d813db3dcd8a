//! Cross-node reference counting, message by message.

use super::*;

#[test]
fn the_owner_ships_with_an_in_flight_count_and_an_export() {
    let _r = Routed::new();
    let (ctx, refs) = (Recorder::default(), Refs::new(N0, SERIAL));
    let x = handle(id(N0, 1));
    let wire = refs.ship(&ctx, N2, &x);
    assert_eq!(ObjectId::from(wire), x.id());
    assert_eq!(x.cell().in_flight.load(Ordering::Relaxed), 1);
    assert!(refs.export_cell(x.id()).is_some());
    assert_eq!(
        ctx.take(),
        vec![Action::Table(
            ShardId(0),
            TableOp::Borrow {
                id: x.id(),
                node: N2,
                delta: 1,
                shipped: true
            }
        )]
    );
}

#[test]
fn a_third_node_lends_until_the_owner_answers() {
    let _r = Routed::new();
    let (ctx, refs) = (Recorder::default(), Refs::new(N1, SERIAL));
    let x = handle(id(N0, 1));
    let xid = x.id();
    refs.ship(&ctx, N2, &x);
    refs.ship(&ctx, N2, &x);
    assert_eq!(ctx.take(), vec![], "lending sends nothing");
    assert_eq!(refs.counts().2, 1, "one lent entry, two refs");
    drop(x);
    assert_eq!(ended(), vec![], "the lent hold keeps node 1's group alive");
    refs.on_lent(xid, N2, 1);
    assert_eq!(ended(), vec![]);
    refs.on_lent(xid, N2, 1);
    assert_eq!(ended(), vec![xid], "the last Lent ends the group");
    assert_eq!(refs.counts().2, 0);
    refs.on_lent(xid, N2, 1); // a duplicate or late answer is ignored
    assert_eq!(ended(), vec![]);
}

#[test]
fn nothing_is_lent_to_the_owner_or_with_the_owner_or_receiver_gone() {
    let _r = Routed::new();
    let (ctx, refs) = (Recorder::default(), Refs::new(N1, SERIAL));
    let x = handle(id(N0, 1));
    refs.ship(&ctx, N0, &x); // home again: the owner's export index finds it
    ctx.dead.borrow_mut().insert(N3);
    refs.ship(&ctx, N3, &x);
    let y = handle(id(N3, 2));
    refs.ship(&ctx, N2, &y);
    assert_eq!(ctx.take(), vec![]);
    assert_eq!(refs.counts(), (0, 0, 0));
}

#[test]
fn a_lent_ref_registers_its_receiver_and_fetches_once() {
    let _r = Routed::new();
    let (ctx, refs) = (Recorder::default(), Refs::new(N2, SERIAL));
    let xid = id(N0, 1);
    let a = refs.resolve(&ctx, xid, N1);
    assert_eq!(
        ctx.take(),
        vec![
            Action::Send(N0, add(xid, N2, N1)),
            Action::Send(
                N0,
                OwlMsg::Fetch {
                    object: xid.into(),
                    lost: None
                }
            ),
        ]
    );
    // A second arrival joins the group: registered, not fetched again.
    let b = refs.resolve(&ctx, xid, N3);
    assert!(Arc::ptr_eq(a.cell(), b.cell()));
    assert_eq!(ctx.take(), vec![Action::Send(N0, add(xid, N2, N3))]);
    // From the owner itself: already counted by the owner's shard.
    let c = refs.resolve(&ctx, xid, N0);
    assert_eq!(ctx.take(), vec![]);
    let cell = Arc::clone(a.cell());
    drop((a, b, c));
    assert_eq!(ended(), vec![xid]);
    refs.group_ended(&ctx, &cell);
    assert_eq!(
        ctx.take(),
        vec![Action::Send(N0, remove(xid, N2, 3))],
        "every registration goes back in one message"
    );
    assert_eq!(refs.counts(), (0, 0, 2), "two registrations unanswered");
    // The owner's answers go on to the lenders, once each.
    refs.on_registered(&ctx, xid, N3, 1);
    refs.on_registered(&ctx, xid, N1, 1);
    refs.on_registered(&ctx, xid, N1, 1); // a duplicate: nothing owed
    assert_eq!(
        ctx.take(),
        vec![
            Action::Send(N3, lent(xid, N2, 1)),
            Action::Send(N1, lent(xid, N2, 1))
        ]
    );
    assert_eq!(refs.counts(), (0, 0, 0));
}

fn lent(x: ObjectId, borrower: NodeId, count: u32) -> OwlMsg {
    OwlMsg::Lent {
        object: x.into(),
        borrower: borrower.0,
        count,
    }
}

#[test]
fn a_registration_the_owner_never_answers_is_released_when_the_owner_is_found_dead() {
    // Node 1 lends node 2 two refs of node 0's object, and node 2
    // registers with node 0. Node 0 and node 2 find each other dead (the
    // head that would have told node 1 died first): node 0 drops the
    // registrations, and only node 2 can tell node 1 to drop its hold.
    let _r = Routed::new();
    let (ctx, refs) = (Recorder::default(), Refs::new(N2, SERIAL));
    let xid = id(N0, 1);
    let a = refs.resolve(&ctx, xid, N1);
    let b = refs.resolve(&ctx, xid, N1);
    // And one from node 3, which the owner answered.
    let c = refs.resolve(&ctx, xid, N3);
    refs.on_registered(&ctx, xid, N3, 1);
    ctx.take();
    refs.owner_gone(N0);
    refs.node_gone(&ctx, N0);
    assert_eq!(ctx.take(), vec![Action::Send(N1, lent(xid, N2, 2))]);
    assert_eq!(refs.counts().2, 0);
    drop((a, b, c));
    // A lender that dies is owed nothing.
    let d = refs.resolve(&ctx, id(N3, 4), N1);
    ctx.take();
    refs.node_gone(&ctx, N1);
    assert_eq!(ctx.take(), vec![]);
    assert_eq!(refs.counts().2, 0);
    drop(d);
}

#[test]
fn a_ref_lent_from_an_owner_known_dead_releases_the_lender_s_hold() {
    // Node 1 still counts node 0 alive and lends node 2 its ref; node 2
    // already knows node 0 dead, so no owner will ever answer node 1.
    let _r = Routed::new();
    let (ctx, refs) = (Recorder::default(), Refs::new(N2, SERIAL));
    ctx.dead.borrow_mut().insert(N0);
    let xid = id(N0, 1);
    let a = refs.resolve(&ctx, xid, N1);
    assert_eq!(
        ctx.take(),
        vec![Action::Send(
            N1,
            OwlMsg::Lent {
                object: xid.into(),
                borrower: N2.0,
                count: 1
            }
        )],
        "the lender hears that its hold is done with"
    );
    assert!(matches!(
        a.cell().result(),
        Some(Err(e)) if matches!(e.kind, TaskErrorKind::OwnerDied(N0))
    ));
    // From the dead owner itself nothing was lent.
    let b = refs.resolve(&ctx, xid, N0);
    assert_eq!(ctx.take(), vec![]);
    drop((a, b));
    // And the lender, told so, drops its hold.
    let lender = Refs::new(N1, SERIAL);
    let x = handle(xid);
    lender.ship(&Recorder::default(), N2, &x);
    drop(x);
    lender.on_lent(xid, N2, 1);
    assert_eq!(lender.counts().2, 0);
}

#[test]
fn a_released_proxy_replaced_by_a_new_group_sends_nothing() {
    let _r = Routed::new();
    let (ctx, refs) = (Recorder::default(), Refs::new(N2, SERIAL));
    let xid = id(N0, 1);
    let a = refs.resolve(&ctx, xid, N0);
    let old = Arc::clone(a.cell());
    drop(a); // the group ends; its release has not been routed yet
    let b = refs.resolve(&ctx, xid, N0);
    assert!(!Arc::ptr_eq(&old, b.cell()), "a new group, a new cell");
    ctx.take();
    refs.group_ended(&ctx, &old);
    assert_eq!(
        ctx.take(),
        vec![],
        "the new group carries the registrations"
    );
    let new = Arc::clone(b.cell());
    drop(b);
    refs.group_ended(&ctx, &new);
    assert_eq!(ctx.take(), vec![Action::Send(N0, remove(xid, N2, 2))]);
}

#[test]
fn a_ref_coming_home_restarts_the_owner_s_group_or_fails_if_freed() {
    let _r = Routed::new();
    let (ctx, refs) = (Recorder::default(), Refs::new(N0, SERIAL));
    let x = handle(id(N0, 1));
    refs.ship(&ctx, N1, &x);
    ctx.take();
    let cell = Arc::clone(x.cell());
    drop(x);
    assert_eq!(cell.handles.load(Ordering::Relaxed), 0);
    let back = refs.resolve(&ctx, cell.id(), N1);
    assert!(Arc::ptr_eq(back.cell(), &cell));
    assert_eq!(
        ctx.take(),
        vec![Action::Table(ShardId(0), TableOp::GroupStarted(cell.id()))]
    );
    // Never exported (or freed): a typed error, no action.
    let gone = refs.resolve(&ctx, id(N0, 9), N1);
    assert!(matches!(
        gone.cell().result(),
        Some(Err(e)) if matches!(e.kind, TaskErrorKind::Store(_))
    ));
    assert_eq!(ctx.take(), vec![]);
}

#[test]
fn the_owner_queues_a_registration_then_answers_the_borrower() {
    let (ctx, refs) = (Recorder::default(), Refs::new(N0, SERIAL));
    let xid = id(N0, 1);
    refs.on_borrow(&ctx, xid, N2, 1, Some(N1));
    assert_eq!(
        ctx.take(),
        vec![
            Action::Table(
                ShardId(0),
                TableOp::Borrow {
                    id: xid,
                    node: N2,
                    delta: 1,
                    shipped: false
                }
            ),
            Action::Send(
                N2,
                OwlMsg::Registered {
                    object: xid.into(),
                    lender: 1,
                    count: 1
                }
            ),
        ],
        "registration queued before the answer that lets the lender release"
    );
    refs.on_borrow(&ctx, xid, N2, -3, None);
    assert_eq!(
        ctx.take(),
        vec![Action::Table(
            ShardId(0),
            TableOp::Borrow {
                id: xid,
                node: N2,
                delta: -3,
                shipped: false
            }
        )]
    );
    // Not ours: dropped.
    refs.on_borrow(&ctx, id(N1, 1), N2, 1, Some(N3));
    assert_eq!(ctx.take(), vec![]);
}

#[test]
fn a_death_releases_what_was_lent_and_fails_the_dead_owner_s_proxies() {
    let _r = Routed::new();
    let (ctx, refs) = (Recorder::default(), Refs::new(N1, SERIAL));
    let x = handle(id(N0, 1));
    let y = handle(id(N3, 2));
    refs.ship(&ctx, N2, &x); // lent to n2
    refs.ship(&ctx, N2, &y); // lent to n2, owned by n3
    let (xid, yid) = (x.id(), y.id());
    drop((x, y));
    assert_eq!(refs.counts().2, 2);
    // The receiver dies: what was lent to it goes.
    refs.node_gone(&ctx, N2);
    let mut e = ended();
    e.sort();
    assert_eq!(e, vec![xid, yid]);
    assert_eq!(refs.counts().2, 0);

    // An owner dies: proxies of its objects fail, lent holds on them go.
    let p = refs.resolve(&ctx, id(N3, 5), N0);
    let z = handle(id(N3, 6));
    refs.ship(&ctx, N2, &z);
    let zid = z.id();
    drop(z);
    refs.owner_gone(N3);
    refs.node_gone(&ctx, N3);
    assert!(matches!(
        p.cell().result(),
        Some(Err(e)) if e.kind == TaskErrorKind::OwnerDied(N3)
    ));
    assert_eq!(ended(), vec![zid]);
    // Arriving after the owner is known dead: failed at once; only the
    // lender hears, to drop its hold.
    ctx.take();
    ctx.dead.borrow_mut().insert(N3);
    let late = refs.resolve(&ctx, id(N3, 7), N0);
    assert!(late.cell().is_ready());
    assert_eq!(
        ctx.take(),
        vec![Action::Send(
            N0,
            OwlMsg::Lent {
                object: id(N3, 7).into(),
                borrower: N1.0,
                count: 1
            }
        )]
    );
}

#[test]
fn the_export_index_follows_the_table() {
    let _r = Routed::new();
    let (ctx, refs) = (Recorder::default(), Refs::new(N0, SERIAL));
    let mut table = OwnershipTable::new(N0, ShardId(0), SERIAL);
    let cell = table.insert_ready(crate::object::value::Stored::refs_only(Vec::new()));
    let x = RawRef::adopt(cell);
    let xid = x.id();
    refs.ship(&ctx, N1, &x);
    let [Action::Table(_, op)] = ctx.take()[..] else {
        panic!("one table update")
    };
    let r = table.apply(op);
    refs.table_applied(op, &r);
    assert!(matches!(r, Released::Kept));
    drop(x);
    let r = table.apply(TableOp::Release(xid));
    refs.table_applied(TableOp::Release(xid), &r);
    assert!(refs.export_cell(xid).is_some(), "node 1 still borrows it");
    // Node 1 dies: the purge frees the entry and its export.
    let r = table.apply(TableOp::NodeGone(N1));
    refs.table_applied(TableOp::NodeGone(N1), &r);
    assert!(matches!(&r, Released::FreedMany(v) if v.len() == 1));
    drop(r);
    assert!(refs.export_cell(xid).is_none());
    // A registration of the dead node arriving later is ignored.
    assert!(matches!(table.borrow(xid, N1, 1, false), Released::Stale));
    // A handle to the freed object, shipped again, leaves no export behind.
    let stale = refs.resolve(&ctx, xid, N2);
    refs.ship(&ctx, N2, &stale);
    let ops: Vec<TableOp> = ctx
        .take()
        .into_iter()
        .filter_map(|a| match a {
            Action::Table(_, op) => Some(op),
            _ => None,
        })
        .collect();
    for op in ops {
        let r = table.apply(op);
        refs.table_applied(op, &r);
    }
    assert!(refs.export_cell(xid).is_none());
    assert!(table.is_empty());
}
