//! Nested tasks, deep recursion, fan-out, refs inside values.

mod common;

use owl::{ObjectRef, Runtime};

#[owl::remote]
async fn depth(rt: Runtime, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let child = depth.remote(&rt, n - 1).unwrap();
    1 + child.get().await.unwrap().to_native()
}

#[owl::remote]
fn leaf(i: u64) -> u64 {
    i
}

#[owl::remote]
async fn parent(rt: Runtime, width: u64) -> u64 {
    let kids: Vec<_> = (0..width).map(|i| leaf.remote(&rt, i).unwrap()).collect();
    let mut sum = 0;
    for k in kids {
        sum += k.get().await.unwrap().to_native();
    }
    sum
}

#[owl::remote]
fn make_refs(rt: Runtime, n: u64) -> Vec<ObjectRef<u64>> {
    (0..n).map(|i| rt.put(i * 10).unwrap()).collect()
}

#[owl::remote]
async fn sum_refs(refs: Vec<ObjectRef<u64>>) -> u64 {
    let mut s = 0;
    for r in &refs {
        s += r.get().await.unwrap().to_native();
    }
    s
}

#[owl::remote]
fn pass_through(r: ObjectRef<u64>) -> ObjectRef<u64> {
    r
}

use common::two_shards as rt;

#[test]
fn recursion_1000_deep_on_2_shards() {
    let rt = rt();
    let got = rt
        .block_on(|rt| async move { depth.remote(&rt, 1000).unwrap().get_owned().await.unwrap() });
    assert_eq!(got, 1000);
    rt.assert_no_leaks();
}

#[test]
fn fan_out_100_by_100() {
    let rt = rt();
    let total = rt.block_on(|rt| async move {
        let parents: Vec<_> = (0..100).map(|_| parent.remote(&rt, 100).unwrap()).collect();
        let mut total = 0;
        for p in parents {
            total += p.get_owned().await.unwrap();
        }
        total
    });
    assert_eq!(total, 100 * (99 * 100 / 2));
    rt.assert_no_leaks();
}

#[test]
fn refs_returned_inside_values_stay_alive() {
    let rt = rt();
    let sum = rt.block_on(|rt| async move {
        let refs = make_refs.remote(&rt, 50).unwrap();
        // The task's own handles are gone; the returned value keeps them.
        let list: Vec<ObjectRef<u64>> = refs.get_owned().await.unwrap();
        assert_eq!(list.len(), 50);
        let s = sum_refs.remote(&rt, &refs).unwrap();
        drop(refs);
        let direct: u64 = {
            let mut d = 0;
            for r in &list {
                d += r.get().await.unwrap().to_native();
            }
            d
        };
        assert_eq!(direct, (0..50).map(|i| i * 10).sum::<u64>());
        s.get_owned().await.unwrap()
    });
    assert_eq!(sum, (0..50).map(|i| i * 10).sum::<u64>());
    rt.assert_no_leaks();
}

#[test]
fn ref_put_inside_value_outlives_its_handle() {
    let rt = rt();
    let inner = rt.put(String::from("inside")).unwrap();
    let outer = rt.put(vec![inner.clone(), inner.clone()]).unwrap();
    drop(inner);
    let list = outer.get_blocking().unwrap().deserialize().unwrap();
    drop(outer);
    assert_eq!(list[1].get_blocking().unwrap().as_str(), "inside");
    drop(list);
    rt.assert_no_leaks();
}

#[test]
fn ref_passed_through_a_task_and_returned() {
    let rt = rt();
    let x = rt.put(5u64).unwrap();
    let wrapped: ObjectRef<ObjectRef<u64>> = pass_through.remote(&rt, x.clone()).unwrap();
    drop(x);
    let back = wrapped.get_blocking().unwrap().deserialize().unwrap();
    drop(wrapped);
    assert_eq!(*back.get_blocking().unwrap(), 5u64);
    drop(back);
    rt.assert_no_leaks();
}

#[owl::remote]
fn sum_all(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

#[owl::remote]
async fn late(ms: u64, v: u64) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    v
}

#[test]
fn a_vec_parameter_gathers_many_refs() {
    let rt = rt();
    let total = rt.block_on(|rt| async move {
        // One input arrives late: the task must wait for all of them.
        let mut refs: Vec<ObjectRef<u64>> = (0..20).map(|i| leaf.remote(&rt, i).unwrap()).collect();
        refs.push(late.remote(&rt, 20, 1000).unwrap());
        let s = sum_all.remote(&rt, refs).unwrap();
        // Values and refs can be mixed by passing values directly too.
        let t = sum_all.remote(&rt, vec![1u64, 2, 3]).unwrap();
        s.get_owned().await.unwrap() + t.get_owned().await.unwrap()
    });
    assert_eq!(total, (0..20).sum::<u64>() + 1000 + 6);
    rt.assert_no_leaks();
}
