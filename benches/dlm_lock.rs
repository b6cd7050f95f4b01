//! What a DLM lock costs, in one run, on two nodes of one process talking o2net over loopback
//! TCP (heartbeat on a shared memory disk):
//! - an uncached lock round trip: node 1 takes and releases EX on resources node 0 masters
//!   (CREATE_LOCK, the PROXY_AST grant, UNLOCK_LOCK cross the wire), against a bare TCP ping-pong
//!   of a CREATE_LOCK-sized request between the same addresses, and against an o2net round trip
//!   of the same payload;
//! - a cached relock: `Dlm::acquire` of a lock the cache already holds at a compatible mode;
//! - EX ping-pong: the two nodes take a cached EX lock in strict turns, so each turn needs the
//!   master's BAST, the holder's release and a new grant.
//!
//! `cargo bench -p ocfs2-examples --bench dlm_lock [-- ROUNDS [SECONDS]]` (defaults: 5000 lock
//! round trips, 3 seconds of ping-pong).

#[path = "tcp_baseline.rs"]
mod tcp_baseline;

use ocfs2::cluster::config::ClusterConfig;
use ocfs2::cluster::heartbeat::HeartbeatRegion;
use ocfs2::cluster::timeouts::Timeouts;
use ocfs2::device::{BlockDevice, MemDevice};
use ocfs2::dlm::{Dlm, Mode};
use ocfs2::{Cluster, FenceAction};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tcp_baseline::{stats, tcp_rtts, Stats, HEADER};

/// `struct dlm_create_lock`: cookie, flags, pad, node, mode, name length, 64 name bytes.
const CREATE_LOCK_LEN: usize = 80;
const PING_TYPE: u16 = 7;
const PING_KEY: u32 = 0x646c_6d62;

fn addr(node: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 91 + node)
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for the cluster");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two cluster nodes in this process, heartbeating on one memory disk, o2net connected.
fn two_nodes(port: u16) -> (Arc<Cluster>, Arc<Cluster>) {
    let mut conf = ClusterConfig::empty("bench");
    conf.add_cluster("bench").unwrap();
    for n in 0..2u8 {
        conf.add_node("bench", &format!("n{n}"), addr(n), Some(port), Some(n)).unwrap();
    }
    let timeouts = Timeouts {
        heartbeat_threshold: 10,
        heartbeat_interval_ms: 200,
        idle_timeout_ms: 10_000,
        keepalive_delay_ms: 2000,
        reconnect_delay_ms: 500,
    };
    let start = |name: &str| {
        Arc::new(Cluster::start_with(conf.clone(), Some(name), timeouts, FenceAction::callback(|_| {})).unwrap())
    };
    let (a, b) = (start("n0"), start("n1"));
    let disk: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(64 * 1024));
    let region = HeartbeatRegion::new(4096, 512, 8);
    std::thread::scope(|s| {
        let ra = s.spawn(|| a.heartbeat_region("R", disk.clone(), region));
        let rb = s.spawn(|| b.heartbeat_region("R", disk.clone(), region));
        ra.join().unwrap().unwrap();
        rb.join().unwrap().unwrap();
    });
    wait_until(Duration::from_secs(20), || a.members().to_vec() == vec![1] && b.members().to_vec() == vec![0]);
    (a, b)
}

/// o2net round trips of `payload` bytes from node 1 to node 0 on the clusters' own o2net.
fn o2net_rtts(a: &Cluster, b: &Cluster, payload: usize, rounds: usize) -> Vec<f64> {
    a.net().register_handler(PING_TYPE, PING_KEY, CREATE_LOCK_LEN as u32, |_, _| 0).unwrap();
    let buf = vec![0x5a; payload];
    for _ in 0..rounds / 10 {
        b.net().send(0, PING_TYPE, PING_KEY, &buf).unwrap();
    }
    let out = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            b.net().send(0, PING_TYPE, PING_KEY, &buf).expect("o2net send");
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    a.net().unregister_handler(PING_TYPE, PING_KEY);
    out
}

