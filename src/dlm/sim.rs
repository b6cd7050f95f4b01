//! A deterministic simulator for [`DlmCore`]: N nodes on one thread, a seeded network and
//! random users, checked after every event.
//!
//! The network keeps o2net's shape: one connection per pair of nodes, each direction in order
//! (TCP), different connections in any order. A dropped connection loses everything in flight
//! both ways; both sides see their pending send fail and the link come back later. A killed
//! node loses its state; every survivor learns of the death (heartbeat) at its own time, and
//! only then may the node start again with a new incarnation and join.
//!
//! The checks: no two incompatible locks of different holders are relied on at once; every
//! request finishes (granted, refused, cancelled, unlocked) unless its node died; every LVB
//! read is one that was written, not older than the last EX release that completed, or zero
//! (invalid) when a death made it unknowable; no core reports a protocol violation.

use super::core::{Action, DlmCore, DomainState, LockId, Millis};
use super::wire::{Lvb, Mode, DLM_LVB_LEN, LKM_NOQUEUE, LKM_VALBLK};
use crate::testing::Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// What a run may do.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub resources: usize,
    /// Simulated time with faults and random requests; then a quiet phase must finish all.
    pub duration_ms: Millis,
    /// Per 10 ms tick, the chance (per mille) of killing a node, dropping a connection, or a
    /// node leaving the domain.
    pub kill_permille: u64,
    pub drop_permille: u64,
    pub leave_permille: u64,
    /// The longest a user keeps a lock before releasing it.
    pub max_hold_ms: Millis,
}

