#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# Builds keel's benchmarks (Release) and writes benchmarks/RESULTS.md: the
# machine, compiler, flags and date, then for every binary each row's median
# of 5 repetitions, its ratio to the bare call, to the clock read and to its
# hand-written floor, and heap allocations per call; then the callgrind
# instruction counts (tools/bench-callgrind.sh) when valgrind is installed.
#
# Usage: benchmarks/run.sh [--threads N] [build-dir]   (default /tmp/keel-bench-release)
#   --threads N: the most threads sharing one breaker or budget (default: the
#     environment's KEEL_BENCH_THREADS, else the CPU count, at least 4).
#   CXX (default g++), KEEL_BENCH_FLAGS (default -O2 -DNDEBUG, as the `release`
#   preset), BENCH_ARGS (extra Google Benchmark flags, e.g.
#   --benchmark_min_time=0.1), KEEL_BENCH_NO_CALLGRIND=1 to skip callgrind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
while [[ $# -gt 0 ]]; do
  case $1 in
    --threads) export KEEL_BENCH_THREADS=$2; shift 2 ;;
    --threads=*) export KEEL_BENCH_THREADS=${1#--threads=}; shift ;;
    -*) echo "usage: $0 [--threads N] [build-dir]" >&2; exit 2 ;;
    *) break ;;
  esac
done
build=${1:-/tmp/keel-bench-release}
cxx=${CXX:-g++}
out="$root/benchmarks/RESULTS.md"
jobs=${JOBS:-2}
if [[ -z ${KEEL_BENCH_THREADS:-} ]]; then
  KEEL_BENCH_THREADS=$(nproc)
  ((KEEL_BENCH_THREADS >= 4)) || KEEL_BENCH_THREADS=4
  export KEEL_BENCH_THREADS
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE="${KEEL_BENCH_FLAGS:--O2 -DNDEBUG}" \
  -DKEEL_BUILD_BENCHMARKS=ON -DKEEL_BUILD_TESTS=OFF -DKEEL_BUILD_EXAMPLES=OFF \
  -DKEEL_BUILD_HEADER_CHECK=OFF -DKEEL_BUILD_PACKAGE_TESTS=OFF >/dev/null
benches=()
for src in "$root"/benchmarks/bench_*.cpp; do
  name=$(basename "$src" .cpp)
  benches+=("keel_$name")
done
cmake --build "$build" --target "${benches[@]}" keel_callgrind_workloads -j"$jobs" >/dev/null

flags=$(awk -F= '/^CMAKE_CXX_FLAGS_RELEASE:/ { print $2 }' "$build/CMakeCache.txt")
tmp=$(mktemp -d /tmp/keel-bench-run.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

{
  echo "# keel benchmark results"
  echo
  echo "Written by \`benchmarks/run.sh\`; do not edit by hand. Every ratio is to a row"
  echo "measured in the same run of the same binary (the machine is noisy: compare"
  echo "ratios, not nanoseconds across runs). Median of 5 repetitions."
  echo
  echo "ns/call is the CPU time of the calling thread per call, which other processes"
  echo "on a busy machine disturb less than wall time. A row ending in /threads:k ran"
  echo "on k threads sharing one breaker, budget or pipeline; its ns/call is what each"
  echo "thread paid per call (Google Benchmark's own real time there is a throughput)."
  echo "x floor: the ratio to the nearest hand_written row above it with the same"
  echo "thread count, the smallest correct code a careful programmer would write"
  echo "instead for that scenario."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(lscpu | awk -F: '/Model name/ { gsub(/^[ \t]+/, "", $2); print $2; exit }'), $(nproc) CPUs"
  echo "- compiler: $("$cxx" --version | head -n1)"
  echo "- flags: -std=c++20 $flags"
  echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown) (plus working-tree changes, if any)"
  echo "- threads: 1, 2 and N = $KEEL_BENCH_THREADS (\`--threads N\`)"
  echo
} >"$tmp/results.md"

for b in "${benches[@]}"; do
  # shellcheck disable=SC2086
  "$build/$b" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_out="$tmp/$b.json" --benchmark_out_format=json ${BENCH_ARGS:-} \
    >"$tmp/$b.txt" 2>&1
  python3 - "$tmp/$b.json" "$b" >>"$tmp/results.md" <<'PY'
