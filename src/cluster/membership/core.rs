//! Membership as a pure state machine: heartbeat and network events in, node events, o2net's
//! heartbeat word and the fencing verdict out.

use super::{FenceReason, MemberEvent};
use crate::cluster::config::HeartbeatMode;
use crate::cluster::heartbeat::{HeartbeatEvent, NodeMap};
use crate::cluster::net::{CloseReason, NetEvent};
use crate::cluster::quorum::{Decision, QuorumCore};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the core asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tell o2net whether the peer heartbeats (`Net::set_peer_live`): it connects to, and
    /// accepts from, live peers only.
    SetPeerLive { node: u8, live: bool },
    /// Tell subscribers.
    Event(MemberEvent),
    /// Fence now: throw the fence switch first, then run the fence action. Final.
    Fence(FenceReason),
}

/// One heartbeat region as membership sees it.
#[derive(Debug, Clone, Default)]
struct Region {
    live: NodeMap,
    /// Its heartbeat missed the write deadline (global mode counts these).
    failed: bool,
}

/// One node's membership: which peers are up, and whether this node may go on.
///
/// Invariants:
/// - a peer is heartbeat-live while it is live in at least one region (o2hb's
///   `o2hb_live_slots` lists): the first region to see it fires its up, the last to lose it its
///   down;
/// - a peer is a member (reported [`MemberEvent::NodeUp`]) only while it is heartbeat-live and
///   its connection is up and not idle;
/// - after [`Action::Fence`] the core emits nothing more.
#[derive(Debug, Clone)]
pub struct MembershipCore {
    local: u8,
    mode: HeartbeatMode,
    regions: BTreeMap<String, Region>,
    hb_live: NodeMap,
    connected: NodeMap,
    idle: NodeMap,
    members: NodeMap,
    quorum: QuorumCore,
    fenced: Option<FenceReason>,
}

impl MembershipCore {
    /// A node that listens for connections but heartbeats nowhere yet.
    pub fn new(local: u8, mode: HeartbeatMode, quorum_delay: Duration) -> MembershipCore {
        MembershipCore {
            local,
            mode,
            regions: BTreeMap::new(),
            hb_live: NodeMap::new(),
            connected: NodeMap::new(),
            idle: NodeMap::new(),
            members: NodeMap::new(),
            quorum: QuorumCore::new(local, quorum_delay),
            fenced: None,
        }
    }

    pub fn local(&self) -> u8 {
        self.local
    }

    /// Peers that are members: heartbeating and connected.
    pub fn members(&self) -> NodeMap {
        self.members
    }

    /// Nodes heartbeating in at least one region, this node included once it sees itself.
    pub fn heartbeat_live(&self) -> NodeMap {
        self.hb_live
    }

