//! The README's API example (kept compiling by `cargo test`).

use owl::{ObjectRef, Runtime};

#[owl::remote] // registered at compile time, stable id
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[owl::remote]
async fn sum_tree(rt: Runtime, lo: u64, hi: u64) -> u64 {
    // `Runtime` params are injected
    if hi - lo <= 1 {
        return lo;
    }
    let mid = (lo + hi) / 2;
    let left = sum_tree.remote(&rt, lo, mid).unwrap(); // nested tasks, any depth
    let right = sum_tree.remote(&rt, mid, hi).unwrap();
    add.remote(&rt, left, right)
        .unwrap()
        .get_owned()
        .await
        .unwrap() // refs as arguments
}

#[owl::main] // starts a node from OWL_* settings
async fn main(rt: Runtime) -> owl::Result<()> {
    let x: ObjectRef<u64> = rt.put(40u64)?;
    let y = add.remote(&rt, x.clone(), 2)?; // args may be values or refs
    assert_eq!(*y.get().await?, 42u64); // zero-copy view of the archived value
    let total = sum_tree.remote(&rt, 0, 1000)?.get_owned().await?;
    println!("{total}");
    Ok(())
}
