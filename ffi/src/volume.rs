//! Volumes: open, close, statfs, sync, and the operations that take a path.

use crate::call::{c_bytes, c_path, call, mode_arg, need_out, offset_arg, put, Failure, Res};
use crate::handles::{self, ocfs2rs_volume, Object, VolumeObj};
use crate::types::*;
use ocfs2::{MountOptions, Timestamp, Volume};
use std::ffi::{c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

fn volume(vol: *const ocfs2rs_volume) -> Res<Arc<VolumeObj>> {
    handles::get::<VolumeObj>(vol)
}

/// Opens the OCFS2 volume on the image file or block device at `path`. `flags` is
/// OCFS2RS_VOLUME_READONLY or OCFS2RS_VOLUME_WRITABLE. On success stores a new handle in
/// `*out` (close it with `ocfs2rs_volume_close`) and returns 0.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_volume_open(path: *const c_char, flags: u32, out: *mut *mut ocfs2rs_volume) -> c_int {
    call("ocfs2rs_volume_open", || {
        need_out(out, "out")?;
        // SAFETY: the caller's promise for `path`.
        let path = unsafe { c_bytes(path, "path") }?;
        let options = match flags {
            OCFS2RS_VOLUME_READONLY => MountOptions::default(),
            OCFS2RS_VOLUME_WRITABLE => MountOptions::writable(),
            other => return Err(Failure::invalid(format!("volume flags {other:#x} are not READONLY or WRITABLE"))),
        };
        let vol = Volume::open_path(std::ffi::OsStr::from_bytes(path), options)?;
        // SAFETY: `out` was checked non-null; the caller promises it is writable.
        unsafe { put(out, handles::add_volume(vol)) };
        Ok(0)
    })
}

/// Closes a volume: first every file and directory still open on it (their handles become
/// invalid), then the volume itself, which checkpoints the journal and gives the slot back on
/// a writable volume. Returns 0, the first error met (the handle is closed all the same), or
/// -EINVAL for a handle that is not an open volume (so a second close is -EINVAL).
#[no_mangle]
pub extern "C" fn ocfs2rs_volume_close(vol: *mut ocfs2rs_volume) -> c_int {
    call("ocfs2rs_volume_close", || {
        let (vol, children) = handles::take_volume(vol)?;
        let mut first: Res<()> = Ok(());
        for child in children {
            let closed = match child {
                // An object some other thread is still using is released when that call ends.
                Object::File(f) => Arc::try_unwrap(f).map_or(Ok(()), |f| f.file.close()),
                Object::Dir(_) | Object::Volume(_) => Ok(()),
            };
            if let (Ok(()), Err(e)) = (&first, closed) {
                first = Err(e.into());
            }
        }
        let closed = vol.vol.clone().close();
        first?;
        closed?;
        Ok(0)
    })
}

/// Space used and free. Returns 0 and fills `*out`.
///
/// # Safety
/// `out` is NULL or valid for writing an `ocfs2rs_statfs`.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_volume_statfs(vol: *mut ocfs2rs_volume, out: *mut ocfs2rs_statfs) -> c_int {
    call("ocfs2rs_volume_statfs", || {
        need_out(out, "out")?;
        let vol = volume(vol)?;
        let stats = statfs_of(&vol.vol.statfs()?, !vol.vol.is_writable());
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { put(out, stats) };
        Ok(0)
    })
}

/// Makes every change made so far on the volume durable (`syncfs`).
#[no_mangle]
pub extern "C" fn ocfs2rs_volume_sync(vol: *mut ocfs2rs_volume) -> c_int {
    call("ocfs2rs_volume_sync", || {
        volume(vol)?.vol.sync()?;
        Ok(0)
    })
}

/// Runs `op` on the volume and a checked path.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
unsafe fn with_path(
    func: &'static str,
    vol: *mut ocfs2rs_volume,
    path: *const c_char,
    op: impl FnOnce(&Volume, &[u8]) -> ocfs2::fs::Result<()>,
) -> c_int {
    call(func, || {
        // SAFETY: the caller's promise for `path`.
        let path = unsafe { c_path(path, "path") }?;
        op(&volume(vol)?.vol, path)?;
        Ok(0)
    })
}

/// Runs `op` on the volume and two checked paths.
///
/// # Safety
/// `a` and `b` are NULL or NUL-terminated strings.
unsafe fn with_paths(
    func: &'static str,
    vol: *mut ocfs2rs_volume,
    a: *const c_char,
    b: *const c_char,
    op: impl FnOnce(&Volume, &[u8], &[u8]) -> ocfs2::fs::Result<()>,
) -> c_int {
    call(func, || {
        // SAFETY: the caller's promise for both strings.
        let (a, b) = unsafe { (c_path(a, "the first path")?, c_path(b, "the second path")?) };
        op(&volume(vol)?.vol, a, b)?;
        Ok(0)
    })
}

