#include "client/spec_loader.h"

#include <stdlib.h>

#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "coordinator/planner.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;
using ::sweepd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kYaml[] = R"yaml(
name: layer-drop
model:
  path: gemma-tiny
  dtype: float32
datasets:
  - name: wiki
    path: wiki.txt
    shards: 4
  - name: probe
    path: probe.jsonl
eval:
  windowing:
    context_length: 256
    bos: "off"
grid:
  axes:
    - layers:
        op: skip
        select: all
        block: 2
        include_baseline: true
    - param:
        name: temperature
        values: [0.5, 1, "hot", true]
    - seeds:
        range: {start: 0, stop: 3}
    - interventions:
        items:
          - interventions: [{zero: {layers: "3"}}]
          - interventions:
              - skip: 5
              - mask_heads: {layer: 2, heads: [0, 1]}
policy:
  max_attempts: 5
  lease_seconds: 120
labels:
  owner: "ana"
  ticket: "123"
)yaml";

constexpr char kJson[] = R"json({
  "name": "layer-drop",
  "model": {"path": "gemma-tiny", "dtype": "float32"},
  "datasets": [{"name": "wiki", "path": "wiki.txt", "shards": 4},
               {"name": "probe", "path": "probe.jsonl"}],
  "eval": {"windowing": {"contextLength": 256, "bos": "off"}},
  "grid": {"axes": [
    {"layers": {"op": "skip", "select": "all", "block": 2, "includeBaseline": true}},
    {"param": {"name": "temperature", "values": [{"double_value": 0.5}, {"int_value": 1},
                                                 {"string_value": "hot"}, {"bool_value": true}]}},
    {"seeds": {"range": {"start": 0, "stop": 3}}},
    {"interventions": {"items": [
      {"interventions": [{"zero": {"layers": "3"}}]},
      {"interventions": [{"skip": {"layers": "5"}}, {"mask_heads": {"layer": 2, "heads": [0, 1]}}]}
    ]}}
  ]},
  "policy": {"maxAttempts": 5, "lease_seconds": 120},
  "labels": {"owner": "ana", "ticket": "123"}
})json";

TEST(SpecLoaderTest, YamlAndJsonGiveTheSameMessage) {
  auto from_yaml = ParseSweepSpec(kYaml, SpecFormat::kYaml, "a.yaml");
  ASSERT_TRUE(from_yaml.ok()) << from_yaml.status();
  auto from_json = ParseSweepSpec(kJson, SpecFormat::kJson, "a.json");
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  std::string diff;
  google::protobuf::util::MessageDifferencer differ;
  differ.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differ.Compare(*from_yaml, *from_json)) << diff;

  const v1::SweepSpec& s = *from_yaml;
  EXPECT_EQ(s.name(), "layer-drop");
  EXPECT_EQ(s.datasets(0).shards(), 4);
  EXPECT_EQ(s.eval().windowing().bos(), "off");
  EXPECT_TRUE(s.grid().axes(0).layers().include_baseline());
  const auto& values = s.grid().axes(1).param().values();
  ASSERT_EQ(values.size(), 4);
  EXPECT_DOUBLE_EQ(values[0].double_value(), 0.5);
  EXPECT_EQ(values[1].int_value(), 1);
  EXPECT_EQ(values[2].string_value(), "hot");
  EXPECT_TRUE(values[3].bool_value());
  EXPECT_EQ(s.grid()
                .axes(3)
                .interventions()
                .items(1)
                .interventions(0)
                .skip()
                .layers(),
            "5");
  EXPECT_EQ(s.policy().max_attempts(), 5);
  EXPECT_EQ(s.labels().at("ticket"), "123");

  // kAuto sniffs the format.
  auto sniffed = ParseSweepSpec(kJson, SpecFormat::kAuto, "a");
  ASSERT_TRUE(sniffed.ok()) << sniffed.status();
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(*sniffed, *from_json));
}

