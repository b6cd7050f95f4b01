//! Formatting a volume the way mkfs.ocfs2 (ocfs2-tools 1.8) does.
//!
//! [`mkfs`] takes a [`BlockDevice`] and [`MkfsOptions`] and writes an empty OCFS2 volume that
//! fsck.ocfs2 calls clean and that debugfs.ocfs2 describes like one made by mkfs.ocfs2 with the
//! same flags: same label, slot count, block and cluster sizes, features, system files. The
//! work is split in three steps, each its own module:
//! - [`geometry`] derives the sizes (block, cluster, journal, slots) from the device and options;
//! - [`layout`] runs mkfs.ocfs2's allocation decisions in memory and yields every block number;
//! - `writer` encodes the structures with [`crate::format`] and writes them.
//!
//! Invariants: nothing is written before every refusal has been decided (options, existing
//! volume, size), so a refused format leaves the device untouched. Quota files are not written
//! yet: a request for `usrquota` or `grpquota` is refused with [`MkfsError::Unsupported`].

mod error;
pub mod features;
pub mod geometry;
pub mod layout;
mod writer;

pub use error::MkfsError;
pub use features::{FeatureLevel, FeatureRequest, FeatureSet, FsType};
pub use geometry::{parse_size, Geometry};
pub use layout::Layout;

use crate::device::BlockDevice;
use crate::format::constants::*;
use crate::format::dx::dx_seeds;
use geometry::SizeRequest;
use layout::LayoutRequest;

/// `-M`: whether the volume is mounted by one node without cluster services, or shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountType {
    /// Shared by the nodes of a cluster (the default).
    #[default]
    Cluster,
    /// One node, no heartbeat, no DLM.
    Local,
}

impl MountType {
    /// Parses `local` or `cluster` (mkfs.ocfs2 compares the prefix, ignoring case).
    pub fn parse(s: &str) -> Result<Self, MkfsError> {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("local") {
            Ok(MountType::Local)
        } else if lower.starts_with("cluster") {
            Ok(MountType::Cluster)
        } else {
            Err(MkfsError::InvalidOption(format!("invalid mount type '{s}' (use local or cluster)")))
        }
    }
}

/// Cluster stacks mkfs.ocfs2 knows.
const STACKS: [&str; 3] = ["o2cb", "pcmk", "cman"];

/// Everything mkfs.ocfs2's flags can ask for. `None` means "as mkfs.ocfs2 would choose".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MkfsOptions {
    /// `-b`: 512 to 4096; by default chosen from the volume size.
    pub block_size: Option<u32>,
    /// `-C`: 4K to 1M; by default chosen from the volume size and `fs_type`.
    pub cluster_size: Option<u32>,
    /// `-N`: 1 to 255; by default 1 for local volumes, 2 to 16 by size for cluster volumes.
    pub slots: Option<u16>,
    /// `-L`: at most 63 bytes.
    pub label: String,
    /// `-J size=`: bytes per journal; by default chosen from the volume size and `fs_type`.
    pub journal_size: Option<u64>,
    /// `-J block64`: the journals use 64-bit block numbers.
    pub journal_block64: bool,
    /// `-M`: by default cluster, unless the feature "local" was asked for.
    pub mount: Option<MountType>,
    /// `-T`.
    pub fs_type: FsType,
    /// `--fs-feature-level`.
    pub feature_level: FeatureLevel,
    /// `--fs-features`.
    pub features: FeatureRequest,
    /// `--cluster-stack`: o2cb, pcmk or cman. Needs `cluster_name`.
    pub cluster_stack: Option<String>,
    /// `--cluster-name`: at most 16 characters (letters and digits for o2cb).
    pub cluster_name: Option<String>,
    /// `--global-heartbeat` (o2cb only).
    pub global_heartbeat: bool,
    /// `-U`: by default a random UUID.
    pub uuid: Option<[u8; 16]>,
    /// `-F`: overwrite a device that already holds OCFS2.
    pub force: bool,
    /// `--no-backup-super` sets `Some(false)`; by default the feature level decides.
    pub backup_super: Option<bool>,
    /// The optional blocks-count argument: use only this many blocks of the device.
    pub block_count: Option<u64>,
    /// Seconds since the epoch to stamp on inodes; by default now.
    pub format_time: Option<u64>,
    /// The volume generation; by default random.
    pub generation: Option<u32>,
    /// The directory index hash seeds; by default random.
    pub dx_seed: Option<[u32; 3]>,
}

