//! Paths and open handles: the API an application uses when it thinks in files rather than
//! inode numbers.
//!
//! The inode-number methods of [`Volume`] (`lookup`, `create`, `write`, ...) are what a FUSE
//! server needs; most programs want `open("/a/b")` instead. This module gives them that: path
//! methods on [`Volume`] named after `std::fs`, an [`OpenOptions`] builder, a [`File`] that
//! keeps its inode alive while open (an unlinked open file stays readable, as POSIX says) and
//! implements `Read`, `Write` and `Seek`, and a [`Dir`] that iterates a directory.
//!
//! Paths are bytes (`&str`, `&[u8]`, `String` and `Vec<u8>` all work), absolute from the
//! volume's root; a relative path starts at the root too, since a volume has no working
//! directory. Every component but the last follows symbolic links.
//!
//! ```
//! use ocfs2::mkfs::{mkfs, MkfsOptions, MountType};
//! use ocfs2::{MemDevice, MountOptions, OpenOptions, Volume};
//! use std::io::{Read, Write};
//!
//! let dev = std::sync::Arc::new(MemDevice::new(64 << 20));
//! mkfs(&*dev, &MkfsOptions { mount: Some(MountType::Local), ..Default::default() })?;
//! let vol = Volume::open(dev, MountOptions::writable())?;
//! vol.create_dir("/docs", 0o755)?;
//! let mut file = vol.open_file("/docs/hello.txt", OpenOptions::new().write(true).create(true))?;
//! file.write_all(b"hello, cluster")?;
//! file.close()?;
//!
//! let mut text = String::new();
//! vol.open_file("/docs/hello.txt", OpenOptions::new().read(true))?.read_to_string(&mut text)?;
//! assert_eq!(text, "hello, cluster");
//! let names: Vec<Vec<u8>> = vol.open_dir("/docs")?.map(|e| e.map(|e| e.name)).collect::<Result<_, _>>()?;
//! assert!(names.contains(&b"hello.txt".to_vec()));
//! vol.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::dir::DirEntry;
use super::error::{Error, Result};
use super::inode::{FileType, Metadata, Timestamp};
use super::orphan::OpenInode;
use super::setattr::SetAttr;
use super::volume::Volume;
use parking_lot::Mutex;
use std::io::{self, SeekFrom};

// Handles are shared between threads: this stops compiling if one of them loses Send + Sync.
const _: () = {
    const fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<Volume>();
    shared_between_threads::<File>();
    shared_between_threads::<Dir>();
};

/// How to open a file, as `std::fs::OpenOptions` (and `open(2)`'s flags) say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u16,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// Nothing allowed yet; new files get mode 0o644.
    pub fn new() -> Self {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o644,
        }
    }

    pub fn read(&mut self, read: bool) -> &mut Self {
        self.read = read;
        self
    }

    pub fn write(&mut self, write: bool) -> &mut Self {
        self.write = write;
        self
    }

    /// Every write goes to the end of the file (`O_APPEND`); implies writing.
    pub fn append(&mut self, append: bool) -> &mut Self {
        self.append = append;
        self
    }

    /// Cut an existing file to 0 bytes (`O_TRUNC`); needs writing.
    pub fn truncate(&mut self, truncate: bool) -> &mut Self {
        self.truncate = truncate;
        self
    }

    /// Create the file when it does not exist (`O_CREAT`).
    pub fn create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }

    /// Create the file, failing with [`Error::Exists`] when it exists (`O_CREAT | O_EXCL`).
    pub fn create_new(&mut self, create_new: bool) -> &mut Self {
        self.create_new = create_new;
        self
    }

    /// Permission bits of a file this open creates. The library applies no umask: the caller
    /// has applied its own.
    pub fn mode(&mut self, mode: u16) -> &mut Self {
        self.mode = mode & 0o7777;
        self
    }

    fn writes(&self) -> bool {
        self.write || self.append
    }
}

