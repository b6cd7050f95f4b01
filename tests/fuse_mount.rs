//! The FUSE mount (`ocfs2-mount`) driven through std::fs like any mounted filesystem: a mixed
//! workload of files, directories, symlinks, hard links, renames, truncates, big and small
//! writes and a file unlinked while open; unmounted with `fusermount3 -u` and with SIGTERM;
//! then fsck.ocfs2 must find the image clean and debugfs.ocfs2 must dump what was written.
//!
//! Needs root, /dev/fuse and `fusermount3` (Debian package fuse3); a machine without them
//! fails these tests with a message that says so.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOUNT: &str = env!("CARGO_BIN_EXE_ocfs2-mount");

fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: these tests need the fuse kernel module (modprobe fuse) and root"
    );
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("fusermount3").is_file()))
        .unwrap_or(false);
    assert!(found, "fusermount3 is not installed: run `apt-get install -y fuse3` (see .ci/run)");
}

/// True while a FUSE filesystem is mounted at `dir`.
fn is_mounted(dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let want = dir.to_string_lossy().into_owned();
    info.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str()) && l.contains(" - fuse"))
}

/// A running `ocfs2-mount -f`.
struct Mounted {
    child: Child,
    dir: PathBuf,
}

impl Mounted {
    fn new(img: &Path, dir: &Path, opts: &[&str]) -> Mounted {
        Mounted::with(img, dir, opts, Command::new(MOUNT))
    }

