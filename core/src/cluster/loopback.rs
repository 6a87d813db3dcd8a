//! Several nodes in this process joined by a real transport on 127.0.0.1:
//! for benchmarks and tests that want real sockets (or shared-memory rings)
//! without launching processes.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Builder, Network, Transport};
use crate::error::StartError;
use crate::ids::NodeId;
use crate::runtime::Runtime;

/// Starts `n` nodes (node `i` configured by `builder(i)`) joined by
/// `transport` on loopback, each on a thread of its own (every node waits
/// for the others to join), with a fresh random secret.
pub fn on_loopback(
    n: u32,
    transport: Transport,
    builder: impl Fn(NodeId) -> Builder + Send + Sync + 'static,
) -> Result<Vec<Runtime>, StartError> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| StartError::Launch(format!("no free loopback port: {e}")))?
        .port();
    let head = SocketAddr::from(([127, 0, 0, 1], port));
    let secret = owl_launch::random_secret();
    let builder = Arc::new(builder);
    let starts: Vec<_> = (0..n)
        .map(|i| {
            let builder = Arc::clone(&builder);
            std::thread::spawn(move || {
                let listen = if i == 0 {
                    head
                } else {
                    SocketAddr::from(([127, 0, 0, 1], 0))
                };
                let network = Network {
                    connect_timeout: Duration::from_secs(20),
                    ..Network::new(listen, head, secret, transport)
                };
                builder(NodeId(i)).network(NodeId(i), n, network).build()
            })
        })
        .collect();
    let mut nodes = Vec::new();
    let mut first_error = None;
    for s in starts {
        match s.join() {
            Ok(Ok(rt)) => nodes.push(rt),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(StartError::Launch(
                    "a node's start-up thread panicked".into(),
                ));
            }
        }
    }
    match first_error {
        None => Ok(nodes),
        Some(e) => Err(e),
    }
}
