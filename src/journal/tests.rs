//! Unit tests of the journal on volumes in memory: what commit writes, what replay applies,
//! and how both refuse bad input.

use super::testkit::{seed, Layout, Rng, UUID};
use super::*;
use crate::device::{BlockDevice, FaultDevice, FaultKind, FaultPlan, MemDevice};
use crate::format::bytes::{be32, put_be32};
use crate::format::jbd2::*;
use std::sync::Arc;

fn pattern(bs: u32, v: u8) -> Vec<u8> {
    let mut b = vec![v; bs as usize];
    b[0] = 0xAB;
    b
}

fn magic_block(bs: u32, v: u8) -> Vec<u8> {
    let mut b = vec![v; bs as usize];
    put_be32(&mut b, 0, JBD2_MAGIC_NUMBER);
    b
}

fn read(dev: &impl BlockDevice, bs: u32, b: u64) -> Vec<u8> {
    let mut buf = vec![0u8; bs as usize];
    dev.read_at(b * u64::from(bs), &mut buf).unwrap();
    buf
}

fn journal_block(l: &Layout, dev: &impl BlockDevice, lblk: u32) -> Vec<u8> {
    read(dev, l.bs, l.jstart + u64::from(lblk))
}

#[test]
fn committed_transaction_is_replayed_home_after_a_crash() {
    for bs in [512u32, 4096] {
        let l = Layout::new(bs, 64);
        let img = l.image();
        let mut j = l.open_copy(&img);
        assert!(!j.needs_recovery());
        let mut tx = j.begin();
        tx.log(200, &pattern(bs, 1)).unwrap();
        tx.log(201, &magic_block(bs, 2)).unwrap();
        tx.log(300, &pattern(bs, 3)).unwrap();
        let info = j.commit(tx).unwrap().unwrap();
        assert_eq!(info.start, if bs == 512 { 2 } else { 1 }); // s_first
        assert_eq!(info.log_blocks, 5);
        assert_eq!(j.pending(201).unwrap(), &magic_block(bs, 2)[..]);
        // Nothing went home: only the log and its superblock were written.
        let dev = j.into_device();
        assert_eq!(read(&*dev, bs, 200), l.block(&img, 200));

        // The superblock points at the transaction.
        let sb = JournalSuperblock::decode(&journal_block(&l, &*dev, 0)).unwrap();
        assert_eq!((sb.s_start, sb.s_sequence), (info.start, info.sequence));
        // The descriptor tags the blocks in order, the escaped one flagged, its copy zeroed.
        let d =
            DescriptorBlock::decode(&journal_block(&l, &*dev, info.descriptor_blocks[0]), TagLayout::Bits32).unwrap();
        let tags: Vec<(u64, u16)> = d.tags.iter().map(|t| (t.tag.blocknr(), t.tag.flags())).collect();
        assert_eq!(
            tags,
            [(200, 0), (201, JBD2_FLAG_SAME_UUID | JBD2_FLAG_ESCAPE), (300, JBD2_FLAG_SAME_UUID | JBD2_FLAG_LAST_TAG)]
        );
        assert_eq!(d.tags[0].uuid, Some(UUID));
        assert_eq!(be32(&journal_block(&l, &*dev, info.descriptor_blocks[0] + 2), 0), 0);
        let c = CommitHeader::decode(&journal_block(&l, &*dev, info.commit_block)).unwrap();
        assert_eq!(c.header.h_sequence, info.sequence);
        assert!(c.h_commit_sec > 1_600_000_000);

        let mut j = l.open(dev);
        assert!(j.needs_recovery());
        assert!(matches!(j.commit(j.begin()), Err(JournalError::NeedsRecovery)));
        let r = j.replay().unwrap();
        assert_eq!((r.transactions, r.blocks_replayed, r.home_blocks.clone()), (1, 3, vec![200, 201, 300]));
        assert_eq!(r.end_sequence, info.sequence + 1);
        assert_eq!(r.end_reason, LogEnd::NoMagic { block: info.commit_block + 1 });
        let dev = j.into_device();
        assert_eq!(read(&*dev, bs, 200), pattern(bs, 1));
        assert_eq!(read(&*dev, bs, 201), magic_block(bs, 2));
        assert_eq!(read(&*dev, bs, 300), pattern(bs, 3));
        let sb = JournalSuperblock::decode(&journal_block(&l, &*dev, 0)).unwrap();
        assert_eq!((sb.s_start, sb.s_sequence), (0, info.sequence + 2));
        assert!(!l.open(dev).needs_recovery());
    }
}

