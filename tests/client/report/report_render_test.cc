// Integration test: builds a report from a realistic 12-layer, 6-category layer
// study plus a degeneration sweep, writes report.html to a temp dir and opens
// it in Debian's headless Chromium through tests/client/report/render_check.mjs
// (playwright-core). Every chart must draw, with no script error and no network
// request. The screenshot is kept as
// $SWEEPD_BUILD_DIR/test-artifacts/report.png.
//
// Skips (with the reason) only when chromium, node or
// tests/client/report/node_modules is absent; any rendering problem with them
// present fails.
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/report.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/report/report_test_util.h"

namespace sweepd {
namespace {

using ::sweepd::testing::MakeEval;
using ::sweepd::testing::MakeProbe;
using ::sweepd::testing::ProbeShard;
using ::sweepd::v1::TaskRecord;

constexpr int kLayers = 12;
const std::vector<std::string> kCategories = {
    "code", "conversational", "factual", "math", "multilingual", "reasoning"};

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A layer study shaped like seed 000: high BI at the ends, near-zero in the
// middle; the target rank collapses over the last layers; the first and last
// layers are critical.
std::vector<TaskRecord> RealisticStudy() {
  std::vector<TaskRecord> tasks;
  for (int shard = 0; shard < 2; ++shard) {
    ProbeShard probe;
    double all_tokens = 0, all_prompts = 0;
    for (size_t c = 0; c < kCategories.size(); ++c) {
      const std::string& cat = kCategories[c];
      const double tokens = 400 + 50 * c + 30 * shard;
      const double prompts = 50;
      probe.tokens[cat] = tokens;
      probe.prompts[cat] = prompts;
      probe.decision[cat] = 8.5 + 0.4 * c + 0.1 * shard;
      all_tokens += tokens;
      all_prompts += prompts;
      for (int layer = 0; layer < kLayers; ++layer) {
        const double x = layer / static_cast<double>(kLayers - 1);
        const double bi = 0.004 + 0.8 * std::pow(x, 6) +
                          (layer == 0 ? 0.3 : 0) +
                          0.002 * c * (layer > 7 ? layer - 7 : 0);
        const double rank =
            250000 * std::exp(-std::max(0, layer - 5) * (1.6 + 0.1 * c));
        probe.cells[{layer, cat}] = {bi, 20.0 + 9.0 * layer + c, rank,
                                     layer >= 10 + (c % 2) ? 0.9 : 0};
      }
    }
    probe.tokens["all"] = all_tokens;
    probe.prompts["all"] = all_prompts;
    probe.decision["all"] = 9.5;
    for (int layer = 0; layer < kLayers; ++layer) {
      const double x = layer / static_cast<double>(kLayers - 1);
      probe.cells[{layer, "all"}] = {
          0.004 + 0.8 * std::pow(x, 6) + (layer == 0 ? 0.3 : 0),
          22.0 + 9.0 * layer, 250000 * std::exp(-std::max(0, layer - 5) * 1.8),
          layer >= 10 ? 0.9 : 0};
    }
    tasks.push_back(
        MakeProbe(absl::StrCat("probe-", shard), "probe", shard, 2, probe));
  }
  const double single_delta[kLayers] = {3200, 450, 35, 8,  -6,  -12,
                                        -20,  -9,  4,  60, 380, 2100};
  for (int shard = 0; shard < 2; ++shard) {
    const double tokens = 5000 + 1000 * shard;
    const double base_ppl = 18.0 + shard;
    tasks.push_back(MakeEval(absl::StrCat("base-", shard), "wikitext", shard, 2,
                             {}, tokens * std::log(base_ppl), tokens));
    for (int layer = 0; layer < kLayers; ++layer) {
      tasks.push_back(MakeEval(
          absl::StrCat("skip-", layer, "-", shard), "wikitext", shard, 2,
          {{"skip", std::to_string(layer)}},
          tokens * std::log(base_ppl * (1 + single_delta[layer] / 100)),
          tokens));
    }
    // Cumulative drops of the middle layers, k = 2..6, compounding.
    const std::vector<std::vector<int>> drops = {
        {5, 6},          {4, 5, 6},          {4, 5, 6, 7},
        {3, 4, 5, 6, 7}, {3, 4, 5, 6, 7, 8}, {2, 3}};
    for (const auto& layers : drops) {
      const double delta = 15 * std::pow(layers.size(), 1.8);
      tasks.push_back(MakeEval(
          absl::StrCat("drop-", absl::StrJoin(layers, "_"), "-", shard),
          "wikitext", shard, 2, {{"skip", absl::StrJoin(layers, ",")}},
          tokens * std::log(base_ppl * (1 + delta / 100)), tokens));
    }
  }
  // Seed 002: first / middle / last layer x {zero, reinit} x two corpora.
  const std::vector<std::pair<std::string, double>> corpora = {
      {"wikitext", 18.4}, {"hf_doc", 4.7}};
  for (const auto& [corpus, base_ppl] : corpora) {
    const double tokens = 3000;
    if (corpus != "wikitext") {
      tasks.push_back(MakeEval("base-" + corpus, corpus, 0, 1, {},
                               tokens * std::log(base_ppl), tokens));
    }
    for (int layer : {0, 6, 11}) {
      const double zero_factor = layer == 0 ? 220 : (layer == 6 ? 1.03 : 1.3);
      const double reinit_factor = layer == 0 ? 1100 : (layer == 6 ? 1.2 : 1.6);
      tasks.push_back(MakeEval(absl::StrCat("zero-", layer, corpus), corpus, 0,
                               1, {{"zero", std::to_string(layer)}},
                               tokens * std::log(base_ppl * zero_factor),
                               tokens));
      tasks.push_back(MakeEval(absl::StrCat("reinit-", layer, corpus), corpus,
                               0, 1, {{"reinit", std::to_string(layer), 1234}},
                               tokens * std::log(base_ppl * reinit_factor),
                               tokens));
    }
  }
  return tasks;
}

// Writes `html` to a temp dir, opens it with render_check.mjs and expects
// every chart of `ids` drawn, no problem, and a screenshot
// $SWEEPD_BUILD_DIR/test-artifacts/<png_name>. Skips without chromium, node or
// playwright-core.
void CheckRendersInChromium(const std::string& html,
                            const std::vector<std::string>& ids,
                            const std::string& png_name) {
  const std::string source_dir =
      EnvOr("SWEEPD_SOURCE_DIR", SWEEPD_TEST_SOURCE_DIR);
  const std::string build_dir =
      EnvOr("SWEEPD_BUILD_DIR", SWEEPD_TEST_BUILD_DIR);
  const std::string chromium = EnvOr("SWEEPD_CHROMIUM", "/usr/bin/chromium");
  const std::string test_dir = source_dir + "/tests/client/report";
  if (::access(chromium.c_str(), X_OK) != 0) {
    GTEST_SKIP()
        << chromium
        << " is not installed (apt-get install -y chromium): render check "
        << "skipped";
  }
  if (std::system("command -v node > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "node is not installed: render check skipped";
  }
  if (!IsFile(test_dir + "/node_modules/playwright-core/package.json")) {
    GTEST_SKIP() << "playwright-core is not installed: run `npm ci` in "
                 << test_dir;
  }
  std::string dir_template = ::testing::TempDir() + "/sweepd-report-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template.data()), nullptr);
  const std::string html_path = dir_template + "/report.html";
  {
    std::ofstream out(html_path, std::ios::binary);
    out << html;
    ASSERT_TRUE(out.good()) << "cannot write " << html_path;
  }
  const std::string png_path = build_dir + "/test-artifacts/" + png_name;
  std::remove(png_path.c_str());
  const std::string command =
      absl::StrCat("cd '", test_dir, "' && SWEEPD_CHROMIUM='", chromium,
                   "' node render_check.mjs '", html_path, "' '", png_path,
                   "' '", absl::StrJoin(ids, ","), "' 2>&1");
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr) << "cannot run: " << command;
  std::string output;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status)) << "render check did not exit normally:\n"
                                 << output;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "render check failed:\n" << output;
  EXPECT_THAT(output, ::testing::HasSubstr("\"problems\": []"));
  EXPECT_TRUE(IsFile(png_path)) << "no screenshot at " << png_path << "\n"
                                << output;
  std::cout << "report screenshot: " << png_path << "\n";
}

