//! The directory block trailer (`struct ocfs2_dir_block_trailer`), 64 bytes at the end of a
//! directory block.
//!
//! Its first 12 bytes are laid out like an empty directory entry (`inode` 0, `rec_len` 64,
//! `name_len` 0), so code that walks a whole block sees it as a free record. The records of the
//! block proper end at [`trailer_offset`]. The trailer carries the block's metaecc check, the
//! owning directory, and the free-space list of indexed directories.
//!
//! Which directories have trailers ([`dir_has_trailer`]): none that are inline; all indexed
//! ones; the others only when the volume has metaecc.

pub use super::blockcheck::DIR_TRAILER_SIZE;
use super::blockcheck::{BlockCheck, DIR_TRAILER_CHECK_IN_TRAILER};
use super::bytes::{le16, le64, put_le16, put_le64};
use super::{
    FormatError, Result, DIR_TRAILER_SIGNATURE, FEATURE_INCOMPAT_INDEXED_DIRS, FEATURE_INCOMPAT_INLINE_DATA,
    FEATURE_INCOMPAT_META_ECC,
};

const DB_COMPAT_INODE: usize = 0x00;
const DB_COMPAT_REC_LEN: usize = 0x08;
const DB_COMPAT_NAME_LEN: usize = 0x0A;
const DB_RESERVED0: usize = 0x0B;
const DB_RESERVED1: usize = 0x0C;
const DB_FREE_REC_LEN: usize = 0x0E;
const DB_SIGNATURE: usize = 0x10;
const DB_RESERVED2: usize = 0x18;
const DB_FREE_NEXT: usize = 0x20;
const DB_BLKNO: usize = 0x28;
const DB_PARENT_DINODE: usize = 0x30;
/// Offset of `db_check` inside the trailer.
pub const DB_CHECK: usize = DIR_TRAILER_CHECK_IN_TRAILER;

/// Where the trailer starts in a block of `blocksize` bytes (`ocfs2_dir_trailer_blk_off`);
/// also the length of the area the block's records may use.
pub const fn trailer_offset(blocksize: usize) -> usize {
    blocksize - DIR_TRAILER_SIZE
}

/// Whether the blocks of a directory end with a trailer (`ocfs2_dir_has_trailer`).
///
/// `is_inline` and `is_indexed` are the inode's `OCFS2_INLINE_DATA_FL` and
/// `OCFS2_INDEXED_DIR_FL`; a flag counts only when the volume has the matching feature, as in
/// ocfs2-tools.
pub fn dir_has_trailer(feature_incompat: u32, is_inline: bool, is_indexed: bool) -> bool {
    if is_inline && feature_incompat & FEATURE_INCOMPAT_INLINE_DATA != 0 {
        return false;
    }
    if is_indexed && feature_incompat & FEATURE_INCOMPAT_INDEXED_DIRS != 0 {
        return true;
    }
    feature_incompat & FEATURE_INCOMPAT_META_ECC != 0
}

/// Whether new directory blocks on this volume get a trailer (`ocfs2_supports_dir_trailer`).
pub fn supports_dir_trailer(feature_incompat: u32) -> bool {
    feature_incompat & (FEATURE_INCOMPAT_META_ECC | FEATURE_INCOMPAT_INDEXED_DIRS) != 0
}

/// The trailer's fields, as on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirBlockTrailer {
    /// Always 0, so that the trailer reads as a free record.
    pub db_compat_inode: u64,
    /// Always 64.
    pub db_compat_rec_len: u16,
    /// Always 0.
    pub db_compat_name_len: u8,
    pub db_reserved0: u8,
    pub db_reserved1: u16,
    /// Largest free record in this block; kept up to date for indexed directories.
    pub db_free_rec_len: u16,
    pub db_reserved2: u64,
    /// Next block on the indexed directory's free-space list, or 0.
    pub db_free_next: u64,
    /// The block's own number.
    pub db_blkno: u64,
    /// The directory inode that owns the block.
    pub db_parent_dinode: u64,
    /// Metaecc of the whole block, as stored.
    pub db_check: BlockCheck,
}

