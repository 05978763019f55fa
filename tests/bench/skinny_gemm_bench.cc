// skinny_gemm_bench: the decode GEMMs of a model shape (default the 31B's:
// q/k/v, o, gate_up and down of sliding and full layers, and the LM head)
// at a few row counts, through cuBLAS (cublasGemmEx, bf16 with float32
// compute: what at::mm runs) and through kernels/skinny_gemm.h with its
// automatic K splits, against a device-to-device copy as the bandwidth
// anchor of the same run. Prints per shape the median time of each and the
// weight bytes read per second (docs/KERNELS.md, "Skinny GEMM").
//   skinny_gemm_bench [--rows 1,8,32] [--iters N]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "kernels/skinny_gemm.h"
#include "tests/bench/cuda_bench_util.h"

namespace {

using sweepd::bench::Bf16Buffer;
using sweepd::bench::Check;
using sweepd::bench::CheckOp;
using sweepd::bench::TimeMs;
namespace ops = sweepd::kernels;

struct Shape {
  const char* name;
  int64_t n, k;
};

}  // namespace

int main(int argc, char** argv) {
  std::string rows_list = "1,8,32";
  int iters = 20;
  CLI::App app{"skinny_gemm_bench"};
  app.add_option("--rows", rows_list, "comma-separated row counts (<= 32)");
  app.add_option("--iters", iters, "timed runs per shape (median)");
  CLI11_PARSE(app, argc, argv);
  std::vector<int64_t> rows;
  for (absl::string_view v : absl::StrSplit(rows_list, ',')) {
    int64_t m = 0;
    if (!absl::SimpleAtoi(v, &m) || m < 1 || m > ops::kSkinnyGemmMaxRows) {
      std::fprintf(stderr, "--rows: '%s' is not in 1..%lld\n",
                   std::string(v).c_str(),
                   static_cast<long long>(ops::kSkinnyGemmMaxRows));
      return 2;
    }
    rows.push_back(m);
  }
  const std::vector<Shape> shapes = {
      {"qkv sliding", 16384, 5376}, {"o sliding", 5376, 8192},
      {"gate_up", 43008, 5376},     {"down", 5376, 21504},
      {"qkv full", 18432, 5376},    {"o full", 5376, 16384},
      {"lm_head", 262144, 5376}};
  int64_t max_w = 0, max_k = 0, max_n = 0;
  for (const Shape& s : shapes) {
    max_w = std::max(max_w, s.n * s.k);
    max_k = std::max(max_k, s.k);
    max_n = std::max(max_n, s.n);
  }
  void* w = Bf16Buffer(max_w);
  void* x = Bf16Buffer(ops::kSkinnyGemmMaxRows * max_k);
  void* y = nullptr;
  Check(cudaMalloc(&y, ops::kSkinnyGemmMaxRows * max_n * 2), "cudaMalloc y");
  void* ws = nullptr;
  Check(cudaMalloc(&ws, 32 * ops::kSkinnyGemmMaxRows * max_n * 4),
        "cudaMalloc workspace");
  int32_t* counters = nullptr;
  Check(cudaMalloc(&counters, ops::SkinnyGemmCounters(max_n) * 4),
        "cudaMalloc counters");
  Check(cudaMemset(counters, 0, ops::SkinnyGemmCounters(max_n) * 4),
        "cudaMemset counters");
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cublasCreate failed\n");
    return 1;
  }
  // The anchor: a device copy of the largest weight (read + write).
  void* copy = nullptr;
  Check(cudaMalloc(&copy, max_w * 2), "cudaMalloc copy");
  const double copy_ms = TimeMs(
      [&] {
        Check(cudaMemcpyAsync(copy, w, max_w * 2, cudaMemcpyDeviceToDevice),
              "copy");
      },
      iters);
  const double copy_gbs = 2.0 * max_w * 2 / copy_ms / 1e6;
  std::printf("device copy: %.0f GB/s (read + write)\n", copy_gbs);
  for (int64_t m : rows) {
    double sum_c = 0, sum_s = 0;
    for (const Shape& s : shapes) {
      const float alpha = 1.0f, beta = 0.0f;
      const double c_ms = TimeMs(
          [&] {
            if (cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N,
                             static_cast<int>(s.n), static_cast<int>(m),
                             static_cast<int>(s.k), &alpha, w, CUDA_R_16BF,
                             static_cast<int>(s.k), x, CUDA_R_16BF,
                             static_cast<int>(s.k), &beta, y, CUDA_R_16BF,
                             static_cast<int>(s.n), CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
              std::fprintf(stderr, "cublasGemmEx failed\n");
              std::exit(1);
            }
          },
          iters);
      ops::SkinnyGemmArgs a;
      a.m = m;
      a.n = s.n;
      a.k = s.k;
      a.x = x;
      a.ldx = s.k;
      a.w = w;
      a.ldw = s.k;
      a.y = y;
      a.ldy = s.n;
      a.splits =
          ops::SkinnyGemmSplits(m, s.n, s.k, ops::SkinnyGemmResidentBlocks(m));
      a.workspace = ws;
      a.counters = counters;
      const double s_ms = TimeMs(
          [&] { CheckOp(ops::SkinnyGemmCuda(a, nullptr), "SkinnyGemm"); },
          iters);
      const double bytes = 2.0 * s.n * s.k;
      std::printf(
          "m %2lld %-12s n %6lld k %5lld: cublas %.4f ms (%.0f GB/s), skinny "
          "%.4f ms (%.0f GB/s, splits %d): %.2fx\n",
          static_cast<long long>(m), s.name, static_cast<long long>(s.n),
          static_cast<long long>(s.k), c_ms, bytes / c_ms / 1e6, s_ms,
          bytes / s_ms / 1e6, a.splits, c_ms / s_ms);
      // The 31B step: 50 sliding and 10 full layers, one LM head.
      const std::string name = s.name;
      const double reps = name == "lm_head"                     ? 1
                          : name.find("full") != name.npos      ? 10
                          : name == "gate_up" || name == "down" ? 60
                                                                : 50;
      sum_c += reps * c_ms;
      sum_s += reps * s_ms;
    }
    std::printf(
        "m %2lld: one 31B step's GEMMs: cublas %.2f ms, skinny %.2f ms "
        "(%.2fx)\n",
        static_cast<long long>(m), sum_c, sum_s, sum_c / sum_s);
  }
  cublasDestroy(handle);
  return 0;
}
