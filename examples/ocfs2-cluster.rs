//! `ocfs2-cluster`: the o2cb cluster stack from the command line, like `o2cb` and
//! `/etc/init.d/o2cb`, with no kernel module.
//!
//! ```text
//! ocfs2-cluster [-c CONF] [-n NODE] [--defaults FILE] [-v] COMMAND
//!   check [CONF]                 check a cluster.conf and show what it defines
//!   status [DEVICE...]           the cluster and its timeouts as `o2cb status` shows them; with
//!                                devices, which nodes heartbeat on each (read from the disk)
//!   add-cluster CLUSTER          add a cluster stanza
//!   add-node [--ip IP] [--port PORT] [--number N] CLUSTER NODE
//!   remove-node CLUSTER NODE
//!   heartbeat [--fence abort|callback] [--probe-writes OFFSET] DEVICE...
//!                                bring this node online and heartbeat on the volumes without
//!                                mounting them; print node events as they happen
//! ```
//!
//! `-c` names cluster.conf (default `/etc/ocfs2/cluster.conf`), `-n` this node (default: the
//! host name), `--defaults` the o2cb settings file with the timeouts (default
//! `/etc/sysconfig/o2cb` or `/etc/default/o2cb`); `O2CB_HEARTBEAT_THRESHOLD`,
//! `O2CB_HEARTBEAT_INTERVAL_MS`, `O2CB_IDLE_TIMEOUT_MS`, `O2CB_KEEPALIVE_DELAY_MS` and
//! `O2CB_RECONNECT_DELAY_MS` in the environment override it.
//!
//! `heartbeat` prints one line per event on standard output: `online NAME NUM ADDR`,
//! `heartbeat REGION DEVICE`, `up NUM NAME`, `down NUM NAME`, `unreachable NUM NAME`,
//! `fenced REASON`, and `stopped` at the end. It reads commands on standard input: `status`
//! prints the `o2cb status` view; `stop`, or the end of input, stops cleanly (peers see the node
//! leave at once). `--fence abort` (the default) aborts the process when it must fence, as the
//! kernel reboots; `--fence callback` keeps it running with every write refused.
//! `--probe-writes OFFSET` writes a counter into the 512 bytes at OFFSET of the first device
//! once per heartbeat interval, through the fence switch, and prints `probe refused N` when the
//! first write (number N) is refused: it shows that a fenced node's writes stop.

#[path = "cli.rs"]
mod cli;

use cli::{say, Global};
use ocfs2::cluster::config::{ClusterConfig, HeartbeatMode, DEFAULT_PATH};
use ocfs2::cluster::heartbeat::HeartbeatRegion;
use ocfs2::cluster::membership::{FenceAction, MemberEvent};
use ocfs2::cluster::stack::{volume_region, Cluster, ClusterOptions, Environment};
use ocfs2::cluster::timeouts::Timeouts;
use ocfs2::device::{open_device, BlockDevice};
use ocfs2::format::heartbeat::HeartbeatBlock;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage: ocfs2-cluster [-c CONF] [-n NODE] [--defaults FILE] [-v] COMMAND
  check [CONF]
  status [DEVICE...]
  add-cluster CLUSTER
  add-node [--ip IP] [--port PORT] [--number N] CLUSTER NODE
  remove-node CLUSTER NODE
  heartbeat [--fence abort|callback] [--probe-writes OFFSET] DEVICE...";

/// Magic of a probe sector: "PROBE" and the writing node.
const PROBE_MAGIC: &[u8; 8] = b"PROBE\0\0\0";