/// `stat` or `lstat` into `*out`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for writing.
unsafe fn stat_into(
    func: &'static str,
    vol: *mut ocfs2rs_volume,
    path: *const c_char,
    out: *mut ocfs2rs_attr,
    follow: bool,
) -> c_int {
    call(func, || {
        need_out(out, "out")?;
        // SAFETY: the caller's promise for `path`.
        let path = unsafe { c_path(path, "path") }?;
        let vol = volume(vol)?;
        let meta = if follow { vol.vol.stat(path)? } else { vol.vol.lstat(path)? };
        let st = stat_of(&meta, vol.vol.geometry().cluster_size);
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { put(out, st) };
        Ok(0)
    })
}

/// `stat`: the metadata of what `path` leads to, symbolic links followed. Paths are absolute
/// from the volume's root (a relative path starts there too).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for writing an
/// `ocfs2rs_attr`.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_stat(vol: *mut ocfs2rs_volume, path: *const c_char, out: *mut ocfs2rs_attr) -> c_int {
    // SAFETY: the caller's promise for `path` and `out`.
    unsafe { stat_into("ocfs2rs_stat", vol, path, out, true) }
}

/// `lstat`: as `ocfs2rs_stat`, but a last symbolic link is not followed.
///
/// # Safety
/// As for `ocfs2rs_stat`.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_lstat(vol: *mut ocfs2rs_volume, path: *const c_char, out: *mut ocfs2rs_attr) -> c_int {
    // SAFETY: the caller's promise for `path` and `out`.
    unsafe { stat_into("ocfs2rs_lstat", vol, path, out, false) }
}

/// `mkdir` with permission bits `mode` (no umask is applied).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_mkdir(vol: *mut ocfs2rs_volume, path: *const c_char, mode: u32) -> c_int {
    // SAFETY: the caller's promise for `path`.
    unsafe { with_path("ocfs2rs_mkdir", vol, path, |v, p| v.create_dir(p, (mode & 0o7777) as u16)) }
}

/// `rmdir`: removes an empty directory.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_rmdir(vol: *mut ocfs2rs_volume, path: *const c_char) -> c_int {
    // SAFETY: the caller's promise for `path`.
    unsafe { with_path("ocfs2rs_rmdir", vol, path, |v, p| v.remove_dir(p)) }
}

/// `unlink`: removes a name that is not a directory. An open file stays usable through its
/// handle until closed.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_unlink(vol: *mut ocfs2rs_volume, path: *const c_char) -> c_int {
    // SAFETY: the caller's promise for `path`.
    unsafe { with_path("ocfs2rs_unlink", vol, path, |v, p| v.remove_file(p)) }
}

/// `rename`: moves `from` to `to`, replacing what `to` names as POSIX allows.
///
/// # Safety
/// `from` and `to` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_rename(vol: *mut ocfs2rs_volume, from: *const c_char, to: *const c_char) -> c_int {
    // SAFETY: the caller's promise for both strings.
    unsafe { with_paths("ocfs2rs_rename", vol, from, to, |v, a, b| v.rename_path(a, b)) }
}

/// `link`: a new name `newpath` for what `existing` names (a last symbolic link of `existing`
/// is not followed).
///
/// # Safety
/// `existing` and `newpath` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_link(
    vol: *mut ocfs2rs_volume,
    existing: *const c_char,
    newpath: *const c_char,
) -> c_int {
    // SAFETY: the caller's promise for both strings.
    unsafe { with_paths("ocfs2rs_link", vol, existing, newpath, |v, a, b| v.hard_link(a, b)) }
}

/// `symlink`: a symbolic link at `linkpath` whose target is `target`, stored as given.
///
/// # Safety
/// `target` and `linkpath` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_symlink(
    vol: *mut ocfs2rs_volume,
    target: *const c_char,
    linkpath: *const c_char,
) -> c_int {
    call("ocfs2rs_symlink", || {
        // SAFETY: the caller's promise for both strings.
        let (target, link) = unsafe { (c_bytes(target, "target")?, c_path(linkpath, "linkpath")?) };
        if target.is_empty() {
            return Err(Failure::new(libc::ENOENT, "the target is empty"));
        }
        volume(vol)?.vol.symlink_path(target, link)?;
        Ok(0)
    })
}

