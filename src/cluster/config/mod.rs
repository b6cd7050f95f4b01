//! `/etc/ocfs2/cluster.conf`: the o2cb cluster layout (what the kernel's o2nm holds in configfs),
//! read, checked and written in the stanza format of ocfs2-tools.
//!
//! Invariants:
//! - [`ClusterConfig::parse`] returns only stanzas whose own values are well formed: names,
//!   numbers 0..=254, IPv4 addresses of one host, ports 1..=65534, known keys, each key once.
//!   Anything else is refused with every problem found, each with its line.
//! - [`ClusterConfig::validate`] checks the rules between stanzas: every node and heartbeat
//!   region belongs to a defined cluster, no two nodes of a cluster share a name, a number, or an
//!   address and port, and node_count agrees with the node stanzas.
//! - What [`ClusterConfig`]'s `Display` writes, `parse` reads back to an equal configuration,
//!   and `o2cb --config-file` reads it the same way.
//!
//! Our checks are stricter than ocfs2-tools, which silently ignores unknown keys and stanzas,
//! nodes of unknown clusters and a wrong node_count (each almost always a typing mistake), and
//! leaves number 255 or port 0 for the kernel to refuse when the cluster goes online.

mod error;
mod syntax;

pub use error::{ConfigError, Problem};

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

/// Where o2cb keeps the cluster layout.
pub const DEFAULT_PATH: &str = "/etc/ocfs2/cluster.conf";
/// The o2net port `o2cb add-node` uses when none is given.
pub const DEFAULT_PORT: u16 = 7777;
/// Nodes a cluster can hold (`O2NM_MAX_NODES`); numbers go from 0 to 254.
pub const MAX_NODES: u32 = 255;
/// The highest node number.
pub const MAX_NODE_NUMBER: u8 = 254;
/// Longest node name (`O2NM_MAX_NAME_LEN`).
pub const MAX_NODE_NAME_LEN: usize = 64;
/// Longest cluster name (`OCFS2_CLUSTER_NAME_LEN`, the superblock's ci_cluster field).
pub const MAX_CLUSTER_NAME_LEN: usize = 16;
/// Global heartbeat regions a cluster can have (`O2NM_MAX_REGIONS`).
pub const MAX_REGIONS: usize = 32;
/// Length of a region name: the volume UUID as hex digits (`O2HB_MAX_REGION_NAME_LEN`).
pub const REGION_LEN: usize = 32;

const CLUSTER_KEYS: &[&str] = &["node_count", "heartbeat_mode", "name"];
const NODE_KEYS: &[&str] = &["ip_port", "ip_address", "number", "name", "cluster"];
const HEARTBEAT_KEYS: &[&str] = &["region", "cluster"];

/// Where a cluster's nodes heartbeat: on each mounted volume, or on the regions listed in
/// `heartbeat:` stanzas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeartbeatMode {
    #[default]
    Local,
    Global,
}

impl HeartbeatMode {
    /// The word cluster.conf uses.
    pub fn as_str(self) -> &'static str {
        match self {
            HeartbeatMode::Local => "local",
            HeartbeatMode::Global => "global",
        }
    }

    /// Reads `local` or `global` in any case, as o2cb does.
    pub fn parse(s: &str) -> Option<HeartbeatMode> {
        if s.eq_ignore_ascii_case("local") {
            Some(HeartbeatMode::Local)
        } else if s.eq_ignore_ascii_case("global") {
            Some(HeartbeatMode::Global)
        } else {
            None
        }
    }
}

impl fmt::Display for HeartbeatMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lines a stanza was read from, so that later checks can point at them. Line numbers say
/// where a stanza was written, not what it says, so they never make two stanzas unequal.
#[derive(Debug, Clone, Default)]
pub struct Lines {
    /// Line of the stanza header; 0 for a stanza made in code.
    pub header: usize,
    keys: Vec<(&'static str, usize)>,
}

impl Lines {
    /// The line of `key`, else of the header; `None` for a stanza made in code.
    pub fn of(&self, key: &str) -> Option<usize> {
        self.keys.iter().find(|(k, _)| *k == key).map(|&(_, l)| l).or((self.header > 0).then_some(self.header))
    }
}

impl PartialEq for Lines {
    fn eq(&self, _: &Lines) -> bool {
        true
    }
}

impl Eq for Lines {}

/// A `cluster:` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStanza {
    pub name: String,
    pub node_count: u32,
    pub heartbeat_mode: HeartbeatMode,
    pub lines: Lines,
}

/// A `node:` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStanza {
    pub name: String,
    pub cluster: String,
    pub number: u8,
    pub ip_address: Ipv4Addr,
    pub ip_port: u16,
    pub lines: Lines,
}

impl NodeStanza {
    /// Where this node's o2net listens.
    pub fn socket_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip_address, self.ip_port)
    }
}

