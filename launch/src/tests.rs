use super::*;
use std::net::Ipv6Addr;

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

// ---- rule 1: owl run ----

#[test]
fn owl_vars_head_rank() {
    let v = vars(&[
        ("OWL_NODE_ID", "0"),
        ("OWL_NODES", "3"),
        ("OWL_HEAD", "127.0.0.1:4000"),
        ("OWL_SECRET", SECRET_HEX),
    ]);
    let p = plan(&v, &fake("vm")).unwrap();
    assert_eq!((p.rank, p.size, p.source), (0, 3, Source::Owl));
    assert_eq!(p.head, HeadPlan::Known(sa("127.0.0.1:4000")));
    assert_eq!(p.listen, sa("127.0.0.1:4000"));
    assert!(!p.bind_head);
    assert_eq!(p.secret, SecretPlan::Given(secret_bytes()));
}

#[test]
fn owl_vars_other_rank_listens_on_loopback_port_0() {
    let v = vars(&[
        ("OWL_NODE_ID", "2"),
        ("OWL_NODES", "3"),
        ("OWL_HEAD", "vm:4000"),
        ("OWL_SECRET_FILE", "/run/s"),
    ]);
    let p = plan(&v, &fake("vm")).unwrap();
    assert_eq!(p.rank, 2);
    assert_eq!(p.head, HeadPlan::Known(sa("127.0.0.1:4000")));
    assert_eq!(p.listen, sa("127.0.0.1:0"));
    assert_eq!(p.secret, SecretPlan::File("/run/s".into()));
}

#[test]
fn owl_vars_remote_head_and_explicit_listen() {
    let base = [
        ("OWL_NODE_ID", "1"),
        ("OWL_NODES", "2"),
        ("OWL_HEAD", "node01:4000"),
        ("OWL_SECRET", SECRET_HEX),
    ];
    let p = plan(&vars(&base), &fake("node02")).unwrap();
    assert_eq!(p.head, HeadPlan::Known(sa("10.0.0.1:4000")));
    assert_eq!(p.listen, sa("10.0.0.2:0"));
    let mut v = vars(&base);
    v.insert("OWL_LISTEN".into(), "0.0.0.0:5000".into());
    assert_eq!(
        plan(&v, &fake("node02")).unwrap().listen,
        sa("0.0.0.0:5000")
    );
    let p = plan(&vars(&base), &fake("n1")).unwrap();
    assert_eq!(
        p.listen,
        sa("0.0.0.0:0"),
        "own name resolves to loopback only"
    );
}

#[test]
fn owl_vars_errors_name_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("OWL_NODE_ID", "0"),
                ("OWL_HEAD", "127.0.0.1:1"),
                ("OWL_SECRET", SECRET_HEX),
            ],
            "OWL_NODES",
        ),
        (
            &[
                ("OWL_NODE_ID", "0"),
                ("OWL_NODES", "2"),
                ("OWL_SECRET", SECRET_HEX),
            ],
            "OWL_HEAD",
        ),
        (
            &[
                ("OWL_NODE_ID", "x"),
                ("OWL_NODES", "2"),
                ("OWL_HEAD", "127.0.0.1:1"),
            ],
            "OWL_NODE_ID",
        ),
        (
            &[
                ("OWL_NODE_ID", "2"),
                ("OWL_NODES", "2"),
                ("OWL_HEAD", "127.0.0.1:1"),
            ],
            "OWL_NODE_ID",
        ),
        (
            &[
                ("OWL_NODE_ID", "0"),
                ("OWL_NODES", "0"),
                ("OWL_HEAD", "127.0.0.1:1"),
            ],
            "OWL_NODE_ID",
        ),
        (
            &[
                ("OWL_NODE_ID", "0"),
                ("OWL_NODES", "2"),
                ("OWL_HEAD", "nohost:1"),
                ("OWL_SECRET", SECRET_HEX),
            ],
            "OWL_HEAD",
        ),
        (
            &[
                ("OWL_NODE_ID", "0"),
                ("OWL_NODES", "2"),
                ("OWL_HEAD", "127.0.0.1"),
            ],
            "OWL_HEAD",
        ),
        (
            &[
                ("OWL_NODE_ID", "0"),
                ("OWL_NODES", "2"),
                ("OWL_HEAD", "127.0.0.1:1"),
            ],
            "OWL_SECRET_FILE",
        ),
        (
            &[
                ("OWL_NODE_ID", "0"),
                ("OWL_NODES", "2"),
                ("OWL_HEAD", "127.0.0.1:1"),
                ("OWL_SECRET", "abc"),
            ],
            "OWL_SECRET",
        ),
        (&[("OWL_LAUNCH_TIMEOUT", "soon")], "OWL_LAUNCH_TIMEOUT"),
    ];
    for (pairs, var) in cases {
        let e = plan(&vars(pairs), &fake("vm")).unwrap_err().to_string();
        assert!(e.contains(var), "{pairs:?}: `{e}` should name {var}");
    }
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

