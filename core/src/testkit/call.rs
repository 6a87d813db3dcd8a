//! A call that is followed, never run: `u64` arguments, by value or by
//! ref, and the function it calls. The deterministic cluster and the owner
//! layer's tests submit it to see where tasks, their arguments and their
//! results go; running such a task means completing its object by hand.

use std::sync::Arc;

use owl_store::Arena;

use crate::error::{PutError, TaskErrorKind};
use crate::ids::FnId;
use crate::object::cell::ObjectCell;
use crate::spec::{Arg, ArgIn, ArgOut, Call, Exec, FnInfo, Wiring};

pub(crate) struct ArgsCall(pub Vec<Arg<u64>>);

impl Call for ArgsCall {
    fn deps(&self, f: &mut dyn FnMut(&Arc<ObjectCell>) -> bool) {
        for a in &self.0 {
            if !a.dep(f) {
                return;
            }
        }
    }

    fn keep_args(&mut self, arena: &Arc<Arena>, inline_max: usize) -> Result<(), PutError> {
        self.0
            .iter_mut()
            .try_for_each(|a| a.keep(arena, inline_max))
    }

    fn run(&mut self) -> Exec {
        Exec::Done(Err(TaskErrorKind::Failed(
            "a followed call is completed by hand, never run".into(),
        )))
    }

    fn wire(&mut self, w: &mut Wiring<'_>, f: &mut dyn FnMut(ArgOut<'_>)) -> Result<(), PutError> {
        self.0.iter_mut().try_for_each(|a| a.wire(w, f))
    }
}

fn decode(args: Vec<ArgIn>) -> Result<Box<dyn Call>, String> {
    let args = args
        .into_iter()
        .map(|a| Arg::from_wire(Some(a)))
        .collect::<Result<_, _>>()?;
    Ok(Box::new(ArgsCall(args)))
}

/// The function an [`ArgsCall`] calls (registered with an owner layer by
/// hand, not in `REMOTE_FNS`).
pub(crate) static ARGS_FN: FnInfo = FnInfo {
    id: FnId(0xde7_de7),
    name: "followed",
    path: "owl::testkit::followed",
    is_async: false,
    decode,
};
