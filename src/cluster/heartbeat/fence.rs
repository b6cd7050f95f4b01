//! Self-fencing: the one switch that stops every write of this node to the shared device.
//!
//! The kernel fences by rebooting the machine. A library cannot do that, so the heartbeat (or
//! quorum) throws a [`FenceSwitch`] and every write path to the shared device goes through a
//! [`FencedDevice`] that refuses writes once the switch is thrown. "No write from a fenced node
//! reaches the image" is then enforced in this one place.
//!
//! Invariant: every `write_at`/`flush` that starts after [`FenceSwitch::throw`] returned is
//! refused. A write that had already passed the check may still complete, as a bio already
//! submitted completes after a kernel node reboots; put the `FencedDevice` closest to the media
//! (innermost), so that a write stalled anywhere above it is checked after the stall.

use crate::device::{BlockDevice, DeviceError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared, one-way switch: once thrown it stays thrown.
#[derive(Debug, Clone, Default)]
pub struct FenceSwitch(Arc<AtomicBool>);

impl FenceSwitch {
    pub fn new() -> Self {
        FenceSwitch::default()
    }

    /// Fences this node: from now on no write may reach the shared device.
    pub fn throw(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_thrown(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A device that refuses every write once its switch is thrown. Reads still work, so a fenced
/// node can still be inspected.
pub struct FencedDevice<D: BlockDevice> {
    inner: D,
    switch: FenceSwitch,
    /// Set after the first refusal is logged: once a node has fenced, every write fails, and
    /// one line says so better than thousands.
    reported: AtomicBool,
}

impl<D: BlockDevice> FencedDevice<D> {
    pub fn new(inner: D, switch: FenceSwitch) -> Self {
        FencedDevice { inner, switch, reported: AtomicBool::new(false) }
    }

    pub fn switch(&self) -> &FenceSwitch {
        &self.switch
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D: BlockDevice> FencedDevice<D> {
    fn fenced(&self, op: &'static str, offset: u64, len: usize) -> DeviceError {
        if !self.reported.swap(true, Ordering::SeqCst) {
            log::error!(
                "refusing a {op} of {len} bytes at offset {offset}: this node has fenced itself; \
                 every further write to this device is refused"
            );
        }
        DeviceError::Io { op, offset, len, errno: libc::EIO }
    }
}

impl<D: BlockDevice> BlockDevice for FencedDevice<D> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        if self.switch.is_thrown() {
            return Err(self.fenced("write", offset, buf.len()));
        }
        self.inner.write_at(offset, buf)
    }

    fn flush(&self) -> Result<(), DeviceError> {
        if self.switch.is_thrown() {
            return Err(self.fenced("flush", 0, 0));
        }
        self.inner.flush()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    #[test]
    fn writes_are_refused_with_eio_once_the_switch_is_thrown() {
        let switch = FenceSwitch::new();
        let dev = FencedDevice::new(MemDevice::new(4096), switch.clone());
        dev.write_at(0, &[1; 512]).unwrap();
        dev.flush().unwrap();
        switch.throw();
        assert!(dev.switch().is_thrown());
        let err = dev.write_at(512, &[2; 512]).unwrap_err();
        assert_eq!(err.errno(), libc::EIO);
        assert!(dev.flush().is_err());
        let mut buf = [0u8; 1024];
        dev.read_at(0, &mut buf).unwrap();
        assert!(buf[..512].iter().all(|&b| b == 1) && buf[512..].iter().all(|&b| b == 0));
        assert_eq!(dev.inner().to_bytes()[512], 0);
    }
}
