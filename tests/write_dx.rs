//! Indexed directories written by us: thousands of names of random bytes (1 to 255 of them,
//! anything but '/' and NUL) come and go in one big directory and several small ones, on
//! volumes made by mkfs.ocfs2 and by our mkfs (4K and 512-byte blocks, with and without inline
//! data, with and without metaecc), checked against a model of the expected names by our
//! lookups and, after the volume is closed, by the real tools: `fsck.ocfs2 -fn` reports no
//! problem at all (it looks every name up in its directory's index), `debugfs.ocfs2 -R "ls -l"`
//! lists exactly the model, `dx_dump` holds one entry per name with the name's hash, and
//! `stat DIR/NAME` finds a sample of names through the tools' own index lookup.
//!
//! Seeds are printed; `OCFS2_TEST_SEED` replays one. `WRITE_DX_ONLY=<case>` runs one case.

mod common;

use common::*;
use ocfs2::device::{FaultKind, FaultPlan};
use ocfs2::format::dx::{dx_hash, dx_seeds};
use ocfs2::mkfs::{mkfs, FeatureRequest, MkfsOptions, MountType};
use ocfs2::{BlockDevice, FaultDevice, FileDevice, MemDevice, MountOptions, Volume};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Each directory's names (name → inode, is a directory).
type Model = BTreeMap<u64, BTreeMap<Vec<u8>, (u64, bool)>>;

/// A name of 1..=255 random bytes, never '/' nor NUL; one in eight is made of letters and
/// digits only, so that debugfs.ocfs2 can be handed it on its command line.
fn random_name(rng: &mut Rng) -> Vec<u8> {
    loop {
        let name: Vec<u8> = if rng.below(8) == 0 {
            let len = 1 + rng.below(60) as usize;
            (0..len).map(|_| b"abcdefghijklmnopqrstuvwxyz0123456789_-"[rng.below(38) as usize]).collect()
        } else {
            let len = 1 + rng.below(255) as usize;
            (0..len).map(|_| 1 + rng.below(255) as u8).map(|b| if b == b'/' { b'%' } else { b }).collect()
        };
        // A newline followed by a tab would look like the start of the next entry in
        // debugfs.ocfs2's listing.
        if name != b"." && name != b".." && !name.windows(2).any(|w| w == b"\n\t") {
            return name;
        }
    }
}

fn friendly(name: &[u8]) -> bool {
    name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// Writes `bytes` to a new sparse file at `path`, skipping blocks of zeros.
fn save_sparse(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(bytes.len() as u64).unwrap();
    for (i, chunk) in bytes.chunks(1 << 16).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            f.seek(SeekFrom::Start((i as u64) << 16)).unwrap();
            f.write_all(chunk).unwrap();
        }
    }
    f.sync_all().unwrap();
}

/// The hash seeds of the image's superblock, for checking what dx_dump shows.
fn image_seeds(img: &Path) -> [u32; 4] {
    let stats = debugfs(img, "stats");
    let bits: u32 = stats
        .split("Block Size Bits:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("debugfs stats prints the block size bits");
    let data = std::fs::read(img).unwrap();
    let sb = &data[(2usize << bits)..(3usize << bits)];
    let le32 = |off: usize| u32::from_le_bytes(sb[off..off + 4].try_into().unwrap());
    dx_seeds([le32(0x17C), le32(0x180), le32(0x184)], le32(0x104))
}

/// The entries `debugfs.ocfs2 -R "ls -l <dir>"` prints, as raw bytes: each starts with a tab
/// and eight fields (inode, mode, links, uid, gid, size, date, time), then one space and the
/// name up to the newline that precedes the next entry's tab.
fn debugfs_listing(img: &Path, dir: u64) -> BTreeMap<Vec<u8>, u64> {
    require_tool("debugfs.ocfs2");
    let out = std::process::Command::new("debugfs.ocfs2")
        .arg("-R")
        .arg(format!("ls -l <{dir}>"))
        .arg(img)
        .output()
        .expect("run debugfs.ocfs2");
    assert!(out.status.success(), "debugfs.ocfs2 ls -l <{dir}> failed");
    let raw = out.stdout;
    let mut starts: Vec<usize> = Vec::new();
    for i in 0..raw.len() {
        if raw[i] == b'\t' && (i == 0 || raw[i - 1] == b'\n') && raw.get(i + 1).is_some_and(|b| b.is_ascii_digit()) {
            starts.push(i);
        }
    }
    let mut listed = BTreeMap::new();
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(raw.len(), |&e| e) - 1;
        assert_eq!(raw[end], b'\n', "an entry of <{dir}> ends with a newline");
        let entry = &raw[s + 1..end];
        let mut at = 0;
        let mut fields = Vec::new();
        for _ in 0..8 {
            while entry[at] == b' ' {
                at += 1;
            }
            let from = at;
            while entry[at] != b' ' {
                at += 1;
            }
            fields.push(String::from_utf8_lossy(&entry[from..at]).into_owned());
        }
        let name = entry[at + 1..].to_vec();
        let ino: u64 = fields[0].parse().expect("inode column");
        assert!(listed.insert(name, ino).is_none(), "a name listed twice in <{dir}>");
    }
    listed
}

