// `sweep-worker materialize`. See materialize_command.h.
#include "worker/materialize_command.h"

#include <unistd.h>

#include <chrono>
#include <climits>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/layer_selector.h"
#include "common/model_config.h"
#include "nlohmann/json.hpp"
#include "worker/calib/checkpoint_editor.h"

namespace sweepd {
namespace {

constexpr char kUsage[] =
    "usage: sweep-worker materialize --base DIR --out DIR [--prune "
    "L:H,H,...]... "
    "[--heal L:FILE]... [--layers SELECTOR] [--threads N] "
    "[--base-fingerprint FP]\n";

}  // namespace

bool ParseLayerHeadsFlag(const std::string& text, int* layer,
                         std::vector<int>* heads) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], layer)) return false;
  heads->clear();
  for (absl::string_view h : absl::StrSplit(parts[1], ',')) {
    int v;
    if (!absl::SimpleAtoi(h, &v)) return false;
    heads->push_back(v);
  }
  return !heads->empty();
}

int RunMaterializeCommand(const std::vector<std::string>& args,
                          std::ostream& out, std::ostream& err) {
  CLI::App app{"sweep-worker materialize"};
  app.set_help_flag();
  app.allow_extras();
  bool help = false;
  std::string base, out_dir, layers, base_fingerprint;
  std::vector<std::string> prune, heal;
  int threads = 0;
  app.add_flag("--help,-h", help);
  app.add_option("--base", base);
  app.add_option("--out", out_dir);
  app.add_option("--prune", prune)->take_all();
  app.add_option("--heal", heal)->take_all();
  app.add_option("--layers", layers);
  app.add_option("--base-fingerprint", base_fingerprint);
  app.add_option("--threads", threads);
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    err << "materialize: " << e.what() << "\n" << kUsage;
    return 2;
  }
  if (help) {
    out << kUsage;
    return 0;
  }
  if (!app.remaining().empty()) {
    err << "materialize: unknown flag " << app.remaining().front() << "\n"
        << kUsage;
    return 2;
  }
  if (base.empty() || out_dir.empty()) {
    err << "materialize: --base and --out are required\n" << kUsage;
    return 2;
  }
  if (threads < 0) {
    err << "materialize: --threads must be >= 0 (0 = automatic), got "
        << threads << "\n";
    return 2;
  }
  if (prune.empty() && heal.empty()) {
    err << "materialize: nothing to do: give at least one --prune or --heal\n"
        << kUsage;
    return 2;
  }
  // The editor writes its temp directory next to the output: make the output
  // absolute so that its parent is unambiguous.
  if (out_dir[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof(cwd)) == nullptr) {
      err << "materialize: cannot resolve the relative --out " << out_dir
          << ": getcwd failed\n";
      return 1;
    }
    out_dir = JoinPath(cwd, out_dir);
  }
  calib::MaterializeRequest request;
  request.base_dir = base;
  request.out_dir = out_dir;
  request.threads = threads;
  request.base_fingerprint = base_fingerprint;
  for (const std::string& p : prune) {
    calib::HeadPrune hp;
    if (!ParseLayerHeadsFlag(p, &hp.layer, &hp.heads)) {
      err << "materialize: --prune wants L:H,H,..., got '" << p << "'\n";
      return 2;
    }
    request.plan.pruned.push_back(hp);
  }
  for (const std::string& h : heal) {
    const size_t colon = h.find(':');
    calib::OProjHeal oh;
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(h.substr(0, colon), &oh.layer)) {
      err << "materialize: --heal wants L:FILE, got '" << h << "'\n";
      return 2;
    }
    oh.file = h.substr(colon + 1);
    oh.artifact_path = oh.file;
    request.plan.heals.push_back(oh);
  }
  if (!layers.empty()) {
    absl::StatusOr<ModelConfig> cfg =
        ModelConfig::FromFile(JoinPath(base, "config.json"));
    if (!cfg.ok()) {
      err << "materialize: " << cfg.status() << "\n";
      return 1;
    }
    absl::StatusOr<std::vector<int>> list =
        ParseLayerSelector(layers, cfg->num_hidden_layers, "--layers");
    if (!list.ok()) {
      err << "materialize: " << list.status().message() << "\n";
      return 2;
    }
    request.plan.layers = *list;
  }
  const auto started = std::chrono::steady_clock::now();
  absl::StatusOr<calib::MaterializeResult> r =
      calib::MaterializeCheckpoint(request);
  if (!r.ok()) {
    err << "materialize: " << r.status() << "\n";
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
          .count();
  nlohmann::json j = {{"out", out_dir},
                      {"manifest", JoinPath(out_dir, calib::kManifestFile)},
                      {"fingerprint", r->fingerprint},
                      {"base_fingerprint", r->base_fingerprint},
                      {"bytes_written", r->bytes_written},
                      {"tensors_changed", r->changed_tensors.size()},
                      {"tensors_total", r->tensors_total},
                      {"reused", r->reused},
                      {"seconds", seconds},
                      {"fingerprint_seconds", r->fingerprint_seconds}};
  out << j.dump() << "\n";
  return 0;
}

int MaterializeMain(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return RunMaterializeCommand(args, std::cout, std::cerr);
}

}  // namespace sweepd
