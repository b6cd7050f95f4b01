//! Our DLM beside a Linux kernel node (issue 6, must show 3).
//!
//! The Linux 6.1 guest of `../shared/tools/kvm` (user-mode networking) is node 0 of a two-node
//! o2cb cluster and heartbeats on a volume made by mkfs.ocfs2 (`ocfs2_hb_ctl -S`, no mount);
//! our node 1 runs a [`Cluster`] on the same image file and speaks o2net to the kernel through
//! QEMU's port forward, with the addressing of `tests/kernel_cluster.rs`. The kernel's side of
//! the DLM is ocfs2_dlmfs: `mkdir /dlm/DOMAIN` joins a domain, opening `/dlm/DOMAIN/RES`
//! read-write takes EX, a read returns the LVB, a write sets it, the close releases (dlmfs
//! caches the lock until a BAST asks for it, so our requests make the kernel down-convert).
//!
//! Our node joins the domain first; the kernel joins it beside us (QUERY_JOIN, QUERY_NODEINFO,
//! QUERY_REGION, ASSERT_JOINED). Then the two take turns holding EX on one resource, each
//! reading the counter the other left in the LVB and writing the next: the kernel masters the
//! resource (it locks first), so our requests are CREATE_LOCK / UNLOCK_LOCK to the kernel and
//! its grants come back as PROXY_ASTs carrying the LVB.
//!
//! Then the kernel holds EX (an open file descriptor) while our node asks for EX with a short
//! timeout: the request queues at the kernel master, the timeout cancels it (UNLOCK_LOCK with
//! LKM_CANCEL) and the kernel's reply alone ends it, as `dlmunlock_common` expects.
//!
//! Then leaving and migration. Our node leaves and joins again, locks "refd" (which the kernel
//! masters and our new life does not know, so a MASTER_REQUEST finds it and the kernel counts
//! a reference of ours) and leaves again, dropping the reference with DEREF_LOCKRES. A third
//! life holds PR on the turns resource while the kernel leaves the domain: the kernel migrates
//! that resource to our node (MIG_LOCKRES with MIGRATION, our ASSERT_MASTER with
//! FINISH_MIGRATION) and nothing else (a reference left on "refd" would bring it along too).
//! Our node, now the master, up-converts and finds the LVB came along; the kernel joins again,
//! takes a turn at our master (its MASTER_REQUEST, CREATE_LOCK, our grant with the LVB). Then
//! our node leaves while it masters the resource and the kernel keeps its cached lock there:
//! the resource migrates to the kernel first, and the kernel's next turn, alone, reads the
//! value it left.
//!
//! The guest is driven over a TCP connection it opens to the host (bash's `/dev/tcp`, at
//! 10.0.2.2, which QEMU maps to the host's loopback): one command a line, one `DONE rc text`
//! line back.

mod common;

use common::guest::{Guest, GuestSpec};
use common::Scratch;
use ocfs2::cluster::config::ClusterConfig;
use ocfs2::cluster::heartbeat::HeartbeatRegion;
use ocfs2::cluster::membership::FenceAction;
use ocfs2::cluster::stack::Cluster;
use ocfs2::cluster::timeouts::Timeouts;
use ocfs2::device::{BlockDevice, FileDevice, FileDeviceOptions};
use ocfs2::dlm::{Dlm, DlmError, Mode, DLM_LVB_LEN};
use ocfs2::fs::{MountOptions, Volume};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const CLUSTER: &str = "rsclu";
const GUEST: &str = "ocfs2guest";
const GUEST_NUM: u8 = 0;
const OURS: &str = "rsnode";
const OUR_NUM: u8 = 1;
const DOMAIN: &str = "rskdlm";
const RES: &str = "turns";
/// Turns each side takes.
const TURNS: u32 = 5;
/// How long our request waits behind the kernel's EX before it is cancelled.
const CANCEL_AFTER: Duration = Duration::from_secs(2);
/// A leave that migrates takes milliseconds; waiting for an answer that never comes would not.
const LEAVE_LIMIT: Duration = Duration::from_secs(3);
/// The whole test must end within this (the guest is killed after it).
const GUEST_LIMIT_SECS: u64 = 280;

