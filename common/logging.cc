#include "common/logging.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace sweepd {
namespace {

LogLevel LevelFromEnv() {
  const char* env = std::getenv("SWEEPD_LOG_LEVEL");
  if (env == nullptr) return LogLevel::kInfo;
  if (std::strcmp(env, "debug") == 0) return LogLevel::kDebug;
  if (std::strcmp(env, "warning") == 0) return LogLevel::kWarning;
  if (std::strcmp(env, "error") == 0) return LogLevel::kError;
  return LogLevel::kInfo;
}

std::atomic<int>& MinLevelStorage() {
  static std::atomic<int> level(static_cast<int>(LevelFromEnv()));
  return level;
}

LogFormat FormatFromEnv() {
  const char* env = std::getenv("SWEEPD_LOG_FORMAT");
  LogFormat format = LogFormat::kText;
  if (env != nullptr) ParseLogFormat(env, &format);
  return format;
}

std::atomic<int>& FormatStorage() {
  static std::atomic<int> format(static_cast<int>(FormatFromEnv()));
  return format;
}

const char* JsonLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
    case LogLevel::kFatal:
      return "fatal";
  }
  return "unknown";
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "D";
    case LogLevel::kInfo:
      return "I";
    case LogLevel::kWarning:
      return "W";
    case LogLevel::kError:
      return "E";
    case LogLevel::kFatal:
      return "F";
  }
  return "?";
}

}  // namespace

LogLevel MinLogLevel() {
  return static_cast<LogLevel>(MinLevelStorage().load());
}
void SetMinLogLevel(LogLevel level) {
  MinLevelStorage().store(static_cast<int>(level));
}

LogFormat CurrentLogFormat() {
  return static_cast<LogFormat>(FormatStorage().load());
}
void SetLogFormat(LogFormat format) {
  FormatStorage().store(static_cast<int>(format));
}

bool ParseLogFormat(const std::string& name, LogFormat* format) {
  if (name == "text") {
    *format = LogFormat::kText;
    return true;
  }
  if (name == "json") {
    *format = LogFormat::kJson;
    return true;
  }
  return false;
}

LogMessage::LogMessage(LogLevel level, const char* file, int line)
    : level_(level), file_(file), line_(line) {
  const char* base = std::strrchr(file, '/');
  file_ = base ? base + 1 : file;
  if (CurrentLogFormat() == LogFormat::kText) {
    stream_ << LevelName(level) << " "
            << absl::FormatTime("%H:%M:%E3S", absl::Now(), absl::UTCTimeZone())
            << " " << file_ << ":" << line << "] ";
  }
}

LogMessage::~LogMessage() {
  std::string line;
  if (CurrentLogFormat() == LogFormat::kJson) {
    nlohmann::json record;
    record["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone());
    record["level"] = JsonLevelName(level_);
    record["file"] = file_;
    record["line"] = line_;
    // Invalid UTF-8 in a message is replaced, never thrown: logging must not
    // fail.
    record["msg"] = stream_.str();
    line =
        record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
        "\n";
  } else {
    stream_ << "\n";
    line = stream_.str();
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
  if (level_ == LogLevel::kFatal) {
    std::fflush(stderr);
    std::abort();
  }
}

}  // namespace sweepd