TEST(ReportRenderTest, EveryChartDrawsInHeadlessChromium) {
  ReportOptions options;
  options.title = "Render test: 12-layer study";
  options.drop_k = {2, 4, 6};
  options.layer_types = {"sliding", "sliding", "sliding", "sliding",
                         "sliding", "full",    "sliding", "sliding",
                         "sliding", "sliding", "sliding", "full"};
  options.ablation_dataset = "wikitext";
  // Stage 1, then stage 2 as the layer-study spec runs it: measure each drop
  // plan's exact set.
  std::vector<TaskRecord> tasks = RealisticStudy();
  absl::StatusOr<ReportData> stage1 = BuildReportData(tasks, options);
  ASSERT_TRUE(stage1.ok()) << stage1.status();
  for (const DropPlan& plan : stage1->drop_plans) {
    ASSERT_TRUE(plan.feasible) << "k = " << plan.k;
    for (int shard = 0; shard < 2; ++shard) {
      const double tokens = 5000 + 1000 * shard;
      const double delta = 25 * std::pow(plan.k, 1.7);
      tasks.push_back(MakeEval(
          absl::StrCat("plan-", plan.k, "-", shard), "wikitext", shard, 2,
          {{"skip", absl::StrJoin(plan.layers, ",")}},
          tokens * std::log((18.0 + shard) * (1 + delta / 100)), tokens));
    }
  }
  absl::StatusOr<ReportData> data = BuildReportData(tasks, options);
  ASSERT_TRUE(data.ok()) << data.status();
  for (const DropPlan& plan : data->drop_plans) {
    EXPECT_TRUE(plan.measured_delta_pct.has_value()) << "k = " << plan.k;
  }
  ASSERT_EQ(data->num_layers, kLayers);
  ASSERT_EQ(data->categories.size(), kCategories.size());
  absl::StatusOr<std::string> html = RenderReportHtml(*data);
  ASSERT_TRUE(html.ok()) << html.status();
  const std::vector<std::string> ids = ReportChartIds(*data);
  ASSERT_EQ(ids.size(), 9u) << absl::StrJoin(ids, ",");

  CheckRendersInChromium(*html, ids, "report.png");
}

