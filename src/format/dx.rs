//! Indexed directories: the dx root ("DXDIR01", `struct ocfs2_dx_root_block`), dx leaves
//! ("DXLEAF1", `struct ocfs2_dx_leaf`), their entries, and the name hash.
//!
//! An indexed directory keeps its names in ordinary directory blocks (with trailers) and, beside
//! them, an index of `(major hash, minor hash, block)` entries. A small index lives inline in
//! the root block (`OCFS2_DX_FLAG_INLINE`); a large one is an extent tree, rooted in the root
//! block, whose logical cluster number is the major hash and whose leaves hold the entries.
//!
//! Invariants checked on decode: the signature; `de_num_used <= de_count`; `de_count` slots
//! fit in the block; the root's extent list fits (via [`ExtentList::decode`]).
//!
//! The hash ([`dx_hash`]) is ext3's TEA hash as `ocfs2_dx_dir_name_hash` computes it: the name
//! in 16-byte chunks, each packed by `str2hashbuf` and mixed into a 4-word buffer seeded from
//! the superblock's `s_dx_seed[0..3]` and `s_uuid_hash`. "." and ".." hash to (0, 0). Only
//! words 0 and 1 of the buffer are ever mixed, so only `s_dx_seed[0]` and `s_dx_seed[1]`
//! change the result. Unlike ext3, an all-zero seed is used as it is: neither the kernel nor
//! ocfs2-tools substitutes default constants.

use super::blockcheck::{BlockCheck, DX_LEAF_CHECK_OFFSET, DX_ROOT_CHECK_OFFSET};
use super::bytes::{array, cstr, le16, le32, le64, put_le16, put_le32, put_le64};
use super::extent::ExtentList;
use super::{FormatError, Result, DX_LEAF_SIGNATURE, DX_ROOT_SIGNATURE};

/// `dr_flags`: the index is the inline entry list, not an extent tree.
pub const DX_FLAG_INLINE: u8 = 0x01;
/// `sizeof(struct ocfs2_dx_entry)`.
pub const DX_ENTRY_SIZE: usize = 16;
/// Header of `struct ocfs2_dx_entry_list` before its entries.
pub const DX_ENTRY_LIST_HEADER_SIZE: usize = 8;
/// Where the union of `dr_list` / `dr_entries` starts in the root block.
pub const DX_ROOT_UNION_OFFSET: usize = 0xC0;
/// Where `dl_list` starts in a leaf block.
pub const DX_LEAF_LIST_OFFSET: usize = 0x28;

// struct ocfs2_dx_root_block
const DR_SUBALLOC_SLOT: usize = 0x10;
const DR_SUBALLOC_BIT: usize = 0x12;
const DR_FS_GENERATION: usize = 0x14;
const DR_BLKNO: usize = 0x18;
const DR_LAST_EB_BLK: usize = 0x20;
const DR_CLUSTERS: usize = 0x28;
const DR_FLAGS: usize = 0x2C;
const DR_RESERVED0: usize = 0x2D;
const DR_RESERVED1: usize = 0x2E;
const DR_DIR_BLKNO: usize = 0x30;
const DR_NUM_ENTRIES: usize = 0x38;
const DR_RESERVED2: usize = 0x3C;
const DR_FREE_BLK: usize = 0x40;
const DR_SUBALLOC_LOC: usize = 0x48;
const DR_RESERVED3: usize = 0x50;

// struct ocfs2_dx_leaf
const DL_BLKNO: usize = 0x10;
const DL_FS_GENERATION: usize = 0x18;
const DL_RESERVED0: usize = 0x1C;
const DL_RESERVED1: usize = 0x20;

// struct ocfs2_dx_entry_list
const DE_RESERVED: usize = 0x00;
const DE_COUNT: usize = 0x04;
const DE_NUM_USED: usize = 0x06;

fn entries_after(blocksize: usize, first: usize) -> u16 {
    (blocksize.saturating_sub(first) / DX_ENTRY_SIZE).min(u16::MAX as usize) as u16
}

/// Entries that fit inline in a root block (`ocfs2_dx_entries_per_root`).
pub fn dx_entries_per_root(blocksize: usize) -> u16 {
    entries_after(blocksize, DX_ROOT_UNION_OFFSET + DX_ENTRY_LIST_HEADER_SIZE)
}

/// Entries that fit in a leaf block (`ocfs2_dx_entries_per_leaf`).
pub fn dx_entries_per_leaf(blocksize: usize) -> u16 {
    entries_after(blocksize, DX_LEAF_LIST_OFFSET + DX_ENTRY_LIST_HEADER_SIZE)
}

/// One index entry: a name's hash and the directory block that holds the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct DxEntry {
    pub dx_major_hash: u32,
    pub dx_minor_hash: u32,
    pub dx_dirent_blk: u64,
}

/// `struct ocfs2_dx_entry_list`, inline in a root or filling a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DxEntryList {
    pub de_reserved: u32,
    /// Slots available.
    pub de_count: u16,
    /// The used entries; `de_num_used` is their number.
    pub de_entries: Vec<DxEntry>,
}

