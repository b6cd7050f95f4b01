//! symlink, mknod, link, rename and setattr, mixed with create, mkdir, unlink and rmdir, and
//! orphans (inodes held open past their last name), with the real ocfs2-tools as referee.
//!
//! - A randomized run per volume (4K and 512-byte blocks; made by mkfs.ocfs2 and by ours; with
//!   and without inline data): every operation is checked against an in-memory model at once;
//!   at checkpoints (clean closes, sometimes with holds left) `debugfs.ocfs2 -R "ls -l"` of
//!   every directory must equal the model (inode, mode, links, owner, size, names), `stat`
//!   must show the symlink targets and the times setattr gave, the orphan directory must list
//!   exactly the held orphans, and `fsck.ocfs2 -fn` must report no problem at all.
//! - Every refusal with its errno, the link limit (EMLINK), orphans freed at the last hold, at
//!   the next open after a close or a crash, and of another slot recovered at open; threads
//!   renaming at once; crashes at random writes during renames, links and orphans.
//!
//! Seeds are printed; `OCFS2_TEST_SEED` replays one, `WRITE_NAMESPACE_ONLY=<case>` runs one
//! volume of the randomized run (`tools-4k-indexed` runs only when named),
//! `WRITE_NAMESPACE_OPS` sets its length. debugfs.ocfs2 1.8.7 prints no device numbers, so
//! those are read from the image's raw inode bytes and compared with the kernel's
//! `huge_encode_dev` computed here.

mod common;

use common::*;
use ocfs2::device::{FaultKind, FaultPlan};
use ocfs2::fs::{dev_makedev, SetAttr, Timestamp};
use ocfs2::mkfs::{mkfs, FeatureRequest, MkfsOptions, MountType};
use ocfs2::{BlockDevice, FaultDevice, FileDevice, FileType, MemDevice, MountOptions, Volume};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;
const EINVAL: i32 = 22;
const EMLINK: i32 = 31;
const ENAMETOOLONG: i32 = 36;
const ENOTEMPTY: i32 = 39;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Sock,
    Chr,
    Blk,
}

impl Kind {
    fn file_type(self) -> FileType {
        match self {
            Kind::File => FileType::Regular,
            Kind::Dir => FileType::Directory,
            Kind::Symlink => FileType::Symlink,
            Kind::Fifo => FileType::Fifo,
            Kind::Sock => FileType::Socket,
            Kind::Chr => FileType::CharDevice,
            Kind::Blk => FileType::BlockDevice,
        }
    }

    /// The type letter of debugfs.ocfs2's `ls -l` (which shows fifos as `f`).
    fn letter(self) -> char {
        match self {
            Kind::File => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Fifo => 'f',
            Kind::Sock => 's',
            Kind::Chr => 'c',
            Kind::Blk => 'b',
        }
    }

    fn is_device(self) -> bool {
        matches!(self, Kind::Chr | Kind::Blk)
    }
}

