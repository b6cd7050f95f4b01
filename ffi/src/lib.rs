//! The C interface of ocfs2-rs: `libocfs2rs.so` (soname `libocfs2rs.so.0`), `libocfs2rs.a`
//! and the header `include/ocfs2rs.h`, which cbindgen generates from this crate.
//!
//! # Conventions
//!
//! - **Results.** Every function returns 0 (or a non-negative count: bytes, a position, 1 for
//!   "an entry") on success and a negative errno on failure (`-ENOENT`, `-EROFS`, ...).
//! - **Messages.** After a failure, `ocfs2rs_last_error()` returns the calling thread's message
//!   ("ocfs2rs_open: /a/b: no such file or directory"). The pointer stays valid until the
//!   next failure on this thread; successful calls leave the message as it was, as they leave
//!   `errno`.
//! - **Handles.** `ocfs2rs_volume *`, `ocfs2rs_file *` and `ocfs2rs_dir *` are opaque: their
//!   values are numbers the library looks up, never memory it reads. A NULL, closed, or
//!   foreign handle, or a handle of the wrong kind, gives `-EINVAL`; closing twice gives
//!   `-EINVAL` the second time. Closing a volume closes the files and directories still open
//!   on it. Handles may be used from several threads at once.
//! - **Strings.** Paths and names are NUL-terminated byte strings, no encoding assumed, valid
//!   for the duration of the call; the library keeps no pointer to them. Paths are absolute
//!   from the volume's root (a relative path starts there too); a component longer than 255
//!   bytes gives `-ENAMETOOLONG`, and so does a path of 4096 bytes or more.
//! - **Out pointers** (`ocfs2rs_volume **out`, `ocfs2rs_attr *out`, ...) must be valid for one
//!   write of their type; NULL gives `-EINVAL` before anything changes.
//! - **Buffers** (`buf`, `count`) must be valid for `count` bytes; NULL is allowed only with a
//!   count of 0. The library never frees what the caller allocated, and the caller frees
//!   nothing the library returns: handles are released by their close function only.
//! - **Panics.** A bug that panics inside the library returns `-EIO` with a message naming the
//!   panic; no unwinding ever reaches C.
//! - **Flags** have Linux's values: `O_CREAT`, `FALLOC_FL_PUNCH_HOLE`, `SEEK_END`, `DT_DIR`
//!   and `UTIME_NOW` from the system headers work as well as the `OCFS2RS_` names.
//!
//! "Safety" sections below use these terms; an export is only unsafe in that it trusts its
//! pointer arguments as the conventions say.
//!
//! # Installing
//!
//! `ffi/install.sh PREFIX` builds the release library and installs `lib/libocfs2rs.so.0.1.0`
//! (with the `.so.0` and `.so` links), `lib/libocfs2rs.a`, `include/ocfs2rs.h` and
//! `lib/pkgconfig/ocfs2rs.pc` (from `ffi/ocfs2rs.pc.in`, with the prefix filled in). Then
//! `cc prog.c $(pkg-config --cflags --libs ocfs2rs)`, or `pkg-config --static --libs` for the
//! static library.
//!
//! # The header
//!
//! `include/ocfs2rs.h` is checked in. `cargo test -p ocfs2rs-ffi --test header` fails when it
//! differs from what cbindgen makes of this crate; `OCFS2RS_BLESS=1` on that command rewrites
//! it.
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod call;
mod handles;
mod types;

// The exports, one module per group, in the order the header lists them (blank lines keep
// rustfmt from sorting them).
mod volume;

mod file;

mod dir;

mod logger;

pub use dir::*;
pub use file::*;
pub use handles::{ocfs2rs_dir, ocfs2rs_file, ocfs2rs_volume};
pub use logger::*;
pub use types::*;
pub use volume::*;

use std::ffi::c_char;

/// The message of the calling thread's last failure ("" before the first). The string belongs
/// to the library; it stays valid until the next failure on this thread (successful calls
/// leave it), or until the thread exits. Never NULL.
#[no_mangle]
pub extern "C" fn ocfs2rs_last_error() -> *const c_char {
    call::last_error_ptr()
}

/// The library's version, e.g. "0.1.0" (a static string).
#[no_mangle]
pub extern "C" fn ocfs2rs_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
