//! Allocator tests on images made by mkfs.ocfs2 and by our mkfs, refereed by the real tools:
//! after random claims and frees in transactions (some dropped, some holding several
//! operations), `fsck.ocfs2 -fn` must find exactly the clusters and inodes the test still
//! holds unused (and nothing else), and `debugfs.ocfs2` must show the global bitmap totals the
//! test expects. Seeds are printed; `OCFS2_TEST_SEED` replays one.

use super::super::error::Error;
use super::super::testkit::{seed, Img};
use super::super::volume::{MountOptions, Volume};
use super::suballoc::{self, SubAlloc, SubBlock};
use super::{global, local_alloc, truncate_log};
use crate::format::testutil::XorShift;
use crate::format::SystemInode;
use crate::mkfs::{MkfsOptions, MountType};
use std::collections::BTreeSet;

/// What the test holds, as committed.
#[derive(Default, Clone)]
struct Model {
    runs: Vec<(u32, u32)>,
    blocks: Vec<(SubAlloc, SubBlock)>,
}

impl Model {
    fn clusters(&self) -> BTreeSet<u64> {
        self.runs.iter().flat_map(|&(s, n)| (s..s + n).map(u64::from)).collect()
    }

    fn held(&self) -> u64 {
        self.runs.iter().map(|&(_, n)| u64::from(n)).sum()
    }
}

/// Clusters that the slots' block suballocators own, from their inodes.
fn suballoc_clusters(vol: &Volume) -> u64 {
    let slots = vol.info().max_slots;
    let mut n = 0;
    for slot in 0..slots {
        for kind in [SystemInode::InodeAlloc, SystemInode::ExtentAlloc] {
            let ino = vol.system_file(&kind.name(slot)).unwrap();
            n += u64::from(vol.metadata(ino).unwrap().clusters);
        }
    }
    n
}

/// Claims `want` clusters for data in `tx`, as several runs if need be.
fn claim(tx: &mut super::super::tx::Tx, want: u32) -> Result<Vec<(u32, u32)>, Error> {
    let mut runs = Vec::new();
    let mut left = want;
    while left > 0 {
        let (s, n) = local_alloc::claim_data(tx, left)?;
        assert!(n >= 1 && n <= left);
        runs.push((s, n));
        left -= n;
    }
    Ok(runs)
}

/// Closes the volume and checks the disk with the tools against the model.
fn check(img: &Img, vol: Volume, m: &Model, base_used: u64, seed: u64) {
    vol.close().unwrap();
    let ro = img.open(MountOptions::default());
    let grown = suballoc_clusters(&ro);
    let (total, used) = img.bitmap_counts("global_bitmap");
    let st = ro.statfs().unwrap();
    assert_eq!(st.total_clusters, total, "seed {seed}");
    assert_eq!(used, base_used + grown + m.held(), "seed {seed}: {}: global bitmap used clusters", img.what);
    assert_eq!(st.free_clusters, total - used);
    let (code, out, f) = img.findings();
    assert!(f.other.is_empty(), "seed {seed}: {}: unexpected fsck findings {:?}\n{out}", img.what, f.other);
    assert_eq!(f.unused_clusters, m.clusters(), "seed {seed}: {}: clusters fsck finds unused", img.what);
    let inodes: BTreeSet<u64> = m.blocks.iter().filter(|(k, _)| *k == SubAlloc::Inode).map(|(_, b)| b.blkno).collect();
    assert!(f.unused_inode_bits.is_subset(&inodes), "seed {seed}: {:?} not held", f.unused_inode_bits);
    assert_eq!(f.unused_inode_bits.is_empty(), inodes.is_empty(), "seed {seed}: fsck reports one held inode bit");
    assert_eq!(code, 0, "seed {seed}:\n{out}");
}

