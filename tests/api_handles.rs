//! The path and handle API (`Volume::open_file`, `File`, `Dir`, the `std::fs`-like path
//! methods) against the referees: after each workload `fsck.ocfs2 -fn` finds the volume clean
//! and `debugfs.ocfs2` dumps what the model says every file holds.

mod common;

use common::*;
use ocfs2::{Error, FileType, MountOptions, OpenOptions, Timestamp, Volume};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A fresh volume made by mkfs.ocfs2, with what fsck.ocfs2 says of it fresh (at 512-byte
/// blocks mkfs.ocfs2 leaves the system directory unindexed, and fsck reports that).
fn image_with_baseline(s: &Scratch, name: &str, args: &[&str]) -> (std::path::PathBuf, Vec<String>) {
    let img = s.path(name);
    sparse_image(&img, 256 << 20);
    let mut all = vec!["-M", "local", "-N", "2"];
    all.extend_from_slice(args);
    mkfs_ocfs2(&img, &all);
    let baseline = fsck_problem_lines(&img);
    (img, baseline)
}

fn image(s: &Scratch, name: &str, args: &[&str]) -> std::path::PathBuf {
    let (img, baseline) = image_with_baseline(s, name, args);
    assert!(baseline.is_empty(), "fsck.ocfs2 finds problems in a fresh {name}: {baseline:?}");
    img
}

fn dump(img: &Path, s: &Scratch, path: &str) -> Vec<u8> {
    let out = s.path("dumped");
    let _ = std::fs::remove_file(&out);
    debugfs(img, &format!("dump {path} {}", out.display()));
    std::fs::read(&out).unwrap_or_else(|e| panic!("debugfs.ocfs2 dumped nothing for {path}: {e}"))
}

fn errno<T: std::fmt::Debug>(r: Result<T, Error>) -> i32 {
    r.expect_err("the call should fail").errno()
}

#[test]
fn path_calls_behave_like_posix_and_the_referees_agree() {
    let s = Scratch::new("api-paths");
    let img = image(&s, "paths.img", &["-b", "4096", "-C", "4096"]);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let rw = || {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        o
    };

    vol.create_dir_all("/a/b/c", 0o750).unwrap();
    vol.create_dir_all("a/b/c/", 0o750).unwrap();
    assert_eq!(errno(vol.create_dir("/", 0o755)), libc::EEXIST);
    assert!(vol.stat("/a/b/c").unwrap().is_dir());
    assert_eq!(vol.stat("/a/b").unwrap().permissions(), 0o750);

    let mut f = vol.open_file("/a/b/notes", rw().create(true).mode(0o600)).unwrap();
    f.write_all(b"first line\n").unwrap();
    f.write_all(b"second line\n").unwrap();
    f.seek(SeekFrom::Start(6)).unwrap();
    let mut word = [0u8; 4];
    f.read_exact(&mut word).unwrap();
    assert_eq!(&word, b"line");
    assert_eq!(f.seek(SeekFrom::End(-5)).unwrap(), 18);
    assert_eq!(f.metadata().unwrap().permissions(), 0o600);
    f.close().unwrap();

    let mut log = vol.open_file("/a/log", OpenOptions::new().append(true).create(true)).unwrap();
    log.write_all(b"one ").unwrap();
    log.write_at(b"two ", 0).unwrap(); // append mode: the offset is ignored, as on Linux
    log.write_all(b"three").unwrap();
    assert_eq!(errno(log.read_at(&mut [0u8; 4], 0)), libc::EBADF);
    drop(log);
    assert_eq!(vol.open_file("/a/log", OpenOptions::new().read(true)).unwrap().metadata().unwrap().size, 13);

    assert_eq!(errno(vol.open_file("/a/log", rw().create_new(true))), libc::EEXIST);
    assert_eq!(errno(vol.open_file("/a/missing", &rw())), libc::ENOENT);
    assert_eq!(errno(vol.open_file("/a/b", &rw())), libc::EISDIR);
    assert_eq!(errno(vol.open_file("/a/log/", OpenOptions::new().read(true))), libc::ENOTDIR);
    assert_eq!(errno(vol.open_file("/a/log/x", rw().create(true))), libc::ENOTDIR);
    let long = format!("/a/{}", "n".repeat(256));
    assert_eq!(errno(vol.open_file(&long, rw().create(true))), libc::ENAMETOOLONG);
    assert_eq!(errno(vol.create_dir(&long, 0o755)), libc::ENAMETOOLONG);
    assert_eq!(errno(vol.open_file("/a/log", &OpenOptions::new())), libc::EINVAL);
    assert_eq!(errno(vol.open_dir("/a/log")), libc::ENOTDIR);

    let truncated = vol.open_file("/a/log", rw().truncate(true)).unwrap();
    assert_eq!(truncated.metadata().unwrap().size, 0);
    truncated.write_at(b"after truncate", 0).unwrap();

    vol.symlink_path("b/notes", "/a/to-notes").unwrap();
    assert_eq!(vol.read_link_path("/a/to-notes").unwrap(), b"b/notes");
    assert_eq!(vol.lstat("/a/to-notes").unwrap().file_type, FileType::Symlink);
    assert_eq!(vol.stat("/a/to-notes").unwrap().size, 23);
    let mut via_link = String::new();
    vol.open_file("/a/to-notes", OpenOptions::new().read(true)).unwrap().read_to_string(&mut via_link).unwrap();
    assert_eq!(via_link, "first line\nsecond line\n");

    vol.hard_link("/a/b/notes", "/a/b/c/notes-again").unwrap();
    assert_eq!(vol.stat("/a/b/notes").unwrap().nlink, 2);
    vol.rename_path("/a/b/c/notes-again", "/a/renamed").unwrap();
    assert_eq!(errno(vol.stat("/a/b/c/notes-again")), libc::ENOENT);
    vol.mknod_path("/a/fifo", libc::S_IFIFO as u16 | 0o644, 0).unwrap();
    assert_eq!(vol.lstat("/a/fifo").unwrap().file_type, FileType::Fifo);
    assert_eq!(errno(vol.open_file("/a/fifo", OpenOptions::new().read(true))), libc::EINVAL);

    vol.set_permissions("/a/renamed", 0o640).unwrap();
    vol.set_owner("/a/renamed", Some(1000), Some(100)).unwrap();
    let when = Timestamp { secs: 1_000_000_000, nsecs: 5 };
    vol.set_times("/a/renamed", Some(when), Some(when)).unwrap();
    let m = vol.stat("/a/renamed").unwrap();
    assert_eq!((m.permissions(), m.uid, m.gid, m.mtime, m.atime), (0o640, 1000, 100, when, when));
    vol.set_len("/a/renamed", 5).unwrap();
    assert_eq!(vol.stat("/a/b/notes").unwrap().size, 5);

    assert_eq!(errno(vol.remove_dir("/a/b")), libc::ENOTEMPTY);
    assert_eq!(errno(vol.remove_file("/a/b")), libc::EISDIR);
    assert_eq!(errno(vol.remove_file("/a/log/")), libc::ENOTDIR);
    assert_eq!(errno(vol.remove_dir("/a/b/c/..")), libc::EINVAL);
    vol.remove_dir("/a/b/c").unwrap();
    vol.remove_file("/a/fifo").unwrap();

    let mut names: Vec<(Vec<u8>, Option<FileType>)> =
        vol.open_dir("/a").unwrap().map(|e| e.map(|e| (e.name, e.file_type))).collect::<Result<_, _>>().unwrap();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<(&[u8], FileType)> = vec![
        (b".", FileType::Directory),
        (b"..", FileType::Directory),
        (b"b", FileType::Directory),
        (b"log", FileType::Regular),
        (b"renamed", FileType::Regular),
        (b"to-notes", FileType::Symlink),
    ];
    assert_eq!(names, want.into_iter().map(|(n, t)| (n.to_vec(), Some(t))).collect::<Vec<_>>());
    drop(truncated);
    vol.close().unwrap();

    assert_fsck_clean(&img);
    assert_eq!(dump(&img, &s, "/a/b/notes"), b"first");
    assert_eq!(dump(&img, &s, "/a/log"), b"after truncate");
    let stat = debugfs(&img, "stat /a/renamed");
    assert!(stat.contains("User: 1000") && stat.contains("Group: 100 ") && stat.contains("Mode: 0640"), "{stat}");

    let ro = Volume::open_path(&img, MountOptions::default()).unwrap();
    assert_eq!(errno(ro.open_file("/a/log", OpenOptions::new().write(true))), libc::EROFS);
    assert_eq!(errno(ro.create_dir("/new", 0o755)), libc::EROFS);
    let mut text = String::new();
    ro.open_file("/a/log", OpenOptions::new().read(true)).unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "after truncate");
}

