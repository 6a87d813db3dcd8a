//! Physical limits of this machine, measured in the same run as the owl
//! workloads they bound: memcpy, cross-core hand-off, loopback TCP and QUIC,
//! and a no-op tokio task.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::harness::Sample;
use crate::workloads::Size;

const MIB: usize = 1 << 20;

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn p50_us(h: &Histogram<u64>) -> f64 {
    h.value_at_quantile(0.5) as f64 / 1e3
}

pub fn run(size: Size) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    out.extend(memcpy(size));
    out.push(pingpong_atomic(size));
    out.push(pingpong_channel(size));
    out.extend(tcp(size)?);
    out.extend(quic(size)?);
    out.push(tokio_spawn(size)?);
    Ok(out)
}

fn memcpy(size: Size) -> Vec<Sample> {
    let mut out = Vec::new();
    for (label, bytes) in [("4KiB", 4096usize), ("1MiB", MIB), ("100MiB", 100 * MIB)] {
        if size == Size::Tiny && bytes > MIB {
            continue;
        }
        // Page-aligned buffers on both sides: no 4 KiB aliasing penalty.
        let src = vec![0x5Au8; bytes + 4096];
        let mut dst = vec![0u8; bytes + 4096];
        let so = src.as_ptr().align_offset(4096);
        let d_off = dst.as_ptr().align_offset(4096);
        let total = size.pick(2 << 30, 16 * MIB).max(bytes);
        let iters = total / bytes;
        // Touch the destination once so page faults are not measured.
        dst[d_off..d_off + bytes].copy_from_slice(&src[so..so + bytes]);
        let t0 = Instant::now();
        for _ in 0..iters {
            dst[d_off..d_off + bytes].copy_from_slice(std::hint::black_box(&src[so..so + bytes]));
            std::hint::black_box(&mut dst);
        }
        let gbs = (iters * bytes) as f64 / t0.elapsed().as_secs_f64() / 1e9;
        out.push(Sample::new(
            format!("memcpy_{label}"),
            gbs,
            "GB/s",
            json!({ "bytes": bytes, "iterations": iters }),
        ));
    }
    out
}

/// Runs `a` and `b` on two new threads pinned to two different cores (when
/// the process may use two), so the caller's own affinity is never changed.
fn on_two_cores<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send + 'static,
    B: FnOnce() -> RB + Send + 'static,
    RA: Send + 'static,
    RB: Send + 'static,
{
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let core = |i: usize| cores.get(i % cores.len().max(1)).copied();
    let (ca, cb) = (core(0), core(1));
    let ta = std::thread::spawn(move || {
        if let Some(c) = ca {
            core_affinity::set_for_current(c);
        }
        a()
    });
    let tb = std::thread::spawn(move || {
        if let Some(c) = cb {
            core_affinity::set_for_current(c);
        }
        b()
    });
    (
        ta.join().expect("first thread"),
        tb.join().expect("second thread"),
    )
}

/// Two threads on two cores hand a counter back and forth by spinning.
fn pingpong_atomic(size: Size) -> Sample {
    let rounds = size.pick(200_000, 1_000) as u64;
    let flag = Arc::new(AtomicU64::new(0));
    let other = Arc::clone(&flag);
    let (rtt, ()) = on_two_cores(
        move || {
            let t0 = Instant::now();
            for i in 0..rounds {
                flag.store(2 * i + 1, Ordering::Release);
                while flag.load(Ordering::Acquire) != 2 * i + 2 {
                    std::hint::spin_loop();
                }
            }
            t0.elapsed().as_secs_f64() * 1e6 / rounds as f64
        },
        move || {
            for i in 0..rounds {
                while other.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                other.store(2 * i + 2, Ordering::Release);
            }
        },
    );
    Sample::new(
        "pingpong_atomic_rtt",
        rtt,
        "us",
        json!({ "rounds": rounds }),
    )
}

/// The same hand-off through a channel that parks its receiver.
fn pingpong_channel(size: Size) -> Sample {
    let rounds = size.pick(20_000, 200);
    let (to_peer, peer_rx) = crossbeam_channel::bounded::<u64>(1);
    let (to_main, main_rx) = crossbeam_channel::bounded::<u64>(1);
    let (rtt, ()) = on_two_cores(
        move || {
            let t0 = Instant::now();
            for i in 0..rounds as u64 {
                to_peer.send(i).expect("peer alive");
                main_rx.recv().expect("peer alive");
            }
            t0.elapsed().as_secs_f64() * 1e6 / rounds as f64
        },
        move || {
            while let Ok(v) = peer_rx.recv() {
                if to_main.send(v).is_err() {
                    break;
                }
            }
        },
    );
    Sample::new(
        "pingpong_channel_rtt",
        rtt,
        "us",
        json!({ "rounds": rounds, "channel": "crossbeam bounded(1)" }),
    )
}