/// `(major, minor)` of every row of `dx_dump`, and its "Total Entry Count".
fn dx_dump(img: &Path, dir: u64) -> (Vec<(u32, u32)>, u64) {
    let out = debugfs(img, &format!("dx_dump <{dir}>"));
    let total = out
        .split("Total Entry Count:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("dx_dump <{dir}> prints no entry count:\n{out}"));
    let rows = out
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() != 4 || !c[1].starts_with("(0x") {
                return None;
            }
            let hex =
                |t: &str| u32::from_str_radix(t.trim_matches(|ch| ch == '(' || ch == ')').trim_start_matches("0x"), 16);
            Some((hex(c[1]).ok()?, hex(c[2]).ok()?))
        })
        .collect();
    (rows, total)
}

/// Checks the free space of directory `dir` as debugfs.ocfs2 reads it: every block's trailer
/// "Largest Hole" (`dirblocks`) is the largest record its entries leave room for, and the free
/// list (`dx_space`) holds exactly the blocks with room, each once.
fn check_free_space(img: &Path, dir: u64, what: &str) {
    require_tool("debugfs.ocfs2");
    let raw = std::process::Command::new("debugfs.ocfs2")
        .arg("-R")
        .arg(format!("dirblocks <{dir}>"))
        .arg(img)
        .output()
        .expect("run debugfs.ocfs2")
        .stdout;
    // (block, largest hole the trailer claims, largest hole of the entries)
    let mut blocks: Vec<(u64, u64, u64)> = Vec::new();
    for line in raw.split(|&b| b == b'\n').filter(|l| l.first() == Some(&b'\t')) {
        let text = String::from_utf8_lossy(line);
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let num = |i: usize| tokens.get(i).and_then(|t| t.parse::<u64>().ok());
        if tokens.first() == Some(&"Dirblock:") {
            blocks.push((num(1).expect("block number"), u64::MAX, 0));
        } else if tokens.first() == Some(&"Largest") {
            blocks.last_mut().expect("a block").1 = num(2).expect("largest hole");
        } else if let (Some(ino), Some(rec_len), Some(name_len), Some(_)) = (num(0), num(1), num(2), num(3)) {
            let hole = if ino == 0 { rec_len } else { rec_len - ((name_len + 12 + 3) & !3) };
            let b = blocks.last_mut().expect("a block");
            b.2 = b.2.max(hole);
        }
    }
    assert!(!blocks.is_empty(), "{what}: debugfs dirblocks <{dir}> shows no block");
    let mut roomy = BTreeSet::new();
    for &(blkno, claimed, real) in &blocks {
        let real = if real >= 16 { real } else { 0 };
        assert_eq!(claimed, real, "{what}: largest hole of block {blkno} of <{dir}>");
        if real > 0 {
            roomy.insert(blkno);
        }
    }
    let listed: Vec<u64> = debugfs(img, &format!("dx_space <{dir}>"))
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Trailer Block:"))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    let set: BTreeSet<u64> = listed.iter().copied().collect();
    assert_eq!(set.len(), listed.len(), "{what}: a block twice on the free list of <{dir}>");
    assert!(set == roomy, "{what}: the free list of <{dir}> holds {} blocks, {} have room", set.len(), roomy.len());
}

