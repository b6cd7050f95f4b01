//! The o2hb rules, one test each, with I/O done at once on a byte array and time given by hand.

use super::*;
use std::collections::VecDeque;

const BB: usize = 512;
const START: u64 = 8 * BB as u64;
const SLOTS: u32 = 16;
const WALL0: u64 = 1_700_000_000;

fn region() -> HeartbeatRegion {
    HeartbeatRegion::new(START, BB as u32, SLOTS)
}

fn cfg(interval_ms: u64, threshold: u32, nodes: &[u8]) -> HeartbeatConfig {
    HeartbeatConfig {
        interval: Duration::from_millis(interval_ms),
        dead_threshold: threshold,
        nodes: nodes.iter().copied().collect(),
    }
}

fn at(ms: u64) -> Now {
    Now { mono: Duration::from_millis(ms), wall_secs: WALL0 + ms / 1000 }
}

/// The device: a few sectors before the region, then its slots.
struct Disk(Vec<u8>);

impl Disk {
    fn new() -> Self {
        Disk(vec![0; START as usize + SLOTS as usize * BB])
    }

    fn slot(&self, node: u8) -> &[u8] {
        let at = START as usize + usize::from(node) * BB;
        &self.0[at..at + BB]
    }

    fn slot_mut(&mut self, node: u8) -> &mut [u8] {
        let at = START as usize + usize::from(node) * BB;
        &mut self.0[at..at + BB]
    }

    fn block(&self, node: u8) -> HeartbeatBlock {
        HeartbeatBlock::decode(self.slot(node)).unwrap()
    }

    /// Another node (or another writer posing as `slot`'s owner) writes a valid block.
    fn put(&mut self, slot: u8, hb: HeartbeatBlock) {
        hb.encode_sector(self.slot_mut(slot)).unwrap();
    }

    fn beat(&mut self, node: u8, seq: u64, generation: u64) {
        self.put(node, HeartbeatBlock { hb_seq: seq, hb_node: node, hb_generation: generation, ..Default::default() });
    }
}

/// Feeds `first` through the core, doing every read and write at once; returns the actions
/// that are not I/O, in order.
fn run(core: &mut HeartbeatCore, now: Now, first: Vec<Action>, disk: &mut Disk) -> Vec<Action> {
    let mut pending: VecDeque<Action> = first.into();
    let mut out = Vec::new();
    while let Some(action) = pending.pop_front() {
        match action {
            Action::ReadRegion { offset, len } => {
                let bytes = disk.0[offset as usize..offset as usize + len].to_vec();
                pending.extend(core.on_region_read(now, Ok(&bytes)));
            }
            Action::WriteSector { offset, data } => {
                disk.0[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                pending.extend(core.on_write_done(now, Ok(())));
            }
            other => out.push(other),
        }
    }
    out
}

fn tick(core: &mut HeartbeatCore, ms: u64, disk: &mut Disk) -> Vec<Action> {
    let first = core.on_tick(at(ms));
    run(core, at(ms), first, disk)
}

fn ups(actions: &[Action]) -> Vec<u8> {
    actions.iter().filter_map(|a| if let Action::NodeUp(n) = a { Some(*n) } else { None }).collect()
}

fn downs(actions: &[Action]) -> Vec<u8> {
    actions.iter().filter_map(|a| if let Action::NodeDown(n) = a { Some(*n) } else { None }).collect()
}

/// A core for node 0 with peers 1 and 2 (interval 100 ms, threshold 5) that has reached the
/// steady state while node 1 beat every interval; returns it, the disk and the next tick time.
fn steady_with_live_peer() -> (HeartbeatCore, Disk, u64) {
    let mut disk = Disk::new();
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 1, 2]), 0xAAAA).unwrap();
    let mut t = 0;
    let mut seq = 100;
    loop {
        disk.beat(1, seq, 0xB1);
        seq += 1;
        let actions = tick(&mut core, t, &mut disk);
        t += 100;
        if actions.contains(&Action::Steady) {
            break;
        }
        assert!(t < 2_000, "no steady state");
    }
    assert_eq!(core.live_nodes().to_vec(), vec![0, 1]);
    (core, disk, t)
}

