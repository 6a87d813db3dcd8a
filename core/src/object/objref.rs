//! `ObjectRef<T>`: a typed, reference-counted distributed future.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rkyv::rancor::{Fallible, Source};
use rkyv::{Archive, Deserialize, Place, Serialize};

use crate::error::GetError;
use crate::ids::{NodeId, ObjectId, ShardId};
use crate::object::cell::ObjectCell;
use crate::object::value::{contained_at, note_contained, with_contained, Stored, Value};

/// An untyped handle: one count in its cell's `handles`.
pub struct RawRef {
    cell: Arc<ObjectCell>,
}

impl RawRef {
    /// Wraps a cell whose `handles` already counts this handle.
    pub(crate) fn adopt(cell: Arc<ObjectCell>) -> RawRef {
        debug_assert!(cell.handles.load(Ordering::Relaxed) >= 1);
        RawRef { cell }
    }

    pub fn id(&self) -> ObjectId {
        self.cell.id()
    }

    pub(crate) fn cell(&self) -> &Arc<ObjectCell> {
        &self.cell
    }
}

impl Clone for RawRef {
    fn clone(&self) -> RawRef {
        // A clone comes from a live handle, so the count is at least 1: a
        // clone never starts a new handle group (see `ObjectCell::handles`).
        self.cell.handles.fetch_add(1, Ordering::Relaxed);
        RawRef {
            cell: Arc::clone(&self.cell),
        }
    }
}

impl Drop for RawRef {
    fn drop(&mut self) {
        if self.cell.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            crate::object::release(&self.cell);
        }
    }
}

impl std::fmt::Debug for RawRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawRef({})", self.id())
    }
}

/// A future value of type `T`, owned by the shard that created it.
///
/// Clone it freely: clones share one count on this node, and the object is
/// freed when the last clone (and every stored value containing one) is gone.
/// Pass it as a task argument where the function takes a `T` (the task runs
/// once the value is ready and receives it), or where it takes an
/// `ObjectRef<T>` (the task receives the ref itself). Store it inside other
/// values: it keeps its object alive for as long as the containing value.
pub struct ObjectRef<T> {
    raw: RawRef,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for ObjectRef<T> {
    fn clone(&self) -> Self {
        ObjectRef {
            raw: self.raw.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for ObjectRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ObjectRef<{}>({})",
            std::any::type_name::<T>(),
            self.id()
        )
    }
}

impl<T> ObjectRef<T> {
    pub(crate) fn from_raw(raw: RawRef) -> Self {
        ObjectRef {
            raw,
            _t: PhantomData,
        }
    }

    pub fn id(&self) -> ObjectId {
        self.raw.id()
    }

    /// Whether the value (or an error) is there already.
    pub fn is_ready(&self) -> bool {
        self.raw.cell.is_ready()
    }

    pub(crate) fn cell(&self) -> &Arc<ObjectCell> {
        &self.raw.cell
    }

    pub(crate) fn raw(&self) -> &RawRef {
        &self.raw
    }
}

impl<T: Value> ObjectRef<T> {
    /// Waits for the value; inside a task this yields the shard to other work.
    pub fn get(&self) -> GetFuture<T> {
        GetFuture {
            cell: Arc::clone(&self.raw.cell),
            _t: PhantomData,
        }
    }

    /// Waits for the value and deserializes it into an owned `T`.
    pub async fn get_owned(&self) -> Result<T, GetError> {
        self.get().await?.deserialize()
    }

    /// Like `get`, but gives up after `timeout` with `GetError::Timeout`.
    /// The deadline is kept by owl's timer thread, so it passes on time
    /// whatever the shard runs meanwhile.
    pub async fn get_timeout(&self, timeout: Duration) -> Result<Got<T>, GetError> {
        match super::timer::timeout(timeout, self.get()).await {
            Some(r) => r,
            None => Err(GetError::Timeout {
                object: self.id(),
                after: timeout,
            }),
        }
    }

    /// Blocks the calling thread until the value is there. For code outside
    /// owl tasks (a plain `main`, a test); inside a task it returns
    /// `GetError::BlockingInTask`, because blocking would stall the shard.
    pub fn get_blocking(&self) -> Result<Got<T>, GetError> {
        self.wait_blocking(None)
    }

    /// `get_blocking` with a deadline.
    pub fn get_blocking_timeout(&self, timeout: Duration) -> Result<Got<T>, GetError> {
        self.wait_blocking(Some(timeout))
    }

    fn wait_blocking(&self, timeout: Option<Duration>) -> Result<Got<T>, GetError> {
        if super::on_task_thread() {
            return Err(GetError::BlockingInTask { object: self.id() });
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        loop {
            if let Some(r) = resolve(&self.raw.cell) {
                return r;
            }
            if self.raw.cell.wait(&waker) {
                match deadline {
                    None => std::thread::park(),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            return Err(GetError::Timeout {
                                object: self.id(),
                                after: timeout.unwrap_or_default(),
                            });
                        }
                        std::thread::park_timeout(d - now);
                    }
                }
            }
        }
    }
}

