//! One o2hb disk heartbeat block (`struct o2hb_disk_heartbeat_block`, kernel
//! `cluster/ocfs2_heartbeat.h`).
//!
//! Each node owns one sector of the heartbeat area (sector size = the region's `block_bytes`)
//! and rewrites it every heartbeat interval. The fields are little-endian like the rest of
//! OCFS2, and the rest of the sector is zero. The checksum is the kernel's
//! `crc32_le(0, sector, block_bytes)` over the whole sector with `hb_cksum` zeroed: seed 0,
//! unlike metaecc, which seeds with `~0`.
//!
//! `decode` does not check the checksum: a never-written slot has none, and the liveness rules
//! treat a bad checksum differently for live and dead nodes. Call [`HeartbeatBlock::verify`].

use super::bytes::{array, le32, le64, put_le32, put_le64};
use super::checksum::crc32_le;
use super::{FormatError, Result};

const HB_SEQ: usize = 0x00;
const HB_NODE: usize = 0x08;
const HB_PAD1: usize = 0x09;
/// Offset of `hb_cksum`.
pub const HB_CKSUM: usize = 0x0C;
const HB_GENERATION: usize = 0x10;
const HB_DEAD_MS: usize = 0x18;
/// `sizeof(struct o2hb_disk_heartbeat_block)`: 28 bytes of fields padded to 8.
pub const HB_BLOCK_SIZE: usize = 0x20;

/// The fields of a heartbeat block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartbeatBlock {
    /// Wall-clock seconds of the write; 0 means the slot was never written.
    pub hb_seq: u64,
    pub hb_node: u8,
    pub hb_pad1: [u8; 3],
    /// As stored; [`encode_sector`](Self::encode_sector) computes it.
    pub hb_cksum: u32,
    /// Random per region start; a change means the node restarted heartbeating.
    pub hb_generation: u64,
    /// The writer's dead threshold in milliseconds.
    pub hb_dead_ms: u32,
}

/// The checksum of `sector` as the kernel computes it: the CRC of the whole sector with the
/// `hb_cksum` bytes taken as zero.
pub fn compute_checksum(sector: &[u8]) -> u32 {
    let cut = sector.len().min(HB_CKSUM);
    let after = sector.len().min(HB_CKSUM + 4);
    let crc = crc32_le(0, &sector[..cut]);
    let crc = crc32_le(crc, &[0u8; 4][..after - cut]);
    crc32_le(crc, &sector[after..])
}

impl HeartbeatBlock {
    /// Reads the fields from the start of `sector`.
    pub fn decode(sector: &[u8]) -> Result<Self> {
        FormatError::need("heartbeat block", sector, HB_BLOCK_SIZE)?;
        Ok(HeartbeatBlock {
            hb_seq: le64(sector, HB_SEQ),
            hb_node: sector[HB_NODE],
            hb_pad1: array(sector, HB_PAD1),
            hb_cksum: le32(sector, HB_CKSUM),
            hb_generation: le64(sector, HB_GENERATION),
            hb_dead_ms: le32(sector, HB_DEAD_MS),
        })
    }

    /// Zeroes the whole sector, writes the fields and the computed checksum, as
    /// `o2hb_prepare_block` does. Returns the checksum.
    pub fn encode_sector(&self, sector: &mut [u8]) -> Result<u32> {
        FormatError::need("heartbeat block", sector, HB_BLOCK_SIZE)?;
        sector.fill(0);
        put_le64(sector, HB_SEQ, self.hb_seq);
        sector[HB_NODE] = self.hb_node;
        sector[HB_PAD1..HB_PAD1 + 3].copy_from_slice(&self.hb_pad1);
        put_le64(sector, HB_GENERATION, self.hb_generation);
        put_le32(sector, HB_DEAD_MS, self.hb_dead_ms);
        let crc = compute_checksum(sector);
        put_le32(sector, HB_CKSUM, crc);
        Ok(crc)
    }

