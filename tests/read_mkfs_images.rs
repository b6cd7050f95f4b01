//! Volumes made by the real mkfs.ocfs2 open in our library, and what we list agrees with
//! debugfs.ocfs2 (issue 2, "Must show" 2).

mod common;

use common::*;
use ocfs2::{MountOptions, Volume};
use std::path::Path;
use std::process::Command;

const OCFS2_FILES: &str = env!("CARGO_BIN_EXE_ocfs2-files");

/// The fields of an `ls -l` line that do not depend on the time zone: inode, mode string,
/// links, uid, gid, size, name.
fn ls_fields(text: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            assert!(parts.len() >= 9, "short ls -l line {l:?}");
            let mut row: Vec<String> = parts[..6].iter().map(|s| s.to_string()).collect();
            row.push(parts[8..].join(" "));
            row
        })
        .collect();
    rows.sort();
    rows
}

fn ours(img: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(Command::new(OCFS2_FILES).arg(img).args(args));
    assert!(ok, "ocfs2-files {args:?} failed: {err}");
    out
}

/// (total, used, free) clusters from `debugfs.ocfs2 -R 'stat //global_bitmap'`.
fn debugfs_bitmap(img: &Path) -> (u64, u64, u64) {
    let text = debugfs(img, "stat //global_bitmap");
    let line = text.lines().find(|l| l.contains("Bitmap Total:")).expect("Bitmap Total line");
    let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (nums[0], nums[1], nums[2])
}

/// (total, used, free) clusters from our `df`.
fn our_df(img: &Path) -> (u64, u64, u64) {
    let text = ours(img, &["df"]);
    let line = text.lines().find(|l| l.starts_with("Clusters:")).expect("Clusters line");
    let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (nums[0], nums[1], nums[2])
}

fn check_image(img: &Path, block: u32, cluster: u32, slots: u16, local: bool) {
    let case = format!("-b {block} -C {cluster} -N {slots} local={local}");
    let vol = Volume::open_path(img, MountOptions::default()).unwrap_or_else(|e| panic!("{case}: open: {e}"));
    let info = vol.info();
    assert_eq!((info.block_size, info.cluster_size, info.max_slots), (block, cluster, slots), "{case}");
    assert_eq!(info.is_local(), local, "{case}");
    assert_eq!(info.label, "matrix", "{case}");
    // Every system file debugfs lists is one we list, with the same inode and attributes.
    for dir in ["/", "//"] {
        let theirs = ls_fields(&debugfs(img, &format!("ls -l {dir}")));
        let mine = ls_fields(&ours(img, &["ls", "-l", dir]));
        assert_eq!(mine, theirs, "{case}: ls -l {dir}");
    }
    let lost = vol.resolve("/lost+found").unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(vol.metadata(lost).unwrap().is_dir(), "{case}");
    assert_eq!(our_df(img), debugfs_bitmap(img), "{case}: df");
    let st = vol.statfs().unwrap();
    assert_eq!(st.total_clusters * cluster as u64, (info.clusters as u64) * cluster as u64, "{case}");
}

#[test]
fn mkfs_ocfs2_matrix_opens_and_lists_like_debugfs() {
    let scratch = Scratch::new("read-matrix");
    let img = scratch.path("m.img");
    let mut cases = 0;
    for block in [512u32, 1024, 2048, 4096] {
        for cluster in [4096u32, 65536, 1 << 20] {
            for (slots, local) in [(1u16, false), (4, false), (32, false), (1, true)] {
                // Enough room for 32 journals at the larger cluster sizes.
                let size: u64 = if slots == 32 || cluster == 1 << 20 { 2 << 30 } else { 512 << 20 };
                sparse_image(&img, size);
                let (b, c, n) = (block.to_string(), cluster.to_string(), slots.to_string());
                let mut args = vec!["-b", &b, "-C", &c, "-N", &n, "-L", "matrix"];
                if local {
                    args.extend(["-M", "local"]);
                }
                if slots == 32 {
                    // 32 journals of the default size would not fit; small ones keep it quick.
                    args.extend(["-J", "size=16M"]);
                }
                mkfs_ocfs2(&img, &args);
                check_image(&img, block, cluster, slots, local);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 48);
}

#[test]
fn max_compat_and_metaecc_volumes_open() {
    let scratch = Scratch::new("read-features");
    let img = scratch.path("f.img");
    for features in [
        vec!["--fs-feature-level=max-compat"],
        vec!["--fs-features=metaecc"],
        vec!["--fs-feature-level=max-features"],
        vec!["--fs-features=noinline-data,noindexed-dirs"],
    ] {
        sparse_image(&img, 512 << 20);
        let mut args = vec!["-b", "1024", "-C", "4096", "-N", "2", "-L", "matrix"];
        args.extend(features.iter().copied());
        mkfs_ocfs2(&img, &args);
        check_image(&img, 1024, 4096, 2, false);
    }
}

#[test]
fn a_file_that_is_not_ocfs2_is_refused_with_a_clear_error() {
    let scratch = Scratch::new("read-notocfs2");
    let img = scratch.path("zero.img");
    sparse_image(&img, 16 << 20);
    let err = Volume::open_path(&img, MountOptions::default()).err().expect("must fail");
    assert_eq!(err.errno(), libc_einval());
    assert!(err.to_string().contains("not an OCFS2 volume"), "{err}");
}

fn libc_einval() -> i32 {
    22
}
