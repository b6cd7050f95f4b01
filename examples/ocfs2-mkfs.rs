//! `ocfs2-mkfs`: format a device or image file as OCFS2, with mkfs.ocfs2's flags.
//!
//! ```text
//! ocfs2-mkfs [-b block-size] [-C cluster-size] [-J journal-options] [-L volume-label]
//!            [-M mount-type] [-N number-of-node-slots] [-T filesystem-type] [-U uuid]
//!            [-FnqvV] [--dry-run] [--fs-feature-level=default|max-compat|max-features]
//!            [--fs-features=[no]sparse,...] [--cluster-stack=stack] [--cluster-name=name]
//!            [--global-heartbeat] [--no-backup-super] device [blocks-count]
//! ```
//!
//! Unlike mkfs.ocfs2 it never prompts: a device that already holds OCFS2 is refused unless
//! `-F` is given.

use ocfs2::mkfs::{self, FeatureLevel, FeatureRequest, FsType, MkfsError, MkfsOptions, MountType};
use std::process::ExitCode;

const PROG: &str = "ocfs2-mkfs";

const USAGE: &str = "usage: ocfs2-mkfs [-b block-size] [-C cluster-size] [-J journal-options]
\t\t[-L volume-label] [-M mount-type] [-N number-of-node-slots]
\t\t[-T filesystem-type] [-U uuid] [-FnqvV] [--dry-run]
\t\t[--fs-feature-level=[default|max-compat|max-features]]
\t\t[--fs-features=[[no]sparse,...]] [--global-heartbeat]
\t\t[--cluster-stack=stackname] [--cluster-name=clustername]
\t\t[--no-backup-super] device [blocks-count]";

/// What the command line asked for, besides the format options.
#[derive(Default)]
struct Command {
    opts: MkfsOptions,
    quiet: bool,
    verbose: bool,
    dry_run: bool,
    version: bool,
    device: Option<String>,
}

/// A command-line mistake: the message, and whether to show the usage text.
struct UsageError(String, bool);

impl From<MkfsError> for UsageError {
    fn from(e: MkfsError) -> Self {
        UsageError(e.to_string(), false)
    }
}

/// Long options: name, whether it takes an argument, and the short option it stands for (or
/// its own name when it has none).
const LONG: &[(&str, bool, &str)] = &[
    ("block-size", true, "b"),
    ("cluster-size", true, "C"),
    ("label", true, "L"),
    ("node-slots", true, "N"),
    ("verbose", false, "v"),
    ("quiet", false, "q"),
    ("version", false, "V"),
    ("journal-options", true, "J"),
    ("heartbeat-device", false, "H"),
    ("force", false, "F"),
    ("mount", true, "M"),
    ("dry-run", false, "n"),
    ("nodiscard", false, "o"),
    ("discard", false, "O"),
    ("no-backup-super", false, "no-backup-super"),
    ("fs-feature-level", true, "fs-feature-level"),
    ("fs-features", true, "fs-features"),
    ("cluster-stack", true, "cluster-stack"),
    ("cluster-name", true, "cluster-name"),
    ("global-heartbeat", false, "global-heartbeat"),
];

/// Short options that take an argument.
const SHORT_WITH_ARG: &str = "bCLNJMTU";
/// Short options without one.
const SHORT_FLAGS: &str = "vnqVFHxoO";

fn parse(args: &[String]) -> Result<Command, UsageError> {
    let usage = |m: String| UsageError(m, true);
    let mut cmd = Command::default();
    let mut positional = Vec::new();
    let mut features: Option<FeatureRequest> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            // getopt_long accepts any unambiguous prefix of a long option.
            let matches: Vec<_> = LONG.iter().filter(|(n, _, _)| n.starts_with(name)).collect();
            let exact = LONG.iter().find(|(n, _, _)| *n == name);
            let (lname, takes, key) = match (exact, matches.as_slice()) {
                (Some(e), _) => *e,
                (None, [one]) => **one,
                _ => return Err(usage(format!("unrecognized option '--{name}'"))),
            };
            let value = if takes {
                match inline {
                    Some(v) => Some(v),
                    None if i < args.len() => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    None => return Err(usage(format!("option '--{lname}' requires an argument"))),
                }
            } else if inline.is_some() {
                return Err(usage(format!("option '--{lname}' doesn't allow an argument")));
            } else {
                None
            };
            apply(&mut cmd, &mut features, key, value)?;
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            for (pos, c) in arg[1..].char_indices() {
                let key = c.to_string();
                if SHORT_WITH_ARG.contains(c) {
                    let rest = &arg[1 + pos + c.len_utf8()..];
                    let value = if !rest.is_empty() {
                        rest.to_string()
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(usage(format!("option requires an argument -- '{c}'")));
                    };
                    apply(&mut cmd, &mut features, &key, Some(value))?;
                    break;
                } else if SHORT_FLAGS.contains(c) {
                    apply(&mut cmd, &mut features, &key, None)?;
                } else {
                    return Err(usage(format!("invalid option -- '{c}'")));
                }
            }
            continue;
        }
        positional.push(arg.clone());
    }
    if let Some(f) = features {
        cmd.opts.features = f;
    }
    if cmd.version {
        return Ok(cmd);
    }
    let mut pos = positional.into_iter();
    cmd.device = Some(pos.next().ok_or_else(|| usage("no device given".into()))?);
    if let Some(count) = pos.next() {
        let n = mkfs::geometry::parse_c_number(&count)
            .ok_or_else(|| UsageError(format!("Block count bad - {count}"), false))?;
        cmd.opts.block_count = Some(n);
    }
    if let Some(extra) = pos.next() {
        return Err(usage(format!("unexpected argument '{extra}'")));
    }
    Ok(cmd)
}