impl SimConfig {
    /// A random configuration of 3 to `max_nodes` nodes.
    pub fn random(rng: &mut Rng, max_nodes: usize) -> SimConfig {
        let nodes = 3 + rng.below(max_nodes.saturating_sub(2) as u64) as usize;
        SimConfig {
            nodes,
            resources: 1 + rng.below(6) as usize,
            duration_ms: 1500 + rng.below(2500),
            kill_permille: [0, 2, 5, 10][rng.below(4) as usize],
            drop_permille: [0, 3, 10, 30][rng.below(4) as usize],
            leave_permille: [0, 2, 5][rng.below(3) as usize],
            max_hold_ms: 20 + rng.below(150),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub grants: u64,
    pub requests: u64,
    pub kills: u64,
    pub drops: u64,
    pub leaves: u64,
    pub recoveries: u64,
    pub lvb_reads: u64,
    pub lvb_invalid_reads: u64,
    pub messages: u64,
    /// Cancels asked for; of them, those that ended the request, and those that came after
    /// its grant (the master's DLM_CANCELGRANT, or the AST crossing the cancel).
    pub cancels: u64,
    pub cancelled: u64,
    pub cancels_too_late: u64,
    pub end_ms: Millis,
}

#[derive(Debug, Clone)]
enum Packet {
    Request { msg_type: u16, payload: Vec<u8> },
    Reply { status: i32 },
}

#[derive(Debug, Clone)]
enum Ev {
    Deliver {
        from: u8,
        to: u8,
        epoch: u64,
        pkt: Packet,
    },
    LinkUp {
        a: u8,
        b: u8,
        epoch: u64,
    },
    /// Heartbeat tells `at` that `node` died (or came up).
    NodeDown {
        at: u8,
        node: u8,
        inc: u64,
    },
    NodeUp {
        at: u8,
        node: u8,
        inc: u64,
    },
    Restart {
        node: u8,
    },
    Join {
        node: u8,
        inc: u64,
    },
    Tick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Lock,
    Convert,
    Unlock,
}

#[derive(Debug, Clone)]
struct UserLock {
    id: LockId,
    granted: Option<Mode>,
    pending: Option<(Req, Millis)>,
    cancel_sent: bool,
    bast: bool,
    since: Millis,
    /// The LVB sequence released with a pending release from EX.
    releasing_seq: Option<u64>,
}

struct Node {
    alive: bool,
    inc: u64,
    core: Option<DlmCore>,
    /// Survivors still to hear of this node's death before it may start again.
    down_pending: BTreeSet<u8>,
    restart_at: Option<Millis>,
    locks: BTreeMap<usize, UserLock>,
    next_user: Millis,
    leaving: bool,
    rejoin_at: Option<Millis>,
}

struct Link {
    epoch: u64,
    up: bool,
    /// Last delivery time scheduled in each direction (keeps one direction in order).
    last: [Millis; 2],
}

/// A run of the simulator.
pub struct Sim {
    cfg: SimConfig,
    rng: Rng,
    now: Millis,
    seq: u64,
    events: BinaryHeap<Reverse<(Millis, u64)>>,
    payloads: BTreeMap<u64, Ev>,
    nodes: Vec<Node>,
    links: BTreeMap<(u8, u8), Link>,
    /// Sends waiting for a reply, by (from, to).
    awaiting: BTreeSet<(u8, u8)>,
    names: Vec<Vec<u8>>,
    lvb_seq: u64,
    lvb_written: BTreeSet<u64>,
    lvb_acked: BTreeMap<usize, u64>,
    quiet: bool,
    trace: bool,
    report: SimReport,
}

fn lvb_of(seq: u64) -> Lvb {
    let mut l = [0u8; DLM_LVB_LEN];
    l[..8].copy_from_slice(&seq.to_le_bytes());
    l[8..16].copy_from_slice(&(!seq).to_le_bytes());
    l
}

fn seq_of(lvb: &Lvb) -> Option<u64> {
    if lvb.iter().all(|&b| b == 0) {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&lvb[..8]);
    Some(u64::from_le_bytes(a))
}

const DOMAIN: &str = "0123456789ABCDEF0123456789ABCDEF";

impl Sim {
    pub fn new(seed: u64, cfg: SimConfig) -> Sim {
        let mut nodes = Vec::new();
        for _ in 0..cfg.nodes {
            nodes.push(Node {
                alive: true,
                inc: 1,
                core: None,
                down_pending: BTreeSet::new(),
                restart_at: None,
                locks: BTreeMap::new(),
                next_user: 0,
                leaving: false,
                rejoin_at: None,
            });
        }
        let names = (0..cfg.resources).map(|i| format!("M{i:030}").into_bytes()).collect();
        let mut sim = Sim {
            cfg,
            rng: Rng::new(seed),
            now: 0,
            seq: 0,
            events: BinaryHeap::new(),
            payloads: BTreeMap::new(),
            nodes,
            links: BTreeMap::new(),
            awaiting: BTreeSet::new(),
            names,
            lvb_seq: 0,
            lvb_written: BTreeSet::new(),
            lvb_acked: BTreeMap::new(),
            quiet: false,
            trace: std::env::var("OCFS2_DLM_SIM_TRACE").is_ok(),
            report: SimReport::default(),
        };
        let n = sim.cfg.nodes as u8;
        for a in 0..n {
            for b in (a + 1)..n {
                sim.links.insert((a, b), Link { epoch: 0, up: true, last: [0, 0] });
            }
        }
        for i in 0..n {
            sim.start_core(i);
        }
        sim.schedule(10, Ev::Tick);
        sim
    }

    fn schedule(&mut self, delay: Millis, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((self.now + delay, self.seq)));
        self.payloads.insert(self.seq, ev);
    }

    fn link_key(a: u8, b: u8) -> ((u8, u8), usize) {
        if a < b {
            ((a, b), 0)
        } else {
            ((b, a), 1)
        }
    }

    fn start_core(&mut self, i: u8) {
        let inc = self.nodes[i as usize].inc;
        let mut core = DlmCore::new(i, DOMAIN, inc).unwrap_or_else(|e| panic!("core: {e}"));
        for (j, n) in self.nodes.iter().enumerate() {
            if j as u8 != i && n.alive {
                core.node_up(self.now, j as u8);
            }
        }
        let node = &mut self.nodes[i as usize];
        node.core = Some(core);
        node.locks.clear();
        node.leaving = false;
        node.rejoin_at = None;
        let delay = self.rng.below(50);
        self.schedule(delay, Ev::Join { node: i, inc });
    }

    fn core(&mut self, i: u8) -> Option<&mut DlmCore> {
        let n = &mut self.nodes[i as usize];
        if n.alive {
            n.core.as_mut()
        } else {
            None
        }
    }

    /// Runs the configuration; `Err` describes the first broken rule.
    pub fn run(mut self) -> Result<SimReport, String> {
        let end = self.cfg.duration_ms;
        let settle_limit = end + 30_000;
        while let Some(Reverse((t, id))) = self.events.pop() {
            let Some(ev) = self.payloads.remove(&id) else { continue };
            self.now = t;
            if !self.quiet && t >= end {
                self.quiet = true;
            }
            self.handle(ev)?;
            self.check_safety()?;
            if self.quiet && self.settled() {
                break;
            }
            if t > settle_limit {
                return Err(self.stuck_report());
            }
        }
        self.report.end_ms = self.now;
        for n in self.nodes.iter().filter(|n| n.alive) {
            if let Some(c) = &n.core {
                self.report.recoveries += c.stats().recoveries;
            }
        }
        Ok(self.report)
    }

    fn stuck_report(&self) -> String {
        let mut s = format!("not settled {} ms after the faults stopped:", self.now - self.cfg.duration_ms);
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(c) = n.core.as_ref().filter(|_| n.alive) else {
                s += &format!("\n  node {i}: dead (restart at {:?}, waiting for {:?})", n.restart_at, n.down_pending);
                continue;
            };
            s += &format!(
                "\n  node {i}: {:?} members {:?} recovering {:?} pending {} user locks {:?}\n    {}",
                c.state(),
                c.members(),
                c.recovering(),
                c.pending_requests(),
                n.locks.iter().map(|(r, l)| (r, l.granted, l.pending)).collect::<Vec<_>>(),
                c.debug_state()
            );
        }
        s
    }

