#include "common/safetensors.h"

#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir =
        MakeTempDir(JoinPath(::testing::TempDir(), "safetensors_test."));
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
  }
  void TearDown() override { EXPECT_TRUE(RemoveAll(dir_).ok()); }

  std::string Path(const std::string& name) const {
    return JoinPath(dir_, name);
  }

  // Writes raw bytes: 8-byte LE `header_len` (defaults to the header's size),
  // header, data.
  std::string WriteRaw(const std::string& name, const std::string& header,
                       const std::string& data, int64_t header_len = -1) {
    const uint64_t len =
        header_len < 0 ? header.size() : static_cast<uint64_t>(header_len);
    std::string bytes;
    for (int i = 0; i < 8; ++i)
      bytes.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
    bytes += header;
    bytes += data;
    const std::string path = Path(name);
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  std::string dir_;
};

// Expects `s` to fail with `code` and a message naming the file and every
// `parts` entry.
void ExpectError(const absl::Status& s, absl::StatusCode code,
                 const std::string& file,
                 const std::vector<std::string>& parts) {
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(file));
  for (const std::string& p : parts)
    EXPECT_THAT(std::string(s.message()), HasSubstr(p));
}

absl::Status OpenStatus(const std::string& path) {
  return SafetensorsFile::Open(path).status();
}

template <typename T>
std::vector<T> Iota(size_t n, T start) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<T>(start + static_cast<T>(i));
  return v;
}

