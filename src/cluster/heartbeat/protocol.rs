//! The o2hb protocol as a pure state machine (kernel `cluster/heartbeat.c`), with no I/O.
//!
//! The core is driven by `(now, event)`: a timer tick, the region's slots were read, our write
//! completed, stop. It answers with [`Action`]s: read the region, write this sector, node N
//! up or down, fence, clash. A driver performs the I/O on threads; a simulator performs it on
//! a shared byte array with a simulated clock.
//!
//! Start: read every watched slot once as a baseline (`o2hb_populate_slot_data`), so that
//! only writes after our start count as beats. Then iterate; the region is steady after three
//! iterations in a row with our slot intact and no membership change, and the start gives up
//! after nine iterations that are not, as the kernel's region start does.
//!
//! One iteration, as `o2hb_do_disk_heartbeat` does it: read the slots of the configured
//! nodes (one read), compare our own slot with what we wrote last (`o2hb_check_own_slot`),
//! prepare and write our block, judge every configured slot (`o2hb_check_slot`), wait for
//! the write, re-arm the write timeout, and start the next iteration one interval after this
//! one started.
//!
//! Where we differ from the kernel, each time to refuse a node-number clash sooner: the first
//! iteration comes 1.5 intervals after the baseline instead of at once, and a clash seen
//! before the region is steady aborts the start before we have written anything (the kernel
//! writes, and gives up only after nine unsteady iterations, by which time the running owner
//! of the slot and its peers have seen the intruder). A slot that was empty at our baseline
//! and is written by someone else is a clash too. A clash on a steady region is handled as
//! the kernel does: reported, and the write timeout is not re-armed while it lasts.
//!
//! Invariants:
//! - After [`Action::Fence`] the core emits no other action, ever: no write, not even the
//!   leaving block.
//! - The write timeout is `interval × (dead_threshold − 1)` after the last write that
//!   completed with our own slot intact, while peers need `dead_threshold` reads without a
//!   change, at least `interval` apart, after that write landed. So a node whose writes stall
//!   fences itself about one interval before any peer can declare it dead, provided a write's
//!   completion is seen less than one interval (minus a read's latency) after it landed.
//! - `hb_seq` strictly increases across our writes (see [`HeartbeatCore`] on why it is not
//!   plain wall-clock seconds).

use super::clock::Now;
use super::error::HeartbeatError;
use super::nodemap::NodeMap;
use crate::device::DeviceError;
use crate::format::heartbeat::HeartbeatBlock;
use crate::format::O2NM_MAX_NODES;
use std::fmt;
use std::time::Duration;

/// Changed samples a dead node needs to be declared live.
pub const O2HB_LIVE_THRESHOLD: u32 = 2;
/// Default number of unchanged samples before a live node is declared dead.
pub const O2HB_DEFAULT_DEAD_THRESHOLD: u32 = 31;
/// The smallest dead threshold that leaves a write timeout (`threshold − 1` intervals).
pub const O2HB_MIN_DEAD_THRESHOLD: u32 = 2;
/// The kernel's fixed heartbeat interval.
pub const O2HB_REGION_TIMEOUT: Duration = Duration::from_millis(2000);
/// Quiet iterations before the region is steady: `O2HB_LIVE_THRESHOLD + 1` in local mode, so
/// that nodes already heartbeating are seen live before the start returns.
const STEADY_ITERATIONS: u32 = O2HB_LIVE_THRESHOLD + 1;
/// The kernel gives up a start that is not steady after three times as many iterations.
const UNSTEADY_ITERATIONS: u32 = STEADY_ITERATIONS * 3;

/// Where the heartbeat slots are: one `block_bytes` sector per node number, from `start_byte`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatRegion {
    /// Byte offset of slot 0 on the device.
    pub start_byte: u64,
    /// The device's logical sector size (the kernel's `hr_block_bytes`).
    pub block_bytes: u32,
    /// Number of slots (`O2NM_MAX_NODES` for a volume's heartbeat file).
    pub blocks: u32,
}

impl HeartbeatRegion {
    pub fn new(start_byte: u64, block_bytes: u32, blocks: u32) -> Self {
        HeartbeatRegion { start_byte, block_bytes, blocks }
    }

