//! Directory entries (`struct ocfs2_dir_entry`) and a checked walk over a directory's records.
//!
//! A directory block (or the inline data of an inline directory) is an ext2-style chain of
//! records. Each record starts with a 12-byte header and is `rec_len` bytes long, so the
//! records tile the usable area exactly. An entry with `inode == 0` is a free slot whose bytes
//! may still hold a stale name.
//!
//! Invariants the walk enforces on every record, as the kernel's `ocfs2_check_dir_entry` does:
//! - `rec_len >= 12` and `rec_len % 4 == 0`;
//! - `12 + name_len <= rec_len`;
//! - the record lies entirely inside the usable area.
//!
//! The kernel refuses `rec_len < 16` (the length of a one-character record); ocfs2-tools accept
//! 12. The walk accepts 12 so that it never refuses a block the tools consider valid.
//!
//! The usable area is the caller's to choose: a whole block when the directory has no trailer,
//! the block up to [`trailer_offset`](super::dir_trailer::trailer_offset) when it has one, or
//! `id_data[..i_size]` for an inline directory.

use super::bytes::{le16, le64, put_le16, put_le64};
use super::{FormatError, Result, MAX_FILENAME_LEN};

/// Offset of `rec_len` in a record.
const DE_REC_LEN: usize = 0x08;
/// Offset of `name_len`.
const DE_NAME_LEN: usize = 0x0A;
/// Offset of `file_type`.
const DE_FILE_TYPE: usize = 0x0B;
/// Offset of the name: also the length of the fixed header (`OCFS2_DIR_MEMBER_LEN`).
pub const DIR_MEMBER_LEN: usize = 0x0C;
/// Records are padded to this many bytes (`OCFS2_DIR_PAD`).
pub const DIR_PAD: usize = 4;

/// The smallest record that holds a name of `name_len` bytes (`OCFS2_DIR_REC_LEN`).
pub const fn dir_rec_len(name_len: usize) -> usize {
    (name_len + DIR_MEMBER_LEN + DIR_PAD - 1) & !(DIR_PAD - 1)
}

/// One directory record as it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Block number of the inode; 0 marks a free slot.
    pub inode: u64,
    /// Length of the whole record, including the slack after the name.
    pub rec_len: u16,
    pub name_len: u8,
    /// `FT_*`; only the low 3 bits are defined.
    pub file_type: u8,
    /// Exactly `name_len` bytes.
    pub name: Vec<u8>,
}

impl DirEntry {
    /// A live entry whose record is exactly as long as its name needs.
    ///
    /// # Panics
    /// If `name` is longer than 255 bytes.
    pub fn new(inode: u64, name: &[u8], file_type: u8) -> Self {
        assert!(name.len() <= MAX_FILENAME_LEN, "directory entry name longer than 255 bytes");
        DirEntry {
            inode,
            rec_len: dir_rec_len(name.len()) as u16,
            name_len: name.len() as u8,
            file_type,
            name: name.to_vec(),
        }
    }

    /// True for a free slot.
    pub fn is_empty(&self) -> bool {
        self.inode == 0
    }

    /// Bytes this entry's name needs (`OCFS2_DIR_REC_LEN(name_len)`).
    pub fn min_rec_len(&self) -> usize {
        dir_rec_len(self.name_len as usize)
    }

    /// Bytes at the end of the record that a new entry could use without moving this one.
    pub fn slack(&self) -> usize {
        if self.is_empty() {
            self.rec_len as usize
        } else {
            (self.rec_len as usize).saturating_sub(self.min_rec_len())
        }
    }

    /// Decodes and checks the record at `offset` of the usable area `area`.
    pub fn decode_at(area: &[u8], offset: usize) -> Result<Self> {
        let header_end = offset.checked_add(DIR_MEMBER_LEN).ok_or_else(|| corrupt(offset, "offset overflows"))?;
        if header_end > area.len() {
            return Err(corrupt(offset, format!("record header crosses the end of the area ({} bytes)", area.len())));
        }
        let rec_len = le16(area, offset + DE_REC_LEN);
        let name_len = area[offset + DE_NAME_LEN];
        let rl = rec_len as usize;
        if rl < DIR_MEMBER_LEN {
            return Err(corrupt(offset, format!("rec_len {rec_len} is smaller than the 12-byte header")));
        }
        if !padded(rl) {
            return Err(corrupt(offset, format!("rec_len {rec_len} is not a multiple of 4")));
        }
        if DIR_MEMBER_LEN + name_len as usize > rl {
            return Err(corrupt(offset, format!("name_len {name_len} does not fit in rec_len {rec_len}")));
        }
        if rl > area.len() - offset {
            return Err(corrupt(
                offset,
                format!("rec_len {rec_len} crosses the end of the area ({} bytes)", area.len()),
            ));
        }
        let name_start = offset + DIR_MEMBER_LEN;
        Ok(DirEntry {
            inode: le64(area, offset),
            rec_len,
            name_len,
            file_type: area[offset + DE_FILE_TYPE],
            name: area[name_start..name_start + name_len as usize].to_vec(),
        })
    }