/// `ls -l` permissions, with setuid, setgid and sticky shown in the execute columns.
fn mode_string(kind: Kind, perm: u16) -> String {
    let mut s = String::new();
    s.push(kind.letter());
    for (shift, special, lower, upper) in [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S'), (0, 0o1000, 't', 'T')] {
        let bits = (perm >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (perm & special != 0, x) {
            (true, true) => lower,
            (true, false) => upper,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// What the model knows of one inode.
#[derive(Clone, Debug)]
struct Node {
    kind: Kind,
    perm: u16,
    uid: u32,
    gid: u32,
    /// Names of a non-directory.
    nlink: u32,
    target: Vec<u8>,
    /// User-space `dev_t` of a device.
    rdev: u64,
    /// Times set through setattr that no later operation has changed.
    atime: Option<Timestamp>,
    mtime: Option<Timestamp>,
    ctime: Option<Timestamp>,
}

impl Node {
    fn new(kind: Kind, perm: u16) -> Node {
        Node {
            kind,
            perm,
            uid: 0,
            gid: 0,
            nlink: 1,
            target: Vec::new(),
            rdev: 0,
            atime: None,
            mtime: None,
            ctime: None,
        }
    }

    fn size(&self) -> Option<u64> {
        match self.kind {
            Kind::Dir => None,
            Kind::Symlink => Some(self.target.len() as u64),
            _ => Some(0),
        }
    }
}

#[derive(Default)]
struct Model {
    nodes: BTreeMap<u64, Node>,
    dirs: BTreeMap<u64, BTreeMap<Vec<u8>, u64>>,
    parent: BTreeMap<u64, u64>,
    /// Held inodes and how often.
    holds: BTreeMap<u64, Vec<ocfs2::fs::OpenInode>>,
    /// Held inodes without a name.
    orphans: BTreeSet<u64>,
}

impl Model {
    fn links(&self, ino: u64) -> u32 {
        let n = &self.nodes[&ino];
        if n.kind == Kind::Dir {
            2 + self.dirs[&ino].values().filter(|i| self.nodes[i].kind == Kind::Dir).count() as u32
        } else {
            n.nlink
        }
    }

    fn is_within(&self, dir: u64, ancestor: u64) -> bool {
        let mut cur = dir;
        loop {
            if cur == ancestor {
                return true;
            }
            match self.parent.get(&cur) {
                Some(&p) if p != cur => cur = p,
                _ => return false,
            }
        }
    }

    /// A directory's entries changed: its mtime and ctime are now.
    fn touch_dir(&mut self, dir: u64) {
        let n = self.nodes.get_mut(&dir).unwrap();
        n.mtime = None;
        n.ctime = None;
    }

    fn touch_ctime(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.ctime = None;
        }
    }

    /// One name of `ino` is gone.
    fn drop_name(&mut self, ino: u64) {
        let n = self.nodes.get_mut(&ino).unwrap();
        if n.kind == Kind::Dir {
            self.nodes.remove(&ino);
            self.dirs.remove(&ino);
            self.parent.remove(&ino);
            self.holds.remove(&ino);
            return;
        }
        n.nlink -= 1;
        n.ctime = None;
        if n.nlink == 0 {
            if self.holds.contains_key(&ino) {
                self.orphans.insert(ino);
            } else {
                self.nodes.remove(&ino);
            }
        }
    }

    fn insert(&mut self, dir: u64, name: Vec<u8>, ino: u64, node: Node) {
        if node.kind == Kind::Dir {
            self.dirs.insert(ino, BTreeMap::new());
            self.parent.insert(ino, dir);
        }
        self.nodes.insert(ino, node);
        self.dirs.get_mut(&dir).unwrap().insert(name, ino);
        self.touch_dir(dir);
    }
}

fn name_char(rng: &mut Rng) -> u8 {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789._-";
    CHARS[rng.below(CHARS.len() as u64) as usize]
}

fn random_name(rng: &mut Rng) -> Vec<u8> {
    loop {
        let len = match rng.below(30) {
            0 => 255,
            1..=3 => 30 + rng.below(200) as usize,
            _ => 1 + rng.below(8) as usize,
        };
        let name: Vec<u8> = (0..len).map(|_| name_char(rng)).collect();
        if name != b"." && name != b".." {
            return name;
        }
    }
}

fn random_target(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(6) {
        0 => 300 + rng.below(3796) as usize,
        1 => 4095,
        _ => 1 + rng.below(120) as usize,
    };
    (0..len).map(|_| if rng.below(8) == 0 { b'/' } else { name_char(rng) }).collect()
}

fn random_time(rng: &mut Rng) -> Timestamp {
    Timestamp { secs: rng.below(4_000_000_000) as i64, nsecs: rng.below(1_000_000_000) as u32 }
}

/// Picks an entry (name, inode) of `dir`, if it has any.
fn pick_entry(rng: &mut Rng, m: &Model, dir: u64) -> Option<(Vec<u8>, u64)> {
    let entries = &m.dirs[&dir];
    if entries.is_empty() {
        return None;
    }
    entries.iter().nth(rng.below(entries.len() as u64) as usize).map(|(n, &i)| (n.clone(), i))
}

/// A name for a new entry: mostly fresh, sometimes one that exists already.
fn target_name(rng: &mut Rng, m: &Model, dir: u64) -> Vec<u8> {
    if rng.below(5) == 0 {
        if let Some((n, _)) = pick_entry(rng, m, dir) {
            return n;
        }
    }
    random_name(rng)
}

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize]
}

/// Checks one directory and its entries against the model with our reader.
fn check_dir(vol: &Volume, m: &Model, dir: u64, w: &str) {
    let all = vol.read_dir(dir).unwrap_or_else(|e| panic!("{w}: read_dir {dir}: {e}"));
    assert!(all.len() >= 2 && all[0].name == b"." && all[0].ino == dir, "{w}: '.' of {dir}");
    assert_eq!((all[1].name.as_slice(), all[1].ino), (&b".."[..], m.parent[&dir]), "{w}: '..' of {dir}");
    let listed: BTreeMap<Vec<u8>, u64> = all[2..].iter().map(|e| (e.name.clone(), e.ino)).collect();
    assert_eq!(listed, m.dirs[&dir], "{w}: entries of directory {dir}");
    for e in &all[2..] {
        assert_eq!(e.file_type, Some(m.nodes[&e.ino].kind.file_type()), "{w}: type byte of {:?}", e.name);
    }
    check_inode(vol, m, dir, w);
}

/// Checks one inode's metadata against the model.
fn check_inode(vol: &Volume, m: &Model, ino: u64, w: &str) {
    let n = &m.nodes[&ino];
    let md = vol.metadata(ino).unwrap_or_else(|e| panic!("{w}: metadata {ino}: {e}"));
    assert_eq!(md.file_type, n.kind.file_type(), "{w}: type of {ino}");
    assert_eq!(md.permissions(), n.perm, "{w}: permissions of {ino}");
    assert_eq!((md.uid, md.gid), (n.uid, n.gid), "{w}: owner of {ino}");
    let links = if m.orphans.contains(&ino) { 0 } else { m.links(ino) };
    assert_eq!(md.nlink, links, "{w}: links of {ino}");
    if let Some(size) = n.size() {
        assert_eq!(md.size, size, "{w}: size of {ino}");
    }
    if n.kind == Kind::Symlink {
        assert_eq!(vol.read_link(ino).unwrap(), n.target, "{w}: target of {ino}");
    }
    if n.kind.is_device() {
        assert_eq!(md.rdev, n.rdev, "{w}: device number of {ino}");
    }
    for (what, want, got) in [("atime", n.atime, md.atime), ("mtime", n.mtime, md.mtime), ("ctime", n.ctime, md.ctime)]
    {
        if let Some(t) = want {
            assert_eq!(got, t, "{w}: {what} of {ino}");
        }
    }
}

/// The kernel's `huge_encode_dev` of a user-space `dev_t`.
fn kernel_rdev(rdev: u64) -> u64 {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// `id1` of inode `ino`, read from the image file itself.
fn raw_id1(img: &Path, block_size: u64, ino: u64) -> u64 {
    u64::from_le_bytes(raw_bytes(img, ino * block_size + 0xB8, 8).try_into().unwrap())
}

/// `len` bytes of the image at byte `offset`.
fn raw_bytes(img: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(img).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).unwrap();
    b
}

/// The block debugfs `stat` shows as the only extent of a slow symlink (debugfs.ocfs2 `cat`
/// prints nothing for symlinks).
fn slow_symlink_block(stat: &str) -> u64 {
    let mut lines = stat.lines().map(str::trim).skip_while(|l| !l.starts_with("## Offset"));
    lines.next();
    let rec: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert!(rec.len() >= 4 && rec[0] == "0" && rec[1] == "0" && rec[2] == "1", "one extent of one cluster:\n{stat}");
    rec[3].parse().unwrap()
}

/// `(secs, nsecs)` from a debugfs `stat` time line such as `atime: 0x12d687 0x59 -- ...`.
fn stat_time(stat: &str, what: &str) -> Timestamp {
    let line = stat
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{what}:")))
        .unwrap_or_else(|| panic!("no {what} in\n{stat}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    Timestamp { secs: hex(cols[1]) as i64, nsecs: hex(cols[2]) as u32 }
}

/// The referee's view after a clean close: every directory listed by debugfs equals the
/// model; a sample of inodes is shown by `stat` as the model says; fsck finds nothing.
fn check_with_tools(img: &Path, m: &Model, dir_sizes: &BTreeMap<u64, u64>, block_size: u64, known: &[String], w: &str) {
    for (&dir, entries) in &m.dirs {
        let out = debugfs(img, &format!("ls -l <{dir}>"));
        let mut listed = BTreeMap::new();
        for line in out.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 9 {
                continue;
            }
            let Ok(ino) = cols[0].parse::<u64>() else { continue };
            let name = cols[8..].join(" ").into_bytes();
            let row =
                (ino, cols[1].to_string(), cols[2].parse::<u32>().unwrap(), cols[3].to_string(), cols[4].to_string());
            listed.insert(name, (row, cols[5].parse::<u64>().unwrap()));
        }
        let (dot, _) = listed.remove(&b"."[..]).unwrap_or_else(|| panic!("{w}: no '.' in\n{out}"));
        let (dotdot, _) = listed.remove(&b".."[..]).unwrap_or_else(|| panic!("{w}: no '..' in\n{out}"));
        assert_eq!((dot.0, dotdot.0), (dir, m.parent[&dir]), "{w}: debugfs '.' and '..' of {dir}");
        let mut want = BTreeMap::new();
        for (name, &ino) in entries {
            let n = &m.nodes[&ino];
            let size = n.size().unwrap_or_else(|| dir_sizes[&ino]);
            let row = (ino, mode_string(n.kind, n.perm), m.links(ino), n.uid.to_string(), n.gid.to_string());
            want.insert(name.clone(), (row, size));
        }
        assert_eq!(listed, want, "{w}: debugfs.ocfs2 ls -l of directory {dir}:\n{out}");
    }
    // Symlink targets, device numbers and the times setattr gave, for a bounded sample.
    let mut stats = 0;
    for (&ino, n) in &m.nodes {
        if m.orphans.contains(&ino) {
            continue;
        }
        if n.kind.is_device() {
            assert_eq!(raw_id1(img, block_size, ino), kernel_rdev(n.rdev), "{w}: i_rdev of {ino} on disk");
        }
        let interesting = n.kind == Kind::Symlink || n.atime.is_some() || n.mtime.is_some() || n.ctime.is_some();
        if !interesting || stats >= 60 {
            continue;
        }
        stats += 1;
        let stat = debugfs(img, &format!("stat <{ino}>"));
        assert!(stat.contains(&format!("Links: {}", m.links(ino))), "{w}: stat of {ino}:\n{stat}");
        if n.kind == Kind::Symlink {
            let fast = format!("Fast Symlink Destination: {}", String::from_utf8_lossy(&n.target));
            if !stat.lines().any(|l| l.trim() == fast) {
                assert!(stat.contains("Clusters: 1"), "{w}: a slow symlink {ino} owns one cluster:\n{stat}");
                let at = slow_symlink_block(&stat);
                let on_disk = raw_bytes(img, at * block_size, n.target.len() + 1);
                assert_eq!(&on_disk[..n.target.len()], &n.target[..], "{w}: target of slow symlink {ino} on disk");
                assert_eq!(on_disk[n.target.len()], 0, "{w}: the slow symlink's target ends with a NUL");
            }
        }
        for (what, t) in [("atime", n.atime), ("mtime", n.mtime), ("ctime", n.ctime)] {
            if let Some(t) = t {
                assert_eq!(stat_time(&stat, what), t, "{w}: debugfs {what} of {ino}");
            }
        }
    }
    let (code, out) = fsck_fn(img);
    let problems: Vec<&str> = out.lines().filter(|l| l.starts_with('[') && !known.iter().any(|k| k == l)).collect();
    assert!(code == 0 && problems.is_empty() && !out.contains("Internal logic"), "{w}: fsck.ocfs2 -fn:\n{out}");
}

/// Lists the orphan directory of slot 0 with debugfs: (inode, name).
fn debugfs_orphans(img: &Path) -> BTreeMap<u64, String> {
    let out = debugfs(img, "ls -l //orphan_dir:0000");
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 9 && cols[8] != "." && cols[8] != "..")
                .then(|| (cols[0].parse::<u64>().unwrap(), cols[8].to_string()))
        })
        .collect()
}

fn check_orphans_on_disk(img: &Path, m: &Model, w: &str) {
    let want: BTreeMap<u64, String> = m.orphans.iter().map(|&i| (i, format!("{i:016x}"))).collect();
    assert_eq!(debugfs_orphans(img), want, "{w}: debugfs lists the orphans");
}

fn dir_sizes(vol: &Volume, m: &Model) -> BTreeMap<u64, u64> {
    m.dirs.keys().map(|&d| (d, vol.metadata(d).unwrap().size)).collect()
}

/// Expected result of removing (dir, name) that names `ino` for rmdir (`want_dir`) or unlink.
fn removal_errno(m: &Model, ino: u64, want_dir: bool) -> Option<i32> {
    match (want_dir, m.nodes[&ino].kind == Kind::Dir) {
        (false, true) => Some(EISDIR),
        (true, false) => Some(ENOTDIR),
        (true, true) if !m.dirs[&ino].is_empty() => Some(ENOTEMPTY),
        _ => None,
    }
}

fn expect_err<T: std::fmt::Debug>(r: ocfs2::fs::Result<T>, errno: i32, w: &str) {
    match r {
        Err(e) => assert_eq!(e.errno(), errno, "{w}: {e}"),
        Ok(v) => panic!("{w}: succeeded ({v:?}) where errno {errno} was due"),
    }
}

