//! Formatting a volume the way mkfs.ocfs2 does.
