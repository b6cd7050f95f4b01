//! Where everything goes: a model of the allocations mkfs.ocfs2 makes, run in memory.
//!
//! mkfs.ocfs2 works in two stages and this module follows both, so that block numbers come out
//! as the real tool's do:
//! 1. its own allocator (`alloc_from_bitmap` in `mkfs.c`) lays out the global bitmap, the system
//!    inode group, the root and system directories, the heartbeat area and the orphan
//!    directories, taking the first group (in chain order) with enough free bits;
//! 2. libocfs2 then places backup superblocks, journals, extent allocator groups, the slot map,
//!    directory indexes and lost+found, taking clusters first-fit in address order
//!    (`ocfs2_bitmap_alloc_range`) and suballocator bits lowest address first.
//!
//! The result is a [`Layout`]: every block number, every bitmap and every directory's entries,
//! ready to be encoded. No I/O happens here.
//!
//! Invariants of a `Layout`: every cluster a structure uses is set in exactly one group of the
//! global bitmap; every inode, dx root and group descriptor sits on a bit set in its allocator;
//! the used and free counts of each group, chain and allocator agree with the bitmaps.

use super::features::FeatureSet;
use super::geometry::Geometry;
use super::MkfsError;
use crate::format::chain::chain_recs_per_inode;
use crate::format::constants::*;
use crate::format::dir::dir_rec_len;
use crate::format::dir_trailer::{supports_dir_trailer, trailer_offset};
use crate::format::dx::{dx_entries_per_leaf, dx_entries_per_root, dx_hash, dx_hash_block_index, DxEntry};
use crate::format::extent::extent_recs_per_dx_root;
use crate::format::extent::extent_recs_per_inode;
use crate::format::group::group_bitmap_size;
use crate::format::inline::max_inline_data_with_xattr;

/// Block of the superblock.
const SUPER_BLKNO: u64 = SUPER_BLOCK_BLKNO;
/// Longest system file name mkfs.ocfs2 budgets for when it sizes the system directory.
const SYSTEM_FILE_NAME_MAX: usize = 40;
/// The blocks `blocks_needed` counts besides the system files: three for the superblock area,
/// one each for the root directory, the system directory and lost+found.
const FIXED_INODE_BLOCKS: u32 = 6;
/// Blocks in the heartbeat area: one per possible node, plus one.
const HEARTBEAT_BLOCKS: u64 = O2NM_MAX_NODES as u64 + 1;

fn chain_recs(block_size: u32) -> u16 {
    chain_recs_per_inode(block_size as usize)
}

/// Bytes of inline data an inode without inline xattrs holds.
pub fn max_inline_data(block_size: u32) -> u32 {
    max_inline_data_with_xattr(block_size as usize, 0) as u32
}

/// Bitmap bytes of a group descriptor (the whole rest of the block, or 256 bytes for a
/// suballocator group on a discontig-bg volume).
fn bitmap_bytes(block_size: u32, suballocator: bool, incompat: u32) -> u16 {
    group_bitmap_size(block_size as usize, suballocator, incompat)
}

/// Byte offsets of the backup superblocks (1G, 4G, 16G, 64G, 256G, 1T) that fit in the volume,
/// as block numbers.
pub fn backup_superblocks(geo: &Geometry) -> Vec<u64> {
    (0..MAX_BACKUP_SUPERBLOCKS)
        .map(|i| (BACKUP_SB_START << (2 * i)) >> geo.block_bits)
        .take_while(|&blkno| blkno < geo.blocks)
        .collect()
}

/// One run of clusters of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First logical cluster of the file the run maps.
    pub cpos: u32,
    /// First block of the run.
    pub blkno: u64,
    pub clusters: u32,
}

/// Where an inode (or another suballocated block) lives and which allocator bit owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockLoc {
    pub blkno: u64,
    /// `OCFS2_INVALID_SLOT` for the global inode allocator.
    pub suballoc_slot: u16,
    pub suballoc_bit: u16,
    /// The group descriptor holding the bit; mkfs.ocfs2 leaves it 0 for the inodes it makes
    /// itself and libocfs2 fills it in.
    pub suballoc_loc: u64,
}

/// A group of a chain allocator, with its final bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub blkno: u64,
    pub bits: u16,
    pub chain: u16,
    pub next_group: u64,
    /// `bg_size`: bytes of bitmap space in the descriptor.
    pub bitmap_size: u16,
    /// `bits` bits, rounded up to bytes.
    pub bitmap: Vec<u8>,
    /// For cluster groups, the first cluster the group covers; for block groups the first
    /// block (the descriptor's own block).
    pub first_unit: u64,
    /// Set bits, kept with the bitmap so that searches skip full groups cheaply.
    used: u32,
}

impl Group {
    fn new(blkno: u64, bits: u16, chain: u16, bitmap_size: u16, first_unit: u64) -> Self {
        let mut g = Group {
            blkno,
            bits,
            chain,
            next_group: 0,
            bitmap_size,
            bitmap: vec![0; (bits as usize).div_ceil(8)],
            first_unit,
            used: 0,
        };
        // The descriptor itself takes the first bit.
        g.set(0);
        g
    }

    pub fn test(&self, bit: u32) -> bool {
        self.bitmap[(bit / 8) as usize] & (1 << (bit % 8)) != 0
    }

    fn set(&mut self, bit: u32) {
        debug_assert!(!self.test(bit), "bit {bit} of group {} set twice", self.blkno);
        self.bitmap[(bit / 8) as usize] |= 1 << (bit % 8);
        self.used += 1;
    }

    pub fn used(&self) -> u32 {
        self.used
    }

    pub fn free(&self) -> u32 {
        self.bits as u32 - self.used()
    }

    /// The first run of `n` clear bits (mkfs.ocfs2's `find_clear_bits`).
    fn first_run(&self, n: u32) -> Option<u32> {
        let mut run = 0;
        for bit in 0..self.bits as u32 {
            if self.test(bit) {
                run = 0;
            } else {
                run += 1;
                if run == n {
                    return Some(bit + 1 - n);
                }
            }
        }
        None
    }

