//! Special files: fifos, sockets, and character and block devices.
//!
//! They own no data: the inode carries an empty extent list as every non-inline inode does,
//! and a device its number in `id1.dev1.i_rdev`. The kernel stores there
//! `huge_encode_dev(dev)`: minor bits 0..8 in bits 0..8, the 12-bit major in bits 8..20, minor
//! bits 8..20 in bits 20..32. For every device number the kernel can represent that is the
//! same value as the 64-bit `dev_t` of Linux user space (`makedev`), which is what callers pass
//! and what [`Metadata::rdev`](super::Metadata) gives back.

use super::error::{Error, Result};
use super::namespace::{Body, Owner};
use super::volume::Volume;
use crate::format::*;

/// Largest major and minor numbers of the kernel's 32-bit `dev_t`.
const MAX_MAJOR: u64 = (1 << 12) - 1;
const MAX_MINOR: u64 = (1 << 20) - 1;

/// The major number of a user-space `dev_t` (glibc `gnu_dev_major`).
pub fn dev_major(rdev: u64) -> u64 {
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
}

/// The minor number of a user-space `dev_t` (glibc `gnu_dev_minor`).
pub fn dev_minor(rdev: u64) -> u64 {
    (rdev & 0xff) | ((rdev >> 12) & !0xff)
}

/// A user-space `dev_t` from its major and minor numbers (glibc `gnu_dev_makedev`).
pub fn dev_makedev(major: u64, minor: u64) -> u64 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

/// `rdev` as the kernel stores it, or an error if the kernel's `dev_t` cannot hold it.
fn encode_rdev(rdev: u64) -> Result<u64> {
    let (major, minor) = (dev_major(rdev), dev_minor(rdev));
    if major > MAX_MAJOR || minor > MAX_MINOR {
        return Err(Error::InvalidArgument(format!("device {major}:{minor} does not fit the kernel's dev_t")));
    }
    Ok((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

impl Volume {
    /// Creates special file `name` in directory `dir`: `mode` holds the type (`S_IFIFO`,
    /// `S_IFSOCK`, `S_IFCHR`, `S_IFBLK`, or `S_IFREG`/0 for an empty regular file) and the
    /// permissions; `rdev` is the device number of a device (a user-space `dev_t`) and is
    /// ignored otherwise. Returns the new inode number.
    pub fn mknod(&self, dir: u64, name: &[u8], mode: u16, rdev: u64) -> Result<u64> {
        self.make_special(dir, name, mode, rdev, None)
    }

    /// [`Volume::mknod`] for `owner` (see [`Owner`]), in one transaction.
    pub fn mknod_as(&self, dir: u64, name: &[u8], mode: u16, rdev: u64, owner: Owner) -> Result<u64> {
        self.make_special(dir, name, mode, rdev, Some(owner))
    }

    fn make_special(&self, dir: u64, name: &[u8], mode: u16, rdev: u64, owner: Option<Owner>) -> Result<u64> {
        let perm = mode & 0o7777;
        match mode & S_IFMT {
            0 | S_IFREG => self.make_node(dir, name, S_IFREG | perm, Body::Empty, owner),
            S_IFIFO | S_IFSOCK => self.make_node(dir, name, mode, Body::Empty, owner),
            S_IFCHR | S_IFBLK => self.make_node(dir, name, mode, Body::Device(encode_rdev(rdev)?), owner),
            S_IFDIR => Err(Error::NotPermitted("mknod of a directory (use mkdir)".into())),
            other => Err(Error::InvalidArgument(format!("mknod of file type {other:#o}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_round_trip_through_the_kernel_encoding() {
        for (major, minor) in [(0, 0), (1, 3), (8, 17), (259, 0x12345), (4095, 0xfffff), (136, 255), (136, 256)] {
            let rdev = dev_makedev(major, minor);
            assert_eq!((dev_major(rdev), dev_minor(rdev)), (major, minor));
            assert_eq!(encode_rdev(rdev).unwrap(), rdev, "{major}:{minor}: same bits in both encodings");
        }
        assert_eq!(dev_makedev(8, 1), 0x801);
        assert!(encode_rdev(dev_makedev(4096, 0)).is_err());
        assert!(encode_rdev(dev_makedev(1, 1 << 20)).is_err());
    }
}
