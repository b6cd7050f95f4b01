#!/bin/bash
# gen-image.sh [1k|4k|all]: have the Linux kernel's OCFS2 write the test tree (make-tree.sh) on a
# fresh image in the kvm guest, then store tests/data/kernel-VARIANT.img.xz (or .img.zst without
# xz) and tests/data/kernel-VARIANT.manifest, the manifest the kernel read back.
#   1k: 1 KiB blocks, 4 KiB clusters, default features (deep extent trees and slow symlinks are cheap)
#   4k: 4 KiB blocks, 4 KiB clusters, default features + metaecc
# Needs shared/tools/kvm built (its build.sh) and host ocfs2-tools.
# Environment: KVM_TOOLS (default ../shared/tools/kvm beside the repository), KVM_SCRATCH
# (work files, default /var/tmp/ocfs2-kvm), OUT (default tests/data), IMG_SIZE (default 256M).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KVM=${KVM_TOOLS:-$REPO/../shared/tools/kvm}
SCR=${KVM_SCRATCH:-/var/tmp/ocfs2-kvm}/kernel-tree
OUT=${OUT:-$REPO/tests/data}
[ -x "$KVM/run-guest.sh" ] || { echo "no $KVM/run-guest.sh (set KVM_TOOLS)" >&2; exit 2; }
command -v debugfs.ocfs2 >/dev/null || { echo "host ocfs2-tools missing" >&2; exit 2; }
mkdir -p "$SCR" "$OUT"
O2=$KVM/o2host.sh

# crosscheck IMG MANIFEST DIR: a second reader must agree with the kernel. debugfs.ocfs2 rdump
# copies every top-level entry of IMG into DIR (debugfs takes no quotes: top-level names have no
# blanks); each regular file and symlink it wrote must have the manifest's checksum (rdump skips
# devices, fifos and sockets).
crosscheck() {
  local img=$1 mf=$2 dir=$3 e
  rm -rf "$dir"; mkdir -p "$dir"
  "$O2" debugfs.ocfs2 -R 'ls /' "$img" | sed -E 's/^\t[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+  //' | grep -avxE '\.|\.\.' |
    while IFS= read -r e; do "$O2" debugfs.ocfs2 -R "rdump /$e $dir" "$img" > /dev/null; done
  (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z > ../rdump-files0
   tr '\0' '\n' < ../rdump-files0 | sed 's/^\.//' > ../rdump-files
   xargs -0 -r sha256sum < ../rdump-files0 | sed 's/^\\//' | cut -c1-64 | paste -d ' ' - ../rdump-files |
     sed 's/^/f /'
   find . -type l -print0 | while IFS= read -r -d '' e; do
     printf 'l %s %s\n' "$(readlink -n -- "$e" | sha256sum | cut -c1-64)" "${e#.}"; done
  ) | LC_ALL=C sort -t ' ' -k3 > "$dir.sums"
  grep -aE '^[fl] ' "$mf" | cut -d' ' -f1,5- | LC_ALL=C sort -t ' ' -k3 > "$dir.want"
  if diff "$dir.want" "$dir.sums" > "$dir.diff"; then
    echo "cross-check: debugfs.ocfs2 rdump agrees on all $(wc -l < "$dir.want") files and symlinks"
    rm -rf "$dir" "$dir.sums" "$dir.want" "$dir.diff" "$(dirname "$dir")/rdump-files"*
  else
    head -20 "$dir.diff"; echo "cross-check with debugfs.ocfs2 rdump FAILED (see $dir.diff)" >&2; return 1
  fi
}

one() {
  local v=$1 img=$SCR/kernel-$1.img log=$SCR/kernel-$1.log guest=$SCR/guest-$1.sh t0 rc comp
  case $v in
    1k) printf 'export MT_BLOCK=1024 MT_LABEL=kernel-1k MT_MIN_DEPTH=2\n' > "$guest" ;;
    4k) printf 'export MT_BLOCK=4096 MT_FEATURES=metaecc MT_LABEL=kernel-4k MT_MIN_DEPTH=1\n' > "$guest" ;;
    *) echo "unknown variant $v" >&2; return 2 ;;
  esac
  printf 'exec bash /root/make-tree.sh\n' >> "$guest"
  rm -f "$img" "$log"; truncate -s "${IMG_SIZE:-256M}" "$img"
  echo "== $v: guest writes the tree on $img (console: $log)"
  t0=$SECONDS
  set +e
  KVM_TIMEOUT=${KVM_TIMEOUT:-2400} KVM_FILES="$HERE/make-tree.sh $HERE/manifest.sh" KVM_LOG=$log \
    "$KVM/run-guest.sh" "$img" "$guest" |
    awk '/^==== MANIFEST BEGIN/ { print; skip = 1; next } /^==== MANIFEST END/ { skip = 0 } !skip'
  rc=${PIPESTATUS[0]}
  set -e
  echo "== $v: guest exit $rc after $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || return 1

  # The manifest travels as base64 of gzip so that odd bytes in names survive the serial console.
  local want got mf=$OUT/kernel-$v.manifest
  want=$(sed -n 's/^==== MANIFEST BEGIN \([0-9a-f]\{64\}\).*/\1/p' "$log")
  sed -n '/^==== MANIFEST BEGIN/,/^==== MANIFEST END/p' "$log" | sed '1d;$d' | base64 -d | gzip -dc > "$mf.tmp"
  got=$(sha256sum < "$mf.tmp" | cut -c1-64)
  [ -n "$want" ] && [ "$want" = "$got" ] || { echo "manifest damaged in transit ($want vs $got)" >&2; return 1; }
  cut -d' ' -f6- "$mf.tmp" | LC_ALL=C sort -c || { echo "manifest not sorted by path" >&2; return 1; }
  mv "$mf.tmp" "$mf"

  echo "== $v: host checks"
  "$O2" fsck.ocfs2 -fn "$img" > "$SCR/fsck-$v.txt" 2>&1 || { cat "$SCR/fsck-$v.txt"; echo "host fsck.ocfs2 -fn failed" >&2; return 1; }
  echo "fsck.ocfs2 -fn: $(grep -a "All passes succeeded" "$SCR/fsck-$v.txt")"
  "$O2" debugfs.ocfs2 -R 'stats' "$img" | grep -E 'Feature|Block Size Bits|Label'
  echo "/deepfile: $("$O2" debugfs.ocfs2 -R 'stat /deepfile' "$img" | grep -oE 'Tree Depth: [0-9]+' | head -1)"
  crosscheck "$img" "$mf" "$SCR/dump-$v"

  if command -v xz >/dev/null; then comp=$OUT/kernel-$v.img.xz; xz -9e -T1 -c "$img" > "$comp.tmp"
  else comp=$OUT/kernel-$v.img.zst; zstd -q -19 --long=27 -c "$img" > "$comp.tmp"; fi
  mv "$comp.tmp" "$comp"
  echo "== $v: $(du -k --apparent-size "$comp" | cut -f1) KiB $comp; $(wc -l < "$mf") lines, $(du -k --apparent-size "$mf" | cut -f1) KiB $mf"
}

case ${1:-1k} in
  all) one 1k; one 4k ;;
  *) one "$1" ;;
esac