// A generate sweep shaped like seed 003 (two bans x three categories, N = 10,
// a greedy stage) plus seed 002's eye test (interventions at two layers) and
// a canary with BOS on and off: the best-of-k charts draw, with the category,
// canary and eye-test tables.
TEST(ReportRenderTest, GenerationReportDrawsInHeadlessChromium) {
  std::vector<TaskRecord> tasks = ::sweepd::testing::GenerationSweep();
  ReportOptions options;
  options.title = "Render test: best-of-N, eye test and canary";
  options.bootstrap.resamples = 200;
  absl::StatusOr<ReportData> data = BuildReportData(tasks, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_FALSE(data->layer_study);
  ASSERT_TRUE(data->generation.canary.has_value());
  EXPECT_FALSE(data->generation.eye_tests.empty());
  const std::vector<std::string> ids = ReportChartIds(*data);
  ASSERT_EQ(ids, (std::vector<std::string>{"chart-bok-pass", "chart-bok-score",
                                           "chart-bok-selected"}));
  absl::StatusOr<std::string> html = RenderReportHtml(*data);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, ::testing::HasSubstr("id=\"table-canary\""));
  EXPECT_THAT(*html, ::testing::HasSubstr("id=\"table-eye-0\""));
  EXPECT_THAT(*html, ::testing::HasSubstr("id=\"table-bok-3\""));
  CheckRendersInChromium(*html, ids, "report-generation.png");
}

}  // namespace
}  // namespace sweepd
