//! The per-slot local allocation window (`struct ocfs2_local_alloc`), which lives in `id2` of
//! the `local_alloc:NNNN` inode, and the window-size rules of the kernel's `localalloc.c`.
//!
//! The window is a run of `la_size * 8` bits of the global bitmap starting at bit `la_bm_off`,
//! copied into the inode so that a node can allocate clusters without the global bitmap lock.
//! The inode's `id1.bitmap1` counts the window's used and total bits.
//!
//! Offsets here are relative to `id2` (byte 0xC0 of the inode block): `decode` takes the
//! id2 area, that is `&inode_block[0xC0..]`.

use super::bytes::{le16, le32, le64, put_le16, put_le32, put_le64};
use super::dinode::DINODE_ID2_OFFSET;
use super::{FormatError, Result, MAX_CLUSTERSIZE};

const LA_BM_OFF: usize = 0x00;
const LA_SIZE: usize = 0x04;
const LA_RESERVED1: usize = 0x06;
const LA_RESERVED2: usize = 0x08;
/// Offset of `la_bitmap` inside id2.
pub const LA_BITMAP: usize = 0x10;

/// Byte offset of `bg_bitmap` in a group descriptor: a cluster group's bitmap runs from there
/// to the end of the block.
const GROUP_BITMAP_OFFSET: usize = 0x40;

/// The kernel's default when the geometry leaves too little room (`OCFS2_LA_OLD_DEFAULT`).
pub const LA_OLD_DEFAULT_MB: u32 = 8;
/// The largest default window (`OCFS2_LA_MAX_DEFAULT_MB`).
pub const LA_MAX_DEFAULT_MB: u32 = 256;

/// Bitmap bytes that fit in an inode block (`ocfs2_local_alloc_size`): mkfs writes this as
/// `la_size`, and the kernel refuses anything larger.
pub const fn local_alloc_size(blocksize: u32) -> u16 {
    (blocksize as usize - DINODE_ID2_OFFSET - LA_BITMAP) as u16
}

/// `struct ocfs2_local_alloc` with its bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAlloc {
    /// First global-bitmap bit the window covers.
    pub la_bm_off: u32,
    /// Bytes of bitmap in the window.
    pub la_size: u16,
    pub la_reserved1: u16,
    pub la_reserved2: u64,
    /// Exactly `la_size` bytes; bit *i* (little-endian within bytes) stands for cluster
    /// `la_bm_off + i`.
    pub la_bitmap: Vec<u8>,
}

impl LocalAlloc {
    /// Decodes the structure from the id2 area of an inode block, refusing an `la_size` that
    /// runs past the block.
    pub fn decode(id2: &[u8]) -> Result<Self> {
        FormatError::need("local alloc", id2, LA_BITMAP)?;
        let la_size = le16(id2, LA_SIZE);
        let room = id2.len() - LA_BITMAP;
        if la_size as usize > room {
            return Err(FormatError::corrupt(
                "local alloc",
                format!("la_size {la_size} is larger than the {room} bytes the block holds"),
            ));
        }
        Ok(LocalAlloc {
            la_bm_off: le32(id2, LA_BM_OFF),
            la_size,
            la_reserved1: le16(id2, LA_RESERVED1),
            la_reserved2: le64(id2, LA_RESERVED2),
            la_bitmap: id2[LA_BITMAP..LA_BITMAP + la_size as usize].to_vec(),
        })
    }

    /// Decodes from a whole inode block.
    pub fn decode_inode_block(block: &[u8]) -> Result<Self> {
        FormatError::need("local alloc", block, DINODE_ID2_OFFSET + LA_BITMAP)?;
        Self::decode(&block[DINODE_ID2_OFFSET..])
    }

    /// An empty window of `la_size` bytes, as mkfs and `ocfs2_clear_local_alloc` leave it.
    pub fn cleared(la_size: u16) -> Self {
        LocalAlloc { la_bm_off: 0, la_size, la_reserved1: 0, la_reserved2: 0, la_bitmap: vec![0; la_size as usize] }
    }

