#!/usr/bin/env bash
# Installs the Debian 12 packages sweepd needs, skipping those already installed. Idempotent.
#   scripts/install_deps.sh          build + run dependencies (demo)
#   scripts/install_deps.sh --test   also what the test suite needs (node/npm, chromium, clang)
set -euo pipefail

packages=(build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libsqlite3-dev sqlite3 libre2-dev libgtest-dev libgmock-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libtorch-dev libssl-dev prometheus-cpp-dev libcivetweb-dev libcpp-httplib-dev)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(chromium)
  # promtool (the metrics test checks both /metrics expositions with it).
  packages+=(prometheus)
  # The Python client (python/) and its tests: stubs generated with protoc +
  # grpc_python_plugin (above), installed with pip -e into a venv over Debian's packages
  # (python/tests/run_pytest.sh).
  packages+=(python3 python3-venv python3-pip python3-setuptools python3-grpcio python3-protobuf
    python3-pandas python3-yaml python3-tqdm python3-pytest python3-matplotlib)
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
  # clang: the -Wthread-safety build of the coordinator in scripts/test.sh.
  command -v clang++ >/dev/null 2>&1 || packages+=(clang)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