// ---- rule 2: Slurm ----

fn slurm(rank: &str, ntasks: &str, nodelist: &str) -> Vars {
    vars(&[
        ("SLURM_PROCID", rank),
        ("SLURM_NTASKS", ntasks),
        ("SLURM_JOB_ID", "42"),
        ("SLURM_STEP_ID", "0"),
        ("SLURM_JOB_NODELIST", nodelist),
    ])
}

#[test]
fn slurm_one_host_is_loopback() {
    let port = slurm_head_port("42", "0");
    let p0 = plan(&slurm("0", "2", "vm"), &fake("vm")).unwrap();
    let p1 = plan(&slurm("1", "2", "vm"), &fake("vm")).unwrap();
    assert_eq!((p0.source, p0.rank, p0.size), (Source::Slurm, 0, 2));
    assert_eq!(p1.rank, 1);
    let head = SocketAddr::new(LOOPBACK, port);
    assert_eq!(p0.head, HeadPlan::Known(head));
    assert_eq!(p1.head, HeadPlan::Known(head));
    assert_eq!(p0.listen, head);
    assert!(p0.bind_head && !p1.bind_head);
    assert_eq!(p1.listen, sa("127.0.0.1:0"));
    assert_eq!(p0.job.as_deref(), Some("42.0"));
    assert_eq!(
        p0.secret,
        SecretPlan::Shared("/home/u/.owl/cluster-secret".into())
    );
    // The same host listed twice is still one host.
    let p = plan(&slurm("1", "2", "node01,node01"), &fake("node01")).unwrap();
    assert_eq!(p.head, HeadPlan::Known(head));
}

#[test]
fn slurm_several_hosts_use_real_addresses() {
    let port = slurm_head_port("42", "0");
    let list = "node[01-03]";
    let p0 = plan(&slurm("0", "3", list), &fake("node01")).unwrap();
    let p2 = plan(&slurm("2", "3", list), &fake("node03")).unwrap();
    let head = SocketAddr::new(ip("10.0.0.1"), port);
    assert_eq!(p0.head, HeadPlan::Known(head), "IPv4 preferred");
    assert_eq!(p2.head, HeadPlan::Known(head));
    assert_eq!(p0.listen, head);
    assert_eq!(p2.listen, sa("10.0.0.3:0"));
    // SLURMD_NODENAME wins over the kernel's host name.
    let mut v = slurm("1", "3", list);
    v.insert("SLURMD_NODENAME".into(), "node02".into());
    assert_eq!(
        plan(&v, &fake("whatever")).unwrap().listen,
        sa("10.0.0.2:0")
    );
}

#[test]
fn slurm_head_name_resolving_to_loopback_on_the_head_listens_everywhere() {
    let p0 = plan(&slurm("0", "2", "n[1-2]"), &fake("n1")).unwrap();
    assert_eq!(p0.listen.ip(), ANY);
    assert_eq!(p0.listen.port(), slurm_head_port("42", "0"));
}

