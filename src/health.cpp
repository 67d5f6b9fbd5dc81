#include "health.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include <gorego/core/log.hpp>
#include <gorego/core/stop.hpp>

namespace gorego {

void HealthMonitor::start() {
  check(/*ping_upstream=*/false);
  thread_ = std::jthread([this](std::stop_token st) { run(st); });
}

void HealthMonitor::stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

Status HealthMonitor::probe_writable() const {
  const std::string path = (p_.data_dir / ".gorego-health").string();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return error(Code::kUnavailable, "cannot create {}: {}", path, std::strerror(errno));
  const bool wrote = ::write(fd, "ok", 2) == 2;
  ::close(fd);
  ::unlink(path.c_str());
  if (!wrote) return error(Code::kUnavailable, "cannot write {}", path);
  return {};
}

void HealthMonitor::check(bool ping_upstream) {
  const Status w = probe_writable();
  if (ping_upstream && p_.ping_upstream) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_upstream_check_) {
      const Status up = p_.ping_upstream(std::chrono::milliseconds(2000));
      upstream_up_ = up.ok();
      next_upstream_check_ = now + (up.ok() ? std::chrono::seconds(5) : std::chrono::seconds(1));
      std::lock_guard lock(mu_);
      upstream_error_ = up.ok() ? "" : up.message();
    }
  }
  {
    std::lock_guard lock(mu_);
    writable_error_ = w.ok() ? "" : w.message();
  }
  const bool ready = !shutting_down_ && w.ok() && p_.loaded();
  const bool was = ready_.exchange(ready);
  if (ready != was && !shutting_down_) {
    p_.set_serving(ready);
    if (!ready) log::warn("not ready", {{"store_writable", w.ok() ? "ok" : w.message()}});
    else log::info("ready");
  }
}

void HealthMonitor::run(const std::stop_token& st) {
  // Quick checks until the first time ready (the index walk ends), then every second.
  while (!sleep_unless_stopped(st, ready_ ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(100))) {
    check(/*ping_upstream=*/true);
  }
}

HealthReport HealthMonitor::report() const {
  HealthReport r;
  std::lock_guard lock(mu_);
  const bool loaded = p_.loaded();
  r.started = p_.listening() && loaded;
  r.checks.emplace_back("store_writable", writable_error_.empty() ? "ok" : writable_error_);
  r.checks.emplace_back("index_loaded", loaded ? "ok" : "walking the local store");
  const bool remote = static_cast<bool>(p_.ping_upstream);
  if (remote) r.checks.emplace_back("upstream", upstream_up_ ? "ok" : "unreachable: " + upstream_error_);
  r.ready = ready_.load() && !shutting_down_;
  if (shutting_down_) r.state = "shutting_down";
  else if (!loaded) r.state = "starting";
  else if (!r.ready) r.state = "not_ready";
  else if (remote && !upstream_up_) r.state = "degraded";
  else r.state = "ready";
  return r;
}

}  // namespace gorego