/// Checks the closed image with the real tools against the model; `paths` names each
/// directory of the model by its path. `exact_free`: every block of every directory was
/// written by us, so the free space bookkeeping must be exact (the kernel's first block of a
/// new directory undercounts its hole until the block next changes).
fn check_with_tools(
    img: &Path,
    m: &Model,
    paths: &BTreeMap<u64, String>,
    baseline: &[String],
    what: &str,
    rng: &mut Rng,
    exact_free: bool,
) {
    let t = Instant::now();
    assert_fsck_as_fresh(img, baseline);
    let seeds = image_seeds(img);
    for (&dir, names) in m {
        let listed = debugfs_listing(img, dir);
        let mut want: BTreeMap<Vec<u8>, u64> = names.iter().map(|(n, &(i, _))| (n.clone(), i)).collect();
        want.insert(b".".to_vec(), dir);
        let mut got = listed.clone();
        got.remove(&b".."[..]);
        assert_eq!(
            got.len(),
            want.len(),
            "{what}: debugfs ls -l <{dir}> lists {} names, the model {}",
            got.len(),
            want.len()
        );
        assert!(got == want, "{what}: debugfs ls -l <{dir}> differs from the model");

        let (mut rows, total) = dx_dump(img, dir);
        assert_eq!(total, names.len() as u64 + 2, "{what}: dx_dump <{dir}> entry count");
        let mut hashes: Vec<(u32, u32)> = names.keys().map(|n| dx_hash(n, seeds)).collect();
        hashes.extend([(0, 0), (0, 0)]);
        rows.sort_unstable();
        hashes.sort_unstable();
        assert!(rows == hashes, "{what}: dx_dump <{dir}> holds {} entries, not the hashes of its names", rows.len());
        if exact_free {
            check_free_space(img, dir, what);
        }

        let sample: Vec<(&Vec<u8>, &(u64, bool))> = names.iter().filter(|(n, _)| friendly(n)).collect();
        for _ in 0..sample.len().min(6) {
            let (name, &(ino, _)) = sample[rng.below(sample.len() as u64) as usize];
            let path = format!("{}/{}", paths[&dir], String::from_utf8_lossy(name));
            let out = debugfs(img, &format!("stat {path}"));
            assert!(out.contains(&format!("Inode: {ino} ")), "{what}: debugfs stat {path}:\n{out}");
        }
    }
    println!("{what}: the tools agree ({:?})", t.elapsed());
}

/// Our lookup finds every name of the model, and a sample of names not in it is not found.
fn check_lookups(vol: &Volume, m: &Model, gone: &[(u64, Vec<u8>)], what: &str) {
    for (&dir, names) in m {
        for (name, &(ino, _)) in names {
            let got = vol.lookup(dir, name).unwrap_or_else(|e| panic!("{what}: lookup in {dir}: {e}"));
            assert_eq!(got, ino, "{what}: lookup in {dir}");
        }
        let n = vol.read_dir(dir).unwrap().len();
        assert_eq!(n, names.len() + 2, "{what}: read_dir {dir}");
    }
    for (dir, name) in gone.iter().take(500) {
        if m.get(dir).is_some_and(|d| !d.contains_key(name)) {
            assert_eq!(vol.lookup(*dir, name).unwrap_err().errno(), 2, "{what}: a removed name is gone");
        }
    }
}

/// Adds `count` names (files, one in twenty a directory) to directories of `dirs`, most to
/// the first.
fn add_names(vol: &Volume, m: &mut Model, dirs: &[u64], count: usize, rng: &mut Rng, what: &str) {
    for i in 0..count {
        let dir = if rng.below(2) == 0 { dirs[0] } else { dirs[rng.below(dirs.len() as u64) as usize] };
        let name = random_name(rng);
        let exists = m[&dir].contains_key(&name);
        let is_dir = rng.below(20) == 0;
        let r = if is_dir { vol.mkdir(dir, &name, 0o755) } else { vol.create(dir, &name, 0o644) };
        match r {
            Ok(ino) => {
                assert!(!exists, "{what}: name {i} created twice");
                m.get_mut(&dir).unwrap().insert(name, (ino, is_dir));
            }
            Err(e) => {
                assert!(exists, "{what}: create {i} in {dir}: {e}");
                assert_eq!(e.errno(), 17, "{what}: {e}");
            }
        }
    }
}

/// Removes a random half of the names of `dirs`; returns them.
fn remove_half(vol: &Volume, m: &mut Model, dirs: &[u64], rng: &mut Rng, what: &str) -> Vec<(u64, Vec<u8>)> {
    let mut gone = Vec::new();
    for &dir in dirs {
        let names: Vec<(Vec<u8>, (u64, bool))> = m[&dir].iter().map(|(n, v)| (n.clone(), *v)).collect();
        for (name, (_, is_dir)) in names {
            if rng.below(2) == 0 {
                continue;
            }
            if is_dir { vol.rmdir(dir, &name) } else { vol.unlink(dir, &name) }
                .unwrap_or_else(|e| panic!("{what}: remove from {dir}: {e}"));
            m.get_mut(&dir).unwrap().remove(&name);
            gone.push((dir, name));
        }
    }
    gone
}

struct Sizes {
    first: usize,
    second: usize,
    small_dirs: usize,
}

