//! Reading launcher variables: empty values count as unset, and a bad value
//! is an error naming the variable rather than a silent default.

use std::time::Duration;

use crate::{LaunchError, Vars};

/// How long non-head ranks wait for the rendezvous file or the shared
/// secret, unless `OWL_LAUNCH_TIMEOUT` (seconds) says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn get<'a>(vars: &'a Vars, var: &str) -> Option<&'a str> {
    vars.get(var).map(|s| s.trim()).filter(|s| !s.is_empty())
}

pub(crate) fn parse_u32(
    vars: &Vars,
    var: &'static str,
    expected: &'static str,
) -> Result<Option<u32>, LaunchError> {
    get(vars, var)
        .map(|v| {
            v.parse().map_err(|_| LaunchError::BadVar {
                var,
                value: v.to_string(),
                expected,
            })
        })
        .transpose()
}

pub(crate) fn require_u32(
    vars: &Vars,
    var: &'static str,
    expected: &'static str,
    hint: &'static str,
) -> Result<u32, LaunchError> {
    parse_u32(vars, var, expected)?.ok_or(LaunchError::MissingVar { var, hint })
}

pub(crate) fn check_rank(var: &'static str, rank: u32, size: u32) -> Result<(), LaunchError> {
    if size == 0 || rank >= size {
        return Err(LaunchError::RankOutOfRange { var, rank, size });
    }
    Ok(())
}

pub(crate) fn timeout(vars: &Vars) -> Result<Duration, LaunchError> {
    Ok(parse_u32(vars, "OWL_LAUNCH_TIMEOUT", "seconds")?
        .map_or(DEFAULT_TIMEOUT, |s| Duration::from_secs(s.into())))
}

pub(crate) fn head_port_override(vars: &Vars) -> Result<Option<u16>, LaunchError> {
    get(vars, "OWL_HEAD_PORT")
        .map(|v| {
            v.parse().map_err(|_| LaunchError::BadVar {
                var: "OWL_HEAD_PORT",
                value: v.to_string(),
                expected: "a port number 0..=65535",
            })
        })
        .transpose()
}
