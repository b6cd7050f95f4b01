//! Writing the log: transactions, commit and checkpoint, in the order JBD2 writes them.
//!
//! A commit lays out, from the head of the log: revoke blocks, then for each group of logged
//! blocks a descriptor block followed by their copies, then (after a flush) the commit block,
//! then another flush. When the log was empty, the superblock first gets `s_start` and
//! `s_sequence` of this transaction, so that a crash after the commit block finds it.
//! A checkpoint writes every committed block home, flushes, and only then empties the log.

use super::crc32_be::crc32_be;
use super::error::{JournalError, Result};
use super::journal::Journal;
use crate::device::BlockDevice;
use crate::format::jbd2::{
    escape, needs_escape, BlockTag, CommitHeader, DescriptorBlock, DescriptorTag, JournalHeader, RevokeBlock,
    TagLayout, JBD2_CRC32_CHKSUM, JBD2_CRC32_CHKSUM_SIZE, JBD2_DESCRIPTOR_BLOCK, JBD2_FEATURE_COMPAT_CHECKSUM,
    JBD2_FEATURE_INCOMPAT_REVOKE, JBD2_FLAG_ESCAPE, JBD2_FLAG_LAST_TAG, JBD2_FLAG_SAME_UUID, JOURNAL_HEADER_SIZE,
    TAG_UUID_SIZE,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

/// The metadata changes of one atomic operation: the final contents of every block it
/// changed, and the metadata blocks it freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    block_size: usize,
    blocks: BTreeMap<u64, Box<[u8]>>,
    revokes: BTreeSet<u64>,
}

impl Transaction {
    fn new(block_size: usize) -> Self {
        Transaction { block_size, blocks: BTreeMap::new(), revokes: BTreeSet::new() }
    }

    /// Logs the new contents of metadata block `home` (metaecc already computed). Logging a
    /// block again replaces the earlier contents, and cancels a revoke of it in this
    /// transaction (the block was freed and allocated again).
    pub fn log(&mut self, home: u64, block: &[u8]) -> Result<()> {
        if block.len() != self.block_size {
            return Err(JournalError::InvalidArgument(format!(
                "logged block {home} has {} bytes, the journal's blocks {}",
                block.len(),
                self.block_size
            )));
        }
        self.revokes.remove(&home);
        self.blocks.insert(home, block.into());
        Ok(())
    }

    /// Revokes metadata block `home`, which this operation freed: no copy logged earlier (or
    /// in this transaction) will be replayed, so the block can be reused for file data, which
    /// is never journaled.
    pub fn revoke(&mut self, home: u64) {
        self.blocks.remove(&home);
        self.revokes.insert(home);
    }

    /// The contents this transaction logs for `home`.
    pub fn get(&self, home: u64) -> Option<&[u8]> {
        self.blocks.get(&home).map(|b| &b[..])
    }

    /// The logged blocks and their contents, by ascending block number (the order in the log).
    pub fn logged(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.blocks.iter().map(|(&b, d)| (b, &d[..]))
    }

    /// The revoked blocks, ascending (the order in the log).
    pub fn revoked(&self) -> impl Iterator<Item = u64> + '_ {
        self.revokes.iter().copied()
    }

    /// True when this transaction revokes `home`.
    pub fn revokes(&self, home: u64) -> bool {
        self.revokes.contains(&home)
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.revokes.is_empty()
    }

    /// Blocks logged.
    pub fn logged_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks revoked.
    pub fn revoked_blocks(&self) -> usize {
        self.revokes.len()
    }

    /// Log blocks this transaction takes in a journal with tag layout `layout`.
    pub fn log_blocks(&self, layout: TagLayout) -> u64 {
        let per_desc = tags_per_descriptor(self.block_size, layout) as u64;
        let per_revoke = RevokeBlock::capacity(self.block_size, layout) as u64;
        let n = self.blocks.len() as u64;
        let r = self.revokes.len() as u64;
        r.div_ceil(per_revoke) + n.div_ceil(per_desc) + n + 1
    }
}

