# ctest driver: builds tests/consumer against wengert and runs it.
#   MODE=install: `cmake --install` the build tree BUILD_DIR into a fresh prefix, then
#                 find_package(wengert) from there.
#   MODE=subdir:  add_subdirectory(SOURCE_DIR) from the consumer project.
set(work "${WORK_DIR}/consumer-${MODE}")
file(REMOVE_RECURSE "${work}")
file(MAKE_DIRECTORY "${work}")

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
endfunction()

if(MODE STREQUAL "install")
  run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${work}/prefix")
  set(cfg -DCMAKE_PREFIX_PATH=${work}/prefix)
else()
  set(cfg -DWENGERT_SOURCE_DIR=${SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${work}/build" -DCMAKE_BUILD_TYPE=Release ${cfg})
run(${CMAKE_COMMAND} --build "${work}/build" -j2)
run("${work}/build/app")
run("${work}/build/app_engine")
message(STATUS "consumer (${MODE}) built and passed")
