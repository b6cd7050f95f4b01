//! File data through the write path: random writes (sparse, extending, overwriting, across
//! cluster and block edges), truncates up and down, hole punching and preallocation on a set
//! of files, checked after every operation against an in-memory model with our reader, and at
//! the end by the referees: `debugfs.ocfs2 -R "dump"` must give back every file's bytes and
//! `fsck.ocfs2 -fn` must report nothing. The matrix covers 512-byte and 4K blocks, 4K and 1M
//! clusters, with and without inline data, indexed directories, sparse files, unwritten extents
//! and metaecc.
//! Seeds are printed; `OCFS2_TEST_SEED` replays one and `OCFS2_WRITE_DATA_OPS` sets the
//! number of operations per volume.

mod common;

use common::*;
use ocfs2::{MountOptions, Volume};
use std::path::Path;

struct Case {
    name: &'static str,
    block: u32,
    cluster: u32,
    features: &'static str,
    size_mb: u64,
}

const CASES: &[Case] = &[
    Case { name: "b4k-c4k", block: 4096, cluster: 4096, features: "", size_mb: 192 },
    Case { name: "b512-c4k", block: 512, cluster: 4096, features: "", size_mb: 192 },
    Case { name: "b4k-c1m", block: 4096, cluster: 1 << 20, features: "", size_mb: 640 },
    Case { name: "b512-c1m-noinline", block: 512, cluster: 1 << 20, features: "noinline-data", size_mb: 640 },
    Case { name: "b4k-c4k-metaecc", block: 4096, cluster: 4096, features: "metaecc", size_mb: 192 },
    Case {
        name: "b4k-c4k-nosparse",
        block: 4096,
        cluster: 4096,
        features: "nosparse,nounwritten,noinline-data",
        size_mb: 192,
    },
    Case {
        name: "b1k-c4k-nounwritten-noindex",
        block: 1024,
        cluster: 4096,
        features: "nounwritten,noindexed-dirs",
        size_mb: 192,
    },
];

fn ops_budget() -> usize {
    std::env::var("OCFS2_WRITE_DATA_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1200)
}

fn make_image(dir: &Scratch, case: &Case) -> std::path::PathBuf {
    let img = dir.path(&format!("{}.img", case.name));
    // Free clusters hold old bytes on a real device: fill the image with garbage first, so that
    // a cluster mapped without being written in full shows it.
    let garbage: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1).collect();
    let mut f = std::fs::File::create(&img).unwrap();
    for _ in 0..case.size_mb {
        std::io::Write::write_all(&mut f, &garbage).unwrap();
    }
    drop(f);
    let (b, c) = (case.block.to_string(), case.cluster.to_string());
    let mut args = vec!["-M", "local", "-b", &b, "-C", &c, "-N", "2", "-J", "size=16M"];
    if !case.features.is_empty() {
        args.extend(["--fs-features", case.features]);
    }
    mkfs_ocfs2(&img, &args);
    img
}

/// Which operations the volume allows.
struct Allowed {
    sparse: bool,
    unwritten: bool,
}

fn random_len(rng: &mut Rng, cluster: u64) -> u64 {
    match rng.below(10) {
        0..=3 => 1 + rng.below(300),
        4..=6 => 1 + rng.below(3 * cluster),
        7 => cluster * (1 + rng.below(4)),
        _ => 1 + rng.below(9000),
    }
}

fn random_offset(rng: &mut Rng, size: u64, cluster: u64, limit: u64) -> u64 {
    let off = match rng.below(8) {
        0 => size,
        1 => size + rng.below(3 * cluster),
        2 => rng.below(limit),
        3 => rng.below(size + 1) / cluster * cluster,
        _ => rng.below(size + 1),
    };
    off.min(limit)
}

fn check_file(vol: &Volume, ino: u64, want: &[u8], what: &str) {
    let md = vol.metadata(ino).unwrap();
    assert_eq!(md.size, want.len() as u64, "{what}: size of inode {ino}");
    let got = vol.read_all(ino).unwrap();
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!("{what}: contents of inode {ino} differ first at byte {at} (len {} vs {})", got.len(), want.len());
    }
}