/// A path split into the directory that holds its last component and that component.
struct Split {
    parent: u64,
    name: Vec<u8>,
    /// The path ended in `/`: the last component must be a directory.
    trailing_slash: bool,
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

impl Volume {
    /// Splits `path` into its parent directory (resolved, following links) and last name.
    /// `.` and `..` as the last name are refused (EINVAL), as `unlink` and `rename` refuse them;
    /// the root has no last name.
    fn split(&self, path: &[u8]) -> Result<Split> {
        let trimmed_len = path.iter().rposition(|&c| c != b'/').map_or(0, |i| i + 1);
        let trimmed = &path[..trimmed_len];
        if trimmed.is_empty() {
            return Err(if path.is_empty() {
                Error::NotFound("empty path".into())
            } else {
                Error::Busy("the root directory".into())
            });
        }
        let (dir_part, name) = match trimmed.iter().rposition(|&c| c == b'/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (&b""[..], trimmed),
        };
        if name == b"." || name == b".." {
            return Err(Error::InvalidArgument(format!("{}: ends in {}", shown(path), shown(name))));
        }
        super::dir::check_name(name)?;
        let parent = if dir_part.is_empty() { self.root() } else { self.walk(dir_part, true)? };
        if !self.metadata(parent)?.is_dir() {
            return Err(Error::NotDir(shown(dir_part)));
        }
        Ok(Split { parent, name: name.to_vec(), trailing_slash: trimmed_len < path.len() })
    }

    /// The inode at `path`, following a last symbolic link when `follow`. A path that ends in
    /// `/` must lead to a directory.
    fn inode_at(&self, path: &[u8], follow: bool) -> Result<u64> {
        if path.is_empty() {
            return Err(Error::NotFound("empty path".into()));
        }
        let ino = self.walk(path, follow || path.ends_with(b"/"))?;
        if path.ends_with(b"/") && !self.metadata(ino)?.is_dir() {
            return Err(Error::NotDir(shown(path)));
        }
        Ok(ino)
    }

    /// Opens the file at `path` as `options` say; a last symbolic link is followed.
    pub fn open_file(&self, path: impl AsRef<[u8]>, options: &OpenOptions) -> Result<File> {
        let path = path.as_ref();
        let o = options;
        if !o.read && !o.writes() {
            return Err(Error::InvalidArgument("open for neither reading nor writing".into()));
        }
        if o.truncate && !o.writes() {
            return Err(Error::InvalidArgument("truncating a file opened read-only".into()));
        }
        if (o.writes() || o.create || o.create_new) && !self.is_writable() {
            return Err(Error::ReadOnly);
        }
        let mut created = false;
        let ino = if o.create || o.create_new {
            let at = self.split(path)?;
            match self.lookup(at.parent, &at.name) {
                Ok(_) if o.create_new => return Err(Error::Exists(shown(path))),
                // Only a symbolic link needs the walk again, to follow it.
                Ok(ino) if self.metadata(ino)?.file_type != FileType::Symlink && !at.trailing_slash => ino,
                Ok(_) => self.inode_at(path, true)?,
                Err(Error::NotFound(_)) if at.trailing_slash => return Err(Error::IsDir(shown(path))),
                Err(Error::NotFound(_)) => {
                    created = true;
                    self.create(at.parent, &at.name, o.mode)?
                }
                Err(e) => return Err(e),
            }
        } else {
            self.inode_at(path, true)?
        };
        let meta = self.metadata(ino)?;
        match meta.file_type {
            FileType::Regular => {}
            FileType::Directory => return Err(Error::IsDir(shown(path))),
            other => return Err(Error::InvalidArgument(format!("{}: a {other:?} has no data to open", shown(path)))),
        }
        let hold = self.hold(ino)?;
        if o.truncate && !created && meta.size > 0 {
            self.truncate(ino, 0)?;
        }
        Ok(File { hold, read: o.read, write: o.writes(), append: o.append, pos: Mutex::new(0) })
    }

