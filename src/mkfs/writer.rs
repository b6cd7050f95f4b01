//! Encoding the planned structures with [`crate::format`] and writing them to the device.
//!
//! Order matters for a format that is interrupted: the first and last megabyte are cleared
//! first (so an old superblock is gone before anything else changes), every other structure
//! follows, and the superblock is written last, after a flush. A device whose format stopped
//! half way therefore holds no OCFS2 superblock at all.
//!
//! Regions that must read as zeros (journals, the heartbeat area, unused parts of allocated
//! clusters) are read first and only written where they are not zero yet, which keeps sparse
//! image files sparse.

use super::layout::{BlockLoc, ChainAlloc, DirPlan, Extent, Group, Layout};
use super::{Identity, MkfsError, Plan};
use crate::device::BlockDevice;
use crate::format::blockcheck::{
    self, dir_trailer_check_offset, DX_LEAF_CHECK_OFFSET, DX_ROOT_CHECK_OFFSET, GROUP_DESC_CHECK_OFFSET,
    INODE_CHECK_OFFSET,
};
use crate::format::bytes::cstr;
use crate::format::chain::{ChainList, ChainRec};
use crate::format::constants::*;
use crate::format::dinode::{Dinode, DINODE_ID2_OFFSET};
use crate::format::dir::{dir_rec_len, DirEntry};
use crate::format::dir_trailer::{trailer_offset, DirBlockTrailer};
use crate::format::dx::{
    dx_entries_per_root, dx_hash, dx_seeds, DxEntry, DxEntryList, DxLeaf, DxRootBlock, DxRootBody,
};
use crate::format::extent::{extent_recs_per_dx_root, extent_recs_per_inode, ExtentList, ExtentRec};
use crate::format::group::GroupDesc;
use crate::format::inline::InlineData;
use crate::format::jbd2::{JournalSuperblock, JBD2_FEATURE_INCOMPAT_64BIT};
use crate::format::local_alloc::{local_alloc_size, LocalAlloc};
use crate::format::slot_map::SlotMap;
use crate::format::superblock::{looks_like_superblock, ClusterInfo, SuperBlock};
use crate::format::truncate_log::{truncate_recs_per_inode, TruncateLog};

/// The chunk in which regions are cleared (mkfs.ocfs2's `CLEAR_CHUNK`).
const CLEAR_CHUNK: u64 = 1 << 20;
/// `OCFS2_DFL_MAX_MNT_COUNT`.
const DEFAULT_MAX_MNT_COUNT: u16 = 20;
/// The hash shift of `ocfs2_xattr_uuid_hash`.
const HASH_SHIFT: u32 = 5;
/// What mkfs.ocfs2 writes into the fake OCFS1 header so that OCFS1 tools leave the volume alone.
const OCFS1_MARK: &[u8] = b"this is an ocfs2 volume";

/// `ocfs2_xattr_uuid_hash`: the superblock's `s_uuid_hash`, also the fourth dx hash seed.
pub fn uuid_hash(uuid: &[u8; 16]) -> u32 {
    uuid.iter().fold(0u32, |h, &b| (h << HASH_SHIFT) ^ (h >> (32 - HASH_SHIFT)) ^ b as u32)
}

/// Writes the whole volume.
pub(super) fn write(dev: &dyn BlockDevice, plan: &Plan) -> Result<(), MkfsError> {
    let w = Writer::new(dev, plan);
    w.clear_ends()?;
    w.global_bitmap()?;
    w.system_inode_group()?;
    // Inode groups are cleared whole (fsck.ocfs2 scans every block of them for inodes), so
    // they go before the inodes in them. Extent groups are only scanned through their bits.
    for (slot, a) in w.l.inode_allocs.iter().enumerate() {
        w.suballoc_groups(a, w.system_inode(SystemInode::InodeAlloc, slot as u16), true)?;
    }
    for (slot, a) in w.l.extent_allocs.iter().enumerate() {
        w.suballoc_groups(a, w.system_inode(SystemInode::ExtentAlloc, slot as u16), false)?;
    }
    w.system_files()?;
    for d in std::iter::once(&w.l.root)
        .chain(std::iter::once(&w.l.system_dir))
        .chain(w.l.orphan_dirs.iter())
        .chain(std::iter::once(&w.l.lost_found))
    {
        w.directory(d)?;
    }
    w.heartbeat()?;
    w.journals()?;
    w.slot_map()?;
    w.leading_space()?;
    dev.flush()?;
    let sb = w.superblock()?;
    for &b in &w.l.backup_superblocks {
        w.backup_superblock(&sb, b)?;
    }
    w.put_block(SUPER_BLOCK_BLKNO, &sb)?;
    dev.flush()?;
    Ok(())
}

