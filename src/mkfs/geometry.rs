//! The sizes mkfs.ocfs2 derives from the device and the options (`fill_defaults` in
//! `mkfs.ocfs2/mkfs.c`): block size, cluster size, volume size, cluster groups, slots, journal
//! size and the extent allocator reserve. Pure arithmetic, no I/O.
//!
//! Invariants of a [`Geometry`]: block and cluster sizes are powers of two in range, the
//! cluster size is at least the block size, the volume is a whole number of clusters that fits
//! in 32 bits, and the journal size is a whole number of clusters.

use super::{FsType, MkfsError, MountType};
use crate::format::constants::{
    MAX_BLOCKSIZE, MAX_CLUSTERSIZE, MAX_SLOTS, MIN_BLOCKSIZE, MIN_CLUSTERSIZE, MIN_JOURNAL_SIZE,
};
use crate::format::group::group_bitmap_size;

const ONE_MB: u64 = 1 << 20;
const ONE_GB: u64 = 1 << 30;
/// `OCFS2_MIN_CLUSTER_TO_JOURNAL_SIZE_SHIFT`: a journal holds at least 8 clusters (plus one).
const MIN_CLUSTER_TO_JOURNAL_SHIFT: u32 = 3;
/// Above this share of the volume (in percent) mkfs gives up one extent allocator group.
const MAX_EXTALLOC_RESERVE_PERCENT: f64 = 5.0;

/// What the sizes depend on; a subset of [`MkfsOptions`](super::MkfsOptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRequest {
    pub block_size: Option<u32>,
    pub cluster_size: Option<u32>,
    pub slots: Option<u16>,
    pub journal_size: Option<u64>,
    pub journal_block64: bool,
    pub mount: MountType,
    pub fs_type: FsType,
    pub block_count: Option<u64>,
}

/// The sizes of the volume to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: u32,
    pub block_bits: u32,
    pub cluster_size: u32,
    pub cluster_bits: u32,
    /// Volume size in blocks, a whole number of clusters.
    pub blocks: u64,
    pub clusters: u32,
    /// Clusters per group of the global bitmap (the last group may be shorter).
    pub global_cpg: u32,
    pub cluster_groups: u32,
    /// Clusters in the last group.
    pub tail_group_bits: u32,
    pub slots: u16,
    pub journal_bytes: u64,
    /// Clusters each slot's extent allocator gets at format time (a multiple of `sub_cpg`).
    pub extent_alloc_clusters: u32,
    /// Clusters per group of the block suballocators (inode and extent allocators).
    pub sub_cpg: u32,
}

impl Geometry {
    pub fn bytes(&self) -> u64 {
        (self.clusters as u64) << self.cluster_bits
    }

    /// Blocks per cluster.
    pub fn bpc(&self) -> u32 {
        self.cluster_size / self.block_size
    }

    /// Block number of the first block of cluster `c`.
    pub fn cluster_to_block(&self, c: u64) -> u64 {
        c << (self.cluster_bits - self.block_bits)
    }

    /// Clusters needed to hold `bytes`.
    pub fn bytes_to_clusters(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.cluster_size as u64)
    }

    pub fn journal_clusters(&self) -> u32 {
        (self.journal_bytes >> self.cluster_bits) as u32
    }

    /// Groups of each slot's extent allocator.
    pub fn extent_alloc_groups(&self) -> u32 {
        self.extent_alloc_clusters / self.sub_cpg
    }
}

/// Rounds a size down to a power of two within `[lo, hi]`, as mkfs.ocfs2 does with `-b` and
/// `-C` values that are in range but not powers of two.
pub fn valid_power_of_two(num: u64, lo: u64, hi: u64) -> u64 {
    let mut best = lo;
    let mut v = lo;
    while v <= hi {
        if v == num {
            return num;
        }
        if v < num {
            best = v;
        } else {
            break;
        }
        v <<= 1;
    }
    best
}

