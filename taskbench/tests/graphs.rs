//! Dependence patterns, kernels' accounting, execute_point and the report
//! against hand-computed cases and against output of the C++ reference.

use std::collections::BTreeSet;

use taskbench::{
    App, AppError, DependenceType, ExecuteError, Interval, Kernel, KernelType, TaskGraph,
};

fn graph(t: DependenceType, steps: i64, width: i64) -> TaskGraph {
    TaskGraph::new(steps, width, t, Kernel::default())
}

fn iv(v: &[(i64, i64)]) -> Vec<Interval> {
    v.iter().map(|&p| p.into()).collect()
}

fn pts(g: &TaskGraph, dset: i64, p: i64) -> Vec<i64> {
    g.dependencies(dset, p)
        .into_iter()
        .flat_map(Interval::points)
        .collect()
}

#[test]
fn type_names_match_the_reference() {
    let names = [
        "trivial",
        "no_comm",
        "stencil_1d",
        "stencil_1d_periodic",
        "dom",
        "tree",
        "fft",
        "all_to_all",
        "nearest",
        "spread",
        "random_nearest",
        "random_spread",
    ];
    for (name, t) in names.iter().zip(DependenceType::ALL) {
        assert_eq!(name.parse::<DependenceType>().unwrap(), t);
        assert_eq!(t.to_string(), *name);
    }
    assert!("stencil".parse::<DependenceType>().is_err());
}

#[test]
fn trivial_and_no_comm() {
    let g = graph(DependenceType::Trivial, 4, 4);
    assert!(g.dependencies(0, 2).is_empty());
    assert!(g.reverse_dependencies(0, 2).is_empty());
    let g = graph(DependenceType::NoComm, 4, 4);
    assert_eq!(g.dependencies(0, 2), iv(&[(2, 2)]));
    assert_eq!(g.input_points(0, 2), Vec::<i64>::new());
    assert_eq!(g.input_points(1, 2), vec![2]);
}

#[test]
fn stencil_1d() {
    let g = graph(DependenceType::Stencil1d, 4, 4);
    assert_eq!(g.dependencies(0, 0), iv(&[(0, 1)]));
    assert_eq!(g.dependencies(0, 1), iv(&[(0, 2)]));
    assert_eq!(g.dependencies(0, 3), iv(&[(2, 3)]));
    assert_eq!(g.reverse_dependencies(0, 3), iv(&[(2, 3)]));
    assert_eq!((g.offset_at_timestep(2), g.width_at_timestep(2)), (0, 4));
    assert_eq!(g.max_dependence_sets(), 1);
}

#[test]
fn stencil_1d_periodic() {
    let g = graph(DependenceType::Stencil1dPeriodic, 4, 5);
    assert_eq!(g.dependencies(0, 0), iv(&[(0, 1), (4, 4)]));
    assert_eq!(g.dependencies(0, 2), iv(&[(1, 3)]));
    assert_eq!(g.dependencies(0, 4), iv(&[(3, 4), (0, 0)]));
}

#[test]
fn dom() {
    // 5 steps of width 3: rows grow 1, 2, 3 then slide right.
    let g = graph(DependenceType::Dom, 5, 3);
    let rows: Vec<(i64, i64)> = (0..5)
        .map(|t| (g.offset_at_timestep(t), g.width_at_timestep(t)))
        .collect();
    assert_eq!(rows, vec![(0, 1), (0, 2), (0, 3), (1, 2), (2, 1)]);
    assert_eq!(g.dependencies(0, 0), iv(&[(0, 0)]));
    assert_eq!(g.dependencies(0, 2), iv(&[(1, 2)]));
    assert_eq!(g.reverse_dependencies(0, 1), iv(&[(1, 2)]));
    assert_eq!(g.reverse_dependencies(0, 2), iv(&[(2, 2)]));
    assert_eq!(g.input_points(1, 1), vec![0]);
    assert_eq!(g.input_points(4, 2), vec![1, 2]);
    assert_eq!(g.total_tasks(), 9);
}

