#pragma once
/// HealthMonitor: readiness of the server, re-evaluated every second (every 100 ms until the
/// first time ready): the data directory must take a write, the index must be loaded, and
/// the server must not be shutting down. The upstream is pinged from here too (every 5 s,
/// every second while down): an unreachable upstream makes the server "degraded", not
/// unready. grpc.health.v1 and the admin server's /health/* endpoints follow it.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <gorego/core/status.hpp>

#include "admin_server.hpp"

namespace gorego {

class HealthMonitor {
 public:
  struct Probes {
    std::filesystem::path data_dir;
    std::function<bool()> loaded;                                   ///< the index walk finished
    std::function<Status(std::chrono::milliseconds)> ping_upstream; ///< empty without an upstream
    std::function<void(bool)> set_serving;                          ///< grpc.health.v1
    std::function<bool()> listening;
  };

  explicit HealthMonitor(Probes p) : p_(std::move(p)) {}
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;
  ~HealthMonitor() { stop(); }

  /// A first check (without pinging the upstream: start-up never waits on it), then the
  /// monitor thread.
  void start();
  void stop();
  /// Readiness goes false and stays so.
  void begin_shutdown() { shutting_down_ = true; }

  [[nodiscard]] bool ready() const { return ready_.load(); }
  [[nodiscard]] bool upstream_up() const { return upstream_up_.load(); }
  [[nodiscard]] HealthReport report() const;

 private:
  Status probe_writable() const;
  void check(bool ping_upstream);
  void run(const std::stop_token& st);

  Probes p_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> ready_{false};
  std::atomic<bool> upstream_up_{false};
  std::chrono::steady_clock::time_point next_upstream_check_{};
  mutable std::mutex mu_;
  std::string writable_error_;
  std::string upstream_error_;
  std::jthread thread_;
};

}  // namespace gorego
