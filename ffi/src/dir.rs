//! Directory listing: opendir, readdir (one entry per call), closedir.

use crate::call::{c_path, call, need_out, put};
use crate::handles::{self, id_of, ocfs2rs_dir, ocfs2rs_volume, DirObj, VolumeObj};
use crate::types::*;
use std::ffi::{c_char, c_int};
use std::sync::{Mutex, PoisonError};

/// Opens the directory at `path` for listing (symbolic links followed). Its entries are those
/// it had when opened, `.` and `..` included. On success stores a new handle in `*out` (close
/// it with `ocfs2rs_closedir`) and returns 0; -ENOTDIR when `path` is not a directory.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_opendir(
    vol: *mut ocfs2rs_volume,
    path: *const c_char,
    out: *mut *mut ocfs2rs_dir,
) -> c_int {
    call("ocfs2rs_opendir", || {
        need_out(out, "out")?;
        // SAFETY: the caller's promise for `path`.
        let path = unsafe { c_path(path, "path") }?;
        let dir = handles::get::<VolumeObj>(vol)?.vol.open_dir(path)?;
        let vol_id = id_of::<VolumeObj>(vol);
        let handle = handles::add_child(vol_id, DirObj { vol_id, dir: Mutex::new(dir) })?;
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { put(out, handle) };
        Ok(0)
    })
}

/// Fills `*entry` with the next entry and returns 1, or returns 0 at the end (and on every
/// call after it).
///
/// # Safety
/// `entry` is NULL or valid for writing an `ocfs2rs_dirent`.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_readdir(dir: *mut ocfs2rs_dir, entry: *mut ocfs2rs_dirent) -> c_int {
    call("ocfs2rs_readdir", || {
        need_out(entry, "entry")?;
        let obj = handles::get::<DirObj>(dir)?;
        let next = obj.dir.lock().unwrap_or_else(PoisonError::into_inner).next();
        let Some(found) = next else { return Ok(0) };
        let found = found?;
        let mut out = ocfs2rs_dirent { ino: found.ino, file_type: dt_of(found.file_type), name_len: 0, name: [0; 256] };
        // Names on disk are at most 255 bytes; a longer one would be corruption, cut here.
        let len = found.name.len().min(OCFS2RS_NAME_MAX as usize);
        for (dst, &src) in out.name.iter_mut().zip(&found.name[..len]) {
            *dst = src as c_char;
        }
        out.name_len = len as u32;
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { put(entry, out) };
        Ok(1)
    })
}

/// Closes a directory handle. Returns 0, or -EINVAL for a handle that is not an open
/// directory (so a second close is -EINVAL).
#[no_mangle]
pub extern "C" fn ocfs2rs_closedir(dir: *mut ocfs2rs_dir) -> c_int {
    call("ocfs2rs_closedir", || {
        handles::take::<DirObj>(dir)?;
        Ok(0)
    })
}
