# Install rules and the CMake package for keel (find_package(keel CONFIG)).
include(CMakePackageConfigHelpers)

set(KEEL_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/keel"
    CACHE STRING "Where keel's CMake package files are installed, relative to the prefix")
mark_as_advanced(KEEL_INSTALL_CMAKEDIR)

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        COMPONENT keel_Development)

install(TARGETS keel_keel EXPORT keelTargets INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

install(
  EXPORT keelTargets
  NAMESPACE keel::
  DESTINATION "${KEEL_INSTALL_CMAKEDIR}"
  COMPONENT keel_Development)

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/keelConfig.cmake.in" "${PROJECT_BINARY_DIR}/keelConfig.cmake"
  INSTALL_DESTINATION "${KEEL_INSTALL_CMAKEDIR}")

# A header-only library fits any architecture: ARCH_INDEPENDENT.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/keelConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)

install(FILES "${PROJECT_BINARY_DIR}/keelConfig.cmake"
              "${PROJECT_BINARY_DIR}/keelConfigVersion.cmake"
        DESTINATION "${KEEL_INSTALL_CMAKEDIR}" COMPONENT keel_Development)

# Build-tree package: -Dkeel_DIR=<build dir> works without installing (as in fmt).
export(EXPORT keelTargets NAMESPACE keel:: FILE "${PROJECT_BINARY_DIR}/keelTargets.cmake")
