// GPU test of kernels/token_sampler.h (label gpu): the CUDA kernels against
// the CPU reference on the same inputs — bf16 and fp32, with and without the
// softcap (both division forms), vocab 262144 (and small vocabularies), rows
// 1..64 mixing greedy, temperature, top-k, top-p, min-p, bias and ban edits
// (seed 003's ~1,651 bans per row), a padded row stride; then a CUDA graph
// replayed twice (same bits) and with a different edit count written to
// device memory.
//
// Tokens must be equal and logprobs within 1e-5 · max(1, |logprob|). bf16
// softcap inputs whose bf16 rounding of tanh could flip with a small
// difference (4 ulp here) between the device's tanhf and the host's std::tanh
// are redrawn, so that z is the same bits on both sides.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/token_sampler.h"

namespace sweepd::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

template <typename T>
T* ToDevice(const std::vector<T>& v) {
  void* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, std::max<size_t>(16, v.size() * sizeof(T))),
            cudaSuccess);
  if (!v.empty()) {
    EXPECT_EQ(
        cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
        cudaSuccess);
  }
  return static_cast<T*>(d);
}

template <typename T>
std::vector<T> ToHost(const T* d, size_t n) {
  std::vector<T> v(n);
  EXPECT_EQ(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return v;
}

struct Problem {
  Dtype dtype = Dtype::kBFloat16;
  int64_t rows = 0, vocab = 0, stride = 0;
  float softcap = 0.0f;
  bool reciprocal = false;
  std::vector<uint8_t> logits;
  std::vector<float> temperature, top_p, min_p;
  std::vector<int32_t> top_k;
  std::vector<double> uniform;
  std::vector<int32_t> edit_row, edit_token;
  std::vector<float> edit_value;
};

// Whether the device's tanhf (within 4 ulp of std::tanh) could round to a
// different bf16 than the host.
bool Ambiguous(const Problem& p, float x) {
  if (p.dtype != Dtype::kBFloat16 || p.softcap == 0.0f) return false;
  const float a =
      RoundTo(p.dtype, p.reciprocal ? x * (1.0f / p.softcap) : x / p.softcap);
  float lo = std::tanh(a), hi = lo;
  for (int i = 0; i < 4; ++i) {
    lo = std::nextafter(lo, -kInf);
    hi = std::nextafter(hi, kInf);
  }
  return Bf16FromFloat(lo) != Bf16FromFloat(hi);
}

Problem Make(Dtype dtype, int64_t rows, int64_t vocab, float softcap,
             bool reciprocal, uint32_t seed, int64_t pad = 0) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, softcap > 0 ? 12.0f : 3.0f);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  Problem p;
  p.dtype = dtype;
  p.rows = rows;
  p.vocab = vocab;
  p.stride = vocab + pad;
  p.softcap = softcap;
  p.reciprocal = reciprocal;
  p.logits.resize(rows * p.stride * DtypeSize(dtype));
  for (int64_t i = 0; i < rows * p.stride; ++i) {
    float x = normal(rng);
    while (Ambiguous(p, RoundTo(dtype, x))) x = normal(rng);
    StoreAs(dtype, p.logits.data(), i, x);
  }
  const float temps[] = {0.0f, 1.0f, 0.7f, 1.3f};
  const int32_t ks[] = {1, 20, 50, 1000};
  const float ps[] = {0.9f, 0.5f, 0.95f, 0.0f};
  const float mps[] = {0.05f, 0.1f, 0.3f};
  for (int64_t r = 0; r < rows; ++r) {
    p.temperature.push_back(temps[r % 4]);
    p.top_k.push_back(r % 3 == 1 ? ks[rng() % 4] : 0);
    p.top_p.push_back(r % 5 == 2 || r % 7 == 3 ? ps[rng() % 4] : 1.0f);
    p.min_p.push_back(r % 6 == 5 ? mps[rng() % 3] : 0.0f);
    double u = unit(rng);
    if (r % 17 == 9) u = 1e-12;
    if (r % 19 == 10) u = 1.0 - 1e-12;
    p.uniform.push_back(u);
    // Bans (a token family) on every other row, biases on every third,
    // duplicates included.
    if (r % 2 == 0) {
      const int bans = std::min<int64_t>(1651, vocab / 2);
      for (int i = 0; i < bans; ++i) {
        p.edit_row.push_back(static_cast<int32_t>(r));
        p.edit_token.push_back(static_cast<int32_t>(rng() % vocab));
        p.edit_value.push_back(-kInf);
      }
    }
    if (r % 3 == 0) {
      for (int i = 0; i < 20; ++i) {
        const int32_t tok = static_cast<int32_t>(rng() % vocab);
        for (int d = 0; d < 1 + i % 2; ++d) {
          p.edit_row.push_back(static_cast<int32_t>(r));
          p.edit_token.push_back(tok);
          p.edit_value.push_back(static_cast<float>(d == 0 ? 8.0 : -kInf));
        }
      }
    }
  }
  // One row with everything but two tokens banned (small vocabularies only).
  if (vocab <= 4096 && rows > 1) {
    for (int32_t t = 0; t < vocab; ++t) {
      if (t == 3 || t == vocab - 1) continue;
      p.edit_row.push_back(1);
      p.edit_token.push_back(t);
      p.edit_value.push_back(-kInf);
    }
  }
  return p;
}

