//! Opening a volume: finding the superblock, checking what the volume needs, and holding the
//! state every operation shares (geometry, the block reader, the inode table, the locks).

use super::error::{Error, Result};
use super::inode::{Inode, InodeTable};
use super::lock::{Locks, NoClusterLocks};
use super::meta::{BlockKind, MetaReader};
use super::tx::WriteState;
use crate::device::BlockDevice;
use crate::format::dinode::Dinode;
use crate::format::superblock::SuperBlock;
use crate::format::*;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// How to open a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Open without writing anything. A writable open takes a slot in the slot map, replays
    /// the slot's journal if the last user crashed, and marks the journal in use until
    /// [`Volume::close`].
    pub read_only: bool,
    /// Check metaecc on every metadata block read (when the volume has the feature).
    pub verify_checksums: bool,
    /// For [`Volume::open_path`]: bypass the page cache (O_DIRECT). `None` chooses: on for
    /// block devices, off for image files.
    pub direct: Option<bool>,
    /// The slot to take when it is free (the kernel's `preferred_slot` mount option).
    pub preferred_slot: Option<u16>,
    /// Size of the local alloc window in megabytes (the kernel's `localalloc=` mount option);
    /// `None` for the kernel's default, `Some(0)` to allocate from the global bitmap only.
    pub local_alloc_mb: Option<u32>,
    /// Memory for cached metadata blocks (inodes, directory and extent blocks), in megabytes.
    pub cache_mb: u32,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_only: true,
            verify_checksums: true,
            direct: None,
            preferred_slot: None,
            local_alloc_mb: None,
            cache_mb: 64,
        }
    }
}

impl MountOptions {
    /// Options for a writable open, the rest as by default.
    pub fn writable() -> Self {
        MountOptions { read_only: false, ..Default::default() }
    }
}

/// Sizes that every layer needs, derived once from the superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: u32,
    pub block_bits: u32,
    pub cluster_size: u32,
    pub cluster_bits: u32,
    /// Volume size in clusters (the superblock inode's i_clusters).
    pub clusters: u32,
}

impl Geometry {
    pub fn blocks_per_cluster(&self) -> u64 {
        1u64 << (self.cluster_bits - self.block_bits)
    }

    /// First block of cluster `cluster`.
    pub fn cluster_to_block(&self, cluster: u64) -> u64 {
        cluster << (self.cluster_bits - self.block_bits)
    }

    pub fn block_offset(&self, blkno: u64) -> u64 {
        blkno << self.block_bits
    }
}

/// What the superblock says about the volume, for display and for callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub label: String,
    pub uuid: [u8; 16],
    pub block_size: u32,
    pub cluster_size: u32,
    pub clusters: u32,
    pub max_slots: u16,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub feature_ro_compat: u32,
    /// Cluster stack name ("o2cb", "pcmk") when the volume records one.
    pub cluster_stack: Option<String>,
    pub cluster_name: Option<String>,
    pub root_blkno: u64,
    pub system_dir_blkno: u64,
    pub fs_generation: u32,
}

impl VolumeInfo {
    /// True for volumes formatted with `-M local`.
    pub fn is_local(&self) -> bool {
        self.feature_incompat & FEATURE_INCOMPAT_LOCAL_MOUNT != 0
    }

    /// The UUID as 32 uppercase hex digits, as o2cb names the heartbeat region and DLM domain.
    pub fn uuid_hex(&self) -> String {
        self.uuid.iter().map(|b| format!("{b:02X}")).collect()
    }
}

/// State shared by every handle of one open volume.
pub(crate) struct VolumeInner {
    pub geo: Geometry,
    pub info: VolumeInfo,
    pub sb: SuperBlock,
    pub meta: MetaReader,
    pub inodes: InodeTable,
    pub locks: Locks,
    /// System directory entries by name.
    pub system_files: BTreeMap<String, u64>,
    /// The volume has metaecc: every block written gets its check field filled.
    pub metaecc: bool,
    /// Present on a writable volume: the journal, the slot and the allocation policy, behind
    /// the lock every transaction holds.
    pub write: Option<Mutex<WriteState>>,
    /// Bumped by every commit, so cached inode views know to reread.
    pub write_seq: AtomicU64,
    /// Inodes held open through [`Volume::hold`](super::orphan::OpenInode).
    pub holds: super::orphan::Holds,
    /// The thread that commits the running transaction every few seconds (writable volumes).
    pub committer: Mutex<Option<super::tx::Committer>>,
}

