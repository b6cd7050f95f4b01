//! create, mkdir, unlink and rmdir in inline and linear directories, checked against an
//! in-memory model after every operation, by `debugfs.ocfs2 -R "ls -l"` on every directory,
//! and by `fsck.ocfs2 -fn` (which must report no problem at all). Seeds are printed;
//! `OCFS2_TEST_SEED` replays one.

mod common;

use common::*;
use ocfs2::mkfs::{mkfs, FeatureRequest, MkfsOptions, MountType};
use ocfs2::{FileDevice, FileType, MountOptions, Volume};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Panics unless fsck.ocfs2 -fn reports no problem (it exits 0 even after finding some).
/// `known` are problems the fresh image already had.
fn assert_no_problems(img: &Path, known: &[String]) {
    let (code, out) = fsck_fn(img);
    let problems: Vec<&str> = out.lines().filter(|l| l.starts_with('[') && !known.iter().any(|k| k == l)).collect();
    assert!(code == 0 && problems.is_empty(), "fsck.ocfs2 -fn exited {code}:\n{out}");
}

fn problems(img: &Path) -> Vec<String> {
    fsck_fn(img).1.lines().filter(|l| l.starts_with('[')).map(str::to_string).collect()
}

/// The model: each directory's entries (name → (inode, is directory)).
#[derive(Default)]
struct Model {
    dirs: BTreeMap<u64, BTreeMap<Vec<u8>, (u64, bool)>>,
}

impl Model {
    fn subdirs(&self, dir: u64) -> u32 {
        self.dirs[&dir].values().filter(|(_, d)| *d).count() as u32
    }
}

fn random_name(rng: &mut Rng) -> Vec<u8> {
    loop {
        let name = random_bytes(rng);
        if name != b"." && name != b".." {
            return name;
        }
    }
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(20) {
        // 255-byte names found that an inline directory moved into its first block may still
        // lack room for the entry that made it move.
        0 => 255,
        1..=3 => 1 + rng.below(200) as usize,
        _ => 1 + rng.below(24) as usize,
    };
    (0..len)
        .map(|_| {
            let c = match rng.below(10) {
                0 => 0x80 + rng.below(0x80) as u8,
                1 => b'.',
                _ => b'a' + rng.below(26) as u8,
            };
            if c == b'/' || c == 0 {
                b'x'
            } else {
                c
            }
        })
        .collect()
}

/// Checks one directory against the model with our reader.
fn check_dir(vol: &Volume, m: &Model, dir: u64, what: &str) {
    let all = vol.read_dir(dir).unwrap_or_else(|e| panic!("{what}: read_dir {dir}: {e}"));
    assert!(all.len() >= 2 && all[0].name == b"." && all[0].ino == dir, "{what}: '.' of {dir}: {:?}", all.first());
    assert_eq!(all[1].name, b"..", "{what}: '..' of {dir}");
    let listed: BTreeMap<Vec<u8>, u64> =
        all.into_iter().filter(|e| e.name != b"." && e.name != b"..").map(|e| (e.name, e.ino)).collect();
    let want: BTreeMap<Vec<u8>, u64> = m.dirs[&dir].iter().map(|(n, &(i, _))| (n.clone(), i)).collect();
    assert_eq!(listed, want, "{what}: entries of directory {dir}");
    let md = vol.metadata(dir).unwrap();
    assert_eq!(md.nlink, 2 + m.subdirs(dir), "{what}: links of directory {dir}");
    for (name, &(ino, is_dir)) in &m.dirs[&dir] {
        assert_eq!(vol.lookup(dir, name).unwrap(), ino, "{what}: lookup");
        let md = vol.metadata(ino).unwrap();
        assert_eq!(md.file_type, if is_dir { FileType::Directory } else { FileType::Regular }, "{what}");
    }
}

/// Checks every directory with debugfs.ocfs2's listing (names as raw bytes, so only for
/// directories whose names are valid UTF-8 without spaces in them).
fn check_with_debugfs(img: &Path, m: &Model, what: &str) {
    for (dir, entries) in &m.dirs {
        if entries.keys().any(|n| std::str::from_utf8(n).is_err()) {
            continue;
        }
        let out = debugfs(img, &format!("ls -l <{dir}>"));
        let mut listed = BTreeMap::new();
        for line in out.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() >= 9 {
                if let Ok(ino) = cols[0].parse::<u64>() {
                    listed.insert(cols[8..].join(" ").into_bytes(), ino);
                }
            }
        }
        listed.remove(&b"."[..]);
        listed.remove(&b".."[..]);
        let want: BTreeMap<Vec<u8>, u64> = entries.iter().map(|(n, &(i, _))| (n.clone(), i)).collect();
        assert_eq!(listed, want, "{what}: debugfs lists directory {dir}");
    }
}

