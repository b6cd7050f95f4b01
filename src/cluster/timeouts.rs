//! The o2cb timeouts: heartbeat dead threshold and interval, network idle timeout, keepalive
//! delay and reconnect delay, read from `/etc/default/o2cb` (or `/etc/sysconfig/o2cb`, as the
//! o2cb init script looks for them) and overridden by environment variables of the same names.
//!
//! Invariants of a [`Timeouts`] that [`Timeouts::validate`] accepted (and [`Timeouts::load`]
//! returns only such): every value is at least 1, the dead threshold is above 2 (the kernel
//! ignores smaller ones), the idle timeout is larger than the keepalive delay (the kernel refuses
//! anything else), and `(threshold + 2) × interval` fits in 32 bits, so that every derived time,
//! and the heartbeat block's hb_dead_ms, can be computed without overflow.
//!
//! `O2CB_HEARTBEAT_INTERVAL_MS` is ours: the kernel fixes the interval at 2000 ms
//! (`O2HB_REGION_TIMEOUT_MS`). Tests shorten it to run fast; nodes that share a volume with a
//! kernel node must keep 2000.

use super::config::{ConfigError, Problem};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the o2cb init script looks for its settings, in order.
pub const DEFAULTS_PATHS: [&str; 2] = ["/etc/sysconfig/o2cb", "/etc/default/o2cb"];

pub const HEARTBEAT_THRESHOLD: &str = "O2CB_HEARTBEAT_THRESHOLD";
pub const HEARTBEAT_INTERVAL_MS: &str = "O2CB_HEARTBEAT_INTERVAL_MS";
pub const IDLE_TIMEOUT_MS: &str = "O2CB_IDLE_TIMEOUT_MS";
pub const KEEPALIVE_DELAY_MS: &str = "O2CB_KEEPALIVE_DELAY_MS";
pub const RECONNECT_DELAY_MS: &str = "O2CB_RECONNECT_DELAY_MS";

/// The kernel's defaults (`O2HB_DEFAULT_DEAD_THRESHOLD`, `O2HB_REGION_TIMEOUT_MS`,
/// `O2NET_*_DEFAULT`), which the init script repeats.
pub const DEFAULT_HEARTBEAT_THRESHOLD: u32 = 31;
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u32 = 2000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u32 = 30000;
pub const DEFAULT_KEEPALIVE_DELAY_MS: u32 = 2000;
pub const DEFAULT_RECONNECT_DELAY_MS: u32 = 2000;

/// The kernel ignores a dead threshold of `O2HB_MIN_DEAD_THRESHOLD` (2) or less.
pub const MIN_HEARTBEAT_THRESHOLD: u32 = 3;

/// The timeouts of one node. All nodes of a cluster must agree on the network ones (the o2net
/// handshake compares them) and should agree on the heartbeat ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Heartbeat intervals without a sequence change after which a node is dead.
    pub heartbeat_threshold: u32,
    /// Time between two heartbeat writes.
    pub heartbeat_interval_ms: u32,
    /// A connection silent this long is dropped.
    pub idle_timeout_ms: u32,
    /// A keepalive is sent after this much silence.
    pub keepalive_delay_ms: u32,
    /// The least time between two connection attempts to one peer.
    pub reconnect_delay_ms: u32,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            heartbeat_threshold: DEFAULT_HEARTBEAT_THRESHOLD,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            keepalive_delay_ms: DEFAULT_KEEPALIVE_DELAY_MS,
            reconnect_delay_ms: DEFAULT_RECONNECT_DELAY_MS,
        }
    }
}

/// The variables of the o2cb settings file, a shell script of `NAME=value` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct O2cbDefaults {
    /// The file they were read from, if any.
    pub path: Option<PathBuf>,
    /// `(name, value, line)` of every assignment, in file order; a later one wins.
    assignments: Vec<(String, Result<String, String>, usize)>,
}

