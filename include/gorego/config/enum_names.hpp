#pragma once
/// EnumNames<E>: the opt-in table that gives the values of a settings enumeration their
/// config spelling, so one table serves the parser, the formatter, `--help` and the error
/// that lists the accepted values. Every enum-valued setting has one, next to its enum:
///
///   enum class RemoteMode : std::uint8_t { kThrough, kBack };
///   template <> struct EnumNames<RemoteMode> {
///     static constexpr std::array<std::pair<RemoteMode, std::string_view>, 2> kNames{
///         {{RemoteMode::kThrough, "through"}, {RemoteMode::kBack, "back"}}};
///   };
///   static_assert(enum_name(RemoteMode::kBack) == "back");

#include <array>
#include <concepts>
#include <cstddef>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

namespace gorego {

/// Specialise with `static constexpr std::array<std::pair<E, std::string_view>, N> kNames`:
/// every enumerator once, each with a distinct non-empty name, in the order `--help` and
/// error messages list them. The primary template is empty: E is not a NamedEnum.
template <class E>
struct EnumNames {};

/// An enumeration with an EnumNames table.
template <class E>
concept NamedEnum = std::is_enum_v<E> && requires {
  { EnumNames<E>::kNames.size() } -> std::same_as<std::size_t>;
  { EnumNames<E>::kNames[0].first } -> std::same_as<const E&>;
  { EnumNames<E>::kNames[0].second } -> std::same_as<const std::string_view&>;
};

/// The config spelling of `value`; "" for a value outside the table (a cast integer).
template <NamedEnum E>
[[nodiscard]] constexpr std::string_view enum_name(E value) {
  for (const auto& [e, name] : EnumNames<E>::kNames) {
    if (e == value) return name;
  }
  return {};
}

/// The value spelt `name` (exactly, case-sensitive); nullopt for any other text.
template <NamedEnum E>
[[nodiscard]] constexpr std::optional<E> enum_from_name(std::string_view name) {
  for (const auto& [e, n] : EnumNames<E>::kNames) {
    if (n == name) return e;
  }
  return std::nullopt;
}

}  // namespace gorego