    /// libocfs2's `alloc_range_func` on one group: the first run of `len` clear bits, or else
    /// the longest run if it has at least `min` bits. Returns (first bit, bits).
    fn range(&self, min: u32, len: u32) -> Option<(u32, u32)> {
        if self.free() < min {
            return None;
        }
        let total = self.bits as u32;
        let mut best: Option<(u32, u32)> = None;
        let mut start = 0;
        while start + min <= total {
            let Some(s) = (start..total).find(|&b| !self.test(b)) else { break };
            let e = (s..total).find(|&b| self.test(b)).unwrap_or(total);
            if e - s >= len {
                return Some((s, len));
            }
            let longer = match best {
                Some((_, l)) => e - s > l,
                None => true,
            };
            if longer {
                best = Some((s, e - s));
            }
            start = e + 1;
        }
        best.filter(|&(_, l)| l >= min)
    }

    fn set_range(&mut self, first: u32, n: u32) {
        for b in first..first + n {
            self.set(b);
        }
    }
}

/// A chain allocator: the global bitmap, the global inode allocator, or a slot's inode or
/// extent allocator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainAlloc {
    /// `cl_cpg`.
    pub cpg: u16,
    /// `cl_bpc`.
    pub bpc: u16,
    /// `cl_count`.
    pub count: u16,
    pub groups: Vec<Group>,
    /// For each chain in use, its groups head first.
    pub chains: Vec<Vec<usize>>,
}

impl ChainAlloc {
    fn new(cpg: u16, bpc: u16, count: u16) -> Self {
        ChainAlloc { cpg, bpc, count, groups: Vec::new(), chains: Vec::new() }
    }

    pub fn used(&self) -> u32 {
        self.groups.iter().map(Group::used).sum()
    }

    pub fn total(&self) -> u32 {
        self.groups.iter().map(|g| g.bits as u32).sum()
    }

    /// Clusters the allocator's groups occupy (a suballocator's `i_clusters`).
    pub fn clusters(&self) -> u32 {
        self.total() / self.bpc as u32
    }

    /// (free, total, head blkno) of chain `c`.
    pub fn chain_rec(&self, c: usize) -> (u32, u32, u64) {
        let list = &self.chains[c];
        let free = list.iter().map(|&g| self.groups[g].free()).sum();
        let total = list.iter().map(|&g| self.groups[g].bits as u32).sum();
        (free, total, self.groups[list[0]].blkno)
    }

    /// Puts a new group at the head of chain `chain`, as `ocfs2_chain_add_group` does.
    fn push_head(&mut self, mut group: Group, chain: usize) {
        let idx = self.groups.len();
        if chain == self.chains.len() {
            self.chains.push(Vec::new());
        }
        if let Some(&old_head) = self.chains[chain].first() {
            group.next_group = self.groups[old_head].blkno;
        }
        group.chain = chain as u16;
        self.groups.push(group);
        self.chains[chain].insert(0, idx);
    }

    /// Takes the lowest free bit, lowest group address first; returns (group index, bit).
    fn take_bit(&mut self) -> Option<(usize, u32)> {
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        order.sort_by_key(|&g| self.groups[g].blkno);
        for g in order {
            if let Some(bit) = self.groups[g].first_run(1) {
                self.groups[g].set(bit);
                return Some((g, bit));
            }
        }
        None
    }
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryPlan {
    pub name: String,
    pub inode: u64,
    pub file_type: u8,
}

/// A directory to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirPlan {
    pub inode: BlockLoc,
    /// System directories carry `OCFS2_SYSTEM_FL`.
    pub system: bool,
    /// Every entry, "." and ".." first.
    pub entries: Vec<DirEntryPlan>,
    /// Entries live in the inode (inline-data).
    pub inline: bool,
    /// The cluster run of a block directory.
    pub extent: Option<Extent>,
    /// For block directories, the entries (indices into `entries`) of each used block.
    pub blocks: Vec<Vec<usize>>,
    /// Blocks end with a directory trailer.
    pub trailer: bool,
    /// The index root, for indexed directories.
    pub dx_root: Option<BlockLoc>,
    /// Leaf clusters of an index too big for its root, by ascending first major hash; empty
    /// when the entries sit inline in the root.
    pub dx_leaves: Vec<DxCluster>,
    pub size: u64,
}

/// One leaf cluster of a directory index: names whose major hash is at least `cpos` (and
/// below the next cluster's) live in its blocks, the minor hash choosing the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DxCluster {
    pub cpos: u32,
    pub blkno: u64,
    /// The entries of each block of the cluster, in order.
    pub leaves: Vec<Vec<DxEntry>>,
}

/// The major hash at which a full leaf's cluster splits (`ocfs2_dx_dir_find_leaf_split`):
/// the first hash above the cluster's own from the median of the sorted leaf on, with the
/// special cases of a leaf whose names all share one major hash.
fn dx_split_hash(leaf: &[DxEntry], leaf_cpos: u32, insert_hash: u32) -> Result<u32, MkfsError> {
    let mut sorted = leaf.to_vec();
    sorted.sort_unstable_by_key(|e| (e.dx_major_hash, e.dx_minor_hash));
    let crowded = || MkfsError::Unsupported("too many names share a directory hash".into());
    let first = sorted.first().ok_or_else(crowded)?.dx_major_hash;
    if sorted.iter().all(|e| e.dx_major_hash == first) {
        return if first == insert_hash {
            Err(crowded())
        } else if first == leaf_cpos {
            leaf_cpos.checked_add(1).ok_or_else(crowded)
        } else if first > insert_hash {
            Ok(first)
        } else {
            Ok(insert_hash)
        };
    }
    sorted[sorted.len() / 2..].iter().map(|e| e.dx_major_hash).find(|&h| h > leaf_cpos).ok_or_else(crowded)
}

impl DirPlan {
    /// `i_links_count`: one for each directory entry that names a directory (".", ".." and
    /// subdirectories), as mkfs.ocfs2 counts.
    pub fn links(&self) -> u16 {
        self.entries.iter().filter(|e| e.file_type == FT_DIR).count() as u16
    }

    pub fn clusters(&self) -> u32 {
        self.extent.map_or(0, |e| e.clusters)
    }
}

/// A system file and where its inode lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemFilePlan {
    pub kind: SystemInode,
    /// The slot of a per-slot file (0 for global files).
    pub slot: u16,
    pub inode: BlockLoc,
}