impl VolumeInner {
    /// The block of system inode `kind` (of `slot` for per-slot files).
    pub(crate) fn system_inode(&self, kind: SystemInode, slot: u16) -> Result<u64> {
        let name = kind.name(slot);
        self.system_files.get(&name).copied().ok_or_else(|| Error::NotFound(format!("//{name}")))
    }
}

impl Drop for VolumeInner {
    fn drop(&mut self) {
        if self.write.is_some() {
            if let Err(e) = super::mount::shutdown(self) {
                log::error!("closing the volume on drop failed: {e}");
            }
        }
    }
}

/// An open OCFS2 volume.
///
/// A `Volume` is a cheap handle (clones share one open volume) that any number of threads use
/// at once. It offers two levels: paths and handles ([`Volume::open_file`], [`Volume::stat`],
/// [`Volume::create_dir`], ...; see [`File`](super::File)), and inode numbers, which is what a
/// FUSE server works with:
///
/// ```
/// use ocfs2::mkfs::{mkfs, MkfsOptions, MountType};
/// use ocfs2::{Error, MemDevice, MountOptions, Volume};
///
/// let dev = std::sync::Arc::new(MemDevice::new(64 << 20));
/// mkfs(&*dev, &MkfsOptions { mount: Some(MountType::Local), ..Default::default() })?;
/// let vol = Volume::open(dev, MountOptions::writable())?;
/// let dir = vol.mkdir(vol.root(), b"data", 0o755)?;
/// let ino = vol.create(dir, b"blob", 0o644)?;
/// vol.write(ino, 4096, b"after a hole")?;
/// let mut buf = vec![0u8; 8192];
/// assert_eq!(vol.read(ino, 0, &mut buf)?, 4096 + 12);
/// assert_eq!(vol.lookup(dir, b"blob")?, ino);
/// // Failures carry the errno a C or FUSE caller returns.
/// let e = vol.mkdir(vol.root(), b"data", 0o755).unwrap_err();
/// assert!(matches!(e, Error::Exists(_)) && e.errno() == libc::EEXIST);
/// vol.close()?; // writes the journal out and gives the slot back
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Volume {
    pub(crate) inner: Arc<VolumeInner>,
}

/// Where a superblock was found and what it said.
struct Probe {
    block_size: u32,
    block: Vec<u8>,
    dinode: Dinode,
    sb: SuperBlock,
}

fn probe_superblock(dev: &dyn BlockDevice) -> Result<Probe> {
    let mut last_err = None;
    for bits in 9..=12u32 {
        let bs = 1u32 << bits;
        let offset = SUPER_BLOCK_BLKNO << bits;
        if offset + bs as u64 > dev.len() {
            continue;
        }
        let mut block = vec![0u8; bs as usize];
        dev.read_at(offset, &mut block)?;
        if !block.starts_with(SUPER_BLOCK_SIGNATURE) {
            continue;
        }
        match SuperBlock::decode_block(&block) {
            Ok((dinode, sb)) if sb.s_blocksize_bits == bits => {
                return Ok(Probe { block_size: bs, block, dinode, sb });
            }
            Ok((_, sb)) => {
                last_err = Some(format!(
                    "superblock at block 2 for {bs}-byte blocks says the block size is 2^{}",
                    sb.s_blocksize_bits
                ))
            }
            Err(e) => last_err = Some(e.to_string()),
        }
    }
    Err(Error::NotOcfs2(
        last_err
            .unwrap_or_else(|| "no \"OCFSV2\" signature at block 2 for any block size from 512 to 4096 bytes".into()),
    ))
}

