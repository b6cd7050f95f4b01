//! Paths: walking from the root through directories and symbolic links.

use super::error::{Error, Result};
use super::inode::{FileType, Metadata};
use super::lock::LockLevel;
use super::volume::Volume;

/// Symbolic links followed in one path walk before giving up (the kernel's limit).
const MAX_SYMLINK_FOLLOWS: u32 = 40;

impl Volume {
    /// `stat` of inode `ino`.
    pub fn metadata(&self, ino: u64) -> Result<Metadata> {
        let inner = &*self.inner;
        let inode = self.inode(ino)?;
        inode.with_meta(inner, LockLevel::Shared, |view| view.metadata(inner.geo.cluster_bits))
    }

    /// The inode at `path` (absolute, from the root), without following a final symbolic
    /// link, like `lstat`. A path starting with `//` starts in the system directory, as in
    /// debugfs.ocfs2.
    pub fn resolve(&self, path: &str) -> Result<u64> {
        self.walk(path.as_bytes(), false)
    }

    /// The inode at `path`, following a final symbolic link, like `stat`.
    pub fn resolve_follow(&self, path: &str) -> Result<u64> {
        self.walk(path.as_bytes(), true)
    }

    pub(super) fn walk(&self, path: &[u8], follow_last: bool) -> Result<u64> {
        let shown = || String::from_utf8_lossy(path).into_owned();
        let mut follows = 0u32;
        // Components still to walk, last first, so that link targets can be pushed in front.
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let start = if path.starts_with(b"//") { self.system_dir() } else { self.root() };
        push_components(&mut pending, path);
        let mut dir_stack: Vec<u64> = vec![start];
        while let Some(name) = pending.pop() {
            let cur = *dir_stack.last().expect("the walk always has a current directory");
            if name == b"." {
                continue;
            }
            if name == b".." {
                if dir_stack.len() > 1 {
                    dir_stack.pop();
                } else {
                    let parent = self.lookup(cur, b"..")?;
                    dir_stack[0] = parent;
                }
                continue;
            }
            let ino = self.lookup(cur, &name).map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(shown()),
                Error::NotDir(_) => Error::NotDir(shown()),
                other => other,
            })?;
            let is_last = pending.is_empty();
            let meta = self.metadata(ino)?;
            if meta.file_type == FileType::Symlink && (!is_last || follow_last) {
                follows += 1;
                if follows > MAX_SYMLINK_FOLLOWS {
                    return Err(Error::Loop(shown()));
                }
                let target = self.read_link(ino)?;
                if target.starts_with(b"/") {
                    dir_stack.truncate(1);
                    dir_stack[0] = self.root();
                }
                push_components(&mut pending, &target);
                continue;
            }
            if !is_last && meta.file_type != FileType::Directory {
                return Err(Error::NotDir(shown()));
            }
            dir_stack.push(ino);
        }
        Ok(*dir_stack.last().expect("the walk always has a current directory"))
    }
}

/// Pushes the components of `path` onto `pending` so that the first one pops first.
fn push_components(pending: &mut Vec<Vec<u8>>, path: &[u8]) {
    let parts: Vec<&[u8]> = path.split(|&c| c == b'/').filter(|p| !p.is_empty()).collect();
    for part in parts.into_iter().rev() {
        pending.push(part.to_vec());
    }
}
