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
  set(cfg -DCMAKE_PREFIX_PATH=${work}/prefix -DCMAKE_BUILD_TYPE=Release)
  set(apps app app_engine)
else()
  # add_subdirectory: configuring proves every layer's target is there (tests/consumer's
  # CMakeLists checks them); building and running the engine-only consumer proves the include
  # paths and link lines work from a source tree. The full-library consumer is built in install
  # mode: compiling all of wengert again here took 2 minutes, the largest single item of CI.
  set(cfg -DWENGERT_SOURCE_DIR=${SOURCE_DIR} -DCMAKE_BUILD_TYPE=Release)
  set(apps app_engine)
endif()
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${work}/build" ${cfg})
run(${CMAKE_COMMAND} --build "${work}/build" -j2 --target ${apps})
foreach(a ${apps})
  run("${work}/build/${a}")
endforeach()
message(STATUS "consumer (${MODE}) built and passed")