/// The whole scenario on the image at `img` (just formatted).
fn exercise(img: &Path, what: &str, sizes: &Sizes) {
    let baseline = fsck_problem_lines(img);
    let seed = seed();
    println!("{what}: seed {seed} (replay with OCFS2_TEST_SEED={seed})");
    let mut rng = Rng::new(seed);
    let dev = Arc::new(MemDevice::from_bytes(std::fs::read(img).unwrap()));
    let vol = Volume::open(dev.clone(), MountOptions::writable()).unwrap();
    let root = vol.root();
    let mut m = Model::new();
    let mut dirs = Vec::new();
    let mut paths = BTreeMap::new();
    for k in 0..=sizes.small_dirs {
        let name = if k == 0 { "big".to_string() } else { format!("small{k}") };
        let ino = vol.mkdir(root, name.as_bytes(), 0o755).unwrap();
        m.insert(ino, BTreeMap::new());
        dirs.push(ino);
        paths.insert(ino, format!("/{name}"));
    }
    let t = Instant::now();
    add_names(&vol, &mut m, &dirs, sizes.first, &mut rng, what);
    println!("{what}: {} names added in {:?}", sizes.first, t.elapsed());
    check_lookups(&vol, &m, &[], what);
    let t = Instant::now();
    let gone = remove_half(&vol, &mut m, &dirs, &mut rng, what);
    println!("{what}: {} names removed in {:?}", gone.len(), t.elapsed());
    check_lookups(&vol, &m, &gone, what);
    add_names(&vol, &mut m, &dirs, sizes.second, &mut rng, what);
    check_lookups(&vol, &m, &gone, what);
    vol.close().unwrap();
    save_sparse(img, &dev.to_bytes());
    // Subdirectories created among the names hold nothing; the root is the tools' business.
    let checked: Model = m.iter().filter(|(d, _)| dirs.contains(d)).map(|(d, n)| (*d, n.clone())).collect();
    check_with_tools(img, &checked, &paths, &baseline, what, &mut rng, true);

    // On the file itself: empty one small directory (whose index has leaves by now) and
    // remove it, so that its index is freed, then add and remove a few more names.
    let vol = Volume::open_path(img, MountOptions::writable()).unwrap();
    let victim = dirs[dirs.len() - 1];
    let names: Vec<(Vec<u8>, bool)> = m[&victim].iter().map(|(n, &(_, d))| (n.clone(), d)).collect();
    for (name, is_dir) in names {
        if is_dir { vol.rmdir(victim, &name) } else { vol.unlink(victim, &name) }.unwrap();
    }
    m.insert(victim, BTreeMap::new());
    assert_eq!(vol.read_dir(victim).unwrap().len(), 2, "{what}: emptied");
    let vname = format!("small{}", sizes.small_dirs);
    vol.rmdir(root, vname.as_bytes()).unwrap_or_else(|e| panic!("{what}: rmdir of an emptied indexed dir: {e}"));
    m.remove(&victim);
    dirs.pop();
    add_names(&vol, &mut m, &dirs, 200, &mut rng, what);
    let gone = remove_half(&vol, &mut m, &dirs[1..], &mut rng, what);
    check_lookups(&vol, &m, &gone, what);
    vol.close().unwrap();
    let checked: Model = m.iter().filter(|(d, _)| dirs.contains(d)).map(|(d, n)| (*d, n.clone())).collect();
    check_with_tools(img, &checked, &paths, &baseline, what, &mut rng, true);
}

fn tools_image(s: &Scratch, name: &str, size_mb: u64, args: &[&str]) -> std::path::PathBuf {
    let img = s.path(&format!("{name}.img"));
    sparse_image(&img, size_mb << 20);
    mkfs_ocfs2(&img, args);
    img
}

fn our_image(s: &Scratch, name: &str, size_mb: u64, block: u32, cluster: u32, features: &str) -> std::path::PathBuf {
    let img = s.path(&format!("{name}.img"));
    sparse_image(&img, size_mb << 20);
    let opts = MkfsOptions {
        block_size: Some(block),
        cluster_size: Some(cluster),
        slots: Some(2),
        mount: Some(MountType::Local),
        features: FeatureRequest::parse(features).unwrap(),
        force: true,
        ..Default::default()
    };
    mkfs(&FileDevice::open_rw(&img).unwrap(), &opts).unwrap();
    img
}

fn only(case: &str) -> bool {
    std::env::var("WRITE_DX_ONLY").map_or(true, |o| o == case)
}

const SIZES: Sizes = Sizes { first: 3000, second: 1500, small_dirs: 3 };

#[test]
fn indexed_names_come_and_go_on_mkfs_ocfs2_volumes() {
    let s = Scratch::new("write-dx-tools");
    let cases: &[(&str, &[&str])] = &[
        ("tools-4k-inline", &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]),
        (
            "tools-4k-noinline-ecc",
            &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2", "--fs-features=noinline-data,metaecc"],
        ),
        ("tools-512-inline", &["-M", "local", "-b", "512", "-C", "4096", "-N", "2", "-J", "size=4M"]),
        (
            "tools-512-noinline-ecc",
            &[
                "-M",
                "local",
                "-b",
                "512",
                "-C",
                "8192",
                "-N",
                "2",
                "-J",
                "size=4M",
                "--fs-features=noinline-data,metaecc",
            ],
        ),
    ];
    for (name, args) in cases {
        if !only(name) {
            continue;
        }
        let img = tools_image(&s, name, 512, args);
        // Without inline data mkfs.ocfs2 leaves the system directory unindexed (and at 512-byte
        // blocks always), which fsck.ocfs2 reports on the fresh image already.
        if *name == "tools-4k-inline" {
            assert!(fsck_problem_lines(&img).is_empty(), "{name}: the fresh image is clean");
        }
        exercise(&img, name, &SIZES);
    }
}