TEST_F(SafetensorsTest, DtypeNamesRoundTrip) {
  for (StDtype d : {StDtype::kBool, StDtype::kU8, StDtype::kI8, StDtype::kI16,
                    StDtype::kU16, StDtype::kF16, StDtype::kBF16, StDtype::kI32,
                    StDtype::kU32, StDtype::kF32, StDtype::kI64, StDtype::kU64,
                    StDtype::kF64}) {
    absl::StatusOr<StDtype> parsed = ParseStDtype(StDtypeName(d));
    ASSERT_TRUE(parsed.ok()) << StDtypeName(d);
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_EQ(StDtypeSize(StDtype::kBF16), 2u);
  EXPECT_EQ(StDtypeSize(StDtype::kF64), 8u);
  EXPECT_EQ(ParseStDtype("F8_E4M3").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SafetensorsTest, RoundTripAllDtypes) {
  SafetensorsWriter w;
  std::vector<uint8_t> b = {1, 0, 1};
  std::vector<uint8_t> u8 = {0, 7, 255, 3};
  std::vector<int8_t> i8 = {-128, -1, 0, 127};
  std::vector<int16_t> i16 = {-32768, 5, 32767};
  std::vector<uint16_t> u16 = {0, 1, 65535};
  std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x7c00};  // 1, -2, inf
  std::vector<uint16_t> bf16 = {FloatToBf16(1.5f), FloatToBf16(-3.0f)};
  std::vector<int32_t> i32 = Iota<int32_t>(6, -3);
  std::vector<uint32_t> u32 = {0u, 4000000000u};
  std::vector<float> f32 = {0.25f, -1.0f, 3.5f, 1e-20f, 7.0f, 8.0f};
  std::vector<int64_t> i64 = {std::numeric_limits<int64_t>::min(), 0, 42};
  std::vector<uint64_t> u64 = {std::numeric_limits<uint64_t>::max()};
  std::vector<double> f64 = {1.0 / 3.0, -2.5};
  ASSERT_TRUE(w.Add("bool", StDtype::kBool, {3}, b.data(), 3).ok());
  ASSERT_TRUE(w.Add("u8", StDtype::kU8, {2, 2}, u8.data(), 4).ok());
  ASSERT_TRUE(w.Add("i8", StDtype::kI8, {4}, i8.data(), 4).ok());
  ASSERT_TRUE(w.Add("i16", StDtype::kI16, {3}, i16.data(), 6).ok());
  ASSERT_TRUE(w.Add("u16", StDtype::kU16, {3}, u16.data(), 6).ok());
  ASSERT_TRUE(w.Add("f16", StDtype::kF16, {3}, f16.data(), 6).ok());
  ASSERT_TRUE(w.Add("bf16", StDtype::kBF16, {2, 1}, bf16.data(), 4).ok());
  ASSERT_TRUE(w.Add("i32", StDtype::kI32, {2, 3}, i32.data(), 24).ok());
  ASSERT_TRUE(w.Add("u32", StDtype::kU32, {2}, u32.data(), 8).ok());
  ASSERT_TRUE(w.Add("f32", StDtype::kF32, {3, 2}, f32.data(), 24).ok());
  ASSERT_TRUE(w.Add("i64", StDtype::kI64, {3}, i64.data(), 24).ok());
  ASSERT_TRUE(w.Add("u64", StDtype::kU64, {1}, u64.data(), 8).ok());
  ASSERT_TRUE(w.Add("f64", StDtype::kF64, {2}, f64.data(), 16).ok());
  ASSERT_TRUE(w.Add("scalar", StDtype::kF32, {}, f32.data(), 4).ok());
  ASSERT_TRUE(w.Add("empty", StDtype::kF32, {0, 5}, nullptr, 0).ok());
  w.SetMetadata("format", "pt");
  const std::string path = Path("all.safetensors");
  ASSERT_TRUE(w.WriteFile(path).ok());

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().size(), 15u);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  // Header: 8-byte aligned data start, keys sorted, valid JSON.
  EXPECT_EQ((8 + (*f)->header().size()) % 8, 0u);
  nlohmann::json header = nlohmann::json::parse((*f)->header());
  EXPECT_EQ(header["f32"]["dtype"], "F32");

  auto check = [&](const std::string& name, StDtype dtype,
                   std::vector<int64_t> shape, const void* data,
                   size_t nbytes) {
    const TensorView* t = (*f)->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, dtype) << name;
    EXPECT_EQ(t->shape, shape) << name;
    ASSERT_EQ(t->nbytes, nbytes) << name;
    if (nbytes > 0) {
      EXPECT_EQ(std::memcmp(t->data, data, nbytes), 0) << name;
    }
  };
  check("bool", StDtype::kBool, {3}, b.data(), 3);
  check("u8", StDtype::kU8, {2, 2}, u8.data(), 4);
  check("i8", StDtype::kI8, {4}, i8.data(), 4);
  check("i16", StDtype::kI16, {3}, i16.data(), 6);
  check("u16", StDtype::kU16, {3}, u16.data(), 6);
  check("f16", StDtype::kF16, {3}, f16.data(), 6);
  check("bf16", StDtype::kBF16, {2, 1}, bf16.data(), 4);
  check("i32", StDtype::kI32, {2, 3}, i32.data(), 24);
  check("u32", StDtype::kU32, {2}, u32.data(), 8);
  check("f32", StDtype::kF32, {3, 2}, f32.data(), 24);
  check("i64", StDtype::kI64, {3}, i64.data(), 24);
  check("u64", StDtype::kU64, {1}, u64.data(), 8);
  check("f64", StDtype::kF64, {2}, f64.data(), 16);
  check("scalar", StDtype::kF32, {}, f32.data(), 4);
  check("empty", StDtype::kF32, {0, 5}, nullptr, 0);
  EXPECT_EQ((*f)->Find("scalar")->numel(), 1);
  EXPECT_EQ((*f)->Find("empty")->numel(), 0);
  EXPECT_EQ((*f)->Find("missing"), nullptr);

  // Conversions.
  absl::StatusOr<std::vector<float>> fv = TensorToFloat(*(*f)->Find("f16"));
  ASSERT_TRUE(fv.ok());
  EXPECT_EQ((*fv)[0], 1.0f);
  EXPECT_EQ((*fv)[1], -2.0f);
  EXPECT_TRUE(std::isinf((*fv)[2]));
  fv = TensorToFloat(*(*f)->Find("bf16"));
  ASSERT_TRUE(fv.ok());
  EXPECT_THAT(*fv, ElementsAre(1.5f, -3.0f));
  absl::StatusOr<std::vector<int64_t>> iv = TensorToInt64(*(*f)->Find("i32"));
  ASSERT_TRUE(iv.ok());
  EXPECT_THAT(*iv, ElementsAre(-3, -2, -1, 0, 1, 2));
  absl::Status wrong = TensorToFloat(*(*f)->Find("i64")).status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong.message()), HasSubstr("i64"));
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  SafetensorsWriter w;
  float x[2] = {1, 2};
  ASSERT_TRUE(w.Add("a", StDtype::kF32, {2}, x, 8).ok());
  absl::Status dup = w.Add("a", StDtype::kF32, {2}, x, 8);
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(dup.message()), HasSubstr("'a'"));
  absl::Status size = w.Add("b", StDtype::kF32, {3}, x, 8);
  EXPECT_EQ(size.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(size.message()), HasSubstr("'b'"));
  EXPECT_EQ(w.Add("c", StDtype::kF32, {-1}, x, 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.Add("__metadata__", StDtype::kF32, {2}, x, 8).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  const std::string path = Path("nope.safetensors");
  ExpectError(OpenStatus(path), absl::StatusCode::kNotFound, path, {});
}

TEST_F(SafetensorsTest, ValidHandCraftedFileOpens) {
  // Written by hand (not by our writer) with unsorted keys and an unaligned
  // header.
  std::string data(12, '\0');
  const std::string path = WriteRaw(
      "ok.safetensors",
      R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
      R"("a":{"dtype":"I32","shape":[],"data_offsets":[0,4]},"__metadata__":{"k":"v"}})",
      data);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->tensors().size(), 2u);
  EXPECT_EQ((*f)->tensors()[0].name, "a");  // sorted by offset
  EXPECT_EQ((*f)->tensors()[1].name, "b");
  EXPECT_EQ((*f)->metadata().at("k"), "v");
}

