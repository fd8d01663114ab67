#!/usr/bin/env bash
# Makes nicguard's man pages (section 8) from the command line's own help
# with help2man, one per top-level command, so that they cannot drift from it.
#   make-man.sh NICGUARD_BINARY OUTDIR
set -euo pipefail
bin=${1:?usage: make-man.sh NICGUARD_BINARY OUTDIR}
out=${2:?usage: make-man.sh NICGUARD_BINARY OUTDIR}
command -v help2man >/dev/null || { echo "make-man.sh: help2man is missing: install it (./run.sh deps does)" >&2; exit 1; }
mkdir -p "$out"
help2man -N -s 8 --version-option=--version \
  -n "keeps a host's network service alive across NIC driver failures" \
  -o "$out/nicguard.8" "$bin"
for cmd in $("$bin" completion --commands); do
  what=$("$bin" "$cmd" --help | head -n 1)
  help2man -N -s 8 --version-option=--version --help-option="$cmd --help" \
    -n "${what%.}" -o "$out/nicguard-$cmd.8" "$bin"
done
