//! Data kept inside the inode block: `struct ocfs2_inline_data` (`OCFS2_INLINE_DATA_FL`) and
//! fast symlink text. Both live in the inode's `id2`.
//!
//! Inline data: `id_count` u16 (usable bytes), two reserved fields, then the data at id2 + 8
//! (block offset 0xC8). [`InlineData::data`] holds all `id_count` bytes, so `id_count` is its
//! length; the file's bytes are the first `i_size` of them. Inline xattrs, when present, take
//! the last `i_xattr_inline_size` bytes of the block, which shrinks `id_count`.
//!
//! A fast symlink (a symlink with no clusters) stores its target NUL-terminated at id2;
//! readers stop at the first NUL or at the end of the block, as the kernel's
//! `strnlen(..., ocfs2_fast_symlink_chars)` does.

use super::bytes::{cstr, le16, le32, put_le16, put_le32};
use super::dinode::{Dinode, DINODE_ID2_OFFSET};
use super::{FormatError, Result};

/// Size of the `ocfs2_inline_data` header.
pub const INLINE_DATA_HEADER_SIZE: usize = 8;
/// Block offset of `id2.i_data.id_data`.
pub const INLINE_DATA_OFFSET: usize = DINODE_ID2_OFFSET + INLINE_DATA_HEADER_SIZE;

/// `ocfs2_max_inline_data_with_xattr`: inline data capacity of an inode whose last
/// `xattr_inline_size` bytes hold inline xattrs (pass 0 without `OCFS2_INLINE_XATTR_FL`).
pub fn max_inline_data_with_xattr(block_size: usize, xattr_inline_size: u16) -> u16 {
    let n = block_size.saturating_sub(INLINE_DATA_OFFSET).saturating_sub(usize::from(xattr_inline_size));
    n.min(usize::from(u16::MAX)) as u16
}

/// `ocfs2_fast_symlink_chars`: bytes available to a fast symlink, NUL included.
pub fn fast_symlink_chars(block_size: usize) -> usize {
    block_size.saturating_sub(DINODE_ID2_OFFSET)
}

/// The target of a fast symlink from the inode's `id2` (`&block[DINODE_ID2_OFFSET..]`).
pub fn fast_symlink_target(id2: &[u8]) -> &[u8] {
    cstr(id2)
}

/// Writes `target` and its NUL at the start of `id2`. Bytes after the NUL are left alone, so
/// inline xattrs at the end of the block survive.
pub fn encode_fast_symlink(id2: &mut [u8], target: &[u8]) -> Result<()> {
    let what = "fast symlink";
    if target.contains(&0) {
        return Err(FormatError::corrupt(what, "target contains a NUL byte"));
    }
    if target.len() >= id2.len() {
        return Err(FormatError::corrupt(
            what,
            format!("{}-byte target does not fit {} bytes with its NUL", target.len(), id2.len()),
        ));
    }
    id2[..target.len()].copy_from_slice(target);
    id2[target.len()] = 0;
    Ok(())
}

/// `struct ocfs2_inline_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineData {
    pub id_reserved0: u16,
    pub id_reserved1: u32,
    /// The `id_count` usable bytes.
    pub data: Vec<u8>,
}

impl InlineData {
    /// Empty inline data with `id_count` zero bytes of room.
    pub fn new(id_count: u16) -> Self {
        InlineData { id_reserved0: 0, id_reserved1: 0, data: vec![0; usize::from(id_count)] }
    }

    /// `id_count`: usable bytes.
    pub fn id_count(&self) -> u16 {
        self.data.len() as u16
    }

