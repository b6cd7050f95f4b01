//! Gives libocfs2rs.so its soname, so programs linked against it ask for `libocfs2rs.so.0`
//! and a later incompatible ABI can be installed beside it as `.so.1`.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libocfs2rs.so.0");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