    /// Byte offset of `node`'s slot. Only meaningful for a validated region and a node below
    /// `blocks`.
    pub fn slot_offset(&self, node: u8) -> u64 {
        self.start_byte + u64::from(node) * u64::from(self.block_bytes)
    }

    /// Bytes the region covers.
    pub fn len(&self) -> u64 {
        u64::from(self.blocks) * u64::from(self.block_bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }

    /// Checks what o2hb's configfs attributes check: a power-of-two sector of 512 to 4096
    /// bytes, an aligned start, 1 to `O2NM_MAX_NODES` slots, no overflow.
    pub fn validate(&self) -> Result<(), HeartbeatError> {
        let bb = self.block_bytes;
        if !(512..=4096).contains(&bb) || !bb.is_power_of_two() {
            return Err(HeartbeatError::Config(format!(
                "heartbeat block size {bb} is not a power of two from 512 to 4096"
            )));
        }
        if !self.start_byte.is_multiple_of(u64::from(bb)) {
            return Err(HeartbeatError::Config(format!(
                "heartbeat region start {} is not a multiple of the block size {bb}",
                self.start_byte
            )));
        }
        if self.blocks == 0 || self.blocks > O2NM_MAX_NODES {
            return Err(HeartbeatError::Config(format!(
                "heartbeat region has {} slots; it needs 1 to {O2NM_MAX_NODES}",
                self.blocks
            )));
        }
        if self.start_byte.checked_add(self.len()).is_none() {
            return Err(HeartbeatError::Config("heartbeat region ends beyond 2^64 bytes".into()));
        }
        Ok(())
    }
}

/// Timing and membership of one heartbeat region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// Time from the start of one iteration to the start of the next (kernel: 2000 ms).
    pub interval: Duration,
    /// Unchanged samples after which a live node is dead (`O2CB_HEARTBEAT_THRESHOLD`).
    pub dead_threshold: u32,
    /// The configured node numbers (cluster.conf); only their slots are read and judged.
    /// Our own node is always added.
    pub nodes: NodeMap,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: O2HB_REGION_TIMEOUT,
            dead_threshold: O2HB_DEFAULT_DEAD_THRESHOLD,
            nodes: NodeMap::all(),
        }
    }
}

impl HeartbeatConfig {
    /// The time our write may take before we fence: `interval × (threshold − 1)`
    /// (`O2HB_MAX_WRITE_TIMEOUT_MS`).
    pub fn max_write_timeout(&self) -> Duration {
        self.interval.saturating_mul(self.dead_threshold.saturating_sub(1))
    }

    /// `hb_dead_ms` as written in our block: `threshold × interval` in milliseconds.
    pub fn dead_ms(&self) -> u32 {
        let ms = self.interval.as_millis().saturating_mul(u128::from(self.dead_threshold));
        u32::try_from(ms).unwrap_or(u32::MAX)
    }

    fn validate(&self) -> Result<(), HeartbeatError> {
        if self.interval.is_zero() {
            return Err(HeartbeatError::Config("the heartbeat interval is zero".into()));
        }
        if self.dead_threshold < O2HB_MIN_DEAD_THRESHOLD {
            return Err(HeartbeatError::Config(format!(
                "dead threshold {} is below the minimum of {O2HB_MIN_DEAD_THRESHOLD}",
                self.dead_threshold
            )));
        }
        Ok(())
    }
}

/// Which part of our own slot did not hold what we wrote last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClashKind {
    /// Another node number is in our slot ("Another node is heartbeating on device").
    AnotherNode,
    /// Our number, another generation: a second node configured with our number.
    GenerationMismatch,
    /// Our number and generation, another sequence: a lost write or a second writer.
    SequenceMismatch,
}

/// What we expected in our slot and what we found there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClashInfo {
    pub kind: ClashKind,
    pub expected_node: u8,
    pub expected_generation: u64,
    pub expected_seq: u64,
    pub found_node: u8,
    pub found_generation: u64,
    pub found_seq: u64,
}

impl fmt::Display for ClashInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ClashKind::AnotherNode => "another node is heartbeating in our slot",
            ClashKind::GenerationMismatch => "heartbeat generation mismatch in our slot",
            ClashKind::SequenceMismatch => "heartbeat sequence mismatch in our slot",
        };
        write!(
            f,
            "{what}: expected({}:{:#x}, {:#x}), ondisk({}:{:#x}, {:#x})",
            self.expected_node,
            self.expected_generation,
            self.expected_seq,
            self.found_node,
            self.found_generation,
            self.found_seq
        )
    }
}

