//! o2quo: whether this node may go on after it lost connections (kernel
//! `fs/ocfs2/cluster/quorum.c`), as a pure state machine over `(now, event)`.
//!
//! The disk heartbeat says which nodes are alive; the network says which of them this node can
//! talk to. Two groups of nodes that cannot talk must not both go on writing the shared disk,
//! so a node that lost its connections decides, from the counts alone, whether its side of the
//! split is the one that survives:
//! - `n` nodes heartbeating, `c` connected to us, ourselves included;
//! - `n` odd: fence unless `c >= (n + 1) / 2`;
//! - `n` even: fence when `c < n / 2`, or when `c == n / 2` and the lowest-numbered
//!   heartbeating node is not among the connected (the half with the lowest node wins a tie).
//!
//! Invariants, as the kernel keeps them:
//! - A node in transition holds the decision: heartbeating but not connected (a connection may
//!   still come up), connected but not heartbeating, or connection lost while still heartbeating.
//!   A hold is dropped by the connection coming up, the heartbeat going down, or the quorum delay
//!   running out after a connection error.
//! - A decision is made only when a connection error's quorum delay ran out (it sets `pending`)
//!   and no hold is left; nothing else ever fences. A node alone, or one whose own heartbeat is
//!   not live, never fences.
//! - The quorum delay, `(dead_threshold + 2) × interval`, is longer than the time a dead node's
//!   heartbeat takes to be declared dead, so a peer that died (rather than became unreachable)
//!   drops out of the counts before the decision.
//!
//! Where the kernel runs the decision later on a work queue, we make it at the end of the event
//! that allowed it; the state it reads is the same, because every event here is applied whole.

use super::heartbeat::NodeMap;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The counts behind one decision, and its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Nodes heartbeating, this node included (`n`).
    pub heartbeating: usize,
    /// Nodes connected, this node included (`c`).
    pub connected: usize,
    /// Connections needed: `(n + 1) / 2` for odd `n`, `n / 2` for even.
    pub needed: usize,
    /// The lowest-numbered heartbeating node, and whether we are connected to it.
    pub lowest: u8,
    pub lowest_reachable: bool,
    /// This node must fence itself.
    pub fence: bool,
}

impl Decision {
    /// The rule of `o2quo_make_decision`, from the two maps. `None` when there is nothing to
    /// decide: we are not heartbeating, or we are the only one.
    pub fn make(local: u8, heartbeating: &NodeMap, connected: &NodeMap) -> Option<Decision> {
        let n = heartbeating.len();
        if !heartbeating.contains(local) || n == 1 {
            return None;
        }
        // Counted as the kernel counts: every connection, heartbeating or not.
        let c = connected.len();
        let lowest = heartbeating.lowest()?;
        let lowest_reachable = connected.contains(lowest);
        let (needed, fence) = if n % 2 == 1 {
            let q = n.div_ceil(2);
            (q, c < q)
        } else {
            let q = n / 2;
            (q, c < q || (c == q && !lowest_reachable))
        };
        Some(Decision { heartbeating: n, connected: c, needed, lowest, lowest_reachable, fence })
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, c, q) = (self.heartbeating, self.connected, self.needed);
        if !self.fence {
            write!(f, "connected to {c} of {n} heartbeating nodes, {q} needed: quorum holds")
        } else if c < q {
            write!(f, "only connected to {c} nodes and {q} is needed to make a quorum out of {n} heartbeating nodes")
        } else {
            write!(
                f,
                "connected to a half-quorum of {q} out of {n} nodes which doesn't include the lowest active node {}",
                self.lowest
            )
        }
    }
}

/// One node's o2quo state.
#[derive(Debug, Clone)]
pub struct QuorumCore {
    local: u8,
    delay: Duration,
    heartbeating: NodeMap,
    connected: NodeMap,
    holds: NodeMap,
    /// A quorum delay ran out; decide once the holds drain.
    pending: bool,
    /// Per node, when its connection error's quorum delay runs out (`nn_still_up`).
    still_up: BTreeMap<u8, Duration>,
    last: Option<Decision>,
}