    /// Writes the header and the `la_size` bitmap bytes into the id2 area.
    pub fn encode(&self, id2: &mut [u8]) -> Result<()> {
        if self.la_bitmap.len() != self.la_size as usize {
            return Err(FormatError::corrupt(
                "local alloc",
                format!("la_bitmap holds {} bytes, la_size says {}", self.la_bitmap.len(), self.la_size),
            ));
        }
        FormatError::need("local alloc", id2, LA_BITMAP + self.la_bitmap.len())?;
        put_le32(id2, LA_BM_OFF, self.la_bm_off);
        put_le16(id2, LA_SIZE, self.la_size);
        put_le16(id2, LA_RESERVED1, self.la_reserved1);
        put_le64(id2, LA_RESERVED2, self.la_reserved2);
        id2[LA_BITMAP..LA_BITMAP + self.la_bitmap.len()].copy_from_slice(&self.la_bitmap);
        Ok(())
    }

    /// Bits in the window.
    pub fn bits(&self) -> u32 {
        self.la_size as u32 * 8
    }

    /// Whether bit `i` of the window is set; bits past the window read as clear.
    pub fn test_bit(&self, i: u32) -> bool {
        self.la_bitmap.get((i / 8) as usize).is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Set bits in the window (`ocfs2_local_alloc_count_bits`).
    pub fn count_set_bits(&self) -> u32 {
        self.la_bitmap.iter().map(|b| b.count_ones()).sum()
    }
}

/// `ocfs2_clusters_to_megabytes`.
pub fn clusters_to_megabytes(clustersize_bits: u32, clusters: u32) -> u32 {
    clusters >> (20 - clustersize_bits.min(20))
}

/// `ocfs2_megabytes_to_clusters`.
pub fn megabytes_to_clusters(clustersize_bits: u32, megabytes: u32) -> u32 {
    megabytes << (20 - clustersize_bits.min(20))
}

/// The volume geometry the window size depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaGeometry {
    pub blocksize: u32,
    pub clustersize_bits: u32,
    /// Clusters in the volume when it was mounted (`osb_clusters_at_boot`).
    pub total_clusters: u32,
    pub max_slots: u16,
}

impl LaGeometry {
    fn clustersize(&self) -> u32 {
        1u32 << self.clustersize_bits.min(20)
    }

    /// The largest window one inode block can describe, in megabytes.
    pub fn la_max_mb(&self) -> u32 {
        clusters_to_megabytes(self.clustersize_bits, local_alloc_size(self.blocksize) as u32 * 8)
    }

    /// The default window in megabytes (`ocfs2_la_default_mb`).
    pub fn la_default_mb(&self) -> u32 {
        debug_assert!(self.clustersize() <= MAX_CLUSTERSIZE);
        let group_bits = (self.blocksize as usize - GROUP_BITMAP_OFFSET) as u32 * 8;
        let gd_mb = clusters_to_megabytes(self.clustersize_bits, group_bits);

        // Small groups (512-byte blocks with small clusters, 1K blocks with 4K clusters).
        if (self.blocksize == 512 && self.clustersize() <= 8192)
            || (self.blocksize == 1024 && self.clustersize() == 4096)
        {
            return LA_OLD_DEFAULT_MB;
        }

        // Leave room for block groups. The kernel then clears bit 2 only (`&= 0xFFFFFFFB`);
        // the result is kept as it computes it, though it is not a multiple of 4.
        let gd_mb = gd_mb.saturating_sub(16) & 0xFFFF_FFFB;
        let mut la_mb = gd_mb;
        if la_mb > LA_MAX_DEFAULT_MB {
            la_mb = if gd_mb > 2 * LA_MAX_DEFAULT_MB {
                LA_MAX_DEFAULT_MB
            } else {
                let mut m = gd_mb;
                while m > LA_MAX_DEFAULT_MB {
                    m >>= 1;
                }
                m
            };
        }

        let per_slot_clusters = self.total_clusters / (self.max_slots.max(1) as u32);
        let megs_per_slot = clusters_to_megabytes(self.clustersize_bits, per_slot_clusters);
        la_mb.min(megs_per_slot).min(self.la_max_mb())
    }