impl DxEntryList {
    /// An empty list with `de_count` slots.
    pub fn new(de_count: u16) -> Self {
        DxEntryList { de_reserved: 0, de_count, de_entries: Vec::new() }
    }

    /// `de_num_used`.
    pub fn de_num_used(&self) -> u16 {
        self.de_entries.len() as u16
    }

    /// True when every slot is used.
    pub fn is_full(&self) -> bool {
        self.de_entries.len() >= self.de_count as usize
    }

    /// Decodes a list from `buf`, which starts at the list and runs to the end of the block.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        const W: &str = "dx entry list";
        FormatError::need(W, buf, DX_ENTRY_LIST_HEADER_SIZE)?;
        let de_count = le16(buf, DE_COUNT);
        let used = le16(buf, DE_NUM_USED);
        let room = (buf.len() - DX_ENTRY_LIST_HEADER_SIZE) / DX_ENTRY_SIZE;
        if de_count as usize > room {
            return Err(FormatError::corrupt(
                W,
                format!("de_count {de_count} is more than the {room} entries that fit"),
            ));
        }
        if used > de_count {
            return Err(FormatError::corrupt(W, format!("de_num_used {used} exceeds de_count {de_count}")));
        }
        let de_entries = (0..used as usize)
            .map(|i| {
                let off = DX_ENTRY_LIST_HEADER_SIZE + i * DX_ENTRY_SIZE;
                DxEntry {
                    dx_major_hash: le32(buf, off),
                    dx_minor_hash: le32(buf, off + 4),
                    dx_dirent_blk: le64(buf, off + 8),
                }
            })
            .collect();
        Ok(DxEntryList { de_reserved: le32(buf, DE_RESERVED), de_count, de_entries })
    }

    /// Writes the header, the used entries and zeroes for the unused slots, as the kernel
    /// leaves a slot it frees.
    pub fn encode(&self, buf: &mut [u8]) -> Result<()> {
        const W: &str = "dx entry list";
        if self.de_entries.len() > self.de_count as usize {
            return Err(FormatError::corrupt(
                W,
                format!("{} entries but de_count {}", self.de_entries.len(), self.de_count),
            ));
        }
        let len = DX_ENTRY_LIST_HEADER_SIZE + self.de_count as usize * DX_ENTRY_SIZE;
        FormatError::need(W, buf, len)?;
        put_le32(buf, DE_RESERVED, self.de_reserved);
        put_le16(buf, DE_COUNT, self.de_count);
        put_le16(buf, DE_NUM_USED, self.de_num_used());
        buf[DX_ENTRY_LIST_HEADER_SIZE..len].fill(0);
        for (i, e) in self.de_entries.iter().enumerate() {
            let off = DX_ENTRY_LIST_HEADER_SIZE + i * DX_ENTRY_SIZE;
            put_le32(buf, off, e.dx_major_hash);
            put_le32(buf, off + 4, e.dx_minor_hash);
            put_le64(buf, off + 8, e.dx_dirent_blk);
        }
        Ok(())
    }
}

/// The union at the end of the root block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DxRootBody {
    /// Without `DX_FLAG_INLINE`: the extent tree of leaf blocks, keyed by major hash.
    Extents(ExtentList),
    /// With `DX_FLAG_INLINE`: the entries themselves.
    Inline(DxEntryList),
}

fn check_signature(block: &[u8], what: &'static str, sig: &[u8; 8]) -> Result<()> {
    let found: [u8; 8] = array(block, 0);
    if cstr(&found) != cstr(sig) {
        return Err(FormatError::BadSignature { what, found: found.to_vec() });
    }
    Ok(())
}

/// `struct ocfs2_dx_root_block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DxRootBlock {
    pub dr_check: BlockCheck,
    pub dr_suballoc_slot: u16,
    pub dr_suballoc_bit: u16,
    pub dr_fs_generation: u32,
    pub dr_blkno: u64,
    pub dr_last_eb_blk: u64,
    /// Clusters allocated to the index tree.
    pub dr_clusters: u32,
    /// `DX_FLAG_*`. Encoding sets or clears `DX_FLAG_INLINE` from [`DxRootBlock::body`].
    pub dr_flags: u8,
    pub dr_reserved0: u8,
    pub dr_reserved1: u16,
    /// The directory inode this index belongs to.
    pub dr_dir_blkno: u64,
    /// Names in the directory.
    pub dr_num_entries: u32,
    pub dr_reserved2: u32,
    /// Head of the list of directory blocks with free space, or 0.
    pub dr_free_blk: u64,
    pub dr_suballoc_loc: u64,
    pub dr_reserved3: [u64; 14],
    pub body: DxRootBody,
}