/// If `block` (block 2 of a volume with blocks of `bs` bytes) is an OCFS2 superblock, the error
/// that refuses to format over it.
pub(super) fn existing_volume(block: &[u8], bs: u32) -> Option<MkfsError> {
    if !looks_like_superblock(block) {
        return None;
    }
    // A damaged superblock still marks a volume someone may care about.
    let (label, uuid) = match SuperBlock::decode_block(block) {
        Ok((_, sb)) => (String::from_utf8_lossy(cstr(&sb.s_label)).into_owned(), super::uuid_string(&sb.s_uuid)),
        Err(_) => ("?".to_string(), "unreadable".to_string()),
    };
    Some(MkfsError::ExistingVolume { label, uuid, block_size: bs })
}

struct Writer<'a> {
    dev: &'a dyn BlockDevice,
    l: &'a Layout,
    id: &'a Identity,
    bs: usize,
    ecc: bool,
    uuid_hash: u32,
}

impl<'a> Writer<'a> {
    fn new(dev: &'a dyn BlockDevice, plan: &'a Plan) -> Self {
        Writer {
            dev,
            l: &plan.layout,
            id: &plan.identity,
            bs: plan.layout.geo.block_size as usize,
            ecc: plan.layout.features.has_incompat(FEATURE_INCOMPAT_META_ECC),
            uuid_hash: uuid_hash(&plan.identity.uuid),
        }
    }

    fn offset(&self, blkno: u64) -> u64 {
        blkno << self.l.geo.block_bits
    }

    fn put_block(&self, blkno: u64, buf: &[u8]) -> Result<(), MkfsError> {
        Ok(self.dev.write_at(self.offset(blkno), buf)?)
    }

    /// Fills the metaecc field of a finished block, when the volume has metaecc.
    fn seal(&self, buf: &mut [u8], check_off: usize) {
        if self.ecc {
            blockcheck::compute(buf, check_off);
        }
    }

