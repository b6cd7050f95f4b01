//! Helpers shared by the integration tests: scratch space and the real ocfs2-tools as referee.
//!
//! A referee that is missing makes the test fail with a message naming the package; tests are
//! never skipped in silence.
#![allow(dead_code)]

pub mod guest;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// For crash tests, after each step of a workload: syncs about one step in three and returns
/// the device's write count when the sync returned (from then on the step is durable), or
/// `None` for a step left unsynced (atomic, but not yet durable).
pub fn sync_sometimes(vol: &ocfs2::Volume, rng: &mut Rng, writes: impl Fn() -> u64) -> ocfs2::fs::Result<Option<u64>> {
    if rng.below(3) != 0 {
        return Ok(None);
    }
    vol.sync()?;
    Ok(Some(writes()))
}

/// `fsck.ocfs2 -fy` on a crashed image (answering the cluster-check question). 1.8.7 stops
/// after replaying a journal ("Unable to access cluster service" on reopening, even for a local
/// volume), so then a second run checks. Returns everything both runs printed.
pub fn fsck_fy(img: &Path) -> String {
    let run_once = || {
        use std::io::Write;
        let mut child = Command::new("fsck.ocfs2")
            .arg("-fyF")
            .arg(img)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fsck.ocfs2");
        let _ = child.stdin.take().expect("stdin").write_all(b"y\n");
        let out = child.wait_with_output().expect("fsck.ocfs2 output");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let first = run_once();
    if first.contains("unrecoverable errors while replaying the journals") {
        return format!("{first}{}", run_once());
    }
    first
}

/// Panics unless `tool` is on the PATH.
pub fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "the referee `{tool}` is not installed: run `apt-get install -y ocfs2-tools kmod` (see .ci/run)");
}

/// A fresh, empty scratch directory for one test; removed when the value drops.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ocfs2-rs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates (or truncates to) a sparse file of `size` bytes.
pub fn sparse_image(path: &Path, size: u64) {
    let f = std::fs::File::create(path).expect("create image");
    f.set_len(size).expect("size image");
}

/// Runs a command and returns (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Formats `img` with the real mkfs.ocfs2 (`-q -F` plus `args`).
pub fn mkfs_ocfs2(img: &Path, args: &[&str]) {
    require_tool("mkfs.ocfs2");
    let (ok, out, err) = run(Command::new("mkfs.ocfs2").args(["-q", "-F"]).args(args).arg(img));
    assert!(ok, "mkfs.ocfs2 {args:?} failed:\n{out}\n{err}");
}

/// Output of `debugfs.ocfs2 -R CMD IMG`.
pub fn debugfs(img: &Path, cmd: &str) -> String {
    require_tool("debugfs.ocfs2");
    let (ok, out, err) = run(Command::new("debugfs.ocfs2").arg("-R").arg(cmd).arg(img));
    assert!(ok, "debugfs.ocfs2 -R {cmd:?} failed:\n{out}\n{err}");
    out
}

/// Runs `fsck.ocfs2 -fn` and returns (exit code, combined output).
pub fn fsck_fn(img: &Path) -> (i32, String) {
    require_tool("fsck.ocfs2");
    let out = Command::new("fsck.ocfs2").arg("-fn").arg(img).stdin(Stdio::null()).output().expect("run fsck.ocfs2");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Panics unless `fsck.ocfs2 -fn` finds `img` clean.
pub fn assert_fsck_clean(img: &Path) {
    let (code, text) = fsck_fn(img);
    // fsck.ocfs2 -fn exits 0 even when it found problems it declined to fix; it names each one
    // on a line starting with "[PROBLEM_CODE]", so those lines count as failures too.
    let problems: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with('[')).collect();
    assert!(
        code == 0 && problems.is_empty() && !text.contains("ERROR") && !text.contains("error"),
        "fsck.ocfs2 -fn exited {code} with {} problem lines:\n{text}",
        problems.len()
    );
}

#[allow(unused_imports)]
pub use ocfs2::testing::{seed, Rng};

/// The problem lines (`[CODE] ...`) `fsck.ocfs2 -fn` prints for `img`.
pub fn fsck_problem_lines(img: &Path) -> Vec<String> {
    let (_, text) = fsck_fn(img);
    text.lines().filter(|l| l.trim_start().starts_with('[')).map(str::to_string).collect()
}

/// Panics unless `fsck.ocfs2 -fn` exits 0 and reports exactly the problems of `baseline`, taken
/// on the image fresh from mkfs.ocfs2 (which at 512-byte and 1K blocks leaves the system
/// directory without the index that indexed-dirs asks for, and fsck says so).
pub fn assert_fsck_as_fresh(img: &Path, baseline: &[String]) {
    let (code, text) = fsck_fn(img);
    let problems: Vec<String> = text.lines().filter(|l| l.trim_start().starts_with('[')).map(str::to_string).collect();
    assert!(code == 0 && problems == baseline, "fsck.ocfs2 -fn exited {code}; fresh image had {baseline:?}:\n{text}");
}

/// The VM harness that runs the Linux kernel as a referee (`../shared/tools/kvm` beside the
/// repository, or `$KVM_TOOLS`); panics with what to do when it is missing.
pub fn kvm_tools() -> PathBuf {
    let dir = std::env::var_os("KVM_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/kvm"));
    assert!(
        dir.join("run-guest.sh").is_file(),
        "the kernel referee needs {}/run-guest.sh (set KVM_TOOLS; run its build.sh once)",
        dir.display()
    );
    dir
}

/// A child process whose standard output is read line by line, with the time each line arrived,
/// so a test can wait for what the process reports and know when it reported it.
pub struct LineProcess {
    pub name: String,
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(std::time::Instant, String)>,
    seen: Vec<(std::time::Instant, String)>,
}

impl LineProcess {
    /// Starts `cmd` with piped stdin and stdout (stderr passes through).
    pub fn spawn(name: &str, mut cmd: Command) -> LineProcess {
        use std::io::{BufRead, BufReader};
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send((std::time::Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        LineProcess { name: name.to_string(), child, lines, seen: Vec::new() }
    }

    /// Waits for a line starting with `prefix`; returns when it was printed and the line.
    pub fn expect(&mut self, prefix: &str, limit: std::time::Duration) -> (std::time::Instant, String) {
        if let Some((t, l)) = self.seen.iter().find(|(_, l)| l.starts_with(prefix)) {
            return (*t, l.clone());
        }
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok((t, line)) => {
                    self.seen.push((t, line.clone()));
                    if line.starts_with(prefix) {
                        return (t, line);
                    }
                }
                Err(_) => panic!(
                    "{} printed no {prefix:?} within {limit:?}; printed {:?}",
                    self.name,
                    self.seen.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Everything printed so far (and whatever is already waiting).
    pub fn printed(&mut self) -> Vec<String> {
        while let Ok(x) = self.lines.try_recv() {
            self.seen.push(x);
        }
        self.seen.iter().map(|(_, l)| l.clone()).collect()
    }

    /// Writes one line to the process's standard input.
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Asks the process to stop ("stop" on stdin) and closes its standard input.
    pub fn stop(&mut self) {
        use std::io::Write;
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"stop\n");
        }
        self.child.stdin.take();
    }
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
