#!/usr/bin/env bash
# Builds the libFuzzer targets into BUILD_DIR/fuzz and runs each for SECONDS
# on a fresh copy of its seed corpus (the source tree is never written).
#   tests/fuzz/run.sh [SECONDS [BUILD_DIR [TARGET...]]]
# SECONDS defaults to 30, BUILD_DIR to build/ beside this checkout's src/;
# FUZZ_JOBS targets run at once (default: one per core).
# Fails on any crash, leak, timeout or sanitizer report; the inputs that
# caused them are kept in BUILD_DIR/fuzz/artifacts, the logs in
# BUILD_DIR/fuzz/logs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUDGET="${1:-30}"
BUILD="$(realpath -m "${2:-$ROOT/build}")"
shift $(($# > 2 ? 2 : $#))
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(protocol_decode protocol_recv ring config control metrics)
OUT="$BUILD/fuzz"

say() { printf '==> %s\n' "$*"; }
die() { printf 'fuzz/run.sh: %s\n' "$*" >&2; exit 1; }

[[ $BUDGET =~ ^[0-9]+$ ]] || die "SECONDS must be a whole number, not '$BUDGET'"
command -v clang++ >/dev/null || die "clang++ is missing (Debian: clang libclang-rt-14-dev)"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Longer inputs only where the structure needs them: a config file, and a
# control line nested deep enough to matter.
max_len() {
  case "$1" in
    config) echo 8192 ;;
    control) echo 16384 ;;
    *) echo 0 ;;
  esac
}

build() {
  local t0
  t0=$(now)
  say "building the fuzz targets into $OUT"
  cmake -S "$HERE" -B "$OUT" -DCMAKE_CXX_COMPILER=clang++ >"$OUT.configure.log" 2>&1 ||
    { cat "$OUT.configure.log" >&2; die "configuring failed"; }
  local -a names=()
  local t
  for t in "${TARGETS[@]}"; do names+=("${t}_fuzz"); done
  make -C "$OUT" -j"$(nproc)" --no-print-directory "${names[@]}" >"$OUT/build.log" 2>&1 ||
    { tail -n 60 "$OUT/build.log" >&2; die "building failed (see $OUT/build.log)"; }
  say "built in $(since "$t0") s"
}

# One line of results from libFuzzer's log: its last status line (cov, ft,
# corp) and its final stats (executions).
summary() {
  local log="$1"
  local status execs
  status=$(grep -E '^#[0-9]+[[:space:]]' "$log" | grep -E 'cov: ' | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log" | tail -n 1)
  local cov ft corp
  cov=$(sed -E -n 's/.* cov: ([0-9]+).*/\1/p' <<<"$status")
  ft=$(sed -E -n 's/.* ft: ([0-9]+).*/\1/p' <<<"$status")
  corp=$(sed -E -n 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$status")
  printf 'execs %-10s cov %-6s ft %-6s corpus %-12s' "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
}

# Anything a sanitizer or libFuzzer reports is a failure, even if the exit
# status somehow says otherwise.
reported() {
  grep -E -q '^==[0-9]+==ERROR|^SUMMARY: |runtime error:|FUZZ_CHECK failed|ERROR: libFuzzer' "$1"
}

run_one() {
  local t="$1"
  local corpus="$OUT/corpus/$t" log="$OUT/logs/$t.log"
  rm -rf "$corpus"
  mkdir -p "$corpus" "$OUT/logs" "$OUT/artifacts"
  cp -r "$HERE/corpus/$t/." "$corpus/"
  local -a args=(-max_total_time="$BUDGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
                 -artifact_prefix="$OUT/artifacts/$t-")
  [[ -f $HERE/dict/$t.dict ]] && args+=(-dict="$HERE/dict/$t.dict")
  local len
  len=$(max_len "$t")
  ((len == 0)) || args+=(-max_len="$len")
  local t0 rc=0
  t0=$(now)
  touch "$OUT/logs/$t.start"
  "$OUT/${t}_fuzz" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?
  local took
  took=$(since "$t0")
  local files
  files=$(find "$corpus" -type f | wc -l)
  if ((rc != 0)) || reported "$log"; then
    printf '%-16s FAIL %s files %-5s %6s s (exit %d)\n' "$t" "$(summary "$log")" "$files" "$took" "$rc"
    grep -E -m 12 'ERROR|SUMMARY|runtime error|FUZZ_CHECK|Test unit written|ALARM' "$log" | sed 's/^/    /' || true
    echo "    log: $log"
    local a
    # Only this run's: earlier runs' stay for reference.
    find "$OUT/artifacts" -maxdepth 1 -name "$t-*" -newer "$OUT/logs/$t.start" | while read -r a; do
      echo "    artifact: $a"
    done
    return 1
  fi
  printf '%-16s ok   %s files %-5s %6s s\n' "$t" "$(summary "$log")" "$files" "$took"
}

main() {
  mkdir -p "$OUT"
  build
  local t0 failed=()
  t0=$(now)
  # Each libFuzzer run is one thread: one target per core at a time, their
  # lines printed in the targets' order once all have run.
  local parallel="${FUZZ_JOBS:-$(nproc)}"
  say "running ${#TARGETS[@]} targets for $BUDGET s each, $parallel at a time"
  local t
  mkdir -p "$OUT/logs"
  for t in "${TARGETS[@]}"; do
    while (($(jobs -rp | wc -l) >= parallel)); do wait -n || true; done
    (run_one "$t" >"$OUT/logs/$t.result" 2>&1 && echo 0 >"$OUT/logs/$t.rc" || echo 1 >"$OUT/logs/$t.rc") &
  done
  wait
  for t in "${TARGETS[@]}"; do
    cat "$OUT/logs/$t.result"
    [[ $(cat "$OUT/logs/$t.rc" 2>/dev/null) == 0 ]] || failed+=("$t")
  done
  say "ran in $(since "$t0") s"
  if ((${#failed[@]})); then
    die "failed: ${failed[*]} (artifacts in $OUT/artifacts; reproduce with $OUT/TARGET_fuzz ARTIFACT)"
  fi
}

main
