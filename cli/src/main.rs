//! The `owl` command.
//!
//! - `owl run -n N [--transport quic|tcp|tcp-plain|shm] [--timeout SECS] [--grace SECS] -- PROGRAM ARGS...`
//!   starts N nodes of PROGRAM on this machine, wired together through
//!   `OWL_*` variables (see `run`).
//! - `owl env [--json] [--check-head]` prints what `owl_launch::discover()`
//!   finds here: useful under `srun` and `mpirun`.
//! - `owl start --head` / `owl start --address HOST:PORT [-- PROGRAM]`,
//!   `owl stop`, `owl status [--cluster]`: long-lived clusters that nodes
//!   and programs join and leave while they run (see `start`).
#![forbid(unsafe_code)]

mod nodes;
mod run;
mod start;
mod verdict;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "owl", version, about = "owl: run and inspect owl clusters")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start N nodes of a program on this machine and wait for them.
    Run(run::RunArgs),
    /// Print where this process sits in a cluster (rank, size, head, source).
    Env(EnvArgs),
    /// Start a long-lived cluster's head, or a node that joins one.
    Start(start::StartArgs),
    /// Stop every node `owl start` started on this host.
    Stop(start::StopArgs),
    /// Show the cluster and nodes recorded on this host (--cluster: every
    /// member, asked of the cluster).
    Status(start::StatusArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// QUIC (quinn): encrypted and authenticated.
    Quic,
    /// TCP, frames encrypted with a key from the authenticated handshake.
    Tcp,
    /// TCP without encryption (a trusted fabric only).
    TcpPlain,
    /// Shared-memory rings between nodes on this host.
    Shm,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Tcp => "tcp",
            Transport::TcpPlain => "tcp-plain",
            Transport::Shm => "shm",
        }
    }
}

#[derive(Debug, clap::Args)]
struct EnvArgs {
    /// One JSON line instead of text.
    #[arg(long)]
    json: bool,
    /// Check that the head is reachable: the head accepts a connection from
    /// each other rank, the others connect to it (bounded by --wait).
    #[arg(long)]
    check_head: bool,
    /// Seconds --check-head waits.
    #[arg(long, default_value_t = 30.0)]
    wait: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(args) => run::run(args),
        Cmd::Env(args) => env(args),
        Cmd::Start(args) => start::start(args),
        Cmd::Stop(args) => start::stop(args),
        Cmd::Status(args) => start::status(args),
    }
}

fn env(args: EnvArgs) -> ExitCode {
    let p = match owl_launch::discover() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("owl env: {e}");
            return ExitCode::from(1);
        }
    };
    let check = args.check_head.then(|| {
        check_head(
            &p,
            Duration::try_from_secs_f64(args.wait)
                .unwrap_or(Duration::ZERO)
                .min(Duration::from_secs(1 << 30)),
        )
    });
    if args.json {
        let mut v = serde_json::json!({
            "rank": p.rank,
            "size": p.size,
            "head": p.head.to_string(),
            "listen": p.listen.to_string(),
            "source": p.source.as_str(),
            "job": p.job,
            "head_listener": p.head_listener.is_some(),
            "rendezvous_file": p.rendezvous_file.as_ref().map(|f| f.display().to_string()),
            "secret_fp": secret_fingerprint(&p.secret),
            "host": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
        });
        if let Some(c) = &check {
            v["head_reachable"] = serde_json::json!(c.is_ok());
            if let Err(e) = c {
                v["head_error"] = serde_json::json!(e);
            }
        }
        println!("{v}");
    } else {
        println!("rank    {}", p.rank);
        println!("size    {}", p.size);
        println!("head    {}", p.head);
        println!(
            "listen  {}{}",
            p.listen,
            if p.head_listener.is_some() {
                " (bound)"
            } else {
                ""
            }
        );
        println!("source  {}", p.source);
        println!("job     {}", p.job.as_deref().unwrap_or("-"));
        if let Some(f) = &p.rendezvous_file {
            println!("rendezvous file  {}", f.display());
        }
        match &check {
            Some(Ok(())) => println!("head    reachable"),
            Some(Err(e)) => println!("head    NOT reachable: {e}"),
            None => {}
        }
    }
    let _ = std::io::stdout().flush();
    match check {
        Some(Err(_)) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// 32 bits of FNV-1a over the secret: enough to see that nodes agree on
/// it, too little to help guess it.
fn secret_fingerprint(secret: &[u8; 32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in secret {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:08x}", (h >> 32) as u32 ^ h as u32)
}

/// Head: accepts `size - 1` connections on its bound listener, answering
/// each with one byte; others: connect to the head (retrying until
/// `wait`) and read that byte.
fn check_head(p: &owl_launch::Placement, wait: Duration) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    if p.is_head() {
        let bound;
        let listener = match &p.head_listener {
            Some(l) => l,
            None => {
                bound = std::net::TcpListener::bind(p.listen)
                    .map_err(|e| format!("cannot bind {}: {e}", p.listen))?;
                &bound
            }
        };
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut seen = 1;
        while seen < p.size {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.write_all(b"k");
                    seen += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "only {} of {} nodes connected",
                            seen - 1,
                            p.size - 1
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    } else {
        let addr = p
            .head
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no head address")?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(100)))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(left.max(Duration::from_millis(100))))?;
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b)
                });
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(format!("{addr}: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