#[test]
fn slurm_step_nodelist_wins_and_overrides_apply() {
    let mut v = slurm("0", "2", "node[01-03]");
    v.insert("SLURM_STEP_NODELIST".into(), "node[02-03]".into());
    v.insert("OWL_HEAD_PORT".into(), "23456".into());
    let p = plan(&v, &fake("node02")).unwrap();
    assert_eq!(p.head, HeadPlan::Known(sa("10.0.0.2:23456")));
    v.insert("OWL_LISTEN".into(), "0.0.0.0:23456".into());
    v.insert("OWL_SECRET".into(), SECRET_HEX.into());
    let p = plan(&v, &fake("node02")).unwrap();
    assert_eq!(p.listen, sa("0.0.0.0:23456"));
    assert_eq!(p.secret, SecretPlan::Given(secret_bytes()));
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
fn slurm_errors_name_the_variable() {
    let mut v = slurm("5", "2", "vm");
    assert!(plan(&v, &fake("vm"))
        .unwrap_err()
        .to_string()
        .contains("SLURM_PROCID"));
    v = slurm("0", "2", "node[01-");
    assert!(plan(&v, &fake("vm"))
        .unwrap_err()
        .to_string()
        .contains("SLURM_JOB_NODELIST"));
    v = slurm("0", "2", "ghost[1-2]");
    let e = plan(&v, &fake("vm")).unwrap_err();
    assert!(matches!(e, LaunchError::Resolve { .. }), "{e}");
    v = slurm("0", "2", "vm");
    v.insert("OWL_HEAD_PORT".into(), "99999".into());
    assert!(plan(&v, &fake("vm"))
        .unwrap_err()
        .to_string()
        .contains("OWL_HEAD_PORT"));
    v = slurm("0", "2", "vm");
    v.remove("HOME");
    assert!(matches!(
        plan(&v, &fake("vm")).unwrap_err(),
        LaunchError::NoHome
    ));
}

#[test]
fn slurm_head_port_is_deterministic_and_in_range() {
    let a = slurm_head_port("42", "0");
    assert_eq!(a, slurm_head_port("42", "0"));
    assert_ne!(a, slurm_head_port("42", "1"));
    assert_ne!(a, slurm_head_port("43", "0"));
    for j in 0..2000 {
        let p = slurm_head_port(&j.to_string(), "0");
        assert!((12000..32000).contains(&p), "{p}");
    }
}

// ---- rule 3: mpirun ----

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
fn mpi_one_host_rendezvous_in_tmpdir() {
    let p0 = plan(&mpi("0", "2"), &fake("vm")).unwrap();
    let p1 = plan(&mpi("1", "2"), &fake("vm")).unwrap();
    assert_eq!((p0.source, p0.rank, p0.size), (Source::Mpi, 0, 2));
    assert_eq!(p1.rank, 1);
    let file = HeadPlan::Rendezvous {
        file: "/scratch/owl-514588673.head".into(),
    };
    assert_eq!(p0.head, file);
    assert_eq!(p1.head, file);
    assert_eq!(p0.listen, sa("127.0.0.1:0"));
    assert!(p0.bind_head && !p1.bind_head);
    assert_eq!(p0.job.as_deref(), Some("514588673"));
}

#[test]
fn mpi_job_name_fallbacks_and_rank_fallback() {
    let mut v = mpi("1", "2");
    v.remove("PMIX_NAMESPACE");
    v.remove("TMPDIR");
    v.remove("OMPI_COMM_WORLD_RANK");
    let p = plan(&v, &fake("vm")).unwrap();
    assert_eq!(p.rank, 1, "PMIX_RANK");
    assert_eq!(p.job.as_deref(), Some("514588672.0"));
    assert_eq!(
        p.head,
        HeadPlan::Rendezvous {
            file: "/tmp/owl-514588672.0.head".into()
        }
    );
    v.insert("OWL_RENDEZVOUS_DIR".into(), "/shared/x".into());
    v.insert("OMPI_MCA_ess_base_jobid".into(), "a/b c".into());
    let p = plan(&v, &fake("vm")).unwrap();
    assert_eq!(
        p.head,
        HeadPlan::Rendezvous {
            file: "/shared/x/owl-a_b_c.head".into()
        }
    );
    v.remove("OMPI_MCA_ess_base_jobid");
    v.remove("OMPI_MCA_orte_hnp_uri");
    assert!(matches!(
        plan(&v, &fake("vm")).unwrap_err(),
        LaunchError::NoMpiJob
    ));
}

#[test]
fn mpi_several_hosts_publish_a_reachable_address() {
    let mut v = mpi("0", "4");
    v.insert("OMPI_COMM_WORLD_LOCAL_SIZE".into(), "2".into());
    let p0 = plan(&v, &fake("node01")).unwrap();
    assert_eq!(p0.listen, sa("10.0.0.1:0"));
    assert_eq!(
        p0.head,
        HeadPlan::Rendezvous {
            file: "/home/u/.owl/rendezvous/owl-514588673.head".into()
        }
    );
    let e = plan(&v, &fake("solo")).unwrap_err();
    assert!(matches!(e, LaunchError::NoHostAddress { .. }), "{e}");
    assert!(e.to_string().contains("OWL_LISTEN"));
    v.insert("OWL_HEAD_PORT".into(), "23000".into());
    assert_eq!(
        plan(&v, &fake("node01")).unwrap().listen,
        sa("10.0.0.1:23000")
    );
    v.insert("OMPI_COMM_WORLD_RANK".into(), "3".into());
    assert_eq!(plan(&v, &fake("node02")).unwrap().listen, sa("10.0.0.2:0"));
}

#[test]
fn mpi_errors() {
    let mut v = mpi("0", "2");
    v.remove("OMPI_COMM_WORLD_SIZE");
    assert!(plan(&v, &fake("vm"))
        .unwrap_err()
        .to_string()
        .contains("OMPI_COMM_WORLD_SIZE"));
    let v = mpi("2", "2");
    assert!(matches!(
        plan(&v, &fake("vm")).unwrap_err(),
        LaunchError::RankOutOfRange {
            rank: 2,
            size: 2,
            ..
        }
    ));
}

// ---- rule 4: single ----

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

// ---- secrets and rendezvous, against real files ----

#[test]
fn secret_file_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    write_secret_file(&path, &secret_bytes()).unwrap();
    assert_eq!(read_secret_file(&path).unwrap(), secret_bytes());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let e = read_secret_file(&path).unwrap_err();
    assert!(matches!(
        e,
        LaunchError::SecretFilePermissions { mode: 0o644, .. }
    ));
    assert!(e.to_string().contains("chmod 600"), "{e}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, "zz").unwrap();
    assert!(matches!(
        read_secret_file(&path).unwrap_err(),
        LaunchError::BadSecret { .. }
    ));
    let e = read_secret_file(&dir.path().join("missing")).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn owl_secret_file_through_discover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    write_secret_file(&path, &secret_bytes()).unwrap();
    let v = vars(&[
        ("OWL_NODE_ID", "1"),
        ("OWL_NODES", "2"),
        ("OWL_HEAD", "127.0.0.1:4000"),
        ("OWL_SECRET_FILE", path.to_str().unwrap()),
    ]);
    let p = discover_from(&v, &fake("vm")).unwrap();
    assert_eq!(p.secret, secret_bytes());
    assert!(p.head_listener.is_none());
}

#[test]
fn shared_secret_created_by_rank_0_and_awaited_by_others() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join(".owl").join("cluster-secret");
    let plan1 = SecretPlan::Shared(path.clone());
    let waiter = std::thread::spawn(move || load_secret(&plan1, 1, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(50));
    let s0 = load_secret(
        &SecretPlan::Shared(path.clone()),
        0,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), s0);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // A second job reuses it.
    assert_eq!(
        load_secret(&SecretPlan::Shared(path.clone()), 0, DEFAULT_TIMEOUT).unwrap(),
        s0
    );
    // Nobody creates it: the others time out naming the file.
    let other = home.path().join("nope").join("cluster-secret");
    let e = load_secret(&SecretPlan::Shared(other), 1, Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, LaunchError::SecretTimeout { .. }));
    assert!(e.to_string().contains("nope/cluster-secret"), "{e}");
}