#[test]
fn newest_copy_wins_and_revokes_hide_older_copies() {
    let l = Layout::new(1024, 64);
    let mut j = l.open_copy(&l.image());
    let mut tx = j.begin();
    for (b, v) in [(100, 1), (101, 1), (102, 1), (103, 1)] {
        tx.log(b, &pattern(1024, v)).unwrap();
    }
    j.commit(tx).unwrap();
    let mut tx = j.begin();
    tx.log(100, &pattern(1024, 2)).unwrap();
    tx.revoke(101); // freed: its copy in transaction 1 must not be replayed
    tx.revoke(102); // freed, then allocated again in transaction 3
    j.commit(tx).unwrap();
    assert!(j.pending(101).is_none());
    assert!(j.superblock().has_incompat(JBD2_FEATURE_INCOMPAT_REVOKE));
    let mut tx = j.begin();
    tx.log(102, &pattern(1024, 3)).unwrap();
    tx.log(104, &pattern(1024, 3)).unwrap();
    tx.revoke(104); // revoked after being logged in the same transaction: not logged at all
    tx.revoke(105);
    tx.log(105, &pattern(1024, 3)).unwrap(); // logged after its revoke: logged, not revoked
    assert_eq!((tx.logged_blocks(), tx.revoked_blocks()), (2, 1));
    j.commit(tx).unwrap();

    let img = l.image();
    let mut j = l.open(j.into_device());
    let r = j.replay().unwrap();
    assert_eq!(r.transactions, 3);
    assert_eq!(r.revoke_records, 3);
    assert_eq!(r.revoke_hits, 2, "101 and the first 102");
    let dev = j.into_device();
    assert_eq!(read(&*dev, 1024, 100), pattern(1024, 2));
    assert_eq!(read(&*dev, 1024, 101), l.block(&img, 101), "revoked in a later transaction");
    assert_eq!(read(&*dev, 1024, 102), pattern(1024, 3), "logged again after its revoke");
    assert_eq!(read(&*dev, 1024, 103), pattern(1024, 1));
    assert_eq!(read(&*dev, 1024, 104), l.block(&img, 104));
    assert_eq!(read(&*dev, 1024, 105), pattern(1024, 3));
}

#[test]
fn checkpoint_writes_home_and_empties_the_log() {
    let l = Layout::new(512, 64);
    let mut j = l.open_copy(&l.image());
    let mut tx = j.begin();
    tx.log(300, &pattern(512, 9)).unwrap();
    let info = j.commit(tx).unwrap().unwrap();
    j.checkpoint().unwrap();
    let p = j.position();
    assert_eq!((p.used, p.pending_blocks, p.tail, p.head), (0, 0, p.head, info.commit_block + 1));
    assert_eq!(read(j.device(), 512, 300), pattern(512, 9));
    let sb = j.superblock().clone();
    assert_eq!((sb.s_start, sb.s_sequence), (0, info.sequence + 1));
    // The next transaction continues where the log left off, and the superblock follows it.
    let mut tx = j.begin();
    tx.log(301, &pattern(512, 8)).unwrap();
    let next = j.commit(tx).unwrap().unwrap();
    assert_eq!((next.start, next.sequence), (info.commit_block + 1, info.sequence + 1));
    assert_eq!(j.superblock().s_start, next.start);
    j.checkpoint().unwrap();
    j.checkpoint().unwrap();
    let mut j = l.open(j.into_device());
    assert!(!j.needs_recovery());
    assert_eq!(j.replay().unwrap().end_reason, LogEnd::Clean);
    assert_eq!(j.position().next_sequence, next.sequence + 2, "a clean journal restarts past s_sequence");
}

