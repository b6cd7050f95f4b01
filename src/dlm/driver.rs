//! [`Dlm`]: the DLM core on a running [`Cluster`]: its o2net for messages, its membership
//! events for node up and down, real time for the timers.
//!
//! Threads: one sender per peer (the core keeps one message per peer outstanding, so a
//! sender just waits for each status reply), one timer thread, one thread following member
//! events, and one AST thread that runs BAST callbacks outside every DLM lock. o2net runs the
//! handlers on its reader threads; they only feed the core and never wait.
//!
//! Callers block in [`Dlm::lock`], [`Dlm::convert`] and [`Dlm::unlock`] until the request
//! finished. [`Dlm::acquire`] adds the lock cache the filesystem wants: a granted lock stays
//! held after its guard is dropped, until a BAST says another node needs it.

use super::core::{Action, DlmCore, DomainState, LockId, Millis};
use super::wire::{Lvb, Mode, Msg, DLM_LVB_LEN, LKM_NOQUEUE, LKM_VALBLK};
use super::{DlmError, Result};
use crate::cluster::membership::MemberEvent;
use crate::cluster::stack::Cluster;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one o2net send may wait for its status before the core retries it.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The timer thread wakes at least this often.
const TICK: Duration = Duration::from_millis(50);

/// A BAST callback: the lock's resource name and the mode another node waits for.
pub type BastFn = Arc<dyn Fn(LockId, &[u8], Mode) + Send + Sync>;

/// A BAST on its way to the AST thread: lock, resource name, blocked mode.
type BastMsg = (LockId, Vec<u8>, Mode);

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Granted(Mode),
    NotQueued,
    Cancelled,
    Unlocked,
}

struct State {
    core: DlmCore,
    outcomes: HashMap<LockId, Outcome>,
    senders: HashMap<u8, mpsc::Sender<(u16, u32, Vec<u8>)>>,
    joined: Option<std::result::Result<(), DlmError>>,
    left: bool,
}

struct CacheEntry {
    id: LockId,
    mode: Mode,
    users: usize,
    /// A BAST asked for it; release when the last user goes.
    wanted: bool,
    /// An up-convert is in progress. A BAST then cancels it, as dlmglue cancels a convert
    /// when another node needs the lock: two nodes that cached PR and both convert to EX
    /// would otherwise wait for each other forever.
    converting: bool,
}

struct Inner {
    cluster: Arc<Cluster>,
    epoch: Instant,
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
    basts: Mutex<Option<mpsc::Sender<BastMsg>>>,
    bast_fn: Mutex<Option<BastFn>>,
    cache: Mutex<HashMap<Vec<u8>, CacheEntry>>,
    cache_changed: Condvar,
    names: Mutex<HashMap<LockId, Vec<u8>>>,
    /// BASTs that came before their lock entered the cache.
    early_basts: Mutex<std::collections::HashSet<LockId>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    key: u32,
}

/// A member of one DLM domain. Dropping it leaves the domain.
pub struct Dlm {
    inner: Arc<Inner>,
}

/// A lock taken with [`Dlm::lock`]; give it back with [`Dlm::unlock`].
#[derive(Debug)]
pub struct LockHandle {
    id: LockId,
    name: Vec<u8>,
}

impl LockHandle {
    pub fn id(&self) -> LockId {
        self.id
    }

    pub fn name(&self) -> &[u8] {
        &self.name
    }
}

/// A cached lock in use; dropping it keeps the lock cached (see [`Dlm::acquire`]).
pub struct CachedLock<'a> {
    dlm: &'a Dlm,
    name: Vec<u8>,
    id: LockId,
    mode: Mode,
}

impl CachedLock<'_> {
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The LVB as the grant brought it (or as this node last wrote it).
    pub fn lvb(&self) -> Lvb {
        self.dlm.inner.lock_state().core.lock_lvb(self.id).unwrap_or([0; DLM_LVB_LEN])
    }

    /// Sets the LVB that travels to the master when the EX lock is released.
    pub fn set_lvb(&self, lvb: &Lvb) -> Result<()> {
        self.dlm.inner.lock_state().core.set_lvb(self.id, lvb)
    }
}

impl Drop for CachedLock<'_> {
    fn drop(&mut self) {
        self.dlm.release_cached(&self.name);
    }
}

