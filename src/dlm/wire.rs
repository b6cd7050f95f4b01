//! The o2dlm messages as they travel in o2net payloads (kernel `dlm/dlmcommon.h`), big-endian,
//! at the kernel's offsets. [`Msg::decode`] checks every length and count, so no payload makes
//! it panic; [`Msg::encode`] writes exactly what the kernel's handlers expect.
//!
//! Name fields are 64 bytes (`O2NM_MAX_NAME_LEN`) with a separate length byte; lock names may
//! use at most 32 of them (`DLM_LOCKID_NAME_MAX`), domain names all 64.

use crate::format::bytes::{array, be32, be64, put_be32, put_be64};
use crate::format::checksum::crc32_le;
use crate::format::{FormatError, Result};

pub const DLM_MASTER_REQUEST_MSG: u16 = 500;
pub const DLM_ASSERT_MASTER_MSG: u16 = 502;
pub const DLM_CREATE_LOCK_MSG: u16 = 503;
pub const DLM_CONVERT_LOCK_MSG: u16 = 504;
pub const DLM_PROXY_AST_MSG: u16 = 505;
pub const DLM_UNLOCK_LOCK_MSG: u16 = 506;
pub const DLM_DEREF_LOCKRES_MSG: u16 = 507;
pub const DLM_MIGRATE_REQUEST_MSG: u16 = 508;
pub const DLM_MIG_LOCKRES_MSG: u16 = 509;
pub const DLM_QUERY_JOIN_MSG: u16 = 510;
pub const DLM_ASSERT_JOINED_MSG: u16 = 511;
pub const DLM_CANCEL_JOIN_MSG: u16 = 512;
pub const DLM_EXIT_DOMAIN_MSG: u16 = 513;
pub const DLM_MASTER_REQUERY_MSG: u16 = 514;
pub const DLM_LOCK_REQUEST_MSG: u16 = 515;
pub const DLM_RECO_DATA_DONE_MSG: u16 = 516;
pub const DLM_BEGIN_RECO_MSG: u16 = 517;
pub const DLM_FINALIZE_RECO_MSG: u16 = 518;
pub const DLM_QUERY_REGION_MSG: u16 = 519;
pub const DLM_QUERY_NODEINFO_MSG: u16 = 520;
pub const DLM_BEGIN_EXIT_DOMAIN_MSG: u16 = 521;
pub const DLM_DEREF_LOCKRES_DONE_MSG: u16 = 522;

/// The key of the join and query messages, which are not yet bound to a domain.
pub const DLM_MOD_KEY: u32 = 0x666c_6172;
pub const O2NM_MAX_NAME_LEN: usize = 64;
pub const DLM_LOCKID_NAME_MAX: usize = 32;
pub const DLM_LVB_LEN: usize = 64;
/// Bytes of the live-node bitmap in a join query (255 nodes).
pub const NODE_MAP_BYTES: usize = 32;
/// Lock entries that fit one MIG_LOCKRES message.
pub const DLM_MAX_MIGRATABLE_LOCKS: usize = 240;
/// Nodes a cluster can have (`O2NM_MAX_NODES`): the size of a nodeinfo query's table.
pub const O2NM_MAX_NODES: usize = 255;
/// Global heartbeat regions (`O2NM_MAX_REGIONS`) and the length of a region name
/// (`O2HB_MAX_REGION_NAME_LEN`): the size of a region query's table.
pub const O2NM_MAX_REGIONS: usize = 32;
pub const O2HB_MAX_REGION_NAME_LEN: usize = 32;

/// The DLM protocol we speak (1.3 in Linux since 3.x) and the fs locking protocol of ocfs2.
pub const DLM_PROTOCOL: (u8, u8) = (1, 3);
pub const FS_PROTOCOL: (u8, u8) = (1, 0);

// Lock flags (dlmapi.h).
pub const LKM_VALBLK: u32 = 0x0000_0100;
pub const LKM_NOQUEUE: u32 = 0x0000_0200;
pub const LKM_CONVERT: u32 = 0x0000_0400;
pub const LKM_CANCEL: u32 = 0x0000_2000;
pub const LKM_INVVALBLK: u32 = 0x0000_8000;
pub const LKM_MIGRATION: u32 = 0x1000_0000;
pub const LKM_PUT_LVB: u32 = 0x2000_0000;
pub const LKM_GET_LVB: u32 = 0x4000_0000;
pub const LKM_RECOVERY: u32 = 0x8000_0000;
/// Our mark on a PROXY_AST of type AST: its `blocked_type` carries the granted mode. The bit is
/// `LKM_UNUSED1` in dlmapi.h, and the kernel's `dlm_proxy_ast_handler` reads no flag but
/// PUT_LVB and GET_LVB; a kernel's AST never has it (its `blocked_type` is then 0 and means
/// nothing: the grant is of the mode the lock asked for).
pub const LKM_AST_MODE: u32 = 0x0000_0001;

// Proxy AST kinds.
pub const DLM_AST: u8 = 0;
pub const DLM_BAST: u8 = 1;
pub const DLM_ASTUNLOCK: u8 = 2;

// Master request answers, sent as the o2net status.
pub const DLM_MASTER_RESP_NO: i32 = 0;
pub const DLM_MASTER_RESP_YES: i32 = 1;
pub const DLM_MASTER_RESP_MAYBE: i32 = 2;
pub const DLM_MASTER_RESP_ERROR: i32 = 3;

pub const DLM_ASSERT_MASTER_REQUERY: u32 = 0x2;
pub const DLM_ASSERT_MASTER_FINISH_MIGRATION: u32 = 0x4;
/// A master's `dlm_assert_master` reply bit: the answerer keeps a lockres for the name, so the
/// master counts it in its reference map.
pub const DLM_ASSERT_RESPONSE_MASTERY_REF: i32 = 0x2;
/// A MIGRATE_REQUEST's reply: the answerer had a mastery round of its own going for the name,
/// so the new master must count its reference.
pub const DLM_MIGRATE_RESPONSE_MASTERY_REF: i32 = 0x1;
/// DEREF_LOCKRES replies: the reference is gone, or it goes later (DEREF_LOCKRES_DONE follows).
pub const DLM_DEREF_RESPONSE_DONE: i32 = 0;
pub const DLM_DEREF_RESPONSE_INPROG: i32 = 1;
/// `res->owner` when nobody is known to master a resource: a MASTER_REQUERY answer.
pub const DLM_LOCK_RES_OWNER_UNKNOWN: u8 = 255;
/// The lock-status flags a migratable lock carries in `flags` (dlmapi.h): the request asked to
/// write (PUT) or read (GET) the LVB.
pub const DLM_LKSB_PUT_LVB: u8 = 0x02;
pub const DLM_LKSB_GET_LVB: u8 = 0x04;

