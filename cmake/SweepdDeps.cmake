# Third-party dependencies. On Debian 12 all come from apt (scripts/install_deps.sh); on the
# GPU machines from a private prefix of unpacked .debs plus the machine's PyTorch
# (deploy/gpu/build.sh), passed through CMAKE_PREFIX_PATH.
find_package(Threads REQUIRED)
find_package(absl REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(yaml-cpp REQUIRED)
# RE2 (libre2-dev, which gRPC depends on too): the regex verifier (worker/verify). gRPC's CMake
# config usually defines re2::re2 already.
if(NOT TARGET re2::re2)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
  add_library(re2::re2 ALIAS PkgConfig::RE2)
endif()
# Header-only flag parsing of the subcommand CLIs (sweepctl, sweep-worker run|tokenize,
# benches); sweepd keeps absl flags.
find_package(CLI11 CONFIG REQUIRED)
# Prometheus metrics (prometheus-cpp-dev; its Exposer serves /metrics with civetweb) and the
# dashboard's HTTP/HTTPS server and the tests' HTTP client (libcpp-httplib-dev, built with
# OpenSSL: Debian 12's civetweb cannot do TLS with OpenSSL 3).
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET GLOBAL cpp-httplib)
add_library(sweepd::httplib ALIAS PkgConfig::HTTPLIB)
if(SWEEPD_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# libtorch is linked PRIVATE by the engine and jobs only (docs/DESIGN.md: torch and protobuf
# never meet in a translation unit). TorchConfig appends to CMAKE_CXX_FLAGS; keep it local.
set(_sweepd_saved_cxx_flags "${CMAKE_CXX_FLAGS}")
find_package(Torch REQUIRED)
set(CMAKE_CXX_FLAGS "${_sweepd_saved_cxx_flags}")
add_library(sweepd_torch INTERFACE)
target_link_libraries(sweepd_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(sweepd_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
target_compile_options(sweepd_torch INTERFACE ${TORCH_CXX_FLAGS})
add_library(sweepd::torch ALIAS sweepd_torch)

if(SWEEPD_ENABLE_CUDA)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
endif()
if(SWEEPD_ENABLE_NCCL)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${NCCL_ROOT}/include /usr/local/cuda/include)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${NCCL_ROOT}/lib /usr/local/cuda/lib64)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    message(FATAL_ERROR "SWEEPD_ENABLE_NCCL=ON but nccl.h / libnccl not found (set NCCL_ROOT)")
  endif()
  add_library(sweepd_nccl INTERFACE)
  target_include_directories(sweepd_nccl SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(sweepd_nccl INTERFACE ${NCCL_LIBRARY})
  add_library(sweepd::nccl ALIAS sweepd_nccl)
endif()
