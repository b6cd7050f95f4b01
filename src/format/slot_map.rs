//! The slot map (`slot_map` system file): which node holds which slot.
//!
//! Two layouts exist:
//! - the old one, an array of `__le16` node numbers (`struct ocfs2_slot_map`) in the first
//!   block, where 0xFFFF (`OCFS2_INVALID_SLOT`) marks an empty slot;
//! - the extended one (`OCFS2_FEATURE_INCOMPAT_EXTENDED_SLOT_MAP`), an array of 8-byte
//!   `struct ocfs2_extended_slot` {es_valid u8, 3 reserved bytes, es_node_num le32} that may
//!   span several blocks.
//!
//! Either way the map starts at byte 0 of the file and slot *i* sits at `i * slot size`, so a
//! caller can hand [`SlotMap::decode`] the file's bytes as one buffer. The file's `i_size` must
//! cover `max_slots` slots ([`check_file_size`]); the kernel reads and writes only the blocks
//! that hold those slots ([`blocks_needed`]).

use super::bytes::{le16, le32, put_le16, put_le32};
use super::{FormatError, Result, INVALID_SLOT, MAX_SLOTS};

/// `sizeof(__le16)`: one slot of the old map.
pub const OLD_SLOT_SIZE: usize = 2;
/// `sizeof(struct ocfs2_extended_slot)`.
pub const EXTENDED_SLOT_SIZE: usize = 8;

const ES_VALID: usize = 0x00;
const ES_NODE_NUM: usize = 0x04;

/// Bytes of one slot in the chosen layout.
pub const fn slot_size(extended: bool) -> usize {
    if extended {
        EXTENDED_SLOT_SIZE
    } else {
        OLD_SLOT_SIZE
    }
}

/// Bytes the map needs for `max_slots` slots (`ocfs2_slot_map_physical_size`).
pub fn bytes_needed(max_slots: u16, extended: bool) -> u64 {
    max_slots as u64 * slot_size(extended) as u64
}

/// Blocks the kernel reads for the map (`ocfs2_map_slot_buffers`).
pub fn blocks_needed(max_slots: u16, extended: bool, blocksize: u32) -> u64 {
    let bs = blocksize.max(1) as u64;
    bytes_needed(max_slots, extended).div_ceil(bs)
}

/// Refuses a slot map file too small for `max_slots` slots, as the kernel does at mount
/// ("Slot map file is too small!"). The old layout must also fit in its single block and hold
/// at most 255 slots.
pub fn check_file_size(i_size: u64, max_slots: u16, extended: bool, blocksize: u32) -> Result<()> {
    let need = bytes_needed(max_slots, extended);
    if need > i_size {
        return Err(FormatError::corrupt(
            "slot map",
            format!("the file holds {i_size} bytes, {max_slots} slots need {need}"),
        ));
    }
    if !extended && (max_slots > MAX_SLOTS || need > blocksize as u64) {
        return Err(FormatError::corrupt("slot map", format!("{max_slots} slots do not fit the old one-block layout")));
    }
    Ok(())
}

/// How many slots a map formatted over `i_size` bytes holds (`ocfs2_format_slot_map` formats
/// the whole allocation, all empty).
pub fn formatted_slots(i_size: u64, extended: bool) -> u64 {
    i_size / slot_size(extended) as u64
}

/// One slot per entry: `Some(node number)` or `None` for an empty slot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotMap {
    pub slots: Vec<Option<u32>>,
}

impl SlotMap {
    /// A map of `num_slots` empty slots.
    pub fn empty(num_slots: usize) -> Self {
        SlotMap { slots: vec![None; num_slots] }
    }

    /// Decodes the first `num_slots` slots of `bytes` (the slot map file from offset 0).
    pub fn decode(bytes: &[u8], num_slots: usize, extended: bool) -> Result<Self> {
        let need = num_slots
            .checked_mul(slot_size(extended))
            .ok_or_else(|| FormatError::corrupt("slot map", format!("{num_slots} slots overflow")))?;
        FormatError::need("slot map", bytes, need)?;
        let slots = (0..num_slots)
            .map(|i| {
                if extended {
                    let off = i * EXTENDED_SLOT_SIZE;
                    // The kernel treats any non-zero es_valid as valid.
                    (bytes[off + ES_VALID] != 0).then(|| le32(bytes, off + ES_NODE_NUM))
                } else {
                    let node = le16(bytes, i * OLD_SLOT_SIZE);
                    (node != INVALID_SLOT).then_some(node as u32)
                }
            })
            .collect();
        Ok(SlotMap { slots })
    }

