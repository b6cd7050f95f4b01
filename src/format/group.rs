//! `struct ocfs2_group_desc` ("GROUP01"): the first block of an allocation group, holding the
//! group's bitmap.
//!
//! The bitmap starts at 0x40 and is `bg_size` bytes; [`GroupDesc::bitmap`] holds exactly those
//! bytes, so `bg_size` is its length. Cluster groups (global bitmap) use the whole rest of the
//! block. With discontig-bg, suballocator groups stop at 256 bytes
//! ([`MAX_BG_BITMAP_SIZE`]) and a flat extent list, `bg_list`, follows at 0x140 naming the
//! group's pieces; a group is discontiguous when that list has used records. Groups whose
//! bitmap is larger than 256 bytes cannot have a `bg_list`, so decoding reads one exactly when
//! `bg_size <= 256` and the block has room for its header.
//!
//! Decoding checks what the kernel's `ocfs2_validate_gd_self` checks without context:
//! signature, `bg_bits <= 8 * bg_size`, `bg_free_bits_count <= bg_bits`; [`GroupDesc::validate`]
//! adds the block number and generation.
//!
//! Bits are little-endian within the bitmap (`ocfs2_set_bit` = `__set_bit_le`): bit `i` is bit
//! `i % 8` of byte `i / 8`.

use super::blockcheck::{BlockCheck, GROUP_DESC_CHECK_OFFSET};
use super::bytes::{array, cstr, le16, le32, le64, put_le16, put_le32, put_le64};
use super::constants::*;
use super::extent::{ExtentList, EXTENT_LIST_HEADER_SIZE};
use super::{FormatError, Result};

/// Where the bitmap starts.
pub const GROUP_BITMAP_OFFSET: usize = 0x40;
/// Where `bg_list` starts (after a 256-byte bitmap).
pub const GROUP_LIST_OFFSET: usize = GROUP_BITMAP_OFFSET + MAX_BG_BITMAP_SIZE as usize;

/// `ocfs2_group_bitmap_size`: bitmap bytes in a new group. Cluster groups use the whole block;
/// suballocator groups too unless discontig-bg is on, because older code expects that.
pub fn group_bitmap_size(block_size: usize, suballocator: bool, feature_incompat: u32) -> u16 {
    if suballocator && feature_incompat & FEATURE_INCOMPAT_DISCONTIG_BG != 0 {
        MAX_BG_BITMAP_SIZE
    } else {
        block_size.saturating_sub(GROUP_BITMAP_OFFSET).min(usize::from(u16::MAX)) as u16
    }
}

/// Whether bit `bit` of a little-endian bitmap is set; bits past the end read as clear.
pub fn test_bit(bitmap: &[u8], bit: usize) -> bool {
    bitmap.get(bit / 8).is_some_and(|b| b & (1 << (bit % 8)) != 0)
}

/// Sets bit `bit`; returns false (and changes nothing) if it is past the end.
pub fn set_bit(bitmap: &mut [u8], bit: usize) -> bool {
    match bitmap.get_mut(bit / 8) {
        Some(b) => {
            *b |= 1 << (bit % 8);
            true
        }
        None => false,
    }
}

/// Clears bit `bit`; returns false (and changes nothing) if it is past the end.
pub fn clear_bit(bitmap: &mut [u8], bit: usize) -> bool {
    match bitmap.get_mut(bit / 8) {
        Some(b) => {
            *b &= !(1 << (bit % 8));
            true
        }
        None => false,
    }
}

/// Number of set bits among the first `nbits` (clamped to the bitmap).
pub fn count_set_bits(bitmap: &[u8], nbits: usize) -> usize {
    let nbits = nbits.min(bitmap.len() * 8);
    let full = nbits / 8;
    let mut n: usize = bitmap[..full].iter().map(|b| b.count_ones() as usize).sum();
    let tail = nbits % 8;
    if tail != 0 {
        n += (bitmap[full] & ((1u8 << tail) - 1)).count_ones() as usize;
    }
    n
}

/// Length of the longest run of clear bits among the first `nbits` (clamped to the bitmap):
/// what `bg_contig_free_bits` caches.
pub fn longest_clear_run(bitmap: &[u8], nbits: usize) -> usize {
    let nbits = nbits.min(bitmap.len() * 8);
    let (mut best, mut run) = (0, 0);
    for bit in 0..nbits {
        if test_bit(bitmap, bit) {
            run = 0;
        } else {
            run += 1;
            best = best.max(run);
        }
    }
    best
}

