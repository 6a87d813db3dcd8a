//! Error types.

use std::fmt;

/// An unknown dependence or kernel type name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseNameError {
    /// "dependence type" or "kernel type".
    pub what: &'static str,
    /// The name that was not recognised.
    pub name: String,
}

impl fmt::Display for ParseNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} \"{}\"", self.what, self.name)
    }
}

impl std::error::Error for ParseNameError {}

impl ParseNameError {
    /// The member of `all` whose `name` is `s`, or the error naming `what`.
    pub(crate) fn lookup<T: Copy>(
        all: &[T],
        name: fn(T) -> &'static str,
        what: &'static str,
        s: &str,
    ) -> Result<T, ParseNameError> {
        all.iter()
            .copied()
            .find(|t| name(*t) == s)
            .ok_or_else(|| ParseNameError {
                what,
                name: s.to_string(),
            })
    }
}

/// Why command-line flags were refused, or why a graph is not well formed.
/// Messages follow the reference's `error: ...` lines.
#[derive(Clone, Debug, PartialEq)]
pub enum AppError {
    /// `-h` was given: print [`crate::App::help_message`] and exit 0.
    HelpRequested,
    /// A flag that takes a value came last.
    MissingArgument {
        /// The flag.
        flag: String,
    },
    /// A flag's value is not a number of the right kind.
    InvalidNumber {
        /// The flag.
        flag: String,
        /// Its value.
        value: String,
    },
    /// A flag's value is outside its range.
    OutOfRange {
        /// The flag.
        flag: String,
        /// Its value, as given.
        value: String,
        /// The rule, e.g. "must be > 0".
        requirement: String,
    },
    /// `-type` names no dependence type.
    UnknownDependenceType(String),
    /// `-kernel` names no kernel type.
    UnknownKernelType(String),
    /// An argument that is no flag of Task Bench (strict parsing only).
    UnknownFlag(String),
    /// A graph that the reference would refuse (or crash on).
    InvalidGraph {
        /// `graph_index` of the graph.
        graph: i64,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::HelpRequested => write!(f, "help requested (-h)"),
            AppError::MissingArgument { flag } => write!(f, "Flag \"{flag}\" requires an argument"),
            AppError::InvalidNumber { flag, value } => {
                write!(f, "Invalid flag \"{flag} {value}\": not a valid number")
            }
            AppError::OutOfRange {
                flag,
                value,
                requirement,
            } => {
                write!(f, "Invalid flag \"{flag} {value}\" {requirement}")
            }
            AppError::UnknownDependenceType(name) => write!(f, "Invalid flag \"-type {name}\""),
            AppError::UnknownKernelType(name) => write!(f, "Invalid flag \"-kernel {name}\""),
            AppError::UnknownFlag(arg) => write!(f, "Unknown flag \"{arg}\""),
            AppError::InvalidGraph { graph, reason } => write!(f, "Task graph {graph}: {reason}"),
        }
    }
}

impl std::error::Error for AppError {}

/// A failed check in [`crate::TaskGraph::execute_point`]: Task Bench's
/// correctness check of an implementation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecuteError {
    /// `(timestep, point)` is not a task of the graph.
    NoSuchTask {
        /// Graph index.
        graph: i64,
        /// Timestep.
        timestep: i64,
        /// Point.
        point: i64,
    },
    /// Fewer inputs than the task has dependencies.
    MissingInput {
        /// Graph index.
        graph: i64,
        /// Timestep.
        timestep: i64,
        /// Point.
        point: i64,
        /// Index of the missing input.
        input: usize,
        /// The point of `timestep - 1` it should come from.
        dep: i64,
    },
    /// An input buffer of the wrong size.
    InputSize {
        /// Graph index.
        graph: i64,
        /// Timestep.
        timestep: i64,
        /// Point.
        point: i64,
        /// Index of the input.
        input: usize,
        /// Its size.
        got: usize,
        /// `output_bytes_per_task`.
        expected: usize,
    },
    /// An input that is not the output of the expected dependency.
    CorruptInput {
        /// Graph index.
        graph: i64,
        /// Timestep.
        timestep: i64,
        /// Point.
        point: i64,
        /// Index of the input.
        input: usize,
        /// Index of the 16-byte record within the input.
        position: usize,
        /// `(timestep - 1, dependency)`.
        expected: (i64, i64),
        /// What the record held.
        got: (i64, i64),
    },
    /// The output buffer is not `output_bytes_per_task` long.
    OutputSize {
        /// Graph index.
        graph: i64,
        /// Timestep.
        timestep: i64,
        /// Point.
        point: i64,
        /// Its size.
        got: usize,
        /// `output_bytes_per_task`.
        expected: usize,
    },
    /// The scratch buffer is not `scratch_bytes_per_task` long.
    ScratchSize {
        /// Graph index.
        graph: i64,
        /// Timestep.
        timestep: i64,
        /// Point.
        point: i64,
        /// Its size.
        got: usize,
        /// `scratch_bytes_per_task`.
        expected: usize,
    },
    /// The scratch buffer does not start with [`crate::SCRATCH_MAGIC`].
    ScratchNotPrepared {
        /// Graph index.
        graph: i64,
        /// Timestep.
        timestep: i64,
        /// Point.
        point: i64,
    },
}

impl fmt::Display for ExecuteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecuteError::NoSuchTask { graph, timestep, point } => {
                write!(f, "no task (graph {graph} timestep {timestep} point {point})")
            }
            ExecuteError::MissingInput { graph, timestep, point, input, dep } => write!(
                f,
                "task (graph {graph} timestep {timestep} point {point}) is missing input {input} (from point {dep})"
            ),
            ExecuteError::InputSize { graph, timestep, point, input, got, expected } => write!(
                f,
                "task (graph {graph} timestep {timestep} point {point}) input {input} has {got} bytes, expected {expected}"
            ),
            ExecuteError::CorruptInput { graph, timestep, point, input, position, expected, got } => write!(
                f,
                "Task Bench detected corrupted value in task (graph {graph} timestep {timestep} point {point}) input {input}: \
                 at position {position} within the buffer, expected value (timestep {} point {}) but got (timestep {} point {})",
                expected.0, expected.1, got.0, got.1
            ),
            ExecuteError::OutputSize { graph, timestep, point, got, expected } => write!(
                f,
                "task (graph {graph} timestep {timestep} point {point}) output has {got} bytes, expected {expected}"
            ),
            ExecuteError::ScratchSize { graph, timestep, point, got, expected } => write!(
                f,
                "task (graph {graph} timestep {timestep} point {point}) scratch has {got} bytes, expected {expected}"
            ),
            ExecuteError::ScratchNotPrepared { graph, timestep, point } => write!(
                f,
                "task (graph {graph} timestep {timestep} point {point}) scratch was not prepared (magic value missing)"
            ),
        }
    }
}

impl std::error::Error for ExecuteError {}
