//! The DLM of one node as a pure state machine, in the o2dlm model.
//!
//! Entry points take `now` and an event (a local request, a message, a reply, a membership
//! change, a timer); the consequences are queued as [`Action`]s that [`DlmCore::drain`] hands
//! out: messages to send, grants, blocking ASTs, unlocks, domain changes. No sockets, threads or
//! clocks, so the simulator runs many cores on one thread.
//!
//! Messages to each peer go out one at a time (the next when the previous one's status reply
//! came back, as a thread doing o2net's synchronous sends would). A failed send is retried
//! until the peer is declared dead, so the handlers are idempotent: a message the peer
//! handled but whose reply was lost is harmless when it comes again.
//!
//! The rules kept:
//! - **Mastery**: the node that wants an unknown resource asks every domain member
//!   (MASTER_REQUEST). Any YES names the master; a MAYBE (the answerer is itself asking, from a
//!   lower node number, or recovery is running) means try again; all NO makes the asker the
//!   master, which it announces with ASSERT_MASTER. A node that is asking yields to a request
//!   from a lower-numbered node and starts over, and any domain change during a round starts
//!   it over, so two nodes never both become master.
//! - **Queues**: the master keeps granted, converting and blocked queues and grants in order
//!   (converting first); holders in the way of a waiting request get a BAST. Grants travel as
//!   PROXY_AST with the LVB; the LVB comes back with every release from EX.
//! - **Cancel**: as the kernel's (`dlm_get_cancel_actions`), the master answers a cancel
//!   (UNLOCK_LOCK with LKM_CANCEL) with its outcome in the status: DLM_NORMAL when the request
//!   was still waiting (a new lock is gone, a convert is back at its mode), DLM_CANCELGRANT
//!   when it had been granted (its AST, sent before, completes it). No unlock AST is sent for
//!   either, and the owner takes the status as it comes, whichever of it and a grant's AST
//!   arrives first. A cancel that comes again after its answer was lost gets the same answer
//!   (DLM_IVLOCKID for a new lock that is gone, which the owner also takes as cancelled).
//! - **Recovery**: when a member dies or exits, the lowest live member becomes recovery master,
//!   asks every member for its locks on the resources the departed node mastered (LOCK_REQUEST,
//!   answered with MIG_LOCKRES and RECO_DATA_DONE), rebuilds their queues, takes them over and
//!   announces it with FINALIZE_RECO. Requests on those resources, mastery and joins wait until
//!   then; a death during recovery starts it over. An LVB nobody can vouch for becomes zero.
//! - **Leave** (as the kernel's `dlm_unregister_domain`): a node without locks drops the
//!   references masters count for it (DEREF_LOCKRES), announces the leave (BEGIN_EXIT_DOMAIN:
//!   no migration target any more), then migrates every resource it masters that another
//!   member has locks on, knows of, or whose LVB holds a value: its queues and LVB go to one
//!   member (MIG_LOCKRES with MIGRATION, frozen meanwhile: requests get DLM_MIGRATING), which
//!   tells every other member (MIGRATE_REQUEST, then ASSERT_MASTER with FINISH_MIGRATION),
//!   the old master last, and opens the resource only then. The leaver drops the reference
//!   the new master counts for it and, when nothing is left to move, sends EXIT_DOMAIN; the
//!   others recover what it still mastered (resources nobody knew of) without asking it. A
//!   kernel leaving does the same, and this core plays its new master or a bystander.
//!
//! Where this goes beyond the kernel's use of the same messages (all in fields the kernel
//! leaves as padding or does not read):
//! - a PROXY_AST of type AST carries the granted mode in `blocked_type`, so that an AST that
//!   comes twice (resent after a lost reply) cannot complete a newer request;
//! - LOCK_REQUEST and RECO_DATA_DONE carry the recovery round in `pad2`, MIG_LOCKRES in
//!   `mig_cookie`, so that data of an abandoned round never mixes into the next;
//! - a recovery round takes over the resources of every departed node the recovery master
//!   knows (one BEGIN_RECO each, before LOCK_REQUEST), and a participant that knows of more
//!   refuses with EAGAIN and names them in an EXIT_DOMAIN whose `node_idx` is not its own;
//! - where the kernel settles a migration that a death interrupted with MASTER_REQUERY, a
//!   member that masters a resource because of a migration with the departed node (it was
//!   receiving it, or was handing it to it) claims it in the recovery round: it asserts its
//!   mastery to every member first, then answers the recovery master with a MIG_LOCKRES that
//!   names itself as the master (no locks), and the recovery master leaves that resource to it.

use super::wire::*;
use super::{DlmError, Result};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub type Millis = u64;

/// Delay before a failed send is tried again.
const SEND_RETRY_MS: Millis = 100;
/// The kernel's DLM_DOMAIN_BACKOFF_MS between join attempts.
const JOIN_BACKOFF_MS: Millis = 200;
/// Delay before a mastery round or a lock request is tried again after a MAYBE or a FORWARD.
const RETRY_MS: Millis = 50;
/// How long a node waits for the recovery master to start before reminding it.
const POKE_MS: Millis = 300;

/// A lock of this node: its cookie, `(node << 56) | sequence` as the kernel forms it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockId(pub u64);

impl LockId {
    pub fn node(self) -> u8 {
        (self.0 >> 56) as u8
    }
}

/// What the core asks its driver to do, or tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this o2net message and report its status with [`DlmCore::reply`] (or the failure
    /// with [`DlmCore::send_failed`]). At most one per peer is outstanding.
    Send {
        to: u8,
        msg_type: u16,
        key: u32,
        payload: Vec<u8>,
    },
    /// A lock or convert request was granted: the lock is now held at `mode`.
    Granted {
        lock: LockId,
        mode: Mode,
        lvb: Lvb,
    },
    /// A NOQUEUE request could not be granted at once; a new lock is gone, a convert left the
    /// lock as it was.
    NotQueued {
        lock: LockId,
    },
    /// A cancel took effect: a new lock is gone, a convert left the lock as it was.
    Cancelled {
        lock: LockId,
    },
    /// An unlock finished; the lock is gone.
    Unlocked {
        lock: LockId,
    },
    /// Another node waits for a mode that this lock's mode blocks.
    Bast {
        lock: LockId,
        blocked: Mode,
    },
    Joined {
        members: Vec<u8>,
    },
    /// Joining is impossible (protocol mismatch); the core is idle again.
    JoinFailed {
        reason: String,
    },
    /// The domain was left.
    Left,
    /// Recovery of `dead` finished; `master` took over its resources.
    Recovered {
        dead: u8,
        master: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    Idle,
    Joining,
    Joined,
    Leaving,
    Left,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Unknown,
    Me,
    Node(u8),
}

/// What a message's status reply concerns.
#[derive(Debug, Clone)]
enum Ctx {
    Plain,
    Query {
        attempt: u64,
    },
    AssertJoined {
        attempt: u64,
    },
    MasterRequest {
        name: Vec<u8>,
        attempt: u64,
    },
    /// `seq`: which of the lock's requests it was (an answer to an earlier one, resent after
    /// a lost reply, says nothing about the current one).
    LockOp {
        cookie: u64,
        cancel: bool,
        seq: u64,
    },
    BeginReco {
        round: u64,
    },
    LockRequest {
        round: u64,
    },
    /// Our queues of `name` sent to the node we migrate it to.
    MigrationData {
        name: Vec<u8>,
    },
    /// Our ASSERT_MASTER (FINISH_MIGRATION) as the new master of `name`.
    MigrationAssert {
        name: Vec<u8>,
    },
    /// Our ASSERT_MASTER of `name` otherwise (mastery won, claimed, or asked for).
    Assert {
        name: Vec<u8>,
    },
    /// Our DEREF_LOCKRES of `name`.
    Deref {
        name: Vec<u8>,
    },
    Exit,
}

#[derive(Debug)]
struct Outgoing {
    msg: Msg,
    ctx: Ctx,
}

#[derive(Debug, Default)]
struct Peer {
    queue: VecDeque<Outgoing>,
    in_flight: bool,
    retry_at: Option<Millis>,
}

/// A lock in a master's queues.
#[derive(Debug, Clone)]
struct MLock {
    cookie: u64,
    node: u8,
    /// Granted mode (granted and converting queues) or requested mode (blocked queue).
    mode: Mode,
    /// Converting queue: the mode asked for.
    convert: Option<Mode>,
    /// The highest mode a BAST was already sent for, since the last mode change.
    bast: Option<Mode>,
    /// The pending request asked for the LVB with its grant (the kernel's DLM_LKSB_GET_LVB).
    /// A kernel owner BUGs on an AST that carries an LVB it did not ask for.
    get_lvb: bool,
    /// A cancel put it back on the granted queue and no request came since: a cancel that
    /// comes again (resent after a lost reply) is answered as the first one was, not as one
    /// that came after a grant.
    cancelled: bool,
}

/// An AST or BAST the master owes: node, cookie, type, mode, and whether the LVB goes along.
type Delivery = (u8, u64, u8, Mode, bool);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    None,
    Create { mode: Mode, noqueue: bool },
    Convert { mode: Mode, noqueue: bool },
    Unlock,
}

/// A lock this node owns.
#[derive(Debug, Clone)]
struct LocalLock {
    name: Vec<u8>,
    granted: Option<Mode>,
    op: Op,
    cancel: bool,
    /// The node the pending op (and the cancel) went to, so that a change of master resends.
    op_sent: Option<u8>,
    cancel_sent: Option<u8>,
    /// The pending op went to a remote master, which may have applied it even if no answer
    /// came back (recovery must then treat a release as done and its LVB as unknowable).
    applied: bool,
    lvb: Lvb,
    pending_bast: Option<Mode>,
    /// The node whose answer to our op (and to our cancel) has not come yet: not sent again
    /// meanwhile, as its answer says whether it took it (a migrating master answers
    /// DLM_MIGRATING for what it did not take).
    op_awaiting: Option<u8>,
    cancel_awaiting: Option<u8>,
    /// Bumped by every new request on the lock.
    op_seq: u64,
}

#[derive(Debug, Clone)]
struct Mastery {
    attempt: u64,
    gen: u64,
    waiting: BTreeSet<u8>,
    yes: Option<u8>,
    maybe: bool,
    redo: bool,
}

#[derive(Debug, Clone)]
struct Res {
    owner: Owner,
    /// The master departed; requests wait for recovery.
    recovering: bool,
    granted: Vec<MLock>,
    converting: Vec<MLock>,
    blocked: Vec<MLock>,
    lvb: Lvb,
    mastery: Option<Mastery>,
    retry_at: Option<Millis>,
    /// Cookies of this node's locks on the resource.
    local: BTreeSet<u64>,
    /// A migration from the first node to the second is under way (MIGRATE_REQUEST came):
    /// requests wait for the new master's ASSERT_MASTER.
    migrating: Option<(u8, u8)>,
    /// The master counts a reference of ours (it answered our MASTER_REQUEST, or took the
    /// resource over with our locks in it): a kernel master keeps the resource, and would
    /// migrate it to us, until a DEREF_LOCKRES drops it.
    ref_at_master: bool,
    /// As master: the nodes that asked us for the master and have not dropped their
    /// reference (the kernel's refmap). Our leave migrates a resource they know of.
    refs: BTreeSet<u8>,
    /// As a leaving master: the node our queues are migrating to, until its ASSERT_MASTER.
    migration_out: Option<u8>,
    /// As the new master of a migration: requests wait (DLM_MIGRATING) and nothing is granted
    /// until every other member and then the old master have heard our ASSERT_MASTER.
    opening: Option<Opening>,
    /// As master by migration: the node it came from (its data sent again after a lost reply
    /// is a duplicate).
    migrated_from: Option<u8>,
    /// Members that have not answered our last ASSERT_MASTER yet.
    asserting: BTreeSet<u8>,
}

/// The new master's wait before it opens a migrated resource (`dlm_finish_migration`).
#[derive(Debug, Clone)]
struct Opening {
    old: u8,
    /// Members whose answer to our ASSERT_MASTER has not come yet.
    waiting: BTreeSet<u8>,
    /// The old master was told (last, so that when it knows, everyone knows).
    told_old: bool,
    /// ... and answered, or departed.
    old_done: bool,
}

impl Res {
    fn new() -> Res {
        Res {
            owner: Owner::Unknown,
            recovering: false,
            granted: Vec::new(),
            converting: Vec::new(),
            blocked: Vec::new(),
            lvb: [0; DLM_LVB_LEN],
            mastery: None,
            retry_at: None,
            local: BTreeSet::new(),
            migrating: None,
            ref_at_master: false,
            refs: BTreeSet::new(),
            migration_out: None,
            opening: None,
            migrated_from: None,
            asserting: BTreeSet::new(),
        }
    }

    fn find(&self, cookie: u64) -> Option<(usize, usize)> {
        for (q, list) in [&self.granted, &self.converting, &self.blocked].into_iter().enumerate() {
            if let Some(i) = list.iter().position(|l| l.cookie == cookie) {
                return Some((q, i));
            }
        }
        None
    }

    fn queue_mut(&mut self, q: usize) -> &mut Vec<MLock> {
        match q {
            0 => &mut self.granted,
            1 => &mut self.converting,
            _ => &mut self.blocked,
        }
    }

    /// Whether `mode` for `cookie` is compatible with every other holder.
    fn compatible(&self, cookie: u64, mode: Mode) -> bool {
        self.granted.iter().chain(self.converting.iter()).all(|l| l.cookie == cookie || l.mode.compatible(mode))
    }
}

#[derive(Debug)]
struct JoinAttempt {
    id: u64,
    asserting: bool,
    waiting: BTreeSet<u8>,
    ok: BTreeSet<u8>,
    disallowed: bool,
    mismatch: Option<String>,
    /// Members that sent EXIT_DOMAIN while this attempt ran: they accepted us before they
    /// left, and must not be in the domain map we end with.
    exited: BTreeSet<u8>,
}

/// One node's contribution to a resource in recovery.
#[derive(Debug, Clone)]
struct Contribution {
    node: u8,
    locks: Vec<MigratableLock>,
    lvb: Lvb,
}

#[derive(Debug)]
struct Round {
    id: u64,
    /// The lowest departed node: named in LOCK_REQUEST and the MIG_LOCKRES replies.
    dead: u8,
    /// Every departed node this round recovers (each announced with BEGIN_RECO first, so
    /// that all participants report the same resources).
    set: BTreeSet<u8>,
    collecting: bool,
    waiting: BTreeSet<u8>,
    data: BTreeMap<Vec<u8>, Vec<Contribution>>,
    /// Resources a live member says it masters (a migration with a departed node was under
    /// way), with that member: not taken over (it asserted its mastery as it claimed them).
    claims: BTreeMap<Vec<u8>, u8>,
}

/// Counters for tests and status output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub sent: u64,
    pub grants: u64,
    pub basts: u64,
    pub masteries: u64,
    pub recoveries: u64,
    pub lvb_invalidated: u64,
    /// Resources another node's clean leave migrated to this node (MIG_LOCKRES, MIGRATION).
    pub migrations_in: u64,
    /// Resources this node's leave migrated to another.
    pub migrations_out: u64,
    /// References dropped at masters when leaving (DEREF_LOCKRES).
    pub derefs: u64,
}

/// A resource a leaving master is migrating to us: its queues, as MIG_LOCKRES brings them.
#[derive(Debug)]
struct IncomingMigration {
    from: u8,
    locks: Vec<MigratableLock>,
    lvb: Lvb,
}

/// The DLM state machine of one node in one domain.
pub struct DlmCore {
    node: u8,
    domain: String,
    key: u32,
    now: Millis,
    state: DomainState,
    /// Peers heartbeat and the network call up.
    live: BTreeSet<u8>,
    /// The domain map without this node.
    members: BTreeSet<u8>,
    /// Bumped on every change of the domain map; a mastery round that saw one starts over.
    gen: u64,
    /// A node between its join query and its assert (or cancel): others must wait.
    joining_node: Option<u8>,
    join: Option<JoinAttempt>,
    join_retry_at: Option<Millis>,
    peers: BTreeMap<u8, Peer>,
    res: BTreeMap<Vec<u8>, Res>,
    locks: BTreeMap<u64, LocalLock>,
    next_seq: u64,
    next_attempt: u64,
    /// Departed members whose resources are not yet recovered (the kernel's recovery map).
    dead: BTreeSet<u8>,
    /// Members that left with EXIT_DOMAIN: they migrated what they mastered first, so their
    /// recovery asks nothing of them and sends them no FINALIZE_RECO (a kernel would BUG on
    /// one it did not expect), though they may still be alive.
    exited: BTreeSet<u8>,
    /// Nodes whose departure was handled, until heartbeat shows them again or they rejoin: a
    /// late heartbeat death must not start a second recovery.
    gone: BTreeSet<u8>,
    round: Option<Round>,
    round_retry_at: Option<Millis>,
    /// When to remind the recovery master of a departure it seems not to know.
    poke_at: Option<Millis>,
    /// The resources we last reported to a recovery master: its finalize makes it their owner.
    reported: Option<(u8, BTreeSet<Vec<u8>>)>,
    /// The departed nodes a recovery master announced (BEGIN_RECO): we report what they
    /// mastered.
    rm_dead: Option<(u8, BTreeSet<u8>)>,
    /// Resources being migrated to us, until their last MIG_LOCKRES (ALL_DONE).
    incoming: BTreeMap<Vec<u8>, IncomingMigration>,
    /// Resources a migration made ours, by old master: if that node departs before everyone
    /// knows, its recovery must not take them over (we claim them).
    migrated_in: BTreeMap<Vec<u8>, u8>,
    /// Resources we were migrating away when the target departed, by target: we master them
    /// still and claim them in its recovery.
    failed_out: BTreeMap<Vec<u8>, u8>,
    /// Members that announced their leave (BEGIN_EXIT_DOMAIN): no migration target.
    begun_exit: BTreeSet<u8>,
    /// Leaving: when to try again the migrations that failed.
    migrate_retry_at: Option<Millis>,
    /// Leaving: EXIT_DOMAIN sent; the members whose answer has not come.
    exit_waiting: Option<BTreeSet<u8>>,
    /// Leaving: references we dropped whose master has not confirmed it yet.
    derefs_pending: BTreeSet<(u8, Vec<u8>)>,
    /// The cluster's node numbers, which a joiner's QUERY_NODEINFO must list (None: unchecked).
    cluster_nodes: Option<BTreeSet<u8>>,
    /// The global heartbeat regions, which a joiner's QUERY_REGION must list; None with local
    /// heartbeat, where the joiner must list none.
    global_regions: Option<BTreeSet<Vec<u8>>>,
    out: Vec<Action>,
    violations: Vec<String>,
    stats: Stats,
    rand: u64,
}

/// MIG_LOCKRES messages for one resource, as `dlm_send_one_lockres` sends them: at most 240
/// locks each, ALL_DONE on the last; `total` counts the real locks (a lock-less resource's
/// placeholder is not one).
fn mig_lockres_msgs(
    master: u8,
    cookie: u64,
    name: &[u8],
    lvb: Lvb,
    locks: &[MigratableLock],
    total: u32,
    flags: u8,
) -> Vec<Msg> {
    let mut chunks: Vec<&[MigratableLock]> = locks.chunks(DLM_MAX_MIGRATABLE_LOCKS).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, ch)| Msg::MigLockres {
            master,
            flags: flags | if i + 1 == n { DLM_MRES_ALL_DONE } else { 0 },
            total_locks: total,
            mig_cookie: cookie,
            name: name.to_vec(),
            lvb,
            locks: ch.to_vec(),
        })
        .collect()
}

fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > DLM_LOCKID_NAME_MAX {
        return Err(DlmError::BadName(name.len()));
    }
    Ok(())
}

const ZERO_LVB: Lvb = [0; DLM_LVB_LEN];

