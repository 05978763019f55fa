// The generation part of a sweep report. See generation_report.h.
#include "client/generation_report.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/ctl_format.h"
#include "client/sample_rows.h"
#include "common/status.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace sweepd {
namespace {

namespace v1 = ::sweepd::v1;

// Best-of sizes of seed 003's table; N itself is added.
constexpr int64_t kBestOfSizes[] = {2, 3, 5, 10};

// What a sampled point and a greedy point must share for the greedy row: the
// job without its sampling fields, the interventions, the model and the
// params other than sampling ones.
std::string Condition(const v1::TaskSpec& spec) {
  v1::TaskSpec c;
  *c.mutable_model() = spec.model();
  c.mutable_model()->clear_fingerprint();
  *c.mutable_interventions() = spec.interventions();
  *c.mutable_generate() = spec.generate();
  v1::GenerateJob* g = c.mutable_generate();
  g->clear_temperature();
  g->clear_top_k();
  g->clear_top_p();
  g->clear_min_p();
  g->clear_samples();
  g->clear_max_batch();
  g->clear_token_logprobs();
  for (const auto& [name, value] : spec.params()) {
    if (name == "temperature" || name == "top_k" || name == "top_p" ||
        name == "min_p" || name == "samples") {
      continue;
    }
    (*c.mutable_params())[name] = value;
  }
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  c.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

std::optional<double> MeanOf(const std::vector<double>& v) {
  if (v.empty()) return std::nullopt;
  double sum = 0;
  for (double x : v) sum += x;
  return sum / v.size();
}

const PointBestOfK* FindPoint(const std::vector<PointBestOfK>& points,
                              const GridPoint& key) {
  for (const PointBestOfK& p : points) {
    if (p.point == key) return &p;
  }
  return nullptr;
}

absl::StatusOr<CategoryTable> BuildCategoryTable(
    const std::string& category, const std::vector<SampleRecord>& samples,
    const std::set<std::string>& greedy_tasks,
    const std::map<GridPoint, std::string>& condition_of,
    const std::vector<PointBestOfK>& columns) {
  auto in_category = [&](const SampleRecord& s) {
    return s.kind == "generate" &&
           (category == "all" || s.category == category);
  };
  BootstrapOptions means_only;
  means_only.resamples = 1;
  ASSIGN_OR_RETURN(
      std::vector<PointBestOfK> sampled,
      ComputeBestOfKTable(samples, means_only, [&](const SampleRecord& s) {
        return in_category(s) && greedy_tasks.count(s.task_key) == 0;
      }));
  ASSIGN_OR_RETURN(
      std::vector<PointBestOfK> greedy,
      ComputeBestOfKTable(samples, means_only, [&](const SampleRecord& s) {
        return in_category(s) && greedy_tasks.count(s.task_key) > 0;
      }));
  int64_t max_n = 0;
  for (const PointBestOfK& c : columns) max_n = std::max(max_n, c.max_samples);
  std::vector<std::string> selections = {"greedy", "first sample"};
  std::vector<int64_t> sizes;
  for (int64_t k : kBestOfSizes) {
    if (k < max_n) sizes.push_back(k);
  }
  if (max_n > 1) sizes.push_back(max_n);
  for (int64_t k : sizes) selections.push_back(absl::StrCat("best of ", k));
  selections.push_back("mean over samples");

  CategoryTable table;
  table.category = category;
  table.rows.resize(selections.size());
  for (size_t r = 0; r < selections.size(); ++r) {
    table.rows[r].selection = selections[r];
  }
  for (const PointBestOfK& column : columns) {
    const PointBestOfK* p = FindPoint(sampled, column.point);
    table.prompts.push_back(p != nullptr ? p->prompts : 0);
    // Greedy: the greedy point of the same condition, its first samples.
    std::vector<double> g_score, g_pass;
    auto cond = condition_of.find(column.point);
    for (const PointBestOfK& g : greedy) {
      auto gc = condition_of.find(g.point);
      if (cond == condition_of.end() || gc == condition_of.end() ||
          gc->second != cond->second) {
        continue;
      }
      for (const PromptBestOfK& q : g.per_prompt) {
        if (!q.has_first_sample) continue;
        g_score.push_back(q.first_sample_score);
        g_pass.push_back(q.first_sample_pass ? 1 : 0);
      }
      break;
    }
    std::vector<double> f_score, f_pass, m_score, m_pass;
    if (p != nullptr) {
      for (const PromptBestOfK& q : p->per_prompt) {
        if (q.samples == 0) continue;
        if (q.has_first_sample) {
          f_score.push_back(q.first_sample_score);
          f_pass.push_back(q.first_sample_pass ? 1 : 0);
        }
        m_score.push_back(q.mean_score);
        m_pass.push_back(static_cast<double>(q.passes) / q.samples);
      }
    }
    size_t r = 0;
    table.rows[r].score.push_back(MeanOf(g_score));
    table.rows[r++].accuracy.push_back(MeanOf(g_pass));
    table.rows[r].score.push_back(MeanOf(f_score));
    table.rows[r++].accuracy.push_back(MeanOf(f_pass));
    for (int64_t k : sizes) {
      std::optional<double> score, accuracy;
      if (p != nullptr && k <= static_cast<int64_t>(p->curve.size())) {
        score = p->curve[k - 1].best_score.mean;
        accuracy = p->curve[k - 1].selected_pass.mean;
      }
      table.rows[r].score.push_back(score);
      table.rows[r++].accuracy.push_back(accuracy);
    }
    table.rows[r].score.push_back(MeanOf(m_score));
    table.rows[r].accuracy.push_back(MeanOf(m_pass));
  }
  return table;
}

std::string CanaryColumn(const v1::TaskSpec& spec) {
  GridPoint point = GridPointOf(spec);
  std::string label = point.Label();
  if (point.params.find("bos=") == std::string::npos) {
    absl::StrAppend(&label, " · bos=",
                    spec.canary().bos().empty() ? "on" : spec.canary().bos());
  }
  return label;
}

CanaryTable BuildCanaryTable(const std::vector<v1::TaskRecord>& tasks) {
  CanaryTable table;
  std::map<std::string, size_t> column_of;
  std::vector<const v1::TaskRecord*> canary;
  for (const v1::TaskRecord& t : tasks) {
    if (t.state() != v1::TASK_STATE_DONE ||
        t.spec().kind() != v1::JOB_KIND_CANARY) {
      continue;
    }
    canary.push_back(&t);
    column_of.emplace(CanaryColumn(t.spec()), 0);
  }
  for (auto& [label, index] : column_of) {
    index = table.columns.size();
    table.columns.push_back(label);
  }
  table.passed.assign(table.columns.size(), 0);
  for (const v1::TaskRecord* t : canary) {
    const size_t column = column_of.at(CanaryColumn(t->spec()));
    const v1::CanaryJob& job = t->spec().canary();
    for (const v1::Sample& s : t->result().samples()) {
      const size_t row = static_cast<size_t>(std::max(0, s.prompt_index()));
      while (table.rows.size() <= row) {
        CanaryRow r;
        const int i = static_cast<int>(table.rows.size());
        r.case_id = absl::StrCat("case", i);
        if (i < job.cases_size()) {
          r.prompt = job.cases(i).prompt();
          r.expect.assign(job.cases(i).expect().begin(),
                          job.cases(i).expect().end());
        }
        r.cells.resize(table.columns.size());
        table.rows.push_back(std::move(r));
      }
      if (!s.prompt_id().empty()) table.rows[row].case_id = s.prompt_id();
      if (table.rows[row].cells[column].has_value()) continue;
      table.rows[row].cells[column] = CanaryCell{s.pass(), s.score(), s.text()};
      table.passed[column] += s.pass();
    }
  }
  return table;
}

// How a generate point sits in seed 002's tables.
struct EyeColumn {
  std::string group;    // "" = baseline (every group), else a layer group
  int group_order = 0;  // first layer, for sorting
  std::string op;       // "no modification", "all zeros", ...
  int op_order = 0;     // skip, zero, reinit, mask heads, other
};

EyeColumn ClassifyInterventions(const v1::InterventionSet& set) {
  if (set.interventions().empty()) return {"", 0, "no modification", 0};
  if (set.interventions_size() == 1) {
    const v1::Intervention& iv = set.interventions(0);
    std::string layers, op;
    int op_order = 0;
    switch (iv.op_case()) {
      case v1::Intervention::kSkip:
        layers = iv.skip().layers();
        op = "skip";
        op_order = 1;
        break;
      case v1::Intervention::kZero:
        layers = iv.zero().layers();
        op = "all zeros";
        op_order = 2;
        break;
      case v1::Intervention::kReinit:
        layers = iv.reinit().layers();
        op = "random initialization";
        op_order = 3;
        break;
      case v1::Intervention::kMaskHeads:
        layers = absl::StrCat(iv.mask_heads().layer());
        op = absl::StrCat("mask heads ",
                          absl::StrJoin(iv.mask_heads().heads(), ","));
        op_order = 4;
        break;
      case v1::Intervention::kSteer:
      case v1::Intervention::kReplaceLayer:
      case v1::Intervention::OP_NOT_SET:
        break;  // "Other interventions" below
    }
    if (!op.empty()) {
      int first = 0;
      const std::string head = layers.substr(0, layers.find_first_of(",-:"));
      if (!absl::SimpleAtoi(head, &first)) first = 1 << 20;
      const bool single =
          layers.find_first_of(",-:") == std::string::npos && layers != "all";
      return {absl::StrCat(single ? "Layer " : "Layers ", layers), first, op,
              op_order};
    }
  }
  return {"Other interventions", 1 << 30, InterventionSummary(set), 5};
}

std::vector<EyeTestTable> BuildEyeTests(
    const std::vector<v1::TaskRecord>& tasks) {
  struct Column {
    EyeColumn where;
    std::string suffix;  // stage / params, when several exist
    std::map<std::string, std::pair<int, std::string>>
        first;  // prompt ->
                // (sample_index, text)
  };
  std::map<GridPoint, Column> points;
  std::map<std::string, std::string> prompt_text;  // prompt_id -> row header
  std::vector<std::string> prompt_order;
  std::set<std::string> intervention_sets, variants;
  for (const v1::TaskRecord& t : tasks) {
    if (t.state() != v1::TASK_STATE_DONE ||
        t.spec().kind() != v1::JOB_KIND_GENERATE) {
      continue;
    }
    const GridPoint point = GridPointOf(t.spec());
    intervention_sets.insert(point.interventions);
    variants.insert(absl::StrCat(point.stage, "\n", point.params));
    Column& column = points[point];
    column.where = ClassifyInterventions(t.spec().interventions());
    std::vector<std::string> suffix;
    if (!point.stage.empty()) suffix.push_back(point.stage);
    if (!point.params.empty()) suffix.push_back(point.params);
    column.suffix = absl::StrJoin(suffix, " · ");
    const v1::GenerateJob& job = t.spec().generate();
    for (const v1::Sample& s : t.result().samples()) {
      if (prompt_text.emplace(s.prompt_id(), "").second) {
        prompt_order.push_back(s.prompt_id());
        prompt_text[s.prompt_id()] =
            s.prompt_index() >= 0 && s.prompt_index() < job.prompts_size()
                ? job.prompts(s.prompt_index())
                : s.prompt_id();
      }
      auto it = column.first.find(s.prompt_id());
      if (it == column.first.end() || s.sample_index() < it->second.first) {
        column.first[s.prompt_id()] = {s.sample_index(), s.text()};
      }
    }
  }
  if (intervention_sets.size() < 2) return {};
  const bool with_suffix = variants.size() > 1;
  // Groups in layer order; baseline columns join every group.
  std::map<std::pair<int, std::string>, std::vector<const Column*>> groups;
  std::vector<const Column*> baselines;
  for (const auto& [point, column] : points) {
    if (column.where.group.empty()) {
      baselines.push_back(&column);
    } else {
      groups[{column.where.group_order, column.where.group}].push_back(&column);
    }
  }
  std::vector<EyeTestTable> tables;
  for (const auto& [key, members] : groups) {
    EyeTestTable table;
    table.title = key.second;
    std::vector<const Column*> columns = baselines;
    std::vector<const Column*> sorted = members;
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const Column* a, const Column* b) {
                       return a->where.op_order < b->where.op_order;
                     });
    columns.insert(columns.end(), sorted.begin(), sorted.end());
    for (const Column* c : columns) {
      table.columns.push_back(
          with_suffix && !c->suffix.empty()
              ? absl::StrCat(c->where.op, " (", c->suffix, ")")
              : c->where.op);
    }
    for (const std::string& id : prompt_order) {
      table.prompts.push_back(prompt_text[id]);
      std::vector<std::optional<std::string>> row;
      for (const Column* c : columns) {
        auto it = c->first.find(id);
        row.push_back(it == c->first.end()
                          ? std::nullopt
                          : std::optional<std::string>(it->second.second));
      }
      table.texts.push_back(std::move(row));
    }
    tables.push_back(std::move(table));
  }
  return tables;
}

}  // namespace

