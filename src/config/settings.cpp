#include "settings.hpp"

#include <algorithm>
#include <cctype>
#include <limits>

namespace gorego {
namespace settings {
namespace {

__extension__ using Uint128 = unsigned __int128;  // exact size arithmetic; GCC and Clang

std::size_t count_digits(std::string_view text) {
  return static_cast<std::size_t>(std::find_if_not(text.begin(), text.end(), is_digit) -
                                  text.begin());
}

std::string_view trim_spaces(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  return text;
}

/// `text` split at ',', the spaces around each part dropped; "" is no part.
List split_list(std::string_view text) {
  List out;
  if (text.empty()) return out;
  while (true) {
    const std::size_t comma = text.find(',');
    out.emplace_back(trim_spaces(text.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

Status invalid(std::string message) { return Status(Code::kInvalidArgument, std::move(message)); }

Status in_context(const Status& status, std::string_view context) {
  return Status(status.code(), fmt::format("{}: {}", context, status.message()));
}

Result<Value> value_from_text(std::string_view key, Shape shape,
                              std::span<const std::string> texts) {
  switch (shape) {
    case Shape::kScalar: return Value(texts.empty() ? std::string() : texts.back());
    case Shape::kList: {
      List out;
      for (const std::string& text : texts) {
        for (std::string& element : split_list(text)) out.push_back(std::move(element));
      }
      return Value(std::move(out));
    }
    case Shape::kMap: {
      Map out;
      for (const std::string& text : texts) {
        for (const std::string& entry : split_list(text)) {
          const std::size_t eq = entry.find('=');
          if (eq == std::string::npos) {
            return invalid(
                fmt::format("{} entry {} \"{}\" is not KEY=VALUE", key, out.size(), entry));
          }
          out.emplace_back(trim_spaces(std::string_view(entry).substr(0, eq)),
                           trim_spaces(std::string_view(entry).substr(eq + 1)));
        }
      }
      return Value(std::move(out));
    }
  }
  return invalid(fmt::format("{} has an unknown shape", key));
}

std::string value_to_text(const Value& value) {
  if (const auto* text = std::get_if<std::string>(&value)) return *text;
  if (const auto* list = std::get_if<List>(&value)) {
    return list->empty() ? "[]" : fmt::format("{}", fmt::join(*list, ","));
  }
  const Map& map = std::get<Map>(value);
  if (map.empty()) return "{}";
  std::vector<std::string> entries;
  for (const auto& [k, v] : map) entries.push_back(fmt::format("{}={}", k, v));
  return fmt::format("{}", fmt::join(entries, ","));
}

// ---- generic parsers and formatters ----

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_space_or_control(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte <= 0x20 || byte == 0x7f;
}

bool is_printable_ascii(char c) { return c >= 0x20 && c <= 0x7e; }

std::string to_lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

Result<bool> parse_bool(std::string_view text) {
  const std::string word = to_lower(text);
  if (word == "true" || word == "yes" || word == "on" || word == "1") return true;
  if (word == "false" || word == "no" || word == "off" || word == "0") return false;
  return invalid(fmt::format("\"{}\" is not a boolean (expected true or false)", text));
}

Result<std::uint64_t> parse_uint(std::string_view text, std::uint64_t min, std::uint64_t max) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || !is_digit(text.front()) || end != text.data() + text.size()) {
    return invalid(fmt::format("\"{}\" is not a whole number", text));
  }
  if (ec == std::errc::result_out_of_range || value < min || value > max) {
    return invalid(fmt::format("\"{}\" is out of range {}..{}", text, min, max));
  }
  return value;
}

Result<std::chrono::seconds> parse_positive_duration(std::string_view text) {
  auto duration = parse_duration(text);
  if (duration && duration->count() == 0) {
    return invalid(fmt::format("duration \"{}\" must be greater than 0", text));
  }
  return duration;
}

Result<std::string> parse_string(std::string_view text) { return std::string(text); }

Status check_host_port(std::string_view what, std::string_view text, std::string_view scheme,
                       std::string_view address, unsigned min_port) {
  const auto malformed = [&] {
    return invalid(fmt::format("{} \"{}\" is not {}HOST:PORT", what, text, scheme));
  };
  std::string_view host;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    const std::size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return malformed();
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
    const bool ipv6_chars = std::all_of(host.begin(), host.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.' || c == '%' ||
             c == '_' || c == '-';
    });
    if (host.find(':') == std::string_view::npos || !ipv6_chars) {
      return invalid(
          fmt::format("{} \"{}\" has \"{}\" in brackets, not an IPv6 address", what, text, host));
    }
  } else {
    const std::size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return malformed();
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return invalid(fmt::format("{} \"{}\" has an IPv6 host without brackets; write {}[HOST]:PORT",
                                 what, text, scheme));
    }
    const bool host_chars = std::all_of(host.begin(), host.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_';
    });
    if (host.empty() || !host_chars) {
      return invalid(fmt::format("{} \"{}\" has an invalid host \"{}\"", what, text, host));
    }
  }
  if (port.empty() || port.size() > 5 || count_digits(port) != port.size()) {
    return invalid(
        fmt::format("{} \"{}\" has a port \"{}\" that is not a number", what, text, port));
  }
  unsigned value = 0;
  std::from_chars(port.data(), port.data() + port.size(), value);
  if (value < min_port || value > 65535) {
    return invalid(
        fmt::format("{} \"{}\" has port {} outside {}..65535", what, text, value, min_port));
  }
  return ok_status();
}

std::string format_bool(bool value) { return value ? "true" : "false"; }
std::string format_uint(std::uint64_t value) { return fmt::format("{}", value); }
std::string format_double(double value) { return fmt::format("{}", value); }
std::string format_string(const std::string& value) { return value; }
std::string format_path(const std::filesystem::path& value) { return value.string(); }

std::string redact_all(const std::string& text) {
  return text.empty() ? text : std::string(kRedacted);
}

}  // namespace settings

