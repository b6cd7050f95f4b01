//! Files written by the Linux kernel read back byte for byte (issue 2, "Must show" 3).
//!
//! `tests/kernel/gen-image.sh` had the kernel's OCFS2 (in the VM of ../shared/tools/kvm) write a
//! tree with inline files, multi-megabyte and fragmented files (extent trees of depth >= 2),
//! sparse and unwritten extents, fast and slow symlinks, hard links, special files and an
//! indexed directory of 20,000 entries, and print its manifest as the kernel reads it. Here
//! `ocfs2-files tree` must print exactly that manifest, and `cat` must give the same bytes.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const OCFS2_FILES: &str = env!("CARGO_BIN_EXE_ocfs2-files");

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

/// Decompresses `tests/data/NAME.img.xz` into the scratch directory.
fn unpack(scratch: &Scratch, name: &str) -> PathBuf {
    require_tool("xz");
    let src = data_dir().join(format!("{name}.img.xz"));
    assert!(src.is_file(), "missing {}: regenerate with tests/kernel/gen-image.sh", src.display());
    let dst = scratch.path(&format!("{name}.img"));
    let out = std::fs::File::create(&dst).unwrap();
    let status = Command::new("xz").arg("-dc").arg(&src).stdout(out).status().expect("run xz");
    assert!(status.success(), "xz -dc {} failed", src.display());
    dst
}

/// Manifest lines keyed by path.
fn by_path(text: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    text.split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            // TYPE MODE NLINK SIZE SHA256 PATH: the path is everything after the fifth space.
            let mut spaces = 0;
            let at = line
                .iter()
                .position(|&c| {
                    spaces += (c == b' ') as usize;
                    spaces == 5
                })
                .unwrap_or_else(|| panic!("bad manifest line {:?}", String::from_utf8_lossy(line)));
            (line[at + 1..].to_vec(), line.to_vec())
        })
        .collect()
}

fn check_kernel_image(name: &str) {
    let scratch = Scratch::new(&format!("kernel-{name}"));
    let img = unpack(&scratch, name);
    let manifest = std::fs::read(data_dir().join(format!("{name}.manifest"))).expect("manifest");
    let expect = by_path(&manifest);
    assert!(expect.len() > 20_000, "the manifest lists the 20,000-entry directory");
    let out = Command::new(OCFS2_FILES).arg(&img).arg("tree").output().expect("run ocfs2-files");
    assert!(out.status.success(), "ocfs2-files tree: {}", String::from_utf8_lossy(&out.stderr));
    let got = by_path(&out.stdout);
    let mut differences = Vec::new();
    for (path, line) in &expect {
        match got.get(path) {
            Some(ours) if ours == line => {}
            Some(ours) => differences.push(format!(
                "kernel: {}\n  ours: {}",
                String::from_utf8_lossy(line),
                String::from_utf8_lossy(ours)
            )),
            None => differences.push(format!("missing: {}", String::from_utf8_lossy(line))),
        }
    }
    for (path, line) in &got {
        if !expect.contains_key(path) {
            differences.push(format!("extra: {}", String::from_utf8_lossy(line)));
        }
    }
    assert!(differences.is_empty(), "{name}: {} differences:\n{}", differences.len(), differences.join("\n"));

    // `cat` streams the same bytes the tree checksummed, for the files that stress the mapping.
    for (path, line) in &expect {
        let text = String::from_utf8_lossy(line);
        let fields: Vec<&str> = text.split(' ').collect();
        if fields[0] != "f" || fields[3].parse::<u64>().unwrap() < (1 << 20) {
            continue;
        }
        let p = String::from_utf8_lossy(path).into_owned();
        let out = Command::new(OCFS2_FILES).arg(&img).arg("cat").arg(&p).output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.len() as u64, fields[3].parse::<u64>().unwrap(), "{p}");
        let mut sha = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        sha.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        let digest = String::from_utf8(sha.wait_with_output().unwrap().stdout).unwrap();
        assert_eq!(&digest[..64], fields[4], "cat {p}");
    }
    assert_fsck_clean(&img);
}

#[test]
fn kernel_written_tree_with_1k_blocks_reads_back_byte_for_byte() {
    check_kernel_image("kernel-1k");
}

#[test]
fn kernel_written_tree_with_4k_blocks_and_metaecc_reads_back_byte_for_byte() {
    let name = "kernel-4k";
    if !data_dir().join(format!("{name}.img.xz")).is_file() {
        panic!("missing tests/data/{name}.img.xz: regenerate with tests/kernel/gen-image.sh");
    }
    check_kernel_image(name);
}
