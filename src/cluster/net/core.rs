//! The o2net protocol without I/O: a state machine per node that takes `(now, event)` and
//! returns [`Action`]s for a driver (real sockets) or a simulator to carry out.
//!
//! It follows the kernel's `o2net_set_nn_state` model, one record per peer:
//! - `sc`: the one connection of the pair (connecting, handshaking or up), never two;
//! - `valid`: the handshake passed and messages may be sent;
//! - `persistent_error`: ENOTCONN while the peer is not heartbeating, or after a connection that
//!   was up went away or failed its handshake; sends fail at once while it is set;
//! - timers: `connect_at` (the next connection attempt, at most one reconnect delay after the
//!   previous one), `expire_at` (no connection within the idle timeout: log it and clear the
//!   error, which lets the connector try again), and per connection the keepalive and idle timers.
//!
//! Invariants: `valid` implies an `sc` in the Up phase; a set `persistent_error` implies no
//! `sc`; only the higher-numbered node of a pair ever emits [`Action::Connect`].

use super::frame::{Frame, Handshake, HandshakeError, Magic, MsgHeader, SysStatus, O2NET_MAX_PAYLOAD_BYTES};
use super::{NetError, NetEvent, NetNode, NetTimeouts};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// Milliseconds on the driver's monotonic clock (any origin).
pub type Millis = u64;
/// Names one connection for its whole life; never reused.
pub type ConnId = u64;

const ENOTCONN: i32 = libc::ENOTCONN;

/// Why a connection was closed or refused; carried by [`NetEvent`] and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its end.
    PeerClosed,
    /// A socket error.
    Io(String),
    /// The peer broke the framing (bad magic, oversized payload).
    Frame(super::frame::FrameError),
    /// The peer's handshake does not match ours.
    Handshake(HandshakeError),
    /// A status reply with a sys_status the protocol does not have.
    BadSysStatus(u32),
    /// Heartbeat says the peer is down.
    HeartbeatDown,
    /// No connection came up within the idle timeout.
    NoConnection,
    /// This node is stopping.
    Stopped,
    /// The TCP connection could not be made.
    ConnectFailed(String),
    /// An accepted connection from an address that is no configured node.
    UnknownAddress,
    /// An accepted connection from a node that should accept, not connect (lower number).
    WrongDirection,
    /// An accepted connection from a node heartbeat does not show as live.
    NotHeartbeating,
    /// An accepted connection from a node that already has one.
    AlreadyConnected,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => write!(f, "connection closed by peer"),
            CloseReason::Io(e) => write!(f, "socket error: {e}"),
            CloseReason::Frame(e) => write!(f, "framing error: {e}"),
            CloseReason::Handshake(e) => write!(f, "handshake refused: {e}"),
            CloseReason::BadSysStatus(v) => write!(f, "status reply with invalid sys_status {v}"),
            CloseReason::HeartbeatDown => write!(f, "node is no longer heartbeating"),
            CloseReason::NoConnection => write!(f, "no connection established within the idle timeout"),
            CloseReason::Stopped => write!(f, "o2net stopped"),
            CloseReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            CloseReason::UnknownAddress => write!(f, "connection from an unknown node"),
            CloseReason::WrongDirection => write!(f, "connection from a node that must accept, not connect"),
            CloseReason::NotHeartbeating => write!(f, "connection from a node that is not heartbeating"),
            CloseReason::AlreadyConnected => write!(f, "node already has an open connection"),
        }
    }
}

/// Something fixed-size the core wants written on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    Handshake(Handshake),
    Message(MsgHeader),
}

impl Outgoing {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Outgoing::Handshake(h) => h.to_bytes().to_vec(),
            Outgoing::Message(m) => m.to_bytes().to_vec(),
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection from our IP (any port) to the peer, then report
    /// [`NetCore::connected`] or [`NetCore::connect_failed`].
    Connect { conn: ConnId, node: u8, from: SocketAddr, to: SocketAddr },
    /// Write these bytes on the connection.
    Send { conn: ConnId, out: Outgoing },
    /// Shut the connection down; later events for it are ignored.
    Close { conn: ConnId },
    /// A request for the handler registered for (msg_type, key); the driver answers it with a
    /// status reply ([`MsgHeader::status_reply`]) on the same connection.
    Deliver { conn: ConnId, node: u8, header: MsgHeader, payload: Vec<u8> },
    /// The status reply to our message `msg_num` to `node`.
    Complete { node: u8, msg_num: u32, sys: SysStatus, status: i32 },
    /// Every send to `node` still waiting for a reply fails with O2NET_ERR_DIED.
    FailPending { node: u8 },
    /// Tell subscribers.
    Event(NetEvent),
}

/// Whether a message can be sent to a node now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxState {
    Ready(ConnId),
    /// A connection may still come up; wait.
    Pending,
    Failed(NetError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshaking,
    Up,
}

