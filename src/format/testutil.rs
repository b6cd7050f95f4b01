//! Helpers shared by the tests of `format`: a seeded PRNG and fuzz driver, images made by
//! mkfs.ocfs2 with block access and the ocfs2-tools run on them, and parsers for what
//! debugfs.ocfs2 prints.
//!
//! Every image lives in [`IMAGE_DIR`] under a name that carries the test process id, because
//! debugfs.ocfs2 reads images by path while other test binaries may be making their own. The
//! first image a process makes removes the images of processes that no longer run. Images from
//! [`TestImage::mkfs`] belong to one test, are writable and are removed on drop; the shared
//! images ([`img4k`], [`img512`], [`ecc4k`], [`ecc512`]) are read-only and live as long as the
//! process (the next process's cleanup removes them).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};

use crate::format::chain::ChainList;
use crate::format::dinode::DINODE_ID2_OFFSET;
use crate::format::dir::{dir_entries, DirEntry};
use crate::format::group::GroupDesc;

/// Where every test image of `format` is made.
pub const IMAGE_DIR: &str = "/tmp/ocfs2-format-tests";

/// The crate's seeded generator, under the name these tests use.
pub use crate::testing::Rng as XorShift;

/// Calls `f` on buffers of every length 0..=4096: random bytes, and each of `seeds` cut or
/// zero-padded to that length with a few bytes changed. Prints `seed` so a failure replays.
pub fn fuzz(seed: u64, seeds: &[Vec<u8>], mut f: impl FnMut(&[u8])) {
    println!("fuzz seed {seed:#x}");
    let mut rng = XorShift::new(seed);
    for len in 0..=4096usize {
        let mut buf = vec![0u8; len];
        rng.fill(&mut buf);
        f(&buf);
        for s in seeds {
            let mut buf = s.clone();
            buf.resize(len, 0);
            if len > 0 {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(len as u64) as usize;
                    buf[at] = rng.next_u64() as u8;
                }
            }
            f(&buf);
        }
    }
}

/// A volume image made by mkfs.ocfs2.
pub struct TestImage {
    pub path: PathBuf,
    pub block_size: usize,
    file: File,
}

