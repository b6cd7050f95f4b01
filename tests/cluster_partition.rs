//! Partitions: a seeded simulation of o2net and membership (quorum included) under cut links,
//! killed nodes and reset connections; and a real partition of three processes made with
//! `ip netns` and veth pairs, where the minority fences, the majority goes on, and the image
//! shows that no write of the fenced node landed after the majority declared it dead.
//!
//! Replay a simulation run with `OCFS2_TEST_SEED=<seed printed on failure>`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------------------------
// Seeded simulation: N nodes, each a real o2net core and a real membership core, on one thread
// with a millisecond clock. The disk heartbeat is modelled by its timing (a node is seen live
// two intervals after it starts writing, dead a threshold after its last write); the network
// carries the cores' frames between node pairs in order, holds them while a link is cut (TCP
// retransmits), and turns a killed process into resets. Faults drawn from the seed: partitions
// into groups, killed nodes, connections reset under both ends.
//
// Replay a failing run with OCFS2_TEST_SEED=<seed>.

mod sim {
    use super::common::Rng;
    use ocfs2::cluster::config::HeartbeatMode;
    use ocfs2::cluster::heartbeat::{HeartbeatEvent, NodeMap};
    use ocfs2::cluster::membership::{Action as MAction, FenceReason, MemberEvent, MembershipCore};
    use ocfs2::cluster::net::core::Outgoing;
    use ocfs2::cluster::net::frame::Frame;
    use ocfs2::cluster::net::{Action as NAction, CloseReason, ConnId, NetCore, NetNode, NetTimeouts};
    use ocfs2::cluster::quorum::Decision;
    use std::collections::{BTreeMap, VecDeque};
    use std::net::SocketAddr;
    use std::time::Duration;