#[derive(Debug, Clone)]
struct Conn {
    id: ConnId,
    phase: Phase,
    remote: SocketAddr,
    keepalive_at: Option<Millis>,
    idle_at: Option<Millis>,
    /// When the idle timer was last pushed out (the kernel's `sc_tv_timer`).
    quiet_since: Millis,
}

#[derive(Debug, Clone)]
struct Peer {
    node: NetNode,
    live: bool,
    sc: Option<Conn>,
    valid: bool,
    persistent_error: i32,
    /// The idle timer fired on the current connection (the kernel's `nn_timeout`).
    timed_out: bool,
    last_connect_attempt: Option<Millis>,
    connect_at: Option<Millis>,
    expire_at: Option<Millis>,
}

enum ScChange {
    Keep,
    Detach,
    Attach(Conn),
}

/// `node NAME (num N) at IP:PORT`, the kernel's `SC_NODEF_FMT`.
fn nodef(n: &NetNode) -> String {
    format!("node {} (num {}) at {}", n.name, n.num, n.addr)
}

/// Milliseconds as the kernel prints them, `secs.millis` with the millis unpadded.
fn secs(ms: u64) -> String {
    format!("{}.{}", ms / 1000, ms % 1000)
}

/// One node's view of all its peers.
#[derive(Debug)]
pub struct NetCore {
    local: NetNode,
    timeouts: NetTimeouts,
    peers: BTreeMap<u8, Peer>,
    next_conn: ConnId,
    stopped: bool,
}

impl NetCore {
    /// Peers start as not heartbeating: nothing connects until [`NetCore::set_peer_live`].
    pub fn new(local: NetNode, peers: &[NetNode], timeouts: NetTimeouts) -> NetCore {
        let peers = peers
            .iter()
            .filter(|p| p.num != local.num)
            .map(|p| {
                let peer = Peer {
                    node: p.clone(),
                    live: false,
                    sc: None,
                    valid: false,
                    persistent_error: ENOTCONN,
                    timed_out: false,
                    last_connect_attempt: None,
                    connect_at: None,
                    expire_at: None,
                };
                (p.num, peer)
            })
            .collect();
        NetCore { local, timeouts, peers, next_conn: 1, stopped: false }
    }

    pub fn local(&self) -> &NetNode {
        &self.local
    }

    pub fn timeouts(&self) -> &NetTimeouts {
        &self.timeouts
    }

    /// Nodes whose connection passed the handshake, in number order.
    pub fn connected_nodes(&self) -> Vec<u8> {
        self.peers.values().filter(|p| p.valid).map(|p| p.node.num).collect()
    }

    pub fn is_live(&self, node: u8) -> bool {
        self.peers.get(&node).is_some_and(|p| p.live)
    }

    /// Nodes reported idle and not heard from since.
    pub fn idle_nodes(&self) -> Vec<u8> {
        self.peers.values().filter(|p| p.valid && p.timed_out).map(|p| p.node.num).collect()
    }

    /// The node a connection belongs to, while it is that node's connection.
    pub fn conn_node(&self, conn: ConnId) -> Option<u8> {
        self.peers.values().find(|p| p.sc.as_ref().is_some_and(|c| c.id == conn)).map(|p| p.node.num)
    }

    /// Whether a send to `node` can go now, must wait, or fails.
    pub fn tx(&self, node: u8) -> TxState {
        if node == self.local.num {
            return TxState::Failed(NetError::SendToSelf);
        }
        if self.stopped {
            return TxState::Failed(NetError::Stopped);
        }
        let Some(p) = self.peers.get(&node) else {
            return TxState::Failed(NetError::UnknownNode(node));
        };
        if p.persistent_error != 0 {
            TxState::Failed(NetError::NotConnected(node))
        } else if p.valid {
            match &p.sc {
                Some(c) => TxState::Ready(c.id),
                None => TxState::Pending,
            }
        } else {
            TxState::Pending
        }
    }

    /// The earliest timer, for the driver's sleep.
    pub fn next_timer(&self) -> Option<Millis> {
        let mut t: Option<Millis> = None;
        let mut take = |v: Option<Millis>| {
            if let Some(v) = v {
                t = Some(t.map_or(v, |cur| cur.min(v)));
            }
        };
        for p in self.peers.values() {
            take(p.connect_at);
            take(p.expire_at);
            if let Some(c) = &p.sc {
                take(c.keepalive_at);
                take(c.idle_at);
            }
        }
        t
    }

    fn idx_of_conn(&self, conn: ConnId) -> Option<u8> {
        self.conn_node(conn)
    }

    /// Heartbeat's word on a peer (`o2net_hb_node_up_cb` / `o2net_hb_node_down_cb`).
    pub fn set_peer_live(&mut self, now: Millis, node: u8, live: bool, out: &mut Vec<Action>) {
        if self.stopped {
            return;
        }
        let Some(p) = self.peers.get_mut(&node) else {
            log::warn!("o2net: heartbeat state for unconfigured node {node} ignored");
            return;
        };
        if p.live == live {
            return;
        }
        p.live = live;
        p.timed_out = false;
        if live {
            // An immediate attempt, whatever the last one was.
            p.last_connect_attempt = None;
            if p.persistent_error != 0 {
                self.set_state(now, node, ScChange::Detach, false, 0, &CloseReason::NoConnection, out);
            }
        } else {
            self.set_state(now, node, ScChange::Detach, false, ENOTCONN, &CloseReason::HeartbeatDown, out);
            let p = self.peers.get_mut(&node).expect("peer exists");
            p.connect_at = None;
            p.expire_at = None;
        }
    }