fn apply(
    cmd: &mut Command,
    features: &mut Option<FeatureRequest>,
    key: &str,
    value: Option<String>,
) -> Result<(), UsageError> {
    let v = value.unwrap_or_default();
    let o = &mut cmd.opts;
    match key {
        "b" => {
            let n = mkfs::parse_size(&v).ok().filter(|n| (512..=4096).contains(n));
            o.block_size =
                Some(n.ok_or_else(|| {
                    UsageError("Specify a blocksize between 512 and 4096 in powers of 2".into(), false)
                })? as u32);
        }
        "C" => {
            let n = mkfs::parse_size(&v).ok().filter(|n| (4096..=1 << 20).contains(n));
            o.cluster_size = Some(n.ok_or_else(|| {
                UsageError("Specify a clustersize between 4096 and 1048576 in powers of 2".into(), false)
            })? as u32);
        }
        "L" => o.label = v,
        "N" => {
            let n = mkfs::geometry::parse_c_number(&v)
                .filter(|&n| n <= 255)
                .ok_or_else(|| UsageError("Initial node slots must be no more than 255".into(), false))?;
            if n < 1 {
                return Err(UsageError("Initial node slots must be at least 1".into(), false));
            }
            o.slots = Some(n as u16);
        }
        "J" => parse_journal(o, &v)?,
        "M" => o.mount = Some(MountType::parse(&v)?),
        "T" => o.fs_type = FsType::parse(&v)?,
        "U" => o.uuid = Some(mkfs::parse_uuid(&v)?),
        "F" => o.force = true,
        "q" => cmd.quiet = true,
        "v" => cmd.verbose = true,
        "n" => cmd.dry_run = true,
        "V" => cmd.version = true,
        "x" | "o" | "O" => {}
        "H" => {
            return Err(UsageError("heartbeat-only devices (-H) are not supported".into(), false));
        }
        "no-backup-super" => o.backup_super = Some(false),
        "fs-feature-level" => o.feature_level = FeatureLevel::parse(&v)?,
        // Like mkfs.ocfs2, a later --fs-features replaces an earlier one.
        "fs-features" => *features = Some(FeatureRequest::parse(&v)?),
        "cluster-stack" => {
            if v.is_empty() {
                return Err(UsageError("Option --cluster-stack requires an argument".into(), false));
            }
            o.cluster_stack = Some(v);
        }
        "cluster-name" => {
            if v.is_empty() {
                return Err(UsageError("Option --cluster-name requires an argument".into(), false));
            }
            o.cluster_name = Some(v);
        }
        "global-heartbeat" => o.global_heartbeat = true,
        other => return Err(UsageError(format!("unhandled option {other}"), true)),
    }
    Ok(())
}

