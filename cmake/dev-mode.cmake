# Developer mode: tests, header checks, package tests, examples and benchmarks.
# Included from the top-level CMakeLists.txt only when one of KEEL_BUILD_TESTS,
# KEEL_BUILD_EXAMPLES, KEEL_BUILD_BENCHMARKS or KEEL_NO_EXCEPTIONS is ON.
#
# Nothing here needs editing to add a test, an example or a benchmark: every
# source list is a CONFIGURE_DEPENDS glob, so a new file is picked up by the
# next build. Conventions (see also docs/ and the report of the build set-up):
#   tests/unit/<area>/**/*_test.cpp -> executable + ctest test keel_<area>_tests
#   tests/noexcept/*_test.cpp       -> keel_noexcept_tests (-fno-exceptions)
#   tests/shared_libs/              -> keel_shared_libs_tests (two hidden-visibility libraries)
#   tests/real/<name>_test.cpp      -> keel_real_<name> (real servers on loopback; http_*: cpp-httplib)
#   tests/real/redis_failover_test.cpp -> keel_real_redis (needs hiredis; skips without redis-server)
#   include/keel/**/*.hpp           -> keel_header_check (each header alone, twice)
#   examples/NN_name.cpp            -> keel_example_NN_name, ctest example_NN_name
#   benchmarks/bench_name.cpp       -> keel_bench_name, ctest bench_smoke_name
#   benchmarks/callgrind_workloads.cpp -> keel_callgrind_workloads, ctest bench_smoke_callgrind_workloads

include(FetchContent)

# Dev warnings for everything keel builds itself -- never for keel::keel.
function(keel_dev_target tgt)
  target_compile_options(
    ${tgt} PRIVATE -Wall -Wextra -Wpedantic -Wconversion -Wshadow
                   $<$<BOOL:${KEEL_WARNINGS_AS_ERRORS}>:-Werror>)
endfunction()

# What to build. KEEL_NO_EXCEPTIONS narrows the build to the no-exception tests.
if(KEEL_NO_EXCEPTIONS)
  set(keel_unit_tests OFF)
  set(keel_noexcept_tests ON)
  set(keel_examples OFF)
  set(keel_benchmarks OFF)
  # Everything compiled from here on (a fetched Catch2 included) has no exceptions.
  add_compile_options(-fno-exceptions)
else()
  set(keel_unit_tests ${KEEL_BUILD_TESTS})
  set(keel_noexcept_tests ${KEEL_BUILD_TESTS})
  set(keel_examples ${KEEL_BUILD_EXAMPLES})
  set(keel_benchmarks ${KEEL_BUILD_BENCHMARKS})
endif()

enable_testing()

# ---- Catch2 (v2 as shipped by Debian 12, or v3) -----------------------------

if(keel_unit_tests OR keel_noexcept_tests)
  if(KEEL_NO_EXCEPTIONS)
    # Catch2 v2 is a single header that supports -fno-exceptions as is; v3 must
    # itself be compiled with CATCH_CONFIG_DISABLE_EXCEPTIONS, so fetch it then.
    find_package(Catch2 2 QUIET)
    if(NOT Catch2_FOUND AND KEEL_FETCH_DEPENDENCIES)
      set(CATCH_CONFIG_DISABLE_EXCEPTIONS ON CACHE BOOL "" FORCE)
      FetchContent_Declare(
        Catch2
        GIT_REPOSITORY https://github.com/catchorg/Catch2.git
        GIT_TAG v3.7.1
        GIT_SHALLOW TRUE
        SYSTEM)
      FetchContent_MakeAvailable(Catch2)
    endif()
  else()
    find_package(Catch2 QUIET)
    if(NOT Catch2_FOUND AND KEEL_FETCH_DEPENDENCIES)
      FetchContent_Declare(
        Catch2
        GIT_REPOSITORY https://github.com/catchorg/Catch2.git
        GIT_TAG v3.7.1
        GIT_SHALLOW TRUE
        SYSTEM)
      FetchContent_MakeAvailable(Catch2)
    endif()
  endif()
  if(NOT TARGET Catch2::Catch2)
    message(WARNING "keel: Catch2 not found, tests skipped (apt-get install catch2, "
                    "or -DKEEL_FETCH_DEPENDENCIES=ON to download it)")
    set(keel_unit_tests OFF)
    set(keel_noexcept_tests OFF)
  endif()