#[test]
fn our_sector_is_the_block_the_kernel_writes() {
    let config = HeartbeatConfig { nodes: [3].into_iter().collect(), ..Default::default() };
    let mut core = HeartbeatCore::new(3, region(), config, 0x1122_3344_5566_7788).unwrap();
    let slot3 = START + 3 * BB as u64;
    assert_eq!(core.read_range(), (slot3, BB));
    assert_eq!(core.on_tick(at(0)), vec![Action::ReadRegion { offset: slot3, len: BB }]);
    let zeros = vec![0u8; BB];
    assert!(core.on_region_read(at(5), Ok(&zeros)).is_empty(), "the first write waits");
    assert_eq!(core.next_wakeup(), Some(Duration::from_millis(3_005)), "1.5 intervals after the baseline");
    assert!(core.on_tick(at(3_004)).is_empty());
    assert_eq!(core.on_tick(at(3_005)), vec![Action::ReadRegion { offset: slot3, len: BB }]);
    let actions = core.on_region_read(at(3_007), Ok(&zeros));
    let Action::WriteSector { offset, data } = &actions[0] else { panic!("{actions:?}") };
    assert_eq!(*offset, slot3);
    assert_eq!(data.len(), BB);
    HeartbeatBlock::verify(data).unwrap();
    let hb = HeartbeatBlock::decode(data).unwrap();
    assert_eq!(
        (hb.hb_seq, hb.hb_node, hb.hb_generation, hb.hb_dead_ms),
        (WALL0 + 3, 3, 0x1122_3344_5566_7788, 62_000),
        "seq is the wall clock, dead_ms is 31 x 2000 as in the kernel"
    );
    assert!(data[0x20..].iter().all(|&b| b == 0));
}

#[test]
fn reads_cover_the_slots_from_the_lowest_to_the_highest_configured_node() {
    let core = HeartbeatCore::new(5, region(), cfg(100, 5, &[2, 9]), 7).unwrap();
    assert_eq!(core.read_range(), (START + 2 * BB as u64, 8 * BB));
    let core = HeartbeatCore::new(12, region(), cfg(100, 5, &[]), 7).unwrap();
    assert_eq!(core.read_range(), (START + 12 * BB as u64, BB));
}

#[test]
fn a_peer_is_live_after_two_changed_samples_and_not_before() {
    let mut disk = Disk::new();
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 1]), 0xAAAA).unwrap();
    // Baseline at 0, first iteration at 150 (run at the 200 tick).
    for t in [0, 100, 200] {
        assert!(!ups(&tick(&mut core, t, &mut disk)).contains(&1));
    }
    disk.beat(1, 1, 0xB);
    let a = tick(&mut core, 300, &mut disk);
    assert!(!ups(&a).contains(&1), "one changed sample is not enough: {a:?}");
    assert!(!core.live_nodes().contains(1));
    disk.beat(1, 2, 0xB);
    let a = tick(&mut core, 400, &mut disk);
    assert!(ups(&a).contains(&1), "{a:?}");
    assert!(core.live_nodes().contains(1));
}

#[test]
fn our_own_node_comes_up_from_our_own_writes_as_in_o2hb() {
    let mut disk = Disk::new();
    let mut core = HeartbeatCore::new(4, region(), cfg(100, 5, &[4]), 0xAAAA).unwrap();
    for t in [0, 100, 200] {
        assert!(ups(&tick(&mut core, t, &mut disk)).is_empty());
    }
    assert_eq!(ups(&tick(&mut core, 300, &mut disk)), vec![4]);
}

