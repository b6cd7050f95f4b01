//! `struct ocfs2_dinode`: the fixed 0xC0-byte head of every inode block.
//!
//! The second union (`id2`, at [`DINODE_ID2_OFFSET`]) runs to the end of the block and means
//! something different for each kind of inode (superblock, chain list, extent list, local
//! alloc, truncate log, inline data, fast symlink text). It is not part of [`Dinode`]: its
//! typed decoders take `&block[DINODE_ID2_OFFSET..]`, so decoding an inode head is cheap.
//! [`Dinode::encode`] writes bytes 0x00..0xC0 only.
//!
//! `i_check` is decoded and encoded as stored; metaecc is recomputed by the caller with
//! [`blockcheck::compute`](super::blockcheck::compute) after the whole block is filled.

use super::blockcheck::{BlockCheck, INODE_CHECK_OFFSET};
use super::bytes::{array, cstr, le16, le32, le64, put_le16, put_le32, put_le64};
use super::constants::*;
use super::{FormatError, Result};

/// Where the `id2` union starts in an inode block.
pub const DINODE_ID2_OFFSET: usize = 0xC0;
/// Offset of the `id1` union.
pub const DINODE_ID1_OFFSET: usize = 0xB8;
/// `OCFS2_LINKS_HI_SHIFT`: `i_links_count_hi` holds links count bits 16..32.
pub const LINKS_HI_SHIFT: u32 = 16;
/// `OCFS2_DX_LINK_MAX`: the link limit with indexed directories.
pub const DX_LINK_MAX: u32 = (1 << 31) - 1;

// Field offsets, from the kernel header.
const I_SIGNATURE: usize = 0x00;
const I_GENERATION: usize = 0x08;
const I_SUBALLOC_SLOT: usize = 0x0C;
const I_SUBALLOC_BIT: usize = 0x0E;
const I_LINKS_COUNT_HI: usize = 0x10;
const I_XATTR_INLINE_SIZE: usize = 0x12;
const I_CLUSTERS: usize = 0x14;
const I_UID: usize = 0x18;
const I_GID: usize = 0x1C;
const I_SIZE: usize = 0x20;
const I_MODE: usize = 0x28;
const I_LINKS_COUNT: usize = 0x2A;
const I_FLAGS: usize = 0x2C;
const I_ATIME: usize = 0x30;
const I_CTIME: usize = 0x38;
const I_MTIME: usize = 0x40;
const I_DTIME: usize = 0x48;
const I_BLKNO: usize = 0x50;
const I_LAST_EB_BLK: usize = 0x58;
const I_FS_GENERATION: usize = 0x60;
const I_ATIME_NSEC: usize = 0x64;
const I_CTIME_NSEC: usize = 0x68;
const I_MTIME_NSEC: usize = 0x6C;
const I_ATTR: usize = 0x70;
const I_ORPHANED_SLOT: usize = 0x74;
const I_DYN_FEATURES: usize = 0x76;
const I_XATTR_LOC: usize = 0x78;
const I_DX_ROOT: usize = 0x88;
const I_REFCOUNT_LOC: usize = 0x90;
const I_SUBALLOC_LOC: usize = 0x98;
const I_DIO_ORPHANED_SLOT: usize = 0xA0;
const I_RESERVED1: usize = 0xA2;
const I_RESERVED2: usize = 0xA8;

/// `id1.bitmap1`, the counters of an allocator inode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bitmap1 {
    /// Bits (clusters or blocks) in use.
    pub i_used: u32,
    /// Bits the allocator covers.
    pub i_total: u32,
}

/// `id1.journal1`, the state of a journal inode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Journal1 {
    /// [`JOURNAL_DIRTY_FL`] while the journal may hold transactions to replay.
    pub ij_flags: u32,
    /// Bumped each time the journal is recovered after a crash.
    pub ij_recovery_generation: u32,
}