impl SystemFilePlan {
    pub fn name(&self) -> String {
        self.kind.name(self.slot)
    }
}

/// The complete plan of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub geo: Geometry,
    /// Features as written in the superblock.
    pub features: FeatureSet,
    pub first_cluster_group: u64,
    pub global_bitmap: ChainAlloc,
    pub global_inode_alloc: ChainAlloc,
    pub inode_allocs: Vec<ChainAlloc>,
    pub extent_allocs: Vec<ChainAlloc>,
    pub root: DirPlan,
    pub system_dir: DirPlan,
    pub orphan_dirs: Vec<DirPlan>,
    pub lost_found: DirPlan,
    /// Every system file except the directories above, in system-directory order.
    pub system_files: Vec<SystemFilePlan>,
    pub heartbeat: Extent,
    pub heartbeat_size: u64,
    pub slot_map: Extent,
    pub journals: Vec<Vec<Extent>>,
    pub backup_superblocks: Vec<u64>,
}

impl Layout {
    /// The inode of a system file.
    pub fn system_file(&self, kind: SystemInode, slot: u16) -> Option<&SystemFilePlan> {
        self.system_files.iter().find(|f| f.kind == kind && (!kind.per_slot() || f.slot == slot))
    }

    /// The inode block of a system file (the orphan directories included).
    pub fn system_inode(&self, kind: SystemInode, slot: u16) -> Option<u64> {
        if kind == SystemInode::OrphanDir {
            return self.orphan_dirs.get(slot as usize).map(|d| d.inode.blkno);
        }
        self.system_file(kind, slot).map(|f| f.inode.blkno)
    }

    /// Bytes of the slot map file: its whole allocation.
    pub fn slot_map_size(&self) -> u64 {
        (self.slot_map.clusters as u64) << self.geo.cluster_bits
    }
}

/// The choices the layout depends on besides the geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutRequest {
    /// Features as mkfs starts from them (before it adds local-mount and cluster bits).
    pub features: FeatureSet,
    /// Features to write in the superblock.
    pub super_features: FeatureSet,
    pub backup_super: bool,
    /// The four directory hash seeds (`s_dx_seed` and `s_uuid_hash`), which decide how big
    /// the indexes grow.
    pub dx_seeds: [u32; 4],
}

/// Plans the whole volume.
pub fn plan(geo: &Geometry, req: &LayoutRequest) -> Result<Layout, MkfsError> {
    Builder::new(geo, req).build()
}

struct Builder {
    geo: Geometry,
    features: FeatureSet,
    inline: bool,
    indexed: bool,
    /// New directory blocks get trailers (`ocfs2_supports_dir_trailer`).
    trailers: bool,
    backup_super: bool,
    super_features: FeatureSet,
    first_cluster_group: u64,
    global: ChainAlloc,
    dx_seeds: [u32; 4],
}

fn no_space(what: &str) -> MkfsError {
    MkfsError::TooSmall(format!("no room left on the volume for {what}"))
}

impl Builder {
    fn new(geo: &Geometry, req: &LayoutRequest) -> Self {
        let f = req.features;
        Builder {
            geo: *geo,
            features: f,
            inline: f.has_incompat(FEATURE_INCOMPAT_INLINE_DATA),
            indexed: f.has_incompat(FEATURE_INCOMPAT_INDEXED_DIRS),
            trailers: supports_dir_trailer(f.incompat),
            backup_super: req.backup_super,
            super_features: req.super_features,
            first_cluster_group: 0,
            global: ChainAlloc::new(0, 1, chain_recs(geo.block_size)),
            dx_seeds: req.dx_seeds,
        }
    }

    fn c2b(&self) -> u32 {
        self.geo.cluster_bits - self.geo.block_bits
    }

    fn cluster_blkno(&self, cluster: u64) -> u64 {
        cluster << self.c2b()
    }

    /// `initialize_bitmap`: the cluster groups and their chains.
    fn init_global_bitmap(&mut self) {
        let g = self.geo;
        let c2b = self.c2b();
        let recs = chain_recs(g.block_size) as usize;
        let bitmap_size = bitmap_bytes(g.block_size, false, 0);
        self.global.cpg = bitmap_bytes(g.block_size, false, 0) * 8;
        // The first group descriptor goes in the first cluster after the superblock.
        let fcg_cluster = (SUPER_BLKNO + 1).div_ceil(1 << c2b);
        self.first_cluster_group = fcg_cluster << c2b;
        for i in 0..g.cluster_groups {
            let bits = if i == 0 {
                g.global_cpg
            } else if i == g.cluster_groups - 1 {
                g.tail_group_bits
            } else {
                g.global_cpg
            };
            let first = i as u64 * g.global_cpg as u64;
            let blkno = if i == 0 { self.first_cluster_group } else { first << c2b };
            let mut group = Group::new(blkno, bits as u16, 0, bitmap_size, first);
            if i == 0 {
                // The clusters before the first group descriptor hold the superblock area.
                for bit in 1..=fcg_cluster as u32 {
                    group.set(bit);
                }
            }
            let chain = i as usize % recs;
            // mkfs.ocfs2 links wrapped groups behind the earlier ones: heads stay lowest.
            let idx = self.global.groups.len();
            group.chain = chain as u16;
            if chain == self.global.chains.len() {
                self.global.chains.push(Vec::new());
            }
            if let Some(&tail) = self.global.chains[chain].last() {
                self.global.groups[tail].next_group = blkno;
            }
            self.global.groups.push(group);
            self.global.chains[chain].push(idx);
        }
    }

    /// mkfs.ocfs2's own cluster allocator: the first group in chain order with enough free
    /// bits, then the first run there. Returns the first cluster.
    fn mkfs_alloc(&mut self, clusters: u32, what: &str) -> Result<u64, MkfsError> {
        let order: Vec<usize> = self.global.chains.iter().flatten().copied().collect();
        for g in order {
            let group = &mut self.global.groups[g];
            if group.free() >= clusters {
                let bit = group.first_run(clusters).ok_or_else(|| no_space(what))?;
                group.set_range(bit, clusters);
                return Ok(group.first_unit + bit as u64);
            }
        }
        Err(no_space(what))
    }

