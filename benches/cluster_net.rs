//! Round-trip latency of an o2net message on loopback — a request through `cluster::net` and its
//! status reply — against a bare TCP ping-pong of the same bytes between the same addresses, in
//! one run; prints the ratio for several payload sizes.
//!
//! `cargo bench -p ocfs2-examples --bench cluster_net [-- ROUNDS]` (default 20000 per size).

#[path = "tcp_baseline.rs"]
mod tcp_baseline;

use ocfs2::cluster::net::{Net, NetConfig, NetTimeouts};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tcp_baseline::{stats, tcp_rtts};

const MSG_TYPE: u16 = 7;
const KEY: u32 = 0x6265_6e63;

/// Two o2net nodes on 127.0.0.x, connected; node 1 sends to node 0.
fn o2net_pair(port: u16) -> (Net, Net) {
    let a0 = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 21), port));
    let a1 = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 22), port));
    let t = NetTimeouts::default();
    let n0 = Net::start(NetConfig::new(0, a0, vec![(1, a1)]).with_timeouts(t)).expect("node 0");
    let n1 = Net::start(NetConfig::new(1, a1, vec![(0, a0)]).with_timeouts(t)).expect("node 1");
    n0.register_handler(MSG_TYPE, KEY, 4072, |_, p| p.len() as i32).unwrap();
    n0.set_peer_live(1, true);
    n1.set_peer_live(0, true);
    let end = Instant::now() + Duration::from_secs(10);
    while n1.connected_nodes() != [0] {
        assert!(Instant::now() < end, "o2net did not connect");
        std::thread::sleep(Duration::from_millis(5));
    }
    (n0, n1)
}

fn o2net_rtts(sender: &Net, payload: usize, rounds: usize) -> Vec<f64> {
    let buf = vec![0x5a; payload];
    for _ in 0..rounds / 10 {
        sender.send(0, MSG_TYPE, KEY, &buf).unwrap();
    }
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            let status = sender.send(0, MSG_TYPE, KEY, &buf).expect("send");
            let us = t.elapsed().as_secs_f64() * 1e6;
            assert_eq!(status, payload as i32);
            us
        })
        .collect()
}

fn main() {
    let rounds: usize =
        std::env::args().skip(1).find(|a| !a.starts_with("--")).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let port = 17_000 + (std::process::id() % 1000) as u16;
    let (n0, n1) = o2net_pair(port);
    println!("loopback round trip, {rounds} rounds per size (microseconds)");
    println!(
        "{:>8} {:>10} {:>10} {:>10}   {:>10} {:>10} {:>10}   {:>7}",
        "payload", "o2net avg", "p50", "p99", "tcp avg", "p50", "p99", "ratio"
    );
    for (i, payload) in [0usize, 64, 512, 4072].into_iter().enumerate() {
        let o = stats(o2net_rtts(&n1, payload, rounds));
        let t = stats(tcp_rtts(
            Ipv4Addr::new(127, 0, 0, 22),
            Ipv4Addr::new(127, 0, 0, 21),
            port + 1 + i as u16,
            payload,
            rounds,
        ));
        println!(
            "{:>8} {:>10.1} {:>10.1} {:>10.1}   {:>10.1} {:>10.1} {:>10.1}   {:>6.2}x",
            payload,
            o.mean,
            o.p50,
            o.p99,
            t.mean,
            t.p50,
            t.p99,
            o.mean / t.mean
        );
    }
    n1.stop();
    n0.stop();
}
