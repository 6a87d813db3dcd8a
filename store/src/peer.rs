//! Reading another node's arena on the same host: a large object moves with
//! one copy from the holder's arena file into this node's arena, with no
//! socket and no chunking (DESIGN §5: same-host objects are shared, not
//! sent).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This host's id: a hash of the kernel's boot id, the same for every
/// process of one boot of one machine (network namespaces included), and
/// different across machines. 0 where the boot id cannot be read (then no
/// peer ever matches).
pub fn host_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| fnv1a(s.trim().as_bytes()))
            .unwrap_or(0)
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Why a peer's arena could not be read (the caller then pulls the value
/// over the network instead).
#[derive(Debug, thiserror::Error)]
pub enum PeerArenaError {
    #[error("{0} is not an owl arena in this node's store directory {1}")]
    NotAnArena(PathBuf, PathBuf),
    #[error("cannot read the peer arena {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Whether `path` names an arena file in `store_dir` that exists here
/// (a peer on this host in another mount namespace has a different one).
pub fn is_peer_arena(store_dir: &Path, path: &Path) -> bool {
    path.parent() == Some(store_dir)
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("owl-") && n.ends_with(".arena"))
        && path.is_file()
}

/// Copies `dst.len()` bytes at `offset` of the arena file `path` into `dst`.
/// Only files named like arenas in `store_dir` are read: the path comes from
/// a peer, which may be authenticated but is not trusted to name any file.
pub fn read_peer_arena(
    store_dir: &Path,
    path: &Path,
    offset: u64,
    dst: &mut [u8],
) -> Result<(), PeerArenaError> {
    if !is_peer_arena(store_dir, path) {
        return Err(PeerArenaError::NotAnArena(
            path.to_path_buf(),
            store_dir.to_path_buf(),
        ));
    }
    let io_err = |source| PeerArenaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    file.read_exact_at(dst, offset).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_block_of_another_arena_and_refuses_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let arena = crate::Arena::create(dir.path(), "owl-1-1.arena", 1 << 20, 16).unwrap();
        let mut b = arena.alloc(10_000).unwrap();
        for (i, x) in b.as_mut_slice().iter_mut().enumerate() {
            *x = (i % 251) as u8;
        }
        let b = b.freeze();
        let mut dst = vec![0u8; 10_000];
        read_peer_arena(dir.path(), arena.path(), b.offset() as u64, &mut dst).unwrap();
        assert_eq!(dst, b.as_slice());
        let other = dir.path().join("secret.txt");
        std::fs::write(&other, b"x").unwrap();
        assert!(matches!(
            read_peer_arena(dir.path(), &other, 0, &mut dst[..1]),
            Err(PeerArenaError::NotAnArena(..))
        ));
        assert!(matches!(
            read_peer_arena(Path::new("/elsewhere"), arena.path(), 0, &mut dst[..1]),
            Err(PeerArenaError::NotAnArena(..))
        ));
        assert!(is_peer_arena(dir.path(), arena.path()));
        assert!(!is_peer_arena(
            dir.path(),
            &dir.path().join("owl-9-9.arena")
        ));
        assert_ne!(host_id(), 0);
    }
}