impl Inner {
    fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs what the core asked for. Called with the state locked; sends and callbacks only
    /// go to channels.
    fn dispatch(self: &Arc<Self>, st: &mut State) {
        let actions = st.core.drain();
        if actions.is_empty() {
            return;
        }
        for a in actions {
            match a {
                Action::Send { to, msg_type, key, payload } => {
                    if self.stopping.load(Ordering::SeqCst) {
                        continue;
                    }
                    let tx = st.senders.entry(to).or_insert_with(|| self.spawn_sender(to));
                    if tx.send((msg_type, key, payload)).is_err() {
                        st.core.send_failed(self.now(), to);
                    }
                }
                Action::Granted { lock, mode, .. } => {
                    st.outcomes.insert(lock, Outcome::Granted(mode));
                }
                Action::NotQueued { lock } => {
                    st.outcomes.insert(lock, Outcome::NotQueued);
                }
                Action::Cancelled { lock } => {
                    st.outcomes.insert(lock, Outcome::Cancelled);
                }
                Action::Unlocked { lock } => {
                    st.outcomes.insert(lock, Outcome::Unlocked);
                }
                Action::Bast { lock, blocked } => {
                    let name = self.names.lock().unwrap_or_else(|e| e.into_inner()).get(&lock).cloned();
                    if let (Some(name), Some(tx)) =
                        (name, self.basts.lock().unwrap_or_else(|e| e.into_inner()).as_ref())
                    {
                        let _ = tx.send((lock, name, blocked));
                    }
                }
                Action::Joined { members } => {
                    log::info!("o2dlm: joined domain {} with nodes {:?}", st.core.domain(), members);
                    st.joined = Some(Ok(()));
                }
                Action::JoinFailed { reason } => st.joined = Some(Err(DlmError::ProtocolMismatch(reason))),
                Action::Left => st.left = true,
                Action::Recovered { dead, master } => {
                    log::info!("o2dlm: domain {}: node {dead} recovered by node {master}", st.core.domain());
                }
            }
        }
        self.changed.notify_all();
        // Sends queued while dispatching can produce more actions only through replies, which
        // come back on the sender threads.
    }

    fn spawn_sender(self: &Arc<Self>, peer: u8) -> mpsc::Sender<(u16, u32, Vec<u8>)> {
        let (tx, rx) = mpsc::channel::<(u16, u32, Vec<u8>)>();
        let inner = self.clone();
        let spawned = std::thread::Builder::new().name(format!("o2dlm-send-{peer}")).spawn(move || {
            for (msg_type, key, payload) in rx {
                if inner.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let r = inner.cluster.net().send_timeout(peer, msg_type, key, &payload, SEND_TIMEOUT);
                let mut st = inner.lock_state();
                let now = inner.now();
                match r {
                    Ok(status) => st.core.reply(now, peer, status),
                    Err(crate::cluster::net::NetError::NoHandler { .. }) => st.core.no_handler(now, peer),
                    Err(e) => {
                        log::debug!("o2dlm: send of type {msg_type} to node {peer} failed: {e}");
                        st.core.send_failed(now, peer);
                    }
                }
                inner.dispatch(&mut st);
            }
        });
        match spawned {
            Ok(h) => self.threads.lock().unwrap_or_else(|e| e.into_inner()).push(h),
            Err(e) => log::error!("o2dlm: cannot start the sender for node {peer}: {e}"),
        }
        tx
    }

    fn unlock_id(self: &Arc<Self>, id: LockId) -> Result<()> {
        {
            let mut st = self.lock_state();
            let now = self.now();
            st.core.unlock(now, id, None)?;
            self.dispatch(&mut st);
        }
        self.wait_outcome(id, None)?;
        self.names.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        // A BAST for a lock that never entered the cache is of no more use.
        self.early_basts.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        Ok(())
    }

