//! Changing directories inside a transaction: finding, adding and removing entries in inline
//! and linear directories, growing them, and laying out a new directory.
//!
//! Entries are placed as the kernel's `__ocfs2_add_entry` places them: in the first free record
//! large enough, or in the slack after a live record, which is split. A removed record is merged
//! into the record before it and marked free (`ocfs2_delete_entry`). An inline directory that
//! fills up moves into one block; a linear directory grows one block at a time, taking a new
//! cluster when its last one is used up. Blocks of directories are metadata: they are written
//! only through the transaction, with a trailer where the volume wants one.
//!
//! Indexed directories (`dxwrite`) keep the same records and add a hash index: operations on
//! them go through their index and free-space list. On volumes with `indexed-dirs` every block
//! directory is indexed (fsck.ocfs2 requires it): a new block directory gets an index at once,
//! and an inline directory that outgrows its inode gets one as it moves into its first block
//! (`ocfs2_expand_inline_dir`).

use super::alloc::local_alloc;
use super::dxwrite;
use super::error::{Error, Result};
use super::extent_map::{map_cluster, Mapping};
use super::meta::BlockKind;
use super::tx::Tx;
use crate::format::dinode::{Dinode, DINODE_ID2_OFFSET};
use crate::format::dir::{dir_entries, dir_rec_len, encode_empty_record, DirEntry};
use crate::format::dir_trailer::{dir_has_trailer, supports_dir_trailer, trailer_offset, DirBlockTrailer};
use crate::format::extent::{extent_recs_per_inode, ExtentList, ExtentRec};
use crate::format::inline::{max_inline_data_with_xattr, InlineData, INLINE_DATA_OFFSET};
use crate::format::{
    FEATURE_INCOMPAT_INDEXED_DIRS, FEATURE_INCOMPAT_INLINE_DATA, FT_DIR, INDEXED_DIR_FL, INLINE_DATA_FL,
    MAX_FILENAME_LEN,
};

/// Where one directory entry lives.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// The directory block holding it, or the directory inode for an inline directory.
    pub blkno: u64,
    /// Offset of the record within the usable area.
    pub offset: usize,
    pub entry: DirEntry,
}

/// How a directory's entries are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Inline,
    Linear {
        trailer: bool,
    },
    /// Blocks with trailers and a hash index (`dxwrite`).
    Indexed,
}

fn layout(tx: &Tx, di: &Dinode) -> Result<Layout> {
    if !di.is_dir() {
        return Err(Error::NotDir(format!("inode {}", di.i_blkno)));
    }
    if di.has_inline_data() {
        return Ok(Layout::Inline);
    }
    let incompat = tx.vol.sb.s_feature_incompat;
    if di.is_indexed_dir() {
        if incompat & FEATURE_INCOMPAT_INDEXED_DIRS == 0 {
            // fsck.ocfs2 would drop such an index; changing the names would leave it stale.
            return Err(Error::Unsupported(format!(
                "changing directory {}, indexed on a volume without indexed directories",
                di.i_blkno
            )));
        }
        return Ok(Layout::Indexed);
    }
    Ok(Layout::Linear { trailer: dir_has_trailer(incompat, false, false) })
}

fn block_kind(trailer: bool) -> BlockKind {
    if trailer {
        BlockKind::DirBlockWithTrailer
    } else {
        BlockKind::DirBlockPlain
    }
}

/// Bytes of a directory block that hold records.
fn usable(bs: usize, trailer: bool) -> usize {
    if trailer {
        trailer_offset(bs)
    } else {
        bs
    }
}

/// The inline area of an inline directory's inode block.
fn inline_range(di: &Dinode, bs: usize) -> Result<std::ops::Range<usize>> {
    let end = INLINE_DATA_OFFSET
        .checked_add(usize::try_from(di.i_size).unwrap_or(usize::MAX))
        .filter(|&e| e <= bs)
        .ok_or_else(|| Error::corrupt(di.i_blkno, format!("inline directory of {} bytes", di.i_size)))?;
    Ok(INLINE_DATA_OFFSET..end)
}

/// Blocks of a linear directory: `i_size` rounded up to whole blocks, as ocfs2-tools count
/// them (mkfs.ocfs2 gives lost+found the size of its usable area, short of the trailer).
fn dir_block_count(tx: &Tx, di: &Dinode) -> u64 {
    di.i_size.div_ceil(u64::from(tx.vol.geo.block_size))
}