#[test]
fn tree() {
    let g = graph(DependenceType::Tree, 5, 6);
    let widths: Vec<i64> = (0..5).map(|t| g.width_at_timestep(t)).collect();
    assert_eq!(widths, vec![1, 2, 4, 6, 6]);
    assert_eq!(g.dependencies(0, 5), iv(&[(2, 2)]));
    assert_eq!(g.reverse_dependencies(0, 1), iv(&[(2, 3)]));
    assert_eq!(g.reverse_dependencies(0, 2), iv(&[(4, 5)]));
    assert!(g.reverse_dependencies(0, 3).is_empty());
    let g7 = graph(DependenceType::Tree, 5, 7);
    assert_eq!(g7.reverse_dependencies(0, 3), iv(&[(6, 6)]));
    assert_eq!(g.output_points(1, 1), vec![2, 3]);
}

#[test]
fn fft() {
    let g = graph(DependenceType::Fft, 6, 8);
    assert_eq!(g.max_dependence_sets(), 3);
    assert_eq!(g.timestep_period(), 3);
    let sets: Vec<i64> = (0..6).map(|t| g.dependence_set_at_timestep(t)).collect();
    assert_eq!(sets, vec![2, 0, 1, 2, 0, 1]);
    assert_eq!(g.dependencies(0, 3), iv(&[(2, 2), (3, 3), (4, 4)]));
    assert_eq!(g.dependencies(1, 3), iv(&[(1, 1), (3, 3), (5, 5)]));
    assert_eq!(g.dependencies(2, 3), iv(&[(3, 3), (7, 7)]));
    assert_eq!(g.dependencies(2, 5), iv(&[(1, 1), (5, 5)]));
    assert_eq!(graph(DependenceType::Fft, 4, 5).max_dependence_sets(), 3);
    assert_eq!(graph(DependenceType::Fft, 4, 2).max_dependence_sets(), 1);
}

#[test]
fn all_to_all() {
    let g = graph(DependenceType::AllToAll, 3, 5);
    assert_eq!(g.dependencies(0, 2), iv(&[(0, 4)]));
    assert_eq!(g.reverse_dependencies(0, 0), iv(&[(0, 4)]));
    assert_eq!(g.total_dependencies(), 2 * 25);
}

#[test]
fn nearest() {
    let mut g = graph(DependenceType::Nearest, 3, 10);
    g.radix = 3;
    assert_eq!(g.dependencies(0, 5), iv(&[(4, 6)]));
    g.radix = 4;
    assert_eq!(g.dependencies(0, 5), iv(&[(3, 6)]));
    assert_eq!(g.reverse_dependencies(0, 5), iv(&[(4, 7)]));
    assert_eq!(g.dependencies(0, 0), iv(&[(0, 1)]));
    g.radix = 0;
    assert!(g.dependencies(0, 5).is_empty());
}

#[test]
fn spread() {
    let mut g = graph(DependenceType::Spread, 6, 9);
    g.radix = 3;
    g.period = 2;
    assert_eq!(g.max_dependence_sets(), 2);
    let sets: Vec<i64> = (0..4).map(|t| g.dependence_set_at_timestep(t)).collect();
    assert_eq!(sets, vec![0, 1, 0, 1]);
    assert_eq!(pts(&g, 0, 1), vec![1, 4, 7]);
    assert_eq!(pts(&g, 1, 1), vec![1, 5, 8]);
    assert_eq!(pts(&g, 1, 7), vec![7, 2, 5]);
    let rev: Vec<i64> = g
        .reverse_dependencies(1, 1)
        .into_iter()
        .flat_map(Interval::points)
        .collect();
    assert_eq!(rev, vec![1, 6, 3]);
}