    /// Mounts with `cmd`, which may carry more arguments and environment.
    fn with(img: &Path, dir: &Path, opts: &[&str], mut cmd: Command) -> Mounted {
        require_fuse();
        fs::create_dir_all(dir).expect("mount point");
        cmd.arg("-f");
        if !opts.is_empty() {
            cmd.arg("-o").arg(opts.join(","));
        }
        let mut child = cmd.arg(img).arg(dir).stdin(Stdio::null()).spawn().expect("start ocfs2-mount");
        let start = Instant::now();
        while !is_mounted(dir) {
            if let Some(status) = child.try_wait().expect("ocfs2-mount status") {
                panic!("ocfs2-mount exited with {status} before mounting {}", dir.display());
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{} not mounted after 20 s", dir.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Mounted { child, dir: dir.to_path_buf() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Waits for the daemon to exit after an unmount; it must exit 0 (volume closed cleanly).
    fn wait_exit(mut self, how: &str) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("ocfs2-mount status") {
                assert!(status.success(), "ocfs2-mount exited with {status} after {how}");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "ocfs2-mount still running 60 s after {how}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!is_mounted(&self.dir), "{} still mounted after {how}", self.dir.display());
        std::mem::forget(self);
    }

    fn unmount_fusermount(self) {
        let (ok, out, err) = run(Command::new("fusermount3").arg("-u").arg(&self.dir));
        assert!(ok, "fusermount3 -u failed:\n{out}\n{err}");
        self.wait_exit("fusermount3 -u");
    }

    fn unmount_sigterm(self) {
        let (ok, _, err) = run(Command::new("kill").arg("-TERM").arg(self.child.id().to_string()));
        assert!(ok, "kill -TERM failed: {err}");
        self.wait_exit("SIGTERM");
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A failing test still leaves no mount behind.
        let _ = Command::new("fusermount3").arg("-uz").arg(&self.dir).stderr(Stdio::null()).status();
        let _ = self.child.wait();
    }
}

fn fresh_image(s: &Scratch, name: &str) -> PathBuf {
    require_fuse();
    let img = s.path(name);
    sparse_image(&img, 1 << 30);
    mkfs_ocfs2(&img, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]);
    img
}

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// Random bytes from the test's seeded generator.
fn pattern(rng: &mut Rng, len: usize) -> Vec<u8> {
    rng.bytes(len)
}

/// What the workload left: the contents of every regular file by path from the root.
type Model = BTreeMap<String, Vec<u8>>;

fn workload(m: &Mounted, rng: &mut Rng) -> Model {
    let mut model = Model::new();
    let put = |model: &mut Model, rel: &str, data: Vec<u8>| {
        fs::write(m.path(rel), &data).unwrap_or_else(|e| panic!("write {rel}: {e}"));
        model.insert(rel.to_string(), data);
    };
    fs::create_dir_all(m.path("a/b/c")).expect("mkdir -p a/b/c");
    fs::create_dir(m.path("empty")).expect("mkdir empty");
    for i in 0..40 {
        let len = rng.below(6000) as usize;
        put(&mut model, &format!("a/small-{i}"), pattern(rng, len));
    }
    // Big writes: 12 MiB in 1 MiB requests, and one write far past the end (a hole).
    let big = pattern(rng, 12 << 20);
    put(&mut model, "a/b/big", big);
    {
        let mut f = fs::OpenOptions::new().create(true).truncate(true).write(true).open(m.path("a/b/sparse")).unwrap();
        f.seek(SeekFrom::Start(40 << 20)).unwrap();
        f.write_all(b"end of a sparse file").unwrap();
        let mut data = vec![0u8; 40 << 20];
        data.extend_from_slice(b"end of a sparse file");
        model.insert("a/b/sparse".into(), data);
    }
    // Writes in the middle, appends, truncates down and up.
    {
        let rel = "a/b/big";
        let mut f = fs::OpenOptions::new().write(true).open(m.path(rel)).unwrap();
        let patch = pattern(rng, 100_000);
        f.seek(SeekFrom::Start(3_000_001)).unwrap();
        f.write_all(&patch).unwrap();
        let d = model.get_mut(rel).unwrap();
        d[3_000_001..3_100_001].copy_from_slice(&patch);
        f.set_len(5_000_003).unwrap();
        d.truncate(5_000_003);
        f.set_len(6_000_000).unwrap();
        d.resize(6_000_000, 0);
    }
    {
        let rel = "a/small-1";
        let mut f = fs::OpenOptions::new().append(true).open(m.path(rel)).unwrap();
        let more = pattern(rng, 9000);
        f.write_all(&more).unwrap();
        model.get_mut(rel).unwrap().extend_from_slice(&more);
    }
    // O_TRUNC of an existing file.
    put(&mut model, "a/small-2", b"rewritten".to_vec());
    // Symlinks (fast and slow) and hard links.
    std::os::unix::fs::symlink("small-3", m.path("a/link-fast")).unwrap();
    let long_target = "x/".repeat(1500) + "end";
    std::os::unix::fs::symlink(&long_target, m.path("a/link-slow")).unwrap();
    assert_eq!(fs::read_link(m.path("a/link-fast")).unwrap(), PathBuf::from("small-3"));
    assert_eq!(fs::read_link(m.path("a/link-slow")).unwrap(), PathBuf::from(&long_target));
    assert_eq!(fs::read(m.path("a/link-fast")).unwrap(), model["a/small-3"], "reading through a symlink");
    fs::hard_link(m.path("a/small-4"), m.path("a/b/c/hard-4")).unwrap();
    model.insert("a/b/c/hard-4".into(), model["a/small-4"].clone());
    assert_eq!(fs::metadata(m.path("a/small-4")).unwrap().nlink(), 2);
    // Renames: a file, a file over another, a directory to another parent.
    fs::rename(m.path("a/small-5"), m.path("a/b/moved-5")).unwrap();
    let v = model.remove("a/small-5").unwrap();
    model.insert("a/b/moved-5".into(), v);
    fs::rename(m.path("a/small-6"), m.path("a/small-7")).unwrap();
    let v = model.remove("a/small-6").unwrap();
    model.insert("a/small-7".into(), v);
    fs::create_dir(m.path("a/dir-to-move")).unwrap();
    put(&mut model, "a/dir-to-move/inside", b"inside".to_vec());
    fs::rename(m.path("a/dir-to-move"), m.path("a/b/c/moved-dir")).unwrap();
    let v = model.remove("a/dir-to-move/inside").unwrap();
    model.insert("a/b/c/moved-dir/inside".into(), v);
    assert_eq!(fs::metadata(m.path("a/b/c")).unwrap().nlink(), 3, "c holds moved-dir");
    // Unlink while open: the file keeps working until it is closed.
    {
        let mut f =
            fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(m.path("a/doomed")).unwrap();
        f.write_all(b"still here").unwrap();
        fs::remove_file(m.path("a/doomed")).unwrap();
        assert!(!m.path("a/doomed").exists());
        f.write_all(b" after unlink").unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut back = String::new();
        f.read_to_string(&mut back).unwrap();
        assert_eq!(back, "still here after unlink");
        assert_eq!(f.metadata().unwrap().nlink(), 0);
    }
    // Removals.
    for i in 30..40 {
        let rel = format!("a/small-{i}");
        fs::remove_file(m.path(&rel)).unwrap();
        model.remove(&rel);
    }
    fs::remove_dir(m.path("empty")).unwrap();
    // Special files: a fifo and a socket.
    let (ok, _, err) = run(Command::new("mkfifo").arg(m.path("a/fifo")));
    assert!(ok, "mkfifo: {err}");
    drop(std::os::unix::net::UnixListener::bind(m.path("a/socket")).expect("bind a socket"));
    assert!(fs::symlink_metadata(m.path("a/socket")).unwrap().mode() & 0o170000 == 0o140000);
    // fallocate: preallocate, punch, zero a range.
    {
        let rel = "a/falloc";
        put(&mut model, rel, pattern(rng, 3 << 20));
        let p = m.path(rel);
        for args in [
            vec!["-o", "4194304", "-l", "1048576"],
            vec!["-p", "-o", "4096", "-l", "1048576"],
            vec!["-z", "-o", "2000000", "-l", "300000"],
        ] {
            let (ok, _, err) = run(Command::new("fallocate").args(&args).arg(&p));
            assert!(ok, "fallocate {args:?}: {err}");
        }
        let d = model.get_mut(rel).unwrap();
        d.resize(5 << 20, 0);
        d[4096..4096 + 1_048_576].fill(0);
        d[2_000_000..2_300_000].fill(0);
    }
    // Many writers at once through the worker pool.
    std::thread::scope(|s| {
        for t in 0..4 {
            let dir = m.dir.clone();
            s.spawn(move || {
                for i in 0..25 {
                    let data = vec![(t * 25 + i) as u8; 10_000 + i * 777];
                    fs::write(dir.join(format!("a/b/t{t}-{i}")), &data).unwrap();
                }
            });
        }
    });
    for t in 0..4 {
        for i in 0..25 {
            model.insert(format!("a/b/t{t}-{i}"), vec![(t * 25 + i) as u8; 10_000 + i * 777]);
        }
    }
    // Everything reads back through the mount.
    for (rel, data) in &model {
        assert!(fs::read(m.path(rel)).unwrap() == *data, "{rel} reads back different through the mount");
    }
    model
}

fn assert_dumps_equal(s: &Scratch, img: &Path, model: &Model) {
    let out = s.path("dumped");
    for (rel, data) in model {
        let _ = fs::remove_file(&out);
        debugfs(img, &format!("dump /{rel} {}", out.display()));
        let dumped = fs::read(&out).unwrap_or_else(|e| panic!("debugfs.ocfs2 dumped nothing for /{rel}: {e}"));
        assert!(dumped == *data, "debugfs.ocfs2 dumps /{rel} with {} bytes, wrote {}", dumped.len(), data.len());
    }
}

#[test]
fn mixed_workload_through_fuse_leaves_a_clean_volume_with_the_same_contents() {
    let s = Scratch::new("fuse-mixed");
    let img = fresh_image(&s, "vol.img");
    let mut rng = Rng::new(seed());
    let m = Mounted::new(&img, &s.path("mnt"), &[]);
    let model = workload(&m, &mut rng);
    m.unmount_fusermount();
    assert_fsck_clean(&img);
    assert_dumps_equal(&s, &img, &model);

    // Mounted again, everything is there; then SIGTERM unmounts cleanly too.
    let m = Mounted::new(&img, &s.path("mnt"), &[]);
    for (rel, data) in &model {
        assert!(fs::read(m.path(rel)).unwrap() == *data, "{rel} differs after a remount");
    }
    fs::remove_file(m.path("a/small-0")).unwrap();
    fs::write(m.path("after-remount"), b"x").unwrap();
    m.unmount_sigterm();
    assert_fsck_clean(&img);
}

#[test]
fn every_entry_point_refuses_a_256_byte_name() {
    let s = Scratch::new("fuse-names");
    let img = fresh_image(&s, "vol.img");
    let m = Mounted::new(&img, &s.path("mnt"), &[]);
    let long = "n".repeat(256);
    let ok255 = "k".repeat(255);
    fs::write(m.path("file"), b"x").unwrap();
    fs::create_dir(m.path("dir")).unwrap();
    let e = libc::ENAMETOOLONG;
    assert_eq!(errno_of(fs::metadata(m.path(&long))), e, "lookup");
    assert_eq!(errno_of(fs::write(m.path(&long), b"x")), e, "create");
    assert_eq!(errno_of(fs::create_dir(m.path(&long))), e, "mkdir");
    assert_eq!(errno_of(std::os::unix::fs::symlink("file", m.path(&long))), e, "symlink");
    assert_eq!(errno_of(fs::hard_link(m.path("file"), m.path(&long))), e, "link");
    assert_eq!(errno_of(fs::rename(m.path("file"), m.path(&long))), e, "rename to");
    assert_eq!(errno_of(fs::rename(m.path(&long), m.path("file2"))), e, "rename from");
    assert_eq!(errno_of(fs::remove_file(m.path(&long))), e, "unlink");
    assert_eq!(errno_of(fs::remove_dir(m.path(&long))), e, "rmdir");
    let (ok, _, err) = run(Command::new("mkfifo").arg(m.path(&long)));
    assert!(!ok && err.contains("too long"), "mknod: {err}");
    // 255 bytes is fine, and the directory is still sound afterwards.
    fs::write(m.path(&ok255), b"y").unwrap();
    fs::rename(m.path(&ok255), m.path("dir/short")).unwrap();
    assert_eq!(fs::read(m.path("dir/short")).unwrap(), b"y");
    m.unmount_fusermount();
    assert_fsck_clean(&img);
}

#[test]
fn new_inodes_belong_to_the_caller_and_follow_set_group_id_directories() {
    let s = Scratch::new("fuse-owner");
    let img = fresh_image(&s, "vol.img");
    let m = Mounted::new(&img, &s.path("mnt"), &[]);
    // Root creates, so uid and gid are 0; a set-group-ID directory passes on its group.
    fs::write(m.path("mine"), b"x").unwrap();
    let md = fs::metadata(m.path("mine")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    fs::create_dir(m.path("shared")).unwrap();
    let (ok, _, err) = run(Command::new("chown").arg("1234:4321").arg(m.path("shared")));
    assert!(ok, "chown: {err}");
    fs::set_permissions(m.path("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::write(m.path("shared/f"), b"x").unwrap();
    fs::create_dir(m.path("shared/sub")).unwrap();
    let f = fs::metadata(m.path("shared/f")).unwrap();
    let sub = fs::metadata(m.path("shared/sub")).unwrap();
    assert_eq!((f.uid(), f.gid()), (0, 4321), "a file takes the group of its set-group-ID directory");
    assert_eq!(sub.gid(), 4321);
    assert!(sub.mode() & 0o2000 != 0, "a subdirectory keeps S_ISGID: mode {:o}", sub.mode());
    // chown clears set-user-ID.
    fs::set_permissions(m.path("mine"), fs::Permissions::from_mode(0o4755)).unwrap();
    let (ok, _, err) = run(Command::new("chown").arg("42").arg(m.path("mine")));
    assert!(ok, "chown: {err}");
    let md = fs::metadata(m.path("mine")).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (42, 0o755), "chown keeps no set-user-ID");
    // The umask applies.
    let f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o666).open(m.path("masked")).unwrap();
    drop(f);
    let mode = fs::metadata(m.path("masked")).unwrap().mode() & 0o777;
    assert_eq!(mode & 0o022, 0, "the test process's umask (022 or stricter) applies: {mode:o}");
    m.unmount_fusermount();
    assert_fsck_clean(&img);
}

#[test]
fn read_only_mount_refuses_writes_with_erofs() {
    let s = Scratch::new("fuse-ro");
    let img = fresh_image(&s, "vol.img");
    let m = Mounted::new(&img, &s.path("mnt"), &[]);
    fs::write(m.path("kept"), b"kept").unwrap();
    m.unmount_fusermount();
    let m = Mounted::new(&img, &s.path("mnt"), &["ro"]);
    assert_eq!(fs::read(m.path("kept")).unwrap(), b"kept");
    let e = libc::EROFS;
    assert_eq!(errno_of(fs::write(m.path("new"), b"x")), e, "create");
    assert_eq!(errno_of(fs::OpenOptions::new().write(true).open(m.path("kept"))), e, "open for writing");
    assert_eq!(errno_of(fs::create_dir(m.path("d"))), e, "mkdir");
    assert_eq!(errno_of(fs::remove_file(m.path("kept"))), e, "unlink");
    assert_eq!(errno_of(fs::rename(m.path("kept"), m.path("k2"))), e, "rename");
    m.unmount_sigterm();
    assert_fsck_clean(&img);
}

#[test]
fn syslog_gets_the_records_stderr_gets() {
    let s = Scratch::new("fuse-syslog");
    let img = fresh_image(&s, "vol.img");
    let sock_path = s.path("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind a syslog socket");
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut cmd = Command::new(MOUNT);
    cmd.args(["--syslog", "-v"]).env("OCFS2_SYSLOG_SOCKET", &sock_path);
    let m = Mounted::with(&img, &s.path("mnt"), &[], cmd);
    m.unmount_fusermount();
    let mut records = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = text.contains("unmounted");
        records.push(text);
        if done {
            break;
        }
    }
    // Facility daemon (3), severity info (6): <30>.
    assert!(
        records.iter().any(|r| r.starts_with("<30>ocfs2-mount[") && r.contains("mounted on")),
        "no mount record reached syslog: {records:?}"
    );
    assert!(records.iter().any(|r| r.contains("unmounted")), "no unmount record reached syslog: {records:?}");
}
