//! The DLM over real TCP: four `ocfs2-dlm torture` processes, an o2cb cluster on 127.0.0.x
//! heartbeating on an image made by mkfs.ocfs2, take random locks on shared resources while the
//! test SIGKILLs one or two of them at random times and starts them again (they rejoin).
//!
//! The torture processes prove exclusion and LVB freshness through files outside the DLM (see
//! `torture` in examples/ocfs2-dlm.rs). The test checks that none reports a violation or a DLM
//! error, that every node that was not killed keeps finishing requests (a node whose oldest
//! request waits longer than the death-detection time plus a margin hangs), that every one ends
//! cleanly, that each resource's counter file equals the sum of the completed EX sections (plus
//! at most one per section a kill interrupted), and that no LVB was invalid before a node died.
//!
//! `OCFS2_DLM_TCP_SECONDS` sets the length of the run (default 40); `OCFS2_TEST_SEED` replays
//! the kill schedule and the nodes' seeds (timing still differs).

mod common;

use common::{LineProcess, Scratch};
use ocfs2::cluster::config::ClusterConfig;
use ocfs2::testing::{seed, Rng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DLM_BIN: &str = env!("CARGO_BIN_EXE_ocfs2-dlm");

const NODES: u8 = 4;
const RESOURCES: usize = 6;
const THREADS: usize = 2;
const PORT: u16 = 17_871;
/// Heartbeat: a node is dead after THRESHOLD intervals without a write, 2 s. Short enough for a
/// test, long enough that a loaded machine does not starve a live node into looking dead.
const INTERVAL_MS: u64 = 200;
const THRESHOLD: u64 = 10;
const DEAD_MS: u64 = INTERVAL_MS * THRESHOLD;
/// How long a request may wait, beyond the death detection, before the node counts as hung:
/// recovery, a rejoin and a loaded machine's scheduling fit in it many times over.
const STALL_MARGIN_MS: u64 = 12_000;
/// From start to joined (cluster start, heartbeat settle, domain join behind a recovery).
const JOIN_LIMIT: Duration = Duration::from_secs(40);

fn ip(node: u8) -> String {
    format!("127.0.0.{}", 71 + node)
}

fn write_config(dir: &Path) -> (PathBuf, PathBuf) {
    let mut c = ClusterConfig::empty("test");
    c.add_cluster("dlmtcp").unwrap();
    for n in 0..NODES {
        c.add_node("dlmtcp", &format!("n{n}"), ip(n).parse().unwrap(), Some(PORT), Some(n)).unwrap();
    }
    let conf = dir.join("cluster.conf");
    c.save(&conf).unwrap();
    let o2cb = dir.join("o2cb");
    std::fs::write(
        &o2cb,
        format!(
            "O2CB_HEARTBEAT_THRESHOLD={THRESHOLD}\nO2CB_HEARTBEAT_INTERVAL_MS={INTERVAL_MS}\nO2CB_IDLE_TIMEOUT_MS=8000\n\
             O2CB_KEEPALIVE_DELAY_MS=1000\nO2CB_RECONNECT_DELAY_MS=500\n"
        ),
    )
    .unwrap();
    (conf, o2cb)
}

/// One incarnation of a node's torture process and what the test saw of it.
struct Run {
    node: u8,
    proc_: LineProcess,
    pid: u32,
    started: Instant,
    killed: bool,
    exited: Option<std::process::ExitStatus>,
    /// Lines handled so far.
    read: usize,
    joined: bool,
    last_progress: Option<Instant>,
    last_ops: u64,
    ops_changed: Instant,
    summary: Option<String>,
    /// The longest wait of a request it reported.
    max_oldest_ms: u64,
}

struct Cluster {
    conf: PathBuf,
    o2cb: PathBuf,
    img: PathBuf,
    files: PathBuf,
    runs: Vec<Run>,
}

/// `key=value` from a progress or summary line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

impl Cluster {
    fn spawn(&mut self, node: u8, seconds: f64, seed: u64) {
        let mut cmd = Command::new(DLM_BIN);
        cmd.arg("-c").arg(&self.conf).args(["-n", &format!("n{node}"), "--defaults"]).arg(&self.o2cb);
        cmd.arg(&self.img).args(["-", "torture", "--dir"]).arg(&self.files);
        cmd.args(["--seconds", &format!("{seconds:.1}"), "--resources", &RESOURCES.to_string()]);
        cmd.args(["--threads", &THREADS.to_string(), "--seed", &seed.to_string(), "--report-ms", "250"]);
        for v in [
            "HEARTBEAT_THRESHOLD",
            "HEARTBEAT_INTERVAL_MS",
            "IDLE_TIMEOUT_MS",
            "KEEPALIVE_DELAY_MS",
            "RECONNECT_DELAY_MS",
        ] {
            cmd.env_remove(format!("O2CB_{v}"));
        }
        let proc_ = LineProcess::spawn(&format!("n{node}"), cmd);
        let pid = proc_.child.id();
        eprintln!("dlm_tcp: started node {node} pid {pid} seed {seed} for {seconds:.1} s");
        let now = Instant::now();
        self.runs.push(Run {
            node,
            proc_,
            pid,
            started: now,
            killed: false,
            exited: None,
            read: 0,
            joined: false,
            last_progress: None,
            last_ops: 0,
            ops_changed: now,
            summary: None,
            max_oldest_ms: 0,
        });
    }

    fn live(&self, node: u8) -> Option<usize> {
        self.runs.iter().position(|r| r.node == node && !r.killed && r.exited.is_none())
    }

    fn kill(&mut self, node: u8) {
        let i = self.live(node).expect("the victim runs");
        let r = &mut self.runs[i];
        r.proc_.child.kill().unwrap();
        let _ = r.proc_.child.wait();
        r.killed = true;
        eprintln!("dlm_tcp: SIGKILLed node {node} pid {}", r.pid);
    }

    /// Reads what every process printed and checks it; `Err` is the first failure.
    fn poll(&mut self, first_kill: Option<Instant>) -> Result<(), String> {
        let now = Instant::now();
        let stall = Duration::from_millis(DEAD_MS + STALL_MARGIN_MS);
        for r in &mut self.runs {
            let lines = r.proc_.printed();
            for line in &lines[r.read..] {
                if line.starts_with("violation") || line.starts_with("error") {
                    return Err(format!("node {} pid {}: {line}", r.node, r.pid));
                }
                if line.starts_with("torture ") {
                    r.joined = true;
                    r.ops_changed = now;
                } else if line.starts_with("progress ") {
                    r.last_progress = Some(now);
                    let ops = field(line, "ops").unwrap_or(0);
                    if ops != r.last_ops {
                        r.last_ops = ops;
                        r.ops_changed = now;
                    }
                    if field(line, "invalid_lvb").unwrap_or(0) > 0 && first_kill.is_none_or(|k| now < k) {
                        return Err(format!("node {} read an invalid LVB though no node had died: {line}", r.node));
                    }
                    let oldest = field(line, "oldest_ms").unwrap_or(0);
                    r.max_oldest_ms = r.max_oldest_ms.max(oldest);
                    if !r.killed && oldest > stall.as_millis() as u64 {
                        return Err(format!("node {} pid {}: a request waits for {oldest} ms: {line}", r.node, r.pid));
                    }
                } else if line.starts_with("summary ") {
                    r.summary = Some(line.clone());
                }
            }
            r.read = lines.len();
            if r.killed || r.exited.is_some() {
                continue;
            }
            if let Some(status) = r.proc_.child.try_wait().unwrap() {
                r.exited = Some(status);
                let tail: Vec<&String> = lines.iter().rev().take(5).collect();
                if !status.success() {
                    return Err(format!("node {} pid {} exited with {status}; last lines {tail:?}", r.node, r.pid));
                }
                if r.summary.is_none() {
                    return Err(format!("node {} pid {} exited without a summary; last lines {tail:?}", r.node, r.pid));
                }
                continue;
            }
            if !r.joined {
                if now - r.started > JOIN_LIMIT {
                    return Err(format!("node {} pid {} did not join within {JOIN_LIMIT:?}: {lines:?}", r.node, r.pid));
                }
                continue;
            }
            if r.summary.is_none() && now - r.ops_changed > stall {
                return Err(format!(
                    "node {} pid {} finished no request for {:?} (last progress {:?} ago)",
                    r.node,
                    r.pid,
                    now - r.ops_changed,
                    r.last_progress.map(|t| now - t)
                ));
            }
        }
        Ok(())
    }
}

/// `tN COUNT` lines of the tally files, summed per resource, and per pid.
fn tallies(files: &Path) -> (Vec<u64>, BTreeMap<u32, u64>) {
    let mut sum = vec![0u64; RESOURCES];
    let mut per_pid = BTreeMap::new();
    for e in std::fs::read_dir(files).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let Some(rest) = name.strip_prefix("tally.") else { continue };
        let Some(pid) = rest.split('.').nth(1).and_then(|p| p.parse::<u32>().ok()) else { continue };
        let text = std::fs::read_to_string(files.join(&name)).unwrap();
        for l in text.lines() {
            let (r, n) = l.split_once(' ').unwrap();
            let r: usize = r.trim_start_matches('t').parse().unwrap();
            let n: u64 = n.parse().unwrap();
            sum[r] += n;
            *per_pid.entry(pid).or_insert(0) += n;
        }
    }
    (sum, per_pid)
}