impl DxRootBlock {
    /// Decodes a whole root block; the body is read as the flags say.
    pub fn decode(block: &[u8]) -> Result<Self> {
        const W: &str = "dx root";
        FormatError::need(W, block, DX_ROOT_UNION_OFFSET + DX_ENTRY_LIST_HEADER_SIZE)?;
        check_signature(block, W, DX_ROOT_SIGNATURE)?;
        let dr_flags = block[DR_FLAGS];
        let tail = &block[DX_ROOT_UNION_OFFSET..];
        let body = if dr_flags & DX_FLAG_INLINE != 0 {
            DxRootBody::Inline(DxEntryList::decode(tail)?)
        } else {
            DxRootBody::Extents(ExtentList::decode(tail)?)
        };
        let mut dr_reserved3 = [0u64; 14];
        for (i, r) in dr_reserved3.iter_mut().enumerate() {
            *r = le64(block, DR_RESERVED3 + 8 * i);
        }
        Ok(DxRootBlock {
            dr_check: BlockCheck::decode(block, DX_ROOT_CHECK_OFFSET)?,
            dr_suballoc_slot: le16(block, DR_SUBALLOC_SLOT),
            dr_suballoc_bit: le16(block, DR_SUBALLOC_BIT),
            dr_fs_generation: le32(block, DR_FS_GENERATION),
            dr_blkno: le64(block, DR_BLKNO),
            dr_last_eb_blk: le64(block, DR_LAST_EB_BLK),
            dr_clusters: le32(block, DR_CLUSTERS),
            dr_flags,
            dr_reserved0: block[DR_RESERVED0],
            dr_reserved1: le16(block, DR_RESERVED1),
            dr_dir_blkno: le64(block, DR_DIR_BLKNO),
            dr_num_entries: le32(block, DR_NUM_ENTRIES),
            dr_reserved2: le32(block, DR_RESERVED2),
            dr_free_blk: le64(block, DR_FREE_BLK),
            dr_suballoc_loc: le64(block, DR_SUBALLOC_LOC),
            dr_reserved3,
            body,
        })
    }

    /// True when the entries are inline.
    pub fn is_inline(&self) -> bool {
        matches!(self.body, DxRootBody::Inline(_))
    }

    /// Writes the signature, the header and the body (unused slots zeroed); `dr_check` is
    /// written as stored.
    pub fn encode(&self, block: &mut [u8]) -> Result<()> {
        FormatError::need("dx root", block, DX_ROOT_UNION_OFFSET + DX_ENTRY_LIST_HEADER_SIZE)?;
        let flags = match self.body {
            DxRootBody::Inline(_) => self.dr_flags | DX_FLAG_INLINE,
            DxRootBody::Extents(_) => self.dr_flags & !DX_FLAG_INLINE,
        };
        match &self.body {
            DxRootBody::Inline(list) => list.encode(&mut block[DX_ROOT_UNION_OFFSET..])?,
            DxRootBody::Extents(list) => list.encode(&mut block[DX_ROOT_UNION_OFFSET..])?,
        }
        block[0..8].copy_from_slice(DX_ROOT_SIGNATURE);
        self.dr_check.encode(block, DX_ROOT_CHECK_OFFSET)?;
        put_le16(block, DR_SUBALLOC_SLOT, self.dr_suballoc_slot);
        put_le16(block, DR_SUBALLOC_BIT, self.dr_suballoc_bit);
        put_le32(block, DR_FS_GENERATION, self.dr_fs_generation);
        put_le64(block, DR_BLKNO, self.dr_blkno);
        put_le64(block, DR_LAST_EB_BLK, self.dr_last_eb_blk);
        put_le32(block, DR_CLUSTERS, self.dr_clusters);
        block[DR_FLAGS] = flags;
        block[DR_RESERVED0] = self.dr_reserved0;
        put_le16(block, DR_RESERVED1, self.dr_reserved1);
        put_le64(block, DR_DIR_BLKNO, self.dr_dir_blkno);
        put_le32(block, DR_NUM_ENTRIES, self.dr_num_entries);
        put_le32(block, DR_RESERVED2, self.dr_reserved2);
        put_le64(block, DR_FREE_BLK, self.dr_free_blk);
        put_le64(block, DR_SUBALLOC_LOC, self.dr_suballoc_loc);
        for (i, r) in self.dr_reserved3.iter().enumerate() {
            put_le64(block, DR_RESERVED3 + 8 * i, *r);
        }
        Ok(())
    }

    /// Checks that the root was read where it says it lives, belongs to this volume and to
    /// directory `dir_blkno`.
    pub fn check_owner(&self, blkno: u64, fs_generation: u32, dir_blkno: u64) -> Result<()> {
        owner("dx root", blkno, self.dr_blkno, fs_generation, self.dr_fs_generation)?;
        if self.dr_dir_blkno != dir_blkno {
            return Err(FormatError::corrupt(
                "dx root",
                format!("block {blkno} indexes directory {}, not {dir_blkno}", self.dr_dir_blkno),
            ));
        }
        Ok(())
    }
}

fn owner(what: &'static str, blkno: u64, stored: u64, fs_generation: u32, stored_gen: u32) -> Result<()> {
    if stored != blkno {
        return Err(FormatError::corrupt(what, format!("block {blkno} claims to be block {stored}")));
    }
    if stored_gen != fs_generation {
        return Err(FormatError::corrupt(
            what,
            format!("block {blkno} has fs generation {stored_gen:#x}, the volume {fs_generation:#x}"),
        ));
    }
    Ok(())
}

