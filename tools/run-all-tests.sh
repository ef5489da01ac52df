#!/usr/bin/env bash
# Builds and runs every keel test configuration, one CMake preset after another:
#   lint           tools/lint.sh: clang-format-19 and clang-tidy-19 (not a CMake preset)
#   dev-gcc        GCC Debug -Werror: unit tests, header check, package tests, examples, bench smoke
#   dev-clang      the same with Clang 14
#   dev-clang19    Clang 19 Debug -Werror: unit tests, header check, examples
#   asan           Clang, AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan           Clang, ThreadSanitizer
#   no-exceptions  the -fno-exceptions test binary
#   memcheck       GCC -O1 -g: every example under valgrind memcheck (ctest -L memcheck)
#   release        Release -O2: builds the benchmarks and runs their smoke tests (ctest -L bench)
#   fuzz           builds the libFuzzer harnesses of tests/fuzz/ and runs each for
#                  KEEL_FUZZ_SECONDS (default 10) seconds
#
# Usage: tools/run-all-tests.sh [preset...]     e.g. tools/run-all-tests.sh dev-gcc asan
# Environment: KEEL_JOBS (default 2), KEEL_FAIL_FAST=1 to stop at the first failing preset.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly all_presets=(lint dev-gcc dev-clang dev-clang19 asan tsan no-exceptions memcheck release fuzz)
jobs="${KEEL_JOBS:-2}"

if [[ $# -gt 0 ]]; then
  presets=("$@")
else
  presets=("${all_presets[@]}")
fi
for p in "${presets[@]}"; do
  [[ "$p" == fuzz || "$p" == lint ]] && continue  # not CMake presets: see run_preset
  if ! cmake --list-presets=configure 2>/dev/null | grep -q "\"$p\""; then
    echo "run-all-tests: unknown preset '$p' (known: ${all_presets[*]} demo)" >&2
    exit 2
  fi
done

declare -A status=() seconds=()
failed=0

# ThreadSanitizer of LLVM < 18 / GCC < 14 dies with "FATAL: ThreadSanitizer:
# unexpected memory mapping" (or a plain segfault) on kernels with more mmap ASLR
# entropy than it expects (vm.mmap_rnd_bits > 28). The fix that needs no root and
# changes nothing global: run the tests without ASLR (setarch -R). It is applied
# up front when mmap_rnd_bits > 28, and after the fact when a run fails that way.
no_aslr=(setarch "$(uname -m)" -R)
tsan_aslr_too_high() {
  [[ "${KEEL_TSAN_ASLR_CHECK:-1}" == 1 ]] || return 1
  local bits
  bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)
  [[ "$bits" -gt 28 ]]
}
tsan_mapping_error() {
  grep -q -E "ThreadSanitizer: unexpected memory mapping" "$1"
}

run_tests() { # preset log
  local p="$1" log="$2"
  local -a ctest_cmd=(ctest --preset "$p" --parallel "$jobs")
  local -a prefix=()
  if [[ "$p" == release ]]; then
    ctest_cmd+=(-L bench)
  fi
  if [[ "$p" == tsan ]] && tsan_aslr_too_high && "${no_aslr[@]}" true 2>/dev/null; then
    echo "run-all-tests: vm.mmap_rnd_bits > 28: running the TSan tests with ASLR disabled" \
         "(${no_aslr[*]})"
    prefix=("${no_aslr[@]}")
  fi
  if "${prefix[@]}" "${ctest_cmd[@]}" 2>&1 | tee "$log"; then
    return 0
  fi
  if [[ "$p" == tsan && ${#prefix[@]} -eq 0 ]] && tsan_mapping_error "$log"; then
    echo "run-all-tests: TSan hit 'unexpected memory mapping'; rerunning with ASLR disabled" \
         "(${no_aslr[*]})"
    "${no_aslr[@]}" "${ctest_cmd[@]}" 2>&1 | tee "$log"
    return "${PIPESTATUS[0]}"
  fi
  return 1
}

run_preset() { # preset
  local p="$1"
  if [[ "$p" == lint ]]; then
    echo
    echo "=================== lint ==================="
    tools/lint.sh
    return
  fi
  if [[ "$p" == fuzz ]]; then
    # libFuzzer harnesses (tests/fuzz/), each for a short fixed time on its corpus.
    echo
    echo "=================== fuzz ==================="
    tests/fuzz/run.sh "${KEEL_FUZZ_SECONDS:-10}" build/fuzz
    return
  fi
  local log="build/$p-ctest.log"
  echo
  echo "=================== $p ==================="
  cmake --preset "$p" || return 1
  # (release configures benchmarks only, so its default target builds just them)
  cmake --build --preset "$p" --parallel "$jobs" || return 1
  mkdir -p build
  run_tests "$p" "$log" || return 1
}

for p in "${presets[@]}"; do
  start=$SECONDS
  if run_preset "$p"; then
    status[$p]=passed
  else
    status[$p]=FAILED
    failed=1
  fi
  seconds[$p]=$((SECONDS - start))
  if [[ $failed -ne 0 && "${KEEL_FAIL_FAST:-0}" == 1 ]]; then
    break
  fi
done

echo
echo "=================== summary ==================="
total=0
for p in "${presets[@]}"; do
  if [[ -n "${status[$p]:-}" ]]; then
    printf '  %-14s %-7s %4ss\n' "$p" "${status[$p]}" "${seconds[$p]}"
    total=$((total + seconds[$p]))
  else
    printf '  %-14s %-7s\n' "$p" skipped
  fi
done
printf '  %-14s %-7s %4ss\n' total "$([[ $failed -eq 0 ]] && echo passed || echo FAILED)" "$total"
exit "$failed"