/// The head of an inode block (`struct ocfs2_dinode` up to `id2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dinode {
    /// "INODE01", or "OCFSV2" for the superblock inode.
    pub i_signature: [u8; 8],
    pub i_generation: u32,
    /// Slot whose suballocator owns the inode; [`INVALID_SLOT`] for the global one.
    pub i_suballoc_slot: u16,
    pub i_suballoc_bit: u16,
    pub i_links_count_hi: u16,
    pub i_xattr_inline_size: u16,
    pub i_clusters: u32,
    pub i_uid: u32,
    pub i_gid: u32,
    pub i_size: u64,
    pub i_mode: u16,
    pub i_links_count: u16,
    pub i_flags: u32,
    pub i_atime: u64,
    pub i_ctime: u64,
    pub i_mtime: u64,
    pub i_dtime: u64,
    pub i_blkno: u64,
    pub i_last_eb_blk: u64,
    pub i_fs_generation: u32,
    pub i_atime_nsec: u32,
    pub i_ctime_nsec: u32,
    pub i_mtime_nsec: u32,
    pub i_attr: u32,
    pub i_orphaned_slot: u16,
    pub i_dyn_features: u16,
    pub i_xattr_loc: u64,
    pub i_check: BlockCheck,
    pub i_dx_root: u64,
    pub i_refcount_loc: u64,
    pub i_suballoc_loc: u64,
    pub i_dio_orphaned_slot: u16,
    pub i_reserved1: [u16; 3],
    pub i_reserved2: [u64; 2],
    /// The `id1` union as its raw 64 bits; see the `bitmap1`/`journal1`/`dev1` accessors.
    pub id1: u64,
}

fn signature_is(field: &[u8], sig: &[u8; 8]) -> bool {
    // The kernel compares with strcmp/memcmp of the string: bytes up to the NUL must match.
    cstr(field) == cstr(sig)
}

impl Dinode {
    /// An all-zero inode head carrying the "INODE01" signature.
    pub fn new() -> Self {
        Dinode {
            i_signature: *INODE_SIGNATURE,
            i_generation: 0,
            i_suballoc_slot: 0,
            i_suballoc_bit: 0,
            i_links_count_hi: 0,
            i_xattr_inline_size: 0,
            i_clusters: 0,
            i_uid: 0,
            i_gid: 0,
            i_size: 0,
            i_mode: 0,
            i_links_count: 0,
            i_flags: 0,
            i_atime: 0,
            i_ctime: 0,
            i_mtime: 0,
            i_dtime: 0,
            i_blkno: 0,
            i_last_eb_blk: 0,
            i_fs_generation: 0,
            i_atime_nsec: 0,
            i_ctime_nsec: 0,
            i_mtime_nsec: 0,
            i_attr: 0,
            i_orphaned_slot: 0,
            i_dyn_features: 0,
            i_xattr_loc: 0,
            i_check: BlockCheck::default(),
            i_dx_root: 0,
            i_refcount_loc: 0,
            i_suballoc_loc: 0,
            i_dio_orphaned_slot: 0,
            i_reserved1: [0; 3],
            i_reserved2: [0; 2],
            id1: 0,
        }
    }

    /// Decodes an ordinary inode ("INODE01").
    pub fn decode(block: &[u8]) -> Result<Self> {
        Self::decode_with("inode", block, INODE_SIGNATURE)
    }

    /// Decodes the superblock inode at block 2, whose signature is "OCFSV2".
    pub fn decode_superblock_inode(block: &[u8]) -> Result<Self> {
        Self::decode_with("superblock inode", block, SUPER_BLOCK_SIGNATURE)
    }