/// Parses a size with an optional K, M or G suffix (powers of 1024), like mkfs.ocfs2's
/// `get_number`. The number may be decimal, 0x-hex or 0-octal.
pub fn parse_size(arg: &str) -> Result<u64, MkfsError> {
    let bad = || MkfsError::InvalidOption(format!("bad size '{arg}'"));
    let (value, rest) = c_number_prefix(arg).ok_or_else(bad)?;
    let mult: u64 = match rest {
        "" | "b" | "B" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => return Err(bad()),
    };
    value.checked_mul(mult).ok_or_else(bad)
}

/// An unsigned number as `strtoull(s, .., 0)` reads it; the whole string must be used.
pub fn parse_c_number(s: &str) -> Option<u64> {
    match c_number_prefix(s) {
        Some((v, "")) => Some(v),
        _ => None,
    }
}

/// The number at the start of `s` (decimal, 0x-hex or 0-octal) and the text after it.
fn c_number_prefix(s: &str) -> Option<(u64, &str)> {
    let (radix, digits) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if hex.starts_with(|c: char| c.is_ascii_hexdigit()) => (16, hex),
        _ if s.starts_with('0') => (8, s),
        _ => (10, s),
    };
    let end = digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let value = u64::from_str_radix(&digits[..end], radix).ok()?;
    Some((value, &digits[end..]))
}

/// `ocfs2_clusters_per_group`: suballocator groups span 1, 2 or 4 MB depending on block size.
pub fn suballoc_clusters_per_group(block_size: u32, cluster_bits: u32) -> u32 {
    let megabytes: u64 = match block_size {
        4096 | 2048 => 4,
        1024 => 2,
        _ => 1,
    };
    ((megabytes * ONE_MB) >> cluster_bits) as u32
}

/// Bits in a cluster-group bitmap: the rest of the block after the descriptor header.
pub fn global_group_bits(block_size: u32) -> u32 {
    group_bitmap_size(block_size as usize, false, 0) as u32 * 8
}

/// `initial_slots_for_volume`: cluster volumes get more slots as they grow.
fn default_cluster_slots(bytes: u64) -> u16 {
    match bytes / ONE_GB {
        0..=1 => 2,
        2..=9 => 4,
        10..=1023 => 8,
        _ => 16,
    }
}