#[test]
fn slot_contents_from_before_the_start_are_a_baseline_not_a_beat() {
    let mut disk = Disk::new();
    disk.beat(1, 5, 9);
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 1]), 0xAAAA).unwrap();
    for i in 0..10 {
        assert!(!ups(&tick(&mut core, i * 100, &mut disk)).contains(&1));
    }
    disk.beat(1, 6, 9);
    assert!(!ups(&tick(&mut core, 1_000, &mut disk)).contains(&1));
    disk.beat(1, 7, 9);
    assert!(ups(&tick(&mut core, 1_100, &mut disk)).contains(&1));
}

#[test]
fn a_live_peer_is_dead_after_exactly_threshold_unchanged_samples() {
    let (mut core, mut disk, mut t) = steady_with_live_peer();
    // Node 1 stops beating: its last change was seen at t - 100. Misses 1..4 keep it live.
    for miss in 1..5 {
        let a = tick(&mut core, t, &mut disk);
        assert!(downs(&a).is_empty(), "miss {miss}: {a:?}");
        t += 100;
    }
    let a = tick(&mut core, t, &mut disk);
    assert_eq!(downs(&a), vec![1]);
    assert_eq!(core.live_nodes().to_vec(), vec![0]);
}

#[test]
fn any_change_resets_the_count_of_misses() {
    let (mut core, mut disk, mut t) = steady_with_live_peer();
    for round in 0..3 {
        for _ in 0..4 {
            assert!(downs(&tick(&mut core, t, &mut disk)).is_empty(), "round {round}");
            t += 100;
        }
        disk.beat(1, 1_000 + round, 0xB1);
    }
    assert!(core.live_nodes().contains(1));
}

#[test]
fn a_generation_change_is_down_at_once_and_up_again_at_the_next_change() {
    let (mut core, mut disk, t) = steady_with_live_peer();
    disk.beat(1, 500, 0xC2);
    let a = tick(&mut core, t, &mut disk);
    assert_eq!(downs(&a), vec![1], "the restart is a death without waiting for the threshold");
    disk.beat(1, 501, 0xC2);
    let a = tick(&mut core, t + 100, &mut disk);
    assert_eq!(ups(&a), vec![1], "the changed sample of the restart counts towards coming back");
}

#[test]
fn generation_zero_is_a_clean_leave_seen_at_the_next_read() {
    let (mut core, mut disk, t) = steady_with_live_peer();
    disk.beat(1, 500, 0);
    assert_eq!(downs(&tick(&mut core, t, &mut disk)), vec![1]);
    for i in 1..20 {
        let a = tick(&mut core, t + i * 100, &mut disk);
        assert!(ups(&a).is_empty() && downs(&a).is_empty());
    }
}

#[test]
fn a_bad_checksum_is_ignored_for_a_dead_node() {
    let mut disk = Disk::new();
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 1, 2]), 0xAAAA).unwrap();
    for i in 0..10u64 {
        disk.beat(2, 50 + i, 0x22);
        disk.slot_mut(2)[100] ^= 0xFF;
        let a = tick(&mut core, i * 100, &mut disk);
        assert!(!ups(&a).contains(&2) && !a.iter().any(|x| matches!(x, Action::BadChecksum { .. })), "{a:?}");
    }
}

#[test]
fn a_bad_checksum_from_a_live_node_is_a_missed_beat() {
    let (mut core, mut disk, mut t) = steady_with_live_peer();
    // threshold - 1 corrupt beats, then a good one: still live.
    for i in 0..4 {
        disk.beat(1, 600 + i, 0xB1);
        disk.slot_mut(1)[0] ^= 1;
        let a = tick(&mut core, t, &mut disk);
        assert!(a.contains(&Action::BadChecksum { node: 1 }) && downs(&a).is_empty(), "{a:?}");
        t += 100;
    }
    disk.beat(1, 700, 0xB1);
    assert!(downs(&tick(&mut core, t, &mut disk)).is_empty());
    t += 100;
    // threshold corrupt beats in a row: dead, though the sequence moved every time.
    for i in 0..5 {
        disk.beat(1, 800 + i, 0xB1);
        disk.slot_mut(1)[300] ^= 0x80;
        let a = tick(&mut core, t, &mut disk);
        assert_eq!(downs(&a), if i == 4 { vec![1] } else { vec![] }, "corrupt beat {i}");
        t += 100;
    }
}