/// A `heartbeat:` stanza: one global heartbeat region, named by its volume's UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatStanza {
    pub region: String,
    pub cluster: String,
    pub lines: Lines,
}

/// The contents of a cluster.conf. `origin` (the file name) prefixes every error message.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub origin: String,
    pub clusters: Vec<ClusterStanza>,
    pub nodes: Vec<NodeStanza>,
    pub heartbeats: Vec<HeartbeatStanza>,
}

impl PartialEq for ClusterConfig {
    /// Two configurations are equal when they say the same, whichever file they came from.
    fn eq(&self, other: &ClusterConfig) -> bool {
        self.clusters == other.clusters && self.nodes == other.nodes && self.heartbeats == other.heartbeats
    }
}

impl Eq for ClusterConfig {}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig::empty(DEFAULT_PATH)
    }
}

/// The name of this host, as `gethostname(2)` gives it (read from the kernel's UTS name, so no
/// unsafe code is needed).
pub fn host_name() -> std::io::Result<String> {
    let mut last = None;
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        match std::fs::read_to_string(path) {
            Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
            Ok(_) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the host name is empty")))
}

/// Whether cluster node `node` is host `host`: the same name in any case, or `host` is `node`
/// followed by a domain (`appserver1` is `appserver1.example.com`), as o2cb decides.
pub fn is_host(node: &str, host: &str) -> bool {
    let (n, h) = (node.as_bytes(), host.as_bytes());
    if n.is_empty() || h.len() < n.len() || !h[..n.len()].eq_ignore_ascii_case(n) {
        return false;
    }
    h.len() == n.len() || h[n.len()] == b'.'
}

// ---- checks of single values, shared by parse (on text) and validate (on values) ----

fn cluster_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_CLUSTER_NAME_LEN || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Some(format!(
            "cluster name '{}' is not valid: use 1 to {MAX_CLUSTER_NAME_LEN} letters and digits, \
             as o2cb and mkfs.ocfs2 require",
            syntax::preview(name)
        ))
    } else {
        None
    }
}

fn node_name_problem(name: &str) -> Option<String> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_';
    if name.is_empty() || name.len() > MAX_NODE_NAME_LEN || !name.bytes().all(ok_char) {
        Some(format!(
            "node name '{}' is not valid: a node is named by its host name, 1 to {MAX_NODE_NAME_LEN} \
             letters, digits, '.', '-' or '_'",
            syntax::preview(name)
        ))
    } else {
        None
    }
}

fn number_problem(who: &str, number: u64) -> Option<String> {
    (number > u64::from(MAX_NODE_NUMBER))
        .then(|| format!("{who} has number {number}; node numbers go from 0 to {MAX_NODE_NUMBER}"))
}

fn address_problem(who: &str, addr: Ipv4Addr) -> Option<String> {
    (addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast())
        .then(|| format!("{who} has ip_address {addr}, which is not the address of one host"))
}

fn port_problem(who: &str, port: u64) -> Option<String> {
    (port == 0 || port >= 65535).then(|| format!("{who} has ip_port {port}; a port goes from 1 to 65534"))
}

fn node_count_problem(cluster: &str, count: u64) -> Option<String> {
    (count > u64::from(MAX_NODES))
        .then(|| format!("cluster {cluster} has node_count {count}, but a cluster holds at most {MAX_NODES} nodes"))
}

fn region_problem(region: &str, cluster: &str) -> Option<String> {
    let hex = region.len() == REGION_LEN && region.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    (!hex).then(|| {
        format!(
            "heartbeat region '{}' of cluster {cluster} is not a volume UUID: expected {REGION_LEN} \
             uppercase hex digits, as mounted.ocfs2 -d prints it",
            syntax::preview(region)
        )
    })
}

/// A decimal number as strtoul reads it after o2cb trimmed the value: an optional '+', then
/// digits. Too many digits saturate, so that the range check names the number.
fn parse_decimal(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// The known keys of one stanza, each with its value and line.
struct Fields<'a> {
    header: usize,
    values: Vec<(&'static str, &'a str, usize)>,
}