#[test]
fn the_log_wraps_around_and_replays_across_the_end() {
    let s = seed();
    println!("seed {s}");
    let mut rng = Rng::new(s);
    let l = Layout::new(512, 24); // 22 log blocks
    let mut j = l.open_copy(&l.image());
    let mut model = std::collections::BTreeMap::new();
    let mut wrapped = false;
    let mut checkpoints = 0;
    for round in 0..40u32 {
        let mut tx = j.begin();
        for _ in 0..=rng.below(4) {
            let b = 100 + rng.below(30);
            let mut data = vec![0u8; 512];
            rng.fill(&mut data);
            if rng.below(4) == 0 {
                put_be32(&mut data, 0, JBD2_MAGIC_NUMBER);
            }
            tx.log(b, &data).unwrap();
            model.insert(b, data);
        }
        let info = j.commit(tx).unwrap().unwrap();
        checkpoints += info.checkpointed_first as u32;
        wrapped |= info.commit_block < info.start;
        if round == 39 {
            assert!(j.position().used > 0);
        }
    }
    assert!(wrapped && checkpoints > 3, "the test must wrap the log ({checkpoints} checkpoints)");
    let mut j = l.open(j.into_device());
    j.replay().unwrap();
    let dev = j.into_device();
    for (b, data) in &model {
        assert_eq!(&read(&*dev, 512, *b), data, "block {b}, seed {s}");
    }
}

#[test]
fn commit_checksums_are_written_and_a_bad_one_ends_the_log() {
    let mut l = Layout::new(1024, 64);
    l.compat = JBD2_FEATURE_COMPAT_CHECKSUM;
    l.incompat = JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT;
    let img = l.image();
    let mut j = l.open_copy(&img);
    let mut infos = Vec::new();
    for v in 1..=3u8 {
        let mut tx = j.begin();
        tx.log(100 + u64::from(v), &pattern(1024, v)).unwrap();
        tx.log(200, &magic_block(1024, v)).unwrap();
        infos.push(j.commit(tx).unwrap().unwrap());
    }
    let dev = j.into_device();
    // The checksum covers the descriptor and the (escaped) copies, as jbd2's calc_chksums.
    let i = &infos[0];
    let mut crc = !0;
    for b in i.descriptor_blocks[0]..i.commit_block {
        crc = crc32_be(crc, &journal_block(&l, &*dev, b));
    }
    let c = CommitHeader::decode(&journal_block(&l, &*dev, i.commit_block)).unwrap();
    assert_eq!((c.h_chksum_type, c.h_chksum_size, c.h_chksum[0]), (JBD2_CRC32_CHKSUM, 4, crc));

    // Intact, all three replay.
    let copy = Arc::new(MemDevice::from_bytes(dev.to_bytes()));
    let mut j = l.open(copy.clone());
    assert_eq!(j.replay().unwrap().transactions, 3);
    assert_eq!(read(&*copy, 1024, 200), magic_block(1024, 3));

    // A flipped bit in the second transaction's copy ends the log there.
    let bad = infos[1].descriptor_blocks[0] + 1;
    let off = (l.jstart + u64::from(bad)) * 1024 + 77;
    let mut byte = [0u8];
    dev.read_at(off, &mut byte).unwrap();
    dev.write_at(off, &[byte[0] ^ 4]).unwrap();
    let mut j = l.open(dev.clone());
    let r = j.replay().unwrap();
    assert_eq!(r.transactions, 1);
    assert_eq!(r.end_reason, LogEnd::CommitChecksum { block: infos[1].commit_block, sequence: infos[1].sequence });
    assert_eq!(read(&*dev, 1024, 101), pattern(1024, 1));
    assert_eq!(read(&*dev, 1024, 102), l.block(&img, 102));
    assert_eq!(read(&*dev, 1024, 200), magic_block(1024, 1));
}

