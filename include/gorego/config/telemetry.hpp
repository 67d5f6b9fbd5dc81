#pragma once
/// TelemetrySettings: logs, metrics and traces (`telemetry.*`). Part of Config; see
/// config.hpp for how settings are read.

#include <array>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include <gorego/config/enum_names.hpp>
#include <gorego/core/log.hpp>

namespace gorego {

/// `telemetry.log_level` takes log::Level, spelt as log::set_level() reads it.
template <>
struct EnumNames<log::Level> {
  static constexpr std::array<std::pair<log::Level, std::string_view>, 4> kNames{{
      {log::Level::kDebug, "debug"},
      {log::Level::kInfo, "info"},
      {log::Level::kWarn, "warn"},
      {log::Level::kError, "error"},
  }};
};

/// The settings of gorego's own observability. A plain aggregate holding the embedded
/// defaults; the comment of each field gives its YAML key and flag.
struct TelemetrySettings {
  /// `telemetry.log_level`, `--log-level`: the least severe level written.
  log::Level log_level = log::Level::kInfo;
  /// `telemetry.metrics_addr`, `--metrics-addr`: HOST:PORT of the admin HTTP server
  /// (/metrics, /health/*, /debug/pprof/ with `pprof`); "" disables it. With authentication
  /// on (AuthSettings), everything but /health/* needs a principal with the `admin` right.
  std::string metrics_addr = "127.0.0.1:9090";
  /// `telemetry.pprof`: serve CPU and heap profiles on /debug/pprof/ of the admin server
  /// (off by default: a CPU profile costs CPU and shows the code's internals).
  bool pprof = false;
  /// `telemetry.tracing_endpoint`, `--tracing-endpoint`: where spans go: "" (tracing off),
  /// "stdout" (JSON lines), or an OTLP/gRPC receiver as HOST:PORT or grpc://HOST:PORT.
  std::string tracing_endpoint;
  /// `telemetry.sample_rate`: fraction of new traces recorded, 0..1; a request that comes
  /// with a W3C traceparent follows its sampled flag.
  double sample_rate = 1.0;
  /// `telemetry.service_name`: service.name of the spans (and of nothing else).
  std::string service_name = "gorego";
  /// `telemetry.resource_attributes`: a map of more OpenTelemetry resource attributes of
  /// the spans sent over OTLP (`deployment.environment: prod`), next to service.name. Keys
  /// are 1..255 printable ASCII characters without spaces and not "service.name" (that is
  /// `service_name`); values are printable ASCII, at most 4 KiB. A key gorego sets itself
  /// (service.version, host.name) is replaced by the given value.
  std::map<std::string, std::string> resource_attributes;

  friend bool operator==(const TelemetrySettings&, const TelemetrySettings&) = default;
};

}  // namespace gorego
