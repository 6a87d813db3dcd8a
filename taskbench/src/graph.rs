//! Task graphs: the dependence patterns of Task Bench and the per-task entry
//! point `execute_point` that validates inputs, stamps the output and runs
//! the kernel.
//!
//! A graph has `timesteps` rows of at most `max_width` points. Row `t` holds
//! the points `offset_at_timestep(t) .. offset_at_timestep(t) +
//! width_at_timestep(t)`. A task `(t, p)` depends on points of row `t - 1`
//! given by `dependencies(dependence_set_at_timestep(t), p)`, restricted to
//! the points that exist in row `t - 1`; `reverse_dependencies(dset, q)`
//! lists the points of row `t` that consume `(t - 1, q)` (again before that
//! restriction).

use std::fmt;
use std::str::FromStr;

use crate::error::{ExecuteError, ParseNameError};
use crate::kernel::{Kernel, KernelType};
use crate::random::random_uniform;

/// Size of one `(timestep, point)` record that tasks write into their output
/// (two `i64`s, like the reference's `std::pair<long, long>`).
pub const RECORD_BYTES: usize = 16;

/// The value every 8-byte word of a scratch buffer is set to by
/// [`TaskGraph::prepare_scratch`]; `execute_point` checks the first word.
pub const SCRATCH_MAGIC: u64 = 0x5C4A_7C8B;

/// The dependence pattern between consecutive timesteps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DependenceType {
    /// No dependencies at all.
    Trivial,
    /// Each point depends on itself in the previous timestep.
    NoComm,
    /// Each point depends on itself and its two neighbours.
    Stencil1d,
    /// `Stencil1d` with wrap-around at both ends.
    Stencil1dPeriodic,
    /// A diamond (wavefront) of growing then shrinking rows.
    Dom,
    /// A tree that doubles its width every timestep.
    Tree,
    /// A butterfly: partner points at distance `2^dset`.
    Fft,
    /// Every point depends on every point.
    AllToAll,
    /// `radix` consecutive points around each point.
    Nearest,
    /// `radix` points spread over the row, rotating with the period.
    Spread,
    /// A random subset (`fraction`) of the `radix` nearest points.
    RandomNearest,
    /// Accepted by the reference's parser but not implemented there;
    /// [`crate::App`] refuses it.
    RandomSpread,
}

impl DependenceType {
    /// All types, in the reference's enum order.
    pub const ALL: [DependenceType; 12] = [
        Self::Trivial,
        Self::NoComm,
        Self::Stencil1d,
        Self::Stencil1dPeriodic,
        Self::Dom,
        Self::Tree,
        Self::Fft,
        Self::AllToAll,
        Self::Nearest,
        Self::Spread,
        Self::RandomNearest,
        Self::RandomSpread,
    ];

    /// The name used on the command line (`-type NAME`) and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Trivial => "trivial",
            Self::NoComm => "no_comm",
            Self::Stencil1d => "stencil_1d",
            Self::Stencil1dPeriodic => "stencil_1d_periodic",
            Self::Dom => "dom",
            Self::Tree => "tree",
            Self::Fft => "fft",
            Self::AllToAll => "all_to_all",
            Self::Nearest => "nearest",
            Self::Spread => "spread",
            Self::RandomNearest => "random_nearest",
            Self::RandomSpread => "random_spread",
        }
    }

    /// Whether this pattern repeats with a user-set `-period` (spread, random).
    pub fn needs_period(self) -> bool {
        matches!(self, Self::Spread | Self::RandomNearest)
    }

    /// Whether the reference implements dependencies for this type.
    pub fn is_implemented(self) -> bool {
        self != Self::RandomSpread
    }
}

impl fmt::Display for DependenceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DependenceType {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ParseNameError::lookup(&Self::ALL, Self::name, "dependence type", s)
    }
}

/// An inclusive interval of points `start ..= end` (empty when `end < start`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interval {
    /// First point.
    pub start: i64,
    /// Last point (inclusive).
    pub end: i64,
}

