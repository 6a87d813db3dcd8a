//! Wakers for a shard's suspended tasks.

use std::sync::Arc;
use std::task::Wake;

use super::{with_current, Msg};
use crate::engine::node::NodeShared;

/// Which suspended async task to poll again. `gen` guards against a reused
/// slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskKey {
    pub index: u32,
    pub gen: u32,
}

pub(crate) struct TaskWaker {
    pub node: Arc<NodeShared>,
    pub shard: u16,
    pub key: TaskKey,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let local = with_current(|s| {
            if s.shared.serial == self.node.serial && s.id.0 == self.shard {
                s.wake_local(self.key);
                true
            } else {
                false
            }
        });
        if local != Some(true) {
            self.node.shards[self.shard as usize].send(Msg::Wake(self.key));
        }
    }
}