/// The cluster stack recorded in the superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStack {
    pub stack: String,
    pub cluster: String,
    pub flags: u8,
}

/// What makes this volume this volume: the values that are random by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub label: String,
    pub uuid: [u8; 16],
    pub generation: u32,
    pub dx_seed: [u32; 3],
    pub format_time: u64,
    pub stack: Option<ClusterStack>,
    pub journal_block64: bool,
}

/// A planned format: sizes, every block number, and the volume's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub layout: Layout,
    pub identity: Identity,
    /// The features as mkfs.ocfs2 prints them before it formats.
    pub requested_features: FeatureSet,
    pub mount: MountType,
    pub fs_type: FsType,
}

/// What was (or, for [`plan`], would be) written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkfsReport {
    pub label: String,
    pub uuid: [u8; 16],
    pub fs_type: FsType,
    pub mount: MountType,
    /// Features as mkfs.ocfs2 prints them in its summary.
    pub requested_features: FeatureSet,
    /// Features as written in the superblock.
    pub features: FeatureSet,
    pub geometry: Geometry,
    pub backup_superblocks: Vec<u64>,
    pub root_blkno: u64,
    pub system_dir_blkno: u64,
    /// An OCFS2 volume was on the device before (only with `force`).
    pub overwrote_existing: bool,
}

impl MkfsReport {
    fn new(plan: &Plan, overwrote_existing: bool) -> Self {
        MkfsReport {
            label: plan.identity.label.clone(),
            uuid: plan.identity.uuid,
            fs_type: plan.fs_type,
            mount: plan.mount,
            requested_features: plan.requested_features,
            features: plan.layout.features,
            geometry: plan.layout.geo,
            backup_superblocks: plan.layout.backup_superblocks.clone(),
            root_blkno: plan.layout.root.inode.blkno,
            system_dir_blkno: plan.layout.system_dir.inode.blkno,
            overwrote_existing,
        }
    }

    /// The UUID as debugfs.ocfs2 prints it: 32 upper-case hex digits.
    pub fn uuid_string(&self) -> String {
        uuid_string(&self.uuid)
    }

    /// The lines mkfs.ocfs2 prints before it formats.
    pub fn summary(&self) -> String {
        let g = &self.geometry;
        let mut s = String::new();
        if let Some(t) = self.fs_type.name() {
            s += &format!("Filesystem Type of {t}\n");
        }
        s += &format!("Label: {}\n", self.label);
        s += &format!("Features: {}\n", self.requested_features);
        s += &format!("Block size: {} ({} bits)\n", g.block_size, g.block_bits);
        s += &format!("Cluster size: {} ({} bits)\n", g.cluster_size, g.cluster_bits);
        s += &format!("Volume size: {} ({} clusters) ({} blocks)\n", g.bytes(), g.clusters, g.blocks);
        s += &format!(
            "Cluster groups: {} (tail covers {} clusters, rest cover {} clusters)\n",
            g.cluster_groups, g.tail_group_bits, g.global_cpg
        );
        s += &format!(
            "Extent allocator size: {} ({} groups)\n",
            g.extent_alloc_clusters as u64 * g.cluster_size as u64,
            g.extent_alloc_groups()
        );
        s += &format!("Journal size: {}\n", g.journal_bytes);
        s += &format!("Node slots: {}\n", g.slots);
        s
    }
}

/// The UUID as 32 upper-case hex digits.
pub fn uuid_string(uuid: &[u8; 16]) -> String {
    uuid.iter().map(|b| format!("{b:02X}")).collect()
}

