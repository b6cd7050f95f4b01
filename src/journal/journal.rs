//! An open journal: its superblock, the circular log inside the journal file, and where the
//! next transaction goes.
//!
//! The log is the blocks `s_first .. s_maxlen` of the journal, used as a ring. Live transactions
//! run from `tail` (the superblock's `s_start`, with `s_sequence` the id of the transaction
//! there) to `head`; `s_start == 0` on disk means no live transaction. A journal opened with a
//! non-empty log must be replayed before anything is written.

use super::error::{JournalError, Result};
use super::map::JournalMap;
use crate::device::{BlockDevice, DeviceError};
use crate::format::jbd2::{
    JournalSuperblock, TagLayout, JBD2_KNOWN_COMPAT_FEATURES, JBD2_KNOWN_INCOMPAT_FEATURES, JBD2_SUPERBLOCK_V2,
};
use std::collections::BTreeMap;

/// Logs smaller than this many blocks cannot hold a transaction worth having.
const MIN_LOG_BLOCKS: u32 = 4;

/// Where the log stands, for callers that plan checkpoints and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// First block of the log area (`s_first`).
    pub first: u32,
    /// Blocks in the journal (`s_maxlen`); the log wraps from here back to `first`.
    pub maxlen: u32,
    /// First block of the oldest transaction not yet checkpointed.
    pub tail: u32,
    /// Where the next transaction starts.
    pub head: u32,
    /// Log blocks held by transactions not yet checkpointed.
    pub used: u32,
    /// Id the next committed transaction gets.
    pub next_sequence: u32,
    /// Distinct metadata blocks committed but not yet written home.
    pub pending_blocks: usize,
}

impl LogPosition {
    /// Log blocks in the ring.
    pub fn capacity(&self) -> u32 {
        self.maxlen - self.first
    }

    /// Log blocks a transaction can use before a checkpoint is needed.
    pub fn free(&self) -> u32 {
        self.capacity() - self.used
    }
}

/// The writing state kept in memory.
pub(super) struct LogState {
    /// The on-disk log held transactions at open and has not been replayed yet.
    pub needs_recovery: bool,
    /// The on-disk superblock says `s_start == 0`.
    pub disk_empty: bool,
    pub tail: u32,
    pub head: u32,
    pub used: u32,
    pub next_seq: u32,
    /// Latest committed contents of metadata blocks not yet written home.
    pub pending: BTreeMap<u64, Box<[u8]>>,
}

/// A JBD2 journal in one slot's journal file.
///
/// The journal needs exclusive use of its journal file; the blocks it writes home are whatever
/// the transactions logged. See the module documentation of [`crate::journal`] for the rules
/// the filesystem keeps around it.
pub struct Journal<D: BlockDevice> {
    pub(super) dev: D,
    pub(super) map: JournalMap,
    pub(super) bs: usize,
    pub(super) uuid: [u8; 16],
    pub(super) sb: JournalSuperblock,
    /// Block 0 as read, so that rewriting the superblock keeps every byte it does not change.
    sb_block: Vec<u8>,
    pub(super) layout: TagLayout,
    pub(super) first: u32,
    pub(super) maxlen: u32,
    /// Blocks on the device.
    pub(super) dev_blocks: u64,
    pub(super) log: LogState,
    failed: Option<String>,
}

