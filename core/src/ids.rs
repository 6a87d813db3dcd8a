//! Newtype identifiers. Never pass bare integers across APIs.

use std::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($ty:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $ty);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

id_newtype!(
    /// A node (process) of a cluster; node 0 is the head.
    NodeId(u32), "n"
);
id_newtype!(
    /// A shard (pinned thread) within a node.
    ShardId(u16), "s"
);
id_newtype!(
    /// A remote function's stable id: a hash of its full path, fixed at compile time.
    FnId(u64), "f"
);

/// Identifies an object and, through it, its owner: no directory exists.
///
/// `index` is the slot of the owner's table entry and `gen` the generation of
/// that slot, so a message about a freed (and reused) slot is recognised as
/// stale and ignored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub node: NodeId,
    pub shard: ShardId,
    pub index: u32,
    pub gen: u32,
}

impl ObjectId {
    /// The shard whose table owns this object.
    pub fn owner(&self) -> (NodeId, ShardId) {
        (self.node, self.shard)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "obj:{}.{}.{}.{}",
            self.node.0, self.shard.0, self.index, self.gen
        )
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// FNV-1a, usable in constants: the stable id of a remote function is the
/// hash of its module path and name, so every build of the same source agrees.
pub const fn stable_hash(s: &str) -> u64 {
    let bytes = s.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

impl From<owl_transport::proto::WireId> for ObjectId {
    fn from(w: owl_transport::proto::WireId) -> ObjectId {
        ObjectId {
            node: NodeId(w.node),
            shard: ShardId(w.shard),
            index: w.index,
            gen: w.gen,
        }
    }
}

impl From<ObjectId> for owl_transport::proto::WireId {
    fn from(id: ObjectId) -> owl_transport::proto::WireId {
        owl_transport::proto::WireId {
            node: id.node.0,
            shard: id.shard.0,
            index: id.index,
            gen: id.gen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_fnv1a() {
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(stable_hash("m::add"), stable_hash("m::sub"));
    }

    #[test]
    fn ids_display() {
        let id = ObjectId {
            node: NodeId(1),
            shard: ShardId(2),
            index: 3,
            gen: 4,
        };
        assert_eq!(id.to_string(), "obj:1.2.3.4");
        assert_eq!(id.owner(), (NodeId(1), ShardId(2)));
        assert_eq!(ShardId(7).to_string(), "s7");
    }
}
