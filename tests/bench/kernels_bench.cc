// kernels_bench: times the fused LM-head logits pass at the 31B eval shape (T =
// 8192 tokens = 4 x 2048, V = 262144, bf16, softcap 30) with CUDA events
// (warm-up, median of many reps, rotating input buffers larger than L2),
// against the device's measured copy bandwidth (a large cudaMemcpy D2D,
// counting bytes read + written). Self-checking: the first rows of each variant
// are compared with the CPU reference; exits non-zero on any error or mismatch.
//
//   kernels_bench [--rows 8192] [--vocab 262144] [--reps 50] [--buffers 3]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "kernels/lm_head_pass.h"

namespace {

using namespace sweepd::kernels;

#define CHECK_CUDA(expr)                                                     \
  do {                                                                       \
    const cudaError_t e_ = (expr);                                           \
    if (e_ != cudaSuccess) {                                                 \
      std::fprintf(stderr, "FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #expr, \
                   cudaGetErrorString(e_));                                  \
      std::exit(2);                                                          \
    }                                                                        \
  } while (0)
#define CHECK_OK(expr)                                 \
  do {                                                 \
    const absl::Status s_ = (expr);                    \
    if (!s_.ok()) {                                    \
      std::fprintf(stderr, "FAIL %s: %s\n", #expr,     \
                   std::string(s_.message()).c_str()); \
      std::exit(2);                                    \
    }                                                  \
  } while (0)

uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float MedianMs(int reps, const std::function<void(int)>& body,
               cudaStream_t stream) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) body(i);  // warm-up
  CHECK_CUDA(cudaStreamSynchronize(stream));
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CHECK_CUDA(cudaEventRecord(a, stream));
    body(i);
    CHECK_CUDA(cudaEventRecord(b, stream));
    CHECK_CUDA(cudaEventSynchronize(b));
    CHECK_CUDA(cudaGetLastError());
    float t = 0;
    CHECK_CUDA(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 8192, vocab = 262144;
  int reps = 50, buffers = 3;
  CLI::App app{"kernels_bench"};
  app.add_option("--rows", rows, "rows of the logits matrix");
  app.add_option("--vocab", vocab, "vocabulary size");
  app.add_option("--reps", reps, "timed repetitions");
  app.add_option("--buffers", buffers, "rotating input buffers (defeat L2)");
  CLI11_PARSE(app, argc, argv);
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20);
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));

