// Golden tests: the engine on the committed transformers fixtures
// (tests/golden/README.md says how they were made, what each tensor means and
// why each tolerance is what it is). Built twice: golden_test (label unit,
// device "cpu") and, in CUDA builds, golden_gpu_test (label gpu, device
// "cuda": SWEEPD_GOLDEN_CUDA=1), which runs the same fixtures on the engine's
// GPU path at every TP degree the machine has GPUs for.
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/engine.h"

#if SWEEPD_GOLDEN_CUDA
#include <cuda_runtime_api.h>
#endif

namespace sweepd::engine {
namespace {

// fp32 engine vs transformers fp32 (README: "Tolerances").
constexpr double kF32Abs = 1e-4;
constexpr double kBiAbs = 1e-5;
constexpr double kNormRel = 1e-4;
// Lens ranks are compared where no competitor is within this of the target
// logit: twice the logits tolerance, since both sides may be off by up to
// kF32Abs.
constexpr double kRankGap = 2 * kF32Abs;
constexpr double kMaxTiedFraction = 0.05;
// bf16 engine vs transformers bf16 / the fp32 reference of the same weights.
constexpr double kBf16LogitAbs = 0.25;
constexpr double kBf16NllAbs = 0.1;
// Above one bf16 ulp of a logit near the softcap (4 * 2^-7 ~= 0.031); 32 of the
// 40 positions of tiny_bf16 qualify (its softcap of 4 compresses the top of the
// distribution).
constexpr double kBf16ArgmaxMargin = 0.05;
constexpr double kBf16MinAgreement = 0.99;

#if SWEEPD_GOLDEN_CUDA
constexpr char kDevice[] = "cuda";
#else
constexpr char kDevice[] = "cpu";
#endif

// Largest TP degree this binary can run: any on CPU (threads), the number of
// visible GPUs on CUDA.
int MaxTp() {
#if SWEEPD_GOLDEN_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
#else
  return 1 << 20;
#endif
}

std::string FixturesDir() {
  if (const char* src = getenv("SWEEPD_SOURCE_DIR");
      src != nullptr && *src != '\0') {
    return JoinPath(src, "tests/golden/fixtures");
  }
  return SWEEPD_GOLDEN_FIXTURES_DIR;
}

std::vector<std::string> ListFixtures() {
  std::vector<std::string> names;
  absl::StatusOr<std::vector<std::string>> entries = ListDir(FixturesDir());
  if (!entries.ok()) return names;
  for (const std::string& entry : *entries) {
    const std::string path = JoinPath(FixturesDir(), entry);
    if (IsDirectory(path) &&
        PathExists(JoinPath(path, "expected.safetensors"))) {
      names.push_back(entry);
    }
  }
  return names;
}

// expected.safetensors of one fixture, read with our own reader.
class Expected {
 public:
  explicit Expected(const std::string& dir) {
    auto file = SafetensorsFile::Open(JoinPath(dir, "expected.safetensors"));
    status_ = file.status();
    if (file.ok()) file_ = std::move(file).value();
  }
  const absl::Status& status() const { return status_; }
  bool Has(const std::string& name) const {
    return file_->Find(name) != nullptr;
  }
  std::string Meta(const std::string& key) const {
    auto it = file_->metadata().find(key);
    return it == file_->metadata().end() ? std::string() : it->second;
  }
  std::vector<int64_t> Shape(const std::string& name) const {
    return View(name).shape;
  }
  std::vector<float> Floats(const std::string& name) const {
    absl::StatusOr<std::vector<float>> v = TensorToFloat(View(name));
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : std::vector<float>();
  }
  std::vector<int64_t> Ints(const std::string& name) const {
    absl::StatusOr<std::vector<int64_t>> v = TensorToInt64(View(name));
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : std::vector<int64_t>();
  }

 private:
  const TensorView& View(const std::string& name) const {
    const TensorView* t = file_->Find(name);
    if (t == nullptr) {
      // A fixture without a tensor this test reads is a broken fixture: stop
      // here.
      ADD_FAILURE() << "expected.safetensors has no tensor '" << name << "'";
      std::abort();
    }
    return *t;
  }
  absl::Status status_;
  std::unique_ptr<SafetensorsFile> file_;
};

struct Diff {
  double max_abs = 0;
  size_t at = 0;
};

Diff MaxAbsDiff(const std::vector<float>& got, const std::vector<float>& want) {
  Diff d;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(e <= d.max_abs)) {  // NaN counts as the largest difference
      d.max_abs = std::isnan(e) ? INFINITY : e;
      d.at = i;
    }
  }
  return d;
}

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want,
                 double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const Diff d = MaxAbsDiff(got, want);
  EXPECT_LE(d.max_abs, tol)
      << what << ": max |diff| at flat index " << d.at << " (got " << got[d.at]
      << ", want " << want[d.at] << ")";
  std::cout << "[golden] " << what << ": max |diff| " << d.max_abs << "\n";
}

