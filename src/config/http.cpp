// The settings of the HTTP cache listener: `http.*` (HttpSettings).
#include "settings.hpp"

namespace gorego::settings {
namespace {

template <auto Member>
using Http = Field<&Config::http, Member>;

/// "" (off) or HOST:PORT as for listen_addr.
Result<std::string> parse_http_addr(std::string_view text) {
  if (text.empty()) return std::string();
  GOREGO_RETURN_IF_ERROR(check_host_port("HTTP address", text, "", text, 0));
  return std::string(text);
}

/// A SIZE in 1KiB..1TiB.
Result<std::uint64_t> parse_max_body(std::string_view text) {
  auto size = parse_size(text);
  if (!size) return size;
  if (*size < kKiB || *size > (std::uint64_t{1} << 40)) {
    return invalid(fmt::format("HTTP body limit \"{}\" must be in 1KiB..1TiB", text));
  }
  return size;
}

constexpr std::array kSettings{
    scalar<Http<&HttpSettings::addr>, &parse_http_addr, &format_string>(
        "http.addr", "http-addr", "HOST:PORT",
        "HTTP cache protocol listener (GET/HEAD/PUT /cas/HASH, /ac/HASH, /status); empty: off"),
    scalar<Http<&HttpSettings::max_connections>, &parse_uint_in<1, 4096>, &format_uint>(
        "http.max_connections", "", "N", "HTTP connections served at once (one thread each), 1..4096"),
    scalar<Http<&HttpSettings::max_body_bytes>, &parse_max_body, &format_size>(
        "http.max_body", "", "SIZE", "largest HTTP request body accepted (413 beyond), 1KiB..1TiB"),
};

}  // namespace

Area http_area() { return {kSettings, nullptr}; }

}  // namespace gorego::settings
