//! Inodes: the object through which every access to a file's metadata goes.
//!
//! An [`Inode`] is named by its block number (OCFS2's inode number). Its dinode block is read
//! under the inode's meta lock and cached together with the lock epoch it was read under; a
//! later access under a different epoch (the lock was lost meanwhile) rereads it. On a local
//! volume the epoch never changes, so the block is read once, until a transaction commits:
//! the volume's write sequence is part of what a cached view is checked against.

use super::error::{Error, Result};
use super::lock::{LockLevel, LockName};
use super::meta::BlockKind;
use super::volume::VolumeInner;
use crate::format::dinode::Dinode;
use crate::format::*;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;

/// The kind of a file, from its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileType {
    pub fn from_mode(mode: u16) -> Option<FileType> {
        Some(match mode & S_IFMT {
            S_IFREG => FileType::Regular,
            S_IFDIR => FileType::Directory,
            S_IFLNK => FileType::Symlink,
            S_IFCHR => FileType::CharDevice,
            S_IFBLK => FileType::BlockDevice,
            S_IFIFO => FileType::Fifo,
            S_IFSOCK => FileType::Socket,
            _ => return None,
        })
    }

    /// From a directory entry's file_type byte.
    pub fn from_dirent(ft: u8) -> Option<FileType> {
        Some(match ft {
            FT_REG_FILE => FileType::Regular,
            FT_DIR => FileType::Directory,
            FT_SYMLINK => FileType::Symlink,
            FT_CHRDEV => FileType::CharDevice,
            FT_BLKDEV => FileType::BlockDevice,
            FT_FIFO => FileType::Fifo,
            FT_SOCK => FileType::Socket,
            _ => return None,
        })
    }

    /// The one-letter code `ls -l` and our tree listing use.
    pub fn letter(self) -> char {
        match self {
            FileType::Regular => 'f',
            FileType::Directory => 'd',
            FileType::Symlink => 'l',
            FileType::CharDevice => 'c',
            FileType::BlockDevice => 'b',
            FileType::Fifo => 'p',
            FileType::Socket => 's',
        }
    }
}

/// A point in time as OCFS2 stores it: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    pub secs: i64,
    pub nsecs: u32,
}

/// What `stat` tells of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub ino: u64,
    pub file_type: FileType,
    /// The full mode, type bits included.
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    /// 512-byte sectors allocated to the file (its clusters).
    pub blocks: u64,
    pub clusters: u32,
    /// Device number of character and block special files (Linux encoding).
    pub rdev: u64,
    pub generation: u32,
    /// Inode flags (`i_flags`: VALID, SYSTEM, ORPHANED, ...).
    pub flags: u32,
    /// Dynamic features (`i_dyn_features`: inline data, indexed directory, ...).
    pub dyn_features: u16,
}

impl Metadata {
    /// Permission bits only (no file type).
    pub fn permissions(&self) -> u16 {
        self.mode & 0o7777
    }

    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }
}

/// A decoded dinode together with its block, as read under one lock epoch.
#[derive(Clone)]
pub(crate) struct InodeView {
    pub block: Arc<[u8]>,
    pub dinode: Dinode,
}

impl InodeView {
    pub fn id2(&self) -> &[u8] {
        &self.block[crate::format::dinode::DINODE_ID2_OFFSET..]
    }

    pub fn has_inline_data(&self) -> bool {
        self.dinode.i_dyn_features & INLINE_DATA_FL != 0
    }

    pub fn file_type(&self) -> Option<FileType> {
        FileType::from_mode(self.dinode.i_mode)
    }

    pub fn nlink(&self) -> u32 {
        self.dinode.links_count()
    }