/// `readlink`: copies the target of the symbolic link at `path` into `buf` (at most `size`
/// bytes) and NUL-terminates it when there is room. Returns the target's full length, which
/// is `>= size` when the copy was cut short.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `buf` is NULL (only with `size` 0) or valid for
/// writing `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_readlink(
    vol: *mut ocfs2rs_volume,
    path: *const c_char,
    buf: *mut c_char,
    size: usize,
) -> i64 {
    call("ocfs2rs_readlink", || {
        if buf.is_null() && size > 0 {
            return Err(Failure::invalid("buf is NULL"));
        }
        // SAFETY: the caller's promise for `path`.
        let path = unsafe { c_path(path, "path") }?;
        let target = volume(vol)?.vol.read_link_path(path)?;
        if size > 0 {
            // SAFETY: non-null, and the caller promises `size` writable bytes.
            let dst = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), size) };
            let n = target.len().min(size);
            dst[..n].copy_from_slice(&target[..n]);
            if n < size {
                dst[n] = 0;
            }
        }
        Ok(target.len() as i64)
    })
}

/// `chmod`: sets the permission bits (follows symbolic links).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_chmod(vol: *mut ocfs2rs_volume, path: *const c_char, mode: u32) -> c_int {
    // SAFETY: the caller's promise for `path`.
    unsafe { with_path("ocfs2rs_chmod", vol, path, |v, p| v.set_permissions(p, (mode & 0o7777) as u16)) }
}

/// `chown` (follows symbolic links); OCFS2RS_ID_UNCHANGED, which is `(uid_t)-1`, leaves the
/// owner or the group as it is.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_chown(vol: *mut ocfs2rs_volume, path: *const c_char, uid: u32, gid: u32) -> c_int {
    let id = |n: u32| (n != OCFS2RS_ID_UNCHANGED).then_some(n);
    // SAFETY: the caller's promise for `path`.
    unsafe { with_path("ocfs2rs_chown", vol, path, |v, p| v.set_owner(p, id(uid), id(gid))) }
}

fn now() -> Timestamp {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp { secs: since.as_secs() as i64, nsecs: since.subsec_nanos() }
}

fn time_arg(t: ocfs2rs_timespec) -> Res<Option<Timestamp>> {
    match t.nsec {
        OCFS2RS_UTIME_NOW => Ok(Some(now())),
        OCFS2RS_UTIME_OMIT => Ok(None),
        0..=999_999_999 => Ok(Some(Timestamp { secs: t.sec, nsecs: t.nsec as u32 })),
        other => Err(Failure::invalid(format!("nanoseconds {other} outside 0..1e9"))),
    }
}

/// `utimensat`: sets the access time `times[0]` and the modification time `times[1]`
/// (follows symbolic links). A `nsec` of OCFS2RS_UTIME_NOW means now, OCFS2RS_UTIME_OMIT
/// leaves that time; `times` NULL sets both to now.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `times` is NULL or points to two
/// `ocfs2rs_timespec`.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_utimens(
    vol: *mut ocfs2rs_volume,
    path: *const c_char,
    times: *const ocfs2rs_timespec,
) -> c_int {
    call("ocfs2rs_utimens", || {
        let (atime, mtime) = if times.is_null() {
            (Some(now()), Some(now()))
        } else {
            // SAFETY: non-null, and the caller promises two readable elements.
            let pair = unsafe { std::slice::from_raw_parts(times, 2) };
            (time_arg(pair[0])?, time_arg(pair[1])?)
        };
        // SAFETY: the caller's promise for `path`.
        let path = unsafe { c_path(path, "path") }?;
        volume(vol)?.vol.set_times(path, atime, mtime)?;
        Ok(0)
    })
}

/// `truncate`: sets the size of the regular file at `path`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_truncate(vol: *mut ocfs2rs_volume, path: *const c_char, length: i64) -> c_int {
    call("ocfs2rs_truncate", || {
        let length = offset_arg(length, "length")?;
        // SAFETY: the caller's promise for `path`.
        let path = unsafe { c_path(path, "path") }?;
        volume(vol)?.vol.set_len(path, length)?;
        Ok(0)
    })
}

/// `mknod`: a fifo, socket, character or block device (or an empty regular file) at `path`;
/// `mode` holds the type (S_IFIFO, ...) and permission bits, `dev` the device number in the
/// Linux encoding (`makedev`).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_mknod(vol: *mut ocfs2rs_volume, path: *const c_char, mode: u32, dev: u64) -> c_int {
    call("ocfs2rs_mknod", || {
        let mode = mode_arg(mode)?;
        // SAFETY: the caller's promise for `path`.
        let path = unsafe { c_path(path, "path") }?;
        volume(vol)?.vol.mknod_path(path, mode, dev)?;
        Ok(0)
    })
}
