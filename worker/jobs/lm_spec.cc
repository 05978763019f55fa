#include "worker/jobs/lm_spec.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sweepd {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

const nlohmann::json* Find(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::string> GetString(const nlohmann::json& obj,
                                      const char* key,
                                      const std::string& field) {
  const nlohmann::json* v = Find(obj, key);
  if (v == nullptr) return std::string();
  if (!v->is_string())
    return Invalid(field, "expected a string, got " + v->dump());
  return v->get<std::string>();
}

// Integers may be JSON numbers or (64-bit fields in the proto JSON mapping)
// strings.
absl::StatusOr<int64_t> GetInt(const nlohmann::json& obj, const char* key,
                               const std::string& field) {
  const nlohmann::json* v = Find(obj, key);
  if (v == nullptr) return 0;
  if (v->is_number_integer()) return v->get<int64_t>();
  if (v->is_number_unsigned()) return static_cast<int64_t>(v->get<uint64_t>());
  int64_t out = 0;
  if (v->is_string() && absl::SimpleAtoi(v->get<std::string>(), &out)) {
    return out;
  }
  return Invalid(field, "expected an integer, got " + v->dump());
}

absl::StatusOr<uint64_t> GetUint(const nlohmann::json& obj, const char* key,
                                 const std::string& field) {
  const nlohmann::json* v = Find(obj, key);
  if (v == nullptr) return 0;
  if (v->is_number_unsigned()) return v->get<uint64_t>();
  if (v->is_number_integer() && v->get<int64_t>() >= 0) {
    return static_cast<uint64_t>(v->get<int64_t>());
  }
  uint64_t out = 0;
  if (v->is_string() && absl::SimpleAtoi(v->get<std::string>(), &out)) {
    return out;
  }
  return Invalid(field, "expected an unsigned integer, got " + v->dump());
}

absl::Status AppendList(const nlohmann::json& set, const std::string& field,
                        std::vector<SpecIntervention>* out) {
  if (set.is_null()) return absl::OkStatus();
  if (!set.is_object()) return Invalid(field, "expected an object");
  const nlohmann::json* list = Find(set, "interventions");
  if (list == nullptr) return absl::OkStatus();
  if (!list->is_array()) {
    return Invalid(field + ".interventions", "expected a list");
  }
  for (size_t i = 0; i < list->size(); ++i) {
    const std::string f = absl::StrCat(field, ".interventions[", i, "]");
    if (!(*list)[i].is_object()) return Invalid(f, "expected an object");
    out->push_back(SpecIntervention{(*list)[i], f});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LmTaskSpec> ParseLmTaskSpec(const std::string& kind,
                                           const nlohmann::json& spec) {
  if (!spec.is_object()) {
    return absl::InvalidArgumentError("task spec: expected a JSON object");
  }
  if (kind != kEvalKind && kind != kProbeKind) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the language-model executor runs kinds eval and probe, not '", kind,
        "'"));
  }
  LmTaskSpec out;
  out.kind = kind;
  static const nlohmann::json kEmpty = nlohmann::json::object();
  const nlohmann::json* model = Find(spec, "model");
  const nlohmann::json& m = model != nullptr ? *model : kEmpty;
  absl::StatusOr<std::string> s = GetString(m, "path", "model.path");
  if (!s.ok()) return s.status();
  out.model.path = *s;
  if (!(s = GetString(m, "fingerprint", "model.fingerprint")).ok()) {
    return s.status();
  }
  out.model.fingerprint = *s;
  if (!(s = GetString(m, "dtype", "model.dtype")).ok()) return s.status();
  out.model.dtype = *s;
  if (!(s = GetString(m, "tokenizer", "model.tokenizer")).ok()) {
    return s.status();
  }
  out.model.tokenizer = *s;

  const nlohmann::json* data = Find(spec, "data");
  if (data == nullptr || !data->is_object()) {
    return Invalid("data", "required (an object with dataset and shard)");
  }
  const nlohmann::json* dataset = Find(*data, "dataset");
  if (dataset == nullptr || !dataset->is_object()) {
    return Invalid("data.dataset", "required");
  }
  if (!(s = GetString(*dataset, "name", "data.dataset.name")).ok()) {
    return s.status();
  }
  out.dataset_name = *s;
  if (!(s = GetString(*dataset, "path", "data.dataset.path")).ok()) {
    return s.status();
  }
  if (s->empty()) return Invalid("data.dataset.path", "required");
  out.data.path = *s;
  absl::StatusOr<int64_t> n =
      GetInt(*dataset, "max_records", "data.dataset.max_records");
  if (!n.ok()) return n.status();
  if (*n < 0) return Invalid("data.dataset.max_records", "must be >= 0");
  out.data.max_records = *n;
  if (!(n = GetInt(*data, "shard_index", "data.shard_index")).ok()) {
    return n.status();
  }
  out.data.shard_index = static_cast<int>(*n);
  if (!(n = GetInt(*data, "num_shards", "data.num_shards")).ok()) {
    return n.status();
  }
  int64_t num_shards = *n;
  if (num_shards == 0) {
    if (!(n = GetInt(*dataset, "shards", "data.dataset.shards")).ok()) {
      return n.status();
    }
    num_shards = *n == 0 ? 1 : *n;
  }
  if (num_shards < 1 || num_shards > (int64_t{1} << 30)) {
    return Invalid("data.num_shards",
                   absl::StrCat("must be >= 1, got ", num_shards));
  }
  out.data.num_shards = static_cast<int>(num_shards);
  if (out.data.shard_index < 0 || out.data.shard_index >= out.data.num_shards) {
    return Invalid("data.shard_index",
                   absl::StrCat(out.data.shard_index, " outside [0, ",
                                out.data.num_shards, ")"));
  }

  const nlohmann::json* job = Find(spec, kind.c_str());
  if (job != nullptr && !job->is_object()) {
    return Invalid(kind, "expected an object");
  }
  const nlohmann::json& j = job != nullptr ? *job : kEmpty;
  const nlohmann::json* windowing = Find(j, "windowing");
  absl::StatusOr<Windowing> w =
      ParseWindowing(windowing != nullptr ? *windowing : nlohmann::json(),
                     kind + ".windowing");
  if (!w.ok()) return w.status();
  out.windowing = *w;
  if (kind == kEvalKind) {
    const nlohmann::json* base = Find(j, "base_interventions");
    if (base != nullptr) {
      absl::Status st =
          AppendList(*base, "eval.base_interventions", &out.interventions);
      if (!st.ok()) return st;
    }
  }
  const nlohmann::json* ivs = Find(spec, "interventions");
  if (ivs != nullptr) {
    absl::Status st = AppendList(*ivs, "interventions", &out.interventions);
    if (!st.ok()) return st;
  }
  return out;
}

