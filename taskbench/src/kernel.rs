//! The kernels every task runs, with the reference's work per iteration.
//!
//! | kernel | work per task | FLOPs per task | bytes per task |
//! | --- | --- | --- | --- |
//! | `empty` | nothing | 0 | 0 |
//! | `busy_wait` | `iterations` modular multiplications | 0 | 0 |
//! | `memory_bound` | `iterations` copies of one `scratch/samples` sample (half onto the other half) | 0 | `scratch * iterations / samples` |
//! | `compute_dgemm` | `iterations` naive `C += A·B` on `N×N` doubles, `N = ⌊√(scratch/24)⌋` | `2N³·iterations` | 0 |
//! | `memory_daxpy` | `iterations` `y += x` over one sample | 0 | `scratch * iterations / samples` |
//! | `compute_bound` | `iterations` × 64 lanes of `a = a·a + a` | `128·iterations + 64` | 0 |
//! | `compute_bound2` | `iterations` × 32 lanes of `c += a·b` | `64·iterations` | 0 |
//! | `io_bound` | not implemented (the reference asserts) | 0 | 0 |
//! | `load_imbalance` | `compute_bound` with per-task iterations drawn from `-imbalance` | `128·it(t,p) + 64` | 0 |
//!
//! The reference's `dgemm`/`daxpy` call BLAS; these are plain loops doing the
//! same arithmetic.

use std::fmt;
use std::hint::black_box;
use std::str::FromStr;

use crate::error::ParseNameError;
use crate::random::random_uniform;

/// The kind of work a task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelType {
    /// Does nothing.
    Empty,
    /// Integer multiply-modulo loop.
    BusyWait,
    /// Copies scratch memory.
    MemoryBound,
    /// Dense matrix multiply on scratch memory.
    ComputeDgemm,
    /// `y += x` on scratch memory.
    MemoryDaxpy,
    /// Floating-point multiply-add loop on 64 lanes.
    ComputeBound,
    /// Floating-point multiply-add loop on 32 lanes.
    ComputeBound2,
    /// Not implemented by Task Bench; refused by [`crate::App`].
    IoBound,
    /// `compute_bound` with imbalanced per-task iteration counts.
    LoadImbalance,
}

impl KernelType {
    /// All kernel types, in the reference's enum order.
    pub const ALL: [KernelType; 9] = [
        Self::Empty,
        Self::BusyWait,
        Self::MemoryBound,
        Self::ComputeDgemm,
        Self::MemoryDaxpy,
        Self::ComputeBound,
        Self::ComputeBound2,
        Self::IoBound,
        Self::LoadImbalance,
    ];

    /// The name used on the command line (`-kernel NAME`) and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::BusyWait => "busy_wait",
            Self::MemoryBound => "memory_bound",
            Self::ComputeDgemm => "compute_dgemm",
            Self::MemoryDaxpy => "memory_daxpy",
            Self::ComputeBound => "compute_bound",
            Self::ComputeBound2 => "compute_bound2",
            Self::IoBound => "io_bound",
            Self::LoadImbalance => "load_imbalance",
        }
    }

    /// Whether the kernel reads and writes the scratch buffer.
    pub fn uses_scratch(self) -> bool {
        matches!(
            self,
            Self::MemoryBound | Self::ComputeDgemm | Self::MemoryDaxpy
        )
    }
}

impl fmt::Display for KernelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KernelType {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ParseNameError::lookup(&Self::ALL, Self::name, "kernel type", s)
    }
}

/// A kernel and its parameters (the reference's `kernel_t`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Kernel {
    /// Which kernel, `-kernel`.
    pub kernel_type: KernelType,
    /// Iterations per task, `-iter`.
    pub iterations: i64,
    /// Number of samples the scratch buffer is cut into, `-sample`.
    pub samples: i32,
    /// Imbalance as a fraction of the iterations, `-imbalance` (0..=2).
    pub imbalance: f64,
}

