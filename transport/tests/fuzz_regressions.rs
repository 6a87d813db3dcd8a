//! Frames found (by fuzz/ and its review) to take a node down, kept so the
//! fixes stay in.

use owl_transport::proto::msg::{decode_batch, encode_batch, MAX_DEPTH};
use owl_transport::proto::OwlMsg;
use owl_transport::proto::{CodecError, Msg, WireError, WireId};
use rkyv::util::AlignedVec;

/// A batch with one task error whose cause chain is `depth` long, encoded.
/// Serializing and dropping such a chain recurse once per level, so both
/// happen on a thread with room for it.
fn deep_error_batch(depth: usize) -> AlignedVec<16> {
    std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || {
            let mut e = WireError {
                message: "the first failure".into(),
                ..WireError::default()
            };
            for _ in 0..depth {
                e = WireError {
                    history: Vec::new(),
                    kind: 4,
                    cause: Some(Box::new(e)),
                    ..WireError::default()
                };
            }
            let batch = vec![Msg::Owl(OwlMsg::TaskDone {
                object: WireId {
                    node: 1,
                    shard: 0,
                    index: 2,
                    gen: 3,
                },
                outcome: Err(e),
            })];
            let mut out = AlignedVec::new();
            encode_batch(&batch, &mut out).expect("encode");
            out
        })
        .expect("spawn")
        .join()
        .expect("encoder thread")
}

/// Decodes on a thread with a default 2 MiB stack, as a node's I/O threads
/// have; returns the error chain's length.
fn decode_on_small_stack(bytes: AlignedVec<16>) -> Result<usize, CodecError> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let batch = decode_batch(&bytes)?;
            let Some(Msg::Owl(OwlMsg::TaskDone {
                outcome: Err(e), ..
            })) = batch.first()
            else {
                panic!("decoded something else: {batch:?}");
            };
            let mut len = 0;
            let mut cause = e.cause.as_deref();
            while let Some(c) = cause {
                len += 1;
                cause = c.cause.as_deref();
            }
            Ok(len)
        })
        .expect("spawn")
        .join()
        .expect("a frame must never crash the decoding thread")
}

#[test]
fn a_frame_with_a_deep_cause_chain_is_refused_not_a_stack_overflow() {
    // About 4 MB, well inside the default frame limit. Before decode_batch
    // limited nesting, validating it overflowed the stack and aborted the
    // whole process (and 30 000 levels overflowed it in deserialization).
    let bytes = deep_error_batch(100_000);
    match decode_on_small_stack(bytes) {
        Err(CodecError::TooDeep { max }) => assert_eq!(max, MAX_DEPTH),
        other => panic!("expected a depth error, got {other:?}"),
    }
}

#[test]
fn cause_chains_within_the_limit_still_decode() {
    let depth = MAX_DEPTH - 8;
    match decode_on_small_stack(deep_error_batch(depth)) {
        Ok(len) => assert_eq!(len, depth),
        Err(e) => panic!("a chain of {depth} causes was refused: {e}"),
    }
    assert!(matches!(
        decode_on_small_stack(deep_error_batch(MAX_DEPTH)),
        Err(CodecError::TooDeep { .. })
    ));
}
