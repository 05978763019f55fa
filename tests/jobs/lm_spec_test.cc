#include "worker/jobs/lm_spec.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

TEST(LayerSelectorTest, Forms) {
  auto a = SelectLayers("all", 4, "f");
  ASSERT_TRUE(a.ok());
  EXPECT_THAT(*a, ElementsAre(0, 1, 2, 3));
  auto b = SelectLayers("3", 60, "f");
  ASSERT_TRUE(b.ok());
  EXPECT_THAT(*b, ElementsAre(3));
  auto c = SelectLayers("5, 0", 60, "f");
  ASSERT_TRUE(c.ok());
  EXPECT_THAT(*c, ElementsAre(0, 5));
  auto d = SelectLayers("10-13", 60, "f");
  ASSERT_TRUE(d.ok());
  EXPECT_THAT(*d, ElementsAre(10, 11, 12, 13));
  auto e = SelectLayers("0:10:4,2,2-3", 60, "f");
  ASSERT_TRUE(e.ok());
  EXPECT_THAT(*e, ElementsAre(0, 2, 3, 4, 8));
  auto f = SelectLayers("0:60:20", 60, "f");
  ASSERT_TRUE(f.ok());
  EXPECT_THAT(*f, ElementsAre(0, 20, 40));
}

TEST(LayerSelectorTest, ErrorsNameTheField) {
  for (const char* bad :
       {"", "60", "-1", "3-1", "a", "0:70", "0:10:0", "1,,2", "5:5"}) {
    auto r =
        SelectLayers(bad, 60, "interventions.interventions[0].skip.layers");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(),
                HasSubstr("interventions.interventions[0].skip.layers"));
  }
}

engine::ModelConfig Config(int layers, int heads) {
  engine::ModelConfig c;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  return c;
}

json Spec() {
  return {
      {"kind", "JOB_KIND_EVAL"},
      {"model", {{"path", "/m"}, {"dtype", "float32"}}},
      {"data",
       {{"dataset", {{"name", "d"}, {"path", "/data/x.txt"}, {"shards", 4}}},
        {"shard_index", 2},
        {"num_shards", 4}}},
      {"eval",
       {{"windowing", {{"context_length", 32}, {"stride", 16}}},
        {"base_interventions",
         {{"interventions", {{{"zero", {{"layers", "0"}}}}}}}}}},
      {"interventions",
       {{"interventions",
         {{{"skip", {{"layers", "2,4-5"}}}},
          {{"reinit", {{"layers", "7"}, {"seed", "18446744073709551615"}}}},
          {{"mask_heads", {{"layer", 3}, {"heads", {0, 2}}}}}}}}}};
}

TEST(LmSpecTest, ParsesEvalSpecAndConverts) {
  auto spec = ParseLmTaskSpec("eval", Spec());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model.path, "/m");
  EXPECT_EQ(spec->model.dtype, "float32");
  EXPECT_EQ(spec->data.path, "/data/x.txt");
  EXPECT_EQ(spec->data.shard_index, 2);
  EXPECT_EQ(spec->data.num_shards, 4);
  EXPECT_EQ(spec->windowing.context_length, 32);
  EXPECT_EQ(spec->windowing.stride, 16);
  ASSERT_EQ(spec->interventions.size(), 4u);
  EXPECT_EQ(spec->interventions[0].field,
            "eval.base_interventions.interventions[0]");
  auto ivs = ToEngineInterventions(spec->interventions, Config(8, 4));
  ASSERT_TRUE(ivs.ok()) << ivs.status();
  ASSERT_EQ(ivs->size(), 6u);
  using K = engine::Intervention::Kind;
  EXPECT_EQ((*ivs)[0].kind, K::kZeroLayer);
  EXPECT_EQ((*ivs)[0].layer, 0);
  EXPECT_EQ((*ivs)[1].kind, K::kSkipLayer);
  EXPECT_EQ((*ivs)[1].layer, 2);
  EXPECT_EQ((*ivs)[3].layer, 5);
  EXPECT_EQ((*ivs)[4].kind, K::kReinitLayer);
  EXPECT_EQ((*ivs)[4].seed, 18446744073709551615ull);
  EXPECT_EQ((*ivs)[5].kind, K::kMaskHeads);
  EXPECT_EQ((*ivs)[5].layer, 3);
  EXPECT_THAT((*ivs)[5].heads, ElementsAre(0, 2));
  EXPECT_EQ(engine::FirstTouchedLayer(*ivs, 8), 0);
}

TEST(LmSpecTest, ConversionErrorsNameTheField) {
  auto spec = ParseLmTaskSpec("eval", Spec());
  ASSERT_TRUE(spec.ok());
  auto small = ToEngineInterventions(spec->interventions, Config(6, 4));
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(small.status().message(),
              HasSubstr("interventions.interventions[1].reinit.layers"));
  auto heads = ToEngineInterventions(spec->interventions, Config(8, 2));
  ASSERT_FALSE(heads.ok());
  EXPECT_THAT(heads.status().message(),
              HasSubstr("interventions.interventions[2].mask_heads.heads[1]"));
  json two = Spec();
  two["interventions"]["interventions"][0]["zero"] = {{"layers", "1"}};
  auto both = ParseLmTaskSpec("eval", two);
  ASSERT_TRUE(both.ok());
  auto r = ToEngineInterventions(both->interventions, Config(8, 4));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("exactly one of"));
}

TEST(LmSpecTest, SpecErrors) {
  json no_path = Spec();
  no_path["data"]["dataset"].erase("path");
  auto a = ParseLmTaskSpec("eval", no_path);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(a.status().message(), HasSubstr("data.dataset.path"));
  json bad_shard = Spec();
  bad_shard["data"]["shard_index"] = 4;
  auto b = ParseLmTaskSpec("eval", bad_shard);
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(b.status().message(), HasSubstr("data.shard_index"));
  auto c = ParseLmTaskSpec("generate", Spec());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("'generate'"));
  json probe = Spec();
  probe["probe"] = {{"windowing", {{"bos", "sometimes"}}}};
  auto d = ParseLmTaskSpec("probe", probe);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("probe.windowing.bos"));
  // Probe ignores eval.base_interventions.
  probe["probe"] = {{"windowing", {{"bos", "off"}}}};
  auto e = ParseLmTaskSpec("probe", probe);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->interventions.size(), 3u);
  EXPECT_EQ(e->windowing.bos, BosPolicy::kOff);
}

}  // namespace
}  // namespace sweepd
