#include "client/spec_loader.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "common/utf8.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace sweepd {
namespace {

namespace pb = ::google::protobuf;
using Json = nlohmann::json;

// Where each mapping key of a YAML document sits, by field path
// ("grid.axes[0].layers").
using MarkMap = std::map<std::string, std::pair<int, int>>;

std::string Child(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

std::string Where(const std::string& path) {
  return path.empty() ? "top level" : path;
}

// ---- YAML -> JSON
// ------------------------------------------------------------------------

bool IsDecimalInt(absl::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

bool IsYamlFloat(absl::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  size_t i = 0, digits = 0;
  while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i])))
    ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() &&
           absl::ascii_isdigit(static_cast<unsigned char>(s[i])))
      ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() &&
           absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) {
      ++i, ++exp_digits;
    }
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

// A plain (unquoted) YAML scalar, typed by the YAML 1.2 core schema.
Json TypePlainScalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL")
    return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (IsDecimalInt(s)) {
    int64_t v;
    if (absl::SimpleAtoi(s, &v)) return v;
    uint64_t u;
    if (absl::SimpleAtoi(s, &u)) return u;
    return s;  // out of range: leave the text for the type check to report
  }
  if (absl::StartsWith(s, "0x") && s.size() > 2) {
    uint64_t u;
    if (absl::SimpleHexAtoi(absl::string_view(s).substr(2), &u)) return u;
  }
  if (IsYamlFloat(s)) {
    double d;
    if (absl::SimpleAtod(s, &d)) return d;
  }
  // Infinities and NaN are carried as the proto3 JSON spellings.
  if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf")
    return "Infinity";
  if (s == "-.inf" || s == "-.Inf" || s == "-.INF") return "-Infinity";
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return "NaN";
  return s;
}

absl::Status YamlError(const std::string& source, const YAML::Mark& mark,
                       absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": YAML error at line ", mark.line + 1, ", column ",
                   mark.column + 1, ": ", message));
}

absl::StatusOr<Json> YamlNodeToJson(const YAML::Node& node,
                                    const std::string& path,
                                    const std::string& source, MarkMap* marks) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return Json(nullptr);
    case YAML::NodeType::Scalar: {
      const std::string& tag = node.Tag();
      const std::string& text = node.Scalar();
      if (tag == "!" || tag == "tag:yaml.org,2002:str") return Json(text);
      if (tag == "tag:yaml.org,2002:int" || tag == "tag:yaml.org,2002:float") {
        Json typed = TypePlainScalar(text);
        if (!typed.is_number()) {
          return YamlError(source, node.Mark(),
                           absl::StrCat("'", text, "' is not a ", tag));
        }
        return typed;
      }
      return TypePlainScalar(text);
    }
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      int i = 0;
      for (const YAML::Node& item : node) {
        ASSIGN_OR_RETURN(Json v,
                         YamlNodeToJson(item, absl::StrCat(path, "[", i, "]"),
                                        source, marks));
        out.push_back(std::move(v));
        ++i;
      }
      return out;
    }
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          return YamlError(source, kv.first.Mark(),
                           "mapping keys must be scalars");
        }
        const std::string key = kv.first.Scalar();
        if (out.contains(key)) {
          return YamlError(
              source, kv.first.Mark(),
              absl::StrCat("duplicate key '", key, "' at ", Where(path)));
        }
        const std::string child = Child(path, key);
        (*marks)[child] = {kv.first.Mark().line + 1,
                           kv.first.Mark().column + 1};
        ASSIGN_OR_RETURN(out[key],
                         YamlNodeToJson(kv.second, child, source, marks));
      }
      return out;
    }
  }
  return Json(nullptr);
}

absl::StatusOr<Json> ParseYaml(const std::string& text,
                               const std::string& source, MarkMap* marks) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return YamlError(source, e.mark, e.msg);
  }
  try {
    return YamlNodeToJson(root, "", source, marks);
  } catch (const YAML::Exception& e) {
    return YamlError(source, e.mark, e.msg);
  }
}

absl::StatusOr<Json> ParseJson(const std::string& text,
                               const std::string& source) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    int line = 1, column = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": JSON error at line ", line, ", column ", column,
                     ": ", e.what()));
  } catch (const Json::exception& e) {
    // E.g. out_of_range 406 for a number literal beyond double's range (found
    // by tests/fuzz/spec_loader_fuzzer; it made sweepctl abort).
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": JSON error: ", e.what()));
  }
}

