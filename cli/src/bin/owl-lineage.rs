//! Workloads whose large results stay on the node that made them, so that a
//! node's death loses values that only their tasks (lineage) can rebuild:
//! the program the rebuild tests run under `owl run`, and a small example of
//! a program that survives a worker's death without knowing about it.
//!
//! `owl run -n 3 -- owl-lineage WORKLOAD [N] [BYTES] [--check]` prints one
//! JSON line from node 0 with the workload's answer, a checksum that does
//! not depend on which node ran which task, how often or in what order:
//!
//! - `tree N`: N leaves of BYTES each (default 5,000 of 1 MiB: 9,999 tasks),
//!   in blocks of four: two `pair` tasks each mix two leaves into a new
//!   BYTES value, a `reduce` task digests the two pairs; `join` tasks fold
//!   the blocks' digests pairwise. Node 0 keeps `WINDOW` blocks in flight
//!   (all leaves at once would hold N × BYTES) and prints `progress K/M`
//!   to stderr as blocks finish.
//! - `chain N`: a `leaf` and N `step`s (default 1,000 of 1 MiB), each
//!   taking the previous value and making a new one; node 0 then reads
//!   every step's value, last first, and folds their digests. The step
//!   tasks print `progress K/N` where they run.
//! - `nested N`: N `outer` tasks (default 100), each submitting `WIDTH`
//!   `inner` tasks that each submit a `leaf` and return its ref (owned by
//!   the inner's node); the outer reads the leaves and returns a digest.
//!   Node 0 keeps `WINDOW` outers in flight and prints progress.
//!
//! Every task is spread round-robin over the live nodes. With `--check`,
//! node 0 also computes the answer in plain Rust, without tasks, and
//! prints it as `expected`. With `OWL_CHECK_LEAKS=1` every node checks its
//! tables and arena are empty before exiting.

use owl::{CallOpts, ObjectRef, Runtime};

/// Blocks (tree) or outers (nested) node 0 keeps in flight.
const WINDOW: usize = 8;
/// Inner tasks per outer (nested).
const WIDTH: u64 = 10;
/// Progress lines per run.
const STEPS: u64 = 20;

/// splitmix64: a small, good, seedable generator.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `len` bytes that depend only on `seed`.
fn make(seed: u64, len: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        let w = next(&mut state).to_le_bytes();
        let take = (len as usize - out.len()).min(8);
        out.extend_from_slice(&w[..take]);
    }
    out
}

/// A new value from two: byte by byte, and not symmetric, so an argument
/// swapped or rebuilt wrong changes the answer.
fn mix(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x.rotate_left(3) ^ y.wrapping_add(1))
        .collect()
}

/// FNV-1a over the bytes, and their length.
fn digest(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h ^ bytes.len() as u64
}

/// Two digests into one; order matters.
fn fold(a: u64, b: u64) -> u64 {
    (a.rotate_left(17) ^ b).wrapping_mul(0x0100_0000_01b3)
}

#[owl::remote]
fn leaf(seed: u64, len: u64) -> Vec<u8> {
    make(seed, len)
}

#[owl::remote]
fn pair(a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
    mix(&a, &b)
}

#[owl::remote]
fn reduce(a: Vec<u8>, b: Vec<u8>) -> u64 {
    fold(digest(&a), digest(&b))
}

#[owl::remote]
fn join(a: u64, b: u64) -> u64 {
    fold(a, b)
}

/// Step `i` of `n` of the chain; prints progress where it runs.
#[owl::remote]
fn step(rt: Runtime, prev: Vec<u8>, i: u64, n: u64) -> Vec<u8> {
    if i.is_multiple_of((n / STEPS).max(1)) {
        eprintln!("progress {i}/{n} on {}", rt.node());
    }
    let salt = make(i, prev.len() as u64);
    mix(&prev, &salt)
}

/// Submits a leaf and returns its ref: the leaf is owned by this node.
#[owl::remote]
fn inner(rt: Runtime, seed: u64, len: u64) -> ObjectRef<Vec<u8>> {
    leaf.options(spread())
        .remote(&rt, seed, len)
        .expect("submit a leaf")
}

/// Digest of `WIDTH` leaves made through `inner` tasks.
#[owl::remote]
async fn outer(rt: Runtime, i: u64, len: u64) -> owl::Result<u64> {
    let inners = (0..WIDTH)
        .map(|j| inner.options(spread()).remote(&rt, i * WIDTH + j, len))
        .collect::<Result<Vec<_>, _>>()?;
    let mut h = 0;
    for r in inners {
        let leaf_ref = r.get_owned().await?;
        h = fold(h, digest(&leaf_ref.get().await?));
    }
    Ok(h)
}

fn spread() -> CallOpts {
    CallOpts::new().spread()
}

/// A block of the tree (leaves `4b..4b+4`) as plain Rust.
fn block_here(b: u64, len: u64) -> u64 {
    let l: Vec<Vec<u8>> = (4 * b..4 * b + 4).map(|s| make(s, len)).collect();
    fold(digest(&mix(&l[0], &l[1])), digest(&mix(&l[2], &l[3])))
}

/// Folds a level's digests pairwise until one is left (an odd one out
/// goes up unchanged), as the `join` tasks do.
fn fold_tree(mut level: Vec<u64>) -> u64 {
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|c| if c.len() == 2 { fold(c[0], c[1]) } else { c[0] })
            .collect();
    }
    level.first().copied().unwrap_or(0)
}

