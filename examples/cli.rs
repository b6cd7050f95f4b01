//! What the example programs share: the global options in front of the command of the cluster
//! programs (`-c CONF`, `-n NODE`, `--defaults FILE`, `-v`, `--syslog`), a logger to standard
//! error and, with `--syslog`, to syslog as well (the kernel's OCFS2 logs to the kernel log, our
//! daemons to the system log), and line output that reaches a pipe at once (tests wait for
//! these lines).

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

/// The options every cluster program takes before its command.
pub struct Global {
    pub conf: PathBuf,
    pub node: Option<String>,
    pub defaults: Option<PathBuf>,
    pub verbose: u8,
    /// Log to syslog too (`--syslog`).
    pub syslog: bool,
}

/// Where syslog listens; `OCFS2_SYSLOG_SOCKET` names another socket (tests listen there).
fn syslog_path() -> PathBuf {
    std::env::var_os("OCFS2_SYSLOG_SOCKET").map_or_else(|| PathBuf::from("/dev/log"), PathBuf::from)
}

/// RFC 3164 datagrams to the local syslog daemon, as glibc's `syslog(3)` sends them (facility
/// daemon, no hostname: the daemon adds it), written without libc.
struct Syslog {
    tag: String,
    sock: Mutex<Option<UnixDatagram>>,
}

impl Syslog {
    fn connect() -> Option<UnixDatagram> {
        let sock = UnixDatagram::unbound().ok()?;
        sock.connect(syslog_path()).ok()?;
        Some(sock)
    }

    fn send(&self, level: log::Level, text: &str) {
        // Facility 3 (daemon) times 8 plus the severity.
        let severity = match level {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        let line = format!("<{}>{}[{}]: {}", 3 * 8 + severity, self.tag, std::process::id(), text);
        let mut sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        // A syslog daemon that restarted leaves our socket unconnected: connect once more.
        for _ in 0..2 {
            if sock.is_none() {
                *sock = Self::connect();
            }
            match sock.as_ref() {
                Some(s) if s.send(line.as_bytes()).is_ok() => return,
                Some(_) => *sock = None,
                None => return,
            }
        }
    }
}

/// Every record to standard error, and to syslog when asked.
struct Logger {
    level: log::LevelFilter,
    syslog: Option<Syslog>,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let text = format!("{}: {}", r.target(), r.args());
            // A closed standard error must not stop a daemon: errors writing it are ignored.
            let _ = writeln!(std::io::stderr(), "{} {text}", r.level());
            if let Some(syslog) = &self.syslog {
                syslog.send(r.level(), &text);
            }
        }
    }

    fn flush(&self) {}
}

/// Starts logging at `verbose` (0: warnings, 1: info, more: debug) to standard error, and to
/// syslog under the tag `program` when `syslog` is set.
pub fn start_logging(program: &str, verbose: u8, syslog: bool) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    let syslog = syslog.then(|| Syslog { tag: program.to_string(), sock: Mutex::new(Syslog::connect()) });
    if syslog.as_ref().is_some_and(|s| s.sock.lock().map(|s| s.is_none()).unwrap_or(true)) {
        let _ = writeln!(
            std::io::stderr(),
            "{program}: cannot reach syslog at {}; logging to stderr",
            syslog_path().display()
        );
    }
    let logger: &'static Logger = Box::leak(Box::new(Logger { level, syslog }));
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

/// Prints one line to standard output and flushes it.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Splits the command line into the global options and the rest, and starts logging at the
/// asked verbosity. `Err` carries the exit code when the program should stop (help, or a
/// missing option value).
pub fn parse_global(program: &str, usage: &str, default_conf: &str) -> Result<(Global, Vec<String>), ExitCode> {
    let mut g = Global { conf: PathBuf::from(default_conf), node: None, defaults: None, verbose: 0, syslog: false };
    let mut rest = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{usage}");
                return Err(ExitCode::SUCCESS);
            }
            "-c" | "--config" | "-n" | "--node" | "--defaults" if rest.is_empty() => {
                let Some(v) = it.next() else {
                    eprintln!("{program}: {a} needs a value\n{usage}");
                    return Err(ExitCode::from(2));
                };
                match a.as_str() {
                    "-c" | "--config" => g.conf = PathBuf::from(v),
                    "-n" | "--node" => g.node = Some(v),
                    _ => g.defaults = Some(PathBuf::from(v)),
                }
            }
            "-v" if rest.is_empty() => g.verbose += 1,
            "-vv" if rest.is_empty() => g.verbose += 2,
            "--syslog" if rest.is_empty() => g.syslog = true,
            _ => rest.push(a),
        }
    }
    start_logging(program, g.verbose, g.syslog);
    Ok((g, rest))
}
