#!/bin/bash
# Runs inside the kvm guest (shared/tools/kvm/run-guest.sh) as root, under bash with busybox,
# util-linux mount and ocfs2-tools. Formats /dev/vda, has the Linux kernel's OCFS2 write a tree
# that exercises every read path (inline data, contiguous and fragmented extents, extent trees of
# depth >= 2, holes, unwritten extents, fast and slow symlinks, hard links, special files, an
# indexed directory of 20,000 entries, odd names), unmounts, remounts read-only and prints the
# manifest of the tree as read back by the kernel.
#
# Knobs (set by gen-image.sh in front of this script):
#   MT_BLOCK=1024          block size (mkfs -b); clusters are always 4 KiB
#   MT_FEATURES=           extra --fs-features for mkfs (e.g. metaecc); default feature level otherwise
#   MT_LABEL=kernel-1k     volume label
#   MT_MIN_DEPTH=2         keep appending to /deepfile until its extent tree has this depth
#   MT_BIGDIR=20000        entries in /bigdir
#   MT_ROUNDS=             interleaved append rounds before the first depth check
#
# Output on the console, between marker lines:
#   ==== MANIFEST BEGIN <sha256 of the manifest> / base64 of gzip of the manifest / ==== MANIFEST END
# Manifest: one line per path, sorted bytewise by path (root "/" included):
#   TYPE MODE NLINK SIZE SHA256 PATH
# TYPE f d l c b p s; MODE 4 octal digits (permission and suid/sgid/sticky bits); NLINK; SIZE =
# i_size (symlink: target length); SHA256 of the content (file), of the target (symlink), else "-".
set -euo pipefail
. /root/manifest.sh
MT_BLOCK=${MT_BLOCK:-1024}
MT_FEATURES=${MT_FEATURES:-}
MT_LABEL=${MT_LABEL:-kernel-1k}
MT_MIN_DEPTH=${MT_MIN_DEPTH:-2}
MT_BIGDIR=${MT_BIGDIR:-20000}
DEV=/dev/vda
M=/mnt/t
now() { cut -d' ' -f1 /proc/uptime; }
T0=$(now)
say() { echo "[make-tree +$(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')s] $*"; }