#[test]
fn a_joining_node_with_another_dead_time_is_reported() {
    let mut disk = Disk::new();
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 1, 2]), 0xAAAA).unwrap();
    tick(&mut core, 0, &mut disk);
    let mut mismatches = Vec::new();
    for i in 1..6u64 {
        disk.put(
            1,
            HeartbeatBlock { hb_seq: i, hb_node: 1, hb_generation: 1, hb_dead_ms: 62_000, ..Default::default() },
        );
        disk.put(2, HeartbeatBlock { hb_seq: i, hb_node: 2, hb_generation: 2, hb_dead_ms: 500, ..Default::default() });
        for a in tick(&mut core, i * 100, &mut disk) {
            if let Action::DeadMsMismatch { .. } = a {
                mismatches.push(a);
            }
        }
    }
    assert_eq!(core.live_nodes().to_vec(), vec![0, 1, 2]);
    assert_eq!(mismatches, vec![Action::DeadMsMismatch { node: 1, theirs: 62_000, ours: 500 }]);
}

#[test]
fn steady_needs_three_quiet_iterations_with_our_slot_intact() {
    let mut disk = Disk::new();
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0]), 0xAAAA).unwrap();
    // Baseline at 0, nothing at 100. Iteration 1 (200): fresh slot, nothing to check. 2: we
    // come up (a change). 3, 4, 5: quiet.
    let steady_at: Vec<bool> = (0..8).map(|i| tick(&mut core, i * 100, &mut disk).contains(&Action::Steady)).collect();
    assert_eq!(steady_at, vec![false, false, false, false, false, false, true, false]);
    assert!(core.is_steady());
}

#[test]
fn seq_moves_every_write_even_within_one_wall_second() {
    let mut disk = Disk::new();
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0]), 0xAAAA).unwrap();
    let mut seqs = Vec::new();
    for i in 0..25 {
        tick(&mut core, i * 100, &mut disk);
        if i >= 2 {
            seqs.push(disk.block(0).hb_seq);
        }
    }
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    assert_eq!(seqs[0], WALL0);
}

#[test]
fn seq_is_the_wall_clock_second_at_the_kernels_interval() {
    let mut disk = Disk::new();
    let mut core =
        HeartbeatCore::new(0, region(), HeartbeatConfig { nodes: [0].into_iter().collect(), ..Default::default() }, 9)
            .unwrap();
    for i in 0..10 {
        tick(&mut core, i * 2_000, &mut disk);
        if i >= 2 {
            assert_eq!(disk.block(0).hb_seq, WALL0 + i * 2);
        }
    }
}

#[test]
fn seq_stays_ahead_of_a_previous_run_that_ran_ahead_of_the_clock() {
    let mut disk = Disk::new();
    disk.beat(0, WALL0 + 500, 0x77);
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0]), 0xAAAA).unwrap();
    tick(&mut core, 0, &mut disk);
    tick(&mut core, 200, &mut disk);
    assert_eq!(disk.block(0).hb_seq, WALL0 + 501);
}

