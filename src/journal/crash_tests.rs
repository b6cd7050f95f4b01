//! Crash consistency at the journal level: a sequence of transactions runs on a device that
//! stops writing after write N (optionally tearing write N), for every N; after replay each
//! transaction whose commit block reached the disk is applied whole, and no other one is
//! applied at all. Replay itself is then crashed at every write and run again.

use super::testkit::{seed, Layout, Rng, UUID};
use super::*;
use crate::device::{BlockDevice, FaultDevice, FaultKind, FaultPlan, MemDevice};
use crate::format::bytes::put_be32;
use crate::format::jbd2::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Home blocks the workload changes.
const HOME: std::ops::Range<u64> = 100..136;

#[derive(Clone, Debug)]
enum Op {
    Commit { logs: Vec<(u64, Vec<u8>)>, revokes: Vec<u64> },
    Checkpoint,
}

fn workload(rng: &mut Rng, bs: u32, n: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    for _ in 0..n {
        if rng.below(8) == 0 {
            ops.push(Op::Checkpoint);
            continue;
        }
        let mut logs = Vec::new();
        for _ in 0..=rng.below(6) {
            let mut data = vec![0u8; bs as usize];
            rng.fill(&mut data);
            if rng.below(5) == 0 {
                put_be32(&mut data, 0, JBD2_MAGIC_NUMBER);
            }
            logs.push((HOME.start + rng.below(HOME.end - HOME.start), data));
        }
        let revokes = (0..rng.below(3)).map(|_| HOME.start + rng.below(HOME.end - HOME.start)).collect();
        ops.push(Op::Commit { logs, revokes });
    }
    ops
}

/// What the device saw, in order.
#[derive(Clone, Debug)]
enum Event {
    /// Every committed block went home and the log was emptied (explicitly, or by a commit
    /// that found the log full).
    Checkpoint,
    /// A transaction whose commit block was write number `.0`.
    Commit(u64, Transaction),
}

/// Runs the workload and returns what happened, with each commit block's write index.
fn run<D: BlockDevice>(j: &mut Journal<D>, ops: &[Op], writes: impl Fn(&Journal<D>) -> u64) -> Vec<Event> {
    let mut events = Vec::new();
    for op in ops {
        match op {
            Op::Checkpoint => {
                j.checkpoint().unwrap();
                events.push(Event::Checkpoint);
            }
            Op::Commit { logs, revokes } => {
                let mut tx = j.begin();
                for (i, (b, data)) in logs.iter().enumerate() {
                    tx.log(*b, data).unwrap();
                    // Interleave revokes with logs so both orders within a transaction occur.
                    if let Some(&r) = revokes.get(i) {
                        tx.revoke(r);
                    }
                }
                for &r in revokes.iter().skip(logs.len()) {
                    tx.revoke(r);
                }
                let kept = tx.clone();
                if let Some(info) = j.commit(tx).unwrap() {
                    if info.checkpointed_first {
                        events.push(Event::Checkpoint);
                    }
                    events.push(Event::Commit(writes(j) - 1, kept));
                }
            }
        }
    }
    events
}

/// The home contents a crash must leave after replay: every committed transaction applied in
/// order, nothing of the others. A block revoked after its last logging keeps what the last
/// checkpoint before the revoke wrote (or its initial contents): replay must not resurrect a
/// copy the revoke cancelled.
fn expected_home(events: &[Event], is_committed: impl Fn(u64) -> bool) -> (BTreeMap<u64, Vec<u8>>, usize) {
    let mut home: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut pending: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut committed = 0;
    for e in events {
        match e {
            Event::Checkpoint => home.extend(std::mem::take(&mut pending)),
            Event::Commit(w, tx) => {
                if !is_committed(*w) {
                    break;
                }
                committed += 1;
                for b in HOME {
                    if tx.revokes(b) {
                        pending.remove(&b);
                    }
                    if let Some(data) = tx.get(b) {
                        pending.insert(b, data.to_vec());
                    }
                }
            }
        }
    }
    home.extend(pending);
    (home, committed)
}

fn commit_writes(events: &[Event]) -> Vec<Option<u64>> {
    events.iter().map(|e| if let Event::Commit(w, _) = e { Some(*w) } else { None }).collect()
}

fn check_home(l: &Layout, img: &[u8], initial: &[u8], want: &BTreeMap<u64, Vec<u8>>, what: &str) {
    for b in HOME {
        let expect = want.get(&b).map_or(l.block(initial, b), |v| &v[..]);
        assert!(l.block(img, b) == expect, "{what}: block {b} does not hold what the committed transactions left");
    }
}