    /// Opens the directory at `path` for listing.
    pub fn open_dir(&self, path: impl AsRef<[u8]>) -> Result<Dir> {
        let path = path.as_ref();
        let ino = self.inode_at(path, true)?;
        if !self.metadata(ino)?.is_dir() {
            return Err(Error::NotDir(shown(path)));
        }
        let entries = self.read_dir(ino)?;
        Ok(Dir { ino, entries: entries.into_iter() })
    }

    /// `stat`: the metadata of what `path` leads to, following symbolic links.
    pub fn stat(&self, path: impl AsRef<[u8]>) -> Result<Metadata> {
        self.metadata(self.inode_at(path.as_ref(), true)?)
    }

    /// `lstat`: the metadata of `path` itself, a last symbolic link not followed.
    pub fn lstat(&self, path: impl AsRef<[u8]>) -> Result<Metadata> {
        self.metadata(self.inode_at(path.as_ref(), false)?)
    }

    /// `mkdir`: a new directory with permissions `perm`.
    pub fn create_dir(&self, path: impl AsRef<[u8]>, perm: u16) -> Result<()> {
        let path = path.as_ref();
        let at = match self.split(path) {
            // The root exists, whatever else its path says.
            Err(Error::Busy(_)) => return Err(Error::Exists(shown(path))),
            other => other?,
        };
        self.mkdir(at.parent, &at.name, perm).map(drop)
    }

