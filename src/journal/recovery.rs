//! Replay of a journal that was not emptied: JBD2's three passes.
//!
//! 1. Scan: from `s_start`, expecting transaction `s_sequence`, walk descriptor, revoke and
//!    commit blocks until a block lacks the magic number, carries another sequence, or (with
//!    COMPAT_CHECKSUM) a commit block's checksum does not match. Every transaction whose
//!    commit block was reached is complete; the first one that was not is `end`.
//! 2. Revoke: each revoked block keeps the newest transaction id that revoked it, counting
//!    only complete transactions.
//! 3. Replay: each logged copy in a complete transaction goes home unless a transaction at
//!    least as new revoked its block; escaped copies get their magic number back.
//!
//! Then the home blocks are flushed and the journal is marked empty (`s_start = 0`,
//! `s_sequence = end + 1`, as fsck.ocfs2 leaves it) and flushed again. A crash anywhere in
//! between replays the same log again, so replay is idempotent.
//!
//! The walk never trusts the log: every loop is bounded by the log's length, a tag that points
//! past the device or into the journal is an error raised before anything is written, and no
//! input can make it panic.

use super::crc32_be::crc32_be;
use super::error::{JournalError, Result};
use super::journal::Journal;
use crate::device::BlockDevice;
use crate::format::bytes::be32;
use crate::format::jbd2::{
    revoke_records, unescape, CommitHeader, TagLayout, JBD2_COMMIT_BLOCK, JBD2_CRC32_CHKSUM, JBD2_CRC32_CHKSUM_SIZE,
    JBD2_DESCRIPTOR_BLOCK, JBD2_FEATURE_COMPAT_CHECKSUM, JBD2_FLAG_ESCAPE, JBD2_FLAG_LAST_TAG, JBD2_FLAG_SAME_UUID,
    JBD2_MAGIC_NUMBER, JBD2_REVOKE_BLOCK, JOURNAL_HEADER_SIZE, TAG_UUID_SIZE,
};
use std::collections::{BTreeMap, HashMap};

/// `tid_gt`: transaction ids compare modulo 2^32.
pub(super) fn tid_gt(x: u32, y: u32) -> bool {
    (x.wrapping_sub(y) as i32) > 0
}

/// Why the scan decided the valid log ends where it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEnd {
    /// The superblock said the log was empty; nothing was scanned.
    Clean,
    /// The block where the next transaction would start lacks the JBD2 magic number.
    NoMagic { block: u32 },
    /// The block carries another transaction id (a stale block from an older lap).
    WrongSequence { block: u32, found: u32 },
    /// The commit block of `sequence` does not match the transaction's checksum.
    CommitChecksum { block: u32, sequence: u32 },
    /// A journal block of a type the log cannot hold here.
    UnknownBlockType { block: u32, blocktype: u32 },
}

/// What a replay found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Id of the first transaction in the log (`s_sequence` at open).
    pub start_sequence: u32,
    /// Id of the first transaction not replayed.
    pub end_sequence: u32,
    /// Complete transactions replayed.
    pub transactions: u32,
    /// Logged copies written home (a block logged in three transactions counts three times,
    /// as jbd2 counts).
    pub blocks_replayed: u64,
    /// Revoke records in complete transactions.
    pub revoke_records: u64,
    /// Logged copies skipped because a transaction at least as new revoked their block.
    pub revoke_hits: u64,
    /// Distinct home blocks written, ascending.
    pub home_blocks: Vec<u64>,
    /// Why the scan stopped.
    pub end_reason: LogEnd,
}

/// One logged copy of a metadata block found by the scan.
struct LoggedCopy {
    sequence: u32,
    home: u64,
    log_block: u32,
    escaped: bool,
}

/// The result of pass 1.
struct Scan {
    end: u32,
    transactions: u32,
    copies: Vec<LoggedCopy>,
    revokes: Vec<(u64, u32)>,
    end_reason: LogEnd,
}

