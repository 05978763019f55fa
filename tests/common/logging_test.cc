// common/logging: the text and JSON line formats.
#include "common/logging.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

using ::testing::HasSubstr;

class LoggingTest : public ::testing::Test {
 protected:
  void TearDown() override { SetLogFormat(LogFormat::kText); }
};

TEST_F(LoggingTest, ParseLogFormatKnowsTextAndJsonOnly) {
  LogFormat f = LogFormat::kText;
  EXPECT_TRUE(ParseLogFormat("json", &f));
  EXPECT_EQ(f, LogFormat::kJson);
  EXPECT_TRUE(ParseLogFormat("text", &f));
  EXPECT_EQ(f, LogFormat::kText);
  EXPECT_FALSE(ParseLogFormat("JSON lines", &f));
  EXPECT_EQ(f, LogFormat::kText);
}

TEST_F(LoggingTest, JsonFormatWritesOneParsableObjectPerLine) {
  SetLogFormat(LogFormat::kJson);
  ::testing::internal::CaptureStderr();
  SWEEPD_LOG(WARNING) << "lease " << 42 << " lost: \"quoted\"\nsecond line";
  const std::string out = ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  // The message's own newline is escaped: the record is one line.
  EXPECT_EQ(out.find('\n'), out.size() - 1);
  const nlohmann::json record = nlohmann::json::parse(out);
  EXPECT_EQ(record.at("level"), "warning");
  EXPECT_EQ(record.at("msg"), "lease 42 lost: \"quoted\"\nsecond line");
  EXPECT_EQ(record.at("file"), "logging_test.cc");
  EXPECT_GT(record.at("line").get<int>(), 0);
  EXPECT_THAT(record.at("ts").get<std::string>(), HasSubstr("T"));
}

TEST_F(LoggingTest, TextFormatKeepsTheClassicPrefix) {
  ::testing::internal::CaptureStderr();
  SWEEPD_LOG(INFO) << "hello";
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.rfind("I ", 0), 0u) << out;
  EXPECT_THAT(out, HasSubstr("logging_test.cc:"));
  EXPECT_THAT(out, HasSubstr("] hello\n"));
}

}  // namespace
}  // namespace sweepd
