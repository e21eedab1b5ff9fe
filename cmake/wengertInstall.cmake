# Installs the five layer libraries, their headers and a package config that exports every
# target: wengert::engine, wengert::ops, wengert::nn, wengert::io, wengert::dist and wengert::wengert (all).
include(CMakePackageConfigHelpers)

install(TARGETS wengert_engine wengert_ops wengert_nn wengert_io wengert_dist wengert EXPORT wengertTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY engine/wengert ops/wengert nn/wengert io/wengert dist/wengert include/wengert
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.hpp")
install(EXPORT wengertTargets NAMESPACE wengert:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wengert)

configure_package_config_file(cmake/wengertConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/wengertConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wengert)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/wengertConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/wengertConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/wengertConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wengert)