absl::StatusOr<std::vector<int>> SelectLayers(const std::string& selector,
                                              int num_layers,
                                              const std::string& field) {
  std::set<int> layers;
  auto bad = [&](const std::string& why) {
    return Invalid(field,
                   absl::StrCat("layer selector \"", selector, "\": ", why,
                                " (model has ", num_layers, " layers)"));
  };
  auto check = [&](int64_t l) -> absl::Status {
    if (l < 0 || l >= num_layers) {
      return bad(
          absl::StrCat("layer ", l, " out of range [0, ", num_layers, ")"));
    }
    return absl::OkStatus();
  };
  const std::string trimmed(absl::StripAsciiWhitespace(selector));
  if (trimmed.empty()) return bad("empty");
  for (absl::string_view raw : absl::StrSplit(trimmed, ',')) {
    const std::string part(absl::StripAsciiWhitespace(raw));
    if (part.empty()) return bad("empty item");
    if (part == "all") {
      for (int l = 0; l < num_layers; ++l) layers.insert(l);
      continue;
    }
    std::vector<std::string> colon = absl::StrSplit(part, ':');
    if (colon.size() == 2 || colon.size() == 3) {
      int64_t start = 0, stop = 0, step = 1;
      if (!absl::SimpleAtoi(colon[0], &start) ||
          !absl::SimpleAtoi(colon[1], &stop) ||
          (colon.size() == 3 && !absl::SimpleAtoi(colon[2], &step))) {
        return bad(absl::StrCat("\"", part, "\" is not start:stop[:step]"));
      }
      if (step < 1)
        return bad(absl::StrCat("step must be >= 1 in \"", part, "\""));
      if (start >= stop)
        return bad(absl::StrCat("\"", part, "\" selects nothing"));
      absl::Status st = check(start);
      if (!st.ok()) return st;
      if (stop > num_layers) {
        return bad(absl::StrCat("stop ", stop, " is past ", num_layers));
      }
      for (int64_t l = start; l < stop; l += step)
        layers.insert(static_cast<int>(l));
      continue;
    }
    if (colon.size() != 1) return bad(absl::StrCat("bad item \"", part, "\""));
    const size_t dash = part.find('-', 1);
    if (dash != std::string::npos) {
      int64_t lo = 0, hi = 0;
      if (!absl::SimpleAtoi(part.substr(0, dash), &lo) ||
          !absl::SimpleAtoi(part.substr(dash + 1), &hi)) {
        return bad(absl::StrCat("\"", part, "\" is not lo-hi"));
      }
      if (lo > hi) return bad(absl::StrCat("\"", part, "\" is descending"));
      absl::Status st = check(lo);
      if (st.ok()) st = check(hi);
      if (!st.ok()) return st;
      for (int64_t l = lo; l <= hi; ++l) layers.insert(static_cast<int>(l));
      continue;
    }
    int64_t l = 0;
    if (!absl::SimpleAtoi(part, &l)) {
      return bad(absl::StrCat("\"", part, "\" is not a layer index"));
    }
    absl::Status st = check(l);
    if (!st.ok()) return st;
    layers.insert(static_cast<int>(l));
  }
  return std::vector<int>(layers.begin(), layers.end());
}