/// The tags of a descriptor block as the kernel's `count_tags` and replay loop read them: a
/// tag is counted whenever its fixed part fits, even if the UUID after it would not; the walk
/// stops after LAST_TAG.
fn walk_tags(buf: &[u8], layout: TagLayout) -> Vec<(u64, u16)> {
    let tb = layout.tag_bytes();
    let mut out = Vec::new();
    let mut pos = JOURNAL_HEADER_SIZE;
    while pos + tb <= buf.len() {
        let low = u64::from(be32(buf, pos));
        let flags = be32(buf, pos + 4) as u16;
        let high = if layout == TagLayout::Bits64 { u64::from(be32(buf, pos + 8)) } else { 0 };
        out.push((high << 32 | low, flags));
        pos += tb;
        if flags & JBD2_FLAG_SAME_UUID == 0 {
            pos += TAG_UUID_SIZE;
        }
        if flags & JBD2_FLAG_LAST_TAG != 0 {
            break;
        }
    }
    out
}

impl<D: BlockDevice> Journal<D> {
    /// Replays the log if the superblock says it holds transactions, then marks the journal
    /// empty. Afterwards the journal accepts new transactions. On a clean journal it writes
    /// nothing.
    ///
    /// The caller clears `OCFS2_JOURNAL_DIRTY_FL` in the journal inode afterwards if the slot
    /// is not going to be used (see [`super::mark_recovered`]).
    pub fn replay(&mut self) -> Result<ReplayReport> {
        self.check_not_failed()?;
        let start_sequence = self.sb.s_sequence;
        if !self.log.needs_recovery {
            return Ok(ReplayReport {
                start_sequence,
                end_sequence: start_sequence,
                transactions: 0,
                blocks_replayed: 0,
                revoke_records: 0,
                revoke_hits: 0,
                home_blocks: Vec::new(),
                end_reason: LogEnd::Clean,
            });
        }
        let scan = self.pass_scan()?;
        let revoked = pass_revoke(&scan);
        let (blocks_replayed, revoke_hits, home_blocks) = self.pass_replay(&scan, &revoked)?;
        self.flush()?;

        // Restart the log past every id it may still hold, including a torn `end`.
        self.sb.s_start = 0;
        self.sb.s_sequence = scan.end.wrapping_add(1);
        self.write_superblock()?;
        self.flush()?;
        self.log.needs_recovery = false;
        self.log.disk_empty = true;
        self.log.tail = self.first;
        self.log.head = self.first;
        self.log.used = 0;
        self.log.next_seq = self.sb.s_sequence;
        self.log.pending.clear();

        Ok(ReplayReport {
            start_sequence,
            end_sequence: scan.end,
            transactions: scan.transactions,
            blocks_replayed,
            revoke_records: scan.revokes.len() as u64,
            revoke_hits,
            home_blocks,
            end_reason: scan.end_reason,
        })
    }