fn run_case(case: &Case, ops: usize) {
    let dir = Scratch::new(&format!("write-data-{}", case.name));
    let img = make_image(&dir, case);
    // mkfs.ocfs2 leaves the system directory unindexed at 512-byte and 1K blocks.
    let fresh = fsck_problem_lines(&img);
    let seed = seed();
    println!("{}: seed {seed}", case.name);
    let mut rng = Rng::new(seed);
    let allowed =
        Allowed { sparse: !case.features.contains("nosparse"), unwritten: !case.features.contains("nounwritten") };
    let cluster = u64::from(case.cluster);
    // Offsets stay below this, so that non-sparse volumes (which fill every gap) keep room.
    let limit = if allowed.sparse { 40 * cluster.max(1 << 20) } else { 24 << 20 };
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let root = vol.root();
    // Files spread over the root and three directories (one nested); (directory, name) of
    // each, and (name, inode, contents) as the checks want them.
    let d0 = vol.mkdir(root, b"d0", 0o755).unwrap();
    let d1 = vol.mkdir(root, b"d1", 0o755).unwrap();
    let d2 = vol.mkdir(d1, b"d2", 0o755).unwrap();
    let dirs = [root, d0, d1, d2];
    let mut places: Vec<(u64, String)> = Vec::new();
    let mut files: Vec<(String, u64, Vec<u8>)> = Vec::new();
    for i in 0..12 {
        let (dir, name) = (dirs[i % dirs.len()], format!("f{i}"));
        let ino = vol.create(dir, name.as_bytes(), 0o644).unwrap();
        places.push((dir, name.clone()));
        files.push((name, ino, Vec::new()));
    }
    let mut counts = [0usize; 7];
    for step in 0..ops {
        let k = rng.below(files.len() as u64) as usize;
        let (_, ino, model) = &mut files[k];
        let ino = *ino;
        let size = model.len() as u64;
        let what = format!("{} step {step}", case.name);
        match rng.below(21) {
            0..=10 => {
                let off = random_offset(&mut rng, size, cluster, limit);
                let len = random_len(&mut rng, cluster).min(limit - off + 1);
                let data = rng.bytes(len as usize);
                assert_eq!(vol.write(ino, off, &data).unwrap(), data.len(), "{what}");
                let end = (off + len) as usize;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
                counts[0] += 1;
            }
            11..=13 => {
                let new = match rng.below(4) {
                    0 => 0,
                    1 => size + rng.below(2 * cluster),
                    _ => rng.below(size + 1),
                }
                .min(limit);
                vol.truncate(ino, new).unwrap();
                model.resize(new as usize, 0);
                counts[1] += 1;
            }
            14..=15 if allowed.sparse => {
                let off = rng.below(size + 1);
                let len = random_len(&mut rng, cluster);
                vol.punch_hole(ino, off, len).unwrap();
                let end = ((off + len) as usize).min(model.len());
                if (off as usize) < end {
                    model[off as usize..end].fill(0);
                }
                counts[2] += 1;
            }
            16 if allowed.unwritten => {
                let off = random_offset(&mut rng, size, cluster, limit);
                let len = random_len(&mut rng, cluster).min(limit - off + 1);
                vol.fallocate(ino, off, len, false).unwrap();
                let end = (off + len) as usize;
                if model.len() < end {
                    model.resize(end, 0);
                }
                counts[3] += 1;
            }
            17 => {
                // Replace the file: unlink it and create it again elsewhere.
                let (dir, name) = places[k].clone();
                vol.unlink(dir, name.as_bytes()).unwrap();
                let to = dirs[rng.below(dirs.len() as u64) as usize];
                let ino = vol.create(to, name.as_bytes(), 0o600).unwrap();
                places[k] = (to, name.clone());
                files[k] = (name, ino, Vec::new());
                counts[4] += 1;
                continue;
            }
            18 => {
                // Move the file to another directory under a new name; its data goes along.
                let (dir, name) = places[k].clone();
                let to = dirs[rng.below(dirs.len() as u64) as usize];
                let new_name = format!("f{k}-moved-{step}");
                vol.rename(dir, name.as_bytes(), to, new_name.as_bytes()).unwrap();
                assert_eq!(vol.lookup(to, new_name.as_bytes()).unwrap(), ino, "{what}");
                places[k] = (to, new_name);
                counts[6] += 1;
            }
            _ => {
                let off = rng.below(size + 2);
                let mut buf = vec![0u8; random_len(&mut rng, cluster) as usize];
                let n = vol.read(ino, off, &mut buf).unwrap();
                let want = &model[(off as usize).min(model.len())..];
                let want = &want[..want.len().min(buf.len())];
                assert_eq!(&buf[..n], want, "{what}: read of {} at {off}", buf.len());
                counts[5] += 1;
                continue;
            }
        }
        let (_, ino, model) = &files[k];
        check_file(&vol, *ino, model, &what);
    }
    println!(
        "{}: {ops} ops: {} writes, {} truncates, {} punches, {} fallocates, {} replaces, {} moves, {} reads",
        case.name, counts[0], counts[1], counts[2], counts[3], counts[4], counts[6], counts[5]
    );
    for (_, ino, model) in &files {
        check_file(&vol, *ino, model, case.name);
    }
    vol.close().unwrap();
    assert_fsck_as_fresh(&img, &fresh);
    check_with_debugfs(&img, &dir, &files, case.name);
    // Our reader again, on a fresh open after the close.
    let vol = Volume::open_path(&img, MountOptions::default()).unwrap();
    for (_, ino, model) in &files {
        check_file(&vol, *ino, model, case.name);
    }
}

