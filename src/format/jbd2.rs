//! JBD2 journal structures (kernel `include/linux/jbd2.h`, ocfs2-tools `include/ocfs2/jbd2.h`).
//! **Every field is big-endian**, unlike the rest of OCFS2.
//!
//! Each slot's `journal:NNNN` file is a JBD2 log: block 0 holds the journal superblock, and
//! the log proper runs from `s_first` to `s_maxlen - 1`. A transaction is one or more
//! descriptor blocks, each followed by the blocks its tags describe, then a commit block;
//! revoke blocks cancel earlier copies of blocks.
//!
//! OCFS2 uses the v2 superblock with at most INCOMPAT_REVOKE, INCOMPAT_64BIT and (under the
//! `journal_async_commit` mount option) INCOMPAT_ASYNC_COMMIT with COMPAT_CHECKSUM. It never
//! enables CSUM_V2/V3 or fast commits. Their tag layouts differ, so [`TagLayout::from_incompat`]
//! refuses them rather than misreading descriptors.
//!
//! Every walk here is bounded by the block length: a corrupt block yields an error, never a
//! panic or an endless loop.

use super::bytes::{array, be32, be64, put_be32, put_be64};
use super::{FormatError, Result};

/// `JBD2_MAGIC_NUMBER`, at offset 0 of every journal metadata block.
pub const JBD2_MAGIC_NUMBER: u32 = 0xC03B_3998;

pub const JBD2_DESCRIPTOR_BLOCK: u32 = 1;
pub const JBD2_COMMIT_BLOCK: u32 = 2;
pub const JBD2_SUPERBLOCK_V1: u32 = 3;
pub const JBD2_SUPERBLOCK_V2: u32 = 4;
pub const JBD2_REVOKE_BLOCK: u32 = 5;
pub const JBD2_FC_BLOCK: u32 = 6;

pub const JBD2_FEATURE_COMPAT_CHECKSUM: u32 = 0x0000_0001;
pub const JBD2_FEATURE_INCOMPAT_REVOKE: u32 = 0x0000_0001;
pub const JBD2_FEATURE_INCOMPAT_64BIT: u32 = 0x0000_0002;
pub const JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT: u32 = 0x0000_0004;
pub const JBD2_FEATURE_INCOMPAT_CSUM_V2: u32 = 0x0000_0008;
pub const JBD2_FEATURE_INCOMPAT_CSUM_V3: u32 = 0x0000_0010;
pub const JBD2_FEATURE_INCOMPAT_FAST_COMMIT: u32 = 0x0000_0020;

/// Features this library reads and writes.
pub const JBD2_KNOWN_COMPAT_FEATURES: u32 = JBD2_FEATURE_COMPAT_CHECKSUM;
pub const JBD2_KNOWN_INCOMPAT_FEATURES: u32 =
    JBD2_FEATURE_INCOMPAT_REVOKE | JBD2_FEATURE_INCOMPAT_64BIT | JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT;
pub const JBD2_KNOWN_ROCOMPAT_FEATURES: u32 = 0;

/// The data block's first four bytes were the magic number and were zeroed in the log.
pub const JBD2_FLAG_ESCAPE: u16 = 1;
/// No UUID follows this tag: it is the same as the previous one's.
pub const JBD2_FLAG_SAME_UUID: u16 = 2;
/// Unused by the kernel since JBD; kept for decoding.
pub const JBD2_FLAG_DELETED: u16 = 4;
/// The last tag of this descriptor block.
pub const JBD2_FLAG_LAST_TAG: u16 = 8;

pub const JBD2_CRC32_CHKSUM: u8 = 1;
pub const JBD2_MD5_CHKSUM: u8 = 2;
pub const JBD2_SHA1_CHKSUM: u8 = 3;
pub const JBD2_CRC32C_CHKSUM: u8 = 4;
pub const JBD2_CRC32_CHKSUM_SIZE: u8 = 4;
/// Words of `h_chksum` in a commit block (`JBD2_CHECKSUM_BYTES`, a misnomer).
pub const JBD2_CHECKSUM_WORDS: usize = 8;

/// `sizeof(journal_header_t)`.
pub const JOURNAL_HEADER_SIZE: usize = 12;
/// `sizeof(journal_superblock_t)`.
pub const JOURNAL_SUPERBLOCK_SIZE: usize = 0x400;
/// Bytes of the superblock up to and including `s_checksum`; the user table follows.
pub const JOURNAL_SUPERBLOCK_MIN: usize = 0x100;
/// `sizeof(struct commit_header)` without tail padding.
pub const COMMIT_HEADER_SIZE: usize = 0x3C;
/// `sizeof(jbd2_journal_revoke_header_t)`.
pub const REVOKE_HEADER_SIZE: usize = 16;
/// Bytes of the UUID that follows a tag without `JBD2_FLAG_SAME_UUID`.
pub const TAG_UUID_SIZE: usize = 16;
/// Entries of `s_users`.
pub const JBD2_USERS_MAX: usize = 48;

const H_MAGIC: usize = 0x00;
const H_BLOCKTYPE: usize = 0x04;
const H_SEQUENCE: usize = 0x08;

/// `journal_header_t`, the first 12 bytes of every journal metadata block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalHeader {
    pub h_magic: u32,
    pub h_blocktype: u32,
    /// The transaction id this block belongs to.
    pub h_sequence: u32,
}

impl JournalHeader {
    /// A header with the magic number.
    pub fn new(h_blocktype: u32, h_sequence: u32) -> Self {
        JournalHeader { h_magic: JBD2_MAGIC_NUMBER, h_blocktype, h_sequence }
    }

    /// Decodes a header and checks the magic number; the block type is the caller's to check.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        FormatError::need("jbd2 header", buf, JOURNAL_HEADER_SIZE)?;
        let h = JournalHeader {
            h_magic: be32(buf, H_MAGIC),
            h_blocktype: be32(buf, H_BLOCKTYPE),
            h_sequence: be32(buf, H_SEQUENCE),
        };
        if h.h_magic != JBD2_MAGIC_NUMBER {
            return Err(FormatError::BadSignature { what: "jbd2 header", found: buf[..4].to_vec() });
        }
        Ok(h)
    }

    /// Decodes and requires `blocktype`.
    pub fn decode_typed(buf: &[u8], what: &'static str, blocktype: u32) -> Result<Self> {
        let h = Self::decode(buf)?;
        if h.h_blocktype != blocktype {
            return Err(FormatError::corrupt(what, format!("block type is {}, expected {blocktype}", h.h_blocktype)));
        }
        Ok(h)
    }

    pub fn encode(&self, buf: &mut [u8]) -> Result<()> {
        FormatError::need("jbd2 header", buf, JOURNAL_HEADER_SIZE)?;
        put_be32(buf, H_MAGIC, self.h_magic);
        put_be32(buf, H_BLOCKTYPE, self.h_blocktype);
        put_be32(buf, H_SEQUENCE, self.h_sequence);
        Ok(())
    }
}

