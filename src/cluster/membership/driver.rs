//! [`Membership`]: the membership core on a thread, fed by the heartbeats of every region and by
//! o2net, acting on o2net and on the fence switch.
//!
//! One thread owns the decisions; small forwarding threads move each source's events into its
//! one inbox, so that events of one source keep their order. The core sits behind a mutex only
//! so that queries see its state.

use super::core::{Action, MembershipCore};
use super::{FenceAction, FenceReason, MemberEvent};
use crate::cluster::config::HeartbeatMode;
use crate::cluster::heartbeat::{FenceSwitch, HeartbeatEvent, NodeMap};
use crate::cluster::net::{Net, NetEvent};
use crate::cluster::quorum::Decision;
use parking_lot::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

enum Input {
    RegionStarted(String),
    Heartbeat(String, HeartbeatEvent),
    RegionClosed(String),
    Net(NetEvent),
    Stop,
}

struct Shared {
    core: MembershipCore,
    subscribers: Vec<mpsc::Sender<MemberEvent>>,
}

/// Membership of this node, running.
pub struct Membership {
    shared: Arc<Mutex<Shared>>,
    inbox: mpsc::Sender<Input>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    fence: FenceSwitch,
}

impl Membership {
    /// Starts watching `net` (already started, listening as `local`). Heartbeat regions are
    /// added with [`add_region`](Self::add_region). `fence` is the switch shared with every
    /// [`FencedDevice`](crate::cluster::heartbeat::FencedDevice) of this node.
    pub fn start(
        local: u8,
        mode: HeartbeatMode,
        quorum_delay: Duration,
        net: Arc<Net>,
        fence: FenceSwitch,
        action: FenceAction,
    ) -> std::io::Result<Membership> {
        let shared = Arc::new(Mutex::new(Shared {
            core: MembershipCore::new(local, mode, quorum_delay),
            subscribers: Vec::new(),
        }));
        let (inbox, rx) = mpsc::channel();
        forward(format!("membership-net-{local}"), net.subscribe(), inbox.clone(), Input::Net, None)?;
        let runner = Runner { shared: shared.clone(), net, fence: fence.clone(), action, epoch: Instant::now() };
        let thread = thread::Builder::new().name(format!("membership-{local}")).spawn(move || runner.run(rx))?;
        Ok(Membership { shared, inbox, thread: Mutex::new(Some(thread)), fence })
    }

    /// Follows a heartbeat region named `region` through its event stream (from
    /// [`Heartbeat::subscribe`](crate::cluster::heartbeat::Heartbeat::subscribe)). When the
    /// stream ends, the region's nodes stop counting.
    pub fn add_region(&self, region: &str, events: mpsc::Receiver<HeartbeatEvent>) -> std::io::Result<()> {
        let _ = self.inbox.send(Input::RegionStarted(region.to_string()));
        let name = region.to_string();
        forward(
            format!("membership-hb-{}", &region[..region.len().min(8)]),
            events,
            self.inbox.clone(),
            move |e| Input::Heartbeat(name.clone(), e),
            Some(Input::RegionClosed(region.to_string())),
        )
    }

    /// A stream of later events. It starts with `NodeUp` for every member now (and `Fenced` if
    /// this node has fenced), so a subscriber never misses the state it joins.
    pub fn subscribe(&self) -> mpsc::Receiver<MemberEvent> {
        let (tx, rx) = mpsc::channel();
        let mut s = self.shared.lock();
        for n in s.core.members().iter() {
            let _ = tx.send(MemberEvent::NodeUp(n));
        }
        if let Some(r) = s.core.fenced() {
            let _ = tx.send(MemberEvent::Fenced(r.clone()));
        }
        s.subscribers.push(tx);
        rx
    }

    /// Peers that heartbeat and are connected.
    pub fn members(&self) -> NodeMap {
        self.shared.lock().core.members()
    }

    /// Nodes heartbeating in some region, this node included once it sees its own writes.
    pub fn heartbeat_live(&self) -> NodeMap {
        self.shared.lock().core.heartbeat_live()
    }

