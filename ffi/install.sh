#!/bin/sh
# Builds the C library in release mode and installs it under PREFIX (DESTDIR is honoured):
#   lib/libocfs2rs.so.VERSION, its links lib/libocfs2rs.so.0 (the soname) and lib/libocfs2rs.so,
#   lib/libocfs2rs.a, include/ocfs2rs.h and lib/pkgconfig/ocfs2rs.pc (from ocfs2rs.pc.in).
# Then: cc prog.c $(pkg-config --cflags --libs ocfs2rs)
set -eu
prefix=${1:?usage: ffi/install.sh PREFIX}
destdir=${DESTDIR:-}
here=$(cd "$(dirname "$0")" && pwd)
manifest="$here/../Cargo.toml"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -n 1)
target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$manifest" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

cargo build --release -p ocfs2rs-ffi --manifest-path "$manifest"

lib="$destdir$prefix/lib"
install -d "$lib/pkgconfig" "$destdir$prefix/include"
install -m 755 "$target/release/libocfs2rs.so" "$lib/libocfs2rs.so.$version"
ln -sf "libocfs2rs.so.$version" "$lib/libocfs2rs.so.0"
ln -sf libocfs2rs.so.0 "$lib/libocfs2rs.so"
install -m 644 "$target/release/libocfs2rs.a" "$lib/libocfs2rs.a"
install -m 644 "$here/../include/ocfs2rs.h" "$destdir$prefix/include/ocfs2rs.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "$here/ocfs2rs.pc.in" >"$lib/pkgconfig/ocfs2rs.pc"
echo "installed libocfs2rs $version under $destdir$prefix"
