//! `struct ocfs2_super_block`: the `id2` of the superblock inode at block 2.
//!
//! Offsets below are relative to `id2` (block offset 0xC0). The structure is 0x140 bytes, so
//! that it ends at byte 0x200 and fits the smallest (512-byte) block. The header's comment on
//! `s_reserved2` says 0xC0; the fields before it add up to 0xC8, which is where it is.
//!
//! Decoding checks only the length; [`SuperBlock::validate`] applies the kernel's
//! `ocfs2_verify_volume` checks, which need the block size being probed.

use super::bytes::{array, cstr, le16, le32, le64, put_le16, put_le32, put_le64};
use super::constants::*;
use super::dinode::{Dinode, DINODE_ID2_OFFSET};
use super::{FormatError, Result};

/// Size of `struct ocfs2_super_block`.
pub const SUPER_BLOCK_SIZE: usize = 0x140;

const S_MAJOR_REV_LEVEL: usize = 0x00;
const S_MINOR_REV_LEVEL: usize = 0x02;
const S_MNT_COUNT: usize = 0x04;
const S_MAX_MNT_COUNT: usize = 0x06;
const S_STATE: usize = 0x08;
const S_ERRORS: usize = 0x0A;
const S_CHECKINTERVAL: usize = 0x0C;
const S_LASTCHECK: usize = 0x10;
const S_CREATOR_OS: usize = 0x18;
const S_FEATURE_COMPAT: usize = 0x1C;
const S_FEATURE_INCOMPAT: usize = 0x20;
const S_FEATURE_RO_COMPAT: usize = 0x24;
const S_ROOT_BLKNO: usize = 0x28;
const S_SYSTEM_DIR_BLKNO: usize = 0x30;
const S_BLOCKSIZE_BITS: usize = 0x38;
const S_CLUSTERSIZE_BITS: usize = 0x3C;
const S_MAX_SLOTS: usize = 0x40;
const S_TUNEFS_FLAG: usize = 0x42;
const S_UUID_HASH: usize = 0x44;
const S_FIRST_CLUSTER_GROUP: usize = 0x48;
const S_LABEL: usize = 0x50;
const S_UUID: usize = 0x90;
const S_CLUSTER_INFO: usize = 0xA0;
const S_XATTR_INLINE_SIZE: usize = 0xB8;
const S_RESERVED0: usize = 0xBA;
const S_DX_SEED: usize = 0xBC;
const S_RESERVED2: usize = 0xC8;

// struct ocfs2_cluster_info, relative to s_cluster_info.
const CI_STACK: usize = 0x00;
const CI_STACKFLAGS: usize = 0x04;
const CI_RESERVED: usize = 0x05;
const CI_CLUSTER: usize = 0x08;

// s_tunefs_flag
pub const TUNEFS_INPROG_REMOVE_SLOT: u16 = 0x0001;
pub const TUNEFS_INPROG_DIR_TRAILER: u16 = 0x0002;

/// `ci_stackflags`: the o2cb stack runs with global heartbeat.
pub const CLUSTER_O2CB_GLOBAL_HEARTBEAT: u8 = 0x01;

/// `struct ocfs2_cluster_info`: which cluster stack and cluster the volume belongs to. Only
/// meaningful with the USERSPACE_STACK or CLUSTERINFO incompat feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// "o2cb", "pcmk", ... (not NUL-terminated when 4 characters long).
    pub ci_stack: [u8; STACK_LABEL_LEN],
    /// Valid only with CLUSTERINFO.
    pub ci_stackflags: u8,
    pub ci_reserved: [u8; 3],
    pub ci_cluster: [u8; CLUSTER_NAME_LEN],
}

