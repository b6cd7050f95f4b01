//! Create, stat and unlink of N empty files in one directory through `Volume` (O_DIRECT, a
//! metadata cache large enough for every inode, group commit), against the Linux kernel's ext4 on a loop
//! device doing the same through the VFS, in one run. Prints operations per second and ratios.
//!
//! `cargo bench -p ocfs2-examples --bench metadata_ops -- [N] [DIR]` (N default 100000; DIR,
//! default /var/tmp, holds the two 2 GiB images, removed at the end; ext4 needs root and loop
//! devices).

use ocfs2::{MountOptions, Volume};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn rate(n: usize, t: Instant) -> f64 {
    n as f64 / t.elapsed().as_secs_f64()
}

/// (create, stat, unlink) operations per second through our library.
fn ours(img: &Path, n: usize) -> (f64, f64, f64) {
    run(Command::new("mkfs.ocfs2").args(["-q", "-F", "-M", "local", "-b", "4096", "-C", "4096", "-N", "1"]).arg(img));
    // Room to cache every inode, as the kernel's page cache holds ext4's.
    let options = MountOptions { direct: Some(true), cache_mb: 1024, ..MountOptions::writable() };
    let vol = Volume::open_path(img, options).unwrap();
    let dir = vol.mkdir(vol.root(), b"many", 0o755).unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("file-{i:07}")).collect();
    let t = Instant::now();
    for name in &names {
        vol.create(dir, name.as_bytes(), 0o644).unwrap();
    }
    let create = rate(n, t);
    let t = Instant::now();
    for name in &names {
        let ino = vol.lookup(dir, name.as_bytes()).unwrap();
        assert_eq!(vol.metadata(ino).unwrap().size, 0);
    }
    let stat = rate(n, t);
    let t = Instant::now();
    for name in &names {
        vol.unlink(dir, name.as_bytes()).unwrap();
    }
    let unlink = rate(n, t);
    vol.close().unwrap();
    (create, stat, unlink)
}

/// The same on ext4 on a loop device, with a `sync` closing the create and unlink phases so
/// that the work reaches the disk as ours does.
fn ext4(img: &Path, mnt: &Path, n: usize) -> (f64, f64, f64) {
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(img));
    std::fs::create_dir_all(mnt).unwrap();
    run(Command::new("mount").args(["-o", "loop"]).arg(img).arg(mnt));
    let dir = mnt.join("many");
    std::fs::create_dir(&dir).unwrap();
    let names: Vec<std::path::PathBuf> = (0..n).map(|i| dir.join(format!("file-{i:07}"))).collect();
    let sync = || run(&mut Command::new("sync"));
    let t = Instant::now();
    for p in &names {
        std::fs::File::create(p).unwrap();
    }
    sync();
    let create = rate(n, t);
    let t = Instant::now();
    for p in &names {
        assert_eq!(std::fs::metadata(p).unwrap().len(), 0);
    }
    let stat = rate(n, t);
    let t = Instant::now();
    for p in &names {
        std::fs::remove_file(p).unwrap();
    }
    sync();
    let unlink = rate(n, t);
    run(Command::new("umount").arg(mnt));
    (create, stat, unlink)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let n: usize = args.first().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = Path::new(args.get(1).map_or("/var/tmp", String::as_str)).to_path_buf();
    let (img, eimg, mnt) =
        (dir.join("ocfs2-bench-meta.img"), dir.join("ocfs2-bench-meta.ext4"), dir.join("ocfs2-bench-mnt"));
    for p in [&img, &eimg] {
        let f = std::fs::File::create(p).unwrap();
        f.set_len(2 << 30).unwrap();
    }
    let o = ours(&img, n);
    let e = ext4(&eimg, &mnt, n);
    let _ = std::fs::remove_file(&img);
    let _ = std::fs::remove_file(&eimg);
    println!("{n} files in one directory, operations per second:");
    println!("            ocfs2-rs     ext4 (kernel, loop)   ratio");
    for (what, a, b) in [("create", o.0, e.0), ("stat", o.1, e.1), ("unlink", o.2, e.2)] {
        println!("  {what:8} {a:10.0}   {b:10.0}             {:.3}", a / b);
    }
}