#[test]
fn indexed_names_come_and_go_on_volumes_made_by_our_mkfs() {
    let s = Scratch::new("write-dx-ours");
    let cases: &[(&str, u32, u32, &str)] = &[
        ("ours-4k-noinline-ecc", 4096, 4096, "indexed-dirs,noinline-data,metaecc"),
        ("ours-512-inline", 512, 4096, "indexed-dirs,inline-data"),
        ("ours-512-noinline", 512, 4096, "indexed-dirs,noinline-data"),
    ];
    for &(name, block, cluster, features) in cases {
        if !only(name) {
            continue;
        }
        let img = our_image(&s, name, 512, block, cluster, features);
        assert!(fsck_problem_lines(&img).is_empty(), "{name}: our fresh image is clean");
        exercise(&img, name, &SIZES);
    }
}

/// 50,000 names in one directory: every operation goes through the index and the free-space
/// list, so adding, finding and removing stay fast however large the directory grows.
#[test]
fn fifty_thousand_names_in_one_directory() {
    let s = Scratch::new("write-dx-50k");
    let img = tools_image(&s, "big", 1024, &["-M", "local", "-b", "4096", "-C", "16384", "-N", "2", "-J", "size=16M"]);
    let seed = seed();
    println!("50k: seed {seed} (replay with OCFS2_TEST_SEED={seed})");
    let mut rng = Rng::new(seed);
    let dev = Arc::new(MemDevice::from_bytes(std::fs::read(&img).unwrap()));
    let vol = Volume::open(dev.clone(), MountOptions::writable()).unwrap();
    let dir = vol.mkdir(vol.root(), b"many", 0o755).unwrap();
    let mut m = Model::new();
    m.insert(dir, BTreeMap::new());
    let total = 50_000;
    let t = Instant::now();
    let mut lap = Instant::now();
    let mut names: BTreeSet<Vec<u8>> = BTreeSet::new();
    while names.len() < total {
        let name = random_name(&mut rng);
        if !names.insert(name.clone()) {
            continue;
        }
        let ino = vol.create(dir, &name, 0o644).unwrap_or_else(|e| panic!("50k: create {}: {e}", names.len()));
        m.get_mut(&dir).unwrap().insert(name, (ino, false));
        if names.len().is_multiple_of(10_000) {
            println!("50k: {} names, the last 10,000 in {:?}", names.len(), lap.elapsed());
            lap = Instant::now();
        }
    }
    let create = t.elapsed();
    let t = Instant::now();
    check_lookups(&vol, &m, &[], "50k");
    let lookup = t.elapsed();
    let t = Instant::now();
    let gone = remove_half(&vol, &mut m, &[dir], &mut rng, "50k");
    let remove = t.elapsed();
    let t = Instant::now();
    add_names(&vol, &mut m, &[dir], 10_000, &mut rng, "50k");
    let again = t.elapsed();
    check_lookups(&vol, &m, &gone, "50k");
    println!(
        "50k: created {total} in {create:?}, looked all up in {lookup:?}, removed {} in {remove:?}, \
         added 10,000 more in {again:?}",
        gone.len()
    );
    vol.close().unwrap();
    save_sparse(&img, &dev.to_bytes());
    check_with_tools(&img, &m, &BTreeMap::from([(dir, "/many".to_string())]), &[], "50k", &mut rng, true);
}

/// At 512-byte blocks a dx root lists 19 leaf clusters, full after about 2,300 names: the
/// index then moves its records into extent blocks below the root (a tree of depth 1 and more,
/// as an inode's grows), and names keep coming and going; the tools agree.
#[test]
fn an_index_outgrowing_its_root_grows_a_deeper_tree() {
    let s = Scratch::new("write-dx-deep");
    let img = our_image(&s, "deep", 256, 512, 4096, "indexed-dirs,noinline-data");
    let seed = seed();
    println!("deep: seed {seed} (replay with OCFS2_TEST_SEED={seed})");
    let mut rng = Rng::new(seed);
    let dev = Arc::new(MemDevice::from_bytes(std::fs::read(&img).unwrap()));
    let vol = Volume::open(dev.clone(), MountOptions::writable()).unwrap();
    let dir = vol.mkdir(vol.root(), b"deep", 0o755).unwrap();
    let mut m = Model::new();
    m.insert(dir, BTreeMap::new());
    add_names(&vol, &mut m, &[dir], 7_000, &mut rng, "deep");
    check_lookups(&vol, &m, &[], "deep");
    let gone = remove_half(&vol, &mut m, &[dir], &mut rng, "deep");
    add_names(&vol, &mut m, &[dir], 2_000, &mut rng, "deep");
    check_lookups(&vol, &m, &gone, "deep");
    println!("deep: {} names", m[&dir].len());
    vol.close().unwrap();
    save_sparse(&img, &dev.to_bytes());
    let out = std::process::Command::new("debugfs.ocfs2").args(["-R", "dx_dump /deep"]).arg(&img).output().unwrap();
    let dump = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let tail: Vec<&str> = dump.lines().rev().take(6).collect();
    println!("deep: dx_dump exit {:?}, last lines {tail:?}", out.status);
    assert!(
        dump.lines().any(|l| l.contains("Last Extblk:") && !l.contains("Last Extblk: 0 ")),
        "the index records live in extent blocks below the root:\n{}",
        dump.lines().take(8).collect::<Vec<_>>().join("\n")
    );
    check_with_tools(&img, &m, &BTreeMap::from([(dir, "/deep".to_string())]), &[], "deep", &mut rng, true);
}

