//! Where the volume's heartbeat lives, for the cluster stack's disk heartbeat.

use super::error::{Error, Result};
use super::volume::Volume;
use crate::format::O2NM_MAX_NODES;

/// The o2hb region of a volume (`ocfs2_fill_heartbeat_desc`): node N writes the sector
/// `start_sector + N`, each sector `sector_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatArea {
    /// Byte offset of the heartbeat file's first block on the device.
    pub start_byte: u64,
    /// The device's logical sector size: the size of one node's heartbeat block.
    pub sector_size: u32,
    /// `start_byte / sector_size`.
    pub start_sector: u64,
    /// Number of node slots (O2NM_MAX_NODES).
    pub blocks: u32,
}

impl Volume {
    /// The heartbeat region named by the `heartbeat` system file.
    pub fn heartbeat_area(&self) -> Result<HeartbeatArea> {
        let ino = self.system_file("heartbeat")?;
        let start_byte = self
            .physical_offset(ino, 0)?
            .ok_or_else(|| Error::corrupt(ino, "the heartbeat file has no allocated first block"))?;
        let sector_size = self.inner.meta.device().sector_size();
        let size = self.metadata(ino)?.size;
        let needed = u64::from(O2NM_MAX_NODES) * u64::from(sector_size);
        if size < needed {
            return Err(Error::corrupt(ino, format!("heartbeat file of {size} bytes is smaller than {needed}")));
        }
        Ok(HeartbeatArea {
            start_byte,
            sector_size,
            start_sector: start_byte / u64::from(sector_size),
            blocks: O2NM_MAX_NODES,
        })
    }
}