/// Why a start was given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortReason {
    /// The first read of the region failed.
    BaselineRead(DeviceError),
    /// Our slot changed under us before we wrote to it: another node uses our number.
    Clash(ClashInfo),
    /// No steady state within the allowed iterations; the last I/O error seen.
    Unstable { io_error: Option<DeviceError> },
    /// An I/O did not complete before the start deadline.
    Hung,
}

/// What the core asks its driver to do or to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read `len` bytes at `offset` (the slots of the configured nodes) and call
    /// [`HeartbeatCore::on_region_read`].
    ReadRegion { offset: u64, len: usize },
    /// Write this whole sector at `offset` (our slot) and call
    /// [`HeartbeatCore::on_write_done`].
    WriteSector { offset: u64, data: Vec<u8> },
    /// The node's heartbeat is live (also fired for our own node, as o2hb does).
    NodeUp(u8),
    /// The node is dead or left the region.
    NodeDown(u8),
    /// Our write did not complete within the write timeout: stop every write to the shared
    /// device now. Final.
    Fence { since_last_write: Duration },
    /// Our slot holds something we did not write. Reported once per episode; the write
    /// timeout is not re-armed while it lasts.
    Clash(ClashInfo),
    /// A live node has written a bad checksum (counted as an unchanged sample).
    BadChecksum { node: u8 },
    /// A joining node's `hb_dead_ms` differs from ours: the fence-before-death guarantee needs
    /// equal timeouts on every node.
    DeadMsMismatch { node: u8, theirs: u32, ours: u32 },
    /// The region is steady: nodes already heartbeating have been seen. Start may return.
    Steady,
    /// The start failed; nothing more will be done. No leaving block is written.
    StartAborted(AbortReason),
    /// Stopped; `clean` when the leaving block (generation 0) was written.
    Stopped { clean: bool },
}

/// How the core ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Stopped,
    Fenced,
    Aborted,
}

/// What we know of one node's slot (`struct o2hb_disk_slot`).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    last_seq: u64,
    last_generation: u64,
    equal_samples: u32,
    changed_samples: u32,
    live: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Baseline,
    Idle { next_at: Duration },
    Reading { started: Duration },
    Writing { started: Duration, own_ok: bool, change: bool },
    Leaving { deadline: Duration },
    Done(End),
}

/// One node's heartbeat on one region.
///
/// `hb_seq`: the kernel writes `ktime_get_real_seconds()` (1 if that is 0) and peers only
/// compare it for inequality. With a 2 s interval consecutive writes always differ; with the
/// short intervals of tests two writes can fall in the same second and would look unchanged.
/// We write `max(wall seconds, previous seq + 1)`: equal to the kernel's value whenever the
/// interval is at least a second, strictly increasing otherwise, and still an opaque "changed"
/// value to a kernel peer. The previous value survives restarts through the baseline read of
/// our own slot.
#[derive(Debug, Clone)]
pub struct HeartbeatCore {
    node: u8,
    region: HeartbeatRegion,
    config: HeartbeatConfig,
    generation: u64,
    /// Configured nodes plus ourselves: the slots we judge.
    watched: NodeMap,
    /// First and last slot of each read.
    lo: u8,
    hi: u8,
    slots: Vec<Slot>,
    live: NodeMap,
    phase: Phase,
    steady_left: u32,
    unsteady_left: u32,
    started_at: Duration,
    write_deadline: Option<Duration>,
    seq_floor: u64,
    /// `hb_node` our slot should hold: the baseline's until we write, then ours.
    own_expected_node: u8,
    clash_reported: bool,
    last_error: Option<DeviceError>,
    stop_requested: bool,
}