struct Run {
  ForwardResult result;
  int num_layers = 0;
};

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = JoinPath(FixturesDir(), GetParam());
    expected_ = std::make_unique<Expected>(dir_);
    ASSERT_TRUE(expected_->status().ok()) << expected_->status();
    const std::vector<int64_t> shape = expected_->Shape("input_ids");
    ASSERT_EQ(shape.size(), 2u);
    batch_ = shape[0];
    seq_ = shape[1];
    for (int64_t id : expected_->Ints("input_ids"))
      tokens_.push_back(static_cast<int32_t>(id));
    num_layers_ = static_cast<int>(expected_->Shape("bi")[0]);
    is_bf16_ = expected_->Meta("compute_dtype") == "bfloat16";
  }

  // Runs the fixture's tokens through the engine with every capture the
  // comparisons need.
  absl::StatusOr<ForwardResult> RunEngine(DType dtype, int tp) {
    EngineOptions options;
    options.model_dir = dir_;
    options.dtype = dtype;
    options.tp_size = tp;
    options.device = kDevice;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(options);
    if (!engine.ok()) return engine.status();
    EXPECT_EQ((*engine)->config().num_hidden_layers, num_layers_);
    ForwardRequest request;
    request.tokens = tokens_;
    request.batch = batch_;
    request.seq = seq_;
    request.return_logits = true;
    request.layer_stats = true;
    for (int k = 0; k <= num_layers_; ++k) {
      request.captures.push_back(absl::StrCat("hidden_states[", k, "]"));
    }
    for (int l = 0; l < num_layers_; ++l) {
      request.captures.push_back(absl::StrCat("resid_in[", l, "]"));
      request.captures.push_back(absl::StrCat("resid_out[", l, "]"));
    }
    return (*engine)->Forward(request);
  }

  // NLL of next-token targets [B, S] from the engine -> [B, S-1] as stored in
  // the fixture.
  std::vector<float> NextTokenNll(const ForwardResult& r) {
    std::vector<float> out;
    for (int64_t b = 0; b < batch_; ++b) {
      for (int64_t t = 0; t + 1 < seq_; ++t) {
        out.push_back(r.nll[b * seq_ + t]);
        EXPECT_EQ(r.target_valid[b * seq_ + t], 1) << "b=" << b << " t=" << t;
      }
      EXPECT_EQ(r.target_valid[b * seq_ + seq_ - 1], 0)
          << "last position has no target";
    }
    return out;
  }

  const std::vector<float>& Capture(const ForwardResult& r,
                                    const std::string& name) {
    static const std::vector<float> kEmpty;
    auto it = r.captures.find(name);
    EXPECT_NE(it, r.captures.end()) << "missing capture " << name;
    return it == r.captures.end() ? kEmpty : it->second.data;
  }

  // fp32 engine on an fp32 fixture: everything within kF32Abs, probes vs the
  // numpy reference.
  void CheckFp32(int tp) {
    if (tp > MaxTp()) GTEST_SKIP() << "TP=" << tp << " needs " << tp << " GPUs";
    const std::string tag =
        absl::StrCat(GetParam(), " ", kDevice, " fp32 TP=", tp);
    absl::StatusOr<ForwardResult> r = RunEngine(DType::kFloat32, tp);
    ASSERT_TRUE(r.ok()) << tag << ": " << r.status();
    ExpectClose(r->logits.data, expected_->Floats("logits"), kF32Abs,
                tag + " logits");
    ExpectClose(NextTokenNll(*r), expected_->Floats("nll"), kF32Abs,
                tag + " nll");
    for (int k = 0; k <= num_layers_; ++k) {
      ExpectClose(Capture(*r, absl::StrCat("hidden_states[", k, "]")),
                  expected_->Floats(absl::StrCat("hidden_states.", k)), kF32Abs,
                  absl::StrCat(tag, " hidden_states[", k, "]"));
    }
    // The documented mapping: resid_in[L] = hidden_states[L]; resid_out[L] =
    // hidden_states[L+1] below the last layer; resid_out[N-1] is the pre-norm
    // output (last_layer_output).
    for (int l = 0; l < num_layers_; ++l) {
      ExpectClose(Capture(*r, absl::StrCat("resid_in[", l, "]")),
                  expected_->Floats(absl::StrCat("hidden_states.", l)), kF32Abs,
                  absl::StrCat(tag, " resid_in[", l, "]"));
      const std::string want = l + 1 < num_layers_
                                   ? absl::StrCat("hidden_states.", l + 1)
                                   : std::string("last_layer_output");
      ExpectClose(Capture(*r, absl::StrCat("resid_out[", l, "]")),
                  expected_->Floats(want), kF32Abs,
                  absl::StrCat(tag, " resid_out[", l, "]"));
    }
    CheckProbes(*r, tag);
  }

  void CheckProbes(const ForwardResult& r, const std::string& tag) {
    ASSERT_EQ(static_cast<int>(r.layer_stats.size()), num_layers_) << tag;
    const std::vector<float> bi = expected_->Floats("bi");
    const std::vector<float> norm = expected_->Floats("resid_norm");
    const std::vector<int64_t> rank = expected_->Ints("lens_rank");
    const std::vector<float> gap = expected_->Floats("lens_gap");
    const int64_t per_layer = batch_ * seq_;
    int64_t compared = 0, tied = 0, rank_zero = 0;
    for (int l = 0; l < num_layers_; ++l) {
      const LayerStats& s = r.layer_stats[l];
      ASSERT_EQ(static_cast<int64_t>(s.block_influence.size()), per_layer)
          << tag;
      ASSERT_EQ(static_cast<int64_t>(s.resid_out_norm.size()), per_layer)
          << tag;
      ASSERT_EQ(static_cast<int64_t>(s.target_rank.size()), per_layer) << tag;
      for (int64_t i = 0; i < per_layer; ++i) {
        const int64_t e = l * per_layer + i;
        EXPECT_NEAR(s.block_influence[i], bi[e], kBiAbs)
            << tag << " bi layer " << l << " i " << i;
        EXPECT_NEAR(s.resid_out_norm[i], norm[e], kNormRel * norm[e])
            << tag << " resid_norm layer " << l << " i " << i;
        if (rank[e] < 0) {
          EXPECT_EQ(s.target_rank[i], -1)
              << tag << " layer " << l << " i " << i;
        } else if (gap[e] > kRankGap) {
          EXPECT_EQ(s.target_rank[i], rank[e])
              << tag << " lens rank layer " << l << " i " << i;
          ++compared;
          if (rank[e] == 0) ++rank_zero;
        } else {
          ++tied;
        }
      }
    }
    std::cout << "[golden] " << tag << ": lens ranks compared " << compared
              << ", of them rank 0 " << rank_zero << ", skipped as ties "
              << tied << "\n";
    EXPECT_GT(rank_zero, 0) << tag << ": the fixture should exercise rank 0";
    EXPECT_LE(tied, kMaxTiedFraction * (compared + tied)) << tag;
  }

  std::string dir_;
  std::unique_ptr<Expected> expected_;
  int64_t batch_ = 0, seq_ = 0;
  int num_layers_ = 0;
  bool is_bf16_ = false;
  std::vector<int32_t> tokens_;
};

