//! Property test: random programs of put / submit / clone / drop / get /
//! nested submit / refs stored inside values and returned from tasks. Every
//! value read must be the one the model predicts, and when the program ends
//! every table, queue and the arena must be empty.

use owl::{ObjectRef, Runtime};
use proptest::prelude::*;

#[owl::remote]
fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

#[owl::remote]
async fn nested_add(rt: Runtime, r: ObjectRef<u64>, b: u64) -> u64 {
    let child = add.remote(&rt, &r, b).unwrap();
    child.get_owned().await.unwrap()
}

#[owl::remote]
fn wrap(r: ObjectRef<u64>) -> Vec<ObjectRef<u64>> {
    vec![r.clone(), r]
}

#[derive(Debug, Clone)]
enum Op {
    Put(u64),
    Submit(usize, u64),
    SubmitByRefs(usize, usize),
    Clone(usize),
    Drop(usize),
    Get(usize),
    Nested(usize, u64),
    Contain(Vec<usize>),
    Uncontain(usize),
    ReturnInside(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u64>().prop_map(Op::Put),
        4 => (any::<usize>(), 0u64..1000).prop_map(|(i, b)| Op::Submit(i, b)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Op::SubmitByRefs(i, j)),
        2 => any::<usize>().prop_map(Op::Clone),
        3 => any::<usize>().prop_map(Op::Drop),
        3 => any::<usize>().prop_map(Op::Get),
        2 => (any::<usize>(), 0u64..1000).prop_map(|(i, b)| Op::Nested(i, b)),
        1 => proptest::collection::vec(any::<usize>(), 0..4).prop_map(Op::Contain),
        1 => any::<usize>().prop_map(Op::Uncontain),
        1 => any::<usize>().prop_map(Op::ReturnInside),
    ]
}

/// A stored list of refs, with the values its refs should read.
type Boxed = ObjectRef<Vec<ObjectRef<u64>>>;

async fn run_program(rt: Runtime, ops: Vec<Op>) -> Result<(), String> {
    let mut live: Vec<(ObjectRef<u64>, u64)> = Vec::new();
    let mut boxes: Vec<(Boxed, Vec<u64>)> = Vec::new();
    let pick = |i: usize, len: usize| (len > 0).then(|| i % len);
    for op in ops {
        match op {
            Op::Put(v) => live.push((rt.put(v).unwrap(), v)),
            Op::Submit(i, b) => {
                if let Some(i) = pick(i, live.len()) {
                    let (r, e) = (&live[i].0, live[i].1);
                    live.push((add.remote(&rt, r, b).unwrap(), e.wrapping_add(b)));
                }
            }
            Op::SubmitByRefs(i, j) => {
                if let (Some(i), Some(j)) = (pick(i, live.len()), pick(j, live.len())) {
                    let e = live[i].1.wrapping_add(live[j].1);
                    live.push((add.remote(&rt, &live[i].0, &live[j].0).unwrap(), e));
                }
            }
            Op::Clone(i) => {
                if let Some(i) = pick(i, live.len()) {
                    live.push((live[i].0.clone(), live[i].1));
                }
            }
            Op::Drop(i) => {
                if let Some(i) = pick(i, live.len()) {
                    live.swap_remove(i);
                }
            }
            Op::Get(i) => {
                if let Some(i) = pick(i, live.len()) {
                    let got = live[i].0.get().await.map_err(|e| e.to_string())?;
                    if *got != live[i].1 {
                        return Err(format!(
                            "{} read {} expected {}",
                            live[i].0.id(),
                            *got,
                            live[i].1
                        ));
                    }
                }
            }
            Op::Nested(i, b) => {
                if let Some(i) = pick(i, live.len()) {
                    let (r, e) = (live[i].0.clone(), live[i].1);
                    live.push((nested_add.remote(&rt, r, b).unwrap(), e.wrapping_add(b)));
                }
            }
            Op::Contain(idx) => {
                let picked: Vec<usize> = idx.iter().filter_map(|&i| pick(i, live.len())).collect();
                let refs: Vec<ObjectRef<u64>> = picked.iter().map(|&i| live[i].0.clone()).collect();
                let expect = picked.iter().map(|&i| live[i].1).collect();
                boxes.push((rt.put(refs).unwrap(), expect));
            }
            Op::Uncontain(j) => {
                if let Some(j) = pick(j, boxes.len()) {
                    let (b, expect) = boxes.swap_remove(j);
                    let refs = b.get_owned().await.map_err(|e| e.to_string())?;
                    drop(b);
                    live.extend(refs.into_iter().zip(expect));
                }
            }
            Op::ReturnInside(i) => {
                if let Some(i) = pick(i, live.len()) {
                    let e = live[i].1;
                    boxes.push((wrap.remote(&rt, live[i].0.clone()).unwrap(), vec![e, e]));
                }
            }
        }
    }
    for (r, e) in &live {
        let got = r.get().await.map_err(|err| err.to_string())?;
        if *got != *e {
            return Err(format!(
                "final read of {} gave {} expected {e}",
                r.id(),
                *got
            ));
        }
    }
    for (b, expect) in &boxes {
        let refs = b.get_owned().await.map_err(|e| e.to_string())?;
        for (r, e) in refs.iter().zip(expect) {
            if *r.get().await.map_err(|err| err.to_string())? != *e {
                return Err(format!("contained {} is wrong", r.id()));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_are_correct_and_leak_free(ops in proptest::collection::vec(op(), 1..80)) {
        let rt = Runtime::builder().shards(2).store_size(32 << 20).spin(std::time::Duration::ZERO).build().unwrap();
        let result = rt.block_on(move |rt| run_program(rt, ops));
        prop_assert_eq!(result, Ok(()));
        let report = rt.leak_report();
        rt.assert_no_leaks();
        drop(report);
    }
}