fn run_model(img: &Path, what: &str, ops: usize, block_size: u64) {
    let known: Vec<String> = fsck_problem_lines(img);
    let seed = seed();
    println!("{what}: seed {seed}");
    let mut rng = Rng::new(seed);
    let mut vol = Volume::open_path(img, MountOptions::writable()).unwrap();
    let root = vol.root();
    let mut m = Model::default();
    m.dirs.insert(root, BTreeMap::new());
    m.parent.insert(root, root);
    let rmd = vol.metadata(root).unwrap();
    m.nodes.insert(root, Node { uid: rmd.uid, gid: rmd.gid, ..Node::new(Kind::Dir, rmd.permissions()) });
    for e in vol.read_dir(root).unwrap().into_iter().skip(2) {
        let md = vol.metadata(e.ino).unwrap();
        assert!(md.is_dir(), "{what}: a fresh root holds lost+found only");
        m.dirs.get_mut(&root).unwrap().insert(e.name, e.ino);
        m.dirs.insert(e.ino, BTreeMap::new());
        m.parent.insert(e.ino, root);
        m.nodes.insert(e.ino, Node { uid: md.uid, gid: md.gid, ..Node::new(Kind::Dir, md.permissions()) });
    }
    // fsck.ocfs2 wants /lost+found where mkfs put it.
    let lost_found = vol.lookup(root, b"lost+found").unwrap();

    // What the run exercised, printed at the end.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for op in 0..ops {
        let w = format!("{what} seed {seed} op {op}");
        let dirs: Vec<u64> = m.dirs.keys().copied().collect();
        let dir = if rng.below(3) == 0 { root } else { pick(&mut rng, &dirs) };
        // Inodes and directories the operation may change, checked afterwards.
        let mut touched: Vec<u64> = vec![dir];
        match rng.below(100) {
            0..=11 => {
                let name = target_name(&mut rng, &m, dir);
                let perm = rng.below(0o1000) as u16;
                match vol.create(dir, &name, perm) {
                    Ok(ino) => {
                        assert!(!m.dirs[&dir].contains_key(&name), "{w}: create over an existing name");
                        m.insert(dir, name, ino, Node::new(Kind::File, perm));
                    }
                    Err(e) => {
                        assert!(m.dirs[&dir].contains_key(&name), "{w}: create: {e}");
                        assert_eq!(e.errno(), EEXIST, "{w}: {e}");
                    }
                }
            }
            12..=19 => {
                let name = target_name(&mut rng, &m, dir);
                let perm = rng.below(0o10000) as u16;
                match vol.mkdir(dir, &name, perm) {
                    Ok(ino) => {
                        assert!(!m.dirs[&dir].contains_key(&name), "{w}: mkdir over an existing name");
                        m.insert(dir, name, ino, Node::new(Kind::Dir, perm));
                        touched.push(ino);
                    }
                    Err(e) => assert_eq!((e.errno(), m.dirs[&dir].contains_key(&name)), (EEXIST, true), "{w}: {e}"),
                }
            }
            20..=29 => {
                let name = target_name(&mut rng, &m, dir);
                let target = random_target(&mut rng);
                match vol.symlink(dir, &name, &target) {
                    Ok(ino) => {
                        assert!(!m.dirs[&dir].contains_key(&name), "{w}: symlink over an existing name");
                        *seen.entry(if target.len() > 300 { "long symlinks" } else { "symlinks" }).or_default() += 1;
                        m.insert(dir, name, ino, Node { target, ..Node::new(Kind::Symlink, 0o777) });
                        touched.push(ino);
                    }
                    Err(e) => assert_eq!((e.errno(), m.dirs[&dir].contains_key(&name)), (EEXIST, true), "{w}: {e}"),
                }
            }
            30..=37 => {
                let name = target_name(&mut rng, &m, dir);
                let (kind, ftype) = pick(
                    &mut rng,
                    &[(Kind::Fifo, 0o010000), (Kind::Sock, 0o140000), (Kind::Chr, 0o020000), (Kind::Blk, 0o060000)],
                );
                let perm = rng.below(0o10000) as u16;
                let rdev = dev_makedev(rng.below(4096), rng.below(1 << 20));
                match vol.mknod(dir, &name, ftype | perm, rdev) {
                    Ok(ino) => {
                        assert!(!m.dirs[&dir].contains_key(&name), "{w}: mknod over an existing name");
                        let rdev = if kind.is_device() { rdev } else { 0 };
                        *seen.entry("mknods").or_default() += 1;
                        m.insert(dir, name, ino, Node { rdev, ..Node::new(kind, perm) });
                        touched.push(ino);
                    }
                    Err(e) => assert_eq!((e.errno(), m.dirs[&dir].contains_key(&name)), (EEXIST, true), "{w}: {e}"),
                }
            }
            38..=47 => {
                let inodes: Vec<u64> = m.nodes.keys().copied().filter(|i| !m.orphans.contains(i)).collect();
                let ino = pick(&mut rng, &inodes);
                let name = target_name(&mut rng, &m, dir);
                let r = vol.link(ino, dir, &name);
                touched.push(ino);
                if m.nodes[&ino].kind == Kind::Dir {
                    expect_err(r, EPERM, &w);
                } else if m.dirs[&dir].contains_key(&name) {
                    expect_err(r, EEXIST, &w);
                } else {
                    r.unwrap_or_else(|e| panic!("{w}: link: {e}"));
                    m.nodes.get_mut(&ino).unwrap().nlink += 1;
                    *seen.entry("links").or_default() += 1;
                    m.touch_ctime(ino);
                    m.dirs.get_mut(&dir).unwrap().insert(name, ino);
                    m.touch_dir(dir);
                }
            }
            48..=69 => {
                let new_dir = if rng.below(5) < 2 { dir } else { pick(&mut rng, &dirs) };
                touched.push(new_dir);
                let (old_name, src) = match pick_entry(&mut rng, &m, dir) {
                    Some(e) if rng.below(12) != 0 => e,
                    _ => {
                        let name = random_name(&mut rng);
                        if !m.dirs[&dir].contains_key(&name) {
                            expect_err(vol.rename(dir, &name, new_dir, b"x"), ENOENT, &w);
                        }
                        continue;
                    }
                };
                let new_name = if rng.below(2) == 0 {
                    pick_entry(&mut rng, &m, new_dir).map(|e| e.0).unwrap_or_else(|| random_name(&mut rng))
                } else {
                    random_name(&mut rng)
                };
                touched.push(src);
                let dst = m.dirs[&new_dir].get(&new_name).copied();
                if src == lost_found || dst == Some(lost_found) {
                    continue;
                }
                let src_dir = m.nodes[&src].kind == Kind::Dir;
                let expected = match dst {
                    Some(d) if d == src => None,
                    _ if src_dir && m.is_within(new_dir, src) => Some(EINVAL),
                    Some(d) => match (src_dir, m.nodes[&d].kind == Kind::Dir) {
                        (true, false) => Some(ENOTDIR),
                        (false, true) => Some(EISDIR),
                        (true, true) if !m.dirs[&d].is_empty() => Some(ENOTEMPTY),
                        _ => None,
                    },
                    None => None,
                };
                let r = vol.rename(dir, &old_name, new_dir, &new_name);
                if let Some(errno) = expected {
                    expect_err(r, errno, &w);
                    *seen.entry("rename errors").or_default() += 1;
                } else {
                    r.unwrap_or_else(|e| panic!("{w}: rename: {e}"));
                    if dst != Some(src) {
                        m.dirs.get_mut(&dir).unwrap().remove(&old_name);
                        m.dirs.get_mut(&new_dir).unwrap().insert(new_name, src);
                        m.touch_dir(dir);
                        m.touch_dir(new_dir);
                        m.touch_ctime(src);
                        if src_dir {
                            m.parent.insert(src, new_dir);
                        }
                        *seen.entry(if dir != new_dir { "renames across" } else { "renames within" }).or_default() += 1;
                        if let Some(d) = dst {
                            *seen.entry("renames over").or_default() += 1;
                            if m.holds.contains_key(&d) && m.nodes[&d].nlink == 1 {
                                *seen.entry("orphans by rename").or_default() += 1;
                            }
                            m.drop_name(d);
                        }
                    }
                }
            }
            70..=79 => {
                let Some((name, ino)) = pick_entry(&mut rng, &m, dir) else { continue };
                if ino == lost_found {
                    continue;
                }
                if m.nodes[&ino].kind == Kind::Dir && m.dirs[&ino].is_empty() && m.dirs[&dir].len() < 3 {
                    continue; // keep some directories around
                }
                let want_dir = rng.below(3) == 0;
                let r = if want_dir { vol.rmdir(dir, &name) } else { vol.unlink(dir, &name) };
                touched.push(ino);
                match removal_errno(&m, ino, want_dir) {
                    Some(errno) => expect_err(r, errno, &w),
                    None => {
                        r.unwrap_or_else(|e| panic!("{w}: remove: {e}"));
                        m.dirs.get_mut(&dir).unwrap().remove(&name);
                        m.touch_dir(dir);
                        if m.holds.contains_key(&ino) && m.nodes[&ino].nlink == 1 {
                            *seen.entry("orphans by unlink").or_default() += 1;
                        }
                        m.drop_name(ino);
                    }
                }
            }
            80..=87 => {
                let inodes: Vec<u64> = m.nodes.keys().copied().collect();
                let ino = pick(&mut rng, &inodes);
                touched.push(ino);
                let mut a = SetAttr::default();
                if rng.below(2) == 0 {
                    a.mode = Some(rng.below(0o10000) as u16);
                }
                if rng.below(3) == 0 {
                    a.uid = Some(rng.below(70000) as u32);
                }
                if rng.below(3) == 0 {
                    a.gid = Some(rng.below(70000) as u32);
                }
                if rng.below(3) == 0 {
                    a.atime = Some(random_time(&mut rng));
                }
                if rng.below(3) == 0 {
                    a.mtime = Some(random_time(&mut rng));
                }
                if rng.below(4) == 0 {
                    a.ctime = Some(random_time(&mut rng));
                }
                let md = vol.setattr(ino, &a).unwrap_or_else(|e| panic!("{w}: setattr: {e}"));
                *seen.entry("setattrs").or_default() += 1;
                let n = m.nodes.get_mut(&ino).unwrap();
                n.perm = a.mode.map(|p| p & 0o7777).unwrap_or(n.perm);
                n.uid = a.uid.unwrap_or(n.uid);
                n.gid = a.gid.unwrap_or(n.gid);
                n.atime = a.atime.or(n.atime);
                n.mtime = a.mtime.or(n.mtime);
                if a != SetAttr::default() {
                    n.ctime = a.ctime;
                }
                assert_eq!(md.permissions(), n.perm, "{w}: setattr returns the new metadata");
            }
            88..=92 => {
                // Holds: take one on a file that has a name, or give one up.
                if rng.below(3) == 0 && !m.holds.is_empty() {
                    let held: Vec<u64> = m.holds.keys().copied().collect();
                    let ino = pick(&mut rng, &held);
                    let list = m.holds.get_mut(&ino).unwrap();
                    list.pop().unwrap().close().unwrap_or_else(|e| panic!("{w}: close: {e}"));
                    if list.is_empty() {
                        m.holds.remove(&ino);
                        if m.orphans.remove(&ino) {
                            m.nodes.remove(&ino);
                            let e = vol.metadata(ino).unwrap_err();
                            assert_eq!(e.errno(), 117, "{w}: the orphan {ino} was freed: {e}");
                        }
                    }
                } else if let Some((name, ino)) = pick_entry(&mut rng, &m, dir) {
                    if m.nodes[&ino].kind != Kind::Dir {
                        let h = vol.hold(ino).unwrap_or_else(|e| panic!("{w}: hold: {e}"));
                        m.holds.entry(ino).or_default().push(h);
                        touched.push(ino);
                        // Often the name goes right away: the hold keeps the inode.
                        if ino != lost_found && rng.below(2) == 0 {
                            vol.unlink(dir, &name).unwrap_or_else(|e| panic!("{w}: unlink of a held file: {e}"));
                            m.dirs.get_mut(&dir).unwrap().remove(&name);
                            m.touch_dir(dir);
                            if m.nodes[&ino].nlink == 1 {
                                *seen.entry("orphans by unlink").or_default() += 1;
                            }
                            m.drop_name(ino);
                        }
                    }
                }
            }
            93..=96 => {
                let long = vec![b'n'; 256];
                expect_err(vol.create(dir, &long, 0o644), ENAMETOOLONG, &w);
                expect_err(vol.symlink(dir, &long, b"t"), ENAMETOOLONG, &w);
                expect_err(vol.mknod(dir, &long, 0o010644, 0), ENAMETOOLONG, &w);
                expect_err(vol.symlink(dir, b"ok", &[b'x'; 4096]), ENAMETOOLONG, &w);
                expect_err(vol.link(dir, dir, b"dirlink"), EPERM, &w);
                if let Some((name, ino)) = pick_entry(&mut rng, &m, dir) {
                    expect_err(vol.rename(dir, &name, dir, &long), ENAMETOOLONG, &w);
                    expect_err(vol.link(ino, dir, &long), ENAMETOOLONG, &w);
                }
                let name = random_name(&mut rng);
                if !m.dirs[&dir].contains_key(&name) {
                    expect_err(vol.lookup(dir, &name), ENOENT, &w);
                    expect_err(vol.unlink(dir, &name), ENOENT, &w);
                }
            }
            97..=99 if rng.below(12) != 0 => {
                for &d in m.dirs.keys() {
                    check_dir(&vol, &m, d, &w);
                }
            }
            _ => {
                // Checkpoint: a clean close (sometimes with holds left, whose orphans the next
                // open frees), then the real tools read the image.
                let sizes = dir_sizes(&vol, &m);
                let keep_holds = rng.below(2) == 0;
                if !keep_holds {
                    for (_, list) in std::mem::take(&mut m.holds) {
                        for h in list {
                            h.close().unwrap();
                        }
                    }
                    for ino in std::mem::take(&mut m.orphans) {
                        m.nodes.remove(&ino);
                    }
                }
                vol.close().unwrap_or_else(|e| panic!("{w}: close: {e}"));
                check_orphans_on_disk(img, &m, &w);
                check_with_tools(img, &m, &sizes, block_size, &known, &w);
                *seen.entry("checkpoints").or_default() += 1;
                // The holds die with the closed volume: their orphans wait for the next open.
                m.holds.clear();
                vol = Volume::open_path(img, MountOptions::writable()).unwrap();
                for ino in std::mem::take(&mut m.orphans) {
                    m.nodes.remove(&ino);
                    assert!(vol.metadata(ino).is_err(), "{w}: the open freed orphan {ino}");
                }
                continue;
            }
        }
        for ino in touched {
            if m.dirs.contains_key(&ino) {
                check_dir(&vol, &m, ino, &w);
            } else if m.nodes.contains_key(&ino) {
                check_inode(&vol, &m, ino, &w);
            }
        }
        if op % 200 == 199 {
            for &d in m.dirs.keys() {
                check_dir(&vol, &m, d, &w);
            }
        }
    }
    for &d in m.dirs.keys() {
        check_dir(&vol, &m, d, what);
    }
    for &o in &m.orphans {
        check_inode(&vol, &m, o, what);
    }
    let sizes = dir_sizes(&vol, &m);
    for (_, list) in std::mem::take(&mut m.holds) {
        for h in list {
            h.close().unwrap();
        }
    }
    for ino in std::mem::take(&mut m.orphans) {
        m.nodes.remove(&ino);
    }
    vol.close().unwrap();
    check_orphans_on_disk(img, &m, what);
    check_with_tools(img, &m, &sizes, block_size, &known, what);
    println!("{what}: {} directories, {} inodes; {seen:?}", m.dirs.len(), m.nodes.len());
    for (what_op, least) in
        [("renames over", 1), ("renames within", 1), ("long symlinks", 1), ("links", 1), ("orphans by unlink", 1)]
    {
        assert!(seen.get(what_op).copied().unwrap_or(0) >= least.min(ops / 300), "{what}: too few {what_op}: {seen:?}");
    }
}

