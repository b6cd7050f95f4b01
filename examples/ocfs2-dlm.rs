//! `ocfs2-dlm`: take o2dlm locks from the command line, as a node of an o2cb cluster with no
//! kernel module: start the cluster stack, heartbeat on the volume, join the DLM domain.
//!
//! ```text
//! ocfs2-dlm [-c CONF] [-n NODE] [--defaults FILE] [-v] DEVICE DOMAIN COMMAND
//!   lock RES NL|PR|EX [--trylock] [--hold SECONDS] [--lvb-read] [--lvb-write TEXT]
//!   bench [--seconds S] [--resources N] [--mode PR|EX] [--cached]
//!   torture --dir DIR [--seconds S] [--resources N] [--seed X] [--threads T] [--hold-ms M]
//!           [--report-ms R]
//! ```
//!
//! DOMAIN `-` means the volume's UUID, the domain a mount would join. `lock` prints
//! `granted RES MODE` (and `lvb TEXT` with `--lvb-read`, the LVB up to its first NUL), holds the
//! lock for `--hold` seconds, writes `--lvb-write TEXT` into the LVB (it reaches the master
//! when an EX lock is released) and unlocks; it exits 0 only when the lock was granted, 1 when
//! a trylock found it busy. `bench` takes and releases locks on `--resources` names (shared by
//! every node running it) for `--seconds` and prints `bench OPS ops in SECS s: RATE/s`;
//! `--cached` uses the lock cache (a lock stays held until another node asks for it).
//!
//! `torture` takes random PR and EX locks, converts, trylocks, cancelled requests and cached
//! locks on `--resources` names for `--seconds` from `--threads` threads, and proves from files
//! in `--dir` (shared by every node running it) that no two incompatible locks were held at
//! once and that no LVB was stale; see the `torture` module below for the files and the rules.
//! It prints `torture node N pid P seed S ...`, `progress ops=N ... oldest_ms=MS` every
//! `--report-ms` (the oldest request still waiting), `stale tR PID node N` for an EX section a
//! kill interrupted, and `summary ...`; it exits 3 after printing `violation ...`, 4 after
//! `error ...` (a DLM call failed).

#[path = "cli.rs"]
mod cli;

use cli::{say, Global};
use ocfs2::cluster::config::{HeartbeatMode, DEFAULT_PATH};
use ocfs2::cluster::stack::{Cluster, ClusterOptions, Environment};
use ocfs2::dlm::wire::{DLM_LVB_LEN, LKM_NOQUEUE};
use ocfs2::dlm::{Dlm, DlmError, Mode};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: ocfs2-dlm [-c CONF] [-n NODE] [--defaults FILE] [-v] DEVICE DOMAIN COMMAND
  lock RES NL|PR|EX [--trylock] [--hold SECONDS] [--lvb-read] [--lvb-write TEXT]
  bench [--seconds S] [--resources N] [--mode PR|EX] [--cached]
  torture --dir DIR [--seconds S] [--resources N] [--seed X] [--threads T] [--hold-ms M] [--report-ms R]";

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s.to_ascii_uppercase().as_str() {
        "NL" => Ok(Mode::Nl),
        "PR" => Ok(Mode::Pr),
        "EX" => Ok(Mode::Ex),
        other => Err(format!("mode must be NL, PR or EX, not {other}")),
    }
}

