//! The structs and constants C sees. Flag values equal Linux's, so a caller may pass the
//! `<fcntl.h>` names (`O_CREAT`, `FALLOC_FL_PUNCH_HOLE`, `SEEK_END`, `DT_DIR`, ...) as well.
//!
//! Layouts have no hidden padding: 8-byte fields first, then 4-byte fields in pairs.

use ocfs2::{FileType, Metadata, StatFs, Timestamp};
use std::ffi::{c_char, c_int};

/// `ocfs2rs_volume_open`: open read-only; nothing on the device is written.
pub const OCFS2RS_VOLUME_READONLY: u32 = 0;
/// `ocfs2rs_volume_open`: open for writing (takes a slot and replays its journal).
pub const OCFS2RS_VOLUME_WRITABLE: u32 = 1;

/// `ocfs2rs_open` access modes and flags (Linux values).
pub const OCFS2RS_O_RDONLY: c_int = 0;
pub const OCFS2RS_O_WRONLY: c_int = 0o1;
pub const OCFS2RS_O_RDWR: c_int = 0o2;
pub const OCFS2RS_O_ACCMODE: c_int = 0o3;
pub const OCFS2RS_O_CREAT: c_int = 0o100;
pub const OCFS2RS_O_EXCL: c_int = 0o200;
pub const OCFS2RS_O_TRUNC: c_int = 0o1000;
pub const OCFS2RS_O_APPEND: c_int = 0o2000;

/// `ocfs2rs_fallocate` modes (Linux's `FALLOC_FL_*` values).
pub const OCFS2RS_FALLOC_FL_KEEP_SIZE: c_int = 0x01;
pub const OCFS2RS_FALLOC_FL_PUNCH_HOLE: c_int = 0x02;
pub const OCFS2RS_FALLOC_FL_ZERO_RANGE: c_int = 0x10;

/// `ocfs2rs_lseek` whence values.
pub const OCFS2RS_SEEK_SET: c_int = 0;
pub const OCFS2RS_SEEK_CUR: c_int = 1;
pub const OCFS2RS_SEEK_END: c_int = 2;

/// `ocfs2rs_dirent.type` values (Linux's `DT_*`).
pub const OCFS2RS_DT_UNKNOWN: u32 = 0;
pub const OCFS2RS_DT_FIFO: u32 = 1;
pub const OCFS2RS_DT_CHR: u32 = 2;
pub const OCFS2RS_DT_DIR: u32 = 4;
pub const OCFS2RS_DT_BLK: u32 = 6;
pub const OCFS2RS_DT_REG: u32 = 8;
pub const OCFS2RS_DT_LNK: u32 = 10;
pub const OCFS2RS_DT_SOCK: u32 = 12;

/// `ocfs2rs_timespec.nsec` values for `ocfs2rs_utimens` (Linux's `UTIME_NOW`, `UTIME_OMIT`).
pub const OCFS2RS_UTIME_NOW: i64 = (1 << 30) - 1;
pub const OCFS2RS_UTIME_OMIT: i64 = (1 << 30) - 2;

/// `ocfs2rs_chown`: leave the owner or group as it is.
pub const OCFS2RS_ID_UNCHANGED: u32 = u32::MAX;

/// `ocfs2rs_statfs.flags`: the volume is open read-only (or stopped writing after a failure).
pub const OCFS2RS_STATFS_READONLY: u32 = 1;

/// Longest name of one directory entry, in bytes.
pub const OCFS2RS_NAME_MAX: u32 = 255;

/// Log levels of `ocfs2rs_set_log_callback` and `ocfs2rs_set_log_level` (0 turns logging off).
pub const OCFS2RS_LOG_OFF: c_int = 0;
pub const OCFS2RS_LOG_ERROR: c_int = 1;
pub const OCFS2RS_LOG_WARN: c_int = 2;
pub const OCFS2RS_LOG_INFO: c_int = 3;
pub const OCFS2RS_LOG_DEBUG: c_int = 4;
pub const OCFS2RS_LOG_TRACE: c_int = 5;

/// Seconds and nanoseconds since the epoch, laid out as `struct timespec` on 64-bit Linux.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ocfs2rs_timespec {
    pub sec: i64,
    pub nsec: i64,
}

/// What `ocfs2rs_stat`, `ocfs2rs_lstat` and `ocfs2rs_fstat` fill in (the fields of `struct
/// stat` that OCFS2 keeps).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ocfs2rs_attr {
    /// Inode number (the inode's block number on the volume).
    pub ino: u64,
    pub size: u64,
    /// 512-byte sectors allocated.
    pub blocks: u64,
    /// Device number of a character or block special file (Linux encoding).
    pub rdev: u64,
    /// File type and permission bits, as `st_mode`.
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Preferred I/O size: the volume's cluster size.
    pub blksize: u32,
    pub generation: u32,
    pub atime: ocfs2rs_timespec,
    pub mtime: ocfs2rs_timespec,
    pub ctime: ocfs2rs_timespec,
}