#[test]
fn block64_tags_and_revokes_carry_high_bits() {
    let mut l = Layout::new(1024, 64);
    l.incompat = JBD2_FEATURE_INCOMPAT_64BIT;
    let mut j = l.open_copy(&l.image());
    assert_eq!(j.tag_layout(), TagLayout::Bits64);
    let mut tx = j.begin();
    tx.log(150, &pattern(1024, 5)).unwrap();
    tx.revoke(151);
    let info = j.commit(tx).unwrap().unwrap();
    let dev = j.into_device();
    let r = RevokeBlock::decode(&journal_block(&l, &*dev, info.revoke_blocks[0]), TagLayout::Bits64).unwrap();
    assert_eq!((r.r_count, r.records), (24, vec![151]));
    let d = DescriptorBlock::decode(&journal_block(&l, &*dev, info.descriptor_blocks[0]), TagLayout::Bits64).unwrap();
    assert_eq!(d.tags[0].tag.blocknr(), 150);
    let mut j = l.open(dev.clone());
    assert_eq!(j.replay().unwrap().home_blocks, vec![150]);
    assert_eq!(read(&*dev, 1024, 150), pattern(1024, 5));
}

#[test]
fn many_blocks_spread_over_several_descriptor_and_revoke_blocks() {
    let l = Layout::new(512, 400);
    let mut j = l.open_copy(&l.image());
    let mut tx = j.begin();
    for b in 0..130u64 {
        tx.log(420 + b % 90, &pattern(512, b as u8)).unwrap();
        tx.revoke(600 + b);
    }
    // 90 blocks: 60 tags fit a 512-byte descriptor ((512 - 12 - 16) / 8).
    let needed = tx.log_blocks(TagLayout::Bits32);
    let mut l2 = l;
    l2.blocks = 1024;
    let mut j2 = l2.open_copy(&l2.image());
    let info = j2.commit(tx.clone()).unwrap().unwrap();
    assert_eq!((info.revoke_blocks.len(), info.descriptor_blocks.len()), (2, 2));
    assert_eq!(u64::from(info.log_blocks), needed);
    assert_eq!(needed, 2 + 2 + 90 + 1);
    // Blocks past the device are refused before anything is written.
    assert!(matches!(j.commit(tx), Err(JournalError::InvalidArgument(_))));
    assert!(j.failure().is_none());
    let mut j2 = l2.open(j2.into_device());
    let r = j2.replay().unwrap();
    assert_eq!((r.revoke_records, r.home_blocks.len()), (130, 90));
}

#[test]
fn refuses_what_it_cannot_log() {
    let l = Layout::new(512, 16);
    let mut j = l.open_copy(&l.image());
    let mut tx = j.begin();
    assert!(tx.log(100, &[0u8; 100]).is_err());
    tx.log(l.jstart + 3, &pattern(512, 1)).unwrap();
    assert!(matches!(j.commit(tx), Err(JournalError::InvalidArgument(_))), "a block of the journal itself");
    let mut tx = j.begin();
    for b in 0..20 {
        tx.log(100 + b, &pattern(512, 1)).unwrap();
    }
    assert!(matches!(j.commit(tx), Err(JournalError::TooLarge { needed: 22, capacity: 14 })));
    assert_eq!(JournalError::TooLarge { needed: 1, capacity: 0 }.errno(), libc::ENOSPC);
    assert_eq!(j.commit(j.begin()).unwrap(), None);
    let other = Layout::new(1024, 16);
    let wrong_size = other.open_copy(&other.image()).begin();
    assert!(matches!(j.commit(wrong_size), Err(JournalError::InvalidArgument(_))));
}

