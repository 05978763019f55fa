#!/usr/bin/env bash
# Run on a Debian 12 CPU machine (with apt): downloads the Debian packages the GPU build needs
# into .deps/debs (git-ignored), so they can travel to a GPU machine that has no package
# registry. See docs/GPU.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:-$root/.deps/debs}
mkdir -p "$dest"
packages=(libabsl-dev libabsl20220623 libc-ares-dev libc-ares2 libgrpc++-dev libgrpc++1.51
  libgrpc-dev libgrpc29 libprotobuf-dev libprotobuf-lite32 libprotobuf32 libprotoc32 libre2-9
  libre2-dev libsqlite3-dev libsqlite3-0 protobuf-compiler protobuf-compiler-grpc libgtest-dev
  libgmock-dev googletest libssl-dev libssl3 zlib1g-dev zlib1g libyaml-cpp-dev libyaml-cpp0.7
  nlohmann-json3-dev libcli11-dev libsystemd-dev libsystemd0 sqlite3 libreadline8
  prometheus-cpp-dev libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprometheus-cpp-push1.0
  libcivetweb-dev libcivetweb1 civetweb libcurl4-openssl-dev libcurl4
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1)
cd "$dest"
missing=()
for p in "${packages[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get download "${missing[@]}"
fi
du -sh "$dest"