/// `struct ocfs2_group_desc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDesc {
    /// Bits the group covers (at most `8 * bg_size`).
    pub bg_bits: u16,
    pub bg_free_bits_count: u16,
    /// Index of the chain record this group hangs from.
    pub bg_chain: u16,
    /// The fs generation.
    pub bg_generation: u32,
    /// Longest run of free bits (0 when unknown).
    pub bg_contig_free_bits: u16,
    pub bg_reserved1: u16,
    /// Next group of the chain; 0 at the end.
    pub bg_next_group: u64,
    /// The allocator inode.
    pub bg_parent_dinode: u64,
    pub bg_blkno: u64,
    pub bg_check: BlockCheck,
    pub bg_reserved2: u64,
    /// The `bg_size` bitmap bytes.
    pub bitmap: Vec<u8>,
    /// The piece list of a discontig-bg suballocator group (see the module docs).
    pub bg_list: Option<ExtentList>,
}

impl GroupDesc {
    /// `bg_size`: bitmap bytes.
    pub fn bg_size(&self) -> u16 {
        self.bitmap.len() as u16
    }

    /// True if the group is made of several pieces (a non-empty `bg_list`).
    pub fn is_discontig(&self) -> bool {
        self.bg_list.as_ref().is_some_and(|l| !l.recs.is_empty())
    }

    pub fn decode(block: &[u8]) -> Result<Self> {
        let what = "group descriptor";
        FormatError::need(what, block, GROUP_BITMAP_OFFSET)?;
        let sig: [u8; 8] = array(block, 0);
        if cstr(&sig) != cstr(GROUP_DESC_SIGNATURE) {
            return Err(FormatError::BadSignature { what, found: sig.to_vec() });
        }
        let bg_size = usize::from(le16(block, 0x08));
        let bg_bits = le16(block, 0x0A);
        let bg_free_bits_count = le16(block, 0x0C);
        let end = GROUP_BITMAP_OFFSET + bg_size;
        if end > block.len() {
            return Err(FormatError::corrupt(
                what,
                format!("bg_size {bg_size} runs past a {}-byte block", block.len()),
            ));
        }
        if usize::from(bg_bits) > 8 * bg_size {
            return Err(FormatError::corrupt(what, format!("bg_bits {bg_bits} exceeds a {bg_size}-byte bitmap")));
        }
        if bg_free_bits_count > bg_bits {
            return Err(FormatError::corrupt(what, format!("{bg_free_bits_count} free of {bg_bits} bits")));
        }
        let bg_list = if bg_size <= usize::from(MAX_BG_BITMAP_SIZE)
            && block.len() >= GROUP_LIST_OFFSET + EXTENT_LIST_HEADER_SIZE
        {
            let list = ExtentList::decode(&block[GROUP_LIST_OFFSET..])?;
            if list.l_tree_depth != 0 {
                return Err(FormatError::corrupt(what, format!("bg_list has tree depth {}", list.l_tree_depth)));
            }
            Some(list)
        } else {
            None
        };
        Ok(GroupDesc {
            bg_bits,
            bg_free_bits_count,
            bg_chain: le16(block, 0x0E),
            bg_generation: le32(block, 0x10),
            bg_contig_free_bits: le16(block, 0x14),
            bg_reserved1: le16(block, 0x16),
            bg_next_group: le64(block, 0x18),
            bg_parent_dinode: le64(block, 0x20),
            bg_blkno: le64(block, 0x28),
            bg_check: BlockCheck::decode(block, GROUP_DESC_CHECK_OFFSET)?,
            bg_reserved2: le64(block, 0x38),
            bitmap: block[GROUP_BITMAP_OFFSET..end].to_vec(),
            bg_list,
        })
    }