TEST_F(SafetensorsTest, FileShorterThanLengthPrefix) {
  const std::string path = Path("short.safetensors");
  std::ofstream(path, std::ios::binary) << "abc";
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"8-byte"});
}

TEST_F(SafetensorsTest, HeaderLengthOverCap) {
  const std::string path = WriteRaw("cap.safetensors", "{}", "",
                                    static_cast<int64_t>(kMaxHeaderBytes) + 1);
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"exceeds the limit"});
}

TEST_F(SafetensorsTest, HeaderBeyondFile) {
  const std::string path = WriteRaw("beyond.safetensors", "{}", "", 1000);
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"past the end of the file"});
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  const std::string path = WriteRaw("notjson.safetensors", "{\"a\": [1, 2", "");
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"not valid JSON"});
}

TEST_F(SafetensorsTest, HeaderJsonArray) {
  const std::string path = WriteRaw("array.safetensors", "[1, 2, 3]", "");
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"not an object"});
}

TEST_F(SafetensorsTest, DuplicateNames) {
  const std::string path =
      WriteRaw("dup.safetensors",
               R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
               R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
               std::string(2, 'x'));
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'w'", "duplicate"});
}

TEST_F(SafetensorsTest, DuplicateFieldInsideEntry) {
  const std::string path = WriteRaw(
      "dupfield.safetensors",
      R"({"w":{"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]}})",
      "x");
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'dtype'", "duplicate"});
}

TEST_F(SafetensorsTest, UnsupportedDtype) {
  const std::string path = WriteRaw(
      "dtype.safetensors",
      R"({"w":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[0,1]}})", "x");
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'w'", "unsupported dtype 'F8_E5M2'"});
}

TEST_F(SafetensorsTest, NegativeShape) {
  const std::string path = WriteRaw(
      "neg.safetensors",
      R"({"w":{"dtype":"U8","shape":[-1,2],"data_offsets":[0,0]}})", "");
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'w'", "non-negative integers"});
}

TEST_F(SafetensorsTest, NonIntegerShape) {
  const std::string path = WriteRaw(
      "float.safetensors",
      R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", "x");
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'w'", "non-negative integers"});
}

TEST_F(SafetensorsTest, MissingField) {
  const std::string path = WriteRaw("nofield.safetensors",
                                    R"({"w":{"dtype":"U8","shape":[1]}})", "x");
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'w'", "data_offsets"});
}

TEST_F(SafetensorsTest, OffsetsOutsideDataSection) {
  const std::string path =
      WriteRaw("outside.safetensors",
               R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
               std::string(8, '\0'));
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'w'", "outside the data section of 8 bytes"});
}

TEST_F(SafetensorsTest, BeginAfterEnd) {
  const std::string path =
      WriteRaw("order.safetensors",
               R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})",
               std::string(4, '\0'));
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'w'", "begin 4 > end 0"});
}

