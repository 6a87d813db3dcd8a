//! Timers that fire whatever the shards are doing: one process-wide thread
//! keeps the deadlines of `get_timeout` and `wait`. A shard's own event
//! loop drives tokio's timers only between tasks, so a timer registered
//! there waits for any long task that shard runs; this one does not.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// One armed deadline; dropped with its future, after which the timer
/// thread finds only a dead weak reference.
struct Entry {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

struct Due {
    at: Instant,
    seq: u64,
    entry: Weak<Entry>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Default)]
struct Wheel {
    heap: Mutex<(BinaryHeap<Reverse<Due>>, u64)>,
    changed: Condvar,
}

fn wheel() -> &'static Wheel {
    static W: OnceLock<&'static Wheel> = OnceLock::new();
    W.get_or_init(|| {
        let w: &'static Wheel = Box::leak(Box::default());
        std::thread::Builder::new()
            .name("owl-timer".into())
            .spawn(move || run(w))
            .expect("the timer thread starts");
        w
    })
}

fn run(w: &'static Wheel) {
    let mut heap = w.heap.lock().expect("timer lock");
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while heap.0.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(d)) = heap.0.pop() {
                due.push(d.entry);
            }
        }
        if !due.is_empty() {
            // Wake outside the lock: a waker may arm another timer.
            drop(heap);
            for e in due.iter().filter_map(Weak::upgrade) {
                e.fired.store(true, Ordering::Release);
                if let Some(waker) = e.waker.lock().expect("timer entry lock").take() {
                    waker.wake();
                }
            }
            heap = w.heap.lock().expect("timer lock");
            continue;
        }
        heap = match heap.0.peek().map(|Reverse(d)| d.at) {
            Some(at) => {
                w.changed
                    .wait_timeout(heap, at.saturating_duration_since(now))
                    .expect("timer lock")
                    .0
            }
            None => w.changed.wait(heap).expect("timer lock"),
        };
    }
}

/// A deadline; ready once it passed.
pub(crate) struct Sleep {
    at: Instant,
    entry: Option<Arc<Entry>>,
}

impl Sleep {
    pub(crate) fn new(after: Duration) -> Self {
        Sleep {
            at: Instant::now() + after,
            entry: None,
        }
    }

    /// Whether the deadline passed; if not, `cx` is woken when it does.
    pub(crate) fn poll_at(&mut self, cx: &mut Context<'_>) -> bool {
        if Instant::now() >= self.at {
            return true;
        }
        let entry = match &self.entry {
            Some(e) => e,
            None => {
                let e = Arc::new(Entry {
                    fired: AtomicBool::new(false),
                    waker: Mutex::new(None),
                });
                let w = wheel();
                let mut heap = w.heap.lock().expect("timer lock");
                heap.1 += 1;
                let seq = heap.1;
                let earliest = heap.0.peek().is_none_or(|Reverse(d)| self.at < d.at);
                heap.0.push(Reverse(Due {
                    at: self.at,
                    seq,
                    entry: Arc::downgrade(&e),
                }));
                drop(heap);
                if earliest {
                    w.changed.notify_one();
                }
                self.entry.insert(e)
            }
        };
        *entry.waker.lock().expect("timer entry lock") = Some(cx.waker().clone());
        // Fired between the clock read and the waker's store: done.
        entry.fired.load(Ordering::Acquire)
    }
}

/// `fut`, or `None` if it is not done within `after`.
pub(crate) async fn timeout<F: Future>(after: Duration, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut sleep = Sleep::new(after);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if sleep.poll_at(cx) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}
