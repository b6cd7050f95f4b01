//! The library's `log` records, forwarded to a C callback.
//!
//! Invariants: the callback is called with the sink's read lock held, so once
//! `ocfs2rs_set_log_callback` has returned the previous callback is never called again and its
//! user data may be freed; a record logged while this thread is inside the callback is dropped
//! (no recursion into C); a callback that tries to replace itself gets `EDEADLK` instead of a
//! deadlock.

use crate::call::{call, Failure, Res};
use crate::types::*;
use log::{LevelFilter, Log, Metadata, Record};
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, PoisonError, RwLock};

/// Receives one log record: `level` is one of OCFS2RS_LOG_ERROR..OCFS2RS_LOG_TRACE, `target`
/// the Rust module that logged (e.g. "ocfs2::fs::mount"), `message` the text; both strings are
/// NUL-terminated and valid only during the call. May be called from any thread, including
/// the library's own background threads.
pub type ocfs2rs_log_callback =
    Option<unsafe extern "C" fn(level: c_int, target: *const c_char, message: *const c_char, user_data: *mut c_void)>;

#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(c_int, *const c_char, *const c_char, *mut c_void),
    /// The caller's pointer, kept as a number: the library never dereferences it.
    user_data: usize,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
/// The level a callback gets, as a `LevelFilter` index (Info until the caller says).
static LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);
/// Whether `log::set_logger` took our logger (it fails when the program installed another).
static INSTALLED: OnceLock<bool> = OnceLock::new();

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

struct CLogger;
static LOGGER: CLogger = CLogger;

fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).unwrap_or_default()
}

fn level_number(level: log::Level) -> c_int {
    match level {
        log::Level::Error => OCFS2RS_LOG_ERROR,
        log::Level::Warn => OCFS2RS_LOG_WARN,
        log::Level::Info => OCFS2RS_LOG_INFO,
        log::Level::Debug => OCFS2RS_LOG_DEBUG,
        log::Level::Trace => OCFS2RS_LOG_TRACE,
    }
}

fn level_filter(level: c_int) -> Res<LevelFilter> {
    Ok(match level {
        OCFS2RS_LOG_OFF => LevelFilter::Off,
        OCFS2RS_LOG_ERROR => LevelFilter::Error,
        OCFS2RS_LOG_WARN => LevelFilter::Warn,
        OCFS2RS_LOG_INFO => LevelFilter::Info,
        OCFS2RS_LOG_DEBUG => LevelFilter::Debug,
        OCFS2RS_LOG_TRACE => LevelFilter::Trace,
        other => return Err(Failure::invalid(format!("log level {other} is not 0..=5"))),
    })
}

fn filter_from_index(i: usize) -> LevelFilter {
    LevelFilter::iter().nth(i).unwrap_or(LevelFilter::Info)
}

impl Log for CLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level() && SINK.read().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    fn log(&self, record: &Record) {
        // A thread whose thread-locals are being torn down counts as inside: its record is
        // dropped rather than risking a panic.
        if !self.enabled(record.metadata()) || IN_CALLBACK.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        let sink = SINK.read().unwrap_or_else(PoisonError::into_inner);
        let Some(s) = *sink else { return };
        let target = c_string(record.target());
        let message = c_string(&record.args().to_string());
        let _ = IN_CALLBACK.try_with(|c| c.set(true));
        // SAFETY: the callback and its user data are what the caller of
        // ocfs2rs_set_log_callback promised to keep callable until it is replaced, and the read
        // lock held here keeps it from being replaced during the call; both strings live until
        // after the call.
        unsafe {
            (s.callback)(level_number(record.level()), target.as_ptr(), message.as_ptr(), s.user_data as *mut c_void)
        };
        let _ = IN_CALLBACK.try_with(|c| c.set(false));
    }

    fn flush(&self) {}
}

/// Installs our logger once; `EBUSY` when the program installed its own `log` logger.
fn install() -> Res<()> {
    let ours = *INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok());
    if ours {
        Ok(())
    } else {
        Err(Failure::new(libc::EBUSY, "the program installed another `log` logger; records go there"))
    }
}

/// Sends the library's log records to `callback` (NULL stops logging), passing `user_data`
/// back unchanged. Records at the level set by `ocfs2rs_set_log_level` (OCFS2RS_LOG_INFO
/// unless changed) and more severe are delivered. Returns 0, -EBUSY when the program already
/// installed a Rust `log` logger of its own, or -EDEADLK when called from inside the callback.
///
/// # Safety
/// `callback` must be safe to call from any thread with `user_data` until this function is
/// called again; after that call returns the old callback is never called again.
#[no_mangle]
pub unsafe extern "C" fn ocfs2rs_set_log_callback(callback: ocfs2rs_log_callback, user_data: *mut c_void) -> c_int {
    call("ocfs2rs_set_log_callback", || {
        if IN_CALLBACK.try_with(Cell::get).unwrap_or(false) {
            return Err(Failure::new(libc::EDEADLK, "called from inside the log callback"));
        }
        install()?;
        let mut sink = SINK.write().unwrap_or_else(PoisonError::into_inner);
        *sink = callback.map(|callback| Sink { callback, user_data: user_data as usize });
        log::set_max_level(if sink.is_some() {
            filter_from_index(LEVEL.load(Ordering::Relaxed))
        } else {
            LevelFilter::Off
        });
        Ok(0)
    })
}

/// Sets the most verbose level delivered to the log callback: OCFS2RS_LOG_OFF (0) to
/// OCFS2RS_LOG_TRACE (5). Returns 0 or -EINVAL for another number.
#[no_mangle]
pub extern "C" fn ocfs2rs_set_log_level(level: c_int) -> c_int {
    call("ocfs2rs_set_log_level", || {
        let filter = level_filter(level)?;
        LEVEL.store(filter as usize, Ordering::Relaxed);
        let sink = SINK.read().unwrap_or_else(PoisonError::into_inner);
        if sink.is_some() && INSTALLED.get() == Some(&true) {
            log::set_max_level(filter);
        }
        Ok(0)
    })
}
