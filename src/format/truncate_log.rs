//! The per-slot truncate log (`struct ocfs2_truncate_log`), which lives in `id2` of the
//! `truncate_log:NNNN` inode.
//!
//! Clusters freed by truncate are first recorded here as (start, count) runs and returned to
//! the global bitmap later, in one batch, or by recovery after the node died. Records
//! `0..tl_used` are live; `tl_count` is the capacity, fixed by the block size.
//!
//! Offsets are relative to `id2`: `decode` takes `&inode_block[0xC0..]`.

use super::bytes::{le16, le32, put_le16, put_le32};
use super::dinode::DINODE_ID2_OFFSET;
use super::{FormatError, Result};

const TL_COUNT: usize = 0x00;
const TL_USED: usize = 0x02;
const TL_RESERVED1: usize = 0x04;
/// Offset of `tl_recs` inside id2.
pub const TL_RECS: usize = 0x08;
/// `sizeof(struct ocfs2_truncate_rec)`.
pub const TRUNCATE_REC_SIZE: usize = 8;

/// Records that fit in an inode block (`ocfs2_truncate_recs_per_inode`); mkfs writes this as
/// `tl_count`.
pub const fn truncate_recs_per_inode(blocksize: u32) -> u16 {
    ((blocksize as usize - DINODE_ID2_OFFSET - TL_RECS) / TRUNCATE_REC_SIZE) as u16
}

/// One run of freed clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TruncateRec {
    /// First cluster of the run.
    pub t_start: u32,
    pub t_clusters: u32,
}

/// The log header and its live records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncateLog {
    pub tl_count: u16,
    pub tl_used: u16,
    pub tl_reserved1: u32,
    /// Exactly `tl_used` records.
    pub tl_recs: Vec<TruncateRec>,
}

impl TruncateLog {
    /// An empty log of `tl_count` records, as mkfs writes it.
    pub fn empty(tl_count: u16) -> Self {
        TruncateLog { tl_count, tl_used: 0, tl_reserved1: 0, tl_recs: Vec::new() }
    }

    /// Decodes the log from the id2 area, refusing a `tl_count` larger than the block holds
    /// and a `tl_used` above `tl_count`.
    pub fn decode(id2: &[u8]) -> Result<Self> {
        FormatError::need("truncate log", id2, TL_RECS)?;
        let tl_count = le16(id2, TL_COUNT);
        let tl_used = le16(id2, TL_USED);
        let room = (id2.len() - TL_RECS) / TRUNCATE_REC_SIZE;
        if tl_count as usize > room {
            return Err(FormatError::corrupt(
                "truncate log",
                format!("tl_count {tl_count} is more than the {room} records the block holds"),
            ));
        }
        if tl_used > tl_count {
            return Err(FormatError::corrupt("truncate log", format!("tl_used {tl_used} exceeds tl_count {tl_count}")));
        }
        let tl_recs = (0..tl_used as usize)
            .map(|i| {
                let off = TL_RECS + i * TRUNCATE_REC_SIZE;
                TruncateRec { t_start: le32(id2, off), t_clusters: le32(id2, off + 4) }
            })
            .collect();
        Ok(TruncateLog { tl_count, tl_used, tl_reserved1: le32(id2, TL_RESERVED1), tl_recs })
    }

    /// Decodes from a whole inode block.
    pub fn decode_inode_block(block: &[u8]) -> Result<Self> {
        FormatError::need("truncate log", block, DINODE_ID2_OFFSET + TL_RECS)?;
        Self::decode(&block[DINODE_ID2_OFFSET..])
    }

    /// Writes the header and the live records; slots past `tl_used` are left as they are.
    /// Fails if `tl_recs` does not hold `tl_used` records, `tl_used > tl_count`, or the records
    /// do not fit in `id2`.
    pub fn encode(&self, id2: &mut [u8]) -> Result<()> {
        if self.tl_recs.len() != self.tl_used as usize || self.tl_used > self.tl_count {
            return Err(FormatError::corrupt(
                "truncate log",
                format!("{} records, tl_used {}, tl_count {}", self.tl_recs.len(), self.tl_used, self.tl_count),
            ));
        }
        FormatError::need("truncate log", id2, TL_RECS + self.tl_recs.len() * TRUNCATE_REC_SIZE)?;
        put_le16(id2, TL_COUNT, self.tl_count);
        put_le16(id2, TL_USED, self.tl_used);
        put_le32(id2, TL_RESERVED1, self.tl_reserved1);
        for (i, r) in self.tl_recs.iter().enumerate() {
            let off = TL_RECS + i * TRUNCATE_REC_SIZE;
            put_le32(id2, off, r.t_start);
            put_le32(id2, off + 4, r.t_clusters);
        }
        Ok(())
    }

