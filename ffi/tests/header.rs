//! The checked-in `include/ocfs2rs.h` is what cbindgen makes of this crate today.
//!
//! Run with `OCFS2RS_BLESS=1` to rewrite the header instead of comparing.

use std::path::Path;

const REFRESH: &str = "OCFS2RS_BLESS=1 cargo test -p ocfs2rs-ffi --test header";

fn generate() -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("read ffi/cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen cannot parse ffi/src");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("cbindgen wrote UTF-8")
}

#[test]
fn checked_in_header_matches_what_cbindgen_generates() {
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/ocfs2rs.h");
    let fresh = generate();
    if std::env::var_os("OCFS2RS_BLESS").is_some() {
        std::fs::write(&header, &fresh).expect("write include/ocfs2rs.h");
        return;
    }
    let current = std::fs::read_to_string(&header).unwrap_or_default();
    if current != fresh {
        let first = current.lines().zip(fresh.lines()).position(|(a, b)| a != b).unwrap_or(0) + 1;
        panic!(
            "include/ocfs2rs.h is stale (first difference at line {first}: checked in {:?}, generated {:?}); \
             refresh it with `{REFRESH}` and commit it",
            current.lines().nth(first - 1).unwrap_or("<end>"),
            fresh.lines().nth(first - 1).unwrap_or("<end>"),
        );
    }
}

#[test]
fn header_declares_every_exported_function() {
    let fresh = generate();
    for name in
        ["ocfs2rs_volume_open", "ocfs2rs_open", "ocfs2rs_readdir", "ocfs2rs_last_error", "ocfs2rs_set_log_callback"]
    {
        assert!(fresh.contains(&format!("{name}(")), "{name} is missing from the generated header");
    }
}
