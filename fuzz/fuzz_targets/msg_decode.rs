//! msg_decode: `decode_batch` on arbitrary frame payloads.
//!
//! The input is copied into 16-byte aligned memory first, as `FrameDecoder`
//! does, so failures are about content, not alignment.
//!
//! Checks: validation and deserialization never panic, overflow the stack or
//! allocate without bound on any bytes; any batch that decodes re-encodes
//! with `encode_batch` and decodes again to an equal batch (nothing a peer
//! can send is lost or changed by a relay such as the head's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use owl::rkyv::util::AlignedVec;
use owl_transport::proto::msg::{decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    let mut aligned = AlignedVec::<16>::new();
    aligned.extend_from_slice(data);
    let Ok(batch) = decode_batch(&aligned) else {
        return;
    };
    let mut again = AlignedVec::<16>::new();
    encode_batch(&batch, &mut again).expect("a decoded batch re-encodes");
    let back = decode_batch(&again).expect("a re-encoded batch decodes");
    assert_eq!(batch, back);
});
