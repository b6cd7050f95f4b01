//! What we write, the Linux kernel reads; what the kernel then writes, we read (issue 3, "Must
//! show" 2).
//!
//! The library writes a tree on a fresh image (1K blocks made by our mkfs, 4K blocks with
//! metaecc by mkfs.ocfs2; both with inline data and indexed directories): files from empty to several MiB (inline and
//! extent-mapped), a file truncated down, a sparse file with a punched hole, a fragmented file,
//! a preallocated file with data in its unwritten extent, a directory of 300 names. Then
//! `tests/kernel/write-check.sh` runs in the VM of ../shared/tools/kvm: `fsck.ocfs2 -fn` must
//! be clean, the kernel mounts the volume and its manifest of the tree (type, mode, links,
//! size, SHA-256 per path) must equal `ocfs2-files tree`; the kernel changes the tree (appends,
//! overwrites, writes into holes, truncates, removes, renames, links, a new directory of 300
//! files and a 3 MB file), fsck is clean again, and our `ocfs2-files tree` must equal the
//! kernel's manifest of its changes. Last, the library writes into what the kernel made.

mod common;

use common::*;
use ocfs2::mkfs::{mkfs, MkfsOptions, MountType};
use ocfs2::{MountOptions, Volume};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const OCFS2_FILES: &str = env!("CARGO_BIN_EXE_ocfs2-files");

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kernel")
}

/// Writes the test tree; returns (path, contents) of every regular file.
fn build_tree(vol: &Volume, rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let root = vol.root();
    let mut made = Vec::new();
    let put = |made: &mut Vec<(String, Vec<u8>)>, dir: u64, dname: &str, name: &str, data: Vec<u8>| {
        let ino = vol.create(dir, name.as_bytes(), 0o644).unwrap();
        if !data.is_empty() {
            vol.write(ino, 0, &data).unwrap();
        }
        made.push((format!("/{dname}/{name}"), data));
        ino
    };
    let files = vol.mkdir(root, b"files", 0o755).unwrap();
    for (name, len) in [
        ("f0", 0usize),
        ("f1", 1),
        ("f100", 100),
        ("f3000", 3000),
        ("f4096", 4096),
        ("small", 10),
        ("f1m", (1 << 20) + 123),
        ("f3m", 3 << 20),
    ] {
        put(&mut made, files, "files", name, rng.bytes(len));
    }
    let trunc = put(&mut made, files, "files", "f5000-to-trunc", rng.bytes(70_000));
    vol.truncate(trunc, 20_000).unwrap();
    made.last_mut().unwrap().1.truncate(20_000);

    let sparse = vol.mkdir(root, b"sparse", 0o755).unwrap();
    let far = put(&mut made, sparse, "sparse", "far", rng.bytes(4096));
    let tail = rng.bytes(5000);
    vol.write(far, 50_000_000, &tail).unwrap();
    vol.punch_hole(far, 1000, 2000).unwrap();
    {
        let data = &mut made.last_mut().unwrap().1;
        data[1000..3000].fill(0);
        data.resize(50_000_000, 0);
        data.extend_from_slice(&tail);
    }

    // Two files written in turns: the first one's clusters are never contiguous.
    let frag = vol.mkdir(root, b"frag", 0o755).unwrap();
    let a = put(&mut made, frag, "frag", "a", Vec::new());
    let other = put(&mut made, frag, "frag", "other", Vec::new());
    let (mut da, mut dother) = (Vec::new(), Vec::new());
    for i in 0..400u64 {
        let chunk = rng.bytes(4096);
        vol.write(a, i * 4096, &chunk).unwrap();
        da.extend_from_slice(&chunk);
        vol.write(other, i * 512, &chunk[..512]).unwrap();
        dother.extend_from_slice(&chunk[..512]);
    }
    for (path, data) in made.iter_mut() {
        if path == "/frag/a" {
            *data = da.clone();
        } else if path == "/frag/other" {
            *data = dother.clone();
        }
    }

    let prealloc = vol.mkdir(root, b"prealloc", 0o755).unwrap();
    let un = put(&mut made, prealloc, "prealloc", "unwritten", Vec::new());
    vol.fallocate(un, 0, 2 << 20, false).unwrap();
    let mid = rng.bytes(1000);
    vol.write(un, 300_000, &mid).unwrap();
    {
        let data = &mut made.last_mut().unwrap().1;
        data.resize(2 << 20, 0);
        data[300_000..301_000].copy_from_slice(&mid);
    }

    let dir300 = vol.mkdir(root, b"dir300", 0o755).unwrap();
    for i in 1..=300 {
        put(&mut made, dir300, "dir300", &format!("n{i}"), format!("name {i}\n").into_bytes());
    }
    vol.mkdir(root, b"links", 0o755).unwrap();
    made
}

