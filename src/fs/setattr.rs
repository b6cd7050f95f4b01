//! Changing an inode's attributes: size, permissions, owner, group and times
//! (`ocfs2_setattr`). A new size goes through [`Volume::truncate`] first, in its own
//! transactions; the other attributes then change in one.

use super::dirwrite;
use super::error::{Error, Result};
use super::inode::{Metadata, Timestamp};
use super::lock::{LockLevel, LockName};
use super::namespace::live_dinode;
use super::tx::run;
use super::volume::Volume;
use crate::format::S_IFMT;

/// The attributes [`Volume::setattr`] changes; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// A new size for a regular file (truncate up or down).
    pub size: Option<u64>,
    /// Permission bits (`0o7777`); the file type never changes, so type bits are ignored.
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Timestamp>,
    pub mtime: Option<Timestamp>,
    /// The change time; when `None`, any change sets it to now.
    pub ctime: Option<Timestamp>,
}

impl SetAttr {
    fn is_empty(&self) -> bool {
        *self == SetAttr::default()
    }
}

/// A time as OCFS2 stores it (unsigned seconds, nanoseconds below one second).
fn stored(t: Timestamp, what: &str) -> Result<(u64, u32)> {
    let secs = u64::try_from(t.secs)
        .map_err(|_| Error::InvalidArgument(format!("{what} before 1970 ({} s) cannot be stored", t.secs)))?;
    if t.nsecs >= 1_000_000_000 {
        return Err(Error::InvalidArgument(format!("{what} with {} ns", t.nsecs)));
    }
    Ok((secs, t.nsecs))
}

impl Volume {
    /// Changes the attributes of inode `ino` that `attr` gives, in one transaction, and
    /// returns its metadata afterwards. System files (but the root directory) refuse (EPERM).
    pub fn setattr(&self, ino: u64, attr: &SetAttr) -> Result<Metadata> {
        let times = [("atime", attr.atime), ("mtime", attr.mtime), ("ctime", attr.ctime)];
        let mut parsed = [None; 3];
        for (slot, (what, t)) in parsed.iter_mut().zip(times) {
            *slot = t.map(|t| stored(t, what)).transpose()?;
        }
        let [atime, mtime, ctime] = parsed;
        if let Some(size) = attr.size {
            self.truncate(ino, size)?;
        }
        let rest = SetAttr { size: None, ..*attr };
        if !rest.is_empty() {
            let inner = &*self.inner;
            let _grant = inner.locks.lock(LockName::Meta { blkno: ino }, LockLevel::Exclusive)?;
            run(inner, |tx| {
                let di = live_dinode(tx, ino)?;
                // The root directory carries OCFS2_SYSTEM_FL too, but is everybody's to change.
                if di.is_system() && ino != tx.vol.info.root_blkno {
                    return Err(Error::NotPermitted(format!("changing the attributes of system inode {ino}")));
                }
                let now = dirwrite::now();
                tx.update_dinode(ino, |d, _| {
                    if let Some(mode) = attr.mode {
                        d.i_mode = (d.i_mode & S_IFMT) | (mode & 0o7777);
                    }
                    if let Some(uid) = attr.uid {
                        d.i_uid = uid;
                    }
                    if let Some(gid) = attr.gid {
                        d.i_gid = gid;
                    }
                    if let Some((s, n)) = atime {
                        (d.i_atime, d.i_atime_nsec) = (s, n);
                    }
                    if let Some((s, n)) = mtime {
                        (d.i_mtime, d.i_mtime_nsec) = (s, n);
                    }
                    (d.i_ctime, d.i_ctime_nsec) = ctime.unwrap_or(now);
                    Ok(())
                })
            })?;
        }
        self.metadata(ino)
    }
}