/// Parses a UUID given as 32 hex digits or in the 8-4-4-4-12 form.
pub fn parse_uuid(s: &str) -> Result<[u8; 16], MkfsError> {
    let bad = || MkfsError::InvalidOption(format!("invalid UUID '{s}'"));
    let hex: String = if s.len() == 36 {
        for (i, c) in s.char_indices() {
            if [8, 13, 18, 23].contains(&i) != (c == '-') {
                return Err(bad());
            }
        }
        s.chars().filter(|&c| c != '-').collect()
    } else {
        s.to_string()
    };
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// What the options settle before the device is looked at.
struct Settings {
    /// Features as mkfs.ocfs2 prints them.
    features: FeatureSet,
    /// Features as the superblock will carry them.
    super_features: FeatureSet,
    mount: MountType,
    stack: Option<ClusterStack>,
    backup_super: bool,
}

/// Checks the options that do not depend on the device and settles features, mount type and
/// cluster stack.
fn resolve(opts: &MkfsOptions) -> Result<Settings, MkfsError> {
    if opts.label.len() >= MAX_VOL_LABEL_LEN {
        return Err(MkfsError::InvalidOption(format!(
            "volume label too long: must be less than {MAX_VOL_LABEL_LEN} characters"
        )));
    }
    if opts.label.as_bytes().contains(&0) {
        return Err(MkfsError::InvalidOption("the volume label contains a NUL byte".into()));
    }
    let features = features::merge(opts.feature_level, opts.features)?;
    let mount = opts.mount.unwrap_or(if features.has_incompat(FEATURE_INCOMPAT_LOCAL_MOUNT) {
        MountType::Local
    } else {
        MountType::Cluster
    });

    let stack = match (&opts.cluster_stack, &opts.cluster_name, opts.global_heartbeat) {
        (None, None, false) => None,
        (stack, name, ghb) => {
            if mount == MountType::Local {
                return Err(MkfsError::InvalidOption(
                    "a local volume takes no cluster stack, cluster name or global heartbeat".into(),
                ));
            }
            let stack = stack
                .as_deref()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| MkfsError::InvalidOption("missing cluster stack (--cluster-stack)".into()))?;
            if !STACKS.contains(&stack) {
                return Err(MkfsError::InvalidOption(format!(
                    "unknown cluster stack '{stack}' (use o2cb, pcmk or cman)"
                )));
            }
            let name = name
                .as_deref()
                .ok_or_else(|| MkfsError::InvalidOption("missing cluster name (--cluster-name)".into()))?;
            let ok = !name.is_empty()
                && name.len() <= CLUSTER_NAME_LEN
                && (stack != "o2cb" || name.chars().all(|c| c.is_ascii_alphanumeric()));
            if !ok {
                return Err(MkfsError::InvalidOption(if stack == "o2cb" {
                    format!("cluster name '{name}': at most {CLUSTER_NAME_LEN} letters and digits")
                } else {
                    format!("cluster name '{name}': at most {CLUSTER_NAME_LEN} characters")
                }));
            }
            if ghb && stack != "o2cb" {
                return Err(MkfsError::InvalidOption(
                    "global heartbeat is only available with the o2cb cluster stack".into(),
                ));
            }
            Some(ClusterStack { stack: stack.to_string(), cluster: name.to_string(), flags: ghb as u8 })
        }
    };

    if features.has_ro_compat(FEATURE_RO_COMPAT_USRQUOTA | FEATURE_RO_COMPAT_GRPQUOTA) {
        return Err(MkfsError::Unsupported(
            "quota files are not written yet; turn the quota features off with \
             --fs-features=nousrquota,nogrpquota"
                .into(),
        ));
    }

    let backup_super = opts.backup_super.unwrap_or(features.has_compat(FEATURE_COMPAT_BACKUP_SB));

    // What format_superblock adds and removes.
    let mut sb = features;
    if mount == MountType::Local {
        sb.incompat |= FEATURE_INCOMPAT_LOCAL_MOUNT;
    }
    if let Some(st) = &stack {
        sb.incompat |= FEATURE_INCOMPAT_EXTENDED_SLOT_MAP;
        if !sb.has_incompat(FEATURE_INCOMPAT_CLUSTERINFO) {
            sb.incompat |=
                if st.stack == "o2cb" { FEATURE_INCOMPAT_CLUSTERINFO } else { FEATURE_INCOMPAT_USERSPACE_STACK };
        }
    }
    sb.compat &= !FEATURE_COMPAT_BACKUP_SB;
    if backup_super {
        sb.compat |= FEATURE_COMPAT_BACKUP_SB;
    }
    Ok(Settings { features, super_features: sb, mount, stack, backup_super })
}