    /// Writes the slots into `buf` the way the kernel updates the map in place: the old layout
    /// gets the node number or 0xFFFF; the extended layout gets `es_valid` and, for a valid
    /// slot, `es_node_num`. An emptied extended slot keeps its last node number, as the
    /// kernel leaves it, so rewriting a decoded map into its own bytes changes nothing.
    /// Bytes past the last slot are left alone.
    ///
    /// Fails if `buf` is too short or, in the old layout, a node number does not fit in 16 bits
    /// without colliding with the empty marker.
    pub fn encode(&self, buf: &mut [u8], extended: bool) -> Result<()> {
        let need = self.slots.len().saturating_mul(slot_size(extended));
        FormatError::need("slot map", buf, need)?;
        for (i, slot) in self.slots.iter().enumerate() {
            if extended {
                let off = i * EXTENDED_SLOT_SIZE;
                buf[off + ES_VALID] = slot.is_some() as u8;
                if let Some(node) = slot {
                    put_le32(buf, off + ES_NODE_NUM, *node);
                }
            } else {
                let v = match slot {
                    None => INVALID_SLOT,
                    Some(n) if *n < INVALID_SLOT as u32 => *n as u16,
                    Some(n) => {
                        return Err(FormatError::corrupt(
                            "slot map",
                            format!("node {n} in slot {i} does not fit the old layout"),
                        ))
                    }
                };
                put_le16(buf, i * OLD_SLOT_SIZE, v);
            }
        }
        Ok(())
    }

    /// The slot that `node` holds (`__ocfs2_node_num_to_slot`).
    pub fn slot_of(&self, node: u32) -> Option<usize> {
        self.slots.iter().position(|s| *s == Some(node))
    }

    /// The first empty slot, or `preferred` if it is empty (`__ocfs2_find_empty_slot`).
    pub fn find_empty(&self, preferred: Option<usize>) -> Option<usize> {
        if let Some(p) = preferred {
            if matches!(self.slots.get(p), Some(None)) {
                return Some(p);
            }
        }
        self.slots.iter().position(Option::is_none)
    }

