#pragma once
/// Remote<Client>: a tier of a ProxyStore reached through a RemoteClient (the backing
/// cache, or, with `authority = false`, a cache that holds only part of the keyspace).
///
/// Holds the client (absent until `connect`, so one binary serves with or without an
/// upstream), the write mode, whether it is the authority for presence, its counters and
/// the bounded write-back queue of mode `back`. The read-through and write-through logic
/// (and the singleflight that makes N concurrent misses of one digest cost one fetch)
/// lives in ProxyStore, which sees every tier. Thread safety: every member may be called
/// concurrently.
///
///   Remote<Reapi> remote;
///   remote.connect(std::move(*Reapi::connect(opts)), {.mode = WriteMode::kBack});
///   remote.enqueue("blob ab12.../5", [&] { return upload(d); });

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include <gorego/concepts/remote_client.hpp>
#include <gorego/concepts/remote_tier.hpp>
#include <gorego/core/log.hpp>
#include <gorego/core/name.hpp>

namespace gorego {

template <RemoteClient Client>
class Remote {
 public:
  static constexpr std::string_view kRemote = "remote";
  static constexpr std::string_view kName =
      detail::JoinNames<kRemote, detail::kOpen, Client::kName, detail::kClose>::value;
  static constexpr bool kEnabled = true;

  struct Options {
    WriteMode mode = WriteMode::kThrough;
    std::size_t queue_size = 10000;                      ///< write-back jobs waiting at most
    int attempts = 4;                                    ///< tries per write-back job
    std::chrono::milliseconds backoff{200};              ///< first retry delay, doubling
    std::chrono::milliseconds drain_on_stop{10'000};     ///< how long stop() keeps uploading
    bool authority = true;                               ///< its FindMissingBlobs is the truth
  };

  using Stats = TierStats;

  Remote() = default;
  Remote(const Remote&) = delete;
  Remote& operator=(const Remote&) = delete;
  /// Stops the write-back worker, then destroys the client while the rest of the tier
  /// still exists: the client waits for its calls in flight, whose callbacks use the tier.
  ~Remote() { disconnect(); }

  /// Stops the tier and destroys its client (waiting for its calls in flight). Not
  /// concurrent with other members: for the end of the tier's life.
  void disconnect() {
    stop();
    client_.reset();
  }

  /// Activates the tier. Never blocks on the upstream.
  void connect(std::unique_ptr<Client> client, Options o) {
    client_ = std::move(client);
    opt_ = o;
    if (opt_.mode == WriteMode::kBack) worker_ = std::thread([this] { drain(); });
  }

  Client& client() { return *client_; }
  [[nodiscard]] bool active() const { return client_ != nullptr; }
  [[nodiscard]] bool authority() const { return opt_.authority; }
  [[nodiscard]] WriteMode mode() const { return opt_.mode; }
  Stats& stats() { return stats_; }

  /// Queues an upload for mode `back`. A full queue drops the job, counted and logged.
  void enqueue(std::string what, std::function<Status()> job) {
    {
      std::lock_guard lock(mu_);
      if (queue_.size() < opt_.queue_size && !stopping_) {
        queue_.push_back({std::move(what), std::move(job)});
        stats_.queued.fetch_add(1, std::memory_order_relaxed);
        cv_.notify_all();
        return;
      }
    }
    stats_.dropped.fetch_add(1, std::memory_order_relaxed);
    log::warn(stopping() ? "shutting down: upload dropped" : "write-back queue full: upload dropped",
              {{"object", what}, {"queue_size", std::to_string(opt_.queue_size)}});
  }

  /// Rate limit for warnings repeated per request during an outage: true at most once
  /// every 10 seconds.
  bool should_warn() {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_warn_.load(std::memory_order_relaxed);
    if (now - last < std::chrono::nanoseconds(std::chrono::seconds(10)).count()) return false;
    return last_warn_.compare_exchange_strong(last, now);
  }

  /// Blocks until the write-back queue is empty and no job runs (tests, shutdown).
  void flush() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return queue_.empty() && !running_; });
  }

  /// Stops the write-back worker: queued jobs keep uploading for `drain_on_stop`, the rest
  /// are dropped (counted and logged). Idempotent.
  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      stop_deadline_ = std::chrono::steady_clock::now() + opt_.drain_on_stop;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

 private:
  struct Job {
    std::string what;
    std::function<Status()> run;
  };

  void drain() {
    while (true) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        if (stopping_ && std::chrono::steady_clock::now() > stop_deadline_) {
          stats_.dropped.fetch_add(queue_.size(), std::memory_order_relaxed);
          log::warn("shutdown: queued uploads dropped", {{"count", std::to_string(queue_.size())}});
          queue_.clear();
          idle_.notify_all();
          return;
        }
        job = std::move(queue_.front());
        queue_.pop_front();
        running_ = true;
      }
      run_with_retries(job);
      {
        std::lock_guard lock(mu_);
        running_ = false;
      }
      idle_.notify_all();
    }
  }

  bool stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  /// Codes worth another attempt; anything else (a refusal, UNIMPLEMENTED...) is final.
  static bool transient(Code c) {
    return c == Code::kUnavailable || c == Code::kDeadlineExceeded || c == Code::kResourceExhausted ||
           c == Code::kAborted;
  }

  void run_with_retries(Job& job) {
    auto delay = opt_.backoff;
    Status s;
    for (int attempt = 1; attempt <= opt_.attempts; ++attempt) {
      s = job.run();
      if (s.ok()) {
        stats_.uploaded.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      stats_.upstream_errors.fetch_add(1, std::memory_order_relaxed);
      if (!transient(s.code())) break;
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, delay, [&] { return stopping_ && std::chrono::steady_clock::now() > stop_deadline_; })) break;
      delay *= 2;
    }
    stats_.dropped.fetch_add(1, std::memory_order_relaxed);
    log::warn("write-back upload failed: dropped", {{"object", job.what}, {"error", s.to_string()}});
  }

  std::unique_ptr<Client> client_;
  Options opt_;
  Stats stats_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_;
  std::deque<Job> queue_;
  bool running_ = false;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point stop_deadline_{};
  std::atomic<std::int64_t> last_warn_{0};
  std::thread worker_;
};

}  // namespace gorego