fn crash_everywhere(mut l: Layout, label: &str) {
    let s = seed();
    println!("{label}: seed {s}");
    let mut rng = Rng::new(s);
    l.blocks = 200;
    let initial = l.image();
    let ops = workload(&mut rng, l.bs, 40);

    // A run without faults counts the writes and finds each commit block's write.
    let dev = Arc::new(FaultDevice::new(MemDevice::from_bytes(initial.clone()), FaultPlan::new()));
    let mut j = Journal::open(dev.clone(), l.map(), l.bs, UUID).unwrap();
    let events = run(&mut j, &ops, |j| j.device().writes());
    let total = dev.writes();
    let commits = events.iter().filter(|e| matches!(e, Event::Commit(..))).count();
    let checkpoints = events.len() - commits;
    println!("{label}: {commits} transactions, {checkpoints} checkpoints, {total} writes");
    assert!(checkpoints > 3 && commits > 20, "{label}: the workload must fill and wrap the log");

    let mut tears = vec![None, Some(0)];
    tears.extend((1..l.bs as usize / 512).map(|k| Some(k * 512)));
    let mut images = Vec::new();
    for last in 0..total {
        for &torn in &tears {
            let plan = FaultPlan::new().with(FaultKind::CrashAfterWrite { last, torn_bytes: torn });
            let dev = Arc::new(FaultDevice::new(MemDevice::from_bytes(initial.clone()), plan));
            let mut j = Journal::open(dev.clone(), l.map(), l.bs, UUID).unwrap();
            let again = run(&mut j, &ops, |j| j.device().writes());
            assert_eq!(commit_writes(&again), commit_writes(&events), "the workload writes the same way every run");
            let crashed = dev.inner().to_bytes();

            // The commit header is in the block's first sector, which a torn write lands first.
            let (want, committed) =
                expected_home(&events, |w| w < last || (w == last && torn.is_none_or(|n| n >= 512)));
            let what = format!("{label}: crash after write {last} torn {torn:?} ({committed} committed), seed {s}");
            let mem = Arc::new(MemDevice::from_bytes(crashed.clone()));
            let mut j = Journal::open(mem.clone(), l.map(), l.bs, UUID).unwrap_or_else(|e| panic!("{what}: {e}"));
            j.replay().unwrap_or_else(|e| panic!("{what}: {e}"));
            check_home(&l, &mem.to_bytes(), &initial, &want, &what);

            // The journal takes new transactions after recovery, and they survive a crash too.
            let mut tx = j.begin();
            tx.log(HOME.start, &vec![0x5A; l.bs as usize]).unwrap();
            j.commit(tx).unwrap();
            let mut j = Journal::open(j.into_device(), l.map(), l.bs, UUID).unwrap();
            j.replay().unwrap();
            assert_eq!(l.block(&j.device().to_bytes(), HOME.start), &vec![0x5A; l.bs as usize][..], "{what}");
            if last % 17 == 0 && torn.is_none() {
                images.push((crashed, committed, what));
            }
        }
    }

    // Replay interrupted at every write, then run again, ends where one replay ends.
    for (crashed, ncommitted, what) in images {
        let mem = Arc::new(MemDevice::from_bytes(crashed.clone()));
        let mut j = Journal::open(mem.clone(), l.map(), l.bs, UUID).unwrap();
        if !j.needs_recovery() {
            continue;
        }
        let dev = Arc::new(FaultDevice::new(MemDevice::from_bytes(crashed.clone()), FaultPlan::new()));
        Journal::open(dev.clone(), l.map(), l.bs, UUID).unwrap().replay().unwrap();
        let replay_writes = dev.writes();
        j.replay().unwrap();
        let want = mem.to_bytes();
        for last in 0..replay_writes {
            for &torn in &tears {
                let plan = FaultPlan::new().with(FaultKind::CrashAfterWrite { last, torn_bytes: torn });
                let dev = Arc::new(FaultDevice::new(MemDevice::from_bytes(crashed.clone()), plan));
                let _ = Journal::open(dev.clone(), l.map(), l.bs, UUID).unwrap().replay();
                let mem = Arc::new(MemDevice::from_bytes(dev.inner().to_bytes()));
                Journal::open(mem.clone(), l.map(), l.bs, UUID).unwrap().replay().unwrap();
                let got = mem.to_bytes();
                for b in HOME {
                    assert_eq!(
                        l.block(&got, b),
                        l.block(&want, b),
                        "{what} ({ncommitted} committed), replay crashed after write {last} torn {torn:?}: block {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn crash_at_every_write_applies_exactly_the_committed_transactions_512() {
    crash_everywhere(Layout::new(512, 48), "512");
}

#[test]
fn crash_at_every_write_applies_exactly_the_committed_transactions_4k_checksummed() {
    let mut l = Layout::new(4096, 40);
    l.compat = JBD2_FEATURE_COMPAT_CHECKSUM;
    l.incompat = JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT;
    crash_everywhere(l, "4k-csum");
}

#[test]
fn crash_at_every_write_applies_exactly_the_committed_transactions_block64() {
    let mut l = Layout::new(1024, 40);
    l.incompat = JBD2_FEATURE_INCOMPAT_64BIT;
    crash_everywhere(l, "1k-64bit");
}