const S_BLOCKSIZE: usize = 0x0C;
const S_MAXLEN: usize = 0x10;
const S_FIRST: usize = 0x14;
const S_SEQUENCE: usize = 0x18;
const S_START: usize = 0x1C;
const S_ERRNO: usize = 0x20;
const S_FEATURE_COMPAT: usize = 0x24;
const S_FEATURE_INCOMPAT: usize = 0x28;
const S_FEATURE_RO_COMPAT: usize = 0x2C;
const S_UUID: usize = 0x30;
const S_NR_USERS: usize = 0x40;
const S_DYNSUPER: usize = 0x44;
const S_MAX_TRANSACTION: usize = 0x48;
const S_MAX_TRANS_DATA: usize = 0x4C;
const S_CHECKSUM_TYPE: usize = 0x50;
const S_PADDING2: usize = 0x51;
const S_NUM_FC_BLKS: usize = 0x54;
const S_HEAD: usize = 0x58;
const S_PADDING: usize = 0x5C;
const S_PADDING_LEN: usize = 40 * 4;
const S_CHECKSUM: usize = 0xFC;
const S_USERS: usize = 0x100;

/// `journal_superblock_t` (v1 or v2).
///
/// With 512-byte blocks the superblock is larger than a block; only the bytes the buffer holds
/// are decoded, and `s_users` has as many entries as fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSuperblock {
    pub s_header: JournalHeader,
    pub s_blocksize: u32,
    /// Blocks in the journal file.
    pub s_maxlen: u32,
    /// First block of the log area.
    pub s_first: u32,
    /// First transaction id expected in the log.
    pub s_sequence: u32,
    /// Block where the log starts; 0 when the journal is empty (clean).
    pub s_start: u32,
    /// Set by an aborted journal (a negative errno).
    pub s_errno: i32,
    pub s_feature_compat: u32,
    pub s_feature_incompat: u32,
    pub s_feature_ro_compat: u32,
    /// OCFS2 copies the volume UUID here.
    pub s_uuid: [u8; 16],
    pub s_nr_users: u32,
    pub s_dynsuper: u32,
    pub s_max_transaction: u32,
    pub s_max_trans_data: u32,
    pub s_checksum_type: u8,
    pub s_padding2: [u8; 3],
    pub s_num_fc_blks: u32,
    pub s_head: u32,
    pub s_padding: [u8; S_PADDING_LEN],
    pub s_checksum: u32,
    pub s_users: Vec<[u8; 16]>,
}

impl JournalSuperblock {
    /// Decodes block 0 of a journal and checks what later reads depend on: the magic, a
    /// superblock block type, a power-of-two block size, `1 <= s_first < s_maxlen` and
    /// `s_start < s_maxlen`. Feature bits are not judged here; see
    /// [`check_features`](Self::check_features).
    pub fn decode(buf: &[u8]) -> Result<Self> {
        const W: &str = "jbd2 superblock";
        FormatError::need(W, buf, JOURNAL_SUPERBLOCK_MIN)?;
        let s_header = JournalHeader::decode(buf)?;
        if s_header.h_blocktype != JBD2_SUPERBLOCK_V1 && s_header.h_blocktype != JBD2_SUPERBLOCK_V2 {
            return Err(FormatError::corrupt(W, format!("block type {} is not a superblock", s_header.h_blocktype)));
        }
        let users_end = buf.len().min(JOURNAL_SUPERBLOCK_SIZE);
        let s_users = (0..(users_end - S_USERS) / 16).map(|i| array(buf, S_USERS + i * 16)).collect();
        let sb = JournalSuperblock {
            s_header,
            s_blocksize: be32(buf, S_BLOCKSIZE),
            s_maxlen: be32(buf, S_MAXLEN),
            s_first: be32(buf, S_FIRST),
            s_sequence: be32(buf, S_SEQUENCE),
            s_start: be32(buf, S_START),
            s_errno: be32(buf, S_ERRNO) as i32,
            s_feature_compat: be32(buf, S_FEATURE_COMPAT),
            s_feature_incompat: be32(buf, S_FEATURE_INCOMPAT),
            s_feature_ro_compat: be32(buf, S_FEATURE_RO_COMPAT),
            s_uuid: array(buf, S_UUID),
            s_nr_users: be32(buf, S_NR_USERS),
            s_dynsuper: be32(buf, S_DYNSUPER),
            s_max_transaction: be32(buf, S_MAX_TRANSACTION),
            s_max_trans_data: be32(buf, S_MAX_TRANS_DATA),
            s_checksum_type: buf[S_CHECKSUM_TYPE],
            s_padding2: array(buf, S_PADDING2),
            s_num_fc_blks: be32(buf, S_NUM_FC_BLKS),
            s_head: be32(buf, S_HEAD),
            s_padding: array(buf, S_PADDING),
            s_checksum: be32(buf, S_CHECKSUM),
            s_users,
        };
        if !sb.s_blocksize.is_power_of_two() || !(512..=65536).contains(&sb.s_blocksize) {
            return Err(FormatError::corrupt(W, format!("s_blocksize {} is not a block size", sb.s_blocksize)));
        }
        if sb.s_first == 0 || sb.s_first >= sb.s_maxlen {
            return Err(FormatError::corrupt(
                W,
                format!("s_first {} is outside the journal of {} blocks", sb.s_first, sb.s_maxlen),
            ));
        }
        // Only the upper bound: ocfs2-tools write s_start 1 even where s_first is 2 (512-byte
        // blocks), and the kernel's recovery simply finds no transaction there.
        if sb.s_start >= sb.s_maxlen {
            return Err(FormatError::corrupt(
                W,
                format!("s_start {} is outside the journal of {} blocks", sb.s_start, sb.s_maxlen),
            ));
        }
        Ok(sb)
    }

    /// The superblock `libocfs2/mkjournal.c` writes for a new journal of `maxlen` blocks:
    /// v2, `s_first` 1 (2 with 512-byte blocks, where the superblock spans two blocks),
    /// `s_start` 1 and `s_sequence` 1 as ocfs2-tools leave it, one user, the volume UUID.
    pub fn new(blocksize: u32, maxlen: u32, uuid: [u8; 16], feature_incompat: u32) -> Self {
        JournalSuperblock {
            s_header: JournalHeader::new(JBD2_SUPERBLOCK_V2, 0),
            s_blocksize: blocksize,
            s_maxlen: maxlen,
            s_first: if blocksize == 512 { 2 } else { 1 },
            s_sequence: 1,
            s_start: 1,
            s_errno: 0,
            s_feature_compat: 0,
            s_feature_incompat: feature_incompat,
            s_feature_ro_compat: 0,
            s_uuid: uuid,
            s_nr_users: 1,
            s_dynsuper: 0,
            s_max_transaction: 0,
            s_max_trans_data: 0,
            s_checksum_type: 0,
            s_padding2: [0; 3],
            s_num_fc_blks: 0,
            s_head: 0,
            s_padding: [0; S_PADDING_LEN],
            s_checksum: 0,
            s_users: Vec::new(),
        }
    }