TEST(SpecLoaderTest, QuotedScalarsStayStrings) {
  auto spec = ParseSweepSpec(
      "name: \"42\"\nsynthetic: {tasks: 3}\nlabels: {flag: \"true\", n: "
      "\"7\"}\n",
      SpecFormat::kYaml);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "42");
  EXPECT_EQ(spec->labels().at("flag"), "true");
  // Unquoted true is a bool and does not fit a string field.
  EXPECT_THAT(
      ParseSweepSpec("name: x\nlabels: {flag: true}\n", SpecFormat::kYaml,
                     "l.yaml"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("labels[flag]: expected a string, got boolean"),
                     HasSubstr("l.yaml"))));
}

TEST(SpecLoaderTest, MisspelledFieldIsRejectedWithPathAndSuggestion) {
  const std::string text =
      "name: x\n"
      "eval: {}\n"
      "grid:\n"
      "  axes:\n"
      "    - seeds: {values: [1]}\n"
      "    - layers:\n"
      "        op: skip\n"
      "        selct: all\n";
  EXPECT_THAT(
      ParseSweepSpec(text, SpecFormat::kYaml, "s.yaml"),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          AllOf(HasSubstr("unknown field 'selct' at grid.axes[1].layers"),
                HasSubstr("did you mean 'select'?"), HasSubstr("s.yaml:8:9"))));
  EXPECT_THAT(ParseSweepSpec("nmae: x\n", SpecFormat::kYaml),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("unknown field 'nmae' at top level"),
                             HasSubstr("did you mean 'name'?"))));
  // Far from every field: list the known ones instead of guessing.
  EXPECT_THAT(
      ParseSweepSpec("{\"name\": \"x\", \"policy\": {\"zzzzzzzz\": 1}}",
                     SpecFormat::kJson),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("unknown field 'zzzzzzzz' at policy"),
                     HasSubstr("known fields: priority, max_attempts"))));
}

TEST(SpecLoaderTest, NestedPathsInRepeatedFields) {
  EXPECT_THAT(ParseSweepSpec("name: x\ndatasets:\n  - {name: a, path: a}\n  - "
                             "{name: b, shard: 2}\n",
                             SpecFormat::kYaml),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("unknown field 'shard' at datasets[1]"),
                             HasSubstr("did you mean 'shards'?"))));
  const std::string deep =
      R"({"name": "x", "grid": {"axes": [{"interventions": {"items": [{}, )"
      R"({"interventions": [{"skip": {"layer": "3"}}]}]}}]}})";
  EXPECT_THAT(
      ParseSweepSpec(deep, SpecFormat::kJson),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          AllOf(
              HasSubstr(
                  "unknown field 'layer' at "
                  "grid.axes[0].interventions.items[1].interventions[0].skip"),
              HasSubstr("did you mean 'layers'?"))));
}

TEST(SpecLoaderTest, TypeMismatchesNameTheField) {
  EXPECT_THAT(
      ParseSweepSpec("name: x\ndatasets: [{name: a, shards: many}]\n",
                     SpecFormat::kYaml),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("datasets[0].shards: expected an integer, got string")));
  EXPECT_THAT(
      ParseSweepSpec("name: x\ndatasets: {name: a}\n", SpecFormat::kYaml),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("datasets: expected a list")));
  EXPECT_THAT(ParseSweepSpec("name: x\nsynthetic: {failure_rate: high}\n",
                             SpecFormat::kYaml),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("synthetic.failure_rate: expected a number")));
  EXPECT_THAT(
      ParseSweepSpec("name: x\nsynthetic: {tasks: 2.5}\n", SpecFormat::kYaml),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("synthetic.tasks: expected an integer")));
  EXPECT_THAT(
      ParseSweepSpec("name: x\nsynthetic: {tasks: 3000000000}\n",
                     SpecFormat::kYaml),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("synthetic.tasks: 3000000000 is out of range")));
  EXPECT_THAT(
      ParseSweepSpec("name: x\ngrid: {axes: [{layers: {seed: -1}}]}\n",
                     SpecFormat::kYaml),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr(
              "grid.axes[0].layers.seed: expected a non-negative integer")));
  EXPECT_THAT(ParseSweepSpec("- a\n- b\n", SpecFormat::kYaml),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be a mapping")));
}