    /// `mkdir -p`: every missing directory along `path` (existing ones are fine).
    pub fn create_dir_all(&self, path: impl AsRef<[u8]>, perm: u16) -> Result<()> {
        let path = path.as_ref();
        let mut dir = self.root();
        let mut end = 0;
        while end < path.len() {
            let start = end + path[end..].iter().take_while(|&&c| c == b'/').count();
            end = start + path[start..].iter().take_while(|&&c| c != b'/').count();
            let name = &path[start..end];
            if name.is_empty() || name == b"." {
                continue;
            }
            dir = match self.lookup(dir, name) {
                Ok(_) => self.inode_at(&path[..end], true)?,
                Err(Error::NotFound(_)) => match self.mkdir(dir, name, perm) {
                    Ok(ino) => ino,
                    // Another thread made it between the lookup and the mkdir.
                    Err(Error::Exists(_)) => self.inode_at(&path[..end], true)?,
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            };
            if !self.metadata(dir)?.is_dir() {
                return Err(Error::NotDir(shown(&path[..end])));
            }
        }
        Ok(())
    }

    /// `unlink`: removes a name that is not a directory.
    pub fn remove_file(&self, path: impl AsRef<[u8]>) -> Result<()> {
        let path = path.as_ref();
        let at = self.split(path)?;
        if at.trailing_slash {
            let ino = self.lookup(at.parent, &at.name)?;
            if !self.metadata(ino)?.is_dir() {
                return Err(Error::NotDir(shown(path)));
            }
        }
        self.unlink(at.parent, &at.name)
    }

    /// `rmdir`: removes an empty directory.
    pub fn remove_dir(&self, path: impl AsRef<[u8]>) -> Result<()> {
        let at = self.split(path.as_ref())?;
        self.rmdir(at.parent, &at.name)
    }

    /// `rename`: moves `from` to `to`, replacing what `to` names as POSIX allows.
    pub fn rename_path(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<()> {
        let (from, to) = (self.split(from.as_ref())?, self.split(to.as_ref())?);
        self.rename(from.parent, &from.name, to.parent, &to.name)
    }

    /// `link`: a new name `new` for the inode `existing` names (a last symbolic link of
    /// `existing` is not followed, as `link(2)` on Linux).
    pub fn hard_link(&self, existing: impl AsRef<[u8]>, new: impl AsRef<[u8]>) -> Result<()> {
        let ino = self.inode_at(existing.as_ref(), false)?;
        let at = self.split(new.as_ref())?;
        self.link(ino, at.parent, &at.name)
    }

    /// `symlink`: a symbolic link at `link` whose target is `target` (stored as given).
    pub fn symlink_path(&self, target: impl AsRef<[u8]>, link: impl AsRef<[u8]>) -> Result<()> {
        let at = self.split(link.as_ref())?;
        self.symlink(at.parent, &at.name, target.as_ref()).map(drop)
    }

    /// `readlink`: the target of the symbolic link at `path`.
    pub fn read_link_path(&self, path: impl AsRef<[u8]>) -> Result<Vec<u8>> {
        self.read_link(self.inode_at(path.as_ref(), false)?)
    }

    /// `mknod`: a special file (fifo, socket, character or block device) at `path`; see
    /// [`Volume::mknod`] for `mode` and `rdev`.
    pub fn mknod_path(&self, path: impl AsRef<[u8]>, mode: u16, rdev: u64) -> Result<()> {
        let at = self.split(path.as_ref())?;
        self.mknod(at.parent, &at.name, mode, rdev).map(drop)
    }

    /// `chmod` (follows symbolic links).
    pub fn set_permissions(&self, path: impl AsRef<[u8]>, perm: u16) -> Result<()> {
        let ino = self.inode_at(path.as_ref(), true)?;
        self.setattr(ino, &SetAttr { mode: Some(perm & 0o7777), ..Default::default() }).map(drop)
    }

    /// `chown` (follows symbolic links); `None` leaves the owner or group as it is.
    pub fn set_owner(&self, path: impl AsRef<[u8]>, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        let ino = self.inode_at(path.as_ref(), true)?;
        self.setattr(ino, &SetAttr { uid, gid, ..Default::default() }).map(drop)
    }

    /// `utimensat` (follows symbolic links); `None` leaves a time as it is.
    pub fn set_times(&self, path: impl AsRef<[u8]>, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> Result<()> {
        let ino = self.inode_at(path.as_ref(), true)?;
        self.setattr(ino, &SetAttr { atime, mtime, ..Default::default() }).map(drop)
    }

    /// `truncate`: sets the size of the regular file at `path`.
    pub fn set_len(&self, path: impl AsRef<[u8]>, size: u64) -> Result<()> {
        let path = path.as_ref();
        let ino = self.inode_at(path, true)?;
        match self.metadata(ino)?.file_type {
            FileType::Regular => self.truncate(ino, size),
            FileType::Directory => Err(Error::IsDir(shown(path))),
            _ => Err(Error::InvalidArgument(format!("{}: not a regular file", shown(path)))),
        }
    }
}

/// An open regular file. It holds its inode: after the last name is removed the file stays
/// readable and writable through this handle, and the inode is freed when the last handle
/// closes. Threads may share one `File` (`&File` reads, writes and seeks too); the position
/// that `Read`, `Write` and `Seek` use is shared among them.
pub struct File {
    hold: OpenInode,
    read: bool,
    write: bool,
    append: bool,
    pos: Mutex<u64>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("ino", &self.ino())
            .field("read", &self.read)
            .field("write", &self.write)
            .field("append", &self.append)
            .finish()
    }
}

impl File {
    fn vol(&self) -> &Volume {
        self.hold.volume()
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.hold.ino()
    }

    /// `fstat`.
    pub fn metadata(&self) -> Result<Metadata> {
        self.hold.metadata()
    }

    fn need_read(&self) -> Result<()> {
        if self.read {
            Ok(())
        } else {
            Err(Error::BadHandle("the file is not open for reading".into()))
        }
    }

    fn need_write(&self) -> Result<()> {
        if self.write {
            Ok(())
        } else {
            Err(Error::BadHandle("the file is not open for writing".into()))
        }
    }

    /// `pread`: reads at `offset` without moving the position; returns the bytes read, 0 at the
    /// end of the file.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.need_read()?;
        self.hold.read(offset, buf)
    }

    /// `pwrite`: writes all of `buf` at `offset` without moving the position. In append mode
    /// the data goes to the end of the file whatever `offset` says, as on Linux.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.need_write()?;
        if self.append {
            self.vol().append(self.ino(), buf)?;
            return Ok(buf.len());
        }
        self.vol().write(self.ino(), offset, buf)
    }

