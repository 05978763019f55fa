#!/usr/bin/env bash
# Runs the Python client's pytest suite (python/tests) against a live sweepd and workers
# started by its fixtures from $SWEEPD_BUILD_DIR. Makes a venv with Debian's packages
# (--system-site-packages: python3-grpcio, -protobuf, -pandas, -yaml, -tqdm,
# -pytest, -matplotlib) in $SWEEPD_BUILD_DIR/python-venv and installs the package into it
# with `pip install -e python/` (offline: --no-build-isolation, dependencies already there).
# ctest runs it as python_client_test (label integration).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${SWEEPD_BUILD_DIR:-$root/build}
export SWEEPD_BUILD_DIR=$build SWEEPD_SOURCE_DIR=$root
venv=$build/python-venv
# Debian's interpreter: the packages above are installed for it, not for another python3.
python=/usr/bin/python3
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv --system-site-packages --without-pip "$venv"
fi
"$venv/bin/python" -m pip install --quiet --no-build-isolation --disable-pip-version-check \
  -e "$root/python"
cd "$root/python"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