# ---------------------------------------------------------------- content generator
# A fixed 9 KiB text pattern (deterministic: busybox awk with a fixed seed). Every KiB of a
# generated file is a 32-byte header "TAG BYTE-OFFSET" plus a 992-byte slice of the pattern that
# starts at a place depending on the KiB index and the file's seed: every KiB of a file differs
# from every other (an offset or block-mapping bug changes the checksum) while xz still finds the
# slices in the pattern, so the image compresses well.
PAT=$(awk 'BEGIN{srand(1729); a="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (i = 0; i < 9216; i++) printf "%s", substr(a, int(rand()*64) + 1, 1)}')
[ ${#PAT} -eq 9216 ] || { echo "pattern generator failed"; exit 1; }
# blk4k TAG SEED N: sets OUT to the 4096 bytes of block N of the stream (TAG, SEED).
blk4k() {
  local t=$1 s=$2 n=$3 k i o h
  OUT=
  for k in 0 1 2 3; do
    i=$((n * 4 + k)); o=$(((i * 61 + s * 1009) % 8192))
    printf -v h '%-31.31s\n' "$t $((i * 1024))"
    OUT+=$h${PAT:o:992}
  done
}
# stream TAG SEED OFF LEN: bytes [OFF, OFF+LEN) of the stream on stdout.
stream() {
  local t=$1 s=$2 off=$3 len=$4 n a b
  n=$((off / 4096)); a=$((off % 4096))
  while ((len > 0)); do
    blk4k "$t" "$s" "$n"
    b=$((4096 - a)); ((b > len)) && b=$len
    printf '%s' "${OUT:a:b}"
    len=$((len - b)); a=0; n=$((n + 1))
  done
}
# gen FILE SEED SIZE: FILE holds bytes [0, SIZE) of its stream (tag = base name), one write per 4 KiB.
gen() { stream "${1##*/}" "$2" 0 "$3" > "$1"; }
# put FILE SEED OFF LEN: write bytes [OFF, OFF+LEN) of FILE's stream at OFF, keeping the rest.
put() {
  local bs=1
  (($3 % 512 == 0)) && bs=512
  stream "${1##*/}" "$2" "$3" "$4" | dd of="$1" bs=$bs seek=$(($3 / bs)) conv=notrunc 2>/dev/null
}
# append FILE SEED N: append block N of FILE's stream (one 4 KiB write).
append() { blk4k "${1##*/}" "$2" "$3"; printf '%s' "$OUT" >> "$1"; }

dbg() { debugfs.ocfs2 -R "$1" "$DEV" 2>/dev/null; }
depth_of() {   # the inode's own l_tree_depth (the first "Tree Depth" that stat prints)
  local d; d=$(dbg "stat $1" | awk 'd == "" && /Tree Depth: / { sub(/.*Tree Depth: /, ""); d = $1 } END { print d }')
  [ -n "$d" ] || { echo "no Tree Depth for $1" >&2; exit 1; }
  echo "$d"
}

# ---------------------------------------------------------------- format and mount
[ -e /etc/mtab ] || ln -s /proc/mounts /etc/mtab   # mkfs.ocfs2 asks it whether $DEV is mounted
feat=()
[ -n "$MT_FEATURES" ] && feat=(--fs-features="$MT_FEATURES")
say "mkfs.ocfs2 -M local -b $MT_BLOCK -C 4096 -L $MT_LABEL ${feat[*]:-}"
mkfs.ocfs2 -q -F -M local -b "$MT_BLOCK" -C 4096 -L "$MT_LABEL" "${feat[@]}" "$DEV"
dbg stats | grep -E 'Feature|Block Size|Max Node Slots' || true
mkdir -p "$M"
mount -t ocfs2 -o resv_level=0 "$DEV" "$M"
grep " $M " /proc/mounts
cd "$M"

# ---------------------------------------------------------------- inline data and small files
say "inline and small files"
mkdir inline
: > inline/empty
# inline data holds up to blocksize - 200 bytes: 824 with 1 KiB blocks, 3896 with 4 KiB
for sz in 1 100 500 777 823 824 825 1000 3895 3896 3897 4095 4096 4097; do gen "inline/s$sz" 3 "$sz"; done
gen inline/grown 4 500; stream grown 4 500 2500 >> inline/grown   # inline, then converted to extents
printf 'line one\nline two\n' > inline/text.txt
mkdir inline/smalldir; echo hi > inline/smalldir/a; echo there > inline/smalldir/b

# ---------------------------------------------------------------- multi-megabyte files
say "multi-megabyte files"
mkdir big
gen big/two-mib 11 $((2 << 20))
gen big/three-mib-odd 12 $((3 << 20 | 777))
gen big/five-mib 13 $((5 << 20))
gen big/eight-mib 14 $((8 << 20))

# ---------------------------------------------------------------- sparse and unwritten
say "sparse, unwritten, truncated files"
mkdir sparse
truncate -s $((10 << 20)) sparse/all-hole
put sparse/holes 21 0 5000
put sparse/holes 21 $((1 << 20 | 123)) 9000
put sparse/holes 21 $((64 << 20)) 4096
truncate -s $((100 << 20 | 1)) sparse/holes           # ends in a hole
put sparse/far 22 $(((1 << 30) - 100)) 6000             # crosses the 1 GiB mark
put sparse/cluster-edge 23 $((4096 * 7 - 10)) 20        # straddles two clusters
put sparse/one-block-mid 24 $((3 * 4096 + 1024)) 1024   # one block in the middle of a cluster
fallocate -l $((1 << 20)) sparse/unwritten               # 1 MiB unwritten
put sparse/unwritten 25 300000 5000                      # splits the unwritten extent
fallocate -o $((2 << 20)) -l $((256 << 10)) sparse/unwritten-tail
put sparse/unwritten-tail 26 0 4096                      # data, hole, unwritten at the end
gen sparse/shrunk 27 10000; truncate -s 5000 sparse/shrunk; truncate -s 20000 sparse/shrunk
gen sparse/shrunk-inline 28 700; truncate -s 300 sparse/shrunk-inline; truncate -s 600 sparse/shrunk-inline

# ---------------------------------------------------------------- fragmented files, deep tree
# Round-robin 4 KiB appends: with resv_level=0 the allocator hands the files clusters in turn, so
# no two consecutive clusters of a file are adjacent and every append is an extent of its own.
say "interleaved appends"
mkdir frag
stops=(40 51 52 120 400 900)      # per partner: rounds after which it stops growing
ROUNDS=${MT_ROUNDS:-$((MT_BLOCK == 1024 ? 3150 : 600))}
for ((r = 0; r < ROUNDS; r++)); do
  append deepfile 31 "$r"
  for ((p = 0; p < ${#stops[@]}; p++)); do
    ((r < stops[p])) && append "frag/p$p" $((40 + p)) "$r"
  done
  append frag/partner 39 "$r"
done
say "appended $ROUNDS rounds"
cd /; umount "$M"
while :; do
  d=$(depth_of /deepfile); say "deepfile: Tree Depth $d after $ROUNDS appends"
  [ "$d" -ge "$MT_MIN_DEPTH" ] && break
  [ "$ROUNDS" -lt 20000 ] || { echo "deepfile never reached depth $MT_MIN_DEPTH"; exit 1; }
  mount -t ocfs2 -o resv_level=0 "$DEV" "$M"; cd "$M"
  for ((r = ROUNDS; r < ROUNDS + 200; r++)); do append deepfile 31 "$r"; append frag/partner 39 "$r"; done
  ROUNDS=$((ROUNDS + 200)); cd /; umount "$M"
done
mount -t ocfs2 -o resv_level=0 "$DEV" "$M"; cd "$M"

# ---------------------------------------------------------------- symlinks
say "symlinks"
mkdir links
ln -s ../inline/text.txt links/to-text
ln -s /big/two-mib links/absolute
ln -s nowhere links/dangling
ln -s . links/dot
ln -s "a b/c d" links/spaces
long() { local s='' i=0; while ((${#s} < $1)); do s+="d$i/"; i=$((i + 1)); done; printf '%s' "${s:0:$1}"; }
# a target shorter than blocksize - 192 bytes lives in the inode (fast symlink), a longer one in a cluster
for n in 60 830 831 832 833 1000 1023 1024 2100 3903 3904 4000 4095; do ln -s "$(long "$n")" "links/len$n"; done

# ---------------------------------------------------------------- hard links
say "hard links"
mkdir -p hard/sub
gen hard/two 51 3000; ln hard/two hard/sub/two-again
gen hard/three 52 9000; ln hard/three hard/sub/three-b; ln hard/three three-at-root
echo inline > hard/inline-two; ln hard/inline-two hard/sub/inline-two-b

# ---------------------------------------------------------------- special files and modes
say "special files and modes"
mkdir special
mknod special/fifo p
mknod special/null c 1 3
mknod special/loop0 b 7 0
mkdir sock; : > sock/busybox; mount --bind /bin/busybox sock/busybox     # a socket: busybox syslogd
mkdir sock/dev                                                  # binds /dev/log in a chroot
chroot sock /busybox syslogd -n -O /messages & slpid=$!
for i in $(seq 50); do [ -S sock/dev/log ] && break; sleep 0.1; done
kill -9 "$slpid" 2>/dev/null || true; wait "$slpid" 2>/dev/null || true
umount sock/busybox
if [ -S sock/dev/log ]; then mv sock/dev/log special/socket; else echo "warning: no socket made"; fi
rm -rf sock
gen special/setuid 61 100; chmod 4755 special/setuid
gen special/setgid 62 100; chmod 2750 special/setgid
gen special/none 63 100; chmod 0000 special/none
gen special/private 64 100; chmod 0600 special/private
mkdir special/sticky; chmod 1777 special/sticky
mkdir special/closed; chmod 0700 special/closed

# ---------------------------------------------------------------- names
say "names"
mkdir names
for n in "with space" " leading" "trailing " "tab	in" "-dash" 'back\slash' "quote\"s" "pct%d%s" \
         "ünïcödé" $'ctl\001\x7f' $'high\xff\xfe' "*star?" "dot." "..dots" "a=b,c;d" \
         "$(printf 'n%.0s' $(seq 255))"; do
  printf '%s' "$n" > "names/$n"
done
mkdir "names/dir with space"; printf 'x' > "names/dir with space/inner file"

# ---------------------------------------------------------------- nested, renames, deletions
say "nested directories, renames, deletions"
mkdir -p nested/a/b/c/d/e/f/g/h
gen nested/a/b/c/d/e/f/g/h/leaf 71 12345
echo level1 > nested/a/one; echo level4 > nested/a/b/c/d/four
mkdir nested/empty
gen nested/moved-from 72 2000; mv nested/moved-from nested/a/b/moved-to
mkdir holes-in-dir
for i in $(seq 150); do printf 'f%d' "$i" > "holes-in-dir/file-$i-$(long $((i % 40)) | tr / _)"; done
for i in $(seq 3 3 150); do rm "holes-in-dir/file-$i-"*; done

# ---------------------------------------------------------------- the big (indexed) directory
say "bigdir: $MT_BIGDIR entries (+300 made and removed)"
mkdir bigdir
SUF=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789
cd bigdir
for ((i = 0; i < MT_BIGDIR + 300; i++)); do
  name="e$i-${SUF:0:i % 60}"
  if ((i % 97 == 0)); then printf '%s' "$name" > "$name"; else : > "$name"; fi
done
step=$(((MT_BIGDIR + 293) / 300))
for ((k = 0, i = 7; k < 300; k++, i += step)); do rm "e$i-${SUF:0:i % 60}"; done
cd "$M"
n=$(find bigdir -mindepth 1 -maxdepth 1 | wc -l)
say "bigdir has $n entries"; [ "$n" -eq "$MT_BIGDIR" ] || { echo "bigdir count wrong"; exit 1; }

# ---------------------------------------------------------------- unmount, inspect
cd /; umount "$M"
say "unmounted; debugfs views:"
dbg 'stat /deepfile' | awk '/Tree Depth|Clusters|Size/ && n++ < 4 { print "  deepfile: " $0 }'
dbg 'frag /deepfile' | sed 's/^/  deepfile: /'
for f in /frag/partner /frag/p0 /frag/p2 /big/eight-mib /sparse/holes /sparse/unwritten; do
  echo "  $f: Tree Depth $(depth_of "$f")"; done
for f in /inline/s824 /inline/s825 /inline/s3896 /inline/s3897 /links/len831 /links/len832 /links/len3903 /links/len3904 /bigdir /holes-in-dir /inline/smalldir; do
  echo "  $f: $(dbg "stat $f" | grep -E 'Dynamic Features|Clusters' | tr -s '\t ' ' ' | tr '\n' ' ')"; done
dbg 'stat /bigdir' | grep -iE 'index|Tree Depth' | sed 's/^/  bigdir: /' || true
# The kernel never reads the blocks of an unwritten extent: put junk in the first cluster of each
# so that a reader which returns their disk content instead of zeros fails the checksum.
head -c 4096 /dev/zero | tr '\0' '#' > /tmp/stale
printf 'STALE BLOCKS UNDER AN UNWRITTEN EXTENT: READ ZEROS HERE\n' | dd of=/tmp/stale conv=notrunc 2>/dev/null
for f in /sparse/unwritten /sparse/unwritten-tail; do
  for b in $(dbg "stat $f" | awk '/Unwritten/ { print $4 }'); do
    dd if=/tmp/stale of="$DEV" bs=4096 seek=$((b * MT_BLOCK / 4096)) count=1 conv=notrunc,fsync 2>/dev/null
    echo "  $f: stale data written at block $b (unwritten extent)"
  done
done
if fsck.ocfs2 -fn "$DEV" > /tmp/fsck.txt 2>&1; then say "fsck.ocfs2 -fn: clean"
else cat /tmp/fsck.txt; echo "fsck.ocfs2 -fn found problems"; exit 1; fi

# ---------------------------------------------------------------- manifest from a fresh read-only mount
mount -t ocfs2 -o ro "$DEV" "$M"
say "manifest"
cd "$M"
W=/tmp/mf; mkdir -p "$W"
manifest_of . "$W"
cd /; umount "$M"
say "manifest: $(wc -l < "$W/manifest") lines, $(wc -c < "$W/manifest") bytes; types: $(cut -c1 "$W/manifest" | sort | uniq -c | tr -s ' \n' ' ')"
grep -E ' /(deepfile|inline/s824|links/len832|special/socket|sparse/far|bigdir)$' "$W/manifest" | sed 's/^/  /' || true
echo "==== MANIFEST BEGIN $(sha256sum < "$W/manifest" | cut -c1-64)"
gzip -9 < "$W/manifest" | base64
echo "==== MANIFEST END"
say "done"