    /// Quiet and done: every live node joined, no request pending, no lock held.
    fn settled(&self) -> bool {
        self.nodes.iter().all(|n| {
            if !n.alive {
                return false;
            }
            let Some(c) = &n.core else { return false };
            c.state() == DomainState::Joined
                && n.locks.is_empty()
                && c.pending_requests() == 0
                && c.recovering().is_empty()
        })
    }

    fn handle(&mut self, ev: Ev) -> Result<(), String> {
        match ev {
            Ev::Tick => {
                self.tick()?;
                self.schedule(10, Ev::Tick);
            }
            Ev::Deliver { from, to, epoch, pkt } => {
                let (k, _) = Self::link_key(from, to);
                if self.links.get(&k).map(|l| l.epoch) != Some(epoch) || !self.nodes[to as usize].alive {
                    return Ok(());
                }
                let now = self.now;
                match pkt {
                    Packet::Request { msg_type, payload } => {
                        let trace = self.trace;
                        let Some(core) = self.core(to) else { return Ok(()) };
                        let status = core.receive(now, from, msg_type, &payload);
                        if trace {
                            let m = super::wire::Msg::decode(msg_type, &payload);
                            eprintln!("{now} {from}->{to} {m:?} = {status}");
                        }
                        self.report.messages += 1;
                        self.send_packet(to, from, Packet::Reply { status });
                        self.actions(to)?;
                    }
                    Packet::Reply { status } => {
                        self.awaiting.remove(&(to, from));
                        if let Some(core) = self.core(to) {
                            core.reply(now, from, status);
                        }
                        self.actions(to)?;
                    }
                }
            }
            Ev::LinkUp { a, b, epoch } => {
                let Some(l) = self.links.get_mut(&(a, b)) else { return Ok(()) };
                if l.epoch != epoch {
                    return Ok(());
                }
                l.up = true;
                let now = self.now;
                for (x, y) in [(a, b), (b, a)] {
                    if let Some(c) = self.core(x) {
                        c.link_up(now, y);
                    }
                    self.actions(x)?;
                }
            }
            Ev::NodeDown { at, node, inc } => {
                if self.trace {
                    eprintln!("{} node {at} hears {node} died", self.now);
                }
                self.nodes[node as usize].down_pending.remove(&at);
                if self.nodes[at as usize].inc == inc && self.nodes[at as usize].alive {
                    let now = self.now;
                    if let Some(c) = self.core(at) {
                        c.node_down(now, node);
                    }
                    self.actions(at)?;
                }
                self.maybe_restart(node);
            }
            Ev::NodeUp { at, node, inc } => {
                if self.trace {
                    eprintln!("{} node {at} sees {node} up (inc {inc} vs {})", self.now, self.nodes[at as usize].inc);
                }
                if self.nodes[at as usize].inc == inc && self.nodes[node as usize].alive {
                    let now = self.now;
                    if let Some(c) = self.core(at) {
                        c.node_up(now, node);
                    }
                }
            }
            Ev::Restart { node } => {
                if self.trace {
                    eprintln!("{} restart {node}", self.now);
                }
                let n = &mut self.nodes[node as usize];
                if n.alive {
                    return Ok(());
                }
                n.alive = true;
                n.inc += 1;
                n.restart_at = None;
                // Heartbeat shows it to the others, each at its own time.
                for j in 0..self.cfg.nodes as u8 {
                    if j != node && self.nodes[j as usize].alive {
                        let d = 5 + self.rng.below(100);
                        let inc = self.nodes[j as usize].inc;
                        self.schedule(d, Ev::NodeUp { at: j, node, inc });
                    }
                }
                self.start_core(node);
            }
            Ev::Join { node, inc } => {
                if self.nodes[node as usize].inc != inc {
                    return Ok(());
                }
                let now = self.now;
                if let Some(c) = self.core(node) {
                    if matches!(c.state(), DomainState::Idle | DomainState::Left) {
                        c.join(now).map_err(|e| format!("join: {e}"))?;
                    }
                }
                self.actions(node)?;
            }
        }
        Ok(())
    }