/// The blocks of a linear directory within `i_size`, in order.
pub(super) fn dir_blocks(tx: &Tx, di: &Dinode) -> Result<Vec<u64>> {
    let ino = di.i_blkno;
    let block = tx.block(ino, BlockKind::Inode)?;
    let list = ExtentList::decode(&block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
    let geo = tx.vol.geo;
    let blocks = dir_block_count(tx, di);
    let per = geo.blocks_per_cluster();
    let mut out = Vec::with_capacity(blocks as usize);
    let mut lblk = 0;
    while lblk < blocks {
        let cpos = u32::try_from(lblk / per).map_err(|_| Error::corrupt(ino, "directory too large"))?;
        match map_cluster(tx.vol, ino, &list, cpos)? {
            Mapping::Hole { .. } => return Err(Error::corrupt(ino, format!("directory has a hole at block {lblk}"))),
            Mapping::Data { blkno, clusters, .. } => {
                let skip = lblk % per;
                let run = (u64::from(clusters) * per - skip).min(blocks - lblk);
                tx.vol.meta.check_range(blkno + skip, run)?;
                out.extend(blkno + skip..blkno + skip + run);
                lblk += run;
            }
        }
    }
    Ok(out)
}

/// Visits every record area of the directory: (block or inode, kind, usable byte range).
fn areas(tx: &Tx, di: &Dinode) -> Result<Vec<(u64, BlockKind, std::ops::Range<usize>)>> {
    let bs = tx.vol.geo.block_size as usize;
    Ok(match layout(tx, di)? {
        Layout::Inline => vec![(di.i_blkno, BlockKind::Inode, inline_range(di, bs)?)],
        Layout::Linear { trailer } => {
            dir_blocks(tx, di)?.into_iter().map(|b| (b, block_kind(trailer), 0..usable(bs, trailer))).collect()
        }
        Layout::Indexed => {
            dir_blocks(tx, di)?.into_iter().map(|b| (b, block_kind(true), 0..usable(bs, true))).collect()
        }
    })
}

/// Every (inode, name) entry of directory `dir` but `.` and `..`, in storage order.
pub(crate) fn entries(tx: &Tx, dir: u64) -> Result<Vec<(u64, Vec<u8>)>> {
    let di = tx.dinode(dir)?;
    let mut out = Vec::new();
    for (blkno, kind, range) in areas(tx, &di)? {
        let block = tx.block(blkno, kind)?;
        for item in dir_entries(&block[range], false) {
            let (_, de) = item.map_err(|e| Error::format(blkno, e))?;
            if de.name != b"." && de.name != b".." {
                out.push((de.inode, de.name));
            }
        }
    }
    Ok(out)
}

/// The entry called `name` in directory `dir`, if any.
pub(crate) fn find(tx: &Tx, dir: u64, name: &[u8]) -> Result<Option<Found>> {
    let di = tx.dinode(dir)?;
    if layout(tx, &di)? == Layout::Indexed {
        return dxwrite::find(tx, &di, name);
    }
    for (blkno, kind, range) in areas(tx, &di)? {
        let block = tx.block(blkno, kind)?;
        for item in dir_entries(&block[range], false) {
            let (offset, entry) = item.map_err(|e| Error::format(blkno, e))?;
            if entry.name == name {
                return Ok(Some(Found { blkno, offset, entry }));
            }
        }
    }
    Ok(None)
}

/// True when the directory holds nothing but `.` and `..`.
pub(crate) fn is_empty(tx: &Tx, dir: u64) -> Result<bool> {
    let di = tx.dinode(dir)?;
    if layout(tx, &di)? == Layout::Indexed {
        return dxwrite::is_empty(tx, &di);
    }
    for (blkno, kind, range) in areas(tx, &di)? {
        let block = tx.block(blkno, kind)?;
        for item in dir_entries(&block[range], false) {
            let (_, e) = item.map_err(|e| Error::format(blkno, e))?;
            if e.name != b"." && e.name != b".." {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Puts a record for (`ino`, `name`) into the first place of `area` that fits it.
pub(super) fn insert_in_area(area: &mut [u8], at: u64, ino: u64, name: &[u8], file_type: u8) -> Result<bool> {
    let need = dir_rec_len(name.len());
    let mut slot = None;
    for item in dir_entries(area, true) {
        let (offset, de) = item.map_err(|e| Error::format(at, e))?;
        if de.is_empty() && usize::from(de.rec_len) >= need {
            slot = Some((offset, de, false));
            break;
        }
        if !de.is_empty() && usize::from(de.rec_len) >= de.min_rec_len() + need {
            slot = Some((offset, de, true));
            break;
        }
    }
    let Some((offset, mut de, split)) = slot else {
        return Ok(false);
    };
    let mut new = DirEntry::new(ino, name, file_type);
    let new_at = if split {
        let min = de.min_rec_len();
        new.rec_len = de.rec_len - min as u16;
        de.rec_len = min as u16;
        de.encode_at(area, offset).map_err(|e| Error::format(at, e))?;
        offset + min
    } else {
        new.rec_len = de.rec_len;
        offset
    };
    new.encode_at(area, new_at).map_err(|e| Error::format(at, e))?;
    Ok(true)
}

/// Adds the entry (`name` → `ino`) to directory `dir`, growing the directory if no record has
/// room. The caller has checked that the name is valid and not taken.
pub(crate) fn add(tx: &mut Tx, dir: u64, name: &[u8], ino: u64, file_type: u8) -> Result<()> {
    if name.is_empty() || name.len() > MAX_FILENAME_LEN {
        return Err(Error::NameTooLong(name.len()));
    }
    let di = tx.dinode(dir)?;
    let lay = layout(tx, &di)?;
    if lay == Layout::Indexed {
        return dxwrite::add(tx, dir, name, ino, file_type);
    }
    for (blkno, kind, range) in areas(tx, &di)? {
        let block = tx.block_mut(blkno, kind)?;
        if insert_in_area(&mut block[range], blkno, ino, name, file_type)? {
            return touch(tx, dir);
        }
    }
    // Grow: an inline directory moves into a block, which may still lack room for a long
    // name (the expansion adds only the difference to the inline area); a block directory
    // gets a new, empty block, which always has room.
    let mut new_block = match lay {
        Layout::Inline => {
            let b = expand_inline(tx, dir)?;
            if layout(tx, &tx.dinode(dir)?)? == Layout::Indexed {
                return dxwrite::add(tx, dir, name, ino, file_type);
            }
            b
        }
        Layout::Linear { trailer } => extend(tx, dir, trailer)?,
        Layout::Indexed => return Err(Error::corrupt(dir, "indexed directory on the linear path")),
    };
    for _ in 0..2 {
        let di = tx.dinode(dir)?;
        let Layout::Linear { trailer } = layout(tx, &di)? else {
            return Err(Error::corrupt(dir, "directory not linear after it grew"));
        };
        let bs = tx.vol.geo.block_size as usize;
        let block = tx.block_mut(new_block, block_kind(trailer))?;
        if insert_in_area(&mut block[..usable(bs, trailer)], new_block, ino, name, file_type)? {
            return touch(tx, dir);
        }
        new_block = extend(tx, dir, trailer)?;
    }
    Err(Error::corrupt(new_block, "a new directory block has no room for one entry"))
}

/// Removes the entry `found` (from [`find`]) from directory `dir`.
pub(crate) fn remove(tx: &mut Tx, dir: u64, found: &Found) -> Result<()> {
    let di = tx.dinode(dir)?;
    let bs = tx.vol.geo.block_size as usize;
    let (kind, range) = match layout(tx, &di)? {
        Layout::Inline => (BlockKind::Inode, inline_range(&di, bs)?),
        Layout::Linear { trailer } => (block_kind(trailer), 0..usable(bs, trailer)),
        Layout::Indexed => return dxwrite::remove(tx, dir, found),
    };
    remove_record(tx, found.blkno, kind, range, found)?;
    touch(tx, dir)
}

/// Frees the record of `found` in `range` of block `blkno` by merging it into the record
/// before it, and marks it free (`__ocfs2_delete_entry`).
pub(super) fn remove_record(
    tx: &mut Tx,
    blkno: u64,
    kind: BlockKind,
    range: std::ops::Range<usize>,
    found: &Found,
) -> Result<()> {
    let block = tx.block_mut(blkno, kind)?;
    let area = &mut block[range];
    let mut prev: Option<(usize, DirEntry)> = None;
    let mut target = None;
    for item in dir_entries(area, true) {
        let (offset, de) = item.map_err(|e| Error::format(blkno, e))?;
        if offset == found.offset {
            target = Some(de);
            break;
        }
        prev = Some((offset, de));
    }
    let mut de = target.ok_or_else(|| Error::corrupt(blkno, "the entry to remove moved"))?;
    if de.inode != found.entry.inode || de.name != found.entry.name {
        return Err(Error::corrupt(blkno, "the entry to remove changed"));
    }
    if let Some((poff, mut p)) = prev {
        p.rec_len += de.rec_len;
        p.encode_at(area, poff).map_err(|e| Error::format(blkno, e))?;
    }
    de.inode = 0;
    de.encode_at(area, found.offset).map_err(|e| Error::format(blkno, e))
}

/// Points the existing entry `found` (from [`find`]) of directory `dir` at inode `ino` of type
/// `file_type`, in place: rename over an existing name, and `..` of a moved directory.
pub(crate) fn replace_inode(tx: &mut Tx, dir: u64, found: &Found, ino: u64, file_type: u8) -> Result<()> {
    let di = tx.dinode(dir)?;
    let bs = tx.vol.geo.block_size as usize;
    let (kind, range) = match layout(tx, &di)? {
        Layout::Inline => (BlockKind::Inode, inline_range(&di, bs)?),
        Layout::Linear { trailer } => (block_kind(trailer), 0..usable(bs, trailer)),
        Layout::Indexed => (block_kind(true), 0..usable(bs, true)),
    };
    let blkno = found.blkno;
    let block = tx.block_mut(blkno, kind)?;
    let area = &mut block[range];
    let mut de = dir_entries(area, true)
        .filter_map(|item| item.ok())
        .find(|(offset, _)| *offset == found.offset)
        .map(|(_, de)| de)
        .ok_or_else(|| Error::corrupt(blkno, "the entry to change moved"))?;
    if de.inode != found.entry.inode || de.name != found.entry.name {
        return Err(Error::corrupt(blkno, "the entry to change changed"));
    }
    de.inode = ino;
    de.file_type = file_type;
    de.encode_at(area, found.offset).map_err(|e| Error::format(blkno, e))?;
    touch(tx, dir)
}

/// Sets the directory's mtime and ctime to now.
pub(super) fn touch(tx: &mut Tx, dir: u64) -> Result<()> {
    let (secs, nsecs) = now();
    tx.update_dinode(dir, |di, _| {
        di.i_mtime = secs;
        di.i_mtime_nsec = nsecs;
        di.i_ctime = secs;
        di.i_ctime_nsec = nsecs;
        Ok(())
    })
}

/// The current time as OCFS2 stores it.
pub(crate) fn now() -> (u64, u32) {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}

/// Formats a new directory block: one free record over the usable area, and the trailer.
/// Returns the usable size.
fn format_block(block: &mut [u8], blkno: u64, dir: u64, trailer: bool) -> Result<usize> {
    let bs = block.len();
    let size = usable(bs, trailer);
    encode_empty_record(block, 0, size as u16).map_err(|e| Error::format(blkno, e))?;
    if trailer {
        DirBlockTrailer::new(blkno, dir, size as u16).encode(block).map_err(|e| Error::format(blkno, e))?;
    }
    Ok(size)
}

/// Appends the run of `count` clusters at `blkno` at logical cluster `cpos` of the depth-0
/// extent list of directory `owner`.
fn append_run(list: &mut ExtentList, owner: u64, cpos: u32, blkno: u64, count: u16, per_cluster: u64) -> Result<()> {
    if list.l_tree_depth != 0 {
        return Err(Error::Unsupported(format!("growing the extent tree of directory {owner}")));
    }
    if let Some(last) = list.recs.last_mut() {
        let len = u64::from(last.e_leaf_clusters());
        if last.e_cpos as u64 + len == u64::from(cpos)
            && last.e_blkno + len * per_cluster == blkno
            && len + u64::from(count) <= u64::from(u16::MAX)
            && last.e_flags() == 0
        {
            last.set_leaf_clusters(last.e_leaf_clusters() + count);
            return Ok(());
        }
    }
    if list.recs.len() >= usize::from(list.l_count) {
        return Err(Error::Unsupported(format!("directory {owner} needs a deeper extent tree")));
    }
    list.recs.push(ExtentRec::leaf(cpos, count, 0, blkno));
    Ok(())
}

/// Clusters an indexed directory of `clusters` clusters takes when it grows: as many again, up
/// to 1 MiB at a time, so that its extent list (19 records at 512-byte blocks, while its
/// clusters interleave with its index's) lasts as the directory grows. Clusters past `i_size`
/// are allowed for directories (the kernel's `ocfs2_expand_inline_dir` leaves some too;
/// fsck.ocfs2 does not check a directory's size against its clusters).
fn growth(clusters: u32, cluster_bits: u32) -> u32 {
    let cap = ((1u32 << 20) >> cluster_bits).max(1);
    clusters.clamp(1, cap)
}

/// Adds one block to a block directory; returns it.
pub(super) fn extend(tx: &mut Tx, dir: u64, trailer: bool) -> Result<u64> {
    let geo = tx.vol.geo;
    let per = geo.blocks_per_cluster();
    let di = tx.dinode(dir)?;
    let blocks = dir_block_count(tx, &di);
    let new_blkno = if blocks < u64::from(di.i_clusters) * per {
        let block = tx.block(dir, BlockKind::Inode)?;
        let list = ExtentList::decode(&block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(dir, e))?;
        match map_cluster(tx.vol, dir, &list, (blocks / per) as u32)? {
            Mapping::Data { blkno, .. } => blkno + blocks % per,
            Mapping::Hole { .. } => return Err(Error::corrupt(dir, "directory has a hole")),
        }
    } else {
        // An index's leaf clusters come from the same allocator and interleave with an indexed
        // directory's own: it grows in longer runs. Other directories take a cluster at a time.
        let wanted = if di.is_indexed_dir() { growth(di.i_clusters, geo.cluster_bits) } else { 1 };
        let (cluster, got) = local_alloc::claim_data(tx, wanted)?;
        let count = u16::try_from(got).map_err(|_| Error::corrupt(dir, "a claim of too many clusters"))?;
        let blkno = geo.cluster_to_block(u64::from(cluster));
        let cpos = di.i_clusters;
        tx.update_dinode(dir, |d, block| {
            let mut list = ExtentList::decode(&block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(dir, e))?;
            append_run(&mut list, dir, cpos, blkno, count, per)?;
            list.encode(&mut block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(dir, e))?;
            d.i_clusters += got;
            Ok(())
        })?;
        blkno
    };
    let block = tx.new_block(new_blkno, block_kind(trailer))?;
    format_block(block, new_blkno, dir, trailer)?;
    tx.update_dinode(dir, |d, _| {
        d.i_size = (blocks + 1) * u64::from(geo.block_size);
        Ok(())
    })?;
    Ok(new_blkno)
}

/// Sets the trailer's `db_free_rec_len` of a freshly filled block to its largest hole, as
/// the kernel does when it fills a directory's first block.
fn note_free_space(block: &mut [u8], blkno: u64) -> Result<()> {
    let hole = dxwrite::max_hole(&block[..trailer_offset(block.len())], blkno)?;
    let mut t = DirBlockTrailer::decode(block).map_err(|e| Error::format(blkno, e))?;
    t.db_free_rec_len = hole;
    t.encode(block).map_err(|e| Error::format(blkno, e))
}

/// Moves a full inline directory into its first block (`ocfs2_expand_inline_dir`); returns the
/// block. On volumes with indexed directories the directory gets its index here.
fn expand_inline(tx: &mut Tx, dir: u64) -> Result<u64> {
    let geo = tx.vol.geo;
    let bs = geo.block_size as usize;
    let incompat = tx.vol.sb.s_feature_incompat;
    let trailer = supports_dir_trailer(incompat);
    let di = tx.dinode(dir)?;
    let range = inline_range(&di, bs)?;
    let inode_block = tx.block(dir, BlockKind::Inode)?;
    let old = inode_block[range].to_vec();
    let (cluster, _) = local_alloc::claim_data(tx, 1)?;
    let blkno = geo.cluster_to_block(u64::from(cluster));
    let size = usable(bs, trailer);
    let block = tx.new_block(blkno, block_kind(trailer))?;
    format_block(block, blkno, dir, trailer)?;
    block[..old.len()].copy_from_slice(&old);
    // Stretch the last record over the rest of the block.
    let mut last = None;
    for item in dir_entries(&block[..old.len()], true) {
        last = Some(item.map_err(|e| Error::format(dir, e))?);
    }
    let (off, mut de) = last.ok_or_else(|| Error::corrupt(dir, "inline directory without records"))?;
    de.rec_len += (size - old.len()) as u16;
    de.encode_at(&mut block[..size], off).map_err(|e| Error::format(blkno, e))?;
    if trailer {
        note_free_space(block, blkno)?;
    }
    tx.update_dinode(dir, |d, block| {
        d.i_dyn_features &= !INLINE_DATA_FL;
        d.i_size = u64::from(geo.block_size);
        d.i_clusters = 1;
        block[DINODE_ID2_OFFSET..].fill(0);
        let mut list = ExtentList::new(extent_recs_per_inode(bs));
        list.recs.push(ExtentRec::leaf(0, 1, 0, blkno));
        list.encode(&mut block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(dir, e))
    })?;
    if incompat & FEATURE_INCOMPAT_INDEXED_DIRS != 0 {
        dxwrite::attach_index(tx, dir, blkno)?;
    }
    Ok(blkno)
}

/// Lays out the contents of new directory `ino` (whose inode head the caller fills) with `.`
/// and `..`: inline when the volume has inline data, else in one new block, indexed when the
/// volume has indexed directories (`ocfs2_fill_new_dir`). Returns the directory's (size,
/// clusters, dynamic features).
pub(crate) fn init_dir(tx: &mut Tx, ino: u64, parent: u64) -> Result<(u64, u32, u16)> {
    let geo = tx.vol.geo;
    let bs = geo.block_size as usize;
    let incompat = tx.vol.sb.s_feature_incompat;
    let fill = |area: &mut [u8], at: u64| -> Result<()> {
        let dot = DirEntry::new(ino, b".", FT_DIR);
        dot.encode_at(area, 0).map_err(|e| Error::format(at, e))?;
        let mut dotdot = DirEntry::new(parent, b"..", FT_DIR);
        dotdot.rec_len = (area.len() - usize::from(dot.rec_len)) as u16;
        dotdot.encode_at(area, usize::from(dot.rec_len)).map_err(|e| Error::format(at, e))
    };
    if incompat & FEATURE_INCOMPAT_INLINE_DATA != 0 {
        let count = max_inline_data_with_xattr(bs, 0);
        let block = tx.block_mut(ino, BlockKind::Inode)?;
        let inline = InlineData::new(count);
        inline.encode(&mut block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
        let end = INLINE_DATA_OFFSET + usize::from(count);
        fill(&mut block[INLINE_DATA_OFFSET..end], ino)?;
        return Ok((u64::from(count), 0, INLINE_DATA_FL));
    }
    let trailer = supports_dir_trailer(incompat);
    let (cluster, _) = local_alloc::claim_data(tx, 1)?;
    let blkno = geo.cluster_to_block(u64::from(cluster));
    let block = tx.new_block(blkno, block_kind(trailer))?;
    let size = format_block(block, blkno, ino, trailer)?;
    fill(&mut block[..size], blkno)?;
    if trailer {
        note_free_space(block, blkno)?;
    }
    let inode = tx.block_mut(ino, BlockKind::Inode)?;
    let mut list = ExtentList::new(extent_recs_per_inode(bs));
    list.recs.push(ExtentRec::leaf(0, 1, 0, blkno));
    list.encode(&mut inode[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
    if incompat & FEATURE_INCOMPAT_INDEXED_DIRS != 0 {
        dxwrite::attach_index(tx, ino, blkno)?;
        return Ok((u64::from(geo.block_size), 1, INDEXED_DIR_FL));
    }
    Ok((u64::from(geo.block_size), 1, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_takes_free_records_and_splits_slack() {
        let mut area = vec![0u8; 64];
        encode_empty_record(&mut area, 0, 64).unwrap();
        assert!(insert_in_area(&mut area, 1, 10, b"a", 1).unwrap());
        let names = |a: &[u8]| -> Vec<(usize, Vec<u8>, u16)> {
            dir_entries(a, true).map(|i| i.unwrap()).map(|(o, e)| (o, e.name, e.rec_len)).collect()
        };
        assert_eq!(names(&area), vec![(0, b"a".to_vec(), 64)], "the free record is taken whole");
        assert!(insert_in_area(&mut area, 1, 11, b"bbbbbbbbbbbbbbbb", 1).unwrap());
        assert_eq!(names(&area), vec![(0, b"a".to_vec(), 16), (16, b"bbbbbbbbbbbbbbbb".to_vec(), 48)]);
        assert!(!insert_in_area(&mut area, 1, 12, &[b'c'; 40], 1).unwrap(), "no room");
        assert!(insert_in_area(&mut area, 1, 12, b"cc", 1).unwrap());
        assert_eq!(names(&area).len(), 3);
    }
}