fn main() -> ExitCode {
    let (g, rest) = match cli::parse_global("ocfs2-dlm", USAGE, DEFAULT_PATH) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    if rest.len() < 3 {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    match run(&g, &rest[0], &rest[1], &rest[2], &rest[3..]) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ocfs2-dlm: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(g: &Global, device: &str, domain: &str, cmd: &str, args: &[String]) -> Result<ExitCode, String> {
    // Check the command before bringing the node online.
    let job = match cmd {
        "lock" => Job::Lock(LockArgs::parse(args)?),
        "bench" => Job::Bench(BenchArgs::parse(args)?),
        "torture" => Job::Torture(torture::TortureArgs::parse(args).map_err(|e| format!("{e}\n{USAGE}"))?),
        other => return Err(format!("unknown command {other}\n{USAGE}")),
    };
    let options = ClusterOptions {
        config_path: g.conf.clone(),
        node_name: g.node.clone(),
        defaults_path: g.defaults.clone(),
        env: Environment::Process,
        ..ClusterOptions::default()
    };
    let cluster = Arc::new(Cluster::start(options).map_err(|e| e.to_string())?);
    let region = if cluster.heartbeat_mode() == HeartbeatMode::Global {
        let r = cluster.start_global_heartbeat(&[device.to_string()]).map_err(|e| e.to_string())?;
        r.into_iter().next().ok_or("no global heartbeat region started")?
    } else {
        cluster.heartbeat_device(device).map_err(|e| e.to_string())?
    };
    let domain = if domain == "-" { region } else { domain.to_string() };
    // Give the network a moment to connect to the peers heartbeat shows.
    let settle = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle && cluster.members().len() + 1 < cluster.live_nodes().len() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let dlm = Dlm::join(&cluster, &domain).map_err(|e| format!("joining domain {domain}: {e}"))?;
    say(&format!("joined {domain} node {} members {:?}", dlm.node(), dlm.members()));
    let result = match job {
        Job::Lock(a) => lock(&dlm, &a),
        Job::Bench(a) => bench(&dlm, &a),
        Job::Torture(a) => torture::run(&dlm, &a),
    };
    let left = dlm.leave();
    drop(cluster);
    if let Err(e) = left {
        eprintln!("ocfs2-dlm: leaving the domain: {e}");
    }
    result
}

enum Job {
    Lock(LockArgs),
    Bench(BenchArgs),
    Torture(torture::TortureArgs),
}

struct LockArgs {
    res: String,
    mode: Mode,
    trylock: bool,
    hold: Duration,
    lvb_read: bool,
    lvb_write: Option<String>,
}

impl LockArgs {
    fn parse(args: &[String]) -> Result<LockArgs, String> {
        let (Some(res), Some(mode)) = (args.first(), args.get(1)) else {
            return Err(format!("lock needs RES and MODE\n{USAGE}"));
        };
        let mut a = LockArgs {
            res: res.clone(),
            mode: parse_mode(mode)?,
            trylock: false,
            hold: Duration::ZERO,
            lvb_read: false,
            lvb_write: None,
        };
        if a.res.is_empty() || a.res.len() > ocfs2::dlm::DLM_LOCKID_NAME_MAX {
            return Err(format!("RES must be 1 to {} bytes", ocfs2::dlm::DLM_LOCKID_NAME_MAX));
        }
        let mut it = args[2..].iter();
        while let Some(o) = it.next() {
            let mut value = || it.next().cloned().ok_or_else(|| format!("{o} needs a value"));
            match o.as_str() {
                "--trylock" => a.trylock = true,
                "--lvb-read" => a.lvb_read = true,
                "--hold" => {
                    let v = value()?;
                    let s: f64 = v.parse().map_err(|_| format!("--hold takes seconds, not {v}"))?;
                    a.hold = Duration::from_secs_f64(s.max(0.0));
                }
                "--lvb-write" => {
                    let v = value()?;
                    if v.len() > DLM_LVB_LEN {
                        return Err(format!("--lvb-write takes at most {DLM_LVB_LEN} bytes"));
                    }
                    a.lvb_write = Some(v);
                }
                other => return Err(format!("unknown option {other}\n{USAGE}")),
            }
        }
        Ok(a)
    }
}

fn lock(dlm: &Dlm, a: &LockArgs) -> Result<ExitCode, String> {
    let flags = if a.trylock { LKM_NOQUEUE } else { 0 };
    let h = match dlm.lock(a.res.as_bytes(), a.mode, flags) {
        Ok(h) => h,
        Err(DlmError::NotQueued) => {
            say(&format!("busy {}", a.res));
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(format!("lock {}: {e}", a.res)),
    };
    say(&format!("granted {} {}", a.res, a.mode.name()));
    if a.lvb_read {
        let lvb = dlm.lvb(&h);
        let end = lvb.iter().position(|&b| b == 0).unwrap_or(lvb.len());
        say(&format!("lvb {}", String::from_utf8_lossy(&lvb[..end])));
    }
    if let Some(text) = &a.lvb_write {
        let mut lvb = [0u8; DLM_LVB_LEN];
        lvb[..text.len()].copy_from_slice(text.as_bytes());
        dlm.set_lvb(&h, &lvb).map_err(|e| e.to_string())?;
        if a.mode != Mode::Ex {
            eprintln!("ocfs2-dlm: the LVB only travels with a release from EX");
        }
    }
    std::thread::sleep(a.hold);
    dlm.unlock(h).map_err(|e| format!("unlock {}: {e}", a.res))?;
    say(&format!("unlocked {}", a.res));
    Ok(ExitCode::SUCCESS)
}

struct BenchArgs {
    seconds: f64,
    resources: usize,
    mode: Mode,
    cached: bool,
}

impl BenchArgs {
    fn parse(args: &[String]) -> Result<BenchArgs, String> {
        let mut a = BenchArgs { seconds: 5.0, resources: 16, mode: Mode::Ex, cached: false };
        let mut it = args.iter();
        while let Some(o) = it.next() {
            let mut value = || it.next().cloned().ok_or_else(|| format!("{o} needs a value"));
            match o.as_str() {
                "--seconds" => a.seconds = value()?.parse().map_err(|_| "--seconds takes a number".to_string())?,
                "--resources" => {
                    a.resources = value()?.parse().map_err(|_| "--resources takes a number".to_string())?;
                    a.resources = a.resources.max(1);
                }
                "--mode" => a.mode = parse_mode(&value()?)?,
                "--cached" => a.cached = true,
                other => return Err(format!("unknown option {other}\n{USAGE}")),
            }
        }
        Ok(a)
    }
}

fn bench(dlm: &Dlm, a: &BenchArgs) -> Result<ExitCode, String> {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds.max(0.1));
    let mut ops: u64 = 0;
    let mut i: usize = 0;
    while Instant::now() < end {
        let name = format!("bench{:06}", i % a.resources);
        i += 1;
        if a.cached {
            let guard = dlm.acquire(name.as_bytes(), a.mode).map_err(|e| format!("acquire {name}: {e}"))?;
            drop(guard);
        } else {
            let h = dlm.lock(name.as_bytes(), a.mode, 0).map_err(|e| format!("lock {name}: {e}"))?;
            dlm.unlock(h).map_err(|e| format!("unlock {name}: {e}"))?;
        }
        ops += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    say(&format!("bench {ops} ops in {secs:.2} s: {:.0}/s", ops as f64 / secs));
    Ok(ExitCode::SUCCESS)
}

/// `torture`: random locks, converts, trylocks, cancels and cached locks on shared resources,
/// with mutual exclusion and LVB freshness proved outside the DLM, in files of a directory that
/// every node of the test shares.
///
/// For resource `tN` (lock name `tortureN`):
/// - `DIR/tN.ex` exists while an EX section runs and names its holder (`PID STARTTIME NODE
///   THREAD`). It is made with link(2) from a private file, so it appears whole or not at all.
///   EEXIST from a live holder is a violation; from a dead one it means that holder was
///   SIGKILLed inside its section: the file is removed and `stale tN PID` printed.
/// - `DIR/tN.count`: a counter that every EX section increments (replaced by rename).
/// - The LVB: `TRT1`, the counter (u64 LE) and the writer's pid; set with the counter, it
///   travels to the master when the EX lock is released or converted down.
/// - `DIR/tally.NODE.PID`: `tN COUNT` lines, the EX sections this process completed (replaced
///   by rename after each, before `tN.ex` goes). A test sums the tallies: each counter equals
///   that sum, plus at most one per stale section of that resource.
///
/// Rules checked, while the lock is held:
/// - EX: no live holder in `tN.ex`; PR: none either, before and after the hold.
/// - The LVB the grant brought is all zero or carries exactly the counter of the file. Zero is
///   what recovery leaves when it cannot know the value (core.rs: the master zeroes it when a
///   node that held EX dies; a new master whose survivors hold no PR or EX copy starts from
///   zero); any other value than the file's is a stale or invented LVB. An EX holder that finds
///   it zero starts again from the file.
///
/// A violation prints `violation ...` with the evidence and exits with status 3; a DLM error
/// other than a refused trylock or a cancel prints `error ...` and exits with status 4.
mod torture {
    use super::cli::say;
    use ocfs2::dlm::driver::CachedLock;
    use ocfs2::dlm::wire::{DLM_LVB_LEN, LKM_NOQUEUE};
    use ocfs2::dlm::{Dlm, DlmError, LockHandle, Lvb, Mode};
    use ocfs2::testing::Rng;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Mutex, RwLock};
    use std::time::{Duration, Instant};

    const LVB_MAGIC: &[u8; 4] = b"TRT1";

    pub struct TortureArgs {
        dir: PathBuf,
        seconds: f64,
        resources: usize,
        seed: u64,
        threads: usize,
        hold_ms: u64,
        report_ms: u64,
    }

    impl TortureArgs {
        pub fn parse(args: &[String]) -> Result<TortureArgs, String> {
            let mut a = TortureArgs {
                dir: PathBuf::new(),
                seconds: 10.0,
                resources: 4,
                seed: ocfs2::testing::seed(),
                threads: 2,
                hold_ms: 3,
                report_ms: 500,
            };
            let mut it = args.iter();
            while let Some(o) = it.next() {
                let v = it.next().ok_or_else(|| format!("{o} needs a value"))?;
                let num = |what: &str| v.parse::<u64>().map_err(|_| format!("{what} takes a number, not {v}"));
                match o.as_str() {
                    "--dir" => a.dir = PathBuf::from(v),
                    "--seconds" => a.seconds = v.parse().map_err(|_| format!("--seconds takes a number, not {v}"))?,
                    "--resources" => a.resources = num(o)?.clamp(1, 1000) as usize,
                    "--seed" => a.seed = num(o)?,
                    "--threads" => a.threads = num(o)?.clamp(1, 64) as usize,
                    "--hold-ms" => a.hold_ms = num(o)?,
                    "--report-ms" => a.report_ms = num(o)?.max(10),
                    other => return Err(format!("unknown option {other}")),
                }
            }
            if a.dir.as_os_str().is_empty() {
                return Err("torture needs --dir DIR".into());
            }
            Ok(a)
        }
    }

    /// Who runs an EX section: enough to tell a live holder from a dead one whose pid came back.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Holder {
        pid: u32,
        start: u64,
        node: u8,
        thread: usize,
    }

    impl Holder {
        fn text(&self) -> String {
            format!("{} {} {} {}", self.pid, self.start, self.node, self.thread)
        }

        fn parse(s: &str) -> Option<Holder> {
            let mut f = s.split_whitespace();
            Some(Holder {
                pid: f.next()?.parse().ok()?,
                start: f.next()?.parse().ok()?,
                node: f.next()?.parse().ok()?,
                thread: f.next()?.parse().ok()?,
            })
        }

        /// Alive: the process exists, is not a zombie, and started when the file says.
        fn alive(&self) -> bool {
            proc_state(self.pid).is_some_and(|(state, start)| !matches!(state, 'Z' | 'X' | 'x') && start == self.start)
        }
    }

    /// The state letter and start time (clock ticks since boot) of a process, from /proc.
    fn proc_state(pid: u32) -> Option<(char, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some((f.first()?.chars().next()?, f.get(19)?.parse().ok()?))
    }

    fn lvb_of(counter: u64, pid: u32) -> Lvb {
        let mut v = [0u8; DLM_LVB_LEN];
        v[..4].copy_from_slice(LVB_MAGIC);
        v[4..12].copy_from_slice(&counter.to_le_bytes());
        v[12..16].copy_from_slice(&pid.to_le_bytes());
        v
    }

    /// `Ok(None)` for the invalid (all zero) LVB, `Ok(Some(counter))` for ours, `Err` for
    /// anything else.
    fn counter_of(lvb: &Lvb) -> Result<Option<u64>, String> {
        if lvb.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if &lvb[..4] != LVB_MAGIC {
            return Err(format!("an LVB nobody wrote: {:02x?}", &lvb[..16]));
        }
        let mut c = [0u8; 8];
        c.copy_from_slice(&lvb[4..12]);
        Ok(Some(u64::from_le_bytes(c)))
    }

    /// A granted lock, plain or from the lock cache.
    enum Held<'a, 'b> {
        Plain(&'a Dlm, &'b LockHandle),
        Cached(&'b CachedLock<'a>),
    }

    impl Held<'_, '_> {
        fn lvb(&self) -> Lvb {
            match self {
                Held::Plain(d, h) => d.lvb(h),
                Held::Cached(c) => c.lvb(),
            }
        }

        fn set_lvb(&self, v: &Lvb) -> Result<(), DlmError> {
            match self {
                Held::Plain(d, h) => d.set_lvb(h, v),
                Held::Cached(c) => c.set_lvb(v),
            }
        }
    }

    #[derive(Default)]
    struct Counters {
        ops: AtomicU64,
        ex: AtomicU64,
        pr: AtomicU64,
        not_queued: AtomicU64,
        cancelled: AtomicU64,
        converts: AtomicU64,
        cached: AtomicU64,
        invalid_lvb: AtomicU64,
        stale: AtomicU64,
    }

    impl Counters {
        fn line(&self) -> String {
            let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
            format!(
                "ops={} ex={} pr={} notqueued={} cancelled={} converts={} cached={} invalid_lvb={} stale={}",
                g(&self.ops),
                g(&self.ex),
                g(&self.pr),
                g(&self.not_queued),
                g(&self.cancelled),
                g(&self.converts),
                g(&self.cached),
                g(&self.invalid_lvb),
                g(&self.stale)
            )
        }
    }

    struct Ctx<'a> {
        dlm: &'a Dlm,
        a: &'a TortureArgs,
        me: Holder,
        counters: Counters,
        /// Per thread, when its current operation started (ms since `epoch`, 0: between ops).
        started: Vec<AtomicU64>,
        epoch: Instant,
        /// EX sections this process completed, per resource, and the file that records them.
        tally: Mutex<Vec<u64>>,
        tally_path: PathBuf,
        /// The lock cache shares a cached lock between the threads of a node, as the
        /// filesystem's holders share it; they exclude each other with these, as inodes do
        /// with their own locks.
        local: Vec<RwLock<()>>,
        done: AtomicBool,
    }

    fn violation(what: String) -> ! {
        say(&format!("violation {what}"));
        std::process::exit(3);
    }

    fn error(what: String) -> ! {
        say(&format!("error {what}"));
        std::process::exit(4);
    }

    fn res_name(r: usize) -> String {
        format!("torture{r}")
    }

    /// Writes `text` to `path` by rename of a private file, so a kill leaves old or new.
    fn replace(path: &Path, text: &str, pid: u32, thread: usize) {
        let tmp = path.with_extension(format!("tmp.{pid}.{thread}"));
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            error(format!("writing {}: {e}", path.display()));
        }
    }

    impl Ctx<'_> {
        fn path(&self, r: usize, ext: &str) -> PathBuf {
            self.a.dir.join(format!("t{r}.{ext}"))
        }

        fn read_count(&self, r: usize) -> u64 {
            match std::fs::read_to_string(self.path(r, "count")) {
                Ok(s) => s.trim().parse().unwrap_or_else(|_| violation(format!("t{r}.count holds {s:?}"))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => error(format!("reading t{r}.count: {e}")),
            }
        }

        /// The holder `tN.ex` names, if the file exists.
        fn ex_holder(&self, r: usize) -> Option<(Holder, String)> {
            match std::fs::read_to_string(self.path(r, "ex")) {
                Ok(s) => match Holder::parse(&s) {
                    Some(h) => Some((h, s)),
                    None => violation(format!("t{r}.ex holds {s:?}")),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => error(format!("reading t{r}.ex: {e}")),
            }
        }

        fn hold(&self, rng: &mut Rng) {
            if self.a.hold_ms > 0 && rng.below(2) == 0 {
                std::thread::sleep(Duration::from_millis(rng.below(self.a.hold_ms + 1)));
            }
        }

        /// The LVB rule: zero (invalid) or exactly the file's counter.
        fn check_lvb(&self, r: usize, mode: &str, lvb: &Lvb, count: u64) -> Option<u64> {
            match counter_of(lvb) {
                Ok(None) => {
                    // Zero before the first EX section is just the initial value.
                    if count > 0 {
                        self.counters.invalid_lvb.fetch_add(1, Ordering::Relaxed);
                    }
                    None
                }
                Ok(Some(c)) if c == count => Some(c),
                Ok(Some(c)) => violation(format!(
                    "t{r}: {mode} granted with LVB counter {c} (written by pid {}) but t{r}.count is {count}",
                    u32::from_le_bytes([lvb[12], lvb[13], lvb[14], lvb[15]])
                )),
                Err(e) => violation(format!("t{r}: {mode} granted with {e}")),
            }
        }

        fn me(&self, thread: usize) -> Holder {
            Holder { thread, ..self.me.clone() }
        }

        fn ex_section(&self, t: usize, r: usize, held: &Held, rng: &mut Rng) {
            let me = self.me(t);
            let ex = self.path(r, "ex");
            let mine = self.a.dir.join(format!("mine.{}.{t}", me.pid));
            if let Err(e) = std::fs::write(&mine, me.text()) {
                error(format!("writing {}: {e}", mine.display()));
            }
            loop {
                match std::fs::hard_link(&mine, &ex) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let Some((h, text)) = self.ex_holder(r) else { continue };
                        if h.alive() {
                            violation(format!(
                                "t{r}: EX granted to pid {} node {} thread {t} while pid {} node {} thread {} is \
                                 in its EX section (t{r}.ex: {})",
                                me.pid,
                                me.node,
                                h.pid,
                                h.node,
                                h.thread,
                                text.trim()
                            ));
                        }
                        // Its holder was killed inside the section; the DLM recovered its lock.
                        // Said before the removal, so that a kill in between loses no record.
                        self.counters.stale.fetch_add(1, Ordering::Relaxed);
                        say(&format!("stale t{r} {} node {}", h.pid, h.node));
                        let _ = std::fs::remove_file(&ex);
                    }
                    Err(e) => error(format!("linking {}: {e}", ex.display())),
                }
            }
            let count = self.read_count(r);
            self.check_lvb(r, "EX", &held.lvb(), count);
            let next = count + 1;
            replace(&self.path(r, "count"), &format!("{next}\n"), me.pid, t);
            if let Err(e) = held.set_lvb(&lvb_of(next, me.pid)) {
                error(format!("t{r}: set_lvb: {e}"));
            }
            self.hold(rng);
            {
                let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
                tally[r] += 1;
                let text: String = tally.iter().enumerate().map(|(i, n)| format!("t{i} {n}\n")).collect();
                replace(&self.tally_path, &text, me.pid, t);
            }
            match self.ex_holder(r) {
                Some((h, _)) if h == me => {}
                other => violation(format!(
                    "t{r}: pid {} thread {t} ends its EX section but t{r}.ex names {:?}",
                    me.pid,
                    other.map(|(_, s)| s)
                )),
            }
            if let Err(e) = std::fs::remove_file(&ex) {
                error(format!("removing {}: {e}", ex.display()));
            }
            self.counters.ex.fetch_add(1, Ordering::Relaxed);
        }

        fn pr_section(&self, t: usize, r: usize, held: &Held, rng: &mut Rng) {
            let check_ex = |when: &str| {
                if let Some((h, text)) = self.ex_holder(r) {
                    if h.alive() {
                        violation(format!(
                            "t{r}: PR held by pid {} thread {t} ({when} its hold) while pid {} node {} thread {} is \
                             in its EX section (t{r}.ex: {})",
                            self.me.pid,
                            h.pid,
                            h.node,
                            h.thread,
                            text.trim()
                        ));
                    }
                }
            };
            check_ex("at the start of");
            let count = self.read_count(r);
            self.check_lvb(r, "PR", &held.lvb(), count);
            self.hold(rng);
            check_ex("at the end of");
            if self.read_count(r) != count {
                violation(format!("t{r}: the counter moved from {count} while pid {} held PR", self.me.pid));
            }
            self.counters.pr.fetch_add(1, Ordering::Relaxed);
        }

        fn section(&self, t: usize, r: usize, mode: Mode, held: &Held, rng: &mut Rng) {
            match mode {
                Mode::Ex => self.ex_section(t, r, held, rng),
                Mode::Pr => self.pr_section(t, r, held, rng),
                Mode::Nl => {}
            }
        }

        fn unlock(&self, r: usize, h: LockHandle) {
            if let Err(e) = self.dlm.unlock(h) {
                error(format!("t{r}: unlock: {e}"));
            }
        }

        fn convert(&self, r: usize, h: &LockHandle, mode: Mode, flags: u32) -> bool {
            self.counters.converts.fetch_add(1, Ordering::Relaxed);
            match self.dlm.convert(h, mode, flags) {
                Ok(()) => true,
                Err(DlmError::NotQueued) if flags & LKM_NOQUEUE != 0 => {
                    self.counters.not_queued.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(e) => error(format!("t{r}: convert to {}: {e}", mode.name())),
            }
        }

        /// One random operation on resource `r`.
        fn one(&self, t: usize, r: usize, rng: &mut Rng) {
            let name = res_name(r);
            let name = name.as_bytes();
            let pick = |rng: &mut Rng| if rng.below(2) == 0 { Mode::Ex } else { Mode::Pr };
            let lock = |mode: Mode, flags: u32, timeout: Option<Duration>| -> Option<LockHandle> {
                match self.dlm.lock_timeout(name, mode, flags, timeout) {
                    Ok(h) => Some(h),
                    Err(DlmError::NotQueued) if flags & LKM_NOQUEUE != 0 => {
                        self.counters.not_queued.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Err(DlmError::Cancelled) if timeout.is_some() => {
                        self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Err(e) => error(format!("t{r}: lock {}: {e}", mode.name())),
                }
            };
            match rng.below(12) {
                // EX, sometimes converted down to PR (the LVB goes with it) before the unlock.
                0..=2 => {
                    let Some(h) = lock(Mode::Ex, 0, None) else { return };
                    self.ex_section(t, r, &Held::Plain(self.dlm, &h), rng);
                    if rng.below(3) == 0 && self.convert(r, &h, Mode::Pr, 0) {
                        self.pr_section(t, r, &Held::Plain(self.dlm, &h), rng);
                    }
                    self.unlock(r, h);
                }
                // PR, sometimes converted up to EX as a trylock (two PR holders that both wait
                // to convert up would wait for each other forever).
                3..=4 => {
                    let Some(h) = lock(Mode::Pr, 0, None) else { return };
                    self.pr_section(t, r, &Held::Plain(self.dlm, &h), rng);
                    if rng.below(3) == 0 && self.convert(r, &h, Mode::Ex, LKM_NOQUEUE) {
                        self.ex_section(t, r, &Held::Plain(self.dlm, &h), rng);
                    }
                    self.unlock(r, h);
                }
                // NL, converted up and waiting for it.
                5 => {
                    let Some(h) = lock(Mode::Nl, 0, None) else { return };
                    let mode = pick(rng);
                    if self.convert(r, &h, mode, 0) {
                        self.section(t, r, mode, &Held::Plain(self.dlm, &h), rng);
                    }
                    self.unlock(r, h);
                }
                // Trylock.
                6 => {
                    let mode = pick(rng);
                    let Some(h) = lock(mode, LKM_NOQUEUE, None) else { return };
                    self.section(t, r, mode, &Held::Plain(self.dlm, &h), rng);
                    self.unlock(r, h);
                }
                // A request cancelled when not granted in time.
                7 => {
                    let mode = pick(rng);
                    let Some(h) = lock(mode, 0, Some(Duration::from_millis(1 + rng.below(30)))) else { return };
                    self.section(t, r, mode, &Held::Plain(self.dlm, &h), rng);
                    self.unlock(r, h);
                }
                // The lock cache: the lock stays held until another node asks for it.
                _ => {
                    let mode = pick(rng);
                    let local = &self.local[r];
                    let _guard = match mode {
                        Mode::Ex => LocalGuard::W(local.write().unwrap_or_else(|e| e.into_inner())),
                        _ => LocalGuard::R(local.read().unwrap_or_else(|e| e.into_inner())),
                    };
                    let c = match self.dlm.acquire(name, mode) {
                        Ok(c) => c,
                        Err(e) => error(format!("t{r}: acquire {}: {e}", mode.name())),
                    };
                    self.counters.cached.fetch_add(1, Ordering::Relaxed);
                    self.section(t, r, mode, &Held::Cached(&c), rng);
                }
            }
        }
    }

    enum LocalGuard<'a> {
        W(#[allow(dead_code)] std::sync::RwLockWriteGuard<'a, ()>),
        R(#[allow(dead_code)] std::sync::RwLockReadGuard<'a, ()>),
    }

    fn now_ms(epoch: Instant) -> u64 {
        epoch.elapsed().as_millis() as u64 + 1
    }

    pub fn run(dlm: &Dlm, a: &TortureArgs) -> Result<ExitCode, String> {
        std::fs::create_dir_all(&a.dir).map_err(|e| format!("{}: {e}", a.dir.display()))?;
        let pid = std::process::id();
        let start = proc_state(pid).map(|(_, s)| s).ok_or("cannot read /proc/self/stat")?;
        let node = dlm.node();
        let epoch = Instant::now();
        let ctx = Ctx {
            dlm,
            a,
            me: Holder { pid, start, node, thread: 0 },
            counters: Counters::default(),
            started: (0..a.threads).map(|_| AtomicU64::new(0)).collect(),
            epoch,
            tally: Mutex::new(vec![0; a.resources]),
            tally_path: a.dir.join(format!("tally.{node}.{pid}")),
            local: (0..a.resources).map(|_| RwLock::new(())).collect(),
            done: AtomicBool::new(false),
        };
        say(&format!(
            "torture node {node} pid {pid} seed {} resources {} threads {} seconds {}",
            a.seed, a.resources, a.threads, a.seconds
        ));
        let end = epoch + Duration::from_secs_f64(a.seconds.max(0.0));
        std::thread::scope(|s| {
            let reporter = s.spawn(|| {
                while !ctx.done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(a.report_ms));
                    let now = now_ms(epoch);
                    let oldest = ctx
                        .started
                        .iter()
                        .map(|t| t.load(Ordering::SeqCst))
                        .filter(|&t| t != 0)
                        .map(|t| now.saturating_sub(t))
                        .max()
                        .unwrap_or(0);
                    say(&format!("progress {} oldest_ms={oldest}", ctx.counters.line()));
                }
            });
            let workers: Vec<_> = (0..a.threads)
                .map(|t| {
                    let ctx = &ctx;
                    s.spawn(move || {
                        let mut rng = Rng::new(a.seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                        while Instant::now() < end {
                            let r = rng.below(a.resources as u64) as usize;
                            ctx.started[t].store(now_ms(ctx.epoch), Ordering::SeqCst);
                            ctx.one(t, r, &mut rng);
                            ctx.started[t].store(0, Ordering::SeqCst);
                            ctx.counters.ops.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.join();
            }
            ctx.done.store(true, Ordering::SeqCst);
            let _ = reporter.join();
        });
        say(&format!(
            "summary node {node} pid {pid} {} seconds={:.1}",
            ctx.counters.line(),
            epoch.elapsed().as_secs_f64()
        ));
        Ok(ExitCode::SUCCESS)
    }
}
