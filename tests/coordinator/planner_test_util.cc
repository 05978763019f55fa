#include "tests/coordinator/planner_test_util.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>

#include "absl/strings/str_cat.h"

namespace sweepd::planner_test {

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/planner_test.XXXXXX";
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  return tmpl;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

std::string Safetensors(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

void WriteModel(const std::string& dir, int layers, int heads, bool nested,
                const std::string& header, const std::string& data) {
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << dir;
  const std::string counts =
      absl::StrCat("{\"num_hidden_layers\": ", layers,
                   ", \"num_attention_heads\": ", heads, "}");
  WriteFile(dir + "/config.json",
            nested
                ? absl::StrCat("{\"model_type\": \"gemma4\", \"text_config\": ",
                               counts, "}")
                : counts);
  WriteFile(dir + "/model.safetensors", Safetensors(header, data));
}

}  // namespace sweepd::planner_test
