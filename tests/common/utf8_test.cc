#include "common/utf8.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

TEST(Utf8Test, AcceptsAsciiAndMultibyteText) {
  EXPECT_EQ(FindInvalidUtf8(""), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("plain ascii\n"), std::nullopt);
  // é (2 bytes), € (3), 𝄞 (4), U+10FFFF (the largest code point).
  EXPECT_EQ(FindInvalidUtf8("\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e "
                            "\xf4\x8f\xbf\xbf"),
            std::nullopt);
}

TEST(Utf8Test, FindsTheFirstInvalidByte) {
  EXPECT_THAT(FindInvalidUtf8("ab\xff"), Optional(2u));        // never valid
  EXPECT_THAT(FindInvalidUtf8("\xc3"), Optional(0u));          // truncated
  EXPECT_THAT(FindInvalidUtf8("\xc0\xaf"), Optional(0u));      // overlong '/'
  EXPECT_THAT(FindInvalidUtf8("\xe0\x80\xaf"), Optional(0u));  // overlong
  EXPECT_THAT(FindInvalidUtf8("\xed\xa0\x80"), Optional(0u));  // surrogate
  EXPECT_THAT(FindInvalidUtf8("\xf4\x90\x80\x80"), Optional(0u));  // > 10FFFF
  EXPECT_THAT(FindInvalidUtf8("x\xe2\x82"), Optional(1u));  // cut 3-byte form
  EXPECT_THAT(FindInvalidUtf8("\xc3\xa9\x80"), Optional(2u));  // lone tail
}

TEST(Utf8Test, CheckNamesTheByteLineAndColumn) {
  EXPECT_TRUE(CheckUtf8("ok", "name").ok());
  const absl::Status s = CheckUtf8("a: 1\nname: x\xfey\n", "sweep.yaml");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("sweep.yaml is not valid UTF-8"));
  EXPECT_THAT(s.message(), HasSubstr("byte 0xfe at line 2, column 8"));
}

}  // namespace
}  // namespace sweepd
