//! Task Bench over MPI: the algorithm of the reference's `mpi/nonblock.cc`.
//!
//! Each rank owns a contiguous block of every graph's points
//! (`rank * width / ranks ..= (rank + 1) * width / ranks - 1`). For every
//! timestep, each rank posts nonblocking receives for the inputs of its
//! points that live on other ranks (inputs from its own points are copied),
//! nonblocking sends of its previous outputs to the other ranks' points that
//! consume them, waits for all of them, then runs its points through
//! `execute_point` (which checks every input). The whole run is done twice
//! between barriers and the second is timed, as in the reference; rank 0
//! prints the configuration before and `report_timing` after.
//!
//! `mpirun -n RANKS taskbench-mpi [Task Bench flags]`

use std::process::ExitCode;

use mpi::attribute::{AttributeKey, CommAttribute};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use taskbench::{App, AppError, Interval, TaskGraph};

/// `MPI_TAG_UB` of a communicator.
#[repr(C)]
#[derive(Clone)]
struct TagUpperBound(std::os::raw::c_int);

impl CommAttribute for TagUpperBound {
    fn get_key() -> AttributeKey {
        // SAFETY: MPI_TAG_UB is a predefined attribute keyval of every
        // communicator; its value is an int.
        unsafe { AttributeKey::new_unchecked(mpi::ffi::MPI_TAG_UB as i32) }
    }
}

/// The block of points a rank owns.
fn block(rank: i64, ranks: i64, width: i64) -> (i64, i64) {
    (rank * width / ranks, (rank + 1) * width / ranks - 1)
}

/// Run every graph once; returns the elapsed seconds between the barriers.
fn run_once(app: &App, world: &SimpleCommunicator, scratch: &mut [Vec<u8>], tag_ub: i64) -> f64 {
    let ranks = i64::from(world.size());
    let rank = i64::from(world.rank());

    world.barrier();
    let start = mpi::time();

    for graph in &app.graphs {
        run_graph(
            graph,
            world,
            rank,
            ranks,
            &mut scratch[graph.graph_index as usize],
            tag_ub,
        );
    }

    world.barrier();
    mpi::time() - start
}