fn run_model(img: &Path, what: &str, ops: usize) {
    let known = problems(img);
    let seed = seed();
    println!("{what}: seed {seed}");
    let mut rng = Rng::new(seed);
    let mut vol = Volume::open_path(img, MountOptions::writable()).unwrap();
    let root = vol.root();
    let mut m = Model::default();
    let base: BTreeMap<Vec<u8>, (u64, bool)> = vol
        .read_dir(root)
        .unwrap()
        .into_iter()
        .filter(|e| e.name != b"." && e.name != b"..")
        .map(|e| (e.name, (e.ino, e.file_type == Some(FileType::Directory))))
        .collect();
    for &(ino, is_dir) in base.values() {
        if is_dir {
            let entries = vol
                .read_dir(ino)
                .unwrap()
                .into_iter()
                .filter(|e| e.name != b"." && e.name != b"..")
                .map(|e| (e.name, (e.ino, e.file_type == Some(FileType::Directory))))
                .collect();
            m.dirs.insert(ino, entries);
        }
    }
    let keep: BTreeSet<Vec<u8>> = base.keys().cloned().collect();
    m.dirs.insert(root, base);
    let what_op = |op: usize| format!("{what} seed {seed} op {op}");
    for op in 0..ops {
        let w = what_op(op);
        let dirs: Vec<u64> = m.dirs.keys().copied().collect();
        // Favour one directory so that it outgrows its inode and its first blocks.
        let dir = if rng.below(3) == 0 { root } else { dirs[rng.below(dirs.len() as u64) as usize] };
        match rng.below(100) {
            0..=44 => {
                let name = random_name(&mut rng);
                let exists = m.dirs[&dir].contains_key(&name);
                match vol.create(dir, &name, 0o644) {
                    Ok(ino) => {
                        assert!(!exists, "{w}: create over an existing name");
                        m.dirs.get_mut(&dir).unwrap().insert(name, (ino, false));
                    }
                    Err(e) => {
                        assert!(exists, "{w}: create: {e}");
                        assert_eq!(e.errno(), 17, "{w}: EEXIST: {e}");
                    }
                }
            }
            45..=59 => {
                let name = random_name(&mut rng);
                let exists = m.dirs[&dir].contains_key(&name);
                match vol.mkdir(dir, &name, 0o755) {
                    Ok(ino) => {
                        assert!(!exists, "{w}: mkdir over an existing name");
                        m.dirs.get_mut(&dir).unwrap().insert(name, (ino, true));
                        m.dirs.insert(ino, BTreeMap::new());
                        assert_eq!(vol.lookup(ino, b"..").unwrap(), dir, "{w}: .. of a new directory");
                    }
                    Err(e) => {
                        assert!(exists, "{w}: mkdir: {e}");
                        assert_eq!(e.errno(), 17, "{w}: {e}");
                    }
                }
            }
            60..=84 => {
                let pick = rng.below(m.dirs[&dir].len().max(1) as u64) as usize;
                let Some((name, (ino, is_dir))) = m.dirs[&dir].iter().nth(pick).map(|(n, v)| (n.clone(), *v)) else {
                    continue;
                };
                if dir == root && keep.contains(&name) {
                    continue; // lost+found stays
                }
                if is_dir {
                    let empty = m.dirs[&ino].is_empty();
                    let r = if rng.below(4) == 0 { vol.unlink(dir, &name) } else { vol.rmdir(dir, &name) };
                    match r {
                        Ok(()) => {
                            assert!(empty, "{w}: removed a non-empty directory");
                            m.dirs.get_mut(&dir).unwrap().remove(&name);
                            m.dirs.remove(&ino);
                        }
                        Err(e) if e.errno() == 21 => {} // EISDIR from unlink
                        Err(e) => {
                            assert!(!empty, "{w}: rmdir of an empty directory: {e}");
                            assert_eq!(e.errno(), 39, "{w}: ENOTEMPTY: {e}");
                        }
                    }
                } else if rng.below(5) == 0 {
                    let e = vol.rmdir(dir, &name).unwrap_err();
                    assert_eq!(e.errno(), 20, "{w}: ENOTDIR: {e}");
                } else {
                    vol.unlink(dir, &name).unwrap_or_else(|e| panic!("{w}: unlink: {e}"));
                    m.dirs.get_mut(&dir).unwrap().remove(&name);
                }
            }
            85..=89 => {
                let name = random_name(&mut rng);
                if !m.dirs[&dir].contains_key(&name) {
                    assert_eq!(vol.unlink(dir, &name).unwrap_err().errno(), 2, "{w}: ENOENT");
                    assert_eq!(vol.lookup(dir, &name).unwrap_err().errno(), 2, "{w}: ENOENT");
                }
                let long = vec![b'n'; 256];
                assert_eq!(vol.create(dir, &long, 0o644).unwrap_err().errno(), 36, "{w}: ENAMETOOLONG");
            }
            90..=93 => {
                vol.close().unwrap_or_else(|e| panic!("{w}: close: {e}"));
                check_with_debugfs(img, &m, &w);
                vol = Volume::open_path(img, MountOptions::writable()).unwrap();
            }
            _ => check_dir(&vol, &m, dir, &w),
        }
        if std::env::var_os("WRITE_NAMES_PARANOID").is_some() {
            for &d in m.dirs.keys() {
                check_dir(&vol, &m, d, &w);
            }
        }
    }
    // A crowded directory: it moves out of its inode and grows over several blocks and
    // clusters, then empties again.
    let big = vol.mkdir(root, b"crowded", 0o755).unwrap();
    m.dirs.get_mut(&root).unwrap().insert(b"crowded".to_vec(), (big, true));
    m.dirs.insert(big, BTreeMap::new());
    for i in 0..400u32 {
        let name = format!("entry-{i:05}-{}", "x".repeat((i % 60) as usize)).into_bytes();
        let ino = if i % 10 == 0 { vol.mkdir(big, &name, 0o700) } else { vol.create(big, &name, 0o600) }
            .unwrap_or_else(|e| panic!("{what}: crowded entry {i}: {e}"));
        m.dirs.get_mut(&big).unwrap().insert(name, (ino, i % 10 == 0));
        if i % 10 == 0 {
            m.dirs.insert(ino, BTreeMap::new());
        }
    }
    check_dir(&vol, &m, big, what);
    assert!(vol.metadata(big).unwrap().size > 4096, "{what}: the crowded directory grew");
    vol.close().unwrap();
    check_with_debugfs(img, &m, what);
    assert_no_problems(img, &known);
    let vol = Volume::open_path(img, MountOptions::writable()).unwrap();
    let names: Vec<(Vec<u8>, (u64, bool))> = m.dirs[&big].iter().map(|(n, v)| (n.clone(), *v)).collect();
    for (k, (name, (ino, is_dir))) in names.into_iter().enumerate() {
        if is_dir { vol.rmdir(big, &name) } else { vol.unlink(big, &name) }.unwrap();
        m.dirs.get_mut(&big).unwrap().remove(&name);
        if is_dir {
            m.dirs.remove(&ino);
        }
        if k % 97 == 0 {
            check_dir(&vol, &m, big, what);
        }
    }
    check_dir(&vol, &m, big, what);
    vol.close().unwrap();
    check_with_debugfs(img, &m, what);
    assert_no_problems(img, &known);
}