    fn send_packet(&mut self, from: u8, to: u8, pkt: Packet) {
        let (k, dir) = Self::link_key(from, to);
        let slow = self.rng.below(10) == 0;
        let delay = 1 + self.rng.below(if slow { 40 } else { 8 });
        let now = self.now;
        let Some(l) = self.links.get_mut(&k) else { return };
        if !l.up {
            return;
        }
        let at = (now + delay).max(l.last[dir]);
        l.last[dir] = at;
        let epoch = l.epoch;
        self.schedule(at - now, Ev::Deliver { from, to, epoch, pkt });
    }

    /// Runs the actions a core queued.
    fn actions(&mut self, i: u8) -> Result<(), String> {
        loop {
            let Some(core) = self.core(i) else { return Ok(()) };
            let v = core.drain();
            if v.is_empty() {
                return Ok(());
            }
            if let Some(bad) = core.violations().first() {
                return Err(format!("node {i}: {bad}"));
            }
            for a in v {
                self.action(i, a)?;
            }
        }
    }

    fn action(&mut self, i: u8, a: Action) -> Result<(), String> {
        let now = self.now;
        match a {
            Action::Send { to, msg_type, payload, .. } => {
                self.awaiting.insert((i, to));
                let (k, _) = Self::link_key(i, to);
                let up = self.links.get(&k).is_some_and(|l| l.up) && self.nodes[to as usize].alive;
                if up {
                    self.send_packet(i, to, Packet::Request { msg_type, payload });
                } else {
                    self.awaiting.remove(&(i, to));
                    if let Some(c) = self.core(i) {
                        c.send_failed(now, to);
                    }
                }
            }
            Action::Granted { lock, mode, lvb } => {
                self.report.grants += 1;
                if self.trace {
                    eprintln!("{now} node {i} granted {:#x} {}", lock.0, mode.name());
                }
                let Some((r, ul)) = self.user_lock(i, lock) else { return Ok(()) };
                let req = ul.pending.map(|p| p.0);
                let too_late = ul.cancel_sent;
                let released = ul.releasing_seq.take();
                ul.granted = Some(mode);
                ul.pending = None;
                ul.cancel_sent = false;
                ul.since = now;
                if req == Some(Req::Lock) {
                    ul.bast = false;
                }
                if let Some(s) = released {
                    self.ack_release(r, s);
                }
                if too_late {
                    self.report.cancels_too_late += 1;
                }
                if mode >= Mode::Pr {
                    self.check_lvb(i, r, &lvb)?;
                }
            }
            Action::NotQueued { lock } | Action::Cancelled { lock } => {
                let cancelled = matches!(a, Action::Cancelled { .. });
                let Some((r, ul)) = self.user_lock(i, lock) else { return Ok(()) };
                if cancelled && !ul.cancel_sent {
                    return Err(format!("node {i}: lock {:#x} cancelled without a cancel", lock.0));
                }
                ul.pending = None;
                ul.cancel_sent = false;
                ul.releasing_seq = None;
                if ul.granted.is_none() {
                    self.nodes[i as usize].locks.remove(&r);
                }
                if cancelled {
                    self.report.cancelled += 1;
                }
            }
            Action::Unlocked { lock } => {
                if self.trace {
                    eprintln!("{now} node {i} unlocked {:#x}", lock.0);
                }
                let Some((r, ul)) = self.user_lock(i, lock) else { return Ok(()) };
                let released = ul.releasing_seq.take();
                self.nodes[i as usize].locks.remove(&r);
                if let Some(s) = released {
                    self.ack_release(r, s);
                }
            }
            Action::Bast { lock, .. } => {
                if let Some((_, ul)) = self.user_lock(i, lock) {
                    ul.bast = true;
                }
            }
            Action::Joined { .. } => {}
            Action::JoinFailed { reason } => return Err(format!("node {i} could not join: {reason}")),
            Action::Left => {
                // The last member gone takes the domain and its LVBs with it.
                let others = self.nodes.iter().enumerate().any(|(j, n)| {
                    j != i as usize
                        && n.alive
                        && n.core
                            .as_ref()
                            .is_some_and(|c| matches!(c.state(), DomainState::Joined | DomainState::Leaving))
                });
                if !others {
                    self.lvb_acked.clear();
                }
                let d = 50 + self.rng.below(300);
                self.nodes[i as usize].rejoin_at = Some(now + d);
            }
            Action::Recovered { .. } => {}
        }
        Ok(())
    }