impl Interval {
    /// `start ..= end`.
    pub const fn new(start: i64, end: i64) -> Self {
        Interval { start, end }
    }

    /// The points of the interval.
    pub fn points(self) -> std::ops::RangeInclusive<i64> {
        self.start..=self.end
    }

    /// Number of points (0 when empty).
    pub fn len(self) -> i64 {
        (self.end - self.start + 1).max(0)
    }

    /// Whether the interval holds no point.
    pub fn is_empty(self) -> bool {
        self.end < self.start
    }

    /// Whether `point` lies in the interval.
    pub fn contains(self, point: i64) -> bool {
        self.start <= point && point <= self.end
    }
}

impl From<(i64, i64)> for Interval {
    fn from((start, end): (i64, i64)) -> Self {
        Interval { start, end }
    }
}

/// One task graph: its shape, dependence pattern and kernel. Field names and
/// meanings are those of the reference's `task_graph_t`; build one with
/// [`TaskGraph::new`] or through [`crate::App`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskGraph {
    /// Index of the graph within its [`crate::App`] (seeds the random patterns).
    pub graph_index: i64,
    /// Number of timesteps (rows), `-steps`.
    pub timesteps: i64,
    /// Maximum number of points in a row, `-width`.
    pub max_width: i64,
    /// Dependence pattern, `-type`.
    pub dependence: DependenceType,
    /// Number of dependencies in nearest/spread/random patterns, `-radix`.
    pub radix: i64,
    /// Period of spread/random patterns, `-period` (0 for the others).
    pub period: i64,
    /// Fraction of connected dependencies in random patterns, `-fraction`.
    pub fraction_connected: f64,
    /// The kernel every task runs.
    pub kernel: Kernel,
    /// Bytes each task outputs, `-output` (at least [`RECORD_BYTES`]).
    pub output_bytes_per_task: usize,
    /// Scratch bytes per task (per point, kept across timesteps), `-scratch`.
    pub scratch_bytes_per_task: usize,
    /// `-field` (0 means "same as timesteps" before [`crate::App`] fixes it up).
    pub nb_fields: i64,
}

impl Default for TaskGraph {
    /// The reference's `default_graph(0)`, with the period already resolved.
    fn default() -> Self {
        TaskGraph {
            graph_index: 0,
            timesteps: 4,
            max_width: 4,
            dependence: DependenceType::Trivial,
            radix: 3,
            period: 0,
            fraction_connected: 0.25,
            kernel: Kernel::default(),
            output_bytes_per_task: RECORD_BYTES,
            scratch_bytes_per_task: 0,
            nb_fields: 4,
        }
    }
}

/// `max(0, x)` etc. on i64, to keep the pattern code close to its definition.
#[inline]
fn clamp_interval(start: i64, end: i64, min_value: i64, max_value: i64) -> (i64, i64) {
    if end < min_value {
        (min_value, min_value - 1)
    } else if start > max_value {
        (max_value, max_value - 1)
    } else {
        (start.max(min_value), end.min(max_value))
    }
}

impl TaskGraph {
    /// A graph with the reference's defaults for everything but the shape,
    /// pattern and kernel (radix 3, fraction 0.25, 16 output bytes, no
    /// scratch, period 3 for spread/random and 0 otherwise).
    pub fn new(timesteps: i64, max_width: i64, dependence: DependenceType, kernel: Kernel) -> Self {
        TaskGraph {
            timesteps,
            max_width,
            dependence,
            kernel,
            period: if dependence.needs_period() { 3 } else { 0 },
            nb_fields: timesteps,
            ..TaskGraph::default()
        }
    }

    /// First point of row `timestep` (0 for `timestep < 0`).
    pub fn offset_at_timestep(&self, timestep: i64) -> i64 {
        if timestep < 0 {
            return 0;
        }
        match self.dependence {
            DependenceType::Dom => (timestep + self.max_width - self.timesteps).max(0),
            _ => 0,
        }
    }

