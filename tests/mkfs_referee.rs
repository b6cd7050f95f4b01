//! Our mkfs judged by ocfs2-tools: for each configuration we format one sparse image with
//! `ocfs2::mkfs::mkfs` and one with `mkfs.ocfs2` using the same flags, then require that
//! `fsck.ocfs2 -fn` calls ours clean and that `debugfs.ocfs2` describes both alike (label,
//! slots, block and cluster size, feature words, system files, and where the main system
//! files live).

use ocfs2::mkfs::{self, FeatureLevel, FeatureRequest, MkfsError, MkfsOptions, MountType};
use ocfs2::{FileDevice, MemDevice};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const MB: u64 = 1 << 20;

/// Runs a tool from ocfs2-tools, failing loudly if it is not installed.
fn run(tool: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): these tests need ocfs2-tools (mkfs.ocfs2, fsck.ocfs2, debugfs.ocfs2) and /sbin/modprobe"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// A scratch directory for this test process.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mkfs-referee-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A sparse file of `size` bytes that deletes itself.
struct Image(PathBuf);

impl Image {
    fn new(tag: &str, size: u64) -> Image {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = scratch().join(format!("{tag}-{n}.img"));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(size).unwrap();
        Image(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn device(&self) -> FileDevice {
        FileDevice::open_rw(&self.0).unwrap()
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // MKFS_REFEREE_KEEP=1 keeps the images for a look with debugfs.ocfs2.
        if std::env::var_os("MKFS_REFEREE_KEEP").is_some() {
            return;
        }
        let _ = std::fs::remove_file(&self.0);
    }
}

fn debugfs(img: &Image, cmd: &str) -> String {
    let (code, out) = run("debugfs.ocfs2", &["-R", cmd, img.path()]);
    assert_eq!(code, 0, "debugfs.ocfs2 -R '{cmd}' failed:\n{out}");
    out
}

/// The `stats` lines both images must share.
fn stats_digest(img: &Image) -> BTreeMap<String, String> {
    let out = debugfs(img, "stats");
    let mut m = BTreeMap::new();
    for line in out.lines().map(str::trim) {
        for key in [
            "Feature Compat:",
            "Feature Incompat:",
            "Feature RO compat:",
            "Label:",
            "Max Node Slots:",
            "Cluster stack:",
            "Cluster name:",
            "Revision:",
            "Extended Attributes Inline Size:",
        ] {
            if let Some(rest) = line.strip_prefix(key) {
                m.insert(key.to_string(), rest.trim().to_string());
            }
        }
        if line.starts_with("Block Size Bits:") {
            m.insert("Bits".into(), line.to_string());
        }
    }
    m
}

/// The names `ls -l //` lists.
fn system_names(img: &Image) -> Vec<String> {
    debugfs(img, "ls -l //").lines().filter_map(|l| l.split_whitespace().last().map(str::to_string)).collect()
}

/// The fields of `stat //NAME` that say where a system file lives and how big it is.
fn placement(img: &Image, name: &str) -> String {
    let out = debugfs(img, &format!("stat {name}"));
    let mut keep = Vec::new();
    let mut in_table = false;
    for line in out.lines().map(str::trim) {
        if line.starts_with("Type:") || line.starts_with("Dynamic Features:") {
            keep.push(line.to_string());
        } else if line.starts_with("Inode:") {
            keep.push(line.split("Mode").next().unwrap_or("").trim().to_string());
        } else if line.starts_with("User:")
            || line.starts_with("Links:")
            || line.starts_with("Bitmap Total")
            || line.starts_with("Tree Depth")
        {
            keep.push(line.to_string());
        } else if line.starts_with("## ") {
            in_table = true;
        } else if in_table && !line.is_empty() && !line.starts_with("Group Chain") {
            keep.push(line.to_string());
        } else if line.is_empty() {
            in_table = false;
        }
    }
    keep.join("\n")
}

fn assert_clean(img: &Image) {
    let (code, out) = run("fsck.ocfs2", &["-fn", img.path()]);
    assert!(
        code == 0 && out.contains("All passes succeeded."),
        "fsck.ocfs2 -fn does not call {} clean (exit {code}):\n{out}",
        img.path()
    );
}

fn mkfs_ocfs2(img: &Image, flags: &[&str]) {
    let mut args = vec!["-q", "-F", "-x"];
    args.extend_from_slice(flags);
    args.push(img.path());
    let (code, out) = run("mkfs.ocfs2", &args);
    assert_eq!(code, 0, "mkfs.ocfs2 {args:?} failed:\n{out}");
}

/// One configuration: the same request as library options and as mkfs.ocfs2 flags.
struct Case {
    size: u64,
    opts: MkfsOptions,
    flags: Vec<String>,
}

impl Case {
    fn new(size: u64, block: u32, cluster: u32, slots: u16) -> Case {
        let opts = MkfsOptions {
            block_size: Some(block),
            cluster_size: Some(cluster),
            slots: Some(slots),
            label: format!("b{block}c{cluster}n{slots}"),
            ..Default::default()
        };
        let flags = vec![
            "-b".into(),
            block.to_string(),
            "-C".into(),
            cluster.to_string(),
            "-N".into(),
            slots.to_string(),
            "-L".into(),
            opts.label.clone(),
        ];
        Case { size, opts, flags }
    }

    fn local(mut self) -> Case {
        self.opts.mount = Some(MountType::Local);
        self.flags.extend(["-M".into(), "local".into()]);
        self
    }

    fn features(mut self, list: &str) -> Case {
        self.opts.features = FeatureRequest::parse(list).unwrap();
        self.flags.push(format!("--fs-features={list}"));
        self
    }

    fn level(mut self, level: &str) -> Case {
        self.opts.feature_level = FeatureLevel::parse(level).unwrap();
        self.flags.push(format!("--fs-feature-level={level}"));
        self
    }

    /// Formats both images and compares them.
    fn check(&self) {
        let ours = Image::new("ours", self.size);
        let theirs = Image::new("theirs", self.size);
        let report = mkfs::mkfs(&ours.device(), &self.opts)
            .unwrap_or_else(|e| panic!("our mkfs failed for {:?}: {e}", self.flags));
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        mkfs_ocfs2(&theirs, &flags);
        let ctx = format!("flags {:?}", self.flags);
        assert_clean(&ours);
        assert_no_findings(&ours);
        assert_indexes_complete(&ours);
        assert_eq!(stats_digest(&ours), stats_digest(&theirs), "debugfs stats differ, {ctx}");
        assert_eq!(system_names(&ours), system_names(&theirs), "system files differ, {ctx}");
        // mkfs.ocfs2 leaves a block system directory without an index (fsck.ocfs2 then calls
        // it DX_TREE_MISSING); ours has one, built after everything else, so the only
        // differences are its flag and the root block and leaf clusters it takes.
        let extra = extra_index(&ours, &theirs);
        let (block, cluster) = (self.opts.block_size.unwrap(), self.opts.cluster_size.unwrap());
        for name in [
            "//global_bitmap",
            "//global_inode_alloc",
            "//heartbeat",
            "//slot_map",
            "//journal:0000",
            "//inode_alloc:0000",
            "//extent_alloc:0000",
            "//orphan_dir:0000",
            "//local_alloc:0000",
            "//truncate_log:0000",
            "//bad_blocks",
            "//",
            "/",
        ] {
            let (mut a, mut b) = (placement(&ours, name), placement(&theirs, name));
            if let Some((roots, clusters)) = extra {
                let added = match name {
                    "//global_bitmap" => Some(clusters),
                    "//extent_alloc:0000" => Some(roots),
                    _ => None,
                };
                if let Some(mut added) = added {
                    // The root may need a new extent allocator group: one more bit used for
                    // its descriptor, and its clusters taken from the global bitmap.
                    let (ea_a, ea_b) =
                        (placement(&ours, "//extent_alloc:0000"), placement(&theirs, "//extent_alloc:0000"));
                    let grown = bitmap_word(&ea_a, "Total:") - bitmap_word(&ea_b, "Total:");
                    if name == "//global_bitmap" {
                        added += grown * block / cluster;
                    } else if grown > 0 {
                        added += 1;
                    }
                    let (used_a, used_b) = (bitmap_word(&a, "Used:"), bitmap_word(&b, "Used:"));
                    assert_eq!(used_a, used_b + added, "{name}: the index takes {added} more, {ctx}");
                    (a, b) = (without_counts(&a), without_counts(&b));
                } else if name == "//" {
                    (a, b) = (without_dyn_features(&a), without_dyn_features(&b));
                }
            }
            assert_eq!(a, b, "{name} differs, {ctx}");
        }
        // mkfs.ocfs2 leaves lost+found one trailer short of a block in size when directories
        // have trailers; ours says a whole block. Everything else must agree.
        let without_size = |img: &Image| -> Vec<String> {
            placement(img, "/lost+found").lines().filter(|l| !l.starts_with("User:")).map(String::from).collect()
        };
        assert_eq!(without_size(&ours), without_size(&theirs), "lost+found differs, {ctx}");
        assert_eq!(report.geometry.slots as usize, self.opts.slots.unwrap() as usize);
    }
}

/// `fsck.ocfs2 -fn` reports nothing at all, not even problems it would only mention.
fn assert_no_findings(img: &Image) {
    let (code, out) = run("fsck.ocfs2", &["-fn", img.path()]);
    let findings: Vec<&str> = out.lines().filter(|l| l.starts_with('[')).collect();
    assert!(code == 0 && findings.is_empty(), "fsck.ocfs2 -fn reports on {}:\n{out}", img.path());
}

/// Whether the directory `stat` output says it is indexed.
fn is_indexed(stat: &str) -> bool {
    stat.lines().any(|l| l.trim().starts_with("Dynamic Features:") && l.contains("IndexedDir"))
}

/// `(dx roots, leaf clusters)` our system directory's index takes when mkfs.ocfs2 leaves
/// the system directory unindexed, else None.
fn extra_index(ours: &Image, theirs: &Image) -> Option<(u32, u32)> {
    let (a, b) = (debugfs(ours, "stat //"), debugfs(theirs, "stat //"));
    if !is_indexed(&a) || is_indexed(&b) {
        return None;
    }
    Some((1, dx_root_clusters(&debugfs(ours, "dx_dump //"))))
}

/// The `Clusters:` of the index root that `dx_dump` prints.
fn dx_root_clusters(dump: &str) -> u32 {
    let tail = dump.split("Dir Index Root:").nth(1).expect("dx_dump shows no index root");
    let line = tail.lines().map(str::trim).find(|l| l.starts_with("Clusters:")).expect("no index clusters");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A count (`Total:`, `Used:`) of a placement's `Bitmap Total` line.
fn bitmap_word(placement: &str, key: &str) -> u32 {
    let line = placement.lines().find(|l| l.starts_with("Bitmap Total")).expect("no bitmap line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == key).expect("no such count");
    words[at + 1].parse().unwrap()
}

/// A placement without its allocation counts and sizes (which grow with a new group).
fn without_counts(placement: &str) -> String {
    placement
        .lines()
        .filter(|l| {
            !["Bitmap Total", "User:", "Links:"].iter().any(|k| l.starts_with(k))
                && !l.starts_with(|c: char| c.is_ascii_digit())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn without_dyn_features(placement: &str) -> String {
    placement.lines().filter(|l| !l.starts_with("Dynamic Features")).collect::<Vec<_>>().join("\n")
}

/// The `(major, minor, block)` entries `dx_dump` lists.
fn dx_entries(dump: &str) -> Vec<(u32, u32, u64)> {
    let hex =
        |w: &str| u32::from_str_radix(w.trim_start_matches('(').trim_end_matches(')').trim_start_matches("0x"), 16);
    let mut out = Vec::new();
    for line in dump.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() == 4 && w[1].starts_with("(0x") {
            out.push((hex(w[1]).unwrap(), hex(w[2]).unwrap(), w[3].parse().unwrap()));
        }
    }
    out
}

/// Every block directory of our image that has the indexed-dirs feature carries an index
/// that debugfs.ocfs2 reads as holding every name (with the hash `format::dx` gives it),
/// and that our own indexed lookup finds each system file through.
fn assert_indexes_complete(img: &Image) {
    let stats = debugfs(img, "stats");
    if !stats.contains("indexed-dirs") {
        return;
    }
    let stat = debugfs(img, "stat //");
    if stat.contains("InlineData") {
        return;
    }
    assert!(is_indexed(&stat), "the system directory of {} has no index:\n{stat}", img.path());
    let word = |key: &str| -> Vec<u32> {
        let line = stats.lines().map(str::trim).find(|l| l.starts_with(key)).unwrap();
        line.split('(')
            .nth(1)
            .unwrap()
            .trim_end_matches(')')
            .split_whitespace()
            .map(|h| u32::from_str_radix(h.trim_start_matches("0x"), 16).unwrap())
            .collect()
    };
    let hash = word("Hash:")[0];
    let dx = word("DX Seeds:");
    let seeds = ocfs2::format::dx::dx_seeds([dx[0], dx[1], dx[2]], hash);
    let names: Vec<String> = system_names(img);
    let mut want: Vec<(u32, u32)> = names.iter().map(|n| ocfs2::format::dx::dx_hash(n.as_bytes(), seeds)).collect();
    want.sort_unstable();
    let dump = debugfs(img, "dx_dump //");
    let mut got: Vec<(u32, u32)> = dx_entries(&dump).iter().map(|&(a, b, _)| (a, b)).collect();
    got.sort_unstable();
    assert_eq!(got, want, "dx_dump // of {} does not index every name:\n{dump}", img.path());
    assert!(
        dump.contains(&format!("Total Entry Count: {}", names.len())),
        "dx_dump // of {} counts entries wrongly:\n{dump}",
        img.path()
    );
    let vol = ocfs2::Volume::open(FileDevice::open(&img.0).unwrap(), ocfs2::MountOptions::default()).unwrap();
    let sys = vol.system_dir();
    for line in debugfs(img, "ls -l //").lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let (Some(ino), Some(&name)) = (w.first(), w.last()) else { continue };
        if name == "." || name == ".." {
            continue;
        }
        let ino: u64 = ino.parse().unwrap();
        assert_eq!(vol.lookup(sys, name.as_bytes()).unwrap(), ino, "lookup of //{name} in {}", img.path());
    }
}

/// Our image and one whose system directory fsck.ocfs2 indexed (libocfs2's
/// `ocfs2_dx_dir_build`), formatted alike with the same UUID, generation and seeds, have
/// the same index.
fn index_matches_libocfs2(block: u32, cluster: u32, slots: u16, features: Option<&str>) {
    let size = matrix_size(block, cluster, slots);
    let theirs = Image::new("dx-theirs", size);
    let (b, c, n) = (block.to_string(), cluster.to_string(), slots.to_string());
    let mut flags = vec!["-b", &b, "-C", &c, "-N", &n, "-M", "local"];
    let feat = features.map(|f| format!("--fs-features={f}"));
    if let Some(f) = &feat {
        flags.push(f);
    }
    mkfs_ocfs2(&theirs, &flags);
    let (code, out) = run("fsck.ocfs2", &["-fy", theirs.path()]);
    assert!(code <= 1, "fsck.ocfs2 -fy failed:\n{out}");
    let stats = debugfs(&theirs, "stats");
    let field = |key: &str| stats.lines().map(str::trim).find(|l| l.starts_with(key)).unwrap().to_string();
    let uuid = field("UUID:").split_whitespace().nth(1).unwrap().to_string();
    let hexes = |line: String| -> Vec<u32> {
        line.split('(')
            .nth(1)
            .unwrap()
            .trim_end_matches(')')
            .split_whitespace()
            .map(|h| u32::from_str_radix(h.trim_start_matches("0x"), 16).unwrap())
            .collect()
    };
    let dx = hexes(field("DX Seeds:"));
    let generation = hexes(field("FS Generation:"))[0];
    let mut u = [0u8; 16];
    for (i, byte) in u.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&uuid[2 * i..2 * i + 2], 16).unwrap();
    }
    let ours = Image::new("dx-ours", size);
    let opts = MkfsOptions {
        block_size: Some(block),
        cluster_size: Some(cluster),
        slots: Some(slots),
        mount: Some(MountType::Local),
        features: features.map(|f| FeatureRequest::parse(f).unwrap()).unwrap_or_default(),
        uuid: Some(u),
        generation: Some(generation),
        dx_seed: Some([dx[0], dx[1], dx[2]]),
        ..Default::default()
    };
    mkfs::mkfs(&ours.device(), &opts).unwrap();
    assert_no_findings(&ours);
    assert_no_findings(&theirs);
    let ctx = format!("-b {block} -C {cluster} -N {slots} {features:?}");
    // The inode's check value covers its times, which differ; the index's must agree.
    for cmd in ["dx_dump //", "stat //"] {
        let strip = |t: String| -> String {
            t.lines()
                .filter(|l| {
                    let varies = l.contains("time:") || (cmd == "stat //" && l.contains("CRC32:"));
                    !varies
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(debugfs(&ours, cmd)), strip(debugfs(&theirs, cmd)), "{cmd} differs, {ctx}");
    }
}

#[test]
fn system_directory_index_matches_what_fsck_ocfs2_builds() {
    index_matches_libocfs2(512, 4096, 32, None);
    index_matches_libocfs2(1024, 4096, 4, None);
    index_matches_libocfs2(4096, 4096, 32, None);
    index_matches_libocfs2(1024, 4096, 8, Some("metaecc"));
    index_matches_libocfs2(4096, 4096, 4, Some("noinline-data"));
}

#[test]
fn indexed_directories_leave_fsck_ocfs2_nothing_to_report() {
    for block in [512u32, 1024, 2048, 4096] {
        for slots in [1u16, 4, 32] {
            for features in [None, Some("metaecc")] {
                let img = Image::new("dx", matrix_size(block, 4096, slots));
                let opts = MkfsOptions {
                    block_size: Some(block),
                    cluster_size: Some(4096),
                    slots: Some(slots),
                    features: features.map(|f| FeatureRequest::parse(f).unwrap()).unwrap_or_default(),
                    ..Default::default()
                };
                mkfs::mkfs(&img.device(), &opts).unwrap();
                assert_no_findings(&img);
                assert_indexes_complete(&img);
            }
        }
    }
}

/// Volume sizes that fit the default journals of every slot count in the matrix.
fn matrix_size(block: u32, cluster: u32, slots: u16) -> u64 {
    match (slots, block, cluster) {
        (32, 2048, _) => 400 * MB,
        (32, 512, _) => 512 * MB,
        (32, _, _) => 768 * MB,
        (_, _, c) if c == 1 << 20 => 384 * MB,
        _ => 256 * MB,
    }
}

/// Cluster sizes 4K, 64K and 1M with 1, 4 and 32 slots, for one block size.
fn check_matrix(block: u32) {
    for cluster in [4096u32, 65536, 1 << 20] {
        for slots in [1u16, 4, 32] {
            Case::new(matrix_size(block, cluster, slots), block, cluster, slots).check();
        }
    }
}

// One test per block size, so that the matrix spreads over the test threads.

#[test]
fn matrix_with_512_byte_blocks_matches_mkfs_ocfs2() {
    check_matrix(512);
}

#[test]
fn matrix_with_1k_blocks_matches_mkfs_ocfs2() {
    check_matrix(1024);
}

#[test]
fn matrix_with_2k_blocks_matches_mkfs_ocfs2() {
    check_matrix(2048);
}

#[test]
fn matrix_with_4k_blocks_matches_mkfs_ocfs2() {
    check_matrix(4096);
}

#[test]
fn local_volumes_match_mkfs_ocfs2() {
    for (block, cluster) in [(4096, 4096), (512, 4096), (2048, 1 << 20)] {
        Case::new(256 * MB, block, cluster, 4).local().check();
    }
}

#[test]
fn feature_variants_match_mkfs_ocfs2() {
    Case::new(256 * MB, 4096, 4096, 4).local().features("metaecc").check();
    Case::new(256 * MB, 1024, 4096, 2).features("metaecc,noinline-data").check();
    Case::new(256 * MB, 4096, 4096, 4).features("noinline-data").check();
    Case::new(256 * MB, 2048, 65536, 4).level("max-compat").check();
    Case::new(256 * MB, 512, 4096, 2).level("max-compat").features("metaecc").check();
    Case::new(256 * MB, 4096, 4096, 4).features("noindexed-dirs,noinline-data,noxattr,nosparse").check();
}

#[test]
fn refuses_an_existing_volume_without_force() {
    let img = Image::new("existing", 64 * MB);
    mkfs_ocfs2(&img, &["-M", "local", "-L", "old"]);
    let opts = MkfsOptions { mount: Some(MountType::Local), ..Default::default() };
    let err = mkfs::mkfs(&img.device(), &opts).unwrap_err();
    assert!(matches!(err, MkfsError::ExistingVolume { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("already holds an OCFS2 volume") && msg.contains("\"old\"") && msg.contains("-F"), "{msg}");
    assert_eq!(err.errno(), libc_eexist());
    // Nothing was written: the old volume is still intact.
    assert_eq!(stats_digest(&img)["Label:"], "old");
    assert_clean(&img);

    let forced = MkfsOptions { force: true, label: "new".into(), ..opts };
    let report = mkfs::mkfs(&img.device(), &forced).unwrap();
    assert!(report.overwrote_existing);
    assert_eq!(stats_digest(&img)["Label:"], "new");
    assert_clean(&img);
}

#[test]
fn forced_format_over_another_geometry_is_clean() {
    // Old inodes, directories and journals of a different layout must not show through.
    for (old, new) in [
        (vec!["-b", "4096", "-N", "8", "--fs-features=noinline-data"], (4096, 4096, 2)),
        (vec!["-b", "1024", "-C", "64K", "-N", "4"], (4096, 4096, 4)),
        (vec!["-b", "4096", "-N", "2", "-M", "local"], (512, 4096, 8)),
    ] {
        let img = Image::new("reformat", 256 * MB);
        mkfs_ocfs2(&img, &old);
        let (block, cluster, slots) = new;
        let opts = MkfsOptions {
            block_size: Some(block),
            cluster_size: Some(cluster),
            slots: Some(slots),
            force: true,
            ..Default::default()
        };
        mkfs::mkfs(&img.device(), &opts).unwrap();
        assert_clean(&img);
        assert_eq!(stats_digest(&img)["Max Node Slots:"], slots.to_string(), "over {old:?}");
    }
}

fn libc_eexist() -> i32 {
    17
}

#[test]
fn refuses_a_device_too_small() {
    for size in [512 * 1024, 2 * MB] {
        let dev = MemDevice::new(size);
        let err = mkfs::mkfs(&dev, &MkfsOptions::default()).unwrap_err();
        assert!(matches!(err, MkfsError::TooSmall(_)), "{size}: {err}");
        assert!(err.to_string().starts_with("device too small"), "{err}");
        assert!(dev.to_bytes().iter().all(|&b| b == 0), "a refused format wrote to the device");
    }
    // 32 slots of 16 MiB journals do not fit in 256 MiB with 4K blocks.
    let dev = MemDevice::new(256 * MB);
    let opts = MkfsOptions { block_size: Some(4096), slots: Some(32), ..Default::default() };
    let err = mkfs::mkfs(&dev, &opts).unwrap_err();
    assert!(matches!(err, MkfsError::TooSmall(_)), "{err}");
}

#[test]
fn rejects_bad_options() {
    let dev = MemDevice::new(64 * MB);
    let bad = [
        MkfsOptions { block_size: Some(256), ..Default::default() },
        MkfsOptions { cluster_size: Some(2048), ..Default::default() },
        MkfsOptions { slots: Some(0), ..Default::default() },
        MkfsOptions { slots: Some(256), ..Default::default() },
        MkfsOptions { label: "x".repeat(64), ..Default::default() },
        MkfsOptions { journal_size: Some(MB), ..Default::default() },
        MkfsOptions {
            mount: Some(MountType::Local),
            cluster_stack: Some("o2cb".into()),
            cluster_name: Some("c".into()),
            ..Default::default()
        },
        MkfsOptions { cluster_stack: Some("o2cb".into()), ..Default::default() },
        MkfsOptions { cluster_stack: Some("heartbeat2".into()), cluster_name: Some("c".into()), ..Default::default() },
        MkfsOptions { cluster_stack: Some("o2cb".into()), cluster_name: Some("bad name".into()), ..Default::default() },
    ];
    for opts in bad {
        let err = mkfs::mkfs(&dev, &opts).unwrap_err();
        assert!(matches!(err, MkfsError::InvalidOption(_)), "{opts:?}: {err}");
        assert_eq!(err.errno(), 22);
    }
    let quota = MkfsOptions { features: FeatureRequest::parse("usrquota").unwrap(), ..Default::default() };
    let err = mkfs::mkfs(&dev, &quota).unwrap_err();
    assert!(matches!(err, MkfsError::Unsupported(_)) && err.to_string().contains("nousrquota"), "{err}");
    assert!(FeatureRequest::parse("bogus").is_err());
    assert!(dev.to_bytes().iter().all(|&b| b == 0), "a refused format wrote to the device");
}

#[test]
fn cluster_stack_is_recorded_like_mkfs_ocfs2() {
    let mut case = Case::new(256 * MB, 4096, 4096, 4);
    case.opts.cluster_stack = Some("o2cb".into());
    case.opts.cluster_name = Some("mycluster".into());
    case.flags.extend(["--cluster-stack=o2cb".into(), "--cluster-name=mycluster".into()]);
    case.check();

    let mut case = Case::new(256 * MB, 2048, 4096, 2);
    case.opts.cluster_stack = Some("pcmk".into());
    case.opts.cluster_name = Some("pace.maker".into());
    case.flags.extend(["--cluster-stack=pcmk".into(), "--cluster-name=pace.maker".into()]);
    case.check();
}

#[test]
fn chosen_uuid_is_written() {
    let uuid = "0123456789ABCDEF0123456789ABCDEF";
    let img = Image::new("uuid", 64 * MB);
    let opts = MkfsOptions {
        uuid: Some(mkfs::parse_uuid("01234567-89ab-cdef-0123-456789abcdef").unwrap()),
        mount: Some(MountType::Local),
        ..Default::default()
    };
    let report = mkfs::mkfs(&img.device(), &opts).unwrap();
    assert_eq!(report.uuid_string(), uuid);
    assert!(debugfs(&img, "stats").contains(&format!("UUID: {uuid}")));
    assert_clean(&img);
}

#[test]
fn backup_superblocks_match_mkfs_ocfs2_on_a_big_volume() {
    let case = Case::new(5 << 30, 4096, 4096, 2).local();
    case.check();
    let img = Image::new("backup", 5 << 30);
    mkfs::mkfs(&img.device(), &case.opts).unwrap();
    // fsck.ocfs2 -r 1 reads the first backup superblock instead of the primary.
    let (code, out) = run("fsck.ocfs2", &["-fn", "-r", "1", img.path()]);
    assert!(code == 0 && out.contains("All passes succeeded."), "{out}");
}

#[test]
fn summary_matches_mkfs_ocfs2_dry_run() {
    for (size, flags) in [
        (256 * MB, vec!["-M", "local"]),
        (3 << 30, vec!["-T", "mail"]),
        (3 << 30, vec!["-T", "datafiles", "-N", "2"]),
        (8 * MB, vec!["-M", "local"]),
        (41 << 30, vec!["-b", "2048", "-C", "64K", "-J", "size=32M"]),
    ] {
        let img = Image::new("dry", size);
        let mut args = vec!["-n", "-F", "-x"];
        args.extend(&flags);
        args.push(img.path());
        let (code, out) = run("mkfs.ocfs2", &args);
        assert_eq!(code, 0, "{out}");
        let expected: Vec<&str> = out
            .lines()
            .filter(|l| !l.contains("mkfs.ocfs2") && !l.contains("Dry run") && !l.trim().is_empty())
            .collect();
        let dev = img.device();
        let opts = options_from_flags(&flags);
        let report = mkfs::dry_run(&dev, &opts).unwrap();
        let summary = report.summary();
        let ours: Vec<&str> = summary.lines().collect();
        assert_eq!(ours, expected, "flags {flags:?}");
    }
}

fn options_from_flags(flags: &[&str]) -> MkfsOptions {
    let mut o = MkfsOptions::default();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        let mut val = || it.next().copied().unwrap();
        match *f {
            "-M" => o.mount = Some(MountType::parse(val()).unwrap()),
            "-T" => o.fs_type = mkfs::FsType::parse(val()).unwrap(),
            "-N" => o.slots = Some(val().parse().unwrap()),
            "-b" => o.block_size = Some(mkfs::parse_size(val()).unwrap() as u32),
            "-C" => o.cluster_size = Some(mkfs::parse_size(val()).unwrap() as u32),
            "-J" => o.journal_size = Some(mkfs::parse_size(val().strip_prefix("size=").unwrap()).unwrap()),
            other => panic!("flag {other}"),
        }
    }
    o
}

/// Runs the `ocfs2-mkfs` example program.
fn ocfs2_mkfs(args: &[&str]) -> (i32, String) {
    run(env!("CARGO_BIN_EXE_ocfs2-mkfs"), args)
}

#[test]
fn command_line_example_formats_like_mkfs_ocfs2() {
    for flags in [
        vec!["-b", "2K", "-C", "64K", "-N", "4", "-L", "cli", "-M", "local", "--fs-features=metaecc"],
        vec!["-b", "1024", "-C", "4096", "-N", "2", "-J", "size=8M", "--fs-feature-level=max-compat"],
        vec!["-T", "mail", "-N", "3", "--cluster-stack=o2cb", "--cluster-name=clu", "-L", "mailvol"],
    ] {
        let ours = Image::new("cli", 256 * MB);
        let theirs = Image::new("cli-ref", 256 * MB);
        let mut args = flags.clone();
        args.push(ours.path());
        let (code, out) = ocfs2_mkfs(&args);
        assert_eq!(code, 0, "ocfs2-mkfs {args:?}:\n{out}");
        assert!(out.contains("ocfs2-mkfs successful"), "{out}");
        mkfs_ocfs2(&theirs, &flags);
        assert_clean(&ours);
        assert_eq!(stats_digest(&ours), stats_digest(&theirs), "flags {flags:?}");
        assert_eq!(system_names(&ours), system_names(&theirs), "flags {flags:?}");
        assert_eq!(placement(&ours, "//journal:0000"), placement(&theirs, "//journal:0000"), "flags {flags:?}");

        // Without -q both print the same summary of what they are about to write.
        let mut ref_args = vec!["-n", "-F", "-x"];
        ref_args.extend(&flags);
        ref_args.push(theirs.path());
        let (_, expected) = run("mkfs.ocfs2", &ref_args);
        let mut dry = vec!["-n"];
        dry.extend(&flags);
        dry.push(ours.path());
        let (code, got) = ocfs2_mkfs(&dry);
        assert_eq!(code, 0, "{got}");
        let summary = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| {
                    [
                        "Label:",
                        "Features:",
                        "Block size:",
                        "Cluster size:",
                        "Volume size:",
                        "Cluster groups:",
                        "Journal size:",
                        "Node slots:",
                        "Extent allocator",
                    ]
                    .iter()
                    .any(|k| l.starts_with(k))
                })
                .map(String::from)
                .collect()
        };
        assert_eq!(summary(&got), summary(&expected), "flags {flags:?}");
        assert_eq!(summary(&got).len(), 9);
    }
}

#[test]
fn command_line_example_refuses_existing_volume_and_bad_flags() {
    let img = Image::new("cli-existing", 64 * MB);
    mkfs_ocfs2(&img, &["-M", "local", "-L", "keep"]);
    let (code, out) = ocfs2_mkfs(&["-q", "-M", "local", img.path()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("already holds an OCFS2 volume") && out.contains("\"keep\""), "{out}");
    assert_eq!(stats_digest(&img)["Label:"], "keep");
    let (code, out) = ocfs2_mkfs(&["-q", "-F", "-M", "local", "-L", "replaced", img.path()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(stats_digest(&img)["Label:"], "replaced");
    assert_clean(&img);

    for bad in [
        vec!["-b", "8192"],
        vec!["-C", "2K"],
        vec!["-N", "300"],
        vec!["-J", "size=1M"],
        vec!["--fs-features=nosuchthing"],
        vec!["--fs-feature-level=newest"],
        vec!["-M", "shared"],
        vec!["-T", "web"],
        vec!["--no-such-option"],
        vec!["-U", "not-a-uuid"],
    ] {
        let mut args = bad.clone();
        args.push(img.path());
        let (code, out) = ocfs2_mkfs(&args);
        assert_eq!(code, 1, "{bad:?} was accepted:\n{out}");
        assert!(out.contains("ocfs2-mkfs:"), "{out}");
    }
    let (code, out) = ocfs2_mkfs(&[]);
    assert_eq!(code, 1);
    assert!(out.contains("usage:"), "{out}");
    // Refused flags did not touch the volume.
    assert_eq!(stats_digest(&img)["Label:"], "replaced");

    let small = Image::new("cli-small", MB);
    let (code, out) = ocfs2_mkfs(&["-q", small.path()]);
    assert_eq!(code, 1);
    assert!(out.contains("device too small"), "{out}");
}