/// Plans a format of a device of `device_bytes` bytes: every refusal, every size, every block
/// number, without touching any device. Values that are random by default are drawn here.
pub fn plan(device_bytes: u64, sector_size: u32, opts: &MkfsOptions) -> Result<Plan, MkfsError> {
    let Settings { features, super_features, mount, stack, backup_super } = resolve(opts)?;
    let geo = geometry::compute(
        &SizeRequest {
            block_size: opts.block_size,
            cluster_size: opts.cluster_size,
            slots: opts.slots,
            journal_size: opts.journal_size,
            journal_block64: opts.journal_block64,
            mount,
            fs_type: opts.fs_type,
            block_count: opts.block_count,
        },
        device_bytes,
        sector_size,
    )?;
    let mut random = [0u8; 16 + 4 + 12];
    random_bytes(&mut random);
    let word = |i: usize| u32::from_le_bytes([random[i], random[i + 1], random[i + 2], random[i + 3]]);
    let uuid = opts.uuid.unwrap_or_else(|| {
        let mut u = [0u8; 16];
        u.copy_from_slice(&random[..16]);
        // A version 4 (random) UUID, as uuid_generate makes.
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        u
    });
    let identity = Identity {
        label: opts.label.clone(),
        uuid,
        generation: opts.generation.unwrap_or_else(|| word(16)),
        dx_seed: opts.dx_seed.unwrap_or_else(|| [word(20), word(24), word(28)]),
        format_time: opts.format_time.unwrap_or_else(now),
        stack,
        journal_block64: opts.journal_block64,
    };
    let dx_seeds = dx_seeds(identity.dx_seed, writer::uuid_hash(&identity.uuid));
    let layout = layout::plan(&geo, &LayoutRequest { features, super_features, backup_super, dx_seeds })?;
    Ok(Plan { layout, identity, requested_features: features, mount, fs_type: opts.fs_type })
}

/// What formatting `dev` with `opts` would write, without writing (mkfs.ocfs2 `--dry-run`).
pub fn dry_run(dev: &dyn BlockDevice, opts: &MkfsOptions) -> Result<MkfsReport, MkfsError> {
    let plan = plan(dev.len(), dev.sector_size(), opts)?;
    Ok(MkfsReport::new(&plan, false))
}

/// Formats `dev` as an empty OCFS2 volume.
///
/// Refuses, before writing anything, a device that already holds OCFS2 unless `opts.force`,
/// a device too small for the volume asked for, and options mkfs.ocfs2 would refuse.
pub fn mkfs(dev: &dyn BlockDevice, opts: &MkfsOptions) -> Result<MkfsReport, MkfsError> {
    let plan = plan(dev.len(), dev.sector_size(), opts)?;
    let existing = probe_existing(dev)?;
    if let Some(e) = &existing {
        if !opts.force {
            return Err(e.clone());
        }
    }
    writer::write(dev, &plan)?;
    Ok(MkfsReport::new(&plan, existing.is_some()))
}

