//! Hard links (`ocfs2_link`): one more name for an inode that is not a directory.

use super::dir::check_name;
use super::dirwrite;
use super::error::{Error, Result};
use super::lock::{LockLevel, LockName};
use super::namespace::{link_max, live_dinode, lock_all};
use super::tx::run;
use super::volume::Volume;
use crate::format::*;

impl Volume {
    /// Gives inode `ino` the additional name `new_name` in directory `new_dir`. Directories
    /// cannot be linked (EPERM); an inode at the volume's link limit refuses (EMLINK); the
    /// inode's ctime moves to now.
    pub fn link(&self, ino: u64, new_dir: u64, new_name: &[u8]) -> Result<()> {
        check_name(new_name)?;
        let shown = || String::from_utf8_lossy(new_name).into_owned();
        if new_name == b"." || new_name == b".." {
            return Err(Error::Exists(shown()));
        }
        let inner = &*self.inner;
        let _dir = inner.locks.lock(LockName::Meta { blkno: new_dir }, LockLevel::Exclusive)?;
        let _child = lock_all(inner, &[ino], &[new_dir])?;
        run(inner, |tx| {
            let parent = live_dinode(tx, new_dir)?;
            if !parent.is_dir() {
                return Err(Error::NotDir(format!("inode {new_dir}")));
            }
            if parent.links_count() == 0 {
                return Err(Error::NotFound(format!("directory {new_dir} was removed")));
            }
            let di = live_dinode(tx, ino)?;
            if di.is_dir() {
                return Err(Error::NotPermitted(format!("hard link to directory {ino}")));
            }
            if di.is_system() {
                return Err(Error::NotPermitted(format!("hard link to system inode {ino}")));
            }
            if di.links_count() == 0 {
                return Err(Error::NotFound(format!("inode {ino} has no name left")));
            }
            if dirwrite::find(tx, new_dir, new_name)?.is_some() {
                return Err(Error::Exists(shown()));
            }
            // Only directories read `i_links_count_hi`: a file's count must fit 16 bits.
            if di.links_count() >= link_max(tx.vol).min(u32::from(u16::MAX)) {
                return Err(Error::TooManyLinks(format!("inode {ino}")));
            }
            let (secs, nsecs) = dirwrite::now();
            tx.update_dinode(ino, |d, _| {
                d.set_links_count(d.links_count() + 1);
                d.i_ctime = secs;
                d.i_ctime_nsec = nsecs;
                Ok(())
            })?;
            dirwrite::add(tx, new_dir, new_name, ino, file_type_of_mode(di.i_mode))
        })
    }
}