#[test]
fn four_processes_over_tcp_keep_exclusion_and_lvbs_through_sigkills_and_rejoins() {
    let seconds: f64 = match std::env::var("OCFS2_DLM_TCP_SECONDS") {
        Ok(v) => v.trim().parse().expect("OCFS2_DLM_TCP_SECONDS must be a number"),
        Err(_) => 40.0,
    };
    assert!(seconds >= 10.0, "OCFS2_DLM_TCP_SECONDS must be at least 10");
    let base = seed();
    eprintln!("dlm_tcp: seed {base} (replay: OCFS2_TEST_SEED={base}), {seconds} s");
    let mut rng = Rng::new(base);

    let scratch = Scratch::new("dlm-tcp");
    let img = scratch.path("shared.img");
    common::sparse_image(&img, 256 << 20);
    common::mkfs_ocfs2(&img, &["-N", "4", "-b", "4096", "-C", "4096", "--cluster-stack=o2cb", "--cluster-name=dlmtcp"]);
    let (conf, o2cb) = write_config(&scratch.dir);
    let files = scratch.path("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut c = Cluster { conf, o2cb, img, files: files.clone(), runs: Vec::new() };

    for n in 0..NODES {
        let s = rng.next_u64();
        c.spawn(n, seconds, s);
    }
    // The run's clock starts when all four joined.
    let join_deadline = Instant::now() + JOIN_LIMIT;
    while !c.runs.iter().all(|r| r.joined) {
        if let Err(e) = c.poll(None) {
            panic!("{e}\nreplay: OCFS2_TEST_SEED={base}");
        }
        assert!(Instant::now() < join_deadline, "the nodes did not all join within {JOIN_LIMIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(seconds);

    // One or two kills, at random times in the middle of the run, each restarted after a while.
    let kills = 1 + rng.below(2) as usize;
    let mut plan: Vec<(Duration, u64)> = (0..kills)
        .map(|_| {
            let at = Duration::from_secs_f64(seconds * (0.15 + 0.5 * (rng.below(1000) as f64 / 1000.0)));
            (at, 300 + rng.below(2700))
        })
        .collect();
    plan.sort();
    eprintln!(
        "dlm_tcp: kills at {:?}",
        plan.iter().map(|(t, d)| format!("{:.1}s (down {d} ms)", t.as_secs_f64())).collect::<Vec<_>>()
    );
    let mut first_kill = None;
    let mut killed_pids = BTreeSet::new();
    // (restart at, node)
    let mut restarts: Vec<(Instant, u8)> = Vec::new();
    let mut next = 0;
    loop {
        let now = Instant::now();
        if next < plan.len() && now >= t0 + plan[next].0 {
            // The survivors of two deaths must hold the lowest node, or o2quo fences them (a
            // tie without the lowest node loses): a second victim spares node 0, and no one
            // is killed while node 0 is down.
            let down: Vec<u8> = (0..NODES).filter(|&n| c.live(n).is_none()).collect();
            if down.contains(&0) {
                plan[next].0 += Duration::from_millis(500);
            } else {
                let candidates: Vec<u8> =
                    (0..NODES).filter(|n| !down.contains(n) && (down.is_empty() || *n != 0)).collect();
                let victim = candidates[rng.below(candidates.len() as u64) as usize];
                c.kill(victim);
                killed_pids.insert(c.runs.iter().rev().find(|r| r.node == victim).unwrap().pid);
                first_kill.get_or_insert(now);
                restarts.push((now + Duration::from_millis(plan[next].1), victim));
                next += 1;
            }
        }
        if let Some(k) = restarts.iter().position(|(t, _)| now >= *t) {
            let (_, node) = restarts.remove(k);
            let left = (end.saturating_duration_since(now).as_secs_f64()).max(5.0);
            let s = rng.next_u64();
            c.spawn(node, left, s);
        }
        if let Err(e) = c.poll(first_kill) {
            panic!("{e}\nreplay: OCFS2_TEST_SEED={base}");
        }
        let all_done = c.runs.iter().all(|r| r.killed || r.exited.is_some());
        if all_done && next == plan.len() && restarts.is_empty() {
            break;
        }
        assert!(
            now < end + Duration::from_secs(90),
            "the nodes did not finish within 90 s of the end: {:?}\nreplay: OCFS2_TEST_SEED={base}",
            c.runs.iter().filter(|r| !r.killed && r.exited.is_none()).map(|r| r.node).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The counters against the completed EX sections.
    let mut stale: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); RESOURCES];
    for r in &mut c.runs {
        for line in r.proc_.printed() {
            if let Some(rest) = line.strip_prefix("stale t") {
                let f: Vec<&str> = rest.split_whitespace().collect();
                stale[f[0].parse::<usize>().unwrap()].insert(f[1].parse().unwrap());
            }
        }
    }
    for (res, s) in stale.iter_mut().enumerate() {
        // A section a kill interrupted that nobody took EX after.
        if let Ok(text) = std::fs::read_to_string(files.join(format!("t{res}.ex"))) {
            s.insert(text.split_whitespace().next().unwrap().parse().unwrap());
        }
        for pid in s.iter() {
            assert!(killed_pids.contains(pid), "t{res}: an EX section of pid {pid}, which was not killed, never ended");
        }
    }
    let (sum, per_pid) = tallies(&files);
    let mut totals = (0u64, 0u64, 0u64, 0u64);
    for r in &c.runs {
        let Some(s) = &r.summary else { continue };
        let ex_tally = per_pid.get(&r.pid).copied().unwrap_or(0);
        // A convert EX -> PR counts one EX section; tallies count the same sections.
        assert_eq!(field(s, "ex"), Some(ex_tally), "node {} pid {}: summary and tally disagree: {s}", r.node, r.pid);
        totals.0 += field(s, "ops").unwrap_or(0);
        totals.1 += field(s, "ex").unwrap_or(0);
        totals.2 += field(s, "pr").unwrap_or(0);
        totals.3 += field(s, "invalid_lvb").unwrap_or(0);
    }
    for res in 0..RESOURCES {
        let count: u64 = std::fs::read_to_string(files.join(format!("t{res}.count")))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0);
        let (lo, hi) = (sum[res], sum[res] + stale[res].len() as u64);
        assert!(
            (lo..=hi).contains(&count),
            "t{res}: the counter is {count}, the completed EX sections {lo}, interrupted ones {:?}\nreplay: OCFS2_TEST_SEED={base}",
            stale[res]
        );
    }
    let incarnations = c.runs.len();
    let waits: Vec<String> = c.runs.iter().map(|r| format!("n{}:{}", r.node, r.max_oldest_ms)).collect();
    eprintln!(
        "dlm_tcp: ok: {incarnations} processes, {} kills; finishers did {} ops, {} EX and {} PR sections, {} invalid \
         LVB reads; counters {:?} (interrupted sections {:?}); longest waits (ms) {}",
        killed_pids.len(),
        totals.0,
        totals.1,
        totals.2,
        totals.3,
        (0..RESOURCES)
            .map(|r| std::fs::read_to_string(files.join(format!("t{r}.count"))).unwrap_or_default().trim().to_string())
            .collect::<Vec<_>>(),
        stale.iter().map(BTreeSet::len).collect::<Vec<_>>(),
        waits.join(" ")
    );
}