    /// Writes signature, header, bitmap and (if present) `bg_list`; other bytes are left alone.
    pub fn encode(&self, block: &mut [u8]) -> Result<()> {
        let what = "group descriptor";
        let end = GROUP_BITMAP_OFFSET + self.bitmap.len();
        FormatError::need(what, block, end)?;
        if self.bitmap.len() > usize::from(u16::MAX) {
            return Err(FormatError::corrupt(what, "bitmap longer than bg_size can say"));
        }
        if let Some(list) = &self.bg_list {
            if end > GROUP_LIST_OFFSET {
                return Err(FormatError::corrupt(what, "a bg_list needs a bitmap of at most 256 bytes"));
            }
            FormatError::need(what, block, GROUP_LIST_OFFSET + list.encoded_len())?;
        }
        block[0..8].copy_from_slice(GROUP_DESC_SIGNATURE);
        put_le16(block, 0x08, self.bg_size());
        put_le16(block, 0x0A, self.bg_bits);
        put_le16(block, 0x0C, self.bg_free_bits_count);
        put_le16(block, 0x0E, self.bg_chain);
        put_le32(block, 0x10, self.bg_generation);
        put_le16(block, 0x14, self.bg_contig_free_bits);
        put_le16(block, 0x16, self.bg_reserved1);
        put_le64(block, 0x18, self.bg_next_group);
        put_le64(block, 0x20, self.bg_parent_dinode);
        put_le64(block, 0x28, self.bg_blkno);
        self.bg_check.encode(block, GROUP_DESC_CHECK_OFFSET)?;
        put_le64(block, 0x38, self.bg_reserved2);
        block[GROUP_BITMAP_OFFSET..end].copy_from_slice(&self.bitmap);
        if let Some(list) = &self.bg_list {
            list.encode(&mut block[GROUP_LIST_OFFSET..])?;
        }
        Ok(())
    }

    /// The rest of `ocfs2_validate_gd_self`: the block knows its number and generation.
    pub fn validate(&self, blkno: u64, fs_generation: u32) -> Result<()> {
        if self.bg_blkno != blkno {
            return Err(FormatError::corrupt(
                "group descriptor",
                format!("block {blkno} claims bg_blkno {}", self.bg_blkno),
            ));
        }
        if self.bg_generation != fs_generation {
            return Err(FormatError::corrupt(
                "group descriptor",
                format!("block {blkno} has generation {:#x}, the volume {fs_generation:#x}", self.bg_generation),
            ));
        }
        Ok(())
    }

    /// Whether bit `bit` is in use; bits past `bg_bits` read as clear.
    pub fn test_bit(&self, bit: u32) -> bool {
        bit < u32::from(self.bg_bits) && test_bit(&self.bitmap, bit as usize)
    }

    /// Marks bit `bit` used. Only the bitmap changes: the caller keeps `bg_free_bits_count`.
    pub fn set_bit(&mut self, bit: u32) -> Result<()> {
        self.check_bit(bit)?;
        set_bit(&mut self.bitmap, bit as usize);
        Ok(())
    }

    /// Marks bit `bit` free. Only the bitmap changes: the caller keeps `bg_free_bits_count`.
    pub fn clear_bit(&mut self, bit: u32) -> Result<()> {
        self.check_bit(bit)?;
        clear_bit(&mut self.bitmap, bit as usize);
        Ok(())
    }

    /// The longest run of free bits, computed from the bitmap (`bg_contig_free_bits` may be 0,
    /// meaning unknown: mkfs.ocfs2 leaves it so).
    pub fn longest_free_run(&self) -> u32 {
        longest_clear_run(&self.bitmap, usize::from(self.bg_bits)) as u32
    }

    /// Bits in use among the first `bg_bits`.
    pub fn used_bits(&self) -> u32 {
        count_set_bits(&self.bitmap, usize::from(self.bg_bits)) as u32
    }

