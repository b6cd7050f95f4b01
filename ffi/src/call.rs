//! The boundary every export crosses: results become `0`/counts or negative errnos, failures
//! leave a message for `ocfs2rs_last_error`, and panics stop here.
//!
//! Invariants: no export lets a panic unwind into C (each body runs inside [`call`]), and an
//! export that returns a negative value has set the calling thread's last error first.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Longest path the kernel accepts (`PATH_MAX`, the terminating NUL included).
const PATH_MAX: usize = 4096;
/// Longest name of one path component (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Why an export failed: the errno it returns (positive here) and the message it leaves.
#[derive(Debug)]
pub(crate) struct Failure {
    pub errno: i32,
    pub message: String,
}

impl Failure {
    pub fn new(errno: i32, message: impl Into<String>) -> Failure {
        Failure { errno, message: message.into() }
    }

    /// `EINVAL`: a NULL or stale handle, or an argument out of range.
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(libc::EINVAL, message)
    }
}

impl From<ocfs2::Error> for Failure {
    fn from(e: ocfs2::Error) -> Failure {
        Failure::new(e.errno(), e.to_string())
    }
}

/// `std::io` errors from `File`'s `Read`/`Write`/`Seek` carry the library's error inside;
/// its errno is the precise one.
impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        if let Some(inner) = e.get_ref().and_then(|r| r.downcast_ref::<ocfs2::Error>()) {
            return Failure::from(inner.clone());
        }
        Failure::new(e.raw_os_error().unwrap_or(libc::EIO), e.to_string())
    }
}

pub(crate) type Res<T> = Result<T, Failure>;

/// The C return types: each can say "failed with errno E" as `-E`.
pub(crate) trait Status: Copy {
    fn from_errno(errno: i32) -> Self;
}

impl Status for c_int {
    fn from_errno(errno: i32) -> c_int {
        -errno
    }
}

impl Status for i64 {
    fn from_errno(errno: i32) -> i64 {
        -(errno as i64)
    }
}

thread_local! {
    /// The message of this thread's last failure; an empty string before the first one.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: String) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // During thread exit the slot may be gone already; the message is then lost, not a panic.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = text);
}

/// The calling thread's last message, as a pointer into thread-local storage.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.try_with(|slot| slot.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}

/// What a panic carried, for the message.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Runs the body of export `func`: a value passes through, a failure becomes `-errno` plus a
/// message "func: why", and a panic becomes `-EIO` plus a message that names it.
pub(crate) fn call<T: Status>(func: &'static str, body: impl FnOnce() -> Res<T>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(failure)) => {
            let errno = if failure.errno > 0 { failure.errno } else { libc::EIO };
            set_last_error(format!("{func}: {}", failure.message));
            T::from_errno(errno)
        }
        Err(payload) => {
            set_last_error(format!("{func}: panic inside the library: {}", panic_text(&*payload)));
            T::from_errno(libc::EIO)
        }
    }
}

/// The bytes of a NUL-terminated string argument, unchecked for length.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and unchanged for the
/// lifetime `'a` (the export's call).
pub(crate) unsafe fn c_bytes<'a>(p: *const c_char, what: &str) -> Res<&'a [u8]> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-null, and the caller promises a NUL-terminated string valid for 'a.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.len() >= PATH_MAX {
        return Err(Failure::new(
            libc::ENAMETOOLONG,
            format!("{what} of {} bytes is longer than PATH_MAX", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// A path argument: NUL-terminated, shorter than `PATH_MAX`, each component at most
/// `NAME_MAX` bytes (`ENAMETOOLONG` otherwise, as the kernel says before any lookup).
///
/// # Safety
/// As for [`c_bytes`].
pub(crate) unsafe fn c_path<'a>(p: *const c_char, what: &str) -> Res<&'a [u8]> {
    // SAFETY: the caller's promise is passed on unchanged.
    let path = unsafe { c_bytes(p, what) }?;
    if let Some(long) = path.split(|&c| c == b'/').find(|name| name.len() > NAME_MAX) {
        return Err(Failure::new(
            libc::ENAMETOOLONG,
            format!("{what}: a name of {} bytes is longer than {NAME_MAX} bytes", long.len()),
        ));
    }
    Ok(path)
}

/// Fails with `EINVAL` for a NULL out pointer, before the export changes anything.
pub(crate) fn need_out<T>(out: *mut T, what: &str) -> Res<()> {
    if out.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    Ok(())
}

/// Stores `value` through an out pointer that [`need_out`] accepted.
///
/// # Safety
/// `out` is non-null, aligned and valid for a write of `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    // SAFETY: the caller's promise.
    unsafe { out.write(value) }
}

/// A non-negative `off_t`-style argument as u64.
pub(crate) fn offset_arg(value: i64, what: &str) -> Res<u64> {
    u64::try_from(value).map_err(|_| Failure::invalid(format!("{what} {value} is negative")))
}

/// A mode argument as the library's u16 (type and permission bits).
pub(crate) fn mode_arg(mode: u32) -> Res<u16> {
    u16::try_from(mode).map_err(|_| Failure::invalid(format!("mode {mode:#o} has bits beyond S_IFMT and 07777")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: the pointer is valid until this thread's next failing call, and none happens
        // before the copy.
        unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panicking_body_returns_eio_and_names_the_panic() {
        let r: c_int = call("ocfs2rs_test", || -> Res<c_int> { panic!("boom at the boundary") });
        assert_eq!(r, -libc::EIO);
        let text = last_error();
        assert!(text.contains("ocfs2rs_test") && text.contains("boom at the boundary"), "{text}");
    }

    #[test]
    fn a_failure_becomes_negative_errno_with_its_message() {
        let r: i64 = call("ocfs2rs_test", || -> Res<i64> { Err(Failure::new(libc::ENOSPC, "full")) });
        assert_eq!(r, -(libc::ENOSPC as i64));
        assert_eq!(last_error(), "ocfs2rs_test: full");
    }

    #[test]
    fn success_leaves_the_last_error_as_it_was() {
        let _: c_int = call("ocfs2rs_test", || -> Res<c_int> { Err(Failure::invalid("first")) });
        assert_eq!(call("ocfs2rs_test", || -> Res<c_int> { Ok(7) }), 7);
        assert_eq!(last_error(), "ocfs2rs_test: first");
    }

    #[test]
    fn io_errors_keep_the_library_errno() {
        let io: std::io::Error = ocfs2::Error::NameTooLong(300).into();
        assert_eq!(Failure::from(io).errno, libc::ENAMETOOLONG);
    }
}