TEST(SpecLoaderTest, OneofConflictsAndDuplicateSpellings) {
  EXPECT_THAT(
      ParseSweepSpec("name: x\neval: {}\nsynthetic: {tasks: 1}\n",
                     SpecFormat::kYaml),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("both 'eval' and 'synthetic' are set"),
                     HasSubstr("top level takes only one of eval, probe"))));
  EXPECT_THAT(
      ParseSweepSpec(
          "name: x\ngrid: {axes: [{seeds: {values: [1]}, param: {name: t}}]}\n",
          SpecFormat::kYaml),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("both 'param' and 'seeds' are set")));
  EXPECT_THAT(
      ParseSweepSpec("{\"name\": \"x\", \"policy\": {\"max_attempts\": 1, "
                     "\"maxAttempts\": 2}}",
                     SpecFormat::kJson),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("policy.max"), HasSubstr("field given twice"),
                     HasSubstr("'max_attempts'"), HasSubstr("'maxAttempts'"))));
}

TEST(SpecLoaderTest, SyntaxErrorsCarryLineAndColumn) {
  EXPECT_THAT(ParseSweepSpec("name: x\ngrid: [unclosed\n", SpecFormat::kYaml,
                             "bad.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("bad.yaml: YAML error at line"),
                             HasSubstr("column"))));
  EXPECT_THAT(ParseSweepSpec("name: a\nname: b\n", SpecFormat::kYaml),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("line 2, column 1"),
                             HasSubstr("duplicate key 'name'"))));
  EXPECT_THAT(ParseSweepSpec("{\n  \"name\": \"x\",\n  oops\n}",
                             SpecFormat::kJson, "b.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("b.json: JSON error at line 3")));
  EXPECT_THAT(
      ParseSweepSpec("", SpecFormat::kYaml),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty spec")));
}

// Found by tests/fuzz/spec_loader_fuzzer: a JSON number beyond double's range
// escaped as an uncaught nlohmann out_of_range (abort).
TEST(SpecLoaderTest, JsonNumberOverflowIsRefused) {
  EXPECT_THAT(ParseSweepSpec("{\"name\": 6e6666}", SpecFormat::kJson, "o.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("o.json: JSON error"),
                             HasSubstr("number overflow"))));
}

// Found by tests/fuzz/spec_loader_fuzzer: a NUL byte in a YAML plain scalar
// came back from yaml-cpp as a string that nlohmann could not dump() into the
// type-mismatch message (uncaught type_error, abort).
TEST(SpecLoaderTest, NulByteInAYamlScalarIsRefused) {
  const std::string text("{\n \"grid\":\x01\x00NULL~~~~~@~@~~~~~}", 30);
  for (SpecFormat format : {SpecFormat::kYaml, SpecFormat::kJson}) {
    EXPECT_THAT(
        ParseSweepSpec(text, format, "nul.yaml"),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nul.yaml")));
  }
}

// Defect: invalid UTF-8 in a YAML string made sweepctl abort (an uncaught
// nlohmann type_error, exit 134). It is refused with where the byte is.
TEST(SpecLoaderTest, InvalidUtf8IsRefusedWithItsPlace) {
  EXPECT_THAT(ParseSweepSpec("name: caf\xe9\nsynthetic: {tasks: 1}\n",
                             SpecFormat::kYaml, "latin1.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("latin1.yaml is not valid UTF-8"),
                             HasSubstr("byte 0xe9 at line 1, column 10"))));
  EXPECT_THAT(
      ParseSweepSpec("{\"name\": \"\xff\"}", SpecFormat::kJson, "b.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("b.json is not valid UTF-8")));
  // Labels carry any valid UTF-8.
  auto spec = ParseSweepSpec(
      "name: caf\xc3\xa9\nlabels: {note: \"\xe2\x82\xac\"}\n"
      "synthetic: {tasks: 1}\n",
      SpecFormat::kYaml);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "caf\xc3\xa9");
}

TEST(SpecLoaderTest, FilesByExtension) {
  std::string dir = ::testing::TempDir() + "/spec_loader_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  {
    std::ofstream(dir + "/s.yml") << kYaml;
    std::ofstream(dir + "/s.json") << kJson;
  }
  auto a = LoadSweepSpecFile(dir + "/s.yml");
  auto b = LoadSweepSpecFile(dir + "/s.json");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*a, *b));
  EXPECT_THAT(
      LoadSweepSpecFile(dir + "/missing.yaml"),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir + "/missing.yaml")));
}

