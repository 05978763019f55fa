// Skinny GEMM: y = x · wᵀ for few rows of x (a decode step's 1..32 tokens)
// against a large weight w, as a stream of w at the device's read bandwidth
// (docs/KERNELS.md, "Skinny GEMM"). cuBLAS's kernels for M <= 32 read the
// 31B shape's layer weights at 2.1–2.9 TB/s on an H100 (the GEMM tuner's
// timings, docs/GENERATION.md); this one was built to keep enough of w in
// flight to reach the copy bandwidth at every shape of the model, but
// measured slower than cuBLAS so far (docs/KERNELS.md, "Skinny GEMM"), so the
// engine uses it only on request (EngineOptions::skinny_gemm).
//
// Semantics: y[i, j] = round(Σ_k x[i, k] · w[j, k]) with float32 products
// and sums (bf16 inputs are exact in float32), rounded once to bf16, for i <
// m, j < n. The summation order is the kernel's (tensor-core k16 steps within
// a 64-wide chunk, chunks in order per K split, splits in order), so results
// may differ from cuBLAS's by float32 summation order only. The CPU
// reference sums in double.
//
// Layouts: x [m, k] at row stride ldx, w [n, k] at row stride ldw, y [m, n]
// at row stride ldy (elements). bf16 only. 1 <= m <= kSkinnyGemmMaxRows,
// k a multiple of 64, x and w 16-byte aligned with ldx, ldw multiples of 8.
// CUDA: compute capability 8.0 or newer (bf16 tensor-core mma); older
// devices get cudaErrorInvalidDevice.
//
// Work split: one block per (128 rows of w, K split); with splits > 1 every
// block writes float32 partials to `workspace` and the last block of each
// row tile to finish (an atomic count in `counters`) sums them in split
// order and writes y, then resets its count: `counters` must be zero before
// the first call and is zero again after each (so the launch can be captured
// in a CUDA graph and replayed).
//
// Ownership: all pointers are borrowed; nothing is allocated. The CPU
// reference (`...Cpu`, always built) takes host pointers (bf16 as raw
// uint16_t bits, kernels/dtype.h) and returns INVALID_ARGUMENT naming what is
// wrong; the CUDA launcher (`...Cuda`, only with SWEEPD_KERNELS_CUDA) takes
// device pointers and a cudaStream_t passed as void*, enqueues asynchronously
// and returns 0 or a cudaError_t code. Thread-safety: reentrant; concurrent
// calls must not share outputs, workspaces or counters.
#ifndef SWEEPD_KERNELS_SKINNY_GEMM_H_
#define SWEEPD_KERNELS_SKINNY_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"

namespace sweepd::kernels {

inline constexpr int64_t kSkinnyGemmMaxRows = 32;
inline constexpr int64_t kSkinnyGemmTileRows = 128;  // rows of w per block

struct SkinnyGemmArgs {
  int64_t m = 0, n = 0, k = 0;
  const void* x = nullptr;
  int64_t ldx = 0;
  const void* w = nullptr;
  int64_t ldw = 0;
  void* y = nullptr;
  int64_t ldy = 0;
  // K splits (CUDA; <= 1: none). splits > 1 needs `workspace`
  // (SkinnyGemmWorkspaceBytes) and `counters` (SkinnyGemmCounters int32,
  // zero before the first call).
  int splits = 1;
  void* workspace = nullptr;
  int32_t* counters = nullptr;
};

// Whether the kernel takes this shape (else the caller keeps its GEMM):
// m in [1, kSkinnyGemmMaxRows], k a positive multiple of 64, n >= 1.
bool SkinnyGemmSupported(int64_t m, int64_t n, int64_t k);

// K splits for a device whose multiprocessors hold `resident_blocks` of this
// kernel's blocks at once (sm_count x blocks per SM): the row tiles times the
// splits fill those slots once without exceeding them, every split keeps at
// least 4 chunks of 64, at most 32 splits; 1 when the row tiles alone fill the
// device.
int SkinnyGemmSplits(int64_t m, int64_t n, int64_t k, int resident_blocks);

// Bytes of float32 workspace (0 when splits <= 1) and int32 counters (row
// tiles) a call needs.
int64_t SkinnyGemmWorkspaceBytes(const SkinnyGemmArgs& a);
int64_t SkinnyGemmCounters(int64_t n);

absl::Status SkinnyGemmCpu(const SkinnyGemmArgs& a);

#if SWEEPD_KERNELS_CUDA
int SkinnyGemmCuda(const SkinnyGemmArgs& a, void* stream);
// Blocks of the skinny GEMM kernel for `m` rows the current device holds at
// once (multiprocessors x resident blocks per multiprocessor; cached per
// device and row-tile variant), or 0 on error.
int SkinnyGemmResidentBlocks(int64_t m);
#endif  // SWEEPD_KERNELS_CUDA

}  // namespace sweepd::kernels

#endif  // SWEEPD_KERNELS_SKINNY_GEMM_H_