#[test]
fn unsupported_superblocks_are_refused_by_name() {
    let l = Layout::new(1024, 64);
    let img = l.image();
    let sb_at = l.jstart as usize * 1024;
    let open = |img: &[u8], bs: u32| Journal::open(MemDevice::from_bytes(img.to_vec()), l.map(), bs, UUID);
    for (incompat, name) in [
        (JBD2_FEATURE_INCOMPAT_CSUM_V3, "csum_v3"),
        (JBD2_FEATURE_INCOMPAT_CSUM_V2, "csum_v2"),
        (JBD2_FEATURE_INCOMPAT_FAST_COMMIT, "fast_commit"),
        (0x100, "unknown"),
    ] {
        let mut bad = img.clone();
        put_be32(&mut bad, sb_at + 0x28, incompat);
        match open(&bad, 1024) {
            Err(e @ JournalError::Unsupported(_)) => assert!(e.to_string().contains(name), "{e}"),
            other => panic!("{name}: {:?}", other.err()),
        }
    }
    let mut v1 = img.clone();
    put_be32(&mut v1, sb_at + 4, JBD2_SUPERBLOCK_V1);
    assert!(matches!(open(&v1, 1024), Err(JournalError::Unsupported(_))));
    let mut other_size = img.clone();
    put_be32(&mut other_size, sb_at + 0x0C, 2048);
    assert!(matches!(open(&other_size, 1024), Err(JournalError::Corrupt(_))));
    let mut long = img.clone();
    put_be32(&mut long, sb_at + 0x10, 65);
    assert!(matches!(open(&long, 1024), Err(JournalError::Corrupt(_))));
    let mut nomagic = img.clone();
    nomagic[sb_at] = 0;
    assert!(matches!(open(&nomagic, 1024), Err(JournalError::Format(_))));
    let past = JournalMap::contiguous(500, 64).unwrap();
    assert!(matches!(Journal::open(MemDevice::from_bytes(img), past, 1024, UUID), Err(JournalError::Corrupt(_))));
}

#[test]
fn a_tag_pointing_outside_the_volume_stops_replay_before_any_write() {
    let l = Layout::new(512, 32);
    let img = l.image();
    let mut j = l.open_copy(&img);
    let mut tx = j.begin();
    tx.log(100, &pattern(512, 1)).unwrap();
    tx.log(101, &pattern(512, 1)).unwrap();
    let info = j.commit(tx).unwrap().unwrap();
    let dev = j.into_device();
    for bad in [10_000u32, l.jstart as u32 + 5] {
        let copy = Arc::new(MemDevice::from_bytes(dev.to_bytes()));
        let off = (l.jstart + u64::from(info.descriptor_blocks[0])) * 512 + 12 + 8 + 16;
        let mut b = [0u8; 4];
        put_be32(&mut b, 0, bad);
        copy.write_at(off, &b).unwrap();
        let mut j = l.open(copy.clone());
        assert!(matches!(j.replay(), Err(JournalError::Corrupt(_))));
        assert_eq!(read(&*copy, 512, 100), l.block(&img, 100), "nothing went home");
        assert!(j.needs_recovery());
    }
}

#[test]
fn a_log_that_never_ends_is_an_error_not_a_hang() {
    // Every log block a revoke block of the same transaction: the scan would go round forever.
    let l = Layout::new(512, 32);
    let mut img = l.image();
    let sb_at = l.jstart as usize * 512;
    put_be32(&mut img, sb_at + 0x1C, 5); // s_start
    put_be32(&mut img, sb_at + 0x18, 9); // s_sequence
    for b in 1..32 {
        let at = sb_at + b * 512;
        RevokeBlock::new(9, vec![], TagLayout::Bits32).encode(&mut img[at..at + 512], TagLayout::Bits32).unwrap();
    }
    let mut j = l.open_copy(&img);
    let e = j.replay().unwrap_err();
    assert!(e.to_string().contains("more than once"), "{e}");
}