    /// `o2net_set_nn_state`: the one place where a peer's connection, validity and error change.
    #[allow(clippy::too_many_arguments)]
    fn set_state(
        &mut self,
        now: Millis,
        node: u8,
        change: ScChange,
        valid: bool,
        mut err: i32,
        reason: &CloseReason,
        out: &mut Vec<Action>,
    ) {
        let local_num = self.local.num;
        let t = self.timeouts;
        let p = self.peers.get_mut(&node).expect("set_state on a configured peer");
        let was_valid = p.valid;
        let old_sc = match change {
            ScChange::Keep => None,
            ScChange::Detach => p.sc.take(),
            ScChange::Attach(c) => {
                debug_assert!(p.sc.is_none(), "a second connection attached to node {node}");
                p.sc = Some(c);
                None
            }
        };
        debug_assert!(!(valid && p.sc.is_none()), "valid without a connection");
        if was_valid && !valid && err == 0 {
            err = ENOTCONN;
        }
        p.valid = valid;
        p.persistent_error = err;

        if was_valid && !valid {
            log::info!("o2net: No longer connected to {}", nodef(&p.node));
            out.push(Action::FailPending { node });
            out.push(Action::Event(NetEvent::Disconnected(node, reason.clone())));
        }
        if !was_valid && valid {
            p.expire_at = None;
            let how = if local_num > node { "Connected to" } else { "Accepted connection from" };
            log::info!("o2net: {how} {}", nodef(&p.node));
            out.push(Action::Event(NetEvent::Connected(node)));
        }
        if !valid {
            let reconnect = u64::from(t.reconnect_delay_ms);
            let mut delay = p.last_connect_attempt.map_or(0, |last| (last + reconnect).saturating_sub(now));
            if delay > reconnect {
                delay = 0;
            }
            if p.connect_at.is_none() {
                p.connect_at = Some(now + delay);
            }
            // Only the first of many failed attempts arms it; a connection cancels it.
            if p.expire_at.is_none() {
                p.expire_at = Some(now + delay + u64::from(t.idle_timeout_ms));
            }
        }
        if let Some(old) = old_sc {
            out.push(Action::Close { conn: old.id });
        }
    }

    /// Detaches `conn` from its peer if it is still the peer's connection.
    fn ensure_shutdown(&mut self, now: Millis, conn: ConnId, err: i32, reason: &CloseReason, out: &mut Vec<Action>) {
        if let Some(node) = self.idx_of_conn(conn) {
            self.set_state(now, node, ScChange::Detach, false, err, reason, out);
        } else {
            out.push(Action::Close { conn });
        }
    }

    /// `o2net_start_connect`: runs when `connect_at` comes due.
    fn start_connect(&mut self, now: Millis, node: u8, out: &mut Vec<Action>) {
        let local = self.local.clone();
        let p = self.peers.get_mut(&node).expect("peer exists");
        p.connect_at = None;
        if local.num <= node {
            return;
        }
        let stop = p.sc.is_some() || (p.persistent_error != 0 && (p.persistent_error != ENOTCONN || !p.timed_out));
        if stop {
            return;
        }
        p.last_connect_attempt = Some(now);
        let to = p.node.addr;
        let id = self.next_conn;
        self.next_conn += 1;
        let conn =
            Conn { id, phase: Phase::Connecting, remote: to, keepalive_at: None, idle_at: None, quiet_since: now };
        self.set_state(now, node, ScChange::Attach(conn), false, 0, &CloseReason::NoConnection, out);
        let from = SocketAddr::new(local.addr.ip(), 0);
        log::debug!("o2net: connecting to node {node} at {to}");
        out.push(Action::Connect { conn: id, node, from, to });
    }

    /// The TCP connection of an [`Action::Connect`] is established: send our handshake.
    pub fn connected(&mut self, _now: Millis, conn: ConnId, out: &mut Vec<Action>) {
        let hs = self.timeouts.handshake();
        let found = self.peers.values_mut().find_map(|p| p.sc.as_mut().filter(|c| c.id == conn));
        match found {
            Some(c) if c.phase == Phase::Connecting => {
                c.phase = Phase::Handshaking;
                out.push(Action::Send { conn, out: Outgoing::Handshake(hs) });
            }
            _ => out.push(Action::Close { conn }),
        }
    }