impl Default for Kernel {
    /// `empty`, 0 iterations, 16 samples, no imbalance (the reference's default).
    fn default() -> Self {
        Kernel {
            kernel_type: KernelType::Empty,
            iterations: 0,
            samples: 16,
            imbalance: 0.0,
        }
    }
}

impl Kernel {
    /// A kernel of `kernel_type` running `iterations` iterations, other
    /// parameters at their defaults.
    pub fn new(kernel_type: KernelType, iterations: i64) -> Self {
        Kernel {
            kernel_type,
            iterations,
            ..Kernel::default()
        }
    }

    /// The iteration count `load_imbalance` uses for task `(timestep, point)`
    /// of graph `graph_index`: `round((1 + (u - 0.5) * imbalance) * iterations)`
    /// with `u` drawn from the seed `(graph_index, timestep, point)`.
    pub fn imbalance_iterations(&self, graph_index: i64, timestep: i64, point: i64) -> i64 {
        let u = random_uniform(&[graph_index, timestep, point]);
        let it = ((1.0 + (u - 0.5) * self.imbalance) * self.iterations as f64).round() as i64;
        debug_assert!(it >= 0);
        it
    }

    /// Run the kernel for task `(timestep, point)` of graph `graph_index` on
    /// `scratch` and return a value derived from the work (kept opaque to
    /// the optimizer, so the work cannot be removed).
    ///
    /// # Panics
    /// For `io_bound` (not implemented by the reference either), and for the
    /// scratch kernels when `scratch` is empty or `samples` is not positive.
    pub fn execute(&self, graph_index: i64, timestep: i64, point: i64, scratch: &mut [u8]) -> f64 {
        let r = match self.kernel_type {
            KernelType::Empty => 0.0,
            KernelType::BusyWait => busy_wait(self.iterations) as f64,
            KernelType::MemoryBound => {
                memory_bound(self.iterations, self.samples, timestep, scratch);
                0.0
            }
            KernelType::ComputeDgemm => dgemm(self.iterations, scratch),
            KernelType::MemoryDaxpy => daxpy(self.iterations, self.samples, timestep, scratch),
            KernelType::ComputeBound => compute_bound(self.iterations),
            KernelType::ComputeBound2 => compute_bound2(self.iterations),
            KernelType::IoBound => {
                panic!("the io_bound kernel is not implemented (as in Task Bench)")
            }
            KernelType::LoadImbalance => {
                compute_bound(self.imbalance_iterations(graph_index, timestep, point))
            }
        };
        black_box(r)
    }
}

/// `acc = acc * 139 mod (2^31 - 1)`, `iterations` times.
pub fn busy_wait(iterations: i64) -> i64 {
    let mut acc: i64 = 113;
    for _ in 0..black_box(iterations) {
        acc = acc * 139 % 2_147_483_647;
    }
    black_box(acc)
}

/// 64 lanes of `a = a * a + a` per iteration (2 FLOPs each), then the
/// product of the lanes (64 FLOPs), as the reference counts them.
pub fn compute_bound(iterations: i64) -> f64 {
    let mut a = [0.0f64; 64];
    for (i, x) in a.iter_mut().enumerate() {
        // The reference's AVX2 build starts the four lanes of each vector at
        // 4, 3, 2, 1; black_box keeps the start opaque to constant folding.
        *x = black_box((4 - (i % 4)) as f64);
    }
    for _ in 0..black_box(iterations) {
        for x in a.iter_mut() {
            *x = *x * *x + *x;
        }
    }
    black_box(a.iter().product())
}

/// 32 lanes of `c += a * b` per iteration (2 FLOPs each), then their sum.
pub fn compute_bound2(iterations: i64) -> f64 {
    let a = black_box([1.2345f64; 32]);
    let b = black_box([1.010101f64; 32]);
    let mut c = [0.0f64; 32];
    for _ in 0..black_box(iterations) {
        for i in 0..32 {
            c[i] += a[i] * b[i];
        }
    }
    black_box(c.iter().sum())
}

