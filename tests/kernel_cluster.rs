//! Our heartbeat and o2net beside a Linux kernel node (issue 5, must show 4).
//!
//! The Linux 6.1 guest of `../shared/tools/kvm` (user-mode networking) is node 0 of a two-node
//! o2cb cluster and mounts a volume made by mkfs.ocfs2; our node 1 heartbeats on the same image
//! file and speaks o2net to the kernel through QEMU's port forward. The test runs one guest
//! through two lives of our node:
//!
//! 1. Our node heartbeats before the kernel mounts, so the kernel's DLM asks it to join the
//!    domain (DLM_QUERY_JOIN); the "no handler" reply lets the mount go on. Our node dials,
//!    the kernel accepts, and both stay connected past the idle timeout. Our node stops
//!    cleanly; the kernel declares it down at its next heartbeat read and goes on writing.
//! 2. Our node starts again while the kernel is mounted and connects again; the kernel
//!    unmounts, and our node sees it leave at once.
//!
//! Addressing (QEMU user networking): the guest is 10.0.2.15 and listens on 7777, reached from
//! the host at 127.0.0.1:FWD. A connection through that forward reaches the guest from
//! 10.0.2.2, the address the kernel knows our node by, so cluster.conf puts node 1 there. Our
//! listener sits on 127.0.0.2 because o2net knows a peer by its IP alone, and the guest's
//! forward already is 127.0.0.1 in our configuration; the kernel never dials us (the
//! higher-numbered node connects).

mod common;

use common::guest::{Guest, GuestSpec};
use common::Scratch;
use ocfs2::cluster::config::ClusterConfig;
use ocfs2::cluster::heartbeat::{
    Heartbeat, HeartbeatConfig, HeartbeatEvent, HeartbeatRegion, NodeMap, SystemClock, O2HB_DEFAULT_DEAD_THRESHOLD,
    O2HB_REGION_TIMEOUT,
};
use ocfs2::cluster::net::{Net, NetConfig, NetEvent, NetNode, NetTimeouts};
use ocfs2::device::{BlockDevice, FileDevice, FileDeviceOptions};
use ocfs2::fs::{MountOptions, Volume};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const CLUSTER: &str = "rsclu";
const GUEST: &str = "ocfs2guest";
const GUEST_NUM: u8 = 0;
const OURS: &str = "rsnode";
const OUR_NUM: u8 = 1;
/// Seconds the guest holds the connection: longer than the 30 s idle timeout.
const HOLD_SECS: u64 = 36;
/// How soon after our clean stop the kernel must call us down: one heartbeat read (2 s) plus
/// slack for the emulated guest and the polling on both sides; the dead threshold would be 62 s.
const DOWN_AT_ONCE: Duration = Duration::from_secs(10);

// ---- our library's log, kept for assertions ----

struct Recorder {
    start: Instant,
    lines: Mutex<Vec<String>>,
}

impl log::Log for Recorder {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("ocfs2")
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let line = format!("[{:8.3}] {} {}", self.start.elapsed().as_secs_f64(), r.level(), r.args());
            eprintln!("ours: {line}");
            self.lines.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

fn recorder() -> &'static Recorder {
    static REC: OnceLock<&'static Recorder> = OnceLock::new();
    REC.get_or_init(|| {
        let rec: &'static Recorder =
            Box::leak(Box::new(Recorder { start: Instant::now(), lines: Mutex::new(Vec::new()) }));
        log::set_logger(rec).expect("install the test logger");
        log::set_max_level(log::LevelFilter::Debug);
        rec
    })
}

fn our_log() -> Vec<String> {
    recorder().lines.lock().unwrap().clone()
}

// ---- our node: heartbeat and o2net wired together ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Hb(HeartbeatEvent),
    Net(NetEvent),
}

type Events = Arc<Mutex<Vec<(Instant, Ev)>>>;

/// One life of our node: the heartbeat on the image, o2net, and a thread that passes
/// heartbeat's node up/down to o2net as the kernel's o2net callbacks do.
struct OurNode {
    hb: Option<Heartbeat>,
    net: Arc<Net>,
    events: Events,
}