    /// The TCP connection of an [`Action::Connect`] failed; another attempt follows after the
    /// reconnect delay.
    pub fn connect_failed(&mut self, now: Millis, conn: ConnId, why: &str, out: &mut Vec<Action>) {
        if let Some(node) = self.idx_of_conn(conn) {
            let p = &self.peers[&node];
            log::debug!("o2net: Connect attempt to {} failed: {why}", nodef(&p.node));
            self.set_state(now, node, ScChange::Detach, false, 0, &CloseReason::ConnectFailed(why.into()), out);
        }
    }

    /// `o2net_accept_one`: a TCP connection arrived from `from`. Returns the new connection and
    /// the peer it belongs to, or `None` when it must be closed (the reason is logged and sent
    /// as [`NetEvent::Rejected`]).
    pub fn accept(&mut self, now: Millis, from: SocketAddr, out: &mut Vec<Action>) -> Option<(ConnId, u8)> {
        if self.stopped {
            return None;
        }
        let ip = from.ip();
        let reject = |node: Option<u8>, reason: CloseReason, out: &mut Vec<Action>| {
            out.push(Action::Event(NetEvent::Rejected { node, addr: from, reason }));
            None
        };
        if ip == self.local.addr.ip() {
            log::info!(
                "o2net: Unexpected connect attempt seen at node '{}' ({}, {}) from node '{}' ({}, {})",
                self.local.name,
                self.local.num,
                self.local.addr,
                self.local.name,
                self.local.num,
                from
            );
            return reject(Some(self.local.num), CloseReason::WrongDirection, out);
        }
        let Some(node) = self.peers.values().find(|p| p.node.addr.ip() == ip).map(|p| p.node.num) else {
            log::info!("o2net: Attempt to connect from unknown node at {from}");
            return reject(None, CloseReason::UnknownAddress, out);
        };
        let local = self.local.clone();
        let p = self.peers.get_mut(&node).expect("peer exists");
        if local.num >= node {
            log::info!(
                "o2net: Unexpected connect attempt seen at node '{}' ({}, {}) from node '{}' ({}, {})",
                local.name,
                local.num,
                local.addr,
                p.node.name,
                node,
                from
            );
            return reject(Some(node), CloseReason::WrongDirection, out);
        }
        if !p.live {
            log::debug!("o2net: attempt to connect from node '{}' at {from} but it isn't heartbeating", p.node.name);
            return reject(Some(node), CloseReason::NotHeartbeating, out);
        }
        if p.sc.is_some() {
            log::info!(
                "o2net: Attempt to connect from node '{}' at {from} but it already has an open connection",
                p.node.name
            );
            return reject(Some(node), CloseReason::AlreadyConnected, out);
        }
        p.timed_out = false;
        let id = self.next_conn;
        self.next_conn += 1;
        let conn =
            Conn { id, phase: Phase::Handshaking, remote: from, keepalive_at: None, idle_at: None, quiet_since: now };
        self.set_state(now, node, ScChange::Attach(conn), false, 0, &CloseReason::NoConnection, out);
        out.push(Action::Send { conn: id, out: Outgoing::Handshake(self.timeouts.handshake()) });
        Some((id, node))
    }

    /// `o2net_sc_reset_idle_timer`.
    fn reset_idle_timer(t: &NetTimeouts, c: &mut Conn, now: Millis) {
        c.keepalive_at = Some(now + u64::from(t.keepalive_delay_ms));
        c.idle_at = Some(now + u64::from(t.idle_timeout_ms));
        c.quiet_since = now;
    }

    /// A frame read from connection `conn`.
    pub fn frame(&mut self, now: Millis, conn: ConnId, frame: Frame, out: &mut Vec<Action>) {
        let Some(node) = self.idx_of_conn(conn) else {
            out.push(Action::Close { conn });
            return;
        };
        let t = self.timeouts;
        let ours = t.handshake();
        let p = self.peers.get_mut(&node).expect("peer exists");
        let c = p.sc.as_mut().expect("conn of peer");
        match (c.phase, frame) {
            (Phase::Handshaking, Frame::Handshake(h)) => match h.check(&ours) {
                Err(e) => {
                    log::warn!("o2net: {} {e}", nodef(&p.node));
                    let remote = c.remote;
                    out.push(Action::Event(NetEvent::Rejected {
                        node: Some(node),
                        addr: remote,
                        reason: CloseReason::Handshake(e.clone()),
                    }));
                    // Do not bother reconnecting to a node with the wrong protocol or timeouts.
                    self.ensure_shutdown(now, conn, ENOTCONN, &CloseReason::Handshake(e), out);
                }
                Ok(()) => {
                    c.phase = Phase::Up;
                    Self::reset_idle_timer(&t, c, now);
                    p.timed_out = false;
                    self.set_state(now, node, ScChange::Keep, true, 0, &CloseReason::NoConnection, out);
                }
            },
            (Phase::Up, Frame::Message(hdr, payload)) => {
                // o2net_sc_postpone_idle: anything from the peer proves it alive.
                if p.timed_out {
                    p.timed_out = false;
                    out.push(Action::Event(NetEvent::Resumed(node)));
                }
                Self::reset_idle_timer(&t, c, now);
                match hdr.magic {
                    Magic::Status => match SysStatus::from_wire(hdr.sys_status) {
                        Some(sys) => out.push(Action::Complete { node, msg_num: hdr.msg_num, sys, status: hdr.status }),
                        None => {
                            let reason = CloseReason::BadSysStatus(hdr.sys_status);
                            log::warn!("o2net: Connection to {} shutdown: {reason}", nodef(&p.node));
                            self.ensure_shutdown(now, conn, 0, &reason, out);
                        }
                    },
                    Magic::KeepaliveReq => out.push(Action::Send {
                        conn,
                        out: Outgoing::Message(MsgHeader::keepalive(Magic::KeepaliveResp)),
                    }),
                    Magic::KeepaliveResp => {}
                    Magic::Request => out.push(Action::Deliver { conn, node, header: hdr, payload }),
                }
            }
            (phase, frame) => {
                // A decoder yields the handshake first and only once; anything else is a bug in
                // the driver, handled like a broken stream rather than a panic.
                let reason = CloseReason::Io(format!("unexpected {frame:?} in phase {phase:?}"));
                self.ensure_shutdown(now, conn, 0, &reason, out);
            }
        }
    }