/// `struct ocfs2_super_block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperBlock {
    pub s_major_rev_level: u16,
    pub s_minor_rev_level: u16,
    pub s_mnt_count: u16,
    pub s_max_mnt_count: u16,
    pub s_state: u16,
    pub s_errors: u16,
    pub s_checkinterval: u32,
    pub s_lastcheck: u64,
    pub s_creator_os: u32,
    pub s_feature_compat: u32,
    pub s_feature_incompat: u32,
    pub s_feature_ro_compat: u32,
    pub s_root_blkno: u64,
    pub s_system_dir_blkno: u64,
    pub s_blocksize_bits: u32,
    pub s_clustersize_bits: u32,
    pub s_max_slots: u16,
    pub s_tunefs_flag: u16,
    /// Hash of the UUID; also the fourth indexed-dir hash seed.
    pub s_uuid_hash: u32,
    pub s_first_cluster_group: u64,
    pub s_label: [u8; MAX_VOL_LABEL_LEN],
    pub s_uuid: [u8; VOL_UUID_LEN],
    pub s_cluster_info: ClusterInfo,
    pub s_xattr_inline_size: u16,
    pub s_reserved0: u16,
    pub s_dx_seed: [u32; 3],
    pub s_reserved2: [u64; 15],
}

/// True if `block` (block 2 read at some block size) starts with the "OCFSV2" signature.
/// The caller probes block sizes 512..4096 and reads block 2 at each.
pub fn looks_like_superblock(block: &[u8]) -> bool {
    block.len() >= SUPER_BLOCK_SIGNATURE.len() && cstr(&block[..8]) == cstr(SUPER_BLOCK_SIGNATURE)
}

impl SuperBlock {
    /// Decodes from the superblock inode's `id2` (`&block[DINODE_ID2_OFFSET..]`).
    pub fn decode(id2: &[u8]) -> Result<Self> {
        FormatError::need("superblock", id2, SUPER_BLOCK_SIZE)?;
        let b = id2;
        let ci = S_CLUSTER_INFO;
        let mut s_reserved2 = [0u64; 15];
        for (k, v) in s_reserved2.iter_mut().enumerate() {
            *v = le64(b, S_RESERVED2 + 8 * k);
        }
        Ok(SuperBlock {
            s_major_rev_level: le16(b, S_MAJOR_REV_LEVEL),
            s_minor_rev_level: le16(b, S_MINOR_REV_LEVEL),
            s_mnt_count: le16(b, S_MNT_COUNT),
            s_max_mnt_count: le16(b, S_MAX_MNT_COUNT),
            s_state: le16(b, S_STATE),
            s_errors: le16(b, S_ERRORS),
            s_checkinterval: le32(b, S_CHECKINTERVAL),
            s_lastcheck: le64(b, S_LASTCHECK),
            s_creator_os: le32(b, S_CREATOR_OS),
            s_feature_compat: le32(b, S_FEATURE_COMPAT),
            s_feature_incompat: le32(b, S_FEATURE_INCOMPAT),
            s_feature_ro_compat: le32(b, S_FEATURE_RO_COMPAT),
            s_root_blkno: le64(b, S_ROOT_BLKNO),
            s_system_dir_blkno: le64(b, S_SYSTEM_DIR_BLKNO),
            s_blocksize_bits: le32(b, S_BLOCKSIZE_BITS),
            s_clustersize_bits: le32(b, S_CLUSTERSIZE_BITS),
            s_max_slots: le16(b, S_MAX_SLOTS),
            s_tunefs_flag: le16(b, S_TUNEFS_FLAG),
            s_uuid_hash: le32(b, S_UUID_HASH),
            s_first_cluster_group: le64(b, S_FIRST_CLUSTER_GROUP),
            s_label: array(b, S_LABEL),
            s_uuid: array(b, S_UUID),
            s_cluster_info: ClusterInfo {
                ci_stack: array(b, ci + CI_STACK),
                ci_stackflags: b[ci + CI_STACKFLAGS],
                ci_reserved: array(b, ci + CI_RESERVED),
                ci_cluster: array(b, ci + CI_CLUSTER),
            },
            s_xattr_inline_size: le16(b, S_XATTR_INLINE_SIZE),
            s_reserved0: le16(b, S_RESERVED0),
            s_dx_seed: [le32(b, S_DX_SEED), le32(b, S_DX_SEED + 4), le32(b, S_DX_SEED + 8)],
            s_reserved2,
        })
    }

    /// Decodes the superblock block (block 2): its inode head and its `id2`.
    pub fn decode_block(block: &[u8]) -> Result<(Dinode, SuperBlock)> {
        let di = Dinode::decode_superblock_inode(block)?;
        FormatError::need("superblock", block, DINODE_ID2_OFFSET + SUPER_BLOCK_SIZE)?;
        let sb = SuperBlock::decode(&block[DINODE_ID2_OFFSET..])?;
        Ok((di, sb))
    }