/// The names of `dir`, "." and ".." left out.
fn names_of(vol: &Volume, dir: u64) -> BTreeSet<Vec<u8>> {
    vol.read_dir(dir).unwrap().into_iter().map(|e| e.name).filter(|n| n != b"." && n != b"..").collect()
}

/// Creates and removes names in one directory, whose index leaves its root and splits leaf
/// clusters on the way; returns the names after each operation that returned (index 0: before
/// any) and, for the operations followed by a sync (about one in three), the device's write
/// count when the sync returned (an operation is atomic when it returns, durable after the next
/// sync). Stops at the first error.
fn crash_workload(
    dev: Arc<FaultDevice<MemDevice>>,
    seed: u64,
    ops: usize,
) -> (Vec<BTreeSet<Vec<u8>>>, Vec<Option<u64>>) {
    let mut states = vec![BTreeSet::new()];
    let mut writes = vec![None];
    let Ok(vol) = Volume::open(dev.clone() as Arc<dyn BlockDevice>, MountOptions::writable()) else {
        return (states, writes);
    };
    let Ok(dir) = vol.mkdir(vol.root(), b"d", 0o755) else {
        return (states, writes);
    };
    if vol.sync().is_err() {
        return (states, writes);
    }
    writes[0] = Some(dev.writes());
    let mut rng = Rng::new(seed);
    let mut names = BTreeSet::new();
    for _ in 0..ops {
        let r = if names.is_empty() || rng.below(4) != 0 {
            let name = random_name(&mut rng);
            if names.contains(&name) {
                Ok(())
            } else {
                vol.create(dir, &name, 0o644).map(|_| {
                    names.insert(name);
                })
            }
        } else {
            let name = names.iter().nth(rng.below(names.len() as u64) as usize).unwrap().clone();
            vol.unlink(dir, &name).map(|_| {
                names.remove(&name);
            })
        };
        if r.is_err() {
            break;
        }
        states.push(names.clone());
        if rng.below(3) == 0 {
            if vol.sync().is_err() {
                break;
            }
            writes.push(Some(dev.writes()));
        } else {
            writes.push(None);
        }
    }
    let _ = vol.close();
    (states, writes)
}

/// A crash at any write leaves an indexed directory that fsck.ocfs2 finds clean after our
/// journal replay, holding exactly the names after some prefix of the operations, at least
/// all those synced: every split and every move of the index is one transaction.
#[test]
fn a_crash_at_any_write_leaves_the_index_whole() {
    let s = Scratch::new("write-dx-crash");
    let img = our_image(&s, "crash", 64, 512, 4096, "indexed-dirs,noinline-data");
    let image = std::fs::read(&img).unwrap();
    let seed = seed();
    println!("crash: seed {seed} (replay with OCFS2_TEST_SEED={seed})");
    let probe = Arc::new(FaultDevice::new(MemDevice::from_bytes(image.clone()), FaultPlan::new()));
    let (states, _) = crash_workload(probe.clone(), seed, 500);
    assert_eq!(states.len(), 501, "the workload runs to its end without a crash");
    let writes = probe.writes();
    let mut rng = Rng::new(seed ^ 0xd1ce);
    for trial in 0..10 {
        let last = rng.below(writes);
        let torn = (rng.below(3) == 0).then(|| 1 + rng.below(511) as usize);
        let dev = Arc::new(FaultDevice::new(
            MemDevice::from_bytes(image.clone()),
            FaultPlan::new().with(FaultKind::CrashAfterWrite { last, torn_bytes: torn }),
        ));
        let (_, done) = crash_workload(dev.clone(), seed, 500);
        let landed = if torn.is_some() { last } else { last + 1 };
        let durable = done.iter().rposition(|w| w.is_some_and(|w| w <= landed));
        let what = format!("seed {seed} trial {trial}: crash after write {last} of {writes}, torn {torn:?}");
        std::fs::write(&img, dev.inner().to_bytes()).unwrap();
        let vol = Volume::open_path(&img, MountOptions::writable()).unwrap_or_else(|e| panic!("{what}: {e}"));
        let kept = vol.lookup(vol.root(), b"d").ok().map(|dir| {
            let names = names_of(&vol, dir);
            for n in &names {
                assert!(vol.lookup(dir, n).is_ok(), "{what}: a name the index does not find");
            }
            names
        });
        vol.close().unwrap();
        assert!(fsck_problem_lines(&img).is_empty(), "{what}: fsck.ocfs2 -fn after our replay:\n{}", fsck_fn(&img).1);
        let Some(kept) = kept else {
            assert!(durable.is_none(), "{what}: the directory is gone, though its creation was synced");
            continue;
        };
        let durable = durable.unwrap_or(0);
        let k = states
            .iter()
            .position(|t| *t == kept)
            .unwrap_or_else(|| panic!("{what}: {} names that no prefix of the operations left", kept.len()));
        println!("{what}: the names after {k} of {} operations ({durable} durable)", states.len() - 1);
        assert!(k >= durable, "{what}: {k} operations kept, but {durable} had been synced before the crash");
    }
}

