#!/bin/bash
# Sourced by the guest scripts (make-tree.sh, write-check.sh): `manifest_of DIR WORK` writes
# WORK/manifest, one line per path below DIR (the current directory must be DIR), sorted
# bytewise by path, root "/" included:
#   TYPE MODE NLINK SIZE SHA256 PATH
# TYPE f d l c b p s; MODE 4 octal digits (permission and suid/sgid/sticky bits); NLINK; SIZE =
# i_size (symlink: target length); SHA256 of the content (file), of the target (symlink), else "-".
# `ocfs2-files IMAGE tree` prints the same format.

# batch CMD ARGS...: run CMD ARGS over the NUL-separated names on stdin, 500 at a time, in order
# (busybox 1.35 xargs -0 garbles names when the list spans several command lines).
batch() {
  local -a a; local i
  mapfile -d '' -t a
  for ((i = 0; i < ${#a[@]}; i += 500)); do "$@" "${a[@]:i:500}"; done
}

manifest_of() {
  local dir=$1 W=$2 p meta h q
  cd "$dir"
  find . -print0 | LC_ALL=C sort -z > "$W/paths0"
  tr '\0' '\n' < "$W/paths0" > "$W/paths"
  [ "$(tr -cd '\0' < "$W/paths0" | wc -c)" -eq "$(wc -l < "$W/paths")" ] ||
    { echo "a name holds a newline: the manifest format cannot say it"; exit 1; }
  batch stat -c '%f %h %s' < "$W/paths0" > "$W/stat"
  [ "$(wc -l < "$W/stat")" -eq "$(wc -l < "$W/paths")" ] || { echo "stat lost lines"; exit 1; }
  # TYPE MODE NLINK SIZE, one line per path, from the raw mode in hex.
  awk 'BEGIN { for (i = 0; i < 16; i++) hx[substr("0123456789abcdef", i + 1, 1)] = i
               ty[8] = "f"; ty[4] = "d"; ty[10] = "l"; ty[2] = "c"; ty[6] = "b"; ty[1] = "p"; ty[12] = "s" }
       { m = 0; for (i = 1; i <= length($1); i++) m = m * 16 + hx[substr($1, i, 1)]
         t = ty[int(m / 4096)]; if (t == "") t = "?"
         printf "%s %04o %s %s\n", t, m % 4096, $2, $3 }' "$W/stat" > "$W/meta"
  # Content hashes of the regular files, in path order.
  paste -d ' ' "$W/meta" "$W/paths" | awk '$1 == "f"' | cut -d' ' -f5- |
    tr '\n' '\0' | batch sha256sum | sed 's/^\\//' | cut -c1-64 > "$W/fsums"
  exec 3< "$W/fsums" 4< "$W/meta"
  while IFS= read -r -d '' p; do
    IFS= read -r meta <&4
    case $meta in
      f*) IFS= read -r h <&3 ;;
      l*) h=$(readlink -n "$p" | sha256sum | cut -c1-64) ;;
      *) h=- ;;
    esac
    q=${p#.}; printf '%s %s %s\n' "$meta" "$h" "${q:-/}"
  done < "$W/paths0" > "$W/manifest"
  exec 3<&- 4<&-
}