    /// Writes the 0x140 bytes of the structure into `id2`.
    pub fn encode(&self, id2: &mut [u8]) -> Result<()> {
        FormatError::need("superblock", id2, SUPER_BLOCK_SIZE)?;
        let b = id2;
        let ci = S_CLUSTER_INFO;
        put_le16(b, S_MAJOR_REV_LEVEL, self.s_major_rev_level);
        put_le16(b, S_MINOR_REV_LEVEL, self.s_minor_rev_level);
        put_le16(b, S_MNT_COUNT, self.s_mnt_count);
        put_le16(b, S_MAX_MNT_COUNT, self.s_max_mnt_count);
        put_le16(b, S_STATE, self.s_state);
        put_le16(b, S_ERRORS, self.s_errors);
        put_le32(b, S_CHECKINTERVAL, self.s_checkinterval);
        put_le64(b, S_LASTCHECK, self.s_lastcheck);
        put_le32(b, S_CREATOR_OS, self.s_creator_os);
        put_le32(b, S_FEATURE_COMPAT, self.s_feature_compat);
        put_le32(b, S_FEATURE_INCOMPAT, self.s_feature_incompat);
        put_le32(b, S_FEATURE_RO_COMPAT, self.s_feature_ro_compat);
        put_le64(b, S_ROOT_BLKNO, self.s_root_blkno);
        put_le64(b, S_SYSTEM_DIR_BLKNO, self.s_system_dir_blkno);
        put_le32(b, S_BLOCKSIZE_BITS, self.s_blocksize_bits);
        put_le32(b, S_CLUSTERSIZE_BITS, self.s_clustersize_bits);
        put_le16(b, S_MAX_SLOTS, self.s_max_slots);
        put_le16(b, S_TUNEFS_FLAG, self.s_tunefs_flag);
        put_le32(b, S_UUID_HASH, self.s_uuid_hash);
        put_le64(b, S_FIRST_CLUSTER_GROUP, self.s_first_cluster_group);
        b[S_LABEL..S_LABEL + MAX_VOL_LABEL_LEN].copy_from_slice(&self.s_label);
        b[S_UUID..S_UUID + VOL_UUID_LEN].copy_from_slice(&self.s_uuid);
        b[ci + CI_STACK..ci + CI_STACK + STACK_LABEL_LEN].copy_from_slice(&self.s_cluster_info.ci_stack);
        b[ci + CI_STACKFLAGS] = self.s_cluster_info.ci_stackflags;
        b[ci + CI_RESERVED..ci + CI_RESERVED + 3].copy_from_slice(&self.s_cluster_info.ci_reserved);
        b[ci + CI_CLUSTER..ci + CI_CLUSTER + CLUSTER_NAME_LEN].copy_from_slice(&self.s_cluster_info.ci_cluster);
        put_le16(b, S_XATTR_INLINE_SIZE, self.s_xattr_inline_size);
        put_le16(b, S_RESERVED0, self.s_reserved0);
        for (k, v) in self.s_dx_seed.iter().enumerate() {
            put_le32(b, S_DX_SEED + 4 * k, *v);
        }
        for (k, v) in self.s_reserved2.iter().enumerate() {
            put_le64(b, S_RESERVED2 + 8 * k, *v);
        }
        Ok(())
    }