/// Numbers the images of this process, so that two tests may use the same name.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs `prog args path`, answering yes to any question; panics unless it succeeds and returns
/// its standard output.
fn run(prog: &str, args: &[&str], path: &Path) -> String {
    let mut child = Command::new(prog)
        .args(args)
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{prog} is needed for this test (install ocfs2-tools): {e}"));
    let _ = child.stdin.take().expect("stdin").write_all(b"y\ny\ny\ny\n");
    let out = child.wait_with_output().expect("wait for tool");
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes images named `NAME.PID.img` whose process no longer runs.
fn remove_stale_images(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplitn(3, '.');
        let (Some(ext), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ext == "img" && pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl TestImage {
    /// Formats a fresh writable `size` image with `mkfs.ocfs2 -q -F -M local -b block_size`
    /// and `args`; it is removed on drop.
    pub fn mkfs(name: &str, size: &str, block_size: usize, args: &[&str]) -> TestImage {
        Self::format(name, size, block_size, args, true)
    }

    fn format(name: &str, size: &str, block_size: usize, args: &[&str], writable: bool) -> TestImage {
        static CLEANUP: Once = Once::new();
        let dir = Path::new(IMAGE_DIR);
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {IMAGE_DIR}: {e}"));
        CLEANUP.call_once(|| remove_stale_images(dir));
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{name}-{n}.{}.img", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let st = Command::new("truncate").args(["-s", size]).arg(&path).status().expect("run truncate");
        assert!(st.success(), "truncate failed");
        let bs = block_size.to_string();
        let mut all = vec!["-q", "-F", "-M", "local", "-b", bs.as_str()];
        all.extend_from_slice(args);
        run("mkfs.ocfs2", &all, &path);
        let file = OpenOptions::new().read(true).write(writable).open(&path).expect("open image");
        TestImage { path, block_size, file }
    }

    pub fn read(&self, off: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, off).expect("read image");
        buf
    }

    pub fn write(&self, off: u64, data: &[u8]) {
        self.file.write_all_at(data, off).expect("write image (shared images are read-only)");
        self.file.sync_all().expect("sync image");
    }

    pub fn block(&self, blkno: u64) -> Vec<u8> {
        self.read(blkno * self.block_size as u64, self.block_size)
    }

    pub fn put_block(&self, blkno: u64, data: &[u8]) {
        assert_eq!(data.len(), self.block_size);
        self.write(blkno * self.block_size as u64, data);
    }

    /// Runs another ocfs2-tools program on the image (answers yes to questions).
    pub fn tool(&self, prog: &str, args: &[&str]) -> String {
        run(prog, args, &self.path)
    }

    /// Runs `debugfs.ocfs2 -R cmd` on the image.
    pub fn debugfs(&self, cmd: &str) -> String {
        self.tool("debugfs.ocfs2", &["-R", cmd])
    }

    /// Name -> inode block of each entry of a directory, from `ls -l`.
    pub fn ls(&self, dir: &str) -> BTreeMap<String, u64> {
        let mut map = BTreeMap::new();
        for line in self.debugfs(&format!("ls -l {dir}")).lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() >= 9 {
                if let Ok(ino) = cols[0].parse() {
                    map.insert(cols[8..].join(" "), ino);
                }
            }
        }
        assert!(map.len() >= 2, "debugfs listed nothing for {dir}");
        map
    }

    /// The physical block of logical block `lblk` of a file, from `bmap`.
    pub fn bmap(&self, spec: &str, lblk: u64) -> u64 {
        let out = self.debugfs(&format!("bmap {spec} {lblk}"));
        out.trim().parse().unwrap_or_else(|_| panic!("bmap {spec} {lblk} printed {out:?}"))
    }

    /// Name -> inode block of every file in the system directory, from debugfs.
    pub fn system_inodes(&self) -> BTreeMap<String, u64> {
        let mut map = self.ls("//");
        map.remove(".");
        map.remove("..");
        assert!(map.len() > 10, "debugfs listed too few system files: {map:?}");
        map
    }

    pub fn system_inode(&self, name: &str) -> u64 {
        *self.system_inodes().get(name).unwrap_or_else(|| panic!("no system file {name}"))
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The first whitespace-separated token after `key` in debugfs output.
pub fn field_str(out: &str, key: &str) -> String {
    let at = out.find(key).unwrap_or_else(|| panic!("{key:?} not in debugfs output:\n{out}"));
    out[at + key.len()..].split_whitespace().next().unwrap_or("").to_string()
}

/// The number after `key` in debugfs output.
pub fn field(out: &str, key: &str) -> u64 {
    let s = field_str(out, key);
    s.parse().unwrap_or_else(|_| panic!("{key:?} is followed by {s:?}, not a number"))
}

/// The rest of the line after `key`, trimmed.
pub fn line_after(out: &str, key: &str) -> String {
    let at = out.find(key).unwrap_or_else(|| panic!("{key:?} not in debugfs output:\n{out}"));
    out[at + key.len()..].lines().next().unwrap_or("").trim().to_string()
}

/// Lines of a debugfs table that start with a row number, split into columns.
pub fn table_rows(section: &str) -> Vec<Vec<String>> {
    section
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|cols| cols.len() >= 4 && cols[0].parse::<u32>().is_ok())
        .collect()
}

/// Every group descriptor reached through the chain list of the chain allocator inode in
/// `inode_block`, chain by chain.
pub fn chain_group_blknos(img: &TestImage, inode_block: &[u8]) -> Vec<u64> {
    let cl = ChainList::decode(&inode_block[DINODE_ID2_OFFSET..]).expect("chain list");
    let mut out = Vec::new();
    for rec in &cl.recs {
        let mut blkno = rec.c_blkno;
        let mut hops = 0;
        while blkno != 0 {
            hops += 1;
            assert!(hops < 10_000, "chain loops");
            out.push(blkno);
            blkno = GroupDesc::decode(&img.block(blkno)).expect("group descriptor").bg_next_group;
        }
    }
    out
}

/// A shared read-only image, made once per process.
fn shared(cell: &'static OnceLock<TestImage>, name: &str, size: &str, bs: usize, args: &str) -> &'static TestImage {
    cell.get_or_init(|| {
        let args: Vec<&str> = args.split_whitespace().collect();
        TestImage::format(name, size, bs, &args, false)
    })
}

/// 256 MiB, 4K blocks and clusters, 4 slots, 4 MiB journals, default features.
pub fn img4k() -> &'static TestImage {
    static CELL: OnceLock<TestImage> = OnceLock::new();
    shared(&CELL, "img4k", "256M", 4096, "-C 4096 -N 4 -J size=4M -L fmtcore4k")
}

/// 128 MiB, 512-byte blocks, 4K clusters, 2 slots, 4 MiB journals.
pub fn img512() -> &'static TestImage {
    static CELL: OnceLock<TestImage> = OnceLock::new();
    shared(&CELL, "img512", "128M", 512, "-C 4096 -N 2 -J size=4M -L fmtcore512")
}

/// Like [`img4k`] with metaecc.
pub fn ecc4k() -> &'static TestImage {
    static CELL: OnceLock<TestImage> = OnceLock::new();
    shared(&CELL, "ecc4k", "256M", 4096, "-C 4096 -N 4 -J size=4M --fs-features=metaecc")
}