/// The random claim/free run on one image.
fn random_run(img: &Img, ops: usize, max_claim: u32, options: MountOptions) {
    let seed = seed();
    println!("{}: seed {seed}", img.what);
    let mut rng = XorShift::new(seed);
    let base_used = {
        let ro = img.open(MountOptions::default());
        img.bitmap_counts("global_bitmap").1 - suballoc_clusters(&ro)
    };
    let mut vol = img.open(options.clone());
    let mut m = Model::default();
    for op in 0..ops {
        let inner = &*vol.inner;
        match rng.below(100) {
            0..=34 => {
                let want = 1 + rng.below(u64::from(max_claim)) as u32;
                let mut tx = inner.begin().unwrap();
                match claim(&mut tx, want) {
                    Ok(runs) => {
                        if rng.below(10) == 0 {
                            drop(tx);
                        } else {
                            tx.commit().unwrap();
                            m.runs.extend(runs);
                        }
                    }
                    Err(Error::NoSpace(_)) => drop(tx),
                    Err(e) => panic!("seed {seed} op {op}: {e}"),
                }
            }
            35..=59 if !m.runs.is_empty() => {
                let i = rng.below(m.runs.len() as u64) as usize;
                let (s, n) = m.runs[i];
                // Free all of the run, or its head.
                let k = if n > 1 && rng.below(2) == 0 { 1 + rng.below(u64::from(n - 1)) as u32 } else { n };
                let via_log = rng.below(2) == 0;
                if via_log {
                    truncate_log::make_room(inner, 1).unwrap();
                }
                let mut tx = inner.begin().unwrap();
                if via_log {
                    truncate_log::append(&mut tx, s, k).unwrap();
                } else {
                    global::free_clusters(&mut tx, s, k).unwrap();
                }
                if rng.below(10) == 0 {
                    drop(tx);
                } else {
                    tx.commit().unwrap();
                    if k == n {
                        m.runs.swap_remove(i);
                    } else {
                        m.runs[i] = (s + k, n - k);
                    }
                }
            }
            60..=74 => {
                let kind = if rng.below(2) == 0 { SubAlloc::Inode } else { SubAlloc::Extent };
                let mut tx = inner.begin().unwrap();
                let mut got = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    match suballoc::claim_block(&mut tx, kind) {
                        Ok(b) => got.push((kind, b)),
                        Err(Error::NoSpace(_)) => break,
                        Err(e) => panic!("seed {seed} op {op}: {e}"),
                    }
                }
                for (_, b) in &got {
                    assert!(!m.blocks.iter().any(|(_, h)| h.blkno == b.blkno), "seed {seed}: block {} twice", b.blkno);
                }
                tx.commit().unwrap();
                m.blocks.extend(got);
            }
            75..=86 if !m.blocks.is_empty() => {
                let mut tx = inner.begin().unwrap();
                let mut freed = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    if m.blocks.is_empty() {
                        break;
                    }
                    let i = rng.below(m.blocks.len() as u64) as usize;
                    let (kind, b) = m.blocks.swap_remove(i);
                    suballoc::free_block(&mut tx, kind, b).unwrap();
                    freed.push((kind, b));
                }
                if rng.below(8) == 0 {
                    drop(tx);
                    m.blocks.extend(freed);
                } else {
                    tx.commit().unwrap();
                }
            }
            87..=91 => {
                let slot = vol.slot().unwrap();
                truncate_log::flush(inner, slot).unwrap();
            }
            92..=95 => {
                check(img, vol, &m, base_used, seed);
                vol = img.open(options.clone());
            }
            _ => {
                // Several operations in one transaction.
                let mut tx = inner.begin().unwrap();
                let mut model = m.clone();
                let mut ok = true;
                for _ in 0..2 + rng.below(4) {
                    if rng.below(2) == 0 || model.runs.is_empty() {
                        match claim(&mut tx, 1 + rng.below(u64::from(max_claim)) as u32) {
                            Ok(r) => model.runs.extend(r),
                            Err(Error::NoSpace(_)) => {
                                ok = false;
                                break;
                            }
                            Err(e) => panic!("seed {seed} op {op}: {e}"),
                        }
                    } else {
                        let i = rng.below(model.runs.len() as u64) as usize;
                        let (s, n) = model.runs.swap_remove(i);
                        global::free_clusters(&mut tx, s, n).unwrap();
                    }
                }
                if ok {
                    tx.commit().unwrap();
                    m = model;
                }
            }
        }
    }
    check(img, vol, &m, base_used, seed);
    // Give everything back: the volume is as it was, apart from grown suballocators.
    let vol = img.open(options);
    for chunk in m.runs.chunks(16) {
        let mut tx = vol.inner.begin().unwrap();
        for &(s, n) in chunk {
            global::free_clusters(&mut tx, s, n).unwrap();
        }
        tx.commit().unwrap();
    }
    let mut tx = vol.inner.begin().unwrap();
    for &(kind, b) in &m.blocks {
        suballoc::free_block(&mut tx, kind, b).unwrap();
    }
    tx.commit().unwrap();
    check(img, vol, &Model::default(), base_used, seed);
    img.assert_clean();
}