    /// Number of points in row `timestep` (0 for `timestep < 0`).
    pub fn width_at_timestep(&self, timestep: i64) -> i64 {
        if timestep < 0 {
            return 0;
        }
        match self.dependence {
            DependenceType::Dom => self
                .max_width
                .min((timestep + 1).min(self.timesteps - timestep)),
            DependenceType::Tree => self.max_width.min(1i64 << timestep.min(62)),
            _ => self.max_width,
        }
    }

    /// The points of row `timestep` as an interval (empty before row 0).
    pub fn points_at_timestep(&self, timestep: i64) -> Interval {
        let offset = self.offset_at_timestep(timestep);
        Interval::new(offset, offset + self.width_at_timestep(timestep) - 1)
    }

    /// Number of distinct dependence sets.
    pub fn max_dependence_sets(&self) -> i64 {
        match self.dependence {
            // ceil(log2(max_width)), computed exactly on integers.
            DependenceType::Fft => {
                if self.max_width <= 1 {
                    0
                } else {
                    i64::from(64 - ((self.max_width - 1) as u64).leading_zeros())
                }
            }
            DependenceType::Spread
            | DependenceType::RandomNearest
            | DependenceType::RandomSpread => self.period,
            _ => 1,
        }
    }

    /// Number of timesteps after which the pattern of dependence sets repeats.
    pub fn timestep_period(&self) -> i64 {
        self.max_dependence_sets()
    }

    /// The dependence set used between row `timestep - 1` and row `timestep`.
    pub fn dependence_set_at_timestep(&self, timestep: i64) -> i64 {
        let sets = self.max_dependence_sets();
        match self.dependence {
            DependenceType::Fft => (timestep + sets - 1) % sets,
            DependenceType::Spread
            | DependenceType::RandomNearest
            | DependenceType::RandomSpread => timestep % sets,
            _ => 0,
        }
    }

    /// The points of the previous row that `point` depends on under `dset`,
    /// as inclusive intervals in the reference's order (not yet restricted to
    /// the points that exist in the previous row).
    pub fn dependencies(&self, dset: i64, point: i64) -> Vec<Interval> {
        let mut out = Vec::new();
        self.for_each_dependency(dset, point, |i| out.push(i));
        out
    }

    /// The points of the next row that consume `point` under `dset` (not yet
    /// restricted to the points that exist in the next row).
    pub fn reverse_dependencies(&self, dset: i64, point: i64) -> Vec<Interval> {
        let mut out = Vec::new();
        self.for_each_reverse_dependency(dset, point, |i| out.push(i));
        out
    }

    /// [`Self::dependencies`] without allocating: calls `f` on each interval.
    pub fn for_each_dependency(&self, dset: i64, point: i64, f: impl FnMut(Interval)) {
        self.pattern(dset, point, false, f);
    }

    /// [`Self::reverse_dependencies`] without allocating.
    pub fn for_each_reverse_dependency(&self, dset: i64, point: i64, f: impl FnMut(Interval)) {
        self.pattern(dset, point, true, f);
    }

    /// Upper bound on the number of intervals `dependencies` returns (the
    /// reference's `num_dependencies`; same for the reverse direction).
    pub fn num_dependencies(&self, _dset: i64, _point: i64) -> usize {
        match self.dependence {
            DependenceType::Trivial => 0,
            DependenceType::Stencil1dPeriodic => {
                if self.max_width > 1 {
                    2
                } else {
                    3
                }
            }
            DependenceType::Fft => 3,
            DependenceType::Nearest => usize::from(self.radix > 0),
            DependenceType::Spread
            | DependenceType::RandomNearest
            | DependenceType::RandomSpread => self.radix.max(0) as usize,
            _ => 1,
        }
    }

    /// The input points of task `(timestep, point)`, in the order
    /// `execute_point` expects its inputs: the dependencies restricted to the
    /// points that exist at `timestep - 1`.
    pub fn input_points(&self, timestep: i64, point: i64) -> Vec<i64> {
        let last = self.points_at_timestep(timestep - 1);
        let mut out = Vec::new();
        self.for_each_dependency(self.dependence_set_at_timestep(timestep), point, |i| {
            out.extend(i.points().filter(|&p| last.contains(p)));
        });
        out
    }

