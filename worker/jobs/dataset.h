// Text datasets for the engine-backed jobs (eval, probe): reading a `.txt` file
// (records separated by blank lines) or a `.jsonl` file (one JSON object per
// line: `text`, optional `category`, `prompt`, `target`, `reference` or
// `answer`, `id`), capping the record count and cutting the records into
// contiguous shards. See docs/JOBS.md.
//
// Plain C++ (no libtorch, no protobuf). Stateless free functions and value
// types; thread-safe.
#ifndef SWEEPD_WORKER_JOBS_DATASET_H_
#define SWEEPD_WORKER_JOBS_DATASET_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace sweepd {

// One record of a dataset.
struct TextRecord {
  // Text scored by eval. For a `.txt` file: the paragraph's lines joined by
  // '\n'.
  std::string text;
  // JSONL `category`; empty when absent (the record then counts only in "all").
  std::string category;
  // JSONL `prompt` and `target` (probe); empty when absent.
  std::string prompt;
  std::string target;
  // JSONL `reference` (or `answer`) and `id` (generate); empty when absent.
  std::string reference;
  std::string id;
  // 1-based line of the file where the record starts (for error messages).
  int64_t line = 0;
};

// How a plain-text file becomes documents (DatasetRef.split; docs/JOBS.md has
// a worked example). JSONL files are always one record per line.
enum class TextSplit {
  // Blank-line separated paragraphs; each paragraph's lines joined by '\n',
  // line ends and blank lines dropped (the default).
  kParagraph,
  // Every non-blank line is a document (without its line end).
  kLine,
  // The whole file, byte for byte, is one document: the stream that
  // lm-evaluation-harness and the usual Hugging Face perplexity scripts window.
  kFile,
};
// "" and "paragraph" -> kParagraph, "line", "file"; INVALID_ARGUMENT naming
// `field` otherwise.
absl::StatusOr<TextSplit> ParseTextSplit(const std::string& name,
                                         const std::string& field);
const char* TextSplitName(TextSplit split);  // paragraph / line / file

// Which part of which file to read.
struct DatasetShardRef {
  std::string path;
  TextSplit split = TextSplit::kParagraph;
  // Records kept from the start of the file; 0 = all.
  int64_t max_records = 0;
  int shard_index = 0;
  int num_shards = 1;
};

// Reads every record of `path` (at most `max_records` when > 0). Files whose
// name ends in ".jsonl" are JSON lines; every other file is plain text, cut
// into documents by `split` (INVALID_ARGUMENT for a JSONL file with a split
// other than kParagraph, the default).
// INVALID_ARGUMENT naming the file (missing or unreadable) (and the line for
// JSONL: a line that is not a JSON object, a non-string field, a record with
// neither `text` nor `prompt`, or the reserved category "all").
absl::StatusOr<std::vector<TextRecord>> ReadRecords(
    const std::string& path, int64_t max_records,
    TextSplit split = TextSplit::kParagraph);

// The half-open record range [s·n/N, (s+1)·n/N) of shard s out of N.
std::pair<int64_t, int64_t> ShardRange(int64_t num_records, int shard_index,
                                       int num_shards);

// ReadRecords + ShardRange. INVALID_ARGUMENT for num_shards < 1 or a
// shard_index outside [0, num_shards).
absl::StatusOr<std::vector<TextRecord>> ReadShard(const DatasetShardRef& ref);

}  // namespace sweepd

#endif  // SWEEPD_WORKER_JOBS_DATASET_H_
