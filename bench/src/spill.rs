//! `spill`: how fast the object store moves blocks to its spill directory
//! and reads them back, next to a plain sequential write and read of the
//! same bytes in the same directory (the disk's own speed, measured in the
//! same run).
//!
//! Spill: `Arena::spill_all` (write to the spill file, remap, punch the
//! arena's pages), then the `fsync` that puts the bytes on disk and the
//! page-cache drop that makes the next read come from it. Restore: every
//! spilled byte read through the arena's mapping (page faults served from
//! the spill file). The plain figures: `write` + `fsync` + the same cache
//! drop of a file in the spill directory, then `read` of it.

use std::io::{Read, Write};
use std::time::Instant;

use owl_store::Arena;
use serde_json::json;

use crate::harness::Sample;
use crate::workloads::Size;

const BLOCK: usize = 64 << 20;

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

/// Sums a byte slice a word at a time: reading is what is measured.
fn touch(bytes: &[u8]) -> u64 {
    bytes
        .chunks(4096)
        .map(|c| c.iter().step_by(64).map(|&b| b as u64).sum::<u64>())
        .sum()
}

pub fn run(size: Size) -> anyhow::Result<Vec<Sample>> {
    let total = size.pick(1 << 30, 8 << 20);
    let block = BLOCK.min(total);
    let store = owl_store::store_dir_from_env();
    let spill =
        std::env::var_os("OWL_SPILL_DIR").map_or_else(owl_store::default_spill_dir, Into::into);
    let name = format!("owl-{}-bench.arena", std::process::id());
    let arena = Arena::with_spill(&store, &name, total as u64 * 2, 1024, &spill)?;
    let blocks: Vec<_> = (0..total / block)
        .map(|i| {
            let mut b = arena.alloc(block).expect("the arena holds twice this");
            b.as_mut_slice().fill(i as u8 + 1);
            b.freeze()
        })
        .collect();

    let t0 = Instant::now();
    let spilled = arena.spill_all()?;
    arena.evict_spilled()?;
    let spill_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        spilled + 2 * 4096 * blocks.len() >= total,
        "only {spilled} bytes spilled"
    );

    let t0 = Instant::now();
    let sum: u64 = blocks.iter().map(|b| touch(b.as_slice())).sum();
    let restore_s = t0.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    drop(blocks);
    drop(arena);

    // The disk on its own: the same bytes, written and read sequentially.
    std::fs::create_dir_all(&spill)?;
    let file = tempfile::tempfile_in(&spill)?;
    let buf = vec![7u8; block];
    let t0 = Instant::now();
    let mut w = &file;
    for _ in 0..total / block {
        w.write_all(&buf)?;
    }
    file.sync_data()?;
    owl_store::drop_cached(&file)?;
    let write_s = t0.elapsed().as_secs_f64();
    let mut r = &file;
    std::io::Seek::rewind(&mut r)?;
    let mut rbuf = vec![0u8; block];
    let t0 = Instant::now();
    let mut sum = 0;
    for _ in 0..total / block {
        r.read_exact(&mut rbuf)?;
        sum += touch(&rbuf);
    }
    let read_s = t0.elapsed().as_secs_f64();
    std::hint::black_box(sum);

    let c = json!({
        "bytes": total, "block": block,
        "store_dir": store.display().to_string(), "spill_dir": spill.display().to_string(),
    });
    let (spill_bw, restore_bw) = (gbps(total, spill_s), gbps(total, restore_s));
    let (write_bw, read_bw) = (gbps(total, write_s), gbps(total, read_s));
    Ok(vec![
        Sample::new("spill_bw", spill_bw, "GB/s", c.clone()),
        Sample::new("restore_bw", restore_bw, "GB/s", c.clone()),
        Sample::new("disk_write_bw", write_bw, "GB/s", c.clone()),
        Sample::new("disk_read_bw", read_bw, "GB/s", c.clone()),
        Sample::new("ratio_spill_to_write", spill_bw / write_bw, "x", c.clone()),
        Sample::new("ratio_restore_to_read", restore_bw / read_bw, "x", c),
    ])
}