    fn decode_with(what: &'static str, block: &[u8], sig: &[u8; 8]) -> Result<Self> {
        FormatError::need(what, block, DINODE_ID2_OFFSET)?;
        let i_signature: [u8; 8] = array(block, I_SIGNATURE);
        if !signature_is(&i_signature, sig) {
            return Err(FormatError::BadSignature { what, found: i_signature.to_vec() });
        }
        let b = block;
        Ok(Dinode {
            i_signature,
            i_generation: le32(b, I_GENERATION),
            i_suballoc_slot: le16(b, I_SUBALLOC_SLOT),
            i_suballoc_bit: le16(b, I_SUBALLOC_BIT),
            i_links_count_hi: le16(b, I_LINKS_COUNT_HI),
            i_xattr_inline_size: le16(b, I_XATTR_INLINE_SIZE),
            i_clusters: le32(b, I_CLUSTERS),
            i_uid: le32(b, I_UID),
            i_gid: le32(b, I_GID),
            i_size: le64(b, I_SIZE),
            i_mode: le16(b, I_MODE),
            i_links_count: le16(b, I_LINKS_COUNT),
            i_flags: le32(b, I_FLAGS),
            i_atime: le64(b, I_ATIME),
            i_ctime: le64(b, I_CTIME),
            i_mtime: le64(b, I_MTIME),
            i_dtime: le64(b, I_DTIME),
            i_blkno: le64(b, I_BLKNO),
            i_last_eb_blk: le64(b, I_LAST_EB_BLK),
            i_fs_generation: le32(b, I_FS_GENERATION),
            i_atime_nsec: le32(b, I_ATIME_NSEC),
            i_ctime_nsec: le32(b, I_CTIME_NSEC),
            i_mtime_nsec: le32(b, I_MTIME_NSEC),
            i_attr: le32(b, I_ATTR),
            i_orphaned_slot: le16(b, I_ORPHANED_SLOT),
            i_dyn_features: le16(b, I_DYN_FEATURES),
            i_xattr_loc: le64(b, I_XATTR_LOC),
            i_check: BlockCheck::decode(b, INODE_CHECK_OFFSET)?,
            i_dx_root: le64(b, I_DX_ROOT),
            i_refcount_loc: le64(b, I_REFCOUNT_LOC),
            i_suballoc_loc: le64(b, I_SUBALLOC_LOC),
            i_dio_orphaned_slot: le16(b, I_DIO_ORPHANED_SLOT),
            i_reserved1: [le16(b, I_RESERVED1), le16(b, I_RESERVED1 + 2), le16(b, I_RESERVED1 + 4)],
            i_reserved2: [le64(b, I_RESERVED2), le64(b, I_RESERVED2 + 8)],
            id1: le64(b, DINODE_ID1_OFFSET),
        })
    }

    /// Writes bytes 0x00..0xC0 of `block`; the rest of the block is left alone.
    pub fn encode(&self, block: &mut [u8]) -> Result<()> {
        FormatError::need("inode", block, DINODE_ID2_OFFSET)?;
        let b = block;
        b[I_SIGNATURE..I_SIGNATURE + 8].copy_from_slice(&self.i_signature);
        put_le32(b, I_GENERATION, self.i_generation);
        put_le16(b, I_SUBALLOC_SLOT, self.i_suballoc_slot);
        put_le16(b, I_SUBALLOC_BIT, self.i_suballoc_bit);
        put_le16(b, I_LINKS_COUNT_HI, self.i_links_count_hi);
        put_le16(b, I_XATTR_INLINE_SIZE, self.i_xattr_inline_size);
        put_le32(b, I_CLUSTERS, self.i_clusters);
        put_le32(b, I_UID, self.i_uid);
        put_le32(b, I_GID, self.i_gid);
        put_le64(b, I_SIZE, self.i_size);
        put_le16(b, I_MODE, self.i_mode);
        put_le16(b, I_LINKS_COUNT, self.i_links_count);
        put_le32(b, I_FLAGS, self.i_flags);
        put_le64(b, I_ATIME, self.i_atime);
        put_le64(b, I_CTIME, self.i_ctime);
        put_le64(b, I_MTIME, self.i_mtime);
        put_le64(b, I_DTIME, self.i_dtime);
        put_le64(b, I_BLKNO, self.i_blkno);
        put_le64(b, I_LAST_EB_BLK, self.i_last_eb_blk);
        put_le32(b, I_FS_GENERATION, self.i_fs_generation);
        put_le32(b, I_ATIME_NSEC, self.i_atime_nsec);
        put_le32(b, I_CTIME_NSEC, self.i_ctime_nsec);
        put_le32(b, I_MTIME_NSEC, self.i_mtime_nsec);
        put_le32(b, I_ATTR, self.i_attr);
        put_le16(b, I_ORPHANED_SLOT, self.i_orphaned_slot);
        put_le16(b, I_DYN_FEATURES, self.i_dyn_features);
        put_le64(b, I_XATTR_LOC, self.i_xattr_loc);
        self.i_check.encode(b, INODE_CHECK_OFFSET)?;
        put_le64(b, I_DX_ROOT, self.i_dx_root);
        put_le64(b, I_REFCOUNT_LOC, self.i_refcount_loc);
        put_le64(b, I_SUBALLOC_LOC, self.i_suballoc_loc);
        put_le16(b, I_DIO_ORPHANED_SLOT, self.i_dio_orphaned_slot);
        for (k, v) in self.i_reserved1.iter().enumerate() {
            put_le16(b, I_RESERVED1 + 2 * k, *v);
        }
        for (k, v) in self.i_reserved2.iter().enumerate() {
            put_le64(b, I_RESERVED2 + 8 * k, *v);
        }
        put_le64(b, DINODE_ID1_OFFSET, self.id1);
        Ok(())
    }