    pub const INTERVAL: u64 = 100;
    pub const THRESHOLD: u64 = 10;
    pub const IDLE: u32 = 600;
    pub const QUORUM_DELAY: u64 = (THRESHOLD + 2) * INTERVAL;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n + 1], 7777))
    }

    enum Payload {
        Frame(Frame),
        Close,
    }

    struct Packet {
        ready: u64,
        to_conn: ConnId,
        payload: Payload,
    }

    struct Node {
        num: u8,
        net: NetCore,
        membership: MembershipCore,
        /// Heartbeat writes start / stop (kill or fence).
        started: u64,
        stopped: Option<u64>,
        alive: bool,
        fenced_at: Option<u64>,
        /// How this node sees each node's heartbeat, and the jitter of its reads.
        sees: Vec<bool>,
        jitter: Vec<u64>,
        events: Vec<(u64, MemberEvent)>,
    }

    pub struct Sim {
        rng: Rng,
        latency: u64,
        nodes: Vec<Node>,
        /// Link state between node pairs (symmetric).
        cut: Vec<Vec<bool>>,
        /// Directed queues a→b.
        queues: BTreeMap<(u8, u8), VecDeque<Packet>>,
        /// (node, its conn) → (peer, peer's conn).
        pairs: BTreeMap<(u8, ConnId), (u8, ConnId)>,
        /// Connection attempts in flight: (node, conn, peer, when it resolves).
        dialing: Vec<(u8, ConnId, u8, u64)>,
        /// Failed connects to report: (node, conn, when).
        failing: Vec<(u8, ConnId, u64)>,
        pub now: u64,
    }

    impl Sim {
        pub fn new(seed: u64, n: u8) -> Sim {
            let mut rng = Rng::new(seed);
            let timeouts = NetTimeouts {
                idle_timeout_ms: IDLE,
                keepalive_delay_ms: 200,
                reconnect_delay_ms: 200,
                heartbeat_timeout_ms: (INTERVAL * (THRESHOLD - 1)) as u32,
            };
            let all: Vec<NetNode> = (0..n).map(|i| NetNode::new(i, format!("n{i}"), addr(i))).collect();
            let nodes = (0..n)
                .map(|i| {
                    let started = rng.below(300);
                    let jitter = (0..n).map(|_| rng.below(INTERVAL)).collect();
                    Node {
                        num: i,
                        net: NetCore::new(all[usize::from(i)].clone(), &all, timeouts),
                        membership: MembershipCore::new(i, HeartbeatMode::Local, Duration::from_millis(QUORUM_DELAY)),
                        started,
                        stopped: None,
                        alive: true,
                        fenced_at: None,
                        sees: vec![false; usize::from(n)],
                        jitter,
                        events: Vec::new(),
                    }
                })
                .collect();
            let latency = 1 + rng.below(5);
            Sim {
                rng,
                latency,
                nodes,
                cut: vec![vec![false; usize::from(n)]; usize::from(n)],
                queues: BTreeMap::new(),
                pairs: BTreeMap::new(),
                dialing: Vec::new(),
                failing: Vec::new(),
                now: 0,
            }
        }

        pub fn n(&self) -> u8 {
            self.nodes.len() as u8
        }

        pub fn below(&mut self, n: u64) -> u64 {
            self.rng.below(n)
        }

        fn link_up(&self, a: u8, b: u8) -> bool {
            !self.cut[usize::from(a)][usize::from(b)]
        }

        /// Cuts every link between different groups (`group[i]` is node i's group).
        pub fn partition(&mut self, group: &[u8]) {
            for a in 0..self.nodes.len() {
                for b in 0..self.nodes.len() {
                    self.cut[a][b] = group[a] != group[b];
                }
            }
        }

        /// The process dies: its sockets reset, its heartbeat stops.
        pub fn kill(&mut self, i: u8) {
            let now = self.now;
            let node = &mut self.nodes[usize::from(i)];
            if !node.alive {
                return;
            }
            node.alive = false;
            node.stopped.get_or_insert(now);
            let mine: Vec<((u8, ConnId), (u8, ConnId))> =
                self.pairs.iter().filter(|((n, _), _)| *n == i).map(|(k, v)| (*k, *v)).collect();
            for (k, (peer, pconn)) in mine {
                self.pairs.remove(&k);
                self.send_packet(i, peer, pconn, Payload::Close);
            }
        }

        /// A connection between `a` and `b` is reset under both ends (a middlebox, say).
        pub fn reset_connection(&mut self, a: u8, b: u8) {
            let conns: Vec<((u8, ConnId), (u8, ConnId))> = self
                .pairs
                .iter()
                .filter(|((n, _), (p, _))| (*n == a && *p == b) || (*n == b && *p == a))
                .map(|(k, v)| (*k, *v))
                .collect();
            for ((n, c), _) in conns {
                self.pairs.remove(&(n, c));
                self.drive_net(n, |core, now, out| core.stream_closed(now, c, CloseReason::Io("reset".into()), out));
            }
        }

        fn send_packet(&mut self, from: u8, to: u8, to_conn: ConnId, payload: Payload) {
            let ready = self.now + self.latency;
            self.queues.entry((from, to)).or_default().push_back(Packet { ready, to_conn, payload });
        }

        fn drive_net(&mut self, i: u8, f: impl FnOnce(&mut NetCore, u64, &mut Vec<NAction>)) {
            let mut out = Vec::new();
            let now = self.now;
            f(&mut self.nodes[usize::from(i)].net, now, &mut out);
            self.apply_net(i, out);
        }

        fn apply_net(&mut self, i: u8, actions: Vec<NAction>) {
            for a in actions {
                if !self.nodes[usize::from(i)].alive {
                    return;
                }
                match a {
                    NAction::Connect { conn, node, .. } => {
                        self.dialing.push((i, conn, node, self.now + self.latency));
                    }
                    NAction::Send { conn, out } => {
                        if let Some(&(peer, pconn)) = self.pairs.get(&(i, conn)) {
                            let frame = match out {
                                Outgoing::Handshake(h) => Frame::Handshake(h),
                                Outgoing::Message(m) => Frame::Message(m, Vec::new()),
                            };
                            self.send_packet(i, peer, pconn, Payload::Frame(frame));
                        }
                    }
                    NAction::Close { conn } => {
                        if let Some((peer, pconn)) = self.pairs.remove(&(i, conn)) {
                            self.send_packet(i, peer, pconn, Payload::Close);
                        }
                    }
                    NAction::Event(e) => {
                        let now = Duration::from_millis(self.now);
                        let acts = self.nodes[usize::from(i)].membership.net(now, &e);
                        self.apply_membership(i, acts);
                    }
                    NAction::Deliver { .. } | NAction::Complete { .. } | NAction::FailPending { .. } => {}
                }
            }
        }

        fn apply_membership(&mut self, i: u8, actions: Vec<MAction>) {
            for a in actions {
                match a {
                    MAction::SetPeerLive { node, live } => {
                        self.drive_net(i, |core, now, out| core.set_peer_live(now, node, live, out))
                    }
                    MAction::Event(e) => self.nodes[usize::from(i)].events.push((self.now, e)),
                    MAction::Fence(reason) => {
                        let now = self.now;
                        let node = &mut self.nodes[usize::from(i)];
                        node.fenced_at = Some(now);
                        node.stopped.get_or_insert(now);
                        node.events.push((now, MemberEvent::Fenced(reason)));
                        // Callback mode stops o2net; abort mode kills the process. Either way
                        // the peers see the connections go.
                        if self.rng.below(2) == 0 {
                            self.kill(i);
                        } else {
                            self.drive_net(i, |core, now, out| core.stop(now, out));
                        }
                    }
                }
            }
        }

        /// One millisecond.
        pub fn step(&mut self) {
            let now = self.now;
            // Connection attempts resolve.
            let due: Vec<(u8, ConnId, u8, u64)> = self.dialing.iter().filter(|d| d.3 <= now).copied().collect();
            self.dialing.retain(|d| d.3 > now);
            for (a, conn, b, _) in due {
                if !self.nodes[usize::from(a)].alive {
                    continue;
                }
                if !self.link_up(a, b) {
                    // SYNs lost until the driver's connect timeout.
                    self.failing.push((a, conn, now + u64::from(IDLE).min(3000)));
                    continue;
                }
                if !self.nodes[usize::from(b)].alive {
                    self.drive_net(a, |core, now, out| core.connect_failed(now, conn, "connection refused", out));
                    continue;
                }
                let mut out = Vec::new();
                let accepted = self.nodes[usize::from(b)].net.accept(now, addr(a), &mut out);
                match accepted {
                    Some((bconn, _)) => {
                        self.pairs.insert((a, conn), (b, bconn));
                        self.pairs.insert((b, bconn), (a, conn));
                        self.apply_net(b, out);
                        self.drive_net(a, |core, now, out| core.connected(now, conn, out));
                    }
                    None => {
                        self.apply_net(b, out);
                        self.drive_net(a, |core, now, out| core.connected(now, conn, out));
                        self.send_packet(b, a, conn, Payload::Close);
                    }
                }
            }
            let failed: Vec<(u8, ConnId, u64)> = self.failing.iter().filter(|f| f.2 <= now).copied().collect();
            self.failing.retain(|f| f.2 > now);
            for (a, conn, _) in failed {
                if self.nodes[usize::from(a)].alive {
                    self.drive_net(a, |core, now, out| core.connect_failed(now, conn, "connect timed out", out));
                }
            }
            // Packets move on links that are up, in order.
            let links: Vec<(u8, u8)> = self.queues.keys().copied().collect();
            for (a, b) in links {
                while self.link_up(a, b) {
                    let Some(q) = self.queues.get_mut(&(a, b)) else { break };
                    if q.front().is_none_or(|p| p.ready > now) {
                        break;
                    }
                    let p = q.pop_front().expect("front exists");
                    if !self.nodes[usize::from(b)].alive {
                        continue;
                    }
                    match p.payload {
                        Payload::Frame(f) => {
                            if self.pairs.contains_key(&(b, p.to_conn)) {
                                self.drive_net(b, |core, now, out| core.frame(now, p.to_conn, f, out));
                            }
                        }
                        Payload::Close => {
                            self.pairs.remove(&(b, p.to_conn));
                            self.drive_net(b, |core, now, out| {
                                core.stream_closed(now, p.to_conn, CloseReason::PeerClosed, out)
                            });
                        }
                    }
                }
            }
            // Heartbeat as each node reads it.
            let n = self.nodes.len();
            for j in 0..n {
                if !self.nodes[j].alive || self.nodes[j].fenced_at.is_some() {
                    continue;
                }
                for i in 0..n {
                    let (started, stopped) = (self.nodes[i].started, self.nodes[i].stopped);
                    let jit = self.nodes[j].jitter[i];
                    let seen = self.nodes[j].sees[i];
                    let writing = now >= started && stopped.is_none_or(|s| now < s);
                    let up = !seen && writing && now >= started + 2 * INTERVAL + jit;
                    let down = seen && stopped.is_some_and(|s| now >= s + THRESHOLD * INTERVAL + jit);
                    if up || down {
                        self.nodes[j].sees[i] = up;
                        let e = if up { HeartbeatEvent::NodeUp(i as u8) } else { HeartbeatEvent::NodeDown(i as u8) };
                        let acts = self.nodes[j].membership.heartbeat(Duration::from_millis(now), "R", &e);
                        self.apply_membership(j as u8, acts);
                    }
                }
            }
            // Timers.
            for i in 0..n as u8 {
                if !self.nodes[usize::from(i)].alive {
                    continue;
                }
                self.drive_net(i, |core, now, out| core.tick(now, out));
                let acts = self.nodes[usize::from(i)].membership.tick(Duration::from_millis(now));
                self.apply_membership(i, acts);
            }
            self.now += 1;
        }

        pub fn run_until(&mut self, t: u64) {
            while self.now < t {
                self.step();
            }
        }

        /// Nodes still running and not fenced.
        pub fn survivors(&self) -> NodeMap {
            self.nodes.iter().filter(|n| n.alive && n.fenced_at.is_none()).map(|n| n.num).collect()
        }

        pub fn fenced(&self, i: u8) -> Option<(u64, FenceReason)> {
            let node = &self.nodes[usize::from(i)];
            node.events.iter().find_map(|(t, e)| match e {
                MemberEvent::Fenced(r) => Some((*t, r.clone())),
                _ => None,
            })
        }

        pub fn members(&self, i: u8) -> NodeMap {
            self.nodes[usize::from(i)].membership.members()
        }

        pub fn last_decision(&self, i: u8) -> Option<Decision> {
            self.nodes[usize::from(i)].membership.quorum().last_decision()
        }

        /// When node `j` reported `i` down, if it did.
        pub fn down_at(&self, j: u8, i: u8) -> Option<u64> {
            self.nodes[usize::from(j)].events.iter().find(|(_, e)| *e == MemberEvent::NodeDown(i)).map(|(t, _)| *t)
        }

        /// When node `i` stopped writing its heartbeat.
        pub fn stopped_at(&self, i: u8) -> Option<u64> {
            self.nodes[usize::from(i)].stopped
        }

        pub fn events(&self, i: u8) -> &[(u64, MemberEvent)] {
            &self.nodes[usize::from(i)].events
        }
    }
}

