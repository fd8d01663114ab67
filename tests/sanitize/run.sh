#!/usr/bin/env bash
# Builds nicguard, its unit tests and its integration tests with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer into BUILD_DIR/sanitize,
# then runs every unit test and a subset of the integration tests (the data
# path, failovers, hostile domains) against that build's binary, so the
# manager, the frontends and the sandboxed driver domains all run
# instrumented.
#   tests/sanitize/run.sh [BUILD_DIR [GTEST_FILTER]]
# Fails on any test failure or sanitizer report. A report from a lab's
# process (in its logs) fails the test that ran the lab.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$(realpath -m "${1:-$ROOT/build}")"
OUT="$BUILD/sanitize"
# One lab per kind of path: packets both ways, each detector's failover,
# the lies of a hostile domain, bad configs refused on a running lab, and
# the manager asking systemd whether a SIGTERM is a restart.
FILTER="${2:-DatapathTest.PingIpv4BothDirections:DatapathTest.TcpOneGiBEachWayWithMatchingChecksums:DatapathTest.UdpExtToApp:FailoverTest.DriverKilledWithSigkill:FailoverTest.DriverCrashesInItsPacketLoop:FailoverTest.DriverSpinningWithoutHeartbeatIsAHang:FailoverTest.TransmitStallWithHeartbeatAlive:HostileTest.*:BadConfigTest.*:Restart.*}"

say() { printf '==> %s\n' "$*"; }
die() { printf 'sanitize/run.sh: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Every process of the lab reads these: halt at the first report, so that a
# finding cannot hide behind a failover it caused.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

t0=$(now)
say "building nicguard with ASan and UBSan into $OUT"
mkdir -p "$OUT"
# clang at -O0 with line tables: four times quicker to build than g++ at
# -O1 with both sanitizers (the instrumented code generation is the cost),
# and the reports still name the lines.
command -v clang++ >/dev/null || die "clang++ is missing (Debian: clang libclang-rt-14-dev)"
cmake -S "$ROOT" -B "$OUT" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_FLAGS="-O0 -gline-tables-only" -DNICGUARD_SANITIZE=ON >"$OUT/configure.log" 2>&1 ||
  { cat "$OUT/configure.log" >&2; die "configuring failed"; }
make -C "$OUT" -j"$(nproc)" --no-print-directory nicguard unit_tests integration_tests \
  >"$OUT/build.log" 2>&1 ||
  { tail -n 60 "$OUT/build.log" >&2; die "building failed (see $OUT/build.log)"; }
say "built in $(since "$t0") s"

t1=$(now)
say "unit tests under ASan and UBSan"
"$OUT/unit_tests" --gtest_brief=1 || die "unit tests failed under the sanitizers"
say "unit tests passed in $(since "$t1") s"

t2=$(now)
say "integration tests under ASan and UBSan: $FILTER"
"$OUT/integration_tests" --gtest_brief=1 --gtest_filter="$FILTER" ||
  die "integration tests failed under the sanitizers"
say "integration tests passed in $(since "$t2") s; $(since "$t0") s in all"
