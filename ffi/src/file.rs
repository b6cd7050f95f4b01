//! Regular files: open, read, write, seek, truncate, fallocate, sync, fstat, close.
//!
//! The position that `ocfs2rs_read`, `ocfs2rs_write` and `ocfs2rs_lseek` use lives in the
//! `ocfs2::File` behind the handle and is shared by every thread using that handle, as a file
//! description's offset is.

use crate::call::{c_path, call, need_out, offset_arg, put, Failure, Res};
use crate::handles::{self, id_of, ocfs2rs_file, ocfs2rs_volume, FileObj, VolumeObj};
use crate::types::*;
use ocfs2::OpenOptions;
use std::ffi::{c_char, c_int, c_void};
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// Linux moves at most this many bytes in one read or write (`MAX_RW_COUNT`).
const MAX_RW_COUNT: usize = 0x7fff_f000;

fn file(f: *const ocfs2rs_file) -> Res<Arc<FileObj>> {
    handles::get::<FileObj>(f)
}

const KNOWN_FLAGS: c_int = OCFS2RS_O_ACCMODE | OCFS2RS_O_CREAT | OCFS2RS_O_EXCL | OCFS2RS_O_TRUNC | OCFS2RS_O_APPEND;

fn open_options(flags: c_int, mode: u32) -> Res<OpenOptions> {
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Failure::invalid(format!("open flags {:#o} are not supported", flags & !KNOWN_FLAGS)));
    }
    let (read, write) = match flags & OCFS2RS_O_ACCMODE {
        OCFS2RS_O_RDONLY => (true, false),
        OCFS2RS_O_WRONLY => (false, true),
        OCFS2RS_O_RDWR => (true, true),
        _ => return Err(Failure::invalid("the access mode is not O_RDONLY, O_WRONLY or O_RDWR")),
    };
    let has = |f: c_int| flags & f != 0;
    let mut o = OpenOptions::new();
    o.read(read)
        .write(write)
        // O_APPEND on a read-only open only marks the description, as on Linux.
        .append(write && has(OCFS2RS_O_APPEND))
        .truncate(has(OCFS2RS_O_TRUNC))
        .create(has(OCFS2RS_O_CREAT) && !has(OCFS2RS_O_EXCL))
        .create_new(has(OCFS2RS_O_CREAT) && has(OCFS2RS_O_EXCL))
        .mode((mode & 0o7777) as u16);
    Ok(o)
}

/// Opens the regular file at `path` (a last symbolic link is followed). `flags` is one of
/// OCFS2RS_O_RDONLY, OCFS2RS_O_WRONLY, OCFS2RS_O_RDWR, or'ed with any of OCFS2RS_O_CREAT,
/// OCFS2RS_O_EXCL, OCFS2RS_O_TRUNC, OCFS2RS_O_APPEND (other bits: -EINVAL); `mode` gives the
/// permission bits of a file this call creates (no umask is applied). On success stores a new
/// handle in `*out` (close it with `ocfs2rs_close`) and returns 0. A directory gives -EISDIR.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_open(
    vol: *mut ocfs2rs_volume,
    path: *const c_char,
    flags: c_int,
    mode: u32,
    out: *mut *mut ocfs2rs_file,
) -> c_int {
    call("ocfs2rs_open", || {
        need_out(out, "out")?;
        let options = open_options(flags, mode)?;
        // SAFETY: the caller's promise for `path`.
        let path = unsafe { c_path(path, "path") }?;
        let v = handles::get::<VolumeObj>(vol)?;
        let file = v.vol.open_file(path, &options)?;
        let obj = FileObj { vol_id: id_of::<VolumeObj>(vol), file, blksize: v.vol.geometry().cluster_size };
        let handle = handles::add_child(obj.vol_id, obj)?;
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { put(out, handle) };
        Ok(0)
    })
}

/// Closes a file handle. Returns 0, an error from freeing an unlinked file's inode (the
/// handle is closed all the same), or -EINVAL for a handle that is not an open file (so a
/// second close is -EINVAL). A call still running on the handle in another thread finishes
/// first; the file is released when it does.
#[no_mangle]
pub extern "C" fn ocfs2rs_close(f: *mut ocfs2rs_file) -> c_int {
    call("ocfs2rs_close", || {
        let obj = handles::take::<FileObj>(f)?;
        if let Ok(obj) = Arc::try_unwrap(obj) {
            obj.file.close()?;
        }
        Ok(0)
    })
}