impl<D: BlockDevice> Journal<D> {
    /// Reads and checks the journal superblock.
    ///
    /// `block_size` is the volume's block size, which OCFS2 also uses for the journal; `uuid`
    /// is the volume UUID, written into the descriptor tags as OCFS2 does. Fails with
    /// [`JournalError::Unsupported`] for features OCFS2 never uses (v1 superblocks,
    /// checksums v2/v3, fast commits, unknown bits).
    pub fn open(dev: D, map: JournalMap, block_size: u32, uuid: [u8; 16]) -> Result<Self> {
        if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
            return Err(JournalError::InvalidArgument(format!("{block_size} is not a block size")));
        }
        let bs = block_size as usize;
        let dev_blocks = dev.len() / u64::from(block_size);
        if map.is_empty() {
            return Err(JournalError::InvalidArgument("the journal map is empty".into()));
        }
        if map.device_end() > dev_blocks {
            return Err(JournalError::Corrupt(format!(
                "the journal file reaches block {} of a {dev_blocks}-block device",
                map.device_end()
            )));
        }
        let mut sb_block = vec![0u8; bs];
        let b0 = map.device_block(0).expect("a non-empty map covers block 0");
        dev.read_at(b0 * u64::from(block_size), &mut sb_block)?;
        let sb = JournalSuperblock::decode(&sb_block)?;
        if sb.s_header.h_blocktype != JBD2_SUPERBLOCK_V2 {
            return Err(JournalError::Unsupported("a v1 journal superblock (OCFS2 writes v2)".into()));
        }
        sb.check_features()?;
        let layout = sb.tag_layout()?;
        if sb.s_blocksize != block_size {
            return Err(JournalError::Corrupt(format!(
                "the journal's block size is {}, the volume's {block_size}",
                sb.s_blocksize
            )));
        }
        if u64::from(sb.s_maxlen) > map.len() {
            return Err(JournalError::Corrupt(format!(
                "the journal superblock claims {} blocks, the journal file has {}",
                sb.s_maxlen,
                map.len()
            )));
        }
        if sb.s_maxlen - sb.s_first < MIN_LOG_BLOCKS {
            return Err(JournalError::Corrupt(format!("a log of {} blocks is too small", sb.s_maxlen - sb.s_first)));
        }
        if sb.s_uuid != uuid {
            log::warn!("journal superblock UUID {:02x?} differs from the volume's {:02x?}", sb.s_uuid, uuid);
        }
        let (first, maxlen) = (sb.s_first, sb.s_maxlen);
        let needs_recovery = sb.s_start != 0;
        let log = LogState {
            needs_recovery,
            disk_empty: !needs_recovery,
            tail: first,
            head: first,
            used: 0,
            // As jbd2 after a clean unmount: the id after the one the superblock records.
            next_seq: sb.s_sequence.wrapping_add(1),
            pending: BTreeMap::new(),
        };
        Ok(Journal { dev, map, bs, uuid, sb, sb_block, layout, first, maxlen, dev_blocks, log, failed: None })
    }

    /// True when the log holds transactions (`s_start != 0`) that [`replay`](Self::replay)
    /// must apply before the journal takes new ones.
    pub fn needs_recovery(&self) -> bool {
        self.log.needs_recovery
    }

    /// The journal superblock as last read or written.
    pub fn superblock(&self) -> &JournalSuperblock {
        &self.sb
    }

    /// The tag layout of this journal (32-bit, or 64-bit with INCOMPAT_64BIT).
    pub fn tag_layout(&self) -> TagLayout {
        self.layout
    }

    pub fn block_size(&self) -> u32 {
        self.bs as u32
    }

    /// Where the log stands.
    pub fn position(&self) -> LogPosition {
        LogPosition {
            first: self.first,
            maxlen: self.maxlen,
            tail: self.log.tail,
            head: self.log.head,
            used: self.log.used,
            next_sequence: self.log.next_seq,
            pending_blocks: self.log.pending.len(),
        }
    }

    /// The committed contents of `home` that have not reached their home block yet. The
    /// filesystem reads a metadata block from here first, since the device still holds the
    /// older version until the next checkpoint.
    pub fn pending(&self, home: u64) -> Option<&[u8]> {
        self.log.pending.get(&home).map(|b| &b[..])
    }

    /// Why the journal stopped accepting work, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Gives the device back without checkpointing: what is committed stays in the log, as
    /// after a crash.
    pub fn into_device(self) -> D {
        self.dev
    }

    /// Refuses work after a failure or before recovery.
    pub(super) fn check_writable(&self) -> Result<()> {
        if let Some(why) = &self.failed {
            return Err(JournalError::Aborted(why.clone()));
        }
        if self.log.needs_recovery {
            return Err(JournalError::NeedsRecovery);
        }
        Ok(())
    }

    pub(super) fn check_not_failed(&self) -> Result<()> {
        match &self.failed {
            Some(why) => Err(JournalError::Aborted(why.clone())),
            None => Ok(()),
        }
    }

    /// Records a device failure: from now on the journal refuses all work, since the log may
    /// no longer say what the device holds.
    pub(super) fn guard<T>(&mut self, r: std::result::Result<T, DeviceError>) -> Result<T> {
        r.map_err(|e| {
            self.failed = Some(e.to_string());
            JournalError::Device(e)
        })
    }

    /// The next log block after `b`, wrapping from `s_maxlen` to `s_first`.
    pub(super) fn wrap_next(&self, b: u32) -> u32 {
        let n = b + 1;
        if n >= self.maxlen {
            n - (self.maxlen - self.first)
        } else {
            n
        }
    }

    fn log_offset(&self, lblk: u32) -> Result<u64> {
        if lblk >= self.maxlen {
            return Err(JournalError::Corrupt(format!("log block {lblk} is past the journal's {}", self.maxlen)));
        }
        let p = self
            .map
            .device_block(u64::from(lblk))
            .ok_or_else(|| JournalError::Corrupt(format!("log block {lblk} is not mapped")))?;
        Ok(p * self.bs as u64)
    }

    pub(super) fn read_log(&self, lblk: u32, buf: &mut [u8]) -> Result<()> {
        let off = self.log_offset(lblk)?;
        Ok(self.dev.read_at(off, buf)?)
    }

    pub(super) fn write_log(&mut self, lblk: u32, buf: &[u8]) -> Result<()> {
        let off = self.log_offset(lblk)?;
        let r = self.dev.write_at(off, buf);
        self.guard(r)
    }

    /// Writes log blocks `(position, contents)` in order, each run that is contiguous on the
    /// device as one write.
    pub(super) fn write_log_blocks(&mut self, blocks: &[(u32, Vec<u8>)]) -> Result<()> {
        let mut located = Vec::with_capacity(blocks.len());
        for (lblk, data) in blocks {
            located.push((self.log_offset(*lblk)?, data.as_slice()));
        }
        self.write_runs(&located)
    }

    /// Writes `(device offset, block)` pairs, joining neighbours into one write.
    pub(super) fn write_runs(&mut self, blocks: &[(u64, &[u8])]) -> Result<()> {
        let mut i = 0;
        let mut run = Vec::new();
        while i < blocks.len() {
            let start = blocks[i].0;
            let mut j = i + 1;
            while j < blocks.len() && blocks[j].0 == blocks[j - 1].0 + blocks[j - 1].1.len() as u64 && j - i < 256 {
                j += 1;
            }
            let r = if j == i + 1 {
                self.dev.write_at(start, blocks[i].1)
            } else {
                run.clear();
                for (_, data) in &blocks[i..j] {
                    run.extend_from_slice(data);
                }
                self.dev.write_at(start, &run)
            };
            self.guard(r)?;
            i = j;
        }
        Ok(())
    }

    pub(super) fn write_home(&mut self, home: u64, buf: &[u8]) -> Result<()> {
        let r = self.dev.write_at(home * self.bs as u64, buf);
        self.guard(r)
    }

    pub(super) fn flush(&mut self) -> Result<()> {
        let r = self.dev.flush();
        self.guard(r)
    }

    /// Writes `self.sb` into block 0, keeping the bytes it does not describe.
    pub(super) fn write_superblock(&mut self) -> Result<()> {
        let mut block = self.sb_block.clone();
        self.sb.encode(&mut block)?;
        self.write_log(0, &block)?;
        self.sb_block = block;
        Ok(())
    }

    /// Adds feature bits to this journal's superblock (and flushes). See
    /// [`add_journal_features`] for why every slot's journal should carry the same ones.
    pub fn add_features(&mut self, compat: u32, incompat: u32) -> Result<()> {
        self.check_not_failed()?;
        check_known(compat, incompat)?;
        if incompat & crate::format::jbd2::JBD2_FEATURE_INCOMPAT_64BIT != 0 && self.layout != TagLayout::Bits64 {
            return Err(JournalError::InvalidArgument("INCOMPAT_64BIT changes the tag layout".into()));
        }
        if self.sb.s_feature_compat & compat == compat && self.sb.s_feature_incompat & incompat == incompat {
            return Ok(());
        }
        self.sb.s_feature_compat |= compat;
        self.sb.s_feature_incompat |= incompat;
        self.write_superblock()?;
        self.flush()
    }

    /// True when `home` lies inside the journal file itself.
    pub(super) fn inside_journal(&self, home: u64) -> bool {
        self.map.runs().any(|(first, count)| home >= first && home - first < count)
    }
}

