# ctest fixture keel_package_install: install the build tree into a fresh prefix.
#   cmake -DKEEL_BUILD_DIR=<build> -DKEEL_PREFIX=<prefix> [-DKEEL_CONFIG=<cfg>] -P install.cmake
foreach(var KEEL_BUILD_DIR KEEL_PREFIX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install.cmake: ${var} is not set")
  endif()
endforeach()

file(REMOVE_RECURSE "${KEEL_PREFIX}")
set(config_args "")
if(KEEL_CONFIG)
  set(config_args --config "${KEEL_CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${KEEL_BUILD_DIR}" --prefix "${KEEL_PREFIX}"
                        ${config_args} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