/// Tags one descriptor block holds: the first carries the 16-byte UUID.
fn tags_per_descriptor(block_size: usize, layout: TagLayout) -> usize {
    (block_size - JOURNAL_HEADER_SIZE - TAG_UUID_SIZE) / layout.tag_bytes()
}

/// Where a committed transaction went in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub sequence: u32,
    /// Log block of the transaction's first block.
    pub start: u32,
    /// Log blocks of its revoke blocks, in order.
    pub revoke_blocks: Vec<u32>,
    /// Log blocks of its descriptor blocks, in order; each is followed by the copies it tags.
    pub descriptor_blocks: Vec<u32>,
    pub commit_block: u32,
    /// Log blocks used in all.
    pub log_blocks: u32,
    /// The log had no room, so a checkpoint ran first.
    pub checkpointed_first: bool,
}

impl<D: BlockDevice> Journal<D> {
    /// Starts a transaction for this journal's block size.
    pub fn begin(&self) -> Transaction {
        Transaction::new(self.bs)
    }

    /// Writes `tx` to the log and makes it durable. Returns `None` for an empty transaction,
    /// which writes nothing. Checkpoints first when the log has no room for it.
    ///
    /// When this returns, a crash at any later point replays the transaction; if it fails
    /// (or the process dies inside it), the transaction is either replayed whole or not at all.
    pub fn commit(&mut self, tx: Transaction) -> Result<Option<CommitInfo>> {
        self.check_writable()?;
        if tx.block_size != self.bs {
            return Err(JournalError::InvalidArgument(format!(
                "transaction of {}-byte blocks for a journal of {}-byte blocks",
                tx.block_size, self.bs
            )));
        }
        if tx.is_empty() {
            return Ok(None);
        }
        for &home in tx.blocks.keys().chain(tx.revokes.iter()) {
            self.check_home(home)?;
        }
        let needed = tx.log_blocks(self.layout);
        let capacity = u64::from(self.maxlen - self.first);
        if needed > capacity {
            return Err(JournalError::TooLarge { needed, capacity });
        }
        let mut checkpointed_first = false;
        if needed > u64::from(self.position().free()) {
            self.checkpoint()?;
            checkpointed_first = true;
        }
        let seq = self.log.next_seq;
        let has_revokes = !tx.revokes.is_empty();
        let revoke_feature = self.sb.has_incompat(JBD2_FEATURE_INCOMPAT_REVOKE);
        if self.log.disk_empty || (has_revokes && !revoke_feature) {
            if self.log.disk_empty {
                self.sb.s_start = self.log.head;
                self.sb.s_sequence = seq;
            }
            if has_revokes {
                // jbd2 turns the feature on with the first revoke it writes.
                self.sb.s_feature_incompat |= JBD2_FEATURE_INCOMPAT_REVOKE;
            }
            self.write_superblock()?;
            if self.log.disk_empty {
                self.log.disk_empty = false;
                self.log.tail = self.log.head;
            }
        }

        let checksums = self.sb.has_compat(JBD2_FEATURE_COMPAT_CHECKSUM);
        let start = self.log.head;
        let mut pos = start;
        let mut crc = !0u32;
        let mut block = vec![0u8; self.bs];
        let mut info = CommitInfo {
            sequence: seq,
            start,
            revoke_blocks: Vec::new(),
            descriptor_blocks: Vec::new(),
            commit_block: 0,
            log_blocks: needed as u32,
            checkpointed_first,
        };

        // Everything before the commit block is gathered first and written in as few writes
        // as the log's layout on the device allows.
        let mut out: Vec<(u32, Vec<u8>)> = Vec::with_capacity(needed as usize);
        let revokes: Vec<u64> = tx.revokes.iter().copied().collect();
        for chunk in revokes.chunks(RevokeBlock::capacity(self.bs, self.layout)) {
            block.fill(0);
            RevokeBlock::new(seq, chunk.to_vec(), self.layout).encode(&mut block, self.layout)?;
            out.push((pos, block.clone()));
            info.revoke_blocks.push(pos);
            pos = self.wrap_next(pos);
        }

        let logged: Vec<(&u64, &Box<[u8]>)> = tx.blocks.iter().collect();
        for chunk in logged.chunks(tags_per_descriptor(self.bs, self.layout)) {
            let tags = chunk
                .iter()
                .enumerate()
                .map(|(i, (&home, data))| {
                    let mut flags = if i == 0 { 0 } else { JBD2_FLAG_SAME_UUID };
                    if needs_escape(data) {
                        flags |= JBD2_FLAG_ESCAPE;
                    }
                    if i + 1 == chunk.len() {
                        flags |= JBD2_FLAG_LAST_TAG;
                    }
                    DescriptorTag { tag: BlockTag::new(home, flags), uuid: (i == 0).then_some(self.uuid) }
                })
                .collect();
            block.fill(0);
            DescriptorBlock { header: JournalHeader::new(JBD2_DESCRIPTOR_BLOCK, seq), tags }
                .encode(&mut block, self.layout)?;
            if checksums {
                crc = crc32_be(crc, &block);
            }
            out.push((pos, block.clone()));
            info.descriptor_blocks.push(pos);
            pos = self.wrap_next(pos);
            for (_, data) in chunk {
                let mut copy = data.to_vec();
                escape(&mut copy);
                if checksums {
                    crc = crc32_be(crc, &copy);
                }
                out.push((pos, copy));
                pos = self.wrap_next(pos);
            }
        }
        self.write_log_blocks(&out)?;
        drop(out);
        // The barrier: the commit block must not reach the disk before what it seals.
        self.flush()?;

        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut commit = CommitHeader::new(seq, now.as_secs(), now.subsec_nanos());
        if checksums {
            commit.h_chksum_type = JBD2_CRC32_CHKSUM;
            commit.h_chksum_size = JBD2_CRC32_CHKSUM_SIZE;
            commit.h_chksum[0] = crc;
        }
        block.fill(0);
        commit.encode(&mut block)?;
        self.write_log(pos, &block)?;
        info.commit_block = pos;
        pos = self.wrap_next(pos);
        self.flush()?;

        self.log.head = pos;
        self.log.used += needed as u32;
        self.log.next_seq = seq.wrapping_add(1);
        for home in &tx.revokes {
            self.log.pending.remove(home);
        }
        self.log.pending.extend(tx.blocks);
        Ok(Some(info))
    }