    /// Pass 1: finds the end of the valid log and collects every logged copy and revoke
    /// record before it.
    fn pass_scan(&self) -> Result<Scan> {
        let lap = u64::from(self.maxlen - self.first);
        let checksums = self.sb.has_compat(JBD2_FEATURE_COMPAT_CHECKSUM);
        let mut seq = self.sb.s_sequence;
        let mut blk = self.sb.s_start;
        // A valid log fits in one lap; the block after it may be the first one again.
        let mut budget = lap + 1;
        let mut take = |n: u64| -> Result<()> {
            budget = budget
                .checked_sub(n)
                .ok_or_else(|| JournalError::Corrupt("the log runs more than once around the journal".into()))?;
            Ok(())
        };
        let mut crc = !0u32;
        let mut buf = vec![0u8; self.bs];
        let mut data = vec![0u8; self.bs];
        let mut copies = Vec::new();
        let mut revokes = Vec::new();
        let mut transactions = 0u32;

        let end_reason = loop {
            take(1)?;
            self.read_log(blk, &mut buf)?;
            let at = blk;
            blk = self.wrap_next(blk);
            if be32(&buf, 0) != JBD2_MAGIC_NUMBER {
                break LogEnd::NoMagic { block: at };
            }
            let blocktype = be32(&buf, 4);
            let found = be32(&buf, 8);
            if found != seq {
                break LogEnd::WrongSequence { block: at, found };
            }
            match blocktype {
                JBD2_DESCRIPTOR_BLOCK => {
                    if checksums {
                        crc = crc32_be(crc, &buf);
                    }
                    for (home, flags) in walk_tags(&buf, self.layout) {
                        take(1)?;
                        if home >= self.dev_blocks || self.inside_journal(home) {
                            return Err(JournalError::Corrupt(format!(
                                "transaction {seq} logs block {home}, outside the volume's metadata area \
                                 (descriptor at log block {at})"
                            )));
                        }
                        if checksums {
                            self.read_log(blk, &mut data)?;
                            crc = crc32_be(crc, &data);
                        }
                        copies.push(LoggedCopy {
                            sequence: seq,
                            home,
                            log_block: blk,
                            escaped: flags & JBD2_FLAG_ESCAPE != 0,
                        });
                        blk = self.wrap_next(blk);
                    }
                }
                JBD2_COMMIT_BLOCK => {
                    if checksums {
                        let c = CommitHeader::decode(&buf)?;
                        let stored = c.h_chksum[0];
                        let matches = crc == stored
                            && c.h_chksum_type == JBD2_CRC32_CHKSUM
                            && c.h_chksum_size == JBD2_CRC32_CHKSUM_SIZE;
                        let unused = c.h_chksum_type == 0 && c.h_chksum_size == 0 && stored == 0;
                        if !(matches || unused) {
                            break LogEnd::CommitChecksum { block: at, sequence: seq };
                        }
                        crc = !0;
                    }
                    transactions += 1;
                    seq = seq.wrapping_add(1);
                }
                JBD2_REVOKE_BLOCK => {
                    // jbd2 fails the whole recovery on a revoke block it cannot read.
                    let records = revoke_records(&buf, self.layout)
                        .map_err(|e| JournalError::Corrupt(format!("log block {at}: {e}")))?;
                    revokes.extend(records.map(|r| (r, seq)));
                }
                other => break LogEnd::UnknownBlockType { block: at, blocktype: other },
            }
        };
        // Copies and revokes of the transaction that never committed do not count.
        copies.retain(|c| tid_gt(seq, c.sequence));
        revokes.retain(|&(_, s)| tid_gt(seq, s));
        Ok(Scan { end: seq, transactions, copies, revokes, end_reason })
    }

    /// Pass 3: writes the newest unrevoked copy of each block home. Writing only the newest
    /// copy leaves the device as writing every copy in log order would.
    fn pass_replay(&mut self, scan: &Scan, revoked: &HashMap<u64, u32>) -> Result<(u64, u64, Vec<u64>)> {
        let mut newest: BTreeMap<u64, (u32, bool)> = BTreeMap::new();
        let (mut replayed, mut hits) = (0u64, 0u64);
        for c in &scan.copies {
            if revoked.get(&c.home).is_some_and(|&r| !tid_gt(c.sequence, r)) {
                hits += 1;
                continue;
            }
            newest.insert(c.home, (c.log_block, c.escaped));
            replayed += 1;
        }
        let mut buf = vec![0u8; self.bs];
        for (&home, &(log_block, escaped)) in &newest {
            self.read_log(log_block, &mut buf)?;
            if escaped {
                unescape(&mut buf);
            }
            self.write_home(home, &buf)?;
        }
        Ok((replayed, hits, newest.into_keys().collect()))
    }
}

/// Pass 2: the newest revoking transaction of each block.
fn pass_revoke(scan: &Scan) -> HashMap<u64, u32> {
    let mut table: HashMap<u64, u32> = HashMap::new();
    for &(block, seq) in &scan.revokes {
        table
            .entry(block)
            .and_modify(|s| {
                if tid_gt(seq, *s) {
                    *s = seq
                }
            })
            .or_insert(seq);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_compare_across_the_wrap() {
        assert!(tid_gt(5, 4));
        assert!(!tid_gt(4, 4));
        assert!(tid_gt(2, u32::MAX));
        assert!(!tid_gt(u32::MAX, 2));
    }

    #[test]
    fn tag_walk_counts_a_tag_whose_uuid_does_not_fit() {
        let mut b = vec![0u8; 32];
        crate::format::bytes::put_be32(&mut b, 12, 77);
        // 12 + 8 = 20 bytes, then a UUID that would end at 36.
        let tags = walk_tags(&b, TagLayout::Bits32);
        assert_eq!(tags, vec![(77, 0)]);
        crate::format::bytes::put_be32(&mut b, 16, u32::from(JBD2_FLAG_SAME_UUID));
        assert_eq!(walk_tags(&b, TagLayout::Bits32).len(), 2);
    }
}