pub(crate) struct ThreadWaker(pub(crate) std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn resolve<T: Value>(cell: &Arc<ObjectCell>) -> Option<Result<Got<T>, GetError>> {
    match cell.result()? {
        Ok(stored) => Some(match stored.check::<T>() {
            Ok(()) => Ok(Got {
                cell: Arc::clone(cell),
                _t: PhantomData,
            }),
            Err(message) => Err(GetError::Deserialize {
                object: cell.id(),
                message,
            }),
        }),
        Err(e) => Some(Err(GetError::from_task(e))),
    }
}

/// The future returned by [`ObjectRef::get`].
pub struct GetFuture<T> {
    cell: Arc<ObjectCell>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for GetFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GetFuture({})", self.cell.id())
    }
}

impl<T: Value> Future for GetFuture<T> {
    type Output = Result<Got<T>, GetError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = resolve(&self.cell) {
            return Poll::Ready(r);
        }
        if self.cell.wait(cx.waker()) {
            return Poll::Pending;
        }
        Poll::Ready(resolve(&self.cell).expect("wait() returned false, so the cell is ready"))
    }
}

/// A ready value: derefs to its archived form without copying (for values in
/// the arena, straight into the shared mapping). Keeps the value alive.
pub struct Got<T> {
    cell: Arc<ObjectCell>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Got<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Got({:?})", self.stored())
    }
}

impl<T> Got<T> {
    fn stored(&self) -> &Stored {
        match self.cell.result() {
            Some(Ok(s)) => s,
            _ => unreachable!("a Got is only made from a cell holding a value"),
        }
    }

    /// The archive bytes.
    pub fn bytes(&self) -> &[u8] {
        self.stored().bytes()
    }

    /// Whether the value lives in the node's shared arena.
    pub fn in_arena(&self) -> bool {
        self.stored().in_arena()
    }

    pub fn id(&self) -> ObjectId {
        self.cell.id()
    }
}

impl<T: Value> Got<T> {
    /// Copies the value out into an owned `T`.
    pub fn deserialize(&self) -> Result<T, GetError> {
        deserialize_stored::<T>(self.stored()).map_err(|message| GetError::Deserialize {
            object: self.id(),
            message,
        })
    }
}

impl<T: Value> std::ops::Deref for Got<T> {
    type Target = T::Archived;

    // Unchecked access: validated once on receipt, not on every read.
    #[allow(unsafe_code)]
    fn deref(&self) -> &T::Archived {
        // SAFETY: the bytes were written by `value::store::<T>` for this cell
        // (an `ObjectRef<T>` is only made for cells holding archives of `T`),
        // or received from another node and validated as a `T` before this
        // `Got` was made (`resolve` calls `Stored::check`); they are aligned
        // to at least 16 bytes and never change afterwards.
        unsafe { rkyv::access_unchecked::<T::Archived>(self.stored().bytes()) }
    }
}

/// Deserializes a stored archive of `T`, resolving the refs it contains.
#[allow(unsafe_code)]
pub(crate) fn deserialize_stored<T: Value>(stored: &Stored) -> Result<T, String> {
    stored.check::<T>()?;
    with_contained(stored.contained(), || {
        // SAFETY: see `Got::deref`: `stored` holds an archive of `T` written
        // by owl's serializer, or validated as one just above.
        let archived = unsafe { rkyv::access_unchecked::<T::Archived>(stored.bytes()) };
        rkyv::deserialize::<T, rkyv::rancor::Error>(archived)
    })
    .map_err(|e| e.to_string())
}

/// The archived form of any `ObjectRef`: its id and its slot in the
/// containing value's list of refs.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RefRecord {
    pub node: u32,
    pub shard: u16,
    pub index: u32,
    pub gen: u32,
    pub slot: u32,
}

impl ArchivedRefRecord {
    pub fn object_id(&self) -> ObjectId {
        ObjectId {
            node: NodeId(self.node.to_native()),
            shard: ShardId(self.shard.to_native()),
            index: self.index.to_native(),
            gen: self.gen.to_native(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "an ObjectRef can only be serialized by owl (put, a task argument or a task's return value)"
)]
struct RefOutsideOwl;

#[derive(Debug, thiserror::Error)]
#[error("archived ObjectRef {0} has no live handle in its containing value")]
struct RefNotContained(ObjectId);

impl<T> Archive for ObjectRef<T> {
    type Archived = ArchivedRefRecord;
    type Resolver = (RefRecord, RefRecordResolver);

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        let (record, inner) = resolver;
        record.resolve(inner, out);
    }
}

impl<T, S> Serialize<S> for ObjectRef<T>
where
    S: Fallible + ?Sized,
    S::Error: Source,
    RefRecord: Serialize<S>,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        let slot = note_contained(&self.raw).ok_or_else(|| S::Error::new(RefOutsideOwl))?;
        let id = self.id();
        let record = RefRecord {
            node: id.node.0,
            shard: id.shard.0,
            index: id.index,
            gen: id.gen,
            slot,
        };
        let inner = record.serialize(serializer)?;
        Ok((record, inner))
    }
}

impl<T, D> Deserialize<ObjectRef<T>, D> for ArchivedRefRecord
where
    D: Fallible + ?Sized,
    D::Error: Source,
{
    fn deserialize(&self, _: &mut D) -> Result<ObjectRef<T>, D::Error> {
        let id = self.object_id();
        match contained_at(self.slot.to_native()) {
            Some(raw) if raw.id() == id => Ok(ObjectRef::from_raw(raw)),
            _ => Err(D::Error::new(RefNotContained(id))),
        }
    }
}
