//! Block devices: the one narrow door through which every byte of a volume passes.
//!
//! Invariants: a `BlockDevice` transfers whole buffers or fails; it never returns a short read
//! or write. Offsets and lengths are in bytes and need no alignment from the caller: devices
//! that need alignment (O_DIRECT) take care of it inside.
#![allow(unsafe_code)]

mod fault;
mod file;
mod mem;
mod nbd;
mod open;

pub use fault::{FaultDevice, FaultKind, FaultPlan};
pub use file::{FileDevice, FileDeviceOptions};
pub use mem::MemDevice;
pub use nbd::{NbdAddress, NbdDevice, NbdExport, NbdNegotiation, NbdOptions, NbdStats, NBD_DEFAULT_PORT};
pub use open::{is_nbd_url, open_device, open_device_with};

use std::fmt;

/// An I/O failure of the device, with the errno the operating system (or a fault plan) gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// The operating system failed the call.
    Io { op: &'static str, offset: u64, len: usize, errno: i32 },
    /// The request reaches past the end of the device.
    OutOfRange { offset: u64, len: usize, size: u64 },
    /// The device was opened read-only.
    ReadOnly,
}

impl DeviceError {
    /// The errno a C caller should see for this failure.
    pub fn errno(&self) -> i32 {
        match self {
            DeviceError::Io { errno, .. } => *errno,
            DeviceError::OutOfRange { .. } => libc::EIO,
            DeviceError::ReadOnly => libc::EROFS,
        }
    }

    pub(crate) fn from_io(op: &'static str, offset: u64, len: usize, e: std::io::Error) -> Self {
        DeviceError::Io { op, offset, len, errno: e.raw_os_error().unwrap_or(libc::EIO) }
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Io { op, offset, len, errno } => write!(
                f,
                "device {op} of {len} bytes at offset {offset} failed: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
            DeviceError::OutOfRange { offset, len, size } => write!(
                f,
                "device access of {len} bytes at offset {offset} is beyond the end of the device ({size} bytes)"
            ),
            DeviceError::ReadOnly => write!(f, "the device is open read-only"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// Random-access storage holding one OCFS2 volume.
pub trait BlockDevice: Send + Sync {
    /// Fills `buf` from byte `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError>;
    /// Writes all of `buf` at byte `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError>;
    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), DeviceError>;
    /// Size of the device in bytes.
    fn len(&self) -> u64;
    /// Logical sector size: the unit of atomic writes and of the o2hb heartbeat slots.
    fn sector_size(&self) -> u32;
    /// True when the device has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for std::sync::Arc<T> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        (**self).write_at(offset, buf)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        (**self).flush()
    }
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn sector_size(&self) -> u32 {
        (**self).sector_size()
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for Box<T> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        (**self).write_at(offset, buf)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        (**self).flush()
    }
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn sector_size(&self) -> u32 {
        (**self).sector_size()
    }
}

/// Checks that `[offset, offset + len)` lies inside a device of `size` bytes.
pub(crate) fn check_range(offset: u64, len: usize, size: u64) -> Result<(), DeviceError> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DeviceError::OutOfRange { offset, len, size }),
    }
}

#[cfg(test)]
mod tests;