TEST_F(SafetensorsTest, LengthNotShapeTimesSize) {
  const std::string path =
      WriteRaw("len.safetensors",
               R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
               std::string(8, '\0'));
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'w'", "byte length 8 != 12"});
}

TEST_F(SafetensorsTest, Overlap) {
  const std::string path =
      WriteRaw("overlap.safetensors",
               R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
               R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
               std::string(6, '\0'));
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'b'", "overlap tensor 'a'"});
}

TEST_F(SafetensorsTest, Hole) {
  const std::string path =
      WriteRaw("hole.safetensors",
               R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
               R"("b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
               std::string(6, '\0'));
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'b'", "hole of 2 bytes"});
}

TEST_F(SafetensorsTest, HoleAtStart) {
  const std::string path =
      WriteRaw("hole0.safetensors",
               R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
               std::string(4, '\0'));
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'a'", "hole of 2 bytes"});
}

TEST_F(SafetensorsTest, TrailingBytes) {
  const std::string path =
      WriteRaw("trailing.safetensors",
               R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
               std::string(5, '\0'));
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'a'", "3 trailing bytes"});
}

TEST_F(SafetensorsTest, BadMetadata) {
  const std::string path =
      WriteRaw("meta.safetensors", R"({"__metadata__":{"k":1}})", "");
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"__metadata__", "'k'"});
}

TEST_F(SafetensorsTest, ShapeOverflow) {
  const std::string path = WriteRaw(
      "overflow.safetensors",
      R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})",
      "");
  ExpectError(OpenStatus(path), absl::StatusCode::kInvalidArgument, path,
              {"'w'", "overflow"});
}

TEST_F(SafetensorsTest, ParseHeaderFromBytes) {
  std::string bytes(8, '\0');
  const std::string header =
      R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  bytes[0] = static_cast<char>(header.size());
  bytes += header + "z";
  std::vector<TensorView> tensors;
  std::map<std::string, std::string> metadata;
  ASSERT_TRUE(
      SafetensorsFile::ParseHeader(bytes, "mem", &tensors, &metadata).ok());
  ASSERT_EQ(tensors.size(), 1u);
  EXPECT_EQ(*tensors[0].data, 'z');
}

TEST_F(SafetensorsTest, ShardedCheckpointRoundTrip) {
  SafetensorsWriter w;
  std::vector<std::vector<float>> values;
  std::mt19937 rng(7);
  std::normal_distribution<float> dist;
  for (int i = 0; i < 10; ++i) {
    std::vector<float> v(64 + i);
    for (float& x : v) x = dist(rng);
    values.push_back(v);
    ASSERT_TRUE(w.Add(absl::StrCat("layer.", i, ".weight"), StDtype::kF32,
                      {static_cast<int64_t>(v.size())}, v.data(), v.size() * 4)
                    .ok());
  }
  const std::string dir = Path("ckpt");
  ASSERT_TRUE(w.WriteCheckpoint(dir, 700).ok());
  ASSERT_TRUE(PathExists(JoinPath(dir, "model.safetensors.index.json")));
  EXPECT_FALSE(PathExists(JoinPath(dir, "model.safetensors")));

  std::ifstream in(JoinPath(dir, "model.safetensors.index.json"));
  nlohmann::json index = nlohmann::json::parse(in);
  uint64_t expected_total = 0;
  for (const auto& v : values) expected_total += v.size() * 4;
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), expected_total);

  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_GT((*ckpt)->files().size(), 1u);
  EXPECT_EQ((*ckpt)->names().size(), 10u);
  for (int i = 0; i < 10; ++i) {
    const std::string name = absl::StrCat("layer.", i, ".weight");
    absl::StatusOr<const TensorView*> t = (*ckpt)->Get(name);
    ASSERT_TRUE(t.ok()) << t.status();
    absl::StatusOr<std::vector<float>> got = TensorToFloat(**t);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, values[i]) << name;
    // The tensor is served from the shard the index names.
    const std::string shard = index["weight_map"][name].get<std::string>();
    bool found_in_shard = false;
    for (const auto& file : (*ckpt)->files()) {
      if (BaseName(file->path()) == shard) {
        found_in_shard = file->Find(name) == *t;
      }
    }
    EXPECT_TRUE(found_in_shard) << name << " in " << shard;
  }
  absl::Status missing = (*ckpt)->Get("nope").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("'nope'"));
  EXPECT_THAT(std::string(missing.message()), HasSubstr(dir));
}