/// Works out every size, refusing what mkfs.ocfs2 refuses.
pub fn compute(req: &SizeRequest, device_bytes: u64, sector_size: u32) -> Result<Geometry, MkfsError> {
    let sector = if sector_size == 0 { MIN_BLOCKSIZE } else { sector_size };
    let mut block_size = match req.block_size {
        Some(b) => {
            if !(MIN_BLOCKSIZE..=MAX_BLOCKSIZE).contains(&b) {
                return Err(MkfsError::InvalidOption(format!(
                    "block size {b}: specify a block size between {MIN_BLOCKSIZE} and {MAX_BLOCKSIZE} in powers of 2"
                )));
            }
            valid_power_of_two(b as u64, MIN_BLOCKSIZE as u64, MAX_BLOCKSIZE as u64) as u32
        }
        None => MAX_BLOCKSIZE,
    };
    if block_size < sector {
        return Err(MkfsError::InvalidOption(format!(
            "the device has a hardware sector size ({sector}) larger than the block size ({block_size})"
        )));
    }
    let blocks_of = |bs: u32| -> Result<u64, MkfsError> {
        let have = device_bytes / bs as u64;
        match req.block_count {
            Some(n) if n > have => Err(MkfsError::TooSmall(format!(
                "{n} blocks were asked for, the device holds only {have} blocks of {bs} bytes"
            ))),
            Some(n) => Ok(n),
            None => Ok(have),
        }
    };
    let mut blocks = blocks_of(block_size)?;
    let mut bytes = blocks * block_size as u64;

    if req.block_size.is_none() {
        if bytes <= 3 * ONE_MB {
            block_size = MIN_BLOCKSIZE;
        } else {
            let mut shift = 30;
            while block_size > 1024 {
                if bytes >= 1u64 << shift {
                    break;
                }
                block_size >>= 1;
                shift -= 1;
            }
        }
        blocks = blocks_of(block_size)?;
        bytes = blocks * block_size as u64;
    }
    let block_bits = block_size.trailing_zeros();

    let cluster_size = match req.cluster_size {
        Some(c) => {
            if !(MIN_CLUSTERSIZE..=MAX_CLUSTERSIZE).contains(&c) {
                return Err(MkfsError::InvalidOption(format!(
                    "cluster size {c}: specify a cluster size between {MIN_CLUSTERSIZE} and {MAX_CLUSTERSIZE} in powers of 2"
                )));
            }
            valid_power_of_two(c as u64, MIN_CLUSTERSIZE as u64, MAX_CLUSTERSIZE as u64) as u32
        }
        None => match req.fs_type {
            FsType::Datafiles | FsType::Vmstore => datafiles_cluster_size(bytes)?,
            _ => default_cluster_size(bytes),
        },
    };
    let cluster_bits = cluster_size.trailing_zeros();

    let clusters64 = bytes >> cluster_bits;
    if clusters64 > u32::MAX as u64 {
        return Err(MkfsError::TooLarge(format!("an OCFS2 volume cannot be larger than {} clusters", u32::MAX)));
    }
    let clusters = clusters64 as u32;
    let blocks = (clusters64 << cluster_bits) >> block_bits;

    let max_bits = global_group_bits(block_size);
    let global_cpg = max_bits.min(clusters.max(1));
    let cluster_groups = clusters.div_ceil(global_cpg);
    let tail_group_bits = match clusters % global_cpg {
        0 => global_cpg,
        t => t,
    };

    let slots = match req.slots {
        Some(0) => return Err(MkfsError::InvalidOption("initial node slots must be at least 1".into())),
        Some(n) if n > MAX_SLOTS => {
            return Err(MkfsError::InvalidOption(format!("initial node slots must be no more than {MAX_SLOTS}")))
        }
        Some(n) => n,
        None if req.mount == MountType::Local => 1,
        None => default_cluster_slots(clusters64 << cluster_bits),
    };

    let mut geo = Geometry {
        block_size,
        block_bits,
        cluster_size,
        cluster_bits,
        blocks,
        clusters,
        global_cpg,
        cluster_groups,
        tail_group_bits,
        slots,
        journal_bytes: 0,
        extent_alloc_clusters: 0,
        sub_cpg: suballoc_clusters_per_group(block_size, cluster_bits),
    };
    if clusters == 0 {
        return Err(MkfsError::TooSmall(format!("the device ({device_bytes} bytes) is smaller than one cluster")));
    }
    geo.journal_bytes = journal_size(&geo, req)?;
    geo.extent_alloc_clusters = extent_alloc_size(&geo, req.fs_type);

    if !req.journal_block64 && geo.blocks > u32::MAX as u64 {
        return Err(MkfsError::TooLarge(format!(
            "the volume has {} blocks but the journal can only address 2^32 blocks; use a \
             bigger block size, a smaller device, or the journal option block64",
            geo.blocks
        )));
    }
    Ok(geo)
}

/// The smallest cluster size that keeps the cluster count within 32 bits.
fn default_cluster_size(bytes: u64) -> u32 {
    let mut c = MIN_CLUSTERSIZE;
    while c < MAX_CLUSTERSIZE {
        if bytes >> c.trailing_zeros() <= (u32::MAX - 1) as u64 {
            break;
        }
        c <<= 1;
    }
    c
}

