//! One argument of a call: a value, a ref, or refs gathered into one
//! value, and how each crosses to another node and back.

use std::sync::Arc;

use owl_store::Arena;

use super::{ArgIn, ArgOut, Wiring};
use crate::error::{PutError, TaskErrorKind};
use crate::object::cell::ObjectCell;
use crate::object::objref::{deserialize_stored, ObjectRef};
use crate::object::value::{store, Stored, Value};

/// One argument of a call: a value, or a ref whose value the task receives.
pub enum Arg<P> {
    Value(Option<P>),
    Ref(ObjectRef<P>),
    /// A by-value argument archived for retries.
    Kept(Stored),
    /// Several refs whose values the task receives together (a `Vec<T>`
    /// parameter given a `Vec<ObjectRef<T>>`).
    Gather(Box<dyn Gather<P>>),
}

/// Refs resolved together into one argument.
pub trait Gather<P>: Send {
    /// Calls `f` on each ref's cell in order until it returns false.
    fn deps(&self, f: &mut dyn FnMut(&Arc<ObjectCell>) -> bool) -> bool;
    /// The values, for this attempt (the refs stay, for retries).
    fn take(&self) -> Result<P, TaskErrorKind>;
}

impl<Q: Value> Gather<Vec<Q>> for Vec<ObjectRef<Q>> {
    fn deps(&self, f: &mut dyn FnMut(&Arc<ObjectCell>) -> bool) -> bool {
        self.iter().all(|r| f(r.cell()))
    }

    fn take(&self) -> Result<Vec<Q>, TaskErrorKind> {
        self.iter().map(take_ref).collect()
    }
}

fn take_ref<P: Value>(r: &ObjectRef<P>) -> Result<P, TaskErrorKind> {
    match r.cell().result() {
        Some(Ok(stored)) => deserialize_stored::<P>(stored)
            .map_err(|e| TaskErrorKind::Store(format!("argument {}: {e}", r.id()))),
        Some(Err(e)) => Err(TaskErrorKind::DependencyFailed(Arc::clone(e))),
        None => Err(TaskErrorKind::Store(format!(
            "argument {} is not ready",
            r.id()
        ))),
    }
}

impl<P> std::fmt::Debug for Arg<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Value(_) => f.write_str("Arg::Value"),
            Arg::Ref(r) => write!(f, "Arg::Ref({})", r.id()),
            Arg::Kept(_) => f.write_str("Arg::Kept"),
            Arg::Gather(_) => f.write_str("Arg::Gather"),
        }
    }
}

impl<P: Value> Arg<P> {
    pub fn dep(&self, f: &mut dyn FnMut(&Arc<ObjectCell>) -> bool) -> bool {
        match self {
            Arg::Ref(r) => f(r.cell()),
            Arg::Gather(g) => g.deps(f),
            _ => true,
        }
    }

    pub fn keep(&mut self, arena: &Arc<Arena>, inline_max: usize) -> Result<(), PutError> {
        if let Arg::Value(Some(v)) = self {
            *self = Arg::Kept(store(v, arena, inline_max)?);
        }
        Ok(())
    }

    /// Archives the argument for another node and hands it to `f`. Gathered
    /// refs become one archived value: the receiver's parameter is a `Vec<T>`
    /// that no single ref on the wire could stand for.
    ///
    /// An archived value that does not fit what is left of
    /// `w.inline_budget` becomes an object of this node, kept by the call
    /// from then on (retries included): the receiver gets a ref and pulls
    /// the value, as for any large object.
    pub fn wire(
        &mut self,
        w: &mut Wiring<'_>,
        f: &mut dyn FnMut(ArgOut<'_>),
    ) -> Result<(), PutError> {
        if let Arg::Gather(g) = self {
            let value = g.take().map_err(|e| PutError::Serialize(e.to_string()))?;
            *self = Arg::Kept(store(&value, w.arena, w.inline_max)?);
        }
        self.keep(w.arena, w.inline_max)?;
        if let Arg::Kept(s) = self {
            if let Some(left) = w.inline_budget.checked_sub(s.bytes().len()) {
                w.inline_budget = left;
            } else {
                self.make_object(w)?;
            }
        }
        match self {
            Arg::Kept(stored) => f(ArgOut::Value(stored)),
            Arg::Ref(r) => f(ArgOut::Ref(r.raw())),
            Arg::Value(None) => {
                return Err(PutError::Serialize(
                    "argument already consumed by an earlier attempt".into(),
                ))
            }
            Arg::Value(Some(_)) | Arg::Gather(_) => unreachable!("archived above"),
        }
        Ok(())
    }

    /// Makes a kept value an object of this node, held from now on as a
    /// ref (see [`Arg::wire`]).
    fn make_object(&mut self, w: &mut Wiring<'_>) -> Result<(), PutError> {
        let Arg::Kept(stored) = std::mem::replace(self, Arg::Value(None)) else {
            return Ok(());
        };
        let len = stored.bytes().len();
        let raw = (w.put)(stored).ok_or_else(|| {
            PutError::Serialize(format!(
                "an argument of {len} bytes does not fit one message, and only a shard thread can make it an object to send instead"
            ))
        })?;
        *self = Arg::Ref(ObjectRef::from_raw(raw));
        Ok(())
    }

    /// The argument of a call received from another node.
    pub fn from_wire(arg: Option<ArgIn>) -> Result<Arg<P>, String> {
        match arg {
            Some(ArgIn::Value(stored)) => Ok(Arg::Kept(stored)),
            Some(ArgIn::Ref(raw)) => Ok(Arg::Ref(ObjectRef::from_raw(raw))),
            None => Err("fewer arguments than the function takes".into()),
        }
    }

    /// The argument's value for this attempt.
    pub fn take(&mut self) -> Result<P, TaskErrorKind> {
        match self {
            Arg::Value(v) => v.take().ok_or_else(|| {
                TaskErrorKind::Store("argument already consumed by an earlier attempt".into())
            }),
            Arg::Ref(r) => take_ref(r),
            Arg::Gather(g) => g.take(),
            Arg::Kept(stored) => deserialize_stored::<P>(stored)
                .map_err(|e| TaskErrorKind::Store(format!("argument: {e}"))),
        }
    }
}

/// Converts what a caller passes into an [`Arg`]: a value, an `ObjectRef`,
/// a `&ObjectRef` (cloned), or for a `Vec<T>` parameter a `Vec<ObjectRef<T>>`.
pub trait IntoArg<P> {
    fn into_arg(self) -> Arg<P>;
}

impl<P: Value> IntoArg<P> for P {
    fn into_arg(self) -> Arg<P> {
        Arg::Value(Some(self))
    }
}

impl<P> IntoArg<P> for ObjectRef<P> {
    fn into_arg(self) -> Arg<P> {
        Arg::Ref(self)
    }
}

impl<P> IntoArg<P> for &ObjectRef<P> {
    fn into_arg(self) -> Arg<P> {
        Arg::Ref(self.clone())
    }
}

/// A `Vec<T>` parameter may be given the refs of its elements: the task runs
/// once all are ready and receives their values, in order.
impl<Q: Value> IntoArg<Vec<Q>> for Vec<ObjectRef<Q>> {
    fn into_arg(self) -> Arg<Vec<Q>> {
        Arg::Gather(Box::new(self))
    }
}