TEST_F(SafetensorsTest, SingleShardCheckpointWritesModelSafetensors) {
  SafetensorsWriter w;
  float x[3] = {1, 2, 3};
  ASSERT_TRUE(w.Add("w", StDtype::kF32, {3}, x, 12).ok());
  const std::string dir = Path("single");
  ASSERT_TRUE(w.WriteCheckpoint(dir, 1 << 20).ok());
  EXPECT_TRUE(PathExists(JoinPath(dir, "model.safetensors")));
  EXPECT_FALSE(PathExists(JoinPath(dir, "model.safetensors.index.json")));
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_THAT((*ckpt)->names(), ElementsAre("w"));
}

TEST_F(SafetensorsTest, CheckpointDirectoryMissingOrEmpty) {
  ExpectError(Checkpoint::Open(Path("absent")).status(),
              absl::StatusCode::kNotFound, Path("absent"), {});
  ASSERT_TRUE(MakeDirs(Path("empty")).ok());
  ExpectError(Checkpoint::Open(Path("empty")).status(),
              absl::StatusCode::kNotFound, Path("empty"),
              {"model.safetensors"});
}

TEST_F(SafetensorsTest, IndexNamingMissingFile) {
  SafetensorsWriter w;
  float x[2] = {1, 2};
  ASSERT_TRUE(w.Add("a", StDtype::kF32, {2}, x, 8).ok());
  const std::string dir = Path("idx");
  ASSERT_TRUE(MakeDirs(dir).ok());
  ASSERT_TRUE(w.WriteFile(JoinPath(dir, "part1.safetensors")).ok());
  std::ofstream(JoinPath(dir, "model.safetensors.index.json"))
      << R"({"metadata":{},"weight_map":{"a":"part1.safetensors","b":"part2.safetensors"}})";
  ExpectError(Checkpoint::Open(dir).status(), absl::StatusCode::kNotFound,
              "part2.safetensors", {"'b'", "model.safetensors.index.json"});
}

TEST_F(SafetensorsTest, IndexNameAbsentFromItsFile) {
  SafetensorsWriter w;
  float x[2] = {1, 2};
  ASSERT_TRUE(w.Add("a", StDtype::kF32, {2}, x, 8).ok());
  const std::string dir = Path("idx2");
  ASSERT_TRUE(MakeDirs(dir).ok());
  ASSERT_TRUE(w.WriteFile(JoinPath(dir, "part1.safetensors")).ok());
  std::ofstream(JoinPath(dir, "model.safetensors.index.json"))
      << R"({"weight_map":{"a":"part1.safetensors","ghost":"part1.safetensors"}})";
  ExpectError(Checkpoint::Open(dir).status(),
              absl::StatusCode::kInvalidArgument, "part1.safetensors",
              {"'ghost'", "does not contain"});
}

TEST_F(SafetensorsTest, IndexMissingTensorListedInShard) {
  SafetensorsWriter w;
  float x[2] = {1, 2};
  ASSERT_TRUE(w.Add("a", StDtype::kF32, {2}, x, 8).ok());
  ASSERT_TRUE(w.Add("extra", StDtype::kF32, {2}, x, 8).ok());
  const std::string dir = Path("idx3");
  ASSERT_TRUE(MakeDirs(dir).ok());
  ASSERT_TRUE(w.WriteFile(JoinPath(dir, "part1.safetensors")).ok());
  std::ofstream(JoinPath(dir, "model.safetensors.index.json"))
      << R"({"weight_map":{"a":"part1.safetensors"}})";
  ExpectError(Checkpoint::Open(dir).status(),
              absl::StatusCode::kInvalidArgument, "part1.safetensors",
              {"'extra'", "does not list it"});
}

