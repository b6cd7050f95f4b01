//! The C ABI called from Rust: errnos, handle checks, messages and the log callback, on images
//! made by our mkfs.

use ocfs2::device::{FileDevice, FileDeviceOptions};
use ocfs2::mkfs::{mkfs, MkfsOptions, MountType};
use ocfs2rs::*;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::sync::Mutex;

/// A scratch image, removed on drop.
struct Image {
    dir: PathBuf,
}

impl Image {
    /// A fresh 64 MiB local volume.
    fn new(name: &str) -> Image {
        let dir = std::env::temp_dir().join(format!("ocfs2rs-ffi-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let img = Image { dir };
        std::fs::File::create(img.path()).and_then(|f| f.set_len(64 << 20)).expect("create image");
        let dev = FileDevice::open_with(img.path(), FileDeviceOptions { writable: true, direct: None }).expect("open");
        mkfs(&dev, &MkfsOptions { mount: Some(MountType::Local), ..Default::default() }).expect("mkfs");
        img
    }

    fn path(&self) -> PathBuf {
        self.dir.join("vol.img")
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cs(s: impl AsRef<[u8]>) -> CString {
    CString::new(s.as_ref()).expect("no NUL in test strings")
}

fn last_error() -> String {
    // SAFETY: never NULL; valid until this thread's next failing call, and it is copied at once.
    unsafe { CStr::from_ptr(ocfs2rs_last_error()) }.to_string_lossy().into_owned()
}

fn open_volume(path: &Path, flags: u32) -> Result<*mut ocfs2rs_volume, c_int> {
    let mut vol = null_mut();
    let p = cs(path.as_os_str().as_encoded_bytes());
    // SAFETY: a valid string and a valid out pointer.
    let r = unsafe { ocfs2rs_volume_open(p.as_ptr(), flags, &mut vol) };
    if r == 0 {
        Ok(vol)
    } else {
        Err(r)
    }
}

fn writable(img: &Image) -> *mut ocfs2rs_volume {
    open_volume(&img.path(), OCFS2RS_VOLUME_WRITABLE).unwrap_or_else(|e| panic!("open: {e} {}", last_error()))
}

fn open(vol: *mut ocfs2rs_volume, path: &str, flags: c_int) -> Result<*mut ocfs2rs_file, c_int> {
    let mut f = null_mut();
    let p = cs(path);
    // SAFETY: a valid string and a valid out pointer.
    let r = unsafe { ocfs2rs_open(vol, p.as_ptr(), flags, 0o644, &mut f) };
    if r == 0 {
        Ok(f)
    } else {
        Err(r)
    }
}

fn stat(vol: *mut ocfs2rs_volume, path: &str) -> Result<ocfs2rs_attr, c_int> {
    let mut st = ocfs2rs_attr::default();
    let p = cs(path);
    // SAFETY: a valid string and a valid out pointer.
    let r = unsafe { ocfs2rs_stat(vol, p.as_ptr(), &mut st) };
    if r == 0 {
        Ok(st)
    } else {
        Err(r)
    }
}

fn mkdir(vol: *mut ocfs2rs_volume, path: &str) -> c_int {
    let p = cs(path);
    // SAFETY: a valid string.
    unsafe { ocfs2rs_mkdir(vol, p.as_ptr(), 0o755) }
}

fn pwrite(f: *mut ocfs2rs_file, data: &[u8], off: i64) -> i64 {
    // SAFETY: `data` is readable for its length.
    unsafe { ocfs2rs_pwrite(f, data.as_ptr().cast(), data.len(), off) }
}

fn pread(f: *mut ocfs2rs_file, len: usize, off: i64) -> Result<Vec<u8>, i64> {
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { ocfs2rs_pread(f, buf.as_mut_ptr().cast(), buf.len(), off) };
    if n < 0 {
        return Err(n);
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn list(vol: *mut ocfs2rs_volume, path: &str) -> Vec<(String, u32)> {
    let mut dir = null_mut();
    let p = cs(path);
    // SAFETY: a valid string and a valid out pointer.
    assert_eq!(unsafe { ocfs2rs_opendir(vol, p.as_ptr(), &mut dir) }, 0, "{}", last_error());
    let mut out = Vec::new();
    loop {
        let mut ent = ocfs2rs_dirent { ino: 0, file_type: 0, name_len: 0, name: [0; 256] };
        // SAFETY: a valid out pointer.
        match unsafe { ocfs2rs_readdir(dir, &mut ent) } {
            0 => break,
            1 => {
                // SAFETY: readdir NUL-terminates the name.
                let name = unsafe { CStr::from_ptr(ent.name.as_ptr()) }.to_string_lossy().into_owned();
                assert_eq!(name.len(), ent.name_len as usize);
                out.push((name, ent.file_type));
            }
            e => panic!("readdir: {e} {}", last_error()),
        }
    }
    assert_eq!(ocfs2rs_closedir(dir), 0);
    out.sort();
    out
}

const EINVAL: c_int = -libc::EINVAL;

#[test]
fn null_handles_and_arguments_give_einval_with_a_message() {
    assert_eq!(ocfs2rs_volume_close(null_mut()), EINVAL);
    assert!(last_error().contains("NULL"), "{}", last_error());
    assert_eq!(ocfs2rs_close(null_mut()), EINVAL);
    assert_eq!(ocfs2rs_closedir(null_mut()), EINVAL);
    assert_eq!(ocfs2rs_fsync(null_mut()), EINVAL);
    assert_eq!(ocfs2rs_lseek(null_mut(), 0, OCFS2RS_SEEK_SET), EINVAL as i64);
    assert_eq!(stat(null_mut(), "/").unwrap_err(), EINVAL);

    let img = Image::new("null");
    let vol = writable(&img);
    let mut st = ocfs2rs_attr::default();
    // SAFETY: NULL path and NULL out pointers are what is under test; both are checked.
    unsafe {
        assert_eq!(ocfs2rs_stat(vol, null(), &mut st), EINVAL);
        assert_eq!(ocfs2rs_stat(vol, cs("/").as_ptr(), null_mut()), EINVAL);
        assert_eq!(ocfs2rs_volume_open(null(), 0, null_mut()), EINVAL);
        assert_eq!(ocfs2rs_readlink(vol, cs("/x").as_ptr(), null_mut(), 10), EINVAL as i64);
    }
    let f = open(vol, "/f", OCFS2RS_O_RDWR | OCFS2RS_O_CREAT).unwrap();
    // SAFETY: a NULL buffer with a count is refused before any access.
    assert_eq!(unsafe { ocfs2rs_pread(f, null_mut(), 8, 0) }, EINVAL as i64);
    // SAFETY: a NULL buffer with a zero count touches nothing.
    assert_eq!(unsafe { ocfs2rs_pwrite(f, null(), 0, 0) }, 0);
    assert_eq!(ocfs2rs_close(f), 0);
    assert_eq!(ocfs2rs_volume_close(vol), 0);
}

#[test]
fn closing_twice_gives_einval_and_never_touches_the_old_handle() {
    let img = Image::new("double");
    let vol = writable(&img);
    let f = open(vol, "/a", OCFS2RS_O_WRONLY | OCFS2RS_O_CREAT).unwrap();
    assert_eq!(ocfs2rs_close(f), 0);
    assert_eq!(ocfs2rs_close(f), EINVAL);
    assert!(last_error().contains("not an open file handle"), "{}", last_error());
    assert_eq!(pwrite(f, b"x", 0), EINVAL as i64);

    let mut d = null_mut();
    // SAFETY: valid string and out pointer.
    assert_eq!(unsafe { ocfs2rs_opendir(vol, cs("/").as_ptr(), &mut d) }, 0);
    assert_eq!(ocfs2rs_closedir(d), 0);
    assert_eq!(ocfs2rs_closedir(d), EINVAL);

    assert_eq!(ocfs2rs_volume_close(vol), 0);
    assert_eq!(ocfs2rs_volume_close(vol), EINVAL);
}

#[test]
fn a_handle_of_another_kind_gives_einval() {
    let img = Image::new("kind");
    let vol = writable(&img);
    let f = open(vol, "/a", OCFS2RS_O_WRONLY | OCFS2RS_O_CREAT).unwrap();
    assert_eq!(ocfs2rs_volume_close(f.cast()), EINVAL);
    assert_eq!(ocfs2rs_closedir(f.cast()), EINVAL);
    assert_eq!(ocfs2rs_close(vol.cast()), EINVAL);
    assert_eq!(ocfs2rs_close(f), 0);
    assert_eq!(ocfs2rs_volume_close(vol), 0);
}

#[test]
fn closing_a_volume_closes_its_files_and_later_calls_give_einval() {
    let img = Image::new("closedvol");
    let vol = writable(&img);
    let f = open(vol, "/kept", OCFS2RS_O_RDWR | OCFS2RS_O_CREAT).unwrap();
    assert_eq!(pwrite(f, b"still here", 0), 10);
    let mut d = null_mut();
    // SAFETY: valid string and out pointer.
    assert_eq!(unsafe { ocfs2rs_opendir(vol, cs("/").as_ptr(), &mut d) }, 0);
    assert_eq!(ocfs2rs_volume_close(vol), 0);
    assert_eq!(ocfs2rs_close(f), EINVAL);
    assert_eq!(ocfs2rs_closedir(d), EINVAL);
    assert_eq!(stat(vol, "/kept").unwrap_err(), EINVAL);
    assert_eq!(mkdir(vol, "/new"), EINVAL);
    assert_eq!(ocfs2rs_volume_sync(vol), EINVAL);

    let vol = open_volume(&img.path(), OCFS2RS_VOLUME_READONLY).unwrap();
    let f = open(vol, "/kept", OCFS2RS_O_RDONLY).unwrap();
    assert_eq!(pread(f, 64, 0).unwrap(), b"still here");
    assert_eq!(ocfs2rs_volume_close(vol), 0);
}

#[test]
fn names_longer_than_255_bytes_give_enametoolong() {
    let img = Image::new("longname");
    let vol = writable(&img);
    let long = format!("/{}", "n".repeat(256));
    assert_eq!(mkdir(vol, &long), -libc::ENAMETOOLONG);
    assert!(last_error().contains("256 bytes"), "{}", last_error());
    assert_eq!(open(vol, &long, OCFS2RS_O_WRONLY | OCFS2RS_O_CREAT).unwrap_err(), -libc::ENAMETOOLONG);
    assert_eq!(stat(vol, &format!("{long}/x")).unwrap_err(), -libc::ENAMETOOLONG);
    let max = format!("/{}", "m".repeat(255));
    assert_eq!(mkdir(vol, &max), 0, "{}", last_error());
    assert!(list(vol, "/").iter().any(|(n, t)| n.len() == 255 && *t == OCFS2RS_DT_DIR));
    let deep = "/d".repeat(2048);
    assert_eq!(stat(vol, &deep).unwrap_err(), -libc::ENAMETOOLONG);
    assert_eq!(ocfs2rs_volume_close(vol), 0);
}

#[test]
fn errors_carry_the_errno_and_a_message_naming_the_call() {
    let img = Image::new("errors");
    let vol = writable(&img);
    assert_eq!(open(vol, "/missing", OCFS2RS_O_RDONLY).unwrap_err(), -libc::ENOENT);
    let msg = last_error();
    assert!(msg.starts_with("ocfs2rs_open: ") && msg.contains("missing"), "{msg}");
    assert_eq!(stat(vol, "/").unwrap().mode & libc::S_IFMT, libc::S_IFDIR);
    assert_eq!(last_error(), msg, "a success leaves the message");
    assert_eq!(mkdir(vol, "/d"), 0);
    assert_eq!(mkdir(vol, "/d"), -libc::EEXIST);
    assert_eq!(open(vol, "/d", OCFS2RS_O_RDONLY).unwrap_err(), -libc::EISDIR);
    assert_eq!(open(vol, "/x", OCFS2RS_O_RDONLY | 0o40000).unwrap_err(), EINVAL, "unknown flag");
    let f = open(vol, "/d/f", OCFS2RS_O_WRONLY | OCFS2RS_O_CREAT | OCFS2RS_O_EXCL).unwrap();
    assert_eq!(open(vol, "/d/f", OCFS2RS_O_WRONLY | OCFS2RS_O_CREAT | OCFS2RS_O_EXCL).unwrap_err(), -libc::EEXIST);
    assert_eq!(pread(f, 4, 0).unwrap_err(), -(libc::EBADF as i64));
    let p = cs("/d");
    // SAFETY: a valid string.
    assert_eq!(unsafe { ocfs2rs_rmdir(vol, p.as_ptr()) }, -libc::ENOTEMPTY);
    assert_eq!(ocfs2rs_fallocate(f, OCFS2RS_FALLOC_FL_PUNCH_HOLE, 0, 4096), -libc::EOPNOTSUPP);
    assert_eq!(ocfs2rs_fallocate(f, 0, -1, 4096), EINVAL);
    assert_eq!(ocfs2rs_fallocate(f, 0x40, 0, 4096), -libc::EOPNOTSUPP);
    assert_eq!(ocfs2rs_close(f), 0);
    assert_eq!(ocfs2rs_volume_close(vol), 0);

    let ro = open_volume(&img.path(), OCFS2RS_VOLUME_READONLY).unwrap();
    assert_eq!(mkdir(ro, "/e"), -libc::EROFS);
    let mut sf = ocfs2rs_statfs::default();
    // SAFETY: a valid out pointer.
    assert_eq!(unsafe { ocfs2rs_volume_statfs(ro, &mut sf) }, 0);
    assert_eq!(sf.flags, OCFS2RS_STATFS_READONLY);
    assert!(sf.free_clusters > 0 && sf.free_clusters < sf.total_clusters && sf.name_max == 255);
    assert_eq!(ocfs2rs_volume_close(ro), 0);
    assert_eq!(open_volume(&img.dir.join("absent.img"), 0).unwrap_err(), -libc::ENOENT);
    assert_eq!(open_volume(&img.path(), 7).unwrap_err(), EINVAL);
}

#[test]
fn files_read_write_seek_and_fallocate_like_posix() {
    let img = Image::new("data");
    let vol = writable(&img);
    let f = open(vol, "/f", OCFS2RS_O_RDWR | OCFS2RS_O_CREAT | OCFS2RS_O_TRUNC).unwrap();
    let data: Vec<u8> = (0..20000u32).map(|i| (i * 7 + 3) as u8).collect();
    // SAFETY: `data` is readable for its length.
    assert_eq!(unsafe { ocfs2rs_write(f, data.as_ptr().cast(), data.len()) }, data.len() as i64);
    assert_eq!(ocfs2rs_lseek(f, 0, OCFS2RS_SEEK_CUR), 20000);
    assert_eq!(ocfs2rs_lseek(f, -100, OCFS2RS_SEEK_END), 19900);
    let mut tail = [0u8; 200];
    // SAFETY: `tail` is writable for its length.
    assert_eq!(unsafe { ocfs2rs_read(f, tail.as_mut_ptr().cast(), tail.len()) }, 100);
    assert_eq!(&tail[..100], &data[19900..]);
    assert_eq!(ocfs2rs_lseek(f, -1, OCFS2RS_SEEK_SET), EINVAL as i64);
    assert_eq!(ocfs2rs_lseek(f, 0, 9), EINVAL as i64);

    assert_eq!(ocfs2rs_fallocate(f, OCFS2RS_FALLOC_FL_PUNCH_HOLE | OCFS2RS_FALLOC_FL_KEEP_SIZE, 4096, 8192), 0);
    let got = pread(f, 20000, 0).unwrap();
    assert_eq!(&got[..4096], &data[..4096]);
    assert!(got[4096..12288].iter().all(|&b| b == 0));
    assert_eq!(&got[12288..], &data[12288..]);
    assert_eq!(ocfs2rs_fallocate(f, OCFS2RS_FALLOC_FL_ZERO_RANGE, 19000, 2000), 0);
    let mut st = ocfs2rs_attr::default();
    // SAFETY: a valid out pointer.
    assert_eq!(unsafe { ocfs2rs_fstat(f, &mut st) }, 0);
    assert_eq!(st.size, 21000);
    assert_eq!(ocfs2rs_fallocate(f, OCFS2RS_FALLOC_FL_KEEP_SIZE, 0, 1 << 20), 0);
    assert_eq!(ocfs2rs_fallocate(f, 0, 30000, 100), 0);
    assert_eq!(stat(vol, "/f").unwrap().size, 30100);
    assert_eq!(ocfs2rs_ftruncate(f, 10), 0);
    assert_eq!(pread(f, 100, 0).unwrap(), &data[..10]);
    assert_eq!(ocfs2rs_fsync(f), 0);
    assert_eq!(ocfs2rs_fdatasync(f), 0);
    assert_eq!(ocfs2rs_close(f), 0);

    let a = open(vol, "/f", OCFS2RS_O_WRONLY | OCFS2RS_O_APPEND).unwrap();
    assert_eq!(pwrite(a, b"++", 0), 2, "pwrite with O_APPEND appends, as on Linux");
    assert_eq!(ocfs2rs_close(a), 0);
    assert_eq!(stat(vol, "/f").unwrap().size, 12);
    let r = open(vol, "/f", OCFS2RS_O_RDONLY).unwrap();
    assert_eq!(ocfs2rs_ftruncate(r, 0), EINVAL);
    assert_eq!(pwrite(r, b"x", 0), -(libc::EBADF as i64));
    assert_eq!(ocfs2rs_close(r), 0);
    assert_eq!(ocfs2rs_volume_close(vol), 0);
}

#[test]
fn the_namespace_calls_work_by_path() {
    let img = Image::new("names");
    let vol = writable(&img);
    assert_eq!(mkdir(vol, "/d"), 0);
    let f = open(vol, "/d/file", OCFS2RS_O_WRONLY | OCFS2RS_O_CREAT).unwrap();
    assert_eq!(pwrite(f, b"abc", 0), 3);
    assert_eq!(ocfs2rs_close(f), 0);
    // SAFETY: every pointer below is a valid string, buffer or out pointer for its call.
    unsafe {
        assert_eq!(ocfs2rs_link(vol, cs("/d/file").as_ptr(), cs("/hard").as_ptr()), 0);
        assert_eq!(ocfs2rs_symlink(vol, cs("d/file").as_ptr(), cs("/sym").as_ptr()), 0);
        assert_eq!(ocfs2rs_rename(vol, cs("/d/file").as_ptr(), cs("/d/moved").as_ptr()), 0);
        let mut buf = [0 as c_char; 4];
        assert_eq!(ocfs2rs_readlink(vol, cs("/sym").as_ptr(), buf.as_mut_ptr(), buf.len()), 6, "cut short");
        let mut buf = [1 as c_char; 16];
        assert_eq!(ocfs2rs_readlink(vol, cs("/sym").as_ptr(), buf.as_mut_ptr(), buf.len()), 6);
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_bytes(), b"d/file");
        let mut st = ocfs2rs_attr::default();
        assert_eq!(ocfs2rs_lstat(vol, cs("/sym").as_ptr(), &mut st), 0);
        assert_eq!(st.mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(ocfs2rs_stat(vol, cs("/sym").as_ptr(), &mut st), -libc::ENOENT, "target moved away");
        assert_eq!(ocfs2rs_chmod(vol, cs("/hard").as_ptr(), 0o600), 0);
        assert_eq!(ocfs2rs_chown(vol, cs("/hard").as_ptr(), 1000, OCFS2RS_ID_UNCHANGED), 0);
        let times =
            [ocfs2rs_timespec { sec: 1_000_000, nsec: 5 }, ocfs2rs_timespec { sec: 0, nsec: OCFS2RS_UTIME_OMIT }];
        assert_eq!(ocfs2rs_utimens(vol, cs("/hard").as_ptr(), times.as_ptr()), 0);
        assert_eq!(ocfs2rs_stat(vol, cs("/d/moved").as_ptr(), &mut st), 0);
        assert_eq!((st.mode & 0o7777, st.uid, st.gid, st.nlink, st.size), (0o600, 1000, 0, 2, 3));
        assert_eq!(st.atime, ocfs2rs_timespec { sec: 1_000_000, nsec: 5 });
        assert_eq!(ocfs2rs_truncate(vol, cs("/hard").as_ptr(), 1), 0);
        assert_eq!(ocfs2rs_mknod(vol, cs("/fifo").as_ptr(), libc::S_IFIFO | 0o644, 0), 0);
        assert_eq!(ocfs2rs_mknod(vol, cs("/chr").as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(4, 5)), 0);
        assert_eq!(ocfs2rs_stat(vol, cs("/chr").as_ptr(), &mut st), 0);
        assert_eq!(st.rdev, libc::makedev(4, 5));
        assert_eq!(ocfs2rs_unlink(vol, cs("/hard").as_ptr()), 0);
        assert_eq!(ocfs2rs_unlink(vol, cs("/d").as_ptr()), -libc::EISDIR);
    }
    let names = list(vol, "/");
    let find = |n: &str| names.iter().find(|(m, _)| m == n).map(|(_, t)| *t);
    assert_eq!(find("."), Some(OCFS2RS_DT_DIR));
    assert_eq!(find(".."), Some(OCFS2RS_DT_DIR));
    assert_eq!(find("sym"), Some(OCFS2RS_DT_LNK));
    assert_eq!(find("fifo"), Some(OCFS2RS_DT_FIFO));
    assert_eq!(find("chr"), Some(OCFS2RS_DT_CHR));
    assert_eq!(find("hard"), None);
    assert_eq!(
        list(vol, "/d"),
        vec![(".".into(), OCFS2RS_DT_DIR), ("..".into(), OCFS2RS_DT_DIR), ("moved".into(), OCFS2RS_DT_REG)]
    );
    assert_eq!(stat(vol, "/d/moved").unwrap().size, 1);
    assert_eq!(ocfs2rs_volume_sync(vol), 0);
    assert_eq!(ocfs2rs_volume_close(vol), 0);
}

/// What the log callback received.
static RECORDS: Mutex<Vec<(c_int, String, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn record(level: c_int, target: *const c_char, message: *const c_char, user_data: *mut c_void) {
    assert_eq!(user_data as usize, 0x5eed);
    // SAFETY: the library passes NUL-terminated strings valid during the call.
    let (t, m) = unsafe { (CStr::from_ptr(target), CStr::from_ptr(message)) };
    RECORDS.lock().unwrap().push((level, t.to_string_lossy().into_owned(), m.to_string_lossy().into_owned()));
}

#[test]
fn the_log_callback_receives_the_librarys_records() {
    let img = Image::new("log");
    // A copy of the image taken while the volume is open writable says the slot is ours and
    // the journal in use, so opening the copy logs at info level.
    let vol = writable(&img);
    let copy = img.dir.join("copy.img");
    let second = img.dir.join("second.img");
    std::fs::copy(img.path(), &copy).unwrap();
    std::fs::copy(img.path(), &second).unwrap();
    assert_eq!(ocfs2rs_volume_close(vol), 0);

    assert_eq!(ocfs2rs_set_log_level(9), EINVAL);
    assert_eq!(ocfs2rs_set_log_level(OCFS2RS_LOG_INFO), 0);
    // SAFETY: `record` may be called from any thread; its user data is never dereferenced.
    assert_eq!(unsafe { ocfs2rs_set_log_callback(Some(record), 0x5eed as *mut c_void) }, 0);
    let vol = open_volume(&copy, OCFS2RS_VOLUME_WRITABLE).unwrap();
    assert_eq!(ocfs2rs_volume_close(vol), 0);
    // SAFETY: NULL stops logging.
    assert_eq!(unsafe { ocfs2rs_set_log_callback(None, null_mut()) }, 0);
    let got = RECORDS.lock().unwrap().clone();
    assert!(
        got.iter().any(|(level, target, msg)| *level == OCFS2RS_LOG_INFO
            && target.starts_with("ocfs2::")
            && msg.contains("slot 0")),
        "{got:?}"
    );

    // A callback that tries to replace itself is refused instead of deadlocking.
    // SAFETY: `reentrant` may be called from any thread and ignores its user data.
    assert_eq!(unsafe { ocfs2rs_set_log_callback(Some(reentrant), null_mut()) }, 0);
    let vol = open_volume(&second, OCFS2RS_VOLUME_WRITABLE).unwrap();
    assert_eq!(ocfs2rs_volume_close(vol), 0);
    assert_eq!(REENTRANT.load(std::sync::atomic::Ordering::SeqCst), -libc::EDEADLK);
    // SAFETY: NULL stops logging.
    assert_eq!(unsafe { ocfs2rs_set_log_callback(None, null_mut()) }, 0);
}

/// What `ocfs2rs_set_log_callback` returned when called from inside the callback.
static REENTRANT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

unsafe extern "C" fn reentrant(_: c_int, _: *const c_char, _: *const c_char, _: *mut c_void) {
    // SAFETY: NULL is a valid callback; the call is expected to be refused.
    let r = unsafe { ocfs2rs_set_log_callback(None, null_mut()) };
    REENTRANT.store(r, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn handles_work_from_many_threads_at_once() {
    let img = Image::new("threads");
    let vol = writable(&img);
    // Handles are numbers, so they cross threads as usize.
    let vol_id = vol as usize;
    let shared = open(vol, "/shared", OCFS2RS_O_RDWR | OCFS2RS_O_CREAT).unwrap() as usize;
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            std::thread::spawn(move || {
                let vol = vol_id as *mut ocfs2rs_volume;
                let shared = shared as *mut ocfs2rs_file;
                for round in 0..20u8 {
                    let name = format!("/t{t}-{round}");
                    let f = open(vol, &name, OCFS2RS_O_RDWR | OCFS2RS_O_CREAT).unwrap();
                    let data = vec![t ^ round; 5000];
                    assert_eq!(pwrite(f, &data, 0), 5000);
                    assert_eq!(pread(f, 5000, 0).unwrap(), data);
                    assert_eq!(ocfs2rs_close(f), 0);
                    assert_eq!(ocfs2rs_close(f), EINVAL, "{}", last_error());
                    // Each thread its own 4 KiB of the shared file.
                    let off = (t as i64) * 4096;
                    assert_eq!(pwrite(shared, &[round; 4096], off), 4096);
                    assert_eq!(pread(shared, 4096, off).unwrap(), vec![round; 4096]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(list(vol, "/").len(), 2 + 1 + 1 + 80, "., .., lost+found, shared and 80 files");
    assert_eq!(ocfs2rs_close(shared as *mut ocfs2rs_file), 0);
    assert_eq!(ocfs2rs_volume_close(vol), 0);
}
