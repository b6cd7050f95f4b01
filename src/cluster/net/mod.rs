//! o2net: node messaging over TCP, wire-compatible with the Linux kernel's `cluster/tcp.c`.
//!
//! - [`frame`]: the handshake and message header, and a stream [`frame::Decoder`]; pure, never
//!   panics on any bytes.
//! - [`core`]: the protocol as a state machine over `(now, event)` returning [`core::Action`]s:
//!   who connects to whom, the handshake, keepalive, idle and reconnect timers, which peers may
//!   connect. No sockets, so a simulator can drive it.
//! - [`driver`]: [`Net`], the core on real sockets: a listener thread, a reader thread per
//!   connection, a timer thread, synchronous sends that wait for the status reply.
//!
//! The rules kept, as the kernel keeps them:
//! - one connection per pair of nodes; the higher-numbered node connects, the lower accepts;
//! - connections are made only to and accepted only from peers that heartbeat says are live
//!   ([`Net::set_peer_live`]); an accepted peer is identified by its source IP alone;
//! - both sides send the 32-byte handshake first; protocol version 11 and the idle, keepalive
//!   and heartbeat timeouts must match or the connection is closed;
//! - a peer that breaks the framing (bad magic, payload over 4072 bytes) is disconnected with a
//!   logged reason; other connections are not affected.

pub mod core;
pub mod driver;
pub mod frame;

pub use self::core::{Action, CloseReason, ConnId, HandlerTable, Millis, NetCore, TxState};
pub use self::driver::{dial, Net};
pub use self::frame::{Handshake, HandshakeError, Magic, MsgHeader, SysStatus, O2NET_MAX_PAYLOAD_BYTES};

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The four o2net timeouts. All but the reconnect delay must be equal on every node, or the
/// handshake fails. Values are milliseconds, as they travel in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetTimeouts {
    /// Silence from a peer after which the connection is reported idle (O2CB_IDLE_TIMEOUT_MS).
    pub idle_timeout_ms: u32,
    /// Silence from a peer after which we send a keepalive request (O2CB_KEEPALIVE_DELAY_MS).
    pub keepalive_delay_ms: u32,
    /// Wait between connection attempts (O2CB_RECONNECT_DELAY_MS); not compared.
    pub reconnect_delay_ms: u32,
    /// What the handshake carries as `o2hb_heartbeat_timeout_ms`; the kernel sends and expects
    /// `O2HB_MAX_WRITE_TIMEOUT_MS` (60000), whatever its dead threshold.
    pub heartbeat_timeout_ms: u32,
}

impl Default for NetTimeouts {
    fn default() -> Self {
        NetTimeouts {
            idle_timeout_ms: 30_000,
            keepalive_delay_ms: 2_000,
            reconnect_delay_ms: 2_000,
            heartbeat_timeout_ms: frame::O2HB_MAX_WRITE_TIMEOUT_MS,
        }
    }
}

impl NetTimeouts {
    /// The rules of the kernel's configfs: all non-zero, keepalive shorter than idle.
    pub fn validate(&self) -> Result<(), NetError> {
        if self.idle_timeout_ms == 0 || self.keepalive_delay_ms == 0 || self.reconnect_delay_ms == 0 {
            return Err(NetError::Config("o2net timeouts must be greater than zero".into()));
        }
        if self.keepalive_delay_ms >= self.idle_timeout_ms {
            return Err(NetError::Config(format!(
                "the keepalive delay ({} ms) must be smaller than the idle timeout ({} ms)",
                self.keepalive_delay_ms, self.idle_timeout_ms
            )));
        }
        Ok(())
    }

    pub fn handshake(&self) -> Handshake {
        Handshake::ours(
            self.heartbeat_timeout_ms,
            self.idle_timeout_ms,
            self.keepalive_delay_ms,
            self.reconnect_delay_ms,
        )
    }
}

/// A node as o2net knows it: number, name (for log lines) and IPv4 address and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNode {
    pub num: u8,
    pub name: String,
    pub addr: SocketAddr,
}

impl NetNode {
    pub fn new(num: u8, name: impl Into<String>, addr: SocketAddr) -> NetNode {
        NetNode { num, name: name.into(), addr }
    }
}

/// What [`Net::start`] needs.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub local: NetNode,
    pub peers: Vec<NetNode>,
    pub timeouts: NetTimeouts,
    /// How long [`Net::send`] waits for a connection and then for the status reply. The kernel
    /// waits without limit; a library caller wants an answer.
    pub send_timeout: Duration,
}

impl NetConfig {
    /// A config with nodes named "nodeN" and default timeouts.
    pub fn new(local_num: u8, local_addr: SocketAddr, peers: Vec<(u8, SocketAddr)>) -> NetConfig {
        let timeouts = NetTimeouts::default();
        NetConfig {
            local: NetNode::new(local_num, format!("node{local_num}"), local_addr),
            peers: peers.into_iter().map(|(n, a)| NetNode::new(n, format!("node{n}"), a)).collect(),
            timeouts,
            send_timeout: Duration::from_millis(u64::from(timeouts.idle_timeout_ms)),
        }
    }