TEST_P(GoldenTest, Fp32Tp1) {
  if (is_bf16_) GTEST_SKIP() << "bf16 fixture: see Bf16CheckpointInFp32";
  CheckFp32(1);
}

TEST_P(GoldenTest, Fp32Tp2) {
  if (is_bf16_) GTEST_SKIP() << "bf16 fixture: see Bf16CheckpointInFp32";
  CheckFp32(2);
}

TEST_P(GoldenTest, Fp32Tp4) {
  if (is_bf16_) GTEST_SKIP() << "bf16 fixture: see Bf16CheckpointInFp32";
  CheckFp32(4);
}

// A bf16 checkpoint computed in fp32 equals transformers' fp32 run of the same
// weights.
TEST_P(GoldenTest, Bf16CheckpointInFp32) {
  if (!is_bf16_) GTEST_SKIP() << "fp32 fixture";
  for (int tp : {1, 2}) {
    if (tp > MaxTp()) continue;
    const std::string tag =
        absl::StrCat(GetParam(), " ", kDevice, " fp32-compute TP=", tp);
    absl::StatusOr<ForwardResult> r = RunEngine(DType::kFloat32, tp);
    ASSERT_TRUE(r.ok()) << tag << ": " << r.status();
    ExpectClose(r->logits.data, expected_->Floats("logits_f32compute"), kF32Abs,
                tag + " logits");
    ExpectClose(NextTokenNll(*r), expected_->Floats("nll_f32compute"), kF32Abs,
                tag + " nll");
  }
}

