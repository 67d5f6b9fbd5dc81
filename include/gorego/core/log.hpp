#pragma once
/// Structured logging: one JSON object per line on stderr, with time, level, message,
/// `trace_id` and `span_id` when the thread is inside a traced operation, and fields.
/// Thread-safe; a line is written with one write(2) so lines never interleave.
///
///   log::info("listening", {{"addr", "127.0.0.1:50051"}});

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include <gorego/core/trace_context.hpp>

namespace gorego::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

inline std::atomic<Level>& threshold() {
  static std::atomic<Level> level{Level::kInfo};
  return level;
}

/// Whether lines of `level` are written: guard debug lines whose fields cost something.
inline bool enabled(Level level) { return level >= threshold().load(std::memory_order_relaxed); }

/// "debug", "info", "warn" or "error"; false for anything else.
inline bool set_level(std::string_view name) {
  if (name == "debug") threshold() = Level::kDebug;
  else if (name == "info") threshold() = Level::kInfo;
  else if (name == "warn") threshold() = Level::kWarn;
  else if (name == "error") threshold() = Level::kError;
  else return false;
  return true;
}

using Field = std::pair<std::string_view, std::string>;

namespace detail {
inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += c;
    }
  }
  out += '"';
}
}  // namespace detail

inline void write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  if (level < threshold().load(std::memory_order_relaxed)) return;
  static constexpr std::string_view kNames[] = {"debug", "info", "warn", "error"};
  const auto now = std::chrono::system_clock::now();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  std::tm utc{};
  ::gmtime_r(&secs, &utc);
  std::string line = fmt::format(
      "{{\"time\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\",\"level\":\"{}\",\"msg\":",
      utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
      us % 1'000'000, kNames[static_cast<int>(level)]);
  detail::append_json_string(line, msg);
  if (const TraceContext& tc = TraceContext::current(); tc.valid()) {
    line += ",\"trace_id\":\"";
    TraceContext::append_hex(line, tc.trace_id.data(), tc.trace_id.size());
    line += "\",\"span_id\":\"";
    TraceContext::append_hex(line, tc.span_id.data(), tc.span_id.size());
    line += '"';
  }
  for (const auto& [k, v] : fields) {
    line += ',';
    detail::append_json_string(line, k);
    line += ':';
    detail::append_json_string(line, v);
  }
  line += "}\n";
  [[maybe_unused]] auto n = ::write(2, line.data(), line.size());
}

inline void debug(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::kDebug, m, f); }
inline void info(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::kInfo, m, f); }
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::kWarn, m, f); }
inline void error(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::kError, m, f); }

}  // namespace gorego::log
