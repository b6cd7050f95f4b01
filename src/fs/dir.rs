//! Directories: listing and name lookup for inline, linear and indexed directories.
//!
//! Entries live in the inode itself (inline dirs) or in the directory's data blocks, each of
//! which ends with a trailer when the volume uses them. Indexed directories keep the same entry
//! blocks and add a hash index, which [`Volume::lookup`] consults so that a name is found
//! without scanning every block.

use super::error::{Error, Result};
use super::extent_map::{map_cluster, Mapping};
use super::inode::{FileType, InodeView};
use super::lock::LockLevel;
use super::meta::BlockKind;
use super::volume::{Volume, VolumeInner};
use crate::format::dir::dir_entries;
use crate::format::dir_trailer::{dir_has_trailer, trailer_offset};
use crate::format::extent::ExtentList;
use crate::format::inline::InlineData;
use crate::format::MAX_FILENAME_LEN;
use std::ops::ControlFlow;

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u64,
    /// From the entry's type byte; `None` when the byte holds no known type.
    pub file_type: Option<FileType>,
}

/// Fails for names the format cannot hold.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > MAX_FILENAME_LEN {
        return Err(Error::NameTooLong(name.len()));
    }
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::InvalidArgument(format!("{:?} is not a valid name", String::from_utf8_lossy(name))));
    }
    Ok(())
}

/// Whether the directory's blocks carry a trailer, which also says how they are checked.
fn block_layout(vol: &VolumeInner, view: &InodeView) -> (bool, BlockKind) {
    let trailer = dir_has_trailer(vol.sb.s_feature_incompat, view.has_inline_data(), view.dinode.is_indexed_dir());
    (trailer, if trailer { BlockKind::DirBlockWithTrailer } else { BlockKind::DirBlockPlain })
}

/// Calls `f` with the checked entries of one directory block (or inline area).
fn scan_area<B>(
    area: &[u8],
    at: u64,
    f: &mut impl FnMut(&crate::format::dir::DirEntry) -> ControlFlow<B>,
) -> Result<ControlFlow<B>> {
    for item in dir_entries(area, false) {
        let (_, de) = item.map_err(|e| Error::format(at, e))?;
        if let ControlFlow::Break(b) = f(&de) {
            return Ok(ControlFlow::Break(b));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Reads directory block `blkno` and scans its entries.
fn scan_block<B>(
    vol: &VolumeInner,
    blkno: u64,
    kind: BlockKind,
    f: &mut impl FnMut(&crate::format::dir::DirEntry) -> ControlFlow<B>,
) -> Result<ControlFlow<B>> {
    let block = vol.meta.read(blkno, kind)?;
    let usable = if kind == BlockKind::DirBlockWithTrailer { trailer_offset(block.len()) } else { block.len() };
    scan_area(&block[..usable], blkno, f)
}

/// Visits every live entry of the directory seen in `view`, in on-disk order.
fn walk_dir<B>(
    vol: &VolumeInner,
    view: &InodeView,
    mut f: impl FnMut(&crate::format::dir::DirEntry) -> ControlFlow<B>,
) -> Result<Option<B>> {
    let ino = view.dinode.i_blkno;
    if view.has_inline_data() {
        let inline = InlineData::decode(view.id2()).map_err(|e| Error::format(ino, e))?;
        let area = inline.file_bytes(view.dinode.i_size);
        return Ok(scan_area(area, ino, &mut f)?.break_value());
    }
    let (_, kind) = block_layout(vol, view);
    let list = ExtentList::decode(view.id2()).map_err(|e| Error::format(ino, e))?;
    let geo = vol.geo;
    // Rounded up, as ocfs2-tools count a directory's blocks: mkfs.ocfs2 gives lost+found the
    // size of its usable area, short of the trailer.
    let blocks = view.dinode.i_size.div_ceil(u64::from(geo.block_size));
    let per_cluster = geo.blocks_per_cluster();
    let mut lblk = 0u64;
    while lblk < blocks {
        let cpos = u32::try_from(lblk / per_cluster)
            .map_err(|_| Error::corrupt(ino, "directory larger than the format allows"))?;
        match map_cluster(vol, ino, &list, cpos)? {
            Mapping::Hole { .. } => {
                return Err(Error::corrupt(ino, format!("directory has a hole at block {lblk}")));
            }
            Mapping::Data { blkno, clusters, .. } => {
                let skip = lblk % per_cluster;
                let run = (clusters as u64 * per_cluster - skip).min(blocks - lblk);
                vol.meta.check_range(blkno, skip + run)?;
                for i in 0..run {
                    if let ControlFlow::Break(b) = scan_block(vol, blkno + skip + i, kind, &mut f)? {
                        return Ok(Some(b));
                    }
                }
                lblk += run;
            }
        }
    }
    Ok(None)
}

fn to_entry(de: &crate::format::dir::DirEntry) -> DirEntry {
    DirEntry { name: de.name.clone(), ino: de.inode, file_type: FileType::from_dirent(de.file_type & 7) }
}

fn require_dir(view: &InodeView) -> Result<()> {
    if view.file_type() != Some(FileType::Directory) {
        return Err(Error::NotDir(format!("inode {}", view.dinode.i_blkno)));
    }
    Ok(())
}

impl Volume {
    /// Every entry of directory `ino`, `.` and `..` included, in on-disk order.
    pub fn read_dir(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let inner = &*self.inner;
        let inode = self.inode(ino)?;
        inode.with_meta(inner, LockLevel::Shared, |view| {
            require_dir(view)?;
            let mut out = Vec::new();
            walk_dir::<()>(inner, view, |de| {
                out.push(to_entry(de));
                ControlFlow::Continue(())
            })?;
            Ok(out)
        })
    }

    /// The inode number `name` has in directory `dir`.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<u64> {
        check_name(name)?;
        let inner = &*self.inner;
        let inode = self.inode(dir)?;
        inode.with_meta(inner, LockLevel::Shared, |view| {
            require_dir(view)?;
            let found = if view.dinode.is_indexed_dir() && !view.has_inline_data() {
                super::dx::lookup(inner, view, name)?
            } else {
                walk_dir(inner, view, |de| {
                    if de.name == name {
                        ControlFlow::Break(de.inode)
                    } else {
                        ControlFlow::Continue(())
                    }
                })?
            };
            found.ok_or_else(|| Error::NotFound(String::from_utf8_lossy(name).into_owned()))
        })
    }
}

/// Scans one entry block for `name` (used by the index, which names the block to look in).
pub(crate) fn find_in_block(vol: &VolumeInner, blkno: u64, name: &[u8]) -> Result<Option<u64>> {
    let kind = BlockKind::DirBlockWithTrailer;
    Ok(scan_block(vol, blkno, kind, &mut |de| {
        if de.name == name {
            ControlFlow::Break(de.inode)
        } else {
            ControlFlow::Continue(())
        }
    })?
    .break_value())
}
