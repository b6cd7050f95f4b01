//! Extent trees: `ocfs2_extent_rec`, `ocfs2_extent_list` and `ocfs2_extent_block` ("EXBLK01").
//!
//! An extent list is a 16-byte header followed by `l_count` record slots of 16 bytes, of which
//! the first `l_next_free_rec` are in use. [`ExtentList::recs`] holds exactly the used records,
//! so `l_next_free_rec` is its length; decoding checks that the `l_count` slots fit the buffer
//! and that `l_next_free_rec <= l_count`, and encoding zeroes the unused slots.
//!
//! A record's middle word is a union: interior records (`l_tree_depth > 0`) count clusters in
//! `e_int_clusters` (u32); leaf records split it into `e_leaf_clusters` (u16), a reserved byte
//! and `e_flags`. [`ExtentRec`] stores the raw word and offers both views; the caller picks by
//! the depth of the list the record came from.

use super::blockcheck::{BlockCheck, EXTENT_BLOCK_CHECK_OFFSET};
use super::bytes::{array, cstr, le16, le32, le64, put_le16, put_le32, put_le64};
use super::constants::*;
use super::{FormatError, Result};

pub const EXTENT_REC_SIZE: usize = 16;
pub const EXTENT_LIST_HEADER_SIZE: usize = 16;
/// `OCFS2_MAX_PATH_DEPTH`: the most blocks on a path from an extent tree root to a leaf.
pub const MAX_PATH_DEPTH: usize = 5;

/// Where `h_list` starts in an extent block.
pub const EXTENT_BLOCK_LIST_OFFSET: usize = 0x30;

// Offsets of the first extent record in each container, for the capacity helpers below:
// inode id2 (0xC0) + list header; extent block h_list (0x30) + header; group descriptor bg_list
// (0x140) + header; dx root dr_list (0xC0) + header; xattr block xb_root.xt_list
// (0x30 + 0x10) + header; refcount block rf_list (0x80) + header.
const INODE_RECS_OFFSET: usize = 0xC0 + EXTENT_LIST_HEADER_SIZE;
const EB_RECS_OFFSET: usize = EXTENT_BLOCK_LIST_OFFSET + EXTENT_LIST_HEADER_SIZE;
const GD_RECS_OFFSET: usize = 0x140 + EXTENT_LIST_HEADER_SIZE;
const DX_ROOT_RECS_OFFSET: usize = 0xC0 + EXTENT_LIST_HEADER_SIZE;
const XB_RECS_OFFSET: usize = 0x40 + EXTENT_LIST_HEADER_SIZE;
const RB_RECS_OFFSET: usize = 0x80 + EXTENT_LIST_HEADER_SIZE;

fn recs_after(block_size: usize, first_rec: usize) -> u16 {
    let n = block_size.saturating_sub(first_rec) / EXTENT_REC_SIZE;
    n.min(usize::from(u16::MAX)) as u16
}

/// `ocfs2_extent_recs_per_inode`: records in an inode's `id2.i_list`.
pub fn extent_recs_per_inode(block_size: usize) -> u16 {
    recs_after(block_size, INODE_RECS_OFFSET)
}

/// `ocfs2_extent_recs_per_inode_with_xattr`: records left when the last `xattr_inline_size`
/// bytes of the inode hold inline xattrs (pass 0 without inline xattrs).
pub fn extent_recs_per_inode_with_xattr(block_size: usize, xattr_inline_size: u16) -> u16 {
    recs_after(block_size.saturating_sub(usize::from(xattr_inline_size)), INODE_RECS_OFFSET)
}

/// `ocfs2_extent_recs_per_eb`: records in an extent block's `h_list`.
pub fn extent_recs_per_eb(block_size: usize) -> u16 {
    recs_after(block_size, EB_RECS_OFFSET)
}

/// `ocfs2_extent_recs_per_gd`: records in a discontiguous group's `bg_list`.
pub fn extent_recs_per_gd(block_size: usize) -> u16 {
    recs_after(block_size, GD_RECS_OFFSET)
}

