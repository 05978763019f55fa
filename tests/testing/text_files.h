// Test helpers: write and read a whole file as text (binary mode, no
// translation). Header-only; thread-compatible.
#ifndef SWEEPD_TESTS_TESTING_TEXT_FILES_H_
#define SWEEPD_TESTS_TESTING_TEXT_FILES_H_

#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace sweepd::testing {

// Replaces `path` with `text`; a failure to open is a test failure.
inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(out) << path;
  out << text;
}

// The whole content of `path` ("" if it cannot be read).
inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace sweepd::testing

#endif  // SWEEPD_TESTS_TESTING_TEXT_FILES_H_
