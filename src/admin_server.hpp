#pragma once
/// The admin HTTP server (`telemetry.metrics_addr`): /metrics, /health/live,
/// /health/ready, /health/startup and, when enabled, /debug/pprof/ (CPU and heap profiles),
/// on a few civetweb threads of its own so a busy gRPC server never starves the probes.
/// With an `authorize` handler, everything but /health/* needs its approval (the `admin`
/// right): 401 without or with wrong credentials, 403 for a principal without the right.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gorego/core/status.hpp>

struct mg_context;

namespace gorego {

/// The answer of the health endpoints; see docs/observability.md.
struct HealthReport {
  bool started = false;  ///< /health/startup: listening and the index walk has finished
  bool ready = false;    ///< /health/ready (200 also when degraded)
  std::string state;     ///< "ready", "degraded", "starting", "not_ready" or "shutting_down"
  std::vector<std::pair<std::string, std::string>> checks;  ///< name, "ok" or why not
};

class AdminServer {
 public:
  struct Handlers {
    std::function<std::string()> metrics;
    std::function<HealthReport()> health;
    /// Checks the authorization header's value for `what` ("admin /metrics"); OK lets the
    /// request in, UNAUTHENTICATED answers 401, anything else 403. Null: no check.
    std::function<Status(std::string_view authorization, std::string_view what)> authorize;
    bool pprof = false;  ///< serve /debug/pprof/ (else 404 naming telemetry.pprof)
  };

  /// Listens on `addr` (HOST:PORT, port 0 picks one) and serves until destroyed.
  static Result<std::unique_ptr<AdminServer>> start(const std::string& addr, Handlers h);
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;
  ~AdminServer();

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] const Handlers& handlers() const { return handlers_; }

 private:
  explicit AdminServer(Handlers h) : handlers_(std::move(h)) {}
  Handlers handlers_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
  std::string host_;  ///< the listening address's host, to wake the accept loop at stop
};

/// gperftools profiles in the pprof format: a CPU profile of the next `seconds`, and a
/// sample of the heap in use (tcmalloc's sampler; see docs/observability.md).
Result<std::string> cpu_profile(int seconds);
Result<std::string> heap_profile();

}  // namespace gorego