    fn mkfs_alloc_bytes(&mut self, bytes: u64, what: &str) -> Result<Extent, MkfsError> {
        let clusters = self.geo.bytes_to_clusters(bytes) as u32;
        let first = self.mkfs_alloc(clusters, what)?;
        Ok(Extent { cpos: 0, blkno: self.cluster_blkno(first), clusters })
    }

    /// libocfs2's `ocfs2_new_clusters(min, len)`: groups in address order, first fit, else
    /// the longest run of at least `min`. Returns (first cluster, clusters).
    fn lib_alloc(&mut self, min: u32, len: u32, what: &str) -> Result<(u64, u32), MkfsError> {
        for group in self.global.groups.iter_mut() {
            if let Some((bit, n)) = group.range(min, len) {
                group.set_range(bit, n);
                return Ok((group.first_unit + bit as u64, n));
            }
        }
        Err(no_space(what))
    }

    /// `ocfs2_extend_allocation`: `clusters` more clusters for a file, in as many runs as
    /// the free space gives.
    fn lib_extend(&mut self, extents: &mut Vec<Extent>, clusters: u32, what: &str) -> Result<(), MkfsError> {
        let mut cpos: u32 = extents.iter().map(|e| e.clusters).sum();
        let mut left = clusters;
        while left > 0 {
            let (first, n) = self.lib_alloc(1, left, what)?;
            let blkno = self.cluster_blkno(first);
            match extents.last_mut() {
                Some(last)
                    if last.blkno + ((last.clusters as u64) << self.c2b()) == blkno
                        && last.clusters as u64 + n as u64 <= u16::MAX as u64 =>
                {
                    last.clusters += n;
                }
                _ => extents.push(Extent { cpos, blkno, clusters: n }),
            }
            cpos += n;
            left -= n;
        }
        if extents.len() > extent_recs_per_inode(self.geo.block_size as usize) as usize {
            return Err(MkfsError::Unsupported(format!(
                "{what} would need {} extents, more than an inode holds; free space is too \
                 fragmented for this geometry",
                extents.len()
            )));
        }
        Ok(())
    }

    /// `ocfs2_chain_add_group` for a block suballocator.
    fn add_suballoc_group(&mut self, alloc: &mut ChainAlloc, what: &str) -> Result<(), MkfsError> {
        let cpg = alloc.cpg as u32;
        let (first, _) = self.lib_alloc(cpg, cpg, what)?;
        let blkno = self.cluster_blkno(first);
        let chain = if alloc.chains.len() < alloc.count as usize {
            alloc.chains.len()
        } else {
            (alloc.clusters() / cpg) as usize % alloc.count as usize
        };
        let bitmap_size = bitmap_bytes(self.geo.block_size, true, self.features.incompat);
        let bits = (cpg * alloc.bpc as u32) as u16;
        alloc.push_head(Group::new(blkno, bits, chain as u16, bitmap_size, blkno), chain);
        Ok(())
    }

    /// A block from a slot's suballocator, growing it by a group when it is full.
    fn suballoc_block(&mut self, alloc: &mut ChainAlloc, slot: u16, what: &str) -> Result<BlockLoc, MkfsError> {
        if alloc.groups.iter().all(|g| g.free() == 0) {
            self.add_suballoc_group(alloc, what)?;
        }
        let (g, bit) = alloc.take_bit().ok_or_else(|| no_space(what))?;
        let group = &alloc.groups[g];
        Ok(BlockLoc {
            blkno: group.first_unit + bit as u64,
            suballoc_slot: slot,
            suballoc_bit: bit as u16,
            suballoc_loc: group.blkno,
        })
    }

    fn new_suballoc(&self) -> ChainAlloc {
        ChainAlloc::new(self.geo.sub_cpg as u16, self.geo.bpc() as u16, chain_recs(self.geo.block_size))
    }