    /// Writes the header and the name at `offset`. The slack after the name is left as it is,
    /// so that rewriting a decoded block reproduces it byte for byte.
    ///
    /// Fails if the entry is inconsistent (name length, `rec_len` too small or not a multiple
    /// of 4) or the record does not fit in `area` at `offset`.
    pub fn encode_at(&self, area: &mut [u8], offset: usize) -> Result<()> {
        let rl = self.rec_len as usize;
        if self.name.len() != self.name_len as usize {
            return Err(corrupt(offset, format!("name is {} bytes, name_len {}", self.name.len(), self.name_len)));
        }
        if rl < self.min_rec_len() || !padded(rl) {
            return Err(corrupt(offset, format!("rec_len {rl} cannot hold a {}-byte name", self.name_len)));
        }
        if offset.checked_add(rl).is_none_or(|end| end > area.len()) {
            return Err(corrupt(offset, format!("rec_len {rl} crosses the end of the area ({} bytes)", area.len())));
        }
        put_le64(area, offset, self.inode);
        put_le16(area, offset + DE_REC_LEN, self.rec_len);
        area[offset + DE_NAME_LEN] = self.name_len;
        area[offset + DE_FILE_TYPE] = self.file_type;
        let name_start = offset + DIR_MEMBER_LEN;
        area[name_start..name_start + self.name.len()].copy_from_slice(&self.name);
        Ok(())
    }
}

/// True for a record length on the 4-byte grid.
fn padded(rec_len: usize) -> bool {
    rec_len & (DIR_PAD - 1) == 0
}

fn corrupt(offset: usize, detail: impl std::fmt::Display) -> FormatError {
    FormatError::corrupt("dir entry", format!("at offset {offset}: {detail}"))
}

/// Writes one free record covering `area[offset..offset + rec_len]`, as a freshly formatted
/// directory block starts (`inode` 0, `name_len` 0).
pub fn encode_empty_record(area: &mut [u8], offset: usize, rec_len: u16) -> Result<()> {
    DirEntry { inode: 0, rec_len, name_len: 0, file_type: 0, name: Vec::new() }.encode_at(area, offset)
}

/// Walks the records of a usable area, checking each one (see the module docs).
///
/// Yields `(offset, entry)`; free slots (`inode == 0`) are yielded only when the walk was
/// created with `include_empty`. After the first error the walk yields that error and stops.
/// It yields at most `area.len() / 12` items, so a corrupt area cannot make it loop.
#[derive(Debug, Clone)]
pub struct DirEntries<'a> {
    area: &'a [u8],
    offset: usize,
    include_empty: bool,
    done: bool,
}

/// The checked walk over `area`; see [`DirEntries`].
pub fn dir_entries(area: &[u8], include_empty: bool) -> DirEntries<'_> {
    DirEntries { area, offset: 0, include_empty, done: false }
}

impl Iterator for DirEntries<'_> {
    type Item = Result<(usize, DirEntry)>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done && self.offset < self.area.len() {
            let at = self.offset;
            match DirEntry::decode_at(self.area, at) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(de) => {
                    // decode_at guarantees rec_len >= 12, so the walk always advances.
                    self.offset = at + de.rec_len as usize;
                    if self.include_empty || !de.is_empty() {
                        return Some(Ok((at, de)));
                    }
                }
            }
        }
        self.done = true;
        None
    }
}