/// Copy the first half of `chunk` onto its second half (the reference's
/// `copy`, which reads `len/2` bytes and writes `len/2` bytes).
fn copy_half(chunk: &mut [u8]) {
    let half = chunk.len() / 2;
    let (src, dst) = chunk.split_at_mut(half);
    dst[..half].copy_from_slice(src);
    black_box(&mut *dst);
}

/// The reference's `execute_kernel_memory`: `iterations` sample-sized copies,
/// walking the samples round-robin starting at `(timestep * iterations) %
/// samples`, batched into contiguous runs.
pub fn memory_bound(iterations: i64, samples: i32, timestep: i64, scratch: &mut [u8]) {
    assert!(
        !scratch.is_empty(),
        "memory_bound needs scratch memory (-scratch)"
    );
    assert!(samples > 0, "memory_bound needs -sample > 0");
    let samples = i64::from(samples);
    let sample_bytes = scratch.len() / samples as usize;
    let mut run = |start_idx: i64, num_iter: i64| {
        let start = start_idx as usize * sample_bytes;
        copy_half(&mut scratch[start..start + num_iter as usize * sample_bytes]);
    };
    let mut iter = 0;
    // Prologue: from the starting sample to the end of the buffer.
    let start_idx = (timestep * iterations + iter) % samples;
    let num_iter = samples.min(start_idx + iterations) - start_idx;
    if num_iter > 0 {
        run(start_idx, num_iter);
        iter += num_iter;
    }
    // Body: whole passes over all samples.
    while iter + samples <= iterations {
        run((timestep * iterations + iter) % samples, samples);
        iter += samples;
    }
    // Epilogue: the remaining samples.
    let start_idx = (timestep * iterations + iter) % samples;
    let num_iter = iterations - iter;
    if num_iter > 0 {
        run(start_idx, num_iter);
        iter += num_iter;
    }
    debug_assert_eq!(iter, iterations);
}

fn read_f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// `iterations` times `C += A * B` on `m × m` column-major matrices stored
/// back to back in `scratch` (`m = ⌊√(scratch / 24)⌋`, as the reference
/// sizes its BLAS call).
pub fn dgemm(iterations: i64, scratch: &mut [u8]) -> f64 {
    assert!(
        !scratch.is_empty(),
        "compute_dgemm needs scratch memory (-scratch)"
    );
    let n = scratch.len() / (3 * 8);
    let m = (n as f64).sqrt() as usize;
    let a = read_f64s(&scratch[..m * m * 8]);
    let b = read_f64s(&scratch[n * 8..(n + m * m) * 8]);
    let c_bytes = &mut scratch[2 * n * 8..(2 * n + m * m) * 8];
    let mut c = read_f64s(c_bytes);
    for _ in 0..iterations {
        for j in 0..m {
            for k in 0..m {
                let bkj = b[k + j * m];
                for i in 0..m {
                    c[i + j * m] += a[i + k * m] * bkj;
                }
            }
        }
    }
    for (dst, v) in c_bytes.chunks_exact_mut(8).zip(&c) {
        dst.copy_from_slice(&v.to_ne_bytes());
    }
    black_box(c.first().copied().unwrap_or(0.0))
}

