//! The heartbeat thread: runs a [`HeartbeatCore`] against a real device and a clock, and tells
//! subscribers what it sees.
//!
//! Two threads per region. The heartbeat thread owns the core and never blocks on I/O, so it
//! can fence on time while a write hangs; an I/O thread does the reads and writes one at a
//! time and reports each completion. A write that hangs for good keeps only the I/O thread,
//! which is then left behind; the fence switch keeps its write from landing if it is checked
//! below the hang (see [`FencedDevice`](super::FencedDevice)).
//!
//! [`Heartbeat::start`] returns once the region is steady, as the kernel's region start waits
//! for `hr_steady_iterations`: nodes that were already heartbeating have been seen by then.

use super::clock::Clock;
use super::error::HeartbeatError;
use super::fence::FenceSwitch;
use super::nodemap::NodeMap;
use super::protocol::{AbortReason, Action, ClashInfo, HeartbeatConfig, HeartbeatCore, HeartbeatRegion};
use crate::device::{BlockDevice, DeviceError};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What subscribers hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatEvent {
    /// The node's heartbeat became live (our own node included, as o2hb reports it).
    NodeUp(u8),
    /// The node's heartbeat died, or it left the region, or we stopped.
    NodeDown(u8),
    /// Our heartbeat write missed its deadline: the fence switch is already thrown.
    Fenced,
    /// Someone else writes our slot.
    Clash(ClashInfo),
}

/// Where the heartbeat is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatStatus {
    Starting,
    Steady,
    Fenced,
    Stopped,
    /// The start failed.
    Failed(HeartbeatError),
}

/// I/O counters, for the cost of a heartbeat per interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartbeatStats {
    /// Region reads completed (one per iteration, plus the baseline).
    pub reads: u64,
    pub bytes_read: u64,
    /// Sector writes completed (one per iteration, plus the leaving block).
    pub writes: u64,
    pub bytes_written: u64,
    pub last_write_latency: Duration,
    pub max_write_latency: Duration,
}

impl HeartbeatStats {
    /// Average bytes read and written per iteration so far.
    pub fn bytes_per_iteration(&self) -> (u64, u64) {
        let n = self.reads.max(1);
        (self.bytes_read / n, self.bytes_written / self.writes.max(1))
    }
}

