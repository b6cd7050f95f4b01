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
        if rl % DIR_PAD != 0 {
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
        if rl < self.min_rec_len() || rl % DIR_PAD != 0 {
            return Err(corrupt(offset, format!("rec_len {rl} cannot hold a {}-byte name", self.name_len)));
        }
        if !offset.checked_add(rl).is_some_and(|end| end <= area.len()) {
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
}

/// Tests whose other side is ocfs2-tools: directories made by mkfs.ocfs2 and tunefs.ocfs2,
/// listed by debugfs.ocfs2.
#[cfg(test)]
mod reference_tests {
    use super::scratch::{indexed_dirs_image, Scratch};
    use super::*;
    use crate::format::blockcheck::{self, dir_trailer_check_offset, BlockCheckOutcome};
    use crate::format::dir_trailer::{trailer_offset, DirBlockTrailer, DIR_TRAILER_SIZE};
    use crate::format::inline::INLINE_DATA_OFFSET;

    /// One block of `dirblocks` output.
    struct Listed {
        blkno: u64,
        /// Trailer Block, Inode, Len, Largest Hole, Next Block, CRC32 (hex) and ECC (hex).
        trailer: Option<[u64; 7]>,
        /// inode, rec_len, name_len, file_type, name.
        entries: Vec<(u64, u64, u64, u64, String)>,
    }

    fn dirblocks(img: &Scratch, dir: &str) -> Vec<Listed> {
        let out = img.debugfs(&format!("dirblocks {dir}"));
        let mut blocks: Vec<Listed> = Vec::new();
        for line in out.lines() {
            let t = line.trim_start_matches('\t');
            let num = |key: &str| Scratch::field(t, key);
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
    fn check_dir(img: &Scratch, dir: &str, expect_trailers: bool) -> usize {
        let mut compared = 0;
        let listed = dirblocks(img, dir);
        assert!(!listed.is_empty(), "{dir}: no blocks listed");
        for lb in listed {
            let block = img.block(lb.blkno);
            let area = if expect_trailers { &block[..trailer_offset(img.bs)] } else { &block[..] };
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
            let mut again = vec![0u8; img.bs];
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
        let img = Scratch::mkfs("dirplain", "512M", 1024, &["-N", "8", "--fs-feature-level=max-compat"]);
        let n = check_dir(&img, "//", false);
        assert!(n > 40);
        check_dir(&img, "/", false);
        assert!(!crate::format::dir_trailer::dir_has_trailer(0, false, false));
    }

    #[test]
    fn metaecc_dir_blocks_carry_checks_debugfs_agrees_with() {
        let img =
            Scratch::mkfs("direcc", "256M", 512, &["-N", "4", "-J", "size=4M", "--fs-features=metaecc,noinline-data"]);
        check_dir(&img, "//", true);
        for lb in dirblocks(&img, "//") {
            let mut block = img.block(lb.blkno);
            let outcome = blockcheck::verify(&mut block, dir_trailer_check_offset(img.bs), "dir block").unwrap();
            assert_eq!(outcome, BlockCheckOutcome::Clean, "block {}", lb.blkno);
        }
    }

    #[test]
    fn inline_system_dir_lists_like_debugfs() {
        let img = Scratch::mkfs("dirinl", "256M", 4096, &["-N", "4"]);
        let stat = img.debugfs("stat //");
        assert!(stat.contains("InlineData"), "the system dir is expected inline: {stat}");
        let size = Scratch::field(&stat, "Size:") as usize;
        let ino = Scratch::field(&stat, "Inode:");
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

/// Scratch images for the tests of this family of structures: each test formats its own image
/// under /tmp/fmtrest with mkfs.ocfs2, may write blocks into it, and compares what
/// debugfs.ocfs2 prints with what the decoders read. Images are removed on drop.
#[cfg(test)]
pub(crate) mod scratch {
    use std::collections::BTreeMap;
    use std::fs::{File, OpenOptions};
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// xorshift64*: a tiny seeded PRNG, so failures replay from the printed seed.
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> Self {
            XorShift(seed.max(1))
        }
        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n.max(1)
        }
        pub fn fill(&mut self, buf: &mut [u8]) {
            for chunk in buf.chunks_mut(8) {
                let v = self.next_u64().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
        }
    }

    /// Calls `f` on buffers of every length 0..=4096: random bytes, and each seed buffer cut
    /// or zero-padded to that length with a few bytes changed.
    pub fn fuzz(seed: u64, seeds: &[Vec<u8>], mut f: impl FnMut(&[u8])) {
        println!("fuzz seed {seed:#x}");
        let mut rng = XorShift::new(seed);
        for len in 0..=4096usize {
            let mut buf = vec![0u8; len];
            rng.fill(&mut buf);
            f(&buf);
            for s in seeds {
                let mut buf = s.clone();
                buf.resize(len, 0);
                if len > 0 {
                    for _ in 0..=rng.below(4) {
                        let at = rng.below(len as u64) as usize;
                        buf[at] = rng.next_u64() as u8;
                    }
                }
                f(&buf);
            }
        }
    }

    pub struct Scratch {
        pub path: PathBuf,
        pub bs: usize,
        file: File,
    }

    static SEQ: AtomicU32 = AtomicU32::new(0);

    fn run(prog: &str, args: &[&str], path: &PathBuf) -> String {
        let mut child = Command::new(prog)
            .args(args)
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{prog} is needed for this test (install ocfs2-tools): {e}"));
        // Answer yes to any question the tool asks.
        let _ = child.stdin.take().expect("stdin").write_all(b"y\ny\ny\ny\n");
        let out = child.wait_with_output().expect("wait for tool");
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    impl Scratch {
        /// Formats a fresh `size` image with `mkfs.ocfs2 -q -F -M local -b bs` and `args`.
        pub fn mkfs(name: &str, size: &str, bs: usize, args: &[&str]) -> Scratch {
            let dir = PathBuf::from("/tmp/fmtrest");
            std::fs::create_dir_all(&dir).expect("create /tmp/fmtrest");
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{name}-{}-{n}.img", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let st = Command::new("truncate").args(["-s", size]).arg(&path).status().expect("run truncate");
            assert!(st.success(), "truncate failed");
            let bs_arg = bs.to_string();
            let mut all = vec!["-q", "-F", "-M", "local", "-b", bs_arg.as_str()];
            all.extend_from_slice(args);
            run("mkfs.ocfs2", &all, &path);
            let file = OpenOptions::new().read(true).write(true).open(&path).expect("open image");
            Scratch { path, bs, file }
        }

        pub fn read(&self, off: u64, len: usize) -> Vec<u8> {
            let mut buf = vec![0u8; len];
            self.file.read_exact_at(&mut buf, off).expect("read image");
            buf
        }

        pub fn write(&self, off: u64, data: &[u8]) {
            self.file.write_all_at(data, off).expect("write image");
            self.file.sync_all().expect("sync image");
        }

        pub fn block(&self, blkno: u64) -> Vec<u8> {
            self.read(blkno * self.bs as u64, self.bs)
        }

        pub fn put_block(&self, blkno: u64, data: &[u8]) {
            assert_eq!(data.len(), self.bs);
            self.write(blkno * self.bs as u64, data);
        }

        /// Runs another ocfs2-tools program on the image (answers yes to questions).
        pub fn tool(&self, prog: &str, args: &[&str]) -> String {
            run(prog, args, &self.path)
        }

        pub fn debugfs(&self, cmd: &str) -> String {
            self.tool("debugfs.ocfs2", &["-R", cmd])
        }

        /// Name -> inode block of each entry of a directory, from `ls -l`.
        pub fn ls(&self, dir: &str) -> BTreeMap<String, u64> {
            let mut map = BTreeMap::new();
            for line in self.debugfs(&format!("ls -l {dir}")).lines() {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() >= 9 {
                    if let Ok(ino) = cols[0].parse() {
                        map.insert(cols[8..].join(" "), ino);
                    }
                }
            }
            assert!(map.len() >= 2, "debugfs listed nothing for {dir}");
            map
        }

        /// The physical block of logical block `lblk` of a file, from `bmap`.
        pub fn bmap(&self, spec: &str, lblk: u64) -> u64 {
            let out = self.debugfs(&format!("bmap {spec} {lblk}"));
            out.trim().parse().unwrap_or_else(|_| panic!("bmap {spec} {lblk} printed {out:?}"))
        }

        /// The number after `key` in `out`.
        pub fn field(out: &str, key: &str) -> u64 {
            let at = out.find(key).unwrap_or_else(|| panic!("{key:?} not in debugfs output:\n{out}"));
            let tok = out[at + key.len()..].split_whitespace().next().unwrap_or("");
            tok.parse().unwrap_or_else(|_| panic!("{key:?} is followed by {tok:?}"))
        }
    }

    /// Names added to the root directory of [`indexed_dirs_image`] before it is indexed:
    /// chunk-boundary lengths and bytes above 0x7F, which hash differently with signed chars.
    pub fn odd_names() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = vec![
            "\u{e9}".as_bytes().to_vec(),
            "na\u{ef}ve-caf\u{e9}".as_bytes().to_vec(),
            vec![0xFF, 0xFE, 0x80, 0x81],
            b"abcdefghijklmnop".to_vec(),
            b"abcdefghijklmnopq".to_vec(),
            b"abcdefghijklmno".to_vec(),
            b"0123456789abcdef0123456789abcde".to_vec(),
            b"0123456789abcdef0123456789abcdef".to_vec(),
            b"0123456789abcdef0123456789abcdef!".to_vec(),
            b"x".to_vec(),
            b"...".to_vec(),
        ];
        v.push((0..200u32).map(|i| b'a' + (i % 26) as u8).collect());
        v.push((0..255u32).map(|i| 0x80 + (i % 0x7F) as u8).collect());
        v
    }

    /// A 4K-block volume whose directories are indexed by tunefs.ocfs2 (so they have dir
    /// trailers and dx trees): 64 slots make the system directory span several blocks and
    /// leaves, and [`odd_names`] are added to the root directory before indexing.
    pub fn indexed_dirs_image(name: &str) -> Scratch {
        use super::{dir_entries, DirEntry};
        let img = Scratch::mkfs(
            name,
            "4G",
            4096,
            &["-C", "4096", "-N", "64", "-J", "size=4M", "--fs-features=noinline-data,noindexed-dirs"],
        );
        let lost_found = img.ls("/")["lost+found"];
        let blkno = img.bmap("/", 0);
        let mut block = img.block(blkno);
        let (last_off, mut last) = dir_entries(&block, true).last().expect("root has entries").expect("valid root");
        let mut off = last_off + last.min_rec_len();
        let end = last_off + last.rec_len as usize;
        last.rec_len = last.min_rec_len() as u16;
        last.encode_at(&mut block, last_off).expect("shrink last entry");
        let names = odd_names();
        for (i, n) in names.iter().enumerate() {
            let mut de = DirEntry::new(lost_found, n, crate::format::FT_REG_FILE);
            if i + 1 == names.len() {
                de.rec_len = (end - off) as u16;
            }
            de.encode_at(&mut block, off).expect("add entry");
            off += de.rec_len as usize;
        }
        assert_eq!(off, end);
        img.put_block(blkno, &block);
        img.tool("tunefs.ocfs2", &["-y", "--fs-features=indexed-dirs"]);
        img
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
