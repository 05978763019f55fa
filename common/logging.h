// Minimal leveled logging to stderr (abseil 20220623 has no absl/log): one line
// per message with UTC time, level, file:line, as text (default) or as a JSON
// object per line (SetLogFormat(LogFormat::kJson), `--log-format json`; keys
// ts, level, file, line, msg). Thread-safe (each line is written with one
// fwrite; level and format are atomics). SWEEPD_CHECK is for bugs in our own
// code only, never for outside input (docs/STYLE.md).
#ifndef SWEEPD_COMMON_LOGGING_H_
#define SWEEPD_COMMON_LOGGING_H_

#include <sstream>
#include <string>

namespace sweepd {

enum class LogLevel {
  kDebug = 0,
  kInfo = 1,
  kWarning = 2,
  kError = 3,
  kFatal = 4
};

// Messages below this level are dropped. Default kInfo;
// SWEEPD_LOG_LEVEL=debug|info|warning|error.
LogLevel MinLogLevel();
void SetMinLogLevel(LogLevel level);

// How lines are written. Default kText; SWEEPD_LOG_FORMAT=json|text sets the
// start value.
enum class LogFormat { kText = 0, kJson = 1 };
LogFormat CurrentLogFormat();
void SetLogFormat(LogFormat format);
// "text" | "json" -> the format; false for anything else.
bool ParseLogFormat(const std::string& name, LogFormat* format);

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();  // writes the line; aborts for kFatal
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  const char* file_;  // base name, static storage
  int line_;
  std::ostringstream stream_;
};

struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace sweepd

#define SWEEPD_LOG_LEVEL_DEBUG ::sweepd::LogLevel::kDebug
#define SWEEPD_LOG_LEVEL_INFO ::sweepd::LogLevel::kInfo
#define SWEEPD_LOG_LEVEL_WARNING ::sweepd::LogLevel::kWarning
#define SWEEPD_LOG_LEVEL_ERROR ::sweepd::LogLevel::kError
#define SWEEPD_LOG_LEVEL_FATAL ::sweepd::LogLevel::kFatal

#define SWEEPD_LOG(level)                                                      \
  !(SWEEPD_LOG_LEVEL_##level >= ::sweepd::MinLogLevel())                       \
      ? (void)0                                                                \
      : ::sweepd::LogVoidify() &                                               \
            ::sweepd::LogMessage(SWEEPD_LOG_LEVEL_##level, __FILE__, __LINE__) \
                .stream()

#define SWEEPD_CHECK(cond)                                                \
  (cond) ? (void)0                                                        \
         : ::sweepd::LogVoidify() &                                       \
               ::sweepd::LogMessage(::sweepd::LogLevel::kFatal, __FILE__, \
                                    __LINE__)                             \
                       .stream()                                          \
                   << "Check failed: " #cond " "

#endif  // SWEEPD_COMMON_LOGGING_H_