impl DlmCore {
    /// A core for `node` in `domain`. `incarnation` makes this life's lock cookies differ from
    /// an earlier life's.
    pub fn new(node: u8, domain: &str, incarnation: u64) -> Result<DlmCore> {
        if domain.is_empty() || domain.len() > O2NM_MAX_NAME_LEN {
            return Err(DlmError::BadName(domain.len()));
        }
        Ok(DlmCore {
            node,
            domain: domain.to_string(),
            key: dlm_domain_key(domain),
            now: 0,
            state: DomainState::Idle,
            live: BTreeSet::new(),
            members: BTreeSet::new(),
            gen: 0,
            joining_node: None,
            join: None,
            join_retry_at: None,
            peers: BTreeMap::new(),
            res: BTreeMap::new(),
            locks: BTreeMap::new(),
            next_seq: (incarnation & 0xffff) << 40,
            next_attempt: 1,
            dead: BTreeSet::new(),
            exited: BTreeSet::new(),
            gone: BTreeSet::new(),
            round: None,
            round_retry_at: None,
            poke_at: None,
            reported: None,
            rm_dead: None,
            incoming: BTreeMap::new(),
            migrated_in: BTreeMap::new(),
            failed_out: BTreeMap::new(),
            begun_exit: BTreeSet::new(),
            migrate_retry_at: None,
            exit_waiting: None,
            derefs_pending: BTreeSet::new(),
            cluster_nodes: None,
            global_regions: None,
            out: Vec::new(),
            violations: Vec::new(),
            stats: Stats::default(),
            rand: u64::from(node) * 0x9E37_79B9_7F4A_7C15 + incarnation + 1,
        })
    }

    pub fn node(&self) -> u8 {
        self.node
    }

    /// The node numbers of cluster.conf: a kernel joiner's QUERY_NODEINFO must name the same.
    pub fn set_cluster_nodes(&mut self, nodes: impl IntoIterator<Item = u8>) {
        self.cluster_nodes = Some(nodes.into_iter().collect());
    }

    /// Global heartbeat: the regions this node heartbeats on, which a joiner's QUERY_REGION
    /// must name. Without a call, local heartbeat is assumed (the joiner must name none).
    pub fn set_global_regions(&mut self, regions: impl IntoIterator<Item = String>) {
        self.global_regions = Some(regions.into_iter().map(String::into_bytes).collect());
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The o2net key of in-domain messages.
    pub fn key(&self) -> u32 {
        self.key
    }

    pub fn state(&self) -> DomainState {
        self.state
    }

    /// The domain map, this node included when it is a member.
    pub fn members(&self) -> Vec<u8> {
        let mut m: BTreeSet<u8> = self.members.clone();
        if matches!(self.state, DomainState::Joined | DomainState::Leaving) {
            m.insert(self.node);
        }
        m.into_iter().collect()
    }

    /// Nodes whose recovery is pending.
    pub fn recovering(&self) -> Vec<u8> {
        self.dead.iter().copied().collect()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Protocol rules a peer broke, or this core found broken (for tests).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// The actions queued since the last call.
    pub fn drain(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    /// The mode a lock holds, if granted.
    pub fn lock_mode(&self, id: LockId) -> Option<Mode> {
        self.locks.get(&id.0).and_then(|l| l.granted)
    }

    /// The LVB copy of a lock (what the last grant brought, or what the holder wrote).
    pub fn lock_lvb(&self, id: LockId) -> Option<Lvb> {
        self.locks.get(&id.0).map(|l| l.lvb)
    }

    /// Sets the LVB copy that travels with the next release from EX.
    pub fn set_lvb(&mut self, id: LockId, lvb: &Lvb) -> Result<()> {
        let l = self.locks.get_mut(&id.0).ok_or(DlmError::UnknownLock(id))?;
        l.lvb = *lvb;
        Ok(())
    }

    /// Whether a lock has a request in progress.
    pub fn lock_busy(&self, id: LockId) -> bool {
        self.locks.get(&id.0).is_some_and(|l| l.op != Op::None)
    }

    /// The locks this node holds or asks for, with their granted mode.
    pub fn locks(&self) -> Vec<(LockId, Vec<u8>, Option<Mode>)> {
        self.locks.iter().map(|(c, l)| (LockId(*c), l.name.clone(), l.granted)).collect()
    }

    /// What this node's users may rely on: each lock's granted mode, or the lower mode of a
    /// release in progress (a user that asked to release has stopped using the higher one).
    pub fn holdings(&self) -> Vec<(Vec<u8>, LockId, Mode)> {
        let mut out = Vec::new();
        for (c, l) in &self.locks {
            let Some(g) = l.granted else { continue };
            let m = match l.op {
                Op::Unlock => continue,
                Op::Convert { mode, .. } if mode < g => mode,
                _ => g,
            };
            out.push((l.name.clone(), LockId(*c), m));
        }
        out
    }

    /// A one-line summary of the protocol state, for failure reports.
    pub fn debug_state(&self) -> String {
        let peers: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.queue.is_empty())
            .map(|(n, p)| format!("{n}:{}{}", p.queue.len(), if p.in_flight { "*" } else { "" }))
            .collect();
        // Resources with a request of ours still open: who masters them, and any mastery round.
        let waiting: Vec<String> = self
            .res
            .iter()
            .filter(|(_, r)| r.local.iter().any(|c| self.locks.get(c).is_some_and(|l| l.op != Op::None)))
            .map(|(name, r)| {
                let ops: Vec<String> = r
                    .local
                    .iter()
                    .filter_map(|c| self.locks.get(c))
                    .map(|l| format!("{:?} sent {:?} awaiting {:?}", l.op, l.op_sent, l.op_awaiting))
                    .collect();
                format!(
                    "{}: [{}] owner {:?} recovering {} retry {:?} mastery {:?} migrating {:?} out {:?} opening {:?}",
                    String::from_utf8_lossy(name),
                    ops.join(", "),
                    r.owner,
                    r.recovering,
                    r.retry_at,
                    r.mastery.as_ref().map(|m| (m.waiting.clone(), m.yes, m.maybe, m.redo, m.gen)),
                    r.migrating,
                    r.migration_out,
                    r.opening
                )
            })
            .collect();
        format!(
            "live {:?} joining {:?} exited {:?} dead {:?} gen {} round {:?} retry {:?} outq [{}] waiting [{}]",
            self.live,
            self.joining_node,
            self.exited,
            self.dead,
            self.gen,
            self.round.as_ref().map(|r| (r.dead, r.collecting, r.waiting.clone())),
            self.round_retry_at,
            peers.join(" "),
            waiting.join("; ")
        )
    }

    /// Lock requests (lock, convert, unlock, cancel) not finished yet.
    pub fn pending_requests(&self) -> usize {
        self.locks.values().filter(|l| l.op != Op::None).count()
    }

    /// The master's view of a resource this node masters: `(node, cookie, granted mode)` of
    /// the granted and converting queues.
    pub fn mastered_holders(&self, name: &[u8]) -> Option<Vec<(u8, u64, Mode)>> {
        let r = self.res.get(name)?;
        if r.owner != Owner::Me {
            return None;
        }
        Some(r.granted.iter().chain(r.converting.iter()).map(|l| (l.node, l.cookie, l.mode)).collect())
    }

    /// When [`DlmCore::tick`] wants to run next.
    pub fn next_timer(&self) -> Option<Millis> {
        let mut t: Option<Millis> = None;
        let mut at = |v: Option<Millis>| {
            if let Some(v) = v {
                t = Some(t.map_or(v, |x| x.min(v)));
            }
        };
        at(self.join_retry_at);
        at(self.round_retry_at);
        at(self.poke_at);
        at(self.migrate_retry_at);
        for p in self.peers.values() {
            if !p.in_flight && !p.queue.is_empty() {
                at(p.retry_at);
            }
        }
        for r in self.res.values() {
            at(r.retry_at);
        }
        t
    }

    fn rand_below(&mut self, n: u64) -> u64 {
        self.rand ^= self.rand << 13;
        self.rand ^= self.rand >> 7;
        self.rand ^= self.rand << 17;
        self.rand % n.max(1)
    }

    fn violation(&mut self, what: String) {
        log::error!("o2dlm {}: node {}: {}", self.domain, self.node, what);
        self.violations.push(what);
    }

    fn is_member_state(&self) -> bool {
        matches!(self.state, DomainState::Joined | DomainState::Leaving)
    }

    // ---------------------------------------------------------------------------------------
    // Outgoing messages.

    fn key_for(&self, msg_type: u16) -> u32 {
        if Msg::uses_mod_key(msg_type) {
            DLM_MOD_KEY
        } else {
            self.key
        }
    }

    fn push(&mut self, to: u8, msg: Msg, ctx: Ctx) {
        if to == self.node || !self.live.contains(&to) {
            return;
        }
        self.peers.entry(to).or_default().queue.push_back(Outgoing { msg, ctx });
        self.pump(to);
    }

    fn pump(&mut self, to: u8) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(&to) else { return };
        if p.in_flight || p.retry_at.is_some_and(|t| t > now) {
            return;
        }
        let Some(head) = p.queue.front() else { return };
        p.in_flight = true;
        p.retry_at = None;
        let msg_type = head.msg.msg_type();
        let payload = head.msg.encode();
        let key = self.key_for(msg_type);
        self.stats.sent += 1;
        self.out.push(Action::Send { to, msg_type, key, payload });
    }

    /// The status reply to the message last sent to `from`.
    pub fn reply(&mut self, now: Millis, from: u8, status: i32) {
        self.now = now;
        let Some(p) = self.peers.get_mut(&from) else { return };
        if !p.in_flight {
            return;
        }
        p.in_flight = false;
        let Some(done) = p.queue.pop_front() else { return };
        self.on_reply(from, done.ctx, status);
        self.pump(from);
    }

    /// The message last sent to `to` got no reply (connection lost, timeout); it is sent again
    /// later, until `to` is declared dead.
    pub fn send_failed(&mut self, now: Millis, to: u8) {
        self.now = now;
        if let Some(p) = self.peers.get_mut(&to) {
            p.in_flight = false;
            p.retry_at = Some(now + SEND_RETRY_MS);
        }
    }

    /// The peer has no o2net handler for the message last sent to it (o2net's ENOPROTOOPT):
    /// its DLM, or this domain, is not up there. For a QUERY_JOIN that is an answer, as
    /// `dlm_request_join` takes it: the node is live but not in the domain, so it counts as
    /// JOIN_OK_NO_MAP and does not hold up the join. Anything else is sent again later, as
    /// after a failed send (the domain may come up there, or the node be declared dead).
    pub fn no_handler(&mut self, now: Millis, from: u8) {
        self.now = now;
        let query = self
            .peers
            .get(&from)
            .is_some_and(|p| p.in_flight && matches!(p.queue.front().map(|o| &o.ctx), Some(Ctx::Query { .. })));
        if query {
            self.reply(now, from, join_response(JOIN_OK_NO_MAP, 0, 0));
        } else {
            self.send_failed(now, from);
        }
    }

    /// The connection to `node` is back: resend at once.
    pub fn link_up(&mut self, now: Millis, node: u8) {
        self.now = now;
        if let Some(p) = self.peers.get_mut(&node) {
            if !p.in_flight {
                p.retry_at = None;
            }
        }
        self.pump(node);
    }

    // ---------------------------------------------------------------------------------------
    // Membership.

    /// Heartbeat and the network see `node` (a candidate for join queries).
    pub fn node_up(&mut self, now: Millis, node: u8) {
        self.now = now;
        if node != self.node {
            self.live.insert(node);
            self.gone.remove(&node);
        }
    }

    /// Heartbeat declared `node` dead: it no longer writes or answers.
    pub fn node_down(&mut self, now: Millis, node: u8) {
        self.now = now;
        if node == self.node {
            return;
        }
        self.live.remove(&node);
        self.peers.remove(&node);
        if self.joining_node == Some(node) {
            self.joining_node = None;
        }
        if self.state == DomainState::Joining {
            self.abort_join(true);
        }
        let waited_on = self.round.as_ref().is_some_and(|r| r.waiting.contains(&node));
        if self.members.contains(&node) {
            self.depart(node, true);
        } else {
            if waited_on || self.dead.contains(&node) {
                // It left (or died) already and its recovery may be waiting for its data.
                self.restart_round_if_waiting(node);
            }
            // Not a member (any more: its join was cancelled), yet a mastery round may have
            // asked it while it was one; its answer will not come now.
            self.stop_waiting_in_masteries(node);
            self.forget_departed(node);
        }
        self.maybe_start_recovery();
        self.migrate_away();
    }

    /// What waited on `node`, now that it departed: answers to our requests, DEREFs and
    /// asserts; migrations (ours to it failed, one to us from it opens without its answer);
    /// its references.
    fn forget_departed(&mut self, node: u8) {
        self.begun_exit.remove(&node);
        self.derefs_pending.retain(|(n, _)| *n != node);
        // Its answers will not come: what we sent it goes again to whoever masters it.
        let mut resend = BTreeSet::new();
        for l in self.locks.values_mut() {
            if l.op_awaiting == Some(node) {
                l.op_awaiting = None;
                l.op_sent = None;
                resend.insert(l.name.clone());
            }
            if l.cancel_awaiting == Some(node) {
                l.cancel_awaiting = None;
                l.cancel_sent = None;
                resend.insert(l.name.clone());
            }
        }
        for name in resend {
            self.submit(&name);
        }
        if let Some(w) = self.exit_waiting.as_mut() {
            w.remove(&node);
        }
        let failed: Vec<Vec<u8>> =
            self.res.iter().filter(|(_, r)| r.migration_out == Some(node)).map(|(n, _)| n.clone()).collect();
        for name in failed {
            self.migration_failed(&name, node, true);
        }
        let opening: Vec<Vec<u8>> = self
            .res
            .iter_mut()
            .filter_map(|(n, r)| {
                r.refs.remove(&node);
                r.asserting.remove(&node);
                let o = r.opening.as_mut()?;
                o.waiting.remove(&node);
                if o.old == node {
                    o.told_old = true;
                    o.old_done = true;
                }
                Some(n.clone())
            })
            .collect();
        for name in opening {
            self.open_step(&name);
        }
        self.maybe_finish_leave();
    }

    /// `node` left the domain map, by death (`died`) or by EXIT_DOMAIN.
    fn depart(&mut self, node: u8, died: bool) {
        self.members.remove(&node);
        // A migration it had not finished sending: its resources go through recovery.
        self.incoming.retain(|_, m| m.from != node);
        self.gen += 1;
        self.dead.insert(node);
        self.gone.insert(node);
        if !died {
            self.exited.insert(node);
        }
        // Mastery rounds waiting on it: they start over anyway (gen changed).
        self.stop_waiting_in_masteries(node);
        let names: Vec<Vec<u8>> = self.res.keys().cloned().collect();
        for name in names {
            let mut grant = false;
            if let Some(r) = self.res.get_mut(&name) {
                // A migration to or from it will not finish: the resource stays with the old
                // master, or is recovered with it.
                if r.migrating.is_some_and(|(from, to)| to == node || from == node) {
                    r.migrating = None;
                }
                match r.owner {
                    Owner::Node(o) if o == node => {
                        r.recovering = true;
                        for c in r.local.clone() {
                            if let Some(l) = self.locks.get_mut(&c) {
                                l.op_sent = None;
                                l.cancel_sent = None;
                            }
                        }
                    }
                    Owner::Me => {
                        // Its locks go; if it may have written the LVB under EX, nobody knows it.
                        let held_ex =
                            r.granted.iter().chain(r.converting.iter()).any(|l| l.node == node && l.mode == Mode::Ex);
                        r.granted.retain(|l| l.node != node);
                        r.converting.retain(|l| l.node != node);
                        r.blocked.retain(|l| l.node != node);
                        if held_ex && died {
                            r.lvb = ZERO_LVB;
                            self.stats.lvb_invalidated += 1;
                        }
                        grant = true;
                    }
                    _ => {}
                }
            }
            if grant {
                self.grant(&name);
            }
        }
        if self.round.is_some() {
            self.restart_round_if_waiting(node);
        }
        self.forget_departed(node);
    }

    /// Mastery rounds stop waiting for `node`'s answer; those with no other answer to wait for
    /// conclude (they start over, since the domain changed).
    fn stop_waiting_in_masteries(&mut self, node: u8) {
        let names: Vec<Vec<u8>> = self
            .res
            .iter()
            .filter(|(_, r)| r.mastery.as_ref().is_some_and(|m| m.waiting.contains(&node)))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            if let Some(m) = self.res.get_mut(&name).and_then(|r| r.mastery.as_mut()) {
                m.waiting.remove(&node);
            }
            self.conclude_mastery(&name);
        }
    }