    pub fn metadata(&self, cluster_bits: u32) -> Result<Metadata> {
        let d = &self.dinode;
        let file_type = self
            .file_type()
            .ok_or_else(|| Error::corrupt(d.i_blkno, format!("inode mode {:#o} has no file type", d.i_mode)))?;
        let ts = |secs: u64, nsecs: u32| Timestamp { secs: secs as i64, nsecs };
        let rdev = match file_type {
            FileType::CharDevice | FileType::BlockDevice => d.id1,
            _ => 0,
        };
        Ok(Metadata {
            ino: d.i_blkno,
            file_type,
            mode: d.i_mode,
            uid: d.i_uid,
            gid: d.i_gid,
            size: d.i_size,
            nlink: self.nlink(),
            atime: ts(d.i_atime, d.i_atime_nsec),
            mtime: ts(d.i_mtime, d.i_mtime_nsec),
            ctime: ts(d.i_ctime, d.i_ctime_nsec),
            blocks: (d.i_clusters as u64) << (cluster_bits - 9),
            clusters: d.i_clusters,
            rdev,
            generation: d.i_generation,
            flags: d.i_flags,
            dyn_features: d.i_dyn_features,
        })
    }
}

struct Cached {
    epoch: u64,
    /// The volume's write sequence when the block was read: a commit since makes it stale.
    seq: u64,
    view: InodeView,
}

/// One inode of the volume: its lock and its cached dinode.
pub(crate) struct Inode {
    pub blkno: u64,
    cached: RwLock<Option<Cached>>,
}

impl Inode {
    fn new(blkno: u64) -> Self {
        Inode { blkno, cached: RwLock::new(None) }
    }

    /// Runs `f` on the inode's metadata with its meta lock held at `level`.
    pub fn with_meta<R>(
        &self,
        vol: &VolumeInner,
        level: LockLevel,
        f: impl FnOnce(&InodeView) -> Result<R>,
    ) -> Result<R> {
        let grant = vol.locks.lock(LockName::Meta { blkno: self.blkno }, level)?;
        let epoch = grant.epoch();
        let view = self.view(vol, epoch)?;
        let out = f(&view);
        drop(grant);
        out
    }

    fn view(&self, vol: &VolumeInner, epoch: u64) -> Result<InodeView> {
        // Read the sequence before the block: a commit racing with this read then leaves the
        // cached view marked stale rather than hiding the new contents.
        let seq = vol.write_seq.load(std::sync::atomic::Ordering::Acquire);
        if let Some(c) = self.cached.read().as_ref() {
            if c.epoch == epoch && c.seq == seq {
                return Ok(c.view.clone());
            }
        }
        let block = vol.meta.read(self.blkno, BlockKind::Inode)?;
        let dinode = Dinode::decode(&block).map_err(|e| Error::format(self.blkno, e))?;
        if dinode.i_blkno != self.blkno {
            return Err(Error::corrupt(self.blkno, format!("inode block records block number {}", dinode.i_blkno)));
        }
        if dinode.i_fs_generation != vol.meta.fs_generation {
            return Err(Error::corrupt(
                self.blkno,
                format!(
                    "inode carries filesystem generation {:#x}, the volume's is {:#x}",
                    dinode.i_fs_generation, vol.meta.fs_generation
                ),
            ));
        }
        if dinode.i_flags & VALID_FL == 0 {
            return Err(Error::corrupt(self.blkno, "inode is not marked valid (it was freed)"));
        }
        let view = InodeView { block, dinode };
        *self.cached.write() = Some(Cached { epoch, seq, view: view.clone() });
        Ok(view)
    }
}

/// The inodes this node has touched, by block number.
#[derive(Default)]
pub(crate) struct InodeTable {
    map: Mutex<HashMap<u64, Arc<Inode>>>,
}

/// Inodes kept before the table starts over; dropped inodes are simply reread.
const TABLE_LIMIT: usize = 65536;

impl InodeTable {
    pub fn get(&self, vol: &VolumeInner, blkno: u64) -> Result<Arc<Inode>> {
        vol.meta.check_range(blkno, 1)?;
        let mut map = self.map.lock();
        if map.len() >= TABLE_LIMIT {
            map.retain(|_, inode| Arc::strong_count(inode) > 1);
        }
        Ok(map.entry(blkno).or_insert_with(|| Arc::new(Inode::new(blkno))).clone())
    }
}
