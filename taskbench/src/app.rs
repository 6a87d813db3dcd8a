//! `App`: the command line of every Task Bench implementation, its checks,
//! `display` and `report_timing`.

use std::fmt::Write as _;

use crate::cfmt::{c_exp, c_fixed};
use crate::error::AppError;
use crate::graph::{clamp, DependenceType, TaskGraph, RECORD_BYTES};
use crate::kernel::{Kernel, KernelType};

/// One or more task graphs plus the run-wide flags.
#[derive(Clone, Debug, PartialEq)]
pub struct App {
    /// The graphs, in `-and` order; `graphs[i].graph_index == i`.
    pub graphs: Vec<TaskGraph>,
    /// `-nodes`: node count used to estimate local/nonlocal transfers (0: none).
    pub nodes: i64,
    /// `-v` adds 1, `-vv` adds 2.
    pub verbose: i32,
    /// Cleared by `-skip-graph-validation`.
    pub enable_graph_validation: bool,
}

/// Totals over all graphs, as `report_timing` computes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Number of tasks.
    pub tasks: i64,
    /// Number of task-to-task dependencies.
    pub dependencies: i64,
    /// Dependencies within one node's block of points (0 when `nodes == 0`).
    pub local_dependencies: i64,
    /// Dependencies across node blocks (0 when `nodes == 0`).
    pub nonlocal_dependencies: i64,
    /// FLOPs of all kernels.
    pub flops: i64,
    /// Bytes touched by all kernels.
    pub bytes: i64,
    /// `local_dependencies × output bytes`, per graph.
    pub local_transfer: i64,
    /// `nonlocal_dependencies × output bytes`, per graph.
    pub nonlocal_transfer: i64,
}

/// Flags that take a value, with their help text.
const VALUE_FLAGS: &[(&str, &str)] = &[
    (
        "-nodes",
        "number of nodes to use for estimating transfer statistics",
    ),
    ("-steps", "height of task graph"),
    ("-width", "width of task graph"),
    ("-type", "dependency pattern (see available list below)"),
    (
        "-radix",
        "radix of dependency pattern (only for nearest, spread, and random)",
    ),
    (
        "-period",
        "period of dependency pattern (only for spread and random)",
    ),
    (
        "-fraction",
        "fraction of connected dependencies (only for random)",
    ),
    ("-kernel", "kernel type (see available list below)"),
    ("-iter", "number of iterations"),
    ("-output", "output bytes per task"),
    (
        "-scratch",
        "scratch bytes per task (only for memory-bound kernel)",
    ),
    (
        "-sample",
        "number of samples (only for memory-bound kernel)",
    ),
    ("-imbalance", "amount of load imbalance"),
    (
        "-field",
        "number of fields (optimization for certain task bench implementations)",
    ),
];

fn default_graph(graph_index: i64) -> TaskGraph {
    TaskGraph {
        graph_index,
        period: -1,
        nb_fields: 0,
        ..TaskGraph::default()
    }
}

fn finish_graph(mut g: TaskGraph) -> TaskGraph {
    if g.period < 0 {
        g.period = if g.dependence.needs_period() { 3 } else { 0 };
    }
    g
}

fn parse_int(flag: &str, value: &str) -> Result<i64, AppError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| AppError::InvalidNumber {
            flag: flag.to_string(),
            value: value.to_string(),
        })
}

fn parse_float(flag: &str, value: &str) -> Result<f64, AppError> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(AppError::InvalidNumber {
            flag: flag.to_string(),
            value: value.to_string(),
        }),
    }
}

fn range_error(flag: &str, value: &str, requirement: &str) -> AppError {
    AppError::OutOfRange {
        flag: flag.to_string(),
        value: value.to_string(),
        requirement: requirement.to_string(),
    }
}

fn invalid(g: &TaskGraph, reason: String) -> AppError {
    AppError::InvalidGraph {
        graph: g.graph_index,
        reason,
    }
}