#[test]
fn damaged_logs_never_panic_and_never_write_outside_the_volume() {
    let s = seed();
    println!("seed {s}");
    let mut rng = Rng::new(s);
    for bs in [512u32, 1024] {
        for incompat in [0, JBD2_FEATURE_INCOMPAT_64BIT] {
            let mut l = Layout::new(bs, 40);
            l.incompat = incompat;
            l.compat = if rng.below(2) == 0 { JBD2_FEATURE_COMPAT_CHECKSUM } else { 0 };
            let mut j = l.open_copy(&l.image());
            for t in 0..6u64 {
                let mut tx = j.begin();
                for k in 0..3 {
                    tx.log(100 + (t * 7 + k) % 40, &magic_block(bs, t as u8)).unwrap();
                }
                tx.revoke(100 + t);
                j.commit(tx).unwrap();
            }
            let base = j.into_device().to_bytes();
            let jbytes = l.jstart as usize * bs as usize..(l.jstart as usize + 40) * bs as usize;
            for _ in 0..400 {
                let mut img = base.clone();
                for _ in 0..=rng.below(6) {
                    let block = rng.below(40) as usize;
                    // Headers, tags and counts live near the start of a block.
                    let span = if rng.below(2) == 0 { 64 } else { u64::from(bs) };
                    let off = jbytes.start + block * bs as usize + rng.below(span) as usize;
                    img[off] = match rng.below(3) {
                        0 => rng.next_u64() as u8,
                        1 => img[off] ^ (1 << rng.below(8)),
                        _ => 0xFF,
                    };
                }
                let dev = Arc::new(MemDevice::from_bytes(img));
                if let Ok(mut j) = Journal::open(dev.clone(), l.map(), bs, UUID) {
                    let _ = j.replay();
                }
            }
        }
    }
}

#[test]
fn a_failed_write_aborts_the_journal() {
    let l = Layout::new(512, 32);
    let dev =
        Arc::new(FaultDevice::new(MemDevice::from_bytes(l.image()), FaultPlan::new().with(FaultKind::FailWrite(2))));
    let mut j = Journal::open(dev.clone(), l.map(), 512, UUID).unwrap();
    let mut tx = j.begin();
    tx.log(100, &pattern(512, 1)).unwrap();
    tx.log(101, &pattern(512, 1)).unwrap();
    assert!(matches!(j.commit(tx.clone()), Err(JournalError::Device(_))));
    assert!(j.failure().is_some());
    dev.set_plan(FaultPlan::new());
    assert!(matches!(j.commit(tx), Err(JournalError::Aborted(_))));
    assert!(matches!(j.checkpoint(), Err(JournalError::Aborted(_))));
    assert!(matches!(j.replay(), Err(JournalError::Aborted(_))));
    assert_eq!(JournalError::Aborted(String::new()).errno(), libc::EIO);
}

/// Writes journal blocks by hand at log blocks `first..`, for logs our writer never produces.
fn handmade_log(l: &Layout, img: &mut [u8], s_start: u32, s_sequence: u32, blocks: &[Vec<u8>]) {
    let bs = l.bs as usize;
    let sb_at = l.jstart as usize * bs;
    put_be32(img, sb_at + 0x1C, s_start);
    put_be32(img, sb_at + 0x18, s_sequence);
    let first = if bs == 512 { 2 } else { 1 };
    for (i, b) in blocks.iter().enumerate() {
        let mut pos = s_start as usize + i;
        if pos >= l.jlen as usize {
            pos -= l.jlen as usize - first;
        }
        let at = sb_at + pos * bs;
        img[at..at + bs].copy_from_slice(b);
    }
}

fn descriptor(bs: u32, seq: u32, homes: &[u64]) -> Vec<u8> {
    let tags = homes
        .iter()
        .enumerate()
        .map(|(i, &h)| {
            let mut flags = if i == 0 { 0 } else { JBD2_FLAG_SAME_UUID };
            if i + 1 == homes.len() {
                flags |= JBD2_FLAG_LAST_TAG;
            }
            DescriptorTag { tag: BlockTag::new(h, flags), uuid: (i == 0).then_some(UUID) }
        })
        .collect();
    let mut b = vec![0u8; bs as usize];
    DescriptorBlock { header: JournalHeader::new(JBD2_DESCRIPTOR_BLOCK, seq), tags }
        .encode(&mut b, TagLayout::Bits32)
        .unwrap();
    b
}