fn matrix() -> Vec<(Img, u32)> {
    vec![
        (Img::tools("alloc-4k", 256, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]), 300),
        (
            Img::tools(
                "alloc-512-ecc",
                96,
                &["-M", "local", "-b", "512", "-C", "4096", "-N", "2", "-J", "size=4M", "--fs-features=metaecc"],
            ),
            200,
        ),
        (Img::tools("alloc-1m", 1024, &["-M", "local", "-b", "4096", "-C", "1M", "-N", "2"]), 12),
        (
            Img::tools(
                "alloc-512-1m",
                768,
                &["-M", "local", "-b", "512", "-C", "1M", "-N", "1", "--fs-features=metaecc,nodiscontig-bg"],
            ),
            10,
        ),
        (
            Img::ours(
                "alloc-ours-ecc",
                200,
                MkfsOptions {
                    block_size: Some(4096),
                    cluster_size: Some(4096),
                    slots: Some(2),
                    mount: Some(MountType::Local),
                    features: crate::mkfs::FeatureRequest::parse("metaecc").unwrap(),
                    ..Default::default()
                },
            ),
            300,
        ),
        (
            Img::ours(
                "alloc-ours-512-1m",
                600,
                MkfsOptions {
                    block_size: Some(512),
                    cluster_size: Some(1 << 20),
                    slots: Some(2),
                    mount: Some(MountType::Cluster),
                    ..Default::default()
                },
            ),
            10,
        ),
    ]
}

#[test]
fn random_claims_and_frees_keep_every_allocator_consistent() {
    for (img, max_claim) in matrix() {
        random_run(&img, 250, max_claim, MountOptions::writable());
    }
}

#[test]
fn small_local_alloc_windows_slide_and_throttle_consistently() {
    let img = Img::tools("alloc-la", 128, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]);
    random_run(&img, 250, 200, MountOptions { local_alloc_mb: Some(2), ..MountOptions::writable() });
    let img = Img::tools("alloc-nola", 128, &["-M", "local", "-b", "2048", "-C", "4096", "-N", "2"]);
    random_run(&img, 150, 200, MountOptions { local_alloc_mb: Some(0), ..MountOptions::writable() });
}