    /// True when no more records fit.
    pub fn is_full(&self) -> bool {
        self.tl_used >= self.tl_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_block_minus_0xc8_over_8() {
        assert_eq!(truncate_recs_per_inode(4096), 487);
        assert_eq!(truncate_recs_per_inode(512), 39);
    }

    #[test]
    fn round_trips_live_records() {
        let mut block = vec![0u8; 512];
        let log = TruncateLog {
            tl_count: 39,
            tl_used: 2,
            tl_reserved1: 0,
            tl_recs: vec![TruncateRec { t_start: 100, t_clusters: 5 }, TruncateRec { t_start: 7, t_clusters: 1 }],
        };
        log.encode(&mut block[DINODE_ID2_OFFSET..]).unwrap();
        assert!(log.encode(&mut block[500..]).is_err());
        assert!(TruncateLog { tl_used: 3, ..log.clone() }.encode(&mut block[DINODE_ID2_OFFSET..]).is_err());
        assert_eq!(&block[0xC0..0xD8], &[39, 0, 2, 0, 0, 0, 0, 0, 100, 0, 0, 0, 5, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(TruncateLog::decode_inode_block(&block).unwrap(), log);
        assert!(!log.is_full());
    }

    #[test]
    fn refuses_counts_that_do_not_fit() {
        let mut id2 = vec![0u8; 512 - 0xC0];
        put_le16(&mut id2, TL_COUNT, 40);
        assert!(TruncateLog::decode(&id2).is_err());
        put_le16(&mut id2, TL_COUNT, 39);
        put_le16(&mut id2, TL_USED, 40);
        assert!(TruncateLog::decode(&id2).is_err());
        put_le16(&mut id2, TL_USED, 39);
        assert_eq!(TruncateLog::decode(&id2).unwrap().tl_recs.len(), 39);
        assert!(TruncateLog::decode(&id2[..7]).is_err());
    }

    #[test]
    fn random_and_mutated_blocks_never_panic_the_decoder() {
        let mut seed = vec![0u8; 4096];
        let mut log = TruncateLog::empty(truncate_recs_per_inode(4096));
        log.tl_recs.push(TruncateRec { t_start: 1, t_clusters: 2 });
        log.tl_used = 1;
        log.encode(&mut seed[DINODE_ID2_OFFSET..]).unwrap();
        crate::format::testutil::fuzz(0xD1E5_0006, &[seed], |buf| {
            if let Ok(tl) = TruncateLog::decode_inode_block(buf) {
                let mut copy = buf.to_vec();
                tl.encode(&mut copy[DINODE_ID2_OFFSET..]).unwrap();
                assert_eq!(copy, buf);
            }
            let _ = TruncateLog::decode(buf);
        });
    }
}

/// Tests whose other side is debugfs.ocfs2 `stat //truncate_log:NNNN`.
#[cfg(test)]
mod reference_tests {
    use super::*;
    use crate::format::blockcheck::{self, INODE_CHECK_OFFSET};
    use crate::format::testutil::{field, TestImage};

    /// `(start, clusters)` rows of the truncate log table.
    fn rows(stat: &str) -> Vec<(u32, u32)> {
        let table = &stat[stat.find("Num Clusters").expect("truncate log table")..];
        table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let c: Vec<u32> = l.split_whitespace().filter_map(|t| t.parse().ok()).collect();
                (c.len() == 3).then(|| (c[1], c[2]))
            })
            .collect()
    }

    fn check(img: &TestImage, metaecc: bool) {
        let ino = img.ls("//")["truncate_log:0000"];
        let original = img.block(ino);
        let tl = TruncateLog::decode_inode_block(&original).unwrap();
        let stat = img.debugfs("stat //truncate_log:0000");
        assert_eq!(tl.tl_count as u64, field(&stat, "Total Records:"));
        assert_eq!(tl.tl_used as u64, field(&stat, "Used:"));
        assert_eq!(tl, TruncateLog::empty(truncate_recs_per_inode(img.block_size as u32)));
        let mut again = original.clone();
        again[DINODE_ID2_OFFSET..].fill(0);
        tl.encode(&mut again[DINODE_ID2_OFFSET..]).unwrap();
        assert_eq!(again, original, "the truncate log re-encodes byte for byte");

        let mut tl = tl;
        tl.tl_recs = (0..5).map(|i| TruncateRec { t_start: 1000 + 17 * i, t_clusters: i + 1 }).collect();
        tl.tl_used = 5;
        let mut block = original.clone();
        tl.encode(&mut block[DINODE_ID2_OFFSET..]).unwrap();
        if metaecc {
            blockcheck::compute(&mut block, INODE_CHECK_OFFSET);
        }
        img.put_block(ino, &block);
        let stat = img.debugfs("stat //truncate_log:0000");
        assert_eq!(field(&stat, "Used:"), 5);
        let want: Vec<(u32, u32)> = tl.tl_recs.iter().map(|r| (r.t_start, r.t_clusters)).collect();
        assert_eq!(rows(&stat), want);
        assert_eq!(TruncateLog::decode_inode_block(&img.block(ino)).unwrap(), tl);
    }

    #[test]
    fn truncate_log_matches_debugfs_at_4k() {
        check(&TestImage::mkfs("tl4k", "256M", 4096, &["-N", "2"]), false);
    }

    #[test]
    fn truncate_log_matches_debugfs_at_512_with_metaecc() {
        check(&TestImage::mkfs("tl512", "128M", 512, &["-N", "2", "-J", "size=4M", "--fs-features=metaecc"]), true);
    }
}
