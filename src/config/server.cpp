// The settings of the gRPC server: `listen_addr` and `server.*` (ServerSettings).
#include "settings.hpp"

namespace gorego::settings {
namespace {

template <auto Member>
using Server = Field<&Config::server, Member>;

/// HOST:PORT with an IPv6 host in brackets ("[::1]:50051"); port 0..65535 (0: pick one).
Result<std::string> parse_listen_addr(std::string_view text) {
  GOREGO_RETURN_IF_ERROR(check_host_port("listen address", text, "", text, 0));
  return std::string(text);
}

/// A SIZE in 64KiB..64MiB.
Result<std::uint64_t> parse_batch_size(std::string_view text) {
  constexpr std::uint64_t kMin = 64 * kKiB;
  constexpr std::uint64_t kMax = 64 * kMiB;
  auto size = parse_size(text);
  if (size && (*size < kMin || *size > kMax)) {
    return invalid(fmt::format("size \"{}\" is out of range {}..{}", text, format_size(kMin),
                               format_size(kMax)));
  }
  return size;
}

/// A SIZE in 1MiB..1PiB.
Result<std::uint64_t> parse_upload_limit(std::string_view text) {
  auto size = parse_size(text);
  if (size && (*size < kMiB || *size > (std::uint64_t{1} << 50))) {
    return invalid(fmt::format("size \"{}\" is out of range 1MiB..1PiB", text));
  }
  return size;
}

constexpr std::array kSettings{
    scalar<Server<&ServerSettings::listen_addr>, &parse_listen_addr, &format_string>(
        "listen_addr", "listen", "HOST:PORT",
        "address to serve gRPC on; IPv6 as [::1]:50051, port 0 picks a free one"),
    scalar<Server<&ServerSettings::io_threads>, &parse_uint_in<1, 1024>, &format_uint>(
        "server.io_threads", "io-threads", "N", "threads doing disk I/O, 1..1024"),
    scalar<Server<&ServerSettings::io_queue>, &parse_uint_in<16, 1'000'000>, &format_uint>(
        "server.io_queue", "", "N",
        "requests waiting for an I/O thread before more are refused busy, 16..1000000"),
    scalar<Server<&ServerSettings::max_batch_total_size_bytes>, &parse_batch_size, &format_size>(
        "server.max_batch_size", "", "SIZE", "largest total size of a batch request, 64KiB..64MiB"),
    scalar<Server<&ServerSettings::max_blob_size_bytes>, &parse_size, &format_size>(
        "server.max_blob_size", "", "SIZE", "largest blob accepted; 0: bounded only by max_size"),
    scalar<Server<&ServerSettings::shutdown_grace>, &parse_duration, &format_duration>(
        "server.shutdown_grace", "", "DURATION",
        "how long in-flight calls may finish after SIGTERM"),
    scalar<Server<&ServerSettings::max_calls_per_connection>, &parse_uint_in<1, 100'000>, &format_uint>(
        "server.max_calls_per_connection", "", "N",
        "calls one connection may have in flight (RESOURCE_EXHAUSTED beyond), 1..100000"),
    scalar<Server<&ServerSettings::max_calls>, &parse_uint_in<1, 1'000'000>, &format_uint>(
        "server.max_calls", "", "N", "calls in flight on the listener (RESOURCE_EXHAUSTED beyond), 1..1000000"),
    scalar<Server<&ServerSettings::max_upload_bytes_per_connection>, &parse_upload_limit, &format_size>(
        "server.max_upload_bytes_per_connection", "", "SIZE",
        "bytes of uploads one connection may have in flight (RESOURCE_EXHAUSTED beyond), 1MiB..1PiB"),
    scalar<Server<&ServerSettings::max_upload_bytes>, &parse_upload_limit, &format_size>(
        "server.max_upload_bytes", "", "SIZE",
        "bytes of uploads in flight on the server (RESOURCE_EXHAUSTED beyond), 1MiB..1PiB"),
    scalar<Server<&ServerSettings::idle_timeout>, &parse_duration, &format_duration>(
        "server.idle_timeout", "", "DURATION", "close a connection idle this long; 0: never"),
    scalar<Server<&ServerSettings::max_connection_age>, &parse_duration, &format_duration>(
        "server.max_connection_age", "", "DURATION",
        "ask a connection this old to go away; its calls get max_connection_age_grace more; 0: never"),
    scalar<Server<&ServerSettings::max_connection_age_grace>, &parse_duration, &format_duration>(
        "server.max_connection_age_grace", "", "DURATION",
        "how long calls of a connection past max_connection_age may still run before they are cancelled"),
    scalar<Server<&ServerSettings::keepalive>, &parse_duration, &format_duration>(
        "server.keepalive", "", "DURATION", "ping a connection silent this long, close it if unanswered; 0: no pings"),
};

}  // namespace

Area server_area() { return {kSettings, nullptr}; }

}  // namespace gorego::settings