#[test]
fn an_unlinked_open_file_lives_until_its_last_handle_closes() {
    let s = Scratch::new("api-orphan");
    let img = image(&s, "orphan.img", &["-b", "4096", "-C", "4096"]);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let data = Rng::new(3).bytes(300_000);
    let f = vol.open_file("/scratch", OpenOptions::new().read(true).write(true).create(true)).unwrap();
    f.write_at(&data, 0).unwrap();
    let ino = f.ino();
    vol.remove_file("/scratch").unwrap();
    assert_eq!(errno(vol.stat("/scratch")), libc::ENOENT);
    f.write_at(b"still writable", 100).unwrap();
    let mut back = vec![0u8; data.len()];
    assert_eq!(f.read_at(&mut back, 0).unwrap(), data.len());
    assert_eq!(&back[100..114], b"still writable");
    assert_eq!(f.metadata().unwrap().nlink, 0);
    // While open, the inode waits in the orphan directory, as the kernel keeps it.
    let orphan_dir = vol.system_file("orphan_dir:0000").unwrap();
    assert_eq!(vol.lookup(orphan_dir, format!("{ino:016x}").as_bytes()).unwrap(), ino);
    f.close().unwrap();
    vol.close().unwrap();
    assert_fsck_clean(&img);
    let orphans = debugfs(&img, "ls //orphan_dir:0000");
    assert!(!orphans.contains(&format!("{ino:016x}")), "orphan dir: {orphans}");
}

