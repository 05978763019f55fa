# Sourced by deploy/gpu/*.sh on a GPU machine: unpacks .deps/debs into a private prefix (once)
# and exports the paths the build and the binaries need (CMAKE_PREFIX_PATH, PKG_CONFIG_*,
# LD_LIBRARY_PATH, NCCL_ROOT, CUDACXX). Keeps NVLink multicast off (NCCL_NVLS_ENABLE=0).
_sweepd_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_debs=${SWEEPD_DEBS:-$_sweepd_root/.deps/debs}
export SWEEPD_PREFIX=${SWEEPD_PREFIX:-/tmp/sweepd-prefix}
if [[ ! -f "$SWEEPD_PREFIX/.unpacked" ]]; then
  if ! ls "$_debs"/*.deb >/dev/null 2>&1; then
    echo "env.sh: no .deb files in $_debs (run deploy/gpu/gather_debs.sh on a CPU machine)" >&2
    return 1
  fi
  mkdir -p "$SWEEPD_PREFIX"
  for f in "$_debs"/*.deb; do dpkg -x "$f" "$SWEEPD_PREFIX"; done
  touch "$SWEEPD_PREFIX/.unpacked"
fi
_torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
_torch_lib=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
export NCCL_ROOT=$(python3 -c 'import nvidia.nccl;print(nvidia.nccl.__path__[0])')
# The wheel ships only libnccl.so.2: give the linker a libnccl.so beside it in our prefix.
mkdir -p "$SWEEPD_PREFIX/nccl/lib"
ln -sf "$NCCL_ROOT/lib/libnccl.so.2" "$SWEEPD_PREFIX/nccl/lib/libnccl.so"
ln -sfn "$NCCL_ROOT/include" "$SWEEPD_PREFIX/nccl/include"
export NCCL_ROOT=$SWEEPD_PREFIX/nccl
_lib=$SWEEPD_PREFIX/usr/lib/x86_64-linux-gnu
export CMAKE_PREFIX_PATH="$SWEEPD_PREFIX/usr;$_torch_prefix"
export PKG_CONFIG_PATH=$_lib/pkgconfig:$SWEEPD_PREFIX/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$SWEEPD_PREFIX
export LD_LIBRARY_PATH=$_lib:$NCCL_ROOT/lib:$_torch_lib:${LD_LIBRARY_PATH:-}
export PATH=$SWEEPD_PREFIX/usr/bin:/usr/local/cuda/bin:$PATH
export CUDACXX=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
export NCCL_NVLS_ENABLE=0