    fn build(mut self) -> Result<Layout, MkfsError> {
        let g = self.geo;
        let slots = g.slots;
        self.init_global_bitmap();

        // The system inode group: room for every system inode of up to 32 slots, in clusters.
        let per_slot_kinds = SystemInode::ALL.iter().filter(|k| k.per_slot()).count() as u32;
        let global_kinds = SystemInode::ALL.len() as u32 - per_slot_kinds;
        let sys_blocks = |slots: u32| global_kinds + per_slot_kinds * slots;
        let inode_blocks = FIXED_INODE_BLOCKS + sys_blocks(slots.max(32) as u32);
        let sys_extent = self.mkfs_alloc_bytes((inode_blocks as u64) << g.block_bits, "the system inodes")?;
        let sys_group_bits = sys_extent.clusters * g.bpc();
        if sys_group_bits > 8 * bitmap_bytes(g.block_size, false, 0) as u32 {
            return Err(MkfsError::Unsupported(format!(
                "{slots} slots need {sys_group_bits} system inodes, more than one group holds \
                 with {}-byte blocks and {}-byte clusters",
                g.block_size, g.cluster_size
            )));
        }
        let mut sysalloc = ChainAlloc::new(sys_extent.clusters as u16, g.bpc() as u16, chain_recs(g.block_size));
        sysalloc.push_head(
            Group::new(
                sys_extent.blkno,
                sys_group_bits as u16,
                0,
                bitmap_bytes(g.block_size, false, 0),
                sys_extent.blkno,
            ),
            0,
        );
        let take_inode = |sysalloc: &mut ChainAlloc| -> Result<BlockLoc, MkfsError> {
            let (gi, bit) = sysalloc.take_bit().ok_or_else(|| no_space("the system inodes"))?;
            Ok(BlockLoc {
                blkno: sysalloc.groups[gi].first_unit + bit as u64,
                suballoc_slot: INVALID_SLOT,
                suballoc_bit: bit as u16,
                suballoc_loc: 0,
            })
        };

        // Root directory.
        let root_extent =
            if self.inline { None } else { Some(self.mkfs_alloc_bytes(1 << g.cluster_bits, "the root directory")?) };
        let root_inode = take_inode(&mut sysalloc)?;

        // System directory: inline only if its worst-case size fits in the inode.
        let sys_dir_budget = dir_rec_len(SYSTEM_FILE_NAME_MAX) as u64 * sys_blocks(slots as u32) as u64;
        let sys_inline = self.inline && sys_dir_budget <= max_inline_data(g.block_size) as u64;
        let sys_dir_extent = if sys_inline {
            None
        } else {
            let per_block = g.block_size as u64 / dir_rec_len(SYSTEM_FILE_NAME_MAX) as u64;
            let blocks = (sys_blocks(slots as u32) as u64).div_ceil(per_block);
            Some(self.mkfs_alloc_bytes(blocks << g.block_bits, "the system directory")?)
        };
        let sys_dir_inode = take_inode(&mut sysalloc)?;

        // The system files, in table order, one inode each (quota files are never made).
        let mut system_files = Vec::new();
        let mut orphan_inodes = Vec::new();
        for kind in SystemInode::ALL {
            if is_quota(kind) {
                continue;
            }
            let count = if kind.per_slot() { slots } else { 1 };
            for slot in 0..count {
                let inode = take_inode(&mut sysalloc)?;
                if kind == SystemInode::OrphanDir {
                    orphan_inodes.push(inode);
                } else {
                    system_files.push(SystemFilePlan { kind, slot, inode });
                }
            }
        }

        // Heartbeat area: one block per node.
        let hb = self.mkfs_alloc_bytes(HEARTBEAT_BLOCKS << g.block_bits, "the heartbeat area")?;
        let heartbeat_size = HEARTBEAT_BLOCKS << g.block_bits;

        // Orphan directories.
        let mut orphan_extents = Vec::new();
        for _ in 0..slots {
            orphan_extents.push(if self.inline {
                None
            } else {
                Some(self.mkfs_alloc_bytes(1 << g.cluster_bits, "the orphan directories")?)
            });
        }

        // Stage two: what libocfs2 adds.
        let backups = if self.backup_super { backup_superblocks(&g) } else { Vec::new() };
        for &b in &backups {
            let cluster = b >> self.c2b();
            let group = self
                .global
                .groups
                .iter_mut()
                .find(|gr| cluster >= gr.first_unit && cluster < gr.first_unit + gr.bits as u64)
                .ok_or_else(|| no_space("a backup superblock"))?;
            let bit = (cluster - group.first_unit) as u32;
            if group.test(bit) {
                return Err(MkfsError::TooSmall(format!(
                    "the cluster of the backup superblock at block {b} is already in use"
                )));
            }
            group.set(bit);
        }

        let mut journals = Vec::new();
        for slot in 0..slots {
            let mut ext = Vec::new();
            self.lib_extend(&mut ext, g.journal_clusters(), &format!("journal:{slot:04}"))?;
            journals.push(ext);
        }

        let mut inode_allocs: Vec<ChainAlloc> = (0..slots).map(|_| self.new_suballoc()).collect();
        let mut extent_allocs: Vec<ChainAlloc> = (0..slots).map(|_| self.new_suballoc()).collect();
        for alloc in extent_allocs.iter_mut() {
            for _ in 0..g.extent_alloc_groups() {
                self.add_suballoc_group(alloc, "the extent allocators")?;
            }
        }

        let slot_map_bytes = if self.super_features.has_incompat(FEATURE_INCOMPAT_EXTENDED_SLOT_MAP) {
            slots as u64 * 8
        } else {
            slots as u64 * 2
        };
        let mut slot_map_ext = Vec::new();
        self.lib_extend(&mut slot_map_ext, g.bytes_to_clusters(slot_map_bytes) as u32, "the slot map")?;
        let slot_map = match slot_map_ext.as_slice() {
            [one] => *one,
            _ => return Err(no_space("a contiguous slot map")),
        };

        // Directories. Block directories made by mkfs.ocfs2 itself have trailers whenever the
        // volume supports them; the root and orphan directories get indexed afterwards. Like
        // every inode mkfs.ocfs2 writes itself, the root directory carries the system flag.
        let mut root = self.dir(root_inode, root_inode.blkno, true, root_extent);
        let mut system_dir = self.dir(sys_dir_inode, sys_dir_inode.blkno, true, sys_dir_extent);
        let mut sys_entries = Vec::new();
        let mut files_iter = system_files.iter();
        for kind in SystemInode::ALL {
            if is_quota(kind) {
                continue;
            }
            let count = if kind.per_slot() { slots } else { 1 };
            for slot in 0..count {
                if kind == SystemInode::OrphanDir {
                    sys_entries.push(DirEntryPlan {
                        name: kind.name(slot),
                        inode: orphan_inodes[slot as usize].blkno,
                        file_type: FT_DIR,
                    });
                } else {
                    let f = files_iter.next().ok_or_else(|| no_space("the system files"))?;
                    sys_entries.push(DirEntryPlan { name: f.name(), inode: f.inode.blkno, file_type: FT_REG_FILE });
                }
            }
        }
        system_dir.entries.extend(sys_entries);

        let mut orphan_dirs = Vec::new();
        for (slot, inode) in orphan_inodes.iter().enumerate() {
            orphan_dirs.push(self.dir(*inode, sys_dir_inode.blkno, true, orphan_extents[slot]));
        }

        // Directory indexes (only when directories are not inline).
        if self.indexed && !self.inline {
            let mut ea0 = std::mem::replace(&mut extent_allocs[0], self.new_suballoc());
            root.dx_root = Some(self.suballoc_block(&mut ea0, 0, "directory indexes")?);
            for d in orphan_dirs.iter_mut() {
                d.dx_root = Some(self.suballoc_block(&mut ea0, 0, "directory indexes")?);
            }
            extent_allocs[0] = ea0;
        }

        // lost+found, an ordinary directory owned by slot 0.
        let mut ia0 = std::mem::replace(&mut inode_allocs[0], self.new_suballoc());
        let lf_inode = self.suballoc_block(&mut ia0, 0, "lost+found")?;
        inode_allocs[0] = ia0;
        let lf_extent = if self.inline {
            None
        } else {
            let mut ext = Vec::new();
            self.lib_extend(&mut ext, 1, "lost+found")?;
            ext.first().copied()
        };
        let mut lost_found = self.dir(lf_inode, root_inode.blkno, false, lf_extent);
        if self.indexed && !self.inline {
            let mut ea0 = std::mem::replace(&mut extent_allocs[0], self.new_suballoc());
            lost_found.dx_root = Some(self.suballoc_block(&mut ea0, 0, "directory indexes")?);
            extent_allocs[0] = ea0;
        }
        root.entries.push(DirEntryPlan { name: "lost+found".into(), inode: lf_inode.blkno, file_type: FT_DIR });

        for d in std::iter::once(&mut root)
            .chain(std::iter::once(&mut system_dir))
            .chain(orphan_dirs.iter_mut())
            .chain(std::iter::once(&mut lost_found))
        {
            self.pack(d)?;
        }

        // mkfs.ocfs2 leaves a block system directory without an index, which fsck.ocfs2
        // calls a missing index; give every block directory still lacking one an index, as
        // tunefs.ocfs2 and fsck.ocfs2 would build it, after everything else is placed.
        if self.indexed {
            for d in std::iter::once(&mut root)
                .chain(std::iter::once(&mut system_dir))
                .chain(orphan_dirs.iter_mut())
                .chain(std::iter::once(&mut lost_found))
            {
                if d.inline || d.dx_root.is_some() {
                    continue;
                }
                let mut ea0 = std::mem::replace(&mut extent_allocs[0], self.new_suballoc());
                d.dx_root = Some(self.suballoc_block(&mut ea0, 0, "directory indexes")?);
                extent_allocs[0] = ea0;
            }
            for d in std::iter::once(&mut root)
                .chain(std::iter::once(&mut system_dir))
                .chain(orphan_dirs.iter_mut())
                .chain(std::iter::once(&mut lost_found))
            {
                if d.dx_root.is_some() {
                    self.plan_dx_leaves(d)?;
                }
            }
        }

        Ok(Layout {
            geo: g,
            features: self.super_features,
            first_cluster_group: self.first_cluster_group,
            global_bitmap: self.global,
            global_inode_alloc: sysalloc,
            inode_allocs,
            extent_allocs,
            root,
            system_dir,
            orphan_dirs,
            lost_found,
            system_files,
            heartbeat: hb,
            heartbeat_size,
            slot_map,
            journals,
            backup_superblocks: backups,
        })
    }