impl<'a> Fields<'a> {
    fn collect(stanza: &'a syntax::RawStanza, keys: &[&'static str], problems: &mut Vec<Problem>) -> Fields<'a> {
        let mut values: Vec<(&'static str, &'a str, usize)> = Vec::new();
        for attr in &stanza.attrs {
            let Some(&key) = keys.iter().find(|k| **k == attr.key) else {
                problems.push(Problem {
                    line: Some(attr.line),
                    message: format!(
                        "unknown key '{}' in a {} stanza; its keys are {}",
                        syntax::preview(&attr.key),
                        stanza.name,
                        keys.join(", ")
                    ),
                });
                continue;
            };
            if let Some(&(_, _, first)) = values.iter().find(|(k, _, _)| *k == key) {
                problems.push(Problem {
                    line: Some(attr.line),
                    message: format!("{key} is given twice in this {} stanza (first on line {first})", stanza.name),
                });
                continue;
            }
            values.push((key, &attr.value, attr.line));
        }
        Fields { header: stanza.line, values }
    }

    fn get(&self, key: &str) -> Option<(&'a str, usize)> {
        self.values.iter().find(|(k, _, _)| *k == key).map(|&(_, v, l)| (v, l))
    }

    /// The value of a key that must be present and not empty.
    fn required(&self, key: &str, who: &str, problems: &mut Vec<Problem>) -> Option<(&'a str, usize)> {
        match self.get(key) {
            None => {
                problems.push(Problem { line: Some(self.header), message: format!("{who} has no {key}") });
                None
            }
            Some(("", line)) => {
                problems.push(Problem { line: Some(line), message: format!("{who} has an empty {key}") });
                None
            }
            Some(found) => Some(found),
        }
    }

    fn lines(&self) -> Lines {
        Lines { header: self.header, keys: self.values.iter().map(|&(k, _, l)| (k, l)).collect() }
    }
}

fn problem(problems: &mut Vec<Problem>, line: usize, message: String) {
    problems.push(Problem { line: Some(line), message });
}

fn read_cluster(f: &Fields<'_>, problems: &mut Vec<Problem>) -> Option<ClusterStanza> {
    let before = problems.len();
    let name = f.required("name", "this cluster stanza", problems).and_then(|(v, l)| match cluster_name_problem(v) {
        Some(m) => {
            problem(problems, l, m);
            None
        }
        None => Some(v),
    });
    let who = name.map_or("this cluster stanza".to_string(), |n| format!("cluster {n}"));
    let node_count = f.required("node_count", &who, problems).and_then(|(v, l)| match parse_decimal(v) {
        None => {
            problem(problems, l, format!("{who} has node_count '{}', which is not a whole number", syntax::preview(v)));
            None
        }
        Some(n) => match node_count_problem(name.unwrap_or("?"), n) {
            Some(m) => {
                problem(problems, l, m);
                None
            }
            None => u32::try_from(n).ok(),
        },
    });
    let heartbeat_mode = match f.get("heartbeat_mode") {
        None => Some(HeartbeatMode::Local),
        Some((v, l)) => {
            let mode = HeartbeatMode::parse(v);
            if mode.is_none() {
                problem(
                    problems,
                    l,
                    format!("{who} has heartbeat_mode '{}'; it must be local or global", syntax::preview(v)),
                );
            }
            mode
        }
    };
    if problems.len() != before {
        return None;
    }
    Some(ClusterStanza {
        name: name?.to_string(),
        node_count: node_count?,
        heartbeat_mode: heartbeat_mode?,
        lines: f.lines(),
    })
}

fn read_node(f: &Fields<'_>, problems: &mut Vec<Problem>) -> Option<NodeStanza> {
    let before = problems.len();
    let name = f.required("name", "this node stanza", problems).and_then(|(v, l)| match node_name_problem(v) {
        Some(m) => {
            problem(problems, l, m);
            None
        }
        None => Some(v),
    });
    let who = name.map_or("this node stanza".to_string(), |n| format!("node {n}"));
    let cluster = f.required("cluster", &who, problems);
    let number = f.required("number", &who, problems).and_then(|(v, l)| match parse_decimal(v) {
        None => {
            problem(problems, l, format!("{who} has number '{}', which is not a whole number", syntax::preview(v)));
            None
        }
        Some(n) => match number_problem(&who, n) {
            Some(m) => {
                problem(problems, l, m);
                None
            }
            None => u8::try_from(n).ok(),
        },
    });
    let ip_address = f.required("ip_address", &who, problems).and_then(|(v, l)| match v.parse::<Ipv4Addr>() {
        Err(_) => {
            problem(
                problems,
                l,
                format!(
                    "{who} has ip_address '{}', which is not an IPv4 address such as 192.168.1.10",
                    syntax::preview(v)
                ),
            );
            None
        }
        Ok(a) => match address_problem(&who, a) {
            Some(m) => {
                problem(problems, l, m);
                None
            }
            None => Some(a),
        },
    });
    let ip_port = f.required("ip_port", &who, problems).and_then(|(v, l)| match parse_decimal(v) {
        None => {
            problem(problems, l, format!("{who} has ip_port '{}', which is not a whole number", syntax::preview(v)));
            None
        }
        Some(p) => match port_problem(&who, p) {
            Some(m) => {
                problem(problems, l, m);
                None
            }
            None => u16::try_from(p).ok(),
        },
    });
    if problems.len() != before {
        return None;
    }
    Some(NodeStanza {
        name: name?.to_string(),
        cluster: cluster?.0.to_string(),
        number: number?,
        ip_address: ip_address?,
        ip_port: ip_port?,
        lines: f.lines(),
    })
}

