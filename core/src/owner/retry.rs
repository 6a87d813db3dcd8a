//! The one retry policy: whether a task that failed on one attempt gets
//! another. Both places a failure is seen ask it: the shard that ran the
//! task (the function panicked or returned `Err`) and the owner that lost
//! the node running it (`WorkerDied`).
//!
//! - Application errors are retried only when the call opted in
//!   (`retry_on_error`), up to `max_retries` further attempts: retrying a
//!   deterministic failure is usually wasted work.
//! - A dead executor is a system failure the task did not cause: it is
//!   retried up to `max_retries` times, and at least [`SYSTEM_RETRIES`].
//! - Nothing else is retried (cancelled, unplaceable, dependency or owner
//!   failures would fail the same way again).

use crate::error::TaskErrorKind;
use crate::spec::CallOpts;

/// Further attempts after the node running a task dies, unless the call's
/// `max_retries` allows more.
pub(crate) const SYSTEM_RETRIES: u32 = 3;

/// Whether attempt `attempt` (0 for the first) that failed with `cause`
/// is followed by another.
pub(crate) fn may_retry(opts: Option<&CallOpts>, attempt: u32, cause: &TaskErrorKind) -> bool {
    let max = opts.map_or(0, |o| o.max_retries);
    match cause {
        TaskErrorKind::Panicked(_) | TaskErrorKind::Failed(_) => {
            opts.is_some_and(|o| o.retries_app_errors()) && attempt < max
        }
        TaskErrorKind::WorkerDied(_) => attempt < max.max(SYSTEM_RETRIES),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn attempts_until_given_up(opts: Option<&CallOpts>, cause: &TaskErrorKind) -> u32 {
        (0..100).find(|&a| !may_retry(opts, a, cause)).unwrap() + 1
    }

    #[test]
    fn application_errors_are_retried_only_when_asked() {
        let panic = TaskErrorKind::Panicked("boom".into());
        let failed = TaskErrorKind::Failed("bad input".into());
        assert_eq!(attempts_until_given_up(None, &panic), 1);
        let no_opt_in = CallOpts::new().max_retries(5);
        assert_eq!(attempts_until_given_up(Some(&no_opt_in), &failed), 1);
        let opted = CallOpts::new().max_retries(2).retry_on_error(true);
        assert_eq!(attempts_until_given_up(Some(&opted), &panic), 3);
        assert_eq!(attempts_until_given_up(Some(&opted), &failed), 3);
    }

    #[test]
    fn a_dead_worker_earns_at_least_the_system_retries() {
        let died = TaskErrorKind::WorkerDied(NodeId(2));
        assert_eq!(attempts_until_given_up(None, &died), SYSTEM_RETRIES + 1);
        let few = CallOpts::new().max_retries(1);
        assert_eq!(
            attempts_until_given_up(Some(&few), &died),
            SYSTEM_RETRIES + 1
        );
        let many = CallOpts::new().max_retries(7);
        assert_eq!(attempts_until_given_up(Some(&many), &died), 8);
    }

    #[test]
    fn other_failures_are_never_retried() {
        let opted = CallOpts::new().max_retries(9).retry_on_error(true);
        for cause in [
            TaskErrorKind::Cancelled,
            TaskErrorKind::OwnerDied(NodeId(1)),
            TaskErrorKind::Unplaceable("no such label".into()),
        ] {
            assert!(!may_retry(Some(&opted), 0, &cause), "{cause:?}");
        }
    }
}