    /// A directory holding "." and "..".
    fn dir(&self, inode: BlockLoc, parent: u64, system: bool, extent: Option<Extent>) -> DirPlan {
        DirPlan {
            inode,
            system,
            entries: vec![
                DirEntryPlan { name: ".".into(), inode: inode.blkno, file_type: FT_DIR },
                DirEntryPlan { name: "..".into(), inode: parent, file_type: FT_DIR },
            ],
            inline: extent.is_none(),
            extent,
            blocks: Vec::new(),
            trailer: extent.is_some() && self.trailers,
            dx_root: None,
            dx_leaves: Vec::new(),
            size: 0,
        }
    }

    /// Grows an index too big for its root into leaf clusters the way libocfs2's
    /// `ocfs2_dx_dir_build` does: names go in in directory order; when the root fills, its
    /// entries move to a first cluster (`ocfs2_expand_inline_dx_root`); when a leaf block
    /// fills, its cluster splits at the median major hash into a new cluster
    /// (`ocfs2_dx_dir_rebalance`).
    fn plan_dx_leaves(&mut self, d: &mut DirPlan) -> Result<(), MkfsError> {
        let bs = self.geo.block_size as usize;
        if d.entries.len() <= dx_entries_per_root(bs) as usize {
            return Ok(());
        }
        let extent = d.extent.ok_or_else(|| MkfsError::Unsupported("an index over an inline directory".into()))?;
        let per_leaf = dx_entries_per_leaf(bs) as usize;
        let bpc = 1u32 << self.c2b();
        let mut order = Vec::new();
        for (n, indices) in d.blocks.iter().enumerate() {
            for &i in indices {
                let (major, minor) = dx_hash(d.entries[i].name.as_bytes(), self.dx_seeds);
                order.push(DxEntry {
                    dx_major_hash: major,
                    dx_minor_hash: minor,
                    dx_dirent_blk: extent.blkno + n as u64,
                });
            }
        }
        let (root, rest) = order.split_at(dx_entries_per_root(bs) as usize);
        let mut clusters = vec![self.new_dx_cluster(0, bpc)?];
        for e in root {
            clusters[0].leaves[dx_hash_block_index(e.dx_minor_hash, bpc) as usize].push(*e);
        }
        for e in rest {
            let li = dx_hash_block_index(e.dx_minor_hash, bpc) as usize;
            let mut rebalanced = false;
            loop {
                let ci = clusters.iter().rposition(|c| c.cpos <= e.dx_major_hash).unwrap_or(0);
                if clusters[ci].leaves[li].len() < per_leaf {
                    clusters[ci].leaves[li].push(*e);
                    break;
                }
                if rebalanced {
                    return Err(MkfsError::Unsupported("a directory index leaf overflows".into()));
                }
                let split = dx_split_hash(&clusters[ci].leaves[li], clusters[ci].cpos, e.dx_major_hash)?;
                let mut new = self.new_dx_cluster(split, bpc)?;
                for (old, moved) in clusters[ci].leaves.iter_mut().zip(new.leaves.iter_mut()) {
                    let (go, stay): (Vec<DxEntry>, Vec<DxEntry>) = old.iter().partition(|x| x.dx_major_hash >= split);
                    *old = stay;
                    *moved = go;
                }
                clusters.insert(ci + 1, new);
                rebalanced = true;
            }
        }
        if clusters.len() > extent_recs_per_dx_root(bs) as usize {
            return Err(MkfsError::Unsupported("a directory index deeper than its root".into()));
        }
        d.dx_leaves = clusters;
        Ok(())
    }

    /// A cluster of empty leaf blocks for hashes from `cpos` on.
    fn new_dx_cluster(&mut self, cpos: u32, bpc: u32) -> Result<DxCluster, MkfsError> {
        let (first, _) = self.lib_alloc(1, 1, "directory indexes")?;
        Ok(DxCluster { cpos, blkno: self.cluster_blkno(first), leaves: vec![Vec::new(); bpc as usize] })
    }