/// `struct ocfs2_dx_leaf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DxLeaf {
    pub dl_check: BlockCheck,
    pub dl_blkno: u64,
    pub dl_fs_generation: u32,
    pub dl_reserved0: u32,
    pub dl_reserved1: u64,
    pub dl_list: DxEntryList,
}

impl DxLeaf {
    /// An empty leaf as the kernel formats it (`ocfs2_dx_dir_format_cluster`).
    pub fn new(blkno: u64, fs_generation: u32, blocksize: usize) -> Self {
        DxLeaf {
            dl_check: BlockCheck::default(),
            dl_blkno: blkno,
            dl_fs_generation: fs_generation,
            dl_reserved0: 0,
            dl_reserved1: 0,
            dl_list: DxEntryList::new(dx_entries_per_leaf(blocksize)),
        }
    }

    pub fn decode(block: &[u8]) -> Result<Self> {
        const W: &str = "dx leaf";
        FormatError::need(W, block, DX_LEAF_LIST_OFFSET + DX_ENTRY_LIST_HEADER_SIZE)?;
        check_signature(block, W, DX_LEAF_SIGNATURE)?;
        Ok(DxLeaf {
            dl_check: BlockCheck::decode(block, DX_LEAF_CHECK_OFFSET)?,
            dl_blkno: le64(block, DL_BLKNO),
            dl_fs_generation: le32(block, DL_FS_GENERATION),
            dl_reserved0: le32(block, DL_RESERVED0),
            dl_reserved1: le64(block, DL_RESERVED1),
            dl_list: DxEntryList::decode(&block[DX_LEAF_LIST_OFFSET..])?,
        })
    }

    /// Writes the signature, the header and the list; `dl_check` is written as stored.
    pub fn encode(&self, block: &mut [u8]) -> Result<()> {
        FormatError::need("dx leaf", block, DX_LEAF_LIST_OFFSET + DX_ENTRY_LIST_HEADER_SIZE)?;
        self.dl_list.encode(&mut block[DX_LEAF_LIST_OFFSET..])?;
        block[0..8].copy_from_slice(DX_LEAF_SIGNATURE);
        self.dl_check.encode(block, DX_LEAF_CHECK_OFFSET)?;
        put_le64(block, DL_BLKNO, self.dl_blkno);
        put_le32(block, DL_FS_GENERATION, self.dl_fs_generation);
        put_le32(block, DL_RESERVED0, self.dl_reserved0);
        put_le64(block, DL_RESERVED1, self.dl_reserved1);
        Ok(())
    }

    /// Checks that the leaf was read where it says it lives and belongs to this volume.
    pub fn check_owner(&self, blkno: u64, fs_generation: u32) -> Result<()> {
        owner("dx leaf", blkno, self.dl_blkno, fs_generation, self.dl_fs_generation)
    }
}

/// How `str2hashbuf` widens name bytes. The kernel declares the name `const char *`, so the
/// result for bytes 0x80 and above depends on whether `char` is signed where it was compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashChar {
    /// x86 userspace (ocfs2-tools) and x86 kernels before Linux 6.2.
    Signed,
    /// Kernels built with `-funsigned-char` (all since Linux 6.2) and arm64/ppc/s390 builds.
    Unsigned,
}

/// The four hash seed words: `s_dx_seed[0..3]` then `s_uuid_hash` (`osb->osb_dx_seed`).
pub fn dx_seeds(s_dx_seed: [u32; 3], s_uuid_hash: u32) -> [u32; 4] {
    [s_dx_seed[0], s_dx_seed[1], s_dx_seed[2], s_uuid_hash]
}

const TEA_DELTA: u32 = 0x9E37_79B9;

/// ext3's TEA mixing step: 16 rounds over buf[0..2] keyed by the four input words.
fn tea_transform(buf: &mut [u32; 4], input: &[u32; 4]) {
    let (mut b0, mut b1) = (buf[0], buf[1]);
    let [a, b, c, d] = *input;
    let mut sum = 0u32;
    for _ in 0..16 {
        sum = sum.wrapping_add(TEA_DELTA);
        b0 = b0.wrapping_add((b1 << 4).wrapping_add(a) ^ b1.wrapping_add(sum) ^ (b1 >> 5).wrapping_add(b));
        b1 = b1.wrapping_add((b0 << 4).wrapping_add(c) ^ b0.wrapping_add(sum) ^ (b0 >> 5).wrapping_add(d));
    }
    buf[0] = buf[0].wrapping_add(b0);
    buf[1] = buf[1].wrapping_add(b1);
}