// ---- our library's log ----

struct Printer {
    start: Instant,
}

impl log::Log for Printer {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("ocfs2")
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("ours: [{:8.3}] {} {}", self.start.elapsed().as_secs_f64(), r.level(), r.args());
        }
    }

    fn flush(&self) {}
}

fn install_logger() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let p: &'static Printer = Box::leak(Box::new(Printer { start: Instant::now() }));
        log::set_logger(p).expect("install the test logger");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

// ---- the guest ----

/// The guest's side: cluster and heartbeat up, wait for our node's connection, then serve
/// commands from the host. `@...@` are filled in.
const GUEST_SCRIPT: &str = r#"C=@CLUSTER@; D=@DOMAIN@; R=/dlm/@DOMAIN@/@RES@; CTL=@CTL@
mark() { echo "MARK $* uptime=$(cut -d' ' -f1 /proc/uptime)"; }
fail() { echo "GUEST-FAIL: $*"; exit 1; }
until_t() { local n=$(( $1 * 5 )); shift; while ! "$@"; do n=$((n - 1)); [ $n -le 0 ] && return 1; sleep 0.2; done; }
accepted() { dmesg | grep -q 'o2net: Accepted connection from node'; }
# The LVB through a nested read-only open (PR), trailing padding and NULs dropped.
lvb() { head -c 64 "$R" | tr -d '\0' | sed 's/ *$//'; }
# One turn: EX, read the counter the other node left, write the next, release.
turn() {
  exec 3<>"$R" || return 1
  local v c
  v=$(lvb)
  c=$(printf '%s' "$v" | sed -n 's/^counter=\([0-9]*\) .*/\1/p'); c=${c:-0}
  printf '%-64s' "counter=$((c + 1)) by=kernel turn=$1" 1<>"$R" || { exec 3>&-; return 1; }
  exec 3>&-
  echo "read=[$v] wrote=[counter=$((c + 1)) by=kernel turn=$1]"
}
left() { [ "$(dmesg | grep -c "Node 1 leaves domain $D")" -ge "$1" ]; }

