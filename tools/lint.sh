#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# The house rules a compiler does not check:
#   format  every tracked C++ file is as clang-format-19 formats it (.clang-format)
#   tidy    clang-tidy-19 (the checks in .clang-tidy) finds nothing in keel's
#           public headers, each compiled alone (the header check's TUs)
# Usage: tools/lint.sh [format|tidy]...   (default: both)
#   tidy configures build/lint (clang-19, header check only) if needed.
#   KEEL_JOBS: parallel clang-tidy processes (default 2).
# Fix formatting with:  git ls-files '*.hpp' '*.cpp' | xargs clang-format-19 -i
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs="${KEEL_JOBS:-2}"
steps=("$@")
[[ ${#steps[@]} -eq 0 ]] && steps=(format tidy)

status=0
for step in "${steps[@]}"; do
  case "$step" in
    format)
      echo "== lint: clang-format-19 --dry-run -Werror"
      if ! git ls-files -z '*.hpp' '*.cpp' | xargs -0 clang-format-19 --dry-run -Werror; then
        echo "lint: formatting differs (fix: git ls-files '*.hpp' '*.cpp' | xargs clang-format-19 -i)" >&2
        status=1
      fi
      ;;
    tidy)
      echo "== lint: clang-tidy-19 on every public header"
      build=build/lint
      cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++-19 -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DKEEL_BUILD_EXAMPLES=OFF -DKEEL_BUILD_BENCHMARKS=OFF \
        -DKEEL_BUILD_PACKAGE_TESTS=OFF >/dev/null
      # The header check's TUs: one per public header (generated at configure time).
      mapfile -t units < <(find "$build/header_check" -name 'keel_*.cpp' | sort)
      if [[ ${#units[@]} -eq 0 ]]; then
        echo "lint: no header check units in $build (is Catch2 installed?)" >&2
        status=1
        continue
      fi
      out=$(mktemp)
      if ! printf '%s\0' "${units[@]}" |
          xargs -0 -n 4 -P "$jobs" clang-tidy-19 -p "$build" --quiet --warnings-as-errors='*' \
            >"$out" 2>&1; then
        grep -E "warning:|error:" "$out" | sort -u >&2 || cat "$out" >&2
        echo "lint: clang-tidy found the above" >&2
        status=1
      fi
      rm -f "$out"
      ;;
    *)
      echo "lint: unknown step '$step' (format, tidy)" >&2
      exit 2
      ;;
  esac
done
exit "$status"