/// A caller's buffer as a byte count, capped as Linux caps it.
fn count_arg(buf: *const c_void, count: usize) -> Res<usize> {
    if count > 0 && buf.is_null() {
        return Err(Failure::invalid("buf is NULL"));
    }
    Ok(count.min(MAX_RW_COUNT))
}

/// # Safety
/// `buf` is valid for writing `count` bytes when `count > 0`.
unsafe fn out_slice<'a>(buf: *mut c_void, count: usize) -> &'a mut [u8] {
    if count == 0 {
        return &mut [];
    }
    // SAFETY: the caller's promise; count_arg capped `count` below isize::MAX.
    unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), count) }
}

/// # Safety
/// `buf` is valid for reading `count` bytes when `count > 0`.
unsafe fn in_slice<'a>(buf: *const c_void, count: usize) -> &'a [u8] {
    if count == 0 {
        return &[];
    }
    // SAFETY: the caller's promise; count_arg capped `count` below isize::MAX.
    unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), count) }
}

/// `pread`: reads up to `count` bytes at `offset` without moving the position. Returns the
/// bytes read, 0 at or past the end of the file; -EBADF when not open for reading.
///
/// # Safety
/// `buf` is valid for writing `count` bytes (it may be NULL when `count` is 0).
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_pread(f: *mut ocfs2rs_file, buf: *mut c_void, count: usize, offset: i64) -> i64 {
    call("ocfs2rs_pread", || {
        let count = count_arg(buf, count)?;
        let offset = offset_arg(offset, "offset")?;
        let obj = file(f)?;
        // SAFETY: the caller's promise for `buf`.
        let dst = unsafe { out_slice(buf, count) };
        Ok(obj.file.read_at(dst, offset)? as i64)
    })
}

/// `pwrite`: writes `count` bytes at `offset` without moving the position (with O_APPEND
/// the bytes go to the end of the file, as on Linux). Returns the bytes written; -EBADF when
/// not open for writing.
///
/// # Safety
/// `buf` is valid for reading `count` bytes (it may be NULL when `count` is 0).
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_pwrite(f: *mut ocfs2rs_file, buf: *const c_void, count: usize, offset: i64) -> i64 {
    call("ocfs2rs_pwrite", || {
        let count = count_arg(buf, count)?;
        let offset = offset_arg(offset, "offset")?;
        let obj = file(f)?;
        // SAFETY: the caller's promise for `buf`.
        let src = unsafe { in_slice(buf, count) };
        Ok(obj.file.write_at(src, offset)? as i64)
    })
}

/// `read`: reads up to `count` bytes at the position and advances it.
///
/// # Safety
/// As for `ocfs2rs_pread`.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_read(f: *mut ocfs2rs_file, buf: *mut c_void, count: usize) -> i64 {
    call("ocfs2rs_read", || {
        let count = count_arg(buf, count)?;
        let obj = file(f)?;
        // SAFETY: the caller's promise for `buf`.
        let dst = unsafe { out_slice(buf, count) };
        Ok((&obj.file).read(dst)? as i64)
    })
}

/// `write`: writes `count` bytes at the position (at the end with O_APPEND) and advances it.
///
/// # Safety
/// As for `ocfs2rs_pwrite`.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_write(f: *mut ocfs2rs_file, buf: *const c_void, count: usize) -> i64 {
    call("ocfs2rs_write", || {
        let count = count_arg(buf, count)?;
        let obj = file(f)?;
        // SAFETY: the caller's promise for `buf`.
        let src = unsafe { in_slice(buf, count) };
        Ok((&obj.file).write(src)? as i64)
    })
}

/// `lseek` with OCFS2RS_SEEK_SET, OCFS2RS_SEEK_CUR or OCFS2RS_SEEK_END; returns the new
/// position. Seeking past the end is allowed; to a negative position is -EINVAL.
#[no_mangle]
pub extern "C" fn ocfs2rs_lseek(f: *mut ocfs2rs_file, offset: i64, whence: c_int) -> i64 {
    call("ocfs2rs_lseek", || {
        let obj = file(f)?;
        let to = match whence {
            OCFS2RS_SEEK_SET => SeekFrom::Start(offset_arg(offset, "offset")?),
            OCFS2RS_SEEK_CUR => SeekFrom::Current(offset),
            OCFS2RS_SEEK_END => SeekFrom::End(offset),
            other => return Err(Failure::invalid(format!("whence {other} is not SEEK_SET, SEEK_CUR or SEEK_END"))),
        };
        Ok((&obj.file).seek(to)? as i64)
    })
}