impl App {
    /// Parse Task Bench flags (without the program name). Any argument that
    /// is not a Task Bench flag is an error; use [`App::parse_known`] to
    /// let an implementation take flags of its own. The result has passed
    /// [`App::check`].
    pub fn parse<I, S>(args: I) -> Result<App, AppError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let (app, unknown) = App::parse_known(args)?;
        match unknown.into_iter().next() {
            Some(arg) => Err(AppError::UnknownFlag(arg)),
            None => Ok(app),
        }
    }

    /// Parse the process's arguments (skipping the program name), strictly.
    pub fn from_env() -> Result<App, AppError> {
        App::parse(std::env::args().skip(1))
    }

    /// Like [`App::parse`], but arguments that are not Task Bench flags are
    /// returned, in order, instead of refused (the reference ignores them so
    /// that each implementation can add its own).
    pub fn parse_known<I, S>(args: I) -> Result<(App, Vec<String>), AppError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_string()).collect();
        let mut app = App {
            graphs: Vec::new(),
            nodes: 0,
            verbose: 0,
            enable_graph_validation: true,
        };
        let mut unknown = Vec::new();
        let mut graph = default_graph(0);
        let mut i = 0;
        while i < args.len() {
            let flag = args[i].as_str();
            i += 1;
            match flag {
                "-h" => return Err(AppError::HelpRequested),
                "-v" => {
                    app.verbose += 1;
                    continue;
                }
                "-vv" => {
                    app.verbose += 2;
                    continue;
                }
                "-skip-graph-validation" => {
                    app.enable_graph_validation = false;
                    continue;
                }
                "-and" => {
                    app.graphs.push(finish_graph(graph));
                    graph = default_graph(app.graphs.len() as i64);
                    continue;
                }
                _ => {}
            }
            if !VALUE_FLAGS.iter().any(|(f, _)| *f == flag) {
                unknown.push(flag.to_string());
                continue;
            }
            let Some(value) = args.get(i) else {
                return Err(AppError::MissingArgument {
                    flag: flag.to_string(),
                });
            };
            i += 1;
            let v = value.as_str();
            match flag {
                "-nodes" => {
                    let n = parse_int(flag, v)?;
                    if n <= 0 {
                        return Err(range_error(flag, v, "must be > 0"));
                    }
                    app.nodes = n;
                }
                "-steps" | "-width" => {
                    let n = parse_int(flag, v)?;
                    if n <= 0 {
                        return Err(range_error(flag, v, "must be > 0"));
                    }
                    if flag == "-steps" {
                        graph.timesteps = n;
                    } else {
                        graph.max_width = n;
                    }
                }
                "-type" => {
                    graph.dependence = v
                        .parse::<DependenceType>()
                        .map_err(|_| AppError::UnknownDependenceType(v.to_string()))?;
                }
                "-radix" | "-period" | "-iter" | "-scratch" => {
                    let n = parse_int(flag, v)?;
                    if n < 0 {
                        return Err(range_error(flag, v, "must be >= 0"));
                    }
                    match flag {
                        "-radix" => graph.radix = n,
                        "-period" => graph.period = n,
                        "-iter" => graph.kernel.iterations = n,
                        _ => graph.scratch_bytes_per_task = n as usize,
                    }
                }
                "-fraction" => {
                    let x = parse_float(flag, v)?;
                    if !(0.0..=1.0).contains(&x) {
                        return Err(range_error(flag, v, "must be >= 0 and <= 1"));
                    }
                    graph.fraction_connected = x;
                }
                "-kernel" => {
                    graph.kernel.kernel_type = v
                        .parse::<KernelType>()
                        .map_err(|_| AppError::UnknownKernelType(v.to_string()))?;
                }
                "-output" => {
                    let n = parse_int(flag, v)?;
                    if n < RECORD_BYTES as i64 {
                        return Err(range_error(flag, v, &format!("must be >= {RECORD_BYTES}")));
                    }
                    graph.output_bytes_per_task = n as usize;
                }
                "-sample" => {
                    let n = parse_int(flag, v)?;
                    if !(0..=i64::from(i32::MAX)).contains(&n) {
                        return Err(range_error(flag, v, "must be >= 0"));
                    }
                    graph.kernel.samples = n as i32;
                }
                "-imbalance" => {
                    let x = parse_float(flag, v)?;
                    if !(0.0..=2.0).contains(&x) {
                        return Err(range_error(flag, v, "must be >= 0 and <= 2"));
                    }
                    graph.kernel.imbalance = x;
                }
                "-field" => {
                    let n = parse_int(flag, v)?;
                    if n <= 0 {
                        return Err(range_error(flag, v, "must be > 0"));
                    }
                    graph.nb_fields = n;
                }
                _ => unreachable!("every value flag is handled"),
            }
        }
        app.graphs.push(finish_graph(graph));
        for g in &mut app.graphs {
            if g.nb_fields == 0 {
                g.nb_fields = g.timesteps;
            }
        }
        app.check()?;
        Ok((app, unknown))
    }

    /// An `App` of the given graphs (their `graph_index` is set to their
    /// position), checked.
    pub fn from_graphs(graphs: Vec<TaskGraph>, nodes: i64) -> Result<App, AppError> {
        let graphs = graphs
            .into_iter()
            .enumerate()
            .map(|(i, g)| TaskGraph {
                graph_index: i as i64,
                ..g
            })
            .collect();
        let app = App {
            graphs,
            nodes,
            verbose: 0,
            enable_graph_validation: true,
        };
        app.check()?;
        Ok(app)
    }

    /// The reference's checks (period rules, spread's period bound, shapes,
    /// no duplicate dependencies, reverse dependencies mirror dependencies),
    /// plus the cases where the reference would abort or crash later
    /// (`random_spread`, `io_bound`, fft of width 1, spread of radix 0,
    /// scratch kernels without scratch, scratch not a multiple of 8).
    pub fn check(&self) -> Result<(), AppError> {
        for g in &self.graphs {
            check_graph(g)?;
        }
        Ok(())
    }

    /// Total tasks over all graphs.
    pub fn total_tasks(&self) -> i64 {
        self.graphs.iter().map(TaskGraph::total_tasks).sum()
    }

    /// Total dependencies over all graphs.
    pub fn total_dependencies(&self) -> i64 {
        self.graphs.iter().map(TaskGraph::total_dependencies).sum()
    }

    /// Total FLOPs over all graphs.
    pub fn total_flops(&self) -> i64 {
        self.graphs.iter().map(TaskGraph::total_flops).sum()
    }

    /// Total kernel bytes over all graphs.
    pub fn total_bytes(&self) -> i64 {
        self.graphs.iter().map(TaskGraph::total_bytes).sum()
    }

    /// Everything `report_timing` counts.
    pub fn totals(&self) -> Totals {
        let mut tot = Totals::default();
        for g in &self.graphs {
            let (mut local, mut nonlocal) = (0i64, 0i64);
            for t in 0..g.timesteps {
                let last = g.points_at_timestep(t - 1);
                let dset = g.dependence_set_at_timestep(t);
                let row = g.points_at_timestep(t);
                tot.tasks += row.len();
                for p in row.points() {
                    let (mut node_first, mut node_last) = (0, -1);
                    if self.nodes > 0 {
                        let point_node = p * self.nodes / g.max_width;
                        node_first = point_node * g.max_width / self.nodes;
                        node_last = (point_node + 1) * g.max_width / self.nodes - 1;
                    }
                    g.for_each_dependency(dset, p, |dep| {
                        let (lo, hi) = clamp(dep.start, dep.end, last.start, last.end);
                        tot.dependencies += hi - lo + 1;
                        if self.nodes > 0 {
                            let (a, b) = clamp(lo, hi, 0, node_first - 1);
                            nonlocal += b - a + 1;
                            let (a, b) = clamp(lo, hi, node_first, node_last);
                            local += b - a + 1;
                            let (a, b) = clamp(lo, hi, node_last + 1, g.max_width - 1);
                            nonlocal += b - a + 1;
                        }
                    });
                }
            }
            tot.local_dependencies += local;
            tot.nonlocal_dependencies += nonlocal;
            tot.flops += g.total_flops();
            tot.bytes += g.total_bytes();
            tot.local_transfer += local * g.output_bytes_per_task as i64;
            tot.nonlocal_transfer += nonlocal * g.output_bytes_per_task as i64;
        }
        tot
    }

    /// The reference's `App::report_timing` output, line for line (each
    /// line ends with `\n`). Parsers of Task Bench logs read "Total Tasks",
    /// "Total FLOPs", "Total Bytes" and "Elapsed Time ... seconds" from it.
    pub fn report_timing(&self, elapsed_seconds: f64) -> String {
        let t = self.totals();
        let mut s = String::new();
        let _ = writeln!(s, "Total Tasks {}", t.tasks);
        let _ = writeln!(s, "Total Dependencies {}", t.dependencies);
        if self.nodes > 0 {
            let _ = writeln!(
                s,
                "  Local Dependencies {} (estimated)",
                t.local_dependencies
            );
            let _ = writeln!(
                s,
                "  Nonlocal Dependencies {} (estimated)",
                t.nonlocal_dependencies
            );
            let _ = writeln!(s, "  Number of Nodes (used for estimate) {}", self.nodes);
        } else {
            s.push_str("  Unable to estimate local/nonlocal dependencies\n");
        }
        let _ = writeln!(s, "Total FLOPs {}", t.flops);
        let _ = writeln!(s, "Total Bytes {}", t.bytes);
        let _ = writeln!(s, "Elapsed Time {} seconds", c_exp(elapsed_seconds));
        let _ = writeln!(s, "FLOP/s {}", c_exp(t.flops as f64 / elapsed_seconds));
        let _ = writeln!(s, "B/s {}", c_exp(t.bytes as f64 / elapsed_seconds));
        s.push_str("Transfer (estimated):\n");
        if self.nodes > 0 {
            let _ = writeln!(s, "  Local Bytes {}", t.local_transfer);
            let _ = writeln!(s, "  Nonlocal Bytes {}", t.nonlocal_transfer);
            let _ = writeln!(
                s,
                "  Local Bandwidth {} B/s",
                c_exp(t.local_transfer as f64 / elapsed_seconds)
            );
            let _ = writeln!(
                s,
                "  Nonlocal Bandwidth {} B/s",
                c_exp(t.nonlocal_transfer as f64 / elapsed_seconds)
            );
        } else {
            s.push_str("  Unable to estimate local/nonlocal transfer\n");
        }
        s
    }

    /// The reference's `App::display` output (the configuration block that
    /// log parsers read "Iterations:", "Time Steps:", "Max Width:" and
    /// "Output Bytes:" from; with `-v`/`-vv`, every point's dependencies).
    pub fn display(&self) -> String {
        let mut s = String::new();
        s.push_str("Running Task Benchmark\n  Configuration:\n");
        for (i, g) in self.graphs.iter().enumerate() {
            let _ = writeln!(s, "    Task Graph {}:", i + 1);
            let _ = writeln!(s, "      Time Steps: {}", g.timesteps);
            let _ = writeln!(s, "      Max Width: {}", g.max_width);
            let _ = writeln!(s, "      Dependence Type: {}", g.dependence);
            let _ = writeln!(s, "      Radix: {}", g.radix);
            let _ = writeln!(s, "      Period: {}", g.period);
            let _ = writeln!(
                s,
                "      Fraction Connected: {}",
                c_fixed(g.fraction_connected)
            );
            s.push_str("      Kernel:\n");
            let _ = writeln!(s, "        Type: {}", g.kernel.kernel_type);
            let _ = writeln!(s, "        Iterations: {}", g.kernel.iterations);
            let _ = writeln!(s, "        Samples: {}", g.kernel.samples);
            let _ = writeln!(s, "        Imbalance: {}", c_fixed(g.kernel.imbalance));
            let _ = writeln!(s, "      Output Bytes: {}", g.output_bytes_per_task);
            let _ = writeln!(s, "      Scratch Bytes: {}", g.scratch_bytes_per_task);
            if self.verbose > 0 {
                display_points(&mut s, g, self.verbose);
            }
        }
        s
    }

    /// The reference's `-h` text for `program`.
    pub fn help_message(program: &str) -> String {
        let mut s = String::new();
        let help = |name: &str| {
            VALUE_FLAGS
                .iter()
                .find(|(f, _)| *f == name)
                .map_or("", |(_, h)| h)
        };
        let line = |s: &mut String, flag: &str, text: &str| {
            let _ = writeln!(s, "  {flag:<18} {text}");
        };
        let _ = writeln!(s, "{program}: A Task Benchmark");
        s.push_str("\nGeneral options:\n");
        line(&mut s, "-h", "show this help message and exit");
        line(&mut s, "-nodes", help("-nodes"));
        line(&mut s, "-v", "enable verbose output");
        line(&mut s, "-vv", "enable extra verbose output");
        s.push_str("\nOptions for configuring the task graph:\n");
        for (flag, arg) in [
            ("-steps", "INT"),
            ("-width", "INT"),
            ("-type", "DEP"),
            ("-radix", "INT"),
        ] {
            line(&mut s, &format!("{flag} [{arg}]"), help(flag));
        }
        line(&mut s, "-period [INT]", help("-period"));
        line(&mut s, "-fraction [FLOAT]", help("-fraction"));
        line(&mut s, "-and", "start configuring next task graph");
        s.push_str("\nOptions for configuring kernels:\n");
        for (flag, arg) in [
            ("-kernel", "KERNEL"),
            ("-iter", "INT"),
            ("-output", "INT"),
            ("-scratch", "INT"),
            ("-sample", "INT"),
            ("-imbalance", "FLOAT"),
        ] {
            line(&mut s, &format!("{flag} [{arg}]"), help(flag));
        }
        s.push_str("\nSupported dependency patterns:\n");
        let mut deps: Vec<&str> = DependenceType::ALL.iter().map(|d| d.name()).collect();
        deps.sort_unstable();
        for d in deps {
            let _ = writeln!(s, "  {d}");
        }
        s.push_str("\nSupported kernel types:\n");
        let mut kernels: Vec<&str> = KernelType::ALL.iter().map(|k| k.name()).collect();
        kernels.sort_unstable();
        for k in kernels {
            let _ = writeln!(s, "  {k}");
        }
        s.push_str("\nLess frequently used options:\n");
        line(&mut s, "-field [INT]", help("-field"));
        line(
            &mut s,
            "-skip-graph-validation",
            "skip task graph validation",
        );
        s
    }
}

