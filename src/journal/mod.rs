//! JBD2 journaling in each slot's journal file: transactions, commit, checkpoint, revoke and
//! replay, in the on-disk format the kernel and fsck.ocfs2 replay.