fn ours(img: &Path, block_size: u32, features: &str) {
    let opts = MkfsOptions {
        block_size: Some(block_size),
        cluster_size: Some(4096),
        slots: Some(2),
        mount: Some(MountType::Local),
        features: FeatureRequest::parse(features).unwrap(),
        force: true,
        ..Default::default()
    };
    mkfs(&FileDevice::open_rw(img).unwrap(), &opts).unwrap();
}

#[test]
fn random_namespace_operations_match_the_model_and_the_tools() {
    let s = Scratch::new("write-namespace");
    let ops: usize = std::env::var("WRITE_NAMESPACE_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let only = std::env::var("WRITE_NAMESPACE_ONLY").ok();
    let cases: &[(&str, u32)] = &[
        ("tools-4k-inline", 4096),
        ("tools-512-noinline", 512),
        ("ours-4k-noinline-ecc", 4096),
        ("ours-512-inline", 512),
        // Indexed directories are written by another part of the write path; this volume runs
        // only when asked for by name.
        ("tools-4k-indexed", 4096),
    ];
    for &(name, bs) in cases {
        if only.as_deref().is_some_and(|o| o != name) || (only.is_none() && name == "tools-4k-indexed") {
            continue;
        }
        let img = s.path(&format!("{name}.img"));
        sparse_image(&img, 256 << 20);
        match name {
            "tools-4k-indexed" => mkfs_ocfs2(&img, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]),
            "tools-4k-inline" => mkfs_ocfs2(
                &img,
                &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2", "--fs-features=noindexed-dirs"],
            ),
            "tools-512-noinline" => mkfs_ocfs2(
                &img,
                &[
                    "-M",
                    "local",
                    "-b",
                    "512",
                    "-C",
                    "4096",
                    "-N",
                    "2",
                    "-J",
                    "size=4M",
                    "--fs-feature-level=max-compat",
                ],
            ),
            "ours-4k-noinline-ecc" => ours(&img, bs, "noindexed-dirs,noinline-data,metaecc"),
            _ => ours(&img, bs, "noindexed-dirs"),
        }
        run_model(&img, name, ops, u64::from(bs));
    }
}