    fn user_lock(&mut self, i: u8, id: LockId) -> Option<(usize, &mut UserLock)> {
        self.nodes[i as usize].locks.iter_mut().find(|(_, l)| l.id == id).map(|(r, l)| (*r, l))
    }

    fn ack_release(&mut self, r: usize, seq: u64) {
        if self.trace {
            eprintln!("{} release of LVB {seq} on resource {r} done", self.now);
        }
        let e = self.lvb_acked.entry(r).or_insert(0);
        *e = (*e).max(seq);
    }

    fn check_lvb(&mut self, i: u8, r: usize, lvb: &Lvb) -> Result<(), String> {
        self.report.lvb_reads += 1;
        let Some(seq) = seq_of(lvb) else {
            // Zero before any release is just the initial value.
            if !self.lvb_acked.contains_key(&r) {
                return Ok(());
            }
            self.report.lvb_invalid_reads += 1;
            if self.cfg.kill_permille == 0 {
                return Err(format!("node {i} read an invalid LVB on resource {r} though no node died"));
            }
            return Ok(());
        };
        if lvb != &lvb_of(seq) || !self.lvb_written.contains(&seq) {
            return Err(format!("node {i} read an LVB on resource {r} that nobody wrote: {:?}", &lvb[..16]));
        }
        let acked = self.lvb_acked.get(&r).copied().unwrap_or(0);
        if seq < acked {
            return Err(format!("node {i} read LVB {seq} on resource {r}, older than the released {acked}"));
        }
        Ok(())
    }

