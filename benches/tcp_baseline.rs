//! The peer every messaging benchmark compares with: a bare TCP ping-pong on loopback with the
//! bytes of an o2net message (a request of header + payload, a reply of one header) and no
//! o2net or DLM in between, and the summary every latency row prints. Included with `#[path]` by
//! the benches that print that ratio.

use ocfs2::cluster::net::dial;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The o2net message header.
pub const HEADER: usize = 24;

/// Round trips in microseconds from `client` to a server on `server:port`; the client dials
/// like o2net does (TCP_NODELAY), from the address o2net would use.
pub fn tcp_rtts(client: Ipv4Addr, server: Ipv4Addr, port: u16, payload: usize, rounds: usize) -> Vec<f64> {
    let listener = TcpListener::bind((server, port)).expect("bind");
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut req = vec![0u8; HEADER + payload];
        let reply = [0u8; HEADER];
        while s.read_exact(&mut req).is_ok() {
            if s.write_all(&reply).is_err() {
                break;
            }
        }
    });
    let mut c: TcpStream =
        dial(client.into(), SocketAddr::from((server, port)), Duration::from_secs(5)).expect("connect");
    let req = vec![0x5a; HEADER + payload];
    let mut reply = [0u8; HEADER];
    let mut once = || {
        c.write_all(&req).unwrap();
        c.read_exact(&mut reply).unwrap();
    };
    for _ in 0..rounds / 10 {
        once();
    }
    let out = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            once();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    drop(c);
    echo.join().unwrap();
    out
}

/// Mean, median and 99th percentile of latencies.
pub struct Stats {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
}

pub fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    Stats { mean: v.iter().sum::<f64>() / v.len() as f64, p50: at(0.5), p99: at(0.99) }
}