    /// The window the kernel uses, in clusters, for a `localalloc=` mount option in megabytes
    /// (`None` for the default): `ocfs2_la_set_sizes`.
    pub fn la_default_bits(&self, requested_mb: Option<u32>) -> u32 {
        let mb = match requested_mb {
            None => self.la_default_mb(),
            Some(r) => r.min(self.la_max_mb()),
        };
        megabytes_to_clusters(self.clustersize_bits, mb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_room_is_block_minus_0xd0() {
        assert_eq!(local_alloc_size(4096), 3888);
        assert_eq!(local_alloc_size(512), 304);
        assert_eq!(DINODE_ID2_OFFSET + LA_BITMAP, 0xD0);
    }

    #[test]
    fn round_trips_and_refuses_oversized_window() {
        let mut block = vec![0u8; 4096];
        let mut la = LocalAlloc::cleared(3888);
        la.la_bm_off = 1234;
        la.la_bitmap[0] = 0b1000_0101;
        la.encode(&mut block[DINODE_ID2_OFFSET..]).unwrap();
        assert!(la.encode(&mut block[4096 - 100..]).is_err());
        let back = LocalAlloc::decode_inode_block(&block).unwrap();
        assert_eq!(back, la);
        assert_eq!(back.count_set_bits(), 3);
        assert!(back.test_bit(0) && back.test_bit(2) && back.test_bit(7) && !back.test_bit(1));
        assert!(!back.test_bit(u32::MAX));
        assert_eq!(back.bits(), 3888 * 8);

        put_le16(&mut block, DINODE_ID2_OFFSET + LA_SIZE, 3889);
        assert!(LocalAlloc::decode_inode_block(&block).is_err());
        assert!(LocalAlloc::decode(&[0u8; 15]).is_err());
    }

    #[test]
    fn default_window_matches_the_kernel_table() {
        let g = |bs, cbits, clusters, slots| LaGeometry {
            blocksize: bs,
            clustersize_bits: cbits,
            total_clusters: clusters,
            max_slots: slots,
        };
        // 4K blocks: group 126M at 4K clusters -> (126 - 16) & !4 = 106; la max 121M.
        assert_eq!(g(4096, 12, 1 << 30, 4).la_default_mb(), 106);
        // 8K clusters: group 252M -> 236 & !4 = 232.
        assert_eq!(g(4096, 13, 1 << 30, 4).la_default_mb(), 232);
        // 16K clusters: group 504M -> 488, halved to 244 (not > 2 * 256).
        assert_eq!(g(4096, 14, 1 << 30, 4).la_default_mb(), 244);
        // 32K clusters: group 1008M -> 992 > 512, so 256.
        assert_eq!(g(4096, 15, 1 << 30, 4).la_default_mb(), 256);
        assert_eq!(g(512, 12, 1 << 20, 4).la_default_mb(), LA_OLD_DEFAULT_MB);
        assert_eq!(g(1024, 12, 1 << 20, 4).la_default_mb(), LA_OLD_DEFAULT_MB);
        // A small volume shares its clusters between slots: 256M, 4 slots -> 64M each.
        assert_eq!(g(4096, 12, 65536, 4).la_default_mb(), 64);
        assert_eq!(g(4096, 12, 65536, 4).la_default_bits(None), 64 << 8);
        assert_eq!(g(4096, 12, 16384, 8).la_default_mb(), 8);
        assert_eq!(g(4096, 12, 1 << 30, 4).la_max_mb(), 121);
        assert_eq!(g(4096, 12, 1 << 30, 4).la_default_bits(Some(1000)), 121 << 8);
        assert_eq!(g(4096, 12, 1 << 30, 4).la_default_bits(Some(8)), 2048);
    }

    #[test]
    fn random_and_mutated_blocks_never_panic_the_decoder() {
        let mut seed = vec![0u8; 4096];
        LocalAlloc::cleared(local_alloc_size(4096)).encode(&mut seed[DINODE_ID2_OFFSET..]).unwrap();
        crate::format::testutil::fuzz(0xD1E5_0005, &[seed], |buf| {
            if let Ok(la) = LocalAlloc::decode_inode_block(buf) {
                let mut copy = buf.to_vec();
                la.encode(&mut copy[DINODE_ID2_OFFSET..]).unwrap();
                assert_eq!(copy, buf);
                let _ = (la.count_set_bits(), la.test_bit(la.bits()));
            }
            let _ = LocalAlloc::decode(buf);
        });
    }
}

/// Tests whose other side is debugfs.ocfs2 `stat //local_alloc:NNNN`.
#[cfg(test)]
mod reference_tests {
    use super::*;
    use crate::format::blockcheck::{self, BlockCheckOutcome, INODE_CHECK_OFFSET};
    use crate::format::testutil::{field, TestImage};

    fn check(img: &TestImage, metaecc: bool) {
        let ino = img.ls("//")["local_alloc:0001"];
        let original = img.block(ino);
        let la = LocalAlloc::decode_inode_block(&original).unwrap();
        let stat = img.debugfs("stat //local_alloc:0001");
        assert_eq!(la.la_bm_off as u64, field(&stat, "Local Bitmap Offset:"));
        let la_line = &stat[stat.find("Local Bitmap Offset:").expect("local alloc line")..];
        assert_eq!(la.la_size as u64, field(la_line, "Size:"));
        assert_eq!(
            la,
            LocalAlloc::cleared(local_alloc_size(img.block_size as u32)),
            "mkfs leaves a cleared full-size window"
        );
        let mut again = original.clone();
        again[DINODE_ID2_OFFSET..].fill(0);
        la.encode(&mut again[DINODE_ID2_OFFSET..]).unwrap();
        assert_eq!(again, original, "the local alloc re-encodes byte for byte");

        let mut la = la;
        la.la_bm_off = 4242;
        la.la_bitmap[0] = 0xA5;
        let mut block = original.clone();
        la.encode(&mut block[DINODE_ID2_OFFSET..]).unwrap();
        if metaecc {
            blockcheck::compute(&mut block, INODE_CHECK_OFFSET);
        }
        img.put_block(ino, &block);
        let stat = img.debugfs("stat //local_alloc:0001");
        assert_eq!(field(&stat, "Local Bitmap Offset:"), 4242);
        let back = LocalAlloc::decode_inode_block(&img.block(ino)).unwrap();
        assert_eq!(back, la);
        assert_eq!(back.count_set_bits(), 4);
        if metaecc {
            let mut b = img.block(ino);
            assert_eq!(blockcheck::verify(&mut b, INODE_CHECK_OFFSET, "inode").unwrap(), BlockCheckOutcome::Clean);
            let crc = u32::from_le_bytes(b[INODE_CHECK_OFFSET..INODE_CHECK_OFFSET + 4].try_into().unwrap());
            assert!(stat.contains(&format!("CRC32: {crc:08x}")), "{stat}");
        }
    }

    #[test]
    fn local_alloc_matches_debugfs_at_4k() {
        check(&TestImage::mkfs("la4k", "256M", 4096, &["-N", "2"]), false);
    }

    #[test]
    fn local_alloc_matches_debugfs_at_512_with_metaecc() {
        check(&TestImage::mkfs("la512", "128M", 512, &["-N", "2", "-J", "size=4M", "--fs-features=metaecc"]), true);
    }
}