/// `ocfs2_extent_recs_per_dx_root`: records in an indexed-dir root's `dr_list`.
pub fn extent_recs_per_dx_root(block_size: usize) -> u16 {
    recs_after(block_size, DX_ROOT_RECS_OFFSET)
}

/// `ocfs2_xattr_recs_per_xb`: records in an xattr block's tree root.
pub fn xattr_recs_per_xb(block_size: usize) -> u16 {
    recs_after(block_size, XB_RECS_OFFSET)
}

/// `ocfs2_extent_recs_per_rb`: records in a refcount tree block's `rf_list`.
pub fn extent_recs_per_rb(block_size: usize) -> u16 {
    recs_after(block_size, RB_RECS_OFFSET)
}

/// `struct ocfs2_extent_rec`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtentRec {
    /// First logical cluster covered.
    pub e_cpos: u32,
    /// The raw union: `e_int_clusters` in interior records; in leaves the low 16 bits are
    /// `e_leaf_clusters`, then `e_reserved1`, then `e_flags` in the top byte.
    pub e_int_clusters: u32,
    /// First physical block (a data block at a leaf, an extent block at an interior node).
    pub e_blkno: u64,
}

impl ExtentRec {
    /// A leaf record.
    pub fn leaf(e_cpos: u32, e_leaf_clusters: u16, e_flags: u8, e_blkno: u64) -> Self {
        ExtentRec { e_cpos, e_int_clusters: u32::from(e_leaf_clusters) | (u32::from(e_flags) << 24), e_blkno }
    }

    /// An interior record pointing at an extent block.
    pub fn interior(e_cpos: u32, e_int_clusters: u32, e_blkno: u64) -> Self {
        ExtentRec { e_cpos, e_int_clusters, e_blkno }
    }

    pub fn e_leaf_clusters(&self) -> u16 {
        self.e_int_clusters as u16
    }
    pub fn e_reserved1(&self) -> u8 {
        (self.e_int_clusters >> 16) as u8
    }
    pub fn e_flags(&self) -> u8 {
        (self.e_int_clusters >> 24) as u8
    }
    pub fn set_leaf_clusters(&mut self, clusters: u16) {
        self.e_int_clusters = (self.e_int_clusters & 0xFFFF_0000) | u32::from(clusters);
    }
    pub fn set_flags(&mut self, flags: u8) {
        self.e_int_clusters = (self.e_int_clusters & 0x00FF_FFFF) | (u32::from(flags) << 24);
    }

    /// `ocfs2_rec_clusters`: clusters covered, read as the list's depth says.
    pub fn clusters(&self, tree_depth: u16) -> u32 {
        if tree_depth == 0 {
            u32::from(self.e_leaf_clusters())
        } else {
            self.e_int_clusters
        }
    }

    /// One past the last logical cluster covered (in u64, so it cannot overflow).
    pub fn end_cpos(&self, tree_depth: u16) -> u64 {
        u64::from(self.e_cpos) + u64::from(self.clusters(tree_depth))
    }

    /// Allocated but never written: reads return zeroes (leaf records only).
    pub fn is_unwritten(&self) -> bool {
        self.e_flags() & EXT_UNWRITTEN != 0
    }
    /// Shared with a refcount tree (leaf records only).
    pub fn is_refcounted(&self) -> bool {
        self.e_flags() & EXT_REFCOUNTED != 0
    }

    pub fn decode(buf: &[u8]) -> Result<Self> {
        FormatError::need("extent record", buf, EXTENT_REC_SIZE)?;
        Ok(ExtentRec { e_cpos: le32(buf, 0x00), e_int_clusters: le32(buf, 0x04), e_blkno: le64(buf, 0x08) })
    }

    pub fn encode(&self, buf: &mut [u8]) -> Result<()> {
        FormatError::need("extent record", buf, EXTENT_REC_SIZE)?;
        put_le32(buf, 0x00, self.e_cpos);
        put_le32(buf, 0x04, self.e_int_clusters);
        put_le64(buf, 0x08, self.e_blkno);
        Ok(())
    }
}

