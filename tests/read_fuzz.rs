//! Damaged images never make the read path panic or hang (issue 2, "Must show" 4).
//!
//! Each case copies a reference volume, overwrites a few bytes of one metadata block (found by
//! its signature), opens the result and walks the whole tree, reading every file. Every
//! operation must return either data or an error; a panic fails the test with the seed that
//! replays it (`OCFS2_TEST_SEED`), and a watchdog aborts a case that takes too long.
//! `OCFS2_FUZZ_CASES` sets the number of cases per image (default 1500).

mod common;

use common::*;
use ocfs2::{BlockDevice, DeviceError, FileType, MountOptions, Volume};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shared read-only base image with a few patched blocks on top.
struct Overlay {
    base: Arc<Vec<u8>>,
    block_size: usize,
    patches: HashMap<u64, Vec<u8>>,
}

impl BlockDevice for Overlay {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.base.len() as u64);
        let Some(_) = end else {
            return Err(DeviceError::OutOfRange { offset, len: buf.len(), size: self.base.len() as u64 });
        };
        buf.copy_from_slice(&self.base[offset as usize..offset as usize + buf.len()]);
        let bs = self.block_size as u64;
        for (&blkno, patch) in &self.patches {
            let (ps, pe) = (blkno * bs, blkno * bs + bs);
            let (s, e) = (offset.max(ps), (offset + buf.len() as u64).min(pe));
            if s < e {
                buf[(s - offset) as usize..(e - offset) as usize]
                    .copy_from_slice(&patch[(s - ps) as usize..(e - ps) as usize]);
            }
        }
        Ok(())
    }
    fn write_at(&self, _: u64, _: &[u8]) -> Result<(), DeviceError> {
        Err(DeviceError::ReadOnly)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn len(&self) -> u64 {
        self.base.len() as u64
    }
    fn sector_size(&self) -> u32 {
        512
    }
}

/// Blocks that hold metadata, recognised by their signatures, grouped by kind (superblock,
/// inode, extent block, group descriptor, dx root, dx leaf, directory block).
fn metadata_blocks(image: &[u8], bs: usize) -> Vec<Vec<u64>> {
    const SIGS: [&[u8]; 6] = [b"OCFSV2\0", b"INODE01\0", b"EXBLK01\0", b"GROUP01\0", b"DXDIR01\0", b"DXLEAF1\0"];
    let mut kinds = vec![Vec::new(); SIGS.len() + 1];
    for (i, block) in image.chunks_exact(bs).enumerate() {
        if let Some(k) = SIGS.iter().position(|s| block.starts_with(s)) {
            kinds[k].push(i as u64);
        } else if block[bs - 64 + 0x10..bs - 64 + 0x18] == *b"DIRTRL1\0" {
            kinds[SIGS.len()].push(i as u64);
        }
    }
    kinds.retain(|k| !k.is_empty());
    kinds
}

