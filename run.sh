#!/usr/bin/env bash
# nicguard's one entry point on a fresh Debian 12 host (as root):
#   ./run.sh demo    install dependencies, build, run the failover demo
#   ./run.sh test    install dependencies, build, run unit and integration tests
# and the pieces they are made of: deps, build, bench. docs/deps.txt says why
# each package is needed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="$ROOT/build"
NICGUARD="$BUILD/nicguard"
cd "$ROOT"

# Debian 12 package names; what the build, the tests, the demo and the bench use.
PACKAGES=(
  # build
  build-essential cmake pkg-config
  libnl-3-dev libnl-route-3-dev libseccomp-dev libcap-dev libbpf-dev libxdp-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libexpected-dev libcurl4-openssl-dev
  libsystemd-dev
  # the package's man pages, made from the command line's help
  help2man
  # tests and micro-benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # fuzz targets (tests/fuzz): clang++ and libFuzzer's runtime
  clang libclang-rt-14-dev
  # lab, demo and bench: namespaces, links, traffic generators, services
  iproute2 ethtool kmod procps iperf3 sockperf netcat-openbsd nginx-light curl
  # integration tests: ping, captures, a broadcast sender
  iputils-ping tcpdump python3
  # the service tests: systemd-analyze verify on the unit file, and a
  # private system bus for the restart tests
  systemd dbus-daemon
  # driver VMs: QEMU, and the guest image's userland (its kernel is
  # downloaded as a Debian package by src/vm/guest/build-image.sh)
  qemu-system-x86 busybox-static
)

say() { printf '==> %s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<'EOF'
usage: ./run.sh <command> [args...]
  demo [args]   deps + build, then the failover demo (nicguard demo [args])
  test [args]   deps + build, then every test through ctest ([args] go to ctest)
  bench [args]  deps + build, then nicguard bench [args]
  deps          install the Debian 12 packages nicguard needs (skipped when all are present)
  build         configure and build into ./build (RelWithDebInfo)
EOF
}

require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    die "'$1' needs root: $2. Re-run as root, e.g. 'sudo ./run.sh $1'."
  fi
}

missing_packages() {
  # One dpkg-query for all: it lists the known ones (and complains, to
  # /dev/null, about packages it has never heard of).
  local -A installed=()
  local pkg state
  while read -r pkg state; do
    [[ $state == installed ]] && installed[${pkg%%:*}]=1
  done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
  for pkg in "${PACKAGES[@]}"; do
    [[ -n ${installed[$pkg]:-} ]] || printf '%s\n' "$pkg"
  done
}

cmd_deps() {
  local missing
  mapfile -t missing < <(missing_packages)
  if [[ ${#missing[@]} -eq 0 ]]; then
    say "dependencies: all ${#PACKAGES[@]} packages already installed"
    return
  fi
  require_root deps "installing packages (${missing[*]})"
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # iperf3 asks whether to run a system-wide daemon; the lab starts its own.
  echo 'iperf3 iperf3/start_daemon boolean false' | debconf-set-selections
  # Keep freshly installed services (nginx, iperf3) from starting on the host:
  # the lab runs its own instances inside its namespaces. Only when no
  # policy-rc.d exists, and removed again however this ends.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update
  apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
  if ((created_policy)); then
    rm -f "$policy"
    trap - EXIT
  fi
}

cmd_build() {
  say "building into $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo
  make -C "$BUILD" -j"$(nproc)"
  say "building the driver VM guest image into $BUILD/guest"
  "$ROOT/src/vm/guest/build-image.sh" "$BUILD/guest" "$BUILD/ng-carrier"
}

# True when this build's nicguard has the subcommand path given ("lab up").
# Asked from the parent's help, because CLI11 answers "--help" with success
# even after a word it does not know.
has_command() {
  [[ -x $NICGUARD ]] || return 1
  local last="${!#}"
  local -a parent=("${@:1:$#-1}")
  "$NICGUARD" "${parent[@]}" --help 2>/dev/null |
    awk -v name="$last" '/^Subcommands:/ { in_list = 1; next }
                         in_list && /^  [^ ]/ && $1 == name { found = 1 }
                         END { exit !found }'
}

cmd_test() {
  require_root test "the tests create network namespaces, veth pairs and bridges"
  cmd_deps
  cmd_build
  # A run that was killed may have left namespaces and links behind.
  if has_command lab cleanup; then
    say "clearing leftovers of earlier lab runs"
    "$NICGUARD" lab cleanup || say "warning: 'nicguard lab cleanup' failed; tests go on"
  fi
  say "running tests"
  ctest --test-dir "$BUILD" --output-on-failure --timeout 1200 "$@"
}

cmd_demo() {
  require_root demo "the demo builds its lab from network namespaces"
  cmd_deps
  cmd_build
  exec "$NICGUARD" demo "$@"
}

cmd_bench() {
  require_root bench "the bench builds its lab from network namespaces"
  cmd_deps
  cmd_build
  has_command bench || die "this build has no 'nicguard bench' yet"
  exec "$NICGUARD" bench "$@"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    deps) cmd_deps ;;
    build) cmd_build ;;
    test) cmd_test "$@" ;;
    demo) cmd_demo "$@" ;;
    bench) cmd_bench "$@" ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *) printf 'run.sh: unknown command %q\n' "$cmd" >&2; usage >&2; exit 2 ;;
  esac
}

main "$@"
