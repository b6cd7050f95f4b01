//! Metaecc: the CRC32 and Hamming code that guard OCFS2 metadata blocks (kernel
//! `fs/ocfs2/blockcheck.c`).
//!
//! Every checked structure embeds an 8-byte `ocfs2_block_check` at a fixed offset. The check
//! covers the whole block with that field zeroed: `bc_crc32e` is the kernel's `crc32_le(~0)`
//! (no final inversion) and `bc_ecc` a Hamming code that can repair one flipped data bit.
//!
//! Invariants kept here:
//! - [`compute`] and [`verify`] treat the block as a little-endian bit array (bit `i` is bit
//!   `i % 8` of byte `i / 8`), exactly as the kernel's `ocfs2_find_next_bit` does;
//! - [`verify`] follows `ocfs2_block_check_validate`: it trusts the CRC alone when it matches,
//!   otherwise flips the one data bit the ECC syndrome names and accepts the block only if the
//!   CRC then matches. Like the kernel it leaves `bc_reserved1` zero on success. On failure the
//!   buffer is returned exactly as it was given.
//! - A multi-block structure (an xattr bucket) is checked as one buffer: chaining the CRC and
//!   the Hamming bit offset across blocks, as the kernel does, gives the same result as running
//!   over the concatenation.

use super::bytes::{le16, le32, put_le16, put_le32};
use super::checksum::crc32_le;
use super::{FormatError, Result};

/// Size of `struct ocfs2_block_check`.
pub const BLOCK_CHECK_SIZE: usize = 8;

/// `ocfs2_dinode.i_check`.
pub const INODE_CHECK_OFFSET: usize = 0x80;
/// `ocfs2_extent_block.h_check`.
pub const EXTENT_BLOCK_CHECK_OFFSET: usize = 0x08;
/// `ocfs2_group_desc.bg_check`.
pub const GROUP_DESC_CHECK_OFFSET: usize = 0x30;
/// `ocfs2_xattr_block.xb_check` (after xb_blkno at 0x10, not at 0x08).
pub const XATTR_BLOCK_CHECK_OFFSET: usize = 0x18;
/// `ocfs2_xattr_header.xh_check`, from the start of an xattr bucket.
pub const XATTR_BUCKET_CHECK_OFFSET: usize = 0x08;
/// `ocfs2_dx_root_block.dr_check`.
pub const DX_ROOT_CHECK_OFFSET: usize = 0x08;
/// `ocfs2_dx_leaf.dl_check`.
pub const DX_LEAF_CHECK_OFFSET: usize = 0x08;
/// `ocfs2_refcount_block.rf_check`.
pub const REFCOUNT_BLOCK_CHECK_OFFSET: usize = 0x20;
/// Size of `ocfs2_dir_block_trailer`, which ends every non-inline dir block when it has one.
pub const DIR_TRAILER_SIZE: usize = 0x40;
/// `ocfs2_dir_block_trailer.db_check`, from the start of the trailer.
pub const DIR_TRAILER_CHECK_IN_TRAILER: usize = 0x38;
/// Bytes reserved at the end of every quota block; `dq_check` sits at their start.
pub const QUOTA_BLOCK_RESERVED_SPACE: usize = 8;

/// Offset of `db_check` in a directory block of `block_size` bytes.
pub const fn dir_trailer_check_offset(block_size: usize) -> usize {
    block_size - DIR_TRAILER_SIZE + DIR_TRAILER_CHECK_IN_TRAILER
}

/// Offset of `dq_check` in a quota file block of `block_size` bytes.
pub const fn quota_block_check_offset(block_size: usize) -> usize {
    block_size - QUOTA_BLOCK_RESERVED_SPACE
}

/// `struct ocfs2_block_check` as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCheck {
    pub bc_crc32e: u32,
    pub bc_ecc: u16,
    pub bc_reserved1: u16,
}

impl BlockCheck {
    /// Reads the check field at `off`.
    pub fn decode(buf: &[u8], off: usize) -> Result<Self> {
        let end =
            off.checked_add(BLOCK_CHECK_SIZE).ok_or_else(|| FormatError::corrupt("block check", "offset overflows"))?;
        FormatError::need("block check", buf, end)?;
        Ok(BlockCheck { bc_crc32e: le32(buf, off), bc_ecc: le16(buf, off + 4), bc_reserved1: le16(buf, off + 6) })
    }