/// (total, used) bits of a system allocator as debugfs.ocfs2 `stat` shows them.
fn bitmap_used(img: &Path, system_file: &str) -> u64 {
    let out = debugfs(img, &format!("stat //{system_file}"));
    let line = out.lines().find(|l| l.contains("Bitmap Total:")).unwrap_or_else(|| panic!("no totals in:\n{out}"));
    let at = line.find("Used:").unwrap() + "Used:".len();
    line[at..].split_whitespace().next().unwrap().parse().unwrap()
}

/// Inodes in use in slot 0's inode allocator and clusters in use in the global bitmap.
fn usage(img: &Path) -> (u64, u64) {
    (bitmap_used(img, "inode_alloc:0000"), bitmap_used(img, "global_bitmap"))
}

fn tools_volume(s: &Scratch, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let img = s.path(&format!("{name}.img"));
    sparse_image(&img, 128 << 20);
    let mut args = vec!["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"];
    args.extend_from_slice(extra);
    mkfs_ocfs2(&img, &args);
    img
}

/// Every directory's entries, by our reader.
fn snapshot(vol: &Volume, dirs: &[u64]) -> Vec<Vec<(Vec<u8>, u64)>> {
    dirs.iter().map(|&d| vol.read_dir(d).unwrap().into_iter().map(|e| (e.name, e.ino)).collect()).collect()
}

#[test]
fn each_refused_operation_gives_its_errno_and_changes_nothing() {
    let s = Scratch::new("write-namespace-refusals");
    let img = tools_volume(&s, "refusals", &["--fs-features=noindexed-dirs"]);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let root = vol.root();
    let d = vol.mkdir(root, b"d", 0o755).unwrap();
    let sub = vol.mkdir(d, b"sub", 0o755).unwrap();
    let f = vol.create(root, b"f", 0o644).unwrap();
    vol.create(sub, b"inner", 0o644).unwrap();
    let e = vol.mkdir(root, b"e", 0o755).unwrap();
    let sl = vol.symlink(root, b"sl", b"f").unwrap();
    let dirs = [root, d, sub, e];
    let before = snapshot(&vol, &dirs);
    let long = [b'n'; 256];
    let cases: Vec<(&str, i32, ocfs2::fs::Result<()>)> = vec![
        ("create over a file", EEXIST, vol.create(root, b"f", 0o644).map(drop)),
        ("mkdir over a directory", EEXIST, vol.mkdir(root, b"d", 0o755).map(drop)),
        ("symlink over a symlink", EEXIST, vol.symlink(root, b"sl", b"x").map(drop)),
        ("mknod over a file", EEXIST, vol.mknod(root, b"f", 0o010644, 0).map(drop)),
        ("link over a directory", EEXIST, vol.link(f, root, b"e")),
        ("mkdir named ..", EEXIST, vol.mkdir(d, b"..", 0o755).map(drop)),
        ("unlink of nothing", ENOENT, vol.unlink(root, b"nothing")),
        ("rmdir of nothing", ENOENT, vol.rmdir(root, b"nothing")),
        ("rename of nothing", ENOENT, vol.rename(root, b"nothing", d, b"x")),
        ("lookup of nothing", ENOENT, vol.lookup(root, b"nothing").map(drop)),
        ("rmdir of a full directory", ENOTEMPTY, vol.rmdir(root, b"d")),
        ("rename over a full directory", ENOTEMPTY, vol.rename(root, b"e", root, b"d")),
        ("rename of a directory onto its ancestor", ENOTEMPTY, vol.rename(d, b"sub", root, b"d")),
        ("rmdir of a file", ENOTDIR, vol.rmdir(root, b"f")),
        ("rename of a directory over a file", ENOTDIR, vol.rename(root, b"e", root, b"f")),
        ("create in a file", ENOTDIR, vol.create(f, b"x", 0o644).map(drop)),
        ("rename from a file", ENOTDIR, vol.rename(f, b"x", root, b"y")),
        ("rename into a symlink", ENOTDIR, vol.rename(root, b"f", sl, b"y")),
        ("unlink of a directory", EISDIR, vol.unlink(root, b"d")),
        ("rename of a file over a directory", EISDIR, vol.rename(root, b"f", root, b"e")),
        ("rename of a directory into itself", EINVAL, vol.rename(root, b"d", d, b"x")),
        ("rename of a directory below itself", EINVAL, vol.rename(root, b"d", sub, b"x")),
        ("rmdir of .", EINVAL, vol.rmdir(d, b".")),
        ("mknod of a bad type", EINVAL, vol.mknod(root, b"bad", 0o170644, 0).map(drop)),
        ("mknod of a too large device", EINVAL, vol.mknod(root, b"big", 0o020644, dev_makedev(4096, 0)).map(drop)),
        (
            "setattr of a time before 1970",
            EINVAL,
            vol.setattr(f, &SetAttr { mtime: Some(Timestamp { secs: -1, nsecs: 0 }), ..Default::default() }).map(drop),
        ),
        ("rename of ..", 16, vol.rename(d, b"..", root, b"x")),
        ("link of a directory", EPERM, vol.link(d, root, b"dl")),
        ("mknod of a directory", EPERM, vol.mknod(root, b"md", 0o040755, 0).map(drop)),
        ("create with a 256-byte name", ENAMETOOLONG, vol.create(root, &long, 0o644).map(drop)),
        ("mkdir with a 256-byte name", ENAMETOOLONG, vol.mkdir(root, &long, 0o755).map(drop)),
        ("symlink with a 256-byte name", ENAMETOOLONG, vol.symlink(root, &long, b"t").map(drop)),
        ("mknod with a 256-byte name", ENAMETOOLONG, vol.mknod(root, &long, 0o010644, 0).map(drop)),
        ("link to a 256-byte name", ENAMETOOLONG, vol.link(f, root, &long)),
        ("rename to a 256-byte name", ENAMETOOLONG, vol.rename(root, b"f", root, &long)),
        ("rename from a 256-byte name", ENAMETOOLONG, vol.rename(root, &long, root, b"g")),
        ("unlink of a 256-byte name", ENAMETOOLONG, vol.unlink(root, &long)),
        ("rmdir of a 256-byte name", ENAMETOOLONG, vol.rmdir(root, &long)),
        ("symlink to 4096 bytes", ENAMETOOLONG, vol.symlink(root, b"t", &[b'x'; 4096]).map(drop)),
        ("symlink to nothing", ENOENT, vol.symlink(root, b"t", b"").map(drop)),
    ];
    for (what, errno, r) in cases {
        expect_err(r, errno, what);
    }
    assert_eq!(snapshot(&vol, &dirs), before, "refused operations changed nothing");
    // Renames onto the same inode change nothing either (POSIX).
    vol.link(f, d, b"f-again").unwrap();
    vol.rename(root, b"f", d, b"f-again").unwrap();
    vol.rename(root, b"f", root, b"f").unwrap();
    assert_eq!(vol.lookup(root, b"f").unwrap(), f);
    assert_eq!(vol.lookup(d, b"f-again").unwrap(), f);
    assert_eq!(vol.metadata(f).unwrap().nlink, 2);
    vol.unlink(d, b"f-again").unwrap();
    // The longest target and name that fit.
    let t = vol.symlink(root, &[b'a'; 255], &[b'z'; 4095]).unwrap();
    assert_eq!(vol.read_link(t).unwrap(), vec![b'z'; 4095]);
    vol.close().unwrap();
    assert_fsck_clean(&img);
    let stat = debugfs(&img, &format!("stat <{t}>"));
    assert!(stat.contains("Size: 4095") && stat.contains("Clusters: 1"), "{stat}");
    let listing = debugfs(&img, "ls -l /");
    for name in ["d", "e", "f", "sl"] {
        assert!(listing.lines().any(|l| l.split_whitespace().nth(8) == Some(name)), "{name} in\n{listing}");
    }
}

/// Sets `i_links_count` of inode `ino` in the image itself (the volume has no metaecc).
fn patch_links(img: &Path, ino: u64, links: u16) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.seek(SeekFrom::Start(ino * 4096 + 0x2A)).unwrap();
    f.write_all(&links.to_le_bytes()).unwrap();
}