/// Checks every record of `area`, and returns the live entries with their offsets.
pub fn decode_entries(area: &[u8]) -> Result<Vec<(usize, DirEntry)>> {
    dir_entries(area, false).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FT_DIR, FT_REG_FILE};

    fn block_with(entries: &[DirEntry], len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let mut off = 0;
        for e in entries {
            e.encode_at(&mut b, off).unwrap();
            off += e.rec_len as usize;
        }
        b
    }

    #[test]
    fn rec_len_rounds_name_plus_header_up_to_four() {
        assert_eq!(dir_rec_len(0), 12);
        assert_eq!(dir_rec_len(1), 16);
        assert_eq!(dir_rec_len(2), 16);
        assert_eq!(dir_rec_len(4), 16);
        assert_eq!(dir_rec_len(5), 20);
        assert_eq!(dir_rec_len(10), 24);
        assert_eq!(dir_rec_len(255), 268);
    }

    #[test]
    fn walk_yields_live_entries_and_optionally_free_slots() {
        let mut dot = DirEntry::new(6, b".", FT_DIR);
        let dotdot = DirEntry::new(6, b"..", FT_DIR);
        let mut free = DirEntry::new(0, b"gone", FT_REG_FILE);
        let mut last = DirEntry::new(9, b"slot_map", FT_REG_FILE);
        dot.rec_len = 16;
        free.rec_len = 20;
        last.rec_len = (128 - 16 - 16 - 20) as u16;
        let b = block_with(&[dot.clone(), dotdot.clone(), free.clone(), last.clone()], 128);

        let live = decode_entries(&b).unwrap();
        assert_eq!(live, vec![(0, dot.clone()), (16, dotdot.clone()), (52, last.clone())]);

        let all: Vec<_> = dir_entries(&b, true).collect::<Result<_>>().unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[2], (32, free));
        assert_eq!(all[3].1.slack(), last.rec_len as usize - dir_rec_len(8));
    }

    #[test]
    fn walk_refuses_each_kind_of_bad_record() {
        let mk = |rec_len: u16, name_len: u8, area: usize| {
            let mut b = vec![0u8; area];
            put_le64(&mut b, 0, 5);
            put_le16(&mut b, 8, rec_len);
            b[10] = name_len;
            b
        };
        let err = |b: &[u8]| dir_entries(b, true).find_map(|r| r.err()).expect("an error");
        for (b, why) in [
            (mk(8, 0, 64), "smaller than"),
            (mk(14, 0, 64), "multiple of 4"),
            (mk(16, 5, 64), "does not fit"),
            (mk(68, 1, 64), "crosses the end"),
            (mk(64, 1, 70), "header crosses"),
        ] {
            let e = err(&b).to_string();
            assert!(e.contains(why), "{e:?} should mention {why:?}");
        }
    }

    #[test]
    fn walk_stops_after_the_first_error() {
        let mut b = vec![0u8; 64];
        put_le16(&mut b, 8, 3);
        let items: Vec<_> = dir_entries(&b, true).collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
    }

    #[test]
    fn empty_record_covers_a_fresh_block() {
        let mut b = vec![0xAAu8; 512];
        encode_empty_record(&mut b, 0, 512).unwrap();
        assert!(encode_empty_record(&mut b, 4, 512).is_err());
        assert!(encode_empty_record(&mut b, 0, 10).is_err());
        let all: Vec<_> = dir_entries(&b, true).collect::<Result<_>>().unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].1.is_empty());
        assert_eq!(all[0].1.slack(), 512);
        assert!(decode_entries(&b).unwrap().is_empty());
    }

    #[test]
    fn encode_leaves_slack_bytes_alone() {
        let mut b = vec![0x55u8; 64];
        let mut e = DirEntry::new(7, b"abc", FT_REG_FILE);
        e.rec_len = 64;
        e.encode_at(&mut b, 0).unwrap();
        assert_eq!(&b[12..15], b"abc");
        e.name_len = 4;
        assert!(e.encode_at(&mut b, 0).is_err());
        e.name_len = 3;
        assert!(b[15..].iter().all(|&x| x == 0x55));
        assert_eq!(DirEntry::decode_at(&b, 0).unwrap(), e);
    }

    #[test]
    fn random_and_mutated_areas_never_panic_the_walk() {
        let mut seed = vec![0u8; 4096];
        let mut off = 0;
        for (i, n) in [&b"."[..], b"..", b"lost+found", b"a-much-longer-name-than-the-others"].iter().enumerate() {
            let mut e = DirEntry::new(5 + i as u64, n, FT_REG_FILE);
            if i == 3 {
                e.rec_len = (4032 - off) as u16;
            }
            e.encode_at(&mut seed, off).unwrap();
            off += e.rec_len as usize;
        }
        encode_empty_record(&mut seed, 4032, 64).unwrap();
        crate::format::testutil::fuzz(0xD1E5_0001, &[seed], |buf| {
            for include_empty in [false, true] {
                let n = dir_entries(buf, include_empty).count();
                assert!(n <= buf.len() / DIR_MEMBER_LEN + 1);
            }
            for off in [0, 12, buf.len() / 2, buf.len(), usize::MAX - 3] {
                if let Ok(d) = DirEntry::decode_at(buf, off) {
                    let mut copy = buf.to_vec();
                    d.encode_at(&mut copy, off).unwrap();
                    assert_eq!(DirEntry::decode_at(&copy, off).unwrap(), d);
                }
            }
        });
    }
}

