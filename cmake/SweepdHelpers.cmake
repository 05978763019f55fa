# sweepd_cc_library / sweepd_cc_test / sweepd_cc_binary: the one way targets are declared.
#
#   sweepd_cc_library(NAME common SRCS a.cc HDRS a.h DEPS absl::status PRIVATE_DEPS x)
# makes the static library `sweepd_common` with the alias `sweepd::common`. Include paths are
# rooted at the repository top (`#include "common/status.h"`).
include(CMakeParseArguments)

function(sweepd_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;HDRS;DEPS;PRIVATE_DEPS;DEFINES" ${ARGN})
  set(target sweepd_${ARG_NAME})
  add_library(${target} STATIC ${ARG_SRCS} ${ARG_HDRS})
  add_library(sweepd::${ARG_NAME} ALIAS ${target})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(${target} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  target_compile_definitions(${target} PUBLIC ${ARG_DEFINES})
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${SWEEPD_WARNINGS}>)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# sweepd_cc_test(NAME ledger_test SRCS ledger_test.cc DEPS sweepd::coordinator LABELS unit)
# Tests run with SWEEPD_FINGERPRINT_CACHE=off: the sweepd and sweep-worker processes they start
# keep no model fingerprint cache under $HOME. In a sanitizer build (SWEEPD_SANITIZE) they also
# get the sanitizers' options and suppression files (SWEEPD_SANITIZER_ENV).
function(sweepd_cc_test)
  if(NOT SWEEPD_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS;ARGS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS} ${SWEEPD_SANITIZER_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  target_compile_options(${ARG_NAME} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${SWEEPD_WARNINGS}>)
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME} ${ARG_ARGS}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set(env "SWEEPD_BUILD_DIR=${PROJECT_BINARY_DIR}" "SWEEPD_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
      "SWEEPD_FINGERPRINT_CACHE=off" ${SWEEPD_SANITIZER_ENV})
  set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "${env}")
endfunction()

# sweepd_cc_binary(NAME sweepd SRCS main.cc DEPS sweepd::coordinator)
# Tests and binaries also compile SWEEPD_SANITIZER_SRCS (cmake/SweepdSanitizers.cmake).
function(sweepd_cc_binary)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS} ${SWEEPD_SANITIZER_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS})
  target_compile_options(${ARG_NAME} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${SWEEPD_WARNINGS}>)
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
endfunction()
