# Run by each keel_compile_fail_<name> test: cmake -DCXX=... -DINCLUDE=... -DSOURCE=... -P this.
# SOURCE must fail to compile, and the first error the compiler reports must
# match its "// expect: <regex>" line: keel's sentence comes first, not a page
# of candidates. A "// errors: <n>" line also bounds the number of errors.

file(STRINGS "${SOURCE}" expect_line LIMIT_COUNT 1 REGEX "^// expect: ")
string(REGEX REPLACE "^// expect: " "" expected "${expect_line}")
file(STRINGS "${SOURCE}" errors_line LIMIT_COUNT 1 REGEX "^// errors: [0-9]+$")
string(REGEX REPLACE "^// errors: " "" max_errors "${errors_line}")

execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only "-I${INCLUDE}" "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled; it must not")
endif()

# The first error line, found by position: a list of lines would split at the
# semicolons of the compiler's "[with T = ...; U = ...]".
string(FIND "${out}" "error:" at)
if(at EQUAL -1)
  message(FATAL_ERROR "no error in the compiler's output:\n${out}")
endif()
string(SUBSTRING "${out}" ${at} -1 rest)
string(FIND "${rest}" "\n" end)
string(SUBSTRING "${rest}" 0 ${end} first)
if(NOT first MATCHES "${expected}")
  message(FATAL_ERROR "the first error does not match '${expected}':\n${first}\n\n${out}")
endif()

string(REGEX MATCHALL "error:" all "${out}")
list(LENGTH all count)
if(NOT max_errors STREQUAL "" AND count GREATER max_errors)
  message(FATAL_ERROR "${count} errors, at most ${max_errors} expected:\n${out}")
endif()