fn main() -> ExitCode {
    let (g, rest) = match cli::parse_global("ocfs2-cluster", USAGE, DEFAULT_PATH) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let Some(cmd) = rest.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let args = &rest[1..];
    let result = match cmd.as_str() {
        "check" => check(&g, args),
        "status" => status(&g, args),
        "add-cluster" => add_cluster(&g, args),
        "add-node" => add_node(&g, args),
        "remove-node" => remove_node(&g, args),
        "heartbeat" => heartbeat(&g, args),
        other => Err(format!("unknown command {other}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ocfs2-cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(g: &Global, args: &[String]) -> Result<(), String> {
    let path = match args {
        [] => g.conf.clone(),
        [p] => PathBuf::from(p),
        _ => return Err(format!("check takes at most one file\n{USAGE}")),
    };
    let config = ClusterConfig::load(&path).map_err(|e| e.to_string())?;
    println!("{}: OK", path.display());
    for c in &config.clusters {
        println!(
            "cluster {}: {} node{}, {} heartbeat",
            c.name,
            c.node_count,
            if c.node_count == 1 { "" } else { "s" },
            c.heartbeat_mode
        );
        for n in config.nodes_of(&c.name) {
            println!("  node {} number {} at {}:{}", n.name, n.number, n.ip_address, n.ip_port);
        }
        for h in config.heartbeats_of(&c.name) {
            println!("  heartbeat region {}", h.region);
        }
    }
    if let Err(e) = config.validate_for_kernel() {
        println!("note: a Linux kernel node could not join this cluster: {e}");
    }
    Ok(())
}

fn load_timeouts(g: &Global) -> Result<Timeouts, String> {
    Timeouts::load(g.defaults.as_deref(), |k| std::env::var(k).ok()).map_err(|e| e.to_string())
}

/// `status` without a running node: the configuration and the timeouts, and for each device
/// the nodes whose heartbeat sequence moves, sampled from the disk over two intervals.
fn status(g: &Global, devices: &[String]) -> Result<(), String> {
    let config = ClusterConfig::load(&g.conf).map_err(|e| e.to_string())?;
    let timeouts = load_timeouts(g)?;
    let local = config.local_node(g.node.as_deref()).ok();
    let cluster = match local {
        Some(n) => n.cluster.clone(),
        None => config.clusters.first().map(|c| c.name.clone()).ok_or("cluster.conf defines no cluster")?,
    };
    let mode = config.cluster(&cluster).map(|c| c.heartbeat_mode).unwrap_or_default();
    println!("Checking O2CB cluster \"{cluster}\": Offline (no node of this process runs; see `heartbeat`)");
    println!("  Heartbeat dead threshold: {}", timeouts.heartbeat_threshold);
    if timeouts.heartbeat_interval_ms != 2000 {
        println!("  Heartbeat interval: {}", timeouts.heartbeat_interval_ms);
    }
    println!("  Network idle timeout: {}", timeouts.idle_timeout_ms);
    println!("  Network keepalive delay: {}", timeouts.keepalive_delay_ms);
    println!("  Network reconnect delay: {}", timeouts.reconnect_delay_ms);
    println!("  Heartbeat mode: {}", if mode == HeartbeatMode::Global { "Global" } else { "Local" });
    let names: BTreeMap<u8, String> = config.nodes_of(&cluster).map(|n| (n.number, n.name.clone())).collect();
    let nodes: Vec<String> = config
        .nodes_of(&cluster)
        .map(|n| {
            let me = if local.is_some_and(|l| l.name == n.name) { ", this node" } else { "" };
            format!("{} ({}, {}:{}{me})", n.name, n.number, n.ip_address, n.ip_port)
        })
        .collect();
    println!("Nodes: {}", nodes.join(", "));
    for dev in devices {
        let live = sample_heartbeat(dev, &timeouts)?;
        if live.is_empty() {
            println!("Checking O2CB heartbeat on {dev}: Not active");
        } else {
            let shown: Vec<String> = live
                .iter()
                .map(|n| format!("{} ({n})", names.get(n).cloned().unwrap_or_else(|| n.to_string())))
                .collect();
            println!("Checking O2CB heartbeat on {dev}: Active");
            println!("  Live nodes: {}", shown.join(", "));
        }
    }
    Ok(())
}

/// Nodes whose heartbeat block changes over two intervals on `dev`, read-only.
fn sample_heartbeat(dev: &str, t: &Timeouts) -> Result<Vec<u8>, String> {
    let d: Arc<dyn BlockDevice> = Arc::from(open_device(dev, false).map_err(|e| format!("{dev}: {e}"))?);
    let region = volume_region(d.clone()).map_err(|e| format!("{dev}: {e}"))?.region;
    let read = |r: &HeartbeatRegion| -> Result<Vec<Option<(u64, u64)>>, String> {
        let mut buf = vec![0u8; r.len() as usize];
        d.read_at(r.start_byte, &mut buf).map_err(|e| format!("{dev}: {e}"))?;
        Ok(buf
            .chunks(r.block_bytes as usize)
            .map(|s| HeartbeatBlock::decode(s).ok().map(|b| (b.hb_seq, b.hb_generation)))
            .collect())
    };
    let first = read(&region)?;
    let mut moved = vec![false; first.len()];
    let mut prev = first;
    for _ in 0..2 {
        std::thread::sleep(t.heartbeat_interval() + Duration::from_millis(50));
        let now = read(&region)?;
        for (i, (a, b)) in prev.iter().zip(&now).enumerate() {
            if let (Some(a), Some(b)) = (a, b) {
                if a.0 != b.0 && b.1 != 0 {
                    moved[i] = true;
                }
            }
        }
        prev = now;
    }
    Ok(moved.iter().enumerate().filter(|(_, m)| **m).map(|(i, _)| i as u8).collect())
}

fn edit_config(g: &Global, f: impl FnOnce(&mut ClusterConfig) -> Result<(), String>) -> Result<(), String> {
    let mut config = if g.conf.exists() {
        ClusterConfig::load(&g.conf).map_err(|e| e.to_string())?
    } else {
        ClusterConfig::empty(&g.conf.display().to_string())
    };
    f(&mut config)?;
    if let Some(dir) = g.conf.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    config.save(&g.conf).map_err(|e| e.to_string())
}

fn add_cluster(g: &Global, args: &[String]) -> Result<(), String> {
    let [name] = args else { return Err(format!("add-cluster takes a cluster name\n{USAGE}")) };
    edit_config(g, |c| c.add_cluster(name).map(|_| ()).map_err(|e| e.to_string()))
}

fn add_node(g: &Global, args: &[String]) -> Result<(), String> {
    let (mut ip, mut port, mut number) = (None, None, None);
    let mut pos = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--ip" => ip = Some(value()?.parse::<Ipv4Addr>().map_err(|e| format!("--ip: {e}"))?),
            "--port" => port = Some(value()?.parse::<u16>().map_err(|e| format!("--port: {e}"))?),
            "--number" => number = Some(value()?.parse::<u8>().map_err(|e| format!("--number: {e}"))?),
            _ => pos.push(a.clone()),
        }
    }
    let [cluster, node] = &pos[..] else { return Err(format!("add-node takes CLUSTER NODE\n{USAGE}")) };
    // As o2cb: without --ip, the node's name must resolve to an IPv4 address.
    let ip = match ip {
        Some(ip) => ip,
        None => (node.as_str(), 0)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| {
                a.find_map(|a| match a.ip() {
                    std::net::IpAddr::V4(v4) => Some(v4),
                    _ => None,
                })
            })
            .ok_or_else(|| format!("cannot resolve {node} to an IPv4 address; give --ip"))?,
    };
    edit_config(g, |c| c.add_node(cluster, node, ip, port, number).map(|_| ()).map_err(|e| e.to_string()))
}