    /// `ftruncate`.
    pub fn set_len(&self, size: u64) -> Result<()> {
        if !self.write {
            return Err(Error::InvalidArgument("truncating a file not open for writing".into()));
        }
        self.vol().truncate(self.ino(), size)
    }

    /// `fallocate`: preallocates `[offset, offset + len)` (reads as zeros); the size grows to
    /// the end of the range unless `keep_size`.
    pub fn allocate(&self, offset: u64, len: u64, keep_size: bool) -> Result<()> {
        self.need_write()?;
        self.vol().fallocate(self.ino(), offset, len, keep_size)
    }

    /// `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`.
    pub fn punch_hole(&self, offset: u64, len: u64) -> Result<()> {
        self.need_write()?;
        self.vol().punch_hole(self.ino(), offset, len)
    }

    /// `fallocate(FALLOC_FL_ZERO_RANGE)`.
    pub fn zero_range(&self, offset: u64, len: u64, keep_size: bool) -> Result<()> {
        self.need_write()?;
        self.vol().zero_range(self.ino(), offset, len, keep_size)
    }

    /// `fsync`.
    pub fn sync_all(&self) -> Result<()> {
        self.vol().sync_all(self.ino())
    }

    /// `fdatasync`.
    pub fn sync_data(&self) -> Result<()> {
        self.vol().sync_data(self.ino())
    }

    /// Closes the file, reporting what freeing an unlinked file's inode ran into (dropping
    /// the `File` does the same but can only log it).
    pub fn close(self) -> Result<()> {
        self.hold.close()
    }

    fn read_here(&self, buf: &mut [u8]) -> Result<usize> {
        self.need_read()?;
        let mut pos = self.pos.lock();
        let n = self.hold.read(*pos, buf)?;
        *pos += n as u64;
        Ok(n)
    }

    fn write_here(&self, buf: &[u8]) -> Result<usize> {
        self.need_write()?;
        let mut pos = self.pos.lock();
        let at = if self.append {
            self.vol().append(self.ino(), buf)?
        } else {
            self.vol().write(self.ino(), *pos, buf)?;
            *pos
        };
        *pos = at + buf.len() as u64;
        Ok(buf.len())
    }

    fn seek_here(&self, to: SeekFrom) -> Result<u64> {
        let mut pos = self.pos.lock();
        let (base, delta) = match to {
            SeekFrom::Start(at) => (at, 0),
            SeekFrom::Current(d) => (*pos, d),
            SeekFrom::End(d) => (self.metadata()?.size, d),
        };
        let target = base
            .checked_add_signed(delta)
            .ok_or_else(|| Error::InvalidArgument(format!("seek to {base} {delta:+}")))?;
        if target > i64::MAX as u64 {
            return Err(Error::InvalidArgument(format!("seek beyond {}", i64::MAX)));
        }
        *pos = target;
        Ok(target)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(io::Error::from_raw_os_error(e.errno()).kind(), e)
    }
}

impl io::Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_here(buf)?)
    }
}

impl io::Write for &File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.write_here(buf)?)
    }

    /// Writes reach the journal at the next commit; use [`File::sync_all`] to wait for them.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Seek for &File {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        Ok(self.seek_here(to)?)
    }
}

impl io::Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl io::Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}

impl io::Seek for File {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        (&*self).seek(to)
    }
}

/// An open directory: its entries as they were when it was opened, `.` and `..` included,
/// in on-disk order.
#[derive(Debug)]
pub struct Dir {
    ino: u64,
    entries: std::vec::IntoIter<DirEntry>,
}

impl Dir {
    /// The directory's inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }
}

impl Iterator for Dir {
    type Item = Result<DirEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.entries.next().map(Ok)
    }
}
