//! One way in for every program: a path names an image file or block device, an `nbd://` URL an
//! export on an NBD server, and both open as a [`BlockDevice`].
#![deny(unsafe_code)]

use super::{BlockDevice, FileDevice, FileDeviceOptions, NbdAddress, NbdDevice, NbdOptions};
use std::io;

/// True when `spec` is a URL for [`NbdDevice`] rather than a path (`nbd://`, `nbds://`,
/// `nbd+unix://`, ...; the unsupported ones then fail to open with a clear message).
pub fn is_nbd_url(spec: &str) -> bool {
    spec.split_once("://").is_some_and(|(scheme, _)| {
        let scheme = scheme.to_ascii_lowercase();
        scheme == "nbd" || scheme == "nbds" || scheme.starts_with("nbd+") || scheme.starts_with("nbds+")
    })
}

/// Opens a path or an `nbd://HOST[:PORT][/EXPORT]` URL, for reading, or for writing too.
/// Asking to write to an export the server offers read-only fails with EROFS.
pub fn open_device(spec: &str, writable: bool) -> io::Result<Box<dyn BlockDevice>> {
    open_device_with(spec, FileDeviceOptions { writable, direct: None }, NbdOptions::default())
}

/// [`open_device`] with the options of each kind of device; `file.writable` decides for both.
pub fn open_device_with(spec: &str, file: FileDeviceOptions, nbd: NbdOptions) -> io::Result<Box<dyn BlockDevice>> {
    if !is_nbd_url(spec) {
        return Ok(Box::new(FileDevice::open_with(spec, file)?));
    }
    let address = NbdAddress::parse(spec)?;
    let dev = NbdDevice::connect_with(&address, NbdOptions { read_only: !file.writable, ..nbd })?;
    if file.writable && dev.export().is_read_only() {
        // The bare errno, so that callers that map errors to errno values see EROFS.
        log::warn!("{address}: the server exports it read-only");
        return Err(io::Error::from_raw_os_error(libc::EROFS));
    }
    Ok(Box::new(dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        for url in ["nbd://h/x", "NBD://h", "nbds://h/", "nbd+unix:///x?socket=/s"] {
            assert!(is_nbd_url(url), "{url}");
        }
        for path in ["/dev/sdb", "disk.img", "./nbd:/x", "http://h/x", "nbdx://h"] {
            assert!(!is_nbd_url(path), "{path}");
        }
    }

    #[test]
    fn paths_open_as_files_and_bad_urls_fail_clearly() {
        let path = std::env::temp_dir().join(format!("ocfs2-open-device-{}", std::process::id()));
        std::fs::File::create(&path).unwrap().set_len(8192).unwrap();
        let dev = open_device(path.to_str().unwrap(), false).unwrap();
        assert_eq!(dev.len(), 8192);
        assert!(dev.write_at(0, b"x").is_err(), "read-only when not asked to write");
        let dev = open_device(path.to_str().unwrap(), true).unwrap();
        dev.write_at(0, b"x").unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = open_device("nbds://h/x", false).err().unwrap();
        assert!(err.to_string().contains("TLS"), "{err}");
    }
}
