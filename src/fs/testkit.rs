//! Helpers for the write path's unit tests: images made by mkfs.ocfs2 or by our mkfs on
//! sparse files, opened writable, and the real tools as referee.

use super::volume::{MountOptions, Volume};
use crate::device::FileDevice;
use crate::mkfs::{mkfs, MkfsOptions};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the images live; each name carries the process id and a sequence number.
const DIR: &str = "/tmp/ocfs2-fs-tests";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A volume image on a sparse file, removed on drop.
pub(crate) struct Img {
    pub path: PathBuf,
    pub what: String,
    /// Problems fsck.ocfs2 reports on the fresh image (mkfs.ocfs2 1.8.7 leaves the system
    /// directory of 512-byte and 1K-block volumes without its index): not ours to judge.
    pub baseline: Vec<String>,
}

fn new_path(name: &str, size_mb: u64) -> PathBuf {
    std::fs::create_dir_all(DIR).unwrap_or_else(|e| panic!("create {DIR}: {e}"));
    remove_stale();
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let path = PathBuf::from(format!("{DIR}/{name}-{n}.{}.img", std::process::id()));
    let f = std::fs::File::create(&path).expect("create image");
    f.set_len(size_mb << 20).expect("size image");
    path
}

/// Removes images of test processes that are gone.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplitn(3, '.');
        if let (Some("img"), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) {
            if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Runs a tool; returns (exit code, stdout and stderr).
fn tool(prog: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{prog} is needed for this test (install ocfs2-tools): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

impl Img {
    /// An image formatted by `mkfs.ocfs2 -q -F args`.
    pub fn tools(name: &str, size_mb: u64, args: &[&str]) -> Img {
        let path = new_path(name, size_mb);
        let mut all = vec!["-q", "-F"];
        all.extend_from_slice(args);
        let p = path.to_string_lossy().into_owned();
        all.push(&p);
        let (code, out) = tool("mkfs.ocfs2", &all);
        assert_eq!(code, 0, "mkfs.ocfs2 {args:?} failed:\n{out}");
        Img::with_baseline(path, format!("mkfs.ocfs2 {}", args.join(" ")))
    }

    /// An image formatted by our mkfs.
    pub fn ours(name: &str, size_mb: u64, opts: MkfsOptions) -> Img {
        let path = new_path(name, size_mb);
        let dev = FileDevice::open_rw(&path).expect("open image");
        mkfs(&dev, &MkfsOptions { force: true, ..opts.clone() }).expect("our mkfs");
        Img::with_baseline(path, format!("our mkfs {opts:?}"))
    }

    fn with_baseline(path: PathBuf, what: String) -> Img {
        let mut img = Img { path, what, baseline: Vec::new() };
        let (_, out) = img.fsck();
        img.baseline = out.lines().filter(|l| is_problem(l)).map(str::to_string).collect();
        img
    }

    /// fsck.ocfs2's findings, without those of the fresh image.
    pub fn findings(&self) -> (i32, String, FsckFindings) {
        let (code, out) = self.fsck();
        let mut f = fsck_findings(&out);
        f.other.retain(|l| !self.baseline.contains(l));
        (code, out, f)
    }

    pub fn open(&self, options: MountOptions) -> Volume {
        Volume::open_path(&self.path, options).unwrap_or_else(|e| panic!("open {}: {e}", self.what))
    }

    pub fn rw(&self) -> Volume {
        self.open(MountOptions::writable())
    }

    pub fn debugfs(&self, cmd: &str) -> String {
        let p = self.path.to_string_lossy().into_owned();
        let (code, out) = tool("debugfs.ocfs2", &["-R", cmd, &p]);
        assert_eq!(code, 0, "debugfs.ocfs2 -R {cmd:?} failed:\n{out}");
        out
    }

    /// `fsck.ocfs2 -fn`: (exit code, output).
    pub fn fsck(&self) -> (i32, String) {
        let p = self.path.to_string_lossy().into_owned();
        tool("fsck.ocfs2", &["-fn", &p])
    }

    /// Panics unless `fsck.ocfs2 -fn` exits 0 without reporting any problem (it exits 0 even
    /// when it found problems that -n left alone).
    pub fn assert_clean(&self) {
        let (code, out) = self.fsck();
        assert!(
            code == 0 && !out.lines().any(|l| is_problem(l) && !self.baseline.iter().any(|b| b == l)),
            "fsck.ocfs2 -fn on {} exited {code}:\n{out}",
            self.what
        );
    }

    /// (total, used) of a chain allocator or the global bitmap, as debugfs.ocfs2 reads them
    /// from the disk.
    pub fn bitmap_counts(&self, system_file: &str) -> (u64, u64) {
        let out = self.debugfs(&format!("stat //{system_file}"));
        let line = out.lines().find(|l| l.contains("Bitmap Total:")).unwrap_or_else(|| panic!("no totals in:\n{out}"));
        let num = |key: &str| -> u64 {
            let at = line.find(key).unwrap() + key.len();
            line[at..].split_whitespace().next().unwrap().parse().unwrap()
        };
        (num("Bitmap Total:"), num("Used:"))
    }
}

impl Drop for Img {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What `fsck.ocfs2 -fn` complained about, sorted into the complaints a test expects.
#[derive(Debug, Default)]
pub(crate) struct FsckFindings {
    /// "Cluster N is marked in the global cluster bitmap but it isn't in use".
    pub unused_clusters: BTreeSet<u64>,
    /// "Inode N is marked as invalid but its position in the inode allocator is marked as in
    /// use" (fsck asks once and then stops reporting them).
    pub unused_inode_bits: BTreeSet<u64>,
    /// Every other question fsck asked.
    pub other: Vec<String>,
}

pub(crate) fn fsck_findings(out: &str) -> FsckFindings {
    let mut f = FsckFindings::default();
    for line in out.lines() {
        let num_after = |key: &str| -> Option<u64> {
            line.find(key).and_then(|at| line[at + key.len()..].split_whitespace().next()?.parse().ok())
        };
        if line.contains("is marked in the global cluster bitmap but it isn't in use") {
            f.unused_clusters.insert(num_after("Cluster ").expect("cluster number"));
        } else if line.contains("is marked as invalid but its position in the inode allocator") {
            f.unused_inode_bits.insert(num_after("Inode ").expect("inode number"));
        } else if is_problem(line) {
            f.other.push(line.to_string());
        }
    }
    f
}

/// A line in which fsck.ocfs2 reports a problem: its questions start with the problem's code
/// in brackets ("[CLUSTER_ALLOC_BIT] ..."), and it exits 0 after -n answered them all "no".
fn is_problem(line: &str) -> bool {
    let l = line.trim_start();
    (l.starts_with('[') && l.contains("] ")) || l.contains("ERROR") || l.contains("error")
}

pub(crate) use crate::testing::seed;
