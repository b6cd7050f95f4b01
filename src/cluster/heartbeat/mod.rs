//! o2hb, the disk heartbeat (kernel `fs/ocfs2/cluster/heartbeat.c`).
//!
//! Every node owns one sector of a heartbeat region (the volume's `heartbeat` system file, or
//! a global heartbeat device) and rewrites it every interval with a new sequence number; every
//! node reads all the slots each interval. A peer whose sequence moves twice is live; one
//! whose sequence stands still for `dead_threshold` reads, or whose generation changes, is
//! dead. A node whose own write does not complete within `interval × (threshold − 1)` fences
//! itself, which happens before any peer can call it dead.
//!
//! - [`HeartbeatCore`]: the rules as a pure state machine over `(now, event)`.
//! - [`Heartbeat`]: a thread that runs the core on a [`BlockDevice`](crate::device::BlockDevice)
//!   and publishes [`HeartbeatEvent`]s.
//! - [`FenceSwitch`] and [`FencedDevice`]: how a fence stops every write of this node.
//! - [`Clock`]: injectable time, so the core runs in simulations.

mod clock;
mod driver;
mod error;
mod fence;
mod nodemap;
mod protocol;

pub use clock::{Clock, ManualClock, Now, SystemClock};
pub use driver::{Heartbeat, HeartbeatEvent, HeartbeatStats, HeartbeatStatus};
pub use error::HeartbeatError;
pub use fence::{FenceSwitch, FencedDevice};
pub use nodemap::NodeMap;
pub use protocol::{
    AbortReason, Action, ClashInfo, ClashKind, End, HeartbeatConfig, HeartbeatCore, HeartbeatRegion,
    O2HB_DEFAULT_DEAD_THRESHOLD, O2HB_LIVE_THRESHOLD, O2HB_MIN_DEAD_THRESHOLD, O2HB_REGION_TIMEOUT,
};
