//! Arena files outlive a SIGKILLed node, and pids are reused: a new node
//! whose pid matches a dead one's must not fail to start on the leftover
//! file (seen as "object store directory /dev/shm is not usable (File
//! exists)" in a test run).

use std::time::Duration;

use owl::Runtime;

/// A one-shard node with a small arena in `dir`.
fn small_node(dir: &std::path::Path) -> Result<Runtime, owl::StartError> {
    Runtime::builder()
        .shards(1)
        .pin(false)
        .store_dir(dir)
        .store_size(8 << 20)
        .spin(Duration::ZERO)
        .build()
}

#[test]
fn a_leftover_arena_with_this_pid_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    // The serial this process's next runtime takes is not known: cover the
    // first hundred.
    for serial in 1..=100 {
        std::fs::write(
            dir.path().join(format!("owl-{pid}-{serial}.arena")),
            b"stale",
        )
        .unwrap();
    }
    let rt = small_node(dir.path()).expect("starts despite the leftover file");
    let x = rt.put(7u64).unwrap();
    assert_eq!(*x.get_blocking().unwrap(), 7);
    drop(x);
    rt.assert_no_leaks();
}

/// Set in a re-run of this binary: start a node in this store directory,
/// put a large value, say "ready", and sleep until killed.
const SLEEPER: &str = "OWL_STALE_SLEEPER_DIR";

#[test]
fn sleeper() {
    let Some(dir) = std::env::var_os(SLEEPER) else {
        return;
    };
    let rt = Runtime::builder()
        .shards(1)
        .pin(false)
        .store_dir(std::path::PathBuf::from(dir))
        .store_size(8 << 20)
        .spin(Duration::ZERO)
        .build()
        .unwrap();
    let _x = rt.put(vec![7u8; 1 << 20]).unwrap();
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}

/// A sleeper that is killed (SIGKILL) when dropped, so no test leaves one.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn start(dir: &std::path::Path) -> Sleeper {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sleeper", "--nocapture", "--test-threads=1"])
            .env(SLEEPER, dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let ready = std::io::BufReader::new(out)
            .lines()
            .take(20)
            // With one test thread the harness prints "test sleeper ... " first.
            .any(|l| l.is_ok_and(|l| l.trim_end().ends_with("ready")));
        let s = Sleeper(child);
        assert!(ready, "the sleeper did not start");
        s
    }

    fn arena(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let prefix = format!("owl-{}-", self.0.id());
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .expect("the sleeper's arena file")
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node killed with SIGKILL cannot remove its arena file: the next node
/// started on the host does, and leaves a live node's file alone.
#[test]
fn a_killed_nodes_arena_is_swept_by_the_next_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut killed = Sleeper::start(dir.path());
    let live = Sleeper::start(dir.path());
    let (left, live_file) = (killed.arena(dir.path()), live.arena(dir.path()));
    killed.kill();
    assert!(
        left.exists(),
        "SIGKILL leaves the file (the case swept here)"
    );
    let rt = small_node(dir.path()).unwrap();
    assert!(!left.exists(), "the dead node's arena was not swept");
    assert!(live_file.exists(), "a live node's arena was swept");
    drop(rt);
    drop(live);
    // The live one died too (SIGKILL): a sweep, as `owl run` ends with,
    // leaves nothing.
    owl_store::sweep(dir.path(), &[]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
