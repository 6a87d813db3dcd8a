//! Tests of which rule [`crate::plan`] picks, and the fixtures the tests
//! under `tests/` share: a fake resolver describing a small cluster, and
//! the variables each launcher sets.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::{discover_from, plan, to_hex, Resolve, SecretPlan, Source, Vars};

mod mpi;
mod owl_run;
mod rendezvous;
mod secret;
mod slurm;

/// A resolver with a fixed table and host name.
struct Fake {
    hostname: &'static str,
    table: Vec<(&'static str, Vec<IpAddr>)>,
}

impl Resolve for Fake {
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        if let Ok(ip) = host.parse() {
            return Ok(vec![ip]);
        }
        self.table
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown host"))
    }
    fn hostname(&self) -> Option<String> {
        Some(self.hostname.to_string())
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A cluster: node01..node03 at 10.0.0.1..3; the local name `vm` at
/// 127.0.0.1; `n1` resolves to loopback locally and has an IPv6 address.
fn fake(hostname: &'static str) -> Fake {
    Fake {
        hostname,
        table: vec![
            ("vm", vec![ip("127.0.0.1")]),
            ("node01", vec![ip("fd00::1"), ip("10.0.0.1")]),
            ("node02", vec![ip("10.0.0.2")]),
            ("node03", vec![ip("10.0.0.3")]),
            ("n1", vec![ip("127.0.1.1")]),
            ("n2", vec![ip("10.0.1.2")]),
            ("solo", vec![ip("::1"), ip("127.0.1.1")]),
        ],
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vars {
    let mut v: Vars = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.entry("HOME".into()).or_insert_with(|| "/home/u".into());
    v
}

const SECRET_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn secret_bytes() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

fn slurm(rank: &str, ntasks: &str, nodelist: &str) -> Vars {
    vars(&[
        ("SLURM_PROCID", rank),
        ("SLURM_NTASKS", ntasks),
        ("SLURM_JOB_ID", "42"),
        ("SLURM_STEP_ID", "0"),
        ("SLURM_JOB_NODELIST", nodelist),
    ])
}

fn mpi(rank: &str, size: &str) -> Vars {
    vars(&[
        ("OMPI_COMM_WORLD_RANK", rank),
        ("OMPI_COMM_WORLD_SIZE", size),
        ("OMPI_COMM_WORLD_LOCAL_SIZE", size),
        ("PMIX_RANK", rank),
        ("PMIX_NAMESPACE", "514588673"),
        ("OMPI_MCA_orte_hnp_uri", "514588672.0;tcp://192.0.2.2:38011"),
        ("TMPDIR", "/scratch"),
    ])
}

#[test]
fn owl_vars_take_precedence_over_slurm_and_mpi() {
    let v = vars(&[
        ("OWL_NODE_ID", "1"),
        ("OWL_NODES", "2"),
        ("OWL_HEAD", "127.0.0.1:4000"),
        ("OWL_SECRET", SECRET_HEX),
        ("SLURM_PROCID", "0"),
        ("SLURM_NTASKS", "4"),
        ("SLURM_JOB_ID", "7"),
        ("SLURM_STEP_ID", "0"),
        ("SLURM_JOB_NODELIST", "vm"),
        ("OMPI_COMM_WORLD_RANK", "0"),
        ("OMPI_COMM_WORLD_SIZE", "4"),
    ]);
    let p = plan(&v, &fake("vm")).unwrap();
    assert_eq!((p.source, p.rank, p.size), (Source::Owl, 1, 2));
}

#[test]
fn slurm_without_a_step_is_single() {
    // Inside an `sbatch -n 2` script, not under srun.
    let mut v = slurm("0", "2", "vm");
    v.remove("SLURM_STEP_ID");
    let p = plan(&v, &fake("vm")).unwrap();
    assert_eq!((p.source, p.rank, p.size), (Source::Single, 0, 1));
}

#[test]
fn mpirun_inside_an_allocation_is_mpi_not_slurm() {
    let mut v = slurm("0", "1", "vm");
    v.insert("OMPI_COMM_WORLD_RANK".into(), "3".into());
    v.insert("OMPI_COMM_WORLD_SIZE".into(), "4".into());
    v.insert("PMIX_NAMESPACE".into(), "123".into());
    let p = plan(&v, &fake("vm")).unwrap();
    assert_eq!((p.source, p.rank, p.size), (Source::Mpi, 3, 4));
}

#[test]
fn nothing_set_is_single() {
    let p = plan(&vars(&[]), &fake("vm")).unwrap();
    assert_eq!((p.source, p.rank, p.size), (Source::Single, 0, 1));
    assert_eq!(p.listen, sa("127.0.0.1:0"));
    assert_eq!(p.secret, SecretPlan::Fresh);
    let placement = discover_from(&vars(&[]), &fake("vm")).unwrap();
    assert_eq!(placement.size, 1);
    assert_ne!(placement.secret, [0; 32]);
    assert!(!format!("{placement:?}").contains(&to_hex(&placement.secret)));
}