TokenSamplerArgs HostArgs(const Problem& p, const int32_t* count,
                          std::vector<int64_t>* token,
                          std::vector<float>* logprob) {
  token->assign(p.rows, -2);
  logprob->assign(p.rows, 0.0f);
  TokenSamplerArgs a;
  a.dtype = p.dtype;
  a.logits = p.logits.data();
  a.row_stride = p.stride;
  a.rows = p.rows;
  a.vocab = p.vocab;
  a.softcap = p.softcap;
  a.softcap_reciprocal = p.reciprocal;
  a.temperature = p.temperature.data();
  a.top_k = p.top_k.data();
  a.top_p = p.top_p.data();
  a.min_p = p.min_p.data();
  a.uniform = p.uniform.data();
  a.edit_row = p.edit_row.data();
  a.edit_token = p.edit_token.data();
  a.edit_value = p.edit_value.data();
  a.edit_count = count;
  a.edit_capacity = static_cast<int64_t>(p.edit_row.size());
  a.token = token->data();
  a.logprob = logprob->data();
  return a;
}

// Device copies of a problem's inputs and the outputs.
struct DeviceProblem {
  std::vector<void*> owned;
  TokenSamplerArgs args;
  int32_t* count = nullptr;

  explicit DeviceProblem(const Problem& p) {
    args.dtype = p.dtype;
    args.logits = Own(ToDevice(p.logits));
    args.row_stride = p.stride;
    args.rows = p.rows;
    args.vocab = p.vocab;
    args.softcap = p.softcap;
    args.softcap_reciprocal = p.reciprocal;
    args.temperature = Own(ToDevice(p.temperature));
    args.top_k = Own(ToDevice(p.top_k));
    args.top_p = Own(ToDevice(p.top_p));
    args.min_p = Own(ToDevice(p.min_p));
    args.uniform = Own(ToDevice(p.uniform));
    args.edit_row = Own(ToDevice(p.edit_row));
    args.edit_token = Own(ToDevice(p.edit_token));
    args.edit_value = Own(ToDevice(p.edit_value));
    count = Own(ToDevice(
        std::vector<int32_t>{static_cast<int32_t>(p.edit_row.size())}));
    args.edit_count = count;
    args.edit_capacity = static_cast<int64_t>(p.edit_row.size());
    void* ws = nullptr;
    EXPECT_EQ(cudaMalloc(&ws, TokenSamplerWorkspaceBytes(p.rows, p.vocab)),
              cudaSuccess);
    args.workspace = Own(ws);
    args.token = Own(ToDevice(std::vector<int64_t>(p.rows, -2)));
    args.logprob = Own(ToDevice(std::vector<float>(p.rows, 0.0f)));
  }
  ~DeviceProblem() {
    for (void* d : owned) cudaFree(d);
  }
  template <typename T>
  T* Own(T* d) {
    owned.push_back(const_cast<void*>(static_cast<const void*>(d)));
    return d;
  }
  std::vector<int64_t> Tokens() const { return ToHost(args.token, args.rows); }
  std::vector<float> Logprobs() const {
    return ToHost(args.logprob, args.rows);
  }
};