    fn check_bit(&self, bit: u32) -> Result<()> {
        if bit >= u32::from(self.bg_bits) {
            return Err(FormatError::corrupt("group descriptor", format!("bit {bit} outside {} bits", self.bg_bits)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dinode::Dinode;
    use crate::format::extent::{extent_recs_per_gd, ExtentRec};
    use crate::format::superblock::SuperBlock;
    use crate::format::testutil::{self, field, table_rows};

    fn sample(bitmap_len: usize) -> GroupDesc {
        GroupDesc {
            bg_bits: 0x0b0a,
            bg_free_bits_count: 0x0d0c,
            bg_chain: 0x0f0e,
            bg_generation: 0x1312_1110,
            bg_contig_free_bits: 0x1514,
            bg_reserved1: 0x1716,
            bg_next_group: 0x1f1e_1d1c_1b1a_1918,
            bg_parent_dinode: 0x2726_2524_2322_2120,
            bg_blkno: 0x2f2e_2d2c_2b2a_2928,
            bg_check: BlockCheck { bc_crc32e: 0x3332_3130, bc_ecc: 0x3534, bc_reserved1: 0x3736 },
            bg_reserved2: 0x3f3e_3d3c_3b3a_3938,
            bitmap: vec![0x5A; bitmap_len],
            bg_list: None,
        }
    }

    #[test]
    fn layout_matches_the_kernel_header() {
        let gd = sample(4096 - 0x40);
        let mut block = vec![0u8; 4096];
        gd.encode(&mut block).unwrap();
        assert_eq!(&block[..8], GROUP_DESC_SIGNATURE);
        assert_eq!(le16(&block, 0x08), 4032);
        let expect: Vec<u8> = (0x0a..0x40).collect();
        assert_eq!(&block[0x0a..0x40], &expect[..]);
        assert!(block[0x40..].iter().all(|&b| b == 0x5A));
        // bg_bits etc. fail the self checks in this synthetic block; layout is what counts.
        assert_eq!(GROUP_LIST_OFFSET, 0x140);
    }

    #[test]
    fn discontig_group_round_trips_with_its_list() {
        let mut gd = sample(256);
        gd.bg_bits = 2048;
        gd.bg_free_bits_count = 100;
        let mut list = ExtentList::new(extent_recs_per_gd(512));
        list.recs.push(ExtentRec::leaf(0, 16, 0, 1000));
        list.recs.push(ExtentRec::leaf(16, 16, 0, 5000));
        gd.bg_list = Some(list);
        let mut block = vec![0u8; 512];
        gd.encode(&mut block).unwrap();
        let back = GroupDesc::decode(&block).unwrap();
        assert_eq!(back, gd);
        assert!(back.is_discontig());
        let mut too_big = gd.clone();
        too_big.bitmap = vec![0; 257];
        assert!(too_big.encode(&mut vec![0u8; 4096]).is_err());
    }

    #[test]
    fn decode_applies_the_self_checks() {
        let mut gd = sample(64);
        gd.bg_bits = 512;
        gd.bg_free_bits_count = 512;
        let mut block = vec![0u8; 4096];
        gd.encode(&mut block).unwrap();
        assert!(GroupDesc::decode(&block).is_ok());
        put_le16(&mut block, 0x0C, 513);
        assert!(GroupDesc::decode(&block).is_err(), "more free than bits");
        put_le16(&mut block, 0x0A, 513);
        assert!(GroupDesc::decode(&block).is_err(), "more bits than the bitmap holds");
        put_le16(&mut block, 0x0A, 512);
        put_le16(&mut block, 0x0C, 0);
        put_le16(&mut block, 0x08, 4097 - 0x40);
        assert!(GroupDesc::decode(&block).is_err(), "bitmap past the block");
        put_le16(&mut block, 0x08, 64);
        put_le16(&mut block, GROUP_LIST_OFFSET, 1);
        assert!(GroupDesc::decode(&block).is_err(), "bg_list must be flat");
        block[3] = 0;
        assert!(matches!(GroupDesc::decode(&block), Err(FormatError::BadSignature { .. })));
    }

    #[test]
    fn bit_helpers_are_little_endian_and_bounded() {
        let mut gd = sample(2);
        gd.bitmap = vec![0, 0];
        gd.bg_bits = 12;
        gd.set_bit(0).unwrap();
        gd.set_bit(9).unwrap();
        assert_eq!(gd.bitmap, vec![0x01, 0x02]);
        assert!(gd.test_bit(9) && !gd.test_bit(8));
        assert!(gd.set_bit(12).is_err());
        assert_eq!(gd.used_bits(), 2);
        gd.clear_bit(0).unwrap();
        assert_eq!(gd.bitmap, vec![0x00, 0x02]);
        gd.bitmap[1] = 0xFF;
        assert_eq!(gd.used_bits(), 4, "bits past bg_bits do not count");
        assert!(!test_bit(&[0xFF], 8));
        assert!(!set_bit(&mut [0u8], 8));
        assert!(!clear_bit(&mut [0u8], 8));
        assert_eq!(longest_clear_run(&[0b1000_0001, 0b0000_0000, 0b1111_1110], 24), 8 + 1);
        assert_eq!(longest_clear_run(&[0xFF], 8), 0);
        assert_eq!(longest_clear_run(&[0x00], 5), 5);
    }

    #[test]
    fn bitmap_size_depends_on_discontig_bg_for_suballocators() {
        assert_eq!(group_bitmap_size(4096, false, FEATURE_INCOMPAT_DISCONTIG_BG), 4032);
        assert_eq!(group_bitmap_size(4096, true, FEATURE_INCOMPAT_DISCONTIG_BG), 256);
        assert_eq!(group_bitmap_size(4096, true, 0), 4032);
        assert_eq!(group_bitmap_size(512, true, 0), 448);
        assert_eq!(group_bitmap_size(512, true, FEATURE_INCOMPAT_DISCONTIG_BG), 256);
    }

    #[test]
    fn group_descriptors_reached_through_chains_match_debugfs() {
        for img in [testutil::img4k(), testutil::img512()] {
            let (sbdi, sb) = SuperBlock::decode_block(&img.block(2)).unwrap();
            let mut groups = 0;
            for (name, blkno) in img.system_inodes() {
                let block = img.block(blkno);
                let di = Dinode::decode(&block).unwrap();
                if !di.is_chain() {
                    continue;
                }
                let out = img.debugfs(&format!("stat //{name}"));
                // Each "Group Chain:" section lists the groups of one chain, in order.
                let mut debugfs_groups = Vec::new();
                for section in out.split("Group Chain:").skip(1) {
                    let chain: u16 = section.split_whitespace().next().unwrap().parse().unwrap();
                    let parent = field(section, "Parent Inode:");
                    // Skip the rest of the "Group Chain:" line itself.
                    let table = section.split_once('\n').map_or("", |(_, rest)| rest);
                    for row in table_rows(table) {
                        debugfs_groups.push((chain, parent, row));
                    }
                }
                let blknos = testutil::chain_group_blknos(img, &block);
                assert_eq!(blknos.len(), debugfs_groups.len(), "{name}");
                let suballocator = name != "global_bitmap";
                for (gd_blkno, (chain, parent, row)) in blknos.into_iter().zip(debugfs_groups) {
                    groups += 1;
                    let gd_block = img.block(gd_blkno);
                    let gd = GroupDesc::decode(&gd_block).unwrap();
                    gd.validate(gd_blkno, sbdi.i_fs_generation).unwrap();
                    assert_eq!(gd.bg_chain, chain, "{name}");
                    assert_eq!(gd.bg_parent_dinode, parent, "{name}");
                    assert_eq!(row[1], gd.bg_blkno.to_string(), "{name}");
                    assert_eq!(row[2], gd.bg_bits.to_string(), "{name}");
                    assert_eq!(row[3], (gd.bg_bits - gd.bg_free_bits_count).to_string(), "{name}");
                    assert_eq!(row[4], gd.bg_free_bits_count.to_string(), "{name}");
                    // debugfs computes the run itself; mkfs leaves the cached value 0.
                    assert_eq!(row[5], gd.longest_free_run().to_string(), "{name}");
                    assert!(gd.bg_contig_free_bits == 0 || u32::from(gd.bg_contig_free_bits) == gd.longest_free_run());
                    assert_eq!(row[6], gd.bg_size().to_string(), "{name}");
                    assert_eq!(gd.used_bits(), u32::from(gd.bg_bits - gd.bg_free_bits_count), "{name}: bitmap");
                    // mkfs sizes global_inode_alloc's group like a cluster group even with
                    // discontig-bg; the per-slot suballocators get the small bitmap.
                    let small = group_bitmap_size(img.block_size, suballocator, sb.s_feature_incompat);
                    let full = group_bitmap_size(img.block_size, false, 0);
                    assert!(gd.bg_size() == small || gd.bg_size() == full, "{name}: bg_size {}", gd.bg_size());
                    assert!(!gd.is_discontig());
                    let mut again = gd_block.clone();
                    gd.encode(&mut again).unwrap();
                    assert_eq!(again, gd_block, "{name}: encode(decode) changed group {gd_blkno}");
                }
            }
            assert!(groups >= 4);
            // The first cluster group is where the superblock says.
            let first = GroupDesc::decode(&img.block(sb.s_first_cluster_group)).unwrap();
            assert_eq!(first.bg_blkno, sb.s_first_cluster_group);
            assert_eq!(usize::from(first.bg_size()), img.block_size - GROUP_BITMAP_OFFSET);
        }
    }

    #[test]
    fn decode_never_panics_on_random_or_mutated_buffers() {
        let seed = 0x6a0c_5eed;
        let img = testutil::img512();
        let ia = img.block(img.system_inode("inode_alloc:0000"));
        let seeds: Vec<Vec<u8>> = testutil::chain_group_blknos(img, &ia).into_iter().map(|b| img.block(b)).collect();
        testutil::fuzz(seed, &seeds, |buf| {
            if let Ok(gd) = GroupDesc::decode(buf) {
                let mut out = buf.to_vec();
                gd.encode(&mut out).unwrap();
                assert_eq!(GroupDesc::decode(&out).unwrap(), gd);
                let _ = gd.used_bits();
            }
        });
    }
}