// dlm_migratable_lockres flags.
pub const DLM_MRES_RECOVERY: u8 = 0x01;
pub const DLM_MRES_MIGRATION: u8 = 0x02;
pub const DLM_MRES_ALL_DONE: u8 = 0x04;

pub const DLM_FINALIZE_STAGE2: u8 = 0x01;

// Join answers (the `code` byte of `dlm_query_join_packet`).
pub const JOIN_DISALLOW: u8 = 0;
pub const JOIN_OK: u8 = 1;
pub const JOIN_OK_NO_MAP: u8 = 2;
pub const JOIN_PROTOCOL_MISMATCH: u8 = 3;

/// `dlm_status` values (dlmapi.h) that travel as o2net statuses.
pub mod status {
    pub const DLM_NORMAL: i32 = 0;
    pub const DLM_DENIED: i32 = 2;
    pub const DLM_IVLOCKID: i32 = 11;
    pub const DLM_BADARGS: i32 = 19;
    pub const DLM_CANCELGRANT: i32 = 10;
    pub const DLM_NOTQUEUED: i32 = 21;
    pub const DLM_IVBUFLEN: i32 = 22;
    pub const DLM_BADPARAM: i32 = 24;
    pub const DLM_REJECTED: i32 = 26;
    pub const DLM_FORWARD: i32 = 32;
    pub const DLM_RECOVERING: i32 = 39;
    pub const DLM_MIGRATING: i32 = 40;
}

/// The key of every in-domain message: the kernel's `crc32_le(0, name)`.
pub fn dlm_domain_key(domain: &str) -> u32 {
    crc32_le(0, domain.as_bytes())
}

/// The answer to a join query packed as the o2net status: the four bytes of
/// `dlm_query_join_packet` read as a big-endian word, which is what the kernel puts on the wire.
pub fn join_response(code: u8, dlm_minor: u8, fs_minor: u8) -> i32 {
    i32::from_be_bytes([code, dlm_minor, fs_minor, 0])
}

/// `(code, dlm_minor, fs_minor)` of a join answer.
pub fn parse_join_response(status: i32) -> (u8, u8, u8) {
    let b = status.to_be_bytes();
    (b[0], b[1], b[2])
}

/// A lock mode. Only the three o2dlm supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Nl,
    Pr,
    Ex,
}

impl Mode {
    pub fn to_wire(self) -> i8 {
        match self {
            Mode::Nl => 0,
            Mode::Pr => 3,
            Mode::Ex => 5,
        }
    }

    pub fn from_wire(v: i8) -> Option<Mode> {
        match v {
            0 => Some(Mode::Nl),
            3 => Some(Mode::Pr),
            5 => Some(Mode::Ex),
            _ => None,
        }
    }

    /// The o2dlm table: NL goes with everything, PR with PR, EX with NL only.
    pub fn compatible(self, other: Mode) -> bool {
        matches!((self, other), (Mode::Nl, _) | (_, Mode::Nl) | (Mode::Pr, Mode::Pr))
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Nl => "NL",
            Mode::Pr => "PR",
            Mode::Ex => "EX",
        }
    }
}

pub type Lvb = [u8; DLM_LVB_LEN];

/// One lock of a `dlm_migratable_lockres` (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigratableLock {
    pub cookie: u64,
    /// 0 granted, 1 converting, 2 blocked.
    pub list: u8,
    pub flags: u8,
    pub type_: i8,
    pub convert_type: i8,
    pub highest_blocked: i8,
    pub node: u8,
}

pub const MIG_LIST_GRANTED: u8 = 0;
pub const MIG_LIST_CONVERTING: u8 = 1;
pub const MIG_LIST_BLOCKED: u8 = 2;
/// `convert_type` / `highest_blocked` when there is none (LKM_IVMODE).
pub const LKM_IVMODE: i8 = -1;

/// Every o2dlm message this implementation sends or handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    MasterRequest {
        node_idx: u8,
        flags: u32,
        name: Vec<u8>,
    },
    AssertMaster {
        node_idx: u8,
        flags: u32,
        name: Vec<u8>,
    },
    CreateLock {
        cookie: u64,
        flags: u32,
        node_idx: u8,
        requested_type: i8,
        name: Vec<u8>,
    },
    ConvertLock {
        cookie: u64,
        flags: u32,
        node_idx: u8,
        requested_type: i8,
        name: Vec<u8>,
        lvb: Option<Lvb>,
    },
    UnlockLock {
        cookie: u64,
        flags: u32,
        node_idx: u8,
        name: Vec<u8>,
        lvb: Option<Lvb>,
    },
    ProxyAst {
        cookie: u64,
        flags: u32,
        node_idx: u8,
        ast_type: u8,
        blocked_type: i8,
        name: Vec<u8>,
        lvb: Option<Lvb>,
    },
    DerefLockres {
        node_idx: u8,
        name: Vec<u8>,
    },
    /// A master's follow-up to a DEREF_LOCKRES it answered INPROG: the reference is gone now.
    DerefLockresDone {
        node_idx: u8,
        name: Vec<u8>,
    },
    /// From the new master of a migrating resource to every member but the old master: until
    /// its ASSERT_MASTER (FINISH_MIGRATION) comes, requests for the name wait.
    MigrateRequest {
        master: u8,
        new_master: u8,
        name: Vec<u8>,
    },
    /// Who masters `name`? Answered with the node number in the status, 255 for none known.
    MasterRequery {
        node_idx: u8,
        name: Vec<u8>,
    },
    MigLockres {
        master: u8,
        flags: u8,
        total_locks: u32,
        mig_cookie: u64,
        name: Vec<u8>,
        lvb: Lvb,
        locks: Vec<MigratableLock>,
    },
    QueryJoin {
        node_idx: u8,
        dlm_proto: (u8, u8),
        fs_proto: (u8, u8),
        domain: Vec<u8>,
        node_map: [u8; NODE_MAP_BYTES],
    },
    AssertJoined {
        node_idx: u8,
        domain: Vec<u8>,
    },
    CancelJoin {
        node_idx: u8,
        domain: Vec<u8>,
    },
    ExitDomain {
        node_idx: u8,
    },
    BeginExitDomain {
        node_idx: u8,
    },
    /// `round` travels in the kernel's `pad2`: which recovery round asks (0 from a kernel).
    LockRequest {
        node_idx: u8,
        dead_node: u8,
        round: u32,
    },
    /// `round` echoes the request's, in `pad2`.
    RecoDataDone {
        node_idx: u8,
        dead_node: u8,
        round: u32,
        reco_lvb: Lvb,
    },
    BeginReco {
        node_idx: u8,
        dead_node: u8,
    },
    FinalizeReco {
        node_idx: u8,
        dead_node: u8,
        flags: u8,
    },
    /// A joiner's list of global heartbeat regions (none with local heartbeat), checked by
    /// every member before the joiner asserts (`dlm_query_region`).
    QueryRegion {
        node_idx: u8,
        domain: Vec<u8>,
        regions: Vec<[u8; O2HB_MAX_REGION_NAME_LEN]>,
    },
    /// A joiner's cluster.conf nodes, checked by every member before the joiner asserts
    /// (`dlm_query_nodeinfo`).
    QueryNodeinfo {
        node_idx: u8,
        domain: Vec<u8>,
        nodes: Vec<NodeInfo>,
    },
}