/// Checks the superblock's numbers before anything trusts them.
fn check_superblock(p: &Probe, dev_len: u64) -> Result<Geometry> {
    let sb = &p.sb;
    let at = SUPER_BLOCK_BLKNO;
    if sb.s_major_rev_level != MAJOR_REV_LEVEL {
        return Err(Error::Unsupported(format!(
            "format revision {}.{} (this library knows {}.{})",
            sb.s_major_rev_level, sb.s_minor_rev_level, MAJOR_REV_LEVEL, MINOR_REV_LEVEL
        )));
    }
    if !(12..=20).contains(&sb.s_clustersize_bits) || sb.s_clustersize_bits < sb.s_blocksize_bits {
        return Err(Error::corrupt(at, format!("cluster size 2^{} is invalid", sb.s_clustersize_bits)));
    }
    if sb.s_max_slots == 0 || sb.s_max_slots > MAX_SLOTS {
        return Err(Error::corrupt(at, format!("slot count {} is outside 1..=255", sb.s_max_slots)));
    }
    let geo = Geometry {
        block_size: p.block_size,
        block_bits: sb.s_blocksize_bits,
        cluster_size: 1 << sb.s_clustersize_bits,
        cluster_bits: sb.s_clustersize_bits,
        clusters: p.dinode.i_clusters,
    };
    let blocks = dev_len >> geo.block_bits;
    for (what, blkno) in [("root directory", sb.s_root_blkno), ("system directory", sb.s_system_dir_blkno)] {
        if blkno <= SUPER_BLOCK_BLKNO || blkno >= blocks {
            return Err(Error::corrupt(at, format!("{what} at block {blkno} is outside the volume")));
        }
    }
    let volume_bytes = (geo.clusters as u64) << geo.cluster_bits;
    if volume_bytes > dev_len {
        return Err(Error::corrupt(
            at,
            format!("the volume claims {volume_bytes} bytes but the device has only {dev_len}"),
        ));
    }
    let incompat = sb.s_feature_incompat;
    if incompat & FEATURE_INCOMPAT_HEARTBEAT_DEV != 0 {
        return Err(Error::Unsupported("this is a heartbeat-only device, not a filesystem".into()));
    }
    if incompat & (FEATURE_INCOMPAT_TUNEFS_INPROG | FEATURE_INCOMPAT_RESIZE_INPROG) != 0 {
        return Err(Error::Unsupported(
            "an interrupted tunefs.ocfs2 left the volume in transition; run fsck.ocfs2 first".into(),
        ));
    }
    let unknown = incompat & !FEATURE_INCOMPAT_READ_SUPP;
    if unknown != 0 {
        return Err(Error::Unsupported(format!("incompatible feature bits {unknown:#x}")));
    }
    Ok(geo)
}

fn field_string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes::cstr(bytes)).into_owned()
}

impl Volume {
    /// Opens the volume on `dev`.
    pub fn open(dev: impl BlockDevice + 'static, options: MountOptions) -> Result<Volume> {
        let dev: Arc<dyn BlockDevice> = Arc::new(dev);
        let probe = probe_superblock(dev.as_ref())?;
        let geo = check_superblock(&probe, dev.len())?;
        let sb = probe.sb.clone();
        if !options.read_only {
            super::mount::check_writable_features(&sb)?;
        }
        let has_metaecc = sb.s_feature_incompat & FEATURE_INCOMPAT_META_ECC != 0;
        let metaecc = options.verify_checksums && has_metaecc;
        let mut meta = MetaReader::new(dev, geo, probe.dinode.i_fs_generation, metaecc);
        meta.set_cache_bytes(u64::from(options.cache_mb) << 20);
        // The superblock itself is checked like any inode block once the reader exists.
        meta.check_block(SUPER_BLOCK_BLKNO, BlockKind::SuperBlock, &mut probe.block.clone())?;
        let stack = (sb.s_feature_incompat & FEATURE_INCOMPAT_USERSPACE_STACK != 0
            || sb.s_feature_incompat & FEATURE_INCOMPAT_CLUSTERINFO != 0)
            .then(|| field_string(&sb.s_cluster_info.ci_stack));
        let cluster_name = stack.as_ref().map(|_| field_string(&sb.s_cluster_info.ci_cluster));
        let info = VolumeInfo {
            label: field_string(&sb.s_label),
            uuid: sb.s_uuid,
            block_size: geo.block_size,
            cluster_size: geo.cluster_size,
            clusters: geo.clusters,
            max_slots: sb.s_max_slots,
            feature_compat: sb.s_feature_compat,
            feature_incompat: sb.s_feature_incompat,
            feature_ro_compat: sb.s_feature_ro_compat,
            cluster_stack: stack,
            cluster_name,
            root_blkno: sb.s_root_blkno,
            system_dir_blkno: sb.s_system_dir_blkno,
            fs_generation: probe.dinode.i_fs_generation,
        };
        let inner = VolumeInner {
            geo,
            info,
            sb,
            meta,
            inodes: InodeTable::default(),
            locks: Locks::new(Box::new(NoClusterLocks)),
            system_files: BTreeMap::new(),
            metaecc: has_metaecc,
            write: None,
            write_seq: AtomicU64::new(0),
            holds: Default::default(),
            committer: Mutex::new(None),
        };
        let mut vol = Volume { inner: Arc::new(inner) };
        let system_files = vol.load_system_files()?;
        Arc::get_mut(&mut vol.inner).expect("no other handle exists yet").system_files = system_files;
        if !options.read_only {
            let (ws, recovery) = super::mount::mount(&vol.inner, &options)?;
            Arc::get_mut(&mut vol.inner).expect("no other handle exists yet").write = Some(Mutex::new(ws));
            if let Err(e) = super::mount::recover(&vol.inner, &recovery) {
                // Leave the journal marked dirty and the slot taken: the next open recovers.
                if let Some(w) = &vol.inner.write {
                    w.lock().stop(format!("recovery at open failed: {e}"));
                }
                return Err(e);
            }
            super::tx::start_committer(&vol.inner);
        }
        Ok(vol)
    }