fn display_points(s: &mut String, g: &TaskGraph, verbose: i32) {
    for t in 0..g.timesteps {
        let row = g.points_at_timestep(t);
        let last = g.points_at_timestep(t - 1);
        let dset = g.dependence_set_at_timestep(t);
        let _ = writeln!(
            s,
            "      Timestep {t} (offset {}, width {}, last offset {}, last width {}):",
            row.start,
            row.len(),
            g.offset_at_timestep(t - 1),
            g.width_at_timestep(t - 1)
        );
        s.push_str("        Points:");
        for p in row.points() {
            let _ = write!(s, " {p}");
        }
        s.push_str("\n        Dependencies:\n");
        for p in row.points() {
            let _ = write!(s, "          Point {p}:");
            g.for_each_dependency(dset, p, |dep| {
                for dp in dep.points().filter(|&dp| last.contains(dp)) {
                    let _ = write!(s, " {dp}");
                }
            });
            s.push('\n');
        }
        if verbose > 1 {
            s.push_str("        Reverse Dependencies:\n");
            for p in last.points() {
                let _ = write!(s, "          Point {p}:");
                g.for_each_reverse_dependency(dset, p, |dep| {
                    for dp in dep.points().filter(|&dp| row.contains(dp)) {
                        let _ = write!(s, " {dp}");
                    }
                });
                s.push('\n');
            }
        }
    }
}

