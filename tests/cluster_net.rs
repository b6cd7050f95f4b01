//! o2net over real loopback sockets: nodes on 127.0.N.x addresses (all of 127/8 is local on
//! Linux), raw peers that speak the wire format byte by byte as the kernel would, and a peer in
//! its own process (`ocfs2-net-node`) that is killed with SIGKILL.
//!
//! Each test uses its own 127.0.N.0/24 and node names, so that the shared log capture can be
//! searched per test while tests run in parallel.

use ocfs2::cluster::net::frame::{
    encode_message, Decoder, Frame, Handshake, Magic, MsgHeader, SysStatus, O2NET_PROTOCOL_VERSION,
};
use ocfs2::cluster::net::{dial, CloseReason, Net, NetConfig, NetError, NetEvent, NetNode, NetTimeouts};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Linux errno values, as the kernel's o2net returns them.
mod errno {
    pub const ESRCH: i32 = 3;
    pub const EIO: i32 = 5;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
    pub const ELOOP: i32 = 40;
    pub const EOVERFLOW: i32 = 75;
    pub const ENOPROTOOPT: i32 = 92;
    pub const ENOTCONN: i32 = 107;
    pub const EHOSTDOWN: i32 = 112;
}

// ---- log capture -------------------------------------------------------------------------

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOG_INIT: Once = Once::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        let line = format!("{} {}", r.level(), r.args());
        if std::env::var_os("NET_TEST_LOG").is_some() {
            eprintln!("{line}");
        }
        LOGS.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