impl O2cbDefaults {
    /// Reads the assignments of a settings file. Lines that are not plain assignments (shell
    /// code) are skipped; a value that only a shell could make sense of (expansions, unclosed
    /// quotes) is kept as a problem, reported only if that variable is asked for.
    pub fn parse(text: &str, path: Option<&Path>) -> O2cbDefaults {
        let mut assignments = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, rest)) = line.split_once('=') else { continue };
            let mut chars = name.chars();
            let ident = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ident {
                continue;
            }
            assignments.push((name.to_string(), shell_word(rest), i + 1));
        }
        O2cbDefaults { path: path.map(Path::to_path_buf), assignments }
    }

    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<O2cbDefaults, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::io(path.display().to_string(), "cannot read the o2cb settings", &e))?;
        Ok(O2cbDefaults::parse(&text, Some(path)))
    }

    /// The system's settings file, as the init script finds it, or none (all defaults).
    pub fn system() -> Result<O2cbDefaults, ConfigError> {
        match DEFAULTS_PATHS.iter().map(Path::new).find(|p| p.is_file()) {
            Some(path) => O2cbDefaults::load(path),
            None => Ok(O2cbDefaults::default()),
        }
    }

    /// The value of `name` and its line; an empty value counts as unset, as in the init script.
    pub fn get(&self, name: &str) -> Result<Option<(&str, usize)>, ConfigError> {
        match self.assignments.iter().rev().find(|(n, _, _)| n == name) {
            None => Ok(None),
            Some((_, Ok(v), _)) if v.is_empty() => Ok(None),
            Some((_, Ok(v), line)) => Ok(Some((v.as_str(), *line))),
            Some((_, Err(why), line)) => Err(ConfigError::new(self.origin(), Some(*line), format!("{name}: {why}"))),
        }
    }

    /// The cluster o2cb starts at boot (`O2CB_BOOTCLUSTER`).
    pub fn bootcluster(&self) -> Result<Option<&str>, ConfigError> {
        Ok(self.get("O2CB_BOOTCLUSTER")?.map(|(v, _)| v))
    }

    fn origin(&self) -> String {
        self.path.as_ref().map_or_else(|| "o2cb settings".to_string(), |p| p.display().to_string())
    }
}

/// The value of a shell assignment's right-hand side, if it is a plain word, optionally quoted,
/// optionally followed by a comment.
fn shell_word(rest: &str) -> Result<String, String> {
    let (word, tail) = if let Some(inner) = rest.strip_prefix('"') {
        let end = inner.find('"').ok_or("the double quote is never closed")?;
        (&inner[..end], &inner[end + 1..])
    } else if let Some(inner) = rest.strip_prefix('\'') {
        let end = inner.find('\'').ok_or("the single quote is never closed")?;
        (&inner[..end], &inner[end + 1..])
    } else {
        let end = rest.find(|c: char| c.is_whitespace() || c == ';').unwrap_or(rest.len());
        (&rest[..end], &rest[end..])
    };
    let tail = tail.trim_start();
    if !(tail.is_empty() || tail.starts_with('#') || tail.starts_with(';')) {
        return Err(format!("cannot read '{}' as a single value", rest.trim()));
    }
    if word.contains(['$', '`', '\\']) {
        return Err(format!("'{word}' needs a shell to expand it; write a plain number"));
    }
    Ok(word.to_string())
}

/// Where a value came from, for messages.
#[derive(Debug, Clone)]
enum Source {
    Default,
    File(String, usize),
    Environment,
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Default => "the default".to_string(),
            Source::File(path, line) => format!("from {path}:{line}"),
            Source::Environment => "from the environment".to_string(),
        }
    }
}

/// What a number is counted in, for messages.
fn unit(name: &str) -> &'static str {
    if name == HEARTBEAT_THRESHOLD {
        "heartbeat intervals"
    } else {
        "milliseconds"
    }
}

fn parse_value(name: &str, value: &str) -> Result<u32, String> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{name}={value} is not a whole number of {}", unit(name)));
    }
    match digits.parse::<u32>() {
        Ok(n) if n < u32::MAX => Ok(n),
        _ => Err(format!("{name}={value} is too large")),
    }
}

