//! Crash consistency of file data: a workload of writes (overwriting, extending, sparse),
//! truncates, hole punches and preallocations, each followed by `sync_data`, runs on a device
//! that stops writing at a random point (later writes are dropped, sometimes the last one is
//! torn). The image is then recovered twice, separately: by our open, and by `fsck.ocfs2 -fy`.
//! Each time `fsck.ocfs2 -fn` must find nothing, and every file must hold exactly what it held
//! when the last operation that returned before the crash was synced; only the file of the
//! operation cut by the crash may differ. `OCFS2_CRASH_DATA_RUNS` sets the number of crash
//! points (default 60); seeds are printed and `OCFS2_TEST_SEED` replays one.

mod common;

use common::*;
use ocfs2::device::{FaultKind, FaultPlan};
use ocfs2::{BlockDevice, FaultDevice, MemDevice, MountOptions, Volume};
use std::path::Path;
use std::sync::Arc;

const FILES: usize = 5;
const OPS: usize = 60;
const CLUSTER: u64 = 4096;

/// Files by name, as the model sees them after one operation.
type State = Vec<Vec<u8>>;

/// What the workload did: the files after each operation (index 0: after they were created),
/// which file each operation changed, and the device's write count when each returned.
struct Run {
    states: Vec<State>,
    touched: Vec<usize>,
    writes: Vec<u64>,
}

fn workload(dev: Arc<FaultDevice<MemDevice>>, seed: u64) -> Run {
    let mut run = Run { states: Vec::new(), touched: vec![usize::MAX], writes: Vec::new() };
    let vol = match Volume::open(dev.clone() as Arc<dyn BlockDevice>, MountOptions::writable()) {
        Ok(v) => v,
        Err(_) => return run,
    };
    let root = vol.root();
    let mut inos = Vec::new();
    for i in 0..FILES {
        match vol.create(root, format!("file{i}").as_bytes(), 0o644) {
            Ok(ino) => inos.push(ino),
            Err(_) => return run,
        }
    }
    if vol.sync().is_err() {
        return run;
    }
    let mut files: State = vec![Vec::new(); FILES];
    run.states.push(files.clone());
    run.writes.push(dev.writes());
    let mut rng = Rng::new(seed);
    for _ in 0..OPS {
        let k = rng.below(FILES as u64) as usize;
        let ino = inos[k];
        let size = files[k].len() as u64;
        let model = &mut files[k];
        let r = match rng.below(10) {
            0..=5 => {
                let off = match rng.below(3) {
                    0 => size,
                    1 => rng.below(size + 3 * CLUSTER),
                    _ => rng.below(size + 1),
                };
                let len = 1 + rng.below(3 * CLUSTER);
                let data = rng.bytes(len as usize);
                vol.write(ino, off, &data).map(|_| {
                    let end = (off + len) as usize;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                })
            }
            6 | 7 => {
                let new = rng.below(size + 2 * CLUSTER);
                vol.truncate(ino, new).map(|_| model.resize(new as usize, 0))
            }
            8 => {
                let (off, len) = (rng.below(size + 1), 1 + rng.below(3 * CLUSTER));
                vol.punch_hole(ino, off, len).map(|_| {
                    let end = ((off + len) as usize).min(model.len());
                    if (off as usize) < end {
                        model[off as usize..end].fill(0);
                    }
                })
            }
            _ => {
                let (off, len) = (rng.below(size + 1), 1 + rng.below(3 * CLUSTER));
                vol.fallocate(ino, off, len, false).map(|_| {
                    let end = (off + len) as usize;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                })
            }
        };
        if r.and_then(|_| vol.sync_data(ino)).is_err() {
            break;
        }
        run.states.push(files.clone());
        run.touched.push(k);
        run.writes.push(dev.writes());
    }
    let _ = vol.close();
    run
}

/// Panics unless fsck.ocfs2 -fn finds nothing beyond `known`, what it found on the fresh image
/// (mkfs.ocfs2 leaves the system directory unindexed at 1K blocks).
fn no_problems(img: &Path, known: &[String], what: &str) {
    let (code, out) = fsck_fn(img);
    let new = out.lines().any(|l| l.starts_with('[') && !known.iter().any(|k| k == l));
    assert!(code == 0 && !new, "{what}: fsck.ocfs2 -fn:\n{out}");
}

