// Greedy generation against transformers' generate() (fixtures made by
// tests/golden/make_generate_golden.py on the committed golden models): the
// engine's decode session, float32 on CPU at TP 1 and 2, produces the same
// 40 tokens — far past every fixture's sliding window.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/engine/decode.h"
#include "worker/engine/engine.h"

namespace sweepd::engine {
namespace {

std::string Fixture(const std::string& name) {
  return std::string(SWEEPD_GOLDEN_FIXTURES_DIR) + "/" + name;
}

void Check(const std::string& name, int tp) {
  std::ifstream in(Fixture(name) + "/generate.json");
  if (!in) {
    GTEST_SKIP() << Fixture(name)
                 << "/generate.json is missing: run "
                    "tests/golden/make_generate_golden.py on a machine with "
                    "transformers";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json doc = nlohmann::json::parse(ss.str());
  EngineOptions o;
  o.model_dir = Fixture(name);
  o.tp_size = tp;
  o.cpu_threads_per_rank = 1;
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok()) << e.status();
  DecodeOptions d;
  d.max_sequences = 1;
  d.max_sequence_tokens = 128;
  d.page_size = 4;
  auto session = (*e)->StartDecode(d);
  ASSERT_TRUE(session.ok()) << session.status();
  SamplingParams greedy;
  greedy.temperature = 0;
  for (const auto& c : doc["cases"]) {
    const std::vector<int32_t> prompt = c["prompt"].get<std::vector<int32_t>>();
    const std::vector<int32_t> want = c["tokens"].get<std::vector<int32_t>>();
    auto step = (*session)->AddPrompt(prompt, {greedy});
    ASSERT_TRUE(step.ok()) << step.status();
    std::vector<int32_t> got = {(*step)[0].token};
    while (got.size() < want.size()) {
      step = (*session)->Step();
      ASSERT_TRUE(step.ok()) << step.status();
      got.push_back((*step)[0].token);
    }
    (*session)->Release((*step)[0].sequence);
    EXPECT_EQ(got, want) << name << " tp " << tp;
  }
}

TEST(GoldenGenerateTest, TinyFp32Kv) {
  Check("tiny_fp32_kv", 1);
  Check("tiny_fp32_kv", 2);
}
TEST(GoldenGenerateTest, TinyBf16CheckpointInFloat32) {
  Check("tiny_bf16", 1);
  Check("tiny_bf16", 2);
}
TEST(GoldenGenerateTest, TinySharded) {
  Check("tiny_sharded", 1);
  Check("tiny_sharded", 2);
}

}  // namespace
}  // namespace sweepd::engine
