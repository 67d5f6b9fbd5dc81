#pragma once
// gorego-load: the timed run. N client threads, each with its own Connection, call one
// request function until the duration is over or the request budget is spent; latencies,
// counts, errors and CPU are gathered into a Report.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <latch>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "client.hpp"
#include "load.hpp"

namespace gorego::load {

using Clock = std::chrono::steady_clock;

/// Counts errors and keeps the first few messages. Thread-safe.
class Errors {
 public:
  static constexpr std::size_t kSamples = 10;

  void add(const Status& s) {
    if (count_.fetch_add(1) < kSamples) {
      std::lock_guard lock(mu_);
      samples_.push_back(s.to_string());
    }
  }
  [[nodiscard]] std::uint64_t count() const { return count_.load(); }
  [[nodiscard]] std::vector<std::string> samples() const {
    std::lock_guard lock(mu_);
    return samples_;
  }

 private:
  std::atomic<std::uint64_t> count_{0};
  mutable std::mutex mu_;
  std::vector<std::string> samples_;
};

/// One client thread's state. Only its own thread touches it during a run.
struct Worker {
  Worker(unsigned i, Connection& c, std::uint64_t seed) : index(i), conn(&c), rng(seed) {}

  /// Runs `f` (one RPC) and records its latency.
  template <class F>
  auto timed(F&& f) {
    const auto t0 = Clock::now();
    auto r = std::forward<F>(f)();
    latencies_ns.push_back(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
    return r;
  }

  unsigned index;
  Connection* conn;
  Rng rng;
  std::uint64_t requests = 0;
  std::uint64_t items = 0;
  std::uint64_t bytes = 0;
  std::vector<std::uint64_t> latencies_ns;
};

/// The connections of a run and what every workload needs to know about the server.
struct Env {
  Rpc rpc;
  std::vector<std::unique_ptr<Connection>> conns;
  /// Bytes one batch request may carry: the server's max_batch_total_size_bytes (4 MiB if it
  /// sets none) less a margin for the message's own fields.
  std::uint64_t batch_budget = 0;
};

/// Per-blob allowance for proto framing when filling a batch up to the budget.
inline constexpr std::uint64_t kBatchOverheadPerBlob = 128;

/// One request of a workload: `request` numbers the requests of the run from 0.
using Op = std::function<Status(Worker&, std::uint64_t request)>;

/// Runs `op` on every connection's thread, for `duration` seconds or `requests` requests in
/// all (exactly one of the two is set).
inline Report run_timed(const Options& o, Env& env, std::string workload, std::string item_unit,
                        bool has_bytes, std::optional<double> duration,
                        std::optional<std::uint64_t> requests, const Op& op) {
  const unsigned n = static_cast<unsigned>(env.conns.size());
  std::vector<Worker> workers;
  std::random_device rd;
  for (unsigned i = 0; i < n; ++i) {
    workers.emplace_back(i, *env.conns[i], (std::uint64_t{rd()} << 32) ^ rd() ^ mix64(i));
  }
  Errors errors;
  std::atomic<std::uint64_t> next{0};
  std::latch ready(n);
  std::latch go(1);
  Clock::time_point start;
  std::vector<std::jthread> threads;
  for (unsigned i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      Worker& w = workers[i];
      ready.count_down();
      go.wait();
      const auto deadline =
          duration ? std::optional(start + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(*duration)))
                   : std::nullopt;
      while (true) {
        if (deadline && Clock::now() >= *deadline) break;
        const std::uint64_t r = next.fetch_add(1, std::memory_order_relaxed);
        if (requests && r >= *requests) break;
        ++w.requests;
        if (Status s = op(w, r); !s.ok()) errors.add(s);
      }
    });
  }
  ready.wait();
  const std::optional<CpuTimes> server0 = o.server_pid ? process_cpu(*o.server_pid) : std::nullopt;
  const auto steal0 = machine_steal();
  const CpuTimes cpu0 = self_cpu();
  start = Clock::now();
  go.count_down();
  threads.clear();  // joins
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  const CpuTimes cpu1 = self_cpu();
  const auto steal1 = machine_steal();
  const std::optional<CpuTimes> server1 = o.server_pid ? process_cpu(*o.server_pid) : std::nullopt;

  Report r;
  r.workload = std::move(workload);
  r.item_unit = std::move(item_unit);
  r.has_bytes = has_bytes;
  r.concurrency = n;
  r.shared_channel = o.shared_channel;
  r.wall_seconds = wall;
  std::vector<std::uint64_t> lat;
  for (auto& w : workers) {
    r.requests += w.requests;
    r.items += w.items;
    r.bytes += w.bytes;
    lat.insert(lat.end(), w.latencies_ns.begin(), w.latencies_ns.end());
  }
  if (!lat.empty()) {
    std::sort(lat.begin(), lat.end());
    auto rank = [&](double p) {
      const auto k = static_cast<std::size_t>(std::ceil(p * static_cast<double>(lat.size())));
      return static_cast<double>(lat[std::max<std::size_t>(k, 1) - 1]) / 1e6;
    };
    r.p50_ms = rank(0.50);
    r.p99_ms = rank(0.99);
    r.max_ms = static_cast<double>(lat.back()) / 1e6;
    double sum = 0;
    for (auto v : lat) sum += static_cast<double>(v);
    r.mean_ms = sum / static_cast<double>(lat.size()) / 1e6;
  }
  r.client = {.user = cpu1.user - cpu0.user, .sys = cpu1.sys - cpu0.sys};
  r.cores = std::max(1u, std::thread::hardware_concurrency());
  r.server_pid = o.server_pid;
  if (server0 && server1)
    r.server_cpu =
        CpuTimes{.user = server1->user - server0->user, .sys = server1->sys - server0->sys};
  if (steal0 && steal1 && steal1->second > steal0->second) {
    r.steal_fraction = (steal1->first - steal0->first) / (steal1->second - steal0->second);
  }
  r.errors = errors.count();
  r.error_samples = errors.samples();
  return r;
}

/// The HTTP cache protocol workloads (http_workloads.cpp).
Result<Report> http_put(const Options& o, Env& env);
Result<Report> http_get(const Options& o, Env& env);

}  // namespace gorego::load