    /// Writes the check field at `off`.
    pub fn encode(&self, buf: &mut [u8], off: usize) -> Result<()> {
        let end =
            off.checked_add(BLOCK_CHECK_SIZE).ok_or_else(|| FormatError::corrupt("block check", "offset overflows"))?;
        FormatError::need("block check", buf, end)?;
        put_le32(buf, off, self.bc_crc32e);
        put_le16(buf, off + 4, self.bc_ecc);
        put_le16(buf, off + 6, self.bc_reserved1);
        Ok(())
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockCheckOutcome {
    /// The CRC matched as stored.
    Clean,
    /// One data bit was wrong and has been flipped back in the buffer; `bit` is its index in
    /// the block (byte `bit / 8`, bit `bit % 8`).
    Corrected { bit: u32 },
}

/// The 1-based Hamming code position of 0-based data bit `i`: data bits fill the positions
/// that are not powers of two. `parity` carries the number of parity positions already
/// passed between calls with growing `i`, so a scan over a block costs O(1) per bit.
fn code_bit_from(i: u32, parity: &mut u32) -> u32 {
    let mut b = i + 1 + *parity;
    // Each power of two at or below the (growing) position is a parity slot to step over.
    while *parity < 31 && (1u32 << *parity) < b + 1 {
        b += 1;
        *parity += 1;
    }
    b
}

#[cfg(test)]
fn code_bit(i: u32) -> u32 {
    code_bit_from(i, &mut 0)
}

/// The 0-based data bit at code position `code`, or `None` for parity positions (powers of
/// two) and 0.
fn data_bit(code: u32) -> Option<u32> {
    if code == 0 || code.is_power_of_two() {
        return None;
    }
    // Positions 1, 2, 4, ... up to the highest power of two below `code` are parity.
    let parity_below = 32 - code.leading_zeros();
    Some(code - 1 - parity_below)
}

/// The kernel's `ocfs2_hamming_encode_block`: XOR of the code positions of all set data bits.
pub fn hamming_encode(data: &[u8]) -> u32 {
    let mut ecc = 0u32;
    let mut passed = 0u32;
    for (byte_idx, &byte) in data.iter().enumerate() {
        if byte == 0 {
            continue;
        }
        let base = (byte_idx as u32).wrapping_mul(8);
        let mut bits = byte;
        while bits != 0 {
            let k = bits.trailing_zeros();
            ecc ^= code_bit_from(base + k, &mut passed);
            bits &= bits - 1;
        }
    }
    ecc
}

fn flip_bit(data: &mut [u8], bit: u32) {
    data[(bit / 8) as usize] ^= 1 << (bit % 8);
}

fn check_range(what: &'static str, block: &[u8], check_off: usize) -> Result<()> {
    let end =
        check_off.checked_add(BLOCK_CHECK_SIZE).ok_or_else(|| FormatError::corrupt(what, "check offset overflows"))?;
    FormatError::need(what, block, end)
}

/// Fills the check field at `check_off` for the current contents of `block`.
///
/// Panics if the field does not fit in `block`: the offset is a constant of the structure, so
/// that is a bug in the caller, not bad data.
pub fn compute(block: &mut [u8], check_off: usize) {
    assert!(
        check_off.checked_add(BLOCK_CHECK_SIZE).is_some_and(|end| end <= block.len()),
        "block check at {check_off:#x} does not fit a {}-byte block",
        block.len()
    );
    block[check_off..check_off + BLOCK_CHECK_SIZE].fill(0);
    let crc = crc32_le(!0, block);
    // No OCFS2 structure is larger than 4K, whose code positions fit 16 bits.
    let ecc = hamming_encode(block) as u16;
    put_le32(block, check_off, crc);
    put_le16(block, check_off + 4, ecc);
}

/// Checks `block` against its check field, repairing a single flipped data bit in place.
///
/// `what` names the structure in the error. Fails with [`FormatError::Checksum`] when the
/// block cannot be repaired (two or more flipped bits, or a damaged `bc_crc32e`); the buffer
/// is then left as it was given.
pub fn verify(block: &mut [u8], check_off: usize, what: &'static str) -> Result<BlockCheckOutcome> {
    check_range(what, block, check_off)?;
    let original: [u8; BLOCK_CHECK_SIZE] = super::bytes::array(block, check_off);
    let stored = BlockCheck::decode(block, check_off)?;
    block[check_off..check_off + BLOCK_CHECK_SIZE].fill(0);

    let restore_ok = |block: &mut [u8]| {
        put_le32(block, check_off, stored.bc_crc32e);
        put_le16(block, check_off + 4, stored.bc_ecc);
    };

    let crc = crc32_le(!0, block);
    if crc == stored.bc_crc32e {
        restore_ok(block);
        return Ok(BlockCheckOutcome::Clean);
    }

    let syndrome = hamming_encode(block) ^ u32::from(stored.bc_ecc);
    let nbits = (block.len() as u64) * 8;
    if let Some(bit) = data_bit(syndrome).filter(|&b| u64::from(b) < nbits) {
        flip_bit(block, bit);
        if crc32_le(!0, block) == stored.bc_crc32e {
            restore_ok(block);
            return Ok(BlockCheckOutcome::Corrected { bit });
        }
        flip_bit(block, bit);
    }

    block[check_off..check_off + BLOCK_CHECK_SIZE].copy_from_slice(&original);
    Err(FormatError::Checksum { what, stored: stored.bc_crc32e, computed: crc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dinode::Dinode;
    use crate::format::group::GroupDesc;
    use crate::format::testutil::{self, TestImage, XorShift};

    #[test]
    fn code_positions_skip_powers_of_two() {
        let got: Vec<u32> = (0..8).map(code_bit).collect();
        assert_eq!(got, vec![3, 5, 6, 7, 9, 10, 11, 12]);
        for i in 0..40_000 {
            assert_eq!(data_bit(code_bit(i)), Some(i), "data bit {i}");
        }
        for p in 0..16 {
            assert_eq!(data_bit(1 << p), None);
        }
        assert_eq!(data_bit(0), None);
        // The last data bit of a 4K block still has a 16-bit code position.
        assert!(code_bit(4096 * 8 - 1) <= u32::from(u16::MAX));
    }

    #[test]
    fn compute_then_verify_is_clean_and_keeps_the_block() {
        let mut rng = XorShift::new(0x0b10_c4ec);
        for size in [512usize, 1024, 2048, 4096] {
            let mut block = vec![0u8; size];
            rng.fill(&mut block);
            compute(&mut block, INODE_CHECK_OFFSET);
            let before = block.clone();
            assert_eq!(verify(&mut block, INODE_CHECK_OFFSET, "test").unwrap(), BlockCheckOutcome::Clean);
            assert_eq!(block, before);
        }
    }

    #[test]
    fn verify_rejects_a_check_field_outside_the_buffer() {
        let mut block = vec![0u8; 16];
        assert!(matches!(verify(&mut block, 9, "t"), Err(FormatError::TooShort { .. })));
        assert!(matches!(verify(&mut block, usize::MAX - 2, "t"), Err(FormatError::Corrupt { .. })));
        assert!(verify(&mut block, 8, "t").is_err()); // all-zero field: the CRC cannot match
    }

    #[test]
    fn verify_follows_the_kernel_for_damage_in_the_check_field() {
        let mut rng = XorShift::new(0xc4ec_f1e1);
        let mut block = vec![0u8; 4096];
        rng.fill(&mut block);
        compute(&mut block, GROUP_DESC_CHECK_OFFSET);
        let good = block.clone();
        let off = GROUP_DESC_CHECK_OFFSET;

        // A flip in the stored CRC leaves a syndrome of zero: not correctable, as in the kernel.
        for bit in 0..32 {
            let mut b = good.clone();
            b[off + bit / 8] ^= 1 << (bit % 8);
            let damaged = b.clone();
            assert!(matches!(verify(&mut b, off, "gd"), Err(FormatError::Checksum { .. })));
            assert_eq!(b, damaged, "a failed verify leaves the buffer as given");
        }
        // A flip in the stored ECC goes unnoticed because the CRC still matches.
        let mut b = good.clone();
        b[off + 4] ^= 0x10;
        assert_eq!(verify(&mut b, off, "gd").unwrap(), BlockCheckOutcome::Clean);
        // The reserved half-word is outside the check and comes back zero, as the kernel leaves it.
        let mut b = good.clone();
        b[off + 7] ^= 0x80;
        assert_eq!(verify(&mut b, off, "gd").unwrap(), BlockCheckOutcome::Clean);
        assert_eq!(b, good);
    }

    /// Every metadata block a metaecc mkfs wrote that this module's types decode: the
    /// superblock, each system inode, and every group descriptor of every chain allocator.
    fn checked_blocks(img: &TestImage) -> Vec<(u64, usize, Vec<u8>)> {
        let mut out = vec![(2u64, INODE_CHECK_OFFSET, img.block(2))];
        for (name, blkno) in img.system_inodes() {
            let block = img.block(blkno);
            let di = Dinode::decode(&block).unwrap_or_else(|e| panic!("{name}: {e}"));
            if di.is_chain() {
                for gd_blkno in testutil::chain_group_blknos(img, &block) {
                    let gd_block = img.block(gd_blkno);
                    GroupDesc::decode(&gd_block).unwrap();
                    out.push((gd_blkno, GROUP_DESC_CHECK_OFFSET, gd_block));
                }
            }
            out.push((blkno, INODE_CHECK_OFFSET, block));
        }
        out
    }

    #[test]
    fn mkfs_metaecc_blocks_verify_clean_and_compute_reproduces_their_check() {
        for img in [testutil::ecc4k(), testutil::ecc512()] {
            let blocks = checked_blocks(img);
            assert!(blocks.len() > 20, "expected many checked blocks, got {}", blocks.len());
            for (blkno, off, block) in blocks {
                let mut b = block.clone();
                assert_eq!(verify(&mut b, off, "mkfs block").unwrap(), BlockCheckOutcome::Clean, "block {blkno}");
                assert_eq!(b, block);
                let stored = BlockCheck::decode(&block, off).unwrap();
                assert_ne!(stored.bc_crc32e, 0, "block {blkno} has no check");
                let mut c = block.clone();
                compute(&mut c, off);
                assert_eq!(c, block, "block {blkno}: our CRC/ECC differ from mkfs.ocfs2's");
            }
        }
    }

    #[test]
    fn one_random_flipped_bit_in_mkfs_blocks_is_corrected() {
        let seed = 0x5eed_0001;
        println!("seed {seed:#x}");
        let mut rng = XorShift::new(seed);
        for img in [testutil::ecc4k(), testutil::ecc512()] {
            for (blkno, off, block) in checked_blocks(img) {
                for _ in 0..8 {
                    let nbits = block.len() * 8;
                    let bit = loop {
                        let b = rng.below(nbits as u64) as usize;
                        // Damage to bc_crc32e/bc_ecc themselves has its own test.
                        if !(off * 8..(off + 6) * 8).contains(&b) {
                            break b;
                        }
                    };
                    let mut b = block.clone();
                    b[bit / 8] ^= 1 << (bit % 8);
                    let outcome =
                        verify(&mut b, off, "mkfs block").unwrap_or_else(|e| panic!("block {blkno} bit {bit}: {e}"));
                    if (off * 8..(off + 8) * 8).contains(&bit) {
                        assert_eq!(outcome, BlockCheckOutcome::Clean);
                    } else {
                        assert_eq!(outcome, BlockCheckOutcome::Corrected { bit: bit as u32 }, "block {blkno}");
                    }
                    assert_eq!(b, block, "block {blkno} bit {bit} not restored");
                }
            }
        }
    }

    #[test]
    fn two_flipped_bits_in_mkfs_blocks_are_rejected() {
        let seed = 0x5eed_0002;
        println!("seed {seed:#x}");
        let mut rng = XorShift::new(seed);
        for img in [testutil::ecc4k(), testutil::ecc512()] {
            for (blkno, off, block) in checked_blocks(img) {
                for _ in 0..4 {
                    let nbits = block.len() as u64 * 8;
                    let outside = |b: u64| !(off as u64 * 8..(off as u64 + 8) * 8).contains(&b);
                    let (x, y) = loop {
                        let x = rng.below(nbits);
                        let y = rng.below(nbits);
                        if x != y && outside(x) && outside(y) {
                            break (x as usize, y as usize);
                        }
                    };
                    let mut b = block.clone();
                    b[x / 8] ^= 1 << (x % 8);
                    b[y / 8] ^= 1 << (y % 8);
                    let damaged = b.clone();
                    let r = verify(&mut b, off, "mkfs block");
                    assert!(matches!(r, Err(FormatError::Checksum { .. })), "block {blkno} bits {x},{y}: {r:?}");
                    assert_eq!(b, damaged);
                }
            }
        }
    }

    #[test]
    fn every_single_bit_flip_of_a_real_4k_inode_is_corrected() {
        let img = testutil::ecc4k();
        let blkno = img.system_inode("global_bitmap");
        let block = img.block(blkno);
        let off = INODE_CHECK_OFFSET;
        let mut b = block.clone();
        for bit in 0..block.len() * 8 {
            if (off * 8..(off + 8) * 8).contains(&bit) {
                continue;
            }
            b[bit / 8] ^= 1 << (bit % 8);
            let outcome = verify(&mut b, off, "inode");
            assert_eq!(outcome, Ok(BlockCheckOutcome::Corrected { bit: bit as u32 }), "bit {bit}");
            // `b` is back to the original after every successful correction.
        }
        assert_eq!(b, block);
    }

    #[test]
    fn verify_never_panics_on_random_or_mutated_buffers() {
        let seed = 0xbc_5eed;
        let img = testutil::ecc512();
        let seeds = vec![img.block(2), img.block(img.system_inode("global_bitmap"))];
        testutil::fuzz(seed, &seeds, |buf| {
            for off in [INODE_CHECK_OFFSET, EXTENT_BLOCK_CHECK_OFFSET, GROUP_DESC_CHECK_OFFSET] {
                let mut b = buf.to_vec();
                let _ = verify(&mut b, off, "fuzz");
                let _ = BlockCheck::decode(buf, off);
            }
        });
    }
}
