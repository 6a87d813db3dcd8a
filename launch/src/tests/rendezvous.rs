//! The mpirun rendezvous against a real directory: ranks meeting through
//! the file, a missing file timing out and a garbled one reported.

use std::fs;
use std::time::Duration;

use super::{fake, mpi, SECRET_HEX};
use crate::{discover_from, LaunchError};

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