endif()

if(keel_unit_tests OR keel_noexcept_tests)
  get_target_property(keel_catch2_type Catch2::Catch2 TYPE)
  if(keel_catch2_type STREQUAL "INTERFACE_LIBRARY")
    set(KEEL_CATCH2_MAJOR 2)
  else()
    set(KEEL_CATCH2_MAJOR 3)
  endif()
  message(STATUS "keel: testing with Catch2 v${KEEL_CATCH2_MAJOR}")

  # Usage requirements shared by all test binaries (and their Catch2 v2 mains).
  add_library(keel_test_support INTERFACE)
  target_include_directories(keel_test_support INTERFACE "${PROJECT_SOURCE_DIR}/tests")
  target_compile_definitions(
    keel_test_support
    INTERFACE KEEL_TEST_PROJECT_VERSION="${PROJECT_VERSION}"
              KEEL_TEST_PROJECT_VERSION_MAJOR=${PROJECT_VERSION_MAJOR}
              KEEL_TEST_PROJECT_VERSION_MINOR=${PROJECT_VERSION_MINOR}
              KEEL_TEST_PROJECT_VERSION_PATCH=${PROJECT_VERSION_PATCH})
  # keel::keel brings C++20 to the Catch2 v2 main TUs too: v2 enables e.g. its
  # string_view support by __cplusplus, and every TU must agree.
  target_link_libraries(keel_test_support INTERFACE keel::keel)

  set(keel_sanitized OFF)
  if(CMAKE_CXX_FLAGS MATCHES "-fsanitize=")
    set(keel_sanitized ON)
    # Let the sanitizer, not Catch2, handle a crash: Catch2's signal handler
    # allocates (TSan: "signal-unsafe call") and hides the sanitizer's report.
    target_compile_definitions(keel_test_support INTERFACE CATCH_CONFIG_NO_POSIX_SIGNALS)
  endif()

  # keel_test_main: the Catch2 main, compiled once and shared by all test binaries.
  if(KEEL_CATCH2_MAJOR EQUAL 2)
    add_library(keel_test_main OBJECT "${PROJECT_SOURCE_DIR}/tests/support/catch_main.cpp")
    target_link_libraries(keel_test_main PUBLIC Catch2::Catch2 keel_test_support)
    if(keel_sanitized)
      # Catch2's runner needs no instrumentation, and instrumenting it costs a minute.
      target_compile_options(keel_test_main PRIVATE -fno-sanitize=all)
    endif()
  else()
    add_library(keel_test_main INTERFACE)
    target_link_libraries(keel_test_main INTERFACE Catch2::Catch2WithMain)
  endif()
endif()

# ---- Unit tests: one executable and one ctest test per tests/unit/<area> ----

