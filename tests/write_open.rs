//! Writable open and close, checked by the real tools: the slot map (`debugfs.ocfs2 -R
//! slotmap`, `mounted.ocfs2 -f`), the journal inode's flags and recovery generation, and
//! `fsck.ocfs2 -fn` after close.

mod common;

use common::*;
use ocfs2::device::{FaultKind, FaultPlan};
use ocfs2::mkfs::{mkfs, MkfsOptions, MountType};
use ocfs2::{FaultDevice, FileDevice, MemDevice, MountOptions, Volume};
use std::path::Path;

/// The (slot, node) rows `debugfs.ocfs2 -R slotmap` prints.
fn slotmap(img: &Path) -> Vec<(u32, u32)> {
    debugfs(img, "slotmap")
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|w| w.parse::<u32>());
            match (it.next(), it.next()) {
                (Some(Ok(s)), Some(Ok(n))) => Some((s, n)),
                _ => None,
            }
        })
        .collect()
}

/// The "Nodes" column of `mounted.ocfs2 -f` for `img`.
fn mounted_nodes(img: &Path) -> String {
    require_tool("mounted.ocfs2");
    let (ok, out, err) = run(std::process::Command::new("mounted.ocfs2").arg("-f").arg(img));
    assert!(ok, "mounted.ocfs2 -f failed: {out}{err}");
    let line = out.lines().nth(1).unwrap_or_else(|| panic!("no device line in:\n{out}"));
    // Device, Stack and Cluster may be empty for local volumes; the node list is last.
    line.split("  ").filter(|s| !s.trim().is_empty()).last().unwrap_or("").trim().to_string()
}

/// (dirty, recovery generation) of `journal:NNNN` as debugfs.ocfs2 shows them.
fn journal_state(img: &Path, slot: u16) -> (bool, u32) {
    let out = debugfs(img, &format!("stat //journal:{slot:04}"));
    let flags = out.lines().find(|l| l.contains("Journal Flags:")).expect("Journal Flags line").to_string();
    let gen = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Recovery Generation:"))
        .expect("Recovery Generation line")
        .trim()
        .parse()
        .unwrap();
    (flags.contains("Dirty"), gen)
}

fn open_rw(img: &Path) -> Volume {
    Volume::open_path(img, MountOptions::writable()).unwrap_or_else(|e| panic!("writable open of {img:?}: {e}"))
}

fn check_open_close(img: &Path, what: &str) {
    let fresh = fsck_problem_lines(img);
    assert!(slotmap(img).is_empty(), "{what}: fresh volume has an empty slot map");
    let vol = open_rw(img);
    assert_eq!(vol.slot(), Some(0), "{what}");
    assert!(vol.is_writable());
    assert_eq!(slotmap(img), vec![(0, 0)], "{what}: slot 0 held by node 0 while open");
    assert_eq!(mounted_nodes(img), "0", "{what}: mounted.ocfs2 -f shows node 0");
    assert_eq!(journal_state(img, 0), (true, 0), "{what}: journal marked in use");
    vol.close().unwrap();
    assert!(slotmap(img).is_empty(), "{what}: slot given back at close");
    assert_eq!(mounted_nodes(img), "Not mounted", "{what}");
    assert_eq!(journal_state(img, 0), (false, 0), "{what}: journal clean after close");
    assert_fsck_as_fresh(img, &fresh);
}

#[test]
fn writable_open_takes_slot_zero_and_close_gives_it_back() {
    let s = Scratch::new("write-open");
    let cases: &[(&str, &[&str])] = &[
        ("local-4k", &["-M", "local", "-b", "4096", "-C", "4096", "-N", "4"]),
        ("local-512", &["-M", "local", "-b", "512", "-C", "4096", "-N", "2"]),
        ("cluster-4k", &["-b", "4096", "-C", "8192", "-N", "4"]),
        ("ecc-1k", &["-M", "local", "-b", "1024", "-C", "4096", "-N", "3", "--fs-features=metaecc"]),
        ("old-slotmap", &["-M", "local", "-b", "2048", "-N", "4", "--fs-feature-level=max-compat"]),
    ];
    for (name, args) in cases {
        let img = s.path(&format!("{name}.img"));
        sparse_image(&img, 200 << 20);
        mkfs_ocfs2(&img, args);
        check_open_close(&img, name);
    }
}

#[test]
fn volumes_made_by_our_mkfs_open_for_writing() {
    let s = Scratch::new("write-open-ours");
    for (name, bs, cs, mount) in
        [("ours-4k", 4096, 4096, MountType::Local), ("ours-512-cluster", 512, 8192, MountType::Cluster)]
    {
        let img = s.path(&format!("{name}.img"));
        sparse_image(&img, 160 << 20);
        let opts = MkfsOptions {
            block_size: Some(bs),
            cluster_size: Some(cs),
            slots: Some(2),
            mount: Some(mount),
            force: true,
            ..Default::default()
        };
        mkfs(&FileDevice::open_rw(&img).unwrap(), &opts).unwrap();
        check_open_close(&img, name);
    }
}

