#!/bin/bash
# check-manifest.sh IMAGE MANIFEST OCFS2_FILES: run `OCFS2_FILES IMAGE tree` and compare its output
# with MANIFEST (written by the kernel, see gen-image.sh). IMAGE may be xz- or zstd-compressed;
# it is then unpacked (sparse) into a temporary directory. Exit 0 when identical, 1 on any
# difference (the first lines of the diff are shown), 2 on a usage or tool error.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 IMAGE MANIFEST OCFS2_FILES" >&2; exit 2; }
IMG=$1 MF=$2 BIN=$3
[ -f "$IMG" ] && [ -f "$MF" ] && [ -x "$BIN" ] || { echo "$0: missing image, manifest or binary" >&2; exit 2; }
TMP=$(mktemp -d /tmp/check-manifest.XXXXXX); trap 'rm -rf "$TMP"' EXIT
case $IMG in
  *.xz) cp "$IMG" "$TMP/img.xz"; xz -d "$TMP/img.xz"; IMG=$TMP/img ;;   # xz -d writes sparse files
  *.zst) zstd -q -d --sparse "$IMG" -o "$TMP/img"; IMG=$TMP/img ;;
esac
"$BIN" "$IMG" tree > "$TMP/tree" || { echo "$0: $BIN $IMG tree failed" >&2; exit 2; }
if cmp -s "$MF" "$TMP/tree"; then
  echo "tree matches $(wc -l < "$MF") manifest lines"
  exit 0
fi
diff -a -u --label manifest --label "ocfs2-files tree" "$MF" "$TMP/tree" | head -40 || true
echo "$0: tree differs from the manifest ($(diff -a "$MF" "$TMP/tree" | grep -c '^[<>]') lines)" >&2
exit 1