/// What `ocfs2rs_volume_statfs` fills in (the units of `statvfs`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ocfs2rs_statfs {
    pub total_clusters: u64,
    pub free_clusters: u64,
    /// Total and free space in blocks of `block_size` bytes.
    pub total_blocks: u64,
    pub free_blocks: u64,
    pub files: u64,
    pub free_files: u64,
    pub block_size: u32,
    pub cluster_size: u32,
    pub name_max: u32,
    /// OCFS2RS_STATFS_READONLY or 0.
    pub flags: u32,
}

/// One directory entry from `ocfs2rs_readdir`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ocfs2rs_dirent {
    pub ino: u64,
    /// One of OCFS2RS_DT_*.
    pub file_type: u32,
    /// Bytes in `name`, the NUL not counted.
    pub name_len: u32,
    /// The name, NUL-terminated (names are at most 255 bytes and contain no NUL).
    pub name: [c_char; 256],
}

pub(crate) fn timespec(t: Timestamp) -> ocfs2rs_timespec {
    ocfs2rs_timespec { sec: t.secs, nsec: t.nsecs as i64 }
}

pub(crate) fn stat_of(m: &Metadata, blksize: u32) -> ocfs2rs_attr {
    ocfs2rs_attr {
        ino: m.ino,
        size: m.size,
        blocks: m.blocks,
        rdev: m.rdev,
        mode: m.mode as u32,
        nlink: m.nlink,
        uid: m.uid,
        gid: m.gid,
        blksize,
        generation: m.generation,
        atime: timespec(m.atime),
        mtime: timespec(m.mtime),
        ctime: timespec(m.ctime),
    }
}

pub(crate) fn statfs_of(s: &StatFs, read_only: bool) -> ocfs2rs_statfs {
    ocfs2rs_statfs {
        total_clusters: s.total_clusters,
        free_clusters: s.free_clusters,
        total_blocks: s.total_blocks,
        free_blocks: s.free_blocks,
        files: s.files,
        free_files: s.free_files,
        block_size: s.block_size,
        cluster_size: s.cluster_size,
        name_max: s.name_max,
        flags: if read_only { OCFS2RS_STATFS_READONLY } else { 0 },
    }
}

pub(crate) fn dt_of(t: Option<FileType>) -> u32 {
    match t {
        Some(FileType::Regular) => OCFS2RS_DT_REG,
        Some(FileType::Directory) => OCFS2RS_DT_DIR,
        Some(FileType::Symlink) => OCFS2RS_DT_LNK,
        Some(FileType::CharDevice) => OCFS2RS_DT_CHR,
        Some(FileType::BlockDevice) => OCFS2RS_DT_BLK,
        Some(FileType::Fifo) => OCFS2RS_DT_FIFO,
        Some(FileType::Socket) => OCFS2RS_DT_SOCK,
        None => OCFS2RS_DT_UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn structs_have_no_hidden_padding() {
        assert_eq!(size_of::<ocfs2rs_timespec>(), 16);
        assert_eq!(size_of::<ocfs2rs_attr>(), 4 * 8 + 6 * 4 + 3 * 16);
        assert_eq!(size_of::<ocfs2rs_statfs>(), 6 * 8 + 4 * 4);
        assert_eq!(size_of::<ocfs2rs_dirent>(), 8 + 4 + 4 + 256);
    }

    #[test]
    fn flag_values_are_linuxs() {
        assert_eq!(OCFS2RS_O_CREAT, libc::O_CREAT);
        assert_eq!(OCFS2RS_O_EXCL, libc::O_EXCL);
        assert_eq!(OCFS2RS_O_TRUNC, libc::O_TRUNC);
        assert_eq!(OCFS2RS_O_APPEND, libc::O_APPEND);
        assert_eq!(OCFS2RS_O_WRONLY, libc::O_WRONLY);
        assert_eq!(OCFS2RS_O_RDWR, libc::O_RDWR);
        assert_eq!(OCFS2RS_FALLOC_FL_KEEP_SIZE, libc::FALLOC_FL_KEEP_SIZE);
        assert_eq!(OCFS2RS_FALLOC_FL_PUNCH_HOLE, libc::FALLOC_FL_PUNCH_HOLE);
        assert_eq!(OCFS2RS_FALLOC_FL_ZERO_RANGE, libc::FALLOC_FL_ZERO_RANGE);
        assert_eq!(OCFS2RS_SEEK_END, libc::SEEK_END);
        assert_eq!(OCFS2RS_DT_LNK, libc::DT_LNK as u32);
        assert_eq!(OCFS2RS_DT_SOCK, libc::DT_SOCK as u32);
        assert_eq!(OCFS2RS_UTIME_NOW, libc::UTIME_NOW);
        assert_eq!(OCFS2RS_UTIME_OMIT, libc::UTIME_OMIT);
    }
}
