//! The user API of a node: `Runtime` handles, puts, submits, waits,
//! cancels and root tasks. Start-up lives in `startup`, node-wide state in
//! `node`, the leak check in `leaks`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use owl_store::ArenaStats;

use crate::config::{Builder, Config};
use crate::engine::host::HostCtx;
use crate::engine::node::{NodeLife, NodeShared};
use crate::engine::shard::{with_current, EventLoopKind, Msg, Shard};
use crate::error::{PutError, SubmitError, TaskErrorKind};
use crate::ids::NodeId;
use crate::object::objref::{ObjectRef, RawRef};
use crate::object::value::{store, Stored, Value};
use crate::spec::{Call, CallOpts, FnInfo};

/// A handle to an owl node. Cheap to clone.
///
/// The handle returned by [`Builder::build`] (and its clones) owns the node:
/// when the last of them drops, the shards stop and their threads are
/// joined. Handles obtained inside tasks ([`runtime`], injected `Runtime`
/// parameters) do not keep the node alive.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) shared: Arc<NodeShared>,
    pub(crate) _owner: Option<Arc<NodeLife>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("node", &self.shared.node)
            .field("shards", &self.shared.shards.len())
            .field("event_loop", &self.shared.event_loop)
            .finish()
    }
}

/// The runtime of the task running on this thread (inside tasks only).
pub fn runtime() -> Option<Runtime> {
    with_current(|s| Runtime {
        shared: Arc::clone(&s.shared),
        _owner: None,
    })
}
impl Runtime {
    pub fn builder() -> Builder {
        Builder::new()
    }
    /// The event loop the shards run on (io_uring when the kernel allows).
    pub fn event_loop(&self) -> EventLoopKind {
        self.shared.event_loop
    }

    pub fn shards(&self) -> usize {
        self.shared.shards.len()
    }

    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// Nodes in this node's cluster (1 when it is not part of one); in an
    /// open cluster, the ids known so far (gone nodes included).
    pub fn nodes(&self) -> u32 {
        self.shared.net.as_ref().map_or(1, |n| n.nodes())
    }

    /// Every node of the cluster as this node sees it (this one included):
    /// up or gone, labels, program, last reported load. Empty outside a
    /// cluster.
    pub fn members(&self) -> Vec<crate::engine::net::Member> {
        self.shared
            .net
            .as_ref()
            .map(crate::engine::net::Net::members)
            .unwrap_or_default()
    }

