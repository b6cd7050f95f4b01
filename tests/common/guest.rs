//! A Linux guest as a cluster node beside ours: run-guest.sh (../shared/tools/kvm) booted in the
//! background with user-mode networking and the o2net port forwarded, driven by `MARK name ...`
//! lines its script prints on the console and stopped with the whole process group.

use super::kvm_tools;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a guest node boots with.
pub struct GuestSpec<'a> {
    /// The shared image (the guest's /dev/vda).
    pub img: &'a Path,
    /// The guest's script, already filled in.
    pub script: &'a str,
    /// Scratch directory for the script, the console log and run-guest.sh's messages.
    pub dir: &'a Path,
    /// Host port forwarded to the guest's o2net port.
    pub o2net_fwd: u16,
    /// The cluster.conf copied into the guest.
    pub conf: &'a Path,
    pub hostname: &'a str,
    /// run-guest.sh gives up after this long.
    pub limit_secs: u64,
}

pub struct Guest {
    child: Child,
    /// The console, as run-guest.sh copies it (KVM_LOG).
    log: PathBuf,
    /// run-guest.sh's own messages (timeouts, exit codes).
    err: PathBuf,
}

impl Guest {
    pub fn start(spec: &GuestSpec) -> Guest {
        let script = spec.dir.join("guest.sh");
        std::fs::write(&script, spec.script).unwrap();
        let log = spec.dir.join("console.log");
        let err = spec.dir.join("run-guest.err");
        let child = Command::new(kvm_tools().join("run-guest.sh"))
            .arg(spec.img)
            .arg(&script)
            .env("KVM_NET", "user")
            .env("KVM_O2NET_FWD", spec.o2net_fwd.to_string())
            .env("KVM_HOSTNAME", spec.hostname)
            .env("KVM_FILES", spec.conf)
            .env("KVM_DMESG", "all")
            .env("KVM_TIMEOUT", spec.limit_secs.to_string())
            .env("KVM_LOG", &log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .process_group(0)
            .spawn()
            .expect("start run-guest.sh");
        Guest { child, log, err }
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn run_guest_messages(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Panics when the guest has ended or its script reported `GUEST-FAIL`.
    pub fn check_running(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the guest ended ({status}) while {what}:\n{}\n{}", self.console(), self.run_guest_messages());
        }
        if let Some(fail) = self.console().lines().find(|l| l.starts_with("GUEST-FAIL")) {
            panic!("the guest failed ({fail}) while {what}:\n{}", self.console());
        }
    }

    /// Waits for the console line `MARK name ...` and returns it.
    pub fn wait_mark(&mut self, name: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        let want = format!("MARK {name} ");
        loop {
            if let Some(line) = self.console().lines().find(|l| l.starts_with(&want)) {
                eprintln!("guest: {line}");
                return line.to_string();
            }
            self.check_running(&format!("the host waited for {name}"));
            assert!(Instant::now() < end, "no '{name}' from the guest within {limit:?}:\n{}", self.console());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the guest to power off; returns run-guest.sh's exit code and the console.
    pub fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().expect("wait for run-guest.sh");
        eprint!("{}", self.run_guest_messages());
        (status.code().unwrap_or(-1), self.console())
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The whole process group we started: run-guest.sh, timeout and qemu.
            let _ = Command::new("kill").arg("--").arg(format!("-{}", self.child.id())).status();
            let _ = self.child.wait();
        }
    }
}
