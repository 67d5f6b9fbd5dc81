#pragma once
/// The machinery behind Config, private to gorego_config: the Setting type every area's table
/// is made of, the builders that make a Setting from a field, a parser and a formatter, and
/// the generic parsers the areas share. The areas (src/config/<area>.cpp) each define one
/// table and the rules between their fields; load.cpp composes them into the one table that
/// drives the YAML file, the environment, the flags, `--help`, to_yaml() and validate().
///
/// Parsers name the bad value in their message and leave the source ("flag --max-size",
/// "config key ... in FILE (line 2, column 3)") to the caller. A parser of a list element or
/// a map entry is given the name of the element ("remote.headers[1]") to put in its message.

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include <gorego/config/config.hpp>

namespace gorego::settings {

/// What to_yaml() prints for a secret; the parsers of secrets reject it, so a printed config
/// with a secret in it cannot be loaded back by mistake.
inline constexpr std::string_view kRedacted = "<redacted>";

[[nodiscard]] Status invalid(std::string message);

/// Prefixes a parser's message with where the value came from: "flag --max-size: size ...".
[[nodiscard]] Status in_context(const Status& status, std::string_view context);

// ---- values as text, in the shape of their setting ----

/// What a setting holds: one value, a list of values or a map of keys to values.
enum class Shape : std::uint8_t { kScalar, kList, kMap };

using List = std::vector<std::string>;
/// Map entries in the order of their source; a key may appear twice (the parser rejects it).
using Map = std::vector<std::pair<std::string, std::string>>;
/// A setting's value as text, before parsing or after formatting; the index is its Shape.
using Value = std::variant<std::string, List, Map>;

/// The Value of a setting of `shape` given as text in the environment or by flags, one text
/// per occurrence (a repeated flag): a scalar is the last text; a list is each text split at
/// ',' with the spaces around an element dropped, "" being no element; a map is the same
/// list of `key=value` entries. INVALID_ARGUMENT naming `key` for a map entry without '='.
[[nodiscard]] Result<Value> value_from_text(std::string_view key, Shape shape,
                                            std::span<const std::string> texts);

/// A Value in the text form value_from_text() reads, for `--help`: lists and maps joined
/// with ',', an empty list "[]" and an empty map "{}".
[[nodiscard]] std::string value_to_text(const Value& value);

// ---- the Setting type ----

/// One setting: its YAML key (the environment variable follows from it), its optional flag,
/// and how to parse a Value into the Config and render it back.
struct Setting {
  std::string_view key;         ///< YAML key path: "storage.fsync"
  std::string_view flag;        ///< long flag without "--", empty when there is none
  std::string_view value_name;  ///< placeholder in --help: "SIZE"
  std::string_view help;
  Shape shape = Shape::kScalar;
  /// Parses `value` (of `shape`; `key` is this setting's) into the config. On failure,
  /// `*bad_element`, when given, is set to the index of the failing list element or map entry.
  Status (*assign)(std::string_view key, const Value& value, Config& config,
                   std::optional<std::size_t>* bad_element) = nullptr;
  Value (*render)(const Config&) = nullptr;  ///< the exact text; parsing it gives the field back
  Value (*show)(const Config&) = nullptr;    ///< what to_yaml() and --help print: secrets redacted
};

/// One area of the settings: its table, and the rules between its fields (and the fields of
/// other areas it depends on), checked by validate() after every field passed its parser.
struct Area {
  std::span<const Setting> settings;
  Status (*validate)(const Config&) = nullptr;
};

// Defined in src/config/<area>.cpp; load.cpp composes them in this order.
[[nodiscard]] Area server_area();
[[nodiscard]] Area storage_area();
[[nodiscard]] Area telemetry_area();
[[nodiscard]] Area remote_area();
[[nodiscard]] Area execution_area();
[[nodiscard]] Area http_area();
[[nodiscard]] Area security_area();

/// The field `Member` of the area `AreaMember` of a Config:
/// `Field<&Config::remote, &RemoteSettings::target>`.
template <auto AreaMember, auto Member>
struct Field {
  static auto& of(Config& config) { return (config.*AreaMember).*Member; }
  static const auto& of(const Config& config) { return (config.*AreaMember).*Member; }
};

template <class F>
using FieldType = std::remove_cvref_t<decltype(F::of(std::declval<Config&>()))>;

// ---- builders: a Setting from a field, its parser and its formatter ----

template <class F, auto Parse>
Status assign_scalar(std::string_view, const Value& value, Config& config,
                     std::optional<std::size_t>*) {
  auto parsed = Parse(std::get<std::string>(value));
  if (!parsed) return parsed.error();
  F::of(config) = static_cast<FieldType<F>>(*std::move(parsed));
  return ok_status();
}

/// `text` as `Redact` shows it; as it is when there is no Redact (nullptr).
template <auto Redact>
std::string redacted(std::string text) {
  if constexpr (std::is_null_pointer_v<decltype(Redact)>) {
    return text;
  } else {
    return Redact(text);
  }
}

template <class F, auto Format, auto Redact>
Value render_scalar(const Config& config) {
  return redacted<Redact>(Format(F::of(config)));
}

/// A setting of one value. `Parse(text)` returns a Result of something convertible to the
/// field; `Format(field)` its text. With a `Redact(text)` function the setting is a secret,
/// shown (by to_yaml() and --help) only through Redact.
template <class F, auto Parse, auto Format, auto Redact = nullptr>
constexpr Setting scalar(std::string_view key, std::string_view flag, std::string_view value_name,
                         std::string_view help) {
  return {key,
          flag,
          value_name,
          help,
          Shape::kScalar,
          &assign_scalar<F, Parse>,
          &render_scalar<F, Format, nullptr>,
          &render_scalar<F, Format, Redact>};
}

template <class F, auto ParseElement>
Status assign_list(std::string_view key, const Value& value, Config& config,
                   std::optional<std::size_t>* bad_element) {
  const List& texts = std::get<List>(value);
  FieldType<F> parsed;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    auto element = ParseElement(fmt::format("{}[{}]", key, i), texts[i]);
    if (!element) {
      if (bad_element != nullptr) *bad_element = i;
      return element.error();
    }
    parsed.push_back(*std::move(element));
  }
  F::of(config) = std::move(parsed);
  return ok_status();
}