/// debugfs.ocfs2 dumps every file; the bytes must be the model's.
fn check_with_debugfs(img: &Path, dir: &Scratch, files: &[(String, u64, Vec<u8>)], what: &str) {
    for (name, ino, model) in files {
        let out = dir.path(&format!("dump-{name}"));
        debugfs(img, &format!("dump <{ino}> {}", out.display()));
        let got = std::fs::read(&out).unwrap_or_else(|e| panic!("{what}: debugfs dump of {name}: {e}"));
        assert_eq!(got.len(), model.len(), "{what}: size of {name} dumped by debugfs.ocfs2");
        if got != *model {
            let at = got.iter().zip(model).position(|(a, b)| a != b).unwrap_or(0);
            panic!("{what}: debugfs.ocfs2 dumps {name} differently from byte {at}");
        }
        std::fs::remove_file(&out).ok();
    }
}

#[test]
fn random_data_operations_match_the_model_and_the_referees() {
    require_tool("debugfs.ocfs2");
    require_tool("fsck.ocfs2");
    let ops = ops_budget();
    let only = std::env::var("OCFS2_WRITE_DATA_CASE").ok();
    for case in CASES.iter().filter(|c| only.as_deref().is_none_or(|o| o == c.name)) {
        run_case(case, ops);
    }
}