    /// True when the volume was opened for writing and can still be written.
    pub fn is_writable(&self) -> bool {
        self.inner.write.as_ref().is_some_and(|w| w.lock().check_usable().is_ok())
    }

    /// The slot this node holds, on a writable volume.
    pub fn slot(&self) -> Option<u16> {
        self.inner.write.as_ref().map(|w| w.lock().slot)
    }

    /// Closes a writable volume cleanly: returns the local alloc window's unused clusters,
    /// empties the truncate log, checkpoints the journal, marks it clean and gives the slot
    /// back. Other handles of the volume can still read afterwards but not write. Dropping the
    /// last handle does the same, without reporting errors. A volume that stopped writing after
    /// a failure is left as it is (journal dirty, slot taken), for the next open to recover.
    pub fn close(self) -> Result<()> {
        if self.inner.write.is_none() {
            return Ok(());
        }
        super::mount::shutdown(&self.inner)
    }

    /// Opens the image file or block device at `path`.
    pub fn open_path(path: impl AsRef<std::path::Path>, options: MountOptions) -> Result<Volume> {
        let path = path.as_ref();
        let dev = crate::device::FileDevice::open_with(
            path,
            crate::device::FileDeviceOptions { writable: !options.read_only, direct: options.direct },
        )
        .map_err(|e| {
            Error::Io(crate::device::DeviceError::Io {
                op: "open",
                offset: 0,
                len: 0,
                errno: e.raw_os_error().unwrap_or(libc::EIO),
            })
        })?;
        Volume::open(dev, options)
    }

    fn load_system_files(&self) -> Result<BTreeMap<String, u64>> {
        let dir = self.inner.info.system_dir_blkno;
        let mut map = BTreeMap::new();
        for entry in self.read_dir(dir)? {
            map.insert(String::from_utf8_lossy(&entry.name).into_owned(), entry.ino);
        }
        Ok(map)
    }

    /// The superblock's description of the volume.
    pub fn info(&self) -> &VolumeInfo {
        &self.inner.info
    }

    /// Block and cluster sizes.
    pub fn geometry(&self) -> Geometry {
        self.inner.geo
    }

    /// Inode number of the root directory.
    pub fn root(&self) -> u64 {
        self.inner.info.root_blkno
    }

    /// Inode number of the system directory (what debugfs.ocfs2 calls `//`).
    pub fn system_dir(&self) -> u64 {
        self.inner.info.system_dir_blkno
    }

    /// The system files by name, as the system directory lists them.
    pub fn system_files(&self) -> &BTreeMap<String, u64> {
        &self.inner.system_files
    }

    /// The system file called `name`, if the volume has it.
    pub fn system_file(&self, name: &str) -> Result<u64> {
        self.inner.system_files.get(name).copied().ok_or_else(|| Error::NotFound(format!("//{name}")))
    }

    pub(crate) fn inode(&self, blkno: u64) -> Result<Arc<Inode>> {
        self.inner.inodes.get(&self.inner, blkno)
    }
}