// bf16 compute: documented tolerance against transformers' bf16 run, and argmax
// agreement with the fp32 reference wherever its top-2 margin is above bf16
// rounding noise.
TEST_P(GoldenTest, Bf16Compute) {
  if (!is_bf16_) GTEST_SKIP() << "fp32 fixture";
  const std::vector<float> want = expected_->Floats("logits");
  const std::vector<float> ref = expected_->Floats("logits_f32compute");
  const int64_t vocab = expected_->Shape("logits")[2];
  for (int tp : {1, 2}) {
    if (tp > MaxTp()) continue;
    const std::string tag =
        absl::StrCat(GetParam(), " ", kDevice, " bf16 TP=", tp);
    absl::StatusOr<ForwardResult> r = RunEngine(DType::kBFloat16, tp);
    ASSERT_TRUE(r.ok()) << tag << ": " << r.status();
    ExpectClose(r->logits.data, want, kBf16LogitAbs, tag + " logits");
    ExpectClose(NextTokenNll(*r), expected_->Floats("nll"), kBf16NllAbs,
                tag + " nll");
    int64_t considered = 0, agree = 0, all_agree = 0;
    const int64_t positions = batch_ * seq_;
    for (int64_t p = 0; p < positions; ++p) {
      const float* g = r->logits.data.data() + p * vocab;
      const float* f = ref.data() + p * vocab;
      const int64_t ga = std::max_element(g, g + vocab) - g;
      const int64_t fa = std::max_element(f, f + vocab) - f;
      float second = -INFINITY;
      for (int64_t v = 0; v < vocab; ++v) {
        if (v != fa) second = std::max(second, f[v]);
      }
      if (ga == fa) ++all_agree;
      if (f[fa] - second > kBf16ArgmaxMargin) {
        ++considered;
        if (ga == fa) ++agree;
      }
    }
    std::cout << "[golden] " << tag << ": argmax agreement with fp32 "
              << all_agree << "/" << positions << " overall, " << agree << "/"
              << considered << " where the fp32 top-2 margin > "
              << kBf16ArgmaxMargin << "\n";
    ASSERT_GT(considered, positions / 2)
        << tag << ": too few decisive positions to judge";
    EXPECT_GE(static_cast<double>(agree), kBf16MinAgreement * considered)
        << tag;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest,
                         ::testing::ValuesIn(ListFixtures()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GoldenTest);

#if SWEEPD_GOLDEN_CUDA
TEST(GoldenGpuTest, HasGpu) {
  ASSERT_GE(MaxTp(), 1) << "golden_gpu_test needs a CUDA device";
}
#endif

TEST(GoldenFixturesTest, FixturesPresent) {
  if (!IsDirectory(FixturesDir())) {
    GTEST_SKIP()
        << "no fixtures directory at " << FixturesDir()
        << " (python3 tests/golden/make_golden.py --out tests/golden/fixtures)";
  }
  const std::vector<std::string> names = ListFixtures();
  EXPECT_GE(names.size(), 3u)
      << "expected at least three fixtures in " << FixturesDir();
  bool any_bf16 = false, any_sharded = false;
  for (const std::string& name : names) {
    Expected e(JoinPath(FixturesDir(), name));
    ASSERT_TRUE(e.status().ok()) << e.status();
    any_bf16 |= e.Meta("compute_dtype") == "bfloat16";
    any_sharded |= e.Meta("sharded") == "true";
    // The checkpoint itself opens and validates with our reader.
    absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt =
        Checkpoint::Open(JoinPath(FixturesDir(), name));
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    const std::vector<float> scalars = e.Floats("layer_scalar");
    for (size_t l = 0; l < scalars.size(); ++l) {
      absl::StatusOr<const TensorView*> t =
          (*ckpt)->Get(absl::StrCat("model.layers.", l, ".layer_scalar"));
      ASSERT_TRUE(t.ok()) << t.status();
      absl::StatusOr<std::vector<float>> v = TensorToFloat(**t);
      ASSERT_TRUE(v.ok());
      EXPECT_EQ((*v)[0], scalars[l]) << name << " layer " << l;
      EXPECT_NE(scalars[l], 1.0f) << name << " layer_scalar must be non-unit";
    }
  }
  EXPECT_TRUE(any_bf16);
  EXPECT_TRUE(any_sharded);
}

}  // namespace
}  // namespace sweepd::engine
