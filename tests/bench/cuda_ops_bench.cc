// cuda_ops_bench: times each fused engine kernel (kernels/row_norm.h,
// head_norm_rope.h, geglu.h) alone, on the 31B
// shape's tensors (4 × 2048 tokens by default), against a device-to-device
// copy of the same bytes, so the engine's phase profile (which also holds
// launch gaps) can be split into kernel time and the rest. Raw CUDA, no
// libtorch; buffers hold arbitrary bf16 values (the kernels' cost does not
// depend on them).
//   cuda_ops_bench [--tokens N] [--iters N]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "kernels/cuda_util.h"
#include "kernels/dtype.h"
#include "kernels/geglu.h"
#include "kernels/head_norm_rope.h"
#include "kernels/row_norm.h"
#include "tests/bench/cuda_bench_util.h"

namespace {

using sweepd::bench::Bf16Buffer;
using sweepd::bench::Check;
using sweepd::bench::CheckOp;
using sweepd::bench::TimeMs;
using sweepd::kernels::Dtype;
namespace ops = sweepd::kernels;

}  // namespace

int main(int argc, char** argv) {
  int64_t T = 8192;
  int iters = 20;
  const char* kUsage = "usage: cuda_ops_bench [--tokens N] [--iters N]\n";
  bool help = false;
  CLI::App app{"cuda_ops_bench"};
  app.set_help_flag();
  // A repeated flag keeps its last value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--help,-h", help);
  app.add_option("--tokens", T);
  app.add_option("--iters", iters);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "cuda_ops_bench: %s\n%s", e.what(), kUsage);
    return 2;
  }
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  // The 31B shape: hidden 5376, 32 heads, sliding layers 16 KV heads of 256,
  // full layers 4 KV heads of 512 (K = V), intermediate 21504.
  const int64_t hidden = 5376, heads = 32, inter = 21504, seq = 2048;
  const int64_t qkv_cols = heads * 256 + 2 * 16 * 256;  // sliding layer
  void* x = Bf16Buffer(T * hidden);
  void* res = Bf16Buffer(T * hidden);
  void* out = Bf16Buffer(T * hidden);
  void* out2 = Bf16Buffer(T * hidden);
  void* w = Bf16Buffer(hidden);
  void* w2 = Bf16Buffer(hidden);
  void* scalar = Bf16Buffer(1);
  void* qkv = Bf16Buffer(T * qkv_cols);
  void* q = Bf16Buffer(T * heads * 256);
  void* hw = Bf16Buffer(512);
  void* cs = Bf16Buffer(seq * 512);
  void* sn = Bf16Buffer(seq * 512);
  void* gu = Bf16Buffer(T * 2 * inter);
  void* act = Bf16Buffer(T * inter);
  void* big = Bf16Buffer(T * 2 * inter);
  std::printf("cuda_ops_bench: tokens=%lld (bf16), median of %d\n",
              static_cast<long long>(T), iters);
  auto report = [&](const char* name, double bytes, double ms) {
    std::printf("  %-34s %8.3f ms %7.0f GB/s\n", name, ms, bytes / ms / 1e6);
  };
  // Copy reference: read + write the bytes of the hidden state and of gate_up.
  const double hbytes = static_cast<double>(T) * hidden * 2;
  report("copy hidden (read+write)", 2 * hbytes,
         TimeMs(
             [&] {
               Check(cudaMemcpyAsync(out, x, hbytes, cudaMemcpyDeviceToDevice),
                     "copy");
             },
             iters));
  const double gbytes = static_cast<double>(T) * 2 * inter * 2;
  report("copy gate_up (read+write)", 2 * gbytes,
         TimeMs(
             [&] {
               Check(cudaMemcpyAsync(big, gu, gbytes, cudaMemcpyDeviceToDevice),
                     "copy");
             },
             iters));
  ops::RowNormArgs n;
  n.dtype = Dtype::kBFloat16;
  n.x = x;
  n.x_stride = hidden;
  n.rows = T;
  n.dim = hidden;
  n.weight = w;
  n.out = out;
  report(
      "RowNorm input", 2 * hbytes,
      TimeMs([&] { CheckOp(ops::RowNormCuda(n, nullptr), "RowNorm"); }, iters));
  ops::RowNormArgs n2 = n;
  n2.residual = res;
  n2.weight2 = w2;
  n2.out2 = out2;
  report("RowNorm post-attn+res+pre-ff", 4 * hbytes,
         TimeMs([&] { CheckOp(ops::RowNormCuda(n2, nullptr), "RowNorm"); },
                iters));
  ops::RowNormArgs n3 = n;
  n3.residual = res;
  n3.scalar = scalar;
  report("RowNorm post-ff+res+scalar", 3 * hbytes,
         TimeMs([&] { CheckOp(ops::RowNormCuda(n3, nullptr), "RowNorm"); },
                iters));
  ops::HeadNormRopeArgs h;
  h.dtype = Dtype::kBFloat16;
  h.x = qkv;
  h.x_stride = qkv_cols;
  h.tokens = T;
  h.seq = seq;
  h.heads = static_cast<int>(heads);
  h.head_dim = 256;
  h.weight = hw;
  h.cos = cs;
  h.sin = sn;
  h.out = q;
  const double qbytes = static_cast<double>(T) * heads * 256 * 2;
  report(
      "HeadNormRope q (32 x 256)", 2 * qbytes,
      TimeMs(
          [&] { CheckOp(ops::HeadNormRopeCuda(h, nullptr), "HeadNormRope"); },
          iters));
  ops::HeadNormRopeArgs hv = h;
  hv.x = static_cast<uint16_t*>(qkv) + heads * 256;
  hv.heads = 16;
  hv.weight = nullptr;
  hv.cos = hv.sin = nullptr;
  report(
      "HeadNormRope v (16 x 256, no rope)", qbytes,
      TimeMs(
          [&] { CheckOp(ops::HeadNormRopeCuda(hv, nullptr), "HeadNormRope"); },
          iters));
  report("Geglu (tanh)", 1.5 * gbytes,
         TimeMs(
             [&] {
               CheckOp(ops::GegluCuda(Dtype::kBFloat16, gu, T, inter, true, act,
                                      nullptr),
                       "Geglu");
             },
             iters));
  for (void* p :
       {x, res, out, out2, w, w2, scalar, qkv, q, hw, cs, sn, gu, act, big})
    cudaFree(p);
  return 0;
}