fn run_graph(
    g: &TaskGraph,
    world: &SimpleCommunicator,
    rank: i64,
    ranks: i64,
    scratch: &mut [u8],
    tag_ub: i64,
) {
    let (first_point, last_point) = block(rank, ranks, g.max_width);
    let n_points = (last_point - first_point + 1).max(0) as usize;
    let mine = Interval::new(first_point, last_point);
    let out_bytes = g.output_bytes_per_task;
    let scratch_bytes = g.scratch_bytes_per_task;

    // Owner rank and index within the owner's block, per point.
    let mut rank_by_point = vec![0i32; g.max_width as usize];
    let mut index_by_point = vec![0i64; g.max_width as usize];
    let mut stride = 1;
    for r in 0..ranks {
        let (f, l) = block(r, ranks, g.max_width);
        stride = stride.max(l - f + 1);
        for p in f..=l {
            rank_by_point[p as usize] = r as i32;
            index_by_point[p as usize] = p - f;
        }
    }
    // One tag per (source point, destination point) pair of two ranks.
    assert!(
        stride * stride - 1 <= tag_ub,
        "{stride} points per rank need tags up to {} but MPI_TAG_UB is {tag_ub}; use more ranks",
        stride * stride - 1
    );
    let tag = |from: i64, to: i64| {
        (index_by_point[from as usize] * stride + index_by_point[to as usize]) as i32
    };

    // Largest number of inputs of any of this rank's points.
    let mut max_deps = 0;
    for dset in 0..g.max_dependence_sets() {
        for point in first_point..=last_point {
            let mut n = 0;
            g.for_each_dependency(dset, point, |i| n += i.len());
            max_deps = max_deps.max(n);
        }
    }

    // Input and output buffers.
    let mut inputs: Vec<Vec<Vec<u8>>> =
        vec![vec![vec![0u8; out_bytes]; max_deps as usize]; n_points];
    let mut n_inputs = vec![0usize; n_points];
    let mut outputs: Vec<Vec<u8>> = vec![vec![0u8; out_bytes]; n_points];

    // Cached dependencies per dependence set.
    let sets = g.max_dependence_sets() as usize;
    let mut deps: Vec<Vec<Vec<Interval>>> = vec![Vec::with_capacity(n_points); sets];
    let mut rev_deps: Vec<Vec<Vec<Interval>>> = vec![Vec::with_capacity(n_points); sets];
    for dset in 0..sets {
        for point in first_point..=last_point {
            deps[dset].push(g.dependencies(dset as i64, point));
            rev_deps[dset].push(g.reverse_dependencies(dset as i64, point));
        }
    }

    for timestep in 0..g.timesteps {
        let row = g.points_at_timestep(timestep);
        let last = g.points_at_timestep(timestep - 1);
        let dset = g.dependence_set_at_timestep(timestep) as usize;

        mpi::request::multiple_scope(2 * max_deps as usize * n_points, |scope, requests| {
            for (index, (point_inputs, count)) in
                inputs.iter_mut().zip(n_inputs.iter_mut()).enumerate()
            {
                let point = first_point + index as i64;
                // Receive.
                *count = 0;
                if row.contains(point) {
                    let mut slots = point_inputs.iter_mut();
                    for interval in &deps[dset][index] {
                        for dep in interval.points().filter(|&d| last.contains(d)) {
                            let slot = slots.next().expect("max_deps covers every point");
                            if mine.contains(dep) {
                                slot.copy_from_slice(&outputs[(dep - first_point) as usize]);
                            } else {
                                let from = world.process_at_rank(rank_by_point[dep as usize]);
                                requests.add(from.immediate_receive_into_with_tag(
                                    scope,
                                    &mut slot[..],
                                    tag(dep, point),
                                ));
                            }
                            *count += 1;
                        }
                    }
                }
                // Send.
                if last.contains(point) {
                    for interval in &rev_deps[dset][index] {
                        for dep in interval
                            .points()
                            .filter(|&d| row.contains(d) && !mine.contains(d))
                        {
                            let to = world.process_at_rank(rank_by_point[dep as usize]);
                            requests.add(to.immediate_send_with_tag(
                                scope,
                                &outputs[index][..],
                                tag(point, dep),
                            ));
                        }
                    }
                }
            }
            let mut done = Vec::new();
            requests.wait_all(&mut done);
        });

        let first = first_point.max(row.start);
        let last_mine = last_point.min(row.end);
        for point in first..=last_mine {
            let index = (point - first_point) as usize;
            let ins: Vec<&[u8]> = inputs[index][..n_inputs[index]]
                .iter()
                .map(|v| &v[..])
                .collect();
            let s = &mut scratch[index * scratch_bytes..(index + 1) * scratch_bytes];
            if let Err(e) = g.execute_point(timestep, point, &mut outputs[index], &ins, s) {
                eprintln!("error: rank {rank}: {e}");
                world.abort(1);
            }
        }
    }
}

fn main() -> ExitCode {
    let Some(universe) = mpi::initialize() else {
        eprintln!("error: MPI was already initialized");
        return ExitCode::FAILURE;
    };
    let world = universe.world();
    let rank = world.rank();
    let ranks = i64::from(world.size());

    let app = match App::from_env() {
        Ok(app) => app,
        Err(AppError::HelpRequested) => {
            if rank == 0 {
                print!("{}", App::help_message("taskbench-mpi"));
            }
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            if rank == 0 {
                eprintln!("error: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    if rank == 0 {
        print!("{}", app.display());
    }

    let tag_ub = world
        .get_attr::<TagUpperBound>()
        .map_or(32767, |t| i64::from(t.0));

    let mut scratch: Vec<Vec<u8>> = app
        .graphs
        .iter()
        .map(|g| {
            let (f, l) = block(i64::from(rank), ranks, g.max_width);
            let mut s = vec![0u8; g.scratch_bytes_per_task * (l - f + 1).max(0) as usize];
            TaskGraph::prepare_scratch(&mut s);
            s
        })
        .collect();

    let mut elapsed = 0.0;
    for _ in 0..2 {
        elapsed = run_once(&app, &world, &mut scratch, tag_ub);
    }

    if rank == 0 {
        print!("{}", app.report_timing(elapsed));
    }
    ExitCode::SUCCESS
}
