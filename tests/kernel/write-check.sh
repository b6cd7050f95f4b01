#!/bin/bash
# Runs inside the kvm guest (shared/tools/kvm/run-guest.sh) on /dev/vda, a volume ocfs2-rs wrote
# on the host (tests/kernel_write.rs):
#   1. fsck.ocfs2 -fn must find it clean;
#   2. the kernel mounts it read-write and prints the manifest of what it reads (manifest A);
#   3. the kernel changes the tree: appends, overwrites, writes into holes, truncates, removes,
#      renames, links, creates files and directories, fills a directory;
#   4. it unmounts, fsck.ocfs2 -fn must find the volume clean again, and a fresh read-only mount
#      prints manifest B.
# Each manifest travels as "==== MANIFEST X BEGIN <sha256>", base64 of gzip, "==== MANIFEST X END";
# the format is manifest.sh's.
set -euo pipefail
. /root/manifest.sh
DEV=/dev/vda
M=/mnt/t
mkdir -p "$M"
[ -e /etc/mtab ] || ln -s /proc/mounts /etc/mtab   # the ocfs2-tools ask it whether $DEV is mounted

emit() {
  local tag=$1 file=$2
  echo "==== MANIFEST $tag BEGIN $(sha256sum < "$file" | cut -c1-64)"
  gzip -9 < "$file" | base64
  echo "==== MANIFEST $tag END"
}

fsck_clean() {
  if fsck.ocfs2 -fn "$DEV" > /tmp/fsck.txt 2>&1 && ! grep -q '^\[' /tmp/fsck.txt; then
    echo "fsck.ocfs2 -fn ($1): clean"
  else
    cat /tmp/fsck.txt; echo "fsck.ocfs2 -fn ($1) found problems"; exit 1
  fi
}

fsck_clean "as ocfs2-rs wrote it"
mount -t ocfs2 "$DEV" "$M"
mkdir -p /tmp/a; manifest_of "$M" /tmp/a; cd /
emit A /tmp/a/manifest

# ---------------------------------------------------------------- the kernel changes the tree
cd "$M"
head -c 100000 /dev/urandom >> files/f1m
dd if=/dev/urandom of=files/f3m bs=4096 seek=100 count=7 conv=notrunc 2> /dev/null
dd if=/dev/urandom of=sparse/far bs=1000 seek=20000 count=3 conv=notrunc 2> /dev/null
truncate -s 5000 files/f5000-to-trunc
truncate -s 9000000 files/small
rm files/f0
mv files/f4096 files/renamed-by-kernel
ln files/f100 files/f100-hardlink
ln -s ../files/f1m links/kernel-symlink
mkdir -p kdir/sub
for i in $(seq 1 300); do echo "kernel file $i" > "kdir/k$i"; done
head -c 3000000 /dev/urandom > kdir/sub/big
rm -f frag/other
head -c 4095 /dev/urandom > frag/small-inline
echo "grown by the kernel" >> prealloc/unwritten
for f in dir300/n1 dir300/n2 dir300/n3; do rm "$f"; done
sync
cd /
umount "$M"
fsck_clean "after the kernel's changes"

mount -t ocfs2 -o ro "$DEV" "$M"
mkdir -p /tmp/b; manifest_of "$M" /tmp/b; cd /
umount "$M"
emit B /tmp/b/manifest
echo "write-check done"