    /// Peers connected past the handshake, as membership last heard.
    pub fn connected(&self) -> NodeMap {
        self.shared.lock().core.connected()
    }

    /// Why this node fenced, if it has.
    pub fn fenced(&self) -> Option<FenceReason> {
        self.shared.lock().core.fenced().cloned()
    }

    /// The last quorum decision, fenced or not.
    pub fn last_decision(&self) -> Option<Decision> {
        self.shared.lock().core.quorum().last_decision()
    }

    /// Waits until the end of region `region`'s event stream has been handled (its nodes no
    /// longer count), at most `limit`; false on timeout.
    pub fn wait_region_closed(&self, region: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            if !self.shared.lock().core.regions().any(|r| r == region) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn fence_switch(&self) -> FenceSwitch {
        self.fence.clone()
    }

    /// Stops the thread. Events still queued are dropped; the fence switch is left as it is.
    pub fn stop(&self) {
        let _ = self.inbox.send(Input::Stop);
        if let Some(t) = self.thread.lock().take() {
            if t.thread().id() != thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Moves every item of `from` into `to`, then `last` when `from` ends.
fn forward<T: Send + 'static>(
    name: String,
    from: mpsc::Receiver<T>,
    to: mpsc::Sender<Input>,
    wrap: impl Fn(T) -> Input + Send + 'static,
    last: Option<Input>,
) -> std::io::Result<()> {
    thread::Builder::new().name(name).spawn(move || {
        for item in from {
            if to.send(wrap(item)).is_err() {
                return;
            }
        }
        if let Some(last) = last {
            let _ = to.send(last);
        }
    })?;
    Ok(())
}

struct Runner {
    shared: Arc<Mutex<Shared>>,
    net: Arc<Net>,
    fence: FenceSwitch,
    action: FenceAction,
    epoch: Instant,
}

impl Runner {
    fn run(self, inbox: mpsc::Receiver<Input>) {
        loop {
            let now = self.epoch.elapsed();
            let wait = match self.shared.lock().core.next_timer() {
                Some(at) => at.saturating_sub(now),
                None => Duration::from_secs(3600),
            };
            let input = match inbox.recv_timeout(wait) {
                Ok(i) => Some(i),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let now = self.epoch.elapsed();
            let actions = {
                let mut s = self.shared.lock();
                let core = &mut s.core;
                let mut actions = match input {
                    None => Vec::new(),
                    Some(Input::Stop) => return,
                    Some(Input::RegionStarted(r)) => {
                        core.region_started(now, &r);
                        Vec::new()
                    }
                    Some(Input::Heartbeat(r, e)) => core.heartbeat(now, &r, &e),
                    Some(Input::RegionClosed(r)) => core.region_closed(now, &r),
                    Some(Input::Net(e)) => core.net(now, &e),
                };
                actions.extend(core.tick(now));
                actions
            };
            for action in actions {
                self.apply(action);
            }
        }
    }

    fn broadcast(&self, event: MemberEvent) {
        self.shared.lock().subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    fn apply(&self, action: Action) {
        match action {
            Action::SetPeerLive { node, live } => self.net.set_peer_live(node, live),
            Action::Event(e) => self.broadcast(e),
            Action::Fence(reason) => {
                // The switch first: from here on no write of this node reaches a shared device.
                self.fence.throw();
                log::error!("*** ocfs2 is very sorry to be fencing this node: {reason} ***");
                self.broadcast(MemberEvent::Fenced(reason.clone()));
                match &self.action {
                    FenceAction::Abort => {
                        eprintln!("*** ocfs2 is very sorry to be fencing this process by aborting: {reason} ***");
                        std::process::abort();
                    }
                    FenceAction::Callback(f) => {
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&reason))).is_err() {
                            log::error!("the fence callback panicked; writes stay refused");
                        }
                        // A fenced node takes no further part: its peers see it leave.
                        self.net.stop();
                    }
                }
            }
        }
    }
}