fn progress(done: u64, of: u64) {
    if done.is_multiple_of((of / STEPS).max(1)) {
        eprintln!("progress {done}/{of}");
    }
}

/// The tree: its answer and how many tasks it submitted.
async fn tree(rt: &Runtime, leaves: u64, len: u64) -> owl::Result<(u64, u64)> {
    let blocks = (leaves / 4).max(1);
    let mut tasks = 0;
    let mut in_flight = std::collections::VecDeque::new();
    let mut digests = Vec::new();
    for b in 0..blocks {
        let l = (4 * b..4 * b + 4)
            .map(|s| leaf.options(spread()).remote(rt, s, len))
            .collect::<Result<Vec<_>, _>>()?;
        let p = pair.options(spread()).remote(rt, &l[0], &l[1])?;
        let q = pair.options(spread()).remote(rt, &l[2], &l[3])?;
        in_flight.push_back(reduce.options(spread()).remote(rt, &p, &q)?);
        tasks += 7;
        while in_flight.len() >= WINDOW || (b + 1 == blocks && !in_flight.is_empty()) {
            let r = in_flight.pop_front().expect("a block in flight");
            r.get().await?;
            digests.push(r);
            progress(digests.len() as u64, blocks);
        }
    }
    // The blocks' digests, folded pairwise by tasks.
    let mut level = digests;
    while level.len() > 1 {
        let mut up = Vec::with_capacity(level.len().div_ceil(2));
        for c in level.chunks(2) {
            if let [a, b] = c {
                up.push(join.options(spread()).remote(rt, a, b)?);
                tasks += 1;
            } else {
                up.push(c[0].clone());
            }
        }
        level = up;
    }
    Ok((level[0].get_owned().await?, tasks))
}

fn tree_here(leaves: u64, len: u64) -> u64 {
    fold_tree(
        (0..(leaves / 4).max(1))
            .map(|b| block_here(b, len))
            .collect(),
    )
}

async fn chain(rt: &Runtime, steps: u64, len: u64) -> owl::Result<(u64, u64)> {
    let mut values = vec![leaf.options(spread()).remote(rt, 0, len)?];
    for i in 1..=steps {
        let prev = values.last().expect("the leaf");
        values.push(step.options(spread()).remote(rt, prev, i, steps)?);
    }
    // Last first: a value lost with its node is rebuilt from its step,
    // whose own input may have been lost too and is rebuilt first.
    let mut digests = vec![0; values.len()];
    for (i, r) in values.iter().enumerate().rev() {
        digests[i] = digest(&r.get().await?);
    }
    Ok((digests.into_iter().fold(0, fold), steps + 1))
}

fn chain_here(steps: u64, len: u64) -> u64 {
    let mut value = make(0, len);
    let mut h = fold(0, digest(&value));
    for i in 1..=steps {
        value = mix(&value, &make(i, len));
        h = fold(h, digest(&value));
    }
    h
}

async fn nested(rt: &Runtime, outers: u64, len: u64) -> owl::Result<(u64, u64)> {
    // An inner's leaf is owned by the inner's node: when that node dies the
    // ref fails with `OwnerDied` (fate-sharing), and the outer that read it
    // runs again.
    let opts = spread().retry_on_error(true).max_retries(3);
    let mut in_flight = std::collections::VecDeque::new();
    let mut h = 0;
    let mut done = 0;
    for i in 0..outers {
        in_flight.push_back(outer.options(opts.clone()).remote(rt, i, len)?);
        while in_flight.len() >= WINDOW || (i + 1 == outers && !in_flight.is_empty()) {
            let r = in_flight.pop_front().expect("an outer in flight");
            h = fold(h, r.get_owned().await?);
            done += 1;
            progress(done, outers);
        }
    }
    Ok((h, outers * (1 + 2 * WIDTH)))
}

fn nested_here(outers: u64, len: u64) -> u64 {
    (0..outers).fold(0, |h, i| {
        let d = (0..WIDTH).fold(0, |d, j| fold(d, digest(&make(i * WIDTH + j, len))));
        fold(h, d)
    })
}

const USAGE: &str = "usage: owl-lineage tree|chain|nested [N] [BYTES] [--check]";

#[owl::main]
async fn main(rt: Runtime) -> owl::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let args: Vec<&String> = args.iter().filter(|a| *a != "--check").collect();
    let number = |i: usize, default: u64| args.get(i).map_or(default, |a| a.parse().expect(USAGE));
    let workload = args.first().map_or("tree", |a| a.as_str());
    let len = number(2, 1 << 20);
    let ((answer, tasks), expected) = match workload {
        "tree" => {
            let n = number(1, 5_000);
            (tree(&rt, n, len).await?, check.then(|| tree_here(n, len)))
        }
        "chain" => {
            let n = number(1, 1_000);
            (chain(&rt, n, len).await?, check.then(|| chain_here(n, len)))
        }
        "nested" => {
            let n = number(1, 100);
            (
                nested(&rt, n, len).await?,
                check.then(|| nested_here(n, len)),
            )
        }
        _ => panic!("{USAGE}"),
    };
    let expected = expected.map_or("null".to_string(), |e| e.to_string());
    println!(
        "{{\"workload\":\"{workload}\",\"answer\":{answer},\"expected\":{expected},\"tasks\":{tasks},\"bytes\":{len},\"nodes\":{}}}",
        rt.nodes()
    );
    Ok(())
}