// ---- Checking JSON against the descriptor
// ------------------------------------------------

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t subst =
          prev[j - 1] +
          (absl::ascii_tolower(a[i - 1]) == absl::ascii_tolower(b[j - 1]) ? 0
                                                                          : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string TypeName(const Json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

std::string Brief(const Json& v) {
  // `replace`: yaml-cpp can hand back strings that are not UTF-8 even for
  // checked input (a NUL byte in a plain scalar; found by
  // tests/fuzz/spec_loader_fuzzer), and a throwing dump() aborted sweepctl.
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

class SpecChecker {
 public:
  SpecChecker(const std::string& source, const MarkMap* marks)
      : source_(source), marks_(marks) {}

  absl::Status CheckMessage(Json& j, const pb::Descriptor* d,
                            const std::string& path) {
    if (j.is_null()) return absl::OkStatus();
    if (!j.is_object()) return Mismatch(path, "a mapping of fields", j);
    std::map<int, std::string> oneof_used;  // oneof index -> key that set it
    std::map<const pb::FieldDescriptor*, std::string>
        seen;  // field -> key that set it
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& key = it.key();
      const pb::FieldDescriptor* f = FindField(d, key);
      if (f == nullptr) return Unknown(d, key, path);
      const std::string child = Child(path, key);
      auto [prev, inserted] = seen.emplace(f, key);
      if (!inserted) {
        return Invalid(child, absl::StrCat("field given twice, as '",
                                           prev->second, "' and '", key, "'"));
      }
      const pb::OneofDescriptor* oneof = f->real_containing_oneof();
      if (oneof != nullptr && !it.value().is_null()) {
        auto [other, first] = oneof_used.emplace(oneof->index(), key);
        if (!first) {
          std::vector<std::string> names;
          for (int k = 0; k < oneof->field_count(); ++k)
            names.push_back(oneof->field(k)->name());
          return Invalid(child, absl::StrCat("both '", other->second, "' and '",
                                             key, "' are set; ", Where(path),
                                             " takes only one of ",
                                             absl::StrJoin(names, ", ")));
        }
      }
      RETURN_IF_ERROR(CheckField(it.value(), f, child));
    }
    return absl::OkStatus();
  }

 private:
  static const pb::FieldDescriptor* FindField(const pb::Descriptor* d,
                                              const std::string& key) {
    if (const pb::FieldDescriptor* f = d->FindFieldByName(key)) return f;
    for (int i = 0; i < d->field_count(); ++i) {
      if (d->field(i)->json_name() == key) return d->field(i);
    }
    return nullptr;
  }

  std::string Location(const std::string& path) const {
    auto it = marks_->find(path);
    if (it == marks_->end()) return absl::StrCat(" [", source_, "]");
    return absl::StrCat(" [", source_, ":", it->second.first, ":",
                        it->second.second, "]");
  }

  absl::Status Invalid(const std::string& path,
                       absl::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(path), ": ", message, Location(path)));
  }

  absl::Status Mismatch(const std::string& path, absl::string_view expected,
                        const Json& got) const {
    return Invalid(path, absl::StrCat("expected ", expected, ", got ",
                                      TypeName(got), " ", Brief(got)));
  }

  absl::Status Unknown(const pb::Descriptor* d, const std::string& key,
                       const std::string& path) const {
    std::string best;
    size_t best_distance = std::numeric_limits<size_t>::max();
    for (int i = 0; i < d->field_count(); ++i) {
      for (const std::string& name :
           {d->field(i)->name(), d->field(i)->json_name()}) {
        const size_t dist = EditDistance(key, name);
        if (dist < best_distance) {
          best_distance = dist;
          best = d->field(i)->name();
        }
      }
    }
    std::string hint;
    if (!best.empty() && best_distance <= std::max<size_t>(2, key.size() / 3)) {
      hint = absl::StrCat(" (did you mean '", best, "'?)");
    } else {
      std::vector<std::string> names;
      for (int i = 0; i < d->field_count(); ++i)
        names.push_back(d->field(i)->name());
      hint = absl::StrCat(" (known fields: ", absl::StrJoin(names, ", "), ")");
    }
    return absl::InvalidArgumentError(absl::StrCat("unknown field '", key,
                                                   "' at ", Where(path), hint,
                                                   Location(Child(path, key))));
  }

  absl::Status CheckField(Json& v, const pb::FieldDescriptor* f,
                          const std::string& path) {
    if (v.is_null()) return absl::OkStatus();
    if (f->is_map()) {
      if (!v.is_object()) return Mismatch(path, "a mapping", v);
      const pb::FieldDescriptor* key_field = f->message_type()->map_key();
      const pb::FieldDescriptor* value_field = f->message_type()->map_value();
      for (auto it = v.begin(); it != v.end(); ++it) {
        const std::string entry = absl::StrCat(path, "[", it.key(), "]");
        RETURN_IF_ERROR(CheckMapKey(it.key(), key_field, entry));
        RETURN_IF_ERROR(CheckSingular(it.value(), value_field, entry));
      }
      return absl::OkStatus();
    }
    if (f->is_repeated()) {
      if (!v.is_array()) return Mismatch(path, "a list", v);
      for (size_t i = 0; i < v.size(); ++i) {
        RETURN_IF_ERROR(
            CheckSingular(v[i], f, absl::StrCat(path, "[", i, "]")));
      }
      return absl::OkStatus();
    }
    return CheckSingular(v, f, path);
  }

  absl::Status CheckMapKey(const std::string& key, const pb::FieldDescriptor* f,
                           const std::string& path) const {
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        return absl::OkStatus();
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        if (key == "true" || key == "false") return absl::OkStatus();
        return Invalid(path, "map key must be true or false");
      default: {
        int64_t v;
        if (absl::SimpleAtoi(key, &v)) return absl::OkStatus();
        return Invalid(path,
                       absl::StrCat("map key '", key, "' is not an integer"));
      }
    }
  }

  absl::Status CheckInteger(Json& v, const pb::FieldDescriptor* f,
                            const std::string& path) {
    const bool is_signed =
        f->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT32 ||
        f->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64;
    const bool is_32 = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT32 ||
                       f->cpp_type() == pb::FieldDescriptor::CPPTYPE_UINT32;
    const char* expected = is_signed ? "an integer" : "a non-negative integer";
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::floor(d) != d || std::fabs(d) > 9e15)
        return Mismatch(path, expected, v);
      v = static_cast<int64_t>(d);
    }
    if (v.is_string()) {
      int64_t s;
      uint64_t u;
      if (absl::SimpleAtoi(v.get<std::string>(), &s)) {
        v = s;
      } else if (absl::SimpleAtoi(v.get<std::string>(), &u)) {
        v = u;
      } else {
        return Mismatch(path, expected, v);
      }
    }
    if (!v.is_number_integer()) return Mismatch(path, expected, v);
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      const uint64_t max =
          is_32 ? (is_signed ? INT32_MAX : UINT32_MAX)
                : (is_signed ? static_cast<uint64_t>(INT64_MAX) : UINT64_MAX);
      if (u > max) return Invalid(path, absl::StrCat(u, " is out of range"));
      return absl::OkStatus();
    }
    const int64_t s = v.get<int64_t>();
    if (!is_signed && s < 0) return Mismatch(path, expected, v);
    if (is_32 && is_signed && (s < INT32_MIN || s > INT32_MAX)) {
      return Invalid(path, absl::StrCat(s, " is out of range for int32"));
    }
    if (is_32 && !is_signed && s > static_cast<int64_t>(UINT32_MAX)) {
      return Invalid(path, absl::StrCat(s, " is out of range for uint32"));
    }
    return absl::OkStatus();
  }

  absl::Status CheckSingular(Json& v, const pb::FieldDescriptor* f,
                             const std::string& path) {
    if (v.is_null()) return absl::OkStatus();
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_MESSAGE: {
        const pb::Descriptor* md = f->message_type();
        if (md->full_name() == "sweepd.v1.Value" && v.is_primitive()) {
          Json wrapped = Json::object();
          if (v.is_boolean()) {
            wrapped["bool_value"] = v;
          } else if (v.is_number_integer()) {
            wrapped["int_value"] = v;
          } else if (v.is_number_float()) {
            wrapped["double_value"] = v;
          } else {
            wrapped["string_value"] = v;
          }
          v = std::move(wrapped);
        } else if (md->full_name() == "sweepd.v1.LayerSet" &&
                   (v.is_string() || v.is_number_integer())) {
          Json wrapped = Json::object();
          wrapped["layers"] = v.is_string() ? v.get<std::string>() : v.dump();
          v = std::move(wrapped);
        }
        return CheckMessage(v, md, path);
      }
      case pb::FieldDescriptor::CPPTYPE_STRING:
        if (v.is_string()) return absl::OkStatus();
        if (v.is_number_integer()) {
          v = v.dump();
          return absl::OkStatus();
        }
        return Mismatch(path, "a string", v);
      case pb::FieldDescriptor::CPPTYPE_INT32:
      case pb::FieldDescriptor::CPPTYPE_INT64:
      case pb::FieldDescriptor::CPPTYPE_UINT32:
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        return CheckInteger(v, f, path);
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        if (v.is_number()) return absl::OkStatus();
        if (v.is_string() &&
            (v == "NaN" || v == "Infinity" || v == "-Infinity")) {
          return absl::OkStatus();
        }
        return Mismatch(path, "a number", v);
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        if (v.is_boolean()) return absl::OkStatus();
        return Mismatch(path, "true or false", v);
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const pb::EnumDescriptor* e = f->enum_type();
        if (v.is_number_integer()) return absl::OkStatus();
        if (v.is_string() &&
            e->FindValueByName(v.get<std::string>()) != nullptr) {
          return absl::OkStatus();
        }
        std::vector<std::string> names;
        for (int i = 0; i < e->value_count(); ++i)
          names.push_back(e->value(i)->name());
        return Mismatch(path,
                        absl::StrCat("one of ", absl::StrJoin(names, ", ")), v);
      }
    }
    return absl::OkStatus();
  }

  const std::string& source_;
  const MarkMap* marks_;
};

}  // namespace