    /// The kernel's `ocfs2_verify_volume` checks for a superblock read at `block_size`.
    pub fn validate(&self, block_size: u32) -> Result<()> {
        let what = "superblock";
        if !(9..=12).contains(&self.s_blocksize_bits) {
            return Err(FormatError::corrupt(what, format!("block size bits {} not in 9..=12", self.s_blocksize_bits)));
        }
        if 1u32 << self.s_blocksize_bits != block_size {
            return Err(FormatError::corrupt(
                what,
                format!("block size {} but found at {block_size}", 1u32 << self.s_blocksize_bits),
            ));
        }
        if self.s_major_rev_level != MAJOR_REV_LEVEL || self.s_minor_rev_level != MINOR_REV_LEVEL {
            return Err(FormatError::Unsupported {
                what,
                detail: format!("revision {}.{}", self.s_major_rev_level, self.s_minor_rev_level),
            });
        }
        if !(12..=20).contains(&self.s_clustersize_bits) {
            return Err(FormatError::corrupt(
                what,
                format!("cluster size bits {} not in 12..=20", self.s_clustersize_bits),
            ));
        }
        if self.s_root_blkno == 0 {
            return Err(FormatError::corrupt(what, "root directory block is 0"));
        }
        if self.s_system_dir_blkno == 0 {
            return Err(FormatError::corrupt(what, "system directory block is 0"));
        }
        if self.s_max_slots > MAX_SLOTS {
            return Err(FormatError::corrupt(what, format!("{} slots, more than {MAX_SLOTS}", self.s_max_slots)));
        }
        Ok(())
    }

    /// Block size in bytes, if `s_blocksize_bits` is one OCFS2 allows.
    pub fn block_size(&self) -> Option<u32> {
        (9..=12).contains(&self.s_blocksize_bits).then(|| 1u32 << self.s_blocksize_bits)
    }

    /// Cluster size in bytes, if `s_clustersize_bits` is one OCFS2 allows.
    pub fn cluster_size(&self) -> Option<u32> {
        (12..=20).contains(&self.s_clustersize_bits).then(|| 1u32 << self.s_clustersize_bits)
    }

    pub fn has_compat(&self, mask: u32) -> bool {
        self.s_feature_compat & mask != 0
    }
    pub fn has_incompat(&self, mask: u32) -> bool {
        self.s_feature_incompat & mask != 0
    }
    pub fn has_ro_compat(&self, mask: u32) -> bool {
        self.s_feature_ro_compat & mask != 0
    }
    pub fn meta_ecc(&self) -> bool {
        self.has_incompat(FEATURE_INCOMPAT_META_ECC)
    }
    pub fn discontig_bg(&self) -> bool {
        self.has_incompat(FEATURE_INCOMPAT_DISCONTIG_BG)
    }
    pub fn local_mount(&self) -> bool {
        self.has_incompat(FEATURE_INCOMPAT_LOCAL_MOUNT)
    }

    /// The label, up to its first NUL.
    pub fn label(&self) -> &[u8] {
        cstr(&self.s_label)
    }

    /// The UUID as 32 uppercase hex digits: the o2hb region and DLM domain name.
    pub fn uuid_string(&self) -> String {
        self.s_uuid.iter().map(|b| format!("{b:02X}")).collect()
    }

    /// The cluster stack name ("o2cb", "pcmk", ...) when the superblock records one.
    pub fn stack_name(&self) -> Option<&[u8]> {
        self.has_cluster_info().then(|| cstr(&self.s_cluster_info.ci_stack))
    }

    /// The cluster name when the superblock records one.
    pub fn cluster_name(&self) -> Option<&[u8]> {
        self.has_cluster_info().then(|| cstr(&self.s_cluster_info.ci_cluster))
    }