/// `iterations` times `y += x` over one sample of the scratch buffer (`x`
/// and `y` are its two halves), walking the samples round-robin.
pub fn daxpy(iterations: i64, samples: i32, timestep: i64, scratch: &mut [u8]) -> f64 {
    assert!(
        !scratch.is_empty(),
        "memory_daxpy needs scratch memory (-scratch)"
    );
    assert!(samples > 0, "memory_daxpy needs -sample > 0");
    let sample_bytes = scratch.len() / samples as usize;
    let n = sample_bytes / 16;
    let mut acc = 0.0;
    for iter in 0..iterations {
        let idx = ((timestep * iterations + iter) % i64::from(samples)) as usize;
        let sample = &mut scratch[idx * sample_bytes..(idx + 1) * sample_bytes];
        let (x, y) = sample.split_at_mut(n * 8);
        for (xc, yc) in x.chunks_exact(8).zip(y.chunks_exact_mut(8)) {
            let xv = f64::from_ne_bytes(xc.try_into().expect("8 bytes"));
            let yv = f64::from_ne_bytes((&*yc).try_into().expect("8 bytes"));
            yc.copy_from_slice(&(yv + xv).to_ne_bytes());
        }
        acc += n as f64;
    }
    black_box(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in KernelType::ALL {
            assert_eq!(k.name().parse::<KernelType>().unwrap(), k);
        }
        assert!("compute".parse::<KernelType>().is_err());
    }

    #[test]
    fn busy_wait_value() {
        // 113 * 139^3 mod (2^31 - 1)
        assert_eq!(busy_wait(3), 113 * 139 * 139 * 139);
        // Reduced stepwise modulo 2^31 - 1: 809_094_677.
        let mut acc: u64 = 113;
        for _ in 0..5 {
            acc = acc * 139 % 2_147_483_647;
        }
        assert_eq!(busy_wait(5), acc as i64);
        assert_eq!(acc, 809_094_677);
        assert_eq!(busy_wait(0), 113);
    }

    #[test]
    fn compute_kernels_do_their_arithmetic() {
        // One iteration from 4,3,2,1: 20,12,6,2 per group of four lanes.
        let expect: f64 = (20.0f64 * 12.0 * 6.0 * 2.0).powi(16);
        assert!((compute_bound(1) / expect - 1.0).abs() < 1e-12);
        assert_eq!(compute_bound(0), (24.0f64).powi(16));
        let c2 = compute_bound2(10);
        assert!((c2 - 32.0 * 10.0 * 1.2345 * 1.010101).abs() < 1e-9);
    }

    #[test]
    fn memory_bound_copies_within_bounds() {
        // 64 bytes, 4 samples of 16 bytes; any iteration count and timestep
        // stays inside the buffer and copies half of each run onto the other.
        for iterations in 0..20 {
            for timestep in 0..5 {
                let mut s: Vec<u8> = (0..64).collect();
                memory_bound(iterations, 4, timestep, &mut s);
            }
        }
        let mut s: Vec<u8> = (0..64).collect();
        memory_bound(1, 4, 0, &mut s);
        assert_eq!(&s[8..16], &s[0..8]);
        assert_eq!(&s[16..], &(16..64).collect::<Vec<u8>>()[..]);
    }

    #[test]
    fn dgemm_and_daxpy_compute() {
        // 2x2 matrices of ones need 3*4 doubles; C starts at 0.
        let mut s = vec![0u8; 3 * 4 * 8];
        for (i, w) in s.chunks_exact_mut(8).enumerate() {
            let v: f64 = if i < 8 { 1.0 } else { 0.0 };
            w.copy_from_slice(&v.to_ne_bytes());
        }
        dgemm(3, &mut s);
        let c = read_f64s(&s[64..]);
        assert_eq!(c, vec![6.0; 4]);

        let mut s = vec![0u8; 32];
        s[..8].copy_from_slice(&2.0f64.to_ne_bytes());
        daxpy(5, 1, 0, &mut s);
        assert_eq!(read_f64s(&s[16..24]), vec![10.0]);
    }

    #[test]
    fn imbalance_iterations_spread() {
        let k = Kernel {
            kernel_type: KernelType::LoadImbalance,
            iterations: 1000,
            samples: 16,
            imbalance: 1.0,
        };
        let its: Vec<i64> = (0..100).map(|p| k.imbalance_iterations(0, 1, p)).collect();
        assert!(its.iter().all(|&i| (500..=1500).contains(&i)));
        assert!(its.iter().any(|&i| i != 1000));
        let flat = Kernel {
            imbalance: 0.0,
            ..k
        };
        assert_eq!(flat.imbalance_iterations(0, 1, 7), 1000);
    }
}