#[test]
fn random_nearest_is_the_references() {
    // Expected values printed by the C++ reference (`-vv -steps 5 -width 9
    // -type random_nearest -radix 5 -period 3 -fraction 0.3`).
    let app = App::parse([
        "-steps",
        "5",
        "-width",
        "9",
        "-type",
        "random_nearest",
        "-radix",
        "5",
        "-period",
        "3",
        "-fraction",
        "0.3",
    ])
    .unwrap();
    let g = &app.graphs[0];
    let expect: [(i64, i64, &[i64]); 6] = [
        (1, 0, &[0]),
        (1, 1, &[1, 3]),
        (1, 8, &[6, 8]),
        (2, 5, &[3, 5, 7]),
        (3, 3, &[3, 4, 5]),
        (3, 4, &[3, 4]),
    ];
    for (t, p, want) in expect {
        assert_eq!(g.input_points(t, p), want, "t {t} p {p}");
    }
}

/// q ∈ deps(p) under dset ⇔ p ∈ rdeps(q) under dset, no duplicates, every
/// point in range — for every pattern, several widths and parameters.
#[test]
fn reverse_dependencies_mirror_dependencies() {
    let mut cases = Vec::new();
    for t in DependenceType::ALL {
        if !t.is_implemented() {
            continue;
        }
        for width in [1i64, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33] {
            for radix in [0i64, 1, 2, 3, 4, 5, 7] {
                for period in [1i64, 2, 3] {
                    let mut g = graph(t, 10, width);
                    g.radix = radix;
                    g.period = if t.needs_period() { period } else { 0 };
                    g.fraction_connected = 0.4;
                    g.graph_index = period;
                    if App::from_graphs(vec![g], 0).is_ok() {
                        cases.push(g);
                    }
                }
            }
        }
    }
    assert!(cases.len() > 300, "{}", cases.len());
    for g in &cases {
        for dset in 0..g.max_dependence_sets() {
            let mut edges = BTreeSet::new();
            for p in 0..g.max_width {
                for q in pts(g, dset, p) {
                    assert!((0..g.max_width).contains(&q), "{g:?}");
                    assert!(edges.insert((q, p)), "duplicate {q}->{p} in {g:?}");
                }
            }
            let mut redges = BTreeSet::new();
            for q in 0..g.max_width {
                for i in g.reverse_dependencies(dset, q) {
                    for p in i.points() {
                        assert!(redges.insert((q, p)), "duplicate reverse {q}->{p} in {g:?}");
                    }
                }
            }
            assert_eq!(edges, redges, "{g:?} dset {dset}");
            for p in 0..g.max_width {
                assert!(g.dependencies(dset, p).len() <= g.num_dependencies(dset, p));
            }
        }
        // input_points / output_points agree across timesteps.
        for t in 1..g.timesteps {
            for p in g.points_at_timestep(t).points() {
                for q in g.input_points(t, p) {
                    assert!(
                        g.output_points(t - 1, q).contains(&p),
                        "{g:?} t {t} {q}->{p}"
                    );
                }
            }
            for q in g.points_at_timestep(t - 1).points() {
                for p in g.output_points(t - 1, q) {
                    assert!(g.input_points(t, p).contains(&q), "{g:?} t {t} {q}->{p}");
                }
            }
        }
    }
}

