#include "worker/jobs/dataset.h"

#include <unistd.h>

#include <fstream>
#include <string>

#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

std::string WriteTemp(const std::string& name, const std::string& content) {
  const std::string dir =
      ::testing::TempDir() + "/jobs_dataset_test_" + std::to_string(getpid());
  const absl::Status made = MakeDirs(dir);
  EXPECT_TRUE(made.ok()) << made;
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

TEST(DatasetTest, TextFileSplitsAtBlankLines) {
  const std::string path = WriteTemp(
      "a.txt",
      "\n\nfirst line\nsecond line\n\n  \t\nthird\r\n\r\n\n\nfourth\n");
  auto records = ReadRecords(path, 0);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0].text, "first line\nsecond line");
  EXPECT_EQ((*records)[0].line, 3);
  EXPECT_EQ((*records)[1].text, "third");
  EXPECT_EQ((*records)[1].line, 7);
  EXPECT_EQ((*records)[2].text, "fourth");
  EXPECT_EQ((*records)[2].category, "");
}

// The three ways a plain-text file becomes documents (docs/JOBS.md,
// "Documents"), on the wikitext-like file of the docs' worked example.
TEST(DatasetTest, TextSplitParagraphLineFile) {
  const std::string content =
      " = Title = \n\n Some text .\n More text .\n\n = = Section = = \n";
  const std::string path = WriteTemp("w.txt", content);
  auto paragraphs = ReadRecords(path, 0, TextSplit::kParagraph);
  ASSERT_TRUE(paragraphs.ok()) << paragraphs.status();
  ASSERT_EQ(paragraphs->size(), 3u);
  EXPECT_EQ((*paragraphs)[1].text, " Some text .\n More text .");
  auto lines = ReadRecords(path, 0, TextSplit::kLine);
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 4u);
  EXPECT_EQ((*lines)[1].text, " Some text .");
  EXPECT_EQ((*lines)[1].line, 3);
  EXPECT_EQ((*lines)[3].text, " = = Section = = ");
  auto file = ReadRecords(path, 0, TextSplit::kFile);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->size(), 1u);
  EXPECT_EQ((*file)[0].text, content);  // byte for byte, trailing newline kept

  auto jsonl = ReadRecords(WriteTemp("s.jsonl", "{\"text\": \"a\"}\n"), 0,
                           TextSplit::kFile);
  EXPECT_EQ(jsonl.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(jsonl.status().message()), HasSubstr("plain-text"));
  EXPECT_EQ(*ParseTextSplit("", "f"), TextSplit::kParagraph);
  EXPECT_EQ(*ParseTextSplit("line", "f"), TextSplit::kLine);
  EXPECT_THAT(
      std::string(ParseTextSplit("words", "ds.split").status().message()),
      HasSubstr("ds.split"));
}

TEST(DatasetTest, MaxRecordsCaps) {
  const std::string path = WriteTemp("b.txt", "a\n\nb\n\nc\n\nd\n");
  auto records = ReadRecords(path, 2);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[1].text, "b");
}

TEST(DatasetTest, JsonlFields) {
  const std::string path = WriteTemp(
      "c.jsonl",
      R"({"text": "x y", "category": "math", "prompt": "x", "target": " y"})"
      "\n\n"
      R"({"text": "plain"})"
      "\n"
      R"({"prompt": "only a prompt", "target": "t", "extra": 3})"
      "\n");
  auto records = ReadRecords(path, 0);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0].text, "x y");
  EXPECT_EQ((*records)[0].category, "math");
  EXPECT_EQ((*records)[0].prompt, "x");
  EXPECT_EQ((*records)[0].target, " y");
  EXPECT_EQ((*records)[1].text, "plain");
  EXPECT_EQ((*records)[1].line, 3);
  EXPECT_EQ((*records)[2].prompt, "only a prompt");
  EXPECT_EQ((*records)[2].text, "");
}

TEST(DatasetTest, BadJsonLineNamesFileAndLine) {
  const std::string path =
      WriteTemp("d.jsonl", "{\"text\": \"ok\"}\n{\"text\": oops}\n");
  auto records = ReadRecords(path, 0);
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(records.status().message(), HasSubstr(path + ":2"));
  EXPECT_THAT(records.status().message(), HasSubstr("not a JSON object"));
}

TEST(DatasetTest, JsonlFieldErrors) {
  auto r1 = ReadRecords(WriteTemp("e.jsonl", "{\"text\": 5}\n"), 0);
  ASSERT_FALSE(r1.ok());
  EXPECT_EQ(r1.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r1.status().message(), HasSubstr("e.jsonl:1"));
  EXPECT_THAT(r1.status().message(), HasSubstr("\"text\" must be a string"));
  auto r2 = ReadRecords(WriteTemp("f.jsonl", "{\"category\": \"a\"}\n"), 0);
  ASSERT_FALSE(r2.ok());
  EXPECT_THAT(r2.status().message(), HasSubstr("needs \"text\" or \"prompt\""));
  auto r3 = ReadRecords(
      WriteTemp("g.jsonl", "{\"text\": \"a\", \"category\": \"all\"}\n"), 0);
  ASSERT_FALSE(r3.ok());
  EXPECT_THAT(r3.status().message(), HasSubstr("reserved"));
  auto r4 = ReadRecords(WriteTemp("h.jsonl", "[1, 2]\n"), 0);
  ASSERT_FALSE(r4.ok());
  EXPECT_THAT(r4.status().message(), HasSubstr("h.jsonl:1: not a JSON object"));
}

TEST(DatasetTest, MissingFileIsInvalidArgumentNamingIt) {
  auto records = ReadRecords("/nonexistent/dir/corpus.txt", 0);
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(records.status().message(),
              HasSubstr("/nonexistent/dir/corpus.txt"));
}

TEST(DatasetTest, ShardRangesAreContiguousAndCoverEverything) {
  for (int64_t n : {0, 1, 7, 10, 101}) {
    for (int shards : {1, 2, 3, 4, 11}) {
      int64_t expect_begin = 0;
      for (int s = 0; s < shards; ++s) {
        auto [b, e] = ShardRange(n, s, shards);
        EXPECT_EQ(b, expect_begin) << n << " " << s << "/" << shards;
        EXPECT_LE(b, e);
        EXPECT_EQ(b, n * s / shards);
        expect_begin = e;
      }
      EXPECT_EQ(expect_begin, n);
    }
  }
}

TEST(DatasetTest, ReadShardTakesItsSlice) {
  const std::string path =
      WriteTemp("s.txt", "r0\n\nr1\n\nr2\n\nr3\n\nr4\n\nr5\n\nr6\n");
  DatasetShardRef ref;
  ref.path = path;
  ref.num_shards = 3;
  ref.shard_index = 1;  // records [7/3, 14/3) = [2, 4)
  auto shard = ReadShard(ref);
  ASSERT_TRUE(shard.ok()) << shard.status();
  ASSERT_EQ(shard->size(), 2u);
  EXPECT_EQ((*shard)[0].text, "r2");
  EXPECT_EQ((*shard)[1].text, "r3");
  ref.max_records = 3;  // records r0..r2; shard 1 = [1, 2)
  shard = ReadShard(ref);
  ASSERT_TRUE(shard.ok()) << shard.status();
  ASSERT_EQ(shard->size(), 1u);
  EXPECT_EQ((*shard)[0].text, "r1");
  ref.shard_index = 3;
  shard = ReadShard(ref);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shard.status().message(), HasSubstr("data.shard_index 3"));
}

}  // namespace
}  // namespace sweepd