    /// The points of row `timestep + 1` that consume the output of
    /// `(timestep, point)` (the reverse dependencies restricted to row
    /// `timestep + 1`).
    pub fn output_points(&self, timestep: i64, point: i64) -> Vec<i64> {
        let next = self.points_at_timestep(timestep + 1);
        if timestep + 1 >= self.timesteps {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.for_each_reverse_dependency(
            self.dependence_set_at_timestep(timestep + 1),
            point,
            |i| {
                out.extend(i.points().filter(|&p| next.contains(p)));
            },
        );
        out
    }

    /// Number of task-to-task dependencies of the graph (edges between
    /// existing tasks), as counted by `report_timing`.
    pub fn total_dependencies(&self) -> i64 {
        let mut n = 0;
        for t in 0..self.timesteps {
            let last = self.points_at_timestep(t - 1);
            let dset = self.dependence_set_at_timestep(t);
            for p in self.points_at_timestep(t).points() {
                self.for_each_dependency(dset, p, |i| {
                    let (a, b) = clamp_interval(i.start, i.end, last.start, last.end);
                    n += b - a + 1;
                });
            }
        }
        n
    }

    /// Number of tasks (sum of the row widths).
    pub fn total_tasks(&self) -> i64 {
        (0..self.timesteps).map(|t| self.width_at_timestep(t)).sum()
    }

    /// FLOPs of the whole graph.
    pub fn total_flops(&self) -> i64 {
        let mut n = 0;
        for t in 0..self.timesteps {
            for p in self.points_at_timestep(t).points() {
                n += self.flops_per_task(t, p);
            }
        }
        n
    }

    /// Bytes (of scratch memory) the whole graph's kernels touch.
    pub fn total_bytes(&self) -> i64 {
        let mut n = 0;
        for t in 0..self.timesteps {
            for p in self.points_at_timestep(t).points() {
                n += self.bytes_per_task(t, p);
            }
        }
        n
    }

    /// FLOPs of task `(timestep, point)` (the reference's `count_flops_per_task`).
    pub fn flops_per_task(&self, timestep: i64, point: i64) -> i64 {
        let k = &self.kernel;
        match k.kernel_type {
            KernelType::ComputeDgemm => {
                let n = ((self.scratch_bytes_per_task / (3 * 8)) as f64).sqrt() as i64;
                2 * n * n * n * k.iterations
            }
            KernelType::ComputeBound => 2 * 64 * k.iterations + 64,
            KernelType::ComputeBound2 => 2 * 32 * k.iterations,
            KernelType::LoadImbalance => {
                2 * 64 * k.imbalance_iterations(self.graph_index, timestep, point) + 64
            }
            KernelType::Empty
            | KernelType::BusyWait
            | KernelType::MemoryBound
            | KernelType::MemoryDaxpy
            | KernelType::IoBound => 0,
        }
    }

    /// Bytes task `(timestep, point)` touches (the reference's `count_bytes_per_task`).
    pub fn bytes_per_task(&self, _timestep: i64, _point: i64) -> i64 {
        let k = &self.kernel;
        match k.kernel_type {
            KernelType::MemoryBound | KernelType::MemoryDaxpy if k.samples > 0 => {
                self.scratch_bytes_per_task as i64 * k.iterations / i64::from(k.samples)
            }
            _ => 0,
        }
    }

    /// Fill a scratch buffer with [`SCRATCH_MAGIC`] words (call once per
    /// point before the first `execute_point`). `scratch.len()` must be a
    /// multiple of 8.
    pub fn prepare_scratch(scratch: &mut [u8]) {
        assert!(
            scratch.len() % 8 == 0,
            "scratch bytes must be a multiple of 8"
        );
        for word in scratch.chunks_exact_mut(8) {
            word.copy_from_slice(&SCRATCH_MAGIC.to_ne_bytes());
        }
    }

    /// Run task `(timestep, point)`: check that `inputs` are the outputs of
    /// its dependencies at `timestep - 1` (in [`Self::input_points`] order;
    /// extra trailing inputs are ignored as in the reference), check the
    /// buffer sizes and the scratch magic, stamp `(timestep, point)` into
    /// every 16-byte record of `output`, then run the kernel on `scratch`.
    ///
    /// `output` must be `output_bytes_per_task` long and `scratch`
    /// `scratch_bytes_per_task` long (prepared with [`Self::prepare_scratch`]).
    /// Records are two native-endian `i64`s, as the reference's
    /// `std::pair<long, long>`.
    pub fn execute_point(
        &self,
        timestep: i64,
        point: i64,
        output: &mut [u8],
        inputs: &[&[u8]],
        scratch: &mut [u8],
    ) -> Result<(), ExecuteError> {
        let graph = self.graph_index;
        if !(0..self.timesteps).contains(&timestep)
            || !self.points_at_timestep(timestep).contains(point)
        {
            return Err(ExecuteError::NoSuchTask {
                graph,
                timestep,
                point,
            });
        }
        let last = self.points_at_timestep(timestep - 1);
        let dset = self.dependence_set_at_timestep(timestep);
        let mut idx = 0usize;
        let mut err = None;
        self.for_each_dependency(dset, point, |interval| {
            for dep in interval.points() {
                if err.is_some() {
                    return;
                }
                if !last.contains(dep) {
                    continue;
                }
                err = self.check_input(timestep, point, idx, dep, inputs.get(idx).copied());
                idx += 1;
            }
        });
        if let Some(e) = err {
            return Err(e);
        }

        if output.len() != self.output_bytes_per_task || output.len() < RECORD_BYTES {
            return Err(ExecuteError::OutputSize {
                graph,
                timestep,
                point,
                got: output.len(),
                expected: self.output_bytes_per_task,
            });
        }
        let mut record = [0u8; RECORD_BYTES];
        record[..8].copy_from_slice(&timestep.to_ne_bytes());
        record[8..].copy_from_slice(&point.to_ne_bytes());
        for chunk in output.chunks_exact_mut(RECORD_BYTES) {
            chunk.copy_from_slice(&record);
        }

        if scratch.len() != self.scratch_bytes_per_task {
            return Err(ExecuteError::ScratchSize {
                graph,
                timestep,
                point,
                got: scratch.len(),
                expected: self.scratch_bytes_per_task,
            });
        }
        if !scratch.is_empty() {
            let word = scratch
                .get(..8)
                .map(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")));
            if word != Some(SCRATCH_MAGIC) {
                return Err(ExecuteError::ScratchNotPrepared {
                    graph,
                    timestep,
                    point,
                });
            }
        }

        self.kernel
            .execute(self.graph_index, timestep, point, scratch);
        Ok(())
    }

    fn check_input(
        &self,
        timestep: i64,
        point: i64,
        idx: usize,
        dep: i64,
        input: Option<&[u8]>,
    ) -> Option<ExecuteError> {
        let graph = self.graph_index;
        let Some(input) = input else {
            return Some(ExecuteError::MissingInput {
                graph,
                timestep,
                point,
                input: idx,
                dep,
            });
        };
        if input.len() != self.output_bytes_per_task || input.len() < RECORD_BYTES {
            return Some(ExecuteError::InputSize {
                graph,
                timestep,
                point,
                input: idx,
                got: input.len(),
                expected: self.output_bytes_per_task,
            });
        }
        for (position, rec) in input.chunks_exact(RECORD_BYTES).enumerate() {
            let t = i64::from_ne_bytes(rec[..8].try_into().expect("8 bytes"));
            let p = i64::from_ne_bytes(rec[8..].try_into().expect("8 bytes"));
            if t != timestep - 1 || p != dep {
                return Some(ExecuteError::CorruptInput {
                    graph,
                    timestep,
                    point,
                    input: idx,
                    position,
                    expected: (timestep - 1, dep),
                    got: (t, p),
                });
            }
        }
        None
    }

    /// The dependence patterns. `reverse` selects the consumers of `point`
    /// instead of its producers.
    fn pattern(&self, dset: i64, point: i64, reverse: bool, mut f: impl FnMut(Interval)) {
        let w = self.max_width;
        let radix = self.radix;
        match self.dependence {
            DependenceType::Trivial => {}
            DependenceType::NoComm => f(Interval::new(point, point)),
            DependenceType::Stencil1d => {
                f(Interval::new((point - 1).max(0), (point + 1).min(w - 1)))
            }
            DependenceType::Stencil1dPeriodic => {
                f(Interval::new((point - 1).max(0), (point + 1).min(w - 1)));
                if point - 1 < 0 {
                    f(Interval::new(w - 1, w - 1));
                }
                if point + 1 >= w {
                    f(Interval::new(0, 0));
                }
            }
            DependenceType::Dom => {
                if reverse {
                    f(Interval::new(point, (point + 1).min(w - 1)))
                } else {
                    f(Interval::new((point - 1).max(0), point))
                }
            }
            DependenceType::Tree => {
                if reverse {
                    let (c1, c2) = (point * 2, point * 2 + 1);
                    if c1 < w && c2 < w {
                        f(Interval::new(c1, c2));
                    } else if c1 < w {
                        f(Interval::new(c1, c1));
                    }
                } else {
                    f(Interval::new(point / 2, point / 2));
                }
            }
            DependenceType::Fft => {
                // Symmetric: the same partners in both directions.
                let d1 = point - (1i64 << dset);
                let d2 = point + (1i64 << dset);
                if d1 >= 0 {
                    f(Interval::new(d1, d1));
                }
                f(Interval::new(point, point));
                if d2 < w {
                    f(Interval::new(d2, d2));
                }
            }
            DependenceType::AllToAll => f(Interval::new(0, w - 1)),
            DependenceType::Nearest => {
                if radix > 0 {
                    let (before, after) = if reverse {
                        ((radix - 1) / 2, radix / 2)
                    } else {
                        (radix / 2, (radix - 1) / 2)
                    };
                    f(Interval::new(
                        (point - before).max(0),
                        (point + after).min(w - 1),
                    ));
                }
            }
            DependenceType::Spread => {
                for i in 0..radix {
                    let shift = i * w / radix + if i > 0 { dset } else { 0 };
                    let dep = if reverse {
                        (point - shift).rem_euclid(w)
                    } else {
                        (point + shift) % w
                    };
                    f(Interval::new(dep, dep));
                }
            }
            DependenceType::RandomNearest => {
                let (before, after) = if reverse {
                    ((radix - 1) / 2, radix / 2)
                } else {
                    (radix / 2, (radix - 1) / 2)
                };
                let first = (point - before).max(0);
                let last = (point + after).min(w - 1);
                let mut run_start = -1;
                for i in first..=last {
                    // The hash always takes (producer, consumer) in this order,
                    // so both directions agree on every edge.
                    let (producer, consumer) = if reverse { (point, i) } else { (i, point) };
                    let value =
                        random_uniform(&[self.graph_index, radix, dset, producer, consumer]);
                    let include = value < self.fraction_connected || (radix > 0 && i == point);
                    if include {
                        if run_start < 0 {
                            run_start = i;
                        }
                    } else {
                        if run_start >= 0 {
                            f(Interval::new(run_start, i - 1));
                        }
                        run_start = -1;
                    }
                }
                if run_start >= 0 {
                    f(Interval::new(run_start, last));
                }
            }
            DependenceType::RandomSpread => {
                panic!("random_spread has no dependence function (not implemented by Task Bench)")
            }
        }
    }
}

/// `clamp` of the reference's `report_timing`, exposed for executors that
/// need the same counting.
pub fn clamp(start: i64, end: i64, min_value: i64, max_value: i64) -> (i64, i64) {
    clamp_interval(start, end, min_value, max_value)
}