TEST_F(SafetensorsTest, IndexRejectsPathsOutsideDirectory) {
  const std::string dir = Path("idx4");
  ASSERT_TRUE(MakeDirs(dir).ok());
  std::ofstream(JoinPath(dir, "model.safetensors.index.json"))
      << R"({"weight_map":{"a":"../evil.safetensors"}})";
  ExpectError(Checkpoint::Open(dir).status(),
              absl::StatusCode::kInvalidArgument,
              "model.safetensors.index.json", {"'a'", "../evil.safetensors"});
}

TEST_F(SafetensorsTest, ShardWithBadHeaderNamesShard) {
  const std::string dir = Path("idx5");
  ASSERT_TRUE(MakeDirs(dir).ok());
  WriteRaw("idx5/part1.safetensors", "[]", "");
  std::ofstream(JoinPath(dir, "model.safetensors.index.json"))
      << R"({"weight_map":{"a":"part1.safetensors"}})";
  ExpectError(Checkpoint::Open(dir).status(),
              absl::StatusCode::kInvalidArgument, "part1.safetensors",
              {"not an object", "'a'"});
}

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
float FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

TEST(Bf16Test, ExactValuesRoundTrip) {
  for (float f : {0.0f, -0.0f, 1.0f, -2.5f, 65536.0f, 1.0f / 128.0f}) {
    EXPECT_EQ(Bits(Bf16ToFloat(FloatToBf16(f))), Bits(f)) << f;
  }
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(-0.0f), 0x8000);
}

TEST(Bf16Test, RoundsToNearestEven) {
  // 1.0 = 0x3f800000. Halfway between 0x3f80 and 0x3f81 -> even (0x3f80).
  EXPECT_EQ(FloatToBf16(FromBits(0x3f808000u)), 0x3f80);
  // Halfway between 0x3f81 and 0x3f82 -> even (0x3f82).
  EXPECT_EQ(FloatToBf16(FromBits(0x3f818000u)), 0x3f82);
  // Just above / below halfway.
  EXPECT_EQ(FloatToBf16(FromBits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(FloatToBf16(FromBits(0x3f807fffu)), 0x3f80);
  // Negative tie -> even magnitude.
  EXPECT_EQ(FloatToBf16(FromBits(0xbf818000u)), 0xbf82);
}

TEST(Bf16Test, InfinityAndOverflow) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToBf16(inf), 0x7f80);
  EXPECT_EQ(FloatToBf16(-inf), 0xff80);
  EXPECT_TRUE(std::isinf(Bf16ToFloat(0x7f80)));
  // The largest float rounds up to inf in bf16 (RNE), as torch does.
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7f80);
  // The largest finite bf16 stays finite.
  EXPECT_EQ(FloatToBf16(FromBits(0x7f7f0000u)), 0x7f7f);
}

TEST(Bf16Test, NaNStaysNaN) {
  const float qnan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(qnan))));
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(-qnan))));
  // A signalling NaN whose payload lies only in the low 16 bits must not become
  // inf.
  const float low_payload_nan = FromBits(0x7f800001u);
  ASSERT_TRUE(std::isnan(low_payload_nan));
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(low_payload_nan))));
  // Sign is preserved.
  EXPECT_EQ(FloatToBf16(FromBits(0xff800001u)) & 0x8000, 0x8000);
}

TEST(Bf16Test, SubnormalsRound) {
  // Smallest float subnormal rounds to +0 in bf16; a bf16 subnormal survives.
  EXPECT_EQ(FloatToBf16(FromBits(0x00000001u)), 0x0000);
  EXPECT_EQ(FloatToBf16(FromBits(0x00010000u)), 0x0001);
}

TEST(F16Test, Conversions) {
  EXPECT_EQ(F16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(F16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToFloat(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(F16ToFloat(0xfc00)));
  EXPECT_LT(F16ToFloat(0xfc00), 0.0f);
  EXPECT_TRUE(std::isnan(F16ToFloat(0x7e00)));
  EXPECT_TRUE(std::signbit(F16ToFloat(0x8000)));
}

}  // namespace
}  // namespace sweepd