/// The guest's side of [`the_kernel_reads_and_changes_our_indexed_directories`]: counts and
/// looks up our names, adds and removes names in our big directory, fills a directory of its
/// own, and checks the volume with fsck.ocfs2 before and after.
const KERNEL_SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
[ -e /etc/mtab ] || ln -s /proc/mounts /etc/mtab
clean() {
  if fsck.ocfs2 -fn /dev/vda > /tmp/fsck.txt 2>&1 && ! grep -q '^\[' /tmp/fsck.txt; then echo "fsck clean $1"
  else cat /tmp/fsck.txt; echo "fsck problems $1"; exit 1; fi
}
clean before
mkdir -p /mnt/t
mount -t ocfs2 /dev/vda /mnt/t
for d in big small1 small2; do
  echo "count $d $(find /mnt/t/$d -mindepth 1 -maxdepth 1 -print0 | tr -cd '\0' | wc -c)"
done
while read -r d n; do echo "ino $d $n $(stat -c %i "/mnt/t/$d/$n")"; done < /root/lookups.txt
for i in $(seq 1 400); do : > "/mnt/t/big/kernel-$i"; done
while read -r n; do rm "/mnt/t/big/$n"; done < /root/removals.txt
mkdir /mnt/t/kdir
for i in $(seq 1 600); do : > "/mnt/t/kdir/kernel-file-with-a-long-name-$i"; done
umount /mnt/t
clean after
echo "guest done"
"#;