#[test]
fn slurm_rank_0_binds_the_head_port() {
    let mut v = slurm("0", "2", "vm");
    v.insert("OWL_SECRET".into(), SECRET_HEX.into());
    v.insert("OWL_HEAD_PORT".into(), "0".into());
    let p = discover_from(&v, &fake("vm")).unwrap();
    let l = p.head_listener.as_ref().unwrap();
    assert_eq!(l.local_addr().unwrap(), p.listen);
    assert_ne!(p.listen.port(), 0);
    // A taken port is reported, naming OWL_HEAD_PORT.
    v.insert("OWL_HEAD_PORT".into(), p.listen.port().to_string());
    let e = discover_from(&v, &fake("vm")).unwrap_err();
    assert!(matches!(e, LaunchError::Bind { .. }));
    assert!(e.to_string().contains("OWL_HEAD_PORT"), "{e}");
}

#[test]
fn mpi_rendezvous_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let with = |rank: &str| {
        let mut v = mpi(rank, "3");
        v.insert(
            "OWL_RENDEZVOUS_DIR".into(),
            dir.path().to_str().unwrap().into(),
        );
        v.insert("OWL_SECRET".into(), SECRET_HEX.into());
        v.insert("OWL_LAUNCH_TIMEOUT".into(), "10".into());
        v
    };
    let (v1, v2) = (with("1"), with("2"));
    let t1 = std::thread::spawn(move || discover_from(&v1, &fake("vm")));
    let t2 = std::thread::spawn(move || discover_from(&v2, &fake("vm")));
    std::thread::sleep(Duration::from_millis(100));
    let p0 = discover_from(&with("0"), &fake("vm")).unwrap();
    let (p1, p2) = (t1.join().unwrap().unwrap(), t2.join().unwrap().unwrap());
    assert!(p0.head_listener.is_some());
    assert_ne!(p0.head.port(), 0);
    assert_eq!(p0.head, p0.listen);
    assert_eq!(p1.head, p0.head);
    assert_eq!(p2.head, p0.head);
    // The head is really there.
    std::net::TcpStream::connect(p1.head).unwrap();
    let file = p0.rendezvous_file.clone().unwrap();
    assert_eq!(
        fs::read_to_string(&file).unwrap().trim(),
        p0.head.to_string()
    );
    assert!(
        fs::read_dir(dir.path()).unwrap().count() == 1,
        "no temporary files left"
    );
    p0.remove_rendezvous_file().unwrap();
    assert!(!file.exists());
}

