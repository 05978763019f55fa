// Tests of the shard rewriter (worker/calib/shard_rewriter.h): the output is
// the base with the replaced tensors swapped in, byte for byte, on the
// copy_file_range path and the pwrite path; every digest taken while writing
// equals SHA-256 of the files and tensors read back; the model fingerprint
// built from them equals a full read; bad requests and a base file that
// changed give errors naming what is wrong.
#include "worker/calib/shard_rewriter.h"

#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/file_digest_cache.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/model_fingerprint.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sweepd::calib {
namespace {

using ::sweepd::testing::IsOk;
using ::sweepd::testing::StatusIs;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string NewTempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/shard_rewriter_test_" +
                    std::to_string(getpid()) + "_" + name;
  EXPECT_THAT(RemoveAll(dir), IsOk());
  EXPECT_THAT(MakeDirs(dir), IsOk());
  return dir;
}

// `n` pseudo-random bytes.
std::string Bytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

class ShardRewriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = NewTempDir("base");
    // Three shards of a few tensors each (U8, sizes from 0 to ~300 KB).
    SafetensorsWriter w;
    const std::vector<std::pair<std::string, size_t>> tensors = {
        {"a.weight", 300000}, {"b.weight", 17},     {"c.weight", 0},
        {"d.weight", 250000}, {"e.weight", 120001}, {"f.weight", 4096},
        {"g.weight", 200000}, {"h.weight", 64}};
    uint32_t seed = 1;
    for (const auto& [name, n] : tensors) {
      const std::string v = Bytes(n, seed++);
      ASSERT_THAT(w.Add(name, StDtype::kU8, {static_cast<int64_t>(n)}, v.data(),
                        v.size()),
                  IsOk());
    }
    ASSERT_THAT(w.WriteCheckpoint(base_, 320000), IsOk());
    std::ofstream(base_ + "/config.json") << "{\"x\": 1}";
    auto ckpt = Checkpoint::Open(base_);
    ASSERT_THAT(ckpt, IsOk());
    ckpt_ = *std::move(ckpt);
    ASSERT_GE(ckpt_->files().size(), 3u);
  }
  void TearDown() override { EXPECT_THAT(RemoveAll(base_), IsOk()); }

  ShardRewriteRequest Request(const std::string& out) {
    ShardRewriteRequest r;
    for (const auto& f : ckpt_->files()) {
      r.base_files.push_back(f.get());
      auto id = StatFileIdentity(f->path());
      EXPECT_THAT(id, IsOk());
      r.base_identities.push_back(*id);
    }
    r.replaced = &replaced_;
    r.out_dir = out;
    r.base_file_digests = true;
    return r;
  }

  // A replacement of `name`'s bytes.
  void Replace(const std::string& name, uint32_t seed) {
    const TensorView* t = ckpt_->Find(name);
    ASSERT_NE(t, nullptr) << name;
    replaced_[name] = Bytes(t->nbytes, seed);
  }

  // What the output file for `base_file` must hold.
  std::string Expected(const SafetensorsFile& base_file) {
    std::string bytes = ReadFile(base_file.path());
    const size_t data = 8 + base_file.header().size();
    const uint8_t* start = base_file.tensors().front().data;
    for (const TensorView& t : base_file.tensors()) {
      auto r = replaced_.find(t.name);
      if (r == replaced_.end()) continue;
      bytes.replace(data + (t.data - start), t.nbytes, r->second);
    }
    return bytes;
  }

  std::string base_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::map<std::string, std::string> replaced_;
};

