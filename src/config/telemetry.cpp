// The settings of gorego's own observability: `telemetry.*` (TelemetrySettings).
#include "settings.hpp"

namespace gorego::settings {
namespace {

template <auto Member>
using Telemetry = Field<&Config::telemetry, Member>;

Result<log::Level> parse_log_level(std::string_view text) {
  return parse_enum<log::Level>("log level", text);
}

/// "" (no admin server) or HOST:PORT as for listen_addr.
Result<std::string> parse_metrics_addr(std::string_view text) {
  if (text.empty()) return std::string();
  GOREGO_RETURN_IF_ERROR(check_host_port("metrics address", text, "", text, 0));
  return std::string(text);
}

/// "" (off), "stdout", or an OTLP/gRPC receiver: HOST:PORT or grpc://HOST:PORT.
Result<std::string> parse_tracing_endpoint(std::string_view text) {
  if (text.empty() || text == "stdout") return std::string(text);
  if (text.starts_with("grpc://")) {
    GOREGO_RETURN_IF_ERROR(check_host_port("tracing endpoint", text, "grpc://", text.substr(7), 1));
    return std::string(text);
  }
  if (text.find("://") != std::string_view::npos) {
    return invalid(
        fmt::format("tracing endpoint \"{}\" must be stdout, HOST:PORT or "
                    "grpc://HOST:PORT (OTLP over gRPC, plaintext)",
                    text));
  }
  GOREGO_RETURN_IF_ERROR(check_host_port("tracing endpoint", text, "", text, 1));
  return std::string(text);
}

/// A fraction in 0..1 ("0.1", "1", "0").
Result<double> parse_sample_rate(std::string_view text) {
  double v = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || !(v >= 0.0 && v <= 1.0)) {
    return invalid(fmt::format("sample rate \"{}\" is not a number in 0..1", text));
  }
  return v;
}

/// A non-empty name of printable ASCII without spaces.
Result<std::string> parse_service_name(std::string_view text) {
  const bool ok =
      !text.empty() && text.size() <= 128 && std::none_of(text.begin(), text.end(), [](char c) {
        return is_space_or_control(c) || !is_printable_ascii(c);
      });
  if (!ok) {
    return invalid(fmt::format(
        "service name \"{}\" must be 1..128 printable characters without spaces", text));
  }
  return std::string(text);
}

/// One OpenTelemetry resource attribute: a key of 1..255 printable ASCII characters without
/// spaces, other than service.name (telemetry.service_name sets that one), and a value of at
/// most 4 KiB of printable ASCII.
Status check_resource_attribute(std::string_view key, std::string_view name,
                                std::string_view value) {
  constexpr std::size_t kMaxKey = 255;
  constexpr std::size_t kMaxValue = 4 * kKiB;
  if (name.empty()) return invalid(fmt::format("{} has an empty key", key));
  const auto bad_key = std::find_if(name.begin(), name.end(), [](char c) {
    return is_space_or_control(c) || !is_printable_ascii(c);
  });
  if (bad_key != name.end()) {
    return invalid(
        fmt::format("{} key {:?} has a space, a control or a non-ASCII character at position {}",
                    key, name, bad_key - name.begin() + 1));
  }
  if (name.size() > kMaxKey) {
    return invalid(fmt::format("{} key \"{}\" has {} characters, more than {}", key, name,
                               name.size(), kMaxKey));
  }
  if (name == "service.name") {
    return invalid(fmt::format(
        "{}[\"service.name\"] is set by telemetry.service_name; set that instead", key));
  }
  const auto bad_value = std::find_if_not(value.begin(), value.end(), is_printable_ascii);
  if (bad_value != value.end()) {
    return invalid(
        fmt::format("{}[\"{}\"] has a control or a non-ASCII character at position {} of its value",
                    key, name, bad_value - value.begin() + 1));
  }
  if (value.size() > kMaxValue) {
    return invalid(fmt::format("{}[\"{}\"] has a value of {} characters, more than {}", key, name,
                               value.size(), kMaxValue));
  }
  return ok_status();
}

constexpr std::array kSettings{
    scalar<Telemetry<&TelemetrySettings::log_level>, &parse_log_level, &format_enum<log::Level>>(
        "telemetry.log_level", "log-level", "LEVEL", "debug, info, warn or error"),
    scalar<Telemetry<&TelemetrySettings::metrics_addr>, &parse_metrics_addr, &format_string>(
        "telemetry.metrics_addr", "metrics-addr", "HOST:PORT",
        "admin HTTP server: /metrics, /health/{live,ready,startup}, /debug/pprof/; empty: off"),
    scalar<Telemetry<&TelemetrySettings::pprof>, &parse_bool, &format_bool>(
        "telemetry.pprof", "", "BOOL", "serve CPU and heap profiles on the admin server's /debug/pprof/"),
    scalar<Telemetry<&TelemetrySettings::tracing_endpoint>, &parse_tracing_endpoint,
           &format_string>(
        "telemetry.tracing_endpoint", "tracing-endpoint", "ENDPOINT",
        "span export: OTLP/gRPC HOST:PORT or grpc://HOST:PORT, or stdout; empty: tracing off"),
    scalar<Telemetry<&TelemetrySettings::sample_rate>, &parse_sample_rate, &format_double>(
        "telemetry.sample_rate", "", "RATE",
        "fraction of new traces recorded, 0..1; incoming traceparent flags are followed"),
    scalar<Telemetry<&TelemetrySettings::service_name>, &parse_service_name, &format_string>(
        "telemetry.service_name", "", "NAME", "service.name resource attribute of exported spans"),
    map<Telemetry<&TelemetrySettings::resource_attributes>, &check_resource_attribute>(
        "telemetry.resource_attributes", "", "KEY=VALUE,...",
        "more resource attributes of exported OTLP spans, e.g. deployment.environment=prod"),
};

}  // namespace

Area telemetry_area() { return {kSettings, nullptr}; }

}  // namespace gorego::settings