cp /root/cluster.conf /etc/ocfs2/cluster.conf
o2cb register-cluster $C || fail "o2cb register-cluster"
ocfs2_hb_ctl -S -d /dev/vda kdlm || fail "ocfs2_hb_ctl -S"
mark heartbeating
until_t 120 accepted || fail "no o2net connection from node 1"
mark connected
exec 5<>/dev/tcp/10.0.2.2/$CTL || fail "no control connection to the host"
while read -r cmd arg <&5; do
  rc=0
  case $cmd in
    join) out=$(mkdir /dlm/$D 2>&1) || rc=$? ;;
    turn) out=$(turn "$arg" 2>&1) || rc=$? ;;
    lvb) out=$(lvb 2>&1) || rc=$? ;;
    hold) if exec 4<>"$R"; then out=held; else rc=1; out="cannot open $R"; fi ;;
    release) exec 4>&-; out=released ;;
    touch) if exec 6<>"/dlm/$D/$arg"; then exec 6>&-; out=touched; else rc=1; out="cannot open $arg"; fi ;;
    waitleft) until_t 30 left "$arg" || rc=1; out=$(dmesg | grep "leaves domain $D" | tail -1) ;;
    leave) out=$( { rm -f /dlm/$D/* && rmdir /dlm/$D; } 2>&1) || rc=$? ;;
    quit) echo "DONE 0 bye" >&5; break ;;
    *) rc=1; out="unknown command $cmd" ;;
  esac
  echo "DONE $rc $out" | tr '\n' ' ' >&5; echo >&5
done
mark served
ocfs2_hb_ctl -K -d /dev/vda kdlm || fail "ocfs2_hb_ctl -K"
o2cb unregister-cluster $C || fail "o2cb unregister-cluster"
mark done
"#;

/// The host's end of the guest's command connection.
struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Control {
    fn accept(listener: &TcpListener, guest: &mut Guest, limit: Duration) -> Control {
        listener.set_nonblocking(true).unwrap();
        let end = Instant::now() + limit;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                    let writer = stream.try_clone().unwrap();
                    return Control { reader: BufReader::new(stream), writer };
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("accepting the guest's control connection: {e}"),
            }
            guest.check_running("the host waited for the control connection");
            assert!(Instant::now() < end, "the guest did not connect for commands within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `line` in the guest and returns its output; panics if it fails or takes too long.
    fn run(&mut self, guest: &mut Guest, line: &str, limit: Duration) -> String {
        writeln!(self.writer, "{line}").expect("send a command to the guest");
        let end = Instant::now() + limit;
        let mut buf = Vec::new();
        loop {
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) => panic!("the guest closed the control connection during '{line}':\n{}", guest.console()),
                Ok(_) if buf.ends_with(b"\n") => break,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading the guest's answer to '{line}': {e}"),
            }
            guest.check_running(&format!("the guest ran '{line}'"));
            assert!(Instant::now() < end, "the guest did not finish '{line}' within {limit:?}:\n{}", guest.console());
        }
        let text = String::from_utf8_lossy(&buf).trim().to_string();
        let rest = text.strip_prefix("DONE ").unwrap_or_else(|| panic!("odd answer to '{line}': {text}"));
        let (rc, out) = rest.split_once(' ').unwrap_or((rest, ""));
        assert_eq!(rc, "0", "the guest's '{line}' failed: {out}\n{}", guest.console());
        out.trim().to_string()
    }
}

// ---- setup ----

fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0)).expect("bind a free port").local_addr().unwrap().port()
}

/// cluster.conf as `who` sees the cluster: the guest knows our node at QEMU's gateway, we
/// know the guest at the port forward.
fn cluster_conf(guest_addr: (Ipv4Addr, u16), our_addr: (Ipv4Addr, u16)) -> ClusterConfig {
    let mut conf = ClusterConfig::empty("cluster.conf");
    conf.add_cluster(CLUSTER).unwrap();
    conf.add_node(CLUSTER, GUEST, guest_addr.0, Some(guest_addr.1), Some(GUEST_NUM)).unwrap();
    conf.add_node(CLUSTER, OURS, our_addr.0, Some(our_addr.1), Some(OUR_NUM)).unwrap();
    conf.validate().expect("a valid cluster.conf");
    conf
}

fn heartbeat_region(img: &Path) -> (String, HeartbeatRegion) {
    let vol = Volume::open(FileDevice::open(img).expect("open image"), MountOptions::default()).expect("open volume");
    let area = vol.heartbeat_area().expect("heartbeat area");
    (vol.info().uuid_hex(), HeartbeatRegion::new(area.start_byte, area.sector_size, area.blocks))
}

fn lvb_text(lvb: &[u8; DLM_LVB_LEN]) -> String {
    String::from_utf8_lossy(lvb).trim_end_matches(['\0', ' ']).to_string()
}

/// An LVB holding `text`, padded with spaces as the guest's `printf '%-64s'` pads its own.
fn lvb_of(text: &str) -> [u8; DLM_LVB_LEN] {
    let mut lvb = [b' '; DLM_LVB_LEN];
    lvb[..text.len()].copy_from_slice(text.as_bytes());
    lvb
}

fn counter_of(text: &str) -> Option<u32> {
    text.strip_prefix("counter=")?.split(' ').next()?.parse().ok()
}

/// Our node joins the domain the kernel is in, and waits until both see it.
fn join_beside_the_kernel(cluster: &Arc<Cluster>) -> Dlm {
    let dlm = Dlm::join_timeout(cluster, DOMAIN, Duration::from_secs(30)).expect("our node joins again");
    let end = Instant::now() + Duration::from_secs(10);
    while dlm.members() != vec![GUEST_NUM, OUR_NUM] {
        assert!(Instant::now() < end, "our join beside the kernel: members {:?}", dlm.members());
        std::thread::sleep(Duration::from_millis(50));
    }
    dlm
}

fn kernel_log(console: &str) -> String {
    console.split("---- guest kernel log ----").nth(1).unwrap_or("").to_string()
}

/// The o2dlm line that starts with `head`, with the node list the kernel prints after it
/// (`__dlm_print_nodes`, which the console shows one piece a line): "... ( 0 1 ) 2 nodes".
fn dlm_line(klog: &str, head: &str) -> Option<String> {
    let lines: Vec<&str> = klog.lines().map(|l| l.split_once("] ").map_or(l, |(_, t)| t).trim()).collect();
    let at = lines.iter().position(|l| l.starts_with(head))?;
    let mut text = lines[at].to_string();
    for l in lines.iter().skip(at + 1).take(O2NM_PRINT_MAX) {
        text.push(' ');
        text.push_str(l);
        if l.ends_with("nodes") {
            break;
        }
    }
    Some(text)
}

/// Pieces of a node list worth reading: a bracket, up to two nodes, the count.
const O2NM_PRINT_MAX: usize = 5;

#[test]
fn a_kernel_node_and_ours_share_a_dlm_domain_and_take_turns_holding_ex_with_the_lvb_carried_across() {
    install_logger();
    let t0 = Instant::now();
    let scratch = Scratch::new("kernel-dlm");
    let img = scratch.path("hb.img");
    common::sparse_image(&img, 256 << 20);
    let cluster_name = format!("--cluster-name={CLUSTER}");
    common::mkfs_ocfs2(
        &img,
        &["-N", "4", "-b", "4096", "-C", "4096", "--cluster-stack=o2cb", &cluster_name, "-L", "kd"],
    );
    let (uuid, region) = heartbeat_region(&img);

    let ours_ip = Ipv4Addr::new(127, 0, 0, 2);
    let our_port = free_port(ours_ip);
    let fwd_port = free_port(Ipv4Addr::LOCALHOST);
    let ctl = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("control listener");
    let ctl_port = ctl.local_addr().unwrap().port();
    let conf = scratch.path("cluster.conf");
    let guest_conf = cluster_conf((Ipv4Addr::new(10, 0, 2, 15), 7777), (Ipv4Addr::new(10, 0, 2, 2), our_port));
    std::fs::write(&conf, guest_conf.to_string()).unwrap();

    // Our node: o2net, membership and a heartbeat on the image (O_DIRECT, as the guest's disk
    // has no host cache), with the kernel's default timeouts.
    let ours_conf = cluster_conf((Ipv4Addr::LOCALHOST, fwd_port), (ours_ip, our_port));
    let fence = FenceAction::callback(|r| panic!("our node fenced itself: {r}"));
    let cluster =
        Arc::new(Cluster::start_with(ours_conf, Some(OURS), Timeouts::default(), fence).expect("start cluster"));
    let dev =
        FileDevice::open_with(&img, FileDeviceOptions { writable: true, direct: Some(true) }).expect("open image");
    let dev: Arc<dyn BlockDevice> = Arc::new(dev);
    cluster.heartbeat_region(&uuid, dev, region).expect("start our heartbeat");

    let script = GUEST_SCRIPT
        .replace("@CLUSTER@", CLUSTER)
        .replace("@DOMAIN@", DOMAIN)
        .replace("@RES@", RES)
        .replace("@CTL@", &ctl_port.to_string());
    let mut guest = Guest::start(&GuestSpec {
        img: &img,
        script: &script,
        dir: &scratch.dir,
        o2net_fwd: fwd_port,
        conf: &conf,
        hostname: GUEST,
        limit_secs: GUEST_LIMIT_SECS,
    });
    guest.wait_mark("connected", Duration::from_secs(150));
    let mut control = Control::accept(&ctl, &mut guest, Duration::from_secs(30));
    let end = Instant::now() + Duration::from_secs(30);
    while !cluster.members().contains(GUEST_NUM) {
        guest.check_running("our node waited to see the kernel node up");
        assert!(Instant::now() < end, "the kernel node is not a member of our cluster");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Our node founds the domain; the kernel joins it beside us.
    let dlm = Dlm::join_timeout(&cluster, DOMAIN, Duration::from_secs(30)).expect("our node joins the domain");
    assert_eq!(dlm.members(), vec![OUR_NUM], "the kernel was not in the domain yet");
    let joined = control.run(&mut guest, "join", Duration::from_secs(60));
    eprintln!("guest: join: {joined}");
    let end = Instant::now() + Duration::from_secs(10);
    while dlm.members() != vec![GUEST_NUM, OUR_NUM] {
        assert!(Instant::now() < end, "the kernel's join did not reach our node: members {:?}", dlm.members());
        std::thread::sleep(Duration::from_millis(50));
    }
    let t_joined = t0.elapsed();

    // The turns: the kernel locks first and so masters the resource.
    let mut exchange = Vec::new();
    let mut expect = 0u32;
    for n in 1..=TURNS {
        let t = Instant::now();
        let k = control.run(&mut guest, &format!("turn {n}"), Duration::from_secs(60));
        let k_ms = t.elapsed().as_millis();
        let read = k.split("read=[").nth(1).and_then(|r| r.split(']').next()).unwrap_or("");
        let read_counter = counter_of(read).unwrap_or(0);
        assert_eq!(read_counter, expect, "turn {n}: the kernel read [{read}], not our last value");
        if n > 1 {
            assert!(read.contains("by=rsnode"), "turn {n}: the kernel read [{read}]");
        }
        expect += 1;

        let t = Instant::now();
        let h = dlm.lock_timeout(RES.as_bytes(), Mode::Ex, 0, Some(Duration::from_secs(30))).unwrap_or_else(|e| {
            panic!("turn {n}: our EX request failed ({e}) after the kernel's turn:\n{}", guest.console())
        });
        let got = lvb_text(&dlm.lvb(&h));
        assert_eq!(counter_of(&got), Some(expect), "turn {n}: our node read [{got}], not the kernel's value");
        assert!(got.contains("by=kernel"), "turn {n}: our node read [{got}]");
        expect += 1;
        dlm.set_lvb(&h, &lvb_of(&format!("counter={expect} by=rsnode turn={n}"))).unwrap();
        dlm.unlock(h).expect("our unlock");
        let o_ms = t.elapsed().as_millis();
        let line = format!(
            "turn {n}: kernel EX read [{read}] wrote counter={} ({k_ms} ms) | ours EX read [{got}] wrote counter={expect} ({o_ms} ms)",
            expect - 1
        );
        eprintln!("exchange: {line}");
        exchange.push(line);
    }
    // A request of ours queued behind the kernel's EX and cancelled when its time is up: the
    // kernel master answers the cancel DLM_NORMAL and sends nothing else.
    control.run(&mut guest, "hold", Duration::from_secs(30));
    let t = Instant::now();
    let r = dlm.lock_timeout(RES.as_bytes(), Mode::Ex, 0, Some(CANCEL_AFTER));
    let waited = t.elapsed();
    eprintln!("exchange: our EX request behind the kernel's EX ended after {waited:?}: {:?}", r.as_ref().err());
    assert!(matches!(r, Err(DlmError::Cancelled)), "our request behind the kernel's EX: {:?}", r.map(|_| ()));
    assert!(waited >= CANCEL_AFTER && waited < CANCEL_AFTER + Duration::from_secs(10), "cancelled after {waited:?}");
    control.run(&mut guest, "release", Duration::from_secs(30));

    // The kernel reads our last value.
    let last = control.run(&mut guest, "lvb", Duration::from_secs(30));
    eprintln!("exchange: kernel reads after the last turn: [{last}]");
    assert_eq!(counter_of(&last), Some(expect), "the kernel's last read [{last}]");
    assert!(last.contains("by=rsnode"), "{last}");

    let t = Instant::now();
    dlm.leave().expect("our node leaves the domain");
    eprintln!("host: our node left the domain in {:?}", t.elapsed());
    assert!(t.elapsed() < LEAVE_LIMIT, "our leave took {:?}", t.elapsed());
    control.run(&mut guest, "waitleft 1", Duration::from_secs(60));

    // References: the kernel masters "refd" (it took a lock there while we were away, so our
    // next life does not know its master); our MASTER_REQUEST for it is answered YES and the
    // kernel counts a reference of ours, which our leave drops with DEREF_LOCKRES. Had it not,
    // the kernel would later migrate "refd" to us (or spin trying when we are not there).
    control.run(&mut guest, "touch refd", Duration::from_secs(30));
    let dlm = join_beside_the_kernel(&cluster);
    let h = dlm.lock_timeout(b"refd", Mode::Pr, 0, Some(Duration::from_secs(30))).expect("our PR on refd");
    dlm.unlock(h).expect("our unlock of refd");
    let t = Instant::now();
    dlm.leave().expect("our node leaves the domain again");
    eprintln!("host: our node left the domain again in {:?}", t.elapsed());
    assert!(t.elapsed() < LEAVE_LIMIT, "our leave took {:?}", t.elapsed());
    control.run(&mut guest, "waitleft 2", Duration::from_secs(60));

    // We join a third time and hold PR on RES, which the kernel masters; then the kernel
    // leaves the domain and, as `dlm_migrate_lockres` does, migrates RES to the only node with
    // a lock on it: ours. "refd" stays behind: no reference of ours is left on it.
    let dlm = join_beside_the_kernel(&cluster);
    let h = dlm.lock_timeout(RES.as_bytes(), Mode::Pr, 0, Some(Duration::from_secs(30))).expect("our PR on RES");
    assert_eq!(counter_of(&lvb_text(&dlm.lvb(&h))), Some(expect), "our PR read [{}]", lvb_text(&dlm.lvb(&h)));
    assert!(!dlm.masters(RES.as_bytes()), "the kernel masters RES before it leaves");
    let t = Instant::now();
    let out = control.run(&mut guest, "leave", Duration::from_secs(60));
    eprintln!("guest: leave (migrates RES to us): {out} ({:?})", t.elapsed());
    let end = Instant::now() + Duration::from_secs(10);
    while dlm.members() != vec![OUR_NUM] {
        assert!(Instant::now() < end, "the kernel's exit did not reach our node: members {:?}", dlm.members());
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = dlm.stats();
    eprintln!("host: after the kernel left: masters RES {}, {stats:?}", dlm.masters(RES.as_bytes()));
    assert!(dlm.masters(RES.as_bytes()), "RES was not migrated to our node");
    assert_eq!(stats.migrations_in, 1, "only RES comes over (more: the kernel kept a reference of ours on refd)");
    // The LVB came with it: our up-convert, granted here at the new master, reads it.
    dlm.convert(&h, Mode::Ex, 0).expect("our up-convert at the new master");
    let got = lvb_text(&dlm.lvb(&h));
    assert_eq!(counter_of(&got), Some(expect), "after the migration our EX read [{got}]");
    expect += 1;
    dlm.set_lvb(&h, &lvb_of(&format!("counter={expect} by=rsnode migrated"))).unwrap();
    dlm.unlock(h).expect("our unlock at the new master");
    exchange.push(format!("migration: RES mastered by our node, EX read [{got}] wrote counter={expect}"));

    // The kernel joins again and takes a turn at our master; its release brings the LVB here.
    control.run(&mut guest, "join", Duration::from_secs(60));
    let k = control.run(&mut guest, &format!("turn {}", TURNS + 1), Duration::from_secs(60));
    let read = k.split("read=[").nth(1).and_then(|r| r.split(']').next()).unwrap_or("");
    assert_eq!(counter_of(read), Some(expect), "the kernel's turn at our master read [{read}]");
    assert!(read.contains("by=rsnode migrated"), "{read}");
    expect += 1;

    // Our node leaves while it masters RES and the kernel keeps its cached lock there: as
    // `dlm_migrate_all_locks` does, RES goes to the kernel first (MIG_LOCKRES with MIGRATION,
    // the kernel's ASSERT_MASTER with FINISH_MIGRATION), then our EXIT_DOMAIN. Had it not, the
    // kernel's next request would go to a master that is gone.
    let t = Instant::now();
    dlm.leave().expect("our node leaves, handing RES to the kernel");
    let left_in = t.elapsed();
    eprintln!("host: our node left, migrating RES to the kernel, in {left_in:?}");
    assert!(left_in < LEAVE_LIMIT, "our leave took {left_in:?}");
    control.run(&mut guest, "waitleft 3", Duration::from_secs(60));
    let k = control.run(&mut guest, &format!("turn {}", TURNS + 2), Duration::from_secs(60));
    let read7 = k.split("read=[").nth(1).and_then(|r| r.split(']').next()).unwrap_or("");
    assert_eq!(counter_of(read7), Some(expect), "the kernel's turn after our leave read [{read7}]");
    assert!(read7.contains("by=kernel"), "{read7}");
    exchange.push(format!(
        "kernel turn at our master read [{read}]; our leave handed RES to the kernel ({left_in:?}); its next turn read [{read7}]"
    ));
    control.run(&mut guest, "leave", Duration::from_secs(60));
    control.run(&mut guest, "quit", Duration::from_secs(10));
    guest.wait_mark("done", Duration::from_secs(60));
    let (rc, console) = guest.finish();
    drop(cluster);

    let klog = kernel_log(&console);
    eprintln!("---- kernel log (o2dlm/o2net lines) ----");
    for l in klog.lines().filter(|l| l.contains("o2dlm") || l.contains("o2net") || l.contains("ERROR")) {
        eprintln!("{l}");
    }
    eprintln!("---- exchange ----");
    for l in &exchange {
        eprintln!("{l}");
    }
    eprintln!("joined after {t_joined:?}, total {:?}", t0.elapsed());
    assert_eq!(rc, 0, "the guest script failed:\n{console}");
    let joining = dlm_line(&klog, &format!("o2dlm: Joining domain {DOMAIN}")).unwrap_or_default();
    eprintln!("kernel: {joining}");
    assert!(joining.ends_with("( 0 1 ) 2 nodes"), "the kernel did not join the domain beside our node:\n{klog}");
    let left = dlm_line(&klog, &format!("o2dlm: Node {OUR_NUM} leaves domain {DOMAIN}")).unwrap_or_default();
    eprintln!("kernel: {left}");
    assert!(left.ends_with("( 0 ) 1 nodes"), "the kernel did not see our node leave:\n{klog}");
    for bad in ["ERROR:", "BUG", "Oops", "Call Trace"] {
        let hits: Vec<&str> = klog.lines().filter(|l| l.contains(bad)).collect();
        assert!(hits.is_empty(), "the kernel logged '{bad}':\n{}", hits.join("\n"));
    }
    assert!(t0.elapsed() < Duration::from_secs(300), "the test took {:?}", t0.elapsed());
}