    /// The checks of the kernel's `ocfs2_validate_inode_block` that need only the block's own
    /// number and the volume's generation: `i_blkno`, `OCFS2_VALID_FL`, `i_fs_generation`.
    pub fn validate(&self, blkno: u64, fs_generation: u32) -> Result<()> {
        if self.i_blkno != blkno {
            return Err(FormatError::corrupt("inode", format!("block {blkno} claims i_blkno {}", self.i_blkno)));
        }
        if !self.is_valid() {
            return Err(FormatError::corrupt("inode", format!("block {blkno} lacks OCFS2_VALID_FL")));
        }
        if self.i_fs_generation != fs_generation {
            return Err(FormatError::corrupt(
                "inode",
                format!("block {blkno} has fs generation {:#x}, the volume {fs_generation:#x}", self.i_fs_generation),
            ));
        }
        Ok(())
    }

    /// The link count, as `ocfs2_read_links_count`: the high half only counts for indexed dirs.
    pub fn links_count(&self) -> u32 {
        let lo = u32::from(self.i_links_count);
        if self.i_dyn_features & INDEXED_DIR_FL != 0 {
            lo | (u32::from(self.i_links_count_hi) << LINKS_HI_SHIFT)
        } else {
            lo
        }
    }

    /// Stores `nlink` in `i_links_count` and `i_links_count_hi` (`ocfs2_set_links_count`).
    pub fn set_links_count(&mut self, nlink: u32) {
        self.i_links_count = nlink as u16;
        self.i_links_count_hi = (nlink >> LINKS_HI_SHIFT) as u16;
    }

    pub fn is_valid(&self) -> bool {
        self.i_flags & VALID_FL != 0
    }
    pub fn is_system(&self) -> bool {
        self.i_flags & SYSTEM_FL != 0
    }
    pub fn is_orphaned(&self) -> bool {
        self.i_flags & ORPHANED_FL != 0
    }
    pub fn is_superblock(&self) -> bool {
        self.i_flags & SUPER_BLOCK_FL != 0
    }
    pub fn is_local_alloc(&self) -> bool {
        self.i_flags & LOCAL_ALLOC_FL != 0
    }
    pub fn is_bitmap(&self) -> bool {
        self.i_flags & BITMAP_FL != 0
    }
    pub fn is_journal(&self) -> bool {
        self.i_flags & JOURNAL_FL != 0
    }
    pub fn is_heartbeat(&self) -> bool {
        self.i_flags & HEARTBEAT_FL != 0
    }
    /// A chain allocator: `id2` is an `ocfs2_chain_list`.
    pub fn is_chain(&self) -> bool {
        self.i_flags & CHAIN_FL != 0
    }
    /// A truncate log: `id2` is an `ocfs2_truncate_log`.
    pub fn is_dealloc(&self) -> bool {
        self.i_flags & DEALLOC_FL != 0
    }
    pub fn is_quota(&self) -> bool {
        self.i_flags & QUOTA_FL != 0
    }

    /// `id2` is an `ocfs2_inline_data` instead of an extent list.
    pub fn has_inline_data(&self) -> bool {
        self.i_dyn_features & INLINE_DATA_FL != 0
    }
    pub fn has_xattr(&self) -> bool {
        self.i_dyn_features & HAS_XATTR_FL != 0
    }
    /// The last `i_xattr_inline_size` bytes of the block hold xattrs.
    pub fn has_inline_xattr(&self) -> bool {
        self.i_dyn_features & INLINE_XATTR_FL != 0
    }
    pub fn is_indexed_dir(&self) -> bool {
        self.i_dyn_features & INDEXED_DIR_FL != 0
    }
    pub fn has_refcount(&self) -> bool {
        self.i_dyn_features & HAS_REFCOUNT_FL != 0
    }