#[test]
fn mpi_rendezvous_timeout_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = mpi("1", "2");
    v.insert(
        "OWL_RENDEZVOUS_DIR".into(),
        dir.path().to_str().unwrap().into(),
    );
    v.insert("OWL_SECRET".into(), SECRET_HEX.into());
    v.insert("OWL_LAUNCH_TIMEOUT".into(), "0".into());
    let e = discover_from(&v, &fake("vm")).unwrap_err();
    assert!(matches!(e, LaunchError::RendezvousTimeout { .. }));
    assert!(e.to_string().contains("owl-514588673.head"), "{e}");
    // A garbled file is reported, not waited on.
    fs::write(dir.path().join("owl-514588673.head"), "garbage").unwrap();
    let e = discover_from(&v, &fake("vm")).unwrap_err();
    assert!(matches!(e, LaunchError::BadRendezvous { .. }), "{e}");
}

#[test]
fn hex_round_trip() {
    assert_eq!(parse_hex(SECRET_HEX), Some(secret_bytes()));
    assert_eq!(
        parse_hex(&format!(" {} \n", SECRET_HEX.to_uppercase())),
        Some(secret_bytes())
    );
    assert_eq!(to_hex(&secret_bytes()), SECRET_HEX);
    assert_eq!(parse_hex(&SECRET_HEX[1..]), None);
    assert_eq!(parse_hex(&format!("g{}", &SECRET_HEX[1..])), None);
    assert!(pick(&[ip("::1"), ip("127.0.0.1")]) == Some(ip("127.0.0.1")));
    assert!(pick(&[IpAddr::V6(Ipv6Addr::LOCALHOST)]).is_some());
}
