//! `ocfs2-hb-node`: run one node's o2hb disk heartbeat on an OCFS2 volume, without mounting it.
//!
//! ```text
//! ocfs2-hb-node --node N [--nodes 1,2,3] [--interval-ms 2000] [--threshold 31] DEVICE
//! ```
//!
//! Prints one line per event on standard output: `generation 0x...` and `steady` once the
//! heartbeat has settled, then `up N`, `down N`, `clash ...`, `fenced` as they happen. Reading
//! `stop` or end of file on standard input stops cleanly (generation 0 is written, so the
//! other nodes see this node leave at once) and prints `stopped`. Used by the cluster tests as
//! one process per node; SIGKILL leaves the slot as a crashed node would.

use ocfs2::cluster::heartbeat::{
    FenceSwitch, FencedDevice, Heartbeat, HeartbeatConfig, HeartbeatEvent, HeartbeatRegion, NodeMap, SystemClock,
};
use ocfs2::device::FileDeviceOptions;
use ocfs2::{FileDevice, MountOptions, Volume};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage: ocfs2-hb-node --node N [--nodes N,N,...] [--interval-ms MS] [--threshold COUNT] DEVICE";

struct Args {
    node: u8,
    config: HeartbeatConfig,
    device: String,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut node = None;
    let mut config = HeartbeatConfig::default();
    let mut nodes = None;
    let mut device = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--node" => node = Some(value("--node")?.parse::<u8>().map_err(|e| format!("--node: {e}"))?),
            "--nodes" => {
                let list = value("--nodes")?;
                let parsed: Result<Vec<u8>, _> = list.split(',').map(|n| n.trim().parse::<u8>()).collect();
                nodes = Some(parsed.map_err(|e| format!("--nodes {list}: {e}"))?.into_iter().collect::<NodeMap>());
            }
            "--interval-ms" => {
                let ms: u64 = value("--interval-ms")?.parse().map_err(|e| format!("--interval-ms: {e}"))?;
                config.interval = Duration::from_millis(ms);
            }
            "--threshold" => {
                config.dead_threshold = value("--threshold")?.parse().map_err(|e| format!("--threshold: {e}"))?
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => device = Some(other.to_string()),
        }
    }
    if let Some(nodes) = nodes {
        config.nodes = nodes;
    }
    Ok(Args { node: node.ok_or("--node is required")?, config, device: device.ok_or("no device given")? })
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ocfs2-hb-node: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ocfs2-hb-node: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let area = Volume::open_path(&args.device, MountOptions::default())
        .and_then(|v| v.heartbeat_area())
        .map_err(|e| format!("{}: {e}", args.device))?;
    let region = HeartbeatRegion::new(area.start_byte, area.sector_size, area.blocks);
    let file = FileDevice::open_with(&args.device, FileDeviceOptions { writable: true, direct: None })
        .map_err(|e| format!("{}: {e}", args.device))?;
    let fence = FenceSwitch::new();
    let dev = Arc::new(FencedDevice::new(file, fence.clone()));
    let hb = Heartbeat::start_with_fence(dev, region, args.node, args.config, Arc::new(SystemClock::new()), fence)
        .map_err(|e| e.to_string())?;
    let events = hb.subscribe();
    say(&format!("generation {:#018x}", hb.generation()));
    say("steady");
    let printer = std::thread::spawn(move || {
        for event in events {
            match event {
                HeartbeatEvent::NodeUp(n) => say(&format!("up {n}")),
                HeartbeatEvent::NodeDown(n) => say(&format!("down {n}")),
                HeartbeatEvent::Fenced => say("fenced"),
                HeartbeatEvent::Clash(info) => say(&format!("clash {info}")),
            }
        }
    });
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("stop") | Err(_) => break,
            Ok("stats") => say(&format!("stats {:?}", hb.stats())),
            Ok(_) => {}
        }
    }
    let result = hb.stop();
    // The stream ends when the heartbeat is gone, after the downs of the stop were printed.
    let _ = printer.join();
    match result {
        Ok(()) => {
            say("stopped");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