fn read_heartbeat(f: &Fields<'_>, problems: &mut Vec<Problem>) -> Option<HeartbeatStanza> {
    let before = problems.len();
    let cluster = f.required("cluster", "this heartbeat stanza", problems).map(|(v, _)| v);
    let region = f.required("region", "this heartbeat stanza", problems).and_then(|(v, l)| {
        match region_problem(v, cluster.unwrap_or("?")) {
            Some(m) => {
                problem(problems, l, m);
                None
            }
            None => Some(v),
        }
    });
    if problems.len() != before {
        return None;
    }
    Some(HeartbeatStanza { region: region?.to_string(), cluster: cluster?.to_string(), lines: f.lines() })
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

impl ClusterConfig {
    /// A configuration with no stanzas, whose errors will name `origin`.
    pub fn empty(origin: &str) -> ClusterConfig {
        ClusterConfig { origin: origin.to_string(), clusters: Vec::new(), nodes: Vec::new(), heartbeats: Vec::new() }
    }

    /// Reads the stanzas of `text` and checks each stanza's own values. `origin` names the file
    /// in error messages. Rules between stanzas are left to [`validate`](Self::validate).
    pub fn parse(text: &str, origin: &str) -> Result<ClusterConfig, ConfigError> {
        let mut problems = Vec::new();
        let raw = syntax::parse_stanzas(text, &mut problems);
        let mut config = ClusterConfig::empty(origin);
        for stanza in raw.iter().filter(|s| !s.broken) {
            match stanza.name.as_str() {
                "cluster" => {
                    let f = Fields::collect(stanza, CLUSTER_KEYS, &mut problems);
                    config.clusters.extend(read_cluster(&f, &mut problems));
                }
                "node" => {
                    let f = Fields::collect(stanza, NODE_KEYS, &mut problems);
                    config.nodes.extend(read_node(&f, &mut problems));
                }
                "heartbeat" => {
                    let f = Fields::collect(stanza, HEARTBEAT_KEYS, &mut problems);
                    config.heartbeats.extend(read_heartbeat(&f, &mut problems));
                }
                other => problem(
                    &mut problems,
                    stanza.line,
                    format!(
                        "unknown stanza '{}:'; cluster.conf has only cluster:, node: and heartbeat: stanzas",
                        syntax::preview(other)
                    ),
                ),
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::from_problems(origin, problems))
        }
    }

    /// [`parse`](Self::parse), then [`validate`](Self::validate).
    pub fn check(text: &str, origin: &str) -> Result<ClusterConfig, ConfigError> {
        let config = ClusterConfig::parse(text, origin)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<ClusterConfig, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ConfigError::io(&origin, "cannot read the file", &e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let line = bytes[..valid].iter().filter(|&&b| b == b'\n').count() + 1;
            ConfigError::new(&origin, Some(line), format!("byte 0x{:02x} is not UTF-8 text", bytes[valid]))
        })?;
        ClusterConfig::check(&text, &origin)
    }

    /// Checks the rules between stanzas (and each stanza's values again, for stanzas made or
    /// changed in code). Every problem is reported, each at the line it is on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems(false);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::from_problems(&self.origin, problems))
        }
    }

    /// [`validate`](Self::validate), plus the rule the Linux kernel adds when a kernel node
    /// joins: its o2net tells nodes apart by IPv4 address alone, so no two nodes of a cluster
    /// may share an address even on different ports.
    pub fn validate_for_kernel(&self) -> Result<(), ConfigError> {
        let problems = self.problems(true);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::from_problems(&self.origin, problems))
        }
    }

    fn problems(&self, kernel: bool) -> Vec<Problem> {
        let mut out: Vec<Problem> = Vec::new();
        let mut push = |line: Option<usize>, message: String| out.push(Problem { line, message });

        for (i, c) in self.clusters.iter().enumerate() {
            if let Some(m) = cluster_name_problem(&c.name) {
                push(c.lines.of("name"), m);
            }
            if let Some(m) = node_count_problem(&c.name, u64::from(c.node_count)) {
                push(c.lines.of("node_count"), m);
            }
            if let Some(first) = self.clusters[..i].iter().find(|o| o.name == c.name) {
                push(
                    c.lines.of("name"),
                    format!("cluster {} is defined twice{}", c.name, first_on(&first.lines, "name")),
                );
            }
        }
        let known = |name: &str| self.clusters.iter().any(|c| c.name == name);
        let cluster_list = || {
            if self.clusters.is_empty() {
                "the file defines no cluster".to_string()
            } else {
                let names: Vec<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
                format!("the file defines {}", names.join(", "))
            }
        };

        for (i, n) in self.nodes.iter().enumerate() {
            let who = format!("node {}", n.name);
            if let Some(m) = node_name_problem(&n.name) {
                push(n.lines.of("name"), m);
            }
            if let Some(m) = number_problem(&who, u64::from(n.number)) {
                push(n.lines.of("number"), m);
            }
            if let Some(m) = address_problem(&who, n.ip_address) {
                push(n.lines.of("ip_address"), m);
            }
            if let Some(m) = port_problem(&who, u64::from(n.ip_port)) {
                push(n.lines.of("ip_port"), m);
            }
            if !known(&n.cluster) {
                push(
                    n.lines.of("cluster"),
                    format!(
                        "{who} belongs to cluster {}, but no cluster: stanza defines it ({})",
                        syntax::preview(&n.cluster),
                        cluster_list()
                    ),
                );
            }
            let earlier = self.nodes[..i].iter().filter(|o| o.cluster == n.cluster);
            for o in earlier {
                if o.name == n.name {
                    push(
                        n.lines.of("name"),
                        format!("{who} is defined twice in cluster {}{}", n.cluster, first_on(&o.lines, "name")),
                    );
                } else if o.number == n.number {
                    push(
                        n.lines.of("number"),
                        format!("node {} and node {} both have number {}", o.name, n.name, n.number),
                    );
                } else if o.ip_address == n.ip_address && o.ip_port == n.ip_port {
                    push(
                        n.lines.of("ip_address"),
                        format!("node {} and node {} both use address {}", o.name, n.name, n.socket_addr()),
                    );
                } else if kernel && o.ip_address == n.ip_address {
                    push(
                        n.lines.of("ip_address"),
                        format!(
                            "node {} and node {} both use address {}; the Linux kernel tells nodes apart by \
                             address alone, so a kernel node cannot join this cluster",
                            o.name, n.name, n.ip_address
                        ),
                    );
                }
            }
        }

        for (i, h) in self.heartbeats.iter().enumerate() {
            if let Some(m) = region_problem(&h.region, &h.cluster) {
                push(h.lines.of("region"), m);
            }
            if !known(&h.cluster) {
                push(
                    h.lines.of("cluster"),
                    format!(
                        "heartbeat region {} belongs to cluster {}, but no cluster: stanza defines it ({})",
                        h.region,
                        syntax::preview(&h.cluster),
                        cluster_list()
                    ),
                );
            }
            if let Some(o) = self.heartbeats[..i].iter().find(|o| o.cluster == h.cluster && o.region == h.region) {
                push(
                    h.lines.of("region"),
                    format!(
                        "heartbeat region {} is listed twice for cluster {}{}",
                        h.region,
                        h.cluster,
                        first_on(&o.lines, "region")
                    ),
                );
            }
        }

        for (i, c) in self.clusters.iter().enumerate() {
            if self.clusters[..i].iter().any(|o| o.name == c.name) {
                continue;
            }
            let nodes = self.nodes.iter().filter(|n| n.cluster == c.name).count();
            if u64::from(c.node_count) != nodes as u64 && u64::from(c.node_count) <= u64::from(MAX_NODES) {
                push(
                    c.lines.of("node_count"),
                    format!(
                        "cluster {} has node_count = {}, but {} {} to it",
                        c.name,
                        c.node_count,
                        plural(nodes, "node stanza", "node stanzas"),
                        if nodes == 1 { "belongs" } else { "belong" }
                    ),
                );
            }
            let regions = self.heartbeats.iter().filter(|h| h.cluster == c.name).count();
            if regions > MAX_REGIONS {
                push(
                    c.lines.of("name"),
                    format!("cluster {} lists {regions} heartbeat regions; at most {MAX_REGIONS} are allowed", c.name),
                );
            }
            if c.heartbeat_mode == HeartbeatMode::Global && regions == 0 {
                push(
                    c.lines.of("heartbeat_mode"),
                    format!("cluster {} uses global heartbeat, but no heartbeat: stanza names a region for it", c.name),
                );
            }
        }
        out
    }

    /// The cluster stanza named `name`.
    pub fn cluster(&self, name: &str) -> Option<&ClusterStanza> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The nodes of cluster `cluster`, in file order.
    pub fn nodes_of<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a NodeStanza> + 'a {
        self.nodes.iter().filter(move |n| n.cluster == cluster)
    }

    /// The global heartbeat regions of cluster `cluster`, in file order.
    pub fn heartbeats_of<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a HeartbeatStanza> + 'a {
        self.heartbeats.iter().filter(move |h| h.cluster == cluster)
    }

    /// The node of `cluster` named exactly `name`.
    pub fn node_by_name(&self, cluster: &str, name: &str) -> Option<&NodeStanza> {
        self.nodes.iter().find(|n| n.cluster == cluster && n.name == name)
    }

    /// The node of `cluster` with number `number`.
    pub fn node_by_number(&self, cluster: &str, number: u8) -> Option<&NodeStanza> {
        self.nodes.iter().find(|n| n.cluster == cluster && n.number == number)
    }

    /// This node: the one named `name`, or by default the one named like this host (see
    /// [`is_host`]). An error says which name was looked for and which nodes exist.
    pub fn local_node(&self, name: Option<&str>) -> Result<&NodeStanza, ConfigError> {
        self.find_local(None, name)
    }

    /// [`local_node`](Self::local_node) among the nodes of one cluster.
    pub fn local_node_in(&self, cluster: &str, name: Option<&str>) -> Result<&NodeStanza, ConfigError> {
        if self.cluster(cluster).is_none() {
            return Err(self.error(format!("there is no cluster named {cluster}")).with_errno(libc::ENOENT));
        }
        self.find_local(Some(cluster), name)
    }

    fn find_local(&self, cluster: Option<&str>, name: Option<&str>) -> Result<&NodeStanza, ConfigError> {
        let (wanted, what) = match name {
            Some(n) => (n.to_string(), String::new()),
            None => {
                let host =
                    host_name().map_err(|e| ConfigError::io(&self.origin, "cannot learn this host's name", &e))?;
                (host, " (the name of this host)".to_string())
            }
        };
        let pool: Vec<&NodeStanza> =
            self.nodes.iter().filter(|n| cluster.is_none() || cluster == Some(n.cluster.as_str())).collect();
        let mut found: Vec<&NodeStanza> =
            pool.iter().copied().filter(|n| n.name.eq_ignore_ascii_case(&wanted)).collect();
        if found.is_empty() {
            found = pool.iter().copied().filter(|n| is_host(&n.name, &wanted)).collect();
            // "db1" and "db1.site" both name host "db1.site.example": the longer is meant.
            let longest = found.iter().map(|n| n.name.len()).max().unwrap_or(0);
            found.retain(|n| n.name.len() == longest);
        }
        let mut clusters: Vec<&str> = found.iter().map(|n| n.cluster.as_str()).collect();
        clusters.dedup();
        match found.first() {
            Some(node) if clusters.len() == 1 => Ok(node),
            Some(_) => Err(self.error(format!(
                "node {wanted}{what} is in more than one cluster ({}); say which cluster to use",
                clusters.join(", ")
            ))),
            None => {
                let names: Vec<&str> = pool.iter().take(20).map(|n| n.name.as_str()).collect();
                let listing = match (names.is_empty(), pool.len() > names.len()) {
                    (true, _) => "there are no nodes".to_string(),
                    (false, false) => format!("the nodes are {}", names.join(", ")),
                    (false, true) => format!("the nodes are {}, ...", names.join(", ")),
                };
                let scope = cluster.map(|c| format!(" in cluster {c}")).unwrap_or_default();
                Err(self.error(format!("no node{scope} is named {wanted}{what}; {listing}")).with_errno(libc::ENOENT))
            }
        }
    }

    fn error(&self, message: String) -> ConfigError {
        ConfigError::new(&self.origin, None, message)
    }

    /// Adds cluster `name` with no nodes, as `o2cb add-cluster` does.
    pub fn add_cluster(&mut self, name: &str) -> Result<&ClusterStanza, ConfigError> {
        if let Some(m) = cluster_name_problem(name) {
            return Err(self.error(m));
        }
        if self.cluster(name).is_some() {
            return Err(self.error(format!("cluster {name} already exists")).with_errno(libc::EEXIST));
        }
        self.clusters.push(ClusterStanza {
            name: name.to_string(),
            node_count: 0,
            heartbeat_mode: HeartbeatMode::Local,
            lines: Lines::default(),
        });
        Ok(&self.clusters[self.clusters.len() - 1])
    }

    /// Removes cluster `name` with its nodes and heartbeat regions, as `o2cb remove-cluster`.
    pub fn remove_cluster(&mut self, name: &str) -> Result<ClusterStanza, ConfigError> {
        let Some(i) = self.clusters.iter().position(|c| c.name == name) else {
            return Err(self.error(format!("there is no cluster named {name}")).with_errno(libc::ENOENT));
        };
        self.nodes.retain(|n| n.cluster != name);
        self.heartbeats.retain(|h| h.cluster != name);
        Ok(self.clusters.remove(i))
    }

    /// Adds a node to `cluster` as `o2cb add-node` does: port 7777 and the lowest free number
    /// unless given; node_count grows by one.
    pub fn add_node(
        &mut self,
        cluster: &str,
        name: &str,
        ip_address: Ipv4Addr,
        ip_port: Option<u16>,
        number: Option<u8>,
    ) -> Result<&NodeStanza, ConfigError> {
        if self.cluster(cluster).is_none() {
            return Err(self.error(format!("there is no cluster named {cluster}")).with_errno(libc::ENOENT));
        }
        if let Some(m) = node_name_problem(name) {
            return Err(self.error(m));
        }
        let who = format!("node {name}");
        let port = ip_port.unwrap_or(DEFAULT_PORT);
        if let Some(m) = address_problem(&who, ip_address).or_else(|| port_problem(&who, u64::from(port))) {
            return Err(self.error(m));
        }
        if self.node_by_name(cluster, name).is_some() {
            return Err(self
                .error(format!("cluster {cluster} already has a node named {name}"))
                .with_errno(libc::EEXIST));
        }
        let number = match number {
            Some(n) => {
                if let Some(m) = number_problem(&who, u64::from(n)) {
                    return Err(self.error(m));
                }
                if let Some(o) = self.node_by_number(cluster, n) {
                    return Err(self
                        .error(format!("number {n} is taken by node {} of cluster {cluster}", o.name))
                        .with_errno(libc::EEXIST));
                }
                n
            }
            None => match (0..=MAX_NODE_NUMBER).find(|&n| self.node_by_number(cluster, n).is_none()) {
                Some(n) => n,
                None => {
                    return Err(self
                        .error(format!("cluster {cluster} is full: all {MAX_NODES} node numbers are taken"))
                        .with_errno(libc::ENOSPC))
                }
            },
        };
        if let Some(o) = self.nodes_of(cluster).find(|o| o.ip_address == ip_address && o.ip_port == port) {
            return Err(self
                .error(format!("node {} of cluster {cluster} already uses address {ip_address}:{port}", o.name))
                .with_errno(libc::EEXIST));
        }
        if let Some(c) = self.clusters.iter_mut().find(|c| c.name == cluster) {
            c.node_count = c.node_count.saturating_add(1);
        }
        self.nodes.push(NodeStanza {
            name: name.to_string(),
            cluster: cluster.to_string(),
            number,
            ip_address,
            ip_port: port,
            lines: Lines::default(),
        });
        Ok(&self.nodes[self.nodes.len() - 1])
    }

    /// Removes node `name` from `cluster`, as `o2cb remove-node`; node_count shrinks by one.
    pub fn remove_node(&mut self, cluster: &str, name: &str) -> Result<NodeStanza, ConfigError> {
        let Some(i) = self.nodes.iter().position(|n| n.cluster == cluster && n.name == name) else {
            return Err(self.error(format!("cluster {cluster} has no node named {name}")).with_errno(libc::ENOENT));
        };
        if let Some(c) = self.clusters.iter_mut().find(|c| c.name == cluster) {
            c.node_count = c.node_count.saturating_sub(1);
        }
        Ok(self.nodes.remove(i))
    }

    /// Adds a global heartbeat region (a volume UUID) to `cluster`, as `o2cb add-heartbeat`.
    pub fn add_heartbeat(&mut self, cluster: &str, region: &str) -> Result<&HeartbeatStanza, ConfigError> {
        if self.cluster(cluster).is_none() {
            return Err(self.error(format!("there is no cluster named {cluster}")).with_errno(libc::ENOENT));
        }
        if let Some(m) = region_problem(region, cluster) {
            return Err(self.error(m));
        }
        if self.heartbeats_of(cluster).any(|h| h.region == region) {
            return Err(self
                .error(format!("cluster {cluster} already has heartbeat region {region}"))
                .with_errno(libc::EEXIST));
        }
        if self.heartbeats_of(cluster).count() >= MAX_REGIONS {
            return Err(self
                .error(format!("cluster {cluster} already has {MAX_REGIONS} heartbeat regions, the most allowed"))
                .with_errno(libc::ENOSPC));
        }
        self.heartbeats.push(HeartbeatStanza {
            region: region.to_string(),
            cluster: cluster.to_string(),
            lines: Lines::default(),
        });
        Ok(&self.heartbeats[self.heartbeats.len() - 1])
    }

    /// Removes a global heartbeat region from `cluster`, as `o2cb remove-heartbeat`.
    pub fn remove_heartbeat(&mut self, cluster: &str, region: &str) -> Result<HeartbeatStanza, ConfigError> {
        let Some(i) = self.heartbeats.iter().position(|h| h.cluster == cluster && h.region == region) else {
            return Err(self
                .error(format!("cluster {cluster} has no heartbeat region {region}"))
                .with_errno(libc::ENOENT));
        };
        Ok(self.heartbeats.remove(i))
    }

    /// Sets the heartbeat mode of `cluster`, as `o2cb heartbeat-mode`.
    pub fn set_heartbeat_mode(&mut self, cluster: &str, mode: HeartbeatMode) -> Result<(), ConfigError> {
        match self.clusters.iter_mut().find(|c| c.name == cluster) {
            Some(c) => {
                c.heartbeat_mode = mode;
                Ok(())
            }
            None => Err(self.error(format!("there is no cluster named {cluster}")).with_errno(libc::ENOENT)),
        }
    }

    /// Validates, then writes the configuration to `path` so that a reader sees either the old
    /// file or the whole new one (a temporary file renamed over it), mode 0644 as o2cb makes it.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ConfigError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        self.validate()?;
        let path = path.as_ref();
        let origin = path.display().to_string();
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
            f.write_all(self.to_string().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ConfigError::io(origin, "cannot write the file", &e)
        })
    }
}

