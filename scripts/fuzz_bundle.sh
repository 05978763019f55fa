#!/usr/bin/env bash
# Packs the built libFuzzer targets into a self-contained folder that fuzzes on another
# machine with idle cores (the GPU box while its GPU works; docs/DURABILITY.md, "Fuzzing"):
#   DIR/bin/<target>.gz    the stripped fuzzers (clang, -fsanitize=fuzzer,address,undefined),
#                          gzip-compressed (ASan binaries are ~3-15 MB stripped, ~1/5 of that
#                          compressed); run.sh unpacks them to /tmp
#   DIR/corpus/<target>/   the seed corpora (tests/fuzz/corpus)
#   DIR/corpus-extra/<target>.tar.gz  with FUZZ_EXTRA_CORPUS=D: the corpus an earlier run
#                          grew (D/<target>/corpus/, e.g. build-fuzz/fuzz-parallel or an
#                          unpacked $OUT/fuzz), so the next run starts where that one stopped
#   DIR/lib/               shared libraries the fuzzers need that the Debian packages under
#                          .deps/debs (deploy/gpu/env.sh unpacks them) do not hold, bar glibc
#   DIR/fuzz_parallel.sh   scripts/fuzz_parallel.sh
#   DIR/run.sh             bash DIR/run.sh SECONDS [JOBS]: sources deploy/gpu/env.sh, runs
#                          every target for SECONDS with -fork=JOBS (default nproc/7), and
#                          leaves logs, crashes, new corpus (tarred) and summary.txt in
#                          $OUT/fuzz (or /tmp/sweepd-fuzz-out without $OUT)
# Usage: scripts/fuzz_bundle.sh DIR   (after scripts/fuzz.sh 0 built build-fuzz/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: scripts/fuzz_bundle.sh DIR}
build=${SWEEPD_FUZZ_BUILD_DIR:-$root/build-fuzz}
debs=${SWEEPD_DEBS:-$root/.deps/debs}
targets=(safetensors_header_fuzzer safetensors_index_fuzzer tokenizer_fuzzer
  model_config_fuzzer dataset_jsonl_fuzzer spec_loader_fuzzer rpc_fuzzer)
rm -rf "$dir/bin" "$dir/corpus" "$dir/corpus-extra" "$dir/lib"
mkdir -p "$dir/bin" "$dir/corpus" "$dir/corpus-extra" "$dir/lib"
for t in "${targets[@]}"; do
  strip -o "$dir/bin/$t" "$build/tests/fuzz/$t"
  gzip -9 -f "$dir/bin/$t"
  cp -r "$root/tests/fuzz/corpus/$t" "$dir/corpus/"
  if [[ -n "${FUZZ_EXTRA_CORPUS:-}" && -d "$FUZZ_EXTRA_CORPUS/$t/corpus" ]]; then
    tar -czf "$dir/corpus-extra/$t.tar.gz" -C "$FUZZ_EXTRA_CORPUS/$t/corpus" .
  fi
done
cp "$root/scripts/fuzz_parallel.sh" "$dir/fuzz_parallel.sh"

# Libraries: every one ldd resolves, less those some .deb under $debs ships (by file or
# symlink name) and glibc's own (the target machine's loader must match its libc).
if ls "$debs"/*.deb >/dev/null 2>&1; then
  debs_libs=$(for f in "$debs"/*.deb; do dpkg -c "$f"; done |
    grep -oE '[A-Za-z0-9_+.-]+\.so(\.[0-9]+)*' | sort -u)
else
  echo "fuzz_bundle: no .deb files in $debs: bundling every non-glibc library" >&2
  debs_libs=""
fi
glibc='^(linux-vdso|ld-linux|libc|libm|libpthread|libdl|librt|libresolv|libutil)[.-]'
for t in "${targets[@]}"; do ldd "$build/tests/fuzz/$t"; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r name path; do
    [[ $name =~ $glibc ]] && continue
    grep -qxF "$name" <<<"$debs_libs" && continue
    cp -L "$path" "$dir/lib/$name"
  done

cat >"$dir/run.sh" <<'EOF'
#!/usr/bin/env bash
# Fuzzes every sweepd libFuzzer target at once on this machine's idle cores (made by
# scripts/fuzz_bundle.sh). From the repository root:  bash .carry3/run.sh SECONDS [JOBS]
# JOBS: libFuzzer -fork per target (default nproc/7, at least 1). Results under $OUT/fuzz:
# summary.txt, <target>/log.txt, <target>/crashes/, corpus-<target>.tar.gz (new inputs).
# Exit status 1 when any target found a crash/leak/timeout/OOM input.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
seconds=${1:?usage: bash .carry3/run.sh SECONDS [JOBS]}
jobs=${2:-$(( $(nproc) / 7 > 0 ? $(nproc) / 7 : 1 ))}
# shellcheck disable=SC1091
source deploy/gpu/env.sh || exit 1
# zlib1g's library lies under lib/, not usr/lib/, of the unpacked prefix.
export LD_LIBRARY_PATH=$here/lib:$SWEEPD_PREFIX/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
bin=/tmp/sweepd-fuzz-bin
seeds=/tmp/sweepd-fuzz-seeds
work=/tmp/sweepd-fuzz-work
out=${OUT:-/tmp/sweepd-fuzz-out}/fuzz
mkdir -p "$bin" "$seeds" "$work" "$out"
# Seeds: the committed corpora plus what an earlier run grew (corpus-extra/, if bundled).
cp -r "$here"/corpus/* "$seeds/"
for f in "$here"/corpus-extra/*.tar.gz; do
  [[ -f "$f" ]] || continue
  t=$(basename "$f" .tar.gz)
  mkdir -p "$seeds/$t" && tar -xzf "$f" -C "$seeds/$t"
done
for f in "$here"/bin/*.gz; do
  t=$(basename "$f" .gz)
  gunzip -c "$f" >"$bin/$t" && chmod +x "$bin/$t"
done
# A missing library shows here rather than as 7 empty logs.
if ldd "$bin"/* | grep 'not found'; then
  echo "run.sh: libraries missing (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)" >&2
  exit 2
fi
FUZZ_BIN_DIR=$bin FUZZ_CORPUS_DIR=$seeds FUZZ_OUT=$work \
  bash "$here/fuzz_parallel.sh" "$seconds" "$jobs"
rc=$?
cp "$work/summary.txt" "$out/" 2>/dev/null
for d in "$work"/*/; do
  t=$(basename "$d")
  mkdir -p "$out/$t"
  cp "$d/log.txt" "$d/cpu.txt" "$out/$t/" 2>/dev/null
  cp -r "$d/crashes" "$out/$t/" 2>/dev/null
  tar -czf "$out/corpus-$t.tar.gz" -C "$d" corpus
done
exit "$rc"
EOF
chmod +x "$dir/run.sh" "$dir/fuzz_parallel.sh"
du -sh "$dir"
ls -la "$dir/lib"