// ---- the public value syntax (values.hpp) ----

using settings::count_digits;
using settings::invalid;
using settings::Uint128;

Result<std::uint64_t> parse_size(std::string_view text) {
  struct Unit {
    std::string_view name;
    std::uint64_t bytes;
  };
  static constexpr std::array<Unit, 11> kUnits{{
      {"", 1},
      {"B", 1},
      {"KB", 1'000},
      {"kB", 1'000},
      {"MB", 1'000'000},
      {"GB", 1'000'000'000},
      {"TB", 1'000'000'000'000},
      {"KiB", kKiB},
      {"MiB", kMiB},
      {"GiB", kGiB},
      {"TiB", kGiB * kKiB},
  }};
  constexpr std::size_t kMaxFractionDigits = 18;

  if (text.empty()) return invalid("size \"\" is empty");
  if (text.front() == '-') return invalid(fmt::format("size \"{}\" is negative", text));
  const std::size_t whole_digits = count_digits(text);
  if (whole_digits == 0) {
    return invalid(fmt::format("size \"{}\" does not start with a number", text));
  }
  const std::string_view whole = text.substr(0, whole_digits);
  std::string_view rest = text.substr(whole_digits);
  std::string_view fraction;
  if (!rest.empty() && rest.front() == '.') {
    fraction = rest.substr(1, count_digits(rest.substr(1)));
    if (fraction.empty()) {
      return invalid(fmt::format("size \"{}\" has no digits after the decimal point", text));
    }
    if (fraction.size() > kMaxFractionDigits) {
      return invalid(
          fmt::format("size \"{}\" has more than {} decimal places", text, kMaxFractionDigits));
    }
    rest.remove_prefix(1 + fraction.size());
  }
  if (!rest.empty() && rest.front() == ' ') {
    rest.remove_prefix(1);
    if (rest.empty()) return invalid(fmt::format("size \"{}\" has a space but no unit", text));
  }
  std::uint64_t unit_bytes = 0;
  for (const Unit& unit : kUnits) {
    if (unit.name == rest) unit_bytes = unit.bytes;
  }
  if (unit_bytes == 0) {
    return invalid(fmt::format(
        "size \"{}\" has an unknown unit \"{}\" (expected B, KB, MB, GB, TB, KiB, MiB, GiB or "
        "TiB)",
        text, rest));
  }
  if (!fraction.empty() && unit_bytes == 1) {
    return invalid(fmt::format("size \"{}\" is not a whole number of bytes", text));
  }

  constexpr Uint128 kMax = std::numeric_limits<std::uint64_t>::max();
  const auto too_large = [&] {
    return invalid(fmt::format("size \"{}\" is too large (more than {} bytes)", text,
                               std::numeric_limits<std::uint64_t>::max()));
  };
  Uint128 number = 0;
  for (const char c : whole) {
    number = number * 10 + static_cast<unsigned>(c - '0');
    if (number > kMax) return too_large();
  }
  Uint128 bytes = number * unit_bytes;
  if (!fraction.empty()) {
    Uint128 numerator = 0;
    Uint128 denominator = 1;
    for (const char c : fraction) {
      numerator = numerator * 10 + static_cast<unsigned>(c - '0');
      denominator *= 10;
    }
    bytes += numerator * unit_bytes / denominator;  // rounds down to whole bytes
  }
  if (bytes > kMax) return too_large();
  return static_cast<std::uint64_t>(bytes);
}

std::string format_size(std::uint64_t bytes) {
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 4> kUnits{{
      {"TiB", kGiB * kKiB},
      {"GiB", kGiB},
      {"MiB", kMiB},
      {"KiB", kKiB},
  }};
  for (const auto& [name, size] : kUnits) {
    if (bytes != 0 && bytes % size == 0) return fmt::format("{}{}", bytes / size, name);
  }
  return fmt::format("{}", bytes);
}

Result<std::chrono::seconds> parse_duration(std::string_view text) {
  if (text.empty()) return invalid("duration \"\" is empty");
  if (text.front() == '-') return invalid(fmt::format("duration \"{}\" is negative", text));
  const std::size_t digits = count_digits(text);
  if (digits == 0) {
    return invalid(fmt::format("duration \"{}\" does not start with a number", text));
  }
  const std::string_view unit = text.substr(digits);
  std::int64_t scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1;
  } else if (unit == "m") {
    scale = 60;
  } else if (unit == "h") {
    scale = 3600;
  } else if (unit.front() == '.') {
    return invalid(fmt::format("duration \"{}\" is not a whole number", text));
  } else {
    return invalid(
        fmt::format("duration \"{}\" has an unknown unit \"{}\" (expected s, m or h)", text, unit));
  }
  std::int64_t count = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, count);
  if (ec == std::errc::result_out_of_range ||
      count > std::numeric_limits<std::chrono::seconds::rep>::max() / scale) {
    return invalid(fmt::format("duration \"{}\" is too long", text));
  }
  return std::chrono::seconds(count * scale);
}

std::string format_duration(std::chrono::seconds duration) {
  const auto count = duration.count();
  if (count != 0 && count % 3600 == 0) return fmt::format("{}h", count / 3600);
  if (count != 0 && count % 60 == 0) return fmt::format("{}m", count / 60);
  return fmt::format("{}s", count);
}

}  // namespace gorego
