//! [`Cluster`]: this node's o2cb cluster stack in one value, what `o2cb online` and the kernel's
//! o2nm, o2hb, o2net and o2quo do together.
//!
//! Starting a cluster reads `cluster.conf` and the o2cb timeouts, starts o2net on this node's
//! address and membership over it. Heartbeat regions are added while it runs: a volume's own
//! heartbeat file (local heartbeat, one region per mounted volume), or the devices named by the
//! `heartbeat:` stanzas (global heartbeat).
//!
//! Invariants:
//! - every heartbeat write of this node goes through a [`FencedDevice`] on the node's one
//!   [`FenceSwitch`]; the application must send its own writes through
//!   [`Cluster::fenced`] too, so that a fence stops them all;
//! - the timeouts are the same everywhere they are used: the heartbeat's interval and dead
//!   threshold, o2net's handshake (idle, keepalive, reconnect, and the heartbeat's max write
//!   timeout) and the quorum delay all come from one [`Timeouts`].

use super::config::{ClusterConfig, ConfigError, HeartbeatMode, NodeStanza, DEFAULT_PATH};
use super::heartbeat::{
    FenceSwitch, FencedDevice, Heartbeat, HeartbeatConfig, HeartbeatError, HeartbeatRegion, NodeMap, SystemClock,
};
use super::membership::{FenceAction, FenceReason, MemberEvent, Membership};
use super::net::{Net, NetConfig, NetError, NetNode, NetTimeouts};
use super::quorum::Decision;
use super::timeouts::{Timeouts, DEFAULT_HEARTBEAT_INTERVAL_MS};
use crate::device::{open_device, BlockDevice};
use crate::format::superblock::{SuperBlock, CLUSTER_O2CB_GLOBAL_HEARTBEAT};
use crate::format::{DINODE_ID2_OFFSET, FEATURE_INCOMPAT_CLUSTERINFO, SUPER_BLOCK_BLKNO};
use crate::fs::{MountOptions, Volume};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Where timeout overrides come from.
#[derive(Debug, Clone, Default)]
pub enum Environment {
    /// The process environment (`O2CB_HEARTBEAT_THRESHOLD=...` and friends). The default.
    #[default]
    Process,
    /// No overrides: the settings file alone.
    Ignore,
    /// These variables instead of the process environment.
    Vars(HashMap<String, String>),
}

impl Environment {
    fn get(&self, key: &str) -> Option<String> {
        match self {
            Environment::Process => std::env::var(key).ok(),
            Environment::Ignore => None,
            Environment::Vars(v) => v.get(key).cloned(),
        }
    }
}

/// How to start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The cluster layout; `/etc/ocfs2/cluster.conf` by default.
    pub config_path: PathBuf,
    /// This node's name in it; by default the host name (as o2cb matches it).
    pub node_name: Option<String>,
    /// The o2cb settings file with the timeouts; by default `/etc/sysconfig/o2cb` or
    /// `/etc/default/o2cb`, whichever exists (none: the kernel's defaults).
    pub defaults_path: Option<PathBuf>,
    /// Overrides of the settings, by variable name.
    pub env: Environment,
    /// What to do after the fence switch is thrown.
    pub fence: FenceAction,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            config_path: PathBuf::from(DEFAULT_PATH),
            node_name: None,
            defaults_path: None,
            env: Environment::Process,
            fence: FenceAction::Abort,
        }
    }
}

/// Why the cluster could not start or do what was asked.
#[derive(Debug, Clone)]
pub enum ClusterError {
    /// cluster.conf or the o2cb settings.
    Config(ConfigError),
    /// o2net could not start.
    Net(NetError),
    /// A heartbeat could not start or stop.
    Heartbeat(HeartbeatError),
    /// A device could not be opened or read as an OCFS2 volume.
    Device { device: String, message: String },
    /// This node has fenced itself: it must be restarted.
    Fenced(FenceReason),
    /// A heartbeat already runs on that region.
    AlreadyHeartbeating(String),
    /// No heartbeat runs on that region.
    NoSuchRegion(String),
    /// A thread could not be started.
    Thread(String),
}