/// `ftruncate`: sets the file's size; -EINVAL when not open for writing.
#[no_mangle]
pub extern "C" fn ocfs2rs_ftruncate(f: *mut ocfs2rs_file, length: i64) -> c_int {
    call("ocfs2rs_ftruncate", || {
        let length = offset_arg(length, "length")?;
        file(f)?.file.set_len(length)?;
        Ok(0)
    })
}

/// `fallocate`. `mode` 0 allocates `[offset, offset + len)` (reads as zeros) and grows the
/// size to its end; with OCFS2RS_FALLOC_FL_KEEP_SIZE the size stays.
/// OCFS2RS_FALLOC_FL_PUNCH_HOLE (which must come with KEEP_SIZE) frees the range;
/// OCFS2RS_FALLOC_FL_ZERO_RANGE zeroes it. The checks and their errnos are Linux's:
/// `offset < 0` or `len <= 0` -EINVAL, unknown bits or PUNCH_HOLE with ZERO_RANGE or without
/// KEEP_SIZE -EOPNOTSUPP, not open for writing -EBADF, `offset + len` past the largest file
/// -EFBIG.
#[no_mangle]
pub extern "C" fn ocfs2rs_fallocate(f: *mut ocfs2rs_file, mode: c_int, offset: i64, len: i64) -> c_int {
    call("ocfs2rs_fallocate", || {
        if offset < 0 || len <= 0 {
            return Err(Failure::invalid(format!("offset {offset} or length {len} out of range")));
        }
        let known = OCFS2RS_FALLOC_FL_KEEP_SIZE | OCFS2RS_FALLOC_FL_PUNCH_HOLE | OCFS2RS_FALLOC_FL_ZERO_RANGE;
        let punch = mode & OCFS2RS_FALLOC_FL_PUNCH_HOLE != 0;
        let zero = mode & OCFS2RS_FALLOC_FL_ZERO_RANGE != 0;
        let keep = mode & OCFS2RS_FALLOC_FL_KEEP_SIZE != 0;
        if mode & !known != 0 || (punch && zero) || (punch && !keep) {
            return Err(Failure::new(libc::EOPNOTSUPP, format!("fallocate mode {mode:#x} is not supported")));
        }
        if offset.checked_add(len).is_none() {
            return Err(Failure::new(libc::EFBIG, format!("offset {offset} + length {len} overflows")));
        }
        let obj = file(f)?;
        let (offset, len) = (offset as u64, len as u64);
        if punch {
            obj.file.punch_hole(offset, len)?;
        } else if zero {
            obj.file.zero_range(offset, len, keep)?;
        } else {
            obj.file.allocate(offset, len, keep)?;
        }
        Ok(0)
    })
}

/// `fsync`: the file's data and metadata are durable when this returns 0.
#[no_mangle]
pub extern "C" fn ocfs2rs_fsync(f: *mut ocfs2rs_file) -> c_int {
    call("ocfs2rs_fsync", || {
        file(f)?.file.sync_all()?;
        Ok(0)
    })
}

/// `fdatasync`: the file's data (and the metadata needed to read it) are durable.
#[no_mangle]
pub extern "C" fn ocfs2rs_fdatasync(f: *mut ocfs2rs_file) -> c_int {
    call("ocfs2rs_fdatasync", || {
        file(f)?.file.sync_data()?;
        Ok(0)
    })
}

/// `fstat` of an open file (also after its last name was removed).
///
/// # Safety
/// `out` is NULL or valid for writing an `ocfs2rs_attr`.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_fstat(f: *mut ocfs2rs_file, out: *mut ocfs2rs_attr) -> c_int {
    call("ocfs2rs_fstat", || {
        need_out(out, "out")?;
        let obj = file(f)?;
        let st = stat_of(&obj.file.metadata()?, obj.blksize);
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { put(out, st) };
        Ok(0)
    })
}