// The shipped example sweeps parse and plan to the documented task counts.
TEST(SpecLoaderTest, ShippedSyntheticSweepsPlan) {
  const char* src = getenv("SWEEPD_SOURCE_DIR");
  const std::string root = src != nullptr ? src : ".";
  auto big = LoadSweepSpecFile(root + "/configs/sweeps/synthetic.yaml");
  ASSERT_TRUE(big.ok()) << big.status();
  auto plan = PlanSweep(*big, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tasks.size(), 1000u);

  auto small = LoadSweepSpecFile(root + "/configs/sweeps/synthetic_small.yaml");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->synthetic().min_ms(), 20);
  EXPECT_EQ(small->synthetic().max_ms(), 80);
  plan = PlanSweep(*small, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tasks.size(), 200u);
}

// The generation examples load with their generate / canary fields (planning
// them needs a model: tests/integration/generation_examples_test runs them).
TEST(SpecLoaderTest, ShippedGenerationSweepsLoad) {
  const char* src = getenv("SWEEPD_SOURCE_DIR");
  const std::string root = src != nullptr ? src : ".";
  auto bon = LoadSweepSpecFile(root + "/configs/sweeps/best_of_n.yaml");
  ASSERT_TRUE(bon.ok()) << bon.status();
  EXPECT_EQ(bon->generate().samples(), 10);
  EXPECT_DOUBLE_EQ(bon->generate().temperature(), 1.0);
  EXPECT_THAT(bon->generate().ban_strings(), ::testing::ElementsAre("\""));
  EXPECT_THAT(bon->generate().stop(), ::testing::ElementsAre("\n"));
  EXPECT_EQ(bon->generate().verifier_spec().kind(), "command");
  EXPECT_THAT(bon->generate().verifier_spec().command(),
              ::testing::ElementsAre("python3",
                                     "examples/verifiers/numeric_verifier.py",
                                     "--tolerance", "1e-6"));
  ASSERT_EQ(bon->stages_size(), 2);
  EXPECT_EQ(bon->stages(0).name(), "ban-both");
  EXPECT_THAT(bon->stages(0).generate().ban_strings(),
              ::testing::ElementsAre("\"", "'"));
  EXPECT_EQ(bon->stages(0).generate().verifier_spec().command_size(), 4);
  EXPECT_EQ(bon->stages(1).generate().temperature(), 0.0);
  EXPECT_EQ(bon->stages(1).generate().verifier_spec().kind(), "command");

  auto degeneration =
      LoadSweepSpecFile(root + "/configs/sweeps/degeneration_samples.yaml");
  ASSERT_TRUE(degeneration.ok()) << degeneration.status();
  EXPECT_THAT(degeneration->generate().prompts(),
              ::testing::ElementsAre("Tell a story", "Factor x^2+3x+2"));
  EXPECT_TRUE(degeneration->generate().chat());
  ASSERT_EQ(degeneration->grid().axes_size(), 1);
  EXPECT_EQ(degeneration->grid().axes(0).interventions().items_size(), 10);
  ASSERT_EQ(degeneration->stages_size(), 1);
  EXPECT_EQ(degeneration->stages(0).grid().axes(0).interventions().items_size(),
            10);
  EXPECT_EQ(degeneration->stages(0).datasets_size(), 2);

  auto canary = LoadSweepSpecFile(root + "/configs/sweeps/canary.yaml");
  ASSERT_TRUE(canary.ok()) << canary.status();
  EXPECT_EQ(canary->canary().cases_size(), 4);
  EXPECT_THAT(canary->canary().cases(0).expect(),
              ::testing::ElementsAre("Paris"));
  const auto& bos = canary->grid().axes(0).param();
  EXPECT_EQ(bos.name(), "bos");
  ASSERT_EQ(bos.values_size(), 2);
  EXPECT_EQ(bos.values(0).string_value(), "on");
  EXPECT_EQ(bos.values(1).string_value(), "off");
}

}  // namespace
}  // namespace sweepd