/// A file written one cluster in every two grows an extent tree several levels deep on
/// 512-byte blocks (19 records in the inode, 28 in an extent block); the referees read it, and
/// freeing it from the end shrinks the tree back to the inode.
#[test]
fn fragmented_files_grow_deep_extent_trees_and_shrink_back() {
    require_tool("debugfs.ocfs2");
    let dir = Scratch::new("write-data-deep");
    let img = dir.path("deep.img");
    sparse_image(&img, 256 << 20);
    mkfs_ocfs2(&img, &["-M", "local", "-b", "512", "-C", "4096", "-N", "1", "--fs-features", "noinline-data"]);
    let fresh = fsck_problem_lines(&img);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let root = vol.root();
    let ino = vol.create(root, b"holes", 0o644).unwrap();
    let other = vol.create(root, b"other", 0o644).unwrap();
    let mut model = Vec::new();
    let mut rng = Rng::new(seed());
    // Interleave with another file so that the clusters of `holes` are never contiguous.
    for i in 0..1200u64 {
        let data = rng.bytes(4096);
        vol.write(ino, i * 8192, &data).unwrap();
        vol.write(other, i * 4096, &data[..100]).unwrap();
        model.resize((i * 8192) as usize, 0);
        model.extend_from_slice(&data);
    }
    check_file(&vol, ino, &model, "deep");
    vol.close().unwrap();
    let stat = debugfs(&img, "stat /holes");
    let depth: u32 = stat
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tree Depth: ").and_then(|r| r.split_whitespace().next()?.parse().ok()))
        .unwrap_or_else(|| panic!("no tree depth in:\n{stat}"));
    assert!(depth >= 2, "1,200 extents need a tree of depth 2 or more, debugfs says {depth}");
    assert_fsck_as_fresh(&img, &fresh);
    check_with_debugfs(&img, &dir, &[("holes".into(), ino, model.clone())], "deep");

    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    for keep in [3_000_000u64, 1_000_000, 40_000, 0] {
        vol.truncate(ino, keep).unwrap();
        model.truncate(keep as usize);
        check_file(&vol, ino, &model, "shrinking");
    }
    vol.close().unwrap();
    let stat = debugfs(&img, "stat /holes");
    assert!(stat.contains("Tree Depth: 0"), "an empty file's tree is back in the inode:\n{stat}");
    assert_fsck_as_fresh(&img, &fresh);
}

/// Threads share one volume: each writes its own file while a reader checks that a file being
/// rewritten in full is only ever seen whole (one write call is atomic to readers), then the
/// referees check the result.
#[test]
fn threads_write_and_read_at_once_and_readers_see_whole_writes() {
    require_tool("fsck.ocfs2");
    let dir = Scratch::new("write-data-threads");
    let img = dir.path("threads.img");
    sparse_image(&img, 256 << 20);
    mkfs_ocfs2(&img, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]);
    let vol = std::sync::Arc::new(Volume::open_path(&img, MountOptions::writable()).unwrap());
    let root = vol.root();
    let shared = vol.create(root, b"shared", 0o644).unwrap();
    vol.write(shared, 0, &[0u8; 100_000]).unwrap();
    let seed = seed();
    println!("seed {seed}");
    let mut workers = Vec::new();
    for t in 0..3u64 {
        let vol = vol.clone();
        workers.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ t);
            let ino = vol.create(vol.root(), format!("own{t}").as_bytes(), 0o644).unwrap();
            let mut model = Vec::new();
            for _ in 0..300 {
                let off = rng.below(model.len() as u64 + 20_000);
                let len = 1 + rng.below(20_000) as usize;
                let data = rng.bytes(len);
                vol.write(ino, off, &data).unwrap();
                let end = off as usize + data.len();
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
                if rng.below(10) == 0 {
                    let size = rng.below(model.len() as u64 + 1);
                    vol.truncate(ino, size).unwrap();
                    model.truncate(size as usize);
                }
            }
            assert_eq!(vol.read_all(ino).unwrap(), model, "thread {t}");
            (ino, model)
        }));
    }
    let writer = {
        let vol = vol.clone();
        std::thread::spawn(move || {
            for v in 1..=200u8 {
                vol.write(shared, 0, &vec![v; 100_000]).unwrap();
            }
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    while !writer.is_finished() {
        let got = vol.read_all(shared).unwrap();
        assert_eq!(got.len(), 100_000);
        assert!(got.iter().all(|&b| b == got[0]), "a reader saw half of a write");
        seen.insert(got[0]);
    }
    writer.join().unwrap();
    println!("the reader saw {} different whole writes", seen.len());
    let results: Vec<(u64, Vec<u8>)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let vol = std::sync::Arc::try_unwrap(vol).ok().expect("all threads are done");
    vol.close().unwrap();
    assert_fsck_clean(&img);
    let files: Vec<(String, u64, Vec<u8>)> =
        results.into_iter().enumerate().map(|(t, (ino, m))| (format!("own{t}"), ino, m)).collect();
    check_with_debugfs(&img, &dir, &files, "threads");
}