impl OurNode {
    fn start(img: &Path, region: HeartbeatRegion, net_cfg: NetConfig) -> OurNode {
        let net = Arc::new(Net::start(net_cfg).expect("start o2net"));
        let events: Events = Arc::new(Mutex::new(Vec::new()));
        let net_rx = net.subscribe();
        {
            let events = events.clone();
            std::thread::spawn(move || {
                for e in net_rx {
                    eprintln!("ours: net event {e:?}");
                    events.lock().unwrap().push((Instant::now(), Ev::Net(e)));
                }
            });
        }
        let dev = FileDevice::open_with(img, FileDeviceOptions { writable: true, direct: Some(true) })
            .expect("open the image with O_DIRECT");
        assert_eq!(dev.sector_size(), region.block_bytes, "the kernel's virtio disk has 512-byte sectors");
        let dev: Arc<dyn BlockDevice> = Arc::new(dev);
        let mut nodes = NodeMap::new();
        nodes.insert(GUEST_NUM);
        nodes.insert(OUR_NUM);
        // The kernel's fixed 2 s interval and default threshold: hb_dead_ms must agree (62000).
        let cfg = HeartbeatConfig { interval: O2HB_REGION_TIMEOUT, dead_threshold: O2HB_DEFAULT_DEAD_THRESHOLD, nodes };
        let hb = Heartbeat::start(dev, region, OUR_NUM, cfg, Arc::new(SystemClock::new())).expect("start heartbeat");
        let hb_rx = hb.subscribe();
        {
            let events = events.clone();
            let net = net.clone();
            std::thread::spawn(move || {
                for e in hb_rx {
                    eprintln!("ours: heartbeat event {e:?}");
                    match e {
                        HeartbeatEvent::NodeUp(n) if n != OUR_NUM => net.set_peer_live(n, true),
                        HeartbeatEvent::NodeDown(n) if n != OUR_NUM => net.set_peer_live(n, false),
                        _ => {}
                    }
                    events.lock().unwrap().push((Instant::now(), Ev::Hb(e)));
                }
            });
        }
        OurNode { hb: Some(hb), net, events }
    }

    fn events(&self) -> Vec<(Instant, Ev)> {
        self.events.lock().unwrap().clone()
    }

    fn first(&self, ev: &Ev) -> Option<Instant> {
        self.events().into_iter().find(|(_, e)| e == ev).map(|(t, _)| t)
    }