    /// No two incompatible locks of different holders are relied on at the same time.
    fn check_safety(&self) -> Result<(), String> {
        let mut by_res: BTreeMap<Vec<u8>, Vec<(u8, LockId, Mode)>> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(c) = n.core.as_ref().filter(|_| n.alive) else { continue };
            for (name, id, m) in c.holdings() {
                by_res.entry(name).or_default().push((i as u8, id, m));
            }
        }
        for (name, v) in by_res {
            for (a, x) in v.iter().enumerate() {
                for y in &v[a + 1..] {
                    if !x.2.compatible(y.2) {
                        return Err(format!(
                            "at {} ms resource {} is held {} by node {} ({:#x}) and {} by node {} ({:#x})",
                            self.now,
                            String::from_utf8_lossy(&name),
                            x.2.name(),
                            x.0,
                            x.1 .0,
                            y.2.name(),
                            y.0,
                            y.1 .0
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), String> {
        let now = self.now;
        let n = self.cfg.nodes as u8;
        for i in 0..n {
            if let Some(c) = self.core(i) {
                c.tick(now);
            }
            self.actions(i)?;
        }
        if !self.quiet {
            self.faults()?;
        }
        for i in 0..n {
            self.user(i)?;
        }
        for i in 0..n {
            self.maybe_restart(i);
            let node = &self.nodes[i as usize];
            if node.alive && node.rejoin_at.is_some_and(|t| t <= now) {
                self.nodes[i as usize].inc += 1;
                // A fresh life for the rejoin, on fresh connections; the others still see it
                // heartbeat.
                for j in 0..n {
                    if j != i {
                        self.cut(i, j)?;
                    }
                }
                self.start_core(i);
            }
        }
        Ok(())
    }

    fn faults(&mut self) -> Result<(), String> {
        let n = self.cfg.nodes as u8;
        let alive = self.nodes.iter().filter(|x| x.alive).count();
        if self.rng.below(1000) < self.cfg.kill_permille && alive > 1 {
            let v = self.rng.below(u64::from(n)) as u8;
            if self.nodes[v as usize].alive {
                self.kill(v)?;
            }
        }
        if self.rng.below(1000) < self.cfg.drop_permille {
            let a = self.rng.below(u64::from(n)) as u8;
            let b = self.rng.below(u64::from(n)) as u8;
            if a != b {
                self.drop_link(a, b)?;
            }
        }
        if self.rng.below(1000) < self.cfg.leave_permille {
            let v = self.rng.below(u64::from(n)) as u8;
            let node = &mut self.nodes[v as usize];
            if node.alive && node.core.as_ref().is_some_and(|c| c.state() == DomainState::Joined) {
                node.leaving = true;
            }
        }
        Ok(())
    }

    fn kill(&mut self, v: u8) -> Result<(), String> {
        self.report.kills += 1;
        if self.trace {
            eprintln!("{} kill {v}", self.now);
        }
        let n = self.cfg.nodes as u8;
        let node = &mut self.nodes[v as usize];
        node.alive = false;
        node.core = None;
        node.locks.clear();
        node.down_pending.clear();
        for j in 0..n {
            if j == v {
                continue;
            }
            self.cut(v, j)?;
            if self.nodes[j as usize].alive {
                self.nodes[v as usize].down_pending.insert(j);
                let d = 20 + self.rng.below(400);
                let inc = self.nodes[j as usize].inc;
                self.schedule(d, Ev::NodeDown { at: j, node: v, inc });
            }
        }
        let d = 100 + self.rng.below(500);
        self.nodes[v as usize].restart_at = Some(self.now + d);
        self.maybe_restart(v);
        Ok(())
    }

    fn maybe_restart(&mut self, v: u8) {
        let node = &self.nodes[v as usize];
        if node.alive || !node.down_pending.is_empty() {
            return;
        }
        // A real restart takes longer than recovery: wait until nobody is recovering it.
        let recovering =
            self.nodes.iter().any(|n| n.alive && n.core.as_ref().is_some_and(|c| c.recovering().contains(&v)));
        if recovering {
            return;
        }
        // Nodes that started since the death never knew the old life.
        if let Some(t) = node.restart_at {
            let d = t.saturating_sub(self.now);
            self.nodes[v as usize].restart_at = None;
            self.schedule(d, Ev::Restart { node: v });
        }
    }

    /// Loses everything in flight between a and b; both ends' pending sends fail.
    fn cut(&mut self, a: u8, b: u8) -> Result<(), String> {
        let k = if a < b { (a, b) } else { (b, a) };
        let Some(l) = self.links.get_mut(&k) else { return Ok(()) };
        l.epoch += 1;
        l.up = false;
        l.last = [0, 0];
        let epoch = l.epoch;
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            if self.awaiting.remove(&(x, y)) {
                if let Some(c) = self.core(x) {
                    c.send_failed(now, y);
                }
            }
        }
        let d = 20 + self.rng.below(300);
        self.schedule(d, Ev::LinkUp { a: k.0, b: k.1, epoch });
        Ok(())
    }

    fn drop_link(&mut self, a: u8, b: u8) -> Result<(), String> {
        self.report.drops += 1;
        self.cut(a, b)?;
        self.actions(a)?;
        self.actions(b)
    }

    /// One node's user: takes, converts and releases locks at random, answers BASTs.
    fn user(&mut self, i: u8) -> Result<(), String> {
        let now = self.now;
        let (alive, joined) = {
            let n = &self.nodes[i as usize];
            (n.alive, n.core.as_ref().is_some_and(|c| c.state() == DomainState::Joined))
        };
        if !alive || !joined || self.nodes[i as usize].next_user > now {
            return Ok(());
        }
        let step = 5 + self.rng.below(30);
        self.nodes[i as usize].next_user = now + step;
        let quiet = self.quiet;
        let leaving = self.nodes[i as usize].leaving;
        // Leaving: release everything, then leave.
        if leaving && self.nodes[i as usize].locks.is_empty() {
            let core = self.core(i).ok_or("no core")?;
            if core.pending_requests() == 0 {
                core.leave(now).map_err(|e| format!("node {i} leave: {e}"))?;
                self.report.leaves += 1;
                self.nodes[i as usize].leaving = false;
                self.actions(i)?;
                return Ok(());
            }
        }
        for r in 0..self.cfg.resources {
            let name = self.names[r].clone();
            let max_hold = self.cfg.max_hold_ms;
            let entry = self.nodes[i as usize].locks.get(&r).cloned();
            match entry {
                None => {
                    if quiet || leaving || self.rng.below(4) != 0 {
                        continue;
                    }
                    let mode = [Mode::Nl, Mode::Pr, Mode::Pr, Mode::Ex, Mode::Ex][self.rng.below(5) as usize];
                    let flags = LKM_VALBLK | if self.rng.below(5) == 0 { LKM_NOQUEUE } else { 0 };
                    let core = self.core(i).ok_or("no core")?;
                    let id = core.lock(now, &name, mode, flags).map_err(|e| format!("node {i} lock: {e}"))?;
                    self.report.requests += 1;
                    self.nodes[i as usize].locks.insert(
                        r,
                        UserLock {
                            id,
                            granted: None,
                            pending: Some((Req::Lock, now)),
                            cancel_sent: false,
                            bast: false,
                            since: now,
                            releasing_seq: None,
                        },
                    );
                }
                Some(ul) => {
                    if let Some((_, since)) = ul.pending {
                        // Waiting too long, or in the way of someone: cancel (locks and converts).
                        let stuck = now - since > 2 * max_hold || ul.bast;
                        if stuck && !ul.cancel_sent && ul.releasing_seq.is_none() && self.rng.below(3) == 0 {
                            let core = self.core(i).ok_or("no core")?;
                            if core.cancel(now, ul.id).is_ok() {
                                self.report.cancels += 1;
                                if let Some(l) = self.nodes[i as usize].locks.get_mut(&r) {
                                    l.cancel_sent = true;
                                }
                            }
                        }
                        continue;
                    }
                    let Some(g) = ul.granted else { continue };
                    let must_release = quiet || leaving || ul.bast || now - ul.since > max_hold;
                    let roll = self.rng.below(10);
                    if !must_release && roll >= 3 {
                        continue;
                    }
                    // From EX, write a new LVB value that travels with the release.
                    let lvb_out = if g == Mode::Ex {
                        self.lvb_seq += 1;
                        self.lvb_written.insert(self.lvb_seq);
                        Some(self.lvb_seq)
                    } else {
                        None
                    };
                    let lvb = lvb_out.map(lvb_of);
                    let choice = if must_release { self.rng.below(3) } else { self.rng.below(4) };
                    let to = [Mode::Nl, Mode::Pr, Mode::Ex][self.rng.below(3) as usize];
                    let flags = if self.rng.below(4) == 0 { LKM_NOQUEUE } else { 0 };
                    let core = self.core(i).ok_or("no core")?;
                    let (req, res) = match choice {
                        // Unlock.
                        0 | 1 => (Req::Unlock, core.unlock(now, ul.id, lvb.as_ref())),
                        // Down to NL (or, when not forced, any other mode).
                        2 if g != Mode::Nl => (Req::Convert, core.convert(now, ul.id, Mode::Nl, 0, lvb.as_ref())),
                        2 => (Req::Unlock, core.unlock(now, ul.id, lvb.as_ref())),
                        _ => {
                            if to == g {
                                continue;
                            }
                            (Req::Convert, core.convert(now, ul.id, to, flags, lvb.as_ref()))
                        }
                    };
                    res.map_err(|e| format!("node {i} request on resource {r}: {e}"))?;
                    self.report.requests += 1;
                    if let Some(l) = self.nodes[i as usize].locks.get_mut(&r) {
                        l.pending = Some((req, now));
                        l.releasing_seq = lvb_out;
                        l.bast = false;
                    }
                }
            }
            self.actions(i)?;
        }
        Ok(())
    }
}

/// Runs one seeded configuration.
pub fn run(seed: u64, cfg: SimConfig) -> Result<SimReport, String> {
    Sim::new(seed, cfg).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_runs_cancel_requests_both_before_and_after_their_grant() {
        let mut total = SimReport::default();
        for s in 0..40u64 {
            let cfg = SimConfig::random(&mut Rng::new(s), 6);
            let r = run(s ^ 0xcafe, cfg).unwrap_or_else(|e| panic!("seed {s}: {e}"));
            total.cancels += r.cancels;
            total.cancelled += r.cancelled;
            total.cancels_too_late += r.cancels_too_late;
        }
        eprintln!("{} cancels: {} cancelled, {} too late", total.cancels, total.cancelled, total.cancels_too_late);
        assert!(total.cancelled > 0 && total.cancels_too_late > 0, "{total:?}");
    }
}