/// Tests whose other side is ocfs2-tools: directories made by mkfs.ocfs2 and tunefs.ocfs2,
/// listed by debugfs.ocfs2.
#[cfg(test)]
mod reference_tests {
    use super::*;
    use crate::format::blockcheck::{self, dir_trailer_check_offset, BlockCheckOutcome};
    use crate::format::dir_trailer::{trailer_offset, DirBlockTrailer, DIR_TRAILER_SIZE};
    use crate::format::inline::INLINE_DATA_OFFSET;
    use crate::format::testutil::{field, indexed_dirs_image, TestImage};

    /// One block of `dirblocks` output.
    struct Listed {
        blkno: u64,
        /// Trailer Block, Inode, Len, Largest Hole, Next Block, CRC32 (hex) and ECC (hex).
        trailer: Option<[u64; 7]>,
        /// inode, rec_len, name_len, file_type, name.
        entries: Vec<(u64, u64, u64, u64, String)>,
    }

    fn dirblocks(img: &TestImage, dir: &str) -> Vec<Listed> {
        let out = img.debugfs(&format!("dirblocks {dir}"));
        let mut blocks: Vec<Listed> = Vec::new();
        for line in out.lines() {
            let t = line.trim_start_matches('\t');
            let num = |key: &str| field(t, key);
            let hex = |key: &str| {
                let at = t.find(key).expect("key") + key.len();
                u64::from_str_radix(t[at..].split_whitespace().next().expect("value"), 16).expect("hex")
            };
            if t.starts_with("Dirblock:") {
                blocks.push(Listed { blkno: num("Dirblock:"), trailer: None, entries: Vec::new() });
            } else if t.starts_with("Trailer Block:") {
                let b = blocks.last_mut().expect("block");
                b.trailer = Some([num("Trailer Block:"), num("Inode:"), num("Len:"), 0, 0, 0, 0]);
            } else if t.starts_with("Largest Hole:") {
                let tr = blocks.last_mut().and_then(|b| b.trailer.as_mut()).expect("trailer");
                tr[3] = num("Largest Hole:");
                tr[4] = num("Next Block:");
            } else if t.starts_with("CRC32:") {
                if let Some(tr) = blocks.last_mut().and_then(|b| b.trailer.as_mut()) {
                    tr[5] = hex("CRC32:");
                    tr[6] = hex("ECC:");
                }
            } else if t.starts_with("**") {
                // "**FAILED CHECKSUM**": debugfs recomputes dir block checks wrongly; the stored
                // values are right (fsck.ocfs2 and blockcheck::verify agree), so skip it.
            } else if t != "Entries:" && !t.is_empty() {
                let cols: Vec<&str> = t.split_whitespace().collect();
                assert!(cols.len() >= 4, "unexpected dirblocks line {t:?}");
                let n = |i: usize| cols[i].parse::<u64>().expect("number");
                // The name is everything after the fourth column (it may be empty).
                let name = cols.get(4..).map(|r| r.join(" ")).unwrap_or_default();
                blocks.last_mut().expect("block").entries.push((n(0), n(1), n(2), n(3), name));
            }
        }
        blocks
    }

