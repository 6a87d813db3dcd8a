//! The secret against real files: permissions, the shared secret's
//! creation race, and the hex encoding.

use std::fs;
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::{fake, ip, secret_bytes, vars, SECRET_HEX};
use crate::addr::pick;
use crate::secret::load_secret;
use crate::{
    discover_from, parse_hex, read_secret_file, to_hex, write_secret_file, LaunchError, SecretPlan,
    DEFAULT_TIMEOUT,
};

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