  const size_t n = static_cast<size_t>(rows) * vocab;
  const size_t bytes = n * 2;
  // Fill: 64 MB of random bf16 logits (N(0, 8)), tiled with a shifting offset.
  const size_t tile = std::min<size_t>(n, 32u << 20);
  std::vector<uint16_t> host(tile + 4096);
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 8.0f);
  for (auto& h : host) h = ToBf16(normal(rng));
  std::vector<uint16_t*> bufs(buffers);
  for (int b = 0; b < buffers; ++b) {
    CHECK_CUDA(cudaMalloc(&bufs[b], bytes));
    for (size_t off = 0; off < n; off += tile) {
      const size_t len = std::min(tile, n - off);
      CHECK_CUDA(cudaMemcpy(bufs[b] + off,
                            host.data() + (off / tile * 97 + b * 13) % 4096,
                            len * 2, cudaMemcpyHostToDevice));
    }
  }
  std::vector<int64_t> ids(rows);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  for (auto& id : ids) id = pick(rng);
  int64_t* d_ids;
  float *d_max, *d_sum, *d_tl, *d_lse;
  int32_t* d_cnt;
  CHECK_CUDA(cudaMalloc(&d_ids, rows * 8));
  CHECK_CUDA(cudaMemcpy(d_ids, ids.data(), rows * 8, cudaMemcpyHostToDevice));
  for (float** p : {&d_max, &d_sum, &d_tl, &d_lse})
    CHECK_CUDA(cudaMalloc(p, rows * 4));
  CHECK_CUDA(cudaMalloc(&d_cnt, rows * 4));

  // Copy bandwidth: D2D of one logits buffer into another (read + write).
  int failures = 0;
  float copy_ms = 0;
  if (buffers >= 2) {
    copy_ms = MedianMs(
        10,
        [&](int) {
          CHECK_CUDA(cudaMemcpyAsync(bufs[1], bufs[0], bytes,
                                     cudaMemcpyDeviceToDevice, stream));
        },
        stream);
    // Restore buffer 1's own contents are irrelevant for timing; it now equals
    // buffer 0.
  }
  const double copy_gbs =
      copy_ms > 0 ? 2.0 * bytes / (copy_ms * 1e-3) / 1e9 : 0.0;
  std::printf("D2D copy: %.1f MB in %.3f ms = %.0f GB/s (read + write)\n",
              bytes / 1e6, copy_ms, copy_gbs);

  LogitsShard shard{nullptr, LogitsType::kBFloat16, rows, vocab, vocab, 0,
                    30.0f};
  TargetIds tids{d_ids, TargetIdType::kInt64};
  struct Variant {
    const char* name;
    std::function<absl::Status(const LogitsShard&)> run;
  };
  const std::vector<Variant> variants = {
      {"stats+rank (TP=1, 2 launches)",
       [&](const LogitsShard& s) {
         return ShardStatsAndRankCuda(
             s, tids, {d_max, d_sum, d_tl, d_cnt, d_lse}, stream);
       }},
      {"pass1 stats+target (TP>1)",
       [&](const LogitsShard& s) {
         return ShardStatsCuda(s, tids, {d_max, d_sum, d_tl}, stream);
       }},
      {"pass2 count (TP>1)",
       [&](const LogitsShard& s) {
         return ShardCountAboveCuda(s, tids, d_tl, d_cnt, stream);
       }},
  };
  std::printf("\n%-32s %10s %10s %9s\n", "variant (bf16, softcap 30)",
              "median ms", "GB/s", "% of copy");
  for (const Variant& v : variants) {
    const float ms = MedianMs(
        reps,
        [&](int i) {
          LogitsShard s = shard;
          s.data = bufs[i % buffers];
          CHECK_OK(v.run(s));
        },
        stream);
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    std::printf("%-32s %10.3f %10.0f %8.1f%%\n", v.name, ms, gbs,
                copy_gbs > 0 ? 100.0 * gbs / copy_gbs : 0.0);

    // Self-check the first rows of the last buffer used against the CPU
    // reference.
    const int check_rows = static_cast<int>(std::min<int64_t>(rows, 4));
    const int last = (reps - 1) % buffers;
    std::vector<uint16_t> h(static_cast<size_t>(check_rows) * vocab);
    CHECK_CUDA(cudaStreamSynchronize(stream));
    CHECK_CUDA(
        cudaMemcpy(h.data(), bufs[last], h.size() * 2, cudaMemcpyDeviceToHost));
    LogitsShard hs{h.data(), LogitsType::kBFloat16, check_rows, vocab, vocab, 0,
                   30.0f};
    std::vector<float> mx(check_rows), se(check_rows), tl(check_rows),
        lse(check_rows);
    std::vector<int32_t> cnt(check_rows);
    CHECK_OK(ShardStatsAndRankCpu(
        hs, {ids.data(), TargetIdType::kInt64},
        {mx.data(), se.data(), tl.data(), cnt.data(), lse.data()}));
    std::vector<float> gmx(check_rows), gse(check_rows), gtl(check_rows);
    std::vector<int32_t> gcnt(check_rows);
    CHECK_CUDA(
        cudaMemcpy(gmx.data(), d_max, check_rows * 4, cudaMemcpyDeviceToHost));
    CHECK_CUDA(
        cudaMemcpy(gse.data(), d_sum, check_rows * 4, cudaMemcpyDeviceToHost));
    CHECK_CUDA(
        cudaMemcpy(gtl.data(), d_tl, check_rows * 4, cudaMemcpyDeviceToHost));
    CHECK_CUDA(
        cudaMemcpy(gcnt.data(), d_cnt, check_rows * 4, cudaMemcpyDeviceToHost));
    for (int t = 0; t < check_rows; ++t) {
      const double glse = gmx[t] + std::log(static_cast<double>(gse[t]));
      const bool stats_ok =
          std::abs(glse - lse[t]) < 3e-5 + 2e-6 * std::abs(lse[t]);
      const bool tl_ok = gtl[t] == tl[t];
      const bool cnt_ok = gcnt[t] == cnt[t];
      if (!stats_ok || !tl_ok || !cnt_ok) {
        ++failures;
        std::printf(
            "  MISMATCH row %d: lse %.7f vs %.7f, target %.7f vs %.7f, count "
            "%d vs %d\n",
            t, glse, lse[t], gtl[t], tl[t], gcnt[t], cnt[t]);
      }
    }
  }
  std::printf(
      "\nbytes per pass: %.1f MB of bf16 logits (outputs: %.0f KB); floor at "
      "the "
      "measured copy rate: %.3f ms\n",
      bytes / 1e6, rows * 20 / 1e3,
      copy_gbs > 0 ? bytes / (copy_gbs * 1e9) * 1e3 : 0.0);
  for (auto* b : bufs) CHECK_CUDA(cudaFree(b));
  if (failures > 0) {
    std::printf("FAIL: %d mismatching rows\n", failures);
    return 1;
  }
  std::printf("self-check: OK\n");
  return 0;
}