#[test]
fn links_stop_at_the_volume_limit_with_emlink() {
    let s = Scratch::new("write-namespace-emlink");
    let img = tools_volume(&s, "emlink", &["--fs-features=noindexed-dirs"]);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let root = vol.root();
    let f = vol.create(root, b"f", 0o644).unwrap();
    let full = vol.mkdir(root, b"full", 0o755).unwrap();
    let other = vol.mkdir(root, b"other", 0o755).unwrap();
    vol.mkdir(other, b"mover", 0o755).unwrap();
    vol.close().unwrap();
    // 32000 links (OCFS2_LINK_MAX without indexed directories), as if that many names existed.
    patch_links(&img, f, 32000);
    patch_links(&img, full, 32000);
    assert!(debugfs(&img, &format!("stat <{f}>")).contains("Links: 32000"));
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    expect_err(vol.link(f, root, b"one-more"), EMLINK, "link of a file at the limit");
    expect_err(vol.mkdir(full, b"sub", 0o755).map(drop), EMLINK, "mkdir in a directory at the limit");
    expect_err(vol.rename(other, b"mover", full, b"mover"), EMLINK, "rename of a directory into one at the limit");
    // Files and renames within the directory do not add links to it.
    vol.create(full, b"file", 0o644).unwrap();
    vol.rename(root, b"other", root, b"other2").unwrap();
    vol.close().unwrap();
    patch_links(&img, f, 1);
    patch_links(&img, full, 2);
    assert_fsck_clean(&img);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    vol.link(f, root, b"one-more").unwrap();
    vol.rename(other, b"mover", full, b"mover").unwrap();
    assert_eq!(vol.metadata(full).unwrap().nlink, 3);
    assert_eq!(vol.metadata(other).unwrap().nlink, 2);
    assert_eq!(vol.lookup(vol.lookup(full, b"mover").unwrap(), b"..").unwrap(), full);
    vol.close().unwrap();
    assert_fsck_clean(&img);
}

/// A held file, a held slow symlink and a held file replaced by a rename, all without names.
struct Orphans {
    file: u64,
    link: u64,
    replaced: u64,
    target: Vec<u8>,
}

fn make_orphans(vol: &Volume) -> (Orphans, Vec<ocfs2::fs::OpenInode>) {
    let root = vol.root();
    let target: Vec<u8> = (0..4000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let file = vol.create(root, b"file", 0o600).unwrap();
    let link = vol.symlink(root, b"slow", &target).unwrap();
    let replaced = vol.create(root, b"replaced", 0o600).unwrap();
    vol.create(root, b"newer", 0o600).unwrap();
    let holds =
        vec![vol.hold(file).unwrap(), vol.hold(file).unwrap(), vol.hold(link).unwrap(), vol.hold(replaced).unwrap()];
    vol.unlink(root, b"file").unwrap();
    vol.unlink(root, b"slow").unwrap();
    vol.rename(root, b"newer", root, b"replaced").unwrap();
    for name in [&b"file"[..], b"slow"] {
        expect_err(vol.lookup(root, name), ENOENT, "the name is gone");
    }
    // Read through the holds.
    assert_eq!(holds[2].read_link().unwrap(), target);
    let md = holds[0].metadata().unwrap();
    assert_eq!((md.nlink, md.flags & 0x4), (0, 0x4), "links 0 and OCFS2_ORPHANED_FL");
    let mut buf = [0u8; 16];
    assert_eq!(holds[0].read(0, &mut buf).unwrap(), 0);
    assert_eq!(holds[3].metadata().unwrap().nlink, 0);
    // A held orphan may be held again; an orphan nobody holds cannot be.
    vol.hold(file).unwrap().close().unwrap();
    (Orphans { file, link, replaced, target }, holds)
}

fn orphan_names(o: &Orphans) -> BTreeMap<u64, String> {
    [o.file, o.link, o.replaced].iter().map(|&i| (i, format!("{i:016x}"))).collect()
}

#[test]
fn a_held_inode_outlives_its_names_and_goes_with_its_last_hold() {
    let s = Scratch::new("write-namespace-orphans");
    let img = tools_volume(&s, "orphans", &[]);
    Volume::open_path(&img, MountOptions::writable()).unwrap().close().unwrap();
    let base = usage(&img);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let (o, holds) = make_orphans(&vol);
    let mut holds = holds.into_iter();
    let (file_a, file_b, link, replaced) =
        (holds.next().unwrap(), holds.next().unwrap(), holds.next().unwrap(), holds.next().unwrap());
    drop(file_a);
    assert_eq!(vol.metadata(o.file).unwrap().nlink, 0, "one of two holds gone: still there");
    file_b.close().unwrap();
    link.close().unwrap();
    drop(replaced);
    for ino in [o.file, o.link, o.replaced] {
        assert_eq!(vol.metadata(ino).unwrap_err().errno(), 117, "inode {ino} was freed");
        expect_err(vol.hold(ino).map(drop), ENOENT, "holding a freed inode");
    }
    // A held directory is freed by rmdir at once (see namespace::drop_name).
    let d = vol.mkdir(vol.root(), b"dir", 0o755).unwrap();
    let hd = vol.hold(d).unwrap();
    vol.rmdir(vol.root(), b"dir").unwrap();
    assert!(hd.metadata().is_err());
    drop(hd);
    vol.unlink(vol.root(), b"replaced").unwrap();
    vol.close().unwrap();
    assert_eq!(usage(&img), base, "inode bits and clusters came back");
    assert!(debugfs_orphans(&img).is_empty());
    assert_fsck_clean(&img);
}

#[test]
fn orphans_of_a_closed_volume_show_in_the_orphan_directory_and_go_at_the_next_open() {
    let s = Scratch::new("write-namespace-orphans-closed");
    let img = tools_volume(&s, "closed", &[]);
    Volume::open_path(&img, MountOptions::writable()).unwrap().close().unwrap();
    let base = usage(&img);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let (o, holds) = make_orphans(&vol);
    // Closing with holds left writes everything home; the orphans stay where the kernel
    // keeps them while a file is open.
    vol.close().unwrap();
    assert_eq!(debugfs_orphans(&img), orphan_names(&o));
    for ino in [o.file, o.link, o.replaced] {
        let stat = debugfs(&img, &format!("stat <{ino}>"));
        assert!(stat.contains("Flags: Valid Orphan") && stat.contains("Links: 0"), "{stat}");
        assert!(stat.contains("Orphan Slot: 0"), "{stat}");
    }
    let stat = debugfs(&img, &format!("stat <{}>", o.link));
    let on_disk = raw_bytes(&img, slow_symlink_block(&stat) * 4096, o.target.len());
    assert_eq!(on_disk, o.target, "the orphaned symlink keeps its target");
    assert_fsck_clean(&img);
    assert!(usage(&img).0 > base.0);
    drop(holds); // the volume is closed: nothing is written
    assert_eq!(debugfs_orphans(&img), orphan_names(&o));
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    for ino in [o.file, o.link, o.replaced] {
        assert!(vol.metadata(ino).is_err(), "the open freed orphan {ino}");
    }
    vol.unlink(vol.root(), b"replaced").unwrap();
    vol.close().unwrap();
    assert!(debugfs_orphans(&img).is_empty());
    assert_eq!(usage(&img), base, "inode bits and clusters came back");
    assert_fsck_clean(&img);
}

#[test]
fn orphans_left_by_a_crash_are_freed_when_the_slot_is_opened_again() {
    let s = Scratch::new("write-namespace-orphans-crash");
    for (case, extra) in
        [("crash-4k", &[][..]), ("crash-noinline", &["--fs-features=noinline-data,noindexed-dirs"][..])]
    {
        let img = tools_volume(&s, case, extra);
        Volume::open_path(&img, MountOptions::writable()).unwrap().close().unwrap();
        let base = usage(&img);
        let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
        let (o, holds) = make_orphans(&vol);
        // The operations reach the journal; then the process dies: no close, no last hold,
        // the journal still dirty.
        vol.sync().unwrap();
        std::mem::forget(holds);
        std::mem::forget(vol);
        let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
        for ino in [o.file, o.link, o.replaced] {
            assert!(vol.metadata(ino).is_err(), "{case}: the open freed orphan {ino}");
        }
        assert_ne!(vol.lookup(vol.root(), b"replaced").unwrap(), o.replaced);
        vol.unlink(vol.root(), b"replaced").unwrap();
        vol.close().unwrap();
        assert!(debugfs_orphans(&img).is_empty(), "{case}");
        assert_eq!(usage(&img), base, "{case}: inode bits and clusters came back");
        assert_fsck_clean(&img);
    }
}

/// Several threads rename, link, create and remove names among three directories at once:
/// no thread waits forever on another's locks, every refusal is one POSIX allows, and the
/// result is a volume the tools find consistent.
#[test]
fn threads_changing_names_at_once_leave_a_consistent_volume() {
    let s = Scratch::new("write-namespace-threads");
    let img = tools_volume(&s, "threads", &["--fs-features=noindexed-dirs"]);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let root = vol.root();
    let tops: Vec<u64> = ["A", "B", "C"].iter().map(|n| vol.mkdir(root, n.as_bytes(), 0o755).unwrap()).collect();
    let seed = seed();
    println!("threads: seed {seed}");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let succeeded = std::sync::Arc::new(std::sync::Mutex::new([0usize; 9]));
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (vol, tops, done_tx) = (vol.clone(), tops.clone(), done_tx.clone());
        let succeeded = succeeded.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed.wrapping_add(t));
            let name = |rng: &mut Rng| format!("n{}", rng.below(10)).into_bytes();
            for op in 0..300 {
                let dir = pick(&mut rng, &tops);
                let other = pick(&mut rng, &tops);
                let (a, b) = (name(&mut rng), name(&mut rng));
                let kind = rng.below(9) as usize;
                let r = match kind {
                    0 => vol.create(dir, &a, 0o644).map(drop),
                    1 => vol.mkdir(dir, &a, 0o755).map(drop),
                    2 => vol.symlink(dir, &a, &vec![b's'; if rng.below(2) == 0 { 10 } else { 4000 }]).map(drop),
                    3 | 4 => vol.rename(dir, &a, other, &b),
                    5 => vol.lookup(dir, &a).and_then(|ino| vol.link(ino, other, &b)),
                    6 => vol.unlink(dir, &a),
                    7 => vol.rmdir(dir, &a),
                    _ => vol.lookup(dir, &a).and_then(|ino| {
                        let h = vol.hold(ino)?;
                        vol.unlink(dir, &a)?;
                        h.close()
                    }),
                };
                if r.is_ok() {
                    succeeded.lock().unwrap()[kind] += 1;
                }
                if let Err(e) = r {
                    // What racing threads may see: names taken or gone, kinds that do not
                    // fit, and (for an inode freed between a lookup and its use) nothing else.
                    let allowed = [EEXIST, ENOENT, ENOTEMPTY, ENOTDIR, EISDIR, EPERM, 16];
                    assert!(allowed.contains(&e.errno()), "thread {t} op {op}: {e}");
                }
            }
            done_tx.send(t).unwrap();
        }));
    }
    drop(done_tx);
    for _ in 0..4 {
        done_rx.recv_timeout(std::time::Duration::from_secs(300)).expect("a thread is stuck: lock order deadlock?");
    }
    for t in threads {
        t.join().unwrap();
    }
    let succeeded = *succeeded.lock().unwrap();
    println!(
        "threads: successes by kind (create, mkdir, symlink, rename x2, link, unlink, rmdir, orphan) {succeeded:?}"
    );
    assert!(succeeded[3] + succeeded[4] > 50 && succeeded[8] > 5, "the threads got work done: {succeeded:?}");
    // Names and links by our reader, then the same by debugfs, then fsck.
    let mut names_of: BTreeMap<u64, u32> = BTreeMap::new();
    let mut listing: BTreeMap<u64, BTreeMap<Vec<u8>, u64>> = BTreeMap::new();
    for &d in &tops {
        let entries: BTreeMap<Vec<u8>, u64> =
            vol.read_dir(d).unwrap().into_iter().skip(2).map(|e| (e.name, e.ino)).collect();
        let subdirs = entries.values().filter(|&&i| vol.metadata(i).unwrap().is_dir()).count() as u32;
        assert_eq!(vol.metadata(d).unwrap().nlink, 2 + subdirs, "links of {d}");
        for &i in entries.values() {
            *names_of.entry(i).or_default() += 1;
        }
        listing.insert(d, entries);
    }
    for (&i, &n) in &names_of {
        let md = vol.metadata(i).unwrap();
        if md.is_dir() {
            assert_eq!((n, md.nlink), (1, 2), "directory {i}");
            assert_eq!(vol.read_dir(i).unwrap().len(), 2, "directory {i} stays empty");
        } else {
            assert_eq!(md.nlink, n, "links of {i}");
        }
    }
    vol.close().unwrap();
    for (&d, entries) in &listing {
        let out = debugfs(&img, &format!("ls -l <{d}>"));
        let listed: BTreeMap<Vec<u8>, u64> = out
            .lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.len() >= 9 && cols[8] != "." && cols[8] != "..")
                    .then(|| (cols[8].as_bytes().to_vec(), cols[0].parse::<u64>().unwrap()))
            })
            .collect();
        assert_eq!(&listed, entries, "debugfs ls -l of {d}");
    }
    assert!(debugfs_orphans(&img).is_empty());
    assert_fsck_clean(&img);
}