fn tcp(size: Size) -> anyhow::Result<Vec<Sample>> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding loopback TCP")?;
    let addr = listener.local_addr()?;
    let rounds = size.pick(5_000, 50);
    let bulk = size.pick(1 << 30, 8 * MIB);
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        for _ in 0..rounds {
            s.read_exact(&mut b)?;
            s.write_all(&b)?;
        }
        // The same ping-pong with both ends busy-polling non-blocking
        // sockets, as owl's spinning shards do.
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        for _ in 0..rounds {
            spin_read(&mut s, &mut b)?;
            s.write_all(&b)?;
        }
        let (mut bulk_in, _) = listener.accept()?;
        let mut buf = vec![0u8; MIB];
        let mut got = 0;
        while got < bulk {
            let n = bulk_in.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        bulk_in.write_all(&[1])?;
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut h = hist();
    let mut b = [7u8; 1];
    for _ in 0..rounds {
        let t0 = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        h.saturating_record(t0.elapsed().as_nanos() as u64);
    }
    let mut busy = hist();
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    c.set_nonblocking(true)?;
    for _ in 0..rounds {
        let t0 = Instant::now();
        c.write_all(&b)?;
        spin_read(&mut c, &mut b)?;
        busy.saturating_record(t0.elapsed().as_nanos() as u64);
    }
    let mut bulk_out = TcpStream::connect(addr)?;
    let chunk = vec![0xA5u8; MIB];
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < bulk {
        bulk_out.write_all(&chunk)?;
        sent += chunk.len();
    }
    bulk_out.read_exact(&mut b)?;
    let gbs = sent as f64 / t0.elapsed().as_secs_f64() / 1e9;
    server.join().expect("tcp server").context("tcp server")?;
    let c = json!({ "rounds": rounds, "bulk_bytes": bulk });
    Ok(vec![
        Sample::new("tcp_rtt_p50", p50_us(&h), "us", c.clone()),
        Sample::new("tcp_rtt_busy_p50", p50_us(&busy), "us", c.clone()),
        Sample::new("tcp_bw", gbs, "GB/s", c),
    ])
}

/// Reads exactly `buf.len()` bytes from a non-blocking socket by spinning.
fn spin_read(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn quic(size: Size) -> anyhow::Result<Vec<Sample>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(quic_async(size))
}

async fn quic_async(size: Size) -> anyhow::Result<Vec<Sample>> {
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let server_cfg = quinn::ServerConfig::with_single_cert(vec![cert.clone()], key.into())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let client_cfg = quinn::ClientConfig::with_root_certificates(Arc::new(roots))?;
    let server = quinn::Endpoint::server(server_cfg, "127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;
    let rounds = size.pick(2_000, 20);
    let bulk = size.pick(256 * MIB, 4 * MIB);
    let server_task = tokio::spawn(async move {
        let conn = server.accept().await.context("no QUIC connection")?.await?;
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut b = [0u8; 1];
        for _ in 0..rounds {
            recv.read_exact(&mut b).await?;
            send.write_all(&b).await?;
        }
        let mut bulk_in = conn.accept_uni().await?;
        let mut buf = vec![0u8; MIB];
        let mut got = 0;
        while let Some(n) = bulk_in.read(&mut buf).await? {
            got += n;
        }
        send.write_all(&[1]).await?;
        send.finish()?;
        conn.closed().await;
        anyhow::Ok(got)
    });
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    client.set_default_client_config(client_cfg);
    let conn = client.connect(addr, "localhost")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut h = hist();
    let mut b = [7u8; 1];
    for _ in 0..rounds {
        let t0 = Instant::now();
        send.write_all(&b).await?;
        recv.read_exact(&mut b).await?;
        h.saturating_record(t0.elapsed().as_nanos() as u64);
    }
    let mut bulk_out = conn.open_uni().await?;
    let chunk = vec![0xA5u8; MIB];
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < bulk {
        bulk_out.write_all(&chunk).await?;
        sent += chunk.len();
    }
    bulk_out.finish()?;
    recv.read_exact(&mut b).await?;
    let gbs = sent as f64 / t0.elapsed().as_secs_f64() / 1e9;
    conn.close(0u32.into(), b"done");
    let got = server_task.await??;
    anyhow::ensure!(
        got == sent,
        "QUIC bulk transfer lost bytes: sent {sent}, received {got}"
    );
    client.wait_idle().await;
    let c = json!({ "rounds": rounds, "bulk_bytes": bulk, "tls": "1.3 (rustls, ring)" });
    Ok(vec![
        Sample::new("quic_rtt_p50", p50_us(&h), "us", c.clone()),
        Sample::new("quic_bw", gbs, "GB/s", c),
    ])
}

/// Spawn-and-await of no-op tasks on a current-thread tokio runtime, batched.
/// Raw loopback TCP and QUIC round trip and bandwidth: the baselines of
/// the two-node workloads.
pub fn raw_transports(size: Size) -> anyhow::Result<Vec<Sample>> {
    let mut out = tcp(size)?;
    out.extend(quic(size)?);
    Ok(out)
}

fn tokio_spawn(size: Size) -> anyhow::Result<Sample> {
    let n = size.pick(1_000_000, 1_000);
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let elapsed = rt.block_on(async move {
        let t0 = Instant::now();
        let handles: Vec<_> = (0..n).map(|_| tokio::spawn(async {})).collect();
        for h in handles {
            h.await.expect("no-op task");
        }
        t0.elapsed()
    });
    Ok(Sample::new(
        "tokio_spawn",
        n as f64 / elapsed.as_secs_f64(),
        "tasks/s",
        json!({ "tasks": n, "runtime": "current_thread" }),
    ))
}
