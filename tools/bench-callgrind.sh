#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# Instructions per call of keel's hot paths, counted by callgrind: stable on a
# noisy machine, so a change that makes a hot path heavier shows up here even
# when timings cannot see it. Runs each workload of
# benchmarks/callgrind_workloads.cpp twice, for N and 2N calls (N default
# 1,000,000), and reports the difference over N, so one-time work drops out:
#   valgrind --tool=callgrind --toggle-collect='keel_cg_<name>(int)'
# Usage: tools/bench-callgrind.sh [--markdown] [calls]
#        tools/bench-callgrind.sh --check BUDGETS [calls]
#   --check: counts only the workloads BUDGETS lists ("name max-instructions-per-call"
#   per line, # comments) and fails if one is over its budget: the regression
#   guard ctest runs in the release preset.
#   KEEL_CALLGRIND_BIN: a keel_callgrind_workloads already built (benchmarks/run.sh
#   passes the one it built with the benchmarks' flags); without it the workloads
#   are compiled here with CXX (default g++), CXXFLAGS (default -O2 -DNDEBUG) and
#   KEEL_INCLUDE (default include/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
markdown=0
budgets=
if [[ ${1:-} == --markdown ]]; then markdown=1; shift; fi
if [[ ${1:-} == --check ]]; then budgets=$2; shift 2; fi
calls=${1:-1000000}
work=$(mktemp -d /tmp/keel-callgrind.XXXXXX)
trap 'rm -rf "$work"' EXIT

command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }
bin=${KEEL_CALLGRIND_BIN:-}
if [[ -z $bin ]]; then
  bin="$work/cg"
  # shellcheck disable=SC2086
  "${CXX:-g++}" -std=c++20 ${CXXFLAGS:--O2 -DNDEBUG} -I"${KEEL_INCLUDE:-$root/include}" \
    "$root/benchmarks/callgrind_workloads.cpp" "$root/benchmarks/callgrind_workloads_coarse.cpp" \
    "$root/benchmarks/callgrind_workloads_failover.cpp" "$root/benchmarks/callgrind_workloads_pool.cpp" \
    "$root/benchmarks/callgrind_workloads_bulkhead.cpp" \
    "$root/benchmarks/callgrind_workloads_rate_limiter.cpp" \
    "$root/benchmarks/callgrind_workloads_sliding_window.cpp" \
    "$root/benchmarks/callgrind_workloads_adaptive.cpp" \
    -I"$root/benchmarks" -o "$bin" -pthread
fi

run_once() {  # instructions executed inside keel_cg_<name>, for $2 calls
  valgrind --tool=callgrind --toggle-collect="keel_cg_$1(int)" \
    --callgrind-out-file="$work/out.$1" "$bin" "$1" "$2" >/dev/null 2>&1 ||
    { echo "workload $1 failed: run '$bin $1' to see why" >&2; exit 1; }
  awk '/^(summary|totals):/ { print $2; exit }' "$work/out.$1"
}
count() {  # instructions of `calls` calls: a run of 2*calls minus a run of
  # `calls`, so one-time work (first-call setup, static guards) drops out and
  # the figure per call does not depend on how many calls were made.
  local one two
  one=$(run_once "$1" "$calls")
  two=$(run_once "$1" $((2 * calls)))
  echo $((two - one))
}

if [[ -n $budgets ]]; then
  over=0
  while read -r name budget _; do
    [[ -z $name || $name == \#* ]] && continue
    per=$(awk -v n="$(count "$name")" -v c="$calls" 'BEGIN { printf "%.1f", n / c }')
    verdict=$(awk -v p="$per" -v b="$budget" 'BEGIN { print (p <= b) ? "ok" : "OVER BUDGET" }')
    printf '%-40s %8s instructions/call (budget %s) %s\n' "$name" "$per" "$budget" "$verdict"
    [[ $verdict == ok ]] || over=1
  done <"$budgets"
  exit "$over"
fi

bare=$(count bare)
if ((markdown)); then
  echo "| workload | instructions / call | over bare call |"
  echo "|---|---:|---:|"
else
  printf '%-40s %12s %12s\n' workload "instr/call" "over bare"
fi
for name in $("$bin" --list); do
  n=$(count "$name")
  per=$(awk -v n="$n" -v c="$calls" 'BEGIN { printf "%.1f", n / c }')
  over=$(awk -v n="$n" -v b="$bare" -v c="$calls" 'BEGIN { printf "%+.1f", (n - b) / c }')
  if ((markdown)); then
    echo "| $name | $per | $over |"
  else
    printf '%-40s %12s %12s\n' "$name" "$per" "$over"
  fi
done