    /// The connection's stream ended: EOF, a socket error, or a framing error.
    pub fn stream_closed(&mut self, now: Millis, conn: ConnId, reason: CloseReason, out: &mut Vec<Action>) {
        let Some(node) = self.idx_of_conn(conn) else {
            return;
        };
        let p = &self.peers[&node];
        match &reason {
            CloseReason::Frame(_) | CloseReason::Io(_) => {
                log::warn!("o2net: Connection to {} shutdown: {reason}", nodef(&p.node))
            }
            _ => log::info!("o2net: Connection to {} shutdown: {reason}", nodef(&p.node)),
        }
        self.set_state(now, node, ScChange::Detach, false, 0, &reason, out);
    }

    /// A write on `conn` failed; the kernel shuts such a connection down.
    pub fn send_failed(&mut self, now: Millis, conn: ConnId, why: &str, out: &mut Vec<Action>) {
        self.stream_closed(now, conn, CloseReason::Io(format!("send failed: {why}")), out);
    }

    /// Runs every timer that is due at `now`.
    pub fn tick(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.stopped {
            return;
        }
        let t = self.timeouts;
        let nodes: Vec<u8> = self.peers.keys().copied().collect();
        for node in nodes {
            if self.peers[&node].expire_at.is_some_and(|at| at <= now) {
                let p = self.peers.get_mut(&node).expect("peer exists");
                p.expire_at = None;
                if !p.valid {
                    log::info!(
                        "o2net: No connection established with node {node} after {} seconds, check network and cluster configuration.",
                        secs(u64::from(t.idle_timeout_ms))
                    );
                    self.set_state(now, node, ScChange::Detach, false, 0, &CloseReason::NoConnection, out);
                }
            }
            // After the expiry, which may have just queued an attempt for now.
            if self.peers[&node].connect_at.is_some_and(|at| at <= now) {
                self.start_connect(now, node, out);
            }
            let p = self.peers.get_mut(&node).expect("peer exists");
            let Some(c) = p.sc.as_mut().filter(|c| c.phase == Phase::Up) else {
                continue;
            };
            if c.keepalive_at.is_some_and(|at| at <= now) {
                c.keepalive_at = None;
                out.push(Action::Send {
                    conn: c.id,
                    out: Outgoing::Message(MsgHeader::keepalive(Magic::KeepaliveReq)),
                });
            }
            if c.idle_at.is_some_and(|at| at <= now) {
                log::warn!(
                    "o2net: Connection to {} has been idle for {} secs.",
                    nodef(&p.node),
                    secs(now.saturating_sub(c.quiet_since))
                );
                // Linux 6.1 keeps the socket and lets quorum decide; so do we.
                p.timed_out = true;
                Self::reset_idle_timer(&t, c, now);
                out.push(Action::Event(NetEvent::Idle(node)));
            }
        }
    }

    /// Closes every connection and refuses new ones (`o2net_stop_listening`).
    pub fn stop(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.stopped {
            return;
        }
        let nodes: Vec<u8> = self.peers.keys().copied().collect();
        for node in nodes {
            self.set_state(now, node, ScChange::Detach, false, ENOTCONN, &CloseReason::Stopped, out);
            let p = self.peers.get_mut(&node).expect("peer exists");
            p.live = false;
            p.connect_at = None;
            p.expire_at = None;
        }
        self.stopped = true;
    }
}

/// Handlers keyed by (message type, key), each with the largest payload it takes, as
/// `o2net_register_handler` keeps them. Generic over the handler so that the driver stores
/// closures and a simulator whatever it likes.
#[derive(Debug)]
pub struct HandlerTable<H> {
    map: BTreeMap<(u16, u32), (u32, H)>,
}

impl<H> Default for HandlerTable<H> {
    fn default() -> Self {
        HandlerTable { map: BTreeMap::new() }
    }
}

