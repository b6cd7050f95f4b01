//! JBD2 journaling in each slot's journal file: transactions, commit, checkpoint, revoke and
//! replay, in the on-disk format the kernel and fsck.ocfs2 replay.
//!
//! Invariants this module keeps:
//! - A transaction is durable once [`Journal::commit`] returns, and atomic: after a crash at
//!   any write, replay applies it whole or not at all. Its commit block is written only after
//!   a flush of everything it seals, and the superblock points at the log before any commit
//!   block it must lead to.
//! - Home blocks are written only by a checkpoint (with committed contents) or by replay. The
//!   log is marked empty only after a flush of the home blocks.
//! - Replay reads the log as untrusted: every loop is bounded by the log's length, and damage
//!   gives an error, never a panic or a write outside the volume.
//! - After a failed write the journal refuses all work ([`JournalError::Aborted`]) until it is
//!   opened again, since the log may no longer describe the device.
//!
//! What the filesystem must do around it:
//! - Build a [`JournalMap`] from the journal inode's extents, open the journal, and
//!   [`replay`](Journal::replay) it if [`needs_recovery`](Journal::needs_recovery) says so.
//! - Set `OCFS2_JOURNAL_DIRTY_FL` in the journal inode ([`set_dirty_flag`]) before the first
//!   commit, and clear it only after the [`checkpoint`](Journal::checkpoint) of a clean unmount.
//! - Log the final contents of every metadata block an operation changes (metaecc already
//!   computed) in one [`Transaction`], and [`revoke`](Transaction::revoke) metadata blocks it
//!   frees. Never write a metadata block home directly; read committed but not yet
//!   checkpointed blocks through [`Journal::pending`].
//! - Keep the journal features of all slots equal, as fsck.ocfs2 requires: before the first
//!   revoke, add INCOMPAT_REVOKE to every slot's journal ([`add_journal_features`]).
//! - Ordered mode: file data is not journaled. Write and flush an operation's new data blocks
//!   before committing the transaction whose metadata points at them, so that a crash never
//!   leaves metadata pointing at stale data. A freed metadata block may be reused for data only
//!   after the transaction that revoked it has committed.
//!
//! OCFS2 journals are JBD2 v2 with at most INCOMPAT_REVOKE, INCOMPAT_64BIT and (mount option
//! `journal_async_commit`) INCOMPAT_ASYNC_COMMIT with COMPAT_CHECKSUM, whose v1 transaction
//! checksum this module writes and checks.

mod crc32_be;
mod error;
mod inode_flag;
#[allow(clippy::module_inception)]
mod journal;
mod map;
mod recovery;
mod transaction;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use crc32_be::crc32_be;
pub use error::{JournalError, Result};
pub use inode_flag::{journal_inode_state, mark_recovered, set_dirty_flag, JournalInodeState};
pub use journal::{add_journal_features, Journal, LogPosition};
pub use map::JournalMap;
pub use recovery::{LogEnd, ReplayReport};
pub use transaction::{CommitInfo, Transaction};