absl::StatusOr<sweepd::v1::SweepSpec> ParseSweepSpec(
    const std::string& text, SpecFormat format, const std::string& source) {
  // JSON text is UTF-8: the YAML -> JSON conversion would otherwise throw on
  // the first invalid byte (nlohmann type_error), far from where it is.
  RETURN_IF_ERROR(CheckUtf8(text, source));
  if (format == SpecFormat::kAuto) {
    const size_t first = text.find_first_not_of(" \t\r\n");
    format = first != std::string::npos && text[first] == '{'
                 ? SpecFormat::kJson
                 : SpecFormat::kYaml;
  }
  MarkMap marks;
  Json doc;
  if (format == SpecFormat::kJson) {
    ASSIGN_OR_RETURN(doc, ParseJson(text, source));
  } else {
    ASSIGN_OR_RETURN(doc, ParseYaml(text, source, &marks));
  }
  if (doc.is_null())
    return absl::InvalidArgumentError(absl::StrCat(source, ": empty spec"));
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": the spec must be a mapping of fields, got ", TypeName(doc)));
  }
  SpecChecker checker(source, &marks);
  RETURN_IF_ERROR(
      checker.CheckMessage(doc, sweepd::v1::SweepSpec::descriptor(), ""));

  sweepd::v1::SweepSpec spec;
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  std::string json;
  try {
    json = doc.dump();
  } catch (const Json::exception& e) {  // not expected after CheckUtf8
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
  const auto status = pb::util::JsonStringToMessage(json, &spec, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", status.message().as_string()));
  }
  return spec;
}

absl::StatusOr<sweepd::v1::SweepSpec> LoadSweepSpecFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat("spec file not found: ", path));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad())
    return absl::DataLossError(absl::StrCat("error reading spec file ", path));
  const std::string lower = absl::AsciiStrToLower(path);
  SpecFormat format = SpecFormat::kAuto;
  if (absl::EndsWith(lower, ".yaml") || absl::EndsWith(lower, ".yml"))
    format = SpecFormat::kYaml;
  if (absl::EndsWith(lower, ".json")) format = SpecFormat::kJson;
  return ParseSweepSpec(buf.str(), format, path);
}

}  // namespace sweepd