#[test]
fn flop_and_byte_counts() {
    let mut g = graph(DependenceType::Stencil1d, 10, 4);
    g.kernel = Kernel::new(KernelType::ComputeBound, 1000);
    assert_eq!(g.flops_per_task(0, 0), 2 * 64 * 1000 + 64);
    assert_eq!(g.total_flops(), 40 * (2 * 64 * 1000 + 64));
    g.kernel = Kernel::new(KernelType::ComputeBound2, 1000);
    assert_eq!(g.flops_per_task(3, 2), 2 * 32 * 1000);
    g.kernel = Kernel::new(KernelType::BusyWait, 1000);
    assert_eq!(g.total_flops(), 0);
    g.kernel = Kernel::new(KernelType::MemoryBound, 12);
    g.scratch_bytes_per_task = 4096;
    assert_eq!(g.bytes_per_task(0, 0), 4096 * 12 / 16);
    assert_eq!(g.total_bytes(), 40 * 4096 * 12 / 16);
    g.kernel = Kernel::new(KernelType::ComputeDgemm, 3);
    g.scratch_bytes_per_task = 3 * 8 * 100; // 10x10 matrices
    assert_eq!(g.flops_per_task(0, 0), 2 * 1000 * 3);
    g.kernel = Kernel {
        imbalance: 1.0,
        ..Kernel::new(KernelType::LoadImbalance, 1000)
    };
    let it = g.kernel.imbalance_iterations(g.graph_index, 2, 1);
    assert_eq!(g.flops_per_task(2, 1), 2 * 64 * it + 64);
}

fn run_serial(g: &TaskGraph, corrupt: Option<(i64, i64)>) -> Result<(), ExecuteError> {
    let w = g.max_width as usize;
    let s = g.scratch_bytes_per_task;
    let mut prev = vec![vec![0u8; g.output_bytes_per_task]; w];
    let mut next = prev.clone();
    let mut scratch = vec![0u8; s * w];
    TaskGraph::prepare_scratch(&mut scratch);
    for t in 0..g.timesteps {
        for p in g.points_at_timestep(t).points() {
            let ins = g.input_points(t, p);
            let inputs: Vec<&[u8]> = ins.iter().map(|&q| &prev[q as usize][..]).collect();
            let pu = p as usize;
            g.execute_point(
                t,
                p,
                &mut next[pu],
                &inputs,
                &mut scratch[pu * s..(pu + 1) * s],
            )?;
            if corrupt == Some((t, p)) {
                next[pu][8] ^= 1;
            }
        }
        std::mem::swap(&mut prev, &mut next);
    }
    Ok(())
}

#[test]
fn execute_point_runs_every_pattern_and_kernel() {
    for t in DependenceType::ALL {
        if !t.is_implemented() {
            continue;
        }
        for (k, scratch) in [
            (KernelType::Empty, 0),
            (KernelType::BusyWait, 0),
            (KernelType::ComputeBound, 0),
            (KernelType::ComputeBound2, 0),
            (KernelType::LoadImbalance, 0),
            (KernelType::MemoryBound, 1024),
            (KernelType::MemoryDaxpy, 1024),
            (KernelType::ComputeDgemm, 3 * 8 * 16),
        ] {
            let mut g = graph(t, 9, 8);
            g.kernel = Kernel {
                imbalance: 0.5,
                ..Kernel::new(k, 20)
            };
            g.scratch_bytes_per_task = scratch;
            g.output_bytes_per_task = 40;
            run_serial(&g, None).unwrap_or_else(|e| panic!("{t} {k}: {e}"));
        }
    }
}