/// Walks everything reachable from the root; returns (paths seen, errors seen).
fn walk(vol: &Volume) -> (usize, usize) {
    let mut seen = HashSet::new();
    let mut stack = vec![vol.root()];
    let (mut paths, mut errors) = (0, 0);
    let mut buf = vec![0u8; 1 << 16];
    while let Some(ino) = stack.pop() {
        if !seen.insert(ino) || paths > 50_000 {
            continue;
        }
        paths += 1;
        let meta = match vol.metadata(ino) {
            Ok(m) => m,
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        match meta.file_type {
            FileType::Directory => match vol.read_dir(ino) {
                Ok(entries) => {
                    stack.extend(entries.iter().filter(|e| e.name != b"." && e.name != b"..").map(|e| e.ino))
                }
                Err(_) => errors += 1,
            },
            FileType::Symlink => errors += vol.read_link(ino).is_err() as usize,
            FileType::Regular => {
                // Read at most a few megabytes: a damaged size may claim exabytes.
                let limit = meta.size.min(4 << 20);
                let mut off = 0;
                while off < limit {
                    match vol.read(ino, off, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => off += n as u64,
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for name in ["/lost+found", "//global_bitmap", "/no/such/file"] {
        let _ = vol.resolve(name);
    }
    let _ = vol.statfs();
    (paths, errors)
}

fn fuzz_image(label: &str, image: Vec<u8>, cases: u64) {
    let clean = Volume::open(ocfs2::MemDevice::from_bytes(image.clone()), MountOptions::default())
        .unwrap_or_else(|e| panic!("{label}: the clean image must open: {e}"));
    let bs = clean.geometry().block_size as usize;
    let (clean_paths, clean_errors) = walk(&clean);
    assert_eq!(clean_errors, 0, "{label}: the clean image reads without errors");
    let kinds = metadata_blocks(&image, bs);
    let total: usize = kinds.iter().map(Vec::len).sum();
    assert!(total > 20, "{label}: found only {total} metadata blocks");
    let base = Arc::new(image);
    let seed = seed();
    eprintln!(
        "{label}: {cases} cases over {total} metadata blocks of {} kinds, {clean_paths} paths; OCFS2_TEST_SEED={seed}",
        kinds.len()
    );
    let mut rng = Rng::new(seed);
    // The watchdog: if one case runs for more than a minute, report it and abort.
    let current = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    // Set when this image's cases are over, so the watchdog does not outlive them.
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let epoch = Instant::now();
    {
        let (current, started, finished) = (current.clone(), started.clone(), finished.clone());
        let label = label.to_string();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            if finished.load(Ordering::SeqCst) {
                return;
            }
            let since = epoch.elapsed().as_secs().saturating_sub(started.load(Ordering::SeqCst));
            if since > 60 {
                eprintln!(
                    "{label}: case {} hung for {since} s (OCFS2_TEST_SEED={seed})",
                    current.load(Ordering::SeqCst)
                );
                std::process::abort();
            }
        });
    }
    let (mut opened, mut errs) = (0u64, 0u64);
    for case in 0..cases {
        current.store(case, Ordering::SeqCst);
        started.store(epoch.elapsed().as_secs(), Ordering::SeqCst);
        // Every kind of block is damaged as often as every other, however many inodes there are.
        let kind = &kinds[rng.below(kinds.len() as u64) as usize];
        let blkno = kind[rng.below(kind.len() as u64) as usize];
        let mut patch = base[blkno as usize * bs..(blkno as usize + 1) * bs].to_vec();
        let flips = 1 + rng.below(8);
        for _ in 0..flips {
            // Headers hold most of the fields the reader trusts: aim there half the time.
            let pos = if rng.below(2) == 0 { rng.below(0x100.min(bs as u64)) } else { rng.below(bs as u64) } as usize;
            patch[pos] = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                2 => patch[pos] ^ (1 << rng.below(8)),
                _ => rng.below(256) as u8,
            };
        }
        let dev = Overlay { base: base.clone(), block_size: bs, patches: HashMap::from([(blkno, patch)]) };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match Volume::open(dev, MountOptions::default()) {
                Ok(vol) => {
                    let (_, e) = walk(&vol);
                    (true, e)
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    (false, 1)
                }
            }
        }));
        match result {
            Ok((was_opened, e)) => {
                opened += was_opened as u64;
                errs += e as u64;
            }
            Err(_) => panic!("{label}: case {case} (block {blkno}) panicked; replay with OCFS2_TEST_SEED={seed}"),
        }
    }
    finished.store(true, Ordering::SeqCst);
    eprintln!("{label}: {opened} of {cases} damaged images opened; {errs} errors reported");
}