impl Timeouts {
    /// The timeouts from the settings file at `defaults_path` (by default the system's, as the
    /// init script finds it; no file means the kernel's defaults), each overridden by the
    /// variable of the same name that `env` returns (empty counts as unset). Pass
    /// `|k| std::env::var(k).ok()` for the process environment.
    pub fn load(defaults_path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Timeouts, ConfigError> {
        let file = match defaults_path {
            Some(path) => O2cbDefaults::load(path)?,
            None => O2cbDefaults::system()?,
        };
        Timeouts::from_settings(&file, env)
    }

    /// The timeouts of the system: its settings file and the process environment.
    pub fn system() -> Result<Timeouts, ConfigError> {
        Timeouts::load(None, |k| std::env::var(k).ok())
    }

    /// The timeouts from already read settings, overridden by `env`.
    pub fn from_settings(file: &O2cbDefaults, env: impl Fn(&str) -> Option<String>) -> Result<Timeouts, ConfigError> {
        let mut t = Timeouts::default();
        let mut sources: [Source; 5] = std::array::from_fn(|_| Source::Default);
        let mut problems: Vec<Problem> = Vec::new();
        let fields: [(&str, &mut u32); 5] = [
            (HEARTBEAT_THRESHOLD, &mut t.heartbeat_threshold),
            (HEARTBEAT_INTERVAL_MS, &mut t.heartbeat_interval_ms),
            (IDLE_TIMEOUT_MS, &mut t.idle_timeout_ms),
            (KEEPALIVE_DELAY_MS, &mut t.keepalive_delay_ms),
            (RECONNECT_DELAY_MS, &mut t.reconnect_delay_ms),
        ];
        for ((name, slot), source) in fields.into_iter().zip(sources.iter_mut()) {
            if let Some(value) = env(name).filter(|v| !v.trim().is_empty()) {
                match parse_value(name, &value) {
                    Ok(n) => {
                        *slot = n;
                        *source = Source::Environment;
                    }
                    Err(m) => return Err(ConfigError::new("environment", None, m)),
                }
                continue;
            }
            match file.get(name) {
                Ok(None) => {}
                Ok(Some((value, line))) => match parse_value(name, value) {
                    Ok(n) => {
                        *slot = n;
                        *source = Source::File(file.origin(), line);
                    }
                    Err(m) => problems.push(Problem { line: Some(line), message: m }),
                },
                Err(e) => problems.extend(e.problems().iter().cloned()),
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError::from_problems(file.origin(), problems));
        }
        t.check(&sources)?;
        Ok(t)
    }

    /// Checks the rules the kernel applies to these values (see the module invariants).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&std::array::from_fn(|_| Source::Default))
    }