    pub fn with_timeouts(mut self, timeouts: NetTimeouts) -> NetConfig {
        self.timeouts = timeouts;
        self.send_timeout = Duration::from_millis(u64::from(timeouts.idle_timeout_ms));
        self
    }
}

/// What subscribers hear about peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// The handshake with the peer passed; messages can flow.
    Connected(u8),
    /// A connection that was up went away.
    Disconnected(u8, CloseReason),
    /// Nothing came from the peer for the idle timeout ("has been idle for N secs"); the
    /// connection stays open (Linux 6.1), and quorum code may start counting.
    Idle(u8),
    /// A message came from a peer that was reported idle.
    Resumed(u8),
    /// A connection was refused before it came up: unknown address, wrong direction, not
    /// heartbeating, a second connection, or a handshake that does not match.
    Rejected { node: Option<u8>, addr: SocketAddr, reason: CloseReason },
}

/// Why a send or a setup call failed. [`NetError::errno`] gives the kernel's errno for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// No usable connection: the peer is not heartbeating, or its connection was lost.
    NotConnected(u8),
    /// The connection died while waiting for the status reply (O2NET_ERR_DIED).
    NodeDied(u8),
    /// The peer has no handler for the (type, key) pair (O2NET_ERR_NO_HNDLR).
    NoHandler { msg_type: u16, key: u32 },
    /// The peer's handler takes less payload than was sent (O2NET_ERR_OVERFLOW).
    Overflow { msg_type: u16, key: u32 },
    /// No connection or no reply within the send timeout.
    Timeout(u8),
    /// Payload over [`O2NET_MAX_PAYLOAD_BYTES`].
    PayloadTooLarge(usize),
    /// A send to this node itself.
    SendToSelf,
    /// A node number not in the configuration.
    UnknownNode(u8),
    /// A handler is already registered for (type, key).
    HandlerExists { msg_type: u16, key: u32 },
    /// The node is stopped.
    Stopped,
    /// The peer broke the protocol in its reply.
    Protocol(String),
    /// Bad configuration (addresses, numbers, timeouts, handler arguments).
    Config(String),
    /// A socket error, with its errno when the OS gave one.
    Io { errno: i32, message: String },
}

impl NetError {
    /// The positive errno the kernel's o2net would return for this failure.
    pub fn errno(&self) -> i32 {
        match self {
            NetError::NotConnected(_) => libc::ENOTCONN,
            NetError::NodeDied(_) => SysStatus::Died.errno(),
            NetError::NoHandler { .. } => SysStatus::NoHandler.errno(),
            NetError::Overflow { .. } => SysStatus::Overflow.errno(),
            NetError::Timeout(_) => libc::ETIMEDOUT,
            NetError::PayloadTooLarge(_) => libc::EINVAL,
            NetError::SendToSelf => libc::ELOOP,
            NetError::UnknownNode(_) => libc::EINVAL,
            NetError::HandlerExists { .. } => libc::EEXIST,
            NetError::Stopped => libc::ESRCH,
            NetError::Protocol(_) => libc::EPROTO,
            NetError::Config(_) => libc::EINVAL,
            NetError::Io { errno, .. } => *errno,
        }
    }

    pub(crate) fn io(e: &std::io::Error) -> NetError {
        NetError::Io { errno: e.raw_os_error().unwrap_or(libc::EIO), message: e.to_string() }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::NotConnected(n) => write!(f, "not connected to node {n}"),
            NetError::NodeDied(n) => write!(f, "connection to node {n} died before it replied"),
            NetError::NoHandler { msg_type, key } => {
                write!(f, "peer has no handler for message type {msg_type} key {key:08x}")
            }
            NetError::Overflow { msg_type, key } => {
                write!(f, "payload too large for the peer's handler of type {msg_type} key {key:08x}")
            }
            NetError::Timeout(n) => write!(f, "no reply from node {n} within the send timeout"),
            NetError::PayloadTooLarge(n) => {
                write!(f, "payload of {n} bytes exceeds the maximum of {O2NET_MAX_PAYLOAD_BYTES}")
            }
            NetError::SendToSelf => write!(f, "cannot send a message to this node itself"),
            NetError::UnknownNode(n) => write!(f, "node {n} is not configured"),
            NetError::HandlerExists { msg_type, key } => {
                write!(f, "a handler for message type {msg_type} key {key:08x} is already registered")
            }
            NetError::Stopped => write!(f, "o2net is stopped"),
            NetError::Protocol(m) => write!(f, "protocol error: {m}"),
            NetError::Config(m) => write!(f, "o2net configuration: {m}"),
            NetError::Io { message, .. } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for NetError {}
