#!/usr/bin/env bash
# Prints, one a line, the Debian packages that hold the shared libraries the given ELF
# binaries link directly (their NEEDED entries, resolved by ldd, owners found by dpkg -S).
# apt pulls in the rest through the packages' Depends. The single source of the runtime
# package list: scripts/build_image.sh and deploy/container/Containerfile.cpu both call it.
#   scripts/runtime_packages.sh build/coordinator/sweepd build/worker/sweep-worker ...
# Needs readelf (binutils) and dpkg; run on the Debian machine that built the binaries.
set -euo pipefail
(($# > 0)) || { echo "usage: $0 BINARY..." >&2; exit 2; }

# dpkg records a library under the path its package ships it at; with merged /usr, ldd may
# report it under /lib or /usr/lib, either side of a symlink: try each spelling.
owner() {
  local path=$1 real candidate out
  real=$(realpath "$path")
  for candidate in "$path" "$real" "/usr${path}" "${path#/usr}" "/usr${real}" "${real#/usr}"; do
    if out=$(dpkg-query -S "$candidate" 2>/dev/null); then
      # "libfoo1:amd64: /usr/lib/..." (a diversion line would start with "diversion by").
      head -n 1 <<<"$out" | cut -d: -f1
      return 0
    fi
  done
  return 1
}

owners() {
  local status=0 bin needed resolved lib path
  for bin in "$@"; do
    [[ -f "$bin" ]] || { echo "runtime_packages: no such binary: $bin" >&2; exit 1; }
    needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    resolved=$(ldd "$bin")
    for lib in $needed; do
      path=$(awk -v lib="$lib" '$1 == lib && $2 == "=>" {print $3; exit} $1 ~ "/" lib "$" {print $1; exit}' \
        <<<"$resolved")
      if [[ -z "$path" || "$path" == "not" ]]; then
        echo "runtime_packages: $bin needs $lib, which ldd does not find" >&2
        status=1
        continue
      fi
      owner "$path" || { echo "runtime_packages: no Debian package owns $path ($lib)" >&2; status=1; }
    done
  done
  return "$status"
}

# pipefail: a library without an owner fails the whole listing.
owners "$@" | sort -u