absl::StatusOr<std::vector<engine::Intervention>> ToEngineInterventions(
    const std::vector<SpecIntervention>& interventions,
    const engine::ModelConfig& config) {
  std::vector<engine::Intervention> out;
  const int num_layers = config.num_hidden_layers;
  for (const SpecIntervention& iv : interventions) {
    const nlohmann::json& op = iv.op;
    int ops = 0;
    for (const char* key :
         {"skip", "zero", "reinit", "mask_heads", "maskHeads"}) {
      if (Find(op, key) != nullptr) ++ops;
    }
    if (ops != 1) {
      return Invalid(
          iv.field,
          "exactly one of skip, zero, reinit, mask_heads must be set");
    }
    for (const char* key : {"skip", "zero", "reinit"}) {
      const nlohmann::json* body = Find(op, key);
      if (body == nullptr) continue;
      const std::string field = absl::StrCat(iv.field, ".", key);
      if (!body->is_object()) return Invalid(field, "expected an object");
      absl::StatusOr<std::string> sel =
          GetString(*body, "layers", field + ".layers");
      if (!sel.ok()) return sel.status();
      absl::StatusOr<std::vector<int>> layers =
          SelectLayers(*sel, num_layers, field + ".layers");
      if (!layers.ok()) return layers.status();
      uint64_t seed = 0;
      if (std::string(key) == "reinit") {
        absl::StatusOr<uint64_t> s = GetUint(*body, "seed", field + ".seed");
        if (!s.ok()) return s.status();
        seed = *s;
      }
      for (int l : *layers) {
        if (std::string(key) == "skip") {
          out.push_back(engine::Intervention::Skip(l));
        } else if (std::string(key) == "zero") {
          out.push_back(engine::Intervention::Zero(l));
        } else {
          out.push_back(engine::Intervention::Reinit(l, seed));
        }
      }
    }
    const nlohmann::json* mask = Find(op, "mask_heads");
    if (mask == nullptr) mask = Find(op, "maskHeads");
    if (mask != nullptr) {
      const std::string field = iv.field + ".mask_heads";
      if (!mask->is_object()) return Invalid(field, "expected an object");
      absl::StatusOr<int64_t> layer = GetInt(*mask, "layer", field + ".layer");
      if (!layer.ok()) return layer.status();
      if (*layer < 0 || *layer >= num_layers) {
        return Invalid(field + ".layer",
                       absl::StrCat(*layer, " outside [0, ", num_layers, ")"));
      }
      const nlohmann::json* heads = Find(*mask, "heads");
      if (heads == nullptr || !heads->is_array() || heads->empty()) {
        return Invalid(field + ".heads",
                       "a non-empty list of head indices is required");
      }
      std::vector<int> list;
      for (size_t i = 0; i < heads->size(); ++i) {
        const nlohmann::json& h = (*heads)[i];
        if (!h.is_number_integer() || h.get<int64_t>() < 0 ||
            h.get<int64_t>() >= config.num_attention_heads) {
          return Invalid(absl::StrCat(field, ".heads[", i, "]"),
                         absl::StrCat(h.dump(), " is not a head in [0, ",
                                      config.num_attention_heads, ")"));
        }
        list.push_back(h.get<int>());
      }
      out.push_back(engine::Intervention::MaskHeads(static_cast<int>(*layer),
                                                    std::move(list)));
    }
  }
  return out;
}

}  // namespace sweepd