/// Fills the volume with data claims until even one cluster is refused, then inodes until
/// none is left anywhere, checks the counts, and frees everything again.
fn fill_and_empty(img: &Img) {
    let seed = seed();
    println!("{}: seed {seed}", img.what);
    let mut rng = XorShift::new(seed);
    let base_used = {
        let ro = img.open(MountOptions::default());
        img.bitmap_counts("global_bitmap").1 - suballoc_clusters(&ro)
    };
    let vol = img.rw();
    let mut m = Model::default();
    let mut want = 64u32;
    loop {
        let mut tx = vol.inner.begin().unwrap();
        match claim(&mut tx, 1 + rng.below(u64::from(want)) as u32) {
            Ok(runs) => {
                tx.commit().unwrap();
                m.runs.extend(runs);
            }
            Err(Error::NoSpace(_)) if want > 1 => want /= 2,
            Err(Error::NoSpace(_)) => break,
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    loop {
        let mut tx = vol.inner.begin().unwrap();
        match suballoc::claim_block(&mut tx, SubAlloc::Inode) {
            Ok(b) => {
                tx.commit().unwrap();
                m.blocks.push((SubAlloc::Inode, b));
            }
            Err(Error::NoSpace(_)) => break,
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    let statfs = vol.statfs().unwrap();
    assert_eq!(statfs.free_clusters, 0, "seed {seed}: the volume is full");
    vol.close().unwrap();
    let (total, used) = img.bitmap_counts("global_bitmap");
    assert_eq!(used, total, "seed {seed}: every cluster is in use");
    let (code, out, f) = img.findings();
    assert!(f.other.is_empty(), "seed {seed}: exit {code}: {:?}\n{out}", f.other);
    assert_eq!(f.unused_clusters, m.clusters(), "seed {seed}");
    // A full volume still frees, half through the truncate log.
    let vol = img.rw();
    for (i, &(s, n)) in m.runs.iter().enumerate() {
        if i % 2 == 0 {
            truncate_log::make_room(&vol.inner, 1).unwrap();
            let mut tx = vol.inner.begin().unwrap();
            truncate_log::append(&mut tx, s, n).unwrap();
            tx.commit().unwrap();
        } else {
            let mut tx = vol.inner.begin().unwrap();
            global::free_clusters(&mut tx, s, n).unwrap();
            tx.commit().unwrap();
        }
    }
    let mut tx = vol.inner.begin().unwrap();
    for chunk in m.blocks.chunks(64) {
        for &(kind, b) in chunk {
            suballoc::free_block(&mut tx, kind, b).unwrap();
        }
        tx.commit().unwrap();
        tx = vol.inner.begin().unwrap();
    }
    drop(tx);
    check(img, vol, &Model::default(), base_used, seed);
    img.assert_clean();
}

#[test]
fn a_filled_volume_refuses_with_enospc_and_frees_back_to_empty() {
    fill_and_empty(&Img::tools("fill-4k", 48, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]));
    fill_and_empty(&Img::tools(
        "fill-512",
        24,
        &["-M", "local", "-b", "512", "-C", "4096", "-N", "2", "-J", "size=4M", "--fs-features=metaecc"],
    ));
    fill_and_empty(&Img::tools("fill-1m", 300, &["-M", "local", "-b", "4096", "-C", "1M", "-N", "2"]));
}

/// Fragments the global bitmap into runs of `run` clusters, then claims inode blocks until the
/// slot's inode allocator had to grow.
fn grow_in_fragments(img: &Img, run: u32) -> (Result<Vec<SubBlock>, Error>, Model) {
    let vol = img.open(MountOptions { local_alloc_mb: Some(0), ..MountOptions::writable() });
    let mut m = Model::default();
    loop {
        let mut tx = vol.inner.begin().unwrap();
        match global::claim_clusters(&mut tx, 1, 2 * run) {
            Ok((s, n)) => {
                tx.commit().unwrap();
                m.runs.push((s, n));
            }
            Err(Error::NoSpace(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    // Free the second half of every 2*run piece: free runs of `run` between used ones.
    let mut tx = vol.inner.begin().unwrap();
    let mut kept = Vec::new();
    for &(s, n) in &m.runs {
        if n > run {
            global::free_clusters(&mut tx, s + run, n - run).unwrap();
            kept.push((s, run));
        } else {
            kept.push((s, n));
        }
        if tx.changed_blocks() > 200 {
            tx.commit().unwrap();
            tx = vol.inner.begin().unwrap();
        }
    }
    tx.commit().unwrap();
    // The freed halves can be handed out once their free is in the journal.
    super::super::tx::sync(&vol.inner).unwrap();
    m.runs = kept;
    let before = {
        let tx = vol.inner.begin().unwrap();
        suballoc::usage(&tx, SubAlloc::Inode, 0).unwrap()
    };
    let mut blocks = Vec::new();
    let result = loop {
        let mut tx = vol.inner.begin().unwrap();
        match suballoc::claim_block(&mut tx, SubAlloc::Inode) {
            Ok(b) => {
                tx.commit().unwrap();
                blocks.push(b);
                let tx = vol.inner.begin().unwrap();
                if suballoc::usage(&tx, SubAlloc::Inode, 0).unwrap().1 > before.1 {
                    break Ok(blocks.clone());
                }
            }
            Err(e) => break Err(e),
        }
    };
    let mut tx = vol.inner.begin().unwrap();
    for chunk in blocks.chunks(64) {
        for &b in chunk {
            suballoc::free_block(&mut tx, SubAlloc::Inode, b).unwrap();
        }
        tx.commit().unwrap();
        tx = vol.inner.begin().unwrap();
    }
    drop(tx);
    vol.close().unwrap();
    (result, m)
}

#[test]
fn suballocators_grow_in_discontiguous_pieces_when_space_is_fragmented() {
    let img = Img::tools("discontig", 64, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]);
    let (result, m) = grow_in_fragments(&img, 8);
    let blocks = result.expect("the inode allocator grows from fragments");
    let group = debugfs_discontig_groups(&img);
    assert!(group > 0, "a discontiguous group was made:\n{}", img.debugfs("stat //inode_alloc:0000"));
    assert!(!blocks.is_empty());
    // The pieces are owned by the allocator: fsck finds only the test's own clusters unused.
    let (_, out, f) = img.findings();
    assert!(f.other.is_empty(), "{:?}\n{out}", f.other);
    assert_eq!(f.unused_clusters, m.clusters());
    let vol = img.rw();
    let mut tx = vol.inner.begin().unwrap();
    for (i, &(s, n)) in m.runs.iter().enumerate() {
        global::free_clusters(&mut tx, s, n).unwrap();
        if i % 100 == 99 {
            tx.commit().unwrap();
            tx = vol.inner.begin().unwrap();
        }
    }
    tx.commit().unwrap();
    vol.close().unwrap();
    img.assert_clean();

    // Without discontig-bg the allocator cannot grow; other slots are tried, then ENOSPC.
    let img = Img::tools(
        "no-discontig",
        64,
        &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2", "--fs-features=nodiscontig-bg"],
    );
    let (result, m) = grow_in_fragments(&img, 8);
    assert!(matches!(result, Err(Error::NoSpace(_))), "{:?}", result.map(|b| b.len()));
    let (_, out, f) = img.findings();
    assert!(f.other.is_empty(), "{:?}\n{out}", f.other);
    assert_eq!(f.unused_clusters, m.clusters());
}

/// Groups of `inode_alloc:0000` that debugfs.ocfs2 shows with a piece list (discontiguous):
/// it prints the list (with its "Tree Depth") under such a group only.
fn debugfs_discontig_groups(img: &Img) -> usize {
    img.debugfs("stat //inode_alloc:0000").matches("Tree Depth:").count()
}

/// Random allocator work on `dev`, each operation its own transaction; returns the clusters
/// of committed claims.
fn crash_workload(dev: std::sync::Arc<dyn crate::device::BlockDevice>, seed: u64) -> BTreeSet<u64> {
    let mut rng = XorShift::new(seed);
    let mut claimed = BTreeSet::new();
    let Ok(vol) = Volume::open(dev, MountOptions { local_alloc_mb: Some(1), ..MountOptions::writable() }) else {
        return claimed;
    };
    let mut m = Model::default();
    for _ in 0..120 {
        let Ok(mut tx) = vol.inner.begin() else { break };
        match rng.below(10) {
            0..=3 => {
                if let Ok(runs) = claim(&mut tx, 1 + rng.below(200) as u32) {
                    if tx.commit().is_err() {
                        break;
                    }
                    for &(s, n) in &runs {
                        claimed.extend((s..s + n).map(u64::from));
                    }
                    m.runs.extend(runs);
                }
            }
            4..=6 if !m.runs.is_empty() => {
                let (s, n) = m.runs.swap_remove(rng.below(m.runs.len() as u64) as usize);
                let r = if rng.below(2) == 0 {
                    truncate_log::append(&mut tx, s, n)
                } else {
                    global::free_clusters(&mut tx, s, n)
                };
                if r.is_err() || tx.commit().is_err() {
                    break;
                }
            }
            7 => {
                drop(tx);
                if truncate_log::flush(&vol.inner, vol.slot().unwrap()).is_err() {
                    break;
                }
            }
            _ => {
                let kind = if rng.below(2) == 0 { SubAlloc::Inode } else { SubAlloc::Extent };
                match suballoc::claim_block(&mut tx, kind) {
                    Ok(b) => {
                        if rng.below(2) == 0 {
                            suballoc::free_block(&mut tx, kind, b).unwrap();
                        } else {
                            m.blocks.push((kind, b));
                        }
                        if tx.commit().is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        // Each step reaches the journal, so that crash points fall between many commits.
        if super::super::tx::sync(&vol.inner).is_err() {
            break;
        }
    }
    // Free the blocks again so that fsck sees only clusters as leftovers.
    if let Ok(mut tx) = vol.inner.begin() {
        for &(kind, b) in &m.blocks {
            let _ = suballoc::free_block(&mut tx, kind, b);
        }
        let _ = tx.commit();
    }
    let _ = vol.close();
    claimed
}

#[test]
fn a_crash_at_any_write_is_recovered_by_our_replay_and_by_fsck() {
    use crate::device::{FaultDevice, FaultKind, FaultPlan, MemDevice};
    use std::sync::Arc;
    let img = Img::tools("crash", 48, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2", "-J", "size=4M"]);
    let image = std::fs::read(&img.path).unwrap();
    let seed = seed();
    println!("crash test seed {seed}");
    let mut rng = XorShift::new(seed);
    let probe = Arc::new(FaultDevice::new(MemDevice::from_bytes(image.clone()), FaultPlan::new()));
    crash_workload(probe.clone(), seed);
    let writes = probe.writes();
    assert!(writes > 100, "the workload writes ({writes})");
    for trial in 0..10 {
        let last = rng.below(writes);
        let torn = (rng.below(3) == 0).then(|| rng.below(4096) as usize);
        let dev = Arc::new(FaultDevice::new(
            MemDevice::from_bytes(image.clone()),
            FaultPlan::new().with(FaultKind::CrashAfterWrite { last, torn_bytes: torn }),
        ));
        let claimed = crash_workload(dev.clone(), seed);
        let crashed = dev.inner().to_bytes();
        let what = format!("seed {seed} trial {trial}: crash after write {last} of {writes} (torn {torn:?})");

        // Our replay: the volume is consistent; only clusters the workload claimed may be
        // left in use by nobody.
        std::fs::write(&img.path, &crashed).unwrap();
        img.rw().close().unwrap_or_else(|e| panic!("{what}: {e}"));
        let (_, out, f) = img.findings();
        assert!(f.other.is_empty(), "{what}: {:?}\n{out}", f.other);
        assert!(f.unused_clusters.is_subset(&claimed), "{what}: clusters never claimed are unused");

        // fsck.ocfs2 replays the same journal itself and repairs only leftovers.
        std::fs::write(&img.path, &crashed).unwrap();
        let p = img.path.to_string_lossy().into_owned();
        let fsck_fy = || {
            let mut child = std::process::Command::new("fsck.ocfs2")
                .args(["-fyF", &p])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("fsck.ocfs2");
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(b"y\n");
            let out = child.wait_with_output().unwrap();
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        };
        // fsck.ocfs2 1.8.7 replays the journal, then stops ("Unable to access cluster
        // service") when it reopens the volume, even a local one; a second run checks and
        // repairs. -F skips the cluster check, which then wants a "y".
        let mut text = fsck_fy();
        if text.contains("unrecoverable errors while replaying the journals") {
            assert!(text.contains("journal replayed successfully"), "{what}: fsck could not replay:\n{text}");
            text = fsck_fy();
        }
        let (code, after, f) = img.findings();
        assert!(
            code == 0 && f.other.is_empty() && f.unused_clusters.is_empty() && f.unused_inode_bits.is_empty(),
            "{what}: after fsck.ocfs2 -fy:\n{text}\nfsck.ocfs2 -fn:\n{after}"
        );
        for line in text.lines().filter(|l| l.starts_with('[')) {
            assert!(
                line.contains("[CLUSTER_ALLOC_BIT]")
                    || line.contains("[INODE_ALLOC_REPAIR]")
                    || img.baseline.iter().any(|b| b.starts_with(&line[..line.len().min(30)])),
                "{what}: fsck -fy repaired more than leftovers: {line}\n{text}"
            );
        }
    }
}

#[test]
fn the_window_is_reserved_on_first_use_and_returned_at_close() {
    let img = Img::tools("la-window", 128, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]);
    let base = img.bitmap_counts("global_bitmap").1;
    let vol = img.open(MountOptions { local_alloc_mb: Some(4), ..MountOptions::writable() });
    let mut tx = vol.inner.begin().unwrap();
    let (s, n) = local_alloc::claim_data(&mut tx, 3).unwrap();
    assert_eq!(n, 3);
    let (used, total, first) = local_alloc::usage(&tx, 0).unwrap();
    assert_eq!((used, total), (3, 1024), "a 4 MB window of 4K clusters");
    assert_eq!(s, first, "the claim comes from the window's start");
    assert_eq!(u64::from(global::usage(&tx).unwrap().0), base + 1024, "the whole window is set globally");
    tx.commit().unwrap();
    vol.close().unwrap();
    assert_eq!(img.bitmap_counts("global_bitmap").1, base + 3, "unused window bits went back");
    let (_, out, f) = img.findings();
    assert!(f.other.is_empty(), "{out}");
    assert_eq!(f.unused_clusters, (u64::from(s)..u64::from(s) + 3).collect());
}
