#!/bin/bash
# The main job on a fresh machine: format an image file with ocfs2-rs, write a tree into it and
# change it with ocfs2-rs, read it back, and let the real ocfs2-tools judge the result. Also
# reads a volume the Linux kernel wrote (tests/data) and prints what it holds.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v fsck.ocfs2 >/dev/null || [ ! -x /sbin/modprobe ] || ! command -v fusermount3 >/dev/null; then
    echo "== installing the referee (ocfs2-tools, kmod) and fusermount3 (fuse3)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ocfs2-tools kmod xz-utils fuse3 >/dev/null
fi
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d /tmp/ocfs2-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
IMG=$WORK/demo.img
truncate -s 1G "$IMG"
echo "== ocfs2-mkfs -L demo -N 4 $IMG   (a 1 GiB sparse image file)"
"$BIN/ocfs2-mkfs" -L demo -N 4 "$IMG"
echo
echo "== fsck.ocfs2 -fn (the real tool judges our format)"
fsck.ocfs2 -fn "$IMG"
echo
echo "== debugfs.ocfs2 -R stats (abridged)"
debugfs.ocfs2 -R stats "$IMG" | grep -E "Feature (Compat|Incompat|RO)|Block Size|Max Node|Label|UUID"
echo
echo "== ocfs2-files put src /   (this repository's sources written into the volume)"
"$BIN/ocfs2-files" "$IMG" put src /
"$BIN/ocfs2-files" "$IMG" mkdir -p /notes/2026
"$BIN/ocfs2-files" "$IMG" put README.md /notes/2026
"$BIN/ocfs2-files" "$IMG" mv /notes/2026/README.md /notes/readme
"$BIN/ocfs2-files" "$IMG" ln -s ../src/lib.rs /notes/lib-link
"$BIN/ocfs2-files" "$IMG" truncate -s 100 /notes/readme
"$BIN/ocfs2-files" "$IMG" rm -r /src/cluster
"$BIN/ocfs2-files" "$IMG" ls -l /notes
echo
echo "== fsck.ocfs2 -fn after the writes"
fsck.ocfs2 -fn "$IMG" | tail -3
echo
echo "== debugfs.ocfs2 rdump /src: the real tool reads our files back"
debugfs.ocfs2 -R "rdump /src $WORK" "$IMG" >/dev/null
if diff -r --exclude=cluster src "$WORK/src" >/dev/null; then echo "   identical to ./src (but the removed cluster/)"; else echo "   DIFFERENT"; exit 1; fi
echo
if [ -c /dev/fuse ] && command -v fusermount3 >/dev/null; then
    echo
    echo "== ocfs2-mount $IMG MNT: the same volume through FUSE, with cp, ls and rm"
    MNT=$WORK/mnt
    mkdir -p "$MNT"
    "$BIN/ocfs2-mount" "$IMG" "$MNT"
    cp -r examples "$MNT/examples"
    mv "$MNT/notes/readme" "$MNT/examples/readme-head"
    rm "$MNT/examples/demo.sh"
    ls -l "$MNT/examples" | head -8
    df -h "$MNT" | tail -1
    fusermount3 -u "$MNT"
    # The mount process closes the volume once the kernel lets it go.
    for _ in $(seq 50); do pgrep -f "ocfs2-mount $IMG" >/dev/null || break; sleep 0.1; done
    echo "== fsck.ocfs2 -fn after the FUSE writes"
    fsck.ocfs2 -fn "$IMG" | tail -3
    debugfs.ocfs2 -R "rdump /examples $WORK" "$IMG" >/dev/null
    if diff -r --exclude=demo.sh --exclude=readme-head examples "$WORK/examples" >/dev/null; then
        echo "   debugfs.ocfs2 reads /examples back identical to ./examples (less the removed demo.sh, plus readme-head moved in)"
    else
        echo "   DIFFERENT"; exit 1
    fi
else
    echo
    echo "== (no /dev/fuse here: the FUSE part of the demo is left out)"
fi
echo
echo "== ocfs2-files ls -l //   (the system directory, read by ocfs2-rs)"
"$BIN/ocfs2-files" "$IMG" ls -l //
echo
echo "== ocfs2-files df"
"$BIN/ocfs2-files" "$IMG" df
KIMG=tests/data/kernel-1k.img.xz
if [ -f "$KIMG" ]; then
    echo
    echo "== a volume written by the Linux kernel ($KIMG), read by ocfs2-rs"
    xz -dc "$KIMG" > "$WORK/kernel.img"
    "$BIN/ocfs2-files" "$WORK/kernel.img" ls -l /
    echo "   ... ocfs2-files tree lists $("$BIN/ocfs2-files" "$WORK/kernel.img" tree | wc -l) paths with their SHA-256"
fi