impl DirBlockTrailer {
    /// A trailer as the kernel's `ocfs2_init_dir_trailer` writes it.
    pub fn new(blkno: u64, parent_dinode: u64, free_rec_len: u16) -> Self {
        DirBlockTrailer {
            db_compat_inode: 0,
            db_compat_rec_len: DIR_TRAILER_SIZE as u16,
            db_compat_name_len: 0,
            db_reserved0: 0,
            db_reserved1: 0,
            db_free_rec_len: free_rec_len,
            db_reserved2: 0,
            db_free_next: 0,
            db_blkno: blkno,
            db_parent_dinode: parent_dinode,
            db_check: BlockCheck::default(),
        }
    }

    /// Decodes the trailer at the end of `block` (a whole directory block) and checks its
    /// signature.
    pub fn decode(block: &[u8]) -> Result<Self> {
        FormatError::need("dir trailer", block, DIR_TRAILER_SIZE)?;
        let t = &block[trailer_offset(block.len())..];
        if &t[DB_SIGNATURE..DB_SIGNATURE + 8] != DIR_TRAILER_SIGNATURE {
            return Err(FormatError::BadSignature {
                what: "dir trailer",
                found: t[DB_SIGNATURE..DB_SIGNATURE + 8].to_vec(),
            });
        }
        // Like the kernel, trust only the signature here: db_compat_rec_len is not checked.
        Ok(DirBlockTrailer {
            db_compat_inode: le64(t, DB_COMPAT_INODE),
            db_compat_rec_len: le16(t, DB_COMPAT_REC_LEN),
            db_compat_name_len: t[DB_COMPAT_NAME_LEN],
            db_reserved0: t[DB_RESERVED0],
            db_reserved1: le16(t, DB_RESERVED1),
            db_free_rec_len: le16(t, DB_FREE_REC_LEN),
            db_reserved2: le64(t, DB_RESERVED2),
            db_free_next: le64(t, DB_FREE_NEXT),
            db_blkno: le64(t, DB_BLKNO),
            db_parent_dinode: le64(t, DB_PARENT_DINODE),
            db_check: BlockCheck::decode(t, DB_CHECK)?,
        })
    }

    /// True when `block` ends with something carrying the trailer signature.
    pub fn is_present(block: &[u8]) -> bool {
        block.len() >= DIR_TRAILER_SIZE && {
            let s = trailer_offset(block.len()) + DB_SIGNATURE;
            &block[s..s + 8] == DIR_TRAILER_SIGNATURE
        }
    }

    /// Checks that the trailer belongs where it was read (`ocfs2_check_dir_trailer`).
    pub fn check_owner(&self, blkno: u64, parent_dinode: u64) -> Result<()> {
        if self.db_blkno != blkno {
            return Err(FormatError::corrupt(
                "dir trailer",
                format!("db_blkno is {}, read from block {blkno}", self.db_blkno),
            ));
        }
        if self.db_parent_dinode != parent_dinode {
            return Err(FormatError::corrupt(
                "dir trailer",
                format!("block {blkno} belongs to inode {}, not to {parent_dinode}", self.db_parent_dinode),
            ));
        }
        Ok(())
    }

