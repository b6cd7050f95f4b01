//! OCFS2, the Oracle Cluster File System, as an embeddable library.
//!
//! The layers, top to bottom: `fs` (the filesystem behind the public [`Volume`]), `mkfs`
//! (formatting), `format` (pure encode/decode of every on-disk structure) and `device` (block I/O).
//! Calls only go down: `format` does no I/O and `device` knows nothing of OCFS2.
#![deny(unsafe_code)]

pub mod cluster;
pub mod device;
pub mod dlm;
pub mod format;
pub mod fs;
pub mod journal;
pub mod mkfs;
#[doc(hidden)]
pub mod testing;

pub use cluster::membership::{FenceAction, FenceReason, MemberEvent};
pub use cluster::stack::{Cluster, ClusterError, ClusterOptions, ClusterStatus};
pub use device::{BlockDevice, DeviceError, FaultDevice, FileDevice, MemDevice};
pub use fs::{
    Dir, DirEntry, Error, File, FileType, Metadata, MountOptions, OpenOptions, SetAttr, StatFs, Timestamp, Volume,
    VolumeInfo,
};
