//! Symbolic links: fast ones keep the target in the inode, slow ones in a data cluster.

use super::alloc::local_alloc;
use super::error::{Error, Result};
use super::file::read_view;
use super::inode::FileType;
use super::lock::LockLevel;
use super::namespace::{Body, Owner};
use super::tx::Tx;
use super::volume::Volume;
use crate::format::dinode::DINODE_ID2_OFFSET;
use crate::format::extent::{extent_recs_per_inode, ExtentList, ExtentRec};
use crate::format::inline::{encode_fast_symlink, fast_symlink_chars};
use crate::format::S_IFLNK;

/// Longest target a symlink may have (`PATH_MAX` less the NUL).
pub const MAX_SYMLINK_LEN: u64 = 4095;

impl Volume {
    /// The target of symbolic link `ino`.
    pub fn read_link(&self, ino: u64) -> Result<Vec<u8>> {
        let inner = &*self.inner;
        let inode = self.inode(ino)?;
        inode.with_meta(inner, LockLevel::Shared, |view| {
            if view.file_type() != Some(FileType::Symlink) {
                return Err(Error::InvalidArgument(format!("inode {ino} is not a symbolic link")));
            }
            let size = view.dinode.i_size;
            if size > MAX_SYMLINK_LEN {
                return Err(Error::corrupt(ino, format!("symbolic link of {size} bytes")));
            }
            // A fast symlink owns no clusters; its target sits where the extent list would be.
            if view.dinode.i_clusters == 0 && !view.has_inline_data() {
                let area = &view.block[DINODE_ID2_OFFSET..];
                let len = size as usize;
                if len > area.len() {
                    return Err(Error::corrupt(ino, format!("fast symlink of {len} bytes does not fit its inode")));
                }
                return Ok(area[..len].to_vec());
            }
            let mut target = vec![0u8; size as usize];
            let n = read_view(inner, view, 0, &mut target)?;
            target.truncate(n);
            Ok(target)
        })
    }
}

/// Lays out the target of new symbolic link `ino` (whose head the caller filled): in the inode
/// when it fits with its NUL (a fast symlink, as `ocfs2_symlink` decides with
/// `ocfs2_fast_symlink_chars`), else in the first blocks of one new cluster (a slow symlink,
/// NUL-terminated as `ocfs2_create_symlink_data` writes it). `i_size` is the target's length.
pub(super) fn fill(tx: &mut Tx, ino: u64, target: &[u8]) -> Result<()> {
    let geo = tx.vol.geo;
    let bs = geo.block_size as usize;
    let len = target.len() as u64;
    if target.len() < fast_symlink_chars(bs) {
        return tx.update_dinode(ino, |d, block| {
            encode_fast_symlink(&mut block[DINODE_ID2_OFFSET..], target).map_err(|e| Error::format(ino, e))?;
            d.i_size = len;
            d.i_clusters = 0;
            Ok(())
        });
    }
    let (cluster, _) = local_alloc::claim_data(tx, 1)?;
    let blkno = geo.cluster_to_block(u64::from(cluster));
    let mut data = target.to_vec();
    data.push(0);
    data.resize(data.len().div_ceil(bs) * bs, 0);
    if data.len() > geo.cluster_size as usize {
        return Err(Error::NameTooLong(target.len()));
    }
    tx.write_data(blkno, &data)?;
    tx.update_dinode(ino, |d, block| {
        let mut list = ExtentList::new(extent_recs_per_inode(bs));
        list.recs.push(ExtentRec::leaf(0, 1, 0, blkno));
        list.encode(&mut block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
        d.i_size = len;
        d.i_clusters = 1;
        Ok(())
    })
}

impl Volume {
    /// Creates symbolic link `name` in directory `dir` pointing at `target` (at most
    /// [`MAX_SYMLINK_LEN`] bytes, no NUL); returns its inode number. Its mode is 0777, as the
    /// kernel makes every symlink.
    pub fn symlink(&self, dir: u64, name: &[u8], target: &[u8]) -> Result<u64> {
        self.make_symlink(dir, name, target, None)
    }

    /// [`Volume::symlink`] for `owner` (see [`Owner`]), in one transaction.
    pub fn symlink_as(&self, dir: u64, name: &[u8], target: &[u8], owner: Owner) -> Result<u64> {
        self.make_symlink(dir, name, target, Some(owner))
    }

    fn make_symlink(&self, dir: u64, name: &[u8], target: &[u8], owner: Option<Owner>) -> Result<u64> {
        if target.is_empty() {
            return Err(Error::NotFound("an empty symbolic link target".into()));
        }
        if target.len() as u64 > MAX_SYMLINK_LEN {
            return Err(Error::NameTooLong(target.len()));
        }
        if target.contains(&0) {
            return Err(Error::InvalidArgument("a symbolic link target with a NUL byte".into()));
        }
        self.make_node(dir, name, S_IFLNK | 0o777, Body::Symlink(target), owner)
    }
}