    /// Makes `[offset, offset + len)` read as zeros, writing only chunks that do not already.
    fn zero(&self, offset: u64, len: u64) -> Result<(), MkfsError> {
        let mut buf = vec![0u8; CLEAR_CHUNK.min(len) as usize];
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let n = (end - pos).min(CLEAR_CHUNK) as usize;
            let chunk = &mut buf[..n];
            self.dev.read_at(pos, chunk)?;
            if chunk.iter().any(|&b| b != 0) {
                chunk.fill(0);
                self.dev.write_at(pos, chunk)?;
            }
            pos += n as u64;
        }
        Ok(())
    }

    fn zero_extent(&self, e: &Extent) -> Result<(), MkfsError> {
        self.zero(self.offset(e.blkno), (e.clusters as u64) << self.l.geo.cluster_bits)
    }

    fn system_inode(&self, kind: SystemInode, slot: u16) -> u64 {
        self.l.system_inode(kind, slot).unwrap_or(0)
    }

    /// `clear_both_ends`: the first and the last megabyte.
    fn clear_ends(&self) -> Result<(), MkfsError> {
        let total = self.l.geo.bytes();
        self.zero(0, CLEAR_CHUNK.min(total))?;
        self.zero(total.saturating_sub(CLEAR_CHUNK), CLEAR_CHUNK.min(total))
    }

    /// An inode head as mkfs.ocfs2 fills it for a file it creates.
    fn inode(&self, loc: &BlockLoc, mode: u16, flags: u32, links: u16) -> Dinode {
        let t = self.id.format_time;
        let mut di = Dinode::new();
        di.i_generation = self.id.generation;
        di.i_fs_generation = self.id.generation;
        di.i_suballoc_slot = loc.suballoc_slot;
        di.i_suballoc_bit = loc.suballoc_bit;
        di.i_suballoc_loc = loc.suballoc_loc;
        di.i_blkno = loc.blkno;
        di.i_mode = mode;
        di.i_flags = VALID_FL | flags;
        di.i_links_count = links;
        di.i_atime = t;
        di.i_ctime = t;
        di.i_mtime = t;
        di
    }

    /// Encodes an inode with its id2 union, seals and writes it.
    fn write_inode(
        &self,
        di: &Dinode,
        id2: impl FnOnce(&mut [u8]) -> crate::format::Result<()>,
    ) -> Result<(), MkfsError> {
        let mut buf = vec![0u8; self.bs];
        id2(&mut buf[DINODE_ID2_OFFSET..])?;
        di.encode(&mut buf)?;
        self.seal(&mut buf, INODE_CHECK_OFFSET);
        self.put_block(di.i_blkno, &buf)
    }

    fn extent_list(&self, extents: &[Extent]) -> Result<ExtentList, MkfsError> {
        let mut list = ExtentList::new(extent_recs_per_inode(self.bs));
        for e in extents {
            let clusters = u16::try_from(e.clusters)
                .map_err(|_| MkfsError::Unsupported(format!("an extent of {} clusters", e.clusters)))?;
            list.recs.push(ExtentRec::leaf(e.cpos, clusters, 0, e.blkno));
        }
        Ok(list)
    }

    fn chain_list(&self, a: &ChainAlloc) -> ChainList {
        ChainList {
            cl_cpg: a.cpg,
            cl_bpc: a.bpc,
            cl_count: a.count,
            cl_reserved1: 0,
            recs: (0..a.chains.len())
                .map(|c| {
                    let (c_free, c_total, c_blkno) = a.chain_rec(c);
                    ChainRec { c_free, c_total, c_blkno }
                })
                .collect(),
        }
    }

    fn group_desc(&self, g: &Group, parent: u64) -> Result<(), MkfsError> {
        let mut bitmap = vec![0u8; g.bitmap_size as usize];
        bitmap[..g.bitmap.len()].copy_from_slice(&g.bitmap);
        let gd = GroupDesc {
            bg_bits: g.bits,
            bg_free_bits_count: g.free() as u16,
            bg_chain: g.chain,
            bg_generation: self.id.generation,
            bg_contig_free_bits: 0,
            bg_reserved1: 0,
            bg_next_group: g.next_group,
            bg_parent_dinode: parent,
            bg_blkno: g.blkno,
            bg_check: Default::default(),
            bg_reserved2: 0,
            bitmap,
            bg_list: None,
        };
        let mut buf = vec![0u8; self.bs];
        gd.encode(&mut buf)?;
        self.seal(&mut buf, GROUP_DESC_CHECK_OFFSET);
        self.put_block(g.blkno, &buf)
    }

    /// The cluster groups: each descriptor fills the first block of its cluster, the rest of
    /// the cluster is zeroed as mkfs.ocfs2 does.
    fn global_bitmap(&self) -> Result<(), MkfsError> {
        let parent = self.system_inode(SystemInode::GlobalBitmap, 0);
        let cluster = self.l.geo.cluster_size as u64;
        for g in &self.l.global_bitmap.groups {
            let off = self.offset(g.blkno);
            let cluster_start = off / cluster * cluster;
            self.zero(off + self.bs as u64, cluster_start + cluster - off - self.bs as u64)?;
            self.group_desc(g, parent)?;
        }
        Ok(())
    }

    fn system_inode_group(&self) -> Result<(), MkfsError> {
        let a = &self.l.global_inode_alloc;
        let parent = self.system_inode(SystemInode::GlobalInodeAlloc, 0);
        for g in &a.groups {
            self.zero(self.offset(g.blkno), (a.cpg as u64) << self.l.geo.cluster_bits)?;
            self.group_desc(g, parent)?;
        }
        Ok(())
    }

    /// Groups of a slot's suballocator, cleared first if `clear`.
    fn suballoc_groups(&self, a: &ChainAlloc, parent: u64, clear: bool) -> Result<(), MkfsError> {
        for g in &a.groups {
            if clear {
                self.zero(self.offset(g.blkno), (a.cpg as u64) << self.l.geo.cluster_bits)?;
            }
            self.group_desc(g, parent)?;
        }
        Ok(())
    }

    fn system_files(&self) -> Result<(), MkfsError> {
        let geo = &self.l.geo;
        let file_mode = S_IFREG | 0o644;
        for f in &self.l.system_files {
            let sys = SYSTEM_FL;
            match f.kind {
                SystemInode::GlobalBitmap => {
                    let a = &self.l.global_bitmap;
                    let mut di = self.inode(&f.inode, file_mode, sys | BITMAP_FL | CHAIN_FL, 1);
                    di.i_size = geo.bytes();
                    di.i_clusters = geo.clusters;
                    di.set_bitmap1(a.used(), a.total());
                    let list = self.chain_list(a);
                    self.write_inode(&di, |id2| list.encode(id2))?;
                }
                SystemInode::GlobalInodeAlloc | SystemInode::InodeAlloc | SystemInode::ExtentAlloc => {
                    let a = match f.kind {
                        SystemInode::GlobalInodeAlloc => &self.l.global_inode_alloc,
                        SystemInode::InodeAlloc => &self.l.inode_allocs[f.slot as usize],
                        _ => &self.l.extent_allocs[f.slot as usize],
                    };
                    let mut di = self.inode(&f.inode, file_mode, sys | BITMAP_FL | CHAIN_FL, 1);
                    di.i_clusters = a.clusters();
                    di.i_size = (a.clusters() as u64) << geo.cluster_bits;
                    di.set_bitmap1(a.used(), a.total());
                    let list = self.chain_list(a);
                    self.write_inode(&di, |id2| list.encode(id2))?;
                }
                SystemInode::SlotMap | SystemInode::Heartbeat | SystemInode::Journal => {
                    let (extents, size, flags) = match f.kind {
                        SystemInode::SlotMap => (vec![self.l.slot_map], self.l.slot_map_size(), 0),
                        SystemInode::Heartbeat => (vec![self.l.heartbeat], self.l.heartbeat_size, HEARTBEAT_FL),
                        _ => {
                            let j = self.l.journals[f.slot as usize].clone();
                            (j, geo.journal_bytes, JOURNAL_FL)
                        }
                    };
                    let mut di = self.inode(&f.inode, file_mode, sys | flags, 1);
                    di.i_size = size;
                    di.i_clusters = extents.iter().map(|e| e.clusters).sum();
                    let list = self.extent_list(&extents)?;
                    self.write_inode(&di, |id2| list.encode(id2))?;
                }
                SystemInode::LocalAlloc => {
                    let di = self.inode(&f.inode, file_mode, sys | BITMAP_FL | LOCAL_ALLOC_FL, 1);
                    let la = LocalAlloc::cleared(local_alloc_size(geo.block_size));
                    self.write_inode(&di, |id2| la.encode(id2))?;
                }
                SystemInode::TruncateLog => {
                    let di = self.inode(&f.inode, file_mode, sys | DEALLOC_FL, 1);
                    let tl = TruncateLog::empty(truncate_recs_per_inode(geo.block_size));
                    self.write_inode(&di, |id2| tl.encode(id2))?;
                }
                SystemInode::BadBlock => {
                    let di = self.inode(&f.inode, file_mode, sys, 1);
                    let list = self.extent_list(&[])?;
                    self.write_inode(&di, |id2| list.encode(id2))?;
                }
                SystemInode::OrphanDir
                | SystemInode::UserQuota
                | SystemInode::GroupQuota
                | SystemInode::LocalUserQuota
                | SystemInode::LocalGroupQuota => {
                    return Err(MkfsError::Unsupported(format!("system file {}", f.name())));
                }
            }
        }
        Ok(())
    }

    /// Encodes `entries` into `area`, packed, the last one stretched to the end.
    fn fill_entries(&self, d: &DirPlan, indices: &[usize], area: &mut [u8]) -> Result<(), MkfsError> {
        let mut off = 0;
        for (k, &i) in indices.iter().enumerate() {
            let e = &d.entries[i];
            let mut de = DirEntry::new(e.inode, e.name.as_bytes(), e.file_type);
            if k + 1 == indices.len() {
                de.rec_len = (area.len() - off) as u16;
            }
            de.encode_at(area, off)?;
            off += de.rec_len as usize;
        }
        Ok(())
    }

    /// Largest free space a block's records leave for a new entry, or 0 if too small for one.
    fn largest_hole(&self, d: &DirPlan, indices: &[usize], usable: usize) -> u16 {
        let used: usize = indices.iter().map(|&i| dir_rec_len(d.entries[i].name.len())).sum();
        let hole = usable - used;
        if hole >= dir_rec_len(1) {
            hole as u16
        } else {
            0
        }
    }

    fn directory(&self, d: &DirPlan) -> Result<(), MkfsError> {
        let mut flags = 0;
        if d.system {
            flags |= SYSTEM_FL;
        }
        let mut di = self.inode(&d.inode, S_IFDIR | 0o755, flags, d.links());
        di.i_size = d.size;
        di.i_clusters = d.clusters();
        if d.inline {
            di.i_dyn_features |= INLINE_DATA_FL;
            let mut inline = InlineData::new(d.size as u16);
            let all: Vec<usize> = (0..d.entries.len()).collect();
            self.fill_entries(d, &all, &mut inline.data)?;
            return self.write_inode(&di, |id2| inline.encode(id2));
        }
        let extent = d.extent.ok_or_else(|| MkfsError::Unsupported("a block directory without clusters".into()))?;
        self.zero_extent(&extent)?;
        let usable = if d.trailer { trailer_offset(self.bs) } else { self.bs };
        let mut free_head = 0;
        for (n, indices) in d.blocks.iter().enumerate() {
            let blkno = extent.blkno + n as u64;
            let mut buf = vec![0u8; self.bs];
            self.fill_entries(d, indices, &mut buf[..usable])?;
            if d.trailer {
                let mut t = DirBlockTrailer::new(blkno, d.inode.blkno, 0);
                if d.dx_root.is_some() {
                    t.db_free_rec_len = self.largest_hole(d, indices, usable);
                    if t.db_free_rec_len > 0 {
                        t.db_free_next = free_head;
                        free_head = blkno;
                    }
                }
                t.encode(&mut buf)?;
                self.seal(&mut buf, dir_trailer_check_offset(self.bs));
            }
            self.put_block(blkno, &buf)?;
        }
        if let Some(dx) = &d.dx_root {
            di.i_dyn_features |= INDEXED_DIR_FL;
            di.i_dx_root = dx.blkno;
            self.dx_root(d, dx, free_head)?;
        }
        let list = self.extent_list(&[extent])?;
        self.write_inode(&di, |id2| list.encode(id2))
    }

    /// The index over a directory's entries: inline in the root, in directory order, or in
    /// the leaf clusters the layout planned.
    fn dx_root(&self, d: &DirPlan, loc: &BlockLoc, free_blk: u64) -> Result<(), MkfsError> {
        let extent = d.extent.ok_or_else(|| MkfsError::Unsupported("an index over an inline directory".into()))?;
        let seeds = dx_seeds(self.id.dx_seed, self.uuid_hash);
        let mut all = Vec::new();
        for (n, indices) in d.blocks.iter().enumerate() {
            for &i in indices {
                let (major, minor) = dx_hash(d.entries[i].name.as_bytes(), seeds);
                all.push(DxEntry {
                    dx_major_hash: major,
                    dx_minor_hash: minor,
                    dx_dirent_blk: extent.blkno + n as u64,
                });
            }
        }
        let num_entries = all.len() as u32;
        let (body, clusters) = if d.dx_leaves.is_empty() {
            let mut list = DxEntryList::new(dx_entries_per_root(self.bs));
            list.de_entries = all;
            if list.de_entries.len() > list.de_count as usize {
                return Err(MkfsError::Unsupported("a directory index larger than its root block".into()));
            }
            (DxRootBody::Inline(list), 0)
        } else {
            self.dx_leaves(d)?;
            let mut tree = ExtentList::new(extent_recs_per_dx_root(self.bs));
            for c in &d.dx_leaves {
                tree.recs.push(ExtentRec::leaf(c.cpos, 1, 0, c.blkno));
            }
            (DxRootBody::Extents(tree), d.dx_leaves.len() as u32)
        };
        let root = DxRootBlock {
            dr_check: Default::default(),
            dr_suballoc_slot: loc.suballoc_slot,
            dr_suballoc_bit: loc.suballoc_bit,
            dr_fs_generation: self.id.generation,
            dr_blkno: loc.blkno,
            dr_last_eb_blk: 0,
            dr_clusters: clusters,
            dr_flags: 0,
            dr_reserved0: 0,
            dr_reserved1: 0,
            dr_dir_blkno: d.inode.blkno,
            dr_num_entries: num_entries,
            dr_reserved2: 0,
            dr_free_blk: free_blk,
            dr_suballoc_loc: loc.suballoc_loc,
            dr_reserved3: [0; 14],
            body,
        };
        let mut buf = vec![0u8; self.bs];
        root.encode(&mut buf)?;
        self.seal(&mut buf, DX_ROOT_CHECK_OFFSET);
        self.put_block(loc.blkno, &buf)
    }

    /// Writes every block of the leaf clusters the layout filled.
    fn dx_leaves(&self, d: &DirPlan) -> Result<(), MkfsError> {
        for c in &d.dx_leaves {
            for (b, entries) in c.leaves.iter().enumerate() {
                let mut leaf = DxLeaf::new(c.blkno + b as u64, self.id.generation, self.bs);
                if entries.len() > leaf.dl_list.de_count as usize {
                    return Err(MkfsError::Unsupported("a directory index leaf overflows".into()));
                }
                leaf.dl_list.de_entries = entries.clone();
                let mut buf = vec![0u8; self.bs];
                leaf.encode(&mut buf)?;
                self.seal(&mut buf, DX_LEAF_CHECK_OFFSET);
                self.put_block(leaf.dl_blkno, &buf)?;
            }
        }
        Ok(())
    }

    fn heartbeat(&self) -> Result<(), MkfsError> {
        self.zero_extent(&self.l.heartbeat)
    }

    /// Each journal: zeros, then a JBD2 v2 superblock in its first block.
    fn journals(&self) -> Result<(), MkfsError> {
        let geo = &self.l.geo;
        let blocks = (geo.journal_bytes >> geo.block_bits) as u32;
        let incompat = if self.id.journal_block64 { JBD2_FEATURE_INCOMPAT_64BIT } else { 0 };
        for extents in &self.l.journals {
            for e in extents {
                self.zero_extent(e)?;
            }
            let first = extents.first().ok_or_else(|| MkfsError::Unsupported("a journal without clusters".into()))?;
            let jsb = JournalSuperblock::new(geo.block_size, blocks, self.id.uuid, incompat);
            let mut buf = vec![0u8; self.bs];
            jsb.encode(&mut buf)?;
            self.put_block(first.blkno, &buf)?;
        }
        Ok(())
    }

    /// An empty slot map over the whole allocation.
    fn slot_map(&self) -> Result<(), MkfsError> {
        let extended = self.l.features.has_incompat(FEATURE_INCOMPAT_EXTENDED_SLOT_MAP);
        let size = self.l.slot_map_size() as usize;
        let slots = size / if extended { 8 } else { 2 };
        let mut buf = vec![0u8; size];
        SlotMap::empty(slots).encode(&mut buf, extended)?;
        self.dev.write_at(self.offset(self.l.slot_map.blkno), &buf)?;
        Ok(())
    }

    /// Blocks 0 and 1: a fake OCFS1 volume header and label, on a background of 0x02 bytes.
    fn leading_space(&self) -> Result<(), MkfsError> {
        let mut buf = vec![2u8; 2 * self.bs];
        let mut mark = |off: usize| {
            buf[off..off + OCFS1_MARK.len()].copy_from_slice(OCFS1_MARK);
            buf[off + OCFS1_MARK.len()] = 0;
        };
        // ocfs1_vol_disk_hdr: signature at 0x08, mount_point at 0x88.
        mark(0x08);
        mark(0x88);
        // ocfs1_vol_label in the second sector: label at 0x30, cluster_name at 0x84.
        mark(512 + 0x30);
        mark(512 + 0x84);
        Ok(self.dev.write_at(0, &buf)?)
    }

    /// The superblock block, sealed.
    fn superblock(&self) -> Result<Vec<u8>, MkfsError> {
        let geo = &self.l.geo;
        let f = self.l.features;
        let mut di = Dinode::new();
        di.i_signature = *SUPER_BLOCK_SIGNATURE;
        di.i_generation = self.id.generation;
        di.i_fs_generation = self.id.generation;
        di.i_suballoc_slot = INVALID_SLOT;
        di.i_suballoc_bit = u16::MAX;
        di.i_ctime = self.id.format_time;
        di.i_mtime = self.id.format_time;
        di.i_blkno = SUPER_BLOCK_BLKNO;
        di.i_flags = VALID_FL | SYSTEM_FL | SUPER_BLOCK_FL;
        di.i_clusters = geo.clusters;

        let mut label = [0u8; MAX_VOL_LABEL_LEN];
        label[..self.id.label.len()].copy_from_slice(self.id.label.as_bytes());
        let mut cluster_info = ClusterInfo::default();
        if let Some(st) = &self.id.stack {
            let n = st.stack.len().min(STACK_LABEL_LEN);
            cluster_info.ci_stack[..n].copy_from_slice(&st.stack.as_bytes()[..n]);
            let n = st.cluster.len().min(CLUSTER_NAME_LEN);
            cluster_info.ci_cluster[..n].copy_from_slice(&st.cluster.as_bytes()[..n]);
            cluster_info.ci_stackflags = st.flags;
        }
        let xattr = f.has_incompat(FEATURE_INCOMPAT_XATTR);
        let indexed = f.has_incompat(FEATURE_INCOMPAT_INDEXED_DIRS);
        let sb = SuperBlock {
            s_major_rev_level: MAJOR_REV_LEVEL,
            s_minor_rev_level: MINOR_REV_LEVEL,
            s_mnt_count: 0,
            s_max_mnt_count: DEFAULT_MAX_MNT_COUNT,
            s_state: 0,
            s_errors: 0,
            s_checkinterval: 0,
            s_lastcheck: self.id.format_time,
            s_creator_os: 0,
            s_feature_compat: f.compat,
            s_feature_incompat: f.incompat,
            s_feature_ro_compat: f.ro_compat,
            s_root_blkno: self.l.root.inode.blkno,
            s_system_dir_blkno: self.l.system_dir.inode.blkno,
            s_blocksize_bits: geo.block_bits,
            s_clustersize_bits: geo.cluster_bits,
            s_max_slots: geo.slots,
            s_tunefs_flag: 0,
            s_uuid_hash: if xattr || indexed { self.uuid_hash } else { 0 },
            s_first_cluster_group: self.l.first_cluster_group,
            s_label: label,
            s_uuid: self.id.uuid,
            s_cluster_info: cluster_info,
            s_xattr_inline_size: if xattr { MIN_XATTR_INLINE_SIZE } else { 0 },
            s_reserved0: 0,
            s_dx_seed: if indexed { self.id.dx_seed } else { [0; 3] },
            s_reserved2: [0; 15],
        };
        let mut buf = vec![0u8; self.bs];
        sb.encode(&mut buf[DINODE_ID2_OFFSET..])?;
        di.encode(&mut buf)?;
        self.seal(&mut buf, INODE_CHECK_OFFSET);
        Ok(buf)
    }

    /// A copy of the superblock that names its own block, in a cleared cluster.
    fn backup_superblock(&self, sb: &[u8], blkno: u64) -> Result<(), MkfsError> {
        let cluster = self.l.geo.cluster_size as u64;
        let off = self.offset(blkno);
        self.zero(off / cluster * cluster, cluster)?;
        let mut buf = sb.to_vec();
        let mut di = Dinode::decode_superblock_inode(&buf)?;
        di.i_blkno = blkno;
        di.encode(&mut buf)?;
        self.seal(&mut buf, INODE_CHECK_OFFSET);
        self.put_block(blkno, &buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_hash_matches_debugfs() {
        // debugfs.ocfs2 -R stats on a mkfs.ocfs2 image: UUID 08BFC763EC9B4F02B919CE3D0D2C01CD,
        // "Hash: 2612246890 (0x9bb3b96a)".
        let uuid = super::super::parse_uuid("08BFC763EC9B4F02B919CE3D0D2C01CD").unwrap();
        assert_eq!(uuid_hash(&uuid), 0x9bb3_b96a);
    }

    #[test]
    fn dx_hash_matches_mkfs_ocfs2() {
        // dx_dump of the root of a noinline-data image: seeds 0xe4be33a0 0x7a6c8ef5 0x307b1879,
        // lost+found hashed to (0xe57570c1, 0x4e11606a).
        let seeds = dx_seeds([0xe4be_33a0, 0x7a6c_8ef5, 0x307b_1879], 0xdfb4_a7c9);
        assert_eq!(dx_hash(b"lost+found", seeds), (0xe575_70c1, 0x4e11_606a));
    }
}
