//! What the cluster programs (`ocfs2-cluster`, `ocfs2-dlm`) share: the global options in front
//! of the command (`-c CONF`, `-n NODE`, `--defaults FILE`, `-v`), a logger to standard error,
//! and line output that reaches a pipe at once (tests wait for these lines).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The options every cluster program takes before its command.
pub struct Global {
    pub conf: PathBuf,
    pub node: Option<String>,
    pub defaults: Option<PathBuf>,
    pub verbose: u8,
}

struct StderrLog(log::LevelFilter);

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.0
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{} {}: {}", r.level(), r.target(), r.args());
        }
    }

    fn flush(&self) {}
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
    let mut g = Global { conf: PathBuf::from(default_conf), node: None, defaults: None, verbose: 0 };
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
            _ => rest.push(a),
        }
    }
    let level = match g.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    let logger: &'static StderrLog = Box::leak(Box::new(StderrLog(level)));
    let _ = log::set_logger(logger);
    log::set_max_level(level);
    Ok((g, rest))
}