    /// True when any slot is held: what `mounted.ocfs2` calls "mounted on the cluster".
    pub fn any_valid(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_layouts() {
        assert_eq!(bytes_needed(4, true), 32);
        assert_eq!(bytes_needed(255, false), 510);
        assert_eq!(blocks_needed(4, true, 4096), 1);
        assert_eq!(blocks_needed(255, true, 512), 4);
        assert_eq!(blocks_needed(0, true, 512), 0);
        check_file_size(4096, 4, true, 4096).unwrap();
        assert!(check_file_size(24, 4, true, 4096).is_err());
        assert!(check_file_size(4096, 255, false, 4096).is_ok());
        assert!(check_file_size(4096, 255, false, 256).is_err());
        assert_eq!(formatted_slots(4096, true), 512);
        assert_eq!(formatted_slots(512, false), 256);
    }

    #[test]
    fn old_layout_round_trips_with_empty_marker() {
        let map = SlotMap { slots: vec![Some(0), None, Some(7), None] };
        let mut buf = vec![0u8; 512];
        map.encode(&mut buf, false).unwrap();
        assert_eq!(&buf[..8], &[0, 0, 0xff, 0xff, 7, 0, 0xff, 0xff]);
        assert_eq!(SlotMap::decode(&buf, 4, false).unwrap(), map);
        assert!(SlotMap { slots: vec![Some(0xffff)] }.encode(&mut buf, false).is_err());
    }

    #[test]
    fn extended_layout_keeps_the_last_owner_of_an_emptied_slot() {
        let mut buf = vec![0u8; 64];
        let mut map = SlotMap { slots: vec![Some(3), Some(70000), None] };
        map.encode(&mut buf, true).unwrap();
        assert_eq!(&buf[..16], &[1, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0x70, 0x11, 1, 0]);
        assert_eq!(SlotMap::decode(&buf, 3, true).unwrap(), map);

        map.slots[0] = None;
        map.encode(&mut buf, true).unwrap();
        assert_eq!(&buf[..8], &[0, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(SlotMap::decode(&buf, 3, true).unwrap(), map);
    }

    #[test]
    fn lookups_find_own_slot_then_preferred_then_first_empty() {
        let map = SlotMap { slots: vec![Some(1), None, Some(2), None] };
        assert_eq!(map.slot_of(2), Some(2));
        assert_eq!(map.slot_of(9), None);
        assert_eq!(map.find_empty(Some(3)), Some(3));
        assert_eq!(map.find_empty(Some(0)), Some(1));
        assert_eq!(map.find_empty(Some(99)), Some(1));
        assert!(map.any_valid());
        assert!(!SlotMap::empty(4).any_valid());
        assert_eq!(SlotMap::empty(2).find_empty(None), Some(0));
    }

    #[test]
    fn short_buffers_are_refused() {
        assert!(SlotMap::decode(&[0u8; 7], 1, true).is_err());
        assert!(SlotMap::decode(&[0u8; 3], 2, false).is_err());
        assert!(SlotMap::decode(&[], usize::MAX, true).is_err());
        assert!(SlotMap::empty(2).encode(&mut [0u8; 15], true).is_err());
    }

    #[test]
    fn random_and_mutated_maps_never_panic_the_decoder() {
        let mut seed_ext = vec![0u8; 4096];
        SlotMap { slots: vec![Some(1), None, Some(3)] }.encode(&mut seed_ext, true).unwrap();
        let mut seed_old = vec![0u8; 512];
        SlotMap { slots: vec![Some(1), None, Some(3)] }.encode(&mut seed_old, false).unwrap();
        crate::format::testutil::fuzz(0xD1E5_0004, &[seed_ext, seed_old], |buf| {
            for extended in [false, true] {
                for n in [0, 1, 4, 255, buf.len() / slot_size(extended), buf.len(), usize::MAX] {
                    if let Ok(m) = SlotMap::decode(buf, n, extended) {
                        let mut copy = buf.to_vec();
                        if m.encode(&mut copy, extended).is_ok() {
                            assert_eq!(SlotMap::decode(&copy, n, extended).unwrap(), m);
                        }
                    }
                }
                let _ = check_file_size(buf.len() as u64, buf.len() as u16, extended, 512);
            }
        });
    }
}

/// Tests whose other side is debugfs.ocfs2 `slotmap`, on volumes made by mkfs.ocfs2.
#[cfg(test)]
mod reference_tests {
    use super::*;
    use crate::format::testutil::{field, TestImage};

    /// `(slot, node)` rows printed by `slotmap`.
    fn listed(img: &TestImage) -> Vec<(usize, u32)> {
        img.debugfs("slotmap")
            .lines()
            .filter_map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                (c.len() == 2).then(|| Some((c[0].parse().ok()?, c[1].parse().ok()?))).flatten()
            })
            .collect()
    }

    fn check(img: &TestImage, extended: bool, nodes: &[Option<u32>]) {
        let stats = img.debugfs("stats");
        let max_slots = field(&stats, "Max Node Slots:") as u16;
        let stat = img.debugfs("stat //slot_map");
        let i_size = field(&stat, "Size:");
        check_file_size(i_size, max_slots, extended, img.block_size as u32).unwrap();
        assert_eq!(blocks_needed(max_slots, extended, img.block_size as u32), 1);

        let blkno = img.bmap("//slot_map", 0);
        let original = img.block(blkno);
        // mkfs formats every slot the allocation holds, all empty.
        let all =
            SlotMap::decode(&original, formatted_slots(i_size.min(img.block_size as u64), extended) as usize, extended)
                .unwrap();
        assert!(!all.any_valid());
        let map = SlotMap::decode(&original, max_slots as usize, extended).unwrap();
        assert_eq!(map, SlotMap::empty(max_slots as usize));
        let mut again = original.clone();
        map.encode(&mut again, extended).unwrap();
        assert_eq!(again, original, "an empty map re-encodes byte for byte");
        assert!(listed(img).is_empty());

        let mut map = SlotMap::empty(max_slots as usize);
        map.slots[..nodes.len()].copy_from_slice(nodes);
        let mut block = original.clone();
        map.encode(&mut block, extended).unwrap();
        img.put_block(blkno, &block);
        let want: Vec<(usize, u32)> = nodes.iter().enumerate().filter_map(|(i, n)| n.map(|n| (i, n))).collect();
        assert_eq!(listed(img), want);
        assert_eq!(SlotMap::decode(&img.block(blkno), max_slots as usize, extended).unwrap(), map);

        // mounted.ocfs2 decides "mounted, and by whom" from the slot map alone.
        let nodes_line = want.iter().map(|(_, n)| n.to_string()).collect::<Vec<_>>().join(", ");
        let mounted = img.tool("mounted.ocfs2", &["-f"]);
        assert!(mounted.lines().any(|l| l.trim_end().ends_with(&nodes_line)), "{mounted}");
        map.slots.iter_mut().for_each(|s| *s = None);
        map.encode(&mut block, extended).unwrap();
        img.put_block(blkno, &block);
        assert!(img.tool("mounted.ocfs2", &["-f"]).contains("Not mounted"));
    }

    #[test]
    fn extended_slot_map_written_by_us_lists_in_debugfs() {
        let img = TestImage::mkfs("slotext", "256M", 4096, &["-N", "8"]);
        assert!(img.debugfs("stats").contains("extended-slotmap"));
        check(&img, true, &[Some(3), None, Some(200), None, Some(0), None, None, Some(254)]);
    }

    #[test]
    fn old_slot_map_written_by_us_lists_in_debugfs() {
        let img =
            TestImage::mkfs("slotold", "256M", 512, &["-N", "4", "-J", "size=4M", "--fs-feature-level=max-compat"]);
        assert!(!img.debugfs("stats").contains("extended-slotmap"));
        check(&img, false, &[None, Some(7), Some(254), None]);
    }
}