    /// Writes the trailer into the last 64 bytes of `block`, signature included.
    pub fn encode(&self, block: &mut [u8]) -> Result<()> {
        FormatError::need("dir trailer", block, DIR_TRAILER_SIZE)?;
        let off = trailer_offset(block.len());
        let t = &mut block[off..];
        put_le64(t, DB_COMPAT_INODE, self.db_compat_inode);
        put_le16(t, DB_COMPAT_REC_LEN, self.db_compat_rec_len);
        t[DB_COMPAT_NAME_LEN] = self.db_compat_name_len;
        t[DB_RESERVED0] = self.db_reserved0;
        put_le16(t, DB_RESERVED1, self.db_reserved1);
        put_le16(t, DB_FREE_REC_LEN, self.db_free_rec_len);
        t[DB_SIGNATURE..DB_SIGNATURE + 8].copy_from_slice(DIR_TRAILER_SIGNATURE);
        put_le64(t, DB_RESERVED2, self.db_reserved2);
        put_le64(t, DB_FREE_NEXT, self.db_free_next);
        put_le64(t, DB_BLKNO, self.db_blkno);
        put_le64(t, DB_PARENT_DINODE, self.db_parent_dinode);
        self.db_check.encode(t, DB_CHECK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dir::{dir_entries, DirEntry};

    #[test]
    fn offsets_match_the_kernel_layout() {
        // Computed from the field sizes; the header's /*20*/ and /*30*/ comments are stale.
        assert_eq!(DB_SIGNATURE, 0x10);
        assert_eq!(DB_FREE_NEXT, 0x20);
        assert_eq!(DB_BLKNO, 0x28);
        assert_eq!(DB_PARENT_DINODE, 0x30);
        assert_eq!(DB_CHECK, 0x38);
        assert_eq!(DB_CHECK + 8, DIR_TRAILER_SIZE);
        assert_eq!(trailer_offset(4096), 4032);
        assert_eq!(trailer_offset(512), 448);
    }

    #[test]
    fn trailer_rule_follows_inline_indexed_and_metaecc() {
        let inl = FEATURE_INCOMPAT_INLINE_DATA;
        let idx = FEATURE_INCOMPAT_INDEXED_DIRS;
        let ecc = FEATURE_INCOMPAT_META_ECC;
        assert!(!dir_has_trailer(inl | idx | ecc, true, false));
        assert!(dir_has_trailer(inl | idx, false, true));
        assert!(!dir_has_trailer(inl | idx, false, false));
        assert!(dir_has_trailer(ecc, false, false));
        assert!(!dir_has_trailer(0, false, true), "the indexed flag counts only with the feature");
        assert!(supports_dir_trailer(idx));
        assert!(supports_dir_trailer(ecc));
        assert!(!supports_dir_trailer(inl));
    }

    #[test]
    fn trailer_round_trips_and_reads_as_a_free_record() {
        let mut block = vec![0u8; 512];
        let mut t = DirBlockTrailer::new(530, 6, 100);
        t.db_check = BlockCheck { bc_crc32e: 0x0403_0201, bc_ecc: 0x0605, bc_reserved1: 0 };
        t.encode(&mut block).unwrap();
        assert_eq!(&block[512 - 8..], &[1, 2, 3, 4, 5, 6, 0, 0]);
        assert!(t.encode(&mut [0u8; 63]).is_err());
        assert!(DirBlockTrailer::is_present(&block));
        assert_eq!(DirBlockTrailer::decode(&block).unwrap(), t);
        t.check_owner(530, 6).unwrap();
        assert!(t.check_owner(531, 6).is_err());
        assert!(t.check_owner(530, 7).is_err());

        let tail: Vec<_> = dir_entries(&block[trailer_offset(512)..], true).collect::<Result<_>>().unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].1, DirEntry { inode: 0, rec_len: 64, name_len: 0, file_type: 0, name: vec![] });
    }

    #[test]
    fn missing_signature_is_reported() {
        let block = vec![0u8; 4096];
        assert!(!DirBlockTrailer::is_present(&block));
        assert!(matches!(DirBlockTrailer::decode(&block), Err(FormatError::BadSignature { .. })));
        assert!(matches!(DirBlockTrailer::decode(&block[..10]), Err(FormatError::TooShort { .. })));
    }

    #[test]
    fn random_and_mutated_blocks_never_panic_the_trailer_decode() {
        let mut seed = vec![0u8; 4096];
        DirBlockTrailer::new(9, 6, 100).encode(&mut seed).unwrap();
        crate::format::testutil::fuzz(0xD1E5_0002, &[seed], |buf| {
            let _ = DirBlockTrailer::is_present(buf);
            if let Ok(t) = DirBlockTrailer::decode(buf) {
                let _ = t.check_owner(9, 6);
                let mut copy = buf.to_vec();
                t.encode(&mut copy).unwrap();
                assert_eq!(copy, buf, "decode then encode changes nothing");
            }
        });
    }
}