fn cases() -> u64 {
    std::env::var("OCFS2_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1500)
}

fn mkfs_image(scratch: &Scratch, name: &str, args: &[&str]) -> Vec<u8> {
    let img = scratch.path(name);
    sparse_image(&img, 64 << 20);
    mkfs_ocfs2(&img, args);
    std::fs::read(&img).expect("read image")
}

#[test]
fn damaged_mkfs_volumes_never_panic() {
    let scratch = Scratch::new("fuzz-mkfs");
    for (name, args) in [
        ("plain-1k", &["-b", "1024", "-C", "4096", "-N", "2", "-J", "size=4M", "--fs-features=nometaecc"][..]),
        (
            "max-compat-512",
            &["-b", "512", "-C", "4096", "-N", "2", "-J", "size=4M", "--fs-feature-level=max-compat"][..],
        ),
    ] {
        fuzz_image(name, mkfs_image(&scratch, name, args), cases());
    }
}

#[test]
fn metaecc_corrects_one_flipped_bit_and_reports_two() {
    let scratch = Scratch::new("fuzz-ecc");
    let image =
        mkfs_image(&scratch, "ecc", &["-b", "1024", "-C", "4096", "-N", "2", "-J", "size=4M", "--fs-features=metaecc"]);
    let clean = Volume::open(ocfs2::MemDevice::from_bytes(image.clone()), MountOptions::default()).unwrap();
    let bs = clean.geometry().block_size as usize;
    let root = clean.root();
    let expect = clean.read_dir(root).unwrap();
    let seed = seed();
    let mut rng = Rng::new(seed);
    eprintln!("OCFS2_TEST_SEED={seed}");
    let base = Arc::new(image);
    for _ in 0..200 {
        // Damage the root directory's inode block, which every walk reads first.
        let mut one = base[root as usize * bs..(root as usize + 1) * bs].to_vec();
        let bit = rng.below(bs as u64 * 8);
        // Bits of the check field itself are not data bits; the kernel cannot correct those.
        if (0x80 * 8..0x88 * 8).contains(&bit) {
            continue;
        }
        one[(bit / 8) as usize] ^= 1 << (bit % 8);
        let mut two = one.clone();
        let mut bit2 = rng.below(bs as u64 * 8);
        while bit2 == bit || (0x80 * 8..0x88 * 8).contains(&bit2) {
            bit2 = rng.below(bs as u64 * 8);
        }
        two[(bit2 / 8) as usize] ^= 1 << (bit2 % 8);
        let vol = Volume::open(
            Overlay { base: base.clone(), block_size: bs, patches: HashMap::from([(root, one)]) },
            MountOptions::default(),
        )
        .unwrap();
        assert_eq!(vol.read_dir(root).unwrap(), expect, "one flipped bit ({bit}) is corrected (seed {seed})");
        let vol = Volume::open(
            Overlay { base: base.clone(), block_size: bs, patches: HashMap::from([(root, two)]) },
            MountOptions::default(),
        );
        let err = match vol {
            Err(e) => e,
            Ok(v) => v.read_dir(root).expect_err("two flipped bits must be reported"),
        };
        assert_eq!(err.errno(), 117, "EUCLEAN for corruption: {err}");
        assert!(err.to_string().contains("metaecc"), "{err}");
    }
}

/// The volume the Linux kernel wrote (tests/data), with extent trees of depth 2, indexed
/// directories and every other structure the reader walks.
fn kernel_image(name: &str) -> Vec<u8> {
    require_tool("xz");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/data/{name}.img.xz"));
    let out = std::process::Command::new("xz").arg("-dc").arg(&src).output().expect("run xz");
    assert!(out.status.success(), "xz -dc {} failed", src.display());
    out.stdout
}

#[test]
fn damaged_kernel_written_volumes_never_panic() {
    // Each case walks the whole tree (20,000 names), so this one runs fewer cases.
    let n = (cases() / 10).max(20);
    fuzz_image("kernel-1k", kernel_image("kernel-1k"), n);
    fuzz_image("kernel-4k-metaecc", kernel_image("kernel-4k"), n);
}