fn first_on(lines: &Lines, key: &str) -> String {
    lines.of(key).map(|l| format!(" (first on line {l})")).unwrap_or_default()
}

impl fmt::Display for ClusterConfig {
    /// The o2cb stanza format: cluster stanzas, then node stanzas, then heartbeat stanzas, each
    /// in list order, keys indented by a tab, a blank line after each stanza.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.clusters {
            writeln!(f, "cluster:")?;
            writeln!(f, "\tnode_count = {}", c.node_count)?;
            writeln!(f, "\theartbeat_mode = {}", c.heartbeat_mode)?;
            writeln!(f, "\tname = {}", c.name)?;
            writeln!(f)?;
        }
        for n in &self.nodes {
            writeln!(f, "node:")?;
            writeln!(f, "\tip_port = {}", n.ip_port)?;
            writeln!(f, "\tip_address = {}", n.ip_address)?;
            writeln!(f, "\tnumber = {}", n.number)?;
            writeln!(f, "\tname = {}", n.name)?;
            writeln!(f, "\tcluster = {}", n.cluster)?;
            writeln!(f)?;
        }
        for h in &self.heartbeats {
            writeln!(f, "heartbeat:")?;
            writeln!(f, "\tregion = {}", h.region)?;
            writeln!(f, "\tcluster = {}", h.cluster)?;
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_NODES: &str = "cluster:\n\tnode_count = 2\n\tname = web\n\nnode:\n\tip_port = 7777\n\t\
        ip_address = 10.0.0.1\n\tnumber = 1\n\tname = cvm\n\tcluster = web\n\nnode:\n\tip_port = 7777\n\t\
        ip_address = 10.0.0.2\n\tnumber = 2\n\tname = client01\n\tcluster = web\n";

    #[test]
    fn parses_a_two_node_cluster() {
        let c = ClusterConfig::check(TWO_NODES, "t").unwrap();
        assert_eq!(c.clusters.len(), 1);
        assert_eq!(c.cluster("web").unwrap().heartbeat_mode, HeartbeatMode::Local);
        let cvm = c.node_by_number("web", 1).unwrap();
        assert_eq!(cvm.name, "cvm");
        assert_eq!(cvm.socket_addr().to_string(), "10.0.0.1:7777");
        assert_eq!(cvm.lines.header, 5);
        assert_eq!(cvm.lines.of("number"), Some(8));
        assert_eq!(c.node_by_name("web", "client01").unwrap().number, 2);
    }

    #[test]
    fn written_text_reads_back_equal() {
        let c = ClusterConfig::check(TWO_NODES, "t").unwrap();
        let again = ClusterConfig::check(&c.to_string(), "u").unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn duplicate_number_names_both_nodes_at_the_second_line() {
        let text = TWO_NODES.replace("number = 2", "number = 1");
        let e = ClusterConfig::check(&text, "/etc/ocfs2/cluster.conf").unwrap_err();
        assert_eq!(e.to_string(), "/etc/ocfs2/cluster.conf:15: node cvm and node client01 both have number 1");
    }

    #[test]
    fn host_match_follows_o2cb() {
        assert!(is_host("appserver1", "appserver1.example.com"));
        assert!(is_host("AppServer1", "appserver1"));
        assert!(!is_host("appserver", "appserver1"));
        assert!(!is_host("appserver1.example.com", "appserver1"));
        assert!(!is_host("", "x"));
    }

    #[test]
    fn local_node_prefers_the_exact_then_the_longest_name() {
        let mut c = ClusterConfig::empty("t");
        c.add_cluster("c").unwrap();
        c.add_node("c", "db1", Ipv4Addr::new(10, 0, 0, 1), None, None).unwrap();
        c.add_node("c", "db1.site", Ipv4Addr::new(10, 0, 0, 2), None, None).unwrap();
        assert_eq!(c.local_node(Some("db1")).unwrap().number, 0);
        assert_eq!(c.local_node(Some("db1.site.example")).unwrap().number, 1);
        let e = c.local_node(Some("db2")).unwrap_err();
        assert_eq!(e.to_string(), "t: no node is named db2; the nodes are db1, db1.site");
        assert_eq!(e.errno(), libc::ENOENT);
    }

    #[test]
    fn add_and_remove_node_keep_node_count() {
        let mut c = ClusterConfig::check(TWO_NODES, "t").unwrap();
        let n = c.add_node("web", "client02", Ipv4Addr::new(10, 0, 0, 3), None, None).unwrap();
        assert_eq!((n.number, n.ip_port), (0, DEFAULT_PORT));
        assert_eq!(c.cluster("web").unwrap().node_count, 3);
        c.validate().unwrap();
        let e = c.add_node("web", "client03", Ipv4Addr::new(10, 0, 0, 3), None, None).unwrap_err();
        assert_eq!(e.message(), "node client02 of cluster web already uses address 10.0.0.3:7777");
        c.remove_node("web", "cvm").unwrap();
        assert_eq!(c.cluster("web").unwrap().node_count, 2);
        c.validate().unwrap();
        assert_eq!(c.remove_node("web", "cvm").unwrap_err().errno(), libc::ENOENT);
    }
}