    fn has_cluster_info(&self) -> bool {
        self.has_incompat(FEATURE_INCOMPAT_USERSPACE_STACK | FEATURE_INCOMPAT_CLUSTERINFO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testutil::{self, field, field_str, line_after, XorShift};

    #[test]
    fn layout_matches_the_kernel_header() {
        let mut rng = XorShift::new(0x5b);
        let mut id2 = vec![0u8; SUPER_BLOCK_SIZE];
        rng.fill(&mut id2);
        let sb = SuperBlock::decode(&id2).unwrap();
        assert_eq!(sb.s_major_rev_level, le16(&id2, 0x00));
        assert_eq!(sb.s_minor_rev_level, le16(&id2, 0x02));
        assert_eq!(sb.s_mnt_count, le16(&id2, 0x04));
        assert_eq!(sb.s_max_mnt_count, le16(&id2, 0x06));
        assert_eq!(sb.s_state, le16(&id2, 0x08));
        assert_eq!(sb.s_errors, le16(&id2, 0x0A));
        assert_eq!(sb.s_checkinterval, le32(&id2, 0x0C));
        assert_eq!(sb.s_lastcheck, le64(&id2, 0x10));
        assert_eq!(sb.s_creator_os, le32(&id2, 0x18));
        assert_eq!(sb.s_feature_compat, le32(&id2, 0x1C));
        assert_eq!(sb.s_feature_incompat, le32(&id2, 0x20));
        assert_eq!(sb.s_feature_ro_compat, le32(&id2, 0x24));
        assert_eq!(sb.s_root_blkno, le64(&id2, 0x28));
        assert_eq!(sb.s_system_dir_blkno, le64(&id2, 0x30));
        assert_eq!(sb.s_blocksize_bits, le32(&id2, 0x38));
        assert_eq!(sb.s_clustersize_bits, le32(&id2, 0x3C));
        assert_eq!(sb.s_max_slots, le16(&id2, 0x40));
        assert_eq!(sb.s_tunefs_flag, le16(&id2, 0x42));
        assert_eq!(sb.s_uuid_hash, le32(&id2, 0x44));
        assert_eq!(sb.s_first_cluster_group, le64(&id2, 0x48));
        assert_eq!(&sb.s_label[..], &id2[0x50..0x90]);
        assert_eq!(&sb.s_uuid[..], &id2[0x90..0xA0]);
        assert_eq!(&sb.s_cluster_info.ci_stack[..], &id2[0xA0..0xA4]);
        assert_eq!(sb.s_cluster_info.ci_stackflags, id2[0xA4]);
        assert_eq!(&sb.s_cluster_info.ci_reserved[..], &id2[0xA5..0xA8]);
        assert_eq!(&sb.s_cluster_info.ci_cluster[..], &id2[0xA8..0xB8]);
        assert_eq!(sb.s_xattr_inline_size, le16(&id2, 0xB8));
        assert_eq!(sb.s_reserved0, le16(&id2, 0xBA));
        assert_eq!(sb.s_dx_seed, [le32(&id2, 0xBC), le32(&id2, 0xC0), le32(&id2, 0xC4)]);
        assert_eq!(sb.s_reserved2[0], le64(&id2, 0xC8));
        assert_eq!(sb.s_reserved2[14], le64(&id2, 0x138));
        // The superblock ends exactly at the end of a 512-byte block.
        assert_eq!(DINODE_ID2_OFFSET + SUPER_BLOCK_SIZE, 512);
        let mut out = vec![0u8; SUPER_BLOCK_SIZE];
        sb.encode(&mut out).unwrap();
        assert_eq!(out, id2);
    }

    #[test]
    fn decode_rejects_short_buffers_and_other_signatures() {
        assert!(matches!(SuperBlock::decode(&[0u8; SUPER_BLOCK_SIZE - 1]), Err(FormatError::TooShort { .. })));
        let mut block = vec![0u8; 512];
        assert!(!looks_like_superblock(&block));
        block[..8].copy_from_slice(INODE_SIGNATURE);
        assert!(SuperBlock::decode_block(&block).is_err());
        block[..8].copy_from_slice(SUPER_BLOCK_SIGNATURE);
        assert!(looks_like_superblock(&block));
        assert!(SuperBlock::decode_block(&block).is_ok());
        assert!(SuperBlock::decode_block(&block[..511]).is_err());
    }

    #[test]
    fn validate_applies_the_kernel_volume_checks() {
        let (_, sb) = SuperBlock::decode_block(&testutil::img4k().block(2)).unwrap();
        sb.validate(4096).unwrap();
        assert!(sb.validate(512).is_err());
        let mut bad = sb.clone();
        bad.s_blocksize_bits = 40;
        assert!(bad.validate(4096).is_err());
        assert_eq!(bad.block_size(), None);
        let mut bad = sb.clone();
        bad.s_clustersize_bits = 1548;
        assert!(bad.validate(4096).is_err());
        assert_eq!(bad.cluster_size(), None);
        let mut bad = sb.clone();
        bad.s_minor_rev_level = 91;
        assert!(matches!(bad.validate(4096), Err(FormatError::Unsupported { .. })));
        let mut bad = sb.clone();
        bad.s_root_blkno = 0;
        assert!(bad.validate(4096).is_err());
        let mut bad = sb.clone();
        bad.s_system_dir_blkno = 0;
        assert!(bad.validate(4096).is_err());
        let mut bad = sb;
        bad.s_max_slots = 256;
        assert!(bad.validate(4096).is_err());
    }

    #[test]
    fn superblock_matches_debugfs_stats() {
        for (img, label, slots) in [(testutil::img4k(), "fmtcore4k", 4), (testutil::img512(), "fmtcore512", 2)] {
            let block = img.block(2);
            assert!(looks_like_superblock(&block));
            let (di, sb) = SuperBlock::decode_block(&block).unwrap();
            sb.validate(img.block_size as u32).unwrap();
            assert_eq!(sb.block_size(), Some(img.block_size as u32));
            assert_eq!(di.i_blkno, SUPER_BLOCK_BLKNO);
            assert!(di.is_valid() && di.is_system() && di.is_superblock());
            let out = img.debugfs("stats");
            assert_eq!(sb.label(), label.as_bytes());
            assert_eq!(line_after(&out, "Label:"), label);
            assert_eq!(field_str(&out, "UUID:"), sb.uuid_string());
            assert_eq!(field(&out, "Block Size Bits:"), u64::from(sb.s_blocksize_bits));
            assert_eq!(field(&out, "Cluster Size Bits:"), u64::from(sb.s_clustersize_bits));
            assert_eq!(field(&out, "Max Node Slots:"), slots);
            assert_eq!(sb.s_max_slots as u64, slots);
            assert_eq!(field(&out, "Feature Compat:"), u64::from(sb.s_feature_compat));
            assert_eq!(field(&out, "Feature Incompat:"), u64::from(sb.s_feature_incompat));
            assert_eq!(field(&out, "Feature RO compat:"), u64::from(sb.s_feature_ro_compat));
            assert_eq!(field(&out, "Root Blknum:"), sb.s_root_blkno);
            assert_eq!(field(&out, "System Dir Blknum:"), sb.s_system_dir_blkno);
            assert_eq!(field(&out, "First Cluster Group Blknum:"), sb.s_first_cluster_group);
            assert_eq!(field(&out, "Extended Attributes Inline Size:"), u64::from(sb.s_xattr_inline_size));
            assert_eq!(field(&out, "Hash:"), u64::from(sb.s_uuid_hash));
            assert_eq!(field(&out, "Mount Count:"), u64::from(sb.s_mnt_count));
            assert_eq!(field(&out, "Max Mount Count:"), u64::from(sb.s_max_mnt_count));
            assert_eq!(line_after(&out, "Revision:"), format!("{}.{}", sb.s_major_rev_level, sb.s_minor_rev_level));
            let seeds: Vec<u64> =
                line_after(&out, "DX Seeds:").split_whitespace().take(3).map(|s| s.parse().unwrap()).collect();
            assert_eq!(seeds, sb.s_dx_seed.iter().map(|&s| u64::from(s)).collect::<Vec<_>>());
            assert_eq!(field(&out, "Generation:"), u64::from(di.i_generation));
            assert_eq!(field(&out, "Clusters:"), u64::from(di.i_clusters));
            assert!(sb.local_mount());
            assert_eq!(sb.stack_name(), None, "a local volume records no cluster stack");
            // encode(decode) gives back the whole structure, and the inode head.
            let mut again = block.clone();
            sb.encode(&mut again[DINODE_ID2_OFFSET..]).unwrap();
            di.encode(&mut again).unwrap();
            assert_eq!(again, block);
        }
    }

    #[test]
    fn decode_never_panics_on_random_or_mutated_buffers() {
        let seed = 0x5b_5eed;
        let seeds = vec![testutil::img4k().block(2), testutil::img512().block(2)];
        testutil::fuzz(seed, &seeds, |buf| {
            let _ = looks_like_superblock(buf);
            if let Ok((_, sb)) = SuperBlock::decode_block(buf) {
                let mut out = buf.to_vec();
                sb.encode(&mut out[DINODE_ID2_OFFSET..]).unwrap();
                assert_eq!(out, buf);
                let _ = (sb.validate(buf.len() as u32), sb.block_size(), sb.cluster_size(), sb.uuid_string());
                let _ = (sb.stack_name(), sb.cluster_name(), sb.label());
            }
            let _ = SuperBlock::decode(buf);
        });
    }
}