#[test]
fn reopen_after_a_crash_recovers_the_journal_and_bumps_its_generation() {
    let s = Scratch::new("write-crash");
    let img = s.path("crash.img");
    sparse_image(&img, 128 << 20);
    mkfs_ocfs2(&img, &["-M", "local", "-N", "2"]);
    let fresh = fsck_problem_lines(&img);
    // A process that dies keeps its slot and leaves the journal marked dirty.
    std::mem::forget(open_rw(&img));
    assert_eq!(slotmap(&img), vec![(0, 0)]);
    assert_eq!(journal_state(&img, 0), (true, 0));
    let vol = open_rw(&img);
    assert_eq!(vol.slot(), Some(0), "the slot that already holds node 0 is taken again");
    assert_eq!(journal_state(&img, 0), (true, 1), "recovered: generation bumped, still in use");
    vol.close().unwrap();
    assert_eq!(journal_state(&img, 0), (false, 1));
    assert!(slotmap(&img).is_empty());
    assert_fsck_as_fresh(&img, &fresh);
}

#[test]
fn dropping_the_last_handle_closes_the_volume() {
    let s = Scratch::new("write-drop");
    let img = s.path("drop.img");
    sparse_image(&img, 128 << 20);
    mkfs_ocfs2(&img, &["-M", "local", "-N", "2"]);
    let fresh = fsck_problem_lines(&img);
    let vol = open_rw(&img);
    let other = vol.clone();
    drop(vol);
    assert_eq!(slotmap(&img), vec![(0, 0)], "a handle is still open");
    drop(other);
    assert!(slotmap(&img).is_empty());
    assert_eq!(journal_state(&img, 0), (false, 0));
    assert_fsck_as_fresh(&img, &fresh);
}

#[test]
fn a_cluster_volume_held_by_another_node_is_refused_for_writing() {
    let s = Scratch::new("write-busy");
    let img = s.path("busy.img");
    sparse_image(&img, 128 << 20);
    mkfs_ocfs2(&img, &["-N", "4", "-b", "4096"]);
    // Mark slot 1 as held by node 7 in the extended slot map.
    let blkno: u64 = debugfs(&img, "stat //slot_map")
        .lines()
        .skip_while(|l| !l.contains("Block#"))
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3).map(|w| w.parse().unwrap()))
        .expect("slot map extent");
    let bs = 4096u64;
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[1, 0, 0, 0, 7, 0, 0, 0], blkno * bs + 8).unwrap();
    assert_eq!(slotmap(&img), vec![(1, 7)]);
    let err = Volume::open_path(&img, MountOptions::writable()).err().expect("refused");
    assert_eq!(err.errno(), libc_ebusy(), "{err}");
    assert_eq!(slotmap(&img), vec![(1, 7)], "nothing written");
    Volume::open_path(&img, MountOptions::default()).expect("read-only open still works");
}

fn libc_ebusy() -> i32 {
    16
}

#[test]
fn volumes_with_quotas_are_refused_for_writing() {
    let s = Scratch::new("write-quota");
    let img = s.path("quota.img");
    sparse_image(&img, 128 << 20);
    mkfs_ocfs2(&img, &["-M", "local", "-N", "1", "--fs-features=usrquota"]);
    let err = Volume::open_path(&img, MountOptions::writable()).err().expect("refused");
    assert_eq!(err.errno(), 95, "EOPNOTSUPP: {err}");
    assert!(slotmap(&img).is_empty());
    Volume::open_path(&img, MountOptions::default()).expect("read-only open still works");
}

#[test]
fn a_failed_metadata_write_stops_the_volume() {
    let s = Scratch::new("write-fault");
    let img = s.path("fault.img");
    sparse_image(&img, 64 << 20);
    mkfs_ocfs2(&img, &["-M", "local", "-N", "2", "-b", "4096"]);
    let image = std::fs::read(&img).unwrap();
    // Count the writes a clean open and close make.
    let probe = std::sync::Arc::new(FaultDevice::new(MemDevice::from_bytes(image.clone()), FaultPlan::new()));
    Volume::open(probe.clone(), MountOptions::writable()).unwrap().close().unwrap();
    let writes = probe.writes();
    assert!(writes >= 4, "slot map, journal flag and their undoing: {writes} writes");
    for n in 0..writes {
        let dev = std::sync::Arc::new(FaultDevice::new(
            MemDevice::from_bytes(image.clone()),
            FaultPlan::new().with(FaultKind::FailWrite(n)),
        ));
        match Volume::open(dev.clone(), MountOptions::writable()) {
            Err(e) => assert_eq!(e.errno(), 5, "write {n}: open fails with EIO: {e}"),
            Ok(vol) => {
                let err = vol.clone().close().expect_err("close must report the failed write");
                assert_eq!(err.errno(), 5, "write {n}: {err}");
                assert!(!vol.is_writable(), "write {n}: the volume stopped writing");
                let again = vol.close().expect_err("a stopped volume stays stopped");
                assert_eq!(again.errno(), 5, "write {n}: {again}");
            }
        }
        // Whatever reached the disk is consistent and the next open recovers it.
        let after = dev.inner().to_bytes();
        std::fs::write(&img, &after).unwrap();
        assert_fsck_clean(&img);
        let vol = open_rw(&img);
        vol.close().unwrap();
        assert!(slotmap(&img).is_empty(), "write {n}");
        assert_fsck_clean(&img);
    }
}