/// Cluster sizes for `-T datafiles` and `-T vmstore`, which need at least 2 GB.
fn datafiles_cluster_size(bytes: u64) -> Result<u32, MkfsError> {
    let gigs = bytes / ONE_GB;
    let kb = match gigs {
        0..=1 => {
            return Err(MkfsError::TooSmall(
                "the selected file system type requires a device of at least 2 gigabytes".into(),
            ))
        }
        2..=63 => 128,
        64..=95 => 256,
        96..=127 => 512,
        _ => 1024,
    };
    Ok(kb * 1024)
}

fn align_to_clusters(geo: &Geometry, bytes: u64) -> u64 {
    let c = geo.cluster_size as u64;
    bytes.saturating_add(c - 1) / c * c
}

/// Whether `slots` journals of `j_blocks` blocks leave the volume some room.
fn journal_fits(geo: &Geometry, j_blocks: u64) -> bool {
    j_blocks * geo.slots as u64 + 1024 <= geo.blocks
}

/// The per-slot journal size in bytes (`figure_journal_size`).
fn journal_size(geo: &Geometry, req: &SizeRequest) -> Result<u64, MkfsError> {
    if geo.blocks < 2048 {
        return Err(MkfsError::TooSmall(format!(
            "{} blocks of {} bytes are too few for a journal (at least 2048 are needed)",
            geo.blocks, geo.block_size
        )));
    }
    let min = ((geo.cluster_size as u64) << MIN_CLUSTER_TO_JOURNAL_SHIFT) + geo.cluster_size as u64;
    if let Some(size) = req.journal_size {
        if size < MIN_JOURNAL_SIZE {
            return Err(MkfsError::InvalidOption(format!(
                "journal size {size}: it must be at least {MIN_JOURNAL_SIZE} bytes"
            )));
        }
        if !journal_fits(geo, size >> geo.block_bits) {
            return Err(MkfsError::TooSmall(format!(
                "journals of {size} bytes for {} slots do not fit in the volume",
                geo.slots
            )));
        }
        let aligned = align_to_clusters(geo, size);
        if aligned < min {
            return Err(MkfsError::InvalidOption(format!(
                "journal size {size} is too small for {}-byte clusters (at least {min} bytes)",
                geo.cluster_size
            )));
        }
        return Ok(aligned);
    }
    let blocks = geo.blocks;
    let j_blocks: u64 = match req.fs_type {
        FsType::Datafiles => 8192,
        FsType::Mail => match blocks {
            0..=262_143 => 16384,
            262_144..=524_287 => 32768,
            _ => 65536,
        },
        FsType::Vmstore => match blocks {
            0..=262_143 => 8192,
            262_144..=524_287 => 16384,
            _ => 32768,
        },
        FsType::Default => match blocks {
            0..=32_767 => MIN_JOURNAL_SIZE / geo.block_size as u64,
            32_768..=262_143 => 4096,
            _ => (blocks / 160).clamp(16384, 65536),
        },
    };
    let mut bytes = align_to_clusters(geo, j_blocks << geo.block_bits);
    if bytes < min {
        bytes = min;
        if !journal_fits(geo, bytes >> geo.block_bits) {
            return Err(MkfsError::TooSmall(format!(
                "{} journals of at least {min} bytes (for {}-byte clusters) do not fit; \
                 increase the volume size or reduce the cluster size",
                geo.slots, geo.cluster_size
            )));
        }
    }
    Ok(bytes)
}