/// Packs the first 16 bytes of `msg` (the rest of the name) into four words, the first byte
/// most significant. Missing bytes and words are filled from a pattern of the *remaining*
/// length, which may be more than 16.
fn str2hashbuf(msg: &[u8], sign: HashChar) -> [u32; 4] {
    let len = msg.len() as u32;
    let mut pad = len | (len << 8);
    pad |= pad << 16;
    let mut out = [pad; 4];
    let mut val = pad;
    for (i, &byte) in msg.iter().take(16).enumerate() {
        if i % 4 == 0 {
            val = pad;
        }
        let c = match sign {
            HashChar::Signed => byte as i8 as i32 as u32,
            HashChar::Unsigned => byte as u32,
        };
        val = c.wrapping_add(val << 8);
        if i % 4 == 3 {
            out[i / 4] = val;
            val = pad;
        }
    }
    let full = msg.len().min(16) / 4;
    if full < 4 {
        // The partial word (or the bare pad if the chunk ended on a word boundary).
        out[full] = val;
    }
    out
}

/// `(major, minor)` hash of `name` with the kernel's x86 (signed `char`) packing; see
/// [`dx_hash_with`].
pub fn dx_hash(name: &[u8], seeds: [u32; 4]) -> (u32, u32) {
    dx_hash_with(name, seeds, HashChar::Signed)
}

/// `(major, minor)` hash of `name` (`ocfs2_dx_dir_name_hash`). Names of ASCII bytes hash the
/// same either way; for bytes 0x80 and above the two packings differ (see [`HashChar`]).
pub fn dx_hash_with(name: &[u8], seeds: [u32; 4], sign: HashChar) -> (u32, u32) {
    if name == b"." || name == b".." {
        return (0, 0);
    }
    let mut buf = seeds;
    for chunk_start in (0..name.len()).step_by(16) {
        let input = str2hashbuf(&name[chunk_start..], sign);
        tea_transform(&mut buf, &input);
    }
    (buf[0], buf[1])
}

