//! `struct ocfs2_chain_list`: the `id2` of a chain allocator inode (`OCFS2_CHAIN_FL`).
//!
//! Each of the `cl_next_free_rec` used records heads a linked list of group descriptors
//! (`bg_next_group`) and sums their free and total bits. [`ChainList::recs`] holds exactly the
//! used records; decoding checks that `cl_count` slots fit the buffer and that
//! `cl_next_free_rec <= cl_count`, and encoding zeroes the unused slots.

use super::bytes::{le16, le32, le64, put_le16, put_le32, put_le64};
use super::{FormatError, Result};

pub const CHAIN_REC_SIZE: usize = 16;
pub const CHAIN_LIST_HEADER_SIZE: usize = 16;

/// `ocfs2_chain_recs_per_inode`: records an inode's chain list has room for.
pub fn chain_recs_per_inode(block_size: usize) -> u16 {
    let n = block_size.saturating_sub(0xC0 + CHAIN_LIST_HEADER_SIZE) / CHAIN_REC_SIZE;
    n.min(usize::from(u16::MAX)) as u16
}

/// `struct ocfs2_chain_rec`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainRec {
    /// Free bits in all groups of this chain.
    pub c_free: u32,
    /// Bits in all groups of this chain.
    pub c_total: u32,
    /// First group descriptor of the chain.
    pub c_blkno: u64,
}

impl ChainRec {
    pub fn decode(buf: &[u8]) -> Result<Self> {
        FormatError::need("chain record", buf, CHAIN_REC_SIZE)?;
        Ok(ChainRec { c_free: le32(buf, 0x00), c_total: le32(buf, 0x04), c_blkno: le64(buf, 0x08) })
    }

    pub fn encode(&self, buf: &mut [u8]) -> Result<()> {
        FormatError::need("chain record", buf, CHAIN_REC_SIZE)?;
        put_le32(buf, 0x00, self.c_free);
        put_le32(buf, 0x04, self.c_total);
        put_le64(buf, 0x08, self.c_blkno);
        Ok(())
    }
}

/// `struct ocfs2_chain_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainList {
    /// Clusters per group.
    pub cl_cpg: u16,
    /// Bits per cluster: 1 for the cluster bitmap, clusters/blocks for block suballocators.
    pub cl_bpc: u16,
    /// Record slots.
    pub cl_count: u16,
    pub cl_reserved1: u64,
    /// The used records; `cl_next_free_rec` is their number.
    pub recs: Vec<ChainRec>,
}

impl ChainList {
    /// `cl_next_free_rec`.
    pub fn cl_next_free_rec(&self) -> u16 {
        self.recs.len() as u16
    }

    /// Bits in one full group (`ocfs2_bits_per_group`).
    pub fn bits_per_group(&self) -> u32 {
        u32::from(self.cl_cpg) * u32::from(self.cl_bpc)
    }

    /// Bytes the list occupies: header plus all `cl_count` slots.
    pub fn encoded_len(&self) -> usize {
        CHAIN_LIST_HEADER_SIZE + usize::from(self.cl_count) * CHAIN_REC_SIZE
    }

    /// Sums of `c_free` and `c_total` over the used records, which must equal the inode's
    /// `i_total - i_used` and `i_total`.
    pub fn totals(&self) -> (u64, u64) {
        self.recs.iter().fold((0, 0), |(f, t), r| (f + u64::from(r.c_free), t + u64::from(r.c_total)))
    }

    /// Decodes from the inode's `id2` (`&block[DINODE_ID2_OFFSET..]`).
    pub fn decode(id2: &[u8]) -> Result<Self> {
        let what = "chain list";
        FormatError::need(what, id2, CHAIN_LIST_HEADER_SIZE)?;
        let cl_count = le16(id2, 0x04);
        let next_free = le16(id2, 0x06);
        let list = ChainList {
            cl_cpg: le16(id2, 0x00),
            cl_bpc: le16(id2, 0x02),
            cl_count,
            cl_reserved1: le64(id2, 0x08),
            recs: Vec::new(),
        };
        if list.encoded_len() > id2.len() {
            return Err(FormatError::corrupt(
                what,
                format!("cl_count {cl_count} needs {} bytes, the inode has {}", list.encoded_len(), id2.len()),
            ));
        }
        if next_free > cl_count {
            return Err(FormatError::corrupt(what, format!("cl_next_free_rec {next_free} > cl_count {cl_count}")));
        }
        let recs = id2[CHAIN_LIST_HEADER_SIZE..]
            .chunks_exact(CHAIN_REC_SIZE)
            .take(usize::from(next_free))
            .map(ChainRec::decode)
            .collect::<Result<Vec<_>>>()?;
        Ok(ChainList { recs, ..list })
    }