fn revoke(bs: u32, seq: u32, homes: &[u64]) -> Vec<u8> {
    let mut b = vec![0u8; bs as usize];
    RevokeBlock::new(seq, homes.to_vec(), TagLayout::Bits32).encode(&mut b, TagLayout::Bits32).unwrap();
    b
}

fn commit_block(bs: u32, seq: u32) -> Vec<u8> {
    let mut b = vec![0u8; bs as usize];
    CommitHeader::new(seq, 1, 2).encode(&mut b).unwrap();
    b
}

#[test]
fn a_revoke_covers_copies_of_its_own_transaction_but_an_uncommitted_one_covers_nothing() {
    // Transaction 5 logs 100 and 101 and revokes 100; transaction 6 revokes 101 and logs 102
    // but never commits. jbd2 replays 101 only: a revoke counts for copies of transactions up
    // to its own, and only once its transaction committed.
    let l = Layout::new(512, 32);
    let mut img = l.image();
    let blocks = vec![
        descriptor(512, 5, &[100, 101]),
        pattern(512, 1),
        pattern(512, 2),
        revoke(512, 5, &[100]),
        commit_block(512, 5),
        revoke(512, 6, &[101]),
        descriptor(512, 6, &[102]),
        pattern(512, 3),
    ];
    handmade_log(&l, &mut img, 3, 5, &blocks);
    let mut j = l.open_copy(&img);
    let r = j.replay().unwrap();
    assert_eq!((r.transactions, r.end_sequence, r.revoke_records, r.revoke_hits), (1, 6, 1, 1));
    assert_eq!(r.home_blocks, vec![101]);
    assert_eq!(r.end_reason, LogEnd::NoMagic { block: 11 });
    let dev = j.into_device();
    assert_eq!(read(&*dev, 512, 100), l.block(&img, 100));
    assert_eq!(read(&*dev, 512, 101), pattern(512, 2));
    assert_eq!(read(&*dev, 512, 102), l.block(&img, 102));
    let sb = JournalSuperblock::decode(&journal_block(&l, &*dev, 0)).unwrap();
    assert_eq!((sb.s_start, sb.s_sequence), (0, 7));
}

#[test]
fn the_scan_stops_at_a_stale_block_and_at_an_unknown_block_type() {
    let l = Layout::new(512, 32);
    let mut img = l.image();
    // Transaction 8 complete, then a stale commit block of transaction 3 from an older lap.
    handmade_log(&l, &mut img, 30, 8, &[descriptor(512, 8, &[120]), pattern(512, 7), commit_block(512, 8)]);
    let sb_at = l.jstart as usize * 512;
    img[sb_at + 512 * 3..sb_at + 512 * 4].copy_from_slice(&commit_block(512, 3));
    let mut j = l.open_copy(&img);
    let r = j.replay().unwrap();
    // 30, 31 and (wrapped past s_maxlen 32 to s_first 2) 2; then block 3 is stale.
    assert_eq!((r.transactions, r.end_reason.clone()), (1, LogEnd::WrongSequence { block: 3, found: 3 }));
    assert_eq!(read(&*j.into_device(), 512, 120), pattern(512, 7));

    let mut img = l.image();
    let mut odd = commit_block(512, 4);
    put_be32(&mut odd, 4, JBD2_FC_BLOCK);
    handmade_log(&l, &mut img, 2, 4, &[odd]);
    let mut j = l.open_copy(&img);
    let r = j.replay().unwrap();
    assert_eq!(r.end_reason, LogEnd::UnknownBlockType { block: 2, blocktype: JBD2_FC_BLOCK });
    assert_eq!(r.transactions, 0);
}