    /// Waits for our node to report `ev`; fails early if `guest` ends meanwhile.
    fn wait_for(&self, ev: &Ev, limit: Duration, mut guest: Option<&mut Guest>) -> Instant {
        let end = Instant::now() + limit;
        loop {
            if let Some(t) = self.first(ev) {
                return t;
            }
            if let Some(g) = guest.as_deref_mut() {
                g.check_running(&format!("waiting for our node to see {ev:?}"));
            }
            assert!(Instant::now() < end, "our node did not see {ev:?} within {limit:?}; events {:?}", self.events());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops as a node leaving the cluster: heartbeat first (peers are reported down, which
    /// closes their connections, and the block is written with generation 0), then o2net.
    fn stop(&mut self) {
        if let Some(hb) = self.hb.take() {
            hb.stop().expect("clean heartbeat stop");
        }
        self.net.stop();
    }
}

impl Drop for OurNode {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- the guest ----

/// The guest's side, as a shell script; `@CLUSTER@` and `@HOLD@` are filled in. Every wait has
/// a limit, and every step prints a `MARK` line the host waits for.
const GUEST_SCRIPT: &str = r#"C=@CLUSTER@; HOLD=@HOLD@
mark() { echo "MARK $* uptime=$(cut -d' ' -f1 /proc/uptime)"; }
fail() { echo "GUEST-FAIL: $*"; exit 1; }
# until_t SECS CMD...: polls CMD every 0.2 s until it succeeds or SECS pass.
until_t() { local n=$(( $1 * 5 )); shift; while ! "$@"; do n=$((n - 1)); [ $n -le 0 ] && return 1; sleep 0.2; done; }
livenodes() { tr -s ' \n' ' ' < /sys/kernel/debug/o2hb/livenodes; }
live1() { grep -qw 1 /sys/kernel/debug/o2hb/livenodes; }
not_live1() { ! live1; }
# The remote end of the established o2net connection, as the guest sees it.
o2net_peer() { netstat -tn | awk '$4 ~ /:7777$/ && $6 == "ESTABLISHED" { print $5 }' | tr '\n' ' '; }
accepted() { [ "$(dmesg | grep -c 'o2net: Accepted connection from node')" -ge "$1" ]; }

mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
[ -r /sys/kernel/debug/o2hb/livenodes ] || fail "no o2hb debugfs"
# o2hb's node events are logged only with the HEARTBEAT mask.
echo allow > /sys/fs/o2cb/logmask/HEARTBEAT || fail "no o2cb log mask"
cp /root/cluster.conf /etc/ocfs2/cluster.conf
o2cb register-cluster $C || fail "o2cb register-cluster"
for a in idle_timeout_ms keepalive_delay_ms reconnect_delay_ms; do
  echo "configfs $a = $(cat /sys/kernel/config/cluster/$C/$a)"; done
echo "configfs heartbeat dead_threshold = $(cat /sys/kernel/config/cluster/$C/heartbeat/dead_threshold)"
mkdir -p /mnt/t
mark mounting livenodes=$(livenodes)
mount -t ocfs2 /dev/vda /mnt/t || fail "mount"
mark mounted livenodes=$(livenodes)
until_t 90 accepted 1 || fail "no connection from node 1"
mark connected-1 livenodes=$(livenodes) peer=$(o2net_peer)
sleep $HOLD
mark held idle-lines=$(dmesg | grep -c 'has been idle') livenodes=$(livenodes)
until_t 120 not_live1 || fail "node 1 is still live"
mark node1-down-1 livenodes=$(livenodes)
echo "written by the kernel after node 1 left" > /mnt/t/after-leave.txt && sync || fail "write after node 1 left"
mark wrote
until_t 120 accepted 2 || fail "no second connection from node 1"
mark connected-2 livenodes=$(livenodes)
sleep 6
live1 || fail "node 1 went down before the unmount"
umount /mnt/t || fail "umount"
mark unmounted
o2cb unregister-cluster $C || fail "o2cb unregister-cluster"
mark done
"#;

// ---- setup ----

fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0)).expect("bind a free port").local_addr().unwrap().port()
}

/// The cluster.conf the guest uses: node 0 the guest at its own address, node 1 ours at the
/// address the guest sees our connections come from.
fn cluster_conf(our_port: u16) -> String {
    let mut conf = ClusterConfig::empty("cluster.conf");
    conf.add_cluster(CLUSTER).unwrap();
    conf.add_node(CLUSTER, GUEST, Ipv4Addr::new(10, 0, 2, 15), Some(7777), Some(GUEST_NUM)).unwrap();
    conf.add_node(CLUSTER, OURS, Ipv4Addr::new(10, 0, 2, 2), Some(our_port), Some(OUR_NUM)).unwrap();
    conf.validate().expect("a valid cluster.conf");
    conf.to_string()
}

fn heartbeat_region(img: &Path) -> (String, HeartbeatRegion) {
    let vol = Volume::open(FileDevice::open(img).expect("open image"), MountOptions::default()).expect("open volume");
    let area = vol.heartbeat_area().expect("heartbeat area");
    (vol.info().uuid_hex(), HeartbeatRegion::new(area.start_byte, area.sector_size, area.blocks))
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// The kernel log lines the guest printed after its script.
fn kernel_log(console: &str) -> String {
    console.split("---- guest kernel log ----").nth(1).unwrap_or("").to_string()
}

#[test]
fn a_kernel_node_sees_our_node_up_connected_past_the_idle_timeout_and_down_at_once_when_it_leaves() {
    recorder();
    let scratch = Scratch::new("kernel-cluster");
    let img = scratch.path("cluster.img");
    common::sparse_image(&img, 1 << 30);
    let cluster_name = format!("--cluster-name={CLUSTER}");
    let mkfs_args = ["-N", "4", "-b", "4096", "-C", "4096", "--cluster-stack=o2cb", &cluster_name, "-L", "kc"];
    common::mkfs_ocfs2(&img, &mkfs_args);
    let (uuid, region) = heartbeat_region(&img);
    eprintln!("host: volume {uuid}, heartbeat region {region:?}");

    let ours_ip = Ipv4Addr::new(127, 0, 0, 2);
    let our_addr = SocketAddr::from((ours_ip, free_port(ours_ip)));
    let fwd_port = free_port(Ipv4Addr::LOCALHOST);
    let timeouts = NetTimeouts::default();
    let net_cfg = NetConfig {
        local: NetNode::new(OUR_NUM, OURS, our_addr),
        peers: vec![NetNode::new(GUEST_NUM, GUEST, SocketAddr::from((Ipv4Addr::LOCALHOST, fwd_port)))],
        timeouts,
        send_timeout: Duration::from_millis(u64::from(timeouts.idle_timeout_ms)),
    };
    let conf = scratch.path("cluster.conf");
    std::fs::write(&conf, cluster_conf(our_addr.port())).unwrap();

    // Life 1: our node heartbeats before the kernel mounts.
    let mut node = OurNode::start(&img, region, net_cfg.clone());
    let script = GUEST_SCRIPT.replace("@CLUSTER@", CLUSTER).replace("@HOLD@", &HOLD_SECS.to_string());
    let mut guest = Guest::start(&GuestSpec {
        img: &img,
        script: &script,
        dir: &scratch.dir,
        o2net_fwd: fwd_port,
        conf: &conf,
        hostname: GUEST,
        limit_secs: 420,
    });
    guest.wait_mark("mounted", Duration::from_secs(240));
    let connected_1 = guest.wait_mark("connected-1", Duration::from_secs(120));
    // QEMU's user-mode NAT makes our connection come from the gateway address, which is why
    // cluster.conf names our node 10.0.2.2 (the kernel knows a peer by its source IP).
    assert!(connected_1.contains(" peer=10.0.2.2:"), "the guest sees our connection from elsewhere: {connected_1}");
    let up = node.wait_for(&Ev::Hb(HeartbeatEvent::NodeUp(GUEST_NUM)), Duration::from_secs(30), Some(&mut guest));
    let connected = node.wait_for(&Ev::Net(NetEvent::Connected(GUEST_NUM)), Duration::from_secs(30), Some(&mut guest));
    assert!(up <= connected, "o2net connects only once heartbeat says the kernel node is live");
    let held = guest.wait_mark("held", Duration::from_secs(HOLD_SECS + 60));
    assert!(held.contains("idle-lines=0 "), "the kernel found the connection idle: {held}");
    assert!(held.contains("livenodes=0 1 "), "the kernel no longer sees our node live: {held}");
    let since_connect = connected.elapsed();
    assert!(since_connect > Duration::from_millis(u64::from(timeouts.idle_timeout_ms)), "held only {since_connect:?}");
    let events = node.events();
    let after_connect: Vec<&Ev> = events.iter().filter(|(t, _)| *t >= connected).map(|(_, e)| e).collect();
    assert!(
        !after_connect.iter().any(|e| matches!(
            e,
            Ev::Net(NetEvent::Idle(_) | NetEvent::Disconnected(..))
                | Ev::Hb(HeartbeatEvent::NodeDown(_) | HeartbeatEvent::Fenced | HeartbeatEvent::Clash(_))
        )),
        "our node lost the kernel node while holding: {after_connect:?}"
    );
    assert_eq!(node.net.connected_nodes(), vec![GUEST_NUM]);
    assert!(node.net.idle_nodes().is_empty());
    assert!(node.hb.as_ref().unwrap().live_nodes().contains(GUEST_NUM));
    let join = our_log().into_iter().find(|l| l.contains("couldn't find handler for type 510 key 666c6172"));
    assert!(join.is_some(), "the kernel's DLM did not ask our node to join its domain (DLM_QUERY_JOIN)");

    // Our node leaves; the kernel must call it down at its next heartbeat read.
    let stopped_at = Instant::now();
    node.stop();
    guest.wait_mark("node1-down-1", DOWN_AT_ONCE + Duration::from_secs(30));
    let down_after = stopped_at.elapsed();
    eprintln!("host: the kernel declared our node down {down_after:?} after it stopped");
    assert!(down_after < DOWN_AT_ONCE, "the kernel took {down_after:?} to declare our stopped node down");
    guest.wait_mark("wrote", Duration::from_secs(60));
    drop(node);

    // Life 2: our node starts while the kernel is mounted.
    let node = OurNode::start(&img, region, net_cfg);
    guest.wait_mark("connected-2", Duration::from_secs(120));
    node.wait_for(&Ev::Hb(HeartbeatEvent::NodeUp(GUEST_NUM)), Duration::from_secs(30), Some(&mut guest));
    node.wait_for(&Ev::Net(NetEvent::Connected(GUEST_NUM)), Duration::from_secs(30), Some(&mut guest));
    guest.wait_mark("unmounted", Duration::from_secs(120));
    let unmounted = Instant::now();
    // The guest may power off meanwhile: its leaving block stays on the image.
    let down = node.wait_for(&Ev::Hb(HeartbeatEvent::NodeDown(GUEST_NUM)), Duration::from_secs(20), None);
    assert!(
        down.saturating_duration_since(unmounted) < Duration::from_secs(6),
        "our node took {:?} after the unmount to see the kernel node leave",
        down.saturating_duration_since(unmounted)
    );
    assert!(node.events().iter().any(|(_, e)| matches!(e, Ev::Net(NetEvent::Disconnected(n, _)) if *n == GUEST_NUM)));
    guest.wait_mark("done", Duration::from_secs(60));
    drop(node);

    let (rc, console) = guest.finish();
    let klog = kernel_log(&console);
    eprintln!("---- kernel log (o2/ocfs2 lines) ----");
    for l in klog.lines().filter(|l| l.contains("o2") || l.contains("ocfs2") || l.contains("Node")) {
        eprintln!("{l}");
    }
    assert_eq!(rc, 0, "the guest script failed:\n{console}");
    let accepted = format!("o2net: Accepted connection from node {OURS} (num {OUR_NUM}) at 10.0.2.2:");
    assert_eq!(count(&klog, &accepted), 2, "the kernel accepted our node once per life:\n{klog}");
    assert_eq!(count(&klog, "has been idle"), 0, "the kernel found a connection idle:\n{klog}");
    // Our clean stop is seen by its generation (written 0), not by the dead threshold.
    let lines: Vec<&str> = klog.lines().collect();
    let gen_zero = lines
        .iter()
        .position(|l| l.contains(&format!("Node {OUR_NUM} changed generation (0x")) && l.ends_with(" to 0x0)"))
        .unwrap_or_else(|| panic!("the kernel never read our leaving block:\n{klog}"));
    let left: Vec<usize> =
        (0..lines.len()).filter(|&i| lines[i].contains(&format!("Node {OUR_NUM} left my region"))).collect();
    assert_eq!(left.len(), 1, "{klog}");
    assert!(
        gen_zero < left[0] && left[0] - gen_zero <= 3,
        "the kernel called our node down, but not on reading its leaving block:\n{klog}"
    );
    for bad in ["another node is heartbeating", "Another node is heartbeating", "has a dead count", "BUG", "Oops"] {
        assert_eq!(count(&klog, bad), 0, "the kernel logged '{bad}':\n{klog}");
    }
    // The kernel went on after our node left: its file is on the image.
    let text = common::debugfs(&img, "cat /after-leave.txt");
    assert!(text.contains("written by the kernel after node 1 left"), "debugfs cat: {text}");
    let (fsck_rc, fsck) = common::fsck_fn(&img);
    assert_eq!(fsck_rc, 0, "fsck.ocfs2 -fn after both nodes left:\n{fsck}");
}