#[test]
fn threads_appending_to_one_file_never_interleave_records() {
    let s = Scratch::new("api-append");
    let img = image(&s, "append.img", &["-b", "4096", "-C", "4096"]);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let f = vol.open_file("/journal", OpenOptions::new().append(true).create(true)).unwrap();
    const THREADS: usize = 4;
    const RECORDS: usize = 200;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let f = &f;
            scope.spawn(move || {
                for r in 0..RECORDS {
                    // Records of different lengths so that an interleaving would show.
                    let body = format!("{t}:{r}:{}\n", "x".repeat((t * 37 + r) % 300));
                    (&*f).write_all(body.as_bytes()).unwrap();
                }
            });
        }
    });
    f.close().unwrap();
    vol.close().unwrap();
    assert_fsck_clean(&img);
    let text = String::from_utf8(dump(&img, &s, "/journal")).unwrap();
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (t, r, body) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let (t, r): (usize, usize) = (t.parse().unwrap(), r.parse().unwrap());
        assert_eq!(body.len(), (t * 37 + r) % 300, "record {t}:{r} was cut: {line:?}");
        assert!(body.bytes().all(|b| b == b'x'), "record {t}:{r} holds another's bytes");
        let last = seen.insert(t, r);
        assert_eq!(last.map_or(0, |l| l + 1), r, "thread {t}'s records out of order");
    }
    assert_eq!(seen.len(), THREADS);
    assert!(seen.values().all(|&r| r == RECORDS - 1));
}