    /// Writes the header, the used records, and zeroes for the unused slots up to `cl_count`.
    pub fn encode(&self, id2: &mut [u8]) -> Result<()> {
        let what = "chain list";
        if self.recs.len() > usize::from(self.cl_count) {
            return Err(FormatError::corrupt(
                what,
                format!("{} records but cl_count {}", self.recs.len(), self.cl_count),
            ));
        }
        FormatError::need(what, id2, self.encoded_len())?;
        put_le16(id2, 0x00, self.cl_cpg);
        put_le16(id2, 0x02, self.cl_bpc);
        put_le16(id2, 0x04, self.cl_count);
        put_le16(id2, 0x06, self.cl_next_free_rec());
        put_le64(id2, 0x08, self.cl_reserved1);
        let slots = &mut id2[CHAIN_LIST_HEADER_SIZE..self.encoded_len()];
        for (k, slot) in slots.chunks_exact_mut(CHAIN_REC_SIZE).enumerate() {
            match self.recs.get(k) {
                Some(rec) => rec.encode(slot)?,
                None => slot.fill(0),
            }
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
    fn capacity_matches_debugfs_counts() {
        assert_eq!(chain_recs_per_inode(4096), 243);
        assert_eq!(chain_recs_per_inode(512), 19);
        assert_eq!(chain_recs_per_inode(100), 0);
    }

    #[test]
    fn layout_and_round_trip() {
        let cl = ChainList {
            cl_cpg: 0x0201,
            cl_bpc: 0x0403,
            cl_count: 4,
            cl_reserved1: 0x0f0e_0d0c_0b0a_0908,
            recs: vec![ChainRec { c_free: 0x1312_1110, c_total: 0x1716_1514, c_blkno: 0x1f1e_1d1c_1b1a_1918 }],
        };
        let mut buf = vec![0xAAu8; CHAIN_LIST_HEADER_SIZE + 4 * CHAIN_REC_SIZE + 5];
        cl.encode(&mut buf).unwrap();
        let expect: Vec<u8> = [1u8, 2, 3, 4, 4, 0, 1, 0].into_iter().chain(8..0x20).collect();
        assert_eq!(&buf[..0x20], &expect[..]);
        assert!(buf[0x20..0x50].iter().all(|&b| b == 0), "unused slots are zeroed");
        assert!(buf[0x50..].iter().all(|&b| b == 0xAA), "nothing past cl_count slots");
        assert_eq!(ChainList::decode(&buf).unwrap(), cl);
        assert_eq!(cl.bits_per_group(), 0x0201 * 0x0403);
    }

    #[test]
    fn decode_checks_counts() {
        let mut buf = vec![0u8; 16 + 2 * 16];
        put_le16(&mut buf, 4, 2);
        put_le16(&mut buf, 6, 2);
        assert_eq!(ChainList::decode(&buf).unwrap().recs.len(), 2);
        assert!(ChainList::decode(&buf[..buf.len() - 1]).is_err());
        put_le16(&mut buf, 6, 3);
        assert!(ChainList::decode(&buf).is_err());
        assert!(ChainList::decode(&buf[..15]).is_err());
        let cl = ChainList { cl_cpg: 1, cl_bpc: 1, cl_count: 0, cl_reserved1: 0, recs: vec![ChainRec::default()] };
        assert!(cl.encode(&mut buf).is_err());
    }

    #[test]
    fn chain_allocators_match_debugfs() {
        for img in [testutil::img4k(), testutil::img512()] {
            let mut seen = 0;
            for (name, blkno) in img.system_inodes() {
                let block = img.block(blkno);
                let di = Dinode::decode(&block).unwrap();
                if !di.is_chain() {
                    continue;
                }
                seen += 1;
                let cl = ChainList::decode(&block[DINODE_ID2_OFFSET..]).unwrap();
                let out = img.debugfs(&format!("stat //{name}"));
                assert_eq!(field(&out, "Bitmap Total:"), u64::from(di.i_total()), "{name}");
                assert_eq!(field(&out, "Used:"), u64::from(di.i_used()), "{name}");
                assert_eq!(field(&out, "Clusters per Group:"), u64::from(cl.cl_cpg), "{name}");
                assert_eq!(field(&out, "Bits per Cluster:"), u64::from(cl.cl_bpc), "{name}");
                assert_eq!(field(&out, "Count:"), u64::from(cl.cl_count), "{name}");
                assert_eq!(cl.cl_count, chain_recs_per_inode(img.block_size), "{name}");
                assert_eq!(field(&out, "Next Free Rec:"), u64::from(cl.cl_next_free_rec()), "{name}");
                // debugfs prints no table for an allocator without chains.
                let rows = match out.find("##   Total") {
                    Some(start) => {
                        let end = out[start..].find("Group Chain:").map_or(out.len(), |e| start + e);
                        table_rows(&out[start..end])
                    }
                    None => Vec::new(),
                };
                assert_eq!(rows.len(), cl.recs.len(), "{name}");
                for (row, rec) in rows.iter().zip(&cl.recs) {
                    assert_eq!(row[1], rec.c_total.to_string(), "{name}");
                    assert_eq!(row[2], (rec.c_total - rec.c_free).to_string(), "{name}");
                    assert_eq!(row[3], rec.c_free.to_string(), "{name}");
                    assert_eq!(row[4], rec.c_blkno.to_string(), "{name}");
                }
                let (free, total) = cl.totals();
                assert_eq!(total, u64::from(di.i_total()), "{name}");
                assert_eq!(free, u64::from(di.i_total() - di.i_used()), "{name}");
                let mut again = block.clone();
                cl.encode(&mut again[DINODE_ID2_OFFSET..]).unwrap();
                assert_eq!(again, block, "{name}: encode(decode) changed the block");
            }
            assert!(seen >= 4, "expected global_bitmap, global_inode_alloc and per-slot allocators");
        }
    }

    #[test]
    fn decode_never_panics_on_random_or_mutated_buffers() {
        let seed = 0xc4a1_5eed;
        let img = testutil::img4k();
        let gb = img.block(img.system_inode("global_bitmap"));
        testutil::fuzz(seed, &[gb[DINODE_ID2_OFFSET..].to_vec()], |buf| {
            if let Ok(cl) = ChainList::decode(buf) {
                let mut out = vec![0u8; cl.encoded_len()];
                cl.encode(&mut out).unwrap();
                assert_eq!(ChainList::decode(&out).unwrap(), cl);
            }
            let _ = ChainRec::decode(buf);
        });
    }
}
