//! The C API from C: `examples/c/ocfs2_copy.c` and `examples/c/fsx_capi.c` are compiled with
//! `cc -Wall -Wextra -Wpedantic -Werror` against `include/ocfs2rs.h` and `libocfs2rs.so`, run
//! under valgrind (no memory errors, no definite or indirect leaks), and judged by
//! fsck.ocfs2 and debugfs.ocfs2.
//!
//! The library is the `libocfs2rs.so` that cargo built for this profile (next to this test
//! binary in `target/<profile>/deps`, or uplifted to `target/<profile>`); the tests link it
//! through a scratch directory holding it under its soname `libocfs2rs.so.0`, with an rpath.
//! `OCFS2_FSX_OPS` sets the length of the fsx run (20,000 by default), `OCFS2_FSX_SEED` its
//! seed.

mod common;

use common::*;
use ocfs2::device::{FileDevice, FileDeviceOptions};
use ocfs2::mkfs::{mkfs, MkfsOptions, MountType};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` is not installed: run `apt-get install -y {package}` (.ci/run installs it)");
}

/// The freshest `libocfs2rs.so` of this build profile.
fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    let profile = deps.parent().expect("profile dir");
    let found = [deps.join("libocfs2rs.so"), profile.join("libocfs2rs.so")]
        .into_iter()
        .filter_map(|p| std::fs::metadata(&p).and_then(|m| m.modified()).ok().map(|t| (t, p)))
        .max();
    match found {
        Some((_, path)) => path,
        None => panic!(
            "libocfs2rs.so is not in {} or {}: build it with `cargo build -p ocfs2rs-ffi` \
             (the ffi crate is a dev-dependency of the examples, so cargo test builds it)",
            deps.display(),
            profile.display()
        ),
    }
}

/// A scratch `lib/` with the library under its soname, and the C programs built against it.
struct CPrograms {
    lib: PathBuf,
    bin: PathBuf,
}

impl CPrograms {
    fn build(s: &Scratch) -> CPrograms {
        require("cc", "gcc");
        let lib = s.path("lib");
        let bin = s.path("bin");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let so = built_library();
        for name in ["libocfs2rs.so.0", "libocfs2rs.so"] {
            std::os::unix::fs::symlink(&so, lib.join(name)).unwrap();
        }
        let progs = CPrograms { lib, bin };
        for prog in ["ocfs2_copy", "fsx_capi"] {
            progs.compile(prog, &["-locfs2rs".into(), format!("-Wl,-rpath,{}", progs.lib.display())], prog);
        }
        progs
    }

    fn compile(&self, prog: &str, link: &[String], out: &str) {
        let src = Path::new(REPO).join(format!("examples/c/{prog}.c"));
        let (ok, stdout, stderr) = run(Command::new("cc")
            .args(["-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Wpedantic", "-Werror"])
            .arg("-I")
            .arg(Path::new(REPO).join("include"))
            .arg(&src)
            .arg("-o")
            .arg(self.bin.join(out))
            .arg(format!("-L{}", self.lib.display()))
            .args(link));
        assert!(ok, "cc {} failed:\n{stdout}{stderr}", src.display());
    }

    fn path(&self, prog: &str) -> PathBuf {
        self.bin.join(prog)
    }
}

/// Runs a C program under valgrind; memory errors and definite or indirect leaks fail it with
/// exit code 99.
fn valgrind(prog: &Path, args: &[&str]) -> Output {
    require("valgrind", "valgrind");
    Command::new("valgrind")
        .args([
            "-q",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
        ])
        .arg(prog)
        .args(args)
        .output()
        .expect("run valgrind")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn assert_clean_run(what: &str, out: &Output) {
    let code = out.status.code();
    assert!(code != Some(99), "valgrind found memory errors or leaks in {what}:\n{}", text(out));
    assert!(out.status.success(), "{what} exited {code:?}:\n{}", text(out));
}

/// A fresh local volume made by our mkfs.
fn our_image(path: &Path, size: u64) {
    sparse_image(path, size);
    let dev = FileDevice::open_with(path, FileDeviceOptions { writable: true, direct: None }).expect("open image");
    mkfs(&dev, &MkfsOptions { mount: Some(MountType::Local), ..Default::default() }).expect("mkfs");
}

/// A deterministic pseudo-random byte string.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// Every path under `root` (relative) with what it is: `f` + contents, `d`, or `l` + target,
/// and its permission bits.
fn tree(root: &Path) -> BTreeMap<String, (char, Vec<u8>, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (char, Vec<u8>, u32)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let perm = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, ('l', target.as_os_str().as_encoded_bytes().to_vec(), 0));
            } else if meta.is_dir() {
                out.insert(rel, ('d', Vec::new(), perm));
                walk(root, &p, out);
            } else {
                out.insert(rel, ('f', std::fs::read(&p).unwrap(), perm));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A host tree with the sizes around block and chunk boundaries, a long name, a symlink and
/// nested directories.
fn make_host_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("one".into(), b"x".to_vec()),
        ("a/block-minus-one".into(), bytes(4095, 1)),
        ("a/block".into(), bytes(4096, 2)),
        ("a/b/block-plus-one".into(), bytes(4097, 3)),
        ("a/b/c/hundred-k".into(), bytes(100_000, 4)),
        ("a/three-mib".into(), bytes((3 << 20) + 17, 5)),
        (format!("a/{}", "n".repeat(255)), b"a name of 255 bytes".to_vec()),
    ];
    for (rel, data) in &files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    std::fs::set_permissions(root.join("one"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(root.join("a/b"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("../one", root.join("a/link")).unwrap();
    files
}

/// `fsck.ocfs2 -fn` finds `img` clean, except for one known disagreement: fallocate with
/// KEEP_SIZE leaves unwritten extents past the end of the file (the kernel does the same), and
/// fsck.ocfs2 1.8.7 counts them as data and asks to grow the file (`INODE_SPARSE_SIZE`). That
/// complaint passes only when debugfs.ocfs2 shows every extent of `file` that reaches past the
/// last cluster of its size as unwritten.
fn assert_fsck_clean_but_keep_size_extents(img: &Path, file: &str, cluster: u64) {
    let (code, out) = fsck_fn(img);
    let problems: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with('[')).collect();
    let others: Vec<&&str> = problems.iter().filter(|l| !l.starts_with("[INODE_SPARSE_SIZE]")).collect();
    assert!(code == 0 && others.is_empty() && !out.contains("ERROR"), "fsck.ocfs2 -fn exited {code}:\n{out}");
    if problems.is_empty() {
        return;
    }
    let stat = debugfs(img, &format!("stat {file}"));
    let field = |name: &str| -> u64 {
        let at = stat.find(name).unwrap_or_else(|| panic!("no {name} in:\n{stat}")) + name.len();
        stat[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(field("Tree Depth:"), 0, "extents in extent blocks: not checked here\n{stat}");
    let size_end = field("Size:").div_ceil(cluster) * cluster;
    let rows = stat.lines().skip_while(|l| !l.contains("## Offset")).skip(1);
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let (offset, clusters): (u64, u64) = (cols[1].parse().unwrap(), cols[2].parse().unwrap());
        let unwritten = u64::from_str_radix(cols[4].trim_start_matches("0x"), 16).unwrap() & 1 != 0;
        assert!(
            (offset + clusters) * cluster <= size_end || unwritten,
            "a written extent reaches past the end of {file} ({problems:?}):\n{stat}"
        );
    }
}

#[test]
fn c_copy_puts_a_tree_in_and_gets_it_back_under_valgrind() {
    let s = Scratch::new("capi-copy");
    let progs = CPrograms::build(&s);
    let copy = progs.path("ocfs2_copy");
    let host = s.path("host");
    let files = make_host_tree(&host);
    let img = s.path("vol.img");
    our_image(&img, 256 << 20);
    let img_s = img.to_str().unwrap();

    assert_clean_run("ocfs2_copy mkdir", &valgrind(&copy, &[img_s, "mkdir", "/data"]));
    assert_clean_run("ocfs2_copy in", &valgrind(&copy, &[img_s, "in", host.to_str().unwrap(), "/data/tree"]));
    assert_fsck_clean(&img);

    // debugfs.ocfs2 reads every file back as we wrote it.
    for (i, (rel, data)) in files.iter().enumerate() {
        let dumped = s.path(&format!("dump{i}"));
        debugfs(&img, &format!("dump /data/tree/{rel} {}", dumped.display()));
        assert!(std::fs::read(&dumped).unwrap() == *data, "debugfs dump of {rel} differs from the host file");
    }

    // ls: one line per entry with its type and size.
    let listing = valgrind(&copy, &[img_s, "ls", "/data/tree/a"]);
    assert_clean_run("ocfs2_copy ls", &listing);
    let lines: Vec<String> = String::from_utf8_lossy(&listing.stdout).lines().map(str::to_string).collect();
    for want in [
        "d - b".to_string(),
        "f 4095 block-minus-one".into(),
        "f 4096 block".into(),
        format!("f {} three-mib", (3 << 20) + 17),
        "l 6 link".into(),
        format!("f 19 {}", "n".repeat(255)),
    ] {
        let (kind, name) = (&want[..1], want.rsplit(' ').next().unwrap());
        let line = lines.iter().find(|l| l.starts_with(kind) && l.ends_with(&format!(" {name}")));
        let line = line.unwrap_or_else(|| panic!("ls lacks {name}:\n{lines:?}"));
        if kind != "d" {
            assert_eq!(*line, want, "ls line of {name}");
        }
    }
    assert!(lines.iter().any(|l| l.starts_with("d ") && l.ends_with(" ..")), "{lines:?}");

    // And out again: the same tree, permission bits and symlink included.
    let back = s.path("back");
    assert_clean_run("ocfs2_copy out", &valgrind(&copy, &[img_s, "out", "/data/tree", back.to_str().unwrap()]));
    let (want, got) = (tree(&host), tree(&back));
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    for (rel, w) in &want {
        assert!(
            got[rel] == *w,
            "{rel} differs after the round trip: {:?} vs {:?}",
            (w.0, w.2),
            (got[rel].0, got[rel].2)
        );
    }
    assert_eq!(std::fs::symlink_metadata(back.join("one")).unwrap().mode() & 0o777, 0o600);

    // A failure exits 1 with the library's message, still without leaks.
    let missing = valgrind(&copy, &[img_s, "ls", "/data/nothing"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(text(&missing).contains("no such file or directory"), "{}", text(&missing));
    assert_fsck_clean(&img);
}

#[test]
fn fsx_through_the_c_api_matches_its_model() {
    let s = Scratch::new("capi-fsx");
    let progs = CPrograms::build(&s);
    let fsx = progs.path("fsx_capi");
    let img = s.path("fsx.img");
    sparse_image(&img, 256 << 20);
    mkfs_ocfs2(&img, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "2"]);
    let ops = std::env::var("OCFS2_FSX_OPS").unwrap_or_else(|_| "20000".into());
    let seed = std::env::var("OCFS2_FSX_SEED").unwrap_or_else(|_| "1".into());
    let img_s = img.to_str().unwrap();

    let started = std::time::Instant::now();
    let out = Command::new(&fsx).args(["-N", &ops, "-S", &seed, img_s]).output().expect("run fsx_capi");
    assert!(out.status.success(), "fsx_capi -N {ops} -S {seed} failed:\n{}", text(&out));
    eprintln!("{} in {:.1} s", String::from_utf8_lossy(&out.stdout).trim(), started.elapsed().as_secs_f64());
    assert_fsck_clean_but_keep_size_extents(&img, "/fsx.file", 4096);

    // A short run under valgrind, with 1K blocks and a cluster of 4K on our own mkfs.
    let small = s.path("small.img");
    our_image(&small, 64 << 20);
    let out = valgrind(&fsx, &["-N", "300", "-S", "7", "-l", "65536", "-o", "16384", small.to_str().unwrap()]);
    assert_clean_run("fsx_capi under valgrind", &out);
    let cluster = ocfs2::Volume::open_path(&small, ocfs2::MountOptions::default()).unwrap().geometry().cluster_size;
    assert_fsck_clean_but_keep_size_extents(&small, "/fsx.file", cluster as u64);
}

#[test]
fn the_shared_library_has_its_soname_and_exports_only_the_api() {
    require("readelf", "binutils");
    require("nm", "binutils");
    let so = built_library();
    let (ok, dynamic, err) = run(Command::new("readelf").arg("-d").arg(&so));
    assert!(ok, "{err}");
    assert!(dynamic.contains("Library soname: [libocfs2rs.so.0]"), "{dynamic}");
    let (ok, symbols, err) = run(Command::new("nm").args(["-D", "--defined-only"]).arg(&so));
    assert!(ok, "{err}");
    let exported: BTreeSet<&str> = symbols.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    let outside: Vec<&&str> = exported.iter().filter(|n| !n.starts_with("ocfs2rs_")).collect();
    assert!(outside.is_empty(), "symbols outside the ocfs2rs_ namespace: {outside:?}");
    let header = std::fs::read_to_string(Path::new(REPO).join("include/ocfs2rs.h")).unwrap();
    let declared: BTreeSet<&str> = header
        .lines()
        .filter(|l| !l.starts_with("typedef") && !l.starts_with("//") && l.trim_end().ends_with(");"))
        .filter_map(|l| l.split('(').next()?.rsplit([' ', '*']).next())
        .collect();
    assert_eq!(exported, declared, "the library exports exactly the functions the header declares");
}

#[test]
fn a_program_links_the_static_library() {
    let s = Scratch::new("capi-static");
    require("cc", "gcc");
    let lib = s.path("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let so = built_library();
    let archive = so.with_file_name("libocfs2rs.a");
    assert!(archive.is_file(), "{} is missing", archive.display());
    let progs = CPrograms { lib, bin: s.dir.clone() };
    // The libraries Rust's std needs (`--print native-static-libs`); ffi/ocfs2rs.pc.in lists
    // the same as Libs.private.
    let mut link = vec![archive.display().to_string()];
    link.extend(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"].map(String::from));
    progs.compile("ocfs2_copy", &link, "ocfs2_copy_static");
    let (ok, dynamic, _) = run(Command::new("readelf").arg("-d").arg(s.path("ocfs2_copy_static")));
    assert!(ok && !dynamic.contains("libocfs2rs"), "linked the shared library instead:\n{dynamic}");
    let img = s.path("vol.img");
    our_image(&img, 64 << 20);
    let out = Command::new(s.path("ocfs2_copy_static")).arg(&img).args(["ls", "/"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("d ") && l.ends_with(" lost+found")));
}