use ocfs2::cluster::heartbeat::NodeMap;
use ocfs2::cluster::membership::{FenceReason, MemberEvent};
use sim::{Sim, INTERVAL, THRESHOLD};

/// The side of a split that goes on, by o2quo's rule: a strict majority of the heartbeating
/// nodes, or exactly half with the lowest of them. `None` when no side qualifies.
fn winning_side(alive: &NodeMap, group: &[u8]) -> Option<NodeMap> {
    let n = alive.len();
    let lowest = alive.lowest();
    (0..=u8::MAX).map(|g| alive.iter().filter(|i| group[usize::from(*i)] == g).collect::<NodeMap>()).find(|side| {
        !side.is_empty() && (side.len() * 2 > n || (side.len() * 2 == n && lowest.is_some_and(|l| side.contains(l))))
    })
}

/// After a split: the winning side, if any, goes on whole and alone. Without one, whoever goes
/// on is on one side: a node may outlast its fenced teammates because their connections closed
/// when they fenced (our fence closes sockets where a kernel's reboot leaves them silent), which
/// holds its decision until their heartbeats died and it was the last node left.
fn check_split(sim: &Sim, alive: &NodeMap, group: &[u8]) {
    let survivors = sim.survivors();
    for i in alive.iter() {
        match sim.fenced(i) {
            Some((_, reason)) => assert!(matches!(reason, FenceReason::Quorum(_)), "node {i}: {reason}"),
            None => assert!(sim.last_decision(i).is_none_or(|d| !d.fence), "node {i} decided to fence but did not"),
        }
    }
    match winning_side(alive, group) {
        Some(side) => assert_eq!(survivors, side, "split {group:?} of {alive:?}"),
        None => {
            let sides: BTreeSet<u8> = survivors.iter().map(|i| group[usize::from(i)]).collect();
            assert!(sides.len() <= 1, "survivors {survivors:?} on different sides of {group:?}");
        }
    }
}

