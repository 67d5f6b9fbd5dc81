#pragma once
/// Compile-time names for composed policies: `kName` of `Local<ShardedDisk, Lru>` is
/// "local<disk,lru>", built from the parts' own `kName`s.

#include <array>
#include <cstddef>
#include <string_view>

namespace gorego::detail {

/// Concatenation of string_views, stored in a static array so the result is a constant.
template <const std::string_view&... Parts>
struct JoinNames {
  static constexpr auto storage = [] {
    constexpr std::size_t n = (Parts.size() + ... + 0);
    std::array<char, n + 1> out{};
    std::size_t i = 0;
    for (std::string_view p : {Parts...}) {
      for (char c : p) out[i++] = c;
    }
    return out;
  }();
  static constexpr std::string_view value{storage.data(), storage.size() - 1};
};

inline constexpr std::string_view kOpen = "<";
inline constexpr std::string_view kComma = ",";
inline constexpr std::string_view kClose = ">";

}  // namespace gorego::detail
