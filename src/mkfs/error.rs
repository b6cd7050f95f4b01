//! Why a format was refused or failed.

use crate::device::DeviceError;
use crate::format::FormatError;
use std::fmt;

/// Everything that can stop [`mkfs`](super::mkfs). Refusals come before the first write; only
/// `Device` (and `Format`, which would be a bug) can happen after writing started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MkfsError {
    /// An option has a value mkfs.ocfs2 would not accept.
    InvalidOption(String),
    /// The device already holds an OCFS2 volume and `force` was not set.
    ExistingVolume { label: String, uuid: String, block_size: u32 },
    /// The device (or the requested block count) cannot hold the volume asked for.
    TooSmall(String),
    /// The volume would be larger than the format (or this configuration) allows.
    TooLarge(String),
    /// A feature or mode this implementation does not write yet.
    Unsupported(String),
    /// The device failed a read or write.
    Device(DeviceError),
    /// A structure could not be encoded (an internal error).
    Format(FormatError),
}

impl MkfsError {
    /// The errno a C caller should see.
    pub fn errno(&self) -> i32 {
        match self {
            MkfsError::InvalidOption(_) => libc::EINVAL,
            MkfsError::ExistingVolume { .. } => libc::EEXIST,
            MkfsError::TooSmall(_) => libc::ENOSPC,
            MkfsError::TooLarge(_) => libc::EFBIG,
            MkfsError::Unsupported(_) => libc::EOPNOTSUPP,
            MkfsError::Device(e) => e.errno(),
            MkfsError::Format(_) => libc::EIO,
        }
    }
}

impl fmt::Display for MkfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MkfsError::InvalidOption(m) => write!(f, "invalid option: {m}"),
            MkfsError::ExistingVolume { label, uuid, block_size } => write!(
                f,
                "the device already holds an OCFS2 volume (label \"{label}\", UUID {uuid}, \
                 block size {block_size}); it could be mounted on another node. \
                 Use --force (-F) to overwrite it"
            ),
            MkfsError::TooSmall(m) => write!(f, "device too small: {m}"),
            MkfsError::TooLarge(m) => write!(f, "volume too large: {m}"),
            MkfsError::Unsupported(m) => write!(f, "not supported: {m}"),
            MkfsError::Device(e) => write!(f, "{e}"),
            MkfsError::Format(e) => write!(f, "internal error while encoding: {e}"),
        }
    }
}

impl std::error::Error for MkfsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MkfsError::Device(e) => Some(e),
            MkfsError::Format(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DeviceError> for MkfsError {
    fn from(e: DeviceError) -> Self {
        MkfsError::Device(e)
    }
}

impl From<FormatError> for MkfsError {
    fn from(e: FormatError) -> Self {
        MkfsError::Format(e)
    }
}
