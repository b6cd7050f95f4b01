//! Symbolic links: fast ones keep the target in the inode, slow ones in a data cluster.

use super::error::{Error, Result};
use super::file::read_view;
use super::inode::FileType;
use super::lock::LockLevel;
use super::volume::Volume;
use crate::format::dinode::DINODE_ID2_OFFSET;

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