/// Checks that hold in every run: nobody is declared dead while it still writes its heartbeat,
/// and a fenced node says nothing more.
fn check_always(sim: &Sim) {
    for j in 0..sim.n() {
        let mut fenced = false;
        for (t, e) in sim.events(j) {
            assert!(!fenced, "node {j} reported {e:?} at {t} after fencing");
            match e {
                MemberEvent::Fenced(_) => fenced = true,
                MemberEvent::NodeDown(i) => {
                    let stop = sim.stopped_at(*i);
                    assert!(
                        stop.is_some_and(|s| *t >= s + THRESHOLD * INTERVAL),
                        "node {j} declared {i} dead at {t}, but it stopped writing at {stop:?}"
                    );
                }
                _ => {}
            }
        }
    }
}

fn simulate(seed: u64) -> String {
    let mut sim = Sim::new(seed, 2 + sim_below(seed, 4) as u8);
    let n = sim.n();
    sim.run_until(2000);
    for i in 0..n {
        let others: Vec<u8> = (0..n).filter(|j| *j != i).collect();
        assert_eq!(sim.members(i).to_vec(), others, "node {i} is not connected to all after 2 s");
    }
    let all: NodeMap = (0..n).collect();
    let kind = sim.below(4);
    let what = match kind {
        // A clean split into two or three groups.
        0 => {
            let groups = 2 + sim.below(2);
            let group: Vec<u8> = (0..n).map(|_| sim.below(groups) as u8).collect();
            let at = 2000 + sim.below(500);
            sim.run_until(at);
            sim.partition(&group);
            sim.run_until(12_000);
            check_split(&sim, &all, &group);
            format!("split {group:?}")
        }
        // Killed nodes: nobody fences, every survivor sees each one die in time.
        1 => {
            let k = 1 + sim.below(u64::from(n) - 1);
            let mut killed = NodeMap::new();
            while killed.len() < k as usize {
                killed.insert(sim.below(u64::from(n)) as u8);
            }
            let mut when = BTreeMap::new();
            for i in killed.iter() {
                let at = sim.now + sim.below(400);
                sim.run_until(at);
                when.insert(i, sim.now);
                sim.kill(i);
            }
            sim.run_until(12_000);
            let alive: NodeMap = all.iter().filter(|i| !killed.contains(*i)).collect();
            assert_eq!(sim.survivors(), alive, "killed {killed:?}");
            for j in alive.iter() {
                for i in killed.iter() {
                    let down = sim.down_at(j, i).unwrap_or_else(|| panic!("node {j} never saw {i} die"));
                    let bound = when[&i] + (THRESHOLD + 1) * INTERVAL + 5;
                    assert!(down <= bound, "node {j} saw {i} die at {down}, killed at {}, bound {bound}", when[&i]);
                }
            }
            format!("killed {killed:?}")
        }
        // One connection reset under both ends while both still heartbeat: each end counts a
        // connection error and starts the quorum delay, but o2net connects again after the idle
        // timeout, which is shorter, so the delay finds nothing to decide and nobody fences.
        2 => {
            let a = sim.below(u64::from(n)) as u8;
            let b = (a + 1 + sim.below(u64::from(n) - 1) as u8) % n;
            let at = 2000 + sim.below(500);
            sim.run_until(at);
            sim.reset_connection(a, b);
            sim.run_until(at + 100);
            assert!(!sim.members(a).contains(b) && !sim.members(b).contains(a), "the reset was seen");
            sim.run_until(12_000);
            assert_eq!(sim.survivors(), all, "reset {a}-{b}");
            for i in 0..n {
                let others: Vec<u8> = (0..n).filter(|j| *j != i).collect();
                assert_eq!(sim.members(i).to_vec(), others, "node {i} after the reset of {a}-{b}");
            }
            format!("reset {a}-{b}")
        }
        // Killed nodes first, then a split of the rest: only live nodes count.
        _ => {
            let mut killed = NodeMap::new();
            if n > 2 {
                let k = sim.below(u64::from(n) - 2);
                while killed.len() < k as usize {
                    killed.insert(sim.below(u64::from(n)) as u8);
                }
            }
            for i in killed.iter() {
                sim.kill(i);
            }
            sim.run_until(5000);
            let alive: NodeMap = all.iter().filter(|i| !killed.contains(*i)).collect();
            let group: Vec<u8> = (0..n).map(|_| sim.below(2) as u8).collect();
            sim.partition(&group);
            sim.run_until(15_000);
            check_split(&sim, &alive, &group);
            format!("killed {killed:?}, split {group:?}")
        }
    };
    check_always(&sim);
    // Survivors see every other node that stopped as dead, and keep each other as members
    // unless a reset connection separates them.
    for j in sim.survivors().iter() {
        for i in all.iter().filter(|i| !sim.survivors().contains(*i)) {
            assert!(sim.down_at(j, i).is_some(), "survivor {j} never saw {i} go");
        }
    }
    let fenced = (0..sim.n()).filter(|i| sim.fenced(*i).is_some()).count();
    format!("{what} fenced={fenced}")
}