#[test]
fn a_write_that_does_not_complete_fences_at_interval_times_threshold_minus_one() {
    let (mut core, disk, t) = steady_with_live_peer();
    let armed = core.write_deadline().unwrap();
    assert_eq!(armed, Duration::from_millis(t - 100) + Duration::from_millis(400));
    // Next iteration: the read completes, the write never does.
    let read = core.on_tick(at(t));
    let Action::ReadRegion { offset, len } = read[0] else { panic!() };
    let bytes = disk.0[offset as usize..offset as usize + len].to_vec();
    let after_read = core.on_region_read(at(t + 1), Ok(&bytes));
    assert!(matches!(after_read[0], Action::WriteSector { .. }));
    let deadline_ms = armed.as_millis() as u64;
    for ms in t + 2..deadline_ms {
        assert!(core.on_tick(at(ms)).is_empty(), "nothing may happen at {ms} ms");
    }
    assert_eq!(core.next_wakeup(), Some(armed));
    let fence = core.on_tick(at(deadline_ms));
    assert_eq!(fence, vec![Action::Fence { since_last_write: Duration::from_millis(400) }]);
    assert_eq!(core.end(), Some(End::Fenced));
    // Fenced is final: a late completion, ticks and stop produce nothing, not even the leave.
    assert!(core.on_write_done(at(deadline_ms + 1), Ok(())).is_empty());
    assert!(core.on_tick(at(deadline_ms + 500)).is_empty());
    assert!(core.on_stop(at(deadline_ms + 600)).is_empty());
    assert_eq!(core.next_wakeup(), None);
}

#[test]
fn a_write_error_does_not_rearm_the_write_timeout() {
    let (mut core, disk, mut t) = steady_with_live_peer();
    let armed = core.write_deadline().unwrap();
    let mut fenced_at = None;
    for _ in 0..10 {
        let mut pending: VecDeque<Action> = core.on_tick(at(t)).into();
        while let Some(a) = pending.pop_front() {
            match a {
                Action::ReadRegion { offset, len } => {
                    let bytes = disk.0[offset as usize..offset as usize + len].to_vec();
                    pending.extend(core.on_region_read(at(t), Ok(&bytes)));
                }
                Action::WriteSector { .. } => {
                    let eio = DeviceError::Io { op: "write", offset: 0, len: BB, errno: libc::EIO };
                    pending.extend(core.on_write_done(at(t), Err(eio)));
                }
                Action::Fence { .. } => fenced_at = Some(t),
                _ => {}
            }
        }
        if fenced_at.is_some() {
            break;
        }
        t += 100;
    }
    assert_eq!(fenced_at, Some(armed.as_millis() as u64));
}

/// Runs iterations while `intruder` rewrites our slot 0 after each of our writes; returns the
/// actions of each iteration.
fn with_intruder(
    core: &mut HeartbeatCore,
    disk: &mut Disk,
    t0: u64,
    rounds: u64,
    intruder: impl Fn(&mut Disk, u64),
) -> Vec<Vec<Action>> {
    (0..rounds)
        .map(|i| {
            let a = tick(core, t0 + i * 100, disk);
            intruder(disk, i);
            a
        })
        .collect()
}

fn clashes(rounds: &[Vec<Action>]) -> Vec<ClashInfo> {
    rounds.iter().flatten().filter_map(|a| if let Action::Clash(c) = a { Some(*c) } else { None }).collect()
}

#[test]
fn another_node_number_in_our_slot_is_a_clash_reported_once_then_a_fence() {
    let (mut core, mut disk, t) = steady_with_live_peer();
    let armed = core.write_deadline().unwrap();
    let rounds = with_intruder(&mut core, &mut disk, t, 10, |d, i| {
        d.put(0, HeartbeatBlock { hb_seq: 9_000 + i, hb_node: 7, hb_generation: 0x77, ..Default::default() })
    });
    let found = clashes(&rounds);
    assert_eq!(found.len(), 1, "one report per episode: {found:?}");
    assert_eq!(found[0].kind, ClashKind::AnotherNode);
    assert_eq!((found[0].expected_node, found[0].found_node, found[0].found_generation), (0, 7, 0x77));
    // The write timeout is not re-armed while the slot is not ours: the fence follows.
    // Round 0 still found our own block and re-armed, 100 ms after the deadline seen before.
    let fence_round = rounds.iter().position(|r| r.iter().any(|a| matches!(a, Action::Fence { .. }))).unwrap();
    assert_eq!(t + fence_round as u64 * 100, armed.as_millis() as u64 + 100);
    assert_eq!(core.end(), Some(End::Fenced));
}