    /// Where this node's transport listens (the real port when port 0 was
    /// asked for); `None` outside a networked cluster.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        let net = self.shared.net.as_ref()?;
        net.mesh().map(|m| m.local_addr())
    }
    /// Tells this node that `peer` died, as its transport would on a lost
    /// connection or missed heartbeats: tasks it ran for us are retried or
    /// failed, our proxies of its objects fail with `OwnerDied`, and its
    /// borrows of our objects are released. For fault-injection tests.
    #[doc(hidden)]
    pub fn peer_down(&self, peer: NodeId) {
        crate::engine::host::node_gone(&self.shared, peer, false);
    }

    /// How many copies of `r`'s value its owner knows of, when this node
    /// owns it: 1 once the value is here (with the acknowledged copies of
    /// a [`put_with`](Runtime::put_with)); for a result that stayed on
    /// other nodes, the copies they acknowledged (see
    /// [`CallOpts::replicas`](crate::CallOpts::replicas)); 0 while its
    /// task runs, or for an object owned elsewhere. A result with `k`
    /// copies survives the death of `k - 1` of their nodes without running
    /// its task again.
    pub fn copies<T>(&self, r: &ObjectRef<T>) -> usize {
        if r.id().node != self.shared.node {
            return 0;
        }
        if r.is_ready() {
            if !matches!(r.cell().result(), Some(Ok(_))) {
                return 0;
            }
            // This node's, and those of a replicated put.
            let kept = self
                .shared
                .net
                .as_ref()
                .map_or(0, |n| n.owner.copies(r.id()));
            return kept.max(1);
        }
        self.shared
            .net
            .as_ref()
            .map_or(0, |n| n.owner.copies(r.id()))
    }

    /// Bytes this node has written to its peers so far (frames, headers
    /// and sealing included; 0 outside a cluster or over in-process
    /// links): traffic figures for benchmarks and tests.
    pub fn bytes_sent(&self) -> u64 {
        self.shared
            .net
            .as_ref()
            .and_then(|n| n.mesh())
            .map_or(0, |m| m.bytes_sent())
    }

    pub(crate) fn shared(&self) -> &Arc<NodeShared> {
        &self.shared
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Runs `f` on this thread's shard if it belongs to this runtime, else
    /// on a shard picked round-robin, waiting for the answer.
    fn on_shard<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Shard) -> R + Send + 'static,
    ) -> Option<R> {
        let mut f = Some(f);
        let local = with_current(|s| {
            if s.shared.serial == self.shared.serial {
                Some((f.take().expect("called once"))(s))
            } else {
                None
            }
        })
        .flatten();
        if local.is_some() {
            return local;
        }
        if self.shared.stopping() {
            return None;
        }
        let f = f.expect("not used yet");
        let n = self.shared.next_shard();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.shared.to_shard(
            n,
            Msg::Run(Box::new(move |s| {
                let _ = tx.send(f(s));
            })),
        );
        rx.recv().ok()
    }

    /// Stores a value as a new object owned by the caller.
    pub fn put<T: Value>(&self, value: T) -> Result<ObjectRef<T>, PutError> {
        let stored = store(&value, &self.shared.arena, self.shared.config.inline_max)?;
        self.put_stored(stored).map(ObjectRef::from_raw)
    }

    /// [`put`](Runtime::put), keeping `replicas` copies of the value on
    /// distinct nodes: this node's, and `replicas - 1` that other live
    /// nodes pull from here and keep. A copy counts once its node has
    /// acknowledged it ([`copies`](Runtime::copies)); one lost with its
    /// node is made again on another. Readers on other nodes take turns
    /// over the copies, so a value many nodes read is not all served from
    /// here.
    ///
    /// The copies do not outlive this node: a put object, like every
    /// object, shares its owner's fate, and its refs fail with
    /// [`OwnerDied`](crate::TaskErrorKind::OwnerDied) when this node dies
    /// (the owner holds the ref counts and the locations). A value put
    /// here is never lost while this node lives, so put objects need no
    /// lineage. Outside a cluster, or with `replicas <= 1`, this is
    /// `put`.
    pub fn put_with<T: Value>(&self, value: T, replicas: usize) -> Result<ObjectRef<T>, PutError> {
        let r = self.put(value)?;
        if replicas > 1 {
            if let Some(ctx) = HostCtx::of(&self.shared) {
                ctx.owner().keep_put_copies(&ctx, r.cell(), replicas);
            }
        }
        Ok(r)
    }

    fn put_stored(&self, stored: Stored) -> Result<RawRef, PutError> {
        self.on_shard(move |s| s.put(stored))
            .ok_or(PutError::Shutdown)
    }

    /// Submits a call (used by `#[owl::remote]`'s generated code).
    #[doc(hidden)]
    pub fn submit<R>(
        &self,
        func: &'static FnInfo,
        mut call: Box<dyn Call>,
        opts: Option<CallOpts>,
    ) -> Result<ObjectRef<R>, SubmitError> {
        if self.shared.stopping() {
            return Err(SubmitError::Shutdown);
        }
        let opts = opts.filter(|o| *o != CallOpts::default()).map(Box::new);
        if opts.as_ref().is_some_and(|o| o.retries_app_errors()) {
            call.keep_args(&self.shared.arena, self.shared.config.inline_max)
                .map_err(|source| SubmitError::Arg {
                    task: opts
                        .as_ref()
                        .and_then(|o| o.name.as_deref())
                        .unwrap_or(func.name)
                        .to_string(),
                    source,
                })?;
        }
        self.on_shard(move |s| s.submit(func, call, opts))
            .map(ObjectRef::from_raw)
            .ok_or(SubmitError::Shutdown)
    }

    /// Waits until `n` of `refs` are ready (or `timeout` passes); returns
    /// (ready, pending), each in the order given. Inside a task this yields.
    pub async fn wait<T>(
        &self,
        refs: &[ObjectRef<T>],
        n: usize,
        timeout: Option<Duration>,
    ) -> (Vec<ObjectRef<T>>, Vec<ObjectRef<T>>) {
        let n = n.min(refs.len());
        let waiting = crate::object::wait::WaitFuture::new(
            refs.iter().map(|r| Arc::clone(r.cell())).collect(),
            n,
        );
        match timeout {
            Some(t) => {
                // owl's timer thread: on time whatever the shard runs.
                let _ = crate::object::timer::timeout(t, waiting).await;
            }
            None => waiting.await,
        }
        refs.iter().cloned().partition(|r| r.is_ready())
    }

    /// `wait` for code outside tasks: blocks the calling thread.
    pub fn wait_blocking<T>(
        &self,
        refs: &[ObjectRef<T>],
        n: usize,
        timeout: Option<Duration>,
    ) -> (Vec<ObjectRef<T>>, Vec<ObjectRef<T>>) {
        let n = n.min(refs.len());
        let cells = refs.iter().map(|r| Arc::clone(r.cell())).collect();
        crate::object::wait::wait_blocking(cells, n, timeout);
        refs.iter().cloned().partition(|r| r.is_ready())
    }

    /// Cancels the task producing `r` and every task it submitted: pending
    /// ones never run, running async ones are dropped at their next
    /// suspension, and `get` returns `GetError::Cancelled`. A sync function
    /// already running finishes, but its result is discarded. Returns whether
    /// the object was still pending.
    pub fn cancel<T>(&self, r: &ObjectRef<T>) -> bool {
        let node = self.shared.node;
        let name = |c: &crate::object::cell::ObjectCell| {
            let id = c.id();
            Arc::new(crate::error::TaskError {
                kind: TaskErrorKind::Cancelled,
                task: format!("{id}"),
                object: id,
                node,
                shard: id.shard,
                attempts: 0,
                history: Vec::new(),
            })
        };
        let was_pending = r.cell().cancel(&name);
        if let Some(ctx) = HostCtx::of(&self.shared) {
            ctx.owner().cancel_remote(&ctx);
        }
        // Wake the owner so it drops suspended work promptly.
        for s in self.shared.shards.iter() {
            s.wake();
        }
        was_pending
    }

    /// Runs `f(runtime)` as a root task on shard 0 and blocks until it
    /// finishes. This is how `#[owl::main]` runs `main`: everything it
    /// submits is owned by shard 0 and takes the fast, local path.
    pub fn block_on<F, Fut, R>(&self, f: F) -> R
    where
        F: FnOnce(Runtime) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        assert!(
            !crate::engine::shard::on_shard_thread(),
            "block_on called inside an owl task; await the future instead"
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let handle = Runtime {
            shared: Arc::clone(&self.shared),
            _owner: None,
        };
        self.shared.shards[0].send(Msg::Run(Box::new(move |s| {
            let fut = f(handle);
            let root = async move {
                let _ = tx.send(fut.await);
            };
            crate::engine::roots::Roots::spawn(&s.shared, Box::pin(root));
        })));
        match rx.recv() {
            Ok(r) => r,
            Err(_) => panic!("the future passed to block_on panicked or the runtime shut down; see the log above"),
        }
    }
    /// The arena's usage.
    pub fn store_stats(&self) -> ArenaStats {
        self.shared.arena.stats()
    }
}