absl::StatusOr<GenerationReport> BuildGenerationReport(
    const std::vector<v1::TaskRecord>& tasks,
    const BootstrapOptions& bootstrap) {
  GenerationReport report;
  report.bootstrap = bootstrap;
  std::set<std::string> greedy_tasks;
  std::map<GridPoint, std::string> condition_of;
  int64_t sampled_tasks = 0;
  for (const v1::TaskRecord& t : tasks) {
    if (t.state() != v1::TASK_STATE_DONE) continue;
    if (t.spec().kind() == v1::JOB_KIND_CANARY) ++report.canary_tasks;
    if (t.spec().kind() != v1::JOB_KIND_GENERATE) continue;
    ++report.generate_tasks;
    if (t.spec().generate().temperature() <= 0) {
      greedy_tasks.insert(t.task_key());
    } else {
      ++sampled_tasks;
    }
    condition_of.emplace(GridPointOf(t.spec()), Condition(t.spec()));
  }
  if (report.empty()) return report;
  const std::vector<SampleRecord> samples = CollectSamples(tasks);
  report.samples = static_cast<int64_t>(samples.size());

  ASSIGN_OR_RETURN(
      std::vector<PointBestOfK> sampled,
      ComputeBestOfKTable(samples, bootstrap, [&](const SampleRecord& s) {
        return s.kind == "generate" && greedy_tasks.count(s.task_key) == 0;
      }));
  for (PointBestOfK& p : sampled) {
    if (p.prompts > 0) {
      report.best_of_k.push_back(std::move(p));
    } else {
      report.notes.push_back(
          absl::StrCat("grid point ", p.point.Label(), ": no scored sample (",
                       p.verifier_errors, " verifier errors, ", p.unscored,
                       " without a verifier): no best-of-k curve."));
    }
  }
  int64_t errors = 0;
  for (const PointBestOfK& p : report.best_of_k) errors += p.verifier_errors;
  if (errors > 0) {
    report.notes.push_back(absl::StrCat(
        errors,
        " sample(s) whose verifier reported an error are left out of "
        "the best-of-k estimators."));
  }
  if (sampled_tasks == 0 && report.generate_tasks > 0) {
    report.notes.push_back(
        "Every generate task is greedy (temperature 0): no best-of-k curve.");
  }

  if (!report.best_of_k.empty()) {
    std::set<std::string> categories;
    for (const SampleRecord& s : samples) {
      if (s.kind == "generate" && !s.category.empty())
        categories.insert(s.category);
    }
    std::vector<std::string> order = {"all"};
    if (categories.size() > 1)
      order.insert(order.end(), categories.begin(), categories.end());
    for (const std::string& c : order) {
      ASSIGN_OR_RETURN(CategoryTable table,
                       BuildCategoryTable(c, samples, greedy_tasks,
                                          condition_of, report.best_of_k));
      report.categories.push_back(std::move(table));
    }
  }
  if (report.canary_tasks > 0) report.canary = BuildCanaryTable(tasks);
  report.eye_tests = BuildEyeTests(tasks);
  return report;
}

}  // namespace sweepd