/// The files as a fresh open reads them (`None` for a file that does not exist).
fn read_files(img: &Path, what: &str) -> Vec<Option<Vec<u8>>> {
    let vol = Volume::open_path(img, MountOptions::default()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    (0..FILES)
        .map(|i| {
            let ino = vol.lookup(vol.root(), format!("file{i}").as_bytes()).ok()?;
            Some(vol.read_all(ino).unwrap_or_else(|e| panic!("{what}: read file{i}: {e}")))
        })
        .collect()
}

/// Every file but the one the cut operation was changing must hold its state after the
/// `durable` operations that returned before the crash.
fn check_files(got: &[Option<Vec<u8>>], run: &Run, durable: Option<usize>, what: &str) {
    let Some(durable) = durable else {
        return;
    };
    let cut = run.touched.get(durable + 1).copied();
    for (i, file) in got.iter().enumerate() {
        if Some(i) == cut {
            continue;
        }
        let want = &run.states[durable][i];
        let file = file.as_ref().unwrap_or_else(|| panic!("{what}: file{i} is gone"));
        if file != want {
            let at = file.iter().zip(want).position(|(a, b)| a != b);
            panic!(
                "{what}: file{i} has {} bytes (first difference at {at:?}), {} were synced after operation {durable}",
                file.len(),
                want.len()
            );
        }
    }
}

#[test]
fn synced_file_data_survives_a_crash_at_any_write() {
    require_tool("fsck.ocfs2");
    let s = Scratch::new("write-crash-data");
    let img = s.path("crash.img");
    sparse_image(&img, 48 << 20);
    mkfs_ocfs2(&img, &["-M", "local", "-b", "1024", "-C", "4096", "-N", "2", "-J", "size=4M"]);
    let known = fsck_problem_lines(&img);
    // Free space holds old bytes on a real device: fill most of it through a file that is then
    // deleted, so that stale bytes would show if ever exposed.
    {
        let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
        let junk = vol.create(vol.root(), b"junk", 0o644).unwrap();
        let noise: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 | 1).collect();
        for mb in 0..28u64 {
            vol.write(junk, mb << 20, &noise).unwrap();
        }
        vol.unlink(vol.root(), b"junk").unwrap();
        vol.close().unwrap();
    }
    let image = std::fs::read(&img).unwrap();
    let runs: u64 = std::env::var("OCFS2_CRASH_DATA_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let seed = seed();
    println!("seed {seed}, {runs} crash points");
    let probe = Arc::new(FaultDevice::new(MemDevice::from_bytes(image.clone()), FaultPlan::new()));
    let full = workload(probe.clone(), seed);
    assert_eq!(full.states.len(), OPS + 1, "the workload runs to its end without a crash");
    let writes = probe.writes();
    let mut rng = Rng::new(seed ^ 0xc0ffee);
    let (mut torn_runs, mut synced_ops) = (0u64, 0usize);
    for trial in 0..runs {
        let last = rng.below(writes);
        let torn = (rng.below(3) == 0).then(|| 1 + rng.below(1023) as usize);
        let dev = Arc::new(FaultDevice::new(
            MemDevice::from_bytes(image.clone()),
            FaultPlan::new().with(FaultKind::CrashAfterWrite { last, torn_bytes: torn }),
        ));
        let cut = workload(dev.clone(), seed);
        let landed = if torn.is_some() { last } else { last + 1 };
        let durable = cut.writes.iter().rposition(|&w| w <= landed);
        torn_runs += u64::from(torn.is_some());
        synced_ops += durable.unwrap_or(0);
        let crashed = dev.inner().to_bytes();
        let what = format!("seed {seed} trial {trial}: crash after write {last} of {writes}, torn {torn:?}");

        std::fs::write(&img, &crashed).unwrap();
        Volume::open_path(&img, MountOptions::writable())
            .and_then(|v| v.close())
            .unwrap_or_else(|e| panic!("{what}: our recovery: {e}"));
        no_problems(&img, &known, &format!("{what}, after our replay"));
        check_files(&read_files(&img, &what), &full, durable, &format!("{what}, our replay"));

        std::fs::write(&img, &crashed).unwrap();
        let out = fsck_fy(&img);
        no_problems(&img, &known, &format!("{what}, after fsck -fy:\n{out}"));
        check_files(&read_files(&img, &what), &full, durable, &format!("{what}, fsck.ocfs2's replay"));
        if (trial + 1) % 100 == 0 {
            eprintln!("{} of {runs} crash points clean", trial + 1);
        }
    }
    println!(
        "{runs} crash points ({torn_runs} with a torn last write) among {writes} writes: every time clean after \
         our replay and after fsck.ocfs2's, with {synced_ops} synced operations kept in all"
    );
}