    /// Bytes at the end of the block taken by inline xattrs (0 without them).
    pub fn inline_xattr_size(&self) -> u16 {
        if self.has_inline_xattr() {
            self.i_xattr_inline_size
        } else {
            0
        }
    }

    pub fn file_type(&self) -> u16 {
        self.i_mode & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.file_type() == S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type() == S_IFLNK
    }
    /// A symlink whose target sits in `id2` (`ocfs2_inode_is_fast_symlink`: no clusters).
    pub fn is_fast_symlink(&self) -> bool {
        self.is_symlink() && self.i_clusters == 0
    }
    /// A character or block device, whose number is in `id1.dev1.i_rdev`.
    pub fn is_device(&self) -> bool {
        matches!(self.file_type(), S_IFCHR | S_IFBLK)
    }

    /// The `id1` union read as `bitmap1`.
    pub fn bitmap1(&self) -> Bitmap1 {
        Bitmap1 { i_used: self.i_used(), i_total: self.i_total() }
    }

    /// The `id1` union read as `journal1`.
    pub fn journal1(&self) -> Journal1 {
        Journal1 { ij_flags: self.ij_flags(), ij_recovery_generation: self.ij_recovery_generation() }
    }

    /// `id1.bitmap1.i_used`: bits in use in an allocator.
    pub fn i_used(&self) -> u32 {
        self.id1 as u32
    }
    /// `id1.bitmap1.i_total`: bits an allocator covers.
    pub fn i_total(&self) -> u32 {
        (self.id1 >> 32) as u32
    }
    pub fn set_bitmap1(&mut self, i_used: u32, i_total: u32) {
        self.id1 = u64::from(i_used) | (u64::from(i_total) << 32);
    }

    /// `id1.journal1.ij_flags` ([`JOURNAL_DIRTY_FL`]).
    pub fn ij_flags(&self) -> u32 {
        self.id1 as u32
    }
    /// `id1.journal1.ij_recovery_generation`.
    pub fn ij_recovery_generation(&self) -> u32 {
        (self.id1 >> 32) as u32
    }
    pub fn set_journal1(&mut self, ij_flags: u32, ij_recovery_generation: u32) {
        self.id1 = u64::from(ij_flags) | (u64::from(ij_recovery_generation) << 32);
    }

    /// `id1.dev1.i_rdev`.
    pub fn i_rdev(&self) -> u64 {
        self.id1
    }
    pub fn set_rdev(&mut self, rdev: u64) {
        self.id1 = rdev;
    }
}