/// Points slot `slot` of the extended slot map at node `node`, in the image itself (as if a
/// node of that number had the slot when it died).
fn patch_slot_map(img: &Path, slot: u64, node: u32) {
    use std::io::{Seek, SeekFrom, Write};
    let stat = debugfs(img, "stat //slot_map");
    let blk = slow_symlink_block(&stat);
    let mut f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.seek(SeekFrom::Start(blk * 4096 + slot * 8)).unwrap();
    f.write_all(&[1, 0, 0, 0]).unwrap();
    f.write_all(&node.to_le_bytes()).unwrap();
}

#[test]
fn orphans_of_a_slot_recovered_at_open_are_freed_too() {
    let s = Scratch::new("write-namespace-orphans-slot");
    let img = tools_volume(&s, "slot", &[]);
    let in_slot_1 = MountOptions { preferred_slot: Some(1), ..MountOptions::writable() };
    // Warm slot 1 up, so that its inode allocator has its group before the baseline.
    let vol = Volume::open_path(&img, in_slot_1.clone()).unwrap();
    assert_eq!(vol.slot(), Some(1));
    vol.create(vol.root(), b"warm", 0o644).unwrap();
    vol.unlink(vol.root(), b"warm").unwrap();
    vol.close().unwrap();
    let base = (bitmap_used(&img, "inode_alloc:0001"), bitmap_used(&img, "global_bitmap"));
    let vol = Volume::open_path(&img, in_slot_1).unwrap();
    let (o, holds) = make_orphans(&vol);
    vol.sync().unwrap();
    std::mem::forget(holds);
    std::mem::forget(vol);
    // The node in slot 1 was another one, now dead: this open takes slot 0 and recovers 1.
    patch_slot_map(&img, 1, 5);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    assert_eq!(vol.slot(), Some(0));
    for ino in [o.file, o.link, o.replaced] {
        assert!(vol.metadata(ino).is_err(), "the open freed orphan {ino} of slot 1");
    }
    vol.unlink(vol.root(), b"replaced").unwrap();
    vol.close().unwrap();
    let listing = debugfs(&img, "ls -l //orphan_dir:0001");
    assert_eq!(listing.lines().filter(|l| !l.trim().is_empty()).count(), 2, "only . and ..:\n{listing}");
    assert_eq!((bitmap_used(&img, "inode_alloc:0001"), bitmap_used(&img, "global_bitmap")), base);
    assert_fsck_clean(&img);
}

/// What a crash test compares: path → (type letter, links, symlink target or device number).
type Shape = BTreeMap<String, (char, u32, String)>;

/// The tree under the root (lost+found aside) as our reader sees it.
fn read_shape(vol: &Volume) -> Shape {
    let mut shape = Shape::new();
    let mut stack = vec![(vol.root(), String::new())];
    while let Some((dir, path)) = stack.pop() {
        for e in vol.read_dir(dir).unwrap().into_iter().skip(2) {
            if dir == vol.root() && e.name == b"lost+found" {
                continue;
            }
            let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            let md = vol.metadata(e.ino).unwrap();
            let extra = match md.file_type {
                FileType::Symlink => String::from_utf8_lossy(&vol.read_link(e.ino).unwrap()).into_owned(),
                FileType::CharDevice => md.rdev.to_string(),
                _ => String::new(),
            };
            if md.is_dir() {
                stack.push((e.ino, p.clone()));
            }
            shape.insert(p, (md.file_type.letter(), md.nlink, extra));
        }
    }
    shape
}

/// The crash workload's model: path → (inode, type letter, extra).
#[derive(Clone, Default)]
struct CrashModel {
    paths: BTreeMap<String, (u64, char, String)>,
}

impl CrashModel {
    fn shape(&self) -> Shape {
        let mut names: BTreeMap<u64, u32> = BTreeMap::new();
        for (ino, _, _) in self.paths.values() {
            *names.entry(*ino).or_default() += 1;
        }
        self.paths
            .iter()
            .map(|(p, (ino, kind, extra))| {
                let links = if *kind == 'd' {
                    let prefix = format!("{p}/");
                    2 + self
                        .paths
                        .iter()
                        .filter(|(q, (_, k, _))| {
                            *k == 'd' && q.starts_with(&prefix) && !q[prefix.len()..].contains('/')
                        })
                        .count() as u32
                } else {
                    names[ino]
                };
                (p.clone(), (*kind, links, extra.clone()))
            })
            .collect()
    }

    fn dirs(&self) -> Vec<String> {
        std::iter::once(String::new())
            .chain(self.paths.iter().filter(|(_, (_, k, _))| *k == 'd').map(|(p, _)| p.clone()))
            .collect()
    }

    fn has_children(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.paths.keys().any(|p| p.starts_with(&prefix))
    }
}