/// The Linux kernel (6.1, in the VM of ../shared/tools/kvm) mounts a volume whose indexed
/// directories we wrote: it finds every name we sampled, counts every name, adds and removes
/// names in our index, and fills an indexed directory of its own, which we then change. Both
/// sides leave fsck.ocfs2 -fn clean.
#[test]
#[ignore = "boots the kernel in the kvm referee (../shared/tools/kvm, ~1 min): run with --ignored"]
fn the_kernel_reads_and_changes_our_indexed_directories() {
    let kvm = kvm_tools();
    let s = Scratch::new("write-dx-kernel");
    let img = our_image(&s, "kernel", 256, 4096, 4096, "indexed-dirs,noinline-data,metaecc");
    let seed = seed();
    println!("kernel: seed {seed} (replay with OCFS2_TEST_SEED={seed})");
    let mut rng = Rng::new(seed);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let root = vol.root();
    let mut m = Model::new();
    let mut dirs = Vec::new();
    for name in ["big", "small1", "small2"] {
        let ino = vol.mkdir(root, name.as_bytes(), 0o755).unwrap();
        m.insert(ino, BTreeMap::new());
        dirs.push((ino, name));
    }
    let inos: Vec<u64> = dirs.iter().map(|d| d.0).collect();
    add_names(&vol, &mut m, &inos, 1500, &mut rng, "kernel");
    vol.close().unwrap();
    assert_fsck_clean(&img);

    let mut lookups = String::new();
    let mut removals = String::new();
    for &(ino, name) in &dirs {
        for (n, (i, _)) in m[&ino].iter().filter(|(n, _)| friendly(n)).take(20) {
            lookups.push_str(&format!("{name} {} {i}\n", String::from_utf8_lossy(n)));
        }
    }
    let big = dirs[0].0;
    let removed: Vec<Vec<u8>> =
        m[&big].iter().filter(|(n, (_, d))| friendly(n) && !*d).map(|(n, _)| n.clone()).take(60).collect();
    for n in &removed {
        removals.push_str(&format!("{}\n", String::from_utf8_lossy(n)));
    }
    let lookups_file = s.path("lookups.txt");
    std::fs::write(
        &lookups_file,
        lookups.lines().map(|l| l.rsplit_once(' ').unwrap().0).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    std::fs::write(s.path("removals.txt"), &removals).unwrap();
    std::fs::write(s.path("guest.sh"), KERNEL_SCRIPT).unwrap();
    let files = format!("{} {}", lookups_file.display(), s.path("removals.txt").display());
    let t = Instant::now();
    let out = std::process::Command::new(kvm.join("run-guest.sh"))
        .arg(&img)
        .arg(s.path("guest.sh"))
        .env("KVM_FILES", files)
        .env("KVM_TIMEOUT", "900")
        .output()
        .expect("run-guest.sh");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("kernel: the guest ran {:?}", t.elapsed());
    assert!(out.status.success() && console.contains("guest done"), "the guest failed:\n{console}");
    assert!(console.contains("fsck clean before") && console.contains("fsck clean after"), "{console}");
    for &(ino, name) in &dirs {
        let want = format!("count {name} {}", m[&ino].len());
        assert!(console.contains(&want), "kernel: {want} not in:\n{console}");
    }
    for line in lookups.lines() {
        let (what, ino) = line.rsplit_once(' ').unwrap();
        let want = format!("ino {what} {ino}");
        assert!(console.contains(&want), "kernel: {want} not in:\n{console}");
    }
    println!("kernel: the kernel counted and found our names");

    // The kernel's changes as we read them, then ours on top of them.
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    for n in &removed {
        m.get_mut(&big).unwrap().remove(n);
    }
    let mut listed = names_of(&vol, big);
    for i in 1..=400 {
        let n = format!("kernel-{i}").into_bytes();
        let ino = vol.lookup(big, &n).unwrap();
        assert!(listed.remove(&n));
        m.get_mut(&big).unwrap().insert(n, (ino, false));
    }
    let mine: BTreeSet<Vec<u8>> = m[&big].keys().filter(|n| !n.starts_with(b"kernel-")).cloned().collect();
    assert_eq!(listed, mine, "kernel: the big directory after the kernel's changes");
    let kdir = vol.lookup(root, b"kdir").unwrap();
    let theirs = names_of(&vol, kdir);
    assert_eq!(theirs.len(), 600, "kernel: its own directory");
    m.insert(kdir, theirs.iter().map(|n| (n.clone(), (vol.lookup(kdir, n).unwrap(), false))).collect());
    let all: Vec<u64> = vec![big, kdir];
    let gone = remove_half(&vol, &mut m, &all, &mut rng, "kernel");
    add_names(&vol, &mut m, &all, 800, &mut rng, "kernel");
    check_lookups(&vol, &m, &gone, "kernel");
    vol.close().unwrap();
    let paths = BTreeMap::from([(big, "/big".to_string()), (kdir, "/kdir".to_string())]);
    let checked: Model = m.iter().filter(|(d, _)| paths.contains_key(d)).map(|(d, n)| (*d, n.clone())).collect();
    check_with_tools(&img, &checked, &paths, &[], "kernel", &mut rng, false);
    // The kernel kept our directory's free space exact too.
    check_free_space(&img, big, "kernel");
}

/// The root directory of a default mkfs.ocfs2 volume starts inline; once its names no longer
/// fit the inode it becomes an indexed block directory (this replaces the refusal that
/// write_names.rs used to expect), and empties again.
#[test]
fn an_inline_root_that_outgrows_its_inode_becomes_indexed() {
    let s = Scratch::new("write-dx-root");
    let img = tools_image(&s, "root", 128, &["-M", "local", "-b", "4096", "-N", "2"]);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let root = vol.root();
    let made: Vec<String> = (0..300).map(|i| format!("file-with-a-longish-name-{i:04}")).collect();
    for name in &made {
        vol.create(root, name.as_bytes(), 0o644).unwrap_or_else(|e| panic!("create {name}: {e}"));
    }
    vol.close().unwrap();
    assert_fsck_clean(&img);
    let stat = debugfs(&img, "stat /");
    assert!(stat.contains("IndexedDir") && !stat.contains("InlineData"), "the root is indexed now:\n{stat}");
    let listed: BTreeSet<String> =
        debugfs(&img, "ls -l /").lines().filter_map(|l| l.split_whitespace().nth(8).map(str::to_string)).collect();
    for name in &made {
        assert!(listed.contains(name), "debugfs lists {name}");
    }
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    for name in &made {
        vol.unlink(root, name.as_bytes()).unwrap();
    }
    vol.close().unwrap();
    assert_fsck_clean(&img);
    let root_ino: u64 = stat
        .split("Inode: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("stat prints the inode number");
    let (rows, total) = dx_dump(&img, root_ino);
    assert_eq!((rows.len(), total), (3, 3), "., .. and lost+found are left in the index");
}