fn tree_of(img: &Path) -> String {
    let out = Command::new(OCFS2_FILES).arg(img).arg("tree").output().expect("run ocfs2-files");
    assert!(out.status.success(), "ocfs2-files tree: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("the test tree has UTF-8 names")
}

fn sha256(data: &[u8]) -> String {
    let mut child =
        Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("run sha256sum");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// The manifest tagged `tag` from the guest's console (base64 of gzip, with its SHA-256).
fn manifest_from_console(console: &str, tag: &str) -> String {
    let begin = format!("==== MANIFEST {tag} BEGIN ");
    let end = format!("==== MANIFEST {tag} END");
    let mut lines = console.lines().skip_while(|l| !l.starts_with(&begin));
    let head = lines.next().unwrap_or_else(|| panic!("no manifest {tag} on the console:\n{console}"));
    let want_sha = head[begin.len()..].trim().to_string();
    let b64: String = lines.take_while(|l| !l.starts_with(&end)).map(|l| format!("{l}\n")).collect();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("base64 -d | gzip -dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run base64 and gzip");
    child.stdin.take().unwrap().write_all(b64.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "manifest {tag} does not decode");
    assert_eq!(sha256(&out.stdout), want_sha, "manifest {tag} damaged on the console");
    String::from_utf8(out.stdout).unwrap()
}

fn diff(want: &str, got: &str) -> Vec<String> {
    let w: std::collections::BTreeSet<&str> = want.lines().collect();
    let g: std::collections::BTreeSet<&str> = got.lines().collect();
    let mut out: Vec<String> = w.difference(&g).map(|l| format!("kernel: {l}")).collect();
    out.extend(g.difference(&w).map(|l| format!("  ours: {l}")));
    out
}

/// How the volume is formatted.
enum Format<'a> {
    Tools(&'a [&'a str]),
    Ours(MkfsOptions),
}

fn check_variant(name: &str, format: Format) {
    require_tool("fsck.ocfs2");
    let kvm = kvm_tools();
    let s = Scratch::new(&format!("kernel-write-{name}"));
    let img = s.path("vol.img");
    sparse_image(&img, 256 << 20);
    match format {
        Format::Tools(args) => mkfs_ocfs2(&img, args),
        Format::Ours(opts) => {
            mkfs(&ocfs2::FileDevice::open_rw(&img).unwrap(), &opts).unwrap();
        }
    }
    let seed = seed();
    println!("{name}: seed {seed}");
    let mut rng = Rng::new(seed);
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let made = build_tree(&vol, &mut rng);
    vol.close().unwrap();
    assert_fsck_clean(&img);
    let ours = tree_of(&img);
    for (path, data) in &made {
        let line = ours.lines().find(|l| l.ends_with(&format!(" {path}"))).unwrap_or_else(|| panic!("{path} missing"));
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[3], data.len().to_string(), "{name}: size of {path}");
        assert_eq!(fields[4], sha256(data), "{name}: our reader and the model disagree on {path}");
    }

    let files = format!("{}", script_dir().join("manifest.sh").display());
    let t0 = std::time::Instant::now();
    let out = Command::new(kvm.join("run-guest.sh"))
        .arg(&img)
        .arg(script_dir().join("write-check.sh"))
        .env("KVM_FILES", files)
        .env("KVM_TIMEOUT", "900")
        .output()
        .expect("run-guest.sh");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{name}: guest ran {:.0} s", t0.elapsed().as_secs_f64());
    assert!(
        out.status.success() && console.contains("write-check done"),
        "{name}: the guest failed ({:?}):\n{console}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for line in console.lines().filter(|l| l.starts_with("fsck.ocfs2 -fn")) {
        println!("{name}: guest {line}");
    }
    let a = manifest_from_console(&console, "A");
    let differences = diff(&a, &ours);
    assert!(differences.is_empty(), "{name}: the kernel reads our tree differently:\n{}", differences.join("\n"));
    println!("{name}: the kernel read our tree as we wrote it ({} paths)", a.lines().count());

    assert_fsck_clean(&img);
    let b = manifest_from_console(&console, "B");
    let after = tree_of(&img);
    let differences = diff(&b, &after);
    assert!(differences.is_empty(), "{name}: we read the kernel's changes differently:\n{}", differences.join("\n"));
    println!("{name}: we read the kernel's changes as it did ({} paths)", b.lines().count());

    // Our writer on what the kernel made.
    let vol = Volume::open_path(&img, MountOptions::writable()).unwrap();
    let big = vol.resolve("/kdir/sub/big").unwrap();
    let mut data = vol.read_all(big).unwrap();
    let more = rng.bytes(70_000);
    vol.write(big, data.len() as u64, &more).unwrap();
    data.extend_from_slice(&more);
    let kdir = vol.resolve("/kdir").unwrap();
    for i in 1..=150 {
        vol.unlink(kdir, format!("k{i}").as_bytes()).unwrap();
    }
    let grown = vol.resolve("/files/small").unwrap();
    vol.truncate(grown, 100).unwrap();
    vol.close().unwrap();
    assert_fsck_clean(&img);
    let dumped = s.path("big.dump");
    debugfs(&img, &format!("dump /kdir/sub/big {}", dumped.display()));
    assert_eq!(sha256(&std::fs::read(&dumped).unwrap()), sha256(&data), "{name}: debugfs reads our append");
}

#[test]
fn the_kernel_reads_what_we_wrote_and_we_read_its_changes_1k_blocks() {
    // Our mkfs: mkfs.ocfs2 leaves the system directory unindexed at 1K blocks, which fsck flags.
    let opts = MkfsOptions {
        block_size: Some(1024),
        cluster_size: Some(4096),
        slots: Some(2),
        mount: Some(MountType::Local),
        force: true,
        ..Default::default()
    };
    check_variant("1k", Format::Ours(opts));
}

#[test]
fn the_kernel_reads_what_we_wrote_and_we_read_its_changes_4k_metaecc() {
    check_variant(
        "4k-metaecc",
        Format::Tools(&["-M", "local", "-b", "4096", "-C", "4096", "-N", "2", "--fs-features", "metaecc"]),
    );
}
