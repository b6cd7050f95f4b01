//! A device in memory: for tests, simulations and scratch volumes.

use super::{check_range, BlockDevice, DeviceError};
use parking_lot::RwLock;

/// A fixed-size device backed by a byte vector.
pub struct MemDevice {
    bytes: RwLock<Vec<u8>>,
    sector_size: u32,
}

impl MemDevice {
    /// A zero-filled device of `size` bytes with 512-byte sectors.
    pub fn new(size: u64) -> Self {
        Self::with_sector_size(size, 512)
    }

    /// A zero-filled device with the given logical sector size.
    pub fn with_sector_size(size: u64, sector_size: u32) -> Self {
        MemDevice { bytes: RwLock::new(vec![0; size as usize]), sector_size }
    }

    /// A device holding a copy of `image`.
    pub fn from_bytes(image: Vec<u8>) -> Self {
        MemDevice { bytes: RwLock::new(image), sector_size: 512 }
    }

    /// A copy of the whole device.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.read().clone()
    }
}

impl BlockDevice for MemDevice {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let bytes = self.bytes.read();
        check_range(offset, buf.len(), bytes.len() as u64)?;
        let start = offset as usize;
        buf.copy_from_slice(&bytes[start..start + buf.len()]);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        let mut bytes = self.bytes.write();
        check_range(offset, buf.len(), bytes.len() as u64)?;
        let start = offset as usize;
        bytes[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), DeviceError> {
        Ok(())
    }

    fn len(&self) -> u64 {
        self.bytes.read().len() as u64
    }

    fn sector_size(&self) -> u32 {
        self.sector_size
    }
}