    /// Checks the stored checksum of `sector` (`o2hb_verify_crc`).
    pub fn verify(sector: &[u8]) -> Result<()> {
        FormatError::need("heartbeat block", sector, HB_BLOCK_SIZE)?;
        let stored = le32(sector, HB_CKSUM);
        let computed = compute_checksum(sector);
        if stored != computed {
            return Err(FormatError::Checksum { what: "heartbeat block", stored, computed });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HeartbeatBlock {
        HeartbeatBlock {
            hb_seq: 0x6b06_e91e,
            hb_node: 1,
            hb_generation: 0x1122_3344_5566_7788,
            hb_dead_ms: 62000,
            ..Default::default()
        }
    }

    #[test]
    fn checksum_is_crc32_seeded_zero_over_the_sector() {
        // Computed independently with Python: ~zlib.crc32(sector, 0xFFFFFFFF) & 0xFFFFFFFF,
        // which is the raw reflected CRC seeded with 0 and not inverted at the end.
        let mut sector = vec![0xEEu8; 512];
        let crc = sample().encode_sector(&mut sector).unwrap();
        assert_eq!(crc, 0x2f49_b3dd);
        assert_eq!(&sector[HB_CKSUM..HB_CKSUM + 4], &0x2f49_b3ddu32.to_le_bytes());
        assert!(sector[HB_BLOCK_SIZE..].iter().all(|&b| b == 0));
        HeartbeatBlock::verify(&sector).unwrap();
    }

    #[test]
    fn fields_round_trip_at_their_offsets() {
        let mut sector = vec![0u8; 512];
        let crc = sample().encode_sector(&mut sector).unwrap();
        assert_eq!(
            &sector[..0x1C],
            &{
                let mut v = Vec::new();
                v.extend_from_slice(&0x6b06_e91eu64.to_le_bytes());
                v.extend_from_slice(&[1, 0, 0, 0]);
                v.extend_from_slice(&crc.to_le_bytes());
                v.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
                v.extend_from_slice(&62000u32.to_le_bytes());
                v
            }[..]
        );
        let back = HeartbeatBlock::decode(&sector).unwrap();
        assert_eq!(back, HeartbeatBlock { hb_cksum: crc, ..sample() });
    }

    #[test]
    fn any_flipped_bit_fails_verification() {
        let mut sector = vec![0u8; 512];
        sample().encode_sector(&mut sector).unwrap();
        for bit in [0usize, 8 * 9 + 3, 8 * 0x18, 8 * 300, 8 * 511 + 7] {
            let mut s = sector.clone();
            s[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(HeartbeatBlock::verify(&s), Err(FormatError::Checksum { .. })), "bit {bit}");
        }
        assert!(HeartbeatBlock::verify(&sector[..16]).is_err());
        assert!(sample().encode_sector(&mut [0u8; 31]).is_err());
        // Short input is hashed as far as it goes, the checksum bytes counting as zero.
        assert_eq!(compute_checksum(&[1, 2, 3]), crc32_le(0, &[1, 2, 3]));
        assert_eq!(compute_checksum(&[7u8; 14]), crc32_le(0, &[7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0, 0]));
    }

    #[test]
    fn random_and_mutated_sectors_never_panic() {
        let mut seed = vec![0u8; 512];
        sample().encode_sector(&mut seed).unwrap();
        crate::format::testutil::fuzz(0xD1E5_0007, &[seed], |buf| {
            let _ = compute_checksum(buf);
            let ok = HeartbeatBlock::verify(buf).is_ok();
            if let Ok(hb) = HeartbeatBlock::decode(buf) {
                let mut copy = buf.to_vec();
                hb.encode_sector(&mut copy).unwrap();
                assert_eq!(HeartbeatBlock::decode(&copy).unwrap().hb_seq, hb.hb_seq);
                HeartbeatBlock::verify(&copy).unwrap();
                if ok && buf[HB_BLOCK_SIZE..].iter().all(|&b| b == 0) && hb.hb_pad1 == [0; 3] {
                    assert_eq!(copy, buf);
                }
            }
        });
    }
}

/// Tests whose other side is debugfs.ocfs2 `hb`, which dumps the heartbeat file in 512-byte
/// slots, one per node.
#[cfg(test)]
mod reference_tests {
    use super::*;
    use crate::format::testutil::TestImage;

    #[test]
    fn heartbeat_blocks_written_by_us_dump_in_debugfs() {
        let img = TestImage::mkfs("hb", "256M", 4096, &["-N", "4"]);
        let start = img.bmap("//heartbeat", 0) * img.block_size as u64;
        // mkfs leaves every slot zero: never written, no checksum.
        let blank = img.read(start, 512);
        assert_eq!(HeartbeatBlock::decode(&blank).unwrap(), HeartbeatBlock::default());
        assert!(img.debugfs("hb").lines().count() == 1);

        let mut want = Vec::new();
        for (node, seq, generation) in [(0u8, 0x6b06_e91eu64, 0x0123_4567_89ab_cdefu64), (3, 1, 2), (254, u64::MAX, 0)]
        {
            let hb = HeartbeatBlock {
                hb_seq: seq,
                hb_node: node,
                hb_generation: generation,
                hb_dead_ms: 62000,
                ..Default::default()
            };
            let mut sector = vec![0u8; 512];
            let crc = hb.encode_sector(&mut sector).unwrap();
            HeartbeatBlock::verify(&sector).unwrap();
            img.write(start + node as u64 * 512, &sector);
            want.push(format!("{node}: {node} {seq:016x} {generation:016x} {crc:08x} 62000"));
            let back = HeartbeatBlock::decode(&img.read(start + node as u64 * 512, 512)).unwrap();
            assert_eq!(back, HeartbeatBlock { hb_cksum: crc, ..hb });
        }
        let got: Vec<String> =
            img.debugfs("hb").lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(got, want);
    }
}