/// One node of a nodeinfo query (`dlm_node_info`, 8 bytes): its number and o2net address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    pub num: u8,
    pub port: u16,
    pub addr: std::net::Ipv4Addr,
}

// Sizes of the fixed parts.
const MASTER_REQUEST_LEN: usize = 8 + O2NM_MAX_NAME_LEN; // 72
const LOCK_MSG_LEN: usize = 16 + O2NM_MAX_NAME_LEN; // 80: create, convert, unlock, proxy ast
const DEREF_LEN: usize = 8 + O2NM_MAX_NAME_LEN; // 72
const MRES_HEADER_LEN: usize = 16 + DLM_LOCKID_NAME_MAX + DLM_LVB_LEN; // 112
const MIG_LOCK_LEN: usize = 16;
const QUERY_JOIN_LEN: usize = 8 + O2NM_MAX_NAME_LEN + NODE_MAP_BYTES; // 104
const ASSERT_JOINED_LEN: usize = 4 + O2NM_MAX_NAME_LEN; // 68
const EXIT_DOMAIN_LEN: usize = 4;
const RECO_SMALL_LEN: usize = 8; // lock request, begin reco, finalize reco
const RECO_DATA_DONE_LEN: usize = 8 + DLM_LVB_LEN; // 72
const QUERY_HEADER_LEN: usize = 4 + O2NM_MAX_NAME_LEN; // 68: node, count, namelen, pad, domain
const NODE_INFO_LEN: usize = 8;
const QUERY_NODEINFO_LEN: usize = QUERY_HEADER_LEN + NODE_INFO_LEN * O2NM_MAX_NODES; // 2108
const QUERY_REGION_LEN: usize = QUERY_HEADER_LEN + O2HB_MAX_REGION_NAME_LEN * O2NM_MAX_REGIONS; // 1092

fn put_name(buf: &mut [u8], off: usize, name: &[u8], max: usize) {
    let n = name.len().min(max);
    buf[off..off + n].copy_from_slice(&name[..n]);
}

fn name_at(what: &'static str, b: &[u8], off: usize, len: u8, max: usize) -> Result<Vec<u8>> {
    let len = usize::from(len);
    if len == 0 || len > max {
        return Err(FormatError::corrupt(what, format!("name length {len} outside 1..={max}")));
    }
    Ok(b[off..off + len].to_vec())
}

/// A region or nodeinfo query of `len` bytes with its header filled in: node, count, domain.
fn query_buf(len: usize, node_idx: u8, count: usize, domain: &[u8]) -> Vec<u8> {
    let mut b = vec![0; len];
    b[0] = node_idx;
    b[1] = count as u8;
    b[2] = domain.len().min(O2NM_MAX_NAME_LEN) as u8;
    put_name(&mut b, 4, domain, O2NM_MAX_NAME_LEN);
    b
}

fn lvb_at(b: &[u8], off: usize) -> Lvb {
    array::<DLM_LVB_LEN>(b, off)
}

/// The trailing LVB of a lock message: present when the flag says so, and then required.
fn trailing_lvb(what: &'static str, b: &[u8], flags: u32, flag: u32) -> Result<Option<Lvb>> {
    if flags & flag == 0 {
        return Ok(None);
    }
    FormatError::need(what, b, LOCK_MSG_LEN + DLM_LVB_LEN)?;
    Ok(Some(lvb_at(b, LOCK_MSG_LEN)))
}

impl Msg {
    pub fn msg_type(&self) -> u16 {
        match self {
            Msg::MasterRequest { .. } => DLM_MASTER_REQUEST_MSG,
            Msg::AssertMaster { .. } => DLM_ASSERT_MASTER_MSG,
            Msg::CreateLock { .. } => DLM_CREATE_LOCK_MSG,
            Msg::ConvertLock { .. } => DLM_CONVERT_LOCK_MSG,
            Msg::UnlockLock { .. } => DLM_UNLOCK_LOCK_MSG,
            Msg::ProxyAst { .. } => DLM_PROXY_AST_MSG,
            Msg::DerefLockres { .. } => DLM_DEREF_LOCKRES_MSG,
            Msg::DerefLockresDone { .. } => DLM_DEREF_LOCKRES_DONE_MSG,
            Msg::MigrateRequest { .. } => DLM_MIGRATE_REQUEST_MSG,
            Msg::MasterRequery { .. } => DLM_MASTER_REQUERY_MSG,
            Msg::MigLockres { .. } => DLM_MIG_LOCKRES_MSG,
            Msg::QueryJoin { .. } => DLM_QUERY_JOIN_MSG,
            Msg::AssertJoined { .. } => DLM_ASSERT_JOINED_MSG,
            Msg::CancelJoin { .. } => DLM_CANCEL_JOIN_MSG,
            Msg::ExitDomain { .. } => DLM_EXIT_DOMAIN_MSG,
            Msg::BeginExitDomain { .. } => DLM_BEGIN_EXIT_DOMAIN_MSG,
            Msg::LockRequest { .. } => DLM_LOCK_REQUEST_MSG,
            Msg::RecoDataDone { .. } => DLM_RECO_DATA_DONE_MSG,
            Msg::BeginReco { .. } => DLM_BEGIN_RECO_MSG,
            Msg::FinalizeReco { .. } => DLM_FINALIZE_RECO_MSG,
            Msg::QueryRegion { .. } => DLM_QUERY_REGION_MSG,
            Msg::QueryNodeinfo { .. } => DLM_QUERY_NODEINFO_MSG,
        }
    }

    /// Join traffic is keyed by [`DLM_MOD_KEY`], everything else by the domain key.
    pub fn uses_mod_key(msg_type: u16) -> bool {
        matches!(
            msg_type,
            DLM_QUERY_JOIN_MSG
                | DLM_ASSERT_JOINED_MSG
                | DLM_CANCEL_JOIN_MSG
                | DLM_QUERY_REGION_MSG
                | DLM_QUERY_NODEINFO_MSG
        )
    }