/// Looks for an OCFS2 superblock at block 2 for every block size.
fn probe_existing(dev: &dyn BlockDevice) -> Result<Option<MkfsError>, MkfsError> {
    let mut bs = MIN_BLOCKSIZE;
    while bs <= MAX_BLOCKSIZE {
        let off = SUPER_BLOCK_BLKNO * bs as u64;
        if off + bs as u64 <= dev.len() {
            let mut block = vec![0u8; bs as usize];
            dev.read_at(off, &mut block)?;
            if let Some(found) = writer::existing_volume(&block, bs) {
                return Ok(Some(found));
            }
        }
        bs <<= 1;
    }
    Ok(None)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Fills `buf` from the kernel's random source, or (if that cannot be read) from the clock and
/// the process id, which is still unique enough for a UUID.
fn random_bytes(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(buf).is_ok() {
            return;
        }
    }
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut x = nanos ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;
    use crate::format::blockcheck::{
        self, BlockCheckOutcome, DX_ROOT_CHECK_OFFSET, GROUP_DESC_CHECK_OFFSET, INODE_CHECK_OFFSET,
    };
    use crate::format::dinode::Dinode;
    use crate::format::dx::DxRootBlock;
    use crate::format::group::GroupDesc;
    use crate::format::superblock::SuperBlock;

    fn block(dev: &MemDevice, bs: u32, blkno: u64) -> Vec<u8> {
        let mut b = vec![0u8; bs as usize];
        dev.read_at(blkno * bs as u64, &mut b).unwrap();
        b
    }

    fn ecc_clean(b: &mut [u8], off: usize) {
        assert_eq!(blockcheck::verify(b, off, "test").unwrap(), BlockCheckOutcome::Clean);
    }

    #[test]
    fn local_mount_and_cluster_stacks_set_superblock_features() {
        let local = resolve(&MkfsOptions { mount: Some(MountType::Local), ..Default::default() }).unwrap();
        assert!(local.super_features.has_incompat(FEATURE_INCOMPAT_LOCAL_MOUNT));
        assert!(!local.features.has_incompat(FEATURE_INCOMPAT_LOCAL_MOUNT));

        let o2cb = MkfsOptions {
            cluster_stack: Some("o2cb".into()),
            cluster_name: Some("c1".into()),
            feature_level: FeatureLevel::MaxCompat,
            ..Default::default()
        };
        let s = resolve(&o2cb).unwrap();
        assert!(s.super_features.has_incompat(FEATURE_INCOMPAT_CLUSTERINFO | FEATURE_INCOMPAT_EXTENDED_SLOT_MAP));
        assert!(!s.super_features.has_incompat(FEATURE_INCOMPAT_USERSPACE_STACK));

        let pcmk = MkfsOptions { cluster_stack: Some("pcmk".into()), ..o2cb };
        let s = resolve(&pcmk).unwrap();
        assert!(s.super_features.has_incompat(FEATURE_INCOMPAT_USERSPACE_STACK));
        assert!(!s.super_features.has_incompat(FEATURE_INCOMPAT_CLUSTERINFO));

        let nobackup = resolve(&MkfsOptions { backup_super: Some(false), ..Default::default() }).unwrap();
        assert!(!nobackup.super_features.has_compat(FEATURE_COMPAT_BACKUP_SB));
        assert!(nobackup.features.has_compat(FEATURE_COMPAT_BACKUP_SB));
    }

    #[test]
    fn uuids_parse_in_both_forms() {
        let a = parse_uuid("0123456789abcdef0123456789ABCDEF").unwrap();
        let b = parse_uuid("01234567-89AB-CDEF-0123-456789abcdef").unwrap();
        assert_eq!(a, b);
        assert_eq!(uuid_string(&a), "0123456789ABCDEF0123456789ABCDEF");
        assert!(parse_uuid("0123456789abcdef0123456789ABCDE").is_err());
        assert!(parse_uuid("0123456789-abcdef0123456789ABCDE").is_err());
        assert!(parse_uuid("g123456789abcdef0123456789ABCDEF").is_err());
    }

    #[test]
    fn mount_types_parse_like_mkfs_ocfs2() {
        assert_eq!(MountType::parse("LOCAL").unwrap(), MountType::Local);
        assert_eq!(MountType::parse("cluster").unwrap(), MountType::Cluster);
        assert!(MountType::parse("shared").is_err());
    }

    #[test]
    fn formatted_memory_device_decodes_back_with_valid_metaecc() {
        let dev = MemDevice::new(96 << 20);
        let opts = MkfsOptions {
            block_size: Some(1024),
            cluster_size: Some(4096),
            slots: Some(3),
            label: "mem".into(),
            features: FeatureRequest::parse("metaecc,noinline-data").unwrap(),
            generation: Some(0x1234_5678),
            format_time: Some(1_700_000_000),
            dx_seed: Some([1, 2, 3]),
            ..Default::default()
        };
        let plan = plan(dev.len(), dev.sector_size(), &opts).unwrap();
        let report = mkfs(&dev, &opts).unwrap();
        let bs = report.geometry.block_size;

        let mut sb_block = block(&dev, bs, SUPER_BLOCK_BLKNO);
        ecc_clean(&mut sb_block, INODE_CHECK_OFFSET);
        let (di, sb) = SuperBlock::decode_block(&sb_block).unwrap();
        assert_eq!(di.i_fs_generation, 0x1234_5678);
        assert_eq!(sb.s_max_slots, 3);
        assert_eq!(sb.s_blocksize_bits, 10);
        assert_eq!(sb.s_root_blkno, report.root_blkno);
        assert_eq!(&sb.s_label[..4], b"mem\0");
        assert_eq!(sb.s_dx_seed, [1, 2, 3]);

        let l = &plan.layout;
        let mut inodes: Vec<u64> = l.system_files.iter().map(|f| f.inode.blkno).collect();
        inodes.extend([l.root.inode.blkno, l.system_dir.inode.blkno, l.lost_found.inode.blkno]);
        inodes.extend(l.orphan_dirs.iter().map(|d| d.inode.blkno));
        for blkno in inodes {
            let mut b = block(&dev, bs, blkno);
            ecc_clean(&mut b, INODE_CHECK_OFFSET);
            Dinode::decode(&b).unwrap().validate(blkno, 0x1234_5678).unwrap();
        }
        let groups = l
            .global_bitmap
            .groups
            .iter()
            .chain(&l.global_inode_alloc.groups)
            .chain(l.inode_allocs.iter().flat_map(|a| &a.groups));
        for g in groups {
            let mut b = block(&dev, bs, g.blkno);
            ecc_clean(&mut b, GROUP_DESC_CHECK_OFFSET);
            let gd = GroupDesc::decode(&b).unwrap();
            gd.validate(g.blkno, 0x1234_5678).unwrap();
            assert_eq!(gd.used_bits(), g.used());
        }
        let dx = l.root.dx_root.unwrap();
        let mut b = block(&dev, bs, dx.blkno);
        ecc_clean(&mut b, DX_ROOT_CHECK_OFFSET);
        DxRootBlock::decode(&b).unwrap().check_owner(dx.blkno, 0x1234_5678, l.root.inode.blkno).unwrap();
    }

    #[test]
    fn existing_volume_is_refused_without_writing() {
        let dev = MemDevice::new(64 << 20);
        let opts = MkfsOptions { mount: Some(MountType::Local), label: "first".into(), ..Default::default() };
        mkfs(&dev, &opts).unwrap();
        let before = dev.to_bytes();
        let err = mkfs(&dev, &MkfsOptions { label: "second".into(), ..opts.clone() }).unwrap_err();
        assert!(matches!(&err, MkfsError::ExistingVolume { label, .. } if label == "first"), "{err}");
        assert_eq!(err.errno(), libc::EEXIST);
        assert!(dev.to_bytes() == before, "a refused format changed the device");
        let report = mkfs(&dev, &MkfsOptions { force: true, ..opts }).unwrap();
        assert!(report.overwrote_existing);
    }

    #[test]
    fn summary_lists_what_mkfs_ocfs2_prints() {
        let dev = MemDevice::new(256 << 20);
        let opts = MkfsOptions {
            block_size: Some(4096),
            cluster_size: Some(4096),
            slots: Some(4),
            label: "mylabel".into(),
            mount: Some(MountType::Local),
            ..Default::default()
        };
        let report = dry_run(&dev, &opts).unwrap();
        let expected = "Label: mylabel
Features: sparse extended-slotmap backup-super unwritten inline-data strict-journal-super xattr indexed-dirs refcount discontig-bg append-dio
Block size: 4096 (12 bits)
Cluster size: 4096 (12 bits)
Volume size: 268435456 (65536 clusters) (65536 blocks)
Cluster groups: 3 (tail covers 1024 clusters, rest cover 32256 clusters)
Extent allocator size: 0 (0 groups)
Journal size: 16777216
Node slots: 4
";
        assert_eq!(report.summary(), expected);
        assert!(dev.to_bytes().iter().all(|&b| b == 0), "a dry run wrote");
    }
}
