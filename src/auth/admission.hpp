#pragma once
/// Admission: the gRPC listener's check of every call before its handler runs, as a server
/// interceptor. It enforces the call limits (`server.max_calls_per_connection`,
/// `server.max_calls`) and, when AccessControl is enabled, authenticates the caller (bearer
/// or basic `authorization` metadata, the verified mTLS certificate) and checks the right the
/// method needs (right_of()). The verdict reaches the handler in the call's metadata under
/// reapi::kRefusedKey (a refused call; the handler answers with that status and does nothing
/// else) and reapi::kPrincipalKey (the admitted principal's name), the same way the trace
/// context does; values a client sent under those keys are dropped first.
///
/// Thread-safe; the interceptors run on gRPC's threads.

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <gorego/core/rights.hpp>

#include "auth/access_control.hpp"

namespace gorego::auth {

class Admission {
 public:
  struct Options {
    std::shared_ptr<const AccessControl> access;  ///< null or not enabled(): no authentication
    bool mtls = false;                            ///< read client certificate names
    std::uint32_t max_calls_per_connection = 1000;
    std::uint32_t max_calls = 20000;
  };
  struct Stats {
    std::atomic<std::uint64_t> over_connection_limit{0}, over_listener_limit{0};
  };

  explicit Admission(Options o) : opt_(std::move(o)) {}

  /// The interceptor factory for the listener; `this` must outlive the listener.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> factory();

  /// The right a method ("/google.bytestream.ByteStream/Write") needs; nullopt for the
  /// health service, which load balancers and probes call without credentials. A method
  /// not in the table needs `admin`: what is not known is not open.
  [[nodiscard]] static std::optional<Right> right_of(std::string_view method);

  [[nodiscard]] const Stats& stats() const { return stats_; }
  [[nodiscard]] std::uint32_t calls_in_flight() const { return calls_.load(std::memory_order_relaxed); }

  // Interceptor's bookkeeping of the connection limits.
  /// Counts a call of `peer` in; false (and nothing counted) when a limit is reached, with
  /// `*why` saying which.
  bool enter(const std::string& peer, std::string* why);
  void leave(const std::string& peer);

  [[nodiscard]] const Options& options() const { return opt_; }

  /// From now on every new call but a health check is refused with UNAVAILABLE (the server
  /// is shutting down; clients retry, elsewhere or after the restart). Calls already
  /// admitted go on. Gives gRPC's own shutdown nothing to answer with CANCELLED, which
  /// clients do not retry.
  void begin_drain() { draining_.store(true, std::memory_order_relaxed); }
  [[nodiscard]] bool draining() const { return draining_.load(std::memory_order_relaxed); }

 private:
  Options opt_;
  mutable Stats stats_;
  std::atomic<std::uint32_t> calls_{0};
  std::atomic<bool> draining_{false};
  std::mutex mu_;
  std::unordered_map<std::string, std::uint32_t> per_peer_;
};

}  // namespace gorego::auth
