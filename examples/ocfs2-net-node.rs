//! `ocfs2-net-node`: one o2net node in its own process, for tests that kill a peer and for
//! trying the messaging layer by hand. Every configured peer is taken as heartbeat-live.
//!
//! It answers requests of type 1, key 0x6f326e74 ("o2nt") with `1000 * NUM + payload length`,
//! prints what happens to its peers on standard output, one line each (`ready ADDR`,
//! `connected N`, `disconnected N REASON`, `idle N`, `resumed N`, `rejected ...`), and reads
//! commands on standard input: `send N LEN` (prints `status N VALUE` or `error N ERRNO`),
//! `live N 0|1`. End of input stops the node.

use ocfs2::cluster::net::{Net, NetConfig, NetEvent, NetNode, NetTimeouts};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: ocfs2-net-node --num N --addr IP:PORT [--name NAME] [--peer N=IP:PORT]...
                      [--idle MS] [--keepalive MS] [--reconnect MS]";

/// The message the node answers.
pub const ECHO_TYPE: u16 = 1;
pub const ECHO_KEY: u32 = 0x6f32_6e74;

fn parse_args(args: &[String]) -> Result<NetConfig, String> {
    let mut num = None;
    let mut addr: Option<SocketAddr> = None;
    let mut name = None;
    let mut peers = Vec::new();
    let mut t = NetTimeouts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        let ms = |v: String| v.parse::<u32>().map_err(|_| format!("{a}: {v} is not a number of milliseconds"));
        match a.as_str() {
            "--num" => num = Some(value()?.parse::<u8>().map_err(|_| "--num takes 0..=254".to_string())?),
            "--addr" => addr = Some(value()?.parse().map_err(|_| "--addr takes IP:PORT".to_string())?),
            "--name" => name = Some(value()?),
            "--peer" => {
                let v = value()?;
                let (n, ad) = v.split_once('=').ok_or_else(|| format!("--peer {v}: expected N=IP:PORT"))?;
                let n: u8 = n.parse().map_err(|_| format!("--peer {v}: bad node number"))?;
                let ad: SocketAddr = ad.parse().map_err(|_| format!("--peer {v}: bad address"))?;
                peers.push(NetNode::new(n, format!("node{n}"), ad));
            }
            "--idle" => t.idle_timeout_ms = ms(value()?)?,
            "--keepalive" => t.keepalive_delay_ms = ms(value()?)?,
            "--reconnect" => t.reconnect_delay_ms = ms(value()?)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let num = num.ok_or("--num is required")?;
    let addr = addr.ok_or("--addr is required")?;
    let mut cfg = NetConfig::new(num, addr, Vec::new()).with_timeouts(t);
    cfg.local.name = name.unwrap_or_else(|| format!("node{num}"));
    cfg.peers = peers;
    Ok(cfg)
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
    let cfg = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ocfs2-net-node: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let num = cfg.local.num;
    let peers: Vec<u8> = cfg.peers.iter().map(|p| p.num).collect();
    let net = match Net::start(cfg) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("ocfs2-net-node: {e}");
            return ExitCode::FAILURE;
        }
    };
    let events = net.subscribe();
    std::thread::spawn(move || {
        for e in events {
            match e {
                NetEvent::Connected(n) => say(&format!("connected {n}")),
                NetEvent::Disconnected(n, why) => say(&format!("disconnected {n} {why}")),
                NetEvent::Idle(n) => say(&format!("idle {n}")),
                NetEvent::Resumed(n) => say(&format!("resumed {n}")),
                NetEvent::Rejected { node, addr, reason } => say(&format!("rejected {node:?} {addr} {reason}")),
            }
        }
    });
    if let Err(e) = net.register_handler(ECHO_TYPE, ECHO_KEY, 4072, move |_, p| 1000 * i32::from(num) + p.len() as i32)
    {
        eprintln!("ocfs2-net-node: {e}");
        return ExitCode::FAILURE;
    }
    for p in peers {
        net.set_peer_live(p, true);
    }
    say(&format!("ready {}", net.local_addr()));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["send", n, len] => {
                let (Ok(n), Ok(len)) = (n.parse::<u8>(), len.parse::<usize>()) else {
                    say("error bad send command");
                    continue;
                };
                match net.send(n, ECHO_TYPE, ECHO_KEY, &vec![0x6f; len]) {
                    Ok(v) => say(&format!("status {n} {v}")),
                    Err(e) => say(&format!("error {n} {}", e.errno())),
                }
            }
            ["live", n, v] => match n.parse::<u8>() {
                Ok(n) => net.set_peer_live(n, *v == "1"),
                Err(_) => say("error bad live command"),
            },
            [] => {}
            _ => say(&format!("error unknown command {line}")),
        }
    }
    net.stop();
    ExitCode::SUCCESS
}