#[test]
fn names_come_and_go_in_inline_and_linear_directories() {
    let s = Scratch::new("write-names");
    let cases: &[(&str, &[&str])] = &[
        ("inline-4k", &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2", "--fs-features=noindexed-dirs"]),
        (
            "linear-512",
            &["-M", "local", "-b", "512", "-C", "4096", "-N", "2", "-J", "size=4M", "--fs-feature-level=max-compat"],
        ),
        // mkfs.ocfs2 gives lost+found here an i_size short of one block (the usable area
        // before the trailer); counting its blocks rounded down once hid its entries and made
        // a create format its only block anew, '.' and '..' included.
        (
            "trailers-2k",
            &[
                "-M",
                "local",
                "-b",
                "2048",
                "-C",
                "8192",
                "-N",
                "2",
                "--fs-features=metaecc,noindexed-dirs,noinline-data",
            ],
        ),
        (
            "inline-ecc-1k",
            &["-M", "local", "-b", "1024", "-C", "4096", "-N", "2", "--fs-features=metaecc,noindexed-dirs"],
        ),
    ];
    let only = std::env::var("WRITE_NAMES_ONLY").ok();
    for (name, args) in cases {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let img = s.path(&format!("{name}.img"));
        sparse_image(&img, 256 << 20);
        mkfs_ocfs2(&img, args);
        run_model(&img, name, 600);
    }
}

#[test]
fn names_come_and_go_on_volumes_made_by_our_mkfs() {
    let s = Scratch::new("write-names-ours");
    let img = s.path("ours.img");
    sparse_image(&img, 256 << 20);
    let opts = MkfsOptions {
        block_size: Some(4096),
        cluster_size: Some(4096),
        slots: Some(2),
        mount: Some(MountType::Local),
        features: FeatureRequest::parse("noindexed-dirs,metaecc").unwrap(),
        force: true,
        ..Default::default()
    };
    mkfs(&FileDevice::open_rw(&img).unwrap(), &opts).unwrap();
    run_model(&img, "ours", 400);
}
