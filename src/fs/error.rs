//! The public error of the filesystem layer, with the errno a C or FUSE caller sees.

use crate::device::DeviceError;
use crate::format::FormatError;
use crate::journal::JournalError;
use std::fmt;

/// Everything a volume operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The device failed.
    Io(DeviceError),
    /// A structure on disk is damaged; `block` says where.
    Corrupt { block: u64, reason: String },
    /// The volume uses a feature or state this library cannot handle.
    Unsupported(String),
    /// The device holds no OCFS2 volume.
    NotOcfs2(String),
    /// No entry of that name.
    NotFound(String),
    /// A path component is not a directory.
    NotDir(String),
    /// A directory was given where something else is needed.
    IsDir(String),
    /// The operation needs a different kind of file (for example, reading the target of a
    /// regular file).
    InvalidArgument(String),
    /// A name is longer than 255 bytes.
    NameTooLong(usize),
    /// Too many levels of symbolic links.
    Loop(String),
    /// The volume is open read-only.
    ReadOnly,
    /// No space left for the allocation.
    NoSpace(String),
    /// The name exists already.
    Exists(String),
    /// The directory is not empty.
    NotEmpty(String),
    /// An offset or size beyond the largest file the volume can hold.
    FileTooLarge(String),
    /// A directory has as many links as the format allows.
    TooManyLinks(String),
    /// The operation is not permitted on this kind of file (a hard link to a directory).
    NotPermitted(String),
    /// The handle does not allow the operation (reading a file opened only for writing).
    BadHandle(String),
    /// Something else holds what the operation needs (a slot, a volume in use by others).
    Busy(String),
    /// The journal failed (other than by a device error, which is [`Error::Io`]).
    Journal(JournalError),
    /// An earlier write of journal or metadata failed: the volume refuses every write until it
    /// is opened again, since what is on disk may no longer match what this node believes.
    Stopped(String),
}

/// Results of the filesystem layer.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The errno for C and FUSE callers (positive).
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io(e) => e.errno(),
            Error::Corrupt { .. } => libc::EUCLEAN,
            Error::Unsupported(_) => libc::EOPNOTSUPP,
            Error::NotOcfs2(_) => libc::EINVAL,
            Error::NotFound(_) => libc::ENOENT,
            Error::NotDir(_) => libc::ENOTDIR,
            Error::IsDir(_) => libc::EISDIR,
            Error::FileTooLarge(_) => libc::EFBIG,
            Error::InvalidArgument(_) => libc::EINVAL,
            Error::NameTooLong(_) => libc::ENAMETOOLONG,
            Error::Loop(_) => libc::ELOOP,
            Error::ReadOnly => libc::EROFS,
            Error::NoSpace(_) => libc::ENOSPC,
            Error::Exists(_) => libc::EEXIST,
            Error::NotEmpty(_) => libc::ENOTEMPTY,
            Error::Busy(_) => libc::EBUSY,
            Error::BadHandle(_) => libc::EBADF,
            Error::TooManyLinks(_) => libc::EMLINK,
            Error::NotPermitted(_) => libc::EPERM,
            Error::Journal(e) => e.errno(),
            Error::Stopped(_) => libc::EIO,
        }
    }

    /// A corruption found while decoding the structure at `block`.
    pub(crate) fn format(block: u64, e: FormatError) -> Self {
        Error::Corrupt { block, reason: e.to_string() }
    }

    pub(crate) fn corrupt(block: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt { block, reason: reason.into() }
    }
}

impl From<DeviceError> for Error {
    fn from(e: DeviceError) -> Self {
        Error::Io(e)
    }
}

impl From<JournalError> for Error {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Device(d) => Error::Io(d),
            other => Error::Journal(other),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Corrupt { block, reason } => write!(f, "corrupt metadata in block {block}: {reason}"),
            Error::Unsupported(what) => write!(f, "unsupported: {what}"),
            Error::NotOcfs2(why) => write!(f, "not an OCFS2 volume: {why}"),
            Error::NotFound(name) => write!(f, "{name}: no such file or directory"),
            Error::NotDir(name) => write!(f, "{name}: not a directory"),
            Error::IsDir(name) => write!(f, "{name}: is a directory"),
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::NameTooLong(len) => write!(f, "name of {len} bytes is longer than 255 bytes"),
            Error::Loop(path) => write!(f, "{path}: too many levels of symbolic links"),
            Error::ReadOnly => write!(f, "the volume is open read-only"),
            Error::NoSpace(what) => write!(f, "no space left on the volume: {what}"),
            Error::Exists(name) => write!(f, "{name}: exists already"),
            Error::NotEmpty(name) => write!(f, "{name}: directory not empty"),
            Error::FileTooLarge(what) => write!(f, "{what}: file too large"),
            Error::Busy(what) => write!(f, "busy: {what}"),
            Error::BadHandle(why) => write!(f, "bad file handle: {why}"),
            Error::TooManyLinks(what) => write!(f, "{what}: too many links"),
            Error::NotPermitted(what) => write!(f, "{what}: operation not permitted"),
            Error::Journal(e) => write!(f, "{e}"),
            Error::Stopped(why) => write!(f, "the volume stopped writing after an earlier failure: {why}"),
        }
    }
}

impl std::error::Error for Error {}
