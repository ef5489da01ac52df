#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# Builds keel's benchmarks (Release) and writes benchmarks/RESULTS.md: the
# machine, compiler, flags and date, then for every binary each row's median
# of 5 repetitions, its ratio to the bare call (and to the clock read or the
# hand-written floor where the binary has one) and heap allocations per call;
# then the callgrind instruction counts (tools/bench-callgrind.sh) when
# valgrind is installed.
#
# Usage: benchmarks/run.sh [build-dir]     (default /tmp/keel-bench-release)
#   CXX (default g++), BENCH_ARGS (extra Google Benchmark flags, e.g.
#   --benchmark_min_time=0.1), KEEL_BENCH_NO_CALLGRIND=1 to skip callgrind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-/tmp/keel-bench-release}
cxx=${CXX:-g++}
out="$root/benchmarks/RESULTS.md"
jobs=${JOBS:-2}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release \
  -DKEEL_BUILD_BENCHMARKS=ON -DKEEL_BUILD_TESTS=OFF -DKEEL_BUILD_EXAMPLES=OFF \
  -DKEEL_BUILD_HEADER_CHECK=OFF -DKEEL_BUILD_PACKAGE_TESTS=OFF >/dev/null
benches=()
for src in "$root"/benchmarks/bench_*.cpp; do
  name=$(basename "$src" .cpp)
  benches+=("keel_$name")
done
cmake --build "$build" --target "${benches[@]}" -j"$jobs" >/dev/null

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
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(lscpu | awk -F: '/Model name/ { gsub(/^[ \t]+/, "", $2); print $2; exit }'), $(nproc) CPUs"
  echo "- compiler: $("$cxx" --version | head -n1)"
  echo "- flags: -std=c++20 $flags"
  echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown) (plus working-tree changes, if any)"
  echo
} >"$tmp/results.md"

for b in "${benches[@]}"; do
  # shellcheck disable=SC2086
  "$build/$b" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_out="$tmp/$b.json" --benchmark_out_format=json ${BENCH_ARGS:-} \
    >"$tmp/$b.txt" 2>&1
  python3 - "$tmp/$b.json" "$b" >>"$tmp/results.md" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
rows = [r for r in data["benchmarks"] if r.get("aggregate_name") == "median"]
def base(prefix):
    for r in rows:
        if r["run_name"].startswith(prefix):
            return r["real_time"]
    return None
bare = base("bare_call")
clock = base("steady_clock_now")
floor = base("hand_written")
print(f"## {sys.argv[2]}\n")
head = "| benchmark | ns/call | x bare |"
sep = "|---|---:|---:|"
if clock: head += " x clock read |"; sep += "---:|"
if floor: head += " x floor |"; sep += "---:|"
head += " allocs/call |"; sep += "---:|"
print(head); print(sep)
for r in rows:
    t = r["real_time"]
    line = f"| {r['run_name']} | {t:.2f} | {t / bare:.2f} |" if bare else f"| {r['run_name']} | {t:.2f} | - |"
    if clock: line += f" {t / clock:.2f} |"
    if floor: line += f" {t / floor:.2f} |"
    line += f" {r.get('allocs/call', 0):.2f} |"
    print(line)
print()
if floor:
    print("x floor: the first hand-written row of this binary (the smallest correct")
    print("code a careful programmer would write instead).\n")
PY
done

if [[ ${KEEL_BENCH_NO_CALLGRIND:-0} != 1 ]] && command -v valgrind >/dev/null; then
  {
    echo "## Instructions per call (callgrind)"
    echo
    echo "\`tools/bench-callgrind.sh\`: 1,000,000 calls of each workload in"
    echo "\`benchmarks/callgrind_workloads.cpp\`, instructions counted by"
    echo "\`valgrind --tool=callgrind\` inside the workload only (the bare call's own"
    echo "7 instructions included). Stable across runs: a change that makes a hot"
    echo "path heavier shows here even when the timings above cannot see it."
    echo
    CXX="$cxx" "$root/tools/bench-callgrind.sh" --markdown
    echo
  } >>"$tmp/results.md"
fi

compile_ms() {  # best of 3: compiling a file that only includes <$1>, in ms
  printf '#include <%s>\nint main() {}\n' "$1" >"$tmp/inc.cpp"
  local best=""
  for _ in 1 2 3; do
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
  echo "Compiling a file that only includes the header (\`$cxx -std=c++20 -O0 -c\`, best of 3):"
  echo
  echo "| header | ms |"
  echo "|---|---:|"
  for h in chrono system_error keel/core.hpp keel/circuit_breaker.hpp keel/keel.hpp; do
    echo "| <$h> | $(compile_ms "$h") |"
  done
  echo
  echo "## Sizes"
  echo
  echo '```'
  "$build/keel_bench_circuit_breaker" --benchmark_filter='^$' 2>/dev/null | grep -i sizeof || true
  echo '```'
} >>"$tmp/results.md"

cp "$tmp/results.md" "$out"
echo "wrote $out"
