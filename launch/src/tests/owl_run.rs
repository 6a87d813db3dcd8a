//! Rule 1, `owl run`'s variables: planning and the errors that name them.

use super::{fake, sa, secret_bytes, vars, SECRET_HEX};
use crate::{plan, HeadPlan, SecretPlan, Source};

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