impl Default for Dinode {
    fn default() -> Self {
        Dinode::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testutil::{self, XorShift};

    fn sample() -> Dinode {
        let mut rng = XorShift::new(0xd1_0de);
        let mut block = vec![0u8; 512];
        rng.fill(&mut block);
        block[..8].copy_from_slice(INODE_SIGNATURE);
        Dinode::decode(&block).unwrap()
    }

    #[test]
    fn layout_matches_the_kernel_header() {
        // Pin a distinct value into every field and check where encode puts it.
        let mut di = Dinode::new();
        di.i_generation = 0x0807_0605;
        di.i_suballoc_slot = 0x0a09;
        di.i_suballoc_bit = 0x0c0b;
        di.i_links_count_hi = 0x0e0d;
        di.i_xattr_inline_size = 0x100f;
        di.i_clusters = 0x1413_1211;
        di.i_uid = 0x18;
        di.i_gid = 0x1c;
        di.i_size = 0x20;
        di.i_mode = 0x28;
        di.i_links_count = 0x2a;
        di.i_flags = 0x2c;
        di.i_atime = 0x30;
        di.i_ctime = 0x38;
        di.i_mtime = 0x40;
        di.i_dtime = 0x48;
        di.i_blkno = 0x50;
        di.i_last_eb_blk = 0x58;
        di.i_fs_generation = 0x60;
        di.i_atime_nsec = 0x64;
        di.i_ctime_nsec = 0x68;
        di.i_mtime_nsec = 0x6c;
        di.i_attr = 0x70;
        di.i_orphaned_slot = 0x74;
        di.i_dyn_features = 0x76;
        di.i_xattr_loc = 0x78;
        di.i_check = BlockCheck { bc_crc32e: 0x80, bc_ecc: 0x84, bc_reserved1: 0x86 };
        di.i_dx_root = 0x88;
        di.i_refcount_loc = 0x90;
        di.i_suballoc_loc = 0x98;
        di.i_dio_orphaned_slot = 0xa0;
        di.i_reserved1 = [0xa2, 0xa4, 0xa6];
        di.i_reserved2 = [0xa8, 0xb0];
        di.id1 = 0xb8;
        let mut b = vec![0xEEu8; 0x100];
        di.encode(&mut b).unwrap();
        for off in [
            0x18, 0x1c, 0x20, 0x28, 0x2a, 0x2c, 0x30, 0x38, 0x40, 0x48, 0x50, 0x58, 0x60, 0x64, 0x68, 0x6c, 0x70, 0x74,
            0x76, 0x78, 0x80, 0x84, 0x86, 0x88, 0x90, 0x98, 0xa0, 0xa2, 0xa4, 0xa6, 0xa8, 0xb0, 0xb8,
        ] {
            assert_eq!(b[off] as usize, off, "field at {off:#x}");
        }
        assert_eq!(&b[0..8], INODE_SIGNATURE);
        assert_eq!(&b[8..0x16], &[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x11, 0x12]);
        assert!(b[0xC0..].iter().all(|&x| x == 0xEE), "encode wrote past 0xC0");
        assert_eq!(Dinode::decode(&b).unwrap(), di);
    }

    #[test]
    fn encode_of_decode_is_identity_on_random_heads() {
        let mut rng = XorShift::new(0x1de7);
        for _ in 0..200 {
            let mut block = vec![0u8; DINODE_ID2_OFFSET];
            rng.fill(&mut block);
            block[..8].copy_from_slice(INODE_SIGNATURE);
            let di = Dinode::decode(&block).unwrap();
            let mut out = vec![0u8; DINODE_ID2_OFFSET];
            di.encode(&mut out).unwrap();
            assert_eq!(out, block);
        }
    }

    #[test]
    fn decode_checks_signature_and_length() {
        let mut block = vec![0u8; 512];
        assert!(matches!(Dinode::decode(&block), Err(FormatError::BadSignature { .. })));
        block[..8].copy_from_slice(INODE_SIGNATURE);
        assert!(Dinode::decode(&block).is_ok());
        assert!(matches!(Dinode::decode(&block[..0xBF]), Err(FormatError::TooShort { .. })));
        assert!(Dinode::decode_superblock_inode(&block).is_err());
        block[..8].copy_from_slice(SUPER_BLOCK_SIGNATURE);
        assert!(Dinode::decode_superblock_inode(&block).is_ok());
        assert!(Dinode::decode(&block).is_err());
    }

    #[test]
    fn links_count_uses_the_high_half_only_for_indexed_dirs() {
        let mut di = sample();
        di.i_dyn_features = 0;
        di.set_links_count(70_000);
        assert_eq!(di.i_links_count, (70_000u32 & 0xffff) as u16);
        assert_eq!(di.i_links_count_hi, 1);
        assert_eq!(di.links_count(), 70_000 & 0xffff);
        di.i_dyn_features = INDEXED_DIR_FL;
        assert_eq!(di.links_count(), 70_000);
    }

    #[test]
    fn id1_views_share_the_same_bytes() {
        let mut di = Dinode::new();
        di.set_bitmap1(17940, 65536);
        let mut b = vec![0u8; 0xC0];
        di.encode(&mut b).unwrap();
        assert_eq!(le32(&b, 0xB8), 17940);
        assert_eq!(le32(&b, 0xBC), 65536);
        assert_eq!(di.bitmap1(), Bitmap1 { i_used: 17940, i_total: 65536 });
        di.set_journal1(JOURNAL_DIRTY_FL, 7);
        assert_eq!(di.journal1(), Journal1 { ij_flags: 1, ij_recovery_generation: 7 });
        assert_eq!((di.ij_flags(), di.ij_recovery_generation()), (1, 7));
        assert_eq!((di.i_used(), di.i_total()), (1, 7));
        di.set_rdev(0x0123_4567_89ab_cdef);
        assert_eq!(di.i_rdev(), 0x0123_4567_89ab_cdef);
    }

    #[test]
    fn validate_checks_blkno_valid_flag_and_generation() {
        let mut di = Dinode::new();
        di.i_blkno = 9;
        di.i_flags = VALID_FL;
        di.i_fs_generation = 42;
        assert!(di.validate(9, 42).is_ok());
        assert!(di.validate(10, 42).is_err());
        assert!(di.validate(9, 43).is_err());
        di.i_flags = 0;
        assert!(di.validate(9, 42).is_err());
    }

    #[test]
    fn system_inodes_match_debugfs() {
        for img in [testutil::img4k(), testutil::img512()] {
            let sb_gen = Dinode::decode_superblock_inode(&img.block(2)).unwrap().i_fs_generation;
            for (name, blkno) in img.system_inodes() {
                let block = img.block(blkno);
                let di = Dinode::decode(&block).unwrap_or_else(|e| panic!("{name}: {e}"));
                di.validate(blkno, sb_gen).unwrap();
                assert!(di.is_system(), "{name}");
                let out = img.debugfs(&format!("stat <{blkno}>"));
                assert_eq!(testutil::field(&out, "Inode:"), blkno, "{name}");
                assert_eq!(testutil::field(&out, "FS Generation:"), u64::from(di.i_fs_generation), "{name}");
                assert_eq!(testutil::field(&out, "Size:"), di.i_size, "{name}");
                assert_eq!(testutil::field(&out, "Links:"), u64::from(di.links_count()), "{name}");
                assert_eq!(testutil::field(&out, "Clusters:"), u64::from(di.i_clusters), "{name}");
                assert_eq!(testutil::field(&out, "Sub Alloc Bit:"), u64::from(di.i_suballoc_bit), "{name}");
                assert_eq!(testutil::field_str(&out, "Sub Alloc Slot:"), "Global", "{name}");
                assert_eq!(di.i_suballoc_slot, INVALID_SLOT, "{name}");
                assert_eq!(testutil::field_str(&out, "Mode:"), format!("0{:o}", di.i_mode & 0o7777), "{name}");
                let ctime = testutil::field_str(&out, "ctime:");
                assert_eq!(ctime, format!("{:#x}", di.i_ctime), "{name}");
                // Flags the real tool names, against our bits.
                let flags = testutil::line_after(&out, "Flags:");
                assert_eq!(flags.contains("Valid"), di.is_valid(), "{name}");
                assert_eq!(flags.contains("Chain"), di.is_chain(), "{name}");
                assert_eq!(flags.contains("Journal"), di.is_journal(), "{name}");
                assert_eq!(flags.contains("Heartbeat"), di.is_heartbeat(), "{name}");
                let dynf = testutil::line_after(&out, "Dynamic Features:");
                assert!(dynf.starts_with(&format!("({:#x})", di.i_dyn_features)), "{name}: {dynf}");
                if di.is_chain() || di.is_local_alloc() {
                    assert_eq!(testutil::field(&out, "Bitmap Total:"), u64::from(di.i_total()), "{name}");
                    assert_eq!(testutil::field(&out, "Used:"), u64::from(di.i_used()), "{name}");
                }
                if di.is_journal() {
                    assert_eq!(testutil::field(&out, "Recovery Generation:"), u64::from(di.ij_recovery_generation()));
                    assert_eq!(di.ij_flags() & JOURNAL_DIRTY_FL, 0, "a fresh journal is clean");
                }
                let mut again = block.clone();
                di.encode(&mut again).unwrap();
                assert_eq!(again, block, "{name}: encode(decode) changed the block");
            }
        }
    }

    #[test]
    fn decode_never_panics_on_random_or_mutated_buffers() {
        let seed = 0xd1_5eed;
        let img = testutil::img4k();
        let seeds = vec![img.block(2), img.block(img.system_inode("global_bitmap"))];
        testutil::fuzz(seed, &seeds, |buf| {
            for di in [Dinode::decode(buf), Dinode::decode_superblock_inode(buf)].into_iter().flatten() {
                let mut out = buf.to_vec();
                di.encode(&mut out).unwrap();
                assert_eq!(out, buf);
                let _ = (di.links_count(), di.validate(1, 1), di.is_fast_symlink());
            }
        });
    }
}