/// One random data operation through a `File`, applied to the model too.
fn random_op(f: &ocfs2::File, model: &mut Vec<u8>, rng: &mut Rng, max: u64, sparse: bool) -> String {
    let off = rng.below(max);
    let len = 1 + rng.below(max / 8);
    let choice = rng.below(if sparse { 8 } else { 5 });
    match choice {
        0 | 1 => {
            let data = rng.bytes(len as usize);
            f.write_at(&data, off).unwrap();
            let end = (off + len) as usize;
            if model.len() < end {
                model.resize(end, 0);
            }
            model[off as usize..end].copy_from_slice(&data);
            format!("write {off}+{len}")
        }
        2 => {
            f.set_len(off).unwrap();
            model.resize(off as usize, 0);
            format!("truncate {off}")
        }
        3 | 4 => {
            let keep = rng.below(2) == 0;
            f.zero_range(off, len, keep).unwrap();
            let end = (off + len) as usize;
            let zero_end = if keep { end.min(model.len()) } else { end };
            if model.len() < zero_end {
                model.resize(zero_end, 0);
            }
            for b in model.iter_mut().take(zero_end).skip(off as usize) {
                *b = 0;
            }
            format!("zero_range {off}+{len} keep_size={keep}")
        }
        5 => {
            f.punch_hole(off, len).unwrap();
            let end = ((off + len) as usize).min(model.len());
            for b in model.iter_mut().take(end).skip(off as usize) {
                *b = 0;
            }
            format!("punch {off}+{len}")
        }
        _ => {
            // Preallocation past the end with keep_size is left out: fsck.ocfs2 1.8.7 reports
            // such files (INODE_SPARSE_SIZE) though the kernel makes them too.
            let keep = (off + len) as usize <= model.len() && rng.below(2) == 0;
            f.allocate(off, len, keep).unwrap();
            let end = (off + len) as usize;
            if !keep && model.len() < end {
                model.resize(end, 0);
            }
            format!("allocate {off}+{len} keep_size={keep}")
        }
    }
}

#[test]
fn random_file_operations_match_a_model_and_the_referees() {
    let s = Scratch::new("api-random");
    let seed = seed();
    println!("seed {seed}");
    let volumes: [(&str, &[&str], bool); 3] = [
        ("4k.img", &["-b", "4096", "-C", "4096"], true),
        ("512b-1m.img", &["-b", "512", "-C", "1M", "--fs-features=noinline-data"], true),
        ("nosparse.img", &["-b", "4096", "-C", "4096", "--fs-features=nosparse,nounwritten"], false),
    ];
    for (name, args, sparse) in volumes {
        let (img, baseline) = image_with_baseline(&s, name, args);
        let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
        let mut rng = Rng::new(seed ^ name.len() as u64);
        let f = vol.open_file("/fsx", OpenOptions::new().read(true).write(true).create(true)).unwrap();
        let mut model = Vec::new();
        let max = 3 << 20;
        let mut history = Vec::new();
        for step in 0..400 {
            history.push(random_op(&f, &mut model, &mut rng, max, sparse));
            let meta = f.metadata().unwrap();
            assert_eq!(meta.size, model.len() as u64, "{name} seed {seed} step {step}: size after {history:?}");
            if step % 10 == 0 {
                let mut back = vec![0u8; model.len()];
                let n = f.read_at(&mut back, 0).unwrap();
                assert_eq!(n, model.len());
                assert!(back == model, "{name} seed {seed} step {step}: contents differ after {:?}", history.last());
            }
        }
        f.close().unwrap();
        vol.close().unwrap();
        assert_fsck_as_fresh(&img, &baseline);
        assert!(dump(&img, &s, "/fsx") == model, "{name} seed {seed}: debugfs.ocfs2 dumps other contents");
    }
}