    /// Writes the superblock; `s_users` entries are written as far as `buf` reaches.
    pub fn encode(&self, buf: &mut [u8]) -> Result<()> {
        FormatError::need("jbd2 superblock", buf, JOURNAL_SUPERBLOCK_MIN)?;
        self.s_header.encode(buf)?;
        put_be32(buf, S_BLOCKSIZE, self.s_blocksize);
        put_be32(buf, S_MAXLEN, self.s_maxlen);
        put_be32(buf, S_FIRST, self.s_first);
        put_be32(buf, S_SEQUENCE, self.s_sequence);
        put_be32(buf, S_START, self.s_start);
        put_be32(buf, S_ERRNO, self.s_errno as u32);
        put_be32(buf, S_FEATURE_COMPAT, self.s_feature_compat);
        put_be32(buf, S_FEATURE_INCOMPAT, self.s_feature_incompat);
        put_be32(buf, S_FEATURE_RO_COMPAT, self.s_feature_ro_compat);
        buf[S_UUID..S_UUID + 16].copy_from_slice(&self.s_uuid);
        put_be32(buf, S_NR_USERS, self.s_nr_users);
        put_be32(buf, S_DYNSUPER, self.s_dynsuper);
        put_be32(buf, S_MAX_TRANSACTION, self.s_max_transaction);
        put_be32(buf, S_MAX_TRANS_DATA, self.s_max_trans_data);
        buf[S_CHECKSUM_TYPE] = self.s_checksum_type;
        buf[S_PADDING2..S_PADDING2 + 3].copy_from_slice(&self.s_padding2);
        put_be32(buf, S_NUM_FC_BLKS, self.s_num_fc_blks);
        put_be32(buf, S_HEAD, self.s_head);
        buf[S_PADDING..S_PADDING + S_PADDING_LEN].copy_from_slice(&self.s_padding);
        put_be32(buf, S_CHECKSUM, self.s_checksum);
        let end = buf.len().min(JOURNAL_SUPERBLOCK_SIZE);
        for (i, u) in self.s_users.iter().enumerate() {
            let off = S_USERS + i * 16;
            if off + 16 > end {
                break;
            }
            buf[off..off + 16].copy_from_slice(u);
        }
        Ok(())
    }

    /// True for a v2 superblock with all of `mask` in the incompat set (`JBD2_HAS_INCOMPAT_FEATURE`):
    /// a v1 superblock has no features.
    pub fn has_incompat(&self, mask: u32) -> bool {
        self.s_header.h_blocktype == JBD2_SUPERBLOCK_V2 && self.s_feature_incompat & mask == mask
    }

    /// True for a v2 superblock with all of `mask` in the compat set.
    pub fn has_compat(&self, mask: u32) -> bool {
        self.s_header.h_blocktype == JBD2_SUPERBLOCK_V2 && self.s_feature_compat & mask == mask
    }

    /// Feature sets that count: zero for a v1 superblock.
    fn features(&self) -> (u32, u32, u32) {
        if self.s_header.h_blocktype == JBD2_SUPERBLOCK_V2 {
            (self.s_feature_compat, self.s_feature_incompat, self.s_feature_ro_compat)
        } else {
            (0, 0, 0)
        }
    }

    /// Refuses feature bits this library does not implement (checksums v2/v3, fast commits,
    /// anything unknown), naming them.
    pub fn check_features(&self) -> Result<()> {
        let (compat, incompat, ro) = self.features();
        let unknown_incompat = incompat & !JBD2_KNOWN_INCOMPAT_FEATURES;
        let unknown_compat = compat & !JBD2_KNOWN_COMPAT_FEATURES;
        let unknown_ro = ro & !JBD2_KNOWN_ROCOMPAT_FEATURES;
        if unknown_incompat | unknown_compat | unknown_ro != 0 {
            return Err(FormatError::Unsupported {
                what: "jbd2 superblock",
                detail: format!(
                    "features compat {unknown_compat:#x} incompat {unknown_incompat:#x} ({}) ro_compat {unknown_ro:#x}",
                    incompat_names(unknown_incompat)
                ),
            });
        }
        Ok(())
    }

    /// The tag layout of this journal's descriptor blocks.
    pub fn tag_layout(&self) -> Result<TagLayout> {
        TagLayout::from_incompat(self.features().1)
    }

    /// True when the log holds nothing to replay.
    pub fn is_clean(&self) -> bool {
        self.s_start == 0
    }

    /// The user table entries that `s_nr_users` declares, as far as the buffer held them.
    pub fn users(&self) -> &[[u8; 16]] {
        let n = (self.s_nr_users as usize).min(self.s_users.len());
        &self.s_users[..n]
    }
}

fn incompat_names(bits: u32) -> String {
    let names = [
        (JBD2_FEATURE_INCOMPAT_CSUM_V2, "csum_v2"),
        (JBD2_FEATURE_INCOMPAT_CSUM_V3, "csum_v3"),
        (JBD2_FEATURE_INCOMPAT_FAST_COMMIT, "fast_commit"),
    ];
    let mut out: Vec<&str> = names.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect();
    if bits & !names.iter().fold(0, |a, (b, _)| a | b) != 0 {
        out.push("unknown");
    }
    out.join(", ")
}

/// How descriptor tags and revoke records are laid out, fixed by the journal's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagLayout {
    /// 32-bit block numbers: 8-byte tags, 4-byte revoke records.
    Bits32,
    /// INCOMPAT_64BIT: 12-byte tags, 8-byte revoke records.
    Bits64,
}

impl TagLayout {
    /// The layout for an incompat feature set. CSUM_V2 and CSUM_V3 change the tag format and
    /// add block tails; OCFS2 never uses them, so they are refused, not guessed at.
    pub fn from_incompat(incompat: u32) -> Result<Self> {
        let csum = incompat & (JBD2_FEATURE_INCOMPAT_CSUM_V2 | JBD2_FEATURE_INCOMPAT_CSUM_V3);
        if csum != 0 {
            return Err(FormatError::Unsupported {
                what: "jbd2 descriptor",
                detail: format!("journal checksums ({}) are not used by OCFS2", incompat_names(csum)),
            });
        }
        Ok(if incompat & JBD2_FEATURE_INCOMPAT_64BIT != 0 { TagLayout::Bits64 } else { TagLayout::Bits32 })
    }

    /// Bytes of one tag, not counting a following UUID (`journal_tag_bytes`).
    pub fn tag_bytes(self) -> usize {
        match self {
            TagLayout::Bits32 => 8,
            TagLayout::Bits64 => 12,
        }
    }

    /// Bytes of one revoke record.
    pub fn revoke_record_bytes(self) -> usize {
        match self {
            TagLayout::Bits32 => 4,
            TagLayout::Bits64 => 8,
        }
    }
}

/// `journal_block_tag_t` as ocfs2-tools declares it. The kernel splits `t_flags` into a 16-bit
/// checksum (high half) and 16-bit flags (low half); without checksum features the high half is
/// zero, so the two views agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockTag {
    pub t_blocknr: u32,
    pub t_flags: u32,
    /// Only on disk with INCOMPAT_64BIT; 0 otherwise.
    pub t_blocknr_high: u32,
}

impl BlockTag {
    /// The tag for filesystem block `blocknr`.
    pub fn new(blocknr: u64, flags: u16) -> Self {
        BlockTag { t_blocknr: blocknr as u32, t_flags: flags as u32, t_blocknr_high: (blocknr >> 32) as u32 }
    }

    /// The filesystem block the logged copy belongs to.
    pub fn blocknr(&self) -> u64 {
        ((self.t_blocknr_high as u64) << 32) | self.t_blocknr as u64
    }

    /// The flag bits as the kernel reads them.
    pub fn flags(&self) -> u16 {
        self.t_flags as u16
    }

