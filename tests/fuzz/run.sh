#!/bin/sh
# SPDX-License-Identifier: BSL-1.0
# Builds every libFuzzer harness of tests/fuzz/ and runs each for N seconds
# (default 10) on its seed corpus. Needs clang++ with libFuzzer (Debian:
# clang-14 ships libclang_rt.fuzzer; else apt-get install libfuzzer-14-dev).
#   tests/fuzz/run.sh [seconds] [build-dir]      e.g. tests/fuzz/run.sh 60 /tmp/keel-fuzz
# Exit status: non-zero as soon as a harness fails to build or finds a crash.
# The corpus directories are only read: new inputs go to <build-dir>/corpus/.
set -eu
seconds="${1:-10}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${2:-${TMPDIR:-/tmp}/keel-fuzz}"
cxx="${CXX_FUZZ:-clang++}"
mkdir -p "$out"
for src in "$here"/*_fuzz.cpp; do
  name="$(basename "$src" _fuzz.cpp)"
  bin="$out/$name"
  echo "== $name: building"
  "$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -fsanitize=float-divide-by-zero,integer \
    -fsanitize-ignorelist="$root/cmake/sanitizer-ignorelist.txt" \
    -I "$root/include" -I "$root/tests" "$src" -o "$bin"
  mkdir -p "$out/corpus/$name"
  echo "== $name: running ${seconds}s"
  # -print_final_stats prints the executions; the log keeps them for the docs.
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$out/$name-" \
    "$out/corpus/$name" "$here/corpus/$name" 2>&1 | tee "$out/$name.log" |
    grep -E "^(stat::|==[0-9]+==ERROR|SUMMARY|Done)" || true
  if grep -qE "ERROR: (libFuzzer|AddressSanitizer|UndefinedBehaviorSanitizer)|runtime error|deadly signal" "$out/$name.log"; then
    echo "== $name: FAILED, see $out/$name.log" >&2
    exit 1
  fi
done
echo "== all harnesses ran ${seconds}s without a finding"