    /// The largest payload a handler of this type accepts (what to register with o2net).
    pub fn max_len(msg_type: u16) -> usize {
        match msg_type {
            DLM_MASTER_REQUEST_MSG
            | DLM_ASSERT_MASTER_MSG
            | DLM_DEREF_LOCKRES_MSG
            | DLM_DEREF_LOCKRES_DONE_MSG
            | DLM_MIGRATE_REQUEST_MSG
            | DLM_MASTER_REQUERY_MSG => MASTER_REQUEST_LEN,
            DLM_CREATE_LOCK_MSG => LOCK_MSG_LEN,
            DLM_CONVERT_LOCK_MSG | DLM_UNLOCK_LOCK_MSG | DLM_PROXY_AST_MSG => LOCK_MSG_LEN + DLM_LVB_LEN,
            DLM_MIG_LOCKRES_MSG => MRES_HEADER_LEN + MIG_LOCK_LEN * DLM_MAX_MIGRATABLE_LOCKS,
            DLM_QUERY_JOIN_MSG => QUERY_JOIN_LEN,
            DLM_ASSERT_JOINED_MSG | DLM_CANCEL_JOIN_MSG => ASSERT_JOINED_LEN,
            DLM_EXIT_DOMAIN_MSG | DLM_BEGIN_EXIT_DOMAIN_MSG => EXIT_DOMAIN_LEN,
            DLM_LOCK_REQUEST_MSG | DLM_BEGIN_RECO_MSG | DLM_FINALIZE_RECO_MSG => RECO_SMALL_LEN,
            DLM_RECO_DATA_DONE_MSG => RECO_DATA_DONE_LEN,
            DLM_QUERY_REGION_MSG => QUERY_REGION_LEN,
            DLM_QUERY_NODEINFO_MSG => QUERY_NODEINFO_LEN,
            _ => 0,
        }
    }