/// Clusters to give each slot's extent allocator up front (`figure_extent_alloc_size`): enough
/// whole groups to reach a small share of the volume, unless that overshoots 5%.
fn extent_alloc_size(geo: &Geometry, fs_type: FsType) -> u32 {
    let target = match fs_type {
        FsType::Datafiles | FsType::Vmstore => 0.3,
        _ => 0.1,
    };
    let cpg = geo.sub_cpg;
    let volume = geo.bytes() as f64;
    let unit = cpg as u64 * geo.cluster_size as u64 * geo.slots as u64;
    if unit == 0 {
        return 0;
    }
    let mut total = unit;
    let mut groups: u32 = 1;
    let mut percent;
    loop {
        percent = total as f64 * 100.0 / volume;
        if percent >= target {
            break;
        }
        total += unit;
        groups += 1;
    }
    if percent > MAX_EXTALLOC_RESERVE_PERCENT {
        groups -= 1;
    }
    cpg * groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(b: Option<u32>, c: Option<u32>, n: Option<u16>) -> SizeRequest {
        SizeRequest {
            block_size: b,
            cluster_size: c,
            slots: n,
            journal_size: None,
            journal_block64: false,
            mount: MountType::Local,
            fs_type: FsType::Default,
            block_count: None,
        }
    }

    // The expected values below are what `mkfs.ocfs2 -n` (1.8.7) printed for the same input.

    #[test]
    fn small_local_volume_like_mkfs_ocfs2() {
        let g = compute(&req(Some(4096), Some(4096), Some(4)), 256 << 20, 512).unwrap();
        assert_eq!(g.clusters, 65536);
        assert_eq!(g.cluster_groups, 3);
        assert_eq!(g.tail_group_bits, 1024);
        assert_eq!(g.global_cpg, 32256);
        assert_eq!(g.journal_bytes, 16 << 20);
        assert_eq!(g.extent_alloc_clusters, 0);
    }

    #[test]
    fn default_block_size_follows_volume_size() {
        let g = compute(&req(None, None, None), 256 << 20, 512).unwrap();
        assert_eq!(g.block_size, 1024);
        let g = compute(&req(None, None, None), 8 << 20, 512).unwrap();
        assert_eq!((g.block_size, g.journal_bytes, g.slots), (1024, 4 << 20, 1));
        let g = compute(&req(None, None, None), 3 << 20, 512).unwrap();
        assert_eq!(g.block_size, 512);
        let g = compute(&req(None, None, None), 3 << 30, 512).unwrap();
        assert_eq!(g.block_size, 4096);
    }

    #[test]
    fn mail_and_datafiles_sizes_like_mkfs_ocfs2() {
        let mut r = req(None, None, None);
        r.fs_type = FsType::Mail;
        let g = compute(&r, 3 << 30, 512).unwrap();
        assert_eq!((g.cluster_size, g.journal_bytes), (4096, 256 << 20));
        assert_eq!((g.cluster_groups, g.tail_group_bits), (25, 12288));
        assert_eq!(g.extent_alloc_clusters * g.cluster_size, 4 << 20);
        r.fs_type = FsType::Datafiles;
        let g = compute(&r, 3 << 30, 512).unwrap();
        assert_eq!((g.cluster_size, g.journal_bytes), (128 << 10, 32 << 20));
        assert_eq!(g.extent_alloc_groups(), 3);
        r.fs_type = FsType::Vmstore;
        let g = compute(&r, 3 << 30, 512).unwrap();
        assert_eq!(g.journal_bytes, 128 << 20);
        assert!(compute(&r, 1 << 30, 512).is_err());
    }

    #[test]
    fn big_clusters_get_the_minimum_journal() {
        let g = compute(&req(Some(512), Some(1 << 20), Some(32)), 512 << 20, 512).unwrap();
        assert_eq!(g.journal_bytes, 9 << 20);
        let err = compute(&req(Some(512), Some(1 << 20), Some(32)), 256 << 20, 512).unwrap_err();
        assert!(matches!(err, MkfsError::TooSmall(_)));
    }

    #[test]
    fn tiny_device_is_refused() {
        let err = compute(&req(None, None, None), 512 << 10, 512).unwrap_err();
        assert!(matches!(err, MkfsError::TooSmall(_)), "{err}");
    }

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("0x1000").unwrap(), 4096);
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
    }

    #[test]
    fn odd_sizes_round_down_to_a_power_of_two() {
        assert_eq!(valid_power_of_two(3000, 512, 4096), 2048);
        assert_eq!(valid_power_of_two(4096, 512, 4096), 4096);
    }
}
