#pragma once
/// The value syntax shared by every setting: sizes ("10GiB", "500GB") and durations ("30s",
/// "5m"), with their parsers and the formatters that invert them. `--print-config` writes
/// values with these formatters; tools that take a SIZE argument (gorego-load) parse it here so
/// it reads as gorego's own settings do.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <gorego/core/status.hpp>

namespace gorego {

inline constexpr std::uint64_t kKiB = std::uint64_t{1} << 10;
inline constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
inline constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

/// Parses a SIZE: plain bytes ("1048576"), or a number, an optional single space and a unit:
/// B, KB/kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024); units are
/// case-sensitive. A number with a unit other than B may have a fraction ("1.5GiB"); the result
/// is rounded down to whole bytes. INVALID_ARGUMENT naming the value when it is empty,
/// negative, malformed, has an unknown unit (`size "12XB" has an unknown unit "XB" ...`) or
/// does not fit in 64 bits.
[[nodiscard]] Result<std::uint64_t> parse_size(std::string_view text);

/// Formats bytes as the largest binary unit that is exact ("10GiB", "1536KiB"), else as plain
/// bytes ("1000"). parse_size(format_size(n)) == n.
[[nodiscard]] std::string format_size(std::uint64_t bytes);

/// Parses a duration in whole seconds: "30" or "30s", "5m", "2h". INVALID_ARGUMENT naming the
/// value when it is empty, negative, malformed, has an unknown unit or overflows.
[[nodiscard]] Result<std::chrono::seconds> parse_duration(std::string_view text);

/// Formats a duration as the largest exact unit: "1h", "90s", "5m". parse_duration() inverts it.
[[nodiscard]] std::string format_duration(std::chrono::seconds duration);

}  // namespace gorego
