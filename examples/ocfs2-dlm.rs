//! `ocfs2-dlm`: take o2dlm locks from the command line, as a node of an o2cb cluster with no
//! kernel module: start the cluster stack, heartbeat on the volume, join the DLM domain.
//!
//! ```text
//! ocfs2-dlm [-c CONF] [-n NODE] [--defaults FILE] [-v] DEVICE DOMAIN COMMAND
//!   lock RES NL|PR|EX [--trylock] [--hold SECONDS] [--lvb-read] [--lvb-write TEXT]
//!   bench [--seconds S] [--resources N] [--mode PR|EX] [--cached]
//! ```
//!
//! DOMAIN `-` means the volume's UUID, the domain a mount would join. `lock` prints
//! `granted RES MODE` (and `lvb TEXT` with `--lvb-read`, the LVB up to its first NUL), holds the
//! lock for `--hold` seconds, writes `--lvb-write TEXT` into the LVB (it reaches the master
//! when an EX lock is released) and unlocks; it exits 0 only when the lock was granted, 1 when
//! a trylock found it busy. `bench` takes and releases locks on `--resources` names (shared by
//! every node running it) for `--seconds` and prints `bench OPS ops in SECS s: RATE/s`;
//! `--cached` uses the lock cache (a lock stays held until another node asks for it).

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
  bench [--seconds S] [--resources N] [--mode PR|EX] [--cached]";

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
