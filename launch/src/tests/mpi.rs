//! Rule 3, mpirun: the job name, the rendezvous file's place and the
//! address rank 0 publishes.

use super::{fake, mpi, sa};
use crate::{plan, HeadPlan, LaunchError, Source};

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
