#pragma once
/// ServerSettings: gorego's gRPC listener and the limits of its calls (`listen_addr`,
/// `server.*`). Part of Config; see config.hpp for how settings are read.

#include <chrono>
#include <cstdint>
#include <string>

#include <gorego/config/values.hpp>

namespace gorego {

/// The settings of the gRPC server. A plain aggregate holding the embedded defaults; the
/// comment of each field gives its YAML key and flag.
struct ServerSettings {
  /// `listen_addr`, `--listen`: HOST:PORT, IPv6 as `[::1]:50051`; port 0 picks a free port.
  std::string listen_addr = "127.0.0.1:50051";
  /// `server.io_threads`, `--io-threads`: threads doing disk I/O (1..1024).
  std::uint32_t io_threads = 8;
  /// `server.io_queue`: requests that may wait for an I/O thread (16..1000000); beyond it
  /// new calls are refused UNAVAILABLE ("server busy"), which clients retry with backoff.
  std::uint32_t io_queue = 4096;
  /// `server.max_batch_size`: max_batch_total_size_bytes advertised in GetCapabilities and
  /// enforced by the batch calls, a SIZE in 64KiB..64MiB.
  std::uint64_t max_batch_total_size_bytes = 4 * kMiB;
  /// `server.max_blob_size`: the largest blob accepted, a SIZE; 0 means bounded only by
  /// `max_size`. Must not exceed `max_size`.
  std::uint64_t max_blob_size_bytes = 0;
  /// `server.shutdown_grace`: how long in-flight calls may run on after SIGTERM (a duration).
  std::chrono::seconds shutdown_grace{10};
  /// `server.max_calls_per_connection`: calls (streams) one client connection may have in
  /// flight (1..100000); a call beyond it is refused RESOURCE_EXHAUSTED while other
  /// connections are served.
  std::uint32_t max_calls_per_connection = 1000;
  /// `server.max_calls`: calls in flight on the whole listener (1..1000000); beyond it new
  /// calls are refused RESOURCE_EXHAUSTED.
  std::uint32_t max_calls = 20000;
  /// `server.max_upload_bytes_per_connection`: bytes of ByteStream uploads one connection may
  /// have in flight (by the sizes their resource names declare), a SIZE; one more upload is
  /// refused RESOURCE_EXHAUSTED before anything is written.
  std::uint64_t max_upload_bytes_per_connection = 16 * kGiB;
  /// `server.max_upload_bytes`: the same for all connections together, a SIZE.
  std::uint64_t max_upload_bytes = 64 * kGiB;
  /// `server.idle_timeout`: a client connection without calls for this long is closed (the
  /// client reconnects when it needs to); 0 keeps idle connections open.
  std::chrono::seconds idle_timeout{0};
  /// `server.max_connection_age`: a client connection older than this is asked to go away
  /// (the client reconnects), and calls still running `server.max_connection_age_grace`
  /// later are cancelled: the bound on how long a slow or stuck client holds its calls and
  /// upload reservations. 0 (the default): no age limit.
  std::chrono::seconds max_connection_age{0};
  /// `server.max_connection_age_grace`: see max_connection_age.
  std::chrono::seconds max_connection_age_grace{std::chrono::minutes(10)};
  /// `server.keepalive`: the server pings a connection silent this long and closes it when
  /// the ping goes unanswered for 20 s (a client gone without closing); 0: no pings.
  std::chrono::seconds keepalive{std::chrono::minutes(2)};

  friend bool operator==(const ServerSettings&, const ServerSettings&) = default;
};

}  // namespace gorego