struct State {
    status: HeartbeatStatus,
    live: NodeMap,
    subscribers: Vec<mpsc::Sender<HeartbeatEvent>>,
    stats: HeartbeatStats,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn broadcast(state: &mut State, event: HeartbeatEvent) {
        state.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    fn set_status(&self, status: HeartbeatStatus) {
        self.state.lock().status = status;
        self.changed.notify_all();
    }
}

enum Msg {
    Read(Result<Vec<u8>, DeviceError>),
    Write(Result<(), DeviceError>),
    Stop,
}

enum Io {
    Read { offset: u64, len: usize },
    Write { offset: u64, data: Vec<u8> },
}

/// A running o2hb heartbeat of this node on one region.
pub struct Heartbeat {
    shared: Arc<Shared>,
    control: mpsc::Sender<Msg>,
    thread: Option<thread::JoinHandle<()>>,
    node: u8,
    generation: u64,
    region: HeartbeatRegion,
    config: HeartbeatConfig,
    fence: FenceSwitch,
}

impl Heartbeat {
    /// Starts heartbeating as `node` and returns once the region is steady.
    pub fn start(
        dev: Arc<dyn BlockDevice>,
        region: HeartbeatRegion,
        node: u8,
        config: HeartbeatConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Heartbeat, HeartbeatError> {
        Self::start_with_fence(dev, region, node, config, clock, FenceSwitch::new())
    }

    /// As [`start`](Self::start), throwing `fence` when our write misses its deadline. Share
    /// the switch with every [`FencedDevice`](super::FencedDevice) of this node.
    pub fn start_with_fence(
        dev: Arc<dyn BlockDevice>,
        region: HeartbeatRegion,
        node: u8,
        config: HeartbeatConfig,
        clock: Arc<dyn Clock>,
        fence: FenceSwitch,
    ) -> Result<Heartbeat, HeartbeatError> {
        Self::start_with_subscriber(dev, region, node, config, clock, fence, None)
    }

    /// As [`start_with_fence`](Self::start_with_fence), with `subscriber` receiving events from
    /// the first read on, while the start is still settling. A node seen live during the start
    /// is reported at once, so o2net can dial it as early as the kernel would; subscribers added
    /// later with [`subscribe`](Self::subscribe) hear of it only after the start returns.
    pub fn start_with_subscriber(
        dev: Arc<dyn BlockDevice>,
        region: HeartbeatRegion,
        node: u8,
        config: HeartbeatConfig,
        clock: Arc<dyn Clock>,
        fence: FenceSwitch,
        subscriber: Option<mpsc::Sender<HeartbeatEvent>>,
    ) -> Result<Heartbeat, HeartbeatError> {
        if fence.is_thrown() {
            return Err(HeartbeatError::Fenced);
        }
        region.validate()?;
        if region.block_bytes != dev.sector_size() {
            return Err(HeartbeatError::Config(format!(
                "heartbeat block size {} does not match the device's sector size {}",
                region.block_bytes,
                dev.sector_size()
            )));
        }
        if region.start_byte + region.len() > dev.len() {
            return Err(HeartbeatError::Config(format!(
                "heartbeat region ends at byte {}, beyond the device's {} bytes",
                region.start_byte + region.len(),
                dev.len()
            )));
        }
        let generation = random_generation();
        let core = HeartbeatCore::new(node, region, config.clone(), generation)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                status: HeartbeatStatus::Starting,
                live: NodeMap::new(),
                subscribers: subscriber.into_iter().collect(),
                stats: HeartbeatStats::default(),
            }),
            changed: Condvar::new(),
        });
        let (control, inbox) = mpsc::channel();
        let (io_tx, io_rx) = mpsc::channel();
        let io_reply = control.clone();
        let io_fence = fence.clone();
        thread::Builder::new()
            .name(format!("o2hb-io-{node}"))
            .spawn(move || io_thread(dev, io_rx, io_reply, io_fence))
            .map_err(|e| HeartbeatError::Thread(e.to_string()))?;
        let poll = (config.interval / 10).max(Duration::from_millis(1));
        let runner =
            Runner { core, shared: shared.clone(), clock, fence: fence.clone(), io: io_tx, write_issued: None, poll };
        let thread = thread::Builder::new()
            .name(format!("o2hb-{node}"))
            .spawn(move || runner.run(inbox))
            .map_err(|e| HeartbeatError::Thread(e.to_string()))?;
        let mut hb = Heartbeat { shared, control, thread: Some(thread), node, generation, region, config, fence };
        let status = {
            let mut state = hb.shared.state.lock();
            while state.status == HeartbeatStatus::Starting {
                hb.shared.changed.wait(&mut state);
            }
            state.status.clone()
        };
        match status {
            HeartbeatStatus::Steady => Ok(hb),
            HeartbeatStatus::Failed(e) => {
                hb.join();
                Err(e)
            }
            HeartbeatStatus::Fenced => {
                hb.join();
                Err(HeartbeatError::Fenced)
            }
            other => {
                hb.join();
                Err(HeartbeatError::Thread(format!("heartbeat ended while starting: {other:?}")))
            }
        }
    }

    pub fn node(&self) -> u8 {
        self.node
    }

    /// The random generation written in our block while we run.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn region(&self) -> HeartbeatRegion {
        self.region
    }

    pub fn config(&self) -> &HeartbeatConfig {
        &self.config
    }

    /// The switch this heartbeat throws when it fences.
    pub fn fence_switch(&self) -> FenceSwitch {
        self.fence.clone()
    }

    pub fn is_fenced(&self) -> bool {
        self.fence.is_thrown()
    }

    /// Nodes whose heartbeat is live, ours included.
    pub fn live_nodes(&self) -> NodeMap {
        self.shared.state.lock().live
    }

    pub fn status(&self) -> HeartbeatStatus {
        self.shared.state.lock().status.clone()
    }

    pub fn stats(&self) -> HeartbeatStats {
        self.shared.state.lock().stats
    }

    /// A stream of events. It starts with `NodeUp` for every node live now (and `Fenced` if we
    /// are), so that a subscriber never misses the state it joins.
    pub fn subscribe(&self) -> mpsc::Receiver<HeartbeatEvent> {
        let (tx, rx) = mpsc::channel();
        let mut state = self.shared.state.lock();
        for n in state.live.iter() {
            let _ = tx.send(HeartbeatEvent::NodeUp(n));
        }
        if state.status == HeartbeatStatus::Fenced {
            let _ = tx.send(HeartbeatEvent::Fenced);
        }
        state.subscribers.push(tx);
        rx
    }

    /// Stops cleanly: every live node is reported down, our block is written once more with
    /// generation 0 (peers log that we left), and the thread is joined.
    pub fn stop(mut self) -> Result<(), HeartbeatError> {
        self.join();
        match self.status() {
            HeartbeatStatus::Stopped => Ok(()),
            HeartbeatStatus::Fenced => Err(HeartbeatError::Fenced),
            HeartbeatStatus::Failed(e) => Err(e),
            other => Err(HeartbeatError::Thread(format!("heartbeat ended as {other:?}"))),
        }
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.control.send(Msg::Stop);
            if thread.join().is_err() {
                self.shared.set_status(HeartbeatStatus::Failed(HeartbeatError::Thread(
                    "the heartbeat thread panicked".into(),
                )));
            }
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.join();
    }
}

