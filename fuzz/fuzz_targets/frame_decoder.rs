//! frame_decoder: bytes from a connection into owl's `FrameDecoder`.
//!
//! Input: a 5-byte header (see `owl_fuzz::frame_flags`: plaintext or sealed
//! session, raw stream or well-formed frames, frame limit, duplicate; a seed
//! for how the stream is split into reads; one byte to corrupt), then data.
//! In raw mode the data is the stream itself. In framed mode the data is a
//! list of payloads that the session's real `FrameEncoder` wraps in valid
//! (and, when sealed, authenticated) frames, so the fuzzer reaches
//! `decode_batch` behind AES-GCM.
//!
//! Checks: `feed`/`next_batch`/`finish` never panic, loop or allocate past
//! the frame limit on any input and any split; every batch a sealed decoder
//! yields is, in order, exactly what the encoder sent, whatever byte was
//! corrupted (authentication); an uncorrupted framed stream yields every
//! valid payload's batch and fails only with a codec error on an invalid one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owl::rkyv::util::AlignedVec;
use owl_fuzz::{chunks, frame_flags as f, header, parse_records, session_pair, FRAME_HEADER};
use owl_transport::proto::msg::decode_batch;
use owl_transport::proto::{FrameDecoder, FrameEncoder, FrameError, Msg, DEFAULT_MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let [flags, seed, pos_lo, pos_hi, xor] = header::<FRAME_HEADER>(&mut data);
    let sealed = flags & f::SEALED != 0;
    let framed = flags & f::FRAMED != 0;
    let max_frame = if flags & f::SMALL_MAX != 0 {
        256
    } else {
        DEFAULT_MAX_FRAME
    };

    let (mut enc, mut dec) = if sealed {
        let (a, b) = session_pair(true, max_frame);
        (a.encoder, b.decoder)
    } else {
        (
            FrameEncoder::plaintext(max_frame),
            FrameDecoder::plaintext(max_frame),
        )
    };

    // What was sent, frame by frame: the batch its payload decodes to, if any.
    let mut sent: Vec<Option<Vec<Msg>>> = Vec::new();
    let mut stream = Vec::new();
    if framed {
        let mut first_frame = None;
        for payload in parse_records(data) {
            let start = stream.len();
            if enc.encode_payload(payload, &mut stream).is_err() {
                continue; // over the limit: the encoder refuses, nothing sent
            }
            first_frame.get_or_insert(start..stream.len());
            let mut aligned = AlignedVec::<16>::new();
            aligned.extend_from_slice(payload);
            sent.push(decode_batch(&aligned).ok());
        }
        if flags & f::DUPLICATE != 0 {
            if let Some(r) = first_frame {
                stream.extend_from_within(r);
            }
        }
    } else {
        stream.extend_from_slice(data);
    }
    let corrupted = xor != 0 && !stream.is_empty();
    if corrupted {
        let at = usize::from(u16::from_le_bytes([pos_lo, pos_hi])) % stream.len();
        stream[at] ^= xor;
    }

    let mut got = 0usize;
    let mut error = None;
    'reads: for read in chunks(&stream, seed) {
        dec.feed(read);
        loop {
            match dec.next_batch() {
                Ok(Some(batch)) => {
                    if framed && (sealed || !corrupted) {
                        let expected = sent.get(got).and_then(Option::as_ref);
                        assert_eq!(
                            Some(&batch),
                            expected,
                            "frame {got} decoded to something that was not sent"
                        );
                    }
                    got += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'reads;
                }
            }
        }
    }
    let finished = dec.finish();

    if framed && !corrupted {
        let valid = sent.iter().take_while(|b| b.is_some()).count();
        assert_eq!(got, valid, "an intact frame was lost");
        match error {
            None => {
                assert_eq!(valid, sent.len());
                assert_eq!(finished, Ok(()));
                let dups = u64::from(flags & f::DUPLICATE != 0 && !sent.is_empty());
                assert_eq!(dec.duplicates(), dups);
            }
            Some(FrameError::Codec(_)) => assert!(valid < sent.len()),
            Some(e) => panic!("intact frames failed with {e}"),
        }
    }
});