    /// Peers with a connection past the handshake.
    pub fn connected(&self) -> NodeMap {
        self.connected
    }

    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.regions.keys().map(String::as_str)
    }

    pub fn fenced(&self) -> Option<&FenceReason> {
        self.fenced.as_ref()
    }

    pub fn quorum(&self) -> &QuorumCore {
        &self.quorum
    }

    /// When [`tick`](Self::tick) next has work.
    pub fn next_timer(&self) -> Option<Duration> {
        if self.fenced.is_some() {
            return None;
        }
        self.quorum.next_timer()
    }

    /// A heartbeat region started (its heartbeat is steady).
    pub fn region_started(&mut self, _now: Duration, region: &str) {
        if self.fenced.is_none() {
            self.regions.entry(region.to_string()).or_default();
        }
    }

    /// An event of one region's heartbeat.
    pub fn heartbeat(&mut self, now: Duration, region: &str, event: &HeartbeatEvent) -> Vec<Action> {
        let mut out = Vec::new();
        if self.fenced.is_some() {
            return out;
        }
        let r = self.regions.entry(region.to_string()).or_default();
        match event {
            HeartbeatEvent::NodeUp(n) => {
                if r.live.insert(*n) {
                    self.recompute_live(now, &mut out);
                }
            }
            HeartbeatEvent::NodeDown(n) => {
                if r.live.remove(*n) {
                    self.recompute_live(now, &mut out);
                }
            }
            HeartbeatEvent::Fenced => {
                r.failed = true;
                r.live = NodeMap::new();
                let (failed, total) = self.failed_regions();
                let fence = match self.mode {
                    // One region per volume: any write timeout means peers may call us dead.
                    HeartbeatMode::Local => true,
                    // Fence when the failed regions are at least half of the regions
                    // (o2hb_write_timeout in global mode).
                    HeartbeatMode::Global => failed * 2 >= total,
                };
                if fence {
                    self.fence(
                        FenceReason::HeartbeatTimeout { region: region.to_string(), failed, regions: total },
                        &mut out,
                    );
                } else {
                    log::error!(
                        "o2hb: region {region} missed its write deadline; {failed} of {total} regions failed, \
                         fewer than half: going on"
                    );
                    self.recompute_live(now, &mut out);
                }
            }
            HeartbeatEvent::Clash(info) => {
                log::error!("o2hb: region {region}: {info}");
            }
        }
        out
    }

    /// A region's heartbeat is gone (stopped, or its thread ended): its nodes no longer count.
    pub fn region_closed(&mut self, now: Duration, region: &str) -> Vec<Action> {
        let mut out = Vec::new();
        if self.regions.remove(region).is_some() && self.fenced.is_none() {
            self.recompute_live(now, &mut out);
        }
        out
    }

    /// An event of o2net.
    pub fn net(&mut self, now: Duration, event: &NetEvent) -> Vec<Action> {
        let mut out = Vec::new();
        if self.fenced.is_some() {
            return out;
        }
        match event {
            NetEvent::Connected(n) => {
                self.connected.insert(*n);
                self.idle.remove(*n);
                let d = self.quorum.conn_up(now, *n);
                self.update_member(*n, &mut out);
                self.apply_decision(d, &mut out);
            }
            NetEvent::Resumed(n) => {
                if self.idle.remove(*n) {
                    let d = self.quorum.conn_resumed(now, *n);
                    self.update_member(*n, &mut out);
                    self.apply_decision(d, &mut out);
                }
            }
            NetEvent::Idle(n) => {
                self.idle.insert(*n);
                self.quorum.conn_err(now, *n);
                self.update_member(*n, &mut out);
            }
            NetEvent::Disconnected(n, _) => {
                self.connected.remove(*n);
                self.idle.remove(*n);
                self.quorum.conn_err(now, *n);
                self.update_member(*n, &mut out);
            }
            // o2net gives up on a peer whose handshake does not match: a connection error.
            NetEvent::Rejected { node: Some(n), reason: CloseReason::Handshake(_), .. } => {
                self.quorum.conn_err(now, *n);
            }
            NetEvent::Rejected { .. } => {}
        }
        out
    }

    /// Time passes: quorum delays may run out.
    pub fn tick(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        if self.fenced.is_none() {
            let d = self.quorum.tick(now);
            self.apply_decision(d, &mut out);
        }
        out
    }

    fn failed_regions(&self) -> (usize, usize) {
        (self.regions.values().filter(|r| r.failed).count(), self.regions.len())
    }

    /// Recomputes the union of the regions' live nodes and reports what changed.
    fn recompute_live(&mut self, now: Duration, out: &mut Vec<Action>) {
        let live = self.regions.values().fold(NodeMap::new(), |acc, r| acc.union(&r.live));
        let before = self.hb_live;
        self.hb_live = live;
        for n in before.iter().filter(|n| !live.contains(*n)) {
            if n != self.local {
                out.push(Action::SetPeerLive { node: n, live: false });
                self.connected.remove(n);
                self.idle.remove(n);
                let was_member = self.members.remove(n);
                log::info!("membership: node {n} is dead{}", if was_member { "" } else { " (never connected)" });
                out.push(Action::Event(MemberEvent::NodeDown(n)));
            }
            let d = self.quorum.hb_down(now, n);
            self.apply_decision(d, out);
        }
        for n in live.iter().filter(|n| !before.contains(*n)) {
            if n != self.local {
                out.push(Action::SetPeerLive { node: n, live: true });
            }
            let d = self.quorum.hb_up(now, n);
            self.apply_decision(d, out);
            self.update_member(n, out);
        }
    }

    /// Reports a peer that became, or stopped being, a member while it heartbeats.
    fn update_member(&mut self, n: u8, out: &mut Vec<Action>) {
        if n == self.local || self.fenced.is_some() {
            return;
        }
        let member = self.hb_live.contains(n) && self.connected.contains(n) && !self.idle.contains(n);
        if member && self.members.insert(n) {
            log::info!("membership: node {n} is up");
            out.push(Action::Event(MemberEvent::NodeUp(n)));
        } else if !member && self.hb_live.contains(n) && self.members.remove(n) {
            log::warn!("membership: node {n} heartbeats but cannot be reached; quorum will decide");
            out.push(Action::Event(MemberEvent::Unreachable(n)));
        }
    }

    fn apply_decision(&mut self, d: Option<Decision>, out: &mut Vec<Action>) {
        let Some(d) = d else { return };
        if d.fence {
            self.fence(FenceReason::Quorum(d), out);
        } else {
            log::info!("o2quo: {d}");
        }
    }

    fn fence(&mut self, reason: FenceReason, out: &mut Vec<Action>) {
        if self.fenced.is_some() {
            return;
        }
        log::error!("fencing this node: {reason}");
        self.fenced = Some(reason.clone());
        out.push(Action::Fence(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_millis(1200);

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn events(actions: &[Action]) -> Vec<MemberEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// Node `local` of nodes 0..3, all up in region "A" and connected.
    fn three(local: u8) -> MembershipCore {
        let mut m = MembershipCore::new(local, HeartbeatMode::Local, DELAY);
        m.region_started(ms(0), "A");
        for n in 0..3 {
            m.heartbeat(ms(0), "A", &HeartbeatEvent::NodeUp(n));
        }
        for n in (0..3).filter(|n| *n != local) {
            m.net(ms(0), &NetEvent::Connected(n));
        }
        m
    }

    #[test]
    fn a_peer_is_up_when_it_heartbeats_and_is_connected() {
        let mut m = MembershipCore::new(0, HeartbeatMode::Local, DELAY);
        let a = m.heartbeat(ms(0), "A", &HeartbeatEvent::NodeUp(0));
        assert!(a.is_empty(), "our own node is not announced: {a:?}");
        let a = m.heartbeat(ms(0), "A", &HeartbeatEvent::NodeUp(2));
        assert_eq!(a, vec![Action::SetPeerLive { node: 2, live: true }]);
        let a = m.net(ms(10), &NetEvent::Connected(2));
        assert_eq!(events(&a), vec![MemberEvent::NodeUp(2)]);
        assert_eq!(m.members().to_vec(), vec![2]);
        assert_eq!(m.heartbeat_live().to_vec(), vec![0, 2]);
    }

    #[test]
    fn a_peer_live_in_two_regions_is_down_only_when_both_lose_it() {
        let mut m = three(0);
        m.heartbeat(ms(0), "B", &HeartbeatEvent::NodeUp(1));
        let a = m.heartbeat(ms(5), "A", &HeartbeatEvent::NodeDown(1));
        assert!(a.is_empty(), "{a:?}");
        let a = m.region_closed(ms(6), "B");
        assert_eq!(a[0], Action::SetPeerLive { node: 1, live: false });
        assert_eq!(events(&a), vec![MemberEvent::NodeDown(1)]);
        assert_eq!(m.members().to_vec(), vec![2]);
    }

    #[test]
    fn an_idle_member_is_unreachable_until_heard_from() {
        let mut m = three(0);
        let a = m.net(ms(100), &NetEvent::Idle(2));
        assert_eq!(events(&a), vec![MemberEvent::Unreachable(2)]);
        let a = m.net(ms(200), &NetEvent::Resumed(2));
        assert_eq!(events(&a), vec![MemberEvent::NodeUp(2)]);
        assert!(m.tick(ms(5000)).is_empty(), "the resumed connection cancelled the decision");
    }

    #[test]
    fn the_minority_fences_and_the_majority_goes_on() {
        let mut minority = three(2);
        minority.net(ms(0), &NetEvent::Idle(0));
        minority.net(ms(0), &NetEvent::Idle(1));
        let a = minority.tick(DELAY);
        match &a[..] {
            [Action::Fence(FenceReason::Quorum(d))] => assert_eq!((d.heartbeating, d.connected), (3, 1)),
            other => panic!("expected a quorum fence, got {other:?}"),
        }
        assert!(minority.fenced().is_some());
        assert!(minority.heartbeat(DELAY, "A", &HeartbeatEvent::NodeDown(0)).is_empty(), "nothing after a fence");

        let mut majority = three(0);
        majority.net(ms(0), &NetEvent::Idle(2));
        assert!(majority.tick(DELAY).is_empty());
        assert_eq!(majority.quorum().last_decision().map(|d| d.fence), Some(false));
        let a = majority.heartbeat(ms(3000), "A", &HeartbeatEvent::NodeDown(2));
        assert_eq!(events(&a), vec![MemberEvent::NodeDown(2)]);
    }

    #[test]
    fn a_write_timeout_fences_in_local_mode_and_needs_half_the_regions_in_global_mode() {
        let mut m = three(0);
        let a = m.heartbeat(ms(0), "A", &HeartbeatEvent::Fenced);
        assert!(matches!(&a[..], [Action::Fence(FenceReason::HeartbeatTimeout { .. })]), "{a:?}");

        let mut g = MembershipCore::new(0, HeartbeatMode::Global, DELAY);
        for r in ["R1", "R2", "R3"] {
            g.region_started(ms(0), r);
            g.heartbeat(ms(0), r, &HeartbeatEvent::NodeUp(0));
            g.heartbeat(ms(0), r, &HeartbeatEvent::NodeUp(1));
        }
        g.net(ms(0), &NetEvent::Connected(1));
        assert!(events(&g.heartbeat(ms(10), "R1", &HeartbeatEvent::Fenced)).is_empty(), "1 of 3 failed");
        assert_eq!(g.members().to_vec(), vec![1], "still live in the other regions");
        let a = g.heartbeat(ms(20), "R2", &HeartbeatEvent::Fenced);
        match &a[..] {
            [Action::Fence(FenceReason::HeartbeatTimeout { failed: 2, regions: 3, .. })] => {}
            other => panic!("expected a heartbeat fence, got {other:?}"),
        }
    }

    #[test]
    fn a_killed_peer_is_reported_down_without_any_fencing() {
        let mut m = three(1);
        let a = m.net(ms(0), &NetEvent::Disconnected(0, CloseReason::PeerClosed));
        assert_eq!(events(&a), vec![MemberEvent::Unreachable(0)]);
        let a = m.heartbeat(ms(1000), "A", &HeartbeatEvent::NodeDown(0));
        assert_eq!(events(&a), vec![MemberEvent::NodeDown(0)]);
        assert!(m.tick(ms(10_000)).is_empty());
        assert!(m.fenced().is_none());
    }
}