fn io_thread(dev: Arc<dyn BlockDevice>, requests: mpsc::Receiver<Io>, reply: mpsc::Sender<Msg>, fence: FenceSwitch) {
    while let Ok(req) = requests.recv() {
        let msg = match req {
            Io::Read { offset, len } => {
                let mut buf = vec![0u8; len];
                Msg::Read(dev.read_at(offset, &mut buf).map(|()| buf))
            }
            Io::Write { offset, data } => {
                if fence.is_thrown() {
                    Msg::Write(Err(fenced_error(offset, data.len())))
                } else {
                    Msg::Write(dev.write_at(offset, &data))
                }
            }
        };
        if reply.send(msg).is_err() {
            break;
        }
    }
}

fn fenced_error(offset: u64, len: usize) -> DeviceError {
    DeviceError::Io { op: "write", offset, len, errno: libc::EIO }
}

struct Runner {
    core: HeartbeatCore,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    fence: FenceSwitch,
    io: mpsc::Sender<Io>,
    /// When the write in flight was handed to the I/O thread.
    write_issued: Option<Duration>,
    /// Longest wait between looks at the clock, so an injected clock is followed too.
    poll: Duration,
}

impl Runner {
    fn run(mut self, inbox: mpsc::Receiver<Msg>) {
        let _guard = ExitGuard(self.shared.clone());
        let mut pending = VecDeque::new();
        loop {
            let now = self.clock.now();
            pending.extend(self.core.on_tick(now));
            if !self.apply(&mut pending) {
                break;
            }
            let now = self.clock.now();
            let wait = match self.core.next_wakeup() {
                Some(at) => at.saturating_sub(now.mono).min(self.poll),
                None => self.poll,
            };
            let msg = match inbox.recv_timeout(wait) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => Msg::Stop,
            };
            let now = self.clock.now();
            match msg {
                Msg::Read(result) => {
                    if let Ok(bytes) = &result {
                        let mut state = self.shared.state.lock();
                        state.stats.reads += 1;
                        state.stats.bytes_read += bytes.len() as u64;
                    }
                    pending.extend(self.core.on_region_read(now, result.as_deref().map_err(Clone::clone)));
                }
                Msg::Write(result) => {
                    let issued = self.write_issued.take().unwrap_or(now.mono);
                    if result.is_ok() {
                        let latency = now.mono.saturating_sub(issued);
                        let mut state = self.shared.state.lock();
                        state.stats.writes += 1;
                        state.stats.bytes_written += u64::from(self.core.region().block_bytes);
                        state.stats.last_write_latency = latency;
                        state.stats.max_write_latency = state.stats.max_write_latency.max(latency);
                    }
                    pending.extend(self.core.on_write_done(now, result));
                }
                Msg::Stop => pending.extend(self.core.on_stop(now)),
            }
            if !self.apply(&mut pending) {
                break;
            }
        }
    }

    /// Carries out the core's actions; false once the core has ended.
    fn apply(&mut self, pending: &mut VecDeque<Action>) -> bool {
        let node = self.core.node();
        while let Some(action) = pending.pop_front() {
            match action {
                Action::ReadRegion { offset, len } => {
                    if self.io.send(Io::Read { offset, len }).is_err() {
                        let err = DeviceError::Io { op: "read", offset, len, errno: libc::EIO };
                        pending.extend(self.core.on_region_read(self.clock.now(), Err(err)));
                    }
                }
                Action::WriteSector { offset, data } => {
                    let len = data.len();
                    if self.fence.is_thrown() || self.io.send(Io::Write { offset, data }).is_err() {
                        pending.extend(self.core.on_write_done(self.clock.now(), Err(fenced_error(offset, len))));
                    } else {
                        self.write_issued = Some(self.clock.now().mono);
                    }
                }
                Action::NodeUp(n) => {
                    log::info!("o2hb: node {n} joined the region of node {node}");
                    let mut state = self.shared.state.lock();
                    state.live.insert(n);
                    Shared::broadcast(&mut state, HeartbeatEvent::NodeUp(n));
                }
                Action::NodeDown(n) => {
                    log::info!("o2hb: node {n} left the region of node {node}");
                    let mut state = self.shared.state.lock();
                    state.live.remove(n);
                    Shared::broadcast(&mut state, HeartbeatEvent::NodeDown(n));
                }
                Action::Fence { since_last_write } => {
                    // The switch first: from here on nothing of ours reaches the device.
                    self.fence.throw();
                    log::error!(
                        "o2hb: heartbeat write timeout after {} milliseconds; node {node} fences itself",
                        since_last_write.as_millis()
                    );
                    let mut state = self.shared.state.lock();
                    state.status = HeartbeatStatus::Fenced;
                    state.live = NodeMap::new();
                    Shared::broadcast(&mut state, HeartbeatEvent::Fenced);
                    drop(state);
                    self.shared.changed.notify_all();
                }
                Action::Clash(info) => {
                    log::error!("o2hb: node {node}: {info}");
                    let mut state = self.shared.state.lock();
                    Shared::broadcast(&mut state, HeartbeatEvent::Clash(info));
                }
                Action::BadChecksum { node: n } => log::error!("o2hb: node {n} has written a bad crc"),
                Action::DeadMsMismatch { node: n, theirs, ours } => log::error!(
                    "o2hb: node {n} has a dead count of {theirs} ms, but our count is {ours} ms; \
                     check O2CB_HEARTBEAT_THRESHOLD on every node"
                ),
                Action::Steady => self.shared.set_status(HeartbeatStatus::Steady),
                Action::StartAborted(reason) => {
                    if self.write_issued.is_some() {
                        // A hung write could still land later; keep it from doing so.
                        self.fence.throw();
                    }
                    let error = match reason {
                        AbortReason::BaselineRead(e) => HeartbeatError::Device(e),
                        AbortReason::Clash(c) => HeartbeatError::Clash(c),
                        AbortReason::Unstable { io_error: Some(e) } => HeartbeatError::Device(e),
                        AbortReason::Unstable { io_error: None } => HeartbeatError::Unstable,
                        AbortReason::Hung => HeartbeatError::Hung,
                    };
                    log::error!("o2hb: node {node}: {error}");
                    self.shared.set_status(HeartbeatStatus::Failed(error));
                }
                Action::Stopped { clean } => {
                    if !clean {
                        log::warn!("o2hb: node {node}: the leaving block was not written");
                    }
                    self.shared.set_status(HeartbeatStatus::Stopped);
                }
            }
        }
        self.core.end().is_none()
    }
}

/// Releases a waiting [`Heartbeat::start`] however the heartbeat thread ends, panics included.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        if state.status == HeartbeatStatus::Starting {
            state.status =
                HeartbeatStatus::Failed(HeartbeatError::Thread("the heartbeat thread ended while starting".into()));
        }
        drop(state);
        self.0.changed.notify_all();
    }
}

/// A non-zero random generation, from /dev/urandom or, failing that, the clock and our pid.
fn random_generation() -> u64 {
    use std::io::Read;
    let mut buf = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_ok() {
        let g = u64::from_le_bytes(buf);
        if g != 0 {
            return g;
        }
    }
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    // splitmix64 of the mixture, so that close clocks give distant generations.
    let mut z = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}