    /// Decodes from the inode's `id2` (`&block[DINODE_ID2_OFFSET..]`); `id_count` must fit it.
    pub fn decode(id2: &[u8]) -> Result<Self> {
        let what = "inline data";
        FormatError::need(what, id2, INLINE_DATA_HEADER_SIZE)?;
        let id_count = usize::from(le16(id2, 0x00));
        let end = INLINE_DATA_HEADER_SIZE + id_count;
        if end > id2.len() {
            return Err(FormatError::corrupt(
                what,
                format!("id_count {id_count} runs past the {} bytes of id2", id2.len()),
            ));
        }
        Ok(InlineData {
            id_reserved0: le16(id2, 0x02),
            id_reserved1: le32(id2, 0x04),
            data: id2[INLINE_DATA_HEADER_SIZE..end].to_vec(),
        })
    }

    /// Writes the header and the `id_count` data bytes.
    pub fn encode(&self, id2: &mut [u8]) -> Result<()> {
        let what = "inline data";
        if self.data.len() > usize::from(u16::MAX) {
            return Err(FormatError::corrupt(what, "more data than id_count can say"));
        }
        FormatError::need(what, id2, INLINE_DATA_HEADER_SIZE + self.data.len())?;
        put_le16(id2, 0x00, self.id_count());
        put_le16(id2, 0x02, self.id_reserved0);
        put_le32(id2, 0x04, self.id_reserved1);
        id2[INLINE_DATA_HEADER_SIZE..INLINE_DATA_HEADER_SIZE + self.data.len()].copy_from_slice(&self.data);
        Ok(())
    }

    /// The kernel's inline-data checks in `ocfs2_validate_inode_block`: `id_count` within the
    /// capacity left by inline xattrs, and `i_size` within `id_count`.
    pub fn validate(&self, di: &Dinode, block_size: usize) -> Result<()> {
        let max = max_inline_data_with_xattr(block_size, di.inline_xattr_size());
        if self.id_count() > max {
            return Err(FormatError::corrupt("inline data", format!("id_count {} exceeds {max}", self.id_count())));
        }
        if di.i_size > u64::from(self.id_count()) {
            return Err(FormatError::corrupt(
                "inline data",
                format!("i_size {} exceeds id_count {}", di.i_size, self.id_count()),
            ));
        }
        Ok(())
    }