/// `struct ocfs2_extent_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentList {
    /// 0 for a leaf; the records of a list at depth d point at extent blocks at depth d - 1.
    pub l_tree_depth: u16,
    /// Record slots the container has room for.
    pub l_count: u16,
    pub l_reserved1: u16,
    pub l_reserved2: u64,
    /// The used records; `l_next_free_rec` is their number.
    pub recs: Vec<ExtentRec>,
}

impl ExtentList {
    /// An empty leaf list with room for `l_count` records.
    pub fn new(l_count: u16) -> Self {
        ExtentList { l_tree_depth: 0, l_count, l_reserved1: 0, l_reserved2: 0, recs: Vec::new() }
    }

    /// `l_next_free_rec`.
    pub fn l_next_free_rec(&self) -> u16 {
        self.recs.len() as u16
    }

    pub fn is_leaf(&self) -> bool {
        self.l_tree_depth == 0
    }

    /// Bytes the list occupies: header plus all `l_count` slots.
    pub fn encoded_len(&self) -> usize {
        EXTENT_LIST_HEADER_SIZE + usize::from(self.l_count) * EXTENT_REC_SIZE
    }

    /// Decodes a list from `buf`, which starts at the list and runs to the end of its
    /// container (for an inode, `&block[DINODE_ID2_OFFSET..]`).
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let what = "extent list";
        FormatError::need(what, buf, EXTENT_LIST_HEADER_SIZE)?;
        let l_count = le16(buf, 0x02);
        let next_free = le16(buf, 0x04);
        let list = ExtentList {
            l_tree_depth: le16(buf, 0x00),
            l_count,
            l_reserved1: le16(buf, 0x06),
            l_reserved2: le64(buf, 0x08),
            recs: Vec::new(),
        };
        let len = list.encoded_len();
        if len > buf.len() {
            return Err(FormatError::corrupt(
                what,
                format!("l_count {l_count} needs {len} bytes, the container has {}", buf.len()),
            ));
        }
        if next_free > l_count {
            return Err(FormatError::corrupt(what, format!("l_next_free_rec {next_free} > l_count {l_count}")));
        }
        let recs = buf[EXTENT_LIST_HEADER_SIZE..]
            .chunks_exact(EXTENT_REC_SIZE)
            .take(usize::from(next_free))
            .map(ExtentRec::decode)
            .collect::<Result<Vec<_>>>()?;
        Ok(ExtentList { recs, ..list })
    }

    /// Writes the header, the used records, and zeroes for the unused slots up to `l_count`.
    pub fn encode(&self, buf: &mut [u8]) -> Result<()> {
        let what = "extent list";
        if self.recs.len() > usize::from(self.l_count) {
            return Err(FormatError::corrupt(
                what,
                format!("{} records but l_count {}", self.recs.len(), self.l_count),
            ));
        }
        FormatError::need(what, buf, self.encoded_len())?;
        put_le16(buf, 0x00, self.l_tree_depth);
        put_le16(buf, 0x02, self.l_count);
        put_le16(buf, 0x04, self.l_next_free_rec());
        put_le16(buf, 0x06, self.l_reserved1);
        put_le64(buf, 0x08, self.l_reserved2);
        let slots = &mut buf[EXTENT_LIST_HEADER_SIZE..self.encoded_len()];
        for (k, slot) in slots.chunks_exact_mut(EXTENT_REC_SIZE).enumerate() {
            match self.recs.get(k) {
                Some(rec) => rec.encode(slot)?,
                None => slot.fill(0),
            }
        }
        Ok(())
    }

    /// Clusters covered by the list: one past the end of the last record.
    pub fn clusters(&self) -> u64 {
        self.recs.last().map_or(0, |r| r.end_cpos(self.l_tree_depth))
    }
}

/// `struct ocfs2_extent_block`: one block of an extent tree below the inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentBlock {
    pub h_check: BlockCheck,
    pub h_suballoc_slot: u16,
    pub h_suballoc_bit: u16,
    pub h_fs_generation: u32,
    pub h_blkno: u64,
    /// The suballocator group this block came from (only with discontig-bg).
    pub h_suballoc_loc: u64,
    /// Next leaf block in logical order (leaves only; 0 at the end).
    pub h_next_leaf_blk: u64,
    pub h_list: ExtentList,
}