#[test]
fn a_second_writer_with_our_number_is_a_generation_clash() {
    let (mut core, mut disk, t) = steady_with_live_peer();
    let rounds = with_intruder(&mut core, &mut disk, t, 2, |d, i| d.beat(0, 7_000 + i, 0xD00D));
    let found = clashes(&rounds);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].kind, found[0].found_generation), (ClashKind::GenerationMismatch, 0xD00D));
    assert!(found[0].to_string().contains("generation mismatch"), "{}", found[0]);
}

#[test]
fn a_lost_write_is_a_sequence_mismatch_and_a_single_one_is_forgiven() {
    let (mut core, mut disk, t) = steady_with_live_peer();
    let before = core.write_deadline().unwrap();
    let rounds = with_intruder(&mut core, &mut disk, t, 1, |d, _| {
        let mut hb = d.block(0);
        hb.hb_seq -= 1;
        d.put(0, hb);
    });
    assert!(clashes(&rounds).is_empty());
    let a = tick(&mut core, t + 100, &mut disk);
    assert_eq!(clashes(&[a]).iter().map(|c| c.kind).collect::<Vec<_>>(), vec![ClashKind::SequenceMismatch]);
    assert_eq!(core.write_deadline(), Some(before + Duration::from_millis(100)), "not re-armed on the mismatch");
    tick(&mut core, t + 200, &mut disk);
    assert_eq!(core.write_deadline(), Some(Duration::from_millis(t + 200 + 400)), "re-armed once intact");
    // A new episode is reported again.
    disk.beat(0, 1, 0xEE);
    let a = tick(&mut core, t + 300, &mut disk);
    assert_eq!(clashes(&[a]).len(), 1);
}

#[test]
fn a_node_already_writing_our_slot_makes_the_start_refuse_before_writing_anything() {
    // The other owner of slot 0 beats every 100 ms, before and after our baseline.
    let mut disk = Disk::new();
    disk.beat(0, 5_000, 0xD00D);
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 1]), 0xAAAA).unwrap();
    let rounds = with_intruder(&mut core, &mut disk, 0, 6, |d, i| d.beat(0, 5_001 + i, 0xD00D));
    let flat: Vec<&Action> = rounds.iter().flatten().collect();
    let Some(Action::StartAborted(AbortReason::Clash(c))) = flat.iter().find(|a| matches!(a, Action::StartAborted(_)))
    else {
        panic!("{rounds:?}")
    };
    assert!(rounds[2].iter().any(|a| matches!(a, Action::StartAborted(_))), "refused at the first iteration");
    assert_eq!((c.kind, c.expected_generation, c.found_generation), (ClashKind::SequenceMismatch, 0xD00D, 0xD00D));
    assert_eq!(core.end(), Some(End::Aborted));
    assert_eq!(disk.block(0).hb_generation, 0xD00D, "we never wrote our block");
    let slot_before = disk.slot(0).to_vec();
    assert!(core.on_stop(at(5_000)).is_empty());
    assert!(core.on_tick(at(6_000)).is_empty());
    assert_eq!(disk.slot(0), &slot_before[..], "no leaving block either");
}

#[test]
fn a_slot_empty_at_our_baseline_and_written_by_another_is_a_clash_too() {
    let mut disk = Disk::new();
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 1]), 0xAAAA).unwrap();
    let rounds = with_intruder(&mut core, &mut disk, 0, 3, |d, i| {
        d.put(0, HeartbeatBlock { hb_seq: 1 + i, hb_node: 3, hb_generation: 0x33, ..Default::default() })
    });
    let found = clashes(&rounds);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].kind, found[0].found_node, found[0].expected_seq), (ClashKind::AnotherNode, 3, 0));
    assert_eq!(core.end(), Some(End::Aborted));
}

