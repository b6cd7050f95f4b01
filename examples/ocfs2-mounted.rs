//! `ocfs2-mounted`: which devices hold OCFS2 volumes and which nodes have them mounted, printed
//! as `mounted.ocfs2` prints them.
//!
//! ```text
//! ocfs2-mounted [-d | -f] [-c CONF] [-n NODE] [DEVICE...]
//! ```
//!
//! `-d` (the default) lists each OCFS2 device with its cluster stack, cluster name, UUID and
//! label, read from the superblock as `mounted.ocfs2 -d` does. `-f` lists the nodes that have
//! each volume mounted: the valid slots of its slot map (not the heartbeat, which
//! `mounted.ocfs2 -f` does not read either), in slot order, each by its name in cluster.conf,
//! or by number when cluster.conf does not name it (or cannot be read). Without devices, every
//! block device of `/proc/partitions` larger than 1 MiB is probed. `-c` names cluster.conf
//! (default `/etc/ocfs2/cluster.conf`); `-n` this node, whose cluster's names are used (default:
//! the host name; failing that, the only cluster of the file).

use ocfs2::cluster::config::{ClusterConfig, DEFAULT_PATH};
use ocfs2::device::{open_device, BlockDevice};
use ocfs2::format::bytes::cstr;
use ocfs2::format::slot_map::SlotMap;
use ocfs2::format::superblock::{SuperBlock, CLUSTER_O2CB_GLOBAL_HEARTBEAT};
use ocfs2::format::{
    DINODE_ID2_OFFSET, FEATURE_INCOMPAT_CLUSTERINFO, FEATURE_INCOMPAT_EXTENDED_SLOT_MAP,
    FEATURE_INCOMPAT_HEARTBEAT_DEV, FEATURE_INCOMPAT_LOCAL_MOUNT, FEATURE_INCOMPAT_USERSPACE_STACK,
    SUPER_BLOCK_SIGNATURE,
};
use ocfs2::{MountOptions, Volume};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::ExitCode;

const USAGE: &str = "usage: ocfs2-mounted [-d | -f] [-c CONF] [-n NODE] [DEVICE...]
	-d quick detect
	-f full detect";

/// What the superblock says, as `populate_sb_info` takes it.
struct Detected {
    name: String,
    stack: String,
    cluster: String,
    global: bool,
    uuid: String,
    label: String,
    heartbeat_device: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut full = false;
    let mut conf: Option<String> = None;
    let mut node: Option<String> = None;
    let mut devices = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-d" => full = false,
            "-f" => full = true,
            "-v" => {}
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-c" | "-n" => {
                let Some(v) = it.next() else {
                    eprintln!("ocfs2-mounted: {a} needs a value\n{USAGE}");
                    return ExitCode::from(2);
                };
                if a == "-c" {
                    conf = Some(v);
                } else {
                    node = Some(v);
                }
            }
            o if o.starts_with('-') => {
                eprintln!("ocfs2-mounted: unknown option {o}\n{USAGE}");
                return ExitCode::from(2);
            }
            _ => devices.push(a),
        }
    }
    if devices.is_empty() {
        devices = partition_devices();
    }
    let found: Vec<Detected> = devices.iter().filter_map(|d| quick_detect(d)).collect();
    let out = if full {
        let names = node_names(conf.as_deref(), node.as_deref());
        full_detect(&found, &names)
    } else {
        quick_list(&found)
    };
    print!("{out}");
    ExitCode::SUCCESS
}

/// `/proc/partitions` as mounted.ocfs2 reads it: `/dev/NAME` (device-mapper nodes by their
/// `/dev/mapper` name), skipping devices of 1 MiB or less.
fn partition_devices() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/partitions").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(major), Some(minor), Some(name)) =
            (f.first().and_then(|v| v.parse::<u64>().ok()), f.get(1).and_then(|v| v.parse::<u64>().ok()), f.get(3))
        else {
            continue;
        };
        let mut path = format!("/dev/{name}");
        if name.starts_with("dm-") && name[3..].starts_with(|c: char| c.is_ascii_digit()) {
            if let Some(p) = mapper_name(major, minor) {
                path = p;
            }
        }
        let Ok(dev) = open_device(&path, false) else { continue };
        if dev.len() / 4096 <= (1024 * 1024 / 4096) {
            continue;
        }
        out.push(path);
    }
    out
}