    fn decode(buf: &[u8], off: usize, layout: TagLayout) -> Self {
        BlockTag {
            t_blocknr: be32(buf, off),
            t_flags: be32(buf, off + 4),
            t_blocknr_high: if layout == TagLayout::Bits64 { be32(buf, off + 8) } else { 0 },
        }
    }

    fn encode(&self, buf: &mut [u8], off: usize, layout: TagLayout) {
        put_be32(buf, off, self.t_blocknr);
        put_be32(buf, off + 4, self.t_flags);
        if layout == TagLayout::Bits64 {
            put_be32(buf, off + 8, self.t_blocknr_high);
        }
    }
}

/// A tag and the UUID that follows it when it lacks `JBD2_FLAG_SAME_UUID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorTag {
    pub tag: BlockTag,
    pub uuid: Option<[u8; 16]>,
}

/// Walks the tags of a descriptor block, as the kernel's `do_one_pass` does: tags follow the
/// header, each is followed by a 16-byte UUID unless it has `SAME_UUID`, and the walk ends after
/// a tag with `LAST_TAG` or when no further tag fits. A UUID that would run past the block is
/// an error.
#[derive(Debug, Clone)]
pub struct DescriptorTags<'a> {
    buf: &'a [u8],
    pos: usize,
    layout: TagLayout,
    done: bool,
}

/// The tag walk over a descriptor block (checks the header first).
pub fn descriptor_tags(buf: &[u8], layout: TagLayout) -> Result<DescriptorTags<'_>> {
    JournalHeader::decode_typed(buf, "jbd2 descriptor", JBD2_DESCRIPTOR_BLOCK)?;
    Ok(DescriptorTags { buf, pos: JOURNAL_HEADER_SIZE, layout, done: false })
}

impl Iterator for DescriptorTags<'_> {
    type Item = Result<DescriptorTag>;

    fn next(&mut self) -> Option<Self::Item> {
        let tb = self.layout.tag_bytes();
        if self.done || self.pos + tb > self.buf.len() {
            self.done = true;
            return None;
        }
        let tag = BlockTag::decode(self.buf, self.pos, self.layout);
        self.pos += tb;
        let uuid = if tag.flags() & JBD2_FLAG_SAME_UUID == 0 {
            if self.pos + TAG_UUID_SIZE > self.buf.len() {
                self.done = true;
                return Some(Err(FormatError::corrupt(
                    "jbd2 descriptor",
                    format!("the UUID after the tag at {} runs past the block", self.pos - tb),
                )));
            }
            let u = array(self.buf, self.pos);
            self.pos += TAG_UUID_SIZE;
            Some(u)
        } else {
            None
        };
        if tag.flags() & JBD2_FLAG_LAST_TAG != 0 {
            self.done = true;
        }
        Some(Ok(DescriptorTag { tag, uuid }))
    }
}

/// A descriptor block: the header and its tags in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorBlock {
    pub header: JournalHeader,
    pub tags: Vec<DescriptorTag>,
}

impl DescriptorBlock {
    pub fn decode(buf: &[u8], layout: TagLayout) -> Result<Self> {
        let header = JournalHeader::decode_typed(buf, "jbd2 descriptor", JBD2_DESCRIPTOR_BLOCK)?;
        let tags = descriptor_tags(buf, layout)?.collect::<Result<Vec<_>>>()?;
        Ok(DescriptorBlock { header, tags })
    }

    /// Bytes the tags take after the header.
    pub fn tags_len(&self, layout: TagLayout) -> usize {
        self.tags.iter().map(|t| layout.tag_bytes() + if t.uuid.is_some() { TAG_UUID_SIZE } else { 0 }).sum()
    }

    /// Writes the header and the tags. Flags are written as given: the caller sets
    /// `SAME_UUID` exactly on the tags without a UUID, and `LAST_TAG` on the last one.
    /// Fails if the tags do not fit in `buf`, or a tag's UUID presence disagrees with its
    /// flags.
    pub fn encode(&self, buf: &mut [u8], layout: TagLayout) -> Result<()> {
        FormatError::need("jbd2 descriptor", buf, JOURNAL_HEADER_SIZE + self.tags_len(layout))?;
        if let Some(i) = self.tags.iter().position(|t| t.uuid.is_none() != (t.tag.flags() & JBD2_FLAG_SAME_UUID != 0)) {
            return Err(FormatError::corrupt(
                "jbd2 descriptor",
                format!("tag {i}: UUID presence and SAME_UUID disagree"),
            ));
        }
        self.header.encode(buf)?;
        let mut pos = JOURNAL_HEADER_SIZE;
        for t in &self.tags {
            t.tag.encode(buf, pos, layout);
            pos += layout.tag_bytes();
            if let Some(u) = &t.uuid {
                buf[pos..pos + TAG_UUID_SIZE].copy_from_slice(u);
                pos += TAG_UUID_SIZE;
            }
        }
        Ok(())
    }
}

/// If a data block begins with the journal magic, JBD2 logs it with those 4 bytes zeroed and
/// sets `JBD2_FLAG_ESCAPE` on its tag. True when `data` needs that.
pub fn needs_escape(data: &[u8]) -> bool {
    data.len() >= 4 && be32(data, 0) == JBD2_MAGIC_NUMBER
}

/// Zeroes the magic at the start of a data block before logging it; returns whether it did.
pub fn escape(data: &mut [u8]) -> bool {
    let esc = needs_escape(data);
    if esc {
        put_be32(data, 0, 0);
    }
    esc
}

/// Puts the magic back into an escaped block during replay.
///
/// # Panics
/// If `data` is shorter than 4 bytes.
pub fn unescape(data: &mut [u8]) {
    put_be32(data, 0, JBD2_MAGIC_NUMBER);
}

const H_CHKSUM_TYPE: usize = 0x0C;
const H_CHKSUM_SIZE: usize = 0x0D;
const H_PADDING: usize = 0x0E;
const H_CHKSUM: usize = 0x10;
const H_COMMIT_SEC: usize = 0x30;
const H_COMMIT_NSEC: usize = 0x38;

/// `struct commit_header`, the block that seals a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitHeader {
    pub header: JournalHeader,
    /// `JBD2_CRC32_CHKSUM` with COMPAT_CHECKSUM, else 0.
    pub h_chksum_type: u8,
    pub h_chksum_size: u8,
    pub h_padding: [u8; 2],
    /// With COMPAT_CHECKSUM, word 0 is the CRC32 of the transaction's blocks.
    pub h_chksum: [u32; JBD2_CHECKSUM_WORDS],
    pub h_commit_sec: u64,
    pub h_commit_nsec: u32,
}

impl CommitHeader {
    /// A commit block for transaction `sequence` without checksum.
    pub fn new(sequence: u32, commit_sec: u64, commit_nsec: u32) -> Self {
        CommitHeader {
            header: JournalHeader::new(JBD2_COMMIT_BLOCK, sequence),
            h_chksum_type: 0,
            h_chksum_size: 0,
            h_padding: [0; 2],
            h_chksum: [0; JBD2_CHECKSUM_WORDS],
            h_commit_sec: commit_sec,
            h_commit_nsec: commit_nsec,
        }
    }

