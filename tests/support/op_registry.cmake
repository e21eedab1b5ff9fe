# The op registry (op_registry.hpp): the one list of built-in ops that test_errors,
# test_random_graphs and the tape fuzzer iterate. Included by tests/CMakeLists.txt and by
# tests/fuzz/CMakeLists.txt (the fuzz build configures tests/fuzz without tests/).
if(NOT TARGET wengert_op_registry)
  add_library(wengert_op_registry STATIC ${CMAKE_CURRENT_LIST_DIR}/op_registry.cpp)
  target_include_directories(wengert_op_registry PUBLIC ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(wengert_op_registry PUBLIC wengert)
endif()