    /// A death during recovery changes what must be collected: start over.
    fn restart_round_if_waiting(&mut self, node: u8) {
        if let Some(r) = self.round.take() {
            log::debug!("o2dlm: node {} restarts recovery of {} after losing node {}", self.node, r.dead, node);
            self.round_retry_at = Some(self.now);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Join and leave.

    /// Starts joining the domain: query every live node.
    pub fn join(&mut self, now: Millis) -> Result<()> {
        self.now = now;
        match self.state {
            DomainState::Idle | DomainState::Left => {}
            DomainState::Joining | DomainState::Joined => return Ok(()),
            DomainState::Leaving => return Err(DlmError::Leaving),
        }
        self.state = DomainState::Joining;
        self.start_join_attempt();
        Ok(())
    }

    fn start_join_attempt(&mut self) {
        self.join_retry_at = None;
        let id = self.next_attempt;
        self.next_attempt += 1;
        self.joining_node = Some(self.node);
        let targets = self.live.clone();
        let mut node_map = [0u8; NODE_MAP_BYTES];
        map_set(&mut node_map, self.node);
        for &n in &targets {
            map_set(&mut node_map, n);
        }
        self.join = Some(JoinAttempt {
            id,
            asserting: false,
            waiting: targets.clone(),
            ok: BTreeSet::new(),
            disallowed: false,
            mismatch: None,
            exited: BTreeSet::new(),
        });
        for n in targets {
            let msg = Msg::QueryJoin {
                node_idx: self.node,
                dlm_proto: DLM_PROTOCOL,
                fs_proto: FS_PROTOCOL,
                domain: self.domain.as_bytes().to_vec(),
                node_map,
            };
            self.push(n, msg, Ctx::Query { attempt: id });
        }
        self.check_join();
    }

    /// Gives up the current attempt; `retry` schedules the next.
    fn abort_join(&mut self, retry: bool) {
        if self.joining_node == Some(self.node) {
            self.joining_node = None;
        }
        let Some(att) = self.join.take() else { return };
        for n in att.ok {
            self.push(n, Msg::CancelJoin { node_idx: self.node, domain: self.domain.as_bytes().to_vec() }, Ctx::Plain);
        }
        if retry {
            let jitter = self.rand_below(JOIN_BACKOFF_MS);
            self.join_retry_at = Some(self.now + JOIN_BACKOFF_MS + jitter);
        }
    }

    fn check_join(&mut self) {
        let Some(att) = self.join.as_ref() else { return };
        if !att.waiting.is_empty() {
            return;
        }
        if let Some(reason) = att.mismatch.clone() {
            self.abort_join(false);
            self.joining_node = None;
            self.state = DomainState::Idle;
            self.out.push(Action::JoinFailed { reason });
            return;
        }
        if att.disallowed {
            self.abort_join(true);
            return;
        }
        if !att.asserting {
            let ok = att.ok.clone();
            let id = att.id;
            if let Some(a) = self.join.as_mut() {
                a.asserting = true;
                a.waiting = ok.clone();
            }
            for n in ok {
                let msg = Msg::AssertJoined { node_idx: self.node, domain: self.domain.as_bytes().to_vec() };
                self.push(n, msg, Ctx::AssertJoined { attempt: id });
            }
            self.check_join();
            return;
        }
        let att = self.join.take().unwrap_or_else(|| unreachable!());
        self.members = att.ok.difference(&att.exited).copied().collect();
        self.joining_node = None;
        self.gen += 1;
        self.state = DomainState::Joined;
        log::info!("o2dlm: node {} joins domain {} with {:?}", self.node, self.domain, self.members);
        self.out.push(Action::Joined { members: self.members() });
        self.maybe_start_recovery();
    }

    /// Leaves the domain. The node must hold no locks.
    pub fn leave(&mut self, now: Millis) -> Result<()> {
        self.now = now;
        match self.state {
            DomainState::Joined => {}
            DomainState::Leaving => return Ok(()),
            DomainState::Joining => {
                self.abort_join(false);
                self.joining_node = None;
                self.state = DomainState::Left;
                self.out.push(Action::Left);
                return Ok(());
            }
            _ => return Err(DlmError::NotJoined),
        }
        if !self.locks.is_empty() {
            return Err(DlmError::Leaving);
        }
        self.state = DomainState::Leaving;
        // As `dlm_migrate_all_locks` purges what this node does not master: every master
        // that counts a reference of ours hears it dropped before our exit, or a kernel master
        // would keep the resource for us and later try to migrate it here.
        let derefs: Vec<(u8, Vec<u8>)> = self
            .res
            .iter()
            .filter_map(|(name, r)| match r.owner {
                Owner::Node(n) if r.ref_at_master && self.members.contains(&n) => Some((n, name.clone())),
                _ => None,
            })
            .collect();
        for (n, name) in derefs {
            if let Some(r) = self.res.get_mut(&name) {
                r.ref_at_master = false;
            }
            self.deref(n, &name);
        }
        for n in self.members.clone() {
            self.push(n, Msg::BeginExitDomain { node_idx: self.node }, Ctx::Plain);
        }
        self.migrate_away();
        Ok(())
    }

    /// As `dlm_migrate_all_locks`: every resource we master that another member has locks
    /// on, knows of (a reference), or whose LVB holds a value goes to one member that stays;
    /// when none is left to move, EXIT_DOMAIN. Run again when a migration ends or fails.
    fn migrate_away(&mut self) {
        if self.state != DomainState::Leaving || self.exit_waiting.is_some() {
            return;
        }
        if self.migrate_retry_at.is_some_and(|t| t > self.now) || !self.dead.is_empty() {
            // After a failure, or while recovery runs (a failed target's resources are
            // claimed there first): later.
            return;
        }
        self.migrate_retry_at = None;
        let me = self.node;
        let stays: Vec<u8> = self.members.iter().copied().filter(|n| !self.begun_exit.contains(n)).collect();
        let mut starts: Vec<(Vec<u8>, u8)> = Vec::new();
        let mut busy = false;
        for (name, r) in &self.res {
            if r.owner != Owner::Me {
                continue;
            }
            if r.migration_out.is_some() || r.opening.is_some() || !r.asserting.is_empty() {
                busy = true;
                continue;
            }
            let holder = [&r.granted, &r.converting, &r.blocked]
                .into_iter()
                .flat_map(|q| q.iter())
                .map(|l| l.node)
                .find(|n| *n != me && stays.contains(n));
            let referrer = r.refs.iter().copied().find(|n| stays.contains(n));
            let target = holder.or(referrer).or_else(|| (r.lvb != ZERO_LVB).then(|| stays.first().copied()).flatten());
            if let Some(t) = target {
                starts.push((name.clone(), t));
            }
        }
        for (name, target) in starts {
            busy = true;
            self.send_queues(&name, target);
        }
        if !busy && self.derefs_pending.is_empty() {
            let members = self.members.clone();
            self.exit_waiting = Some(members.clone());
            for n in members {
                self.push(n, Msg::ExitDomain { node_idx: me }, Ctx::Exit);
            }
            self.maybe_finish_leave();
        }
    }

    /// MIG_LOCKRES with MIGRATION, as `dlm_send_one_lockres`: our queues and LVB; a
    /// resource without locks travels with one placeholder lock (mode LKM_IVMODE).
    fn send_queues(&mut self, name: &[u8], target: u8) {
        let me = self.node;
        let Some(r) = self.res.get_mut(name) else { return };
        r.migration_out = Some(target);
        let mut locks = Vec::new();
        for (list, q) in
            [(MIG_LIST_GRANTED, &r.granted), (MIG_LIST_CONVERTING, &r.converting), (MIG_LIST_BLOCKED, &r.blocked)]
        {
            for l in q {
                locks.push(MigratableLock {
                    cookie: l.cookie,
                    list,
                    flags: if l.get_lvb { DLM_LKSB_GET_LVB } else { 0 },
                    type_: l.mode.to_wire(),
                    convert_type: l.convert.map_or(LKM_IVMODE, Mode::to_wire),
                    highest_blocked: LKM_IVMODE,
                    node: l.node,
                });
            }
        }
        let total = locks.len() as u32;
        if locks.is_empty() {
            locks.push(MigratableLock {
                cookie: 0,
                list: MIG_LIST_GRANTED,
                flags: 0,
                type_: LKM_IVMODE,
                convert_type: LKM_IVMODE,
                highest_blocked: LKM_IVMODE,
                node: me,
            });
        }
        log::debug!("o2dlm: node {me} migrates {:?} to node {target}", String::from_utf8_lossy(name));
        for msg in mig_lockres_msgs(me, 0, name, r.lvb, &locks, total, DLM_MRES_MIGRATION) {
            self.push(target, msg, Ctx::MigrationData { name: name.to_vec() });
        }
    }

    /// A migration of ours failed (the target refused or departed): we still master the
    /// resource and try again later.
    fn migration_failed(&mut self, name: &[u8], target: u8, departed: bool) {
        let Some(r) = self.res.get_mut(name) else { return };
        if r.owner != Owner::Me || r.migration_out != Some(target) {
            return;
        }
        r.migration_out = None;
        if departed {
            self.failed_out.insert(name.to_vec(), target);
        }
        self.migrate_retry_at = Some(self.now + RETRY_MS);
    }

    /// DEREF_LOCKRES to `master`; our exit waits for its answer, and when that is INPROG, for
    /// its DEREF_LOCKRES_DONE (sent to a node that is gone, the kernel logs an error).
    fn deref(&mut self, master: u8, name: &[u8]) {
        self.stats.derefs += 1;
        if self.live.contains(&master) {
            self.derefs_pending.insert((master, name.to_vec()));
        }
        self.push(
            master,
            Msg::DerefLockres { node_idx: self.node, name: name.to_vec() },
            Ctx::Deref { name: name.to_vec() },
        );
    }

    fn maybe_finish_leave(&mut self) {
        if self.exit_waiting.as_ref().is_some_and(|w| w.is_empty()) {
            self.finish_leave();
        }
    }

    fn finish_leave(&mut self) {
        if self.state != DomainState::Leaving {
            return;
        }
        self.state = DomainState::Left;
        self.members.clear();
        self.res.clear();
        self.incoming.clear();
        self.migrated_in.clear();
        self.failed_out.clear();
        self.exit_waiting = None;
        self.derefs_pending.clear();
        self.migrate_retry_at = None;
        self.dead.clear();
        self.round = None;
        self.out.push(Action::Left);
    }

    // ---------------------------------------------------------------------------------------
    // Local lock requests.

    /// Asks for a new lock on `name` at `mode`. Flags: LKM_NOQUEUE (trylock), LKM_VALBLK.
    pub fn lock(&mut self, now: Millis, name: &[u8], mode: Mode, flags: u32) -> Result<LockId> {
        self.now = now;
        check_name(name)?;
        match self.state {
            DomainState::Joined => {}
            DomainState::Leaving => return Err(DlmError::Leaving),
            _ => return Err(DlmError::NotJoined),
        }
        self.next_seq += 1;
        let cookie = (u64::from(self.node) << 56) | (self.next_seq & 0x00ff_ffff_ffff_ffff);
        let noqueue = flags & LKM_NOQUEUE != 0;
        self.locks.insert(
            cookie,
            LocalLock {
                name: name.to_vec(),
                granted: None,
                op: Op::Create { mode, noqueue },
                cancel: false,
                op_sent: None,
                cancel_sent: None,
                applied: false,
                lvb: ZERO_LVB,
                pending_bast: None,
                op_awaiting: None,
                cancel_awaiting: None,
                op_seq: 0,
            },
        );
        self.res.entry(name.to_vec()).or_insert_with(Res::new).local.insert(cookie);
        self.submit(name);
        Ok(LockId(cookie))
    }

    /// Converts a granted lock to `mode`. A release from EX carries the lock's LVB (set it
    /// with `lvb` or [`DlmCore::set_lvb`]).
    pub fn convert(&mut self, now: Millis, id: LockId, mode: Mode, flags: u32, lvb: Option<&Lvb>) -> Result<()> {
        self.now = now;
        let l = self.locks.get_mut(&id.0).ok_or(DlmError::UnknownLock(id))?;
        if l.op != Op::None || l.granted.is_none() {
            return Err(DlmError::Busy(id));
        }
        if let Some(v) = lvb {
            l.lvb = *v;
        }
        l.op = Op::Convert { mode, noqueue: flags & LKM_NOQUEUE != 0 };
        l.op_seq += 1;
        l.op_sent = None;
        l.applied = false;
        let name = l.name.clone();
        self.submit(&name);
        Ok(())
    }

    /// Releases a granted lock; from EX its LVB goes to the master.
    pub fn unlock(&mut self, now: Millis, id: LockId, lvb: Option<&Lvb>) -> Result<()> {
        self.now = now;
        let l = self.locks.get_mut(&id.0).ok_or(DlmError::UnknownLock(id))?;
        if l.op != Op::None {
            return Err(DlmError::Busy(id));
        }
        if let Some(v) = lvb {
            l.lvb = *v;
        }
        l.op = Op::Unlock;
        l.op_seq += 1;
        l.op_sent = None;
        l.applied = false;
        let name = l.name.clone();
        self.submit(&name);
        Ok(())
    }

    /// Cancels a pending lock or convert request (LKM_CANCEL). It ends in
    /// [`Action::Cancelled`], or in the grant when that came first.
    pub fn cancel(&mut self, now: Millis, id: LockId) -> Result<()> {
        self.now = now;
        let l = self.locks.get_mut(&id.0).ok_or(DlmError::UnknownLock(id))?;
        if !matches!(l.op, Op::Create { .. } | Op::Convert { .. }) || l.cancel {
            return Err(DlmError::Busy(id));
        }
        l.cancel = true;
        l.cancel_sent = None;
        let name = l.name.clone();
        self.submit(&name);
        Ok(())
    }

    /// Sends every pending request on `name` to its master, finding the master first.
    fn submit(&mut self, name: &[u8]) {
        let Some(r) = self.res.get(name) else { return };
        if r.recovering || r.retry_at.is_some() || r.migrating.is_some() {
            return;
        }
        let owner = match r.owner {
            Owner::Unknown => {
                if r.local.iter().any(|c| self.locks.get(c).is_some_and(|l| l.op != Op::None)) {
                    self.start_mastery(name);
                }
                return;
            }
            Owner::Me => self.node,
            Owner::Node(n) => n,
        };
        for cookie in r.local.clone() {
            self.submit_lock(cookie, owner);
        }
    }

    fn submit_lock(&mut self, cookie: u64, owner: u8) {
        let Some(l) = self.locks.get_mut(&cookie) else { return };
        let name = l.name.clone();
        if l.op != Op::None && l.op_sent != Some(owner) && l.op_awaiting.is_none() {
            l.op_sent = Some(owner);
            let (kind, mode, flags, lvb) = match l.op {
                // As the kernel's dlmlock: a lock at PR or EX asks for the LVB with its grant
                // (GET_LVB), a release from EX carries it (PUT_LVB, added by the encoder).
                Op::Create { mode, noqueue } => {
                    let get = if mode >= Mode::Pr { LKM_GET_LVB } else { 0 };
                    (OpKind::Create, mode, if noqueue { LKM_NOQUEUE } else { 0 } | LKM_VALBLK | get, None)
                }
                Op::Convert { mode, noqueue } => {
                    let lvb = (l.granted == Some(Mode::Ex)).then_some(l.lvb);
                    let get = if lvb.is_none() && mode > Mode::Nl { LKM_GET_LVB } else { 0 };
                    let flags = if noqueue { LKM_NOQUEUE } else { 0 } | LKM_VALBLK | LKM_CONVERT | get;
                    (OpKind::Convert, mode, flags, lvb)
                }
                Op::Unlock => {
                    let lvb = (l.granted == Some(Mode::Ex)).then_some(l.lvb);
                    (OpKind::Unlock, Mode::Nl, LKM_VALBLK, lvb)
                }
                Op::None => unreachable!(),
            };
            self.send_op(owner, cookie, &name, kind, mode, flags, lvb);
        }
        let Some(l) = self.locks.get_mut(&cookie) else { return };
        if l.cancel && l.op != Op::None && l.cancel_sent != Some(owner) && l.cancel_awaiting.is_none() {
            l.cancel_sent = Some(owner);
            self.send_op(owner, cookie, &name, OpKind::Cancel, Mode::Nl, LKM_CANCEL, None);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_op(&mut self, owner: u8, cookie: u64, name: &[u8], kind: OpKind, mode: Mode, flags: u32, lvb: Option<Lvb>) {
        let cancel = kind == OpKind::Cancel;
        if owner == self.node {
            let status = self.master_op(self.node, cookie, name, kind, mode, flags, lvb);
            self.on_op_status(self.node, cookie, cancel, status);
            return;
        }
        // (`push` drops what goes to a node that is not live: no answer to wait for.)
        let answers = self.live.contains(&owner);
        if let Some(l) = self.locks.get_mut(&cookie) {
            if cancel {
                l.cancel_awaiting = answers.then_some(owner);
            } else {
                l.applied = true;
                l.op_awaiting = answers.then_some(owner);
            }
        }
        let name = name.to_vec();
        let msg = match kind {
            OpKind::Create => {
                Msg::CreateLock { cookie, flags, node_idx: self.node, requested_type: mode.to_wire(), name }
            }
            OpKind::Convert => {
                Msg::ConvertLock { cookie, flags, node_idx: self.node, requested_type: mode.to_wire(), name, lvb }
            }
            OpKind::Unlock | OpKind::Cancel => Msg::UnlockLock { cookie, flags, node_idx: self.node, name, lvb },
        };
        let seq = self.locks.get(&cookie).map_or(0, |l| l.op_seq);
        self.push(owner, msg, Ctx::LockOp { cookie, cancel, seq });
    }

    /// The master's answer to a lock request of ours.
    fn on_op_status(&mut self, from: u8, cookie: u64, cancel: bool, status: i32) {
        let name = self.locks.get(&cookie).map(|l| l.name.clone());
        self.take_op_status(from, cookie, cancel, status);
        // A request (or cancel) made while this answer was awaited goes out now.
        if let Some(name) = name {
            self.submit(&name);
        }
    }

    fn take_op_status(&mut self, from: u8, cookie: u64, cancel: bool, status: i32) {
        if cancel {
            self.on_cancel_status(cookie, status);
            return;
        }
        let Some(l) = self.locks.get_mut(&cookie) else { return };
        let name = l.name.clone();
        match status {
            status::DLM_NORMAL => {
                if l.op == Op::Unlock {
                    self.finish_local(cookie);
                    self.out.push(Action::Unlocked { lock: LockId(cookie) });
                }
            }
            status::DLM_NOTQUEUED => match l.op {
                Op::Create { .. } => {
                    self.finish_local(cookie);
                    self.out.push(Action::NotQueued { lock: LockId(cookie) });
                }
                Op::Convert { .. } => {
                    l.op = Op::None;
                    l.cancel = false;
                    self.out.push(Action::NotQueued { lock: LockId(cookie) });
                }
                _ => {}
            },
            status::DLM_IVLOCKID if l.op == Op::Unlock => {
                self.finish_local(cookie);
                self.out.push(Action::Unlocked { lock: LockId(cookie) });
            }
            _ => {
                // Not (or no longer) the master, or busy recovering: find out again later.
                // `applied` stays (an earlier send may have been applied, its answer lost),
                // except after MIGRATING, which a leaving master gives only to requests that
                // never took effect.
                l.op_sent = None;
                if status == status::DLM_MIGRATING {
                    l.applied = false;
                }
                let now = self.now;
                // DLM_FORWARD: not (or no longer) the master, which a resource that migrated
                // on, or a stale claim, can leave us believing: ask who is.
                let forget_owner = (status == status::DLM_IVLOCKID && matches!(l.op, Op::Create { .. }))
                    || status == status::DLM_FORWARD;
                if let Some(r) = self.res.get_mut(&name) {
                    r.retry_at = Some(now + RETRY_MS);
                    // A kernel master that purged the resource (it keeps no record of nodes
                    // that never took a reference) knows no such name: find the master again.
                    // (Only the answer of the node we take for the master says so: one that
                    // migrated the resource away answers FORWARD to what was on its way.)
                    if forget_owner && r.owner == Owner::Node(from) && !r.recovering {
                        r.owner = Owner::Unknown;
                    }
                }
            }
        }
    }

    /// The master's answer to a cancel of ours, which is its whole outcome, as
    /// `dlmunlock_common` takes it: DLM_NORMAL, the request is cancelled; DLM_CANCELGRANT, it
    /// was granted first and the grant's AST completes it (it may have come already). No
    /// unlock AST follows either. Only the pending request's cancel counts: a grant that came
    /// first cleared `cancel`, and then the answer concerns a request that is over.
    fn on_cancel_status(&mut self, cookie: u64, status: i32) {
        let Some(l) = self.locks.get_mut(&cookie) else { return };
        if !l.cancel || !matches!(l.op, Op::Create { .. } | Op::Convert { .. }) {
            return;
        }
        let is_create = matches!(l.op, Op::Create { .. });
        match status {
            // A new lock the master no longer has: its cancel took effect and came again
            // after a lost answer, or it was never queued there.
            status::DLM_NORMAL | status::DLM_IVLOCKID if is_create => {
                self.finish_local(cookie);
                self.out.push(Action::Cancelled { lock: LockId(cookie) });
            }
            status::DLM_NORMAL => {
                l.op = Op::None;
                l.cancel = false;
                l.op_sent = None;
                l.cancel_sent = None;
                l.applied = false;
                self.out.push(Action::Cancelled { lock: LockId(cookie) });
            }
            status::DLM_CANCELGRANT => {}
            _ => {
                // Not (or no longer) the master, or busy recovering: send it again later.
                l.cancel_sent = None;
                let name = l.name.clone();
                let now = self.now;
                if let Some(r) = self.res.get_mut(&name) {
                    r.retry_at = Some(now + RETRY_MS);
                }
            }
        }
    }

    /// Forgets a lock of ours that is gone.
    fn finish_local(&mut self, cookie: u64) {
        if let Some(l) = self.locks.remove(&cookie) {
            if let Some(r) = self.res.get_mut(&l.name) {
                r.local.remove(&cookie);
            }
        }
    }

    /// A (proxy) AST or BAST for a lock of ours. `mode` is the granted mode for an AST (our
    /// extension of the `blocked_type` byte, which the kernel leaves 0 in ASTs), the blocked
    /// mode for a BAST.
    fn on_ast(&mut self, cookie: u64, ast_type: u8, mode: Option<Mode>, lvb: Option<Lvb>) {
        let Some(l) = self.locks.get_mut(&cookie) else { return };
        match ast_type {
            DLM_AST => {
                let Some(m) = mode else { return };
                let wanted = match l.op {
                    Op::Create { mode, .. } | Op::Convert { mode, .. } => mode,
                    _ => return,
                };
                if wanted != m {
                    return; // a duplicate of an earlier grant
                }
                l.granted = Some(m);
                l.op = Op::None;
                l.cancel = false;
                l.op_sent = None;
                l.cancel_sent = None;
                if let Some(v) = lvb {
                    if m >= Mode::Pr {
                        l.lvb = v;
                    }
                }
                let lvb = l.lvb;
                let bast = l.pending_bast.take();
                self.stats.grants += 1;
                self.out.push(Action::Granted { lock: LockId(cookie), mode: m, lvb });
                if let Some(b) = bast {
                    if !m.compatible(b) {
                        self.stats.basts += 1;
                        self.out.push(Action::Bast { lock: LockId(cookie), blocked: b });
                    }
                }
            }
            DLM_BAST => {
                let Some(b) = mode else { return };
                match (l.granted, l.op) {
                    (_, Op::Unlock) => {}
                    (Some(g), _) if !g.compatible(b) => {
                        self.stats.basts += 1;
                        self.out.push(Action::Bast { lock: LockId(cookie), blocked: b });
                    }
                    (None, _) => l.pending_bast = Some(l.pending_bast.map_or(b, |x| x.max(b))),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    // ---------------------------------------------------------------------------------------
    // The master's side of lock requests.

    #[allow(clippy::too_many_arguments)]
    fn master_op(
        &mut self,
        from: u8,
        cookie: u64,
        name: &[u8],
        kind: OpKind,
        mode: Mode,
        flags: u32,
        lvb: Option<Lvb>,
    ) -> i32 {
        if self.state == DomainState::Leaving {
            // What we master is frozen until it has migrated: refuse what would change it,
            // but answer a request that came again after it took effect, so that MIGRATING
            // always means "not applied". What migrated away already is not ours.
            let Some(r) = self.res.get(name).filter(|r| r.owner == Owner::Me) else {
                return status::DLM_FORWARD;
            };
            let found = r.find(cookie).map(|f| (r, f));
            let done = match (kind, found) {
                (OpKind::Unlock, None) | (OpKind::Create, Some(_)) => true,
                (OpKind::Convert, Some((r, (0, i)))) => r.granted[i].mode == mode,
                // A cancel is answered as a joined master would; one that would change the
                // queues waits for the new master.
                (OpKind::Cancel, Some((r, (0, i)))) => return Self::cancel_too_late(&r.granted[i]),
                (OpKind::Cancel, None) => return status::DLM_IVLOCKID,
                _ => false,
            };
            return if done { status::DLM_NORMAL } else { status::DLM_MIGRATING };
        }
        if self.state != DomainState::Joined {
            return status::DLM_REJECTED;
        }
        let Some(r) = self.res.get_mut(name) else { return status::DLM_FORWARD };
        if r.owner != Owner::Me {
            return if r.recovering { status::DLM_RECOVERING } else { status::DLM_FORWARD };
        }
        if r.opening.is_some() {
            // Migrated here, and not every member knows yet.
            return status::DLM_MIGRATING;
        }
        let found = r.find(cookie);
        if let (OpKind::Convert, Some((0, i))) = (kind, found) {
            // A new request: a cancel from now on concerns it.
            r.granted[i].cancelled = false;
        }
        let mut asts: Vec<Delivery> = Vec::new();
        let st = match kind {
            OpKind::Create => {
                if let Some((q, i)) = found {
                    // A request that came again: if granted, its AST may have been lost with
                    // a departed master, so confirm it.
                    if q == 0 {
                        let m = r.granted[i].mode;
                        asts.push((from, cookie, DLM_AST, m, m >= Mode::Pr));
                    }
                    status::DLM_NORMAL
                } else if flags & LKM_NOQUEUE != 0
                    && (!r.compatible(cookie, mode) || !r.converting.is_empty() || !r.blocked.is_empty())
                {
                    status::DLM_NOTQUEUED
                } else {
                    let get_lvb = flags & LKM_GET_LVB != 0;
                    r.blocked.push(MLock {
                        cookie,
                        node: from,
                        mode,
                        convert: None,
                        bast: None,
                        get_lvb,
                        cancelled: false,
                    });
                    status::DLM_NORMAL
                }
            }
            OpKind::Convert => match found {
                None => status::DLM_IVLOCKID,
                Some((1, i)) => {
                    if r.converting[i].convert == Some(mode) {
                        status::DLM_NORMAL
                    } else {
                        BUSY_CONVERT
                    }
                }
                Some((2, _)) => BUSY_CONVERT,
                Some((_, i)) => {
                    let cur = r.granted[i].mode;
                    if let Some(v) = lvb {
                        if cur == Mode::Ex {
                            r.lvb = v;
                        }
                    }
                    // The kernel's __dlmconvert_master: with VALBLK, a convert from NL or PR
                    // to a higher mode fetches the LVB.
                    let get_lvb =
                        flags & LKM_GET_LVB != 0 || (flags & LKM_VALBLK != 0 && cur != Mode::Ex && mode > Mode::Nl);
                    if mode == cur {
                        // Already there: a request that came twice, or a release recovery
                        // counted as done. The AST confirms it (the owner ignores extras).
                        asts.push((from, cookie, DLM_AST, mode, mode >= Mode::Pr));
                        status::DLM_NORMAL
                    } else if mode < cur {
                        r.granted[i].mode = mode;
                        r.granted[i].bast = None;
                        asts.push((from, cookie, DLM_AST, mode, get_lvb));
                        status::DLM_NORMAL
                    } else if flags & LKM_NOQUEUE != 0 && (!r.compatible(cookie, mode) || !r.converting.is_empty()) {
                        status::DLM_NOTQUEUED
                    } else {
                        let mut l = r.granted.remove(i);
                        l.convert = Some(mode);
                        l.get_lvb = get_lvb;
                        r.converting.push(l);
                        status::DLM_NORMAL
                    }
                }
            },
            // As `dlm_get_cancel_actions`: the status alone tells the owner what happened, no
            // unlock AST follows (a kernel owner takes one for an error).
            OpKind::Cancel => match found {
                Some((1, i)) => {
                    // Back to granted at the mode it holds, behind the other holders.
                    let mut l = r.converting.remove(i);
                    l.convert = None;
                    l.get_lvb = false;
                    l.cancelled = true;
                    r.granted.push(l);
                    status::DLM_NORMAL
                }
                Some((2, i)) => {
                    r.blocked.remove(i);
                    status::DLM_NORMAL
                }
                Some((_, i)) => Self::cancel_too_late(&r.granted[i]),
                // Gone: a new lock whose cancel came again after it took effect (or a lock
                // this master never had). The kernel answers the same.
                None => status::DLM_IVLOCKID,
            },
            OpKind::Unlock => {
                if let Some((q, i)) = found {
                    let l = r.queue_mut(q).remove(i);
                    if let Some(v) = lvb {
                        if l.mode == Mode::Ex && q != 2 {
                            r.lvb = v;
                        }
                    }
                }
                status::DLM_NORMAL
            }
        };
        let lvb_now = r.lvb;
        for d in asts {
            self.deliver(name, d, lvb_now);
        }
        self.grant(name);
        st
    }

    /// The answer to a cancel of a granted lock: DLM_CANCELGRANT (its grant's AST is on its
    /// way or arrived), unless the cancel came again after it had put the lock back here.
    fn cancel_too_late(l: &MLock) -> i32 {
        if l.cancelled {
            status::DLM_NORMAL
        } else {
            status::DLM_CANCELGRANT
        }
    }

    /// Grants what can be granted, in queue order, and sends BASTs to the holders in the way.
    fn grant(&mut self, name: &[u8]) {
        let mut deliveries: Vec<Delivery> = Vec::new();
        let lvb;
        {
            // A leaving master handed its queues over with its LVBs: it grants nothing more.
            if self.state == DomainState::Leaving {
                return;
            }
            let Some(r) = self.res.get_mut(name) else { return };
            if r.owner != Owner::Me || r.opening.is_some() {
                return;
            }
            // Converting locks go first; a new lock waits while any convert waits.
            loop {
                let (converting, cookie, want) = match (r.converting.first(), r.blocked.first()) {
                    (Some(head), _) => (true, head.cookie, head.convert.unwrap_or(head.mode)),
                    (None, Some(head)) => (false, head.cookie, head.mode),
                    (None, None) => break,
                };
                if !r.compatible(cookie, want) {
                    Self::basts_for(r, cookie, want, &mut deliveries);
                    break;
                }
                let mut l = if converting { r.converting.remove(0) } else { r.blocked.remove(0) };
                l.mode = want;
                l.convert = None;
                l.bast = None;
                deliveries.push((l.node, l.cookie, DLM_AST, want, l.get_lvb));
                l.get_lvb = false;
                r.granted.push(l);
            }
            lvb = r.lvb;
        }
        for d in deliveries {
            self.deliver(name, d, lvb);
        }
    }

    fn basts_for(r: &mut Res, cookie: u64, want: Mode, out: &mut Vec<Delivery>) {
        for l in r.granted.iter_mut().chain(r.converting.iter_mut()) {
            if l.cookie != cookie && !l.mode.compatible(want) && l.bast.is_none_or(|b| b < want) {
                l.bast = Some(want);
                out.push((l.node, l.cookie, DLM_BAST, want, false));
            }
        }
    }

    /// An AST or BAST to the lock's node: here, or as a PROXY_AST message.
    fn deliver(&mut self, name: &[u8], (node, cookie, ast_type, mode, with_lvb): Delivery, lvb: Lvb) {
        let with_lvb = with_lvb && ast_type == DLM_AST;
        if node == self.node {
            self.on_ast(cookie, ast_type, Some(mode), with_lvb.then_some(lvb));
            return;
        }
        let msg = Msg::ProxyAst {
            cookie,
            flags: if ast_type == DLM_AST { LKM_AST_MODE } else { 0 },
            node_idx: self.node,
            ast_type,
            blocked_type: mode.to_wire(),
            name: name.to_vec(),
            lvb: with_lvb.then_some(lvb),
        };
        self.push(node, msg, Ctx::Plain);
    }

    // ---------------------------------------------------------------------------------------
    // Mastery.

    fn start_mastery(&mut self, name: &[u8]) {
        if !self.dead.is_empty() || self.state != DomainState::Joined {
            return; // recovery first; FINALIZE_RECO resubmits
        }
        let Some(r) = self.res.get(name) else { return };
        if r.mastery.is_some() || r.owner != Owner::Unknown {
            return;
        }
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        let waiting = self.members.clone();
        let gen = self.gen;
        if let Some(r) = self.res.get_mut(name) {
            r.mastery = Some(Mastery { attempt, gen, waiting: waiting.clone(), yes: None, maybe: false, redo: false });
        }
        for n in waiting {
            let msg = Msg::MasterRequest { node_idx: self.node, flags: 0, name: name.to_vec() };
            self.push(n, msg, Ctx::MasterRequest { name: name.to_vec(), attempt });
        }
        self.conclude_mastery(name);
    }

    fn conclude_mastery(&mut self, name: &[u8]) {
        let jitter = self.rand_below(RETRY_MS);
        let Some(r) = self.res.get_mut(name) else { return };
        let Some(m) = r.mastery.as_ref() else { return };
        if !m.waiting.is_empty() {
            return;
        }
        let m = r.mastery.take().unwrap_or_else(|| unreachable!());
        if let Some(y) = m.yes.filter(|y| self.members.contains(y)) {
            r.owner = Owner::Node(y);
            // A master that answers YES counts us in its reference map.
            r.ref_at_master = true;
        } else if m.yes.is_some()
            || m.redo
            || m.maybe
            || m.gen != self.gen
            || !self.dead.is_empty()
            || self.state != DomainState::Joined
        {
            r.retry_at = Some(self.now + RETRY_MS + jitter);
            return;
        } else {
            r.owner = Owner::Me;
            self.stats.masteries += 1;
            self.assert_mastery(name, 0);
        }
        self.submit(name);
    }

    fn on_master_request(&mut self, from: u8, name: &[u8]) -> i32 {
        if self.state == DomainState::Leaving || !self.dead.is_empty() {
            return DLM_MASTER_RESP_MAYBE;
        }
        if self.state != DomainState::Joined {
            return DLM_MASTER_RESP_NO;
        }
        let me = self.node;
        let Some(r) = self.res.get_mut(name) else { return DLM_MASTER_RESP_NO };
        if r.owner == Owner::Me {
            // As `dlm_master_request_handler`: the asker now has a reference.
            r.refs.insert(from);
            return DLM_MASTER_RESP_YES;
        }
        if let Some(m) = r.mastery.as_mut() {
            if from < me {
                m.redo = true;
                return DLM_MASTER_RESP_NO;
            }
            return DLM_MASTER_RESP_MAYBE;
        }
        DLM_MASTER_RESP_NO
    }

    fn on_assert_master(&mut self, from: u8, flags: u32, name: &[u8]) -> i32 {
        if !self.is_member_state() || !self.members.contains(&from) {
            return 0;
        }
        let finish = flags & DLM_ASSERT_MASTER_FINISH_MIGRATION != 0;
        let r = self.res.entry(name.to_vec()).or_insert_with(Res::new);
        if r.owner == Owner::Me && finish && r.migration_out == Some(from) {
            // Our migration is done: the new master has the queues, everyone else knows.
            log::info!("o2dlm: node {} handed {:?} to node {from}", self.node, String::from_utf8_lossy(name));
            self.stats.migrations_out += 1;
            r.owner = Owner::Node(from);
            r.migration_out = None;
            r.migrated_from = None;
            r.granted.clear();
            r.converting.clear();
            r.blocked.clear();
            r.refs.clear();
            self.failed_out.remove(name);
            // The new master counted us (`dlm_finish_migration` sets the old master's bit in
            // its refmap); we keep nothing of it, so drop that reference, as the kernel's
            // purge of the old lockres does, before our EXIT_DOMAIN.
            self.deref(from, name);
            self.migrate_away();
            return 0;
        }
        if r.owner == Owner::Me {
            let what =
                format!("node {from} asserts mastery of {:?}, which this node masters", String::from_utf8_lossy(name));
            self.violation(what);
            return -libc::EINVAL;
        }
        // The end of a migration (or any new master): our requests go to it again, and it
        // answers those the old master had taken as the duplicates they are.
        r.migrating = None;
        // As `dlm_assert_master_handler` answers: a node that keeps the resource (here: has
        // locks on it or was looking for its master) asks the master to count its reference.
        let keeps = !r.local.is_empty() || r.mastery.is_some() || r.ref_at_master;
        r.owner = Owner::Node(from);
        r.recovering = false;
        r.mastery = None;
        r.retry_at = None;
        r.ref_at_master = keeps;
        self.submit(name);
        if keeps {
            DLM_ASSERT_RESPONSE_MASTERY_REF
        } else {
            0
        }
    }

    /// Who masters `name`, as `dlm_master_requery_handler` answers (a kernel's recovery asks
    /// it); a master re-asserts itself to every member as well.
    fn on_master_requery(&mut self, name: &[u8]) -> i32 {
        if !self.is_member_state() {
            return i32::from(DLM_LOCK_RES_OWNER_UNKNOWN);
        }
        match self.res.get(name).map(|r| r.owner) {
            Some(Owner::Me) => {
                self.assert_mastery(name, DLM_ASSERT_MASTER_REQUERY);
                i32::from(self.node)
            }
            Some(Owner::Node(n)) => i32::from(n),
            _ => i32::from(DLM_LOCK_RES_OWNER_UNKNOWN),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Migration: a leaving master (a kernel's `dlm_migrate_lockres`) hands a resource to us.

    /// From the new master, before its ASSERT_MASTER: requests for `name` wait till then.
    fn on_migrate_request(&mut self, from: u8, master: u8, new_master: u8, name: &[u8]) -> i32 {
        if !self.is_member_state() {
            return -libc::EINVAL;
        }
        let r = self.res.entry(name.to_vec()).or_insert_with(Res::new);
        if r.owner == Owner::Me {
            let what = format!(
                "node {from} migrates {:?} from node {master} to node {new_master}, but this node masters it",
                String::from_utf8_lossy(name)
            );
            self.violation(what);
            return -libc::EINVAL;
        }
        if r.recovering {
            // As the kernel: a migration from a node we are recovering cannot be sorted out.
            return -libc::EINVAL;
        }
        let mut st = 0;
        if r.mastery.take().is_some() {
            // Our own mastery round is answered by the migration; the new master must count us.
            r.ref_at_master = true;
            st = DLM_MIGRATE_RESPONSE_MASTERY_REF;
        }
        // The owner stays the old master until the new one asserts: if either departs first,
        // recovery finds the resource where it was (the new master claims it if it had it).
        r.migrating = Some((master, new_master));
        st
    }

    /// A MIG_LOCKRES of a migration (not of recovery): the leaving master's queues for one
    /// resource, in one or more messages, the last with ALL_DONE.
    fn on_migration_data(
        &mut self,
        from: u8,
        master: u8,
        flags: u8,
        name: &[u8],
        lvb: Lvb,
        locks: Vec<MigratableLock>,
    ) -> i32 {
        if self.state != DomainState::Joined || !self.members.contains(&from) {
            return -libc::EINVAL;
        }
        let me = self.node;
        let r = self.res.entry(name.to_vec()).or_insert_with(Res::new);
        if r.owner == Owner::Me && r.migrated_from == Some(from) {
            return 0; // sent again after its answer was lost: we have it
        }
        if r.owner == Owner::Me {
            let what =
                format!("node {from} migrates {:?} to this node, which masters it", String::from_utf8_lossy(name));
            self.violation(what);
            return -libc::EINVAL;
        }
        if r.recovering {
            return -libc::EFAULT;
        }
        r.migrating = Some((master, me));
        let inc = self.incoming.entry(name.to_vec()).or_insert_with(|| IncomingMigration {
            from,
            locks: Vec::new(),
            lvb: ZERO_LVB,
        });
        if inc.from != from {
            *inc = IncomingMigration { from, locks: Vec::new(), lvb: ZERO_LVB };
        }
        for l in locks {
            if !inc.locks.iter().any(|x| x.cookie == l.cookie) {
                inc.locks.push(l);
            }
        }
        inc.lvb = lvb;
        if flags & DLM_MRES_ALL_DONE != 0 {
            self.finish_migration_in(name, master);
        }
        0
    }

    /// As `dlm_finish_migration`: take the queues, tell every other member (MIGRATE_REQUEST,
    /// then ASSERT_MASTER with FINISH_MIGRATION), the old master last, then grant.
    fn finish_migration_in(&mut self, name: &[u8], old: u8) {
        let Some(inc) = self.incoming.remove(name) else { return };
        let me = self.node;
        let members: Vec<u8> = self.members.iter().copied().collect();
        let r = self.res.entry(name.to_vec()).or_insert_with(Res::new);
        r.owner = Owner::Me;
        r.migrated_from = Some(inc.from);
        r.migrating = None;
        r.recovering = false;
        r.mastery = None;
        r.retry_at = None;
        r.ref_at_master = false;
        r.granted.clear();
        r.converting.clear();
        r.blocked.clear();
        for l in &inc.locks {
            // A resource without locks travels with one placeholder of mode LKM_IVMODE that
            // only names a node holding a reference: no lock.
            let Some(mode) = Mode::from_wire(l.type_) else { continue };
            if (l.node != me && !members.contains(&l.node)) || r.find(l.cookie).is_some() {
                continue;
            }
            let ml = MLock {
                cookie: l.cookie,
                node: l.node,
                mode,
                convert: None,
                bast: None,
                get_lvb: l.flags & DLM_LKSB_GET_LVB != 0,
                cancelled: false,
            };
            match (l.list, Mode::from_wire(l.convert_type)) {
                (MIG_LIST_CONVERTING, Some(cv)) => r.converting.push(MLock { convert: Some(cv), ..ml }),
                (MIG_LIST_BLOCKED, _) => r.blocked.push(ml),
                _ => r.granted.push(ml),
            }
        }
        r.lvb = inc.lvb;
        self.stats.migrations_in += 1;
        log::info!(
            "o2dlm: node {me} masters {:?} of domain {}, migrated from node {old}",
            String::from_utf8_lossy(name),
            self.domain
        );
        self.migrated_in.insert(name.to_vec(), old);
        let others: BTreeSet<u8> = members.into_iter().filter(|&n| n != old && self.live.contains(&n)).collect();
        let old_gone = !self.members.contains(&old);
        if let Some(r) = self.res.get_mut(name) {
            r.opening = Some(Opening { old, waiting: others.clone(), told_old: old_gone, old_done: old_gone });
        }
        for &n in &others {
            let msg = Msg::MigrateRequest { master: old, new_master: me, name: name.to_vec() };
            self.push(n, msg, Ctx::Plain);
            let assert =
                Msg::AssertMaster { node_idx: me, flags: DLM_ASSERT_MASTER_FINISH_MIGRATION, name: name.to_vec() };
            self.push(n, assert, Ctx::MigrationAssert { name: name.to_vec() });
        }
        self.open_step(name);
    }

    /// The new master's progress: once every other member answered its ASSERT_MASTER, the old
    /// master hears it; once the old master answered (or departed), the resource opens.
    fn open_step(&mut self, name: &[u8]) {
        let me = self.node;
        let Some(r) = self.res.get_mut(name) else { return };
        let Some(o) = r.opening.as_mut() else { return };
        if !o.waiting.is_empty() {
            return;
        }
        if !o.told_old {
            o.told_old = true;
            let old = o.old;
            let assert =
                Msg::AssertMaster { node_idx: me, flags: DLM_ASSERT_MASTER_FINISH_MIGRATION, name: name.to_vec() };
            self.push(old, assert, Ctx::MigrationAssert { name: name.to_vec() });
            return;
        }
        if o.old_done {
            r.opening = None;
            // Everyone knows now: a departure of the old master concerns it no more.
            self.migrated_in.remove(name);
            self.grant(name);
            self.submit(name);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Recovery.

    /// The recovery master is the lowest live member.
    fn maybe_start_recovery(&mut self) {
        // A leaving node is a member until its EXIT_DOMAIN, and may be the one to recover.
        if self.round.is_some() || self.dead.is_empty() || !self.is_member_state() {
            return;
        }
        if self.round_retry_at.is_some_and(|t| t > self.now) {
            return;
        }
        if self.members.first().is_some_and(|&m| m < self.node) {
            return;
        }
        self.round_retry_at = None;
        let Some(&dead) = self.dead.first() else { return };
        let id = self.next_attempt;
        self.next_attempt += 1;
        log::debug!("o2dlm: node {} recovers node {} in domain {}", self.node, dead, self.domain);
        let waiting = self.members.clone();
        let set = self.dead.clone();
        self.round = Some(Round {
            id,
            dead,
            set: set.clone(),
            collecting: false,
            waiting: waiting.clone(),
            data: BTreeMap::new(),
            claims: BTreeMap::new(),
        });
        for n in waiting {
            for &d in &set {
                self.push(n, Msg::BeginReco { node_idx: self.node, dead_node: d }, Ctx::BeginReco { round: id });
            }
        }
        self.advance_round();
    }

    fn advance_round(&mut self) {
        let Some(round) = self.round.as_mut() else { return };
        if !round.waiting.is_empty() {
            return;
        }
        if !round.collecting {
            round.collecting = true;
            let (id, dead) = (round.id, round.dead);
            let mut waiting = self.members.clone();
            // Departed but still heartbeating: it exited (or its death is not known here
            // yet) and holds the queues and LVBs of what it mastered. Every such node, since
            // a round takes over all resources whose master departed.
            for &d in &self.dead {
                if self.live.contains(&d) && !self.exited.contains(&d) {
                    waiting.insert(d);
                }
            }
            // Our own locks count like anyone's, and so do our claims.
            let set = round.set.clone();
            let mine = self.contributions(&set);
            let claims = self.claims_for(&set);
            self.assert_claims(&claims);
            let me = self.node;
            if let Some(round) = self.round.as_mut() {
                round.waiting = waiting.clone();
                for (name, c) in mine {
                    round.data.entry(name).or_default().push(c);
                }
                round.claims.extend(claims.into_iter().map(|n| (n, me)));
            }
            for n in waiting {
                let msg = Msg::LockRequest { node_idx: self.node, dead_node: dead, round: id as u32 };
                self.push(n, msg, Ctx::LockRequest { round: id });
            }
            self.advance_round();
            return;
        }
        let Some(round) = self.round.take() else { return };
        self.finalize_round(round);
    }

    /// Waiting for a recovery that the lowest member does not start: tell it who departed.
    fn poke_recovery_master(&mut self) {
        if !self.is_member_state() || self.round.is_some() {
            self.poke_at = None;
            return;
        }
        let (Some(&dead), Some(&rm)) = (self.dead.first(), self.members.first()) else {
            self.poke_at = None;
            return;
        };
        if rm > self.node {
            return;
        }
        match self.poke_at {
            None => self.poke_at = Some(self.now + POKE_MS),
            Some(t) if t <= self.now => {
                self.poke_at = Some(self.now + POKE_MS);
                self.push(rm, Msg::ExitDomain { node_idx: dead }, Ctx::Plain);
            }
            Some(_) => {}
        }
    }

    /// This node's locks on the resources `dead` mastered, as MIG_LOCKRES would carry them.
    fn contributions(&self, set: &BTreeSet<u8>) -> Vec<(Vec<u8>, Contribution)> {
        let mut out = Vec::new();
        for (name, r) in &self.res {
            // Every departed master the recovery master announced: one that died after
            // finalizing on some nodes only leaves them disagreeing on the owner, and the
            // next recovery master must hear from all of them.
            if !matches!(r.owner, Owner::Node(o) if set.contains(&o)) {
                continue;
            }
            let mut locks = Vec::new();
            let mut lvb = ZERO_LVB;
            let mut have_ex = false;
            for c in &r.local {
                let Some(l) = self.locks.get(c) else { continue };
                let release_to = match l.op {
                    Op::Unlock => Some(None),
                    Op::Convert { mode, .. } if Some(mode) < l.granted => Some(Some(mode)),
                    _ => None,
                };
                // A release the departed master may have applied counts as done: we no longer
                // rely on the higher mode, and what came after it (newer LVBs) is unknowable.
                let (granted, op) = match release_to {
                    Some(to) if l.applied => (to, Op::None),
                    _ => (l.granted, l.op),
                };
                let ml = match (granted, op) {
                    (Some(g), Op::Convert { mode, .. }) if mode > g => (MIG_LIST_CONVERTING, g, mode.to_wire()),
                    (Some(g), _) => (MIG_LIST_GRANTED, g, LKM_IVMODE),
                    (None, Op::Create { mode, .. }) => (MIG_LIST_BLOCKED, mode, LKM_IVMODE),
                    (None, _) => continue,
                };
                // A copy vouches for the value while the lock is held at PR or EX with no
                // applied release behind it.
                match granted {
                    Some(Mode::Ex) => {
                        have_ex = true;
                        lvb = l.lvb;
                    }
                    Some(Mode::Pr) if !have_ex => lvb = l.lvb,
                    _ => {}
                }
                locks.push(MigratableLock {
                    cookie: *c,
                    list: ml.0,
                    flags: 0,
                    type_: ml.1.to_wire(),
                    convert_type: ml.2,
                    highest_blocked: LKM_IVMODE,
                    node: self.node,
                });
            }
            out.push((name.clone(), Contribution { node: self.node, locks, lvb }));
        }
        out
    }

    /// Resources we master that a migration with one of `set` concerns (the kernel settles
    /// them with MASTER_REQUERY): some members may take that node for their master.
    fn claims_for(&self, set: &BTreeSet<u8>) -> Vec<Vec<u8>> {
        self.migrated_in
            .iter()
            .chain(self.failed_out.iter())
            .filter(|(name, n)| set.contains(n) && self.res.get(*name).is_some_and(|r| r.owner == Owner::Me))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn assert_claims(&mut self, names: &[Vec<u8>]) {
        for name in names {
            self.assert_mastery(name, 0);
        }
    }

    /// ASSERT_MASTER to every member. Until each has answered, the resource does not migrate
    /// away: a late assert would make that member take us for the master after the new one.
    fn assert_mastery(&mut self, name: &[u8], flags: u32) {
        let members: Vec<u8> = self.members.iter().copied().filter(|n| self.live.contains(n)).collect();
        if let Some(r) = self.res.get_mut(name) {
            r.asserting.extend(members.iter().copied());
        }
        for n in members {
            let msg = Msg::AssertMaster { node_idx: self.node, flags, name: name.to_vec() };
            self.push(n, msg, Ctx::Assert { name: name.to_vec() });
        }
    }

    fn on_lock_request(&mut self, from: u8, dead: u8, round: u32) -> i32 {
        if !self.is_member_state() && self.state != DomainState::Joining {
            return -libc::EINVAL;
        }
        self.learn_departure(dead);
        let mut msgs = Vec::new();
        let set = match &self.rm_dead {
            Some((rm, set)) if *rm == from => {
                let mut set = set.clone();
                set.insert(dead);
                set
            }
            _ => BTreeSet::from([dead]),
        };
        // We know of departures the recovery master did not announce (it finalized them
        // itself, where we never heard the finalize): it must take those over too, or it would
        // rebuild their resources without our locks. Tell it and let it start over.
        let unknown: Vec<u8> = self.dead.iter().copied().filter(|d| !set.contains(d)).collect();
        if !unknown.is_empty() {
            for d in unknown {
                self.push(from, Msg::ExitDomain { node_idx: d }, Ctx::Plain);
            }
            return -libc::EAGAIN;
        }
        let contributions = self.contributions(&set);
        self.reported = Some((from, contributions.iter().map(|(n, _)| n.clone()).collect()));
        for (name, c) in contributions {
            let total = c.locks.len() as u32;
            msgs.extend(mig_lockres_msgs(dead, u64::from(round), &name, c.lvb, &c.locks, total, DLM_MRES_RECOVERY));
        }
        // What we master because of a migration with a departed node: ours, not recovered.
        // Every member hears it first, so that no one keeps the departed node as its master.
        let claims = self.claims_for(&set);
        self.assert_claims(&claims);
        for name in claims {
            msgs.extend(mig_lockres_msgs(self.node, u64::from(round), &name, ZERO_LVB, &[], 0, DLM_MRES_RECOVERY));
        }
        for m in msgs {
            self.push(from, m, Ctx::Plain);
        }
        self.push(
            from,
            Msg::RecoDataDone { node_idx: self.node, dead_node: dead, round, reco_lvb: ZERO_LVB },
            Ctx::Plain,
        );
        0
    }

    /// A recovery message names a departed node we did not hear of yet: take the word of the
    /// recovery master, which heard it from heartbeat.
    fn learn_departure(&mut self, dead: u8) {
        // It died or exited; heartbeat (or its EXIT_DOMAIN) will tell us which, so the
        // connection and the live map stay as they are.
        if self.members.contains(&dead) {
            self.depart(dead, true);
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)]
    fn on_mig_lockres(
        &mut self,
        from: u8,
        dead: u8,
        id: u64,
        flags: u8,
        name: &[u8],
        lvb: Lvb,
        locks: Vec<MigratableLock>,
    ) -> i32 {
        if flags & DLM_MRES_RECOVERY == 0 && flags & DLM_MRES_MIGRATION != 0 {
            return self.on_migration_data(from, dead, flags, name, lvb, locks);
        }
        let Some(round) = self.round.as_mut() else { return 0 };
        // Data of an earlier round (restarted since) must not mix into this one.
        let current = id == 0 || id == round.id & 0xffff_ffff;
        if dead == from && round.collecting && round.waiting.contains(&from) && current {
            // A claim: the sender masters it (see `claims_for`).
            round.claims.insert(name.to_vec(), from);
            return 0;
        }
        if !round.collecting || !round.set.contains(&dead) || !round.waiting.contains(&from) || !current {
            return 0;
        }
        let list = round.data.entry(name.to_vec()).or_default();
        // A resend replaces what the same node sent before for this resource.
        if let Some(c) = list.iter_mut().find(|c| c.node == from) {
            for l in locks {
                if !c.locks.iter().any(|x| x.cookie == l.cookie) {
                    c.locks.push(l);
                }
            }
            c.lvb = lvb;
        } else {
            list.push(Contribution { node: from, locks, lvb });
        }
        0
    }

    fn on_data_done(&mut self, from: u8, dead: u8, id: u32) -> i32 {
        let Some(round) = self.round.as_mut() else { return 0 };
        let current = id == 0 || u64::from(id) == round.id & 0xffff_ffff;
        if round.collecting && round.dead == dead && current {
            round.waiting.remove(&from);
            self.advance_round();
        }
        0
    }

    fn finalize_round(&mut self, round: Round) {
        let me = self.node;
        let set = round.set.clone();
        let members: Vec<u8> = self.members.iter().copied().collect();
        for &d in &set {
            for &n in &members {
                self.push(n, Msg::FinalizeReco { node_idx: me, dead_node: d, flags: 0 }, Ctx::Plain);
            }
            if self.live.contains(&d) && !self.exited.contains(&d) {
                for &x in &set {
                    self.push(d, Msg::FinalizeReco { node_idx: me, dead_node: x, flags: 0 }, Ctx::Plain);
                }
            }
        }
        let mut names = Vec::new();
        for (name, &claimer) in &round.claims {
            // Claimed: it stays with the member that masters it (which asserted that already).
            let r = self.res.entry(name.clone()).or_insert_with(Res::new);
            if claimer != me && r.owner != Owner::Me {
                r.owner = Owner::Node(claimer);
                r.recovering = false;
            }
        }
        for (name, contribs) in round.data {
            if round.claims.contains_key(&name) {
                continue;
            }
            let mut lvb: Option<Lvb> = None;
            let mut pr_copy: Option<Lvb> = None;
            let mut seen = BTreeSet::new();
            let mut locks = Vec::new();
            for c in &contribs {
                let holds_ex =
                    c.locks.iter().any(|l| l.list != MIG_LIST_BLOCKED && Mode::from_wire(l.type_) == Some(Mode::Ex));
                if holds_ex {
                    lvb = Some(c.lvb);
                } else if c.lvb != ZERO_LVB && pr_copy.is_none() {
                    pr_copy = Some(c.lvb);
                }
                for l in &c.locks {
                    let live = l.node == me || self.members.contains(&l.node);
                    if !live || set.contains(&l.node) || !seen.insert(l.cookie) {
                        continue;
                    }
                    locks.push(*l);
                }
            }
            let r = self.res.entry(name.clone()).or_insert_with(Res::new);
            let had_master = r.owner == Owner::Me;
            if r.owner != Owner::Me {
                r.granted.clear();
                r.converting.clear();
                r.blocked.clear();
            }
            r.owner = Owner::Me;
            r.recovering = false;
            r.mastery = None;
            r.retry_at = None;
            // Already ours (an earlier round): keep what we have, add what we lacked.
            let locks: Vec<MigratableLock> = locks.into_iter().filter(|l| r.find(l.cookie).is_none()).collect();
            for l in locks {
                let Some(t) = Mode::from_wire(l.type_) else { continue };
                // What the request asked for is not in the record: a pending one gets the LVB.
                let ml = MLock {
                    cookie: l.cookie,
                    node: l.node,
                    mode: t,
                    convert: None,
                    bast: None,
                    get_lvb: t >= Mode::Pr,
                    cancelled: false,
                };
                match (l.list, Mode::from_wire(l.convert_type)) {
                    (MIG_LIST_CONVERTING, Some(cv)) if cv > t => {
                        r.converting.push(MLock { convert: Some(cv), get_lvb: cv >= Mode::Pr, ..ml })
                    }
                    (MIG_LIST_BLOCKED, _) => r.blocked.push(ml),
                    _ => r.granted.push(ml),
                }
            }
            // Already ours: our value is newer than any departed master's copy.
            let chosen = if had_master { lvb.or(Some(r.lvb)) } else { lvb.or(pr_copy) };
            if chosen.is_none() && r.lvb != ZERO_LVB {
                self.stats.lvb_invalidated += 1;
            }
            r.lvb = chosen.unwrap_or(ZERO_LVB);
            names.push(name);
        }
        self.stats.recoveries += 1;
        // One new round after all of them, not one per node finalized.
        self.round_retry_at = Some(Millis::MAX);
        for &d in &set {
            self.apply_finalize(d, me);
        }
        self.round_retry_at = None;
        for name in names {
            self.grant(&name);
        }
        self.maybe_start_recovery();
    }

    /// Recovery of `dead` is over: `master` owns what it mastered.
    fn apply_finalize(&mut self, dead: u8, master: u8) {
        // Its heartbeat death may still be on its way here: it must not start another round.
        self.gone.insert(dead);
        if master != self.node && self.round.as_ref().is_some_and(|r| r.dead == dead) {
            // Someone else finished it (our view of the domain lagged): ours is void.
            self.round = None;
        }
        let me = self.node;
        let new_owner = if master == me { Owner::Me } else { Owner::Node(master) };
        // What we reported to this master is its now, whoever mastered it before.
        let reported = match self.reported.take() {
            Some((rm, names)) if rm == master => names,
            other => {
                self.reported = other;
                BTreeSet::new()
            }
        };
        for name in &reported {
            if let Some(r) = self.res.get_mut(name) {
                // Not one whose master asserted itself since (a claim).
                if r.owner != Owner::Me && r.recovering {
                    r.owner = new_owner;
                    r.recovering = false;
                }
            }
        }
        self.migrated_in.retain(|_, n| *n != dead);
        self.failed_out.retain(|_, n| *n != dead);
        if let Some((_, set)) = self.rm_dead.as_mut() {
            set.remove(&dead);
        }
        if !self.dead.remove(&dead) {
            return;
        }
        self.exited.remove(&dead);
        self.gen += 1;
        let names: Vec<Vec<u8>> = self.res.keys().cloned().collect();
        for name in &names {
            if let Some(r) = self.res.get_mut(name) {
                if r.owner == Owner::Node(dead) {
                    r.owner = new_owner;
                    r.recovering = false;
                }
            }
        }
        self.out.push(Action::Recovered { dead, master });
        if self.dead.is_empty() {
            for name in &names {
                self.submit(name);
            }
        }
        self.maybe_start_recovery();
        self.migrate_away();
    }

    fn on_begin_reco(&mut self, from: u8, dead: u8) -> i32 {
        if !self.is_member_state() && self.state != DomainState::Joining {
            return -libc::EINVAL;
        }
        if !self.members.contains(&from) {
            // Not in our domain map (yet, or any more): it cannot lead our recovery.
            return -libc::EAGAIN;
        }
        if let Some(round) = self.round.take() {
            // Someone lower took over; our round is void.
            if from < self.node {
                log::debug!("o2dlm: node {} gives up recovery of {} to node {}", self.node, round.dead, from);
            } else {
                self.round = Some(round);
                return -libc::EAGAIN;
            }
        }
        self.learn_departure(dead);
        match self.rm_dead.as_mut() {
            Some((rm, set)) if *rm == from => {
                set.insert(dead);
            }
            _ => self.rm_dead = Some((from, BTreeSet::from([dead]))),
        }
        0
    }

    fn on_finalize(&mut self, from: u8, dead: u8) -> i32 {
        if dead == self.node {
            if self.state == DomainState::Leaving {
                self.finish_leave();
            }
            return 0;
        }
        self.apply_finalize(dead, from);
        0
    }

    // ---------------------------------------------------------------------------------------
    // Join handlers.

    fn on_query_join(
        &mut self,
        from: u8,
        dlm_proto: (u8, u8),
        fs_proto: (u8, u8),
        domain: &[u8],
        map: &[u8; 32],
    ) -> i32 {
        let disallow = join_response(JOIN_DISALLOW, 0, 0);
        if domain != self.domain.as_bytes() {
            return join_response(JOIN_OK_NO_MAP, 0, 0);
        }
        if !self.live.contains(&from) {
            return disallow;
        }
        if self.members.contains(&from) && self.state == DomainState::Joined {
            // A member asking to join again: its earlier life ended (its exit never reached
            // us). Recover it as departed; it may join once that is done.
            self.depart(from, true);
            self.maybe_start_recovery();
            return disallow;
        }
        if !self.members.contains(&from) {
            // A new life of a node we may still recover: its old one will send nothing more.
            self.exited.remove(&from);
            if let Some(round) = self.round.as_mut() {
                round.waiting.remove(&from);
            }
            self.advance_round();
        }
        match self.state {
            DomainState::Joined => {}
            // Between two attempts we are not in anyone's way (the kernel's NEW context).
            DomainState::Joining if self.joining_node == Some(self.node) => return disallow,
            // Still master of what recovery will hand over: a joiner must wait for that.
            DomainState::Leaving => return disallow,
            _ => return join_response(JOIN_OK_NO_MAP, 0, 0),
        }
        if self.members.iter().chain(std::iter::once(&self.node)).any(|&m| !map_test(map, m)) {
            return disallow;
        }
        if self.joining_node.is_some_and(|j| j != from)
            || self.round.is_some()
            || !self.dead.is_empty()
            || self.members.contains(&from)
        {
            return disallow;
        }
        if dlm_proto.0 != DLM_PROTOCOL.0 || fs_proto.0 != FS_PROTOCOL.0 {
            return join_response(JOIN_PROTOCOL_MISMATCH, 0, 0);
        }
        self.joining_node = Some(from);
        join_response(JOIN_OK, dlm_proto.1.min(DLM_PROTOCOL.1), fs_proto.1.min(FS_PROTOCOL.1))
    }

    /// A joiner's heartbeat regions (the kernel's `dlm_query_region_handler`): it must be the
    /// node between its query and its assert, and heartbeat as we do.
    fn on_query_region(&mut self, from: u8, domain: &[u8], regions: &[[u8; O2HB_MAX_REGION_NAME_LEN]]) -> i32 {
        if domain != self.domain.as_bytes() || self.joining_node != Some(from) {
            log::warn!("o2dlm {}: node {from} queried heartbeat regions but is not joining", self.domain);
            return -libc::EINVAL;
        }
        let theirs: BTreeSet<Vec<u8>> =
            regions.iter().map(|r| r.iter().copied().take_while(|&c| c != 0).collect::<Vec<u8>>()).collect();
        let agree = match &self.global_regions {
            None => theirs.is_empty(),
            Some(ours) => !theirs.is_empty() && theirs == *ours,
        };
        if !agree {
            log::error!(
                "o2dlm {}: node {from} heartbeats on {} region(s), this node on {}",
                self.domain,
                theirs.len(),
                self.global_regions.as_ref().map_or("its local region only".to_string(), |r| format!("{}", r.len()))
            );
            return -libc::EINVAL;
        }
        0
    }

    /// A joiner's cluster.conf (the kernel's `dlm_query_nodeinfo_handler`). The kernel compares
    /// numbers, addresses and ports; we compare the numbers only, since a peer behind NAT (a
    /// VM's user-mode network) knows the nodes by other addresses than we do.
    fn on_query_nodeinfo(&mut self, from: u8, domain: &[u8], nodes: &[NodeInfo]) -> i32 {
        if domain != self.domain.as_bytes() || self.joining_node != Some(from) {
            log::warn!("o2dlm {}: node {from} queried the node list but is not joining", self.domain);
            return -libc::EINVAL;
        }
        for n in nodes {
            log::debug!("o2dlm {}: node {from} lists node {} at {}:{}", self.domain, n.num, n.addr, n.port);
        }
        let theirs: BTreeSet<u8> = nodes.iter().map(|n| n.num).collect();
        if let Some(ours) = &self.cluster_nodes {
            if theirs != *ours {
                log::error!("o2dlm {}: node {from} lists nodes {theirs:?}, this node {ours:?}", self.domain);
                return -libc::EINVAL;
            }
        }
        0
    }

    fn on_assert_joined(&mut self, from: u8) -> i32 {
        if self.state != DomainState::Joined {
            // We answered its query but are leaving (or restarted) since: it must try again.
            return -libc::EAGAIN;
        }
        if !self.dead.is_empty() || self.round.is_some() {
            return -libc::EAGAIN;
        }
        self.gone.remove(&from);
        self.exited.remove(&from);
        self.begun_exit.remove(&from);
        if self.members.insert(from) {
            self.gen += 1;
            log::info!("o2dlm: node {} joins domain {} (seen by node {})", from, self.domain, self.node);
        }
        if self.joining_node == Some(from) {
            self.joining_node = None;
        }
        0
    }

    fn on_cancel_join(&mut self, from: u8) -> i32 {
        if self.joining_node == Some(from) {
            self.joining_node = None;
        }
        // An attempt that asserted here but failed elsewhere: it is not a member after all.
        if self.members.remove(&from) {
            self.gen += 1;
            self.stop_waiting_in_masteries(from);
            if let Some(round) = self.round.as_mut() {
                round.waiting.remove(&from);
            }
            self.advance_round();
            self.maybe_start_recovery();
        }
        0
    }

    /// A member tells us (as the expected recovery master) that `node` departed, because we
    /// did not start its recovery: a join that died half-way left it in their domain map
    /// only. A round with nothing to collect lets them finish.
    fn on_departure_notice(&mut self, node: u8) -> i32 {
        // A notice about a member is not taken: it may be older than that node's rejoin (it
        // waited in the sender's queue while the node was recovered and joined again), and a
        // departure that is real reaches us from heartbeat or from the node itself anyway.
        if node == self.node || !self.is_member_state() || self.members.contains(&node) {
            return 0;
        }
        if !self.dead.contains(&node) {
            self.dead.insert(node);
            self.gen += 1;
            if self.round.is_some() {
                self.round = None;
                self.round_retry_at = Some(self.now);
            }
        }
        self.maybe_start_recovery();
        0
    }

    fn on_exit_domain(&mut self, from: u8) -> i32 {
        if let Some(att) = self.join.as_mut() {
            att.exited.insert(from);
        }
        if self.members.contains(&from) {
            log::info!("o2dlm: node {} leaves domain {}", from, self.domain);
            // It migrated what had locks, references or a value before its exit (as the
            // kernel's `dlm_migrate_all_locks`); the rest is recovered without asking it.
            self.depart(from, false);
            self.maybe_start_recovery();
        }
        0
    }

    // ---------------------------------------------------------------------------------------
    // Replies.

    fn on_reply(&mut self, from: u8, ctx: Ctx, status: i32) {
        match ctx {
            Ctx::Plain => {}
            Ctx::Query { attempt } => {
                let Some(att) = self.join.as_mut() else { return };
                if att.id != attempt || att.asserting {
                    return;
                }
                att.waiting.remove(&from);
                let (code, _, _) = parse_join_response(status);
                match code {
                    JOIN_OK => {
                        att.ok.insert(from);
                    }
                    JOIN_OK_NO_MAP => {}
                    JOIN_PROTOCOL_MISMATCH => {
                        att.mismatch = Some(format!("node {from} speaks another DLM or fs locking protocol"));
                    }
                    _ => att.disallowed = true,
                }
                self.check_join();
            }
            Ctx::AssertJoined { attempt } => {
                let Some(att) = self.join.as_mut() else { return };
                if att.id != attempt || !att.asserting {
                    return;
                }
                att.waiting.remove(&from);
                if status != 0 {
                    att.disallowed = true;
                    // Everyone who accepted must forget us again.
                    att.waiting.clear();
                    self.abort_join(true);
                    return;
                }
                self.check_join();
            }
            Ctx::MasterRequest { name, attempt } => {
                let Some(r) = self.res.get_mut(&name) else { return };
                let Some(m) = r.mastery.as_mut() else { return };
                if m.attempt != attempt {
                    return;
                }
                m.waiting.remove(&from);
                match status {
                    DLM_MASTER_RESP_YES => m.yes = Some(from),
                    DLM_MASTER_RESP_MAYBE => m.maybe = true,
                    DLM_MASTER_RESP_NO => {}
                    _ => m.maybe = true,
                }
                self.conclude_mastery(&name);
            }
            Ctx::LockOp { cookie, cancel, seq } => {
                let current = self.locks.get_mut(&cookie).is_some_and(|l| {
                    if cancel {
                        l.cancel_awaiting = None;
                    } else {
                        l.op_awaiting = None;
                    }
                    l.op_seq == seq
                });
                if current {
                    self.on_op_status(from, cookie, cancel, status);
                } else if let Some(name) = self.locks.get(&cookie).map(|l| l.name.clone()) {
                    // The answer to an earlier request: the current one may go out now.
                    self.submit(&name);
                }
            }
            Ctx::MigrationData { name } => {
                if status != 0 {
                    self.migration_failed(&name, from, false);
                }
            }
            Ctx::MigrationAssert { name } => {
                if let Some(o) = self.res.get_mut(&name).and_then(|r| r.opening.as_mut()) {
                    if from == o.old && o.told_old {
                        o.old_done = true;
                    } else {
                        o.waiting.remove(&from);
                    }
                }
                self.open_step(&name);
            }
            Ctx::Deref { name } => {
                if status != DLM_DEREF_RESPONSE_INPROG {
                    self.derefs_pending.remove(&(from, name));
                    self.migrate_away();
                }
            }
            Ctx::Assert { name } => {
                if let Some(r) = self.res.get_mut(&name) {
                    r.asserting.remove(&from);
                }
                self.migrate_away();
            }
            Ctx::Exit => {
                if let Some(w) = self.exit_waiting.as_mut() {
                    w.remove(&from);
                }
                self.maybe_finish_leave();
            }
            Ctx::BeginReco { round } => {
                let Some(r) = self.round.as_mut() else { return };
                if r.id != round || r.collecting {
                    return;
                }
                if status != 0 {
                    self.round = None;
                    self.round_retry_at = Some(self.now + RETRY_MS);
                    return;
                }
                r.waiting.remove(&from);
                self.advance_round();
            }
            Ctx::LockRequest { round } => {
                let Some(r) = self.round.as_mut() else { return };
                if r.id != round || !r.collecting {
                    return;
                }
                if status == -libc::EAGAIN {
                    // It knows of a departure we did not include: start over with it.
                    self.round = None;
                    self.round_retry_at = Some(self.now + RETRY_MS);
                } else if status != 0 {
                    // Not a member (any more): nothing to collect from it.
                    r.waiting.remove(&from);
                    self.advance_round();
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Incoming messages.

    /// Handles a message from `from` and returns the status for its reply. Never panics on
    /// any payload; a payload that does not decode is answered with DLM_BADARGS.
    pub fn receive(&mut self, now: Millis, from: u8, msg_type: u16, payload: &[u8]) -> i32 {
        self.now = now;
        let msg = match Msg::decode(msg_type, payload) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("o2dlm: bad message type {msg_type} from node {from}: {e}");
                return status::DLM_BADARGS;
            }
        };
        let st = match msg {
            Msg::QueryJoin { dlm_proto, fs_proto, domain, node_map, .. } => {
                self.on_query_join(from, dlm_proto, fs_proto, &domain, &node_map)
            }
            Msg::AssertJoined { domain, .. } | Msg::CancelJoin { domain, .. } if domain != self.domain.as_bytes() => 0,
            Msg::AssertJoined { .. } => self.on_assert_joined(from),
            Msg::CancelJoin { .. } => self.on_cancel_join(from),
            Msg::ExitDomain { node_idx, .. } if node_idx != from => self.on_departure_notice(node_idx),
            Msg::ExitDomain { .. } => self.on_exit_domain(from),
            Msg::BeginExitDomain { .. } => {
                // As the kernel's exit_domain_map: it is leaving, no migration target.
                self.begun_exit.insert(from);
                0
            }
            Msg::MasterRequest { name, .. } => self.on_master_request(from, &name),
            Msg::AssertMaster { flags, name, .. } => self.on_assert_master(from, flags, &name),
            Msg::MigrateRequest { master, new_master, name } => {
                self.on_migrate_request(from, master, new_master, &name)
            }
            Msg::MasterRequery { name, .. } => self.on_master_requery(&name),
            Msg::DerefLockresDone { name, .. } => {
                self.derefs_pending.remove(&(from, name));
                self.migrate_away();
                0
            }
            Msg::CreateLock { cookie, flags, requested_type, name, .. } => match Mode::from_wire(requested_type) {
                Some(m) => self.master_op(from, cookie, &name, OpKind::Create, m, flags, None),
                None => status::DLM_BADPARAM,
            },
            Msg::ConvertLock { cookie, flags, requested_type, name, lvb, .. } => {
                match Mode::from_wire(requested_type) {
                    Some(m) => self.master_op(from, cookie, &name, OpKind::Convert, m, flags, lvb),
                    None => status::DLM_BADPARAM,
                }
            }
            Msg::UnlockLock { cookie, flags, name, lvb, .. } => {
                let kind = if flags & LKM_CANCEL != 0 { OpKind::Cancel } else { OpKind::Unlock };
                self.master_op(from, cookie, &name, kind, Mode::Nl, flags, lvb)
            }
            Msg::ProxyAst { cookie, ast_type, .. } if ast_type != DLM_AST && ast_type != DLM_BAST => {
                // As `dlm_proxy_ast_handler`: no other type travels (a cancel's or an
                // unlock's outcome is the status of its reply).
                self.violation(format!("node {from} sent an AST of unknown type {ast_type} for lock {cookie:#x}"));
                status::DLM_IVLOCKID
            }
            Msg::ProxyAst { cookie, flags, ast_type, blocked_type, lvb, .. } => {
                if self.res_owner_is(from, cookie) {
                    let mode = if ast_type == DLM_AST && flags & LKM_AST_MODE == 0 {
                        // A kernel master's AST (`dlm_send_proxy_ast` passes blocked_type 0):
                        // it grants what the lock asked for; a kernel never sends one twice.
                        self.locks.get(&cookie).and_then(|l| match l.op {
                            Op::Create { mode, .. } | Op::Convert { mode, .. } => Some(mode),
                            _ => None,
                        })
                    } else {
                        Mode::from_wire(blocked_type)
                    };
                    self.on_ast(cookie, ast_type, mode, lvb);
                }
                0
            }
            Msg::QueryRegion { domain, regions, .. } => self.on_query_region(from, &domain, &regions),
            Msg::QueryNodeinfo { domain, nodes, .. } => self.on_query_nodeinfo(from, &domain, &nodes),
            Msg::DerefLockres { node_idx, name } => {
                if let Some(r) = self.res.get_mut(&name) {
                    r.refs.remove(&node_idx);
                }
                DLM_DEREF_RESPONSE_DONE
            }
            Msg::MigLockres { master, flags, mig_cookie, name, lvb, locks, .. } => {
                self.on_mig_lockres(from, master, mig_cookie, flags, &name, lvb, locks)
            }
            Msg::LockRequest { dead_node, round, .. } => self.on_lock_request(from, dead_node, round),
            Msg::RecoDataDone { dead_node, round, .. } => self.on_data_done(from, dead_node, round),
            Msg::BeginReco { dead_node, .. } => self.on_begin_reco(from, dead_node),
            Msg::FinalizeReco { dead_node, .. } => self.on_finalize(from, dead_node),
        };
        st
    }

    /// ASTs count only from the node we take for the lock's master, so that one from a
    /// master that has since been replaced cannot act on a newer request.
    fn res_owner_is(&self, from: u8, cookie: u64) -> bool {
        let Some(l) = self.locks.get(&cookie) else { return false };
        self.res.get(&l.name).is_some_and(|r| r.owner == Owner::Node(from) || r.recovering)
    }

    /// Timers: resends, join backoff, mastery and request retries, recovery restarts.
    pub fn tick(&mut self, now: Millis) {
        self.now = now;
        if self.join_retry_at.is_some_and(|t| t <= now) && self.state == DomainState::Joining {
            self.start_join_attempt();
        }
        if self.round_retry_at.is_some_and(|t| t <= now) {
            self.round_retry_at = None;
        }
        self.maybe_start_recovery();
        self.poke_recovery_master();
        if self.migrate_retry_at.is_some_and(|t| t <= now) {
            self.migrate_away();
        }
        let due: Vec<u8> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.in_flight && p.retry_at.is_some_and(|t| t <= now))
            .map(|(n, _)| *n)
            .collect();
        for n in due {
            if let Some(p) = self.peers.get_mut(&n) {
                p.retry_at = None;
            }
            self.pump(n);
        }
        let names: Vec<Vec<u8>> =
            self.res.iter().filter(|(_, r)| r.retry_at.is_some_and(|t| t <= now)).map(|(n, _)| n.clone()).collect();
        for name in names {
            if let Some(r) = self.res.get_mut(&name) {
                r.retry_at = None;
            }
            self.submit(&name);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Create,
    Convert,
    Unlock,
    Cancel,
}

/// A convert on a lock that already has one in progress (the kernel's DLM_DENIED).
const BUSY_CONVERT: i32 = status::DLM_DENIED;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{seed, Rng};

    /// Cores wired together with instant, in-order delivery.
    struct Net {
        cores: Vec<DlmCore>,
        alive: Vec<bool>,
        events: Vec<Vec<Action>>,
        now: Millis,
    }

    impl Net {
        fn new(n: u8) -> Net {
            let mut cores: Vec<DlmCore> = (0..n).map(|i| DlmCore::new(i, "TESTDOMAIN", 1).unwrap()).collect();
            for c in cores.iter_mut() {
                for j in 0..n {
                    c.node_up(0, j);
                }
            }
            Net { cores, alive: vec![true; usize::from(n)], events: vec![Vec::new(); usize::from(n)], now: 0 }
        }

        /// Runs messages and timers until nothing moves.
        fn settle(&mut self) {
            for _ in 0..10_000 {
                let mut moved = false;
                for i in 0..self.cores.len() {
                    if !self.alive[i] {
                        continue;
                    }
                    for a in self.cores[i].drain() {
                        moved = true;
                        match a {
                            Action::Send { to, msg_type, payload, .. } => {
                                let (from, to) = (i as u8, usize::from(to));
                                if self.alive[to] {
                                    let st = self.cores[to].receive(self.now, from, msg_type, &payload);
                                    self.cores[i].reply(self.now, to as u8, st);
                                } else {
                                    self.cores[i].send_failed(self.now, to as u8);
                                }
                            }
                            other => self.events[i].push(other),
                        }
                    }
                }
                if !moved {
                    self.now += 10;
                    for i in 0..self.cores.len() {
                        if self.alive[i] {
                            self.cores[i].tick(self.now);
                        }
                    }
                    if self.cores.iter().enumerate().all(|(i, c)| !self.alive[i] || c.out.is_empty()) {
                        return;
                    }
                }
            }
            panic!("the cores never settled");
        }

        fn join_all(&mut self) {
            for i in 0..self.cores.len() {
                self.cores[i].join(self.now).unwrap();
                self.settle();
                // Backoffs between attempts are timer-driven: give them time.
                for _ in 0..100 {
                    if self.cores[i].state() == DomainState::Joined {
                        break;
                    }
                    self.now += 50;
                    self.cores[i].tick(self.now);
                    self.settle();
                }
                assert_eq!(self.cores[i].state(), DomainState::Joined, "node {i} joins");
            }
            for e in self.events.iter_mut() {
                e.clear();
            }
        }

        fn take(&mut self, i: usize) -> Vec<Action> {
            std::mem::take(&mut self.events[i])
        }

        fn kill(&mut self, v: usize) {
            self.alive[v] = false;
            for i in 0..self.cores.len() {
                if self.alive[i] {
                    self.cores[i].node_down(self.now, v as u8);
                }
            }
            self.settle();
        }
    }

    fn lvb(text: &str) -> Lvb {
        let mut l = [0u8; DLM_LVB_LEN];
        l[..text.len()].copy_from_slice(text.as_bytes());
        l
    }

    /// Node 1 (ours) founded "dom"; node 0 plays a Linux kernel joining it the way
    /// `dlm_try_to_join_domain` does: query, nodeinfo, regions, assert.
    fn beside_a_kernel() -> DlmCore {
        let mut c = DlmCore::new(1, "dom", 1).unwrap();
        c.set_cluster_nodes([0, 1]);
        c.node_up(0, 0);
        c.join(0).unwrap();
        assert!(matches!(c.drain().as_slice(), [Action::Send { to: 0, msg_type: DLM_QUERY_JOIN_MSG, .. }]));
        c.reply(1, 0, join_response(JOIN_OK_NO_MAP, 0, 0));
        assert_eq!(c.drain(), vec![Action::Joined { members: vec![1] }]);
        let mut map = [0u8; NODE_MAP_BYTES];
        map_set(&mut map, 0);
        map_set(&mut map, 1);
        let dom = b"dom".to_vec();
        let q = Msg::QueryJoin { node_idx: 0, dlm_proto: (1, 3), fs_proto: (1, 0), domain: dom.clone(), node_map: map };
        assert_eq!(c.receive(2, 0, DLM_QUERY_JOIN_MSG, &q.encode()), join_response(JOIN_OK, 3, 0));
        let node = |num, last| NodeInfo { num, port: 7777, addr: std::net::Ipv4Addr::new(10, 0, 2, last) };
        let ni = Msg::QueryNodeinfo { node_idx: 0, domain: dom.clone(), nodes: vec![node(0, 15), node(1, 2)] };
        assert_eq!(c.receive(3, 0, DLM_QUERY_NODEINFO_MSG, &ni.encode()), 0);
        let qr = Msg::QueryRegion { node_idx: 0, domain: dom.clone(), regions: vec![] };
        assert_eq!(c.receive(3, 0, DLM_QUERY_REGION_MSG, &qr.encode()), 0);
        let aj = Msg::AssertJoined { node_idx: 0, domain: dom };
        assert_eq!(c.receive(4, 0, DLM_ASSERT_JOINED_MSG, &aj.encode()), 0);
        assert_eq!(c.members(), vec![0, 1]);
        c
    }

    #[test]
    fn a_kernel_joiners_node_and_region_queries_are_checked_like_the_kernel_checks_them() {
        let mut c = DlmCore::new(1, "dom", 1).unwrap();
        c.set_cluster_nodes([0, 1]);
        c.node_up(0, 0);
        c.join(0).unwrap();
        c.drain();
        c.reply(1, 0, join_response(JOIN_OK_NO_MAP, 0, 0));
        let node = |num| NodeInfo { num, port: 7777, addr: std::net::Ipv4Addr::LOCALHOST };
        let nodeinfo =
            |nodes: Vec<NodeInfo>| Msg::QueryNodeinfo { node_idx: 0, domain: b"dom".to_vec(), nodes }.encode();
        // Not between its query and its assert: refused, as `dlm_query_nodeinfo_handler` does.
        assert_eq!(c.receive(2, 0, DLM_QUERY_NODEINFO_MSG, &nodeinfo(vec![node(0), node(1)])), -libc::EINVAL);
        let mut map = [0u8; NODE_MAP_BYTES];
        map_set(&mut map, 0);
        map_set(&mut map, 1);
        let q =
            Msg::QueryJoin { node_idx: 0, dlm_proto: (1, 3), fs_proto: (1, 0), domain: b"dom".to_vec(), node_map: map };
        assert_eq!(c.receive(3, 0, DLM_QUERY_JOIN_MSG, &q.encode()), join_response(JOIN_OK, 3, 0));
        // Another cluster.conf: refused. The addresses may differ (NAT); the numbers may not.
        assert_eq!(c.receive(4, 0, DLM_QUERY_NODEINFO_MSG, &nodeinfo(vec![node(0), node(1), node(2)])), -libc::EINVAL);
        assert_eq!(c.receive(4, 0, DLM_QUERY_NODEINFO_MSG, &nodeinfo(vec![node(0), node(1)])), 0);
        // Local heartbeat here: a joiner with global heartbeat regions is refused.
        let qr = Msg::QueryRegion { node_idx: 0, domain: b"dom".to_vec(), regions: vec![[b'A'; 32]] };
        assert_eq!(c.receive(5, 0, DLM_QUERY_REGION_MSG, &qr.encode()), -libc::EINVAL);
        let qr = Msg::QueryRegion { node_idx: 0, domain: b"dom".to_vec(), regions: vec![] };
        assert_eq!(c.receive(5, 0, DLM_QUERY_REGION_MSG, &qr.encode()), 0);
    }

    #[test]
    fn a_kernel_masters_grant_without_our_mark_grants_the_mode_asked_for_with_the_lvb() {
        let mut c = beside_a_kernel();
        // The kernel masters "res": it asks us (NO), then asserts.
        let mr = Msg::MasterRequest { node_idx: 0, flags: 0, name: b"res".to_vec() };
        assert_eq!(c.receive(5, 0, DLM_MASTER_REQUEST_MSG, &mr.encode()), DLM_MASTER_RESP_NO);
        let am = Msg::AssertMaster { node_idx: 0, flags: 0, name: b"res".to_vec() };
        assert_eq!(c.receive(5, 0, DLM_ASSERT_MASTER_MSG, &am.encode()), 0);
        let id = c.lock(6, b"res", Mode::Ex, 0).unwrap();
        let sent = c.drain();
        let [Action::Send { to: 0, msg_type: DLM_CREATE_LOCK_MSG, payload, .. }] = sent.as_slice() else {
            panic!("{sent:?}")
        };
        // As the kernel's dlmlock asks: VALBLK at PR or EX means GET_LVB, or no LVB comes back.
        let Msg::CreateLock { flags, .. } = Msg::decode(DLM_CREATE_LOCK_MSG, payload).unwrap() else { panic!() };
        assert_eq!(flags & (LKM_VALBLK | LKM_GET_LVB), LKM_VALBLK | LKM_GET_LVB);
        c.reply(7, 0, status::DLM_NORMAL);
        // `dlm_send_proxy_ast`: blocked_type 0 in an AST, no mark, the LVB since we asked.
        let ast = Msg::ProxyAst {
            cookie: id.0,
            flags: 0,
            node_idx: 0,
            ast_type: DLM_AST,
            blocked_type: 0,
            name: b"res".to_vec(),
            lvb: Some(lvb("from the kernel")),
        };
        assert_eq!(c.receive(8, 0, DLM_PROXY_AST_MSG, &ast.encode()), 0);
        assert_eq!(c.drain(), vec![Action::Granted { lock: id, mode: Mode::Ex, lvb: lvb("from the kernel") }]);
        c.unlock(9, id, Some(&lvb("from us"))).unwrap();
        let sent = c.drain();
        let [Action::Send { to: 0, msg_type: DLM_UNLOCK_LOCK_MSG, payload, .. }] = sent.as_slice() else {
            panic!("{sent:?}")
        };
        let Msg::UnlockLock { flags, lvb: put, .. } = Msg::decode(DLM_UNLOCK_LOCK_MSG, payload).unwrap() else {
            panic!()
        };
        assert_eq!((flags & (LKM_PUT_LVB | LKM_GET_LVB), put), (LKM_PUT_LVB, Some(lvb("from us"))));
        c.reply(10, 0, status::DLM_NORMAL);
        assert_eq!(c.drain(), vec![Action::Unlocked { lock: id }]);
    }

    #[test]
    fn as_master_we_send_the_lvb_only_to_a_lock_that_asked_for_it() {
        let mut c = beside_a_kernel();
        // We master "res": the kernel answers our request NO.
        let mine = c.lock(5, b"res", Mode::Ex, 0).unwrap();
        c.drain();
        c.reply(6, 0, DLM_MASTER_RESP_NO);
        let out = c.drain();
        assert!(out.contains(&Action::Granted { lock: mine, mode: Mode::Ex, lvb: [0; DLM_LVB_LEN] }), "{out:?}");
        c.reply(6, 0, 0); // the assert
        c.unlock(7, mine, Some(&lvb("v1"))).unwrap();
        c.drain();
        // A kernel lock asks for EX with the LVB: granted at once, the AST carries it.
        let cookie = 0x0000_0000_0000_0042;
        let create = Msg::CreateLock {
            cookie,
            flags: LKM_VALBLK | LKM_GET_LVB,
            node_idx: 0,
            requested_type: Mode::Ex.to_wire(),
            name: b"res".to_vec(),
        };
        assert_eq!(c.receive(8, 0, DLM_CREATE_LOCK_MSG, &create.encode()), status::DLM_NORMAL);
        let ast = |c: &mut DlmCore| {
            let sent = c.drain();
            let [Action::Send { to: 0, msg_type: DLM_PROXY_AST_MSG, payload, .. }] = sent.as_slice() else {
                panic!("{sent:?}")
            };
            let m = Msg::decode(DLM_PROXY_AST_MSG, payload).unwrap();
            c.reply(9, 0, 0);
            m
        };
        let Msg::ProxyAst { flags, blocked_type, lvb: got, .. } = ast(&mut c) else { panic!() };
        assert_eq!(flags & (LKM_GET_LVB | LKM_AST_MODE), LKM_GET_LVB | LKM_AST_MODE);
        assert_eq!((blocked_type, got), (Mode::Ex.to_wire(), Some(lvb("v1"))));
        // Down to PR putting the LVB (dlmglue, user_dlm): the AST must not carry one, since
        // `dlm_proxy_ast_handler` BUGs on GET_LVB for a lock that did not ask.
        let convert = Msg::ConvertLock {
            cookie,
            flags: LKM_VALBLK | LKM_CONVERT,
            node_idx: 0,
            requested_type: Mode::Pr.to_wire(),
            name: b"res".to_vec(),
            lvb: Some(lvb("v2")),
        };
        assert_eq!(c.receive(10, 0, DLM_CONVERT_LOCK_MSG, &convert.encode()), status::DLM_NORMAL);
        let Msg::ProxyAst { flags, lvb: got, .. } = ast(&mut c) else { panic!() };
        assert_eq!((flags & LKM_GET_LVB, got), (0, None));
        // The value it put is the resource's now: our PR lock gets it.
        let pr = c.lock(11, b"res", Mode::Pr, 0).unwrap();
        assert!(c.drain().contains(&Action::Granted { lock: pr, mode: Mode::Pr, lvb: lvb("v2") }));
    }

    #[test]
    fn a_live_node_without_the_dlm_does_not_hold_up_a_join() {
        // Node 1 heartbeats but runs no DLM: o2net answers every query with ENOPROTOOPT.
        let mut c = DlmCore::new(0, "TESTDOMAIN", 1).unwrap();
        c.node_up(0, 1);
        c.join(0).unwrap();
        let sent = c.drain();
        assert!(matches!(sent.as_slice(), [Action::Send { to: 1, msg_type: DLM_QUERY_JOIN_MSG, .. }]), "{sent:?}");
        c.no_handler(1, 1);
        assert_eq!(c.state(), DomainState::Joined);
        assert_eq!(c.drain(), vec![Action::Joined { members: vec![0] }]);
        // And masters alone.
        let id = c.lock(2, b"res", Mode::Ex, 0).unwrap();
        assert!(matches!(c.drain().as_slice(), [Action::Granted { lock, .. }] if *lock == id));
    }

    #[test]
    fn a_single_node_domain_grants_at_once_and_keeps_the_lvb_of_an_ex_release() {
        let mut net = Net::new(1);
        net.join_all();
        let c = &mut net.cores[0];
        let id = c.lock(0, b"res", Mode::Ex, LKM_VALBLK).unwrap();
        assert!(matches!(c.drain()[..], [Action::Granted { mode: Mode::Ex, .. }]));
        c.unlock(0, id, Some(&lvb("v1"))).unwrap();
        assert_eq!(c.drain(), vec![Action::Unlocked { lock: id }]);
        let id = c.lock(0, b"res", Mode::Pr, LKM_VALBLK).unwrap();
        assert_eq!(c.drain(), vec![Action::Granted { lock: id, mode: Mode::Pr, lvb: lvb("v1") }]);
    }

    #[test]
    fn an_ex_holder_gets_a_bast_and_the_waiter_gets_the_lvb_it_released() {
        let mut net = Net::new(2);
        net.join_all();
        let a = net.cores[0].lock(0, b"res", Mode::Ex, LKM_VALBLK).unwrap();
        net.settle();
        assert!(matches!(net.take(0)[..], [Action::Granted { mode: Mode::Ex, .. }]));
        let b = net.cores[1].lock(0, b"res", Mode::Pr, LKM_VALBLK).unwrap();
        net.settle();
        assert_eq!(net.take(0), vec![Action::Bast { lock: a, blocked: Mode::Pr }]);
        assert!(net.take(1).is_empty(), "PR waits while EX is held");
        // A trylock meanwhile is refused at once.
        let t = net.cores[1].lock(0, b"res", Mode::Ex, LKM_NOQUEUE).unwrap();
        net.settle();
        assert_eq!(net.take(1), vec![Action::NotQueued { lock: t }]);
        net.cores[0].convert(0, a, Mode::Nl, 0, Some(&lvb("from-a"))).unwrap();
        net.settle();
        assert!(matches!(net.take(0)[..], [Action::Granted { mode: Mode::Nl, .. }]));
        assert_eq!(net.take(1), vec![Action::Granted { lock: b, mode: Mode::Pr, lvb: lvb("from-a") }]);
    }

    #[test]
    fn a_cancelled_convert_leaves_the_lock_at_its_mode() {
        let mut net = Net::new(2);
        net.join_all();
        let a = net.cores[0].lock(0, b"r", Mode::Pr, 0).unwrap();
        let b = net.cores[1].lock(0, b"r", Mode::Pr, 0).unwrap();
        net.settle();
        net.take(0);
        net.take(1);
        net.cores[1].convert(0, b, Mode::Ex, 0, None).unwrap();
        net.settle();
        assert_eq!(net.take(0), vec![Action::Bast { lock: a, blocked: Mode::Ex }]);
        net.cores[1].cancel(0, b).unwrap();
        net.settle();
        assert_eq!(net.take(1), vec![Action::Cancelled { lock: b }]);
        assert_eq!(net.cores[1].lock_mode(b), Some(Mode::Pr));
    }

    #[test]
    fn the_death_of_a_master_moves_its_resources_and_keeps_locks_survivors_hold() {
        let mut net = Net::new(3);
        net.join_all();
        // Node 2 masters "r" (it asked first) and "s"; node 1 holds EX on "r" and PR on "s".
        let m = net.cores[2].lock(0, b"r", Mode::Nl, 0).unwrap();
        let m2 = net.cores[2].lock(0, b"s", Mode::Pr, LKM_VALBLK).unwrap();
        net.settle();
        let x = net.cores[1].lock(0, b"r", Mode::Ex, LKM_VALBLK).unwrap();
        net.settle();
        let s = net.cores[1].lock(0, b"s", Mode::Pr, LKM_VALBLK).unwrap();
        net.settle();
        net.take(1);
        let _ = (m, m2);
        net.kill(2);
        assert_eq!(net.cores[0].recovering(), Vec::<u8>::new());
        assert_eq!(net.cores[0].members(), vec![0, 1]);
        // Node 0 (the lowest) took over: "r" is still held EX by node 1, so a PR waits.
        assert_eq!(net.cores[0].mastered_holders(b"r"), Some(vec![(1, x.0, Mode::Ex)]));
        let w = net.cores[0].lock(0, b"r", Mode::Pr, LKM_VALBLK).unwrap();
        net.settle();
        assert!(net.take(0).iter().all(|a| !matches!(a, Action::Granted { .. })));
        assert!(net.take(1).contains(&Action::Bast { lock: x, blocked: Mode::Pr }));
        net.cores[1].unlock(0, x, Some(&lvb("kept"))).unwrap();
        net.settle();
        assert!(net.take(0).contains(&Action::Granted { lock: w, mode: Mode::Pr, lvb: lvb("kept") }));
        // "s" had no EX holder that survives: the PR holder's copy (zero) is all that is known.
        assert_eq!(net.cores[1].lock_mode(s), Some(Mode::Pr));
    }

    /// Beside a kernel node 0 that masters "res" (it asked us, then asserted).
    fn kernel_masters_res() -> DlmCore {
        let mut c = beside_a_kernel();
        let mr = Msg::MasterRequest { node_idx: 0, flags: 0, name: b"res".to_vec() };
        assert_eq!(c.receive(5, 0, DLM_MASTER_REQUEST_MSG, &mr.encode()), DLM_MASTER_RESP_NO);
        let am = Msg::AssertMaster { node_idx: 0, flags: 0, name: b"res".to_vec() };
        assert_eq!(c.receive(5, 0, DLM_ASSERT_MASTER_MSG, &am.encode()), 0);
        c
    }

    /// The one message the core sent, decoded.
    fn sent_one(c: &mut DlmCore, to: u8, msg_type: u16) -> Msg {
        let sent = c.drain();
        let [Action::Send { to: t, msg_type: m, payload, .. }] = sent.as_slice() else { panic!("{sent:?}") };
        assert_eq!((*t, *m), (to, msg_type), "{sent:?}");
        Msg::decode(msg_type, payload).unwrap()
    }

    /// `dlm_send_proxy_ast` of a grant: blocked_type 0, no mark.
    fn kernel_grant(cookie: u64, lvb: Option<Lvb>) -> Vec<u8> {
        Msg::ProxyAst { cookie, flags: 0, node_idx: 0, ast_type: DLM_AST, blocked_type: 0, name: b"res".to_vec(), lvb }
            .encode()
    }

    /// Our cancel as `dlm_send_remote_unlock_request` sends it: LKM_CANCEL, never an LVB (the
    /// kernel's handler refuses PUT_LVB with CANCEL).
    fn expect_cancel(c: &mut DlmCore, id: LockId) {
        let Msg::UnlockLock { cookie, flags, lvb, .. } = sent_one(c, 0, DLM_UNLOCK_LOCK_MSG) else { panic!() };
        assert_eq!((cookie, flags & (LKM_CANCEL | LKM_PUT_LVB | LKM_GET_LVB), lvb), (id.0, LKM_CANCEL, None));
    }

    #[test]
    fn a_cancel_on_a_kernel_master_ends_with_its_normal_reply_and_no_unlock_ast() {
        let mut c = kernel_masters_res();
        // Queued behind the kernel's EX: the create is answered NORMAL, no AST yet.
        let id = c.lock(6, b"res", Mode::Ex, 0).unwrap();
        sent_one(&mut c, 0, DLM_CREATE_LOCK_MSG);
        c.reply(7, 0, status::DLM_NORMAL);
        assert!(c.drain().is_empty());
        c.cancel(8, id).unwrap();
        expect_cancel(&mut c, id);
        // `dlm_get_cancel_actions` found it blocked: removed, DLM_NORMAL, nothing else comes.
        c.reply(9, 0, status::DLM_NORMAL);
        assert_eq!(c.drain(), vec![Action::Cancelled { lock: id }]);
        assert!(c.locks().is_empty());
        assert_eq!(c.pending_requests(), 0);
        assert_eq!(c.cancel(10, id), Err(DlmError::UnknownLock(id)));
    }

    #[test]
    fn a_cancelled_convert_on_a_kernel_master_keeps_the_lock_at_its_mode() {
        let mut c = kernel_masters_res();
        let id = c.lock(6, b"res", Mode::Pr, 0).unwrap();
        sent_one(&mut c, 0, DLM_CREATE_LOCK_MSG);
        c.reply(7, 0, status::DLM_NORMAL);
        assert_eq!(c.receive(8, 0, DLM_PROXY_AST_MSG, &kernel_grant(id.0, Some(lvb("v")))), 0);
        assert_eq!(c.drain(), vec![Action::Granted { lock: id, mode: Mode::Pr, lvb: lvb("v") }]);
        c.convert(9, id, Mode::Ex, 0, None).unwrap();
        sent_one(&mut c, 0, DLM_CONVERT_LOCK_MSG);
        c.reply(10, 0, status::DLM_NORMAL);
        c.cancel(11, id).unwrap();
        expect_cancel(&mut c, id);
        c.reply(12, 0, status::DLM_NORMAL);
        assert_eq!(c.drain(), vec![Action::Cancelled { lock: id }]);
        assert_eq!((c.lock_mode(id), c.lock_busy(id)), (Some(Mode::Pr), false));
        // The lock works on: released like any other.
        c.unlock(13, id, None).unwrap();
        sent_one(&mut c, 0, DLM_UNLOCK_LOCK_MSG);
        c.reply(14, 0, status::DLM_NORMAL);
        assert_eq!(c.drain(), vec![Action::Unlocked { lock: id }]);
    }

    #[test]
    fn a_cancelgrant_reply_leaves_the_request_to_its_grant_whichever_comes_first() {
        // The reply first: the AST is still on its way.
        let mut c = kernel_masters_res();
        let id = c.lock(6, b"res", Mode::Ex, 0).unwrap();
        sent_one(&mut c, 0, DLM_CREATE_LOCK_MSG);
        c.reply(7, 0, status::DLM_NORMAL);
        c.cancel(8, id).unwrap();
        expect_cancel(&mut c, id);
        c.reply(9, 0, status::DLM_CANCELGRANT);
        assert!(c.drain().is_empty());
        assert!(c.lock_busy(id));
        assert_eq!(c.receive(10, 0, DLM_PROXY_AST_MSG, &kernel_grant(id.0, Some(lvb("k")))), 0);
        assert_eq!(c.drain(), vec![Action::Granted { lock: id, mode: Mode::Ex, lvb: lvb("k") }]);
        assert_eq!((c.lock_mode(id), c.lock_busy(id)), (Some(Mode::Ex), false));

        // The AST first (it crossed our cancel): the reply then changes nothing.
        let mut c = kernel_masters_res();
        let id = c.lock(6, b"res", Mode::Pr, 0).unwrap();
        sent_one(&mut c, 0, DLM_CREATE_LOCK_MSG);
        c.reply(7, 0, status::DLM_NORMAL);
        assert_eq!(c.receive(8, 0, DLM_PROXY_AST_MSG, &kernel_grant(id.0, Some(lvb("a")))), 0);
        c.drain();
        c.convert(9, id, Mode::Ex, 0, None).unwrap();
        sent_one(&mut c, 0, DLM_CONVERT_LOCK_MSG);
        c.reply(10, 0, status::DLM_NORMAL);
        c.cancel(11, id).unwrap();
        expect_cancel(&mut c, id);
        assert_eq!(c.receive(12, 0, DLM_PROXY_AST_MSG, &kernel_grant(id.0, Some(lvb("b")))), 0);
        assert_eq!(c.drain(), vec![Action::Granted { lock: id, mode: Mode::Ex, lvb: lvb("b") }]);
        // A new request queued meanwhile waits behind the cancel (one message at a time).
        c.convert(13, id, Mode::Nl, 0, Some(&lvb("c"))).unwrap();
        assert!(c.drain().is_empty());
        c.reply(14, 0, status::DLM_CANCELGRANT);
        let Msg::ConvertLock { requested_type, .. } = sent_one(&mut c, 0, DLM_CONVERT_LOCK_MSG) else { panic!() };
        assert_eq!(requested_type, Mode::Nl.to_wire());
        assert_eq!((c.lock_mode(id), c.lock_busy(id)), (Some(Mode::Ex), true));
        assert!(c.violations().is_empty());
    }

    #[test]
    fn an_unlock_ast_message_is_refused_as_the_kernel_refuses_it() {
        let mut c = kernel_masters_res();
        let id = c.lock(6, b"res", Mode::Ex, 0).unwrap();
        sent_one(&mut c, 0, DLM_CREATE_LOCK_MSG);
        c.reply(7, 0, status::DLM_NORMAL);
        c.cancel(8, id).unwrap();
        expect_cancel(&mut c, id);
        let ast = Msg::ProxyAst {
            cookie: id.0,
            flags: 0,
            node_idx: 0,
            ast_type: DLM_ASTUNLOCK,
            blocked_type: 0,
            name: b"res".to_vec(),
            lvb: None,
        };
        assert_eq!(c.receive(9, 0, DLM_PROXY_AST_MSG, &ast.encode()), status::DLM_IVLOCKID);
        assert_eq!(c.violations().len(), 1, "{:?}", c.violations());
        assert!(c.drain().is_empty());
        assert!(c.lock_busy(id), "only the reply ends the cancel");
    }

    /// We master "res" and hold EX on it beside a kernel node 0.
    fn we_master_res_at_ex() -> (DlmCore, LockId) {
        let mut c = beside_a_kernel();
        let mine = we_master(&mut c, 5, b"res");
        (c, mine)
    }

    /// Beside the kernel (node 0), we lock `name` at EX: the kernel answers our
    /// MASTER_REQUEST NO, so we master it and grant ourselves at once.
    fn we_master(c: &mut DlmCore, now: Millis, name: &[u8]) -> LockId {
        let mine = c.lock(now, name, Mode::Ex, 0).unwrap();
        sent_one(c, 0, DLM_MASTER_REQUEST_MSG);
        c.reply(now + 1, 0, DLM_MASTER_RESP_NO);
        let got = c.drain();
        assert!(got.iter().any(|a| matches!(a, Action::Granted { lock, .. } if *lock == mine)), "{got:?}");
        c.reply(now + 1, 0, 0); // the kernel's answer to our ASSERT_MASTER
        mine
    }

    fn kernel_cancel(c: &mut DlmCore, now: Millis, cookie: u64) -> i32 {
        let m = Msg::UnlockLock { cookie, flags: LKM_CANCEL, node_idx: 0, name: b"res".to_vec(), lvb: None };
        c.receive(now, 0, DLM_UNLOCK_LOCK_MSG, &m.encode())
    }

    #[test]
    fn as_master_we_answer_a_kernel_cancel_with_its_outcome_and_send_no_unlock_ast() {
        let (mut c, mine) = we_master_res_at_ex();
        // A kernel lock waits behind our EX (we get a BAST), then `dlmunlock(LKM_CANCEL)`.
        let k = 0x0000_0000_0000_0042;
        let create = Msg::CreateLock {
            cookie: k,
            flags: LKM_VALBLK,
            node_idx: 0,
            requested_type: Mode::Pr.to_wire(),
            name: b"res".to_vec(),
        };
        assert_eq!(c.receive(7, 0, DLM_CREATE_LOCK_MSG, &create.encode()), status::DLM_NORMAL);
        assert_eq!(c.drain(), vec![Action::Bast { lock: mine, blocked: Mode::Pr }]);
        assert_eq!(kernel_cancel(&mut c, 8, k), status::DLM_NORMAL);
        assert!(c.drain().is_empty(), "no unlock AST");
        assert_eq!(c.mastered_holders(b"res"), Some(vec![(1, mine.0, Mode::Ex)]));
        // Sent again (as after a lost reply): it is gone, IVLOCKID as the kernel answers.
        assert_eq!(kernel_cancel(&mut c, 9, k), status::DLM_IVLOCKID);

        // Our EX goes down to PR: a kernel PR lock is granted; its convert to EX waits.
        c.convert(10, mine, Mode::Pr, 0, None).unwrap();
        c.drain();
        let k2 = 0x0000_0000_0000_0043;
        let create = Msg::CreateLock {
            cookie: k2,
            flags: LKM_VALBLK,
            node_idx: 0,
            requested_type: Mode::Pr.to_wire(),
            name: b"res".to_vec(),
        };
        assert_eq!(c.receive(11, 0, DLM_CREATE_LOCK_MSG, &create.encode()), status::DLM_NORMAL);
        let Msg::ProxyAst { ast_type: DLM_AST, .. } = sent_one(&mut c, 0, DLM_PROXY_AST_MSG) else { panic!() };
        c.reply(12, 0, 0);
        let convert = Msg::ConvertLock {
            cookie: k2,
            flags: LKM_VALBLK | LKM_CONVERT,
            node_idx: 0,
            requested_type: Mode::Ex.to_wire(),
            name: b"res".to_vec(),
            lvb: None,
        };
        assert_eq!(c.receive(13, 0, DLM_CONVERT_LOCK_MSG, &convert.encode()), status::DLM_NORMAL);
        assert_eq!(c.drain(), vec![Action::Bast { lock: mine, blocked: Mode::Ex }]);
        assert_eq!(kernel_cancel(&mut c, 14, k2), status::DLM_NORMAL);
        assert!(c.drain().is_empty(), "no unlock AST");
        let mut holders = c.mastered_holders(b"res").unwrap();
        holders.sort();
        assert_eq!(holders, vec![(0, k2, Mode::Pr), (1, mine.0, Mode::Pr)]);
        // Again after a lost reply: the same answer, not CANCELGRANT.
        assert_eq!(kernel_cancel(&mut c, 15, k2), status::DLM_NORMAL);

        // Converted again and granted (we let go): a cancel now comes too late.
        assert_eq!(c.receive(16, 0, DLM_CONVERT_LOCK_MSG, &convert.encode()), status::DLM_NORMAL);
        c.drain();
        c.unlock(17, mine, None).unwrap();
        let out = c.drain();
        assert!(out.contains(&Action::Unlocked { lock: mine }), "{out:?}");
        assert!(out.iter().any(|a| matches!(a, Action::Send { to: 0, msg_type: DLM_PROXY_AST_MSG, .. })), "{out:?}");
        c.reply(18, 0, 0);
        assert_eq!(kernel_cancel(&mut c, 19, k2), status::DLM_CANCELGRANT);
        assert!(c.drain().is_empty(), "no unlock AST");
        assert_eq!(c.mastered_holders(b"res"), Some(vec![(0, k2, Mode::Ex)]));
        assert!(c.violations().is_empty());
    }

    /// A kernel master leaving the domain: `dlm_migrate_lockres` hands "res" to us, the only
    /// node with a lock on it, then its EXIT_DOMAIN follows.
    #[test]
    fn a_leaving_kernel_master_migrates_its_resource_to_us_with_our_lock_and_the_lvb() {
        let mut c = kernel_masters_res();
        let id = c.lock(6, b"res", Mode::Pr, 0).unwrap();
        sent_one(&mut c, 0, DLM_CREATE_LOCK_MSG);
        c.reply(7, 0, status::DLM_NORMAL);
        assert_eq!(c.receive(8, 0, DLM_PROXY_AST_MSG, &kernel_grant(id.0, Some(lvb("v1")))), 0);
        assert!(matches!(c.drain().as_slice(), [Action::Granted { mode: Mode::Pr, .. }]));

        assert_eq!(c.receive(9, 0, DLM_BEGIN_EXIT_DOMAIN_MSG, &Msg::BeginExitDomain { node_idx: 0 }.encode()), 0);
        let ours = MigratableLock {
            cookie: id.0,
            list: MIG_LIST_GRANTED,
            flags: DLM_LKSB_GET_LVB,
            type_: Mode::Pr.to_wire(),
            convert_type: LKM_IVMODE,
            highest_blocked: LKM_IVMODE,
            node: 1,
        };
        let mres = Msg::MigLockres {
            master: 0,
            flags: DLM_MRES_MIGRATION | DLM_MRES_ALL_DONE,
            total_locks: 1,
            mig_cookie: 0,
            name: b"res".to_vec(),
            lvb: lvb("v1"),
            locks: vec![ours],
        };
        assert_eq!(c.receive(10, 0, DLM_MIG_LOCKRES_MSG, &mres.encode()), 0);
        // No other member: the old master alone hears the new master's assert.
        let Msg::AssertMaster { node_idx: 1, flags, name } = sent_one(&mut c, 0, DLM_ASSERT_MASTER_MSG) else {
            panic!()
        };
        assert_eq!((flags, name.as_slice()), (DLM_ASSERT_MASTER_FINISH_MIGRATION, &b"res"[..]));
        c.reply(11, 0, 0);
        assert_eq!(c.mastered_holders(b"res"), Some(vec![(1, id.0, Mode::Pr)]));
        assert_eq!(c.stats().migrations_in, 1);
        // Its exit: nothing of what it mastered is left to recover.
        let exit = Msg::ExitDomain { node_idx: 0 }.encode();
        assert_eq!(c.receive(12, 0, DLM_EXIT_DOMAIN_MSG, &exit), 0);
        c.tick(13);
        assert_eq!(c.members(), vec![1]);
        // A kernel takes no part in the recovery of its own exit: nothing goes to it.
        let sent = c.drain();
        assert!(!sent.iter().any(|a| matches!(a, Action::Send { .. })), "{sent:?}");
        assert!(sent.contains(&Action::Recovered { dead: 0, master: 1 }), "{sent:?}");
        // The LVB came along: an up-convert here, at the new master, reads it.
        c.convert(14, id, Mode::Ex, 0, None).unwrap();
        let got = c.drain();
        assert!(
            got.iter().any(|a| matches!(a, Action::Granted { mode: Mode::Ex, lvb: l, .. } if *l == lvb("v1"))),
            "{got:?}"
        );
    }

    /// Our leave beside a kernel that holds a lock on a resource we master: the queues and LVB
    /// go to the kernel (`dlm_migrate_lockres` on its receiving side), and EXIT_DOMAIN only
    /// after the kernel asserted itself as the new master.
    #[test]
    fn leaving_we_migrate_what_we_master_to_a_node_with_a_lock_before_we_exit() {
        let mut c = beside_a_kernel();
        // We master "mine" (the kernel says NO) and release an EX there with an LVB.
        let id = we_master(&mut c, 5, b"mine");
        c.unlock(7, id, Some(&lvb("mine-v1"))).unwrap();
        c.drain();
        // The kernel takes PR there (it asks the LVB).
        let create = Msg::CreateLock {
            cookie: 0x77,
            flags: LKM_GET_LVB | LKM_VALBLK,
            node_idx: 0,
            requested_type: Mode::Pr.to_wire(),
            name: b"mine".to_vec(),
        };
        assert_eq!(c.receive(8, 0, DLM_CREATE_LOCK_MSG, &create.encode()), status::DLM_NORMAL);
        sent_one(&mut c, 0, DLM_PROXY_AST_MSG);
        c.reply(9, 0, 0);
        assert_eq!(c.mastered_holders(b"mine"), Some(vec![(0, 0x77, Mode::Pr)]));

        c.leave(10).unwrap();
        sent_one(&mut c, 0, DLM_BEGIN_EXIT_DOMAIN_MSG);
        c.reply(11, 0, 0);
        let Msg::MigLockres { master: 1, flags, name, lvb: l, locks, .. } = sent_one(&mut c, 0, DLM_MIG_LOCKRES_MSG)
        else {
            panic!()
        };
        assert_eq!((flags, name.as_slice(), l), (DLM_MRES_MIGRATION | DLM_MRES_ALL_DONE, &b"mine"[..], lvb("mine-v1")));
        assert_eq!(locks.len(), 1);
        assert_eq!((locks[0].cookie, locks[0].node, locks[0].list), (0x77, 0, MIG_LIST_GRANTED));
        c.reply(12, 0, 0);
        // No exit until the kernel asserts itself.
        c.tick(13);
        assert!(c.drain().is_empty());
        let am = Msg::AssertMaster { node_idx: 0, flags: DLM_ASSERT_MASTER_FINISH_MIGRATION, name: b"mine".to_vec() };
        assert_eq!(c.receive(14, 0, DLM_ASSERT_MASTER_MSG, &am.encode()), 0);
        // The reference the new master counts for us (as the old master) is dropped first.
        let Msg::DerefLockres { node_idx: 1, name } = sent_one(&mut c, 0, DLM_DEREF_LOCKRES_MSG) else { panic!() };
        assert_eq!(name, b"mine");
        c.reply(14, 0, DLM_DEREF_RESPONSE_DONE);
        let Msg::ExitDomain { node_idx: 1 } = sent_one(&mut c, 0, DLM_EXIT_DOMAIN_MSG) else { panic!() };
        c.reply(15, 0, 0);
        assert_eq!(c.drain(), vec![Action::Left]);
        assert_eq!(c.stats().migrations_out, 1);
    }

    /// A bystander of a migration from node 0 to node 2: MIGRATE_REQUEST holds its requests
    /// until node 2 asserts, then they go to node 2.
    #[test]
    fn a_bystander_of_a_migration_waits_for_the_new_masters_assert_before_it_sends() {
        let mut net = Net::new(3);
        net.join_all();
        // Node 0 masters "res", node 1 holds PR there.
        let a = net.cores[0].lock(net.now, b"res", Mode::Pr, 0).unwrap();
        net.settle();
        let b = net.cores[1].lock(net.now, b"res", Mode::Pr, 0).unwrap();
        net.settle();
        assert_eq!(net.cores[1].lock_mode(b), Some(Mode::Pr));
        let c = &mut net.cores[1];
        let mr = Msg::MigrateRequest { master: 0, new_master: 2, name: b"res".to_vec() };
        assert_eq!(c.receive(1000, 2, DLM_MIGRATE_REQUEST_MSG, &mr.encode()), 0);
        c.convert(1001, b, Mode::Ex, 0, None).unwrap();
        c.tick(1002);
        assert!(c.drain().is_empty(), "a request went out during the migration");
        let am = Msg::AssertMaster { node_idx: 2, flags: DLM_ASSERT_MASTER_FINISH_MIGRATION, name: b"res".to_vec() };
        // It holds a lock there: it asks the new master to count its reference.
        assert_eq!(c.receive(1003, 2, DLM_ASSERT_MASTER_MSG, &am.encode()), DLM_ASSERT_RESPONSE_MASTERY_REF);
        let Msg::ConvertLock { cookie, requested_type, .. } = sent_one(c, 2, DLM_CONVERT_LOCK_MSG) else { panic!() };
        assert_eq!((cookie, requested_type), (b.0, Mode::Ex.to_wire()));
        let _ = a;
    }

    #[test]
    fn a_master_requery_is_answered_with_the_owner_and_a_master_reasserts() {
        let mut c = kernel_masters_res();
        let rq = |name: &[u8]| Msg::MasterRequery { node_idx: 0, name: name.to_vec() }.encode();
        assert_eq!(c.receive(6, 0, DLM_MASTER_REQUERY_MSG, &rq(b"res")), 0);
        assert_eq!(c.receive(6, 0, DLM_MASTER_REQUERY_MSG, &rq(b"unknown")), i32::from(DLM_LOCK_RES_OWNER_UNKNOWN));
        // "mine": the kernel answers NO, so we master it.
        we_master(&mut c, 7, b"mine");
        assert_eq!(c.receive(9, 0, DLM_MASTER_REQUERY_MSG, &rq(b"mine")), 1);
        let Msg::AssertMaster { flags, .. } = sent_one(&mut c, 0, DLM_ASSERT_MASTER_MSG) else { panic!() };
        assert_eq!(flags, DLM_ASSERT_MASTER_REQUERY);
    }

    /// Leaving, we drop the references a kernel master counts for us (it answered our
    /// MASTER_REQUEST YES), and only those, before EXIT_DOMAIN.
    #[test]
    fn leaving_drops_our_references_at_kernel_masters_before_the_exit() {
        // "res": the kernel asserted it unasked, so it counts no reference of ours.
        let mut c = kernel_masters_res();
        let id = c.lock(6, b"refd", Mode::Pr, 0).unwrap();
        sent_one(&mut c, 0, DLM_MASTER_REQUEST_MSG);
        c.reply(7, 0, DLM_MASTER_RESP_YES);
        sent_one(&mut c, 0, DLM_CREATE_LOCK_MSG);
        c.reply(8, 0, status::DLM_NORMAL);
        c.receive(9, 0, DLM_PROXY_AST_MSG, &kernel_grant(id.0, None));
        c.drain();
        c.unlock(10, id, None).unwrap();
        sent_one(&mut c, 0, DLM_UNLOCK_LOCK_MSG);
        c.reply(11, 0, status::DLM_NORMAL);
        c.drain();
        c.leave(12).unwrap();
        let Msg::DerefLockres { node_idx: 1, name } = sent_one(&mut c, 0, DLM_DEREF_LOCKRES_MSG) else { panic!() };
        assert_eq!(name, b"refd");
        c.reply(13, 0, DLM_DEREF_RESPONSE_DONE);
        sent_one(&mut c, 0, DLM_BEGIN_EXIT_DOMAIN_MSG);
        c.reply(14, 0, 0);
        sent_one(&mut c, 0, DLM_EXIT_DOMAIN_MSG);
        assert_eq!(c.stats().derefs, 1);
    }

    #[test]
    fn receive_never_panics_and_rejects_garbage() {
        let s = seed();
        eprintln!("dlm core garbage seed {s}");
        let mut rng = Rng::new(s);
        let mut net = Net::new(2);
        net.join_all();
        for _ in 0..20_000 {
            let t = Msg::TYPES[rng.below(Msg::TYPES.len() as u64) as usize];
            let len = rng.below(200) as usize;
            let payload = rng.bytes(len);
            let _ = net.cores[0].receive(0, 1 + rng.below(3) as u8, t, &payload);
            let _ = net.cores[0].drain();
        }
    }
}