fn init_logs() {
    LOG_INIT.call_once(|| {
        log::set_logger(&Capture).expect("install test logger");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Log lines containing every one of `parts`.
fn logs_with(parts: &[&str]) -> Vec<String> {
    LOGS.lock().unwrap().iter().filter(|l| parts.iter().all(|p| l.contains(p))).cloned().collect()
}

fn wait_log(parts: &[&str], timeout: Duration) -> String {
    let end = Instant::now() + timeout;
    loop {
        if let Some(l) = logs_with(parts).into_iter().next() {
            return l;
        }
        assert!(Instant::now() < end, "no log line with {parts:?} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- cluster helpers -----------------------------------------------------------------------

const ECHO: u16 = 1;
const KEY: u32 = 0x6f32_6e74;

fn fast() -> NetTimeouts {
    NetTimeouts { idle_timeout_ms: 600, keepalive_delay_ms: 100, reconnect_delay_ms: 200, heartbeat_timeout_ms: 60_000 }
}

fn ip(net: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, net, host))
}

/// A port free on that address right now.
fn free_addr(net: u8, host: u8) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::new(ip(net, host), 0)).expect("bind a loopback address");
    l.local_addr().unwrap()
}

/// Node `num` of test network `net` sits at 127.0.net.(num+1).
fn nodes(tag: &str, net: u8, nums: &[u8]) -> Vec<NetNode> {
    nums.iter().map(|&n| NetNode::new(n, format!("{tag}{n}"), free_addr(net, n + 1))).collect()
}

fn config(all: &[NetNode], me: u8, t: NetTimeouts) -> NetConfig {
    let local = all.iter().find(|n| n.num == me).unwrap().clone();
    let mut cfg = NetConfig::new(me, local.addr, Vec::new()).with_timeouts(t);
    cfg.local = local;
    cfg.peers = all.iter().filter(|n| n.num != me).cloned().collect();
    cfg.send_timeout = Duration::from_secs(5);
    cfg
}

/// Starts every node with an echo handler (`1000 * self + len`) and marks all peers live.
fn start_all(all: &[NetNode], t: NetTimeouts) -> Vec<Net> {
    let nets: Vec<Net> = all.iter().map(|n| Net::start(config(all, n.num, t)).expect("start node")).collect();
    for net in &nets {
        let me = net.local_node();
        net.register_handler(ECHO, KEY, 4072, move |_, p| 1000 * i32::from(me) + p.len() as i32).unwrap();
    }
    for net in &nets {
        for n in all.iter().filter(|n| n.num != net.local_node()) {
            net.set_peer_live(n.num, true);
        }
    }
    nets
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

fn wait_connected(net: &Net, want: &[u8]) {
    assert!(
        wait_until(Duration::from_secs(5), || net.connected_nodes() == want),
        "node {} connected to {:?}, expected {want:?}",
        net.local_node(),
        net.connected_nodes()
    );
}

fn wait_event(rx: &Receiver<NetEvent>, timeout: Duration, pred: impl Fn(&NetEvent) -> bool) -> NetEvent {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(_) => continue,
            Err(_) => panic!("expected event not seen within {timeout:?}"),
        }
    }
}

// ---- a raw peer that speaks the wire format itself -----------------------------------------

struct RawPeer {
    s: TcpStream,
    dec: Decoder,
}

impl RawPeer {
    fn connect(from: IpAddr, to: SocketAddr) -> RawPeer {
        let s = dial(from, to, Duration::from_secs(2)).expect("raw connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        RawPeer { s, dec: Decoder::new() }
    }

    fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.s.write_all(b)
    }

    /// The next frame, or `None` at EOF, on error or on timeout.
    fn frame(&mut self) -> Option<Frame> {
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(Some(f)) = self.dec.next_frame() {
                return Some(f);
            }
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.dec.push(&buf[..n]),
            }
        }
    }

    /// Handshakes with `t`, returning the node's handshake.
    fn handshake(&mut self, t: NetTimeouts) -> Handshake {
        self.write(&t.handshake().to_bytes()).unwrap();
        match self.frame() {
            Some(Frame::Handshake(h)) => h,
            other => panic!("expected the node's handshake, got {other:?}"),
        }
    }

    /// True when the node closes the connection within `timeout` (reading and dropping
    /// whatever it sends before).
    fn closed_within(&mut self, timeout: Duration) -> bool {
        self.s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn two_nodes_exchange_messages_with_status_replies() {
    init_logs();
    let all = nodes("pair", 10, &[1, 2]);
    let nets = start_all(&all, fast());
    wait_connected(&nets[0], &[2]);
    wait_connected(&nets[1], &[1]);
    // The higher number dialed, the lower accepted, in the kernel's words.
    wait_log(&["o2net: Connected to node pair1 (num 1) at", &all[0].addr.to_string()], Duration::from_secs(2));
    wait_log(&["o2net: Accepted connection from node pair2 (num 2) at"], Duration::from_secs(2));
    assert_eq!(nets[0].send(2, ECHO, KEY, b"hello"), Ok(2005));
    assert_eq!(nets[1].send(1, ECHO, KEY, &[]), Ok(1000));
    // Many senders at once share the one connection; each gets its own reply.
    let a = Arc::new(nets);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..100usize {
                    let len = (w * 100 + i) % 4073;
                    let (from, to) = if i % 2 == 0 { (0, 2) } else { (1, 1) };
                    assert_eq!(a[from].send(to, ECHO, KEY, &vec![7; len]), Ok(1000 * i32::from(to) + len as i32));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn three_nodes_all_pairs_exchange_messages() {
    init_logs();
    let all = nodes("trio", 11, &[1, 2, 3]);
    let nets = start_all(&all, fast());
    for net in &nets {
        let others: Vec<u8> = [1, 2, 3].into_iter().filter(|&n| n != net.local_node()).collect();
        wait_connected(net, &others);
    }
    for from in &nets {
        for to in [1u8, 2, 3].into_iter().filter(|&n| n != from.local_node()) {
            let payload = vec![from.local_node(); usize::from(to) * 10];
            assert_eq!(from.send(to, ECHO, KEY, &payload), Ok(1000 * i32::from(to) + i32::from(to) * 10));
        }
    }
    // The handler sees who sent.
    nets[2].register_handler(9, 9, 0, |from, _| i32::from(from)).unwrap();
    assert_eq!(nets[0].send(3, 9, 9, &[]), Ok(1));
    assert_eq!(nets[1].send(3, 9, 9, &[]), Ok(2));
}

#[test]
fn handler_registry_answers_no_handler_overflow_and_local_errors() {
    init_logs();
    // Node 3 is configured but never started nor marked live.
    let (_, nets) = pair_and_raw("reg", 12, fast());
    nets[0].set_peer_live(3, false);
    let (a, b) = (&nets[0], &nets[1]);
    let e = a.send(2, ECHO, 0xdead, b"x").unwrap_err();
    assert_eq!(e, NetError::NoHandler { msg_type: ECHO, key: 0xdead });
    assert_eq!(e.errno(), errno::ENOPROTOOPT);
    b.register_handler(5, 1, 16, |_, p| p.len() as i32).unwrap();
    assert_eq!(a.send(2, 5, 1, &[0; 16]), Ok(16));
    let e = a.send(2, 5, 1, &[0; 17]).unwrap_err();
    assert_eq!((e.clone(), e.errno()), (NetError::Overflow { msg_type: 5, key: 1 }, errno::EOVERFLOW));
    assert_eq!(a.send(2, ECHO, KEY, &[0; 4072]), Ok(2000 + 4072));
    let e = a.send(2, ECHO, KEY, &[0; 4073]).unwrap_err();
    assert_eq!((e.clone(), e.errno()), (NetError::PayloadTooLarge(4073), errno::EINVAL));
    let e = b.register_handler(5, 1, 16, |_, _| 0).unwrap_err();
    assert_eq!(e.errno(), errno::EEXIST);
    assert!(b.register_handler(0, 1, 16, |_, _| 0).is_err(), "type 0 is refused");
    assert!(b.register_handler(6, 1, 4073, |_, _| 0).is_err(), "max_len above a page is refused");
    assert!(b.unregister_handler(5, 1));
    assert_eq!(a.send(2, 5, 1, &[]).unwrap_err().errno(), errno::ENOPROTOOPT);
    assert_eq!(a.send(1, ECHO, KEY, &[]).unwrap_err().errno(), errno::ELOOP);
    assert_eq!(a.send(77, ECHO, KEY, &[]), Err(NetError::UnknownNode(77)));
    // Node 3 is configured but not heartbeating: the send fails at once, as in the kernel.
    let t = Instant::now();
    let e = a.send(3, ECHO, KEY, &[]).unwrap_err();
    assert_eq!((e.clone(), e.errno()), (NetError::NotConnected(3), errno::ENOTCONN));
    assert!(t.elapsed() < Duration::from_millis(100));
    // A handler that panics answers -EIO and the connection stays.
    b.register_handler(7, 7, 0, |_, _| panic!("handler bug")).unwrap();
    assert_eq!(a.send(2, 7, 7, &[]), Ok(-errno::EIO));
    assert_eq!(a.send(2, ECHO, KEY, &[]), Ok(2000));
}

/// Node 1 and 2 are ours; node 3 is a raw peer at 127.0.NET.4 that node 1 accepts from.
fn pair_and_raw(tag: &str, net: u8, t: NetTimeouts) -> (Vec<NetNode>, Vec<Net>) {
    let all = nodes(tag, net, &[1, 2, 3]);
    let nets: Vec<Net> = [1u8, 2].iter().map(|&n| Net::start(config(&all, n, t)).unwrap()).collect();
    for net in &nets {
        let me = net.local_node();
        net.register_handler(ECHO, KEY, 4072, move |_, p| 1000 * i32::from(me) + p.len() as i32).unwrap();
    }
    nets[0].set_peer_live(2, true);
    nets[0].set_peer_live(3, true);
    nets[1].set_peer_live(1, true);
    wait_connected(&nets[0], &[2]);
    (all, nets)
}

#[test]
fn oversized_frame_disconnects_the_peer_and_others_keep_working() {
    init_logs();
    let (all, nets) = pair_and_raw("big", 13, fast());
    let events = nets[0].subscribe();
    let mut raw = RawPeer::connect(all[2].addr.ip(), all[0].addr);
    raw.handshake(fast());
    wait_event(&events, Duration::from_secs(2), |e| *e == NetEvent::Connected(3));
    let mut hdr = MsgHeader::request(ECHO, KEY, 0, 1).to_bytes();
    hdr[2..4].copy_from_slice(&5000u16.to_be_bytes());
    raw.write(&hdr).unwrap();
    assert!(raw.closed_within(Duration::from_secs(2)), "the node must close an oversized message's connection");
    let e = wait_event(&events, Duration::from_secs(2), |e| matches!(e, NetEvent::Disconnected(3, _)));
    assert!(matches!(e, NetEvent::Disconnected(3, CloseReason::Frame(_))), "{e:?}");
    wait_log(&["big3 (num 3)", "payload of 5000 bytes exceeds the maximum of 4072"], Duration::from_secs(1));
    assert_eq!(nets[1].send(1, ECHO, KEY, b"still here"), Ok(1010));
    assert_eq!(nets[0].connected_nodes(), vec![2]);
}

#[test]
fn wrong_protocol_version_is_refused_with_the_kernel_message() {
    init_logs();
    let (all, nets) = pair_and_raw("ver", 14, fast());
    let events = nets[0].subscribe();
    let mut raw = RawPeer::connect(all[2].addr.ip(), all[0].addr);
    let mut hs = fast().handshake();
    hs.protocol_version = O2NET_PROTOCOL_VERSION - 1;
    raw.write(&hs.to_bytes()).unwrap();
    // The node sends its own handshake first, then hangs up.
    assert!(matches!(raw.frame(), Some(Frame::Handshake(h)) if h == fast().handshake()));
    assert!(raw.closed_within(Duration::from_secs(2)));
    let e = wait_event(&events, Duration::from_secs(2), |e| matches!(e, NetEvent::Rejected { .. }));
    assert!(matches!(e, NetEvent::Rejected { node: Some(3), reason: CloseReason::Handshake(_), .. }), "{e:?}");
    wait_log(
        &["o2net: node ver3 (num 3) at", "Advertised net protocol version 10 but 11 is required. Disconnecting."],
        Duration::from_secs(1),
    );
    assert_eq!(nets[0].connected_nodes(), vec![2]);
    assert_eq!(nets[1].send(1, ECHO, KEY, b""), Ok(1000));
}

#[test]
fn mismatched_timeouts_are_refused() {
    init_logs();
    // Two of our nodes that disagree on the idle timeout never come up.
    let all = nodes("tmo", 15, &[1, 2, 3]);
    let a = Net::start(config(&all, 1, fast())).unwrap();
    let b = Net::start(config(&all, 2, NetTimeouts { idle_timeout_ms: 700, ..fast() })).unwrap();
    a.set_peer_live(2, true);
    b.set_peer_live(1, true);
    wait_log(
        &[
            "o2net: node tmo2 (num 2) at",
            "uses a network idle timeout of 700 ms, but we use 600 ms locally. Disconnecting.",
        ],
        Duration::from_secs(3),
    );
    wait_log(&["o2net: node tmo1 (num 1) at", "uses a network idle timeout of 600 ms"], Duration::from_secs(3));
    assert!(a.connected_nodes().is_empty() && b.connected_nodes().is_empty());
    assert_eq!(b.send(1, ECHO, KEY, &[]).unwrap_err().errno(), errno::ENOTCONN);
    // The keepalive delay and heartbeat timeout are compared too; the reconnect delay is not.
    a.set_peer_live(3, true);
    for (theirs, words) in [
        (NetTimeouts { keepalive_delay_ms: 150, ..fast() }, "uses a keepalive delay of 150 ms, but we use 100 ms"),
        (
            NetTimeouts { heartbeat_timeout_ms: 30_000, ..fast() },
            "uses a heartbeat timeout of 30000 ms, but we use 60000 ms",
        ),
    ] {
        let mut raw = RawPeer::connect(all[2].addr.ip(), all[0].addr);
        raw.handshake(theirs);
        assert!(raw.closed_within(Duration::from_secs(2)));
        wait_log(&["tmo3 (num 3)", words], Duration::from_secs(1));
    }
    let mut raw = RawPeer::connect(all[2].addr.ip(), all[0].addr);
    raw.handshake(NetTimeouts { reconnect_delay_ms: 5_000, ..fast() });
    assert!(wait_until(Duration::from_secs(2), || a.connected_nodes() == vec![3]));
    assert!(!raw.closed_within(Duration::from_millis(300)));
}

#[test]
fn keepalive_keeps_a_silent_connection_up_past_the_idle_timeout() {
    init_logs();
    let all = nodes("quiet", 16, &[1, 2]);
    let nets = start_all(&all, fast());
    let events: Vec<_> = nets.iter().map(|n| n.subscribe()).collect();
    wait_connected(&nets[0], &[2]);
    wait_connected(&nets[1], &[1]);
    for ev in &events {
        assert_eq!(ev.try_iter().collect::<Vec<_>>().len(), 1, "one Connected event each");
    }
    // More than three idle timeouts with no message from anyone but keepalives.
    std::thread::sleep(Duration::from_millis(2000));
    for (net, ev) in nets.iter().zip(&events) {
        let seen: Vec<NetEvent> = ev.try_iter().collect();
        assert!(seen.is_empty(), "node {} saw {seen:?}", net.local_node());
        assert!(net.idle_nodes().is_empty());
    }
    assert_eq!(nets[0].connected_nodes(), vec![2]);
    assert_eq!(nets[1].connected_nodes(), vec![1]);
    assert!(logs_with(&["quiet", "has been idle"]).is_empty());
    assert_eq!(nets[0].send(2, ECHO, KEY, &[]), Ok(2000));
}

#[test]
fn a_peer_that_never_answers_is_reported_idle_and_kept() {
    init_logs();
    let (all, nets) = pair_and_raw("mute", 17, fast());
    let events = nets[0].subscribe();
    let mut raw = RawPeer::connect(all[2].addr.ip(), all[0].addr);
    raw.handshake(fast());
    let start = Instant::now();
    // The node asks for a sign of life after the keepalive delay, with the kernel's bytes.
    match raw.frame() {
        Some(Frame::Message(h, p)) => {
            assert_eq!(h, MsgHeader::keepalive(Magic::KeepaliveReq));
            assert!(p.is_empty());
        }
        other => panic!("expected a keepalive request, got {other:?}"),
    }
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(80) && waited < Duration::from_millis(400), "{waited:?}");
    wait_event(&events, Duration::from_secs(2), |e| *e == NetEvent::Idle(3));
    assert!(start.elapsed() >= Duration::from_millis(550));
    wait_log(&["o2net: Connection to node mute3 (num 3) at", "has been idle for 0.6"], Duration::from_secs(1));
    // Linux 6.1 keeps the socket; a reply resumes the peer.
    assert_eq!(nets[0].connected_nodes(), vec![2, 3]);
    assert_eq!(nets[0].idle_nodes(), vec![3]);
    raw.write(&MsgHeader::keepalive(Magic::KeepaliveResp).to_bytes()).unwrap();
    wait_event(&events, Duration::from_secs(2), |e| *e == NetEvent::Resumed(3));
    assert!(nets[0].idle_nodes().is_empty());
}

#[test]
fn a_raw_peer_gets_kernel_style_requests_and_its_replies_complete_sends() {
    init_logs();
    let (all, nets) = pair_and_raw("rpc", 18, fast());
    let mut raw = RawPeer::connect(all[2].addr.ip(), all[0].addr);
    raw.handshake(fast());
    assert!(wait_until(Duration::from_secs(2), || nets[0].connected_nodes() == vec![2, 3]));
    let a = Arc::new(nets);
    for (sys, status, want) in [
        (SysStatus::None, -17, Ok(-17)),
        (SysStatus::NoHandler, 0, Err(NetError::NoHandler { msg_type: 44, key: 0xabcd })),
        (SysStatus::Overflow, 0, Err(NetError::Overflow { msg_type: 44, key: 0xabcd })),
    ] {
        let sender = {
            let a = a.clone();
            std::thread::spawn(move || a[0].send(3, 44, 0xabcd, b"payload"))
        };
        let (hdr, payload) = loop {
            match raw.frame() {
                Some(Frame::Message(h, p)) if h.magic == Magic::Request => break (h, p),
                Some(_) => continue,
                None => panic!("no request arrived"),
            }
        };
        assert_eq!((hdr.msg_type, hdr.key, hdr.data_len, hdr.sys_status), (44, 0xabcd, 7, 0));
        assert_eq!(payload, b"payload");
        raw.write(&MsgHeader::status_reply(&hdr, sys, status).to_bytes()).unwrap();
        assert_eq!(sender.join().unwrap(), want);
    }
    // Our node answers the raw peer's request with the handler's value, echoing msg_num.
    raw.write(&encode_message(&MsgHeader::request(ECHO, KEY, 3, 4242), b"abc")).unwrap();
    let reply = loop {
        match raw.frame() {
            Some(Frame::Message(h, _)) if h.magic == Magic::Status => break h,
            Some(_) => continue,
            None => panic!("no status reply"),
        }
    };
    assert_eq!((reply.msg_num, reply.sys_status, reply.status, reply.data_len), (4242, 0, 1003, 0));
    // A send still waiting when the connection dies fails with O2NET_ERR_DIED (EHOSTDOWN).
    let sender = {
        let a = a.clone();
        std::thread::spawn(move || a[0].send(3, 44, 1, b""))
    };
    while !matches!(raw.frame(), Some(Frame::Message(h, _)) if h.magic == Magic::Request) {}
    raw.s.shutdown(Shutdown::Both).unwrap();
    let e = sender.join().unwrap().unwrap_err();
    assert_eq!((e.clone(), e.errno()), (NetError::NodeDied(3), errno::EHOSTDOWN));
    assert_eq!(a[0].send(3, 44, 1, b"").unwrap_err().errno(), errno::ENOTCONN);
}

#[test]
fn connections_from_unknown_addresses_wrong_direction_and_duplicates_are_refused() {
    init_logs();
    let (all, nets) = pair_and_raw("gate", 19, fast());
    let events = nets[0].subscribe();
    // An address that is no node.
    let mut raw = RawPeer::connect(ip(19, 9), all[0].addr);
    assert!(raw.closed_within(Duration::from_secs(2)));
    wait_log(&["o2net: Attempt to connect from unknown node at 127.0.19.9:"], Duration::from_secs(1));
    // Node 1 dialing node 2: the lower number must wait to be called.
    let mut raw = RawPeer::connect(all[0].addr.ip(), all[1].addr);
    assert!(raw.closed_within(Duration::from_secs(2)));
    wait_log(
        &["o2net: Unexpected connect attempt seen at node 'gate2' (2,", "from node 'gate1' (1, 127.0.19.2:"],
        Duration::from_secs(1),
    );
    // Node 3 before heartbeat shows it: closed without a handshake.
    nets[0].set_peer_live(3, false);
    let mut raw = RawPeer::connect(all[2].addr.ip(), all[0].addr);
    raw.write(&fast().handshake().to_bytes()).unwrap();
    assert_eq!(raw.frame(), None);
    nets[0].set_peer_live(3, true);
    // A second connection from a node that has one is refused; the first stays up.
    let mut first = RawPeer::connect(all[2].addr.ip(), all[0].addr);
    first.handshake(fast());
    wait_event(&events, Duration::from_secs(2), |e| *e == NetEvent::Connected(3));
    let mut second = RawPeer::connect(all[2].addr.ip(), all[0].addr);
    assert!(second.closed_within(Duration::from_secs(2)));
    wait_log(
        &["o2net: Attempt to connect from node 'gate3' at", "but it already has an open connection"],
        Duration::from_secs(1),
    );
    assert_eq!(nets[0].connected_nodes(), vec![2, 3]);
    first.write(&encode_message(&MsgHeader::request(ECHO, KEY, 0, 1), b"")).unwrap();
    assert!(matches!(first.frame(), Some(Frame::Message(h, _)) if h.magic == Magic::Status && h.status == 1000));
}

/// xorshift64*, seeded per iteration so a failure names its seed.
fn rng(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn fuzzed_frames_on_a_live_connection_never_take_the_node_down() {
    init_logs();
    let (all, nets) = pair_and_raw("fuzz", 20, fast());
    let mut valid = Vec::new();
    for i in 0..6u16 {
        valid.extend(encode_message(
            &MsgHeader::request(ECHO + i % 2, KEY, i * 10, u32::from(i)),
            &vec![1; usize::from(i) * 10],
        ));
    }
    valid.extend(MsgHeader::keepalive(Magic::KeepaliveReq).to_bytes());
    for seed in 1..=60u64 {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut raw = RawPeer::connect(all[2].addr.ip(), all[0].addr);
        let kind = seed % 4;
        if kind != 0 {
            raw.handshake(fast());
        }
        let bytes: Vec<u8> = match kind {
            // Garbage in place of the handshake.
            0 => (0..(rng(&mut s) % 200)).map(|_| rng(&mut s) as u8).collect(),
            // Random bytes after a good handshake.
            1 => (0..(1 + rng(&mut s) % 9000)).map(|_| rng(&mut s) as u8).collect(),
            // Valid frames with a few bytes changed.
            _ => {
                let mut v = valid.clone();
                for _ in 0..(1 + rng(&mut s) % 6) {
                    let at = (rng(&mut s) as usize) % v.len();
                    v[at] = rng(&mut s) as u8;
                }
                v
            }
        };
        let _ = raw.write(&bytes);
        let _ = raw.s.shutdown(Shutdown::Write);
        assert!(raw.closed_within(Duration::from_secs(3)), "seed {seed}: node 1 kept a dead connection");
        // Node 1 keeps serving node 2 whatever node 3 sent.
        assert_eq!(nets[1].send(1, ECHO, KEY, &seed.to_be_bytes()), Ok(1008), "seed {seed}");
        assert!(wait_until(Duration::from_secs(2), || nets[0].connected_nodes() == vec![2]), "seed {seed}");
    }
    assert!(!logs_with(&["o2net: Connection to node fuzz3 (num 3)", "framing error"]).is_empty());
    assert!(!logs_with(&["o2net: node fuzz3 (num 3)", "Disconnecting."]).is_empty());
}

#[test]
fn stop_disconnects_peers_and_fails_sends() {
    init_logs();
    let all = nodes("halt", 21, &[1, 2]);
    let nets = start_all(&all, fast());
    wait_connected(&nets[1], &[1]);
    let events = nets[1].subscribe();
    nets[0].stop();
    assert_eq!(nets[0].send(2, ECHO, KEY, &[]).unwrap_err().errno(), errno::ESRCH);
    let e = wait_event(&events, Duration::from_secs(2), |e| matches!(e, NetEvent::Disconnected(1, _)));
    assert!(matches!(e, NetEvent::Disconnected(1, CloseReason::PeerClosed)), "{e:?}");
    assert_eq!(nets[1].send(1, ECHO, KEY, &[]).unwrap_err().errno(), errno::ENOTCONN);
    wait_log(&["o2net: No longer connected to node halt1 (num 1) at"], Duration::from_secs(1));
}

// ---- a peer in its own process -------------------------------------------------------------

struct Proc {
    child: Child,
    lines: Receiver<String>,
}

impl Proc {
    fn spawn(num: u8, addr: SocketAddr, peers: &[&NetNode], t: NetTimeouts) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocfs2-net-node"));
        cmd.args(["--num", &num.to_string(), "--addr", &addr.to_string(), "--name", &format!("proc{num}")]);
        for p in peers {
            cmd.args(["--peer", &format!("{}={}", p.num, p.addr)]);
        }
        cmd.args(["--idle", &t.idle_timeout_ms.to_string(), "--keepalive", &t.keepalive_delay_ms.to_string()]);
        cmd.args(["--reconnect", &t.reconnect_delay_ms.to_string()]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ocfs2-net-node");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let p = Proc { child, lines };
        p.expect(|l| l.starts_with("ready "), Duration::from_secs(5));
        p
    }

    fn expect(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => continue,
                Err(_) => panic!("ocfs2-net-node did not print the expected line within {timeout:?}"),
            }
        }
    }

    fn command(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_killed_peer_is_noticed_and_reconnection_follows_its_return() {
    init_logs();
    let all = nodes("kill", 22, &[1, 2]);
    // Node 1 lives in a child process; node 2, ours, is the one that dials.
    let me = Net::start(config(&all, 2, fast())).unwrap();
    let events = me.subscribe();
    me.set_peer_live(1, true);
    let mut child = Proc::spawn(1, all[0].addr, &[&all[1]], fast());
    wait_event(&events, Duration::from_secs(5), |e| *e == NetEvent::Connected(1));
    assert_eq!(me.send(1, ECHO, KEY, &[0; 12]), Ok(1012));
    me.register_handler(ECHO, KEY, 4072, |from, p| i32::from(from) * 7 + p.len() as i32).unwrap();
    child.command("send 2 5");
    child.expect(|l| l == "status 2 12", Duration::from_secs(3));

    // SIGKILL: the kernel closes the process's sockets, and we notice at once.
    let killed = Instant::now();
    drop(child);
    let e = wait_event(&events, Duration::from_secs(2), |e| matches!(e, NetEvent::Disconnected(1, _)));
    assert!(matches!(e, NetEvent::Disconnected(1, CloseReason::PeerClosed | CloseReason::Io(_))), "{e:?}");
    assert!(killed.elapsed() < Duration::from_secs(1));
    assert_eq!(me.send(1, ECHO, KEY, &[]).unwrap_err().errno(), errno::ENOTCONN);

    // Heartbeat declares it dead, later live again before its process is back: we keep
    // dialing every reconnect delay until it listens.
    me.set_peer_live(1, false);
    me.set_peer_live(1, true);
    std::thread::sleep(Duration::from_millis(700));
    let child = Proc::spawn(1, all[0].addr, &[&all[1]], fast());
    let back = Instant::now();
    wait_event(&events, Duration::from_secs(3), |e| *e == NetEvent::Connected(1));
    assert!(back.elapsed() < Duration::from_millis(200 + 300), "reconnected after {:?}", back.elapsed());
    assert_eq!(me.send(1, ECHO, KEY, &[0; 3]), Ok(1003));

    // Killed again, and back before heartbeat could notice: the connection-expired timer
    // (reconnect delay + idle timeout) lets us dial again without a heartbeat change.
    drop(child);
    wait_event(&events, Duration::from_secs(2), |e| matches!(e, NetEvent::Disconnected(1, _)));
    let _child = Proc::spawn(1, all[0].addr, &[&all[1]], fast());
    wait_event(&events, Duration::from_secs(3), |e| *e == NetEvent::Connected(1));
    wait_log(&["o2net: No connection established with node 1 after 0.600 seconds"], Duration::from_secs(1));
    assert_eq!(me.send(1, ECHO, KEY, &[]), Ok(1000));
}
