//! Task Bench's deterministic pseudo-random numbers.
//!
//! The reference hashes a seed (an array of C `long`s, i.e. little-endian
//! `i64`s on the machines it runs on) with SipHash-2-4 under the fixed key
//! `[1, 2, .., 15, 0]`, keeps the 64-bit digest and scales it into `[0, 1)`.
//! `random_nearest` dependencies and `load_imbalance` iteration counts are
//! drawn this way, so graphs built here are identical to the reference's.

/// The 16-byte SipHash key used by the reference (the 16th byte is zero).
const KEY: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0];

#[inline]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 with a 64-bit output.
pub fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let k0 = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
    let k1 = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
    let mut v = [
        0x736f_6d65_7073_6575 ^ k0,
        0x646f_7261_6e64_6f6d ^ k1,
        0x6c79_6765_6e65_7261 ^ k0,
        0x7465_6462_7974_6573 ^ k1,
    ];
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let m = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    let mut last = (data.len() as u64) << 56;
    for (i, &byte) in chunks.remainder().iter().enumerate() {
        last |= u64::from(byte) << (8 * i);
    }
    v[3] ^= last;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// A deterministic value in `[0, 1)` (it can round up to exactly 1.0 for
/// digests within 2^10 of 2^64, as in the reference) drawn from `seed`.
pub fn random_uniform(seed: &[i64]) -> f64 {
    // At most 5 longs are hashed anywhere in Task Bench; keep it on the stack.
    let mut buf = [0u8; 64];
    let mut len = 0;
    let mut heap = Vec::new();
    let bytes: &[u8] = if seed.len() * 8 <= buf.len() {
        for value in seed {
            buf[len..len + 8].copy_from_slice(&value.to_le_bytes());
            len += 8;
        }
        &buf[..len]
    } else {
        heap.extend(seed.iter().flat_map(|v| v.to_le_bytes()));
        &heap
    };
    let bits = siphash24(&KEY, bytes);
    // (double)bits * 0x1.p-64: round to nearest, then an exact power-of-two scale.
    bits as f64 * (1.0 / 18_446_744_073_709_551_616.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digests printed by Task Bench's own `siphash.c` (key 00..0f, message
    /// 00..len-1, 64-bit output read as a little-endian u64).
    #[test]
    fn siphash_matches_reference_c() {
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0u8..64).collect();
        let expect: [(usize, u64); 8] = [
            (0, 0x726fdb47dd0e0e31),
            (1, 0x74f839c593dc67fd),
            (7, 0xab0200f58b01d137),
            (8, 0x93f5f5799a932462),
            (9, 0x9e0082df0ba9e4b0),
            (15, 0xa129ca6149be45e5),
            (16, 0x3f2acc7f57c29bdb),
            (40, 0x0e3ea96b5304a7d0),
        ];
        for (len, want) in expect {
            assert_eq!(siphash24(&key, &msg[..len]), want, "len {len}");
        }
    }

    /// `random_uniform` values printed by Task Bench's `core_random.c`.
    #[test]
    fn uniform_matches_reference_c() {
        assert_eq!(random_uniform(&[0, 3, 0, 5, 4]), 0.9116473833452268);
        assert_eq!(random_uniform(&[2, 7, 1, 100, 101]), 0.5096628248375503);
        assert_eq!(random_uniform(&[0, 1, 7]), 0.509122972687324);
    }

    /// Cross-check against std's (deprecated but still SipHash-2-4) hasher,
    /// which hashes a raw byte stream the same way when fed with `write`.
    #[test]
    #[allow(deprecated)]
    fn siphash_matches_std() {
        use std::hash::{Hasher, SipHasher};
        let k0 = u64::from_le_bytes(KEY[..8].try_into().unwrap());
        let k1 = u64::from_le_bytes(KEY[8..].try_into().unwrap());
        for len in 0..50usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut h = SipHasher::new_with_keys(k0, k1);
            h.write(&data);
            assert_eq!(siphash24(&KEY, &data), h.finish(), "len {len}");
        }
    }

    #[test]
    fn uniform_in_range_and_deterministic() {
        let mut sum = 0.0;
        for i in 0..10_000i64 {
            let v = random_uniform(&[0, 3, 0, i, i + 1]);
            assert!((0.0..=1.0).contains(&v));
            assert_eq!(v, random_uniform(&[0, 3, 0, i, i + 1]));
            sum += v;
        }
        let mean = sum / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }
}
