//! Pure encode/decode of every OCFS2 on-disk structure. No I/O happens here.
//!
//! Conventions kept by every structure in this module:
//! - a plain struct whose fields carry the kernel's field names (`ocfs2_fs.h`), all public;
//! - `decode(buf) -> Result<Self, FormatError>` checks the length, the signature and every
//!   count and offset it relies on, so that no input can make it panic;
//! - `encode(&self, buf)` fills the structure's bytes in `buf` (a whole block where the structure
//!   is a block) and leaves metaecc to [`blockcheck`], which the caller applies last;
//! - offsets are little-endian and written as hex constants from the kernel header; JBD2 and
//!   the heartbeat are the exceptions and say so.

pub mod bytes;
pub mod checksum;
pub mod constants;

// The inode family and metaecc (fmtcore).
pub mod blockcheck;
pub mod chain;
pub mod dinode;
pub mod extent;
pub mod group;
pub mod inline;
pub mod superblock;

// On-disk structures besides the inode family (fmtrest).
pub mod dir;
pub mod dir_trailer;
pub mod dx;
pub mod heartbeat;
pub mod jbd2;
pub mod local_alloc;
pub mod slot_map;
pub mod truncate_log;

#[cfg(test)]
pub(crate) mod testutil;

pub use blockcheck::{BlockCheck, BlockCheckOutcome};
pub use chain::{ChainList, ChainRec};
pub use constants::*;
pub use dinode::{Dinode, DINODE_ID2_OFFSET};
pub use dir::{dir_rec_len, DirEntry};
pub use dir_trailer::DirBlockTrailer;
pub use dx::{DxEntry, DxEntryList, DxLeaf, DxRootBlock, DxRootBody};
pub use extent::{ExtentBlock, ExtentList, ExtentRec};
pub use group::GroupDesc;
pub use heartbeat::HeartbeatBlock;
pub use inline::InlineData;
pub use jbd2::{CommitHeader, DescriptorBlock, JournalHeader, JournalSuperblock, RevokeBlock};
pub use local_alloc::LocalAlloc;
pub use slot_map::SlotMap;
pub use superblock::{ClusterInfo, SuperBlock};
pub use truncate_log::TruncateLog;

use std::fmt;

/// Why a structure could not be decoded, or a value not encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The buffer is smaller than the structure.
    TooShort { what: &'static str, need: usize, got: usize },
    /// The signature (magic) is not the one the structure must carry.
    BadSignature { what: &'static str, found: Vec<u8> },
    /// The metaecc check failed and the error could not be corrected.
    Checksum { what: &'static str, stored: u32, computed: u32 },
    /// A field holds a value the format does not allow.
    Corrupt { what: &'static str, detail: String },
    /// A feature or version this implementation does not handle.
    Unsupported { what: &'static str, detail: String },
}

impl FormatError {
    pub fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        FormatError::Corrupt { what, detail: detail.into() }
    }

    /// Fails with `TooShort` unless `buf` holds at least `need` bytes.
    pub fn need(what: &'static str, buf: &[u8], need: usize) -> Result<()> {
        if buf.len() < need {
            Err(FormatError::TooShort { what, need, got: buf.len() })
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::TooShort { what, need, got } => {
                write!(f, "{what}: needs {need} bytes, the buffer has {got}")
            }
            FormatError::BadSignature { what, found } => {
                write!(f, "{what}: bad signature {:?}", String::from_utf8_lossy(found))
            }
            FormatError::Checksum { what, stored, computed } => write!(
                f,
                "{what}: metaecc check failed (stored crc32 {stored:#010x}, computed {computed:#010x}) and the error is not correctable"
            ),
            FormatError::Corrupt { what, detail } => write!(f, "{what}: {detail}"),
            FormatError::Unsupported { what, detail } => write!(f, "{what}: unsupported: {detail}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// Result of decoding.
pub type Result<T> = std::result::Result<T, FormatError>;
