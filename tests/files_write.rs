//! `ocfs2-files` writing commands, each run as its own process on an image: `put` copies a
//! whole host tree in, `mkdir -p`, `mv`, `ln`, `ln -s`, `chmod`, `chown`, `touch`, `truncate`,
//! `rm -r` and `rmdir` change it; debugfs.ocfs2 (rdump, stat) and fsck.ocfs2 are the referees.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

const OCFS2_FILES: &str = env!("CARGO_BIN_EXE_ocfs2-files");

fn files(img: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(OCFS2_FILES).arg(img).args(args).output().expect("run ocfs2-files");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn ok(img: &Path, args: &[&str]) -> String {
    let (good, out) = files(img, args);
    assert!(good, "ocfs2-files {args:?} failed:\n{out}");
    out
}

#[test]
fn the_writing_commands_build_a_tree_the_tools_read_back() {
    require_tool("debugfs.ocfs2");
    let s = Scratch::new("files-write");
    let img = s.path("vol.img");
    sparse_image(&img, 256 << 20);
    mkfs_ocfs2(&img, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]);
    // A host tree: this crate's sources and a few made files.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
    let host = s.path("host");
    std::fs::create_dir_all(host.join("deep/er")).unwrap();
    std::fs::write(host.join("deep/er/big"), Rng::new(5).bytes(3 << 20)).unwrap();
    std::fs::write(host.join("empty"), b"").unwrap();

    ok(&img, &["mkdir", "-p", "/a/b/c"]);
    ok(&img, &["put", src.to_str().unwrap(), "/a/b/c"]);
    ok(&img, &["put", host.to_str().unwrap(), "/"]);
    ok(&img, &["mv", "/host", "/moved"]);
    ok(&img, &["mv", "/moved/empty", "/a"]);
    ok(&img, &["ln", "/moved/deep/er/big", "/a/hardlink"]);
    ok(&img, &["ln", "-s", "../moved/deep/er/big", "/a/symlink"]);
    ok(&img, &["chmod", "640", "/a/hardlink"]);
    ok(&img, &["chown", "1234:567", "/a/empty"]);
    ok(&img, &["touch", "/a/new", "/a/empty"]);
    ok(&img, &["truncate", "-s", "1000", "/moved/deep/er/big"]);
    let (refused, msg) = files(&img, &["rmdir", "/a/b"]);
    assert!(!refused && msg.contains("not empty"), "rmdir of a full directory: {msg}");
    let (refused, msg) = files(&img, &["mkdir", "/a"]);
    assert!(!refused && msg.contains("exists"), "mkdir of an existing name: {msg}");

    // The tools see the tree: fsck is clean, rdump gives the sources back byte for byte.
    assert_fsck_clean(&img);
    let out = s.path("rdump");
    std::fs::create_dir_all(&out).unwrap();
    debugfs(&img, &format!("rdump /a/b/c/src {}", out.display()));
    let diff = Command::new("diff").arg("-r").arg(&src).arg(out.join("src")).output().unwrap();
    assert!(diff.status.success(), "rdump differs:\n{}", String::from_utf8_lossy(&diff.stdout));
    let stat = debugfs(&img, "stat /a/hardlink");
    assert!(stat.contains("Links: 2") && stat.contains("Size: 1000"), "{stat}");
    assert!(stat.contains("Mode: 0640"), "{stat}");
    let stat = debugfs(&img, "stat /a/empty");
    assert!(stat.contains("User: 1234") && stat.contains("Group: 567"), "{stat}");
    let stat = debugfs(&img, "stat /a/symlink");
    assert!(stat.contains("../moved/deep/er/big"), "a fast symlink shows its target:\n{stat}");
    let listing = ok(&img, &["ls", "/a"]);
    assert!(listing.contains("new") && listing.contains("empty"), "{listing}");

    ok(&img, &["rm", "-r", "/a", "/moved"]);
    let root = debugfs(&img, "ls /");
    let names: Vec<&str> = root.split_whitespace().filter(|w| !w.chars().all(|c| c.is_ascii_digit())).collect();
    assert_eq!(names, vec![".", "..", "lost+found"], "everything else is gone:\n{root}");
    assert_fsck_clean(&img);
}
