//! Rule 2, Slurm: the head from the node list, its port, and binding it.

use std::net::SocketAddr;

use super::{fake, ip, sa, secret_bytes, slurm, SECRET_HEX};
use crate::addr::{ANY, LOOPBACK};
use crate::{discover_from, plan, slurm_head_port, HeadPlan, LaunchError, SecretPlan, Source};

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
