//! Reading file contents: inline data, mapped extents, holes and unwritten extents.

use super::error::{Error, Result};
use super::extent_map::{map_cluster, Mapping};
use super::inode::InodeView;
use super::lock::LockLevel;
use super::volume::{Volume, VolumeInner};
use crate::format::extent::ExtentList;
use crate::format::inline::InlineData;

/// Largest single device read issued for one extent run.
const MAX_RUN_BYTES: u64 = 8 << 20;

/// Copies bytes `[offset, offset + buf.len())` of the file seen in `view` into `buf`, stopping at
/// the end of the file; returns how many bytes were copied.
pub(crate) fn read_view(vol: &VolumeInner, view: &InodeView, offset: u64, buf: &mut [u8]) -> Result<usize> {
    let size = view.dinode.i_size;
    if offset >= size || buf.is_empty() {
        return Ok(0);
    }
    let want = (buf.len() as u64).min(size - offset) as usize;
    let buf = &mut buf[..want];
    let blkno = view.dinode.i_blkno;
    if view.has_inline_data() {
        let inline = InlineData::decode(view.id2()).map_err(|e| Error::format(blkno, e))?;
        let data = &inline.data;
        let start = offset as usize;
        for (i, b) in buf.iter_mut().enumerate() {
            // Bytes past the inline capacity cannot exist in a valid inode; read them as zeros.
            *b = data.get(start + i).copied().unwrap_or(0);
        }
        return Ok(want);
    }
    let list = ExtentList::decode(view.id2()).map_err(|e| Error::format(blkno, e))?;
    read_extents(vol, blkno, &list, offset, buf)?;
    Ok(want)
}

/// Fills `buf` from logical byte `offset` of the data described by the extent tree `list`.
pub(crate) fn read_extents(
    vol: &VolumeInner,
    owner: u64,
    list: &ExtentList,
    offset: u64,
    buf: &mut [u8],
) -> Result<()> {
    let geo = vol.geo;
    let cluster_size = geo.cluster_size as u64;
    let mut done = 0usize;
    while done < buf.len() {
        let pos = offset + done as u64;
        let cpos = u32::try_from(pos >> geo.cluster_bits)
            .map_err(|_| Error::InvalidArgument(format!("offset {pos} is beyond the largest file")))?;
        let in_cluster = pos & (cluster_size - 1);
        let left = (buf.len() - done) as u64;
        match map_cluster(vol, owner, list, cpos)? {
            Mapping::Hole { clusters } => {
                let run = (clusters as u64 * cluster_size - in_cluster).min(left) as usize;
                buf[done..done + run].fill(0);
                done += run;
            }
            Mapping::Data { blkno, clusters, unwritten } => {
                let run = (clusters as u64 * cluster_size - in_cluster).min(left).min(MAX_RUN_BYTES) as usize;
                let dest = &mut buf[done..done + run];
                if unwritten {
                    dest.fill(0);
                } else {
                    // `in_cluster` may start mid-block: cover the block it starts in too.
                    vol.meta.check_range(blkno, (in_cluster + run as u64).div_ceil(geo.block_size as u64))?;
                    vol.meta.device().read_at(geo.block_offset(blkno) + in_cluster, dest)?;
                }
                done += run;
            }
        }
    }
    Ok(())
}

impl Volume {
    /// Reads from the file `ino` at byte `offset`; returns the bytes read (0 at end of file).
    pub fn read(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let inner = &*self.inner;
        let inode = self.inode(ino)?;
        inode.with_meta(inner, LockLevel::Shared, |view| {
            if view.file_type() == Some(super::inode::FileType::Directory) {
                return Err(Error::IsDir(format!("inode {ino}")));
            }
            read_view(inner, view, offset, buf)
        })
    }

    /// Where byte `offset` of file `ino` lives on the device (a byte offset), or `None` when it
    /// is in a hole, in an unwritten extent, or inline in the inode. Like one FIEMAP record.
    pub fn physical_offset(&self, ino: u64, offset: u64) -> Result<Option<u64>> {
        let inner = &*self.inner;
        let inode = self.inode(ino)?;
        inode.with_meta(inner, LockLevel::Shared, |view| {
            if view.has_inline_data() {
                return Ok(None);
            }
            let geo = inner.geo;
            let list = ExtentList::decode(view.id2()).map_err(|e| Error::format(ino, e))?;
            let cpos = u32::try_from(offset >> geo.cluster_bits)
                .map_err(|_| Error::InvalidArgument(format!("offset {offset} is beyond the largest file")))?;
            Ok(match map_cluster(inner, ino, &list, cpos)? {
                Mapping::Data { blkno, unwritten: false, .. } => {
                    Some(geo.block_offset(blkno) + (offset & (geo.cluster_size as u64 - 1)))
                }
                _ => None,
            })
        })
    }

    /// The whole contents of file `ino`.
    pub fn read_all(&self, ino: u64) -> Result<Vec<u8>> {
        // Grow as data arrives rather than trusting i_size for one allocation: a damaged size
        // must not be able to exhaust memory before the first read fails.
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = self.read(ino, out.len() as u64, &mut chunk)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }
}
