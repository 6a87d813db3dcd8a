//! value_access: the check owl makes before trusting a value's bytes that
//! came from another node.
//!
//! `Stored::check` (in core's `value` module) is crate-private, so this
//! target runs the same calls on the same 16-byte aligned bytes:
//! `rkyv::access` of the type's archive with `rancor::Error`, then, when
//! that passes, the deserialization `get_owned` does (`rkyv::deserialize`).
//! The types are ones owl programs store: integers, bytes, strings,
//! vectors, and a struct holding owl's real `ObjectRef`s, whose archived
//! form (`RefRecord`) and `Deserialize` impl are owl's own.
//!
//! Checks: validation never panics on any bytes; bytes that pass it always
//! deserialize for ref-free types, and for `ObjectRef`s fail with an error
//! (there is no live handle for the ref outside a node) instead of
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owl::rkyv::{self, rancor, util::AlignedVec, Archive, Deserialize};
use owl::ObjectRef;
use owl_fuzz::{ArchivedParticle, Particle};

/// Validates `bytes` as a `T` and, if valid, deserializes it; returns
/// whether deserialization succeeded (`None`: not valid).
fn check<T>(bytes: &[u8]) -> Option<bool>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    let archived = rkyv::access::<T::Archived, rancor::Error>(bytes).ok()?;
    Some(rkyv::deserialize::<T, rancor::Error>(archived).is_ok())
}

fuzz_target!(|data: &[u8]| {
    let mut aligned = AlignedVec::<16>::new();
    aligned.extend_from_slice(data);
    let b = aligned.as_slice();

    for ok in [
        check::<u64>(b),
        check::<Vec<u8>>(b),
        check::<String>(b),
        check::<Vec<u64>>(b),
        check::<Option<String>>(b),
        check::<(u32, Vec<String>)>(b),
    ] {
        assert_ne!(ok, Some(false), "a validated archive failed to deserialize");
    }
    // Outside a node no ref has a live handle: never a made-up one.
    assert_ne!(check::<ObjectRef<u64>>(b), Some(true));
    // Validate every `Particle`, but deserialize only those without a
    // `Vec` of refs: rkyv 0.8.18's `Vec` deserialization leaks the buffer
    // and the elements already made when a later element fails (here: a ref
    // with no live handle), which LeakSanitizer reports. See fuzz/README.md.
    if let Ok(p) = rkyv::access::<ArchivedParticle, rancor::Error>(b) {
        if p.parts.is_empty() {
            let _ = rkyv::deserialize::<Particle, rancor::Error>(p);
        }
    }
});