if(keel_unit_tests)
  file(GLOB_RECURSE keel_unit_sources CONFIGURE_DEPENDS
       "${PROJECT_SOURCE_DIR}/tests/unit/*_test.cpp")
  set(keel_unit_areas "")
  foreach(src IN LISTS keel_unit_sources)
    file(RELATIVE_PATH rel "${PROJECT_SOURCE_DIR}/tests/unit" "${src}")
    if(rel MATCHES "^([^/]+)/")
      set(area "${CMAKE_MATCH_1}")
    else()
      set(area misc) # a test directly in tests/unit/ (better: put it in an area)
    endif()
    string(MAKE_C_IDENTIFIER "${area}" area)
    list(APPEND keel_unit_areas "${area}")
    list(APPEND keel_unit_sources_${area} "${src}")
  endforeach()
  list(REMOVE_DUPLICATES keel_unit_areas)

  foreach(area IN LISTS keel_unit_areas)
    set(tgt keel_${area}_tests)
    add_executable(${tgt} ${keel_unit_sources_${area}})
    target_link_libraries(${tgt} PRIVATE keel_test_main keel_test_support)
    # For tests that read keel's own headers (the hook table checks it lists every hook).
    target_compile_definitions(${tgt} PRIVATE KEEL_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
    keel_dev_target(${tgt})
    add_test(NAME ${tgt} COMMAND ${tgt})
    set_tests_properties(${tgt} PROPERTIES LABELS "unit;${area}")
  endforeach()

  # tests/shared_libs: one breaker used from two shared libraries built with
  # hidden visibility, each with its own copy of keel's inline functions and
  # their statics (as two plugins of one program), and a test executable that
  # calls into both at once: keel_shared_libs_tests.
  foreach(side a b)
    set(lib keel_shared_adder_${side})
    add_library(${lib} SHARED "${PROJECT_SOURCE_DIR}/tests/shared_libs/shared_adder.cpp")
    target_compile_definitions(${lib} PRIVATE KEEL_SHARED_ADDER_SIDE=${side}
                                              KEEL_SHARED_ADDER_BUILDING)
    set_target_properties(${lib} PROPERTIES CXX_VISIBILITY_PRESET hidden
                                            VISIBILITY_INLINES_HIDDEN ON)
    target_link_libraries(${lib} PRIVATE keel::keel)
    keel_dev_target(${lib})
  endforeach()
  add_executable(keel_shared_libs_tests "${PROJECT_SOURCE_DIR}/tests/shared_libs/shared_libs_test.cpp")
  target_link_libraries(keel_shared_libs_tests PRIVATE keel_shared_adder_a keel_shared_adder_b
                                                       keel_test_main keel_test_support)
  keel_dev_target(keel_shared_libs_tests)
  add_test(NAME keel_shared_libs_tests COMMAND keel_shared_libs_tests)
  set_tests_properties(keel_shared_libs_tests PROPERTIES LABELS "unit;shared_libs")
endif()

# ---- Real parts: tests/real/, against real servers on loopback ----------------
# keel_real_redis: a leader_follower over a real redis-server primary
# and replica, built only when hiredis is found (pkg-config hiredis; Debian's
# libhiredis-dev). The test starts the servers itself and exits 77 (skipped)
# when there is no redis-server on PATH.

if(keel_unit_tests)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(keel_hiredis QUIET IMPORTED_TARGET hiredis)
  endif()
  if(TARGET PkgConfig::keel_hiredis)
    add_executable(keel_real_redis "${PROJECT_SOURCE_DIR}/tests/real/redis_failover_test.cpp")
    target_link_libraries(keel_real_redis PRIVATE keel::keel PkgConfig::keel_hiredis)
    keel_dev_target(keel_real_redis)
    add_test(NAME keel_real_redis COMMAND keel_real_redis)
    set_tests_properties(keel_real_redis PROPERTIES LABELS "real;redis"
                                                              SKIP_RETURN_CODE 77 TIMEOUT 120)
  else()
    message(STATUS "keel: hiredis not found (apt-get install libhiredis-dev): "
                   "the Redis failover test is not built")
  endif()
endif()

# ---- Compile-fail tests: tests/compile_fail/*.cpp -----------------------------
# Each file must fail to compile, its first error matching its first line
# ("// expect: <regex>"): keel's static_asserts say why a use is refused.
# cmake/compile-fail.cmake checks it (and a "// errors: <n>" bound).

if(keel_unit_tests)
  file(GLOB keel_compile_fail_sources CONFIGURE_DEPENDS
       "${PROJECT_SOURCE_DIR}/tests/compile_fail/*.cpp")
  foreach(src IN LISTS keel_compile_fail_sources)
    get_filename_component(name "${src}" NAME_WE)
    add_test(NAME keel_compile_fail_${name}
             COMMAND "${CMAKE_COMMAND}" "-DCXX=${CMAKE_CXX_COMPILER}"
                     "-DINCLUDE=${PROJECT_SOURCE_DIR}/include" "-DSOURCE=${src}"
                     -P "${PROJECT_SOURCE_DIR}/cmake/compile-fail.cmake")
    set_tests_properties(keel_compile_fail_${name} PROPERTIES LABELS compile_fail)
  endforeach()
endif()

# ---- Tests built with -fno-exceptions ---------------------------------------

if(keel_noexcept_tests)
  file(GLOB keel_noexcept_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/tests/noexcept/*_test.cpp")
  if(keel_noexcept_sources AND KEEL_CATCH2_MAJOR EQUAL 3 AND NOT KEEL_NO_EXCEPTIONS)
    # An installed Catch2 v3 library is compiled with exceptions; use the
    # KEEL_NO_EXCEPTIONS build (with KEEL_FETCH_DEPENDENCIES it fetches a matching
    # Catch2) instead.
    message(STATUS "keel: keel_noexcept_tests needs Catch2 v2 or -DKEEL_NO_EXCEPTIONS=ON; skipped")
  elseif(keel_noexcept_sources)
    add_library(keel_noexcept_flags INTERFACE)
    target_compile_definitions(keel_noexcept_flags INTERFACE CATCH_CONFIG_DISABLE_EXCEPTIONS)
    target_compile_options(keel_noexcept_flags INTERFACE -fno-exceptions)

    add_executable(keel_noexcept_tests ${keel_noexcept_sources})
    if(KEEL_CATCH2_MAJOR EQUAL 2)
      # Its own main TU, compiled without exceptions like the tests.
      add_library(keel_noexcept_test_main OBJECT "${PROJECT_SOURCE_DIR}/tests/support/catch_main.cpp")
      target_link_libraries(keel_noexcept_test_main PUBLIC Catch2::Catch2 keel_noexcept_flags
                                                           keel_test_support)
      if(keel_sanitized)
        target_compile_options(keel_noexcept_test_main PRIVATE -fno-sanitize=all)
      endif()
      target_link_libraries(keel_noexcept_tests PRIVATE keel_noexcept_test_main)
    else()
      target_link_libraries(keel_noexcept_tests PRIVATE Catch2::Catch2WithMain)
    endif()
    target_link_libraries(keel_noexcept_tests PRIVATE keel_test_support keel_noexcept_flags)
    keel_dev_target(keel_noexcept_tests)
    add_test(NAME keel_noexcept_tests COMMAND keel_noexcept_tests)
    set_tests_properties(keel_noexcept_tests PROPERTIES LABELS "unit;noexcept")
  endif()
endif()

# ---- Header self-containment: every public header compiles alone, twice -----

option(KEEL_BUILD_HEADER_CHECK "Build keel_header_check (each header in its own TU)" ON)
if(keel_unit_tests AND KEEL_BUILD_HEADER_CHECK)
  file(GLOB_RECURSE keel_public_headers CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/include/keel/*.hpp")
  list(SORT keel_public_headers)
  set(keel_header_check_sources "")
  set(keel_all_includes "")
  foreach(header IN LISTS keel_public_headers)
    file(RELATIVE_PATH rel "${PROJECT_SOURCE_DIR}/include" "${header}")
    string(MAKE_C_IDENTIFIER "${rel}" id)
    set(out "${PROJECT_BINARY_DIR}/header_check/${id}.cpp")
    # file(CONFIGURE) rewrites only on change, so nothing rebuilds needlessly.
    file(CONFIGURE OUTPUT "${out}"
         CONTENT "// Generated by cmake/dev-mode.cmake: <${rel}> must compile alone and twice.\n#include <${rel}>\n#include <${rel}>\n"
         @ONLY)
    list(APPEND keel_header_check_sources "${out}")
    string(APPEND keel_all_includes "#include <${rel}>\n")
  endforeach()
  if(keel_header_check_sources)
    # One more TU with every header, so each header is in at least two TUs of
    # keel_header_link_check: a non-inline definition fails to link (ODR).
    set(out "${PROJECT_BINARY_DIR}/header_check/all_headers.cpp")
    file(CONFIGURE OUTPUT "${out}"
         CONTENT "// Generated by cmake/dev-mode.cmake: every public header in one TU.\n${keel_all_includes}"
         @ONLY)
    list(APPEND keel_header_check_sources "${out}")
    add_library(keel_header_check OBJECT ${keel_header_check_sources})
    target_link_libraries(keel_header_check PRIVATE keel::keel)
    keel_dev_target(keel_header_check)

    file(CONFIGURE OUTPUT "${PROJECT_BINARY_DIR}/header_check/main.cpp"
         CONTENT "// Generated by cmake/dev-mode.cmake\nint main() { return 0; }\n" @ONLY)
    add_executable(keel_header_link_check "${PROJECT_BINARY_DIR}/header_check/main.cpp"
                                          $<TARGET_OBJECTS:keel_header_check>)
    target_link_libraries(keel_header_link_check PRIVATE keel::keel)
  endif()
endif()

# ---- Package tests: find_package, add_subdirectory, FetchContent ------------

option(KEEL_BUILD_PACKAGE_TESTS "Register the consumer (package) tests" ON)
if(keel_unit_tests AND KEEL_BUILD_PACKAGE_TESTS AND PROJECT_IS_TOP_LEVEL)
  set(keel_package_prefix "${PROJECT_BINARY_DIR}/package-prefix")
  set(keel_package_common_args
      --build-generator "${CMAKE_GENERATOR}"
      --build-makeprogram "${CMAKE_MAKE_PROGRAM}"
      --build-options
      "-DCMAKE_BUILD_TYPE=$<CONFIG>"
      "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}"
      "-DCMAKE_CXX_FLAGS=${CMAKE_CXX_FLAGS}"
      "-DCMAKE_EXE_LINKER_FLAGS=${CMAKE_EXE_LINKER_FLAGS}"
      "-DKEEL_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
      "-DKEEL_EXPECTED_VERSION=${PROJECT_VERSION}")

  function(keel_add_package_test kind)
    set(name keel_package_${kind})
    add_test(
      NAME ${name}
      COMMAND
        "${CMAKE_CTEST_COMMAND}" --build-and-test "${PROJECT_SOURCE_DIR}/tests/package/${kind}"
        "${PROJECT_BINARY_DIR}/package/${kind}" ${keel_package_common_args} ${ARGN}
        --test-command keel_consumer)
    set_tests_properties(${name} PROPERTIES LABELS package)
  endfunction()

  if(KEEL_INSTALL)
    # Fixture: install this build tree into a fresh prefix under the build dir.
    add_test(NAME keel_package_install
             COMMAND "${CMAKE_COMMAND}" "-DKEEL_BUILD_DIR=${PROJECT_BINARY_DIR}"
                     "-DKEEL_PREFIX=${keel_package_prefix}" "-DKEEL_CONFIG=$<CONFIG>"
                     -P "${PROJECT_SOURCE_DIR}/tests/package/install.cmake")
    set_tests_properties(keel_package_install PROPERTIES FIXTURES_SETUP keel_installed
                                                         LABELS package)
    keel_add_package_test(
      find_package "-DCMAKE_PREFIX_PATH=${keel_package_prefix}"
      "-DKEEL_EXPECTED_DIR=${keel_package_prefix}/${KEEL_INSTALL_CMAKEDIR}"
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
    set_tests_properties(keel_package_find_package PROPERTIES FIXTURES_REQUIRED keel_installed)
  endif()
  keel_add_package_test(add_subdirectory)
  keel_add_package_test(fetch_content)
endif()

# ---- cpp-httplib: the HTTP example and the real-parts tests -----------------
# Upstream's CMake package, or Debian's compiled library (libcpp-httplib-dev,
# found by pkg-config). Without it the HTTP example is a stub and the HTTP
# real-parts tests are not built.

if(keel_examples OR keel_unit_tests)
  find_package(httplib CONFIG QUIET)
  if(TARGET httplib::httplib)
    set(keel_httplib httplib::httplib)
  else()
    find_package(PkgConfig QUIET)
    if(PkgConfig_FOUND)
      pkg_check_modules(keel_httplib_pc QUIET IMPORTED_TARGET cpp-httplib)
    endif()
    if(TARGET PkgConfig::keel_httplib_pc)
      set(keel_httplib PkgConfig::keel_httplib_pc)
    endif()
  endif()
endif()

# ---- Real-parts tests: tests/real/<name>_test.cpp -> keel_real_<name> -------
# keel against real servers on loopback, started and stopped by the test
# (ctest label "real"). A test named http_* needs cpp-httplib and is built
# only when it is found.

if(keel_unit_tests)
  file(GLOB keel_real_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/tests/real/*_test.cpp")
  list(SORT keel_real_sources)
  foreach(src IN LISTS keel_real_sources)
    get_filename_component(stem "${src}" NAME_WE)
    string(REGEX REPLACE "_test$" "" name "${stem}")
    if(name MATCHES "^redis_")  # keel_real_redis, above: its own main and hiredis
      continue()
    endif()
    if(name MATCHES "^http_" AND NOT keel_httplib)
      message(STATUS "keel: cpp-httplib not found; keel_real_${name} skipped "
                     "(apt-get install libcpp-httplib-dev)")
      continue()
    endif()
    set(tgt keel_real_${name})
    add_executable(${tgt} "${src}")
    find_package(Threads REQUIRED)
    target_link_libraries(${tgt} PRIVATE keel_test_main keel_test_support Threads::Threads)
    if(name MATCHES "^http_")
      target_link_libraries(${tgt} PRIVATE ${keel_httplib})
    endif()
    keel_dev_target(${tgt})
    add_test(NAME ${tgt} COMMAND ${tgt})
    set_tests_properties(${tgt} PROPERTIES LABELS "real" TIMEOUT 120)
  endforeach()
endif()

# ---- Examples: examples/NN_name.cpp -----------------------------------------

if(keel_examples)
  find_package(fmt QUIET)
  if(NOT fmt_FOUND AND KEEL_FETCH_DEPENDENCIES)
    FetchContent_Declare(
      fmt
      GIT_REPOSITORY https://github.com/fmtlib/fmt.git
      GIT_TAG 10.2.1
      GIT_SHALLOW TRUE
      SYSTEM)
    FetchContent_MakeAvailable(fmt)
  endif()
  if(NOT TARGET fmt::fmt)
    message(WARNING "keel: fmt not found, examples skipped (apt-get install libfmt-dev, "
                    "or -DKEEL_FETCH_DEPENDENCIES=ON to download it)")
    set(keel_examples OFF)
  endif()
endif()

if(keel_examples)

  file(GLOB keel_example_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/examples/[0-9][0-9]_*.cpp")
  list(SORT keel_example_sources)
  set(keel_example_runs "") # each example binary, as keel_example_<run>
  foreach(src IN LISTS keel_example_sources)
    get_filename_component(name "${src}" NAME_WE)
    set(tgt keel_example_${name})
    add_executable(${tgt} "${src}")
    target_link_libraries(${tgt} PRIVATE keel::keel fmt::fmt)
    if(name MATCHES "_http_" AND keel_httplib)
      target_link_libraries(${tgt} PRIVATE ${keel_httplib})
      target_compile_definitions(${tgt} PRIVATE KEEL_EXAMPLE_HTTPLIB)
    endif()
    keel_dev_target(${tgt})
    add_test(NAME example_${name} COMMAND ${tgt})
    set_tests_properties(example_${name} PROPERTIES LABELS example)
    list(APPEND keel_example_runs ${name})
    # An example about life without exceptions is also built and run that way.
    if(name MATCHES "without_exceptions")
      add_executable(${tgt}_noexcept "${src}")
      target_link_libraries(${tgt}_noexcept PRIVATE keel::keel fmt::fmt)
      target_compile_options(${tgt}_noexcept PRIVATE -fno-exceptions)
      keel_dev_target(${tgt}_noexcept)
      add_test(NAME example_${name}_noexcept COMMAND ${tgt}_noexcept)
      set_tests_properties(example_${name}_noexcept PROPERTIES LABELS example)
      list(APPEND keel_example_runs ${name}_noexcept)
    endif()
  endforeach()

  # valgrind memcheck: every example run again under valgrind, as memcheck_<name>
  # (label memcheck; the memcheck preset). Any memory error, or a definite or
  # indirect leak, fails the test.
  option(KEEL_MEMCHECK "Also run every example under valgrind memcheck (ctest -L memcheck)" OFF)
  if(KEEL_MEMCHECK)
    find_program(KEEL_VALGRIND valgrind)
    if(NOT KEEL_VALGRIND)
      message(FATAL_ERROR "keel: KEEL_MEMCHECK=ON needs valgrind (apt-get install valgrind)")
    endif()
    foreach(name IN LISTS keel_example_runs)
      add_test(NAME memcheck_${name}
               COMMAND "${KEEL_VALGRIND}" --tool=memcheck --error-exitcode=1 --leak-check=full
                       --errors-for-leak-kinds=definite,indirect $<TARGET_FILE:keel_example_${name}>)
      set_tests_properties(memcheck_${name} PROPERTIES LABELS memcheck)
      if(name MATCHES "_http_")
        # Its own verdict is about real time (300 ms per attempt), which valgrind's
        # slowdown breaks: the first, cold call alone takes over 400 ms. So this run
        # is judged by valgrind's verdict only: no error or leak, and no death by a
        # signal (an abort, a crash). The example's timing is checked by example_*.
        set_tests_properties(
          memcheck_${name} PROPERTIES PASS_REGULAR_EXPRESSION "ERROR SUMMARY: 0 errors from 0 contexts"
                                      FAIL_REGULAR_EXPRESSION "Process terminating with default action")
      endif()
    endforeach()
  endif()

  # The README's demo command: builds the demo and runs it with its output shown.
  set(KEEL_DEMO_EXAMPLE "00_outage_demo" CACHE STRING "The example that `keel_run_demo` runs")
  if(TARGET keel_example_${KEEL_DEMO_EXAMPLE})
    # Run in the build directory: the outage demo writes its chart, outage.svg, there.
    add_custom_target(keel_run_demo COMMAND keel_example_${KEEL_DEMO_EXAMPLE} USES_TERMINAL
                      WORKING_DIRECTORY "${PROJECT_BINARY_DIR}"
                      COMMENT "Running the keel demo")
  endif()
  # The failover demo, the same way: it writes its chart, failover.svg, there.
  if(TARGET keel_example_10_failover_demo)
    add_custom_target(keel_run_failover_demo COMMAND keel_example_10_failover_demo USES_TERMINAL
                      WORKING_DIRECTORY "${PROJECT_BINARY_DIR}"
                      COMMENT "Running the keel failover demo")
  endif()
  # The overload demo, the same way: it writes its chart, overload.svg, there.
  if(TARGET keel_example_12_overload_demo)
    add_custom_target(keel_run_overload_demo COMMAND keel_example_12_overload_demo USES_TERMINAL
                      WORKING_DIRECTORY "${PROJECT_BINARY_DIR}"
                      COMMENT "Running the keel overload demo")
  endif()
endif()

# ---- Benchmarks: benchmarks/bench_name.cpp, callgrind_workloads.cpp ---------

if(keel_benchmarks)
  # The fixed workloads tools/bench-callgrind.sh counts instructions of. Needs
  # only keel (not Google Benchmark); GNU inline asm keeps results alive.
  # ctest runs every workload a few times, without valgrind, to
  # prove each still measures what it says.
  find_package(Threads REQUIRED)
  add_executable(keel_callgrind_workloads "${PROJECT_SOURCE_DIR}/benchmarks/callgrind_workloads.cpp"
                                         "${PROJECT_SOURCE_DIR}/benchmarks/callgrind_workloads_coarse.cpp"
                                         "${PROJECT_SOURCE_DIR}/benchmarks/callgrind_workloads_failover.cpp"
                                         "${PROJECT_SOURCE_DIR}/benchmarks/callgrind_workloads_pool.cpp"
                                         "${PROJECT_SOURCE_DIR}/benchmarks/callgrind_workloads_bulkhead.cpp"
                                         "${PROJECT_SOURCE_DIR}/benchmarks/callgrind_workloads_rate_limiter.cpp"
                                         "${PROJECT_SOURCE_DIR}/benchmarks/callgrind_workloads_sliding_window.cpp"
                                         "${PROJECT_SOURCE_DIR}/benchmarks/callgrind_workloads_adaptive.cpp")
  target_link_libraries(keel_callgrind_workloads PRIVATE keel::keel Threads::Threads)
  target_include_directories(keel_callgrind_workloads PRIVATE "${PROJECT_SOURCE_DIR}/benchmarks")
  keel_dev_target(keel_callgrind_workloads)
  add_test(NAME bench_smoke_callgrind_workloads COMMAND keel_callgrind_workloads --all 1000)
  set_tests_properties(bench_smoke_callgrind_workloads PROPERTIES LABELS bench)

  # The regression guard: instructions per call under callgrind, against the
  # budgets in benchmarks/instruction_budgets.txt. Those are counts for the
  # release preset (GCC, -O2 -DNDEBUG); other compilers or flags count
  # differently, so the guard runs only there.
  find_program(KEEL_VALGRIND valgrind)
  if(KEEL_VALGRIND AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_BUILD_TYPE STREQUAL "Release"
     AND CMAKE_CXX_FLAGS_RELEASE STREQUAL "-O2 -DNDEBUG")
    add_test(NAME instruction_budgets
             COMMAND bash "${PROJECT_SOURCE_DIR}/tools/bench-callgrind.sh" --check
                     "${PROJECT_SOURCE_DIR}/benchmarks/instruction_budgets.txt" 100000)
    set_tests_properties(instruction_budgets PROPERTIES
        LABELS bench ENVIRONMENT "KEEL_CALLGRIND_BIN=$<TARGET_FILE:keel_callgrind_workloads>")
  endif()
endif()

if(keel_benchmarks)
  find_package(benchmark QUIET)
  if(NOT benchmark_FOUND)
    message(STATUS "keel: Google Benchmark not found; benchmarks skipped "
                   "(apt-get install libbenchmark-dev)")
  else()
    # Google Benchmark >= 1.8 also accepts "0.001s"; 1.7 wants a plain number.
    set(KEEL_BENCH_SMOKE_ARGS "--benchmark_min_time=0.001"
        CACHE STRING "Arguments of the bench_smoke_* ctest tests")
    add_custom_target(keel_benchmarks)
    if(TARGET keel_callgrind_workloads)
      add_dependencies(keel_benchmarks keel_callgrind_workloads)
    endif()
    file(GLOB keel_bench_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/benchmarks/bench_*.cpp")
    list(SORT keel_bench_sources)
    foreach(src IN LISTS keel_bench_sources)
      get_filename_component(stem "${src}" NAME_WE)
      string(REGEX REPLACE "^bench_" "" name "${stem}")
      set(tgt keel_bench_${name})
      add_executable(${tgt} "${src}")
      # Each bench file ends with KEEL_BENCHMARK_MAIN() (bench_support.hpp), whose
      # main() prints every row as a ratio to the bare call of the same run.
      target_link_libraries(${tgt} PRIVATE keel::keel benchmark::benchmark)
      target_include_directories(${tgt} PRIVATE "${PROJECT_SOURCE_DIR}/benchmarks")
      keel_dev_target(${tgt})
      add_dependencies(keel_benchmarks ${tgt})
      add_test(NAME bench_smoke_${name} COMMAND ${tgt} ${KEEL_BENCH_SMOKE_ARGS})
      set_tests_properties(bench_smoke_${name} PROPERTIES LABELS bench)
    endforeach()
  endif()
endif()