impl ExtentBlock {
    /// Decodes a whole extent block; `h_list` may use every slot up to the end of `block`.
    pub fn decode(block: &[u8]) -> Result<Self> {
        let what = "extent block";
        FormatError::need(what, block, EXTENT_BLOCK_LIST_OFFSET + EXTENT_LIST_HEADER_SIZE)?;
        let sig: [u8; 8] = array(block, 0);
        if cstr(&sig) != cstr(EXTENT_BLOCK_SIGNATURE) {
            return Err(FormatError::BadSignature { what, found: sig.to_vec() });
        }
        Ok(ExtentBlock {
            h_check: BlockCheck::decode(block, EXTENT_BLOCK_CHECK_OFFSET)?,
            h_suballoc_slot: le16(block, 0x10),
            h_suballoc_bit: le16(block, 0x12),
            h_fs_generation: le32(block, 0x14),
            h_blkno: le64(block, 0x18),
            h_suballoc_loc: le64(block, 0x20),
            h_next_leaf_blk: le64(block, 0x28),
            h_list: ExtentList::decode(&block[EXTENT_BLOCK_LIST_OFFSET..])?,
        })
    }

    /// Writes the signature, the header and the list (with its unused slots zeroed).
    pub fn encode(&self, block: &mut [u8]) -> Result<()> {
        let what = "extent block";
        FormatError::need(what, block, EXTENT_BLOCK_LIST_OFFSET + self.h_list.encoded_len())?;
        block[0..8].copy_from_slice(EXTENT_BLOCK_SIGNATURE);
        self.h_check.encode(block, EXTENT_BLOCK_CHECK_OFFSET)?;
        put_le16(block, 0x10, self.h_suballoc_slot);
        put_le16(block, 0x12, self.h_suballoc_bit);
        put_le32(block, 0x14, self.h_fs_generation);
        put_le64(block, 0x18, self.h_blkno);
        put_le64(block, 0x20, self.h_suballoc_loc);
        put_le64(block, 0x28, self.h_next_leaf_blk);
        self.h_list.encode(&mut block[EXTENT_BLOCK_LIST_OFFSET..])
    }

