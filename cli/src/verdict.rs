//! How `owl run` judges its nodes' exits: which ones end the run, which
//! are reported while the others go on, and the run's exit code. No
//! processes here, so the rules are tested on their own.
//!
//! Node 0 is the driver: it runs `main` and owns the run's work, so its
//! exit decides the run's. A worker's death while node 0 runs is a fault
//! owl handles (the owner retries the worker's tasks elsewhere; a worker
//! its peers declared dead exits by itself), so it is reported, not
//! fatal. Once node 0 has succeeded nothing is left to absorb a worker's
//! failure (a leak check, a panic while leaving), so the first such
//! failure is the run's.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// What `owl run` does about a node's exit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing to say or do.
    Nothing,
    /// Say this line; the other nodes go on.
    Report(String),
    /// Say this line and stop the nodes still running.
    StopOthers(String),
}

/// The run's state as far as its exit code goes.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Node 0's status, once it ended.
    driver: Option<ExitStatus>,
    /// The exit that sets the run's code, if one does.
    failure: Option<(u32, ExitStatus)>,
    interrupted: Option<i32>,
    timed_out: bool,
}

impl Verdict {
    /// `owl run` got signal `sig` (and forwards it). Only the first counts.
    pub(crate) fn interrupted(&mut self, sig: i32) {
        self.interrupted.get_or_insert(sig);
    }

    /// The signal that interrupted the run, if one did.
    pub(crate) fn interrupted_by(&self) -> Option<i32> {
        self.interrupted
    }

    /// `--timeout` passed.
    pub(crate) fn timed_out(&mut self) {
        self.timed_out = true;
    }

    pub(crate) fn has_timed_out(&self) -> bool {
        self.timed_out
    }

    /// Whether `owl run` is stopping every node (so exits are expected).
    fn stopping(&self) -> bool {
        self.interrupted.is_some() || self.timed_out || self.failure.is_some_and(|(n, _)| n == 0)
    }

    /// Node `node` ended with `status`; `live` nodes still run.
    pub(crate) fn node_ended(&mut self, node: u32, status: ExitStatus, live: usize) -> Action {
        let stopping = self.stopping();
        if node == 0 {
            self.driver = Some(status);
        }
        if status.success() || stopping {
            return Action::Nothing;
        }
        if node == 0 {
            self.failure = Some((0, status));
            return Action::StopOthers(match live {
                0 => format!("node 0 (the driver) {}", describe(status)),
                n => format!(
                    "node 0 (the driver) {}; stopping the other {n} node{}",
                    describe(status),
                    plural(n)
                ),
            });
        }
        match self.driver {
            None => Action::Report(format!(
                "node {node} {}; the other {live} node{} go{} on (node 0, the driver, decides the exit code)",
                describe(status),
                plural(live),
                if live == 1 { "es" } else { "" }
            )),
            Some(_) if self.failure.is_none() => {
                self.failure = Some((node, status));
                Action::Report(format!(
                    "node {node} {} after node 0 finished; the run fails with its code",
                    describe(status)
                ))
            }
            Some(_) => Action::Report(format!(
                "node {node} {} after node 0 finished",
                describe(status)
            )),
        }
    }

    /// The run's exit code: 128 + signal when interrupted; node 0's when
    /// it failed; 124 on the timeout; a worker's that failed after node 0
    /// succeeded; else 0.
    pub(crate) fn exit_code(&self) -> u8 {
        if let Some(sig) = self.interrupted {
            return u8::try_from(128 + sig).unwrap_or(255);
        }
        match self.failure {
            Some((0, status)) => exit_code_of(status),
            _ if self.timed_out => 124,
            Some((_, status)) => exit_code_of(status),
            None => 0,
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub(crate) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}{}", signal_name(s)),
        _ => format!("ended with {status}"),
    }
}

pub(crate) fn signal_name(s: i32) -> &'static str {
    match s {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

fn exit_code_of(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1).max(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(c: i32) -> ExitStatus {
        ExitStatus::from_raw(c << 8)
    }

    fn killed(sig: i32) -> ExitStatus {
        ExitStatus::from_raw(sig)
    }

    #[test]
    fn a_dead_worker_is_reported_and_node_0_decides() {
        let mut v = Verdict::default();
        let a = v.node_ended(2, killed(9), 2);
        assert_eq!(
            a,
            Action::Report(
                "node 2 was killed by signal 9 (SIGKILL); the other 2 nodes go on (node 0, the driver, decides the exit code)"
                    .into()
            )
        );
        assert!(matches!(v.node_ended(1, code(101), 1), Action::Report(_)));
        assert_eq!(v.node_ended(0, code(0), 0), Action::Nothing);
        assert_eq!(v.exit_code(), 0);

        let mut v = Verdict::default();
        v.node_ended(1, code(3), 2);
        assert_eq!(
            v.node_ended(0, code(5), 1),
            Action::StopOthers(
                "node 0 (the driver) exited with code 5; stopping the other 1 node".into()
            )
        );
        assert_eq!(v.exit_code(), 5);
    }

    #[test]
    fn node_0_dying_stops_the_rest_and_sets_the_code() {
        let mut v = Verdict::default();
        assert!(matches!(
            v.node_ended(0, killed(9), 2),
            Action::StopOthers(_)
        ));
        // The workers that then stop are expected, not news.
        assert_eq!(v.node_ended(1, code(101), 1), Action::Nothing);
        assert_eq!(v.node_ended(2, killed(15), 0), Action::Nothing);
        assert_eq!(v.exit_code(), 128 + 9);
    }

    #[test]
    fn a_worker_failing_after_node_0_succeeded_fails_the_run() {
        let mut v = Verdict::default();
        assert_eq!(v.node_ended(0, code(0), 2), Action::Nothing);
        assert!(matches!(v.node_ended(2, code(101), 1), Action::Report(_)));
        v.node_ended(1, code(7), 0);
        assert_eq!(v.exit_code(), 101, "the first late failure");
    }

    #[test]
    fn signals_and_the_timeout_come_first() {
        let mut v = Verdict::default();
        v.node_ended(1, code(4), 1);
        v.timed_out();
        assert_eq!(v.node_ended(0, killed(15), 0), Action::Nothing);
        assert_eq!(v.exit_code(), 124);

        let mut v = Verdict::default();
        v.interrupted(2);
        v.interrupted(15);
        assert_eq!(v.node_ended(0, code(1), 0), Action::Nothing);
        assert_eq!(v.exit_code(), 130);
    }
}
