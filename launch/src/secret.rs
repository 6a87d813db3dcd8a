//! The cluster secret: where it comes from (see the crate docs), how it is
//! stored (hex in a 0600 file) and how ranks agree on a shared one.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::io_err;
use crate::vars::get;
use crate::{LaunchError, SecretPlan, Vars};

/// Decodes 64 hex characters (surrounding whitespace ignored).
pub fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Encodes bytes as lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 random bytes from the operating system.
pub fn random_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    // The OS random source failing is not something a launcher can recover
    // from, and getrandom documents it as effectively impossible on Linux.
    getrandom::fill(&mut s).expect("the operating system's random source failed");
    s
}

/// Reads a secret file, refusing one that others may read or write.
pub fn read_secret_file(path: &Path) -> Result<[u8; 32], LaunchError> {
    let meta = fs::metadata(path).map_err(io_err("cannot read the secret file", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LaunchError::SecretFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(io_err("cannot read the secret file", path))?;
    parse_hex(&text).ok_or_else(|| LaunchError::BadSecret {
        origin: path.display().to_string(),
    })
}

/// Writes `secret` as hex to a new 0600 file at `path`; fails if it exists.
pub fn write_secret_file(path: &Path, secret: &[u8; 32]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(format!("{}\n", to_hex(secret)).as_bytes())?;
    f.sync_all()
}

pub(crate) fn load_secret(
    plan: &SecretPlan,
    rank: u32,
    timeout: Duration,
) -> Result<[u8; 32], LaunchError> {
    match plan {
        SecretPlan::Given(s) => Ok(*s),
        SecretPlan::Fresh => Ok(random_secret()),
        SecretPlan::File(p) => read_secret_file(p),
        SecretPlan::Shared(p) => {
            if rank == 0 && !p.exists() {
                create_shared_secret(p)?;
            }
            let deadline = Instant::now() + timeout;
            while !p.exists() {
                if Instant::now() >= deadline {
                    return Err(LaunchError::SecretTimeout {
                        path: p.clone(),
                        secs: timeout.as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            read_secret_file(p)
        }
    }
}

/// Creates `~/.owl/cluster-secret` without ever exposing a partial file or
/// replacing one another job created meanwhile: the secret is written to a
/// private temporary name, then hard-linked into place (which fails if the
/// name exists).
fn create_shared_secret(path: &Path) -> Result<(), LaunchError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("cannot create the directory", dir))?;
    let tmp = dir.join(format!(".cluster-secret.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_secret_file(&tmp, &random_secret()).map_err(io_err("cannot write", &tmp))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err("cannot create", path)(e)),
        _ => Ok(()),
    }
}

/// The secret from `OWL_SECRET` / `OWL_SECRET_FILE`, if either is set.
pub(crate) fn explicit_secret(vars: &Vars) -> Result<Option<SecretPlan>, LaunchError> {
    if let Some(path) = get(vars, "OWL_SECRET_FILE") {
        return Ok(Some(SecretPlan::File(PathBuf::from(path))));
    }
    if let Some(hex) = get(vars, "OWL_SECRET") {
        let bytes = parse_hex(hex).ok_or_else(|| LaunchError::BadSecret {
            origin: "OWL_SECRET".into(),
        })?;
        return Ok(Some(SecretPlan::Given(bytes)));
    }
    Ok(None)
}

/// The secret for Slurm and mpirun: explicit, else `~/.owl/cluster-secret`.
pub(crate) fn shared_secret(vars: &Vars) -> Result<SecretPlan, LaunchError> {
    if let Some(s) = explicit_secret(vars)? {
        return Ok(s);
    }
    let home = get(vars, "HOME").ok_or(LaunchError::NoHome)?;
    Ok(SecretPlan::Shared(
        Path::new(home).join(".owl").join("cluster-secret"),
    ))
}