import json, re, sys
data = json.load(open(sys.argv[1]))
rows = [r for r in data["benchmarks"] if r.get("aggregate_name") == "median"]
def per_call(r):  # CPU time per call of the calling thread (see bench_support.hpp)
    return r["cpu_time"]
def threads(r):
    m = re.search(r"/threads:(\d+)", r["run_name"])
    return int(m.group(1)) if m else 1
def base(prefix):
    for r in rows:
        if r["run_name"].startswith(prefix):
            return per_call(r)
    return None
bare = base("bare_call")
clock = base("steady_clock_now")
has_floor = any(r["run_name"].startswith("hand_written") for r in rows)
print(f"## {sys.argv[2]}\n")
head = "| benchmark | ns/call | x bare |"
sep = "|---|---:|---:|"
if clock: head += " x clock read |"; sep += "---:|"
if has_floor: head += " x floor |"; sep += "---:|"
head += " allocs/call |"; sep += "---:|"
print(head); print(sep)
floors = {}  # thread count -> the latest hand-written row's ns/call
for r in rows:
    t = per_call(r)
    if r["run_name"].startswith("hand_written"):
        floors[threads(r)] = t
    line = f"| {r['run_name']} | {t:.2f} | {t / bare:.2f} |" if bare else f"| {r['run_name']} | {t:.2f} | - |"
    if clock: line += f" {t / clock:.2f} |"
    if has_floor:
        floor = floors.get(threads(r))
        line += f" {t / floor:.2f} |" if floor else " - |"
    line += f" {r.get('allocs/call', 0):.2f} |"
    print(line)
print()
PY
done

if [[ ${KEEL_BENCH_NO_CALLGRIND:-0} != 1 ]] && command -v valgrind >/dev/null; then
  {
    echo "## Instructions per call (callgrind)"
    echo
    echo "\`tools/bench-callgrind.sh\`: 1,000,000 calls of each workload in"
    echo "\`benchmarks/callgrind_workloads.cpp\` (built with the flags above),"
    echo "instructions counted by \`valgrind --tool=callgrind\` inside the workload"
    echo "only, the bare call's own instructions included; the hand_written rows are"
    echo "the floor. Stable across runs: a change that makes a hot path heavier shows"
    echo "here even when the timings above cannot see it."
    echo
    KEEL_CALLGRIND_BIN="$build/keel_callgrind_workloads" "$root/tools/bench-callgrind.sh" --markdown
    echo
  } >>"$tmp/results.md"
fi

compile_ms() {  # best of 7 (a busy machine is bimodal here): compiling a file that only includes <$1> (or each of $@), in ms
  { printf '#include <%s>\n' "$@"; printf 'int main() {}\n'; } >"$tmp/inc.cpp"
  local best=""
  for _ in 1 2 3 4 5 6 7; do
    local t0 t1
    t0=$(date +%s%N)
    "$cxx" -std=c++20 -O0 -I"$root/include" -c "$tmp/inc.cpp" -o "$tmp/inc.o"
    t1=$(date +%s%N)
    local ms=$(((t1 - t0) / 1000000))
    if [[ -z $best || $ms -lt $best ]]; then best=$ms; fi
  done
  echo "$best"
}

{
  echo "## Compile time"
  echo
  echo "Compiling a file that only includes the header (\`$cxx -std=c++20 -O0 -c\`, best of 7):"
  echo
  echo "| header | ms |"
  echo "|---|---:|"
  for h in chrono system_error keel/core.hpp keel/circuit_breaker.hpp keel/keel.hpp; do
    echo "| <$h> | $(compile_ms "$h") |"
  done
  # The floor for keel.hpp: the standard headers it includes, and nothing of keel's.
  mapfile -t std_headers < <(grep -rhoE '^#include <[a-z_]+>' "$root/include/keel" --exclude-dir=testing |
    sed -E 's/#include <(.*)>/\1/' | sort -u)
  echo "| the ${#std_headers[@]} standard headers keel.hpp includes, alone | $(compile_ms "${std_headers[@]}") |"
  echo
  echo "## Sizes"
  echo
  echo '```'
  for b in circuit_breaker pipeline; do
    "$build/keel_bench_$b" --benchmark_filter='^$' 2>/dev/null | grep -i sizeof || true
  done
  echo '```'
} >>"$tmp/results.md"

cp "$tmp/results.md" "$out"
echo "wrote $out"