/// `-J size=N,[no]block32,[no]block64`.
fn parse_journal(o: &mut MkfsOptions, opts: &str) -> Result<(), UsageError> {
    let bad = || {
        UsageError(
            "Bad journal options specified. Valid journal options are:\n\tsize=<journal size>\n\t[no]block32\n\t[no]block64"
                .into(),
            false,
        )
    };
    for token in opts.split(',').filter(|t| !t.is_empty()) {
        let (invert, token) = match token.strip_prefix("no") {
            Some(t) => (true, t),
            None => (false, token),
        };
        let (name, arg) = match token.split_once('=') {
            Some((n, a)) => (n, Some(a)),
            None => (token, None),
        };
        match (name, arg) {
            ("size", Some(a)) if !invert => {
                let n = mkfs::parse_size(a).ok().filter(|&n| n >= 4 << 20).ok_or_else(|| {
                    UsageError(format!("Invalid journal size: {a}\nSize must be greater than 4194304 bytes"), false)
                })?;
                o.journal_size = Some(n);
            }
            ("block32", None) => o.journal_block64 = invert,
            ("block64", None) => o.journal_block64 = !invert,
            _ => return Err(bad()),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse(&args) {
        Ok(c) => c,
        Err(UsageError(msg, show_usage)) => {
            eprintln!("{PROG}: {msg}");
            if show_usage {
                eprintln!("{USAGE}");
            }
            return ExitCode::from(1);
        }
    };
    if cmd.version || !cmd.quiet {
        eprintln!("{PROG} {}", env!("CARGO_PKG_VERSION"));
    }
    if cmd.version {
        return ExitCode::SUCCESS;
    }
    let device = cmd.device.clone().unwrap_or_default();
    match run(&cmd, &device) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{PROG}: {device}: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cmd: &Command, device: &str) -> Result<(), MkfsError> {
    let open = |rw: bool| {
        // A path or an nbd:// URL.
        ocfs2::device::open_device(device, rw)
            .map_err(|e| MkfsError::InvalidOption(format!("cannot open {device}: {e}")))
    };
    if cmd.opts.uuid.is_some() && !cmd.quiet {
        println!(
            "\nWARNING!!! OCFS2 uses the UUID to uniquely identify a file system.\n\
             Having two OCFS2 file systems with the same UUID could, in the least,\n\
             cause erratic behavior, and if unlucky, cause file system damage.\n\
             Please choose the UUID with care.\n"
        );
    }
    if cmd.dry_run {
        let dev = open(false)?;
        let report = mkfs::dry_run(&dev, &cmd.opts)?;
        if !cmd.quiet {
            println!("Dry run");
            print!("{}", report.summary());
        }
        return Ok(());
    }
    let dev = open(true)?;
    let report = mkfs::dry_run(&dev, &cmd.opts)?;
    if !cmd.quiet {
        print!("{}", report.summary());
    }
    let report = mkfs::mkfs(&dev, &cmd.opts)?;
    if !cmd.quiet {
        if report.overwrote_existing {
            println!("Overwrote an existing OCFS2 volume.");
        }
        if cmd.verbose {
            println!("Root directory: block {}", report.root_blkno);
            println!("System directory: block {}", report.system_dir_blkno);
            println!("UUID: {}", report.uuid_string());
        }
        println!("Writing backup superblock: {} block(s)", report.backup_superblocks.len());
        println!("{PROG} successful\n");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_flags_like_getopt() {
        let c = parse(&args("-b 4K -C64K -N 4 -L vol -J size=32M,block64 -M local -T mail -qF img 1000")).ok().unwrap();
        assert_eq!(c.opts.block_size, Some(4096));
        assert_eq!(c.opts.cluster_size, Some(65536));
        assert_eq!(c.opts.slots, Some(4));
        assert_eq!(c.opts.label, "vol");
        assert_eq!(c.opts.journal_size, Some(32 << 20));
        assert!(c.opts.journal_block64 && c.opts.force && c.quiet);
        assert_eq!(c.opts.mount, Some(MountType::Local));
        assert_eq!(c.opts.fs_type, FsType::Mail);
        assert_eq!(c.device.as_deref(), Some("img"));
        assert_eq!(c.opts.block_count, Some(1000));
    }

    #[test]
    fn parses_long_options_with_and_without_equals() {
        let c = parse(&args("img --fs-features=metaecc,noinline-data --fs-feature-level max-compat --cluster-stack=o2cb --cluster-name x --no-backup-super")).ok().unwrap();
        assert_eq!(c.opts.feature_level, FeatureLevel::MaxCompat);
        assert_eq!(c.opts.features, FeatureRequest::parse("metaecc,noinline-data").ok().unwrap());
        assert_eq!(c.opts.cluster_stack.as_deref(), Some("o2cb"));
        assert_eq!(c.opts.cluster_name.as_deref(), Some("x"));
        assert_eq!(c.opts.backup_super, Some(false));
    }

    #[test]
    fn rejects_bad_flags() {
        for bad in [
            "-b 300 img",
            "-C 2K img",
            "-N 0 img",
            "-N 256 img",
            "-J size=1M img",
            "-J bogus img",
            "-Z img",
            "--bogus img",
            "-T web img",
            "-M shared img",
            "--fs-features=bogus img",
            "-b",
            "",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
