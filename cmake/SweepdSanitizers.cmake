# SWEEPD_SANITIZE: compile and link every target with sanitizers (docs/DURABILITY.md,
# "Sanitizers"). Values:
#   address,undefined  AddressSanitizer (+ LeakSanitizer) and UBSan; UBSan findings abort
#                      (-fno-sanitize-recover=all), so a test that trips one fails
#   thread             ThreadSanitizer
#   (empty / OFF)      none; ON means address,undefined (the old boolean option)
# Use a build directory of its own (scripts/sanitize.sh uses build-asan/ and build-tsan/).
# Runtime options and the suppression files (tests/sanitizers/*.supp, third-party issues
# only) reach every test, and every process a test starts, through SWEEPD_SANITIZER_ENV, which
# sweepd_cc_test adds to the test's environment.
set(SWEEPD_SANITIZER_ENV "")
set(SWEEPD_SANITIZER_SRCS "")
if(SWEEPD_SANITIZE STREQUAL "ON" OR SWEEPD_SANITIZE STREQUAL "TRUE")
  set(SWEEPD_SANITIZE "address,undefined")
elseif(SWEEPD_SANITIZE STREQUAL "OFF" OR SWEEPD_SANITIZE STREQUAL "FALSE")
  set(SWEEPD_SANITIZE "")
endif()
if(SWEEPD_SANITIZE)
  set(_supp ${PROJECT_SOURCE_DIR}/tests/sanitizers)
  if(SWEEPD_SANITIZE STREQUAL "address,undefined" OR SWEEPD_SANITIZE STREQUAL "address"
     OR SWEEPD_SANITIZE STREQUAL "undefined")
    set(_flags -fsanitize=${SWEEPD_SANITIZE} -fno-sanitize-recover=all
               -fno-omit-frame-pointer)
    # detect_leaks: LeakSanitizer runs at every exit. Children started by tests inherit these.
    list(APPEND SWEEPD_SANITIZER_ENV
         "ASAN_OPTIONS=detect_leaks=1:check_initialization_order=1"
         "LSAN_OPTIONS=suppressions=${_supp}/lsan.supp:print_suppressions=0"
         "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=${_supp}/ubsan.supp")
  elseif(SWEEPD_SANITIZE STREQUAL "thread")
    set(_flags -fsanitize=thread -fno-omit-frame-pointer)
    # Debian's Abseil is not built with TSan: its mutexes get their happens-before edges
    # from this file, linked into every executable (see its header comment).
    set(SWEEPD_SANITIZER_SRCS ${_supp}/absl_tsan_annotations.cc)
    list(APPEND SWEEPD_SANITIZER_ENV
         "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=${_supp}/tsan.supp")
  else()
    message(FATAL_ERROR "SWEEPD_SANITIZE='${SWEEPD_SANITIZE}': use address,undefined or thread")
  endif()
  add_compile_options(${_flags})
  add_link_options(${_flags})
  message(STATUS "sweepd: sanitizers ${SWEEPD_SANITIZE}")
endif()