impl QuorumCore {
    /// The state of a node that has just started listening: connected to itself only
    /// (`o2net_start_listening` counts the local node as a connection).
    pub fn new(local: u8, quorum_delay: Duration) -> QuorumCore {
        let mut connected = NodeMap::new();
        connected.insert(local);
        QuorumCore {
            local,
            delay: quorum_delay,
            heartbeating: NodeMap::new(),
            connected,
            holds: NodeMap::new(),
            pending: false,
            still_up: BTreeMap::new(),
            last: None,
        }
    }

    pub fn local(&self) -> u8 {
        self.local
    }

    pub fn quorum_delay(&self) -> Duration {
        self.delay
    }

    pub fn heartbeating(&self) -> NodeMap {
        self.heartbeating
    }

    pub fn connected(&self) -> NodeMap {
        self.connected
    }

    /// Nodes whose transition holds the decision back.
    pub fn holds(&self) -> NodeMap {
        self.holds
    }

    /// The last decision made, fenced or not.
    pub fn last_decision(&self) -> Option<Decision> {
        self.last
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_timer(&self) -> Option<Duration> {
        self.still_up.values().min().copied()
    }

    /// Heartbeat says `node` is live (`o2quo_hb_up`); our own node included.
    pub fn hb_up(&mut self, _now: Duration, node: u8) -> Option<Decision> {
        if !self.heartbeating.insert(node) {
            return None;
        }
        if self.connected.contains(node) {
            self.clear_hold(node)
        } else {
            self.holds.insert(node);
            None
        }
    }

    /// Heartbeat says `node` died (`o2quo_hb_down`, then what `o2net_disconnect_node` does:
    /// the connection is gone and its pending quorum delay is cancelled).
    pub fn hb_down(&mut self, _now: Duration, node: u8) -> Option<Decision> {
        if !self.heartbeating.remove(node) {
            return None;
        }
        if node != self.local {
            self.connected.remove(node);
            self.still_up.remove(&node);
        }
        self.clear_hold(node)
    }

    /// The connection to `node` passed its handshake (`o2quo_conn_up`). A quorum delay still
    /// running for the node is left to run out, as o2net leaves its `nn_still_up` work queued:
    /// it then only marks a decision pending, for the next hold to drop.
    pub fn conn_up(&mut self, _now: Duration, node: u8) -> Option<Decision> {
        if !self.connected.insert(node) {
            return None;
        }
        if self.heartbeating.contains(node) {
            self.clear_hold(node)
        } else {
            self.holds.insert(node);
            None
        }
    }

    /// A connection that had gone idle was heard from again (`o2net_sc_postpone_idle`): it
    /// counts again and its quorum delay is cancelled.
    pub fn conn_resumed(&mut self, now: Duration, node: u8) -> Option<Decision> {
        self.still_up.remove(&node);
        self.conn_up(now, node)
    }

    /// The connection to `node` was lost, failed its handshake, or went idle (`o2quo_conn_err`
    /// plus o2net's `nn_still_up` work): while the node still heartbeats it holds the decision
    /// for the quorum delay, after which the decision is due.
    pub fn conn_err(&mut self, now: Duration, node: u8) {
        if node == self.local {
            return;
        }
        self.connected.remove(node);
        if self.heartbeating.contains(node) {
            self.holds.insert(node);
            // A delay already running is not restarted (queue_delayed_work on a queued work).
            self.still_up.entry(node).or_insert(now.saturating_add(self.delay));
        }
    }

    /// Runs the quorum delays that ran out by `now` (`o2quo_hb_still_up`).
    pub fn tick(&mut self, now: Duration) -> Option<Decision> {
        let due: Vec<u8> = self.still_up.iter().filter(|(_, at)| **at <= now).map(|(n, _)| *n).collect();
        let mut decision = None;
        for node in due {
            self.still_up.remove(&node);
            self.pending = true;
            if let Some(d) = self.clear_hold(node) {
                decision = Some(d);
                if d.fence {
                    break;
                }
            }
        }
        decision
    }

    /// `o2quo_clear_hold`: the last hold to go, with a decision pending, makes it.
    fn clear_hold(&mut self, node: u8) -> Option<Decision> {
        if !self.holds.remove(node) || !self.holds.is_empty() || !self.pending {
            return None;
        }
        self.pending = false;
        let d = Decision::make(self.local, &self.heartbeating, &self.connected)?;
        self.last = Some(d);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_millis(1200);

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn map(nodes: &[u8]) -> NodeMap {
        nodes.iter().copied().collect()
    }

    /// A node `local` that heartbeats with `nodes` and is connected to all of them.
    fn settled(local: u8, nodes: &[u8]) -> QuorumCore {
        let mut q = QuorumCore::new(local, DELAY);
        for &n in nodes {
            assert_eq!(q.hb_up(ms(0), n), None);
            if n != local {
                assert_eq!(q.conn_up(ms(0), n), None);
            }
        }
        assert!(q.holds().is_empty(), "{:?}", q.holds());
        q
    }

    #[test]
    // The kernel's arithmetic as it is written in quorum.c.
    #[allow(clippy::manual_div_ceil)]
    fn the_rule_matches_o2quo_for_every_small_cluster() {
        // Checked against the kernel's arithmetic, written out independently.
        for n in 2..=8usize {
            let hb: NodeMap = (0..n as u8).collect();
            for local in 0..n as u8 {
                for mask in 0u32..(1 << n) {
                    let mut conn: NodeMap = (0..n as u8).filter(|i| mask & (1 << i) != 0).collect();
                    conn.insert(local);
                    let c = conn.len();
                    let expect =
                        if n % 2 == 1 { c < (n + 1) / 2 } else { c < n / 2 || (c == n / 2 && !conn.contains(0)) };
                    let d = Decision::make(local, &hb, &conn).unwrap();
                    assert_eq!(d.fence, expect, "n={n} local={local} conn={conn:?}");
                }
            }
        }
        assert_eq!(Decision::make(3, &map(&[3]), &map(&[3])), None, "a node alone never fences");
        assert_eq!(Decision::make(3, &map(&[1, 2]), &map(&[3])), None, "not heartbeating: no decision");
    }

    #[test]
    fn a_node_cut_off_from_two_of_three_fences_after_the_quorum_delay() {
        let mut q = settled(2, &[0, 1, 2]);
        q.conn_err(ms(1000), 0);
        q.conn_err(ms(1100), 1);
        assert_eq!(q.next_timer(), Some(ms(2200)));
        assert_eq!(q.tick(ms(2199)), None);
        assert_eq!(q.tick(ms(2200)), None, "node 1's hold is still there");
        let d = q.tick(ms(2300)).expect("decision once both delays ran out");
        assert!(d.fence);
        assert_eq!((d.heartbeating, d.connected, d.needed), (3, 1, 2));
        assert_eq!(
            d.to_string(),
            "only connected to 1 nodes and 2 is needed to make a quorum out of 3 heartbeating nodes"
        );
    }

    #[test]
    fn the_majority_side_decides_to_go_on() {
        let mut q = settled(0, &[0, 1, 2]);
        q.conn_err(ms(1000), 2);
        let d = q.tick(ms(2200)).expect("decision");
        assert!(!d.fence);
        assert_eq!((d.heartbeating, d.connected), (3, 2));
        assert_eq!(q.last_decision(), Some(d));
    }

    #[test]
    fn a_dead_node_drops_out_before_the_decision() {
        let mut q = settled(1, &[0, 1, 2]);
        // Node 0 dies: its connection closes at once, its heartbeat is declared dead later but
        // within the quorum delay, which cancels the decision altogether.
        q.conn_err(ms(0), 0);
        assert_eq!(q.hb_down(ms(1000), 0), None);
        assert_eq!(q.next_timer(), None);
        assert_eq!(q.tick(ms(5000)), None);
        assert_eq!(q.last_decision(), None);
        assert_eq!(q.heartbeating().to_vec(), vec![1, 2]);
    }

    #[test]
    fn an_even_split_is_won_by_the_half_with_the_lowest_node() {
        let mut low = settled(1, &[0, 1, 2, 3]);
        low.conn_err(ms(0), 2);
        low.conn_err(ms(0), 3);
        let d = low.tick(ms(1200)).unwrap();
        assert!(!d.fence, "{d}");

        let mut high = settled(3, &[0, 1, 2, 3]);
        high.conn_err(ms(0), 0);
        high.conn_err(ms(0), 1);
        let d = high.tick(ms(1200)).unwrap();
        assert!(d.fence);
        assert!(d.to_string().contains("doesn't include the lowest active node 0"), "{d}");

        let mut two = settled(1, &[0, 1]);
        two.conn_err(ms(0), 0);
        assert!(two.tick(ms(1200)).unwrap().fence, "of two, the higher node fences");
        let mut two = settled(0, &[0, 1]);
        two.conn_err(ms(0), 1);
        assert!(!two.tick(ms(1200)).unwrap().fence, "of two, the lower node goes on");
    }

    #[test]
    fn a_node_that_heartbeats_but_never_connects_holds_every_decision() {
        let mut q = settled(2, &[0, 1, 2]);
        assert_eq!(q.hb_up(ms(0), 3), None);
        q.conn_err(ms(0), 0);
        q.conn_err(ms(0), 1);
        assert_eq!(q.tick(ms(1200)), None, "node 3 holds the decision");
        assert!(q.tick(ms(5000)).is_none());
        // Once node 3 connects, the pending decision is made.
        let d = q.conn_up(ms(6000), 3).expect("the last hold made the decision");
        assert_eq!((d.heartbeating, d.connected, d.fence), (4, 2, true));
    }

    #[test]
    fn a_connection_heard_from_again_cancels_its_delay() {
        let mut q = settled(2, &[0, 1, 2]);
        q.conn_err(ms(0), 0);
        q.conn_err(ms(0), 1);
        assert_eq!(q.conn_resumed(ms(500), 0), None);
        assert_eq!(q.conn_resumed(ms(600), 1), None);
        assert_eq!(q.next_timer(), None);
        assert_eq!(q.tick(ms(2000)), None);
        assert!(q.holds().is_empty());
    }

    #[test]
    fn a_reconnection_leaves_the_delay_to_mark_a_decision_for_the_next_hold() {
        let mut q = settled(1, &[0, 1, 2]);
        q.conn_err(ms(0), 0);
        assert_eq!(q.conn_up(ms(600), 0), None, "reconnected before the delay ran out");
        assert_eq!(q.next_timer(), Some(DELAY));
        assert_eq!(q.tick(DELAY), None, "no hold left to drop: nothing decided yet");
        assert_eq!(q.last_decision(), None);
        // A node joining later drops the next hold, which makes the pending decision.
        assert_eq!(q.hb_up(ms(2000), 3), None);
        let d = q.conn_up(ms(2100), 3).expect("pending decision made");
        assert_eq!((d.heartbeating, d.connected, d.fence), (4, 4, false));
    }

    #[test]
    fn repeated_errors_do_not_restart_a_running_delay() {
        let mut q = settled(0, &[0, 1, 2]);
        q.conn_err(ms(0), 1);
        q.conn_err(ms(800), 1);
        assert_eq!(q.next_timer(), Some(DELAY));
        let d = q.tick(DELAY).unwrap();
        assert!(!d.fence);
    }
}