#[test]
fn a_stale_block_of_another_number_in_our_slot_is_no_clash_when_nobody_writes_it() {
    let mut disk = Disk::new();
    disk.put(0, HeartbeatBlock { hb_seq: 77, hb_node: 9, hb_generation: 0x99, ..Default::default() });
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0]), 0xAAAA).unwrap();
    let all: Vec<Action> = (0..10).flat_map(|i| tick(&mut core, i * 100, &mut disk)).collect();
    assert!(all.contains(&Action::Steady) && clashes(&[all]).is_empty());
    assert_eq!(disk.block(0).hb_node, 0);
}

#[test]
fn read_errors_while_starting_give_up_after_nine_iterations() {
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 1]), 0xAAAA).unwrap();
    let zeros = vec![0u8; 2 * BB];
    core.on_tick(at(0));
    assert!(core.on_region_read(at(0), Ok(&zeros)).is_empty());
    let eio = DeviceError::Io { op: "read", offset: START, len: 2 * BB, errno: libc::EIO };
    let mut last = Vec::new();
    for i in 0..9 {
        let t = 150 + i * 100;
        assert!(matches!(core.on_tick(at(t))[..], [Action::ReadRegion { .. }]), "iteration {i}");
        last = core.on_region_read(at(t), Err(eio.clone()));
    }
    assert_eq!(last, vec![Action::StartAborted(AbortReason::Unstable { io_error: Some(eio) })]);
    assert!(core.on_tick(at(2_000)).is_empty());
}

#[test]
fn a_read_that_never_completes_while_starting_gives_up_as_hung() {
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 1]), 0xAAAA).unwrap();
    core.on_tick(at(0));
    // 10 intervals for the iterations plus the write timeout of 400 ms.
    assert_eq!(core.next_wakeup(), Some(Duration::from_millis(1_400)));
    assert!(core.on_tick(at(1_399)).is_empty());
    assert_eq!(core.on_tick(at(1_400)), vec![Action::StartAborted(AbortReason::Hung)]);
}

#[test]
fn a_short_read_is_an_io_error_not_a_panic() {
    let mut core = HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 1]), 0xAAAA).unwrap();
    core.on_tick(at(0));
    let a = core.on_region_read(at(1), Ok(&[0u8; 7]));
    assert!(matches!(a[..], [Action::StartAborted(AbortReason::BaselineRead(_))]), "{a:?}");
}

#[test]
fn stop_reports_every_live_node_down_and_writes_generation_zero_once() {
    let (mut core, mut disk, t) = steady_with_live_peer();
    let first = core.on_stop(at(t + 10));
    let a = run(&mut core, at(t + 10), first, &mut disk);
    assert_eq!(a, vec![Action::NodeDown(0), Action::NodeDown(1), Action::Stopped { clean: true }]);
    let hb = disk.block(0);
    HeartbeatBlock::verify(disk.slot(0)).unwrap();
    assert_eq!((hb.hb_node, hb.hb_generation, hb.hb_dead_ms), (0, 0, 500));
    assert_eq!(core.end(), Some(End::Stopped));
    assert!(core.live_nodes().is_empty());
    assert!(core.on_tick(at(t + 1_000)).is_empty());
}

#[test]
fn stop_during_an_iteration_leaves_after_it() {
    let (mut core, mut disk, t) = steady_with_live_peer();
    let read = core.on_tick(at(t));
    assert!(core.on_stop(at(t + 1)).is_empty(), "waits for the iteration in flight");
    let a = run(&mut core, at(t + 2), read, &mut disk);
    assert_eq!(a.last(), Some(&Action::Stopped { clean: true }));
    assert_eq!(disk.block(0).hb_generation, 0);
}