/// The node count is drawn from its own stream so that it is the first thing a seed decides.
fn sim_below(seed: u64, n: u64) -> u64 {
    common::Rng::new(seed ^ 0x5eed).below(n)
}

#[test]
fn seeded_partitions_kills_and_resets_leave_exactly_the_side_o2quo_chooses() {
    let base = common::seed();
    let runs: u64 = std::env::var("OCFS2_SIM_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut kinds = BTreeMap::new();
    let mut fenced = 0usize;
    for k in 0..runs {
        let seed = base.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match std::panic::catch_unwind(|| simulate(seed)) {
            Ok(what) => {
                *kinds.entry(what.split(' ').next().unwrap_or("").to_string()).or_insert(0u32) += 1;
                fenced += what.rsplit("fenced=").next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("simulation failed with OCFS2_TEST_SEED={seed} OCFS2_SIM_RUNS=1: {msg}");
            }
        }
    }
    eprintln!("{runs} runs from seed {base}: {kinds:?}, {fenced} nodes fenced");
    assert!(runs < 50 || fenced > 0, "no run fenced anyone: the simulation does not exercise quorum");
}

// ---------------------------------------------------------------------------------------------
// A real partition: three processes of `ocfs2-cluster heartbeat`, each in its own network
// namespace, joined by veth pairs to a bridge in a fourth namespace, sharing one image file (the
// disk is a file, so the disk heartbeat goes on across the partition: exactly o2quo's case).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, Instant};

const CLUSTER_BIN: &str = env!("CARGO_BIN_EXE_ocfs2-cluster");

const P_INTERVAL_MS: u64 = 100;
const P_THRESHOLD: u64 = 10;
const P_IDLE_MS: u64 = 1000;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

static NEXT_TOPOLOGY: AtomicUsize = AtomicUsize::new(0);

/// The namespaces, veths and bridge of one test; all removed on drop, failure or not. Deleting
/// a namespace deletes the interfaces in it, and a veth goes with either of its ends.
struct Topology {
    prefix: String,
    namespaces: Vec<String>,
}

impl Topology {
    fn node_ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// Interface names are short (15 bytes) and live in the test's own bridge namespace.
    fn bridge_port(&self, i: usize) -> String {
        format!("mbport{i}")
    }

    /// `n` nodes at 10.77.0.2.. on one bridge.
    fn create(n: usize) -> Topology {
        // Fail, never skip, when the machine cannot make namespaces.
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            })
            .unwrap_or_default();
        assert_eq!(uid, "0", "the partition test makes network namespaces and needs root (uid 0)");
        let mut t = Topology {
            prefix: format!(
                "ocfs2mb{:05}-{}",
                std::process::id() % 100_000,
                NEXT_TOPOLOGY.fetch_add(1, Ordering::SeqCst)
            ),
            namespaces: Vec::new(),
        };
        let br = t.bridge_ns();
        let result = (|| -> Result<(), String> {
            ip(&["netns", "add", &br])?;
            t.namespaces.push(br.clone());
            ip(&["-n", &br, "link", "add", "mbbr", "type", "bridge"])?;
            ip(&["-n", &br, "link", "set", "mbbr", "up"])?;
            for i in 0..n {
                let ns = t.node_ns(i);
                ip(&["netns", "add", &ns])?;
                t.namespaces.push(ns.clone());
                let port = t.bridge_port(i);
                ip(&["link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &br])?;
                ip(&["-n", &br, "link", "set", &port, "master", "mbbr"])?;
                ip(&["-n", &br, "link", "set", &port, "up"])?;
                ip(&["-n", &ns, "addr", "add", &format!("10.77.0.{}/24", i + 2), "dev", "eth0"])?;
                ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
                ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            drop(t);
            panic!("cannot build the test network (root and `ip netns` with veth and bridge are needed): {e}");
        }
        t
    }

    /// Cuts node `i` off the bridge: its packets are dropped, its connections go silent.
    fn cut(&self, i: usize) {
        ip(&["-n", &self.bridge_ns(), "link", "set", &self.bridge_port(i), "down"]).expect("cut the link");
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

use common::LineProcess as Proc;

/// The counter a node's probe last wrote at `offset` (0 when it never wrote).
fn probe_counter(img: &Path, offset: u64, node: u8) -> u64 {
    let f = std::fs::File::open(img).expect("open image");
    let mut sector = [0u8; 512];
    f.read_exact_at(&mut sector, offset).expect("read probe sector");
    if &sector[..5] != b"PROBE" {
        return 0;
    }
    assert_eq!(sector[8], node, "probe sector of node {node} written by node {}", sector[8]);
    u64::from_le_bytes(sector[16..24].try_into().expect("8 bytes"))
}

fn write_conf(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let mut conf = String::from(&format!("cluster:\n\tnode_count = {n}\n\tname = part\n\n"));
    for i in 0..n {
        conf.push_str(&format!(
            "node:\n\tip_port = 7777\n\tip_address = 10.77.0.{}\n\tnumber = {i}\n\tname = n{i}\n\tcluster = part\n\n",
            i + 2
        ));
    }
    let conf_path = dir.join("cluster.conf");
    std::fs::write(&conf_path, conf).expect("write cluster.conf");
    let defaults = format!(
        "O2CB_HEARTBEAT_THRESHOLD={P_THRESHOLD}\nO2CB_HEARTBEAT_INTERVAL_MS={P_INTERVAL_MS}\n\
         O2CB_IDLE_TIMEOUT_MS={P_IDLE_MS}\nO2CB_KEEPALIVE_DELAY_MS=200\nO2CB_RECONNECT_DELAY_MS=200\n"
    );
    let defaults_path = dir.join("o2cb");
    std::fs::write(&defaults_path, defaults).expect("write o2cb settings");
    (conf_path, defaults_path)
}

#[test]
fn a_network_partition_fences_the_minority_whose_writes_stop_before_the_majority_declares_it_dead() {
    let scratch = common::Scratch::new("cluster-partition");
    let img = scratch.path("shared.img");
    common::sparse_image(&img, 256 << 20);
    common::mkfs_ocfs2(&img, &["-N", "4", "-b", "4096", "-C", "4096", "--cluster-name=part", "--cluster-stack=o2cb"]);
    // A MiB past the end of the volume for the probe counters, one sector per node.
    let fs_end = std::fs::metadata(&img).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(fs_end + (1 << 20)).unwrap();
    let probe_at = |i: usize| fs_end + 4096 * i as u64;
    let (conf, defaults) = write_conf(&scratch.dir, 3);

    let net = Topology::create(3);
    let mut procs: Vec<Proc> = (0..3)
        .map(|i| {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &net.node_ns(i), CLUSTER_BIN])
                .arg("-c")
                .arg(&conf)
                .args(["-n", &format!("n{i}"), "--defaults"])
                .arg(&defaults)
                .args(["heartbeat", "--fence", "callback", "--probe-writes", &probe_at(i).to_string()])
                .arg(&img);
            for v in ["THRESHOLD", "INTERVAL_MS", "IDLE_TIMEOUT_MS", "KEEPALIVE_DELAY_MS", "RECONNECT_DELAY_MS"] {
                cmd.env_remove(format!("O2CB_HEARTBEAT_{v}")).env_remove(format!("O2CB_{v}"));
            }
            Proc::spawn(&format!("node n{i}"), cmd)
        })
        .collect();
    for (i, p) in procs.iter_mut().enumerate() {
        for j in (0..3).filter(|j| *j != i) {
            p.expect(&format!("up {j} "), Duration::from_secs(15));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let before: Vec<u64> = (0..3).map(|i| probe_counter(&img, probe_at(i), i as u8)).collect();
    assert!(before.iter().all(|c| *c > 0), "every probe writes: {before:?}");

    // Cut node 2 off. Connections go silent both ways; after the idle timeout every node counts
    // a connection error, and after the quorum delay each side decides.
    let cut_at = Instant::now();
    net.cut(2);
    let limit = Duration::from_millis(P_IDLE_MS + (P_THRESHOLD + 2) * P_INTERVAL_MS) + Duration::from_secs(5);
    let (fenced_at, why) = procs[2].expect("fenced ", limit);
    assert!(why.contains("quorum lost: only connected to 1 nodes and 2 is needed"), "{why}");
    let (_, refused) = procs[2].expect("probe refused ", Duration::from_secs(2));
    let first_refused: u64 = refused.trim_start_matches("probe refused ").parse().expect("counter");

    // The majority declares node 2 dead only after its writes stopped: the image holds no write
    // of node 2 numbered at or after the first refused one, then or later.
    let dead_limit = Duration::from_millis((P_THRESHOLD + 3) * P_INTERVAL_MS) + Duration::from_secs(2);
    let mut downs = Vec::new();
    for p in procs.iter_mut().take(2) {
        let (t, _) = p.expect("down 2 ", dead_limit + (fenced_at - cut_at));
        downs.push(t);
        let at_down = probe_counter(&img, probe_at(2), 2);
        assert!(at_down < first_refused, "{} saw node 2 die with its counter at {at_down}", p.name);
    }
    assert!(downs.iter().all(|t| *t > fenced_at), "node 2 was declared dead before it fenced");
    eprintln!(
        "cut -> fenced {:?}; fenced -> declared dead {:?}; first refused probe {first_refused}",
        fenced_at - cut_at,
        downs.iter().map(|t| *t - fenced_at).collect::<Vec<_>>()
    );
    let hb_slot_of_2 = |img: &Path| {
        let start = {
            let dev = ocfs2::FileDevice::open(img).unwrap();
            let vol = ocfs2::Volume::open(dev, ocfs2::MountOptions::default()).unwrap();
            vol.heartbeat_area().unwrap().start_byte
        };
        let mut sector = [0u8; 512];
        std::fs::File::open(img).unwrap().read_exact_at(&mut sector, start + 2 * 512).unwrap();
        sector
    };
    let hb_at_down = hb_slot_of_2(&img);
    let counter_at_down = probe_counter(&img, probe_at(2), 2);
    std::thread::sleep(Duration::from_millis(10 * P_INTERVAL_MS));
    assert_eq!(probe_counter(&img, probe_at(2), 2), counter_at_down, "node 2 wrote after it was declared dead");
    assert_eq!(counter_at_down, first_refused - 1, "every probe before the fence landed, none after");
    assert_eq!(hb_slot_of_2(&img), hb_at_down, "node 2's heartbeat block changed after it was declared dead");

    // The majority keeps running: no fence, and its writes go on.
    for (i, p) in procs.iter_mut().enumerate().take(2) {
        let lines = p.printed();
        assert!(!lines.iter().any(|l| l.starts_with("fenced")), "node {i} fenced: {lines:?}");
        assert!(probe_counter(&img, probe_at(i), i as u8) > before[i] + 10, "node {i}'s writes stopped");
    }
    for p in procs.iter_mut() {
        p.stop();
    }
    for (i, p) in procs.iter_mut().enumerate().take(2) {
        p.expect("stopped", Duration::from_secs(5));
        let status = p.child.wait().expect("wait");
        assert!(status.success(), "node {i} exited with {status}");
    }
    let status = procs[2].child.wait().expect("wait");
    assert!(!status.success(), "the fenced node reports its fence when it stops");
    drop(procs);
    let prefix = net.prefix.clone();
    drop(net);
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&prefix), "a namespace was left behind");
}

#[test]
fn of_two_nodes_cut_apart_the_higher_aborts_by_default_and_the_lower_goes_on() {
    use std::os::unix::process::ExitStatusExt;
    let scratch = common::Scratch::new("cluster-partition-2");
    let img = scratch.path("shared.img");
    common::sparse_image(&img, 128 << 20);
    common::mkfs_ocfs2(&img, &["-N", "2", "--cluster-name=part", "--cluster-stack=o2cb"]);
    let fs_end = std::fs::metadata(&img).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(fs_end + (1 << 20)).unwrap();
    let probe_at = |i: usize| fs_end + 4096 * i as u64;
    let (conf, defaults) = write_conf(&scratch.dir, 2);
    let net = Topology::create(2);
    let mut procs: Vec<Proc> = (0..2)
        .map(|i| {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &net.node_ns(i), CLUSTER_BIN]).arg("-c").arg(&conf);
            cmd.args(["-n", &format!("n{i}"), "--defaults"]).arg(&defaults).arg("heartbeat");
            // Node 0 keeps running if it must fence; node 1 has the default action, abort.
            if i == 0 {
                cmd.args(["--fence", "callback"]);
            }
            cmd.args(["--probe-writes", &probe_at(i).to_string()]).arg(&img);
            for v in ["THRESHOLD", "INTERVAL_MS", "IDLE_TIMEOUT_MS", "KEEPALIVE_DELAY_MS", "RECONNECT_DELAY_MS"] {
                cmd.env_remove(format!("O2CB_HEARTBEAT_{v}")).env_remove(format!("O2CB_{v}"));
            }
            Proc::spawn(&format!("node n{i}"), cmd)
        })
        .collect();
    procs[0].expect("up 1 ", Duration::from_secs(15));
    procs[1].expect("up 0 ", Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(300));
    let cut_at = Instant::now();
    net.cut(1);
    // An even split: node 1 holds half the quorum without the lowest node, so it fences.
    let limit = Duration::from_millis(P_IDLE_MS + (P_THRESHOLD + 2) * P_INTERVAL_MS) + Duration::from_secs(5);
    let end = cut_at + limit;
    let status = loop {
        if let Some(s) = procs[1].child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < end, "node 1 is still running {limit:?} after the cut");
        std::thread::sleep(Duration::from_millis(20));
    };
    let aborted_at = Instant::now();
    assert_eq!(status.signal(), Some(libc_sigabrt()), "node 1 ended with {status}, not by abort");
    let (down_at, _) = procs[0].expect("down 1 ", Duration::from_secs(5));
    assert!(down_at >= aborted_at - Duration::from_millis(50), "node 1 was declared dead before it fenced");
    let counter = probe_counter(&img, probe_at(1), 1);
    std::thread::sleep(Duration::from_millis(5 * P_INTERVAL_MS));
    assert_eq!(probe_counter(&img, probe_at(1), 1), counter, "a write of the aborted node landed later");
    let lines = procs[0].printed();
    assert!(!lines.iter().any(|l| l.starts_with("fenced")), "node 0 fenced: {lines:?}");
    let before = probe_counter(&img, probe_at(0), 0);
    std::thread::sleep(Duration::from_millis(5 * P_INTERVAL_MS));
    assert!(probe_counter(&img, probe_at(0), 0) > before, "node 0's writes stopped");
    eprintln!("cut -> node 1 aborted {:?}; -> node 0 declared it dead {:?}", aborted_at - cut_at, down_at - cut_at);
    procs[0].stop();
    procs[0].expect("stopped", Duration::from_secs(5));
}

/// SIGABRT, without a libc dependency in the tests.
fn libc_sigabrt() -> i32 {
    6
}
