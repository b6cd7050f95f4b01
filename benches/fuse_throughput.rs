//! Throughput through FUSE: `ocfs2-mount` on an OCFS2 image against fuse2fs on an ext4 image
//! of the same size, in one run. Sequential write and read of one file (1 GiB by default) with
//! O_DIRECT on the mount, so that the kernel's page cache above FUSE serves nothing; the write
//! ends with fsync, and before the read both images are flushed and dropped from the host's
//! page cache (`dd iflag=nocache`, which is `posix_fadvise(DONTNEED)`), so that the read
//! reaches the disk below. Then
//! create, stat and unlink of N files (100,000 by default) in one directory, each phase
//! closed by an fsync of the directory. Prints MiB/s, operations per second and ratios.
//!
//! `cargo bench -p ocfs2-examples --bench fuse_throughput -- [MiB] [N] [DIR]` (DIR, default
//! /var/tmp, holds the two 4 GiB sparse images, removed at the end). Needs root, /dev/fuse,
//! fusermount3 (fuse3), fuse2fs and mkfs.ocfs2/mkfs.ext4.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE_SIZE: u64 = 4 << 30;
const CHUNK: usize = 1 << 20;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn is_mounted(dir: &Path) -> bool {
    let want = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()).to_string_lossy().into_owned();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str()) && l.contains(" - fuse"))
}

fn wait_mounted(dir: &Path, child: &mut Option<Child>) {
    let start = Instant::now();
    while !is_mounted(dir) {
        if let Some(c) = child.as_mut() {
            if let Some(status) = c.try_wait().unwrap() {
                panic!("the FUSE daemon exited with {status} before mounting");
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{} not mounted after 30 s", dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn unmount(dir: &Path, child: Option<Child>) {
    run(Command::new("fusermount3").arg("-u").arg(dir));
    if let Some(mut c) = child {
        let status = c.wait().unwrap();
        assert!(status.success(), "ocfs2-mount exited with {status}");
    }
    let start = Instant::now();
    while is_mounted(dir) && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes the image's dirty pages and drops it from the host page cache.
fn drop_image_cache(img: &Path) {
    File::open(img).unwrap().sync_all().unwrap();
    run(Command::new("dd").arg(format!("if={}", img.display())).args(["iflag=nocache", "count=0", "status=none"]));
}

/// A buffer of `len` bytes aligned for O_DIRECT, found inside a larger vector.
struct Aligned {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let buf = vec![0u8; len + 4096];
        let off = buf.as_ptr().align_offset(4096);
        Aligned { buf, off, len }
    }
    fn get(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

struct Figures {
    write_mib_s: f64,
    read_mib_s: f64,
    create: f64,
    stat: f64,
    unlink: f64,
}

/// Runs the workload on the filesystem mounted at `mnt`, whose image is `img`.
fn workload(img: &Path, mnt: &Path, mib: usize, n: usize) -> Figures {
    let file = mnt.join("big");
    let mut buf = Aligned::new(CHUNK);
    for (i, b) in buf.get().iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    let t = Instant::now();
    {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&file)
            .unwrap();
        for _ in 0..mib {
            f.write_all(buf.get()).unwrap();
        }
        f.sync_all().unwrap();
    }
    let write_mib_s = mib as f64 / t.elapsed().as_secs_f64();
    drop_image_cache(img);
    let t = Instant::now();
    {
        let mut f = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&file).unwrap();
        let mut total = 0usize;
        loop {
            let got = f.read(buf.get()).unwrap();
            if got == 0 {
                break;
            }
            total += got;
        }
        assert_eq!(total, mib * CHUNK);
    }
    let read_mib_s = mib as f64 / t.elapsed().as_secs_f64();
    fs::remove_file(&file).unwrap();

    let dir = mnt.join("many");
    fs::create_dir(&dir).unwrap();
    let names: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("file-{i:07}"))).collect();
    let sync_dir = || File::open(&dir).unwrap().sync_all().unwrap();
    let rate = |t: Instant| n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for p in &names {
        File::create(p).unwrap();
    }
    sync_dir();
    let create = rate(t);
    let t = Instant::now();
    for p in &names {
        assert_eq!(fs::metadata(p).unwrap().len(), 0);
    }
    let stat = rate(t);
    let t = Instant::now();
    for p in &names {
        fs::remove_file(p).unwrap();
    }
    sync_dir();
    let unlink = rate(t);
    Figures { write_mib_s, read_mib_s, create, stat, unlink }
}

fn ours(img: &Path, mnt: &Path, mib: usize, n: usize) -> Figures {
    run(Command::new("mkfs.ocfs2").args(["-q", "-F", "-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]).arg(img));
    let child = Command::new(env!("CARGO_BIN_EXE_ocfs2-mount"))
        .args(["-f", "-o", "cache_mb=512"])
        .arg(img)
        .arg(mnt)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Some(child);
    wait_mounted(mnt, &mut child);
    let figures = workload(img, mnt, mib, n);
    unmount(mnt, child);
    figures
}

fn fuse2fs(img: &Path, mnt: &Path, mib: usize, n: usize) -> Figures {
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(img));
    // fuse2fs puts itself in the background once mounted.
    run(Command::new("fuse2fs").arg(img).arg(mnt));
    wait_mounted(mnt, &mut None);
    let figures = workload(img, mnt, mib, n);
    unmount(mnt, None);
    figures
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mib: usize = args.first().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let n: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = Path::new(args.get(2).map_or("/var/tmp", String::as_str)).to_path_buf();
    let (img, eimg) = (dir.join("ocfs2-bench-fuse.img"), dir.join("ocfs2-bench-fuse.ext4"));
    let mnt = dir.join("ocfs2-bench-fuse-mnt");
    fs::create_dir_all(&mnt).unwrap();
    for p in [&img, &eimg] {
        File::create(p).unwrap().set_len(IMAGE_SIZE).unwrap();
    }
    let o = ours(&img, &mnt, mib, n);
    let e = fuse2fs(&eimg, &mnt, mib, n);
    let _ = fs::remove_file(&img);
    let _ = fs::remove_file(&eimg);
    println!("through FUSE, {} GiB images, O_DIRECT file I/O:", IMAGE_SIZE >> 30);
    println!("                         ocfs2-mount   fuse2fs (ext4)   ratio");
    println!(
        "  write {mib} MiB, MiB/s {:12.1} {:14.1}   {:8.3}",
        o.write_mib_s,
        e.write_mib_s,
        o.write_mib_s / e.write_mib_s
    );
    println!(
        "  read  {mib} MiB, MiB/s {:12.1} {:14.1}   {:8.3}",
        o.read_mib_s,
        e.read_mib_s,
        o.read_mib_s / e.read_mib_s
    );
    println!("{n} files in one directory, operations per second:");
    for (what, a, b) in [("create", o.create, e.create), ("stat", o.stat, e.stat), ("unlink", o.unlink, e.unlink)] {
        println!("  {what:8}               {a:12.0} {b:14.0}   {:8.3}", a / b);
    }
}