impl HeartbeatCore {
    /// A core for `node` on `region`. `generation` must not be 0 (0 marks a leaving node).
    pub fn new(
        node: u8,
        region: HeartbeatRegion,
        config: HeartbeatConfig,
        generation: u64,
    ) -> Result<Self, HeartbeatError> {
        region.validate()?;
        config.validate()?;
        if generation == 0 {
            return Err(HeartbeatError::Config("heartbeat generation 0 is reserved for leaving".into()));
        }
        let mut watched = config.nodes;
        if !watched.insert(node) && !watched.contains(node) {
            return Err(HeartbeatError::Config(format!("node number {node} is not a valid o2nm node number")));
        }
        let hi = watched.highest().unwrap_or(node);
        let lo = watched.lowest().unwrap_or(node);
        if u32::from(hi) >= region.blocks {
            return Err(HeartbeatError::Config(format!(
                "node {hi} has no slot in a heartbeat region of {} slots",
                region.blocks
            )));
        }
        Ok(HeartbeatCore {
            node,
            region,
            config,
            generation,
            watched,
            lo,
            hi,
            slots: vec![Slot::default(); usize::from(hi) + 1],
            live: NodeMap::new(),
            phase: Phase::New,
            steady_left: STEADY_ITERATIONS,
            unsteady_left: UNSTEADY_ITERATIONS,
            started_at: Duration::ZERO,
            write_deadline: None,
            seq_floor: 0,
            own_expected_node: 0,
            clash_reported: false,
            last_error: None,
            stop_requested: false,
        })
    }