fn check_known(compat: u32, incompat: u32) -> Result<()> {
    if compat & !JBD2_KNOWN_COMPAT_FEATURES != 0 || incompat & !JBD2_KNOWN_INCOMPAT_FEATURES != 0 {
        return Err(JournalError::Unsupported(format!(
            "journal features compat {compat:#x} incompat {incompat:#x} are not OCFS2's"
        )));
    }
    Ok(())
}

/// Adds feature bits to the superblock of a journal that is not open (another slot's), and
/// flushes. Returns whether anything changed.
///
/// fsck.ocfs2 wants every slot's journal to carry the same features and reports
/// `JOURNAL_MISSING_FEATURE` otherwise, while jbd2 sets INCOMPAT_REVOKE only on the journal
/// that first writes a revoke block (and the `journal_async_commit` mount option changes only
/// the mounting node's). A filesystem that revokes therefore adds INCOMPAT_REVOKE to every
/// slot's journal first. The tag layout must not change under a journal with live
/// transactions, so INCOMPAT_64BIT is refused here; tunefs.ocfs2 changes it.
pub fn add_journal_features<D: BlockDevice + ?Sized>(
    dev: &D,
    map: &JournalMap,
    block_size: u32,
    compat: u32,
    incompat: u32,
) -> Result<bool> {
    check_known(compat, incompat)?;
    if incompat & crate::format::jbd2::JBD2_FEATURE_INCOMPAT_64BIT != 0 {
        return Err(JournalError::InvalidArgument("INCOMPAT_64BIT changes the tag layout".into()));
    }
    let b0 = map.device_block(0).ok_or_else(|| JournalError::InvalidArgument("the journal map is empty".into()))?;
    let off = b0 * u64::from(block_size);
    let mut block = vec![0u8; block_size as usize];
    dev.read_at(off, &mut block)?;
    let mut sb = JournalSuperblock::decode(&block)?;
    if sb.s_header.h_blocktype != JBD2_SUPERBLOCK_V2 {
        return Err(JournalError::Unsupported("a v1 journal superblock has no features".into()));
    }
    if sb.s_feature_compat & compat == compat && sb.s_feature_incompat & incompat == incompat {
        return Ok(false);
    }
    sb.s_feature_compat |= compat;
    sb.s_feature_incompat |= incompat;
    sb.encode(&mut block)?;
    dev.write_at(off, &block)?;
    dev.flush()?;
    Ok(true)
}
