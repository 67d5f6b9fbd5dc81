#pragma once
/// Rights: what a principal may do, as a bit set. Spelt in the config as names joined
/// with '+' (`read+write-cas`); see AuthSettings for what each right covers.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include <gorego/core/status.hpp>

namespace gorego {

enum class Right : std::uint8_t {
  kRead = 1,
  kWriteCas = 2,
  kWriteAc = 4,
  kExecute = 8,
  kWorker = 16,
  kAdmin = 32,
};

/// A set of Rights.
class Rights {
 public:
  constexpr Rights() = default;
  constexpr explicit Rights(std::uint8_t bits) : bits_(bits) {}
  constexpr Rights(Right r) : bits_(static_cast<std::uint8_t>(r)) {}  // NOLINT: a set of one

  static constexpr Rights all() { return Rights(63); }
  [[nodiscard]] constexpr bool has(Right r) const { return (bits_ & static_cast<std::uint8_t>(r)) != 0; }
  [[nodiscard]] constexpr bool empty() const { return bits_ == 0; }
  [[nodiscard]] constexpr std::uint8_t bits() const { return bits_; }
  constexpr Rights operator|(Rights o) const { return Rights(static_cast<std::uint8_t>(bits_ | o.bits_)); }
  friend constexpr bool operator==(Rights, Rights) = default;

 private:
  std::uint8_t bits_ = 0;
};

/// The single rights by their config names, in the order `to_string` prints them.
inline constexpr std::array<std::pair<Right, std::string_view>, 6> kRightNames{{
    {Right::kRead, "read"},
    {Right::kWriteCas, "write-cas"},
    {Right::kWriteAc, "write-ac"},
    {Right::kExecute, "execute"},
    {Right::kWorker, "worker"},
    {Right::kAdmin, "admin"},
}};

[[nodiscard]] constexpr std::string_view name_of(Right r) {
  for (const auto& [right, name] : kRightNames) {
    if (right == r) return name;
  }
  return "unknown";
}

/// `read+write-ac`, `none` for the empty set.
[[nodiscard]] inline std::string to_string(Rights rights) {
  std::string out;
  for (const auto& [right, name] : kRightNames) {
    if (!rights.has(right)) continue;
    if (!out.empty()) out += '+';
    out += name;
  }
  return out.empty() ? std::string("none") : out;
}

/// Parses `read+write`-style text (also `write` = write-cas+write-ac, `all`, `none`);
/// INVALID_ARGUMENT naming `what` and the unknown word otherwise.
[[nodiscard]] inline Result<Rights> parse_rights(std::string_view what, std::string_view text) {
  Rights out;
  if (text.empty()) return error(Code::kInvalidArgument, "{} is empty; give rights such as read+write, or none", what);
  std::size_t begin = 0;
  while (begin <= text.size()) {
    const std::size_t plus = text.find('+', begin);
    const std::string_view word = text.substr(begin, plus == std::string_view::npos ? std::string_view::npos : plus - begin);
    if (word == "write") {
      out = out | Right::kWriteCas | Right::kWriteAc;
    } else if (word == "all") {
      out = Rights::all();
    } else if (word == "none") {
      // adds nothing
    } else {
      bool known = false;
      for (const auto& [right, name] : kRightNames) {
        if (word == name) {
          out = out | right;
          known = true;
        }
      }
      if (!known) {
        return error(Code::kInvalidArgument,
                     "{} \"{}\" has the unknown right \"{}\"; rights are read, write-cas, write-ac, write, "
                     "execute, worker, admin, all, none, joined with '+'",
                     what, text, word);
      }
    }
    if (plus == std::string_view::npos) break;
    begin = plus + 1;
  }
  return out;
}

}  // namespace gorego