    /// Writes every committed block to its home, flushes, then marks the log empty
    /// (`s_start = 0`) and flushes again. The filesystem calls it when the log is full (commit
    /// does so itself) and at clean unmount; afterwards the home blocks hold everything.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.check_writable()?;
        if self.log.disk_empty && self.log.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.log.pending);
        let bs = self.bs as u64;
        let homes: Vec<(u64, &[u8])> = pending.iter().map(|(&home, data)| (home * bs, &data[..])).collect();
        if let Err(e) = self.write_runs(&homes) {
            self.log.pending = pending;
            return Err(e);
        }
        if let Err(e) = self.flush() {
            self.log.pending = pending;
            return Err(e);
        }
        self.sb.s_start = 0;
        self.sb.s_sequence = self.log.next_seq;
        self.write_superblock()?;
        self.flush()?;
        self.log.disk_empty = true;
        self.log.tail = self.log.head;
        self.log.used = 0;
        Ok(())
    }

    /// Refuses home blocks the journal cannot log.
    fn check_home(&self, home: u64) -> Result<()> {
        if home >= self.dev_blocks {
            return Err(JournalError::InvalidArgument(format!(
                "block {home} is past the end of the {}-block device",
                self.dev_blocks
            )));
        }
        if self.layout == TagLayout::Bits32 && home > u64::from(u32::MAX) {
            return Err(JournalError::InvalidArgument(format!("block {home} needs a journal with INCOMPAT_64BIT")));
        }
        if self.inside_journal(home) {
            return Err(JournalError::InvalidArgument(format!("block {home} belongs to the journal itself")));
        }
        Ok(())
    }
}