    /// Places the entries of a directory: inline, or packed into blocks in order.
    fn pack(&self, d: &mut DirPlan) -> Result<(), MkfsError> {
        let bs = self.geo.block_size;
        if d.inline {
            let need: usize = d.entries.iter().map(|e| dir_rec_len(e.name.len())).sum();
            if need > max_inline_data(bs) as usize {
                return Err(MkfsError::Unsupported("a system directory does not fit inline".into()));
            }
            d.size = max_inline_data(bs) as u64;
            return Ok(());
        }
        let usable = if d.trailer { trailer_offset(bs as usize) } else { bs as usize };
        let mut blocks: Vec<Vec<usize>> = vec![Vec::new()];
        let mut used = 0;
        for (i, e) in d.entries.iter().enumerate() {
            let len = dir_rec_len(e.name.len());
            if used + len > usable {
                blocks.push(Vec::new());
                used = 0;
            }
            used += len;
            if let Some(last) = blocks.last_mut() {
                last.push(i);
            }
        }
        let capacity = d.extent.map_or(0, |e| (e.clusters as u64) << self.c2b());
        if blocks.len() as u64 > capacity {
            return Err(MkfsError::Unsupported("a directory outgrew its preallocated clusters".into()));
        }
        d.size = (blocks.len() as u64) << self.geo.block_bits;
        d.blocks = blocks;
        Ok(())
    }
}