/// Like [`img512`] with metaecc.
pub fn ecc512() -> &'static TestImage {
    static CELL: OnceLock<TestImage> = OnceLock::new();
    shared(&CELL, "ecc512", "128M", 512, "-C 4096 -N 2 -J size=4M --fs-features=metaecc")
}

/// Names added to the root directory of [`indexed_dirs_image`] before it is indexed:
/// chunk-boundary lengths and bytes above 0x7F, which hash differently with signed chars.
pub fn odd_names() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        "\u{e9}".as_bytes().to_vec(),
        "na\u{ef}ve-caf\u{e9}".as_bytes().to_vec(),
        vec![0xFF, 0xFE, 0x80, 0x81],
        b"abcdefghijklmnop".to_vec(),
        b"abcdefghijklmnopq".to_vec(),
        b"abcdefghijklmno".to_vec(),
        b"0123456789abcdef0123456789abcde".to_vec(),
        b"0123456789abcdef0123456789abcdef".to_vec(),
        b"0123456789abcdef0123456789abcdef!".to_vec(),
        b"x".to_vec(),
        b"...".to_vec(),
    ];
    v.push((0..200u32).map(|i| b'a' + (i % 26) as u8).collect());
    v.push((0..255u32).map(|i| 0x80 + (i % 0x7F) as u8).collect());
    v
}

/// A 4K-block volume whose directories are indexed by tunefs.ocfs2 (so they have dir
/// trailers and dx trees): 64 slots make the system directory span several blocks and
/// leaves, and [`odd_names`] are added to the root directory before indexing.
pub fn indexed_dirs_image(name: &str) -> TestImage {
    let img = TestImage::mkfs(
        name,
        "4G",
        4096,
        &["-C", "4096", "-N", "64", "-J", "size=4M", "--fs-features=noinline-data,noindexed-dirs"],
    );
    let lost_found = img.ls("/")["lost+found"];
    let blkno = img.bmap("/", 0);
    let mut block = img.block(blkno);
    let (last_off, mut last) = dir_entries(&block, true).last().expect("root has entries").expect("valid root");
    let mut off = last_off + last.min_rec_len();
    let end = last_off + last.rec_len as usize;
    last.rec_len = last.min_rec_len() as u16;
    last.encode_at(&mut block, last_off).expect("shrink last entry");
    let names = odd_names();
    for (i, n) in names.iter().enumerate() {
        let mut de = DirEntry::new(lost_found, n, crate::format::FT_REG_FILE);
        if i + 1 == names.len() {
            de.rec_len = (end - off) as u16;
        }
        de.encode_at(&mut block, off).expect("add entry");
        off += de.rec_len as usize;
    }
    assert_eq!(off, end);
    img.put_block(blkno, &block);
    img.tool("tunefs.ocfs2", &["-y", "--fs-features=indexed-dirs"]);
    img
}