impl<H> HandlerTable<H> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses type 0, a max_len above one page's payload, and a pair already registered.
    pub fn register(&mut self, msg_type: u16, key: u32, max_len: u32, handler: H) -> Result<(), NetError> {
        if msg_type == 0 {
            return Err(NetError::Config("no message type provided".into()));
        }
        if max_len as usize > O2NET_MAX_PAYLOAD_BYTES {
            return Err(NetError::Config(format!("max_len for message handler out of range: {max_len}")));
        }
        if self.map.contains_key(&(msg_type, key)) {
            return Err(NetError::HandlerExists { msg_type, key });
        }
        self.map.insert((msg_type, key), (max_len, handler));
        Ok(())
    }

    pub fn unregister(&mut self, msg_type: u16, key: u32) -> bool {
        self.map.remove(&(msg_type, key)).is_some()
    }

    /// The handler for a request, or the sys_status to reply with (`o2net_process_message`).
    pub fn lookup(&self, hdr: &MsgHeader) -> Result<&H, SysStatus> {
        match self.map.get(&(hdr.msg_type, hdr.key)) {
            None => Err(SysStatus::NoHandler),
            Some((max_len, _)) if u32::from(hdr.data_len) > *max_len => Err(SysStatus::Overflow),
            Some((_, h)) => Ok(h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::net::frame::O2NET_PROTOCOL_VERSION;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, i], 7777))
    }

    fn node(n: u8) -> NetNode {
        NetNode::new(n, format!("n{n}"), addr(n + 1))
    }

    fn timeouts() -> NetTimeouts {
        NetTimeouts {
            idle_timeout_ms: 600,
            keepalive_delay_ms: 100,
            reconnect_delay_ms: 200,
            heartbeat_timeout_ms: 60_000,
        }
    }

    fn core(local: u8, peers: &[u8]) -> NetCore {
        let peers: Vec<NetNode> = peers.iter().map(|&n| node(n)).collect();
        NetCore::new(node(local), &peers, timeouts())
    }

    fn take(out: &mut Vec<Action>) -> Vec<Action> {
        std::mem::take(out)
    }

    fn connects(a: &[Action]) -> Vec<(ConnId, u8)> {
        a.iter()
            .filter_map(|a| match a {
                Action::Connect { conn, node, .. } => Some((*conn, *node)),
                _ => None,
            })
            .collect()
    }

    fn events(a: &[Action]) -> Vec<NetEvent> {
        a.iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// Brings `c` (higher-numbered) up with `peer` through connect and handshake at `now`.
    fn bring_up(c: &mut NetCore, peer: u8, now: Millis) -> ConnId {
        let mut out = Vec::new();
        c.set_peer_live(now, peer, true, &mut out);
        c.tick(now, &mut out);
        let (conn, n) = connects(&take(&mut out))[0];
        assert_eq!(n, peer);
        c.connected(now, conn, &mut out);
        assert_eq!(take(&mut out), vec![Action::Send { conn, out: Outgoing::Handshake(timeouts().handshake()) }]);
        c.frame(now, conn, Frame::Handshake(timeouts().handshake()), &mut out);
        assert_eq!(events(&out), vec![NetEvent::Connected(peer)]);
        assert_eq!(c.tx(peer), TxState::Ready(conn));
        conn
    }

    #[test]
    fn only_the_higher_numbered_node_connects_and_only_to_live_peers() {
        let mut c = core(2, &[1, 3]);
        let mut out = Vec::new();
        c.tick(0, &mut out);
        assert!(out.is_empty(), "nothing before heartbeat says a peer is live");
        c.set_peer_live(0, 1, true, &mut out);
        c.set_peer_live(0, 3, true, &mut out);
        c.tick(0, &mut out);
        assert_eq!(connects(&out).iter().map(|c| c.1).collect::<Vec<_>>(), vec![1]);
        assert!(matches!(out.iter().find(|a| matches!(a, Action::Connect { .. })),
            Some(Action::Connect { from, to, .. }) if from.ip() == addr(3).ip() && from.port() == 0 && *to == addr(2)));
    }

    #[test]
    fn failed_connects_retry_every_reconnect_delay() {
        let mut c = core(2, &[1]);
        let mut out = Vec::new();
        c.set_peer_live(1000, 1, true, &mut out);
        c.tick(1000, &mut out);
        let (conn, _) = connects(&take(&mut out))[0];
        c.connect_failed(1010, conn, "refused", &mut out);
        assert!(matches!(take(&mut out).as_slice(), [Action::Close { conn: x }] if *x == conn));
        assert_eq!(c.next_timer(), Some(1200), "next attempt one reconnect delay after the last");
        c.tick(1199, &mut out);
        assert!(connects(&out).is_empty());
        c.tick(1200, &mut out);
        assert_eq!(connects(&take(&mut out)).len(), 1);
        assert_eq!(c.tx(1), TxState::Pending);
    }

    #[test]
    fn acceptor_refuses_unknown_lower_not_live_and_second_connections() {
        let mut c = core(1, &[0, 2]);
        let mut out = Vec::new();
        let stranger = SocketAddr::from(([127, 0, 0, 99], 4000));
        assert_eq!(c.accept(0, stranger, &mut out), None);
        assert!(matches!(
            &events(&take(&mut out))[..],
            [NetEvent::Rejected { node: None, reason: CloseReason::UnknownAddress, .. }]
        ));
        assert_eq!(c.accept(0, SocketAddr::from(([127, 0, 0, 1], 4000)), &mut out), None);
        assert!(matches!(
            &events(&take(&mut out))[..],
            [NetEvent::Rejected { node: Some(0), reason: CloseReason::WrongDirection, .. }]
        ));
        let from2 = SocketAddr::from(([127, 0, 0, 3], 4000));
        assert_eq!(c.accept(0, from2, &mut out), None);
        assert!(matches!(
            &events(&take(&mut out))[..],
            [NetEvent::Rejected { node: Some(2), reason: CloseReason::NotHeartbeating, .. }]
        ));
        c.set_peer_live(0, 2, true, &mut out);
        take(&mut out);
        let (conn, n) = c.accept(0, from2, &mut out).expect("accepted");
        assert_eq!(n, 2);
        assert_eq!(take(&mut out), vec![Action::Send { conn, out: Outgoing::Handshake(timeouts().handshake()) }]);
        assert_eq!(c.accept(1, from2, &mut out), None, "one connection per pair");
        assert!(matches!(
            &events(&take(&mut out))[..],
            [NetEvent::Rejected { reason: CloseReason::AlreadyConnected, .. }]
        ));
        c.frame(2, conn, Frame::Handshake(timeouts().handshake()), &mut out);
        assert_eq!(events(&out), vec![NetEvent::Connected(2)]);
        assert_eq!(c.connected_nodes(), vec![2]);
    }

    #[test]
    fn mismatched_handshake_closes_and_does_not_reconnect_at_once() {
        let mut c = core(2, &[1]);
        let mut out = Vec::new();
        c.set_peer_live(0, 1, true, &mut out);
        c.tick(0, &mut out);
        let (conn, _) = connects(&take(&mut out))[0];
        c.connected(0, conn, &mut out);
        take(&mut out);
        let mut theirs = timeouts().handshake();
        theirs.protocol_version = O2NET_PROTOCOL_VERSION - 1;
        c.frame(5, conn, Frame::Handshake(theirs), &mut out);
        let ev = events(&out);
        assert!(
            matches!(
                &ev[..],
                [NetEvent::Rejected {
                    node: Some(1),
                    reason: CloseReason::Handshake(HandshakeError::Version { theirs: 10 }),
                    ..
                }]
            ),
            "{ev:?}"
        );
        assert!(out.contains(&Action::Close { conn }));
        assert_eq!(c.tx(1), TxState::Failed(NetError::NotConnected(1)));
        take(&mut out);
        c.tick(300, &mut out);
        assert!(connects(&out).is_empty(), "no retry within the idle timeout");
    }

    #[test]
    fn keepalive_goes_out_after_the_delay_and_idle_is_reported_without_closing() {
        let mut c = core(2, &[1]);
        let conn = bring_up(&mut c, 1, 0);
        let mut out = Vec::new();
        c.tick(99, &mut out);
        assert!(out.is_empty());
        c.tick(100, &mut out);
        assert_eq!(
            take(&mut out),
            vec![Action::Send { conn, out: Outgoing::Message(MsgHeader::keepalive(Magic::KeepaliveReq)) }]
        );
        c.tick(500, &mut out);
        assert!(out.is_empty(), "one keepalive per silence, not one per tick");
        c.tick(600, &mut out);
        assert_eq!(events(&take(&mut out)), vec![NetEvent::Idle(1)]);
        assert_eq!(c.connected_nodes(), vec![1], "6.1 keeps an idle connection");
        assert_eq!(c.idle_nodes(), vec![1]);
        c.frame(650, conn, Frame::Message(MsgHeader::keepalive(Magic::KeepaliveResp), vec![]), &mut out);
        assert_eq!(events(&take(&mut out)), vec![NetEvent::Resumed(1)]);
        assert!(c.idle_nodes().is_empty());
        assert_eq!(c.next_timer(), Some(750));
    }

    #[test]
    fn a_reply_from_the_peer_postpones_keepalive_and_idle() {
        let mut c = core(2, &[1]);
        let conn = bring_up(&mut c, 1, 0);
        let mut out = Vec::new();
        c.frame(90, conn, Frame::Message(MsgHeader::keepalive(Magic::KeepaliveReq), vec![]), &mut out);
        assert_eq!(
            take(&mut out),
            vec![Action::Send { conn, out: Outgoing::Message(MsgHeader::keepalive(Magic::KeepaliveResp)) }]
        );
        c.tick(150, &mut out);
        assert!(out.is_empty());
        c.tick(190, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn requests_are_delivered_and_status_replies_complete_sends() {
        let mut c = core(2, &[1]);
        let conn = bring_up(&mut c, 1, 0);
        let mut out = Vec::new();
        let req = MsgHeader::request(500, 7, 2, 41);
        c.frame(1, conn, Frame::Message(req, vec![1, 2]), &mut out);
        assert_eq!(take(&mut out), vec![Action::Deliver { conn, node: 1, header: req, payload: vec![1, 2] }]);
        let st = MsgHeader::status_reply(&MsgHeader::request(500, 7, 0, 9), SysStatus::None, -5);
        c.frame(2, conn, Frame::Message(st, vec![]), &mut out);
        assert_eq!(take(&mut out), vec![Action::Complete { node: 1, msg_num: 9, sys: SysStatus::None, status: -5 }]);
        let mut bad = st;
        bad.sys_status = 77;
        c.frame(3, conn, Frame::Message(bad, vec![]), &mut out);
        assert!(out.contains(&Action::Close { conn }));
        assert!(out.contains(&Action::FailPending { node: 1 }));
    }

    #[test]
    fn a_lost_connection_fails_waiters_and_reconnects_after_the_idle_timeout() {
        let mut c = core(2, &[1]);
        let conn = bring_up(&mut c, 1, 1000);
        let mut out = Vec::new();
        c.stream_closed(1100, conn, CloseReason::PeerClosed, &mut out);
        assert!(out.contains(&Action::FailPending { node: 1 }));
        assert_eq!(events(&take(&mut out)), vec![NetEvent::Disconnected(1, CloseReason::PeerClosed)]);
        assert_eq!(c.tx(1), TxState::Failed(NetError::NotConnected(1)));
        // The kernel does not retry at once after losing an established connection...
        c.tick(1300, &mut out);
        assert!(connects(&take(&mut out)).is_empty());
        // ...but once the connect-expired timer (reconnect delay left + idle timeout) runs out.
        c.tick(1799, &mut out);
        assert!(connects(&take(&mut out)).is_empty());
        c.tick(1800, &mut out);
        assert_eq!(connects(&take(&mut out)).len(), 1);
        assert_eq!(c.tx(1), TxState::Pending);
    }

    #[test]
    fn heartbeat_down_disconnects_and_up_reconnects_immediately() {
        let mut c = core(2, &[1]);
        bring_up(&mut c, 1, 0);
        let mut out = Vec::new();
        c.set_peer_live(10, 1, false, &mut out);
        assert_eq!(events(&take(&mut out)), vec![NetEvent::Disconnected(1, CloseReason::HeartbeatDown)]);
        assert_eq!(c.next_timer(), None, "nothing scheduled for a dead node");
        c.set_peer_live(20, 1, true, &mut out);
        c.tick(20, &mut out);
        assert_eq!(connects(&out).len(), 1);
    }

    #[test]
    fn acceptor_logs_and_rearms_when_no_connection_comes() {
        let mut c = core(1, &[2]);
        let mut out = Vec::new();
        c.set_peer_live(0, 2, true, &mut out);
        c.tick(0, &mut out);
        assert!(connects(&out).is_empty());
        assert_eq!(c.next_timer(), Some(600));
        c.tick(600, &mut out);
        assert_eq!(c.next_timer(), Some(1200), "connect-expired is armed again");
    }

    #[test]
    fn stop_disconnects_everyone_and_refuses_new_work() {
        let mut c = core(3, &[1, 2]);
        bring_up(&mut c, 1, 0);
        bring_up(&mut c, 2, 0);
        let mut out = Vec::new();
        c.stop(5, &mut out);
        assert_eq!(
            events(&out),
            vec![NetEvent::Disconnected(1, CloseReason::Stopped), NetEvent::Disconnected(2, CloseReason::Stopped)]
        );
        assert_eq!(c.tx(1), TxState::Failed(NetError::Stopped));
        assert_eq!(c.next_timer(), None);
        assert_eq!(c.accept(6, addr(3), &mut out), None);
    }

    #[test]
    fn handler_table_answers_no_handler_and_overflow() {
        let mut t = HandlerTable::new();
        t.register(500, 1, 10, "h").unwrap();
        assert_eq!(t.register(500, 1, 10, "again"), Err(NetError::HandlerExists { msg_type: 500, key: 1 }));
        assert!(t.register(0, 1, 10, "x").is_err());
        assert!(t.register(501, 1, 4073, "x").is_err());
        assert_eq!(t.lookup(&MsgHeader::request(500, 1, 10, 0)), Ok(&"h"));
        assert_eq!(t.lookup(&MsgHeader::request(500, 1, 11, 0)), Err(SysStatus::Overflow));
        assert_eq!(t.lookup(&MsgHeader::request(500, 2, 0, 0)), Err(SysStatus::NoHandler));
        assert!(t.unregister(500, 1));
        assert_eq!(t.lookup(&MsgHeader::request(500, 1, 0, 0)), Err(SysStatus::NoHandler));
    }
}