void ExpectMatchesCpu(const Problem& p, int32_t count,
                      const std::vector<int64_t>& token,
                      const std::vector<float>& logprob) {
  std::vector<int64_t> want_token;
  std::vector<float> want_lp;
  const absl::Status s =
      TokenSamplerCpu(HostArgs(p, &count, &want_token, &want_lp));
  ASSERT_TRUE(s.ok()) << s;
  int sampled = 0;
  for (int64_t r = 0; r < p.rows; ++r) {
    EXPECT_EQ(token[r], want_token[r])
        << "row " << r << " t " << p.temperature[r] << " k " << p.top_k[r]
        << " p " << p.top_p[r] << " min_p " << p.min_p[r] << " u "
        << p.uniform[r];
    if (std::isinf(want_lp[r])) {
      EXPECT_EQ(logprob[r], want_lp[r]) << "row " << r;
    } else {
      EXPECT_NEAR(logprob[r], want_lp[r],
                  1e-5 * std::max(1.0f, std::fabs(want_lp[r])))
          << "row " << r;
    }
    sampled += want_token[r] >= 0;
  }
  EXPECT_GT(sampled, 0);
}

void RunAndCompare(const Problem& p) {
  DeviceProblem d(p);
  ASSERT_EQ(TokenSamplerCuda(d.args, nullptr), 0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ExpectMatchesCpu(p, static_cast<int32_t>(p.edit_row.size()), d.Tokens(),
                   d.Logprobs());
}

TEST(TokenSamplerGpu, MatchesCpuAtFullVocab) {
  uint32_t seed = 1;
  for (Dtype dtype : {Dtype::kBFloat16, Dtype::kFloat32}) {
    for (float softcap : {0.0f, 30.0f}) {
      for (bool reciprocal : {false, true}) {
        if (softcap == 0.0f && reciprocal) continue;
        for (int64_t rows : {1, 7, 64}) {
          SCOPED_TRACE(::testing::Message()
                       << "dtype " << static_cast<int>(dtype) << " softcap "
                       << softcap << " reciprocal " << reciprocal << " rows "
                       << rows);
          RunAndCompare(Make(dtype, rows, 262144, softcap, reciprocal, seed++));
        }
      }
    }
  }
}

TEST(TokenSamplerGpu, MatchesCpuOnSmallVocabulariesAndPaddedRows) {
  uint32_t seed = 100;
  for (int64_t vocab : {1, 5, 1000, 1500, 4096}) {
    SCOPED_TRACE(::testing::Message() << "vocab " << vocab);
    RunAndCompare(Make(Dtype::kBFloat16, 24, vocab, 30.0f, true, seed++, 8));
    RunAndCompare(Make(Dtype::kFloat32, 24, vocab, 0.0f, false, seed++, 3));
  }
}

TEST(TokenSamplerGpu, GraphReplaysAreIdenticalAndReadTheEditCount) {
  const Problem p = Make(Dtype::kBFloat16, 32, 262144, 30.0f, true, 7);
  DeviceProblem d(p);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
            cudaSuccess);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal),
            cudaSuccess);
  ASSERT_EQ(TokenSamplerCuda(d.args, stream), 0);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const std::vector<int64_t> t1 = d.Tokens();
  const std::vector<float> l1 = d.Logprobs();
  ExpectMatchesCpu(p, static_cast<int32_t>(p.edit_row.size()), t1, l1);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(d.Tokens(), t1);
  EXPECT_EQ(d.Logprobs(), l1);

  // Fewer edits: only the first half of the list applies.
  const int32_t half = static_cast<int32_t>(p.edit_row.size() / 2);
  ASSERT_EQ(cudaMemcpy(d.count, &half, sizeof(half), cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ExpectMatchesCpu(p, half, d.Tokens(), d.Logprobs());
  // No edits at all.
  const int32_t zero = 0;
  ASSERT_EQ(cudaMemcpy(d.count, &zero, sizeof(zero), cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ExpectMatchesCpu(p, zero, d.Tokens(), d.Logprobs());

  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(TokenSamplerGpu, BadHostArgumentsAreInvalidValue) {
  TokenSamplerArgs a;
  EXPECT_EQ(TokenSamplerCuda(a, nullptr),
            static_cast<int>(cudaErrorInvalidValue));
}

}  // namespace
}  // namespace sweepd::kernels