TEST_F(ShardRewriterTest, OutputAndDigestsMatchAFreshRead) {
  // In the first shard after an unchanged tensor (the base digest forks off
  // there), one in a later shard; one shard keeps every tensor.
  Replace("b.weight", 100);
  Replace("g.weight", 101);
  for (const bool copy_file_range : {true, false}) {
    for (const int threads : {1, 3}) {
      SCOPED_TRACE(::testing::Message() << "copy_file_range " << copy_file_range
                                        << " threads " << threads);
      const std::string out = NewTempDir("out");
      ShardRewriteRequest req = Request(out);
      req.use_copy_file_range = copy_file_range;
      req.threads = threads;
      auto r = RewriteShards(req);
      ASSERT_THAT(r, IsOk());
      if (!copy_file_range) EXPECT_FALSE(r->used_copy_file_range);
      ASSERT_EQ(r->files.size(), ckpt_->files().size());
      int unchanged_files = 0;
      for (size_t f = 0; f < r->files.size(); ++f) {
        const SafetensorsFile& base_file = *ckpt_->files()[f];
        const RewrittenShard& w = r->files[f];
        EXPECT_EQ(w.name, BaseName(base_file.path()));
        const std::string path = JoinPath(out, w.name);
        const std::string got = ReadFile(path);
        EXPECT_TRUE(got == Expected(base_file)) << w.name;
        EXPECT_EQ(w.size, got.size());
        EXPECT_EQ(w.sha256, Sha256Hex(got));
        EXPECT_EQ(w.base_sha256, Sha256Hex(ReadFile(base_file.path())));
        unchanged_files += w.sha256 == w.base_sha256;
        EXPECT_EQ(w.identity, *StatFileIdentity(path));
        // Tensor digests, from the output read back.
        auto written = SafetensorsFile::Open(path);
        ASSERT_THAT(written, IsOk());
        ASSERT_EQ(w.tensor_sha256.size(), (*written)->tensors().size());
        for (size_t i = 0; i < w.tensor_sha256.size(); ++i) {
          const TensorView& t = (*written)->tensors()[i];
          EXPECT_EQ(w.tensor_sha256[i],
                    Sha256Hex(absl::string_view(
                        reinterpret_cast<const char*>(t.data), t.nbytes)))
              << t.name;
        }
      }
      EXPECT_EQ(unchanged_files, static_cast<int>(r->files.size()) - 2);
      ASSERT_EQ(r->replaced_base_sha256.size(), 2u);
      for (const auto& [name, digest] : r->replaced_base_sha256) {
        const TensorView* t = ckpt_->Find(name);
        EXPECT_EQ(digest,
                  Sha256Hex(absl::string_view(
                      reinterpret_cast<const char*>(t->data), t->nbytes)));
      }
      // The fingerprint from the digests taken while writing equals a full
      // read of the written files.
      ASSERT_THAT(CopyFile(base_ + "/config.json", out + "/config.json"),
                  IsOk());
      ModelFingerprintOptions known;
      for (const RewrittenShard& w : r->files) {
        known.known_digests[w.name] = {w.identity, w.sha256};
      }
      auto fast = FingerprintModelDir(out, known);
      auto full = FingerprintModelDir(out);
      ASSERT_THAT(fast, IsOk());
      ASSERT_THAT(full, IsOk());
      EXPECT_EQ(fast->hex, full->hex);
      EXPECT_EQ(fast->files_hashed, 1);  // config.json
      EXPECT_EQ(full->files_hashed, full->files);
      EXPECT_THAT(RemoveAll(out), IsOk());
    }
  }
}

TEST_F(ShardRewriterTest, NoReplacementsCopiesTheBase) {
  const std::string out = NewTempDir("copy");
  ShardRewriteRequest req = Request(out);
  req.replaced = nullptr;
  auto r = RewriteShards(req);
  ASSERT_THAT(r, IsOk());
  for (size_t f = 0; f < r->files.size(); ++f) {
    const std::string& base_path = ckpt_->files()[f]->path();
    EXPECT_TRUE(ReadFile(JoinPath(out, r->files[f].name)) ==
                ReadFile(base_path));
    EXPECT_EQ(r->files[f].base_sha256, r->files[f].sha256);
  }
  EXPECT_TRUE(r->replaced_base_sha256.empty());
  EXPECT_THAT(RemoveAll(out), IsOk());
}

TEST_F(ShardRewriterTest, Errors) {
  const std::string out = NewTempDir("errors");
  replaced_["b.weight"] = "too short";
  EXPECT_THAT(RewriteShards(Request(out)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("replacement of tensor 'b.weight' has 9 "
                                 "bytes, the tensor 17")));
  replaced_.clear();
  replaced_["nope.weight"] = "x";
  EXPECT_THAT(
      RewriteShards(Request(out)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("no base file holds the replaced tensor 'nope")));
  replaced_.clear();
  // A base file that is no longer the one mapped (another inode).
  ShardRewriteRequest req = Request(out);
  req.base_identities[1].inode += 1;
  EXPECT_THAT(RewriteShards(req),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("changed while it was being materialized")));
  req = Request(out);
  req.base_identities.pop_back();
  EXPECT_THAT(RewriteShards(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("base identities for")));
  EXPECT_THAT(RemoveAll(out), IsOk());
}

}  // namespace
}  // namespace sweepd::calib
