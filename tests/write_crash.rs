//! Crash consistency of namespace operations: a workload of creates, mkdirs, unlinks and
//! rmdirs runs on a device that stops writing at a random point (a `FaultDevice` crash point,
//! sometimes tearing the last write). The volume is then recovered twice, separately: by our
//! open (journal replay, local alloc and truncate log recovery) and by `fsck.ocfs2 -fy`. Each
//! time `fsck.ocfs2 -fn` must find nothing, and the tree must be exactly the state after some
//! prefix of the operations: each operation is atomic, and the committed ones survive.

mod common;

use common::*;
use ocfs2::device::{FaultKind, FaultPlan};
use ocfs2::{BlockDevice, FaultDevice, FileType, MemDevice, MountOptions, Volume};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The tree as a map from path to "is a directory".
type Tree = BTreeMap<String, bool>;

fn read_tree(vol: &Volume) -> Tree {
    let mut tree = Tree::new();
    let mut stack = vec![(vol.root(), String::new())];
    while let Some((dir, path)) = stack.pop() {
        for e in vol.read_dir(dir).unwrap() {
            if e.name == b"." || e.name == b".." || (dir == vol.root() && e.name == b"lost+found") {
                continue;
            }
            let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            let is_dir = e.file_type == Some(FileType::Directory);
            if is_dir {
                stack.push((e.ino, p.clone()));
            }
            tree.insert(p, is_dir);
        }
    }
    tree
}

/// Runs the workload; returns the tree after each operation that succeeded (index 0: before
/// any) and, for the operations followed by a sync (about one in three), how many writes the
/// device had seen when the sync returned (`None` for the others: an operation is atomic when
/// it returns, durable after the next sync). Stops at the first error.
fn workload(dev: Arc<FaultDevice<MemDevice>>, seed: u64, ops: usize) -> (Vec<Tree>, Vec<Option<u64>>) {
    let mut states = vec![Tree::new()];
    let mut writes = vec![Some(0)];
    let Ok(vol) = Volume::open(dev.clone() as Arc<dyn BlockDevice>, MountOptions::writable()) else {
        return (states, writes);
    };
    writes[0] = Some(dev.writes());
    let mut rng = Rng::new(seed);
    let mut tree = Tree::new();
    let mut dirs: Vec<(String, u64)> = vec![(String::new(), vol.root())];
    for _ in 0..ops {
        let (dpath, dino) = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let name = format!("n{}-{}", rng.below(40), "z".repeat(rng.below(50) as usize));
        let path = format!("{dpath}/{name}");
        let r = match (tree.get(&path).copied(), rng.below(4)) {
            (None, 0) => vol.mkdir(dino, name.as_bytes(), 0o755).map(|ino| {
                tree.insert(path.clone(), true);
                dirs.push((path.clone(), ino));
            }),
            (None, _) => vol.create(dino, name.as_bytes(), 0o644).map(|_| {
                tree.insert(path.clone(), false);
            }),
            (Some(false), _) => vol.unlink(dino, name.as_bytes()).map(|_| {
                tree.remove(&path);
            }),
            (Some(true), _) => {
                let prefix = format!("{path}/");
                if tree.keys().any(|k| k.starts_with(&prefix)) {
                    // A non-empty directory is left alone: this step changes nothing, and still
                    // counts as a step so that a full run has one state per operation.
                    Ok(())
                } else {
                    vol.rmdir(dino, name.as_bytes()).map(|_| {
                        tree.remove(&path);
                        dirs.retain(|(p, _)| p != &path);
                    })
                }
            }
        };
        if let Err(e) = r {
            eprintln!("the workload stopped at {path}: {e}");
            break;
        }
        states.push(tree.clone());
        match sync_sometimes(&vol, &mut rng, || dev.writes()) {
            Ok(w) => writes.push(w),
            Err(e) => {
                eprintln!("the workload stopped at a sync: {e}");
                break;
            }
        }
    }
    let _ = vol.close();
    (states, writes)
}

fn no_problems(img: &Path, what: &str) {
    let (code, out) = fsck_fn(img);
    assert!(code == 0 && !out.lines().any(|l| l.starts_with('[')), "{what}: fsck.ocfs2 -fn:\n{out}");
}

#[test]
fn a_crash_at_any_write_keeps_every_operation_atomic() {
    require_tool("fsck.ocfs2");
    let s = Scratch::new("write-crash");
    let img = s.path("crash.img");
    sparse_image(&img, 48 << 20);
    mkfs_ocfs2(
        &img,
        &["-M", "local", "-b", "1024", "-C", "4096", "-N", "2", "-J", "size=4M", "--fs-features=noindexed-dirs"],
    );
    let image = std::fs::read(&img).unwrap();
    let seed = seed();
    println!("seed {seed}");
    let probe = Arc::new(FaultDevice::new(MemDevice::from_bytes(image.clone()), FaultPlan::new()));
    let (states, _) = workload(probe.clone(), seed, 160);
    assert_eq!(states.len(), 161, "the workload runs to its end without a crash");
    let writes = probe.writes();
    let mut rng = Rng::new(seed ^ 0x5eed);
    for trial in 0..12 {
        let last = rng.below(writes);
        let torn = (rng.below(3) == 0).then(|| 1 + rng.below(1023) as usize);
        let dev = Arc::new(FaultDevice::new(
            MemDevice::from_bytes(image.clone()),
            FaultPlan::new().with(FaultKind::CrashAfterWrite { last, torn_bytes: torn }),
        ));
        let (_, done) = workload(dev.clone(), seed, 160);
        // Operations whose writes all landed whole before the crash are durable.
        let landed = if torn.is_some() { last } else { last + 1 };
        let durable = done.iter().rposition(|w| w.is_some_and(|w| w <= landed)).unwrap_or(0);
        let crashed = dev.inner().to_bytes();
        let what = format!("seed {seed} trial {trial}: crash after write {last} of {writes}, torn {torn:?}");

        std::fs::write(&img, &crashed).unwrap();
        let vol = Volume::open_path(&img, MountOptions::writable()).unwrap_or_else(|e| panic!("{what}: {e}"));
        let ours = read_tree(&vol);
        vol.close().unwrap();
        no_problems(&img, &format!("{what}, our replay"));
        // A step that changed nothing leaves two equal states: take the last match.
        let k = states
            .iter()
            .rposition(|t| *t == ours)
            .unwrap_or_else(|| panic!("{what}: our replay left a tree no prefix of the operations made: {ours:?}"));

        println!("{what}: the tree is the state after {k} of {} operations ({durable} durable)", states.len() - 1);
        assert!(
            k >= durable,
            "{what}: operation {k} is the last one kept, but {durable} had returned before the crash"
        );
        std::fs::write(&img, &crashed).unwrap();
        let out = fsck_fy(&img);
        no_problems(&img, &format!("{what}, fsck -fy:\n{out}"));
        let theirs = read_tree(&Volume::open_path(&img, MountOptions::default()).unwrap());
        assert_eq!(theirs, states[k], "{what}: fsck.ocfs2's replay and ours agree (after {k} operations)");
    }
}
