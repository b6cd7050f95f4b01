//! The filesystem behind the public [`Volume`]: opening a volume and reading it.
//!
//! Every access to an inode's metadata goes through its [`inode::Inode`] object and the lock
//! layer ([`lock`]), so that cluster locks slot in under the same operations later.

mod dir;
mod dx;
mod error;
mod extent_map;
mod file;
mod heartbeat_area;
mod inode;
pub mod lock;
mod meta;
mod namei;
mod statfs;
mod symlink;
mod volume;

pub use dir::DirEntry;
pub use error::{Error, Result};
pub use heartbeat_area::HeartbeatArea;
pub use inode::{FileType, Metadata, Timestamp};
pub use statfs::StatFs;
pub use symlink::MAX_SYMLINK_LEN;
pub use volume::{Geometry, OpenOptions, Volume, VolumeInfo};