    /// Every message type [`Msg::decode`] understands.
    pub const TYPES: [u16; 22] = [
        DLM_MASTER_REQUEST_MSG,
        DLM_ASSERT_MASTER_MSG,
        DLM_CREATE_LOCK_MSG,
        DLM_CONVERT_LOCK_MSG,
        DLM_PROXY_AST_MSG,
        DLM_UNLOCK_LOCK_MSG,
        DLM_DEREF_LOCKRES_MSG,
        DLM_DEREF_LOCKRES_DONE_MSG,
        DLM_MIGRATE_REQUEST_MSG,
        DLM_MASTER_REQUERY_MSG,
        DLM_MIG_LOCKRES_MSG,
        DLM_QUERY_JOIN_MSG,
        DLM_ASSERT_JOINED_MSG,
        DLM_CANCEL_JOIN_MSG,
        DLM_EXIT_DOMAIN_MSG,
        DLM_BEGIN_EXIT_DOMAIN_MSG,
        DLM_LOCK_REQUEST_MSG,
        DLM_RECO_DATA_DONE_MSG,
        DLM_BEGIN_RECO_MSG,
        DLM_FINALIZE_RECO_MSG,
        DLM_QUERY_REGION_MSG,
        DLM_QUERY_NODEINFO_MSG,
    ];

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Msg::MasterRequest { node_idx, flags, name } | Msg::AssertMaster { node_idx, flags, name } => {
                let mut b = vec![0; MASTER_REQUEST_LEN];
                b[0] = *node_idx;
                b[1] = name.len().min(DLM_LOCKID_NAME_MAX) as u8;
                put_be32(&mut b, 4, *flags);
                put_name(&mut b, 8, name, DLM_LOCKID_NAME_MAX);
                b
            }
            Msg::CreateLock { cookie, flags, node_idx, requested_type, name } => {
                let mut b = vec![0; LOCK_MSG_LEN];
                put_be64(&mut b, 0, *cookie);
                put_be32(&mut b, 8, *flags);
                b[13] = *node_idx;
                b[14] = *requested_type as u8;
                b[15] = name.len().min(DLM_LOCKID_NAME_MAX) as u8;
                put_name(&mut b, 16, name, DLM_LOCKID_NAME_MAX);
                b
            }
            Msg::ConvertLock { cookie, flags, node_idx, requested_type, name, lvb } => {
                let flags = if lvb.is_some() { flags | LKM_PUT_LVB } else { flags & !LKM_PUT_LVB };
                let mut b = vec![0; LOCK_MSG_LEN];
                put_be64(&mut b, 0, *cookie);
                put_be32(&mut b, 8, flags);
                b[13] = *node_idx;
                b[14] = *requested_type as u8;
                b[15] = name.len().min(DLM_LOCKID_NAME_MAX) as u8;
                put_name(&mut b, 16, name, DLM_LOCKID_NAME_MAX);
                if let Some(l) = lvb {
                    b.extend_from_slice(l);
                }
                b
            }
            Msg::UnlockLock { cookie, flags, node_idx, name, lvb } => {
                let flags = if lvb.is_some() { flags | LKM_PUT_LVB } else { flags & !LKM_PUT_LVB };
                let mut b = vec![0; LOCK_MSG_LEN];
                put_be64(&mut b, 0, *cookie);
                put_be32(&mut b, 8, flags);
                b[14] = *node_idx;
                b[15] = name.len().min(DLM_LOCKID_NAME_MAX) as u8;
                put_name(&mut b, 16, name, DLM_LOCKID_NAME_MAX);
                if let Some(l) = lvb {
                    b.extend_from_slice(l);
                }
                b
            }
            Msg::ProxyAst { cookie, flags, node_idx, ast_type, blocked_type, name, lvb } => {
                let flags = if lvb.is_some() { flags | LKM_GET_LVB } else { flags & !LKM_GET_LVB };
                let mut b = vec![0; LOCK_MSG_LEN];
                put_be64(&mut b, 0, *cookie);
                put_be32(&mut b, 8, flags);
                b[12] = *node_idx;
                b[13] = *ast_type;
                b[14] = *blocked_type as u8;
                b[15] = name.len().min(DLM_LOCKID_NAME_MAX) as u8;
                put_name(&mut b, 16, name, DLM_LOCKID_NAME_MAX);
                if let Some(l) = lvb {
                    b.extend_from_slice(l);
                }
                b
            }
            Msg::DerefLockres { node_idx, name } | Msg::DerefLockresDone { node_idx, name } => {
                let mut b = vec![0; DEREF_LEN];
                b[6] = *node_idx;
                b[7] = name.len().min(DLM_LOCKID_NAME_MAX) as u8;
                put_name(&mut b, 8, name, DLM_LOCKID_NAME_MAX);
                b
            }
            Msg::MigrateRequest { master, new_master, name } => {
                let mut b = vec![0; MASTER_REQUEST_LEN];
                b[0] = *master;
                b[1] = *new_master;
                b[2] = name.len().min(DLM_LOCKID_NAME_MAX) as u8;
                put_name(&mut b, 8, name, DLM_LOCKID_NAME_MAX);
                b
            }
            Msg::MasterRequery { node_idx, name } => {
                let mut b = vec![0; MASTER_REQUEST_LEN];
                b[2] = *node_idx;
                b[3] = name.len().min(DLM_LOCKID_NAME_MAX) as u8;
                put_name(&mut b, 8, name, DLM_LOCKID_NAME_MAX);
                b
            }
            Msg::MigLockres { master, flags, total_locks, mig_cookie, name, lvb, locks } => {
                let n = locks.len().min(DLM_MAX_MIGRATABLE_LOCKS);
                let mut b = vec![0; MRES_HEADER_LEN + n * MIG_LOCK_LEN];
                b[0] = *master;
                b[1] = name.len().min(DLM_LOCKID_NAME_MAX) as u8;
                b[2] = n as u8;
                b[3] = *flags;
                put_be32(&mut b, 4, *total_locks);
                put_be64(&mut b, 8, *mig_cookie);
                put_name(&mut b, 16, name, DLM_LOCKID_NAME_MAX);
                b[48..48 + DLM_LVB_LEN].copy_from_slice(lvb);
                for (i, l) in locks.iter().take(n).enumerate() {
                    let o = MRES_HEADER_LEN + i * MIG_LOCK_LEN;
                    put_be64(&mut b, o, l.cookie);
                    b[o + 10] = l.list;
                    b[o + 11] = l.flags;
                    b[o + 12] = l.type_ as u8;
                    b[o + 13] = l.convert_type as u8;
                    b[o + 14] = l.highest_blocked as u8;
                    b[o + 15] = l.node;
                }
                b
            }
            Msg::QueryJoin { node_idx, dlm_proto, fs_proto, domain, node_map } => {
                let mut b = vec![0; QUERY_JOIN_LEN];
                b[0] = *node_idx;
                b[3] = domain.len().min(O2NM_MAX_NAME_LEN) as u8;
                b[4] = dlm_proto.0;
                b[5] = dlm_proto.1;
                b[6] = fs_proto.0;
                b[7] = fs_proto.1;
                put_name(&mut b, 8, domain, O2NM_MAX_NAME_LEN);
                b[72..72 + NODE_MAP_BYTES].copy_from_slice(node_map);
                b
            }
            Msg::AssertJoined { node_idx, domain } | Msg::CancelJoin { node_idx, domain } => {
                let mut b = vec![0; ASSERT_JOINED_LEN];
                b[0] = *node_idx;
                b[3] = domain.len().min(O2NM_MAX_NAME_LEN) as u8;
                put_name(&mut b, 4, domain, O2NM_MAX_NAME_LEN);
                b
            }
            Msg::ExitDomain { node_idx } | Msg::BeginExitDomain { node_idx } => vec![*node_idx, 0, 0, 0],
            Msg::LockRequest { node_idx, dead_node, round } => {
                let mut b = vec![*node_idx, *dead_node, 0, 0, 0, 0, 0, 0];
                put_be32(&mut b, 4, *round);
                b
            }
            Msg::BeginReco { node_idx, dead_node } => vec![*node_idx, *dead_node, 0, 0, 0, 0, 0, 0],
            Msg::RecoDataDone { node_idx, dead_node, round, reco_lvb } => {
                let mut b = vec![0; RECO_DATA_DONE_LEN];
                b[0] = *node_idx;
                b[1] = *dead_node;
                put_be32(&mut b, 4, *round);
                b[8..].copy_from_slice(reco_lvb);
                b
            }
            Msg::FinalizeReco { node_idx, dead_node, flags } => vec![*node_idx, *dead_node, *flags, 0, 0, 0, 0, 0],
            // The kernel sends the whole struct, table included; so do we.
            Msg::QueryRegion { node_idx, domain, regions } => {
                let n = regions.len().min(O2NM_MAX_REGIONS);
                let mut b = query_buf(QUERY_REGION_LEN, *node_idx, n, domain);
                for (i, r) in regions.iter().take(n).enumerate() {
                    let o = QUERY_HEADER_LEN + i * O2HB_MAX_REGION_NAME_LEN;
                    b[o..o + O2HB_MAX_REGION_NAME_LEN].copy_from_slice(r);
                }
                b
            }
            Msg::QueryNodeinfo { node_idx, domain, nodes } => {
                let n = nodes.len().min(O2NM_MAX_NODES);
                let mut b = query_buf(QUERY_NODEINFO_LEN, *node_idx, n, domain);
                for (i, ni) in nodes.iter().take(n).enumerate() {
                    let o = QUERY_HEADER_LEN + i * NODE_INFO_LEN;
                    b[o] = ni.num;
                    b[o + 2..o + 4].copy_from_slice(&ni.port.to_be_bytes());
                    b[o + 4..o + 8].copy_from_slice(&ni.addr.octets());
                }
                b
            }
        }
    }

    /// Decodes a payload of `msg_type`. Never panics; a short payload, a bad name length or
    /// a lock count that does not fit is an error.
    pub fn decode(msg_type: u16, b: &[u8]) -> Result<Msg> {
        match msg_type {
            DLM_MASTER_REQUEST_MSG | DLM_ASSERT_MASTER_MSG => {
                let what = if msg_type == DLM_MASTER_REQUEST_MSG { "dlm_master_request" } else { "dlm_assert_master" };
                FormatError::need(what, b, MASTER_REQUEST_LEN)?;
                let node_idx = b[0];
                let flags = be32(b, 4);
                let name = name_at(what, b, 8, b[1], DLM_LOCKID_NAME_MAX)?;
                Ok(if msg_type == DLM_MASTER_REQUEST_MSG {
                    Msg::MasterRequest { node_idx, flags, name }
                } else {
                    Msg::AssertMaster { node_idx, flags, name }
                })
            }
            DLM_CREATE_LOCK_MSG | DLM_CONVERT_LOCK_MSG => {
                let what = if msg_type == DLM_CREATE_LOCK_MSG { "dlm_create_lock" } else { "dlm_convert_lock" };
                FormatError::need(what, b, LOCK_MSG_LEN)?;
                let cookie = be64(b, 0);
                let flags = be32(b, 8);
                let node_idx = b[13];
                let requested_type = b[14] as i8;
                let name = name_at(what, b, 16, b[15], DLM_LOCKID_NAME_MAX)?;
                if msg_type == DLM_CREATE_LOCK_MSG {
                    Ok(Msg::CreateLock { cookie, flags, node_idx, requested_type, name })
                } else {
                    let lvb = trailing_lvb(what, b, flags, LKM_PUT_LVB)?;
                    Ok(Msg::ConvertLock { cookie, flags, node_idx, requested_type, name, lvb })
                }
            }
            DLM_UNLOCK_LOCK_MSG => {
                let what = "dlm_unlock_lock";
                FormatError::need(what, b, LOCK_MSG_LEN)?;
                let flags = be32(b, 8);
                Ok(Msg::UnlockLock {
                    cookie: be64(b, 0),
                    flags,
                    node_idx: b[14],
                    name: name_at(what, b, 16, b[15], DLM_LOCKID_NAME_MAX)?,
                    lvb: trailing_lvb(what, b, flags, LKM_PUT_LVB)?,
                })
            }
            DLM_PROXY_AST_MSG => {
                let what = "dlm_proxy_ast";
                FormatError::need(what, b, LOCK_MSG_LEN)?;
                let flags = be32(b, 8);
                Ok(Msg::ProxyAst {
                    cookie: be64(b, 0),
                    flags,
                    node_idx: b[12],
                    ast_type: b[13],
                    blocked_type: b[14] as i8,
                    name: name_at(what, b, 16, b[15], DLM_LOCKID_NAME_MAX)?,
                    lvb: trailing_lvb(what, b, flags, LKM_GET_LVB)?,
                })
            }
            DLM_DEREF_LOCKRES_MSG => {
                let what = "dlm_deref_lockres";
                FormatError::need(what, b, DEREF_LEN)?;
                Ok(Msg::DerefLockres { node_idx: b[6], name: name_at(what, b, 8, b[7], DLM_LOCKID_NAME_MAX)? })
            }
            DLM_DEREF_LOCKRES_DONE_MSG => {
                let what = "dlm_deref_lockres_done";
                FormatError::need(what, b, DEREF_LEN)?;
                Ok(Msg::DerefLockresDone { node_idx: b[6], name: name_at(what, b, 8, b[7], DLM_LOCKID_NAME_MAX)? })
            }
            DLM_MIGRATE_REQUEST_MSG => {
                let what = "dlm_migrate_request";
                FormatError::need(what, b, MASTER_REQUEST_LEN)?;
                Ok(Msg::MigrateRequest {
                    master: b[0],
                    new_master: b[1],
                    name: name_at(what, b, 8, b[2], DLM_LOCKID_NAME_MAX)?,
                })
            }
            DLM_MASTER_REQUERY_MSG => {
                let what = "dlm_master_requery";
                FormatError::need(what, b, MASTER_REQUEST_LEN)?;
                Ok(Msg::MasterRequery { node_idx: b[2], name: name_at(what, b, 8, b[3], DLM_LOCKID_NAME_MAX)? })
            }
            DLM_MIG_LOCKRES_MSG => {
                let what = "dlm_migratable_lockres";
                FormatError::need(what, b, MRES_HEADER_LEN)?;
                let n = usize::from(b[2]);
                if n > DLM_MAX_MIGRATABLE_LOCKS {
                    return Err(FormatError::corrupt(what, format!("{n} locks, at most {DLM_MAX_MIGRATABLE_LOCKS}")));
                }
                FormatError::need(what, b, MRES_HEADER_LEN + n * MIG_LOCK_LEN)?;
                let mut locks = Vec::with_capacity(n);
                for i in 0..n {
                    let o = MRES_HEADER_LEN + i * MIG_LOCK_LEN;
                    let list = b[o + 10];
                    if list > MIG_LIST_BLOCKED {
                        return Err(FormatError::corrupt(what, format!("lock {i} on list {list}")));
                    }
                    locks.push(MigratableLock {
                        cookie: be64(b, o),
                        list,
                        flags: b[o + 11],
                        type_: b[o + 12] as i8,
                        convert_type: b[o + 13] as i8,
                        highest_blocked: b[o + 14] as i8,
                        node: b[o + 15],
                    });
                }
                Ok(Msg::MigLockres {
                    master: b[0],
                    flags: b[3],
                    total_locks: be32(b, 4),
                    mig_cookie: be64(b, 8),
                    name: name_at(what, b, 16, b[1], DLM_LOCKID_NAME_MAX)?,
                    lvb: lvb_at(b, 48),
                    locks,
                })
            }
            DLM_QUERY_JOIN_MSG => {
                let what = "dlm_query_join_request";
                FormatError::need(what, b, QUERY_JOIN_LEN)?;
                Ok(Msg::QueryJoin {
                    node_idx: b[0],
                    dlm_proto: (b[4], b[5]),
                    fs_proto: (b[6], b[7]),
                    domain: name_at(what, b, 8, b[3], O2NM_MAX_NAME_LEN)?,
                    node_map: array::<NODE_MAP_BYTES>(b, 72),
                })
            }
            DLM_ASSERT_JOINED_MSG | DLM_CANCEL_JOIN_MSG => {
                let what = if msg_type == DLM_ASSERT_JOINED_MSG { "dlm_assert_joined" } else { "dlm_cancel_join" };
                FormatError::need(what, b, ASSERT_JOINED_LEN)?;
                let node_idx = b[0];
                let domain = name_at(what, b, 4, b[3], O2NM_MAX_NAME_LEN)?;
                Ok(if msg_type == DLM_ASSERT_JOINED_MSG {
                    Msg::AssertJoined { node_idx, domain }
                } else {
                    Msg::CancelJoin { node_idx, domain }
                })
            }
            DLM_EXIT_DOMAIN_MSG | DLM_BEGIN_EXIT_DOMAIN_MSG => {
                FormatError::need("dlm_exit_domain", b, EXIT_DOMAIN_LEN)?;
                Ok(if msg_type == DLM_EXIT_DOMAIN_MSG {
                    Msg::ExitDomain { node_idx: b[0] }
                } else {
                    Msg::BeginExitDomain { node_idx: b[0] }
                })
            }
            DLM_LOCK_REQUEST_MSG | DLM_BEGIN_RECO_MSG => {
                FormatError::need("dlm_begin_reco", b, RECO_SMALL_LEN)?;
                Ok(if msg_type == DLM_LOCK_REQUEST_MSG {
                    Msg::LockRequest { node_idx: b[0], dead_node: b[1], round: be32(b, 4) }
                } else {
                    Msg::BeginReco { node_idx: b[0], dead_node: b[1] }
                })
            }
            DLM_RECO_DATA_DONE_MSG => {
                FormatError::need("dlm_reco_data_done", b, RECO_DATA_DONE_LEN)?;
                Ok(Msg::RecoDataDone { node_idx: b[0], dead_node: b[1], round: be32(b, 4), reco_lvb: lvb_at(b, 8) })
            }
            DLM_FINALIZE_RECO_MSG => {
                FormatError::need("dlm_finalize_reco", b, RECO_SMALL_LEN)?;
                Ok(Msg::FinalizeReco { node_idx: b[0], dead_node: b[1], flags: b[2] })
            }
            DLM_QUERY_REGION_MSG => {
                let what = "dlm_query_region";
                FormatError::need(what, b, QUERY_HEADER_LEN)?;
                let n = usize::from(b[1]);
                if n > O2NM_MAX_REGIONS {
                    return Err(FormatError::corrupt(what, format!("{n} regions, at most {O2NM_MAX_REGIONS}")));
                }
                FormatError::need(what, b, QUERY_HEADER_LEN + n * O2HB_MAX_REGION_NAME_LEN)?;
                let regions = (0..n)
                    .map(|i| array::<O2HB_MAX_REGION_NAME_LEN>(b, QUERY_HEADER_LEN + i * O2HB_MAX_REGION_NAME_LEN))
                    .collect();
                Ok(Msg::QueryRegion { node_idx: b[0], domain: name_at(what, b, 4, b[2], O2NM_MAX_NAME_LEN)?, regions })
            }
            DLM_QUERY_NODEINFO_MSG => {
                let what = "dlm_query_nodeinfo";
                FormatError::need(what, b, QUERY_HEADER_LEN)?;
                let n = usize::from(b[1]);
                FormatError::need(what, b, QUERY_HEADER_LEN + n * NODE_INFO_LEN)?;
                let nodes = (0..n)
                    .map(|i| {
                        let o = QUERY_HEADER_LEN + i * NODE_INFO_LEN;
                        NodeInfo {
                            num: b[o],
                            port: u16::from_be_bytes([b[o + 2], b[o + 3]]),
                            addr: std::net::Ipv4Addr::new(b[o + 4], b[o + 5], b[o + 6], b[o + 7]),
                        }
                    })
                    .collect();
                Ok(Msg::QueryNodeinfo { node_idx: b[0], domain: name_at(what, b, 4, b[2], O2NM_MAX_NAME_LEN)?, nodes })
            }
            other => Err(FormatError::Unsupported { what: "o2dlm message", detail: format!("type {other}") }),
        }
    }
}

