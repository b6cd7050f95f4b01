//! Membership across processes and in one: three `ocfs2-cluster heartbeat` nodes on an image
//! made by mkfs.ocfs2 see each other up and a killed one down in time; the `Cluster` API with
//! global heartbeat regions and with a stalled disk that fences; the `ocfs2-cluster`
//! configuration commands; and `ocfs2-mounted` against the real `mounted.ocfs2 -d/-f`.

mod common;

use common::Scratch;
use ocfs2::cluster::config::ClusterConfig;
use ocfs2::cluster::heartbeat::{FencedDevice, HeartbeatRegion};
use ocfs2::cluster::membership::{FenceAction, FenceReason, MemberEvent};
use ocfs2::cluster::stack::{volume_region, Cluster};
use ocfs2::cluster::timeouts::Timeouts;
use ocfs2::device::{BlockDevice, FaultDevice, FaultKind, FaultPlan, FileDevice, MemDevice};
use ocfs2::format::slot_map::SlotMap;
use ocfs2::format::FEATURE_INCOMPAT_EXTENDED_SLOT_MAP;
use ocfs2::{MountOptions, Volume};

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const CLUSTER_BIN: &str = env!("CARGO_BIN_EXE_ocfs2-cluster");
const MOUNTED_BIN: &str = env!("CARGO_BIN_EXE_ocfs2-mounted");

const INTERVAL_MS: u64 = 200;
const THRESHOLD: u64 = 6;

fn o2cb_settings(dir: &Path, interval: u64, threshold: u64, idle: u64) -> PathBuf {
    let path = dir.join("o2cb");
    std::fs::write(
        &path,
        format!(
            "O2CB_HEARTBEAT_THRESHOLD={threshold}\nO2CB_HEARTBEAT_INTERVAL_MS={interval}\nO2CB_IDLE_TIMEOUT_MS={idle}\n\
             O2CB_KEEPALIVE_DELAY_MS={}\nO2CB_RECONNECT_DELAY_MS={}\n",
            idle / 5,
            idle / 5
        ),
    )
    .unwrap();
    path
}

fn cluster_conf(dir: &Path, name: &str, port: u16, nodes: &[(u8, &str)], regions: &[String]) -> PathBuf {
    let mut c = ClusterConfig::empty("test");
    c.add_cluster(name).unwrap();
    for (num, ip) in nodes {
        c.add_node(name, &format!("n{num}"), ip.parse().unwrap(), Some(port), Some(*num)).unwrap();
    }
    if !regions.is_empty() {
        c.set_heartbeat_mode(name, ocfs2::cluster::config::HeartbeatMode::Global).unwrap();
        for r in regions {
            c.add_heartbeat(name, r).unwrap();
        }
    }
    let path = dir.join(format!("{name}.conf"));
    c.save(&path).unwrap();
    path
}

use common::LineProcess as NodeProc;

/// Starts `ocfs2-cluster heartbeat` as node `node`, with the timeouts of `settings` only.
fn spawn_node(conf: &Path, settings: &Path, node: &str, img: &Path) -> NodeProc {
    let mut cmd = Command::new(CLUSTER_BIN);
    cmd.arg("-c").arg(conf).args(["-n", node, "--defaults"]).arg(settings);
    cmd.args(["heartbeat", "--fence", "callback"]).arg(img);
    for v in
        ["HEARTBEAT_THRESHOLD", "HEARTBEAT_INTERVAL_MS", "IDLE_TIMEOUT_MS", "KEEPALIVE_DELAY_MS", "RECONNECT_DELAY_MS"]
    {
        cmd.env_remove(format!("O2CB_{v}"));
    }
    NodeProc::spawn(node, cmd)
}

/// Node numbers `debugfs.ocfs2 -R hb` lists.
fn debugfs_hb_nodes(img: &Path) -> Vec<u8> {
    let out = common::debugfs(img, "hb");
    out.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect()
}