    /// Decodes every listed block of `dir` and compares it with `dirblocks`; returns how many
    /// entries were compared.
    fn check_dir(img: &TestImage, dir: &str, expect_trailers: bool) -> usize {
        let mut compared = 0;
        let listed = dirblocks(img, dir);
        assert!(!listed.is_empty(), "{dir}: no blocks listed");
        for lb in listed {
            let block = img.block(lb.blkno);
            let area = if expect_trailers { &block[..trailer_offset(img.block_size)] } else { &block[..] };
            let ours: Vec<(usize, DirEntry)> = dir_entries(area, true).collect::<Result<_>>().expect("valid block");
            let as_listed: Vec<_> = ours
                .iter()
                .map(|(_, d)| {
                    let name = String::from_utf8_lossy(&d.name).into_owned();
                    (d.inode, d.rec_len as u64, d.name_len as u64, d.file_type as u64, name)
                })
                .collect();
            assert_eq!(as_listed, lb.entries, "{dir} block {}", lb.blkno);
            compared += ours.len();

            // Rewriting every record and the trailer into a zeroed block gives the block back,
            // except the slack after each name, which may hold stale bytes of moved entries.
            let mut again = vec![0u8; img.block_size];
            let mut masked = block.clone();
            for (off, d) in &ours {
                d.encode_at(&mut again, *off).unwrap();
                masked[off + DIR_MEMBER_LEN + d.name.len()..off + d.rec_len as usize].fill(0);
            }
            assert_eq!(DirBlockTrailer::is_present(&block), expect_trailers);
            if expect_trailers {
                let t = DirBlockTrailer::decode(&block).expect("trailer");
                t.check_owner(lb.blkno, t.db_parent_dinode).unwrap();
                let want = lb.trailer.expect("debugfs shows the trailer");
                let got = [
                    t.db_blkno,
                    t.db_parent_dinode,
                    t.db_compat_rec_len as u64,
                    t.db_free_rec_len as u64,
                    t.db_free_next,
                    t.db_check.bc_crc32e as u64,
                    t.db_check.bc_ecc as u64,
                ];
                assert_eq!(got, want, "{dir} trailer of block {}", lb.blkno);
                assert_eq!(t.db_compat_rec_len as usize, DIR_TRAILER_SIZE);
                t.encode(&mut again).unwrap();
            }
            let diff = again.iter().zip(&masked).position(|(a, b)| a != b);
            assert_eq!(diff, None, "{dir} block {} re-encodes differently at that offset", lb.blkno);
        }
        compared
    }

    #[test]
    fn indexed_dir_blocks_match_dirblocks_listing() {
        let img = indexed_dirs_image("dirblk");
        let n = check_dir(&img, "//", true);
        assert!(n > 300, "only {n} system dir entries");
        check_dir(&img, "/", true);
        check_dir(&img, "//orphan_dir:0063", true);
    }

    #[test]
    fn unindexed_dir_blocks_without_metaecc_have_no_trailer() {
        let img = TestImage::mkfs("dirplain", "512M", 1024, &["-N", "8", "--fs-feature-level=max-compat"]);
        let n = check_dir(&img, "//", false);
        assert!(n > 40);
        check_dir(&img, "/", false);
        assert!(!crate::format::dir_trailer::dir_has_trailer(0, false, false));
    }

    #[test]
    fn metaecc_dir_trailers_hold_checks_that_verify() {
        let img = TestImage::mkfs(
            "direcc",
            "256M",
            512,
            &["-N", "4", "-J", "size=4M", "--fs-features=metaecc,noinline-data"],
        );
        check_dir(&img, "//", true);
        for lb in dirblocks(&img, "//") {
            let mut block = img.block(lb.blkno);
            let outcome =
                blockcheck::verify(&mut block, dir_trailer_check_offset(img.block_size), "dir block").unwrap();
            assert_eq!(outcome, BlockCheckOutcome::Clean, "block {}", lb.blkno);
        }
    }

    #[test]
    fn inline_system_dir_lists_like_debugfs() {
        let img = TestImage::mkfs("dirinl", "256M", 4096, &["-N", "4"]);
        let stat = img.debugfs("stat //");
        assert!(stat.contains("InlineData"), "the system dir is expected inline: {stat}");
        let size = field(&stat, "Size:") as usize;
        let ino = field(&stat, "Inode:");
        let block = img.block(ino);
        let area = &block[INLINE_DATA_OFFSET..INLINE_DATA_OFFSET + size];
        let ours: Vec<(String, u64)> = decode_entries(area)
            .unwrap()
            .into_iter()
            .map(|(_, d)| (String::from_utf8(d.name).unwrap(), d.inode))
            .collect();
        let listed = img.ls("//");
        assert_eq!(ours.len(), listed.len());
        for (name, ino) in ours {
            assert_eq!(listed.get(&name), Some(&ino), "{name}");
        }
    }
}