template <class F, auto FormatElement, auto Redact>
Value render_list(const Config& config) {
  List out;
  for (const auto& element : F::of(config)) out.push_back(redacted<Redact>(FormatElement(element)));
  return out;
}

/// A setting holding a std::vector. `ParseElement(name, text)` parses one element, `name`
/// being "key[index]" for its messages; `FormatElement(element)` gives its text; `Redact` as
/// for scalar(), applied to each element.
template <class F, auto ParseElement, auto FormatElement, auto Redact = nullptr>
constexpr Setting list(std::string_view key, std::string_view flag, std::string_view value_name,
                       std::string_view help) {
  return {key,
          flag,
          value_name,
          help,
          Shape::kList,
          &assign_list<F, ParseElement>,
          &render_list<F, FormatElement, nullptr>,
          &render_list<F, FormatElement, Redact>};
}

template <class F, auto CheckEntry>
Status assign_map(std::string_view key, const Value& value, Config& config,
                  std::optional<std::size_t>* bad_element) {
  const Map& entries = std::get<Map>(value);
  FieldType<F> parsed;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& [k, v] = entries[i];
    Status status = CheckEntry(key, k, v);
    if (status.ok() && !parsed.emplace(k, v).second) {
      status = invalid(fmt::format("{} has the key \"{}\" twice", key, k));
    }
    if (!status.ok()) {
      if (bad_element != nullptr) *bad_element = i;
      return status;
    }
  }
  F::of(config) = std::move(parsed);
  return ok_status();
}

template <class F>
Value render_map(const Config& config) {
  const auto& field = F::of(config);
  return Map(field.begin(), field.end());
}

/// A setting holding a std::map<std::string, std::string>. `CheckEntry(key, entry_key,
/// value)` accepts or rejects one entry, naming the setting `key` and the entry's key (when
/// that is printable) in its message; a key given twice is rejected here. Not for secrets.
template <class F, auto CheckEntry>
constexpr Setting map(std::string_view key, std::string_view flag, std::string_view value_name,
                      std::string_view help) {
  static_assert(std::is_same_v<FieldType<F>, std::map<std::string, std::string>>);
  return {key,
          flag,
          value_name,
          help,
          Shape::kMap,
          &assign_map<F, CheckEntry>,
          &render_map<F>,
          &render_map<F>};
}

// ---- generic parsers and formatters ----

[[nodiscard]] bool is_digit(char c);
/// A space or a control character (or DEL): never part of a name, a token or a path segment.
[[nodiscard]] bool is_space_or_control(char c);
/// Printable ASCII, the characters gRPC allows in a text metadata value.
[[nodiscard]] bool is_printable_ascii(char c);
[[nodiscard]] std::string to_lower(std::string_view text);

/// true/false, yes/no, on/off, 1/0 in any case.
[[nodiscard]] Result<bool> parse_bool(std::string_view text);
[[nodiscard]] Result<std::uint64_t> parse_uint(std::string_view text, std::uint64_t min,
                                               std::uint64_t max);

/// A whole number in Min..Max.
template <std::uint64_t Min, std::uint64_t Max>
Result<std::uint64_t> parse_uint_in(std::string_view text) {
  return parse_uint(text, Min, Max);
}

/// A duration greater than 0.
[[nodiscard]] Result<std::chrono::seconds> parse_positive_duration(std::string_view text);

/// Any text.
[[nodiscard]] Result<std::string> parse_string(std::string_view text);

/// The value of E spelt `text`; INVALID_ARGUMENT `WHAT "TEXT" is not one of: a, b` otherwise.
template <NamedEnum E>
Result<E> parse_enum(std::string_view what, std::string_view text) {
  if (const std::optional<E> value = enum_from_name<E>(text)) return *value;
  std::vector<std::string_view> names;
  for (const auto& [e, name] : EnumNames<E>::kNames) names.push_back(name);
  return invalid(fmt::format("{} \"{}\" is not one of: {}", what, text, fmt::join(names, ", ")));
}

/// The config spelling of `value`; its number for a value outside the table (which its
/// parser then rejects, naming it).
template <NamedEnum E>
std::string format_enum(E value) {
  const std::string_view name = enum_name(value);
  if (!name.empty()) return std::string(name);
  return fmt::format("{}", static_cast<std::underlying_type_t<E>>(value));
}

/// Checks `address`, the HOST:PORT part of the value `text` of the setting `what` (`scheme`
/// is what precedes it in `text`, for the messages): an IPv6 host in brackets ("[::1]:50051"),
/// a port in min_port..65535.
[[nodiscard]] Status check_host_port(std::string_view what, std::string_view text,
                                     std::string_view scheme, std::string_view address,
                                     unsigned min_port);

[[nodiscard]] std::string format_bool(bool value);
[[nodiscard]] std::string format_uint(std::uint64_t value);
[[nodiscard]] std::string format_double(double value);
[[nodiscard]] std::string format_string(const std::string& value);
[[nodiscard]] std::string format_path(const std::filesystem::path& value);

/// What to_yaml() shows of a secret: "" when unset, else "<redacted>".
[[nodiscard]] std::string redact_all(const std::string& text);

}  // namespace gorego::settings