#[test]
fn a_stalled_node_fences_before_a_peer_declares_it_dead() {
    // Two cores in lockstep, peer B's iterations 37 ms after A's; A's writes stall for good.
    let mut disk = Disk::new();
    let nodes = [0, 1];
    let mut a = HeartbeatCore::new(0, region(), cfg(100, 5, &nodes), 0xA).unwrap();
    let mut b = HeartbeatCore::new(1, region(), cfg(100, 5, &nodes), 0xB).unwrap();
    let mut a_pending_write = false;
    let mut fence_at = None;
    let mut down_at = None;
    let stall_from = 2_000;
    for ms in 0..5_000u64 {
        if fence_at.is_none() {
            let mut pending: VecDeque<Action> = a.on_tick(at(ms)).into();
            while let Some(x) = pending.pop_front() {
                match x {
                    Action::ReadRegion { offset, len } => {
                        let bytes = disk.0[offset as usize..offset as usize + len].to_vec();
                        pending.extend(a.on_region_read(at(ms), Ok(&bytes)));
                    }
                    Action::WriteSector { offset, data } if ms < stall_from => {
                        disk.0[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                        pending.extend(a.on_write_done(at(ms), Ok(())));
                    }
                    Action::WriteSector { .. } => a_pending_write = true,
                    Action::Fence { .. } => fence_at = Some(ms),
                    _ => {}
                }
            }
        }
        if ms % 100 == 37 && downs(&tick(&mut b, ms, &mut disk)).contains(&0) {
            down_at = Some(ms);
            break;
        }
    }
    assert!(a_pending_write);
    let (fence_at, down_at) = (fence_at.unwrap(), down_at.unwrap());
    assert!(fence_at < down_at, "fenced at {fence_at} ms, declared dead at {down_at} ms");
    // A beats at 150, 250, ...: its last write landed at 1950 ms and the fence comes
    // (5 - 1) x 100 ms later; B saw that write at 2037 and needs 5 more reads.
    assert_eq!((fence_at, down_at), (2_350, 2_537));
}

#[test]
fn impossible_configurations_are_refused() {
    let ok = cfg(100, 5, &[0, 1]);
    assert!(HeartbeatCore::new(0, region(), ok.clone(), 1).is_ok());
    let bad = [
        HeartbeatCore::new(0, region(), ok.clone(), 0),
        HeartbeatCore::new(0, region(), cfg(100, 1, &[0]), 1),
        HeartbeatCore::new(0, region(), cfg(0, 5, &[0]), 1),
        HeartbeatCore::new(0, region(), cfg(100, 5, &[0, 16]), 1),
        HeartbeatCore::new(16, region(), cfg(100, 5, &[]), 1),
        HeartbeatCore::new(255, HeartbeatRegion::new(0, 512, 255), cfg(100, 5, &[]), 1),
        HeartbeatCore::new(0, HeartbeatRegion::new(100, 512, 16), ok.clone(), 1),
        HeartbeatCore::new(0, HeartbeatRegion::new(0, 1000, 16), ok.clone(), 1),
        HeartbeatCore::new(0, HeartbeatRegion::new(0, 8192, 16), ok.clone(), 1),
        HeartbeatCore::new(0, HeartbeatRegion::new(0, 512, 0), ok.clone(), 1),
        HeartbeatCore::new(0, HeartbeatRegion::new(0, 512, 256), ok.clone(), 1),
        HeartbeatCore::new(0, HeartbeatRegion::new(u64::MAX - 511, 512, 16), ok, 1),
    ];
    for (i, r) in bad.into_iter().enumerate() {
        assert!(matches!(r, Err(HeartbeatError::Config(_))), "case {i}");
    }
}

#[test]
fn timeouts_follow_the_kernels_formulas() {
    let d = HeartbeatConfig::default();
    assert_eq!(d.max_write_timeout(), Duration::from_secs(60));
    assert_eq!(d.dead_ms(), 62_000);
    let c = cfg(150, 7, &[]);
    assert_eq!((c.max_write_timeout(), c.dead_ms()), (Duration::from_millis(900), 1_050));
}