fn split(path: &str) -> (&str, &str) {
    let at = path.rfind('/').unwrap();
    (&path[..at], &path[at + 1..])
}

/// Runs the namespace workload on `dev`; returns the shape after each step (index 0: before
/// any) and, for steps followed by a sync, the device's write count when the sync returned.
fn namespace_workload(dev: Arc<FaultDevice<MemDevice>>, seed: u64, ops: usize) -> (Vec<Shape>, Vec<Option<u64>>) {
    let mut shapes = vec![Shape::new()];
    let mut writes = vec![Some(0)];
    let Ok(vol) = Volume::open(dev.clone() as Arc<dyn BlockDevice>, MountOptions::writable()) else {
        return (shapes, writes);
    };
    writes[0] = Some(dev.writes());
    let mut rng = Rng::new(seed);
    let mut m = CrashModel::default();
    let mut holds = Vec::new();
    let ino_of = |vol: &Volume, path: &str| -> u64 {
        if path.is_empty() {
            vol.root()
        } else {
            vol.resolve(path).unwrap()
        }
    };
    for _ in 0..ops {
        let dirs = m.dirs();
        let dpath = pick_string(&mut rng, &dirs);
        let dino = ino_of(&vol, &dpath);
        let name = format!("n{}{}", rng.below(12), "y".repeat(rng.below(40) as usize));
        let path = format!("{dpath}/{name}");
        let exists = m.paths.contains_key(&path);
        let r: ocfs2::fs::Result<()> = match rng.below(10) {
            _ if exists && rng.below(2) == 0 => {
                let (ino, kind, _) = m.paths[&path].clone();
                if kind == 'd' {
                    if m.has_children(&path) {
                        Ok(())
                    } else {
                        vol.rmdir(dino, name.as_bytes()).map(|_| {
                            m.paths.remove(&path);
                        })
                    }
                } else if rng.below(3) == 0 {
                    // Unlinked while held: an orphan until the hold goes (or the next open).
                    vol.hold(ino)
                        .and_then(|h| {
                            holds.push(h);
                            vol.unlink(dino, name.as_bytes())
                        })
                        .map(|_| {
                            m.paths.remove(&path);
                        })
                } else {
                    vol.unlink(dino, name.as_bytes()).map(|_| {
                        m.paths.remove(&path);
                    })
                }
            }
            _ if exists => {
                // Rename it somewhere, replacing what is there when POSIX allows.
                let to_dir = pick_string(&mut rng, &dirs);
                let to = format!("{to_dir}/n{}", rng.below(12));
                let (src_ino, kind, _) = m.paths[&path].clone();
                let dst = m.paths.get(&to).cloned();
                let blocked = match &dst {
                    _ if to == path || to.starts_with(&format!("{path}/")) => true,
                    Some((d, _, _)) if *d == src_ino => true,
                    Some((_, dk, _)) => (*dk == 'd') != (kind == 'd') || (*dk == 'd' && m.has_children(&to)),
                    None => false,
                };
                if blocked {
                    Ok(())
                } else {
                    let to_ino = ino_of(&vol, &to_dir);
                    vol.rename(dino, name.as_bytes(), to_ino, split(&to).1.as_bytes()).map(|_| {
                        m.paths.remove(&to);
                        let prefix = format!("{path}/");
                        let moved: Vec<(String, (u64, char, String))> = m
                            .paths
                            .iter()
                            .filter(|(p, _)| **p == path || p.starts_with(&prefix))
                            .map(|(p, v)| (p.clone(), v.clone()))
                            .collect();
                        for (p, v) in moved {
                            m.paths.remove(&p);
                            m.paths.insert(format!("{to}{}", &p[path.len()..]), v);
                        }
                    })
                }
            }
            0 => vol.mkdir(dino, name.as_bytes(), 0o755).map(|ino| {
                m.paths.insert(path.clone(), (ino, 'd', String::new()));
            }),
            1 | 2 => {
                let target = "t".repeat(if rng.below(2) == 0 { 5 } else { 1000 + rng.below(3000) as usize });
                vol.symlink(dino, name.as_bytes(), target.as_bytes()).map(|ino| {
                    m.paths.insert(path.clone(), (ino, 'l', target));
                })
            }
            3 => {
                let rdev = dev_makedev(rng.below(300), rng.below(300));
                vol.mknod(dino, name.as_bytes(), 0o020644, rdev).map(|ino| {
                    m.paths.insert(path.clone(), (ino, 'c', rdev.to_string()));
                })
            }
            4 | 5 => {
                // A hard link to some file.
                let files: Vec<String> =
                    m.paths.iter().filter(|(_, (_, k, _))| *k == 'f').map(|(p, _)| p.clone()).collect();
                if files.is_empty() {
                    Ok(())
                } else {
                    let (ino, _, _) = m.paths[&pick_string(&mut rng, &files)].clone();
                    vol.link(ino, dino, name.as_bytes()).map(|_| {
                        m.paths.insert(path.clone(), (ino, 'f', String::new()));
                    })
                }
            }
            6 if !holds.is_empty() => {
                let h: ocfs2::fs::OpenInode = holds.swap_remove(rng.below(holds.len() as u64) as usize);
                h.close()
            }
            _ => vol.create(dino, name.as_bytes(), 0o644).map(|ino| {
                m.paths.insert(path.clone(), (ino, 'f', String::new()));
            }),
        };
        if let Err(e) = r {
            eprintln!("the workload stopped at {path}: {e}");
            break;
        }
        shapes.push(m.shape());
        match sync_sometimes(&vol, &mut rng, || dev.writes()) {
            Ok(w) => writes.push(w),
            Err(e) => {
                eprintln!("the workload stopped at a sync: {e}");
                break;
            }
        }
    }
    let _ = vol.close();
    drop(holds);
    (shapes, writes)
}

fn pick_string(rng: &mut Rng, items: &[String]) -> String {
    items[rng.below(items.len() as u64) as usize].clone()
}

#[test]
fn a_crash_at_any_write_keeps_every_rename_link_and_orphan_atomic() {
    let s = Scratch::new("write-namespace-crash");
    let img = s.path("crash.img");
    sparse_image(&img, 48 << 20);
    mkfs_ocfs2(
        &img,
        &["-M", "local", "-b", "1024", "-C", "4096", "-N", "2", "-J", "size=4M", "--fs-features=noindexed-dirs"],
    );
    let image = std::fs::read(&img).unwrap();
    let seed = seed();
    println!("crash: seed {seed}");
    let ops = 160;
    let probe = Arc::new(FaultDevice::new(MemDevice::from_bytes(image.clone()), FaultPlan::new()));
    let (shapes, _) = namespace_workload(probe.clone(), seed, ops);
    assert_eq!(shapes.len(), ops + 1, "the workload runs to its end without a crash");
    assert!(shapes[ops].len() > 10, "the workload leaves a tree: {:?}", shapes[ops]);
    let writes = probe.writes();
    let mut rng = Rng::new(seed ^ 0x5eed);
    for trial in 0..10 {
        let last = rng.below(writes);
        let torn = (rng.below(3) == 0).then(|| 1 + rng.below(1023) as usize);
        let dev = Arc::new(FaultDevice::new(
            MemDevice::from_bytes(image.clone()),
            FaultPlan::new().with(FaultKind::CrashAfterWrite { last, torn_bytes: torn }),
        ));
        let (_, done) = namespace_workload(dev.clone(), seed, ops);
        let landed = if torn.is_some() { last } else { last + 1 };
        let durable = done.iter().rposition(|w| w.is_some_and(|w| w <= landed)).unwrap_or(0);
        let what = format!("seed {seed} trial {trial}: crash after write {last} of {writes}, torn {torn:?}");
        std::fs::write(&img, dev.inner().to_bytes()).unwrap();
        let vol = Volume::open_path(&img, MountOptions::writable()).unwrap_or_else(|e| panic!("{what}: {e}"));
        let ours = read_shape(&vol);
        vol.close().unwrap();
        assert!(debugfs_orphans(&img).is_empty(), "{what}: the open freed every orphan");
        let (code, out) = fsck_fn(&img);
        assert!(code == 0 && !out.lines().any(|l| l.starts_with('[')), "{what}: fsck.ocfs2 -fn:\n{out}");
        // Steps that changed nothing leave equal shapes: the replay may match any of them.
        let k = (durable..shapes.len()).find(|&k| shapes[k] == ours).unwrap_or_else(|| {
            let want = &shapes[durable];
            let lost: Vec<_> = want.iter().filter(|(p, v)| ours.get(*p) != Some(v)).collect();
            let extra: Vec<_> = ours.iter().filter(|(p, v)| want.get(*p) != Some(v)).collect();
            panic!("{what}: the replay matches no state from step {durable} on (the last synced); missing {lost:?}, instead {extra:?}")
        });
        println!("{what}: the tree is the state after {k} of {ops} operations ({durable} durable)");
    }
}