    pub fn decode(buf: &[u8]) -> Result<Self> {
        FormatError::need("jbd2 commit", buf, COMMIT_HEADER_SIZE)?;
        let header = JournalHeader::decode_typed(buf, "jbd2 commit", JBD2_COMMIT_BLOCK)?;
        let mut h_chksum = [0u32; JBD2_CHECKSUM_WORDS];
        for (i, w) in h_chksum.iter_mut().enumerate() {
            *w = be32(buf, H_CHKSUM + 4 * i);
        }
        Ok(CommitHeader {
            header,
            h_chksum_type: buf[H_CHKSUM_TYPE],
            h_chksum_size: buf[H_CHKSUM_SIZE],
            h_padding: array(buf, H_PADDING),
            h_chksum,
            h_commit_sec: be64(buf, H_COMMIT_SEC),
            h_commit_nsec: be32(buf, H_COMMIT_NSEC),
        })
    }

    pub fn encode(&self, buf: &mut [u8]) -> Result<()> {
        FormatError::need("jbd2 commit", buf, COMMIT_HEADER_SIZE)?;
        self.header.encode(buf)?;
        buf[H_CHKSUM_TYPE] = self.h_chksum_type;
        buf[H_CHKSUM_SIZE] = self.h_chksum_size;
        buf[H_PADDING..H_PADDING + 2].copy_from_slice(&self.h_padding);
        for (i, w) in self.h_chksum.iter().enumerate() {
            put_be32(buf, H_CHKSUM + 4 * i, *w);
        }
        put_be64(buf, H_COMMIT_SEC, self.h_commit_sec);
        put_be32(buf, H_COMMIT_NSEC, self.h_commit_nsec);
        Ok(())
    }
}

const R_COUNT: usize = 0x0C;

/// Walks the block numbers of a revoke block: records of 4 or 8 bytes from byte 16 up to
/// `r_count`, which counts the bytes used including the header.
#[derive(Debug, Clone)]
pub struct RevokeRecords<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    layout: TagLayout,
}

/// The record walk over a revoke block. Refuses an `r_count` larger than the block, as the
/// kernel's `scan_revoke_records` does; an `r_count` below 16 means no records.
pub fn revoke_records(buf: &[u8], layout: TagLayout) -> Result<RevokeRecords<'_>> {
    FormatError::need("jbd2 revoke", buf, REVOKE_HEADER_SIZE)?;
    JournalHeader::decode_typed(buf, "jbd2 revoke", JBD2_REVOKE_BLOCK)?;
    let r_count = be32(buf, R_COUNT);
    if r_count as usize > buf.len() {
        return Err(FormatError::corrupt(
            "jbd2 revoke",
            format!("r_count {r_count} is larger than the {}-byte block", buf.len()),
        ));
    }
    Ok(RevokeRecords { buf, pos: REVOKE_HEADER_SIZE, end: r_count as usize, layout })
}

impl Iterator for RevokeRecords<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let rb = self.layout.revoke_record_bytes();
        if self.pos + rb > self.end {
            return None;
        }
        let v = match self.layout {
            TagLayout::Bits32 => be32(self.buf, self.pos) as u64,
            TagLayout::Bits64 => be64(self.buf, self.pos),
        };
        self.pos += rb;
        Some(v)
    }
}

/// A revoke block: `jbd2_journal_revoke_header_t` and the revoked block numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeBlock {
    pub header: JournalHeader,
    /// Bytes used, header included.
    pub r_count: u32,
    pub records: Vec<u64>,
}

impl RevokeBlock {
    /// A revoke block for transaction `sequence`, with `r_count` computed.
    pub fn new(sequence: u32, records: Vec<u64>, layout: TagLayout) -> Self {
        let r_count = (REVOKE_HEADER_SIZE + records.len() * layout.revoke_record_bytes()) as u32;
        RevokeBlock { header: JournalHeader::new(JBD2_REVOKE_BLOCK, sequence), r_count, records }
    }

    pub fn decode(buf: &[u8], layout: TagLayout) -> Result<Self> {
        let records = revoke_records(buf, layout)?.collect();
        Ok(RevokeBlock { header: JournalHeader::decode(buf)?, r_count: be32(buf, R_COUNT), records })
    }

    /// Records that fit in a block of `blocksize` bytes.
    pub fn capacity(blocksize: usize, layout: TagLayout) -> usize {
        blocksize.saturating_sub(REVOKE_HEADER_SIZE) / layout.revoke_record_bytes()
    }