/// Which block of a leaf cluster holds a minor hash (`__ocfs2_dx_dir_hash_idx`).
pub fn dx_hash_block_index(minor_hash: u32, blocks_per_cluster: u32) -> u32 {
    minor_hash & blocks_per_cluster.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::extent::ExtentRec;

    #[test]
    fn capacities_match_debugfs_counts() {
        // debugfs.ocfs2 dx_dump on a 4K volume: inline root "Count: 243", leaf "Count: 253".
        assert_eq!(dx_entries_per_root(4096), 243);
        assert_eq!(dx_entries_per_leaf(4096), 253);
        assert_eq!(dx_entries_per_root(512), 19);
        assert_eq!(dx_entries_per_leaf(512), 29);
    }

    #[test]
    fn str2hashbuf_pads_with_the_remaining_length() {
        // "abcde": one full word, a partial word seeded with the pad, then pad words.
        let pad = 0x0505_0505;
        let w = str2hashbuf(b"abcde", HashChar::Signed);
        assert_eq!(w, [0x6162_6364, (pad << 8) + 0x65, pad, pad]);
        // A chunk that ends on a word boundary stores the bare pad after it.
        let pad4 = 0x0404_0404;
        assert_eq!(str2hashbuf(b"abcd", HashChar::Signed), [0x6162_6364, pad4, pad4, pad4]);
        // Only 16 bytes are packed, but the pad is made from the whole remaining length.
        let long = [b'x'; 20];
        let w = str2hashbuf(&long, HashChar::Signed);
        assert_eq!(w, [0x7878_7878; 4]);
        // A high byte sign-extends with signed chars.
        assert_eq!(str2hashbuf(&[0xC3], HashChar::Signed)[0], (0x0101_0101u32 << 8).wrapping_add(0xFFFF_FFC3));
        assert_eq!(str2hashbuf(&[0xC3], HashChar::Unsigned)[0], (0x0101_0101u32 << 8) + 0xC3);
    }

    #[test]
    fn dot_and_dotdot_hash_to_zero() {
        let seeds = [1, 2, 3, 4];
        assert_eq!(dx_hash(b".", seeds), (0, 0));
        assert_eq!(dx_hash(b"..", seeds), (0, 0));
        assert_ne!(dx_hash(b"...", seeds), (0, 0));
    }

    #[test]
    fn only_the_first_two_seed_words_matter() {
        let a = dx_hash(b"lost+found", [10, 20, 30, 40]);
        assert_eq!(a, dx_hash(b"lost+found", [10, 20, 0, 0]));
        assert_ne!(a, dx_hash(b"lost+found", [11, 20, 30, 40]));
        assert_eq!(dx_seeds([1, 2, 3], 4), [1, 2, 3, 4]);
        assert_eq!(dx_hash_with(b"ascii", [5, 6, 0, 0], HashChar::Unsigned), dx_hash(b"ascii", [5, 6, 0, 0]));
        assert_ne!(dx_hash_with(b"\xc3\xa9", [5, 6, 0, 0], HashChar::Unsigned), dx_hash(b"\xc3\xa9", [5, 6, 0, 0]));
    }

    #[test]
    fn inline_root_round_trips_and_sets_the_flag() {
        let mut list = DxEntryList::new(dx_entries_per_root(512));
        list.de_entries.push(DxEntry { dx_major_hash: 1, dx_minor_hash: 2, dx_dirent_blk: 3 });
        let root = DxRootBlock {
            dr_check: BlockCheck::default(),
            dr_suballoc_slot: 0,
            dr_suballoc_bit: 1,
            dr_fs_generation: 0xABCD,
            dr_blkno: 77,
            dr_last_eb_blk: 0,
            dr_clusters: 0,
            dr_flags: 0,
            dr_reserved0: 0,
            dr_reserved1: 0,
            dr_dir_blkno: 5,
            dr_num_entries: 1,
            dr_reserved2: 0,
            dr_free_blk: 0,
            dr_suballoc_loc: 66,
            dr_reserved3: [0; 14],
            body: DxRootBody::Inline(list),
        };
        let mut block = vec![0xFFu8; 512];
        root.encode(&mut block).unwrap();
        assert_eq!(&block[..8], b"DXDIR01\0");
        assert_eq!(block[DR_FLAGS], DX_FLAG_INLINE);
        assert_eq!(le64(&block, 0x30), 5);
        assert_eq!(le16(&block, 0xC4), 19);
        assert_eq!(le16(&block, 0xC6), 1);
        assert_eq!(le32(&block, 0xC8), 1);
        assert!(block[0xD8..512 - 8].iter().all(|&b| b == 0));
        let back = DxRootBlock::decode(&block).unwrap();
        assert_eq!(back, DxRootBlock { dr_flags: DX_FLAG_INLINE, ..root.clone() });
        back.check_owner(77, 0xABCD, 5).unwrap();
        assert!(back.check_owner(78, 0xABCD, 5).is_err());
        assert!(back.check_owner(77, 0xABCE, 5).is_err());
        assert!(back.check_owner(77, 0xABCD, 6).is_err());

        // The same root with an extent tree clears the flag.
        let mut el = ExtentList::new(crate::format::extent::extent_recs_per_dx_root(512));
        el.recs.push(ExtentRec::leaf(0, 1, 0, 900));
        let tree = DxRootBlock { dr_flags: DX_FLAG_INLINE, body: DxRootBody::Extents(el), ..root };
        tree.encode(&mut block).unwrap();
        assert_eq!(block[DR_FLAGS], 0);
        let back = DxRootBlock::decode(&block).unwrap();
        assert!(!back.is_inline());
        assert_eq!(back.body, tree.body);
    }

    #[test]
    fn leaf_round_trips_and_checks_counts() {
        let mut leaf = DxLeaf::new(900, 7, 512);
        for i in 0..3 {
            leaf.dl_list.de_entries.push(DxEntry {
                dx_major_hash: i,
                dx_minor_hash: i * 2,
                dx_dirent_blk: 100 + i as u64,
            });
        }
        let mut block = vec![0u8; 512];
        leaf.encode(&mut block).unwrap();
        assert_eq!(&block[..8], b"DXLEAF1\0");
        assert_eq!(le64(&block, 0x10), 900);
        assert_eq!(le16(&block, 0x2C), 29);
        assert_eq!(le16(&block, 0x2E), 3);
        let back = DxLeaf::decode(&block).unwrap();
        assert_eq!(back, leaf);
        back.check_owner(900, 7).unwrap();
        assert!(!back.dl_list.is_full());

        put_le16(&mut block, 0x2C, 30);
        assert!(DxLeaf::decode(&block).is_err());
        put_le16(&mut block, 0x2C, 2);
        assert!(DxLeaf::decode(&block).is_err());
        block[0] = b'X';
        assert!(matches!(DxLeaf::decode(&block), Err(FormatError::BadSignature { .. })));
        leaf.dl_list.de_count = 2;
        assert!(leaf.encode(&mut block).is_err());
    }

    #[test]
    fn block_index_masks_with_blocks_per_cluster() {
        assert_eq!(dx_hash_block_index(0xFFFF_FFFF, 8), 7);
        assert_eq!(dx_hash_block_index(0x1234_5678, 1), 0);
    }

    #[test]
    fn random_and_mutated_blocks_never_panic_the_dx_decoders() {
        let mut inline = DxEntryList::new(dx_entries_per_root(4096));
        inline.de_entries.push(DxEntry { dx_major_hash: 7, dx_minor_hash: 8, dx_dirent_blk: 9 });
        let root = DxRootBlock {
            dr_check: BlockCheck::default(),
            dr_suballoc_slot: 0,
            dr_suballoc_bit: 0,
            dr_fs_generation: 1,
            dr_blkno: 2,
            dr_last_eb_blk: 0,
            dr_clusters: 0,
            dr_flags: 0,
            dr_reserved0: 0,
            dr_reserved1: 0,
            dr_dir_blkno: 3,
            dr_num_entries: 1,
            dr_reserved2: 0,
            dr_free_blk: 0,
            dr_suballoc_loc: 0,
            dr_reserved3: [0; 14],
            body: DxRootBody::Inline(inline),
        };
        let mut seed_inline = vec![0u8; 4096];
        root.encode(&mut seed_inline).unwrap();
        let mut el = ExtentList::new(crate::format::extent::extent_recs_per_dx_root(4096));
        el.recs.push(ExtentRec::leaf(0, 1, 0, 900));
        let mut seed_tree = vec![0u8; 4096];
        DxRootBlock { body: DxRootBody::Extents(el), ..root }.encode(&mut seed_tree).unwrap();
        let mut leaf = DxLeaf::new(900, 1, 4096);
        leaf.dl_list.de_entries.push(DxEntry { dx_major_hash: 1, dx_minor_hash: 2, dx_dirent_blk: 3 });
        let mut seed_leaf = vec![0u8; 4096];
        leaf.encode(&mut seed_leaf).unwrap();

        crate::format::testutil::fuzz(0xD1E5_0003, &[seed_inline, seed_tree, seed_leaf], |buf| {
            if let Ok(r) = DxRootBlock::decode(buf) {
                let mut copy = buf.to_vec();
                r.encode(&mut copy).unwrap();
                assert_eq!(DxRootBlock::decode(&copy).unwrap(), r);
                let _ = r.check_owner(2, 1, 3);
            }
            if let Ok(l) = DxLeaf::decode(buf) {
                let mut copy = buf.to_vec();
                l.encode(&mut copy).unwrap();
                assert_eq!(DxLeaf::decode(&copy).unwrap(), l);
            }
            let _ = DxEntryList::decode(buf);
            let name = &buf[..buf.len().min(255)];
            let _ = dx_hash_with(name, [1, 2, 3, 4], HashChar::Signed);
            let _ = dx_hash_with(name, [1, 2, 3, 4], HashChar::Unsigned);
        });
    }
}

