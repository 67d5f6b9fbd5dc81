#pragma once
/// The gorego server: the shipped store stack behind the four REAPI cache services and
/// grpc.health.v1, configured from a Config. Used by apps/gorego and by the in-process
/// gRPC tests, so both exercise the same instantiation.

#include <chrono>
#include <memory>

#include <gorego/config/config.hpp>
#include <gorego/core/status.hpp>

namespace gorego {

class Server {
 public:
  virtual ~Server() = default;
  /// The TCP port actually bound (useful with port 0).
  [[nodiscard]] virtual int port() const = 0;
  /// The admin HTTP server's port; 0 when `telemetry.metrics_addr` is empty.
  [[nodiscard]] virtual int admin_port() const = 0;
  /// The HTTP cache listener's port; 0 when `http.addr` is empty.
  [[nodiscard]] virtual int http_port() const = 0;
  /// First step of a graceful stop: grpc.health.v1 answers NOT_SERVING so load balancers
  /// and clients move away, while calls are still served.
  virtual void begin_shutdown() = 0;
  /// Graceful stop: health goes NOT_SERVING, new calls are refused, calls in flight may
  /// finish until `deadline` and are cancelled after it; then background work stops.
  virtual void shutdown(std::chrono::system_clock::time_point deadline) = 0;
  /// Index load state and usage, for logs and tests.
  [[nodiscard]] virtual std::uint64_t usage_bytes() const = 0;
  [[nodiscard]] virtual bool index_loaded() const = 0;
};

/// Opens the data directory, starts the index load and begins serving. Errors name the
/// problem: an unusable data directory (FAILED_PRECONDITION), an address that cannot be
/// bound (UNAVAILABLE).
Result<std::unique_ptr<Server>> start_server(const Config& config);

}  // namespace gorego
