#include "worker/jobs/interventions.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

ModelConfig Config(int layers, int heads) {
  ModelConfig c;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  return c;
}

TEST(CheckInterventionsTest, ErrorsNameTheSpecField) {
  const std::vector<engine::Intervention> ivs = {
      engine::Intervention::Zero(0), engine::Intervention::Reinit(7, 3),
      engine::Intervention::MaskHeads(3, {0, 2})};
  const std::vector<std::string> fields = {
      "eval.base_interventions.interventions[0].zero.layers",
      "interventions.interventions[1].reinit.layers",
      "interventions.interventions[2].mask_heads"};
  EXPECT_TRUE(CheckInterventions(ivs, fields, Config(8, 4)).ok());
  absl::Status small = CheckInterventions(ivs, fields, Config(6, 4));
  EXPECT_EQ(small.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(small.message()),
              HasSubstr("interventions.interventions[1].reinit.layers"));
  absl::Status heads = CheckInterventions(ivs, fields, Config(8, 2));
  EXPECT_THAT(std::string(heads.message()),
              HasSubstr("interventions.interventions[2].mask_heads"));
  EXPECT_THAT(std::string(heads.message()), HasSubstr("heads[1] = 2"));
  // Without field names the position is named.
  absl::Status unnamed = CheckInterventions(ivs, {}, Config(6, 4));
  EXPECT_THAT(std::string(unnamed.message()), HasSubstr("interventions[1]"));
}

}  // namespace
}  // namespace sweepd