#[test]
fn three_processes_see_each_other_up_and_a_killed_one_down_within_the_dead_threshold() {
    let scratch = Scratch::new("membership-3");
    let img = scratch.path("shared.img");
    common::sparse_image(&img, 256 << 20);
    common::mkfs_ocfs2(&img, &["-N", "4", "-b", "4096", "-C", "4096"]);
    let nodes = [(1u8, "127.0.0.2"), (2, "127.0.0.3"), (3, "127.0.0.4")];
    let conf = cluster_conf(&scratch.dir, "three", 17_731, &nodes, &[]);
    let settings = o2cb_settings(&scratch.dir, INTERVAL_MS, THRESHOLD, 2000);
    let mut procs: Vec<NodeProc> =
        nodes.iter().map(|(n, _)| spawn_node(&conf, &settings, &format!("n{n}"), &img)).collect();
    for (i, p) in procs.iter_mut().enumerate() {
        p.expect(&format!("online n{} {} 127.0.0.{}:17731", i + 1, i + 1, i + 2), Duration::from_secs(5));
        for (j, _) in nodes.iter().filter(|(j, _)| usize::from(*j) != i + 1) {
            p.expect(&format!("up {j} n{j}"), Duration::from_secs(15));
        }
    }
    procs[0].send("status");
    let (_, live) = procs[0].expect("Live nodes:", Duration::from_secs(5));
    assert_eq!(live, "Live nodes: n1 (1, this node), n2 (2), n3 (3)");
    let shown = procs[0].printed();
    assert!(shown.iter().any(|l| l == "Checking O2CB cluster \"three\": Online"), "{shown:?}");
    assert!(shown.iter().any(|l| l == "  Heartbeat dead threshold: 6"), "{shown:?}");
    assert!(shown.iter().any(|l| l == "Checking O2CB heartbeat: Active"), "{shown:?}");
    assert_eq!(debugfs_hb_nodes(&img), vec![1, 2, 3], "debugfs.ocfs2 -R hb sees the three nodes");

    // SIGKILL node 3: its connections reset at once (unreachable), its heartbeat stops; the
    // others declare it dead after the threshold, no sooner than its last write allows.
    let killed_at = Instant::now();
    procs[2].child.kill().unwrap();
    let _ = procs[2].child.wait();
    let dead_ms = THRESHOLD * INTERVAL_MS;
    for p in procs.iter_mut().take(2) {
        let (t, _) = p.expect("down 3 n3", Duration::from_millis(dead_ms + 3000));
        let after = t - killed_at;
        assert!(
            after >= Duration::from_millis(dead_ms - INTERVAL_MS - 50)
                && after <= Duration::from_millis(dead_ms + INTERVAL_MS + 800),
            "{} declared node 3 dead {after:?} after the kill; the threshold is {dead_ms} ms",
            p.name
        );
        let lines = p.printed();
        let unreachable = lines.iter().position(|l| l == "unreachable 3 n3");
        let down = lines.iter().position(|l| l == "down 3 n3");
        assert!(unreachable.is_some() && unreachable < down, "{}: {lines:?}", p.name);
        eprintln!("{} declared node 3 dead {after:?} after SIGKILL", p.name);
    }
    // Losing one of three is no quorum loss: nobody fences, even after the quorum delay.
    std::thread::sleep(Duration::from_millis((THRESHOLD + 2) * INTERVAL_MS + 500));
    for p in procs.iter_mut().take(2) {
        let lines = p.printed();
        assert!(!lines.iter().any(|l| l.starts_with("fenced")), "{}: {lines:?}", p.name);
        p.send("stop");
        p.expect("stopped", Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------------------------
// The Cluster API in one process.

fn fast_timeouts() -> Timeouts {
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
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn global_heartbeat_counts_a_node_up_while_any_region_sees_it() {
    let scratch = Scratch::new("membership-global");
    let imgs: Vec<PathBuf> = (0..2).map(|i| scratch.path(&format!("hb{i}.img"))).collect();
    let mut uuids = Vec::new();
    for img in &imgs {
        common::sparse_image(img, 64 << 20);
        common::mkfs_ocfs2(img, &["-N", "2", "--global-heartbeat", "--cluster-name=glob", "--cluster-stack=o2cb"]);
        let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(img).unwrap());
        let vr = volume_region(dev).unwrap();
        assert!(vr.global && vr.cluster.as_deref() == Some("glob"), "{vr:?}");
        uuids.push(vr.uuid);
    }
    let nodes = [(0u8, "127.0.0.5"), (1, "127.0.0.6")];
    let conf = ClusterConfig::load(cluster_conf(&scratch.dir, "glob", 17_741, &nodes, &uuids)).unwrap();
    let start = |name: &str| {
        Cluster::start_with(conf.clone(), Some(name), fast_timeouts(), FenceAction::callback(|_| {})).unwrap()
    };
    let (a, b) = (start("n0"), start("n1"));
    let candidates: Vec<String> = imgs.iter().map(|p| p.display().to_string()).collect();
    let (ra, rb) = std::thread::scope(|s| {
        let ra = s.spawn(|| a.start_global_heartbeat(&candidates));
        let rb = s.spawn(|| b.start_global_heartbeat(&candidates));
        (ra.join().unwrap(), rb.join().unwrap())
    });
    let mut sorted = uuids.clone();
    sorted.sort();
    assert_eq!(ra.unwrap(), sorted);
    assert_eq!(rb.unwrap(), sorted);
    assert!(wait_until(Duration::from_secs(5), || a.members().to_vec() == vec![1]));
    let events = a.subscribe();
    assert_eq!(events.recv_timeout(Duration::from_secs(1)).unwrap(), MemberEvent::NodeUp(1));
    let status = a.status().to_string();
    assert!(status.contains("  Heartbeat mode: Global\n"), "{status}");
    for (u, p) in uuids.iter().zip(&imgs) {
        assert!(status.contains(&format!("  {u} {}\n", p.display())), "{status}");
    }

    // Node 1 leaves one region: still live in the other, still a member.
    b.stop_heartbeat(&uuids[0]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.members().to_vec(), vec![1]);
    assert!(events.try_recv().is_err(), "no event while node 1 is live in region {}", uuids[1]);
    // And the last one: now it is down, at once (it wrote its leaving block).
    b.stop_heartbeat(&uuids[1]).unwrap();
    let mut seen = Vec::new();
    while let Ok(e) = events.recv_timeout(Duration::from_secs(2)) {
        seen.push(e.clone());
        if e == MemberEvent::NodeDown(1) {
            break;
        }
    }
    assert_eq!(seen.last(), Some(&MemberEvent::NodeDown(1)), "{seen:?}");
    assert!(a.fenced_reason().is_none() && b.fenced_reason().is_none());
    b.stop().unwrap();
    a.stop().unwrap();
}

#[test]
fn a_stalled_disk_fences_its_node_with_the_switch_thrown_before_the_callback_and_before_peers_call_it_dead() {
    let disk = Arc::new(MemDevice::new(1 << 20));
    let region = HeartbeatRegion::new(8192, 512, 16);
    let nodes = [(0u8, "127.0.0.7"), (1, "127.0.0.8")];
    let scratch = Scratch::new("membership-stall");
    let conf = ClusterConfig::load(cluster_conf(&scratch.dir, "stall", 17_751, &nodes, &[])).unwrap();
    let called = Arc::new(AtomicBool::new(false));
    let thrown_in_callback = Arc::new(AtomicBool::new(false));
    let a = Cluster::start_with(conf.clone(), Some("n0"), fast_timeouts(), FenceAction::callback(|_| {})).unwrap();
    let b = {
        let (called, thrown) = (called.clone(), thrown_in_callback.clone());
        let holder: Arc<OnceLock<ocfs2::cluster::heartbeat::FenceSwitch>> = Default::default();
        let h = holder.clone();
        let b = Cluster::start_with(
            conf,
            Some("n1"),
            fast_timeouts(),
            FenceAction::callback(move |r| {
                assert!(matches!(r, FenceReason::HeartbeatTimeout { .. }), "{r}");
                thrown.store(h.get().is_some_and(|s| s.is_thrown()), Ordering::SeqCst);
                called.store(true, Ordering::SeqCst);
            }),
        )
        .unwrap();
        let _ = holder.set(b.fence_switch());
        b
    };
    // Node 1's writes pass its fence switch innermost, then a device that can stall.
    let b_dev = Arc::new(FaultDevice::new(FencedDevice::new(disk.clone(), b.fence_switch()), FaultPlan::new()));
    let b_dyn: Arc<dyn BlockDevice> = b_dev.clone();
    std::thread::scope(|s| {
        let ra = s.spawn(|| a.heartbeat_region("R", disk.clone(), region));
        let rb = s.spawn(|| b.heartbeat_region("R", b_dyn.clone(), region));
        ra.join().unwrap().unwrap();
        rb.join().unwrap().unwrap();
    });
    assert!(wait_until(Duration::from_secs(5), || a.members().to_vec() == vec![1] && b.members().to_vec() == vec![0]));
    let a_events = a.subscribe();
    let b_events = b.subscribe();
    let stalled_at = Instant::now();
    b_dev.set_plan(FaultPlan::new().with(FaultKind::StallWrites));
    let fenced = loop {
        match b_events.recv_timeout(Duration::from_secs(5)).expect("node 1 fences") {
            MemberEvent::Fenced(r) => break r,
            _ => continue,
        }
    };
    let fenced_at = Instant::now();
    assert!(matches!(fenced, FenceReason::HeartbeatTimeout { .. }), "{fenced}");
    assert!(called.load(Ordering::SeqCst) || wait_until(Duration::from_secs(1), || called.load(Ordering::SeqCst)));
    assert!(thrown_in_callback.load(Ordering::SeqCst), "the switch was thrown before the callback ran");
    // Releasing the stalled write now changes nothing on the disk: it meets the switch.
    let slot_before = {
        let mut s = [0u8; 512];
        disk.read_at(region.slot_offset(1), &mut s).unwrap();
        s
    };
    b_dev.set_plan(FaultPlan::new());
    let down_at = loop {
        match a_events.recv_timeout(Duration::from_secs(5)).expect("node 0 sees node 1 die") {
            MemberEvent::NodeDown(1) => break Instant::now(),
            _ => continue,
        }
    };
    assert!(down_at > fenced_at, "declared dead before it fenced");
    let mut slot_after = [0u8; 512];
    disk.read_at(region.slot_offset(1), &mut slot_after).unwrap();
    assert_eq!(slot_before, slot_after, "a write of the fenced node landed");
    eprintln!("stall -> fenced {:?}, fenced -> declared dead {:?}", fenced_at - stalled_at, down_at - fenced_at);
    assert!(a.fenced_reason().is_none());
    assert!(matches!(b.heartbeat_region("S", disk.clone(), region), Err(ocfs2::ClusterError::Fenced(_))));
    assert!(matches!(b.stop(), Err(ocfs2::ClusterError::Fenced(_))));
    a.stop().unwrap();
}

// ---------------------------------------------------------------------------------------------
// ocfs2-cluster's configuration commands.

fn run_cluster(args: &[&str]) -> (bool, String, String) {
    common::run(Command::new(CLUSTER_BIN).args(args))
}

#[test]
fn ocfs2_cluster_adds_checks_and_removes_nodes_and_names_what_is_wrong() {
    let scratch = Scratch::new("membership-cli");
    let conf = scratch.path("etc/cluster.conf");
    let c = conf.to_str().unwrap();
    assert!(run_cluster(&["-c", c, "add-cluster", "web"]).0);
    for (name, ip, num) in [("alpha", "10.1.0.1", "0"), ("beta", "10.1.0.2", "1"), ("gamma", "10.1.0.3", "2")] {
        let (ok, _, err) = run_cluster(&["-c", c, "add-node", "--ip", ip, "--number", num, "web", name]);
        assert!(ok, "{err}");
    }
    let (ok, out, err) = run_cluster(&["check", c]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!(
            "{c}: OK\ncluster web: 3 nodes, local heartbeat\n  node alpha number 0 at 10.1.0.1:7777\n  \
             node beta number 1 at 10.1.0.2:7777\n  node gamma number 2 at 10.1.0.3:7777\n"
        )
    );
    let (ok, _, err) = run_cluster(&["-c", c, "add-node", "--ip", "10.1.0.2", "--number", "3", "web", "delta"]);
    assert!(!ok && err.contains("already uses address 10.1.0.2:7777"), "{err}");
    let (ok, _, err) = run_cluster(&["-c", c, "add-node", "--ip", "10.1.0.9", "--number", "1", "web", "delta"]);
    assert!(!ok && err.contains("number 1 is taken by node beta"), "{err}");
    assert!(run_cluster(&["-c", c, "remove-node", "web", "beta"]).0);
    let text = std::fs::read_to_string(&conf).unwrap();
    let back = ClusterConfig::check(&text, c).unwrap();
    assert_eq!(back.nodes_of("web").map(|n| n.name.as_str()).collect::<Vec<_>>(), ["alpha", "gamma"]);
    assert_eq!(back.cluster("web").unwrap().node_count, 2);

    let bad = scratch.path("bad.conf");
    std::fs::write(&bad, text.replace("number = 2", "number = 0")).unwrap();
    let (ok, _, err) = run_cluster(&["check", bad.to_str().unwrap()]);
    assert!(!ok, "a duplicate number is refused");
    assert!(err.contains("bad.conf:") && err.contains("both have number 0"), "{err}");

    // status without a running node: the timeouts of the settings file, the nodes.
    let settings = o2cb_settings(&scratch.dir, 2000, 31, 30000);
    let (ok, out, err) = run_cluster(&["-c", c, "-n", "alpha", "--defaults", settings.to_str().unwrap(), "status"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("Checking O2CB cluster \"web\": Offline"), "{out}");
    assert!(out.contains("  Heartbeat dead threshold: 31\n  Network idle timeout: 30000\n"), "{out}");
    assert!(out.contains("Nodes: alpha (0, 10.1.0.1:7777, this node), gamma (2, 10.1.0.3:7777)"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// ocfs2-mounted against mounted.ocfs2.

/// Writes `slots` into the volume's slot map, as mounts would have claimed them.
fn write_slot_map(img: &Path, slots: &[Option<u32>]) {
    let (offset, extended, block) = {
        let vol = Volume::open(FileDevice::open(img).unwrap(), MountOptions::default()).unwrap();
        let ino = vol.system_file("slot_map").unwrap();
        let offset = vol.physical_offset(ino, 0).unwrap().expect("slot map allocated");
        let info = vol.info();
        assert_eq!(usize::from(info.max_slots), slots.len(), "one entry per slot");
        (offset, info.feature_incompat & FEATURE_INCOMPAT_EXTENDED_SLOT_MAP != 0, info.block_size as usize)
    };
    let f = std::fs::OpenOptions::new().read(true).write(true).open(img).unwrap();
    let mut buf = vec![0u8; block];
    f.read_exact_at(&mut buf, offset).unwrap();
    SlotMap { slots: slots.to_vec() }.encode(&mut buf, extended).unwrap();
    f.write_all_at(&buf, offset).unwrap();
}

fn mounted(tool: &str, mode: &str, extra: &[&str], devices: &[&Path]) -> String {
    let mut cmd = Command::new(tool);
    cmd.arg(mode).args(extra).args(devices);
    let (ok, out, err) = common::run(&mut cmd);
    assert!(ok, "{tool} {mode} failed: {err}");
    out
}

#[test]
fn ocfs2_mounted_lists_the_same_devices_and_nodes_as_mounted_ocfs2() {
    common::require_tool("mounted.ocfs2");
    let scratch = Scratch::new("membership-mounted");
    let absent = scratch.path("absent.conf");
    let absent = absent.to_str().unwrap();
    struct Case {
        file: &'static str,
        mkfs: &'static [&'static str],
        slots: Option<&'static [Option<u32>]>,
    }
    let cases = [
        // The default features: extended slot map.
        Case { file: "default.img", mkfs: &["-N", "4", "-L", "data"], slots: Some(&[Some(3), None, Some(0), Some(7)]) },
        Case {
            file: "unmounted.img",
            mkfs: &["-N", "2", "-L", "idle", "--cluster-name=web", "--cluster-stack=o2cb"],
            slots: None,
        },
        // max-compat: the old slot map of le16 node numbers.
        Case {
            file: "compat.img",
            mkfs: &["-N", "3", "--fs-feature-level=max-compat"],
            slots: Some(&[None, Some(2), Some(1)]),
        },
        Case {
            file: "global.img",
            mkfs: &["-N", "2", "--global-heartbeat", "--cluster-name=web", "--cluster-stack=o2cb", "-L", "g"],
            slots: Some(&[Some(1), None]),
        },
        Case { file: "local.img", mkfs: &["-N", "1", "-M", "local", "-L", "solo"], slots: Some(&[Some(0)]) },
        Case { file: "hbdev.img", mkfs: &["-H", "-N", "2", "--cluster-name=web", "--cluster-stack=o2cb"], slots: None },
    ];
    let mut paths = Vec::new();
    for case in &cases {
        let img = scratch.path(case.file);
        common::sparse_image(&img, 128 << 20);
        common::mkfs_ocfs2(&img, case.mkfs);
        if let Some(slots) = case.slots {
            write_slot_map(&img, slots);
        }
        paths.push(img);
    }
    let not_ocfs2 = scratch.path("zeros.img");
    common::sparse_image(&not_ocfs2, 8 << 20);

    for img in paths.iter().chain(std::iter::once(&not_ocfs2)) {
        for mode in ["-d", "-f"] {
            let real = mounted("mounted.ocfs2", mode, &[], &[img]);
            let ours = mounted(MOUNTED_BIN, mode, &["-c", absent], &[img]);
            assert_eq!(ours, real, "ocfs2-mounted {mode} {} differs from mounted.ocfs2", img.display());
        }
    }
    let real = mounted("mounted.ocfs2", "-f", &[], &[&paths[0]]);
    assert!(real.ends_with("3, 0, 7\n"), "the real tool lists the slot map in slot order: {real}");

    // With cluster.conf, node numbers become names; a number it does not name stays a number.
    let conf = cluster_conf(&scratch.dir, "web", 7777, &[(0, "10.2.0.1"), (3, "10.2.0.4")], &[]);
    let ours = mounted(MOUNTED_BIN, "-f", &["-c", conf.to_str().unwrap(), "-n", "n0"], &[&paths[0]]);
    assert!(ours.ends_with("  n3, n0, 7\n"), "{ours}");

    // Several devices at once: one table, each row as mounted.ocfs2 prints it alone (columns
    // widened to the longest device name).
    let all: Vec<&Path> = paths.iter().map(PathBuf::as_path).chain(std::iter::once(not_ocfs2.as_path())).collect();
    for mode in ["-d", "-f"] {
        let table = mounted(MOUNTED_BIN, mode, &["-c", absent], &all);
        let rows: Vec<Vec<String>> =
            table.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect();
        assert_eq!(rows.len(), paths.len() + 1, "{table}");
        for img in &paths {
            let single = mounted("mounted.ocfs2", mode, &[], &[img]);
            let row: Vec<String> = single.lines().nth(1).unwrap().split_whitespace().map(str::to_string).collect();
            assert!(rows.contains(&row), "{mode}: {row:?} missing from\n{table}");
        }
    }
}

/// A loop device over an image, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(img: &Path) -> Loop {
        let (ok, out, err) = common::run(Command::new("losetup").args(["-f", "--show"]).arg(img));
        assert!(ok, "cannot attach a loop device (root and the loop driver are needed): {err}");
        Loop(out.trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn ocfs2_mounted_scans_proc_partitions_like_mounted_ocfs2() {
    common::require_tool("mounted.ocfs2");
    let scratch = Scratch::new("membership-mounted-scan");
    let img = scratch.path("loop.img");
    common::sparse_image(&img, 64 << 20);
    common::mkfs_ocfs2(&img, &["-N", "3", "-L", "scanned", "--cluster-name=web", "--cluster-stack=o2cb"]);
    write_slot_map(&img, &[None, Some(4), Some(1)]);
    let dev = Loop::attach(&img);
    let absent = scratch.path("absent.conf");
    for mode in ["-d", "-f"] {
        let real = mounted("mounted.ocfs2", mode, &[], &[]);
        let ours = mounted(MOUNTED_BIN, mode, &["-c", absent.to_str().unwrap()], &[]);
        assert_eq!(ours, real, "ocfs2-mounted {mode} without devices differs from mounted.ocfs2");
        assert!(ours.lines().any(|l| l.starts_with(&format!("{} ", dev.0))), "{} not listed:\n{ours}", dev.0);
    }
    let real = mounted("mounted.ocfs2", "-f", &[], &[Path::new(&dev.0)]);
    assert!(real.ends_with("  4, 1\n"), "{real}");
}
