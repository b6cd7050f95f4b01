//! Failures reach the caller as the right errno and lose nothing: a full volume (ENOSPC, and a
//! nearly full volume still deletes and writes again), I/O errors from the device (EIO) on a
//! data write and on a journal write, data operations on the wrong kind of file (EISDIR,
//! EINVAL), sizes past the largest file (EFBIG), paths through a file (ENOTDIR). After each,
//! `fsck.ocfs2 -fn` must find the volume clean, and what was written before is intact.

mod common;

use common::*;
use ocfs2::device::{FaultKind, FaultPlan};
use ocfs2::{BlockDevice, FaultDevice, MemDevice, MountOptions, Volume};
use std::sync::Arc;

fn image(s: &Scratch, name: &str, size_mb: u64) -> std::path::PathBuf {
    let img = s.path(name);
    sparse_image(&img, size_mb << 20);
    mkfs_ocfs2(&img, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]);
    img
}

#[test]
fn a_full_volume_gives_enospc_and_still_deletes_and_writes() {
    let s = Scratch::new("write-fail-enospc");
    let img = image(&s, "full.img", 64);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let root = vol.root();
    let keep = vol.create(root, b"keep", 0o644).unwrap();
    let kept = Rng::new(7).bytes(300_000);
    vol.write(keep, 0, &kept).unwrap();
    let chunk = Rng::new(8).bytes(1 << 20);
    let mut files = Vec::new();
    let mut written = 0u64;
    let err = 'fill: loop {
        let name = format!("fill{}", files.len());
        let ino = match vol.create(root, name.as_bytes(), 0o644) {
            Ok(ino) => ino,
            Err(e) => break 'fill e,
        };
        files.push(name);
        for k in 0..8u64 {
            if let Err(e) = vol.write(ino, k << 20, &chunk) {
                break 'fill e;
            }
            written += 1 << 20;
        }
    };
    assert_eq!(err.errno(), libc::ENOSPC, "{err}");
    println!("ENOSPC after {written} bytes in {} files: {err}", files.len());
    assert!(written > 40 << 20, "a 64 MB volume holds more than 40 MB of data");
    assert_eq!(vol.read_all(keep).unwrap(), kept, "data written before the volume filled");
    // Still consistent while full.
    vol.close().unwrap();
    assert_fsck_clean(&img);

    // A full volume still deletes, and the space comes back.
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let before = vol.statfs().unwrap().free_clusters;
    for name in files.iter().take(3) {
        vol.unlink(root, name.as_bytes()).unwrap();
    }
    let again = vol.create(root, b"again", 0o644).unwrap();
    vol.write(again, 0, &chunk).unwrap();
    assert!(vol.statfs().unwrap().free_clusters > before, "the deleted files' clusters are free again");
    vol.close().unwrap();
    assert_fsck_clean(&img);
}

/// Runs `op` on a volume whose device fails the `n`-th write from now; returns the error.
fn with_failed_write(img: &std::path::Path, skip: u64, op: impl Fn(&Volume) -> ocfs2::fs::Result<()>) -> ocfs2::Error {
    let dev = Arc::new(FaultDevice::new(MemDevice::from_bytes(std::fs::read(img).unwrap()), FaultPlan::new()));
    let vol = Volume::open(dev.clone() as Arc<dyn BlockDevice>, MountOptions::writable()).unwrap();
    dev.set_plan(FaultPlan::new().with(FaultKind::FailWrite(dev.writes() + skip)));
    let err = op(&vol).expect_err("the failed write reaches the caller");
    dev.set_plan(FaultPlan::new());
    drop(vol);
    std::fs::write(img, dev.inner().to_bytes()).unwrap();
    err
}

#[test]
fn device_errors_reach_the_caller_as_eio_and_lose_nothing() {
    let s = Scratch::new("write-fail-eio");
    let img = image(&s, "eio.img", 64);
    let old = Rng::new(1).bytes(50_000);
    {
        let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
        let ino = vol.create(vol.root(), b"old", 0o644).unwrap();
        vol.write(ino, 0, &old).unwrap();
        vol.close().unwrap();
    }
    // The first write of an extending write is file data; the journal's come at the sync.
    for skip in 0..4 {
        let err = with_failed_write(&img, skip, |vol| {
            let ino = vol.resolve("/old")?;
            vol.write(ino, 50_000, &[7u8; 20_000]).map(|_| ())?;
            vol.create(vol.root(), b"new", 0o644)?;
            vol.sync()
        });
        assert_eq!(err.errno(), libc::EIO, "failed write {skip}: {err}");
        // Recovery by a fresh open, and the file is either as before or fully extended.
        let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
        let got = vol.read_all(vol.resolve("/old").unwrap()).unwrap();
        assert!(
            got == old || (got.len() == 70_000 && got[..50_000] == old[..] && got[50_000..].iter().all(|&b| b == 7)),
            "failed write {skip}: /old has {} bytes",
            got.len()
        );
        let ino = vol.resolve("/old").unwrap();
        vol.truncate(ino, 50_000).unwrap();
        if vol.resolve("/new").is_ok() {
            vol.unlink(vol.root(), b"new").unwrap();
        }
        vol.close().unwrap();
        assert_fsck_clean(&img);
    }
}

#[test]
fn data_operations_on_the_wrong_kind_of_file_fail_cleanly() {
    let s = Scratch::new("write-fail-kinds");
    let img = image(&s, "kinds.img", 64);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let root = vol.root();
    let dir = vol.mkdir(root, b"d", 0o755).unwrap();
    let file = vol.create(root, b"f", 0o644).unwrap();
    vol.write(file, 0, b"content").unwrap();
    assert_eq!(vol.write(dir, 0, b"x").unwrap_err().errno(), libc::EISDIR);
    assert_eq!(vol.truncate(dir, 0).unwrap_err().errno(), libc::EISDIR);
    assert_eq!(vol.punch_hole(dir, 0, 10).unwrap_err().errno(), libc::EISDIR);
    assert_eq!(vol.fallocate(dir, 0, 10, false).unwrap_err().errno(), libc::EISDIR);
    assert_eq!(vol.fallocate(file, 0, 0, false).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(vol.write(file, u64::MAX - 3, b"12345").unwrap_err().errno(), libc::EFBIG);
    assert_eq!(vol.truncate(file, 1 << 62).unwrap_err().errno(), libc::EFBIG);
    assert_eq!(vol.create(file, b"under-a-file", 0o644).unwrap_err().errno(), libc::ENOTDIR);
    assert_eq!(vol.resolve("/f/x").unwrap_err().errno(), libc::ENOTDIR);
    assert_eq!(vol.create(root, &[b'n'; 256], 0o644).unwrap_err().errno(), libc::ENAMETOOLONG);
    assert_eq!(vol.create(root, b"f", 0o644).unwrap_err().errno(), libc::EEXIST);
    assert_eq!(vol.read_all(file).unwrap(), b"content");
    vol.close().unwrap();
    assert_fsck_clean(&img);
}