    /// A BAST for a cached lock: give it back now if unused, else when its last user goes.
    fn cache_bast(self: &Arc<Self>, name: &[u8], id: LockId) {
        let give_back = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get_mut(name) {
                Some(e) if e.id == id && e.users == 0 => cache.remove(name).map(|e| e.id),
                Some(e) if e.id == id => {
                    e.wanted = true;
                    if e.converting {
                        // The cancel ends the convert (or comes too late for a grant); the
                        // converter then gives the lock back. Busy: already cancelling.
                        let mut st = self.lock_state();
                        let now = self.now();
                        let _ = st.core.cancel(now, id);
                        self.dispatch(&mut st);
                    }
                    None
                }
                _ => {
                    // Granted but not in the cache yet (or not a cached lock at all).
                    self.early_basts.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
                    None
                }
            }
        };
        if let Some(id) = give_back {
            if let Err(e) = self.unlock_id(id) {
                log::warn!("o2dlm: giving back a cached lock failed: {e}");
            }
        }
        self.cache_changed.notify_all();
    }

    /// Blocks until `id` has an outcome (or the deadline passes).
    fn wait_outcome(&self, id: LockId, deadline: Option<Instant>) -> Result<Outcome> {
        let mut st = self.lock_state();
        loop {
            if let Some(o) = st.outcomes.remove(&id) {
                return Ok(o);
            }
            if self.stopping.load(Ordering::SeqCst) {
                return Err(DlmError::NotJoined);
            }
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(DlmError::Timeout);
                    }
                    (d - now).min(TICK)
                }
                None => TICK,
            };
            st = self.changed.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Dlm {
    /// Joins `domain` (for a volume: its UUID in upper-case hex) on this node's cluster and
    /// waits until the domain accepted us.
    ///
    /// The cluster is shared through an `Arc` because the DLM's threads use its o2net for as
    /// long as the domain is joined.
    pub fn join(cluster: &Arc<Cluster>, domain: &str) -> Result<Dlm> {
        Dlm::join_timeout(cluster, domain, Duration::from_secs(60))
    }

    /// [`Dlm::join`] that gives up after `timeout`.
    pub fn join_timeout(cluster: &Arc<Cluster>, domain: &str, timeout: Duration) -> Result<Dlm> {
        let node = cluster.local_node().number;
        let incarnation =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1);
        let mut core = DlmCore::new(node, domain, incarnation)?;
        // What a joining kernel node's QUERY_NODEINFO and QUERY_REGION are checked against.
        core.set_cluster_nodes(cluster.config().nodes_of(cluster.cluster_name()).map(|n| n.number));
        if cluster.heartbeat_mode() == crate::cluster::config::HeartbeatMode::Global {
            core.set_global_regions(cluster.regions().into_iter().map(|(name, _)| name));
        }
        let key = core.key();
        let inner = Arc::new(Inner {
            cluster: cluster.clone(),
            epoch: Instant::now(),
            state: Mutex::new(State {
                core,
                outcomes: HashMap::new(),
                senders: HashMap::new(),
                joined: None,
                left: false,
            }),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            basts: Mutex::new(None),
            bast_fn: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
            cache_changed: Condvar::new(),
            names: Mutex::new(HashMap::new()),
            early_basts: Mutex::new(std::collections::HashSet::new()),
            threads: Mutex::new(Vec::new()),
            key,
        });
        let dlm = Dlm { inner };
        dlm.register_handlers()?;
        dlm.start_threads()?;
        {
            let inner = &dlm.inner;
            let mut st = inner.lock_state();
            let now = inner.now();
            for n in cluster.members().iter() {
                st.core.node_up(now, n);
            }
            st.core.join(now)?;
            inner.dispatch(&mut st);
        }
        let deadline = Instant::now() + timeout;
        let mut st = dlm.inner.lock_state();
        loop {
            match st.joined.take() {
                Some(Ok(())) => break,
                Some(Err(e)) => return Err(e),
                None => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(DlmError::Timeout);
            }
            st = dlm.inner.changed.wait_timeout(st, (deadline - now).min(TICK)).unwrap_or_else(|e| e.into_inner()).0;
        }
        drop(st);
        Ok(dlm)
    }

    fn register_handlers(&self) -> Result<()> {
        let net = self.inner.cluster.net();
        for t in Msg::TYPES {
            let key = if Msg::uses_mod_key(t) { super::wire::DLM_MOD_KEY } else { self.inner.key };
            let weak = Arc::downgrade(&self.inner);
            let handler = move |from: u8, payload: &[u8]| -> i32 {
                let Some(inner) = weak.upgrade() else { return super::wire::status::DLM_REJECTED };
                let mut st = inner.lock_state();
                let now = inner.now();
                let status = st.core.receive(now, from, t, payload);
                inner.dispatch(&mut st);
                status
            };
            net.register_handler(t, key, Msg::max_len(t) as u32, handler).map_err(|e| DlmError::Net(e.to_string()))?;
        }
        Ok(())
    }

    fn unregister_handlers(&self) {
        let net = self.inner.cluster.net();
        for t in Msg::TYPES {
            let key = if Msg::uses_mod_key(t) { super::wire::DLM_MOD_KEY } else { self.inner.key };
            net.unregister_handler(t, key);
        }
    }

    fn start_threads(&self) -> Result<()> {
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| -> Result<()> {
            let h = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(f)
                .map_err(|e| DlmError::Net(e.to_string()))?;
            self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()).push(h);
            Ok(())
        };
        // Timers.
        let inner = self.inner.clone();
        spawn(
            "o2dlm-timer",
            Box::new(move || {
                while !inner.stopping.load(Ordering::SeqCst) {
                    let mut st = inner.lock_state();
                    let now = inner.now();
                    st.core.tick(now);
                    inner.dispatch(&mut st);
                    let wait =
                        st.core.next_timer().map_or(TICK, |t| Duration::from_millis(t.saturating_sub(now)).min(TICK));
                    drop(inner.changed.wait_timeout(st, wait.max(Duration::from_millis(1))));
                }
            }),
        )?;
        // Membership.
        let inner = self.inner.clone();
        let events = self.inner.cluster.subscribe();
        spawn(
            "o2dlm-members",
            Box::new(move || loop {
                let e = match events.recv_timeout(TICK) {
                    Ok(e) => e,
                    Err(mpsc::RecvTimeoutError::Timeout) if !inner.stopping.load(Ordering::SeqCst) => continue,
                    Err(_) => break,
                };
                let mut st = inner.lock_state();
                let now = inner.now();
                match e {
                    MemberEvent::NodeUp(n) => {
                        st.core.node_up(now, n);
                        st.core.link_up(now, n);
                    }
                    MemberEvent::NodeDown(n) => st.core.node_down(now, n),
                    MemberEvent::Unreachable(_) => {}
                    MemberEvent::Fenced(r) => {
                        log::error!("o2dlm: this node fenced ({r}); the domain is gone");
                        inner.stopping.store(true, Ordering::SeqCst);
                    }
                }
                inner.dispatch(&mut st);
            }),
        )?;
        // BAST callbacks, and releases of cached locks that a BAST asks for.
        let (tx, rx) = mpsc::channel::<BastMsg>();
        *self.inner.basts.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let inner = self.inner.clone();
        spawn(
            "o2dlm-ast",
            Box::new(move || {
                for (id, name, blocked) in rx {
                    let f = inner.bast_fn.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    if let Some(f) = f {
                        f(id, &name, blocked);
                    }
                    inner.cache_bast(&name, id);
                }
            }),
        )?;
        Ok(())
    }

    /// This node's number.
    pub fn node(&self) -> u8 {
        self.inner.lock_state().core.node()
    }

    /// The domain map, this node included.
    pub fn members(&self) -> Vec<u8> {
        self.inner.lock_state().core.members()
    }

    /// Whether this node masters `name` now (it asked first, recovered it, or a leaving
    /// master migrated it here).
    pub fn masters(&self, name: &[u8]) -> bool {
        self.inner.lock_state().core.mastered_holders(name).is_some()
    }

    /// The core's counters: messages, grants, BASTs, masteries, recoveries, migrations.
    pub fn stats(&self) -> super::core::Stats {
        self.inner.lock_state().core.stats().clone()
    }

    /// Calls `f` (on the DLM's AST thread) when another node waits for a mode one of our
    /// locks blocks.
    pub fn set_bast_handler(&self, f: impl Fn(LockId, &[u8], Mode) + Send + Sync + 'static) {
        *self.inner.bast_fn.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(f));
    }

    /// Takes a new lock on `name` at `mode` and waits for the grant. Flags: LKM_NOQUEUE
    /// (a trylock: fails with [`DlmError::NotQueued`] instead of waiting); the LVB always
    /// travels (LKM_VALBLK).
    pub fn lock(&self, name: &[u8], mode: Mode, flags: u32) -> Result<LockHandle> {
        self.lock_timeout(name, mode, flags, None)
    }

    /// [`Dlm::lock`] that cancels the request if it is not granted by `timeout`.
    pub fn lock_timeout(&self, name: &[u8], mode: Mode, flags: u32, timeout: Option<Duration>) -> Result<LockHandle> {
        let inner = &self.inner;
        let id = {
            let mut st = inner.lock_state();
            let now = inner.now();
            let id = st.core.lock(now, name, mode, flags | LKM_VALBLK)?;
            inner.names.lock().unwrap_or_else(|e| e.into_inner()).insert(id, name.to_vec());
            inner.dispatch(&mut st);
            id
        };
        let outcome = match inner.wait_outcome(id, timeout.map(|t| Instant::now() + t)) {
            Err(DlmError::Timeout) => {
                {
                    let mut st = inner.lock_state();
                    let now = inner.now();
                    let _ = st.core.cancel(now, id);
                    inner.dispatch(&mut st);
                }
                inner.wait_outcome(id, None)?
            }
            other => other?,
        };
        match outcome {
            Outcome::Granted(_) => Ok(LockHandle { id, name: name.to_vec() }),
            other => {
                inner.names.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                Err(if other == Outcome::NotQueued { DlmError::NotQueued } else { DlmError::Cancelled })
            }
        }
    }

    /// Converts a held lock to `mode` (up or down) and waits until it is done. A conversion
    /// from EX carries the lock's LVB to the master.
    pub fn convert(&self, h: &LockHandle, mode: Mode, flags: u32) -> Result<()> {
        let inner = &self.inner;
        {
            let mut st = inner.lock_state();
            let now = inner.now();
            st.core.convert(now, h.id, mode, flags, None)?;
            inner.dispatch(&mut st);
        }
        match inner.wait_outcome(h.id, None)? {
            Outcome::Granted(_) => Ok(()),
            Outcome::NotQueued => Err(DlmError::NotQueued),
            _ => Err(DlmError::Cancelled),
        }
    }

    /// Releases a lock; from EX its LVB goes to the master.
    pub fn unlock(&self, h: LockHandle) -> Result<()> {
        self.inner.unlock_id(h.id)
    }

    /// The mode a lock holds.
    pub fn mode(&self, h: &LockHandle) -> Option<Mode> {
        self.inner.lock_state().core.lock_mode(h.id)
    }

    /// The lock's LVB: what the last grant brought, or what this node wrote since.
    pub fn lvb(&self, h: &LockHandle) -> Lvb {
        self.inner.lock_state().core.lock_lvb(h.id).unwrap_or([0; DLM_LVB_LEN])
    }

    /// Sets the LVB that the next release from EX sends to the master.
    pub fn set_lvb(&self, h: &LockHandle, lvb: &Lvb) -> Result<()> {
        self.inner.lock_state().core.set_lvb(h.id, lvb)
    }

    /// The lock cache: holds `name` at `mode` or higher, reusing the cached lock when it is
    /// good enough, converting it up when not, taking it when there is none. Dropping the
    /// guard keeps the lock; a BAST releases it once no guard uses it.
    pub fn acquire(&self, name: &[u8], mode: Mode) -> Result<CachedLock<'_>> {
        loop {
            let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get_mut(name) {
                Some(e) if e.wanted => {
                    // Being given back to a waiting node: let that finish first.
                    let _ = self.inner.cache_changed.wait_timeout(cache, TICK);
                    continue;
                }
                Some(e) if e.mode >= mode => {
                    e.users += 1;
                    return Ok(CachedLock { dlm: self, name: name.to_vec(), id: e.id, mode: e.mode });
                }
                Some(e) if e.users > 0 => {
                    let _ = self.inner.cache_changed.wait_timeout(cache, TICK);
                    continue;
                }
                Some(e) => {
                    let id = e.id;
                    // Submitted with the cache locked, so that a BAST sees either no convert
                    // (and the lock is given back before it starts) or one it can cancel.
                    {
                        let inner = &self.inner;
                        let mut st = inner.lock_state();
                        let now = inner.now();
                        st.core.convert(now, id, mode, 0, None)?;
                        inner.dispatch(&mut st);
                    }
                    e.users = 1;
                    e.converting = true;
                    drop(cache);
                    let r = match self.inner.wait_outcome(id, None) {
                        Ok(Outcome::Granted(_)) => Ok(()),
                        Ok(Outcome::NotQueued) => Err(DlmError::NotQueued),
                        Ok(_) => Err(DlmError::Cancelled),
                        Err(e) => Err(e),
                    };
                    let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
                    let e = cache.get_mut(name).ok_or(DlmError::UnknownLock(id))?;
                    e.converting = false;
                    match r {
                        Ok(()) => {
                            e.mode = mode;
                            return Ok(CachedLock { dlm: self, name: name.to_vec(), id, mode });
                        }
                        Err(DlmError::Cancelled) if e.wanted => {
                            // Cancelled for another node: give the lock back, then start over.
                            cache.remove(name);
                            drop(cache);
                            self.inner.cache_changed.notify_all();
                            self.unlock(LockHandle { id, name: name.to_vec() })?;
                            continue;
                        }
                        Err(err) => {
                            e.users = 0;
                            self.inner.cache_changed.notify_all();
                            return Err(err);
                        }
                    }
                }
                None => {
                    // Reserve the slot, then take the lock without holding the cache.
                    drop(cache);
                    let h = self.lock(name, mode, 0)?;
                    let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
                    if cache.contains_key(name) {
                        // Another thread cached one meanwhile: give ours back and use that.
                        drop(cache);
                        self.unlock(h)?;
                        continue;
                    }
                    let wanted = self.inner.early_basts.lock().unwrap_or_else(|e| e.into_inner()).remove(&h.id);
                    cache.insert(name.to_vec(), CacheEntry { id: h.id, mode, users: 1, wanted, converting: false });
                    return Ok(CachedLock { dlm: self, name: name.to_vec(), id: h.id, mode });
                }
            }
        }
    }

    fn release_cached(&self, name: &[u8]) {
        let give_back = {
            let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
            let Some(e) = cache.get_mut(name) else { return };
            e.users = e.users.saturating_sub(1);
            if e.users == 0 && e.wanted {
                cache.remove(name).map(|e| e.id)
            } else {
                None
            }
        };
        if let Some(id) = give_back {
            let _ = self.unlock(LockHandle { id, name: name.to_vec() });
        }
        self.inner.cache_changed.notify_all();
    }

    /// A trylock of `name` at `mode`.
    pub fn try_lock(&self, name: &[u8], mode: Mode) -> Result<LockHandle> {
        self.lock(name, mode, LKM_NOQUEUE)
    }

    /// Releases every cached lock and leaves the domain. Locks taken with [`Dlm::lock`] must
    /// have been unlocked.
    pub fn leave(self) -> Result<()> {
        self.leave_inner(Duration::from_secs(30))
    }

    fn leave_inner(&self, timeout: Duration) -> Result<()> {
        let cached: Vec<(Vec<u8>, LockId)> = {
            let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.drain().map(|(n, e)| (n, e.id)).collect()
        };
        for (name, id) in cached {
            let _ = self.unlock(LockHandle { id, name });
        }
        let inner = &self.inner;
        let deadline = Instant::now() + timeout;
        let mut st = inner.lock_state();
        if st.core.state() != DomainState::Joined {
            return Ok(());
        }
        let now = inner.now();
        st.core.leave(now)?;
        inner.dispatch(&mut st);
        while !st.left {
            let now = Instant::now();
            if now >= deadline {
                return Err(DlmError::Timeout);
            }
            st = inner.changed.wait_timeout(st, (deadline - now).min(TICK)).unwrap_or_else(|e| e.into_inner()).0;
        }
        Ok(())
    }

    fn stop(&self) {
        if self.inner.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.unregister_handlers();
        {
            let mut st = self.inner.lock_state();
            st.senders.clear();
        }
        *self.inner.basts.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.inner.changed.notify_all();
        let threads: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Dlm {
    fn drop(&mut self) {
        if !self.inner.stopping.load(Ordering::SeqCst) {
            if let Err(e) = self.leave_inner(Duration::from_secs(10)) {
                log::warn!("o2dlm: leaving the domain failed: {e}");
            }
        }
        self.stop();
    }
}