    /// Writes the header, `r_count` as stored, and the records. Fails if the records do not
    /// fit in `buf`, or a block number needs 64 bits in a 32-bit layout.
    pub fn encode(&self, buf: &mut [u8], layout: TagLayout) -> Result<()> {
        let rb = layout.revoke_record_bytes();
        FormatError::need("jbd2 revoke", buf, REVOKE_HEADER_SIZE + self.records.len() * rb)?;
        if layout == TagLayout::Bits32 {
            if let Some(r) = self.records.iter().find(|&&r| r > u32::MAX as u64) {
                return Err(FormatError::corrupt("jbd2 revoke", format!("block {r} needs INCOMPAT_64BIT")));
            }
        }
        self.header.encode(buf)?;
        put_be32(buf, R_COUNT, self.r_count);
        for (i, &r) in self.records.iter().enumerate() {
            let off = REVOKE_HEADER_SIZE + i * rb;
            match layout {
                TagLayout::Bits32 => put_be32(buf, off, r as u32),
                TagLayout::Bits64 => put_be64(buf, off, r),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_offsets_are_pinned() {
        let mut sb = JournalSuperblock::new(4096, 4096, [7; 16], JBD2_FEATURE_INCOMPAT_64BIT);
        sb.s_errno = -5;
        sb.s_max_trans_data = 0x0102_0304;
        sb.s_checksum = 0xAABB_CCDD;
        sb.s_users = vec![[9; 16]; JBD2_USERS_MAX];
        let mut b = vec![0u8; 4096];
        sb.encode(&mut b).unwrap();
        assert_eq!(&b[0..12], &[0xC0, 0x3B, 0x39, 0x98, 0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(be32(&b, 0x0C), 4096);
        assert_eq!(be32(&b, 0x14), 1);
        assert_eq!(be32(&b, 0x20), (-5i32) as u32);
        assert_eq!(be32(&b, 0x28), 2);
        assert_eq!(&b[0x30..0x40], &[7; 16]);
        assert_eq!(be32(&b, 0x40), 1);
        assert_eq!(be32(&b, 0x4C), 0x0102_0304);
        assert_eq!(be32(&b, 0xFC), 0xAABB_CCDD);
        assert_eq!(&b[0x100..0x110], &[9; 16]);
        assert_eq!(&b[0x3F0..0x400], &[9; 16]);
        assert!(b[0x400..].iter().all(|&x| x == 0));
        let back = JournalSuperblock::decode(&b).unwrap();
        assert_eq!(back, sb);
        assert_eq!(back.users().len(), 1);
        assert_eq!(back.tag_layout().unwrap(), TagLayout::Bits64);
    }

    #[test]
    fn small_block_superblock_keeps_what_fits() {
        // mkfs.ocfs2 -b 512 writes s_first 2 with s_start 1, below s_first; an earlier
        // decode that required s_start >= s_first refused every fresh 512-byte volume.
        let sb = JournalSuperblock::new(512, 8192, [1; 16], 0);
        assert_eq!((sb.s_first, sb.s_start), (2, 1));
        let mut b = vec![0u8; 512];
        sb.encode(&mut b).unwrap();
        let back = JournalSuperblock::decode(&b).unwrap();
        assert_eq!(back.s_users.len(), 16);
        assert_eq!(back.users(), &[[0u8; 16]]);
        assert!(JournalSuperblock::decode(&b[..0xFF]).is_err());
    }

    #[test]
    fn superblock_geometry_is_checked() {
        let mut b = vec![0u8; 1024];
        let good = JournalSuperblock::new(4096, 100, [0; 16], 0);
        for (f, why) in [
            (Box::new(|s: &mut JournalSuperblock| s.s_first = 0) as Box<dyn Fn(&mut JournalSuperblock)>, "s_first"),
            (Box::new(|s| s.s_first = 100), "s_first"),
            (Box::new(|s| s.s_start = 100), "s_start"),
            (Box::new(|s| s.s_blocksize = 3000), "s_blocksize"),
            (Box::new(|s| s.s_header.h_blocktype = JBD2_COMMIT_BLOCK), "not a superblock"),
        ] {
            let mut s = good.clone();
            f(&mut s);
            s.encode(&mut b).unwrap();
            let e = JournalSuperblock::decode(&b).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let mut s = good.clone();
        s.s_start = 0;
        s.encode(&mut b).unwrap();
        assert!(JournalSuperblock::decode(&b).unwrap().is_clean());
        b[0] = 0;
        assert!(matches!(JournalSuperblock::decode(&b), Err(FormatError::BadSignature { .. })));
    }

    #[test]
    fn checksum_features_are_refused_by_name() {
        let mut sb = JournalSuperblock::new(4096, 100, [0; 16], JBD2_FEATURE_INCOMPAT_CSUM_V3);
        let e = sb.tag_layout().unwrap_err();
        assert!(matches!(e, FormatError::Unsupported { .. }));
        assert!(e.to_string().contains("csum_v3"), "{e}");
        assert!(sb.check_features().unwrap_err().to_string().contains("csum_v3"));
        sb.s_feature_incompat = JBD2_FEATURE_INCOMPAT_CSUM_V2;
        assert!(sb.tag_layout().unwrap_err().to_string().contains("csum_v2"));
        sb.s_feature_incompat = JBD2_FEATURE_INCOMPAT_FAST_COMMIT | 0x8000;
        let e = sb.check_features().unwrap_err().to_string();
        assert!(e.contains("fast_commit") && e.contains("unknown"), "{e}");
        sb.s_feature_incompat = JBD2_KNOWN_INCOMPAT_FEATURES;
        sb.s_feature_compat = JBD2_FEATURE_COMPAT_CHECKSUM;
        sb.check_features().unwrap();
        // A v1 superblock has no features at all.
        sb.s_header.h_blocktype = JBD2_SUPERBLOCK_V1;
        sb.s_feature_incompat = JBD2_FEATURE_INCOMPAT_CSUM_V3;
        assert_eq!(sb.tag_layout().unwrap(), TagLayout::Bits32);
        assert!(!sb.has_incompat(JBD2_FEATURE_INCOMPAT_CSUM_V3));
    }

    #[test]
    fn descriptor_round_trips_in_both_layouts() {
        for layout in [TagLayout::Bits32, TagLayout::Bits64] {
            let hi = if layout == TagLayout::Bits64 { 1u64 << 33 } else { 0 };
            let d = DescriptorBlock {
                header: JournalHeader::new(JBD2_DESCRIPTOR_BLOCK, 77),
                tags: vec![
                    DescriptorTag { tag: BlockTag::new(hi | 5, 0), uuid: Some([3; 16]) },
                    DescriptorTag { tag: BlockTag::new(6, JBD2_FLAG_SAME_UUID | JBD2_FLAG_ESCAPE), uuid: None },
                    DescriptorTag { tag: BlockTag::new(7, JBD2_FLAG_SAME_UUID | JBD2_FLAG_LAST_TAG), uuid: None },
                ],
            };
            let mut b = vec![0xFFu8; 512];
            d.encode(&mut b, layout).unwrap();
            let back = DescriptorBlock::decode(&b, layout).unwrap();
            assert_eq!(back, d);
            assert_eq!(back.tags[0].tag.blocknr(), hi | 5);
            assert_eq!(d.tags_len(layout), 3 * layout.tag_bytes() + 16);
        }
    }

    #[test]
    fn descriptor_walk_is_bounded_and_reports_a_cut_uuid() {
        let mut b = vec![0u8; 64];
        JournalHeader::new(JBD2_DESCRIPTOR_BLOCK, 1).encode(&mut b).unwrap();
        // Tags with SAME_UUID and no LAST_TAG fill the block: the walk stops when none fits.
        for off in (12..64).step_by(8) {
            if off + 8 <= 64 {
                BlockTag::new(off as u64, JBD2_FLAG_SAME_UUID).encode(&mut b, off, TagLayout::Bits32);
            }
        }
        assert_eq!(descriptor_tags(&b, TagLayout::Bits32).unwrap().count(), 6);
        // A tag without SAME_UUID near the end wants 16 more bytes than there are.
        BlockTag::new(1, 0).encode(&mut b, 12, TagLayout::Bits32);
        let short = b[..30].to_vec();
        let items: Vec<_> = descriptor_tags(&short, TagLayout::Bits32).unwrap().collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
        assert!(descriptor_tags(&b[..8], TagLayout::Bits32).is_err());
    }

    #[test]
    fn commit_offsets_are_pinned() {
        let mut c = CommitHeader::new(9, 0x1_0000_0002, 3);
        c.h_chksum_type = JBD2_CRC32_CHKSUM;
        c.h_chksum_size = JBD2_CRC32_CHKSUM_SIZE;
        c.h_chksum[0] = 0xDEAD_BEEF;
        let mut b = vec![0u8; 512];
        c.encode(&mut b).unwrap();
        assert_eq!(b[0x0C], 1);
        assert_eq!(b[0x0D], 4);
        assert_eq!(be32(&b, 0x10), 0xDEAD_BEEF);
        assert_eq!(be64(&b, 0x30), 0x1_0000_0002);
        assert_eq!(be32(&b, 0x38), 3);
        assert_eq!(CommitHeader::decode(&b).unwrap(), c);
        assert!(CommitHeader::decode(&b[..0x3B]).is_err());
        JournalHeader::new(JBD2_REVOKE_BLOCK, 9).encode(&mut b).unwrap();
        assert!(CommitHeader::decode(&b).is_err());
    }

    #[test]
    fn revoke_records_stop_at_r_count() {
        for layout in [TagLayout::Bits32, TagLayout::Bits64] {
            let r = RevokeBlock::new(4, vec![10, 20, 30], layout);
            let mut b = vec![0xEEu8; 256];
            r.encode(&mut b, layout).unwrap();
            assert_eq!(be32(&b, 12) as usize, 16 + 3 * layout.revoke_record_bytes());
            assert_eq!(RevokeBlock::decode(&b, layout).unwrap(), r);
        }
        let mut b = vec![0u8; 64];
        RevokeBlock { header: JournalHeader::new(JBD2_REVOKE_BLOCK, 1), r_count: 65, records: vec![] }
            .encode(&mut b, TagLayout::Bits32)
            .unwrap();
        assert!(revoke_records(&b, TagLayout::Bits32).is_err());
        put_be32(&mut b, 12, 3);
        assert_eq!(revoke_records(&b, TagLayout::Bits32).unwrap().count(), 0);
        put_be32(&mut b, 12, 23);
        assert_eq!(revoke_records(&b, TagLayout::Bits32).unwrap().count(), 1);
        assert_eq!(RevokeBlock::capacity(4096, TagLayout::Bits64), 510);
    }

    #[test]
    fn encoders_refuse_what_they_cannot_write() {
        let mut b = vec![0u8; 64];
        let bad_flags = DescriptorBlock {
            header: JournalHeader::new(JBD2_DESCRIPTOR_BLOCK, 1),
            tags: vec![DescriptorTag { tag: BlockTag::new(5, JBD2_FLAG_SAME_UUID), uuid: Some([0; 16]) }],
        };
        assert!(bad_flags.encode(&mut b, TagLayout::Bits32).is_err());
        let too_many = DescriptorBlock {
            header: JournalHeader::new(JBD2_DESCRIPTOR_BLOCK, 1),
            tags: vec![DescriptorTag { tag: BlockTag::new(5, JBD2_FLAG_SAME_UUID), uuid: None }; 7],
        };
        assert!(too_many.encode(&mut b, TagLayout::Bits32).is_err());
        assert!(RevokeBlock::new(1, vec![1 << 32], TagLayout::Bits32).encode(&mut b, TagLayout::Bits32).is_err());
        assert!(RevokeBlock::new(1, vec![1 << 32], TagLayout::Bits64).encode(&mut b, TagLayout::Bits64).is_ok());
        assert!(CommitHeader::new(1, 2, 3).encode(&mut b[..0x3B]).is_err());
        assert!(JournalSuperblock::new(4096, 9, [0; 16], 0).encode(&mut b).is_err());
    }

    #[test]
    fn escaping_round_trips_the_magic() {
        let mut d = vec![0u8; 16];
        put_be32(&mut d, 0, JBD2_MAGIC_NUMBER);
        assert!(escape(&mut d));
        assert_eq!(&d[..4], &[0; 4]);
        assert!(!escape(&mut d));
        unescape(&mut d);
        assert!(needs_escape(&d));
    }

    #[test]
    fn random_and_mutated_blocks_never_panic_the_journal_decoders() {
        let mut seeds = Vec::new();
        let mut b = vec![0u8; 4096];
        JournalSuperblock::new(4096, 1024, [7; 16], JBD2_FEATURE_INCOMPAT_REVOKE).encode(&mut b).unwrap();
        seeds.push(b);
        for layout in [TagLayout::Bits32, TagLayout::Bits64] {
            let mut b = vec![0u8; 4096];
            DescriptorBlock {
                header: JournalHeader::new(JBD2_DESCRIPTOR_BLOCK, 3),
                tags: vec![
                    DescriptorTag { tag: BlockTag::new(5, 0), uuid: Some([1; 16]) },
                    DescriptorTag { tag: BlockTag::new(6, JBD2_FLAG_SAME_UUID | JBD2_FLAG_LAST_TAG), uuid: None },
                ],
            }
            .encode(&mut b, layout)
            .unwrap();
            seeds.push(b);
            let mut b = vec![0u8; 4096];
            RevokeBlock::new(3, vec![1, 2, 3], layout).encode(&mut b, layout).unwrap();
            seeds.push(b);
        }
        let mut b = vec![0u8; 4096];
        CommitHeader::new(3, 4, 5).encode(&mut b).unwrap();
        seeds.push(b);

        crate::format::testutil::fuzz(0xD1E5_0008, &seeds, |buf| {
            let _ = JournalHeader::decode(buf);
            if let Ok(sb) = JournalSuperblock::decode(buf) {
                let _ = (sb.check_features(), sb.tag_layout(), sb.users().len(), sb.is_clean());
                let mut copy = buf.to_vec();
                sb.encode(&mut copy).unwrap();
                assert_eq!(copy, buf);
            }
            for layout in [TagLayout::Bits32, TagLayout::Bits64] {
                if let Ok(tags) = descriptor_tags(buf, layout) {
                    assert!(tags.count() <= buf.len() / layout.tag_bytes());
                }
                if let Ok(d) = DescriptorBlock::decode(buf, layout) {
                    let mut copy = buf.to_vec();
                    d.encode(&mut copy, layout).unwrap();
                    assert_eq!(DescriptorBlock::decode(&copy, layout).unwrap(), d);
                }
                if let Ok(r) = revoke_records(buf, layout) {
                    assert!(r.count() <= buf.len() / layout.revoke_record_bytes());
                }
                if let Ok(r) = RevokeBlock::decode(buf, layout) {
                    let mut copy = buf.to_vec();
                    r.encode(&mut copy, layout).unwrap();
                    assert_eq!(copy, buf);
                }
            }
            if let Ok(c) = CommitHeader::decode(buf) {
                let mut copy = buf.to_vec();
                c.encode(&mut copy).unwrap();
                assert_eq!(copy, buf);
            }
        });
    }
}

/// Tests whose other side is debugfs.ocfs2 `logdump`, on journals made by mkfs.ocfs2 and
/// transactions written by us.
#[cfg(test)]
mod reference_tests {
    use super::*;
    use crate::format::testutil::{field, TestImage};
    use std::collections::BTreeMap;

    /// `logdump` split into its "Block N:" sections, keyed by the first block number.
    fn sections(out: &str) -> BTreeMap<u64, String> {
        let mut map = BTreeMap::new();
        let mut cur: Option<u64> = None;
        for line in out.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("Block ") {
                let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(n) = n.parse() {
                    cur = Some(n);
                    map.insert(n, String::new());
                }
            }
            if let Some(n) = cur {
                let s = map.get_mut(&n).expect("section");
                s.push_str(t);
                s.push('\n');
            }
        }
        map
    }

    fn hex16(b: &[u8; 16]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect()
    }

    /// Checks the journal superblock of slot 0 against `logdump` and `stat`; returns it with
    /// the journal's first block.
    fn check_superblock(img: &TestImage) -> (JournalSuperblock, u64) {
        let start = img.bmap("//journal:0000", 0);
        let raw = img.block(start);
        let sb = JournalSuperblock::decode(&raw).unwrap();
        sb.check_features().unwrap();
        let out = img.debugfs("logdump 0");
        let s0 = &sections(&out)[&0];
        assert!(s0.contains("Journal Superblock"), "{s0}");
        assert_eq!(sb.s_header.h_sequence as u64, field(s0, "Seq:"));
        assert_eq!(sb.s_header.h_blocktype, JBD2_SUPERBLOCK_V2);
        assert_eq!(sb.s_blocksize as u64, field(s0, "Blocksize:"));
        assert_eq!(sb.s_maxlen as u64, field(s0, "Total Blocks:"));
        assert_eq!(sb.s_first as u64, field(s0, "First Block:"));
        assert_eq!(sb.s_sequence as u64, field(s0, "First Commit ID:"));
        assert_eq!(sb.s_start as u64, field(s0, "Start Log Blknum:"));
        assert_eq!(sb.s_errno as u64, field(s0, "Error:"));
        assert_eq!(sb.s_feature_compat as u64, field(s0, "Feature Compat:"));
        assert_eq!(sb.s_feature_incompat as u64, field(s0, "Feature Incompat:"));
        assert_eq!(sb.s_feature_ro_compat as u64, field(s0, "Feature RO compat:"));
        assert!(s0.contains(&format!("Journal UUID: {}", hex16(&sb.s_uuid))), "{s0}");
        assert_eq!(sb.s_nr_users as u64, field(s0, "FS Share Cnt:"));
        assert_eq!(sb.s_dynsuper as u64, field(s0, "Dynamic Superblk Blknum:"));
        assert_eq!(sb.s_max_transaction as u64, field(s0, "Journal:"));
        assert_eq!(sb.s_max_trans_data as u64, field(s0, "Data:"));

        // The journal covers the whole file, and carries the volume UUID.
        let size = field(&img.debugfs("stat //journal:0000"), "Size:");
        assert_eq!(sb.s_maxlen as u64 * img.block_size as u64, size);
        let stats = img.debugfs("stats");
        assert!(stats.contains(&format!("UUID: {}", hex16(&sb.s_uuid))));
        assert_eq!(sb.s_blocksize as usize, img.block_size);

        let mut again = vec![0u8; img.block_size];
        sb.encode(&mut again).unwrap();
        assert_eq!(again, raw, "the journal superblock re-encodes byte for byte");
        (sb, start)
    }

    #[test]
    fn fresh_journal_superblocks_match_logdump() {
        let (sb, _) = check_superblock(&TestImage::mkfs("jsb4k", "256M", 4096, &["-N", "2"]));
        assert_eq!((sb.s_first, sb.s_start, sb.s_sequence, sb.s_nr_users), (1, 1, 1, 1));
        assert_eq!(sb.tag_layout().unwrap(), TagLayout::Bits32);
        let (sb, _) = check_superblock(&TestImage::mkfs("jsb512", "128M", 512, &["-N", "2", "-J", "size=4M"]));
        assert_eq!((sb.s_first, sb.s_start), (2, 1));
        let (sb, _) = check_superblock(&TestImage::mkfs("jsb64", "256M", 4096, &["-N", "2", "-J", "size=4M,block64"]));
        assert!(sb.has_incompat(JBD2_FEATURE_INCOMPAT_64BIT));
        assert_eq!(sb.tag_layout().unwrap(), TagLayout::Bits64);
    }

    /// Writes descriptor, data, revoke and commit blocks of one transaction at the start of
    /// the log and checks what logdump makes of them.
    fn transaction(img: &TestImage, high: u64) {
        let (sb, start) = check_superblock(img);
        let layout = sb.tag_layout().unwrap();
        let seq = sb.s_sequence + 4;
        let bs = img.block_size;
        let targets = [1000u64 | high, 1001, 1002 | high];
        let mut tags = Vec::new();
        for (i, &t) in targets.iter().enumerate() {
            let mut flags = if i == 0 { 0 } else { JBD2_FLAG_SAME_UUID };
            if i == 1 {
                flags |= JBD2_FLAG_ESCAPE;
            }
            if i + 1 == targets.len() {
                flags |= JBD2_FLAG_LAST_TAG;
            }
            tags.push(DescriptorTag { tag: BlockTag::new(t, flags), uuid: (i == 0).then_some(sb.s_uuid) });
        }
        let desc = DescriptorBlock { header: JournalHeader::new(JBD2_DESCRIPTOR_BLOCK, seq), tags };
        let first = sb.s_first as u64;
        let mut block = vec![0u8; bs];
        desc.encode(&mut block, layout).unwrap();
        assert_eq!(DescriptorBlock::decode(&block, layout).unwrap(), desc);
        img.put_block(start + first, &block);
        for i in 0..targets.len() as u64 {
            let mut data = vec![0x5Au8; bs];
            if i == 1 {
                put_be32(&mut data, 0, JBD2_MAGIC_NUMBER);
                assert!(escape(&mut data));
            }
            img.put_block(start + first + 1 + i, &data);
        }
        let revoke = RevokeBlock::new(seq, vec![1000, 77, 4242], TagLayout::Bits32);
        let mut block = vec![0u8; bs];
        revoke.encode(&mut block, TagLayout::Bits32).unwrap();
        let rblk = first + 4;
        img.put_block(start + rblk, &block);
        let commit = CommitHeader::new(seq, 0x6b06_e91e, 5);
        let mut block = vec![0u8; bs];
        commit.encode(&mut block).unwrap();
        img.put_block(start + rblk + 1, &block);

        let secs = sections(&img.debugfs("logdump 0"));
        let d = &secs[&first];
        assert!(d.contains("Journal Descriptor"), "{d}");
        assert_eq!(field(d, "Seq:"), seq as u64);
        let rows: Vec<(u64, String)> = d
            .lines()
            .filter_map(|l| {
                let (num, rest) = l.split_once(". ")?;
                num.trim().parse::<u32>().ok()?;
                let mut it = rest.split_whitespace();
                Some((it.next()?.parse().ok()?, it.collect::<Vec<_>>().join(" ")))
            })
            .collect();
        let want: Vec<(u64, String)> = vec![
            (targets[0], "none".into()),
            (targets[1], "JBD2_FLAG_ESCAPE JBD2_FLAG_SAME_UUID".into()),
            (targets[2], "JBD2_FLAG_SAME_UUID JBD2_FLAG_LAST_TAG".into()),
        ];
        assert_eq!(rows, want, "{d}");
        // debugfs prints a tag's UUID through a signed char, so bytes >= 0x80 show as FFFFFFxx.
        let as_printed: String = sb.s_uuid.iter().map(|&b| format!("{:02X}", b as i8 as i32 as u32)).collect();
        assert!(d.contains(&format!("UUID: {as_printed}")), "{d}");
        assert!(secs[&(first + 1)].contains("Unknown -- Probably Data"));

        let r = &secs[&rblk];
        assert!(r.contains("Journal Revoke Block"), "{r}");
        assert_eq!(field(r, "r_count:"), 16 + 3 * 4);
        for (i, v) in [1000, 77, 4242].iter().enumerate() {
            assert_eq!(field(r, &format!("revoke[{i}]:")), *v);
        }
        let c = &secs[&(rblk + 1)];
        assert!(c.contains("Journal Commit Block"), "{c}");
        assert_eq!(field(c, "Seq:"), seq as u64);
        assert_eq!(CommitHeader::decode(&img.block(start + rblk + 1)).unwrap(), commit);
        let mut back = img.block(start + first + 2);
        assert!(!needs_escape(&back));
        unescape(&mut back);
        assert!(needs_escape(&back));
    }

    #[test]
    fn transaction_written_by_us_reads_back_in_logdump() {
        transaction(&TestImage::mkfs("jtx", "256M", 4096, &["-N", "2"]), 0);
    }

    #[test]
    fn block64_transaction_written_by_us_reads_back_in_logdump() {
        transaction(&TestImage::mkfs("jtx64", "256M", 4096, &["-N", "2", "-J", "size=4M,block64"]), 1 << 33);
    }
}