/// Sets bit `node` of a kernel node bitmap (bit n = byte n/8, bit n%8).
pub fn map_set(map: &mut [u8; NODE_MAP_BYTES], node: u8) {
    map[usize::from(node / 8)] |= 1 << (node % 8);
}

pub fn map_test(map: &[u8; NODE_MAP_BYTES], node: u8) -> bool {
    map[usize::from(node / 8)] & (1 << (node % 8)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{seed, Rng};

    fn name(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn samples() -> Vec<Msg> {
        let mut lvb = [0u8; DLM_LVB_LEN];
        lvb[0] = 7;
        lvb[63] = 9;
        let mut map = [0u8; NODE_MAP_BYTES];
        map_set(&mut map, 3);
        map_set(&mut map, 200);
        vec![
            Msg::MasterRequest { node_idx: 1, flags: 0, name: name("M000000000000000000001000000000") },
            Msg::AssertMaster { node_idx: 2, flags: DLM_ASSERT_MASTER_FINISH_MIGRATION, name: name("$RECOVERY") },
            Msg::CreateLock {
                cookie: (3u64 << 56) | 17,
                flags: LKM_VALBLK,
                node_idx: 3,
                requested_type: 5,
                name: name("a"),
            },
            Msg::ConvertLock {
                cookie: 5,
                flags: LKM_VALBLK | LKM_PUT_LVB,
                node_idx: 3,
                requested_type: 0,
                name: name("b"),
                lvb: Some(lvb),
            },
            Msg::ConvertLock { cookie: 5, flags: 0, node_idx: 3, requested_type: 3, name: name("b"), lvb: None },
            Msg::UnlockLock { cookie: 6, flags: LKM_CANCEL, node_idx: 4, name: name("c"), lvb: None },
            Msg::UnlockLock {
                cookie: 6,
                flags: LKM_VALBLK | LKM_PUT_LVB,
                node_idx: 4,
                name: name("c"),
                lvb: Some(lvb),
            },
            Msg::ProxyAst {
                cookie: 7,
                flags: 0,
                node_idx: 0,
                ast_type: DLM_BAST,
                blocked_type: 5,
                name: name("d"),
                lvb: None,
            },
            Msg::ProxyAst {
                cookie: 7,
                flags: LKM_GET_LVB,
                node_idx: 0,
                ast_type: DLM_AST,
                blocked_type: 0,
                name: name("d"),
                lvb: Some(lvb),
            },
            Msg::DerefLockres { node_idx: 9, name: name("e") },
            Msg::DerefLockresDone { node_idx: 9, name: name("e") },
            Msg::MigrateRequest { master: 3, new_master: 1, name: name("g") },
            Msg::MasterRequery { node_idx: 2, name: name("h") },
            Msg::MigLockres {
                master: 1,
                flags: DLM_MRES_RECOVERY | DLM_MRES_ALL_DONE,
                total_locks: 2,
                mig_cookie: 0,
                name: name("f"),
                lvb,
                locks: vec![
                    MigratableLock {
                        cookie: 1,
                        list: 0,
                        flags: 0,
                        type_: 3,
                        convert_type: -1,
                        highest_blocked: -1,
                        node: 2,
                    },
                    MigratableLock {
                        cookie: 2,
                        list: 2,
                        flags: 0,
                        type_: 5,
                        convert_type: -1,
                        highest_blocked: -1,
                        node: 3,
                    },
                ],
            },
            Msg::QueryJoin {
                node_idx: 3,
                dlm_proto: (1, 3),
                fs_proto: (1, 0),
                domain: name("0123456789ABCDEF"),
                node_map: map,
            },
            Msg::AssertJoined { node_idx: 3, domain: name("dom") },
            Msg::CancelJoin { node_idx: 3, domain: name("dom") },
            Msg::ExitDomain { node_idx: 4 },
            Msg::BeginExitDomain { node_idx: 4 },
            Msg::LockRequest { node_idx: 1, dead_node: 2, round: 7 },
            Msg::RecoDataDone { node_idx: 1, dead_node: 2, round: 7, reco_lvb: [0; DLM_LVB_LEN] },
            Msg::BeginReco { node_idx: 1, dead_node: 2 },
            Msg::FinalizeReco { node_idx: 1, dead_node: 2, flags: DLM_FINALIZE_STAGE2 },
            Msg::QueryRegion { node_idx: 0, domain: name("dom"), regions: vec![] },
            Msg::QueryRegion { node_idx: 0, domain: name("dom"), regions: vec![[b'A'; 32], [b'B'; 32]] },
            Msg::QueryNodeinfo {
                node_idx: 0,
                domain: name("dom"),
                nodes: vec![
                    NodeInfo { num: 0, port: 7777, addr: std::net::Ipv4Addr::new(10, 0, 2, 15) },
                    NodeInfo { num: 1, port: 40000, addr: std::net::Ipv4Addr::new(10, 0, 2, 2) },
                ],
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_fits_its_handler() {
        for m in samples() {
            let b = m.encode();
            assert!(b.len() <= Msg::max_len(m.msg_type()), "{m:?}");
            assert_eq!(Msg::decode(m.msg_type(), &b).unwrap(), m);
        }
    }

    #[test]
    fn offsets_match_the_kernel_structs() {
        // dlm_migrate_request: master, new_master, namelen, pad, pad2, name at 8.
        let b = Msg::MigrateRequest { master: 3, new_master: 1, name: name("xy") }.encode();
        assert_eq!((b.len(), &b[..4], &b[8..10]), (72, &[3u8, 1, 2, 0][..], &b"xy"[..]));
        // dlm_master_requery: pad, pad, node_idx, namelen, pad3, name at 8.
        let b = Msg::MasterRequery { node_idx: 2, name: name("xy") }.encode();
        assert_eq!((b.len(), &b[..4], &b[8..10]), (72, &[0u8, 0, 2, 2][..], &b"xy"[..]));

        // A query join is 104 bytes with the domain at 8 and the map at 72, as a kernel sent it.
        let q =
            Msg::QueryJoin { node_idx: 0, dlm_proto: (1, 3), fs_proto: (1, 0), domain: name("AB"), node_map: [0; 32] };
        let b = q.encode();
        assert_eq!(b.len(), 104);
        assert_eq!(&b[..10], &[0, 0, 0, 2, 1, 3, 1, 0, b'A', b'B']);
        // Create lock: cookie be64, flags be32, pad, node, type, namelen, name at 16.
        let c = Msg::CreateLock {
            cookie: 0x0102_0304_0506_0708,
            flags: 0x200,
            node_idx: 9,
            requested_type: 3,
            name: name("x"),
        };
        let b = c.encode();
        assert_eq!(&b[..17], &[1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 2, 0, 0, 9, 3, 1, b'x']);
        // Unlock puts the node one byte later than create (pad is a be16).
        let u = Msg::UnlockLock { cookie: 1, flags: 0, node_idx: 9, name: name("x"), lvb: None }.encode();
        assert_eq!((u[14], u[15]), (9, 1));
        assert_eq!(join_response(JOIN_OK, 3, 0).to_be_bytes(), [1, 3, 0, 0]);
        // Nodeinfo: node, count, namelen, pad, domain[64], then 8-byte entries with the port and
        // address in network order; the whole 255-entry table travels (2108 bytes).
        let ni = NodeInfo { num: 1, port: 7777, addr: std::net::Ipv4Addr::new(10, 0, 2, 2) };
        let b = Msg::QueryNodeinfo { node_idx: 0, domain: name("AB"), nodes: vec![ni] }.encode();
        assert_eq!(b.len(), 2108);
        assert_eq!(&b[..6], &[0, 1, 2, 0, b'A', b'B']);
        assert_eq!(&b[68..76], &[1, 0, 0x1e, 0x61, 10, 0, 2, 2]);
        // Region query: the same header, then 32-byte names; 1092 bytes.
        let b = Msg::QueryRegion { node_idx: 0, domain: name("AB"), regions: vec![[b'R'; 32]] }.encode();
        assert_eq!(b.len(), 1092);
        assert_eq!((b[1], b[2], b[68], b[99], b[100]), (1, 2, b'R', b'R', 0));
        assert_eq!(parse_join_response(join_response(JOIN_OK, 3, 0)), (JOIN_OK, 3, 0));
    }

    #[test]
    fn domain_key_is_crc32_le_seeded_zero() {
        assert_eq!(dlm_domain_key(""), 0);
        assert_eq!(dlm_domain_key("A"), crc32_le(0, b"A"));
    }

    #[test]
    fn modes_follow_the_o2dlm_table() {
        use Mode::*;
        let table = [(Nl, Nl, true), (Nl, Pr, true), (Nl, Ex, true), (Pr, Pr, true), (Pr, Ex, false), (Ex, Ex, false)];
        for (a, b, ok) in table {
            assert_eq!(a.compatible(b), ok, "{a:?} {b:?}");
            assert_eq!(b.compatible(a), ok, "{b:?} {a:?}");
        }
        for m in [Nl, Pr, Ex] {
            assert_eq!(Mode::from_wire(m.to_wire()), Some(m));
        }
        assert_eq!(Mode::from_wire(1), None);
    }

    #[test]
    fn decode_never_panics_on_random_or_truncated_payloads() {
        let s = seed();
        eprintln!("dlm wire fuzz seed {s} (OCFS2_TEST_SEED={s} replays)");
        let mut rng = Rng::new(s);
        let samples = samples();
        for i in 0..200_000u32 {
            let t = if i % 2 == 0 {
                Msg::TYPES[rng.below(Msg::TYPES.len() as u64) as usize]
            } else {
                rng.below(600) as u16
            };
            let buf = if i % 3 == 0 {
                // Mutate a valid message: flip bytes and cut it.
                let m = &samples[rng.below(samples.len() as u64) as usize];
                let mut b = m.encode();
                for _ in 0..rng.below(4) {
                    let at = rng.below(b.len() as u64) as usize;
                    b[at] = rng.next_u64() as u8;
                }
                b.truncate(rng.below(b.len() as u64 + 1) as usize);
                let _ = Msg::decode(m.msg_type(), &b);
                b
            } else {
                let len = rng.below(4200) as usize;
                rng.bytes(len)
            };
            if let Ok(m) = Msg::decode(t, &buf) {
                // Whatever decodes encodes again into something that decodes the same.
                let again = m.encode();
                assert_eq!(Msg::decode(m.msg_type(), &again).unwrap(), m, "seed {s}");
            }
        }
    }
}
