//! A random-program generator and its model, shared by the one-node and
//! the cluster property tests: put / submit / clone / drop / get / nested
//! submit / refs stored inside values and returned from tasks, placed on
//! random nodes when there are several.

use owl::{CallOpts, NodeId, ObjectRef, Runtime};
use proptest::prelude::*;

#[owl::remote]
fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

/// Submits `add` from inside a task, on node `node` of the cluster (or on
/// any shard of this node when there is one node).
#[owl::remote]
async fn nested_add(rt: Runtime, r: ObjectRef<u64>, b: u64, node: u32) -> u64 {
    let child = add.options(place(&rt, node)).remote(&rt, &r, b).unwrap();
    child.get_owned().await.unwrap()
}

/// Puts `v` on the node it runs on; the caller receives that node's ref.
#[owl::remote]
fn put_here(rt: Runtime, v: u64) -> ObjectRef<u64> {
    rt.put(v).unwrap()
}

fn place(rt: &Runtime, node: u32) -> CallOpts {
    if rt.nodes() > 1 {
        CallOpts::new().node(NodeId(node % rt.nodes()))
    } else {
        CallOpts::new()
    }
}

#[owl::remote]
fn wrap(r: ObjectRef<u64>) -> Vec<ObjectRef<u64>> {
    vec![r.clone(), r]
}

#[derive(Debug, Clone)]
pub enum Op {
    Put(u64),
    PutOn(u32, u64),
    Submit(usize, u64),
    SubmitByRefs(usize, usize),
    Clone(usize),
    Drop(usize),
    Get(usize),
    Nested(usize, u64, u32),
    Contain(Vec<usize>),
    Uncontain(usize),
    ReturnInside(usize),
    /// The node the next submitted tasks go to (ignored on one node).
    Goto(u32),
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u64>().prop_map(Op::Put),
        1 => (0u32..64, any::<u64>()).prop_map(|(n, v)| Op::PutOn(n, v)),
        2 => (0u32..64).prop_map(Op::Goto),
        4 => (any::<usize>(), 0u64..1000).prop_map(|(i, b)| Op::Submit(i, b)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Op::SubmitByRefs(i, j)),
        2 => any::<usize>().prop_map(Op::Clone),
        3 => any::<usize>().prop_map(Op::Drop),
        3 => any::<usize>().prop_map(Op::Get),
        2 => (any::<usize>(), 0u64..1000, 0u32..64).prop_map(|(i, b, n)| Op::Nested(i, b, n)),
        1 => proptest::collection::vec(any::<usize>(), 0..4).prop_map(Op::Contain),
        1 => any::<usize>().prop_map(Op::Uncontain),
        1 => any::<usize>().prop_map(Op::ReturnInside),
    ]
}

/// A stored list of refs, with the values its refs should read.
type Boxed = ObjectRef<Vec<ObjectRef<u64>>>;

/// Runs `ops` against the model; the first wrong value is the error.
pub async fn run_program(rt: Runtime, ops: Vec<Op>) -> Result<(), String> {
    let mut at = place(&rt, 0);
    let mut live: Vec<(ObjectRef<u64>, u64)> = Vec::new();
    let mut boxes: Vec<(Boxed, Vec<u64>)> = Vec::new();
    let pick = |i: usize, len: usize| (len > 0).then(|| i % len);
    for op in ops {
        match op {
            Op::Put(v) => live.push((rt.put(v).unwrap(), v)),
            Op::PutOn(n, v) => {
                let outer = put_here.options(place(&rt, n)).remote(&rt, v).unwrap();
                let inner = outer.get_owned().await.map_err(|e| e.to_string())?;
                live.push((inner, v));
            }
            Op::Goto(n) => at = place(&rt, n),
            Op::Submit(i, b) => {
                if let Some(i) = pick(i, live.len()) {
                    let (r, e) = (&live[i].0, live[i].1);
                    live.push((
                        add.options(at.clone()).remote(&rt, r, b).unwrap(),
                        e.wrapping_add(b),
                    ));
                }
            }
            Op::SubmitByRefs(i, j) => {
                if let (Some(i), Some(j)) = (pick(i, live.len()), pick(j, live.len())) {
                    let e = live[i].1.wrapping_add(live[j].1);
                    let r = add.options(at.clone()).remote(&rt, &live[i].0, &live[j].0);
                    live.push((r.unwrap(), e));
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
            Op::Nested(i, b, n) => {
                if let Some(i) = pick(i, live.len()) {
                    let (r, e) = (live[i].0.clone(), live[i].1);
                    let nested = nested_add.options(at.clone()).remote(&rt, r, b, n);
                    live.push((nested.unwrap(), e.wrapping_add(b)));
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
                    let w = wrap.options(at.clone()).remote(&rt, live[i].0.clone());
                    boxes.push((w.unwrap(), vec![e, e]));
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
