//! The o2cb cluster stack as library code: configuration (o2nm), disk heartbeat (o2hb), node
//! messaging (o2net), membership and quorum (o2quo) with fencing.
//!
//! Each protocol has a core that is a pure state machine over `(now, event)` returning actions,
//! and a thin driver that does the disk and socket work on threads, so that the same cores run
//! in the deterministic simulator of the tests.

pub mod config;
pub mod heartbeat;
pub mod membership;
pub mod net;
pub mod quorum;
pub mod stack;
pub mod timeouts;