    /// The kernel's `ocfs2_validate_extent_block` checks beyond the signature: the block
    /// knows its own number and belongs to this volume.
    pub fn validate(&self, blkno: u64, fs_generation: u32) -> Result<()> {
        if self.h_blkno != blkno {
            return Err(FormatError::corrupt("extent block", format!("block {blkno} claims h_blkno {}", self.h_blkno)));
        }
        if self.h_fs_generation != fs_generation {
            return Err(FormatError::corrupt(
                "extent block",
                format!("block {blkno} has fs generation {:#x}, the volume {fs_generation:#x}", self.h_fs_generation),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dinode::{Dinode, DINODE_ID2_OFFSET};
    use crate::format::testutil::{self, field, table_rows};

    #[test]
    fn capacities_match_the_kernel_formulas() {
        // debugfs shows "Count: 243" for inode lists at 4K and 19 at 512 bytes.
        assert_eq!(extent_recs_per_inode(4096), 243);
        assert_eq!(extent_recs_per_inode(512), 19);
        assert_eq!(extent_recs_per_inode_with_xattr(4096, 256), 227);
        assert_eq!(extent_recs_per_inode_with_xattr(4096, 0), 243);
        assert_eq!(extent_recs_per_eb(4096), (4096 - 0x40) / 16);
        assert_eq!(extent_recs_per_eb(512), 28);
        assert_eq!(extent_recs_per_gd(4096), (4096 - 0x150) / 16);
        assert_eq!(extent_recs_per_gd(512), 11);
        assert_eq!(extent_recs_per_dx_root(4096), 243);
        assert_eq!(xattr_recs_per_xb(4096), (4096 - 0x50) / 16);
        assert_eq!(extent_recs_per_rb(4096), (4096 - 0x90) / 16);
        assert_eq!(extent_recs_per_eb(0), 0);
    }

    #[test]
    fn record_views_share_one_word() {
        let mut r = ExtentRec::leaf(7, 0x1234, EXT_UNWRITTEN, 99);
        assert_eq!(r.e_leaf_clusters(), 0x1234);
        assert_eq!(r.e_flags(), EXT_UNWRITTEN);
        assert_eq!(r.e_reserved1(), 0);
        assert!(r.is_unwritten() && !r.is_refcounted());
        assert_eq!(r.clusters(0), 0x1234);
        assert_eq!(r.end_cpos(0), 7 + 0x1234);
        let mut b = [0u8; 16];
        r.encode(&mut b).unwrap();
        assert_eq!(b, [7, 0, 0, 0, 0x34, 0x12, 0, EXT_UNWRITTEN, 99, 0, 0, 0, 0, 0, 0, 0]);
        r.set_flags(EXT_REFCOUNTED);
        r.set_leaf_clusters(5);
        assert_eq!((r.e_leaf_clusters(), r.e_flags()), (5, EXT_REFCOUNTED));
        let i = ExtentRec::interior(0, 0x0102_0304, 5);
        assert_eq!(i.clusters(1), 0x0102_0304);
        assert_eq!(i.clusters(0), 0x0304);
    }

    fn sample_list(depth: u16, count: u16, used: usize) -> ExtentList {
        let mut l = ExtentList::new(count);
        l.l_tree_depth = depth;
        for k in 0..used as u32 {
            l.recs.push(ExtentRec::leaf(k * 10, 10, 0, 1000 + u64::from(k) * 80));
        }
        l
    }

    #[test]
    fn list_encode_zeroes_unused_slots_and_round_trips() {
        let l = sample_list(0, 19, 3);
        let mut buf = vec![0xAAu8; 512 - DINODE_ID2_OFFSET];
        l.encode(&mut buf).unwrap();
        assert_eq!(le16(&buf, 4), 3);
        assert!(buf[16 + 3 * 16..16 + 19 * 16].iter().all(|&b| b == 0));
        assert_eq!(ExtentList::decode(&buf).unwrap(), l);
        assert_eq!(l.clusters(), 30);
    }

    #[test]
    fn list_decode_checks_counts_against_the_buffer() {
        let mut buf = vec![0u8; 16 + 4 * 16];
        let l = sample_list(0, 4, 4);
        l.encode(&mut buf).unwrap();
        assert!(ExtentList::decode(&buf).is_ok());
        assert!(ExtentList::decode(&buf[..buf.len() - 1]).is_err(), "l_count must fit the container");
        put_le16(&mut buf, 4, 5);
        assert!(ExtentList::decode(&buf).is_err(), "l_next_free_rec > l_count");
        assert!(ExtentList::decode(&buf[..15]).is_err());
        let too_many = sample_list(0, 2, 3);
        assert!(too_many.encode(&mut vec![0u8; 512]).is_err());
        assert!(sample_list(0, 4, 1).encode(&mut [0u8; 16 + 3 * 16]).is_err());
    }

    #[test]
    fn extent_block_layout_and_round_trip() {
        let eb = ExtentBlock {
            h_check: BlockCheck { bc_crc32e: 0x0c0b_0a09, bc_ecc: 0x0e0d, bc_reserved1: 0x100f },
            h_suballoc_slot: 0x1211,
            h_suballoc_bit: 0x1413,
            h_fs_generation: 0x1817_1615,
            h_blkno: 0x201f_1e1d_1c1b_1a19,
            h_suballoc_loc: 0x2827_2625_2423_2221,
            h_next_leaf_blk: 0x302f_2e2d_2c2b_2a29,
            h_list: sample_list(1, extent_recs_per_eb(512), 2),
        };
        let mut block = vec![0xEEu8; 512];
        eb.encode(&mut block).unwrap();
        assert_eq!(&block[..8], EXTENT_BLOCK_SIGNATURE);
        let expect: Vec<u8> = (9u8..=0x30).collect();
        assert_eq!(&block[8..0x30], &expect[..]);
        assert_eq!(le16(&block, 0x30), 1);
        assert_eq!(le16(&block, 0x32), 28);
        assert_eq!(le16(&block, 0x34), 2);
        assert_eq!(ExtentBlock::decode(&block).unwrap(), eb);
        assert!(eb.validate(0x201f_1e1d_1c1b_1a19, 0x1817_1615).is_ok());
        assert!(eb.validate(1, 0x1817_1615).is_err());
        assert!(eb.validate(0x201f_1e1d_1c1b_1a19, 0).is_err());
        block[0] = b'X';
        assert!(matches!(ExtentBlock::decode(&block), Err(FormatError::BadSignature { .. })));
    }

    #[test]
    fn journal_extent_lists_match_debugfs() {
        for img in [testutil::img4k(), testutil::img512()] {
            let names = img.system_inodes();
            let files: Vec<_> =
                names.iter().filter(|(n, _)| n.starts_with("journal:") || n.as_str() == "heartbeat").collect();
            assert!(files.len() >= 3, "{files:?}");
            for (name, &blkno) in files {
                let block = img.block(blkno);
                let di = Dinode::decode(&block).unwrap();
                let el = ExtentList::decode(&block[DINODE_ID2_OFFSET..]).unwrap();
                let out = img.debugfs(&format!("stat //{name}"));
                assert_eq!(field(&out, "Tree Depth:"), u64::from(el.l_tree_depth), "{name}");
                assert_eq!(field(&out, "Count:"), u64::from(el.l_count), "{name}");
                assert_eq!(el.l_count, extent_recs_per_inode(img.block_size), "{name}");
                assert_eq!(field(&out, "Next Free Rec:"), u64::from(el.l_next_free_rec()), "{name}");
                let table = &out[out.find("## Offset").expect("extent table")..];
                let rows = table_rows(table);
                assert_eq!(rows.len(), el.recs.len(), "{name}");
                for (row, rec) in rows.iter().zip(&el.recs) {
                    assert_eq!(row[1], rec.e_cpos.to_string(), "{name}");
                    assert_eq!(row[2], rec.clusters(el.l_tree_depth).to_string(), "{name}");
                    assert_eq!(row[3], rec.e_blkno.to_string(), "{name}");
                    assert_eq!(row[4], format!("{:#x}", rec.e_flags()), "{name}");
                }
                assert_eq!(el.clusters(), u64::from(di.i_clusters), "{name}");
                let mut again = block.clone();
                el.encode(&mut again[DINODE_ID2_OFFSET..]).unwrap();
                assert_eq!(again, block, "{name}: encode(decode) changed the block");
            }
        }
    }

    #[test]
    fn decoders_never_panic_on_random_or_mutated_buffers() {
        let seed = 0xe7_e47;
        let img = testutil::img4k();
        let journal = img.block(img.system_inode("journal:0000"));
        let mut eb = vec![0u8; 4096];
        ExtentBlock {
            h_check: BlockCheck::default(),
            h_suballoc_slot: 0,
            h_suballoc_bit: 3,
            h_fs_generation: 1,
            h_blkno: 77,
            h_suballoc_loc: 0,
            h_next_leaf_blk: 0,
            h_list: sample_list(0, extent_recs_per_eb(4096), 9),
        }
        .encode(&mut eb)
        .unwrap();
        let seeds = [journal[DINODE_ID2_OFFSET..].to_vec(), eb.clone()];
        testutil::fuzz(seed, &seeds, |buf| {
            let _ = ExtentList::decode(buf);
            let _ = ExtentBlock::decode(buf);
            let _ = ExtentRec::decode(buf);
            if let Ok(l) = ExtentList::decode(buf) {
                let mut out = vec![0u8; l.encoded_len()];
                l.encode(&mut out).unwrap();
                assert_eq!(ExtentList::decode(&out).unwrap(), l);
            }
        });
    }
}