/// Per-graph validation (see [`App::check`]).
pub(crate) fn check_graph(g: &TaskGraph) -> Result<(), AppError> {
    let name = g.dependence.name();
    if g.timesteps <= 0 || g.max_width <= 0 {
        return Err(invalid(g, "steps and width must be > 0".into()));
    }
    if !g.dependence.is_implemented() {
        return Err(invalid(
            g,
            format!("Graph type \"{name}\" is not implemented by Task Bench"),
        ));
    }
    if g.dependence.needs_period() && g.period == 0 {
        return Err(invalid(
            g,
            format!("Graph type \"{name}\" requires a non-zero period (specify with -period)"),
        ));
    }
    if !g.dependence.needs_period() && g.period != 0 {
        return Err(invalid(
            g,
            format!("Graph type \"{name}\" does not support user-configurable period"),
        ));
    }
    if g.period < 0 || g.radix < 0 {
        return Err(invalid(g, "period and radix must be >= 0".into()));
    }
    if g.dependence == DependenceType::Spread {
        if g.radix == 0 {
            return Err(invalid(
                g,
                format!("Graph type \"{name}\" requires a radix > 0"),
            ));
        }
        let spread = (g.max_width + g.radix - 1) / g.radix;
        if g.period > spread {
            return Err(invalid(
                g,
                format!("Graph type \"{name}\" requires a period that is at most {spread}"),
            ));
        }
    }
    if g.dependence == DependenceType::RandomNearest && g.radix == 0 {
        // The reference crashes here (it divides by the radix).
        return Err(invalid(
            g,
            format!("Graph type \"{name}\" requires a radix > 0"),
        ));
    }
    if g.dependence == DependenceType::Fft && g.max_width < 2 {
        return Err(invalid(
            g,
            format!("Graph type \"{name}\" requires a width >= 2"),
        ));
    }
    check_kernel(g, &g.kernel)?;
    if g.output_bytes_per_task < RECORD_BYTES {
        return Err(invalid(
            g,
            format!("output bytes must be >= {RECORD_BYTES}"),
        ));
    }
    if g.scratch_bytes_per_task % 8 != 0 {
        return Err(invalid(g, "scratch bytes must be a multiple of 8".into()));
    }

    for t in 0..g.timesteps {
        let (offset, width) = (g.offset_at_timestep(t), g.width_at_timestep(t));
        let dset = g.dependence_set_at_timestep(t);
        if offset < 0
            || width < 0
            || offset + width > g.max_width
            || !(0..g.max_dependence_sets()).contains(&dset)
        {
            return Err(invalid(g, format!("malformed timestep {t}")));
        }
    }
    for dset in 0..g.max_dependence_sets() {
        let mut deps: Vec<Vec<i64>> = Vec::with_capacity(g.max_width as usize);
        for point in 0..g.max_width {
            let mut d = Vec::new();
            g.for_each_dependency(dset, point, |i| d.extend(i.points()));
            d.sort_unstable();
            if let Some(w) = d.windows(2).find(|w| w[0] == w[1]) {
                return Err(invalid(
                    g,
                    format!(
                        "point {point} depends twice on point {} (dependence set {dset})",
                        w[0]
                    ),
                ));
            }
            deps.push(d);
        }
        for point in 0..g.max_width {
            let mut bad = None;
            g.for_each_reverse_dependency(dset, point, |i| {
                for r in i.points() {
                    let mirrored = usize::try_from(r)
                        .ok()
                        .and_then(|r| deps.get(r))
                        .is_some_and(|d| d.binary_search(&point).is_ok());
                    if !mirrored && bad.is_none() {
                        bad = Some(r);
                    }
                }
            });
            if let Some(r) = bad {
                return Err(invalid(
                    g,
                    format!(
                        "reverse dependency {r} of point {point} is not mirrored by a dependency (dependence set {dset})"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_kernel(g: &TaskGraph, k: &Kernel) -> Result<(), AppError> {
    let kname = k.kernel_type.name();
    if k.kernel_type == KernelType::IoBound {
        return Err(invalid(
            g,
            format!("kernel \"{kname}\" is not implemented by Task Bench"),
        ));
    }
    if k.iterations < 0 {
        return Err(invalid(g, "iterations must be >= 0".into()));
    }
    if !(0.0..=2.0).contains(&k.imbalance) {
        return Err(invalid(g, "imbalance must be >= 0 and <= 2".into()));
    }
    if k.kernel_type.uses_scratch() && g.scratch_bytes_per_task == 0 {
        return Err(invalid(
            g,
            format!("kernel \"{kname}\" requires scratch memory (specify with -scratch)"),
        ));
    }
    if matches!(
        k.kernel_type,
        KernelType::MemoryBound | KernelType::MemoryDaxpy
    ) && k.samples <= 0
    {
        return Err(invalid(
            g,
            format!("kernel \"{kname}\" requires -sample > 0"),
        ));
    }
    if k.kernel_type == KernelType::ComputeDgemm && g.scratch_bytes_per_task < 3 * 8 {
        return Err(invalid(
            g,
            format!("kernel \"{kname}\" requires -scratch >= 24"),
        ));
    }
    Ok(())
}