/// The `/dev/mapper` node of device (major, minor).
fn mapper_name(major: u64, minor: u64) -> Option<String> {
    // glibc's makedev().
    let want = ((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff);
    std::fs::read_dir("/dev/mapper").ok()?.flatten().find_map(|entry| {
        let md = std::fs::metadata(entry.path()).ok()?;
        (md.file_type().is_block_device() && md.rdev() == want).then(|| entry.path().display().to_string())
    })
}

/// Reads the superblock the way `do_quick_detect` does: 512 bytes at 1, 2, 4 and 8 KiB (block 2
/// at each block size), looking for the signature.
fn quick_detect(device: &str) -> Option<Detected> {
    let dev = open_device(device, false).ok()?;
    for kb in [1u64, 2, 4, 8] {
        let mut buf = [0u8; 512];
        if dev.read_at(kb * 1024, &mut buf).is_err() {
            break;
        }
        if &buf[..SUPER_BLOCK_SIGNATURE.len()] != SUPER_BLOCK_SIGNATURE {
            continue;
        }
        let sb = SuperBlock::decode(&buf[DINODE_ID2_OFFSET..]).ok()?;
        let incompat = sb.s_feature_incompat;
        let ci = &sb.s_cluster_info;
        let (stack, cluster) = if incompat & FEATURE_INCOMPAT_LOCAL_MOUNT != 0 {
            ("None".to_string(), String::new())
        } else if incompat & (FEATURE_INCOMPAT_USERSPACE_STACK | FEATURE_INCOMPAT_CLUSTERINFO) != 0 {
            (text(&ci.ci_stack), text(&ci.ci_cluster))
        } else {
            ("o2cb".to_string(), String::new())
        };
        let global = stack == "o2cb" && ci.ci_stackflags & CLUSTER_O2CB_GLOBAL_HEARTBEAT != 0;
        return Some(Detected {
            name: device.to_string(),
            stack,
            cluster,
            global,
            uuid: sb.s_uuid.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02X}");
                s
            }),
            label: text(&sb.s_label),
            heartbeat_device: incompat & FEATURE_INCOMPAT_HEARTBEAT_DEV != 0,
        });
    }
    None
}

/// A NUL-padded superblock field as text.
fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(cstr(field)).into_owned()
}

fn widths(found: &[Detected]) -> (usize, usize) {
    let dev = found.iter().map(|d| d.name.len()).fold(7, usize::max);
    let cluster = found.iter().map(|d| d.cluster.len()).fold(7, usize::max);
    (dev, cluster)
}

fn flag(d: &Detected) -> char {
    if d.global {
        'G'
    } else {
        ' '
    }
}

fn quick_list(found: &[Detected]) -> String {
    let (dw, cw) = widths(found);
    let mut out =
        format!("{:<dw$}  {:<5}  {:<cw$}  {}  {:<32}  {}\n", "Device", "Stack", "Cluster", 'F', "UUID", "Label");
    for d in found {
        let _ = writeln!(
            out,
            "{:<dw$}  {:<5}  {:<cw$}  {}  {:<32}  {}",
            d.name,
            d.stack,
            d.cluster,
            flag(d),
            d.uuid,
            d.label
        );
    }
    out
}

/// Node names by number from cluster.conf, for the cluster of `node` (or the only cluster).
/// Empty when there is no usable configuration: nodes then print as numbers, as
/// mounted.ocfs2 prints them when no cluster is online.
fn node_names(conf: Option<&str>, node: Option<&str>) -> BTreeMap<u32, String> {
    let path = conf.unwrap_or(DEFAULT_PATH);
    let config = match ClusterConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            if conf.is_some() || std::path::Path::new(path).exists() {
                eprintln!("ocfs2-mounted: {e}; printing node numbers");
            }
            return BTreeMap::new();
        }
    };
    let cluster = match config.local_node(node) {
        Ok(n) => n.cluster.clone(),
        Err(_) if config.clusters.len() == 1 => config.clusters[0].name.clone(),
        Err(e) => {
            eprintln!("ocfs2-mounted: {e}; printing node numbers");
            return BTreeMap::new();
        }
    };
    config.nodes_of(&cluster).map(|n| (u32::from(n.number), n.name.clone())).collect()
}

/// The slot map of the volume on `device`: its valid slots' node numbers, in slot order.
fn mounted_nodes(device: &str) -> Result<Vec<u32>, String> {
    let dev: Box<dyn BlockDevice> = open_device(device, false).map_err(|e| e.to_string())?;
    let vol = Volume::open(dev, MountOptions::default()).map_err(|e| e.to_string())?;
    let info = vol.info().clone();
    let ino = vol.system_file("slot_map").map_err(|e| e.to_string())?;
    let bytes = vol.read_all(ino).map_err(|e| e.to_string())?;
    let extended = info.feature_incompat & FEATURE_INCOMPAT_EXTENDED_SLOT_MAP != 0;
    let map = SlotMap::decode(&bytes, usize::from(info.max_slots), extended).map_err(|e| e.to_string())?;
    Ok(map.slots.iter().flatten().copied().collect())
}

fn full_detect(found: &[Detected], names: &BTreeMap<u32, String>) -> String {
    let (dw, cw) = widths(found);
    let mut out = format!("{:<dw$}  {:<5}  {:<cw$}  {}  {}\n", "Device", "Stack", "Cluster", 'F', "Nodes");
    for d in found {
        let _ = write!(out, "{:<dw$}  {:<5}  {:<cw$}  {}  ", d.name, d.stack, d.cluster, flag(d));
        if d.heartbeat_device {
            out.push_str("Heartbeat device\n");
            continue;
        }
        match mounted_nodes(&d.name) {
            Err(e) => {
                let _ = writeln!(out, "Unknown: {e}");
            }
            Ok(nodes) if nodes.is_empty() => out.push_str("Not mounted\n"),
            Ok(nodes) => {
                let shown: Vec<String> = nodes
                    .iter()
                    .map(|n| match names.get(n) {
                        _ if *n >= 255 => "Unknown".to_string(),
                        Some(name) => name.clone(),
                        None => n.to_string(),
                    })
                    .collect();
                let _ = writeln!(out, "{}", shown.join(", "));
            }
        }
    }
    out
}
