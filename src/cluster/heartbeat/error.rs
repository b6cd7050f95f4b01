//! Why a heartbeat could not start or go on.

use super::protocol::ClashInfo;
use crate::device::DeviceError;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatError {
    /// The region, node number or timing cannot work.
    Config(String),
    /// The device failed while the heartbeat started.
    Device(DeviceError),
    /// Another writer uses our slot: a node-number clash, or two regions on one area.
    Clash(ClashInfo),
    /// The region did not settle within the iterations o2hb allows ("Unable to stabilize").
    Unstable,
    /// A heartbeat read or write did not complete while starting.
    Hung,
    /// This node fenced itself; it must not write to the shared device again.
    Fenced,
    /// The heartbeat thread could not be started or died.
    Thread(String),
}

impl fmt::Display for HeartbeatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeartbeatError::Config(why) => write!(f, "invalid heartbeat configuration: {why}"),
            HeartbeatError::Device(e) => write!(f, "heartbeat I/O failed: {e}"),
            HeartbeatError::Clash(info) => write!(f, "heartbeat start aborted: {info}"),
            HeartbeatError::Unstable => write!(f, "unable to stabilize the heartbeat on the region"),
            HeartbeatError::Hung => write!(f, "heartbeat I/O did not complete while starting"),
            HeartbeatError::Fenced => write!(f, "this node has fenced itself"),
            HeartbeatError::Thread(why) => write!(f, "heartbeat thread failed: {why}"),
        }
    }
}

impl std::error::Error for HeartbeatError {}