#[test]
fn execute_point_detects_wrong_inputs() {
    let g = graph(DependenceType::Stencil1d, 4, 4);
    let err = run_serial(&g, Some((1, 2))).unwrap_err();
    assert!(
        matches!(
            err,
            ExecuteError::CorruptInput {
                timestep: 2,
                input: 2,
                expected: (1, 2),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("corrupted value"));

    let rec = |t: i64, p: i64| [t.to_ne_bytes(), p.to_ne_bytes()].concat();
    let mut out = vec![0u8; 16];
    // Inputs in the wrong order.
    let (a, b) = (rec(0, 0), rec(0, 1));
    let e = g
        .execute_point(1, 0, &mut out, &[&b, &a], &mut [])
        .unwrap_err();
    assert!(matches!(
        e,
        ExecuteError::CorruptInput {
            input: 0,
            expected: (0, 0),
            got: (0, 1),
            ..
        }
    ));
    // Too few inputs.
    let e = g.execute_point(1, 0, &mut out, &[&a], &mut []).unwrap_err();
    assert!(matches!(
        e,
        ExecuteError::MissingInput {
            input: 1,
            dep: 1,
            ..
        }
    ));
    // Wrong sizes, missing scratch magic, no such task.
    let e = g
        .execute_point(1, 0, &mut out, &[&a, &b[..8]], &mut [])
        .unwrap_err();
    assert!(matches!(
        e,
        ExecuteError::InputSize {
            input: 1,
            got: 8,
            ..
        }
    ));
    let e = g
        .execute_point(0, 0, &mut [0u8; 32], &[], &mut [])
        .unwrap_err();
    assert!(matches!(e, ExecuteError::OutputSize { got: 32, .. }));
    let e = g.execute_point(4, 0, &mut out, &[], &mut []).unwrap_err();
    assert!(matches!(e, ExecuteError::NoSuchTask { .. }));
    let mut gs = g;
    gs.scratch_bytes_per_task = 16;
    let e = gs
        .execute_point(0, 0, &mut out, &[], &mut [0u8; 16])
        .unwrap_err();
    assert!(matches!(e, ExecuteError::ScratchNotPrepared { .. }));
    // Correct inputs stamp the output.
    g.execute_point(1, 0, &mut out, &[&a, &b], &mut []).unwrap();
    assert_eq!(out, rec(1, 0));
}

/// `display()` + `report_timing()` are byte-identical to the reference's
/// output (files produced by the C++ core with the same flags).
#[test]
fn report_matches_reference_output() {
    let cases: [(&str, &str, f64); 3] = [
        (
            include_str!("data/stencil_1d_vv_nodes2.txt"),
            "-vv -steps 4 -width 4 -type stencil_1d -kernel compute_bound -iter 10 -nodes 2",
            0.37,
        ),
        (
            include_str!("data/random_nearest_and_fft_vv.txt"),
            "-vv -steps 5 -width 9 -type random_nearest -radix 5 -period 3 -fraction 0.3 -kernel busy_wait -iter 5 \
             -and -type fft -steps 6 -width 6 -kernel load_imbalance -iter 1000 -imbalance 1.5 -nodes 3",
            0.0123,
        ),
        (
            include_str!("data/dom_tree_spread_kernels.txt"),
            "-steps 3 -width 8 -type dom -kernel memory_bound -scratch 4096 -sample 4 -iter 6 -output 48 \
             -and -type tree -steps 5 -width 5 -kernel compute_bound2 -iter 7 \
             -and -type spread -radix 2 -period 2 -width 6 -kernel compute_dgemm -scratch 2400 -iter 2",
            2.5e-4,
        ),
    ];
    for (expected, flags, elapsed) in cases {
        let app = App::parse(flags.split_whitespace()).unwrap();
        let got = app.display() + &app.report_timing(elapsed);
        assert_eq!(got, expected, "{flags}");
    }
}

#[test]
fn report_lines() {
    let app = App::parse(
        "-steps 10 -width 4 -type stencil_1d -kernel compute_bound -iter 100".split(' '),
    )
    .unwrap();
    assert_eq!(app.total_tasks(), 40);
    assert_eq!(app.total_dependencies(), 9 * 10);
    assert_eq!(app.total_flops(), 40 * (128 * 100 + 64));
    let r = app.report_timing(0.5);
    let expect = "Total Tasks 40\n\
                  Total Dependencies 90\n  \
                  Unable to estimate local/nonlocal dependencies\n\
                  Total FLOPs 514560\n\
                  Total Bytes 0\n\
                  Elapsed Time 5.000000e-01 seconds\n\
                  FLOP/s 1.029120e+06\n\
                  B/s 0.000000e+00\n\
                  Transfer (estimated):\n  \
                  Unable to estimate local/nonlocal transfer\n";
    assert_eq!(r, expect);
}

#[test]
fn parsing_defaults_and_multiple_graphs() {
    let app = App::parse(Vec::<String>::new()).unwrap();
    let g = app.graphs[0];
    assert_eq!(
        (g.timesteps, g.max_width, g.dependence, g.radix, g.period),
        (4, 4, DependenceType::Trivial, 3, 0)
    );
    assert_eq!(
        (g.kernel.kernel_type, g.kernel.iterations, g.kernel.samples),
        (KernelType::Empty, 0, 16)
    );
    assert_eq!(
        (
            g.output_bytes_per_task,
            g.scratch_bytes_per_task,
            g.nb_fields
        ),
        (16, 0, 4)
    );

    let app = App::parse(
        "-steps 7 -type spread -width 12 -v -and -type random_nearest -kernel compute_bound -iter 9 -and -steps 2 -nodes 3 -skip-graph-validation"
            .split(' '),
    )
    .unwrap();
    assert_eq!(app.graphs.len(), 3);
    assert_eq!(
        (app.nodes, app.verbose, app.enable_graph_validation),
        (3, 1, false)
    );
    assert_eq!(
        app.graphs.iter().map(|g| g.graph_index).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!((app.graphs[0].period, app.graphs[0].nb_fields), (3, 7));
    assert_eq!(app.graphs[1].period, 3);
    assert_eq!(app.graphs[1].kernel.iterations, 9);
    assert_eq!(
        (app.graphs[2].timesteps, app.graphs[2].kernel.iterations),
        (2, 0)
    );

    let (app, rest) = App::parse_known("-width 8 -ll:cpu 2 -steps 3".split(' ')).unwrap();
    assert_eq!((app.graphs[0].max_width, app.graphs[0].timesteps), (8, 3));
    assert_eq!(rest, vec!["-ll:cpu", "2"]);
}

#[test]
fn bad_flags_are_errors() {
    let err = |s: &str| App::parse(s.split(' ')).unwrap_err();
    assert_eq!(
        err("-steps 0").to_string(),
        "Invalid flag \"-steps 0\" must be > 0"
    );
    assert!(matches!(err("-width -3"), AppError::OutOfRange { .. }));
    assert!(matches!(err("-steps abc"), AppError::InvalidNumber { .. }));
    assert!(matches!(err("-iter"), AppError::MissingArgument { .. }));
    assert_eq!(
        err("-type ring"),
        AppError::UnknownDependenceType("ring".into())
    );
    assert_eq!(
        err("-kernel fast"),
        AppError::UnknownKernelType("fast".into())
    );
    assert_eq!(err("-bogus"), AppError::UnknownFlag("-bogus".into()));
    assert!(matches!(err("-fraction 1.5"), AppError::OutOfRange { .. }));
    assert!(matches!(err("-imbalance 3"), AppError::OutOfRange { .. }));
    assert!(matches!(err("-output 8"), AppError::OutOfRange { .. }));
    assert!(matches!(err("-radix -1"), AppError::OutOfRange { .. }));
    assert!(matches!(err("-nodes 0"), AppError::OutOfRange { .. }));
    assert_eq!(err("-h"), AppError::HelpRequested);
    // Graph-level checks.
    for bad in [
        "-type stencil_1d -period 2",
        "-type spread -period 0",
        "-type spread -width 4 -radix 2 -period 3",
        "-type spread -radix 0",
        "-type random_nearest -radix 0",
        "-type random_spread",
        "-type fft -width 1",
        "-type stencil_1d_periodic -width 2",
        "-type spread -width 3 -radix 5 -period 1",
        "-kernel io_bound",
        "-kernel memory_bound",
        "-kernel memory_bound -scratch 64 -sample 0",
        "-scratch 12",
        "-steps 3 -and -type tree -period 1",
    ] {
        assert!(matches!(err(bad), AppError::InvalidGraph { .. }), "{bad}");
    }
    assert!(App::help_message("x").contains("-skip-graph-validation"));
}
