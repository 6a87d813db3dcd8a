//! Root futures (`Runtime::block_on`, `#[owl::main]`) that any shard may
//! poll. A root used to live in shard 0's slab, so while shard 0 ran a
//! long task the root's wakes (a result it waits for, its `get_timeout`)
//! waited too, however idle the other shards were. A woken root goes to a
//! node-wide queue instead, and the first shard free takes it; whatever it
//! submits from then on is owned by that shard.
//!
//! Roots are few (one per `block_on`), so one mutex over their slots
//! costs nothing on the task path.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};

use crossbeam_queue::SegQueue;
use slab::Slab;

use crate::engine::node::NodeShared;

pub(crate) type RootFut = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Clone, Copy, PartialEq, Eq)]
struct RootKey {
    index: usize,
    gen: u64,
}

struct Slot {
    gen: u64,
    /// `None` while a shard polls it.
    fut: Option<RootFut>,
    waker: Waker,
    /// Woken while being polled: poll again after.
    again: bool,
}

/// The node's root futures and the queue of woken ones.
#[derive(Default)]
pub(crate) struct Roots {
    slots: Mutex<(Slab<Slot>, u64)>,
    woken: SegQueue<RootKey>,
}

struct RootWaker {
    node: Weak<NodeShared>,
    key: RootKey,
}

impl Wake for RootWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(node) = self.node.upgrade() {
            node.roots.woken.push(self.key);
            // A busy or spinning shard looks at the queue by itself.
            node.wake_any_idle_shard();
        }
    }
}

impl Roots {
    /// Adds a root and polls it once on the calling shard.
    pub(crate) fn spawn(node: &Arc<NodeShared>, fut: RootFut) {
        let key = {
            let mut slots = node.roots.slots.lock().expect("roots lock");
            slots.1 += 1;
            let gen = slots.1;
            let entry = slots.0.vacant_entry();
            let key = RootKey {
                index: entry.key(),
                gen,
            };
            entry.insert(Slot {
                gen,
                fut: Some(fut),
                waker: Waker::from(Arc::new(RootWaker {
                    node: Arc::downgrade(node),
                    key,
                })),
                again: false,
            });
            key
        };
        Self::poll(node, key);
    }

    /// Whether a woken root waits for a shard.
    pub(crate) fn any_woken(&self) -> bool {
        !self.woken.is_empty()
    }

    /// Polls woken roots (at most `max`) on the calling shard; whether there
    /// was one.
    pub(crate) fn run_woken(node: &Arc<NodeShared>, max: usize) -> bool {
        let mut did = false;
        for _ in 0..max {
            let Some(key) = node.roots.woken.pop() else {
                break;
            };
            Self::poll(node, key);
            did = true;
        }
        did
    }

    fn poll(node: &Arc<NodeShared>, key: RootKey) {
        let (mut fut, waker) = {
            let mut slots = node.roots.slots.lock().expect("roots lock");
            let Some(slot) = slots.0.get_mut(key.index).filter(|s| s.gen == key.gen) else {
                return;
            };
            match slot.fut.take() {
                Some(f) => (f, slot.waker.clone()),
                None => {
                    // Another shard polls it right now.
                    slot.again = true;
                    return;
                }
            }
        };
        let mut cx = Context::from_waker(&waker);
        let polled = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
        let mut slots = node.roots.slots.lock().expect("roots lock");
        match polled {
            Ok(Poll::Pending) => {
                if let Some(slot) = slots.0.get_mut(key.index).filter(|s| s.gen == key.gen) {
                    slot.fut = Some(fut);
                    if std::mem::take(&mut slot.again) {
                        node.roots.woken.push(key);
                    }
                    return;
                }
                // Drained by shutdown meanwhile: drop it below.
            }
            Ok(Poll::Ready(())) => {}
            Err(_) => tracing::error!("root future panicked"),
        }
        if slots.0.get(key.index).is_some_and(|s| s.gen == key.gen) {
            slots.0.remove(key.index);
        }
        drop(slots);
        drop(fut);
    }

    /// Drops every root (node shutdown): a `block_on` waiting on one gets
    /// its channel closed. Dropped outside the lock (their drops may
    /// release objects, and waking a root takes no lock, but be safe).
    pub(crate) fn drain(&self) -> bool {
        let taken: Vec<Slot> = self.slots.lock().expect("roots lock").0.drain().collect();
        let any = !taken.is_empty();
        drop(taken);
        while self.woken.pop().is_some() {}
        any
    }
}