    fn check(&self, sources: &[Source; 5]) -> Result<(), ConfigError> {
        let show = |i: usize, name: &str, value: u32| format!("{name} = {value} ({})", sources[i].describe());
        let mut problems = Vec::new();
        let mut problem = |message: String| problems.push(Problem { line: None, message });
        if self.heartbeat_threshold < MIN_HEARTBEAT_THRESHOLD {
            problem(format!(
                "{} is too small: the kernel ignores a dead threshold below {MIN_HEARTBEAT_THRESHOLD}",
                show(0, HEARTBEAT_THRESHOLD, self.heartbeat_threshold)
            ));
        }
        for (i, name, value) in [
            (1, HEARTBEAT_INTERVAL_MS, self.heartbeat_interval_ms),
            (2, IDLE_TIMEOUT_MS, self.idle_timeout_ms),
            (3, KEEPALIVE_DELAY_MS, self.keepalive_delay_ms),
            (4, RECONNECT_DELAY_MS, self.reconnect_delay_ms),
        ] {
            if value == 0 || value == u32::MAX {
                problem(format!("{} must be from 1 to {}", show(i, name, value), u32::MAX - 1));
            }
        }
        if self.idle_timeout_ms <= self.keepalive_delay_ms {
            problem(format!(
                "{} must be larger than {}: the kernel refuses an idle timeout that a keepalive cannot prevent",
                show(2, IDLE_TIMEOUT_MS, self.idle_timeout_ms),
                show(3, KEEPALIVE_DELAY_MS, self.keepalive_delay_ms)
            ));
        }
        let longest = u64::from(self.heartbeat_threshold).saturating_add(2) * u64::from(self.heartbeat_interval_ms);
        if longest > u64::from(u32::MAX) {
            problem(format!(
                "{} times {} is too long a time to wait for a dead node",
                show(0, HEARTBEAT_THRESHOLD, self.heartbeat_threshold),
                show(1, HEARTBEAT_INTERVAL_MS, self.heartbeat_interval_ms)
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::from_problems("o2cb timeouts", problems))
        }
    }

    /// How long a peer's heartbeat may stand still before it is dead: threshold × interval.
    /// (The kernel, whose interval is 2000 ms, writes threshold × 2000 as hb_dead_ms.)
    pub fn dead_ms(&self) -> u64 {
        u64::from(self.heartbeat_threshold) * u64::from(self.heartbeat_interval_ms)
    }

    /// The longest a node may go without completing its own heartbeat write before it must
    /// fence itself: interval × (threshold − 1), o2hb's `O2HB_MAX_WRITE_TIMEOUT_MS`. It ends one
    /// interval before any peer can declare the node dead.
    pub fn max_write_timeout_ms(&self) -> u64 {
        u64::from(self.heartbeat_interval_ms) * u64::from(self.heartbeat_threshold.saturating_sub(1))
    }

    /// How long quorum waits for a decision to settle: (threshold + 2) × interval.
    pub fn quorum_delay_ms(&self) -> u64 {
        (u64::from(self.heartbeat_threshold) + 2) * u64::from(self.heartbeat_interval_ms)
    }

    /// [`dead_ms`](Self::dead_ms) as a duration.
    pub fn dead_time(&self) -> Duration {
        Duration::from_millis(self.dead_ms())
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.heartbeat_interval_ms))
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.idle_timeout_ms))
    }

    pub fn keepalive_delay(&self) -> Duration {
        Duration::from_millis(u64::from(self.keepalive_delay_ms))
    }

    pub fn reconnect_delay(&self) -> Duration {
        Duration::from_millis(u64::from(self.reconnect_delay_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_are_the_kernels() {
        let t = Timeouts::from_settings(&O2cbDefaults::default(), no_env).unwrap();
        assert_eq!(t, Timeouts::default());
        assert_eq!(t.dead_ms(), 62000);
        assert_eq!(t.max_write_timeout_ms(), 60000);
        assert_eq!(t.quorum_delay_ms(), 66000);
    }

    #[test]
    fn reads_the_debian_file_and_lets_the_environment_win() {
        let text = "# comment\nO2CB_ENABLED=true\nO2CB_BOOTCLUSTER=ocfs2\nO2CB_HEARTBEAT_THRESHOLD=\"7\"\n\
                    export O2CB_IDLE_TIMEOUT_MS='10000' # ten seconds\nO2CB_KEEPALIVE_DELAY_MS=\n\
                    if [ -z \"$X\" ]; then :; fi\n";
        let file = O2cbDefaults::parse(text, Some(Path::new("/etc/default/o2cb")));
        assert_eq!(file.bootcluster().unwrap(), Some("ocfs2"));
        let env = |k: &str| (k == RECONNECT_DELAY_MS).then(|| "500".to_string());
        let t = Timeouts::from_settings(&file, env).unwrap();
        assert_eq!(
            t,
            Timeouts {
                heartbeat_threshold: 7,
                heartbeat_interval_ms: 2000,
                idle_timeout_ms: 10000,
                keepalive_delay_ms: 2000,
                reconnect_delay_ms: 500,
            }
        );
    }

    #[test]
    fn errors_name_the_line_or_the_source() {
        let file = O2cbDefaults::parse("O2CB_IDLE_TIMEOUT_MS=30s\n", Some(Path::new("/etc/default/o2cb")));
        let e = Timeouts::from_settings(&file, no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/default/o2cb:1: O2CB_IDLE_TIMEOUT_MS=30s is not a whole number of milliseconds"
        );

        let file = O2cbDefaults::parse("O2CB_KEEPALIVE_DELAY_MS=40000\n", Some(Path::new("/etc/default/o2cb")));
        let e = Timeouts::from_settings(&file, no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "o2cb timeouts: O2CB_IDLE_TIMEOUT_MS = 30000 (the default) must be larger than \
             O2CB_KEEPALIVE_DELAY_MS = 40000 (from /etc/default/o2cb:1): the kernel refuses an idle \
             timeout that a keepalive cannot prevent"
        );
    }
}