/// Node 1 takes and releases EX on resources node 0 masters: (lock, unlock, both) in µs.
fn uncached(d0: &Dlm, d1: &Dlm, rounds: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let names: Vec<String> = (0..16).map(|i| format!("remote{i:02}")).collect();
    // Node 0 asks first and becomes the master; masters keep their resources.
    for n in &names {
        let h = d0.lock(n.as_bytes(), Mode::Ex, 0).unwrap();
        d0.unlock(h).unwrap();
    }
    let (mut lock, mut unlock, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds + rounds / 10 {
        let name = names[i % names.len()].as_bytes();
        let t = Instant::now();
        let h = d1.lock(name, Mode::Ex, 0).unwrap();
        let t1 = Instant::now();
        d1.unlock(h).unwrap();
        let t2 = Instant::now();
        if i >= rounds / 10 {
            lock.push((t1 - t).as_secs_f64() * 1e6);
            unlock.push((t2 - t1).as_secs_f64() * 1e6);
            both.push((t2 - t).as_secs_f64() * 1e6);
        }
    }
    (lock, unlock, both)
}

/// `Dlm::acquire` of a lock the cache holds at PR, asking PR and asking NL: ns per relock.
fn cached_relock(d1: &Dlm) -> (f64, f64) {
    let name = b"cached";
    drop(d1.acquire(name, Mode::Pr).unwrap());
    let measure = |mode: Mode| {
        let n = 1_000_000u32;
        for _ in 0..n / 10 {
            drop(d1.acquire(name, mode).unwrap());
        }
        let t = Instant::now();
        for _ in 0..n {
            let g = d1.acquire(name, mode).unwrap();
            std::hint::black_box(&g);
            drop(g);
        }
        t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    };
    (measure(Mode::Pr), measure(Mode::Nl))
}

/// The two nodes take a cached EX lock in strict turns for `secs`: transfers per second, and
/// the turns seen out of order (must be 0).
fn ping_pong(d0: &Dlm, d1: &Dlm, secs: f64) -> (f64, u64, u64) {
    let name = b"pingpong";
    let turn = Mutex::new(0u64);
    let changed = Condvar::new();
    let stop = AtomicBool::new(false);
    let holder = Mutex::new(None::<u8>);
    let bad = std::sync::atomic::AtomicU64::new(0);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        for (me, d) in [(0u64, d0), (1u64, d1)] {
            let (turn, changed, stop, holder, bad) = (&turn, &changed, &stop, &holder, &bad);
            s.spawn(move || loop {
                {
                    let mut t = turn.lock().unwrap();
                    while *t % 2 != me && !stop.load(Ordering::SeqCst) {
                        t = changed.wait(t).unwrap();
                    }
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
                let g = d.acquire(name, Mode::Ex).unwrap();
                {
                    // Exclusion, checked on the way: nobody else in the section.
                    let mut h = holder.lock().unwrap();
                    if h.is_some() {
                        bad.fetch_add(1, Ordering::SeqCst);
                    }
                    *h = Some(me as u8);
                }
                *holder.lock().unwrap() = None;
                drop(g);
                let mut t = turn.lock().unwrap();
                *t += 1;
                if Instant::now() >= end {
                    stop.store(true, Ordering::SeqCst);
                }
                changed.notify_all();
            });
        }
    });
    let turns = *turn.lock().unwrap();
    (turns as f64 / start.elapsed().as_secs_f64(), turns, bad.load(Ordering::SeqCst))
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let port = 18_000 + (std::process::id() % 1000) as u16;
    let (a, b) = two_nodes(port);
    let d0 = Dlm::join(&a, "dlmbench").expect("node 0 joins");
    let d1 = Dlm::join(&b, "dlmbench").expect("node 1 joins");
    wait_until(Duration::from_secs(20), || d0.members() == vec![0, 1] && d1.members() == vec![0, 1]);

    let tcp = stats(tcp_rtts(addr(1), addr(0), port + 1, CREATE_LOCK_LEN, rounds));
    let o2net = stats(o2net_rtts(&a, &b, CREATE_LOCK_LEN, rounds));
    let (lock, unlock, both) = uncached(&d0, &d1, rounds);
    let (lock, unlock, both) = (stats(lock), stats(unlock), stats(both));
    let (relock_pr, relock_nl) = cached_relock(&d1);
    let (rate, turns, bad) = ping_pong(&d0, &d1, secs);

    println!("DLM lock costs, 2 nodes over loopback TCP, {rounds} rounds");
    println!("{:<44} {:>10} {:>10} {:>10} {:>9}", "", "mean µs", "p50", "p99", "vs tcp");
    let row = |what: &str, s: &Stats| {
        println!("{what:<44} {:>10.1} {:>10.1} {:>10.1} {:>8.2}x", s.mean, s.p50, s.p99, s.mean / tcp.mean);
    };
    row(&format!("tcp round trip ({}+{HEADER} B / {HEADER} B)", HEADER + CREATE_LOCK_LEN - HEADER), &tcp);
    row(&format!("o2net round trip ({CREATE_LOCK_LEN} B payload)"), &o2net);
    row("lock EX, remote master (uncached)", &lock);
    row("unlock, remote master", &unlock);
    row("lock + unlock round trip, remote master", &both);
    println!("cached relock (acquire PR on a cached PR): {relock_pr:.0} ns");
    println!("cached relock (acquire NL on a cached PR): {relock_nl:.0} ns");
    println!("EX ping-pong between 2 nodes: {rate:.0} transfers/s ({turns} in {secs} s, {bad} out of turn)");
    assert_eq!(bad, 0, "two nodes held EX at once");

    d1.leave().unwrap();
    d0.leave().unwrap();
    drop((a, b));
}
