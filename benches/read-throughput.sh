#!/bin/bash
# Read throughput of a 1 GiB file through ocfs2-rs against dd and fio on the same image.
# The Linux kernel (../shared/tools/kvm) writes the file, so the layout is the kernel's.
# Usage: benches/read-throughput.sh [RUNS]     (image cached in $KVM_SCRATCH/bench-read-1g.img)
set -euo pipefail
cd "$(dirname "$0")/.."
KVM=${KVM_DIR:-$(cd ../shared/tools/kvm && pwd)}
SCRATCH=${KVM_SCRATCH:-/var/tmp/ocfs2-kvm}
IMG=$SCRATCH/bench-read-1g.img
RUNS=${1:-3}
if [ ! -s "$IMG.done" ]; then
    [ -f "$SCRATCH/initramfs.cpio.gz" ] || "$KVM/build.sh"
    rm -f "$IMG"; truncate -s 2G "$IMG"
    guest=$(mktemp /tmp/bench-guest.XXXXXX.sh)
    cat > "$guest" <<'GUEST'
set -e
# mkfs.ocfs2 looks for mounts in /etc/mtab, which the guest lacks.
[ -e /etc/mtab ] || ln -s /proc/mounts /etc/mtab
mkfs.ocfs2 -q -F -M local -b 4096 -C 1M -N 1 -J size=16M -L bench /dev/vda
mkdir -p /mnt/b && mount -t ocfs2 /dev/vda /mnt/b
dd if=/dev/urandom of=/mnt/b/big bs=1M count=1024 2>&1 | tail -1
sha256sum /mnt/b/big
umount /mnt/b
GUEST
    KVM_TIMEOUT=1200 "$KVM/run-guest.sh" "$IMG" "$guest" | sed -n '/SCRIPT START/,/SCRIPT END/p'
    rm -f "$guest"
    echo ok > "$IMG.done"
fi
command -v fio >/dev/null || echo "(fio not installed: apt-get install -y fio to add it as a second peer)"
cargo bench -q -p ocfs2-examples --bench read_throughput -- "$IMG" /big "$RUNS"