fn is_quota(kind: SystemInode) -> bool {
    matches!(
        kind,
        SystemInode::UserQuota | SystemInode::GroupQuota | SystemInode::LocalUserQuota | SystemInode::LocalGroupQuota
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mkfs::features::{merge, FeatureLevel, FeatureRequest};
    use crate::mkfs::geometry::{compute, SizeRequest};
    use crate::mkfs::{FsType, MountType};

    fn layout(bytes: u64, b: u32, c: u32, n: u16, features: &str) -> Layout {
        let geo = compute(
            &SizeRequest {
                block_size: Some(b),
                cluster_size: Some(c),
                slots: Some(n),
                journal_size: None,
                journal_block64: false,
                mount: MountType::Local,
                fs_type: FsType::Default,
                block_count: None,
            },
            bytes,
            512,
        )
        .unwrap();
        let f = merge(FeatureLevel::Default, FeatureRequest::parse(features).unwrap()).unwrap();
        plan(&geo, &LayoutRequest { features: f, super_features: f, backup_super: true, dx_seeds: [1, 2, 3, 4] })
            .unwrap()
    }

    fn chains(a: &ChainAlloc) -> Vec<(u64, u32, u32)> {
        (0..a.chains.len()).map(|c| a.chain_rec(c)).map(|(f, t, b)| (b, t, t - f)).collect()
    }

    // The expected numbers are those debugfs.ocfs2 shows on images mkfs.ocfs2 1.8.7 made with
    // the same options on a 256 MiB file.

    #[test]
    fn default_features_place_like_mkfs_ocfs2() {
        let l = layout(256 << 20, 4096, 4096, 4, "");
        assert_eq!((l.root.inode.blkno, l.system_dir.inode.blkno, l.first_cluster_group), (5, 6, 3));
        assert!(l.root.inline && l.system_dir.inline && l.orphan_dirs[0].inline);
        assert_eq!(chains(&l.global_inode_alloc), vec![(4, 269, 32)]);
        assert_eq!(l.system_inode(SystemInode::BadBlock, 0), Some(7));
        assert_eq!(l.system_inode(SystemInode::GlobalBitmap, 0), Some(11));
        assert_eq!(l.system_inode(SystemInode::OrphanDir, 0), Some(12));
        assert_eq!(l.system_inode(SystemInode::Journal, 0), Some(24));
        assert_eq!(l.system_inode(SystemInode::TruncateLog, 3), Some(35));
        assert_eq!((l.heartbeat.blkno, l.heartbeat.clusters, l.heartbeat_size), (273, 256, 1 << 20));
        assert_eq!(l.journals[0], vec![Extent { cpos: 0, blkno: 529, clusters: 4096 }]);
        assert_eq!(l.journals[1][0].blkno, 4625);
        assert_eq!((l.slot_map.blkno, l.slot_map.clusters), (16913, 1));
        assert_eq!(chains(&l.inode_allocs[0]), vec![(16914, 1024, 2)]);
        assert!(l.extent_allocs[0].groups.is_empty());
        assert_eq!(l.lost_found.inode.blkno, 16915);
        assert_eq!(l.lost_found.inode.suballoc_loc, 16914);
        assert_eq!(chains(&l.global_bitmap), vec![(3, 32256, 17938), (32256, 32256, 1), (64512, 1024, 1)]);
        assert_eq!(l.global_bitmap.used(), 17940);
        assert_eq!(l.system_dir.links(), 6);
        assert_eq!(l.root.links(), 3);
        assert_eq!(l.root.size, 3896);
    }

    #[test]
    fn block_directories_and_indexes_place_like_mkfs_ocfs2() {
        let l = layout(256 << 20, 4096, 4096, 4, "noinline-data");
        let root_ext = l.root.extent.unwrap();
        assert_eq!(root_ext.blkno, 273);
        assert_eq!(l.system_dir.extent.unwrap().blkno, 274);
        assert_eq!(l.heartbeat.blkno, 275);
        assert_eq!(l.orphan_dirs[0].extent.unwrap().blkno, 531);
        assert_eq!(l.journals[0][0].blkno, 535);
        assert_eq!(l.slot_map.blkno, 16919);
        // Seven roots as mkfs.ocfs2 places them, then the system directory's, built last.
        assert_eq!(chains(&l.extent_allocs[0]), vec![(16920, 1024, 8)]);
        assert_eq!(l.root.dx_root.unwrap().blkno, 16921);
        assert_eq!(l.orphan_dirs[3].dx_root.unwrap().blkno, 16925);
        assert_eq!(l.lost_found.dx_root.unwrap().blkno, 16926);
        assert_eq!(l.system_dir.dx_root.unwrap().blkno, 16927);
        assert!(l.system_dir.dx_leaves.is_empty());
        assert_eq!(chains(&l.inode_allocs[0]), vec![(17944, 1024, 2)]);
        assert_eq!(l.lost_found.inode.blkno, 17945);
        assert_eq!(l.lost_found.extent.unwrap().blkno, 18968);
        assert_eq!(l.global_bitmap.used(), 18971);
        assert!(l.root.trailer && l.system_dir.trailer && l.lost_found.trailer);
        assert_eq!(l.orphan_dirs[0].size, 4096);
    }

    #[test]
    fn every_block_directory_gets_an_index() {
        // 512-byte blocks and 32 slots: the system directory outgrows both the inode and an
        // inline index root, so its index has leaf clusters.
        let l = layout(512 << 20, 512, 4096, 32, "");
        assert!(!l.system_dir.inline && l.system_dir.dx_root.is_some());
        assert!(l.root.inline && l.root.dx_root.is_none());
        let leaves = &l.system_dir.dx_leaves;
        assert!(!leaves.is_empty() && leaves[0].cpos == 0);
        assert!(leaves.windows(2).all(|w| w[0].cpos < w[1].cpos));
        let per_leaf = dx_entries_per_leaf(512) as usize;
        let mut n = 0;
        for (i, c) in leaves.iter().enumerate() {
            assert_eq!(c.leaves.len(), 8);
            let end = leaves.get(i + 1).map_or(u64::MAX, |next| next.cpos as u64);
            for (b, leaf) in c.leaves.iter().enumerate() {
                assert!(leaf.len() <= per_leaf);
                for e in leaf {
                    assert!(e.dx_major_hash >= c.cpos && (e.dx_major_hash as u64) < end);
                    assert_eq!(dx_hash_block_index(e.dx_minor_hash, 8) as usize, b);
                    n += 1;
                }
            }
        }
        assert_eq!(n, l.system_dir.entries.len());
        let ext = l.system_dir.extent.unwrap();
        // Four clusters of 512-byte directory blocks, the rest of which stay free for leaves.
        assert!(leaves.iter().all(|c| c.blkno >= ext.blkno + 8 * ext.clusters as u64 || c.blkno < ext.blkno));
    }

    #[test]
    fn full_leaves_split_like_libocfs2() {
        let e = |h: u32| DxEntry { dx_major_hash: h, dx_minor_hash: 0, dx_dirent_blk: 1 };
        // The first hash above the cluster's own from the median on.
        let leaf: Vec<DxEntry> = [9, 1, 5, 3, 7, 2].iter().map(|&h| e(h)).collect();
        assert_eq!(dx_split_hash(&leaf, 0, 4).unwrap(), 5);
        let low: Vec<DxEntry> = [4, 4, 4, 4, 6].iter().map(|&h| e(h)).collect();
        assert_eq!(dx_split_hash(&low, 4, 1).unwrap(), 6);
        // A leaf of one major hash: split above it, at it, or at the new name's.
        let same: Vec<DxEntry> = [5, 5, 5].iter().map(|&h| e(h)).collect();
        assert_eq!(dx_split_hash(&same, 5, 9).unwrap(), 6);
        assert_eq!(dx_split_hash(&same, 2, 3).unwrap(), 5);
        assert_eq!(dx_split_hash(&same, 2, 8).unwrap(), 8);
        assert!(dx_split_hash(&same, 2, 5).is_err());
    }

    #[test]
    fn allocators_stay_consistent_across_geometries() {
        for (b, c, n) in [(512, 4096, 4), (512, 1 << 20, 4), (4096, 1 << 20, 32), (1024, 65536, 32)] {
            let l = layout(768 << 20, b, c, n, "");
            let g = &l.global_bitmap;
            assert_eq!(g.total(), l.geo.clusters);
            for a in std::iter::once(&l.global_inode_alloc).chain(&l.inode_allocs).chain(&l.extent_allocs) {
                for grp in &a.groups {
                    assert!(grp.used() >= 1 && grp.bits as u32 == a.cpg as u32 * a.bpc as u32);
                }
            }
            // Every journal is whole and inside the volume.
            for j in &l.journals {
                let clusters: u32 = j.iter().map(|e| e.clusters).sum();
                assert_eq!(clusters, l.geo.journal_clusters());
                assert!(j.iter().all(|e| e.blkno < l.geo.blocks));
            }
        }
    }

    #[test]
    fn big_volume_splits_journals_at_group_boundaries_like_mkfs_ocfs2() {
        // 41 GiB, 4K/4K, 2 slots: journals of 65536 clusters span three cluster groups, the
        // extent allocators get six groups each, backups sit at 1G, 4G and 16G.
        let l = layout(41 << 30, 4096, 4096, 2, "");
        assert_eq!(
            l.journals[0],
            vec![
                Extent { cpos: 0, blkno: 529, clusters: 31727 },
                Extent { cpos: 31727, blkno: 32257, clusters: 32255 },
                Extent { cpos: 63982, blkno: 64513, clusters: 1554 },
            ]
        );
        assert_eq!(l.journals[1][0], Extent { cpos: 0, blkno: 66067, clusters: 30701 });
        let ea0: Vec<u64> = chains(&l.extent_allocs[0]).iter().map(|c| c.0).collect();
        assert_eq!(ea0, vec![131605, 132629, 133653, 134677, 135701, 136725]);
        assert_eq!(chains(&l.extent_allocs[1])[0].0, 137749);
        assert_eq!(l.slot_map.blkno, 143893);
        assert_eq!(chains(&l.inode_allocs[0]), vec![(143894, 1024, 2)]);
        assert_eq!(l.lost_found.inode.blkno, 143895);
        assert_eq!(l.global_bitmap.used(), 145250);
        assert_eq!(l.backup_superblocks, vec![262144, 1048576, 4194304]);
        let gb = chains(&l.global_bitmap);
        assert_eq!(gb[0], (3, 64512, 32257));
        assert_eq!(gb[4], (129024, 64512, 15895));
        assert_eq!(gb.len(), 243);
    }

    #[test]
    fn backups_are_reserved_on_big_volumes() {
        let l = layout(5 << 30, 4096, 4096, 2, "");
        assert_eq!(l.backup_superblocks, vec![262144, 1048576]);
        for &b in &l.backup_superblocks {
            let grp =
                l.global_bitmap.groups.iter().find(|g| b >= g.first_unit && b < g.first_unit + g.bits as u64).unwrap();
            assert!(grp.test((b - grp.first_unit) as u32));
        }
    }
}