    /// The file's bytes: the first `i_size` of the data (clamped to it).
    pub fn file_bytes(&self, i_size: u64) -> &[u8] {
        let n = usize::try_from(i_size).unwrap_or(usize::MAX).min(self.data.len());
        &self.data[..n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::constants::*;
    use crate::format::testutil::{self, field};

    #[test]
    fn capacities_match_the_kernel_formulas() {
        assert_eq!(INLINE_DATA_OFFSET, 0xC8);
        assert_eq!(max_inline_data_with_xattr(4096, 0), 3896);
        assert_eq!(max_inline_data_with_xattr(512, 0), 312);
        assert_eq!(max_inline_data_with_xattr(4096, 256), 3640);
        assert_eq!(max_inline_data_with_xattr(100, 0), 0);
        assert_eq!(fast_symlink_chars(4096), 4096 - 0xC0);
        assert_eq!(fast_symlink_chars(512), 320);
    }

    #[test]
    fn layout_and_round_trip() {
        let mut d = InlineData::new(5);
        d.data.copy_from_slice(b"hello");
        d.id_reserved0 = 0x0302;
        d.id_reserved1 = 0x0706_0504;
        let mut id2 = vec![0xAAu8; 16];
        d.encode(&mut id2).unwrap();
        assert_eq!(&id2[..13], &[5, 0, 2, 3, 4, 5, 6, 7, b'h', b'e', b'l', b'l', b'o']);
        assert_eq!(&id2[13..], &[0xAA; 3]);
        assert_eq!(InlineData::decode(&id2).unwrap(), d);
        assert_eq!(d.file_bytes(3), b"hel");
        assert_eq!(d.file_bytes(99), b"hello");
        assert!(InlineData::decode(&id2[..12]).is_err(), "id_count past the buffer");
        assert!(InlineData::decode(&id2[..7]).is_err());
        assert!(d.encode(&mut [0u8; 12]).is_err());
    }

    #[test]
    fn validate_checks_capacity_and_size() {
        let mut di = Dinode::new();
        di.i_dyn_features = INLINE_DATA_FL;
        di.i_size = 10;
        let d = InlineData::new(max_inline_data_with_xattr(4096, 0));
        assert!(d.validate(&di, 4096).is_ok());
        di.i_dyn_features |= INLINE_XATTR_FL;
        di.i_xattr_inline_size = 256;
        assert!(d.validate(&di, 4096).is_err(), "inline xattrs shrink the room");
        assert!(InlineData::new(3640).validate(&di, 4096).is_ok());
        di.i_size = 3641;
        assert!(InlineData::new(3640).validate(&di, 4096).is_err());
    }

    #[test]
    fn fast_symlink_text_round_trips_and_respects_the_nul() {
        let mut id2 = vec![0x55u8; fast_symlink_chars(512)];
        encode_fast_symlink(&mut id2, b"/some/where").unwrap();
        assert_eq!(fast_symlink_target(&id2), b"/some/where");
        assert_eq!(id2[11], 0);
        assert_eq!(id2[12], 0x55, "bytes past the NUL are left alone");
        let longest = vec![b'x'; id2.len() - 1];
        encode_fast_symlink(&mut id2, &longest).unwrap();
        assert_eq!(fast_symlink_target(&id2), &longest[..]);
        let too_long = vec![b'x'; id2.len()];
        assert!(encode_fast_symlink(&mut id2, &too_long).is_err());
        assert!(encode_fast_symlink(&mut id2, b"a\0b").is_err());
        // Without a NUL the reader stops at the end of the block.
        let full = vec![b'y'; 320];
        assert_eq!(fast_symlink_target(&full).len(), 320);
    }

    #[test]
    fn inline_directories_match_debugfs() {
        for (img, names) in
            [(testutil::img4k(), vec!["/", "//orphan_dir:0000"]), (testutil::img512(), vec!["/", "//orphan_dir:0001"])]
        {
            for name in names {
                let out = img.debugfs(&format!("stat {name}"));
                let blkno = field(&out, "Inode:");
                let block = img.block(blkno);
                let di = Dinode::decode(&block).unwrap();
                assert!(di.has_inline_data() && di.is_dir(), "{name}");
                let d = InlineData::decode(&block[DINODE_ID2_OFFSET..]).unwrap();
                d.validate(&di, img.block_size).unwrap();
                assert_eq!(field(&out, "Inline Data Max:"), u64::from(d.id_count()), "{name}");
                assert_eq!(d.id_count(), max_inline_data_with_xattr(img.block_size, di.inline_xattr_size()));
                assert_eq!(field(&out, "Size:"), di.i_size, "{name}");
                // The first entry of an inline dir is "." pointing at the dir itself.
                let data = d.file_bytes(di.i_size);
                assert_eq!(u64::from_le_bytes(data[0..8].try_into().unwrap()), blkno, "{name}");
                assert_eq!(&data[12..13], b".", "{name}");
                let mut again = block.clone();
                d.encode(&mut again[DINODE_ID2_OFFSET..]).unwrap();
                assert_eq!(again, block, "{name}: encode(decode) changed the block");
            }
        }
    }

    #[test]
    fn decoders_never_panic_on_random_or_mutated_buffers() {
        let seed = 0x1111_5eed;
        let img = testutil::img4k();
        let (_, sb) = crate::format::superblock::SuperBlock::decode_block(&img.block(2)).unwrap();
        let root = img.block(sb.s_root_blkno);
        testutil::fuzz(seed, &[root[DINODE_ID2_OFFSET..].to_vec(), root.clone()], |buf| {
            if let Ok(d) = InlineData::decode(buf) {
                let mut out = buf.to_vec();
                d.encode(&mut out).unwrap();
                assert_eq!(out, buf);
                let di = Dinode::new();
                let _ = d.validate(&di, buf.len());
            }
            let _ = fast_symlink_target(buf);
        });
    }
}
