//! The filesystem behind the public [`Volume`]: opening a volume, reading it, and writing it.
//!
//! Every access to an inode's metadata goes through its `Inode` object and the lock
//! layer ([`lock`]), so that cluster locks slot in under the same operations later.
//!
//! Writing: a writable open takes a slot and its journal (`mount`); every change is a
//! transaction (`tx`) whose blocks are logged in that journal before readers see them;
//! allocation (`alloc`) and directory changes (`dirwrite`, `namespace`) happen inside
//! transactions only.

mod alloc;
mod dir;
mod dirwrite;
mod dx;
mod dxwrite;
mod error;
mod extent_map;
mod extent_tree;
mod file;
mod handle;
mod heartbeat_area;
mod inode;
mod link;
pub mod lock;
mod meta;
mod mknod;
mod mount;
mod namei;
mod namespace;
mod orphan;
mod rename;
mod setattr;
mod statfs;
mod symlink;
#[cfg(test)]
mod testkit;
mod tx;
mod volume;
mod write;

pub use dir::DirEntry;
pub use error::{Error, Result};
pub use handle::{Dir, File, OpenOptions};
pub use heartbeat_area::HeartbeatArea;
pub use inode::{FileType, Metadata, Timestamp};
pub use mknod::{dev_major, dev_makedev, dev_minor};
pub use namespace::Owner;
pub use orphan::OpenInode;
pub use setattr::SetAttr;
pub use statfs::StatFs;
pub use symlink::MAX_SYMLINK_LEN;
pub use volume::{Geometry, MountOptions, Volume, VolumeInfo};
