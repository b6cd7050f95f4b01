//! Membership: which nodes are in the cluster, from the disk heartbeat and the network
//! together, and self-fencing when this node must not go on (o2hb callbacks, o2net's heartbeat
//! hooks and o2quo, as the kernel wires them).
//!
//! - A peer is **up** ([`MemberEvent::NodeUp`]) while its heartbeat is live in some region and
//!   its o2net connection is up and not idle. o2net connects only to heartbeat-live peers: this
//!   module feeds heartbeat changes into [`Net::set_peer_live`](crate::cluster::net::Net::set_peer_live).
//! - A peer is **down** ([`MemberEvent::NodeDown`]) when its heartbeat dies in every region. Only
//!   then may the DLM and recovery treat it as gone: a peer that is merely unreachable
//!   ([`MemberEvent::Unreachable`]) may still write the disk, and the quorum rule decides which
//!   side of a split fences itself.
//! - **Fencing** (the library's reboot): on a quorum loss ([`crate::cluster::quorum`]) or a
//!   heartbeat write timeout, the [`FenceSwitch`](crate::cluster::heartbeat::FenceSwitch) is
//!   thrown first, so that every later write of this node to a shared device is refused, and
//!   only then the [`FenceAction`] runs: abort the process (the default), or a callback that
//!   must stop the application's I/O.
//!
//! [`MembershipCore`] is the pure state machine; [`Membership`] runs it on a thread.

mod core;
mod driver;

pub use self::core::{Action, MembershipCore};
pub use driver::Membership;

use crate::cluster::quorum::Decision;
use std::fmt;
use std::sync::Arc;

/// What subscribers hear about peers and about this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// The peer heartbeats and is connected: a member.
    NodeUp(u8),
    /// The peer's heartbeat died in every region (or we stopped watching it): it no longer
    /// writes the disk. This is the event recovery waits for. It comes for every peer that was
    /// heartbeat-live, also one that never connected.
    NodeDown(u8),
    /// A member's connection was lost or went idle while it still heartbeats. It is not a
    /// member until it connects again; if it stays unreachable, quorum decides which side of
    /// the split fences.
    Unreachable(u8),
    /// This node fenced itself; the fence switch was thrown before this was sent.
    Fenced(FenceReason),
}

/// Why this node fenced itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceReason {
    /// Connected to too few of the heartbeating nodes.
    Quorum(Decision),
    /// A heartbeat write did not complete in time, so peers may soon declare us dead.
    HeartbeatTimeout {
        region: String,
        /// Regions that missed their deadline, of all regions (global heartbeat counts them).
        failed: usize,
        regions: usize,
    },
}

impl fmt::Display for FenceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FenceReason::Quorum(d) => write!(f, "quorum lost: {d}"),
            FenceReason::HeartbeatTimeout { region, failed, regions } if *regions > 1 => {
                write!(f, "heartbeat write timeout on region {region} ({failed} of {regions} regions failed)")
            }
            FenceReason::HeartbeatTimeout { region, .. } => write!(f, "heartbeat write timeout on region {region}"),
        }
    }
}

/// A callback that must stop the application's I/O to the shared devices.
pub type FenceCallback = Arc<dyn Fn(&FenceReason) + Send + Sync>;

/// What happens after the fence switch is thrown.
#[derive(Clone, Default)]
pub enum FenceAction {
    /// Abort the process: the library's equivalent of the kernel's reboot. The default.
    #[default]
    Abort,
    /// Call this, on the membership thread; then the node's network is stopped. The callback
    /// must stop the application's use of the shared devices; writes are already refused.
    Callback(FenceCallback),
}

impl FenceAction {
    pub fn callback(f: impl Fn(&FenceReason) + Send + Sync + 'static) -> FenceAction {
        FenceAction::Callback(Arc::new(f))
    }
}

impl fmt::Debug for FenceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FenceAction::Abort => write!(f, "Abort"),
            FenceAction::Callback(_) => write!(f, "Callback(..)"),
        }
    }
}