    pub fn node(&self) -> u8 {
        self.node
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn region(&self) -> HeartbeatRegion {
        self.region
    }

    pub fn config(&self) -> &HeartbeatConfig {
        &self.config
    }

    /// Nodes whose heartbeat is live now (ourselves included once we see our own writes).
    pub fn live_nodes(&self) -> NodeMap {
        self.live
    }

    pub fn is_steady(&self) -> bool {
        self.steady_left == 0
    }

    /// How the core ended, once it has.
    pub fn end(&self) -> Option<End> {
        match self.phase {
            Phase::Done(end) => Some(end),
            _ => None,
        }
    }

    /// When we fence unless a write completes first.
    pub fn write_deadline(&self) -> Option<Duration> {
        self.write_deadline
    }

    /// Byte range of each region read: the slots from the lowest to the highest watched node.
    pub fn read_range(&self) -> (u64, usize) {
        let slots = usize::from(self.hi - self.lo) + 1;
        (self.region.slot_offset(self.lo), slots * self.block_bytes())
    }

    /// The next time at which [`on_tick`](Self::on_tick) has something to do.
    pub fn next_wakeup(&self) -> Option<Duration> {
        let mut at = match self.phase {
            Phase::Done(_) => return None,
            Phase::New => return Some(Duration::ZERO),
            Phase::Idle { next_at } => Some(next_at),
            Phase::Leaving { deadline } => Some(deadline),
            _ => None,
        };
        for d in [self.write_deadline, self.start_deadline()].into_iter().flatten() {
            at = Some(at.map_or(d, |a| a.min(d)));
        }
        at
    }

    /// Time passes: fence on a missed write deadline, start the next iteration when due.
    pub fn on_tick(&mut self, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        if self.check_deadlines(now, &mut out) {
            return out;
        }
        match self.phase {
            Phase::New => {
                self.started_at = now.mono;
                self.phase = Phase::Baseline;
                let (offset, len) = self.read_range();
                out.push(Action::ReadRegion { offset, len });
            }
            Phase::Idle { next_at } if now.mono >= next_at => self.begin_iteration(now, &mut out),
            _ => {}
        }
        out
    }

    /// The read asked for by [`Action::ReadRegion`] finished.
    pub fn on_region_read(&mut self, now: Now, result: Result<&[u8], DeviceError>) -> Vec<Action> {
        let mut out = Vec::new();
        if self.check_deadlines(now, &mut out) {
            return out;
        }
        let (offset, len) = self.read_range();
        let result = result.and_then(|bytes| {
            if bytes.len() == len {
                Ok(bytes)
            } else {
                Err(DeviceError::Io { op: "read", offset, len, errno: libc::EIO })
            }
        });
        match (self.phase, result) {
            (Phase::Baseline, Ok(bytes)) => {
                // o2hb_populate_slot_data: remember what every slot holds now, unverified, so
                // that only writes after our start count as changes.
                let watched = self.watched;
                for n in watched.iter() {
                    if let Ok(hb) = HeartbeatBlock::decode(self.raw_slot(bytes, n)) {
                        let slot = &mut self.slots[usize::from(n)];
                        slot.last_seq = hb.hb_seq;
                        slot.last_generation = hb.hb_generation;
                        if n == self.node {
                            self.own_expected_node = hb.hb_node;
                        }
                    }
                }
                self.seq_floor = self.slots[usize::from(self.node)].last_seq;
                if self.stop_requested {
                    self.begin_leave(now, &mut out);
                } else {
                    self.phase = Phase::Idle { next_at: now.mono.saturating_add(self.first_write_delay()) };
                }
            }
            (Phase::Baseline, Err(e)) => {
                self.phase = Phase::Done(End::Aborted);
                out.push(Action::StartAborted(AbortReason::BaselineRead(e)));
            }
            (Phase::Reading { started }, Ok(bytes)) => {
                let own_ok = match self.check_own_slot(self.raw_slot(bytes, self.node), &mut out) {
                    Ok(ok) => ok,
                    Err(info) if self.steady_left > 0 => {
                        // Refuse to start, before writing a byte: the running owner of the
                        // slot must not see us, nor its peers a generation flap.
                        self.phase = Phase::Done(End::Aborted);
                        out.push(Action::StartAborted(AbortReason::Clash(info)));
                        return out;
                    }
                    Err(_) => false,
                };
                let sector = self.prepare_block(now, self.generation);
                self.own_expected_node = self.node;
                out.push(Action::WriteSector { offset: self.region.slot_offset(self.node), data: sector.clone() });
                let mut change = false;
                let watched = self.watched;
                for n in watched.iter() {
                    let raw = if n == self.node { &sector[..] } else { self.raw_slot(bytes, n) };
                    change |= self.check_slot(n, raw, &mut out);
                }
                self.phase = Phase::Writing { started, own_ok, change };
            }
            (Phase::Reading { started }, Err(e)) => {
                self.last_error = Some(e);
                self.finish_iteration(now, started, false, false, false, &mut out);
            }
            _ => {}
        }
        out
    }

    /// The write asked for by [`Action::WriteSector`] finished.
    pub fn on_write_done(&mut self, now: Now, result: Result<(), DeviceError>) -> Vec<Action> {
        let mut out = Vec::new();
        if self.check_deadlines(now, &mut out) {
            return out;
        }
        match self.phase {
            Phase::Writing { started, own_ok, change } => {
                let ok = match result {
                    Ok(()) => true,
                    Err(e) => {
                        // Not re-armed: we cannot know whether the block reached the disk.
                        self.last_error = Some(e);
                        false
                    }
                };
                self.finish_iteration(now, started, ok, own_ok, change, &mut out);
            }
            Phase::Leaving { .. } => {
                self.phase = Phase::Done(End::Stopped);
                out.push(Action::Stopped { clean: result.is_ok() });
            }
            _ => {}
        }
        out
    }

    /// Stop heartbeating: at once when idle, else after the current iteration. Every live
    /// node is reported down, then the block is written once more with generation 0 so that
    /// peers see us leave at their next read instead of waiting out the threshold.
    pub fn on_stop(&mut self, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        if self.check_deadlines(now, &mut out) {
            return out;
        }
        match self.phase {
            Phase::New => {
                self.phase = Phase::Done(End::Stopped);
                out.push(Action::Stopped { clean: true });
            }
            Phase::Idle { .. } => self.begin_leave(now, &mut out),
            Phase::Baseline | Phase::Reading { .. } | Phase::Writing { .. } => self.stop_requested = true,
            Phase::Leaving { .. } | Phase::Done(_) => {}
        }
        out
    }

    fn block_bytes(&self) -> usize {
        self.region.block_bytes as usize
    }

    /// How long we watch our own slot after the baseline before the first iteration writes
    /// it: a node already heartbeating there writes within one interval (a little more if its
    /// I/O is slow), so we see it and refuse to start without having written anything. The
    /// kernel starts at once and only finds out after its own first write.
    fn first_write_delay(&self) -> Duration {
        self.config.interval.saturating_add(self.config.interval / 2)
    }

    /// `node`'s sector within a region read.
    fn raw_slot<'a>(&self, bytes: &'a [u8], node: u8) -> &'a [u8] {
        let bb = self.block_bytes();
        let at = usize::from(node - self.lo) * bb;
        &bytes[at..at + bb]
    }

    fn start_deadline(&self) -> Option<Duration> {
        if self.steady_left == 0 || matches!(self.phase, Phase::New | Phase::Done(_) | Phase::Leaving { .. }) {
            return None;
        }
        let iterations = self.config.interval.saturating_mul(UNSTEADY_ITERATIONS + 1);
        Some(self.started_at.saturating_add(iterations).saturating_add(self.config.max_write_timeout()))
    }

    /// Applies the timers; true when the core has ended (now or before).
    fn check_deadlines(&mut self, now: Now, out: &mut Vec<Action>) -> bool {
        if matches!(self.phase, Phase::Done(_)) {
            return true;
        }
        if let Some(deadline) = self.write_deadline {
            if now.mono >= deadline {
                let armed_at = deadline.saturating_sub(self.config.max_write_timeout());
                self.phase = Phase::Done(End::Fenced);
                self.write_deadline = None;
                out.push(Action::Fence { since_last_write: now.mono.saturating_sub(armed_at) });
                return true;
            }
        }
        if let Some(deadline) = self.start_deadline() {
            if now.mono >= deadline {
                self.phase = Phase::Done(End::Aborted);
                out.push(Action::StartAborted(AbortReason::Hung));
                return true;
            }
        }
        if let Phase::Leaving { deadline } = self.phase {
            if now.mono >= deadline {
                self.phase = Phase::Done(End::Stopped);
                out.push(Action::Stopped { clean: false });
                return true;
            }
        }
        false
    }

    fn begin_iteration(&mut self, now: Now, out: &mut Vec<Action>) {
        self.phase = Phase::Reading { started: now.mono };
        let (offset, len) = self.read_range();
        out.push(Action::ReadRegion { offset, len });
    }

    /// The end of `o2hb_do_disk_heartbeat`: arm the write timeout, count towards steady, give
    /// up an unsteady start, schedule the next iteration.
    fn finish_iteration(
        &mut self,
        now: Now,
        started: Duration,
        ok: bool,
        own_ok: bool,
        change: bool,
        out: &mut Vec<Action>,
    ) {
        if self.steady_left > 0 && ok && own_ok && !change {
            self.steady_left -= 1;
            if self.steady_left == 0 {
                out.push(Action::Steady);
            }
        }
        // The kernel arms only from the iteration after the one that made the region steady;
        // arming on that iteration too leaves no moment of a steady region without a timer.
        if ok && own_ok && self.steady_left == 0 {
            self.write_deadline = Some(now.mono.saturating_add(self.config.max_write_timeout()));
        }
        if self.steady_left > 0 {
            self.unsteady_left = self.unsteady_left.saturating_sub(1);
            if self.unsteady_left == 0 {
                self.phase = Phase::Done(End::Aborted);
                let reason = AbortReason::Unstable { io_error: self.last_error.clone() };
                out.push(Action::StartAborted(reason));
                return;
            }
        }
        if self.stop_requested {
            self.begin_leave(now, out);
            return;
        }
        self.phase = Phase::Idle { next_at: started.saturating_add(self.config.interval).max(now.mono) };
    }

    fn begin_leave(&mut self, now: Now, out: &mut Vec<Action>) {
        // The kernel disarms the write timeout before its last write: after a stop nothing of
        // ours writes to the volume any more, so a slow last write needs no fence.
        self.write_deadline = None;
        for n in self.live.iter() {
            out.push(Action::NodeDown(n));
        }
        for slot in self.slots.iter_mut() {
            slot.live = false;
        }
        self.live = NodeMap::new();
        if self.steady_left > 0 {
            // A start that never settled writes no leaving block, as o2hb skips it for an
            // aborted start: the slot may not even be ours alone.
            self.phase = Phase::Done(End::Stopped);
            out.push(Action::Stopped { clean: true });
            return;
        }
        let sector = self.prepare_block(now, 0);
        out.push(Action::WriteSector { offset: self.region.slot_offset(self.node), data: sector });
        self.phase = Phase::Leaving { deadline: now.mono.saturating_add(self.config.max_write_timeout()) };
    }

    /// `o2hb_prepare_block`: our sector for this iteration.
    fn prepare_block(&mut self, now: Now, generation: u64) -> Vec<u8> {
        let seq = now.wall_secs.max(self.seq_floor.saturating_add(1)).max(1);
        self.seq_floor = seq;
        let block = HeartbeatBlock {
            hb_seq: seq,
            hb_node: self.node,
            hb_generation: generation,
            hb_dead_ms: self.config.dead_ms(),
            ..Default::default()
        };
        let mut sector = vec![0u8; self.block_bytes()];
        let encoded = block.encode_sector(&mut sector);
        debug_assert!(encoded.is_ok(), "a validated region has sectors of at least 512 bytes");
        sector
    }

    /// `o2hb_check_own_slot`: does our slot still hold what we wrote last (or, before our
    /// first write, what the baseline found)? `Ok(false)` when there is nothing to compare
    /// with yet; `Err` on a mismatch, reported once per episode as [`Action::Clash`].
    fn check_own_slot(&mut self, raw: &[u8], out: &mut Vec<Action>) -> Result<bool, ClashInfo> {
        let slot = self.slots[usize::from(self.node)];
        let Ok(found) = HeartbeatBlock::decode(raw) else { return Ok(false) };
        let expected_node = self.own_expected_node;
        let same = found.hb_seq == slot.last_seq
            && found.hb_generation == slot.last_generation
            && found.hb_node == expected_node;
        if same {
            self.clash_reported = false;
            // The kernel does not count a never-written slot as intact.
            return Ok(slot.last_seq != 0);
        }
        // A slot that was empty at our baseline and is written now has another writer too:
        // the kernel skips that check, we do not.
        let kind = if found.hb_node != self.node {
            ClashKind::AnotherNode
        } else if found.hb_generation != slot.last_generation {
            ClashKind::GenerationMismatch
        } else {
            ClashKind::SequenceMismatch
        };
        let info = ClashInfo {
            kind,
            expected_node,
            expected_generation: slot.last_generation,
            expected_seq: slot.last_seq,
            found_node: found.hb_node,
            found_generation: found.hb_generation,
            found_seq: found.hb_seq,
        };
        if !self.clash_reported {
            self.clash_reported = true;
            out.push(Action::Clash(info));
        }
        Err(info)
    }

    /// `o2hb_check_slot`: one sample of `node`'s slot; true on a membership change.
    fn check_slot(&mut self, node: u8, raw: &[u8], out: &mut Vec<Action>) -> bool {
        let threshold = self.config.dead_threshold;
        let ours_ms = self.config.dead_ms();
        let slot = &mut self.slots[usize::from(node)];
        let mut generation_changed = false;
        let mut theirs_ms = 0;
        match HeartbeatBlock::verify(raw).and_then(|()| HeartbeatBlock::decode(raw)) {
            Err(_) => {
                // A dead node's bad checksum is ignored: freshly formatted slots have none. A
                // live node's counts as a missed beat, and nothing else in it is trusted.
                if !slot.live {
                    return false;
                }
                out.push(Action::BadChecksum { node });
                slot.equal_samples = slot.equal_samples.saturating_add(1);
            }
            Ok(hb) => {
                if hb.hb_seq != slot.last_seq {
                    slot.changed_samples = slot.changed_samples.saturating_add(1);
                } else {
                    slot.equal_samples = slot.equal_samples.saturating_add(1);
                }
                slot.last_seq = hb.hb_seq;
                if hb.hb_generation != slot.last_generation {
                    // Restarted (or left with generation 0): down now, but the changed
                    // samples count towards coming back.
                    generation_changed = true;
                    slot.equal_samples = 0;
                }
                slot.last_generation = hb.hb_generation;
                theirs_ms = hb.hb_dead_ms;
            }
        }
        // Changes seen at any time while dead bring a node to life.
        if !slot.live && slot.changed_samples >= O2HB_LIVE_THRESHOLD {
            slot.live = true;
            slot.equal_samples = 0;
            self.live.insert(node);
            out.push(Action::NodeUp(node));
            if theirs_ms != 0 && theirs_ms != ours_ms {
                out.push(Action::DeadMsMismatch { node, theirs: theirs_ms, ours: ours_ms });
            }
            return true;
        }
        if !slot.live {
            return false;
        }
        if slot.equal_samples >= threshold || generation_changed {
            slot.live = false;
            self.live.remove(node);
            out.push(Action::NodeDown(node));
            if !generation_changed {
                slot.changed_samples = 0;
            }
            return true;
        }
        // Activity resets the count of consecutive misses.
        if slot.changed_samples > 0 {
            slot.changed_samples = 0;
            slot.equal_samples = 0;
        }
        false
    }
}

#[cfg(test)]
mod tests;
