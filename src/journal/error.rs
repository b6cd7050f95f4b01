//! What journal operations fail with, and the errno a C caller sees for each.

use crate::device::DeviceError;
use crate::format::FormatError;
use std::fmt;

/// Every failure of the journal layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalError {
    /// The device failed a read, write or flush.
    Device(DeviceError),
    /// A journal block did not decode.
    Format(FormatError),
    /// The log contradicts itself or the volume (a tag pointing past the device, a revoke
    /// block larger than a block, a log longer than the journal).
    Corrupt(String),
    /// The journal uses a feature OCFS2 does not (checksums v2/v3, fast commits, unknown bits).
    Unsupported(String),
    /// The log holds transactions that must be replayed before anything is written.
    NeedsRecovery,
    /// A transaction needs more log blocks than the whole journal has.
    TooLarge { needed: u64, capacity: u64 },
    /// The caller passed something the journal cannot log.
    InvalidArgument(String),
    /// An earlier write failed; the journal refuses all work until it is opened again.
    Aborted(String),
}

/// Results of the journal layer.
pub type Result<T> = std::result::Result<T, JournalError>;

impl JournalError {
    /// The errno for C and FUSE callers (positive).
    pub fn errno(&self) -> i32 {
        match self {
            JournalError::Device(e) => e.errno(),
            JournalError::Format(_) | JournalError::Corrupt(_) => libc::EUCLEAN,
            JournalError::Unsupported(_) => libc::EOPNOTSUPP,
            JournalError::NeedsRecovery => libc::EAGAIN,
            // jbd2 refuses a handle larger than the log with ENOSPC.
            JournalError::TooLarge { .. } => libc::ENOSPC,
            JournalError::InvalidArgument(_) => libc::EINVAL,
            JournalError::Aborted(_) => libc::EIO,
        }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Device(e) => write!(f, "journal: {e}"),
            JournalError::Format(e) => write!(f, "journal: {e}"),
            JournalError::Corrupt(s) => write!(f, "journal is corrupt: {s}"),
            JournalError::Unsupported(s) => write!(f, "journal: unsupported: {s}"),
            JournalError::NeedsRecovery => write!(f, "journal holds transactions to replay first"),
            JournalError::TooLarge { needed, capacity } => {
                write!(f, "transaction needs {needed} log blocks, the journal has {capacity}")
            }
            JournalError::InvalidArgument(s) => write!(f, "journal: invalid argument: {s}"),
            JournalError::Aborted(s) => write!(f, "journal aborted after an earlier failure: {s}"),
        }
    }
}

impl std::error::Error for JournalError {}

impl From<DeviceError> for JournalError {
    fn from(e: DeviceError) -> Self {
        JournalError::Device(e)
    }
}

impl From<FormatError> for JournalError {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Unsupported { what, detail } => JournalError::Unsupported(format!("{what}: {detail}")),
            other => JournalError::Format(other),
        }
    }
}