fn remove_node(g: &Global, args: &[String]) -> Result<(), String> {
    let [cluster, node] = args else { return Err(format!("remove-node takes CLUSTER NODE\n{USAGE}")) };
    edit_config(g, |c| c.remove_node(cluster, node).map(|_| ()).map_err(|e| e.to_string()))
}

fn heartbeat(g: &Global, args: &[String]) -> Result<(), String> {
    let mut fence = "abort".to_string();
    let mut probe: Option<u64> = None;
    let mut devices = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--fence" => fence = value()?,
            "--probe-writes" => probe = Some(value()?.parse().map_err(|e| format!("--probe-writes: {e}"))?),
            o if o.starts_with('-') => return Err(format!("unknown option {o}\n{USAGE}")),
            d => devices.push(d.to_string()),
        }
    }
    if devices.is_empty() {
        return Err(format!("heartbeat needs a device\n{USAGE}"));
    }
    let fence = match fence.as_str() {
        "abort" => FenceAction::Abort,
        "callback" => FenceAction::callback(|reason| say(&format!("fence-callback {reason}"))),
        other => return Err(format!("--fence takes abort or callback, not {other}")),
    };
    let options = ClusterOptions {
        config_path: g.conf.clone(),
        node_name: g.node.clone(),
        defaults_path: g.defaults.clone(),
        env: Environment::Process,
        fence,
    };
    let cluster = Cluster::start(options).map_err(|e| e.to_string())?;
    let me = cluster.local_node().clone();
    let names: BTreeMap<u8, String> =
        cluster.config().nodes_of(&me.cluster).map(|n| (n.number, n.name.clone())).collect();
    let name = move |n: u8| names.get(&n).cloned().unwrap_or_else(|| n.to_string());
    say(&format!("online {} {} {}", me.name, me.number, cluster.net().local_addr()));
    let events = cluster.subscribe();
    let printer = std::thread::spawn(move || {
        for e in events {
            match e {
                MemberEvent::NodeUp(n) => say(&format!("up {n} {}", name(n))),
                MemberEvent::NodeDown(n) => say(&format!("down {n} {}", name(n))),
                MemberEvent::Unreachable(n) => say(&format!("unreachable {n} {}", name(n))),
                MemberEvent::Fenced(r) => say(&format!("fenced {r}")),
            }
        }
    });
    let started = if cluster.heartbeat_mode() == HeartbeatMode::Global {
        cluster.start_global_heartbeat(&devices).map(|regions| {
            for r in regions {
                say(&format!("heartbeat {r} global"));
            }
        })
    } else {
        devices.iter().try_for_each(|d| cluster.heartbeat_device(d).map(|r| say(&format!("heartbeat {r} {d}"))))
    };
    if let Err(e) = started {
        let _ = cluster.stop();
        return Err(e.to_string());
    }
    let stop_probe = Arc::new(AtomicBool::new(false));
    let prober = match probe {
        Some(offset) => Some(start_probe(&cluster, &devices[0], offset, me.number, stop_probe.clone())?),
        None => None,
    };
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("stop") | Err(_) => break,
            Ok("status") => print!("{}", cluster.status()),
            Ok(_) => {}
        }
        let _ = std::io::stdout().flush();
    }
    stop_probe.store(true, Ordering::SeqCst);
    if let Some(p) = prober {
        let _ = p.join();
    }
    let result = cluster.stop();
    let _ = printer.join();
    match result {
        Ok(()) => {
            say("stopped");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Writes `[PROBE_MAGIC, node, counter]` at `offset` every interval through the fence switch.
fn start_probe(
    cluster: &Cluster,
    device: &str,
    offset: u64,
    node: u8,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let raw = open_device(device, true).map_err(|e| format!("{device}: {e}"))?;
    let dev = cluster.fenced(raw);
    let interval = cluster.timeouts().heartbeat_interval();
    if offset.checked_add(512).is_none_or(|end| end > dev.len()) {
        return Err(format!("--probe-writes {offset}: beyond the end of {device}"));
    }
    Ok(std::thread::spawn(move || {
        let mut counter: u64 = 0;
        let mut refused = false;
        while !stop.load(Ordering::SeqCst) {
            counter += 1;
            let mut sector = [0u8; 512];
            sector[..8].copy_from_slice(PROBE_MAGIC);
            sector[8] = node;
            sector[16..24].copy_from_slice(&counter.to_le_bytes());
            let ok = dev.write_at(offset, &sector).and_then(|()| dev.flush()).is_ok();
            if !ok && !refused {
                refused = true;
                say(&format!("probe refused {counter}"));
            }
            std::thread::sleep(interval);
        }
    }))
}