impl ClusterError {
    /// The errno a C caller should see.
    pub fn errno(&self) -> i32 {
        match self {
            ClusterError::Config(e) => e.errno(),
            ClusterError::Net(e) => e.errno(),
            ClusterError::Heartbeat(HeartbeatError::Device(e)) => e.errno(),
            ClusterError::Heartbeat(HeartbeatError::Clash(_)) => libc::EEXIST,
            ClusterError::Heartbeat(_) => libc::EIO,
            ClusterError::Device { .. } => libc::EINVAL,
            ClusterError::Fenced(_) => libc::EIO,
            ClusterError::AlreadyHeartbeating(_) => libc::EEXIST,
            ClusterError::NoSuchRegion(_) => libc::ENOENT,
            ClusterError::Thread(_) => libc::EAGAIN,
        }
    }
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Config(e) => write!(f, "{e}"),
            ClusterError::Net(e) => write!(f, "o2net: {e}"),
            ClusterError::Heartbeat(e) => write!(f, "{e}"),
            ClusterError::Device { device, message } => write!(f, "{device}: {message}"),
            ClusterError::Fenced(r) => write!(f, "this node has fenced itself ({r}); restart it"),
            ClusterError::AlreadyHeartbeating(r) => write!(f, "a heartbeat already runs on region {r}"),
            ClusterError::NoSuchRegion(r) => write!(f, "no heartbeat runs on region {r}"),
            ClusterError::Thread(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for ClusterError {}

impl From<ConfigError> for ClusterError {
    fn from(e: ConfigError) -> Self {
        ClusterError::Config(e)
    }
}

impl From<NetError> for ClusterError {
    fn from(e: NetError) -> Self {
        ClusterError::Net(e)
    }
}

impl From<HeartbeatError> for ClusterError {
    fn from(e: HeartbeatError) -> Self {
        ClusterError::Heartbeat(e)
    }
}

struct RunningRegion {
    heartbeat: Heartbeat,
    device: String,
}

/// This node's cluster stack, running. Dropping it stops it.
pub struct Cluster {
    config: ClusterConfig,
    local: NodeStanza,
    mode: HeartbeatMode,
    timeouts: Timeouts,
    fence: FenceSwitch,
    net: Arc<Net>,
    membership: Membership,
    regions: Mutex<BTreeMap<String, RunningRegion>>,
}

impl Cluster {
    /// Reads the configuration and timeouts, then brings this node online: o2net listening on
    /// its address, membership watching it. No heartbeat runs until a region is added.
    pub fn start(options: ClusterOptions) -> Result<Cluster, ClusterError> {
        let config = ClusterConfig::load(&options.config_path)?;
        let timeouts = Timeouts::load(options.defaults_path.as_deref(), |k| options.env.get(k))?;
        Cluster::start_with(config, options.node_name.as_deref(), timeouts, options.fence)
    }

    /// [`start`](Self::start) from a configuration and timeouts already read.
    pub fn start_with(
        config: ClusterConfig,
        node_name: Option<&str>,
        timeouts: Timeouts,
        fence: FenceAction,
    ) -> Result<Cluster, ClusterError> {
        config.validate()?;
        timeouts.validate()?;
        let local = config.local_node(node_name)?.clone();
        let cluster = config.cluster(&local.cluster).ok_or_else(|| {
            ConfigError::new(&config.origin, None, format!("there is no cluster named {}", local.cluster))
        })?;
        let mode = cluster.heartbeat_mode;
        let peers: Vec<NetNode> = config
            .nodes_of(&local.cluster)
            .filter(|n| n.number != local.number)
            .map(|n| NetNode::new(n.number, n.name.clone(), SocketAddr::V4(n.socket_addr())))
            .collect();
        let net_timeouts = net_timeouts(&timeouts);
        let net_config = NetConfig {
            local: NetNode::new(local.number, local.name.clone(), SocketAddr::V4(local.socket_addr())),
            peers,
            timeouts: net_timeouts,
            send_timeout: timeouts.idle_timeout(),
        };
        let net = Arc::new(Net::start(net_config)?);
        let switch = FenceSwitch::new();
        let quorum_delay = Duration::from_millis(timeouts.quorum_delay_ms());
        let membership = Membership::start(local.number, mode, quorum_delay, net.clone(), switch.clone(), fence)
            .map_err(|e| ClusterError::Thread(e.to_string()))?;
        log::info!(
            "o2cb: node {} ({}) of cluster {} online at {}",
            local.name,
            local.number,
            local.cluster,
            net.local_addr()
        );
        Ok(Cluster {
            config,
            local,
            mode,
            timeouts,
            fence: switch,
            net,
            membership,
            regions: Mutex::new(BTreeMap::new()),
        })
    }

    /// The configuration the cluster runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// This node's stanza.
    pub fn local_node(&self) -> &NodeStanza {
        &self.local
    }

    pub fn cluster_name(&self) -> &str {
        &self.local.cluster
    }

    pub fn heartbeat_mode(&self) -> HeartbeatMode {
        self.mode
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// What every heartbeat of this node runs with.
    pub fn heartbeat_config(&self) -> HeartbeatConfig {
        HeartbeatConfig {
            interval: self.timeouts.heartbeat_interval(),
            dead_threshold: self.timeouts.heartbeat_threshold,
            nodes: self.config.nodes_of(&self.local.cluster).map(|n| n.number).collect(),
        }
    }

    /// o2net of this node, for the DLM: register handlers, send messages.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The switch a fence throws.
    pub fn fence_switch(&self) -> FenceSwitch {
        self.fence.clone()
    }

    /// `dev` behind this node's fence switch: use it for every write to a shared device.
    pub fn fenced<D: BlockDevice>(&self, dev: D) -> FencedDevice<D> {
        FencedDevice::new(dev, self.fence.clone())
    }

    /// Why this node fenced, if it has.
    pub fn fenced_reason(&self) -> Option<FenceReason> {
        self.membership.fenced()
    }

    /// Member events: peers up, down, unreachable; this node fenced.
    pub fn subscribe(&self) -> mpsc::Receiver<MemberEvent> {
        self.membership.subscribe()
    }

    /// Peers that heartbeat and are connected.
    pub fn members(&self) -> NodeMap {
        self.membership.members()
    }

    /// Nodes that heartbeat in some region, this node included.
    pub fn live_nodes(&self) -> NodeMap {
        self.membership.heartbeat_live()
    }

    /// The last quorum decision, if one was made.
    pub fn last_quorum_decision(&self) -> Option<Decision> {
        self.membership.last_decision()
    }

    /// Starts heartbeating as this node on `region` of `device`, under the name `name` (a
    /// volume's UUID in upper-case hex, as o2cb names regions), and lets membership follow it.
    /// Returns once the region is steady: nodes already heartbeating there are live by then.
    ///
    /// `device` is wrapped in this node's fence switch. A device that can hold a write back
    /// above the media (a cache, a fault injector) should have [`fenced`](Self::fenced)
    /// innermost too, so that a write released after a fence is still refused.
    pub fn heartbeat_region(
        &self,
        name: &str,
        device: Arc<dyn BlockDevice>,
        region: HeartbeatRegion,
    ) -> Result<(), ClusterError> {
        self.heartbeat_region_on(name, device, region, name.to_string())
    }

    fn heartbeat_region_on(
        &self,
        name: &str,
        device: Arc<dyn BlockDevice>,
        region: HeartbeatRegion,
        description: String,
    ) -> Result<(), ClusterError> {
        if let Some(r) = self.membership.fenced() {
            return Err(ClusterError::Fenced(r));
        }
        let mut regions = self.regions.lock();
        if regions.contains_key(name) {
            return Err(ClusterError::AlreadyHeartbeating(name.to_string()));
        }
        let node_fenced: Arc<dyn BlockDevice> = Arc::new(FencedDevice::new(device, self.fence.clone()));
        // Local heartbeat: a missed write on any volume fences the node, so the region throws
        // the node's switch itself. Global: a region fails alone, and membership fences when
        // half of them failed.
        let (dev, switch): (Arc<dyn BlockDevice>, FenceSwitch) = match self.mode {
            HeartbeatMode::Local => (node_fenced, self.fence.clone()),
            HeartbeatMode::Global => {
                let own = FenceSwitch::new();
                (Arc::new(FencedDevice::new(node_fenced, own.clone())), own)
            }
        };
        // Membership follows the region from its first read, so that peers already heartbeating
        // are dialled while our start settles, as the kernel does. If the start fails, the
        // sender is dropped and membership sees the region close.
        let (events, stream) = std::sync::mpsc::channel();
        self.membership.add_region(name, stream).map_err(|e| ClusterError::Thread(e.to_string()))?;
        let hb = Heartbeat::start_with_subscriber(
            dev,
            region,
            self.local.number,
            self.heartbeat_config(),
            Arc::new(SystemClock::new()),
            switch,
            Some(events),
        )?;
        log::info!("o2hb: heartbeat started on region {name} ({description})");
        regions.insert(name.to_string(), RunningRegion { heartbeat: hb, device: description });
        Ok(())
    }

    /// Opens `device` (a path, or an `nbd://` URL), reads where its volume's heartbeat file is,
    /// and heartbeats there under the volume's UUID, as a mount does in local heartbeat mode.
    /// Returns the region name (the UUID).
    pub fn heartbeat_device(&self, device: &str) -> Result<String, ClusterError> {
        let dev_err = |message: String| ClusterError::Device { device: device.to_string(), message };
        if self.mode == HeartbeatMode::Global {
            return Err(dev_err(format!(
                "cluster {} uses global heartbeat: its regions are started with start_global_heartbeat",
                self.local.cluster
            )));
        }
        let dev: Arc<dyn BlockDevice> = Arc::from(open_device(device, true).map_err(|e| dev_err(e.to_string()))?);
        let vr = volume_region(dev.clone()).map_err(dev_err)?;
        if let Some(c) = vr.cluster.as_ref().filter(|c| **c != self.local.cluster) {
            return Err(dev_err(format!(
                "the volume belongs to cluster {c}, this node to cluster {}",
                self.local.cluster
            )));
        }
        if vr.global {
            return Err(dev_err(
                "the volume was formatted for global heartbeat; this cluster heartbeats locally".into(),
            ));
        }
        self.heartbeat_region_on(&vr.uuid, dev, vr.region, device.to_string())?;
        Ok(vr.uuid)
    }

    /// Global heartbeat: starts a heartbeat on the device of every region the `heartbeat:`
    /// stanzas of this cluster name, found among `candidates` (paths or `nbd://` URLs) by volume
    /// UUID, or among the block devices of `/proc/partitions` when `candidates` is empty.
    /// Returns the regions started; a region whose device is not found is an error.
    pub fn start_global_heartbeat(&self, candidates: &[String]) -> Result<Vec<String>, ClusterError> {
        let wanted: Vec<String> =
            self.config.heartbeats_of(&self.local.cluster).map(|h| h.region.to_ascii_uppercase()).collect();
        if wanted.is_empty() {
            return Err(ConfigError::new(
                &self.config.origin,
                None,
                format!("cluster {} has no heartbeat: stanzas", self.local.cluster),
            )
            .into());
        }
        let candidates = if candidates.is_empty() { partition_devices() } else { candidates.to_vec() };
        let mut found: BTreeMap<String, (String, Arc<dyn BlockDevice>, HeartbeatRegion)> = BTreeMap::new();
        for spec in &candidates {
            let Ok(dev) = open_device(spec, true) else { continue };
            let dev: Arc<dyn BlockDevice> = Arc::from(dev);
            if let Ok(vr) = volume_region(dev.clone()) {
                if wanted.contains(&vr.uuid) && !found.contains_key(&vr.uuid) {
                    found.insert(vr.uuid, (spec.clone(), dev, vr.region));
                }
            }
        }
        let missing: Vec<&String> = wanted.iter().filter(|w| !found.contains_key(*w)).collect();
        if !missing.is_empty() {
            return Err(ClusterError::Device {
                device: candidates.join(", "),
                message: format!(
                    "no device holds heartbeat region {}",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let mut started = Vec::new();
        for (uuid, (spec, dev, region)) in found {
            self.heartbeat_region_on(&uuid, dev, region, spec)?;
            started.push(uuid);
        }
        Ok(started)
    }

    /// Stops the heartbeat on region `name`: this node's block is written once more with
    /// generation 0 so that peers see it leave at once. Its nodes stop counting for
    /// membership; a peer live in no other region is reported down.
    pub fn stop_heartbeat(&self, name: &str) -> Result<(), ClusterError> {
        let region = self.regions.lock().remove(name).ok_or_else(|| ClusterError::NoSuchRegion(name.to_string()))?;
        let result = region.heartbeat.stop();
        // The heartbeat is gone; let membership report what that changes before returning.
        self.membership.wait_region_closed(name, Duration::from_secs(5));
        result.map_err(ClusterError::from)
    }

    /// Regions heartbeating now: (name, device).
    pub fn regions(&self) -> Vec<(String, String)> {
        self.regions.lock().iter().map(|(k, v)| (k.clone(), v.device.clone())).collect()
    }

    /// What `o2cb status` shows for this node.
    pub fn status(&self) -> ClusterStatus {
        let names: BTreeMap<u8, String> =
            self.config.nodes_of(&self.local.cluster).map(|n| (n.number, n.name.clone())).collect();
        let members = self.membership.members();
        let connected: NodeMap = self.net.connected_nodes().into_iter().collect();
        let live = self
            .membership
            .heartbeat_live()
            .iter()
            .map(|n| LiveNode {
                number: n,
                name: names.get(&n).cloned().unwrap_or_else(|| n.to_string()),
                this_node: n == self.local.number,
                connected: n == self.local.number || connected.contains(n),
                member: members.contains(n),
            })
            .collect();
        ClusterStatus {
            cluster: self.local.cluster.clone(),
            node: self.local.name.clone(),
            number: self.local.number,
            fenced: self.membership.fenced(),
            timeouts: self.timeouts,
            mode: self.mode,
            regions: self.regions(),
            live,
        }
    }

    /// Takes this node offline: every heartbeat stops (peers see it leave), then membership,
    /// then o2net. Returns the first error met.
    pub fn stop(self) -> Result<(), ClusterError> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<(), ClusterError> {
        let regions = std::mem::take(&mut *self.regions.lock());
        let mut first = None;
        for (name, r) in regions {
            if let Err(e) = r.heartbeat.stop() {
                log::warn!("o2hb: region {name}: {e}");
                first.get_or_insert(ClusterError::from(e));
            }
            // Subscribers hear the downs this causes before their stream ends.
            self.membership.wait_region_closed(&name, Duration::from_secs(5));
        }
        self.membership.stop();
        self.net.stop();
        match (first, self.membership.fenced()) {
            (_, Some(r)) => Err(ClusterError::Fenced(r)),
            (Some(e), None) => Err(e),
            (None, None) => Ok(()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The o2net timeouts that go with the o2cb ones; the handshake carries the heartbeat's max
/// write timeout as the kernel does.
pub fn net_timeouts(t: &Timeouts) -> NetTimeouts {
    NetTimeouts {
        idle_timeout_ms: t.idle_timeout_ms,
        keepalive_delay_ms: t.keepalive_delay_ms,
        reconnect_delay_ms: t.reconnect_delay_ms,
        heartbeat_timeout_ms: u32::try_from(t.max_write_timeout_ms()).unwrap_or(u32::MAX),
    }
}

/// Where a volume heartbeats, as its superblock and heartbeat file say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRegion {
    /// The region name: the volume UUID in upper-case hex.
    pub uuid: String,
    pub region: HeartbeatRegion,
    /// The cluster the volume was formatted for, when it records one.
    pub cluster: Option<String>,
    /// Formatted for global heartbeat (`ci_stackflags`).
    pub global: bool,
}

/// The heartbeat region of the OCFS2 volume on `dev`.
pub fn volume_region(dev: Arc<dyn BlockDevice>) -> Result<VolumeRegion, String> {
    let vol = Volume::open(dev.clone(), MountOptions::default()).map_err(|e| e.to_string())?;
    let info = vol.info().clone();
    if info.is_local() {
        return Err("the volume was formatted for local mounts only (-M local): it has no heartbeat".into());
    }
    let area = vol.heartbeat_area().map_err(|e| e.to_string())?;
    drop(vol);
    // ci_stackflags is not in VolumeInfo: read it from the superblock's first 512 bytes.
    let mut head = [0u8; 512];
    dev.read_at(SUPER_BLOCK_BLKNO * u64::from(info.block_size), &mut head).map_err(|e| e.to_string())?;
    let sb = SuperBlock::decode(&head[DINODE_ID2_OFFSET..]).map_err(|e| e.to_string())?;
    let global = info.cluster_stack.as_deref() == Some("o2cb")
        && info.feature_incompat & FEATURE_INCOMPAT_CLUSTERINFO != 0
        && sb.s_cluster_info.ci_stackflags & CLUSTER_O2CB_GLOBAL_HEARTBEAT != 0;
    Ok(VolumeRegion {
        uuid: info.uuid_hex(),
        region: HeartbeatRegion::new(area.start_byte, area.sector_size, area.blocks),
        cluster: info.cluster_name.filter(|c| !c.is_empty()),
        global,
    })
}

/// `/dev/NAME` for every entry of `/proc/partitions`, as o2cb and mounted.ocfs2 scan them.
pub fn partition_devices() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/partitions").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[0].parse::<u32>().is_ok()).then(|| format!("/dev/{}", f[3]))
        })
        .collect()
}

/// A live node as [`ClusterStatus`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    pub number: u8,
    pub name: String,
    pub this_node: bool,
    /// A connection is up (always true for this node).
    pub connected: bool,
    /// Up as membership reports it.
    pub member: bool,
}

/// What `o2cb status` shows, for one running node. `Display` prints it in o2cb's words.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub cluster: String,
    pub node: String,
    pub number: u8,
    pub fenced: Option<FenceReason>,
    pub timeouts: Timeouts,
    pub mode: HeartbeatMode,
    /// Regions heartbeating: (name, device).
    pub regions: Vec<(String, String)>,
    /// Nodes whose heartbeat is live, this node included.
    pub live: Vec<LiveNode>,
}

impl fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fenced {
            None => writeln!(f, "Checking O2CB cluster \"{}\": Online", self.cluster)?,
            Some(r) => writeln!(f, "Checking O2CB cluster \"{}\": Fenced ({r})", self.cluster)?,
        }
        writeln!(f, "  Heartbeat dead threshold: {}", self.timeouts.heartbeat_threshold)?;
        if self.timeouts.heartbeat_interval_ms != DEFAULT_HEARTBEAT_INTERVAL_MS {
            writeln!(f, "  Heartbeat interval: {}", self.timeouts.heartbeat_interval_ms)?;
        }
        writeln!(f, "  Network idle timeout: {}", self.timeouts.idle_timeout_ms)?;
        writeln!(f, "  Network keepalive delay: {}", self.timeouts.keepalive_delay_ms)?;
        writeln!(f, "  Network reconnect delay: {}", self.timeouts.reconnect_delay_ms)?;
        let mode = match self.mode {
            HeartbeatMode::Local => "Local",
            HeartbeatMode::Global => "Global",
        };
        writeln!(f, "  Heartbeat mode: {mode}")?;
        if self.regions.is_empty() {
            writeln!(f, "Checking O2CB heartbeat: Not active")?;
        } else {
            writeln!(f, "Checking O2CB heartbeat: Active")?;
            for (name, dev) in &self.regions {
                writeln!(f, "  {name} {dev}")?;
            }
        }
        let nodes: Vec<String> = self
            .live
            .iter()
            .map(|n| {
                let note = if n.this_node {
                    ", this node"
                } else if !n.connected {
                    ", not connected"
                } else {
                    ""
                };
                format!("{} ({}{note})", n.name, n.number)
            })
            .collect();
        if nodes.is_empty() {
            writeln!(f, "Live nodes: none")
        } else {
            writeln!(f, "Live nodes: {}", nodes.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::membership::FenceAction;
    use crate::device::MemDevice;
    use std::time::Instant;

    fn config(port: u16, nodes: &[(&str, u8, &str)]) -> ClusterConfig {
        let mut c = ClusterConfig::empty("test.conf");
        c.add_cluster("unit").unwrap();
        for (name, num, ip) in nodes {
            c.add_node("unit", name, ip.parse().unwrap(), Some(port), Some(*num)).unwrap();
        }
        c
    }

    fn fast() -> Timeouts {
        Timeouts {
            heartbeat_threshold: 6,
            heartbeat_interval_ms: 100,
            idle_timeout_ms: 1000,
            keepalive_delay_ms: 200,
            reconnect_delay_ms: 200,
        }
    }

    fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        f()
    }

    #[test]
    fn the_timeouts_reach_the_handshake_and_the_status_prints_like_o2cb() {
        let t = Timeouts::default();
        let n = net_timeouts(&t);
        assert_eq!(
            (n.idle_timeout_ms, n.keepalive_delay_ms, n.reconnect_delay_ms, n.heartbeat_timeout_ms),
            (30000, 2000, 2000, 60000)
        );

        let c = config(47_211, &[("solo", 0, "127.0.9.1")]);
        let cluster = Cluster::start_with(c, Some("solo"), t, FenceAction::callback(|_| {})).unwrap();
        assert_eq!(cluster.heartbeat_config().interval, Duration::from_millis(2000));
        assert_eq!(cluster.heartbeat_config().dead_threshold, 31);
        let s = cluster.status().to_string();
        assert_eq!(
            s,
            "Checking O2CB cluster \"unit\": Online\n  Heartbeat dead threshold: 31\n  Network idle timeout: 30000\n  \
             Network keepalive delay: 2000\n  Network reconnect delay: 2000\n  Heartbeat mode: Local\n\
             Checking O2CB heartbeat: Not active\nLive nodes: none\n"
        );
        cluster.stop().unwrap();
    }

    #[test]
    fn two_nodes_in_one_process_see_each_other_on_a_shared_memory_disk() {
        let nodes = [("alpha", 0, "127.0.9.2"), ("beta", 1, "127.0.9.3")];
        let disk: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(64 * 1024));
        let region = HeartbeatRegion::new(4096, 512, 8);
        let a =
            Cluster::start_with(config(47_212, &nodes), Some("alpha"), fast(), FenceAction::callback(|_| {})).unwrap();
        let b =
            Cluster::start_with(config(47_212, &nodes), Some("beta"), fast(), FenceAction::callback(|_| {})).unwrap();
        let events = a.subscribe();
        let (ra, rb) = std::thread::scope(|s| {
            let ra = s.spawn(|| a.heartbeat_region("R", disk.clone(), region));
            let rb = s.spawn(|| b.heartbeat_region("R", disk.clone(), region));
            (ra.join().unwrap(), rb.join().unwrap())
        });
        ra.unwrap();
        rb.unwrap();
        assert!(matches!(a.heartbeat_region("R", disk.clone(), region), Err(ClusterError::AlreadyHeartbeating(_))));
        assert!(
            wait_until(Duration::from_secs(5), || a.members().to_vec() == vec![1] && b.members().to_vec() == vec![0])
        );
        assert_eq!(events.recv_timeout(Duration::from_secs(1)).unwrap(), MemberEvent::NodeUp(1));
        let s = a.status().to_string();
        assert!(s.contains("Checking O2CB heartbeat: Active\n  R R\n"), "{s}");
        assert!(s.contains("Heartbeat interval: 100\n"), "{s}");
        assert!(s.ends_with("Live nodes: alpha (0, this node), beta (1)\n"), "{s}");
        // beta leaves cleanly: alpha sees it go at its next read, long before the threshold.
        let t0 = Instant::now();
        b.stop().unwrap();
        // Its connection may close before alpha reads the leaving block.
        let mut seen = Vec::new();
        while let Ok(e) = events.recv_timeout(Duration::from_secs(2)) {
            seen.push(e.clone());
            if e == MemberEvent::NodeDown(1) {
                break;
            }
        }
        assert!(
            seen == [MemberEvent::NodeDown(1)] || seen == [MemberEvent::Unreachable(1), MemberEvent::NodeDown(1)],
            "{seen:?}"
        );
        assert!(t0.elapsed() < Duration::from_millis(600), "{:?}", t0.elapsed());
        assert!(a.fenced_reason().is_none());
        a.stop().unwrap();
    }
}