/// Tests whose other side is ocfs2-tools: tunefs.ocfs2 builds the indexes, debugfs.ocfs2
/// prints them.
#[cfg(test)]
mod reference_tests {
    use super::*;
    use crate::format::bytes::le32;
    use crate::format::dir::{dir_entries, DirEntry};
    use crate::format::dir_trailer::trailer_offset;
    use crate::format::testutil::{field, indexed_dirs_image, odd_names, TestImage};

    /// `(major, minor, block)` rows of a debugfs dx listing, in order.
    fn dx_rows(out: &str) -> Vec<DxEntry> {
        out.lines()
            .filter_map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                if c.len() != 4 || !c[1].starts_with("(0x") {
                    return None;
                }
                let hex = |t: &str| {
                    u32::from_str_radix(t.trim_matches(|ch| ch == '(' || ch == ')').trim_start_matches("0x"), 16)
                };
                Some(DxEntry {
                    dx_major_hash: hex(c[1]).ok()?,
                    dx_minor_hash: hex(c[2]).ok()?,
                    dx_dirent_blk: c[3].parse().ok()?,
                })
            })
            .collect()
    }

    /// Every live name of directory `dir` with the block that holds it, read with our decoders.
    fn names_and_blocks(img: &TestImage, dir: &str) -> Vec<(Vec<u8>, u64)> {
        let size = field(&img.debugfs(&format!("stat {dir}")), "Size:");
        let mut out = Vec::new();
        for lblk in 0..size / img.block_size as u64 {
            let blkno = img.bmap(dir, lblk);
            let block = img.block(blkno);
            for item in dir_entries(&block[..trailer_offset(img.block_size)], false) {
                let (_, de): (usize, DirEntry) = item.expect("valid dir block");
                out.push((de.name, blkno));
            }
        }
        out
    }

    fn seeds(img: &TestImage) -> [u32; 4] {
        let sb = img.block(2);
        dx_seeds([le32(&sb, 0x17C), le32(&sb, 0x180), le32(&sb, 0x184)], le32(&sb, 0x104))
    }

    fn check_dir(img: &TestImage, dir: &str, expect_inline: bool) -> usize {
        let stat = img.debugfs(&format!("stat {dir}"));
        let root_blkno = field(&stat, "Indexed Tree Root:");
        let raw = img.block(root_blkno);
        let root = DxRootBlock::decode(&raw).expect("dx root");
        let shown = img.debugfs(&format!("dx_root <{root_blkno}>"));
        assert_eq!(root.dr_blkno, field(&shown, "Dir Index Root:"));
        assert_eq!(root.dr_fs_generation as u64, field(&shown, "FS Generation:"));
        assert_eq!(root.dr_clusters as u64, field(&shown, "Clusters:"));
        assert_eq!(root.dr_last_eb_blk, field(&shown, "Last Extblk:"));
        assert_eq!(root.dr_dir_blkno, field(&shown, "Dir Inode:"));
        assert_eq!(root.dr_suballoc_slot as u64, field(&shown, "Sub Alloc Slot:"));
        assert_eq!(root.dr_suballoc_bit as u64, field(&shown, "Sub Alloc Bit:"));
        assert_eq!(root.dr_suballoc_loc, field(&shown, "SubAlloc Group:"));
        assert_eq!(root.dr_num_entries as u64, field(&shown, "Total Entry Count:"));
        assert_eq!(root.is_inline(), expect_inline, "{dir}: {shown}");
        root.check_owner(root_blkno, root.dr_fs_generation, root.dr_dir_blkno).unwrap();

        let mut again = vec![0u8; img.block_size];
        root.encode(&mut again).unwrap();
        assert_eq!(again, raw, "dx root of {dir} re-encodes byte for byte");

        // Past the header, whose "Total Entry Count:" would match "Count:" too.
        let shown = &shown[shown.find("ECC:").expect("dx_root prints the check")..];
        let mut entries = Vec::new();
        match &root.body {
            DxRootBody::Inline(list) => {
                assert_eq!(list.de_count as u64, field(shown, "Count:"));
                assert_eq!(list.de_num_used() as u64, field(shown, "Num Used:"));
                assert_eq!(list.de_count, dx_entries_per_root(img.block_size));
                entries.extend_from_slice(&list.de_entries);
            }
            DxRootBody::Extents(el) => {
                assert_eq!(el.l_count as u64, field(shown, "Count:"));
                assert_eq!(el.l_next_free_rec() as u64, field(shown, "Next Free Rec:"));
                let rows: Vec<Vec<u64>> = shown
                    .lines()
                    .map(|l| l.split_whitespace().filter_map(|t| t.parse().ok()).collect::<Vec<u64>>())
                    .filter(|r| r.len() == 4)
                    .collect();
                let recs: Vec<Vec<u64>> = el
                    .recs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| vec![i as u64, r.e_cpos as u64, r.e_leaf_clusters() as u64, r.e_blkno])
                    .collect();
                assert_eq!(recs, rows, "{dir}: dx root extent records");
                assert!(el.is_leaf(), "a two-level dx tree is not expected here");
                for rec in &el.recs {
                    for b in 0..rec.e_leaf_clusters() as u64 {
                        let blkno = rec.e_blkno + b;
                        let raw = img.block(blkno);
                        let leaf = DxLeaf::decode(&raw).expect("dx leaf");
                        leaf.check_owner(blkno, root.dr_fs_generation).unwrap();
                        let shown = img.debugfs(&format!("dx_leaf <{blkno}>"));
                        assert_eq!(leaf.dl_list.de_count as u64, field(&shown, "\tCount:"));
                        assert_eq!(leaf.dl_list.de_num_used() as u64, field(&shown, "Num Used:"));
                        assert_eq!(leaf.dl_list.de_entries, dx_rows(&shown), "leaf {blkno}");
                        let mut again = vec![0u8; img.block_size];
                        leaf.encode(&mut again).unwrap();
                        assert_eq!(again, raw, "dx leaf {blkno} re-encodes byte for byte");
                        entries.extend_from_slice(&leaf.dl_list.de_entries);
                    }
                }
            }
        }
        assert_eq!(entries, dx_rows(&img.debugfs(&format!("dx_dump {dir}"))), "{dir}: dx_dump rows");
        assert_eq!(entries.len() as u64, root.dr_num_entries as u64);

        // Every name, hashed by us, is indexed by tunefs under the block that holds it.
        let seeds = seeds(img);
        let mut ours: Vec<DxEntry> = names_and_blocks(img, dir)
            .into_iter()
            .map(|(name, blk)| {
                let (major, minor) = dx_hash(&name, seeds);
                DxEntry { dx_major_hash: major, dx_minor_hash: minor, dx_dirent_blk: blk }
            })
            .collect();
        let mut theirs = entries.clone();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{dir}: our hashes of the names against the tools' index");
        entries.len()
    }

    #[test]
    fn dx_trees_built_by_tunefs_decode_and_match_our_hashes() {
        let img = indexed_dirs_image("dx");
        // The root directory fits inline; the 64-slot system directory needs leaves.
        let n_root = check_dir(&img, "/", true);
        assert_eq!(n_root, 3 + odd_names().len());
        let n_sys = check_dir(&img, "//", false);
        assert!(n_sys > 2 * dx_entries_per_root(4096) as usize / 2, "system dir indexed {n_sys} names");
        check_dir(&img, "//orphan_dir:0000", true);
    }

    #[test]
    fn x86_tools_hash_high_bytes_as_signed_chars() {
        // The tools' str2hashbuf widens `char`, which is signed on x86: their index must match
        // the signed packing, and would not match the unsigned one.
        let img = indexed_dirs_image("dxsign");
        let seeds = seeds(&img);
        let indexed = dx_rows(&img.debugfs("dx_dump /"));
        for name in odd_names().into_iter().filter(|n| n.iter().any(|&b| b >= 0x80)) {
            let (maj, min) = dx_hash_with(&name, seeds, HashChar::Signed);
            assert!(indexed.iter().any(|e| (e.dx_major_hash, e.dx_minor_hash) == (maj, min)), "{name:x?}");
            let (umaj, umin) = dx_hash_with(&name, seeds, HashChar::Unsigned);
            assert!(!indexed.iter().any(|e| (e.dx_major_hash, e.dx_minor_hash) == (umaj, umin)), "{name:x?}");
        }
    }
}
