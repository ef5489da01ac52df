#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# Instructions per call of keel's hot paths, counted by callgrind: stable on a
# noisy machine, so a change that makes a hot path heavier shows up here even
# when timings cannot see it. Builds benchmarks/callgrind_workloads.cpp with
# -O3 and runs each workload (1,000,000 calls) under
#   valgrind --tool=callgrind --toggle-collect=keel_cg_<name>*
# Usage: tools/bench-callgrind.sh [--markdown] [calls]
#   CXX (default g++), CXXFLAGS (default -O3 -DNDEBUG), KEEL_INCLUDE (default include/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
markdown=0
if [[ ${1:-} == --markdown ]]; then markdown=1; shift; fi
calls=${1:-1000000}
cxx=${CXX:-g++}
flags=${CXXFLAGS:--O3 -DNDEBUG}
inc=${KEEL_INCLUDE:-$root/include}
work=$(mktemp -d /tmp/keel-callgrind.XXXXXX)
trap 'rm -rf "$work"' EXIT

command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }
# shellcheck disable=SC2086
"$cxx" -std=c++20 $flags -g -I"$inc" "$root/benchmarks/callgrind_workloads.cpp" -o "$work/cg" -pthread

count() {  # instructions executed inside keel_cg_<name>, for `calls` calls
  valgrind --tool=callgrind --toggle-collect="keel_cg_$1*" \
    --callgrind-out-file="$work/out.$1" "$work/cg" "$1" "$calls" >/dev/null 2>&1
  awk '/^(summary|totals):/ { print $2; exit }' "$work/out.$1"
}

bare=$(count bare)
if ((markdown)); then
  echo "| workload | instructions / call | over bare call |"
  echo "|---|---:|---:|"
else
  printf '%-28s %14s %14s\n' workload "instr/call" "over bare"
fi
for name in $("$work/cg" --list); do
  n=$(count "$name")
  per=$(awk -v n="$n" -v c="$calls" 'BEGIN { printf "%.1f", n / c }')
  over=$(awk -v n="$n" -v b="$bare" -v c="$calls" 'BEGIN { printf "%+.1f", (n - b) / c }')
  if ((markdown)); then
    echo "| $name | $per | $over |"
  else
    printf '%-28s %14s %14s\n' "$name" "$per" "$over"
  fi
done
