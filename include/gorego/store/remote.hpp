#pragma once
/// Remote<Client>: a tier of a ProxyStore reached through a RemoteClient (the backing
/// cache, or, with `authority = false`, a cache that holds only part of the keyspace).
///
/// Holds the client (absent until `connect`, so one binary serves with or without an
/// upstream), the write mode, whether it is the authority for presence, its counters and
/// the bounded write-back queue of mode `back`, made durable by a WriteBackJournal when
/// `use_journal` was called: queued uploads survive a crash and are replayed by `replay`
/// at the next start, and those still queued when `stop` gives up stay for the next start.
/// The read-through and write-through logic
/// (and the singleflight that makes N concurrent misses of one digest cost one fetch)
/// lives in ProxyStore, which sees every tier. Thread safety: every member may be called
/// concurrently.
///
///   Remote<Reapi> remote;
///   remote.connect(std::move(*Reapi::connect(opts)), {.mode = WriteMode::kBack});
///   remote.enqueue({d, Tree::kCas}, [&] { return upload(d); });

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
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
#include <gorego/store/write_back_journal.hpp>

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
    int attempts = 4;  ///< tries per write-back job; 0: until it lands (or stop gives up)
    std::chrono::milliseconds backoff{200};              ///< first retry delay, doubling
    std::chrono::milliseconds max_backoff{30'000};       ///< longest retry delay
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

  /// Makes the write-back queue durable in the journal at `path` (mode `back`; call before
  /// `connect`). Fails when the file cannot be read or created.
  Status use_journal(const std::filesystem::path& path, bool fsync) {
    auto j = WriteBackJournal::open(path, {.fsync = fsync});
    if (!j) return j.error();
    journal_ = std::move(*j);
    if ((*journal_).skipped() > 0) {
      log::warn("write-back journal: unreadable lines skipped (the unsynced tail of a crash)",
                {{"path", path.string()}, {"lines", std::to_string(journal_->skipped())}});
    }
    return {};
  }

  /// Queues again the uploads the journal holds from before the last stop or crash;
  /// `make(key)` builds each one's job. After `connect`, once the local tier serves reads.
  template <class Make>
  void replay(Make&& make) {
    if (!journal_ || journal_->pending().empty()) return;
    std::size_t queued = 0;
    std::size_t dropped = 0;
    {
      std::lock_guard lock(mu_);
      for (const auto& p : journal_->pending()) {
        if (queue_.size() >= opt_.queue_size) {  // the bound holds for replayed uploads too
          ++dropped;
          (void)journal_->done(p.seq);
          continue;
        }
        queue_.push_back({describe(p.key), make(p.key), p.seq});
        ++queued;
      }
      stats_.queued.fetch_add(queued, std::memory_order_relaxed);
      stats_.dropped.fetch_add(dropped, std::memory_order_relaxed);
    }
    cv_.notify_all();
    log::info("write-back journal replayed", {{"path", journal_->path().string()},
                                              {"queued", std::to_string(queued)},
                                              {"dropped_queue_full", std::to_string(dropped)}});
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

  /// Queues the upload of `key` for mode `back`; with a journal, returns once the upload
  /// is recorded durably (the caller acknowledges its client after that). A full queue
  /// drops the job, counted and logged.
  void enqueue(const ObjectKey& key, std::function<Status()> job) {
    std::uint64_t seq = 0;
    {
      std::unique_lock lock(mu_);
      if (queue_.size() < opt_.queue_size && !stopping_) {
        if (journal_) {
          auto r = journal_->record(key);
          if (r) {
            seq = *r;
          } else {
            stats_.journal_errors.fetch_add(1, std::memory_order_relaxed);
            if (should_warn()) log::warn("write-back journal: upload queued in memory only", {{"error", r.error().to_string()}});
          }
        }
        queue_.push_back({describe(key), std::move(job), seq});
        stats_.queued.fetch_add(1, std::memory_order_relaxed);
        lock.unlock();
        cv_.notify_all();
        // Outside the lock: concurrent uploads share the device flushes.
        if (seq != 0) {
          if (Status s = journal_->sync(); !s.ok()) {
            stats_.journal_errors.fetch_add(1, std::memory_order_relaxed);
            if (should_warn()) log::warn("write-back journal: cannot sync", {{"error", s.to_string()}});
          }
        }
        return;
      }
    }
    stats_.dropped.fetch_add(1, std::memory_order_relaxed);
    log::warn(stopping() ? "shutting down: upload dropped" : "write-back queue full: upload dropped",
              {{"object", describe(key)}, {"queue_size", std::to_string(opt_.queue_size)}});
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
    std::uint64_t seq = 0;  ///< its journal entry; 0: none
  };

  static std::string describe(const ObjectKey& k) {
    return fmt::format("{} {}", k.tree == Tree::kAc ? "action" : "blob", k.digest);
  }

  void drain() {
    while (true) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        if (stopping_ && std::chrono::steady_clock::now() > stop_deadline_) {
          if (journal_) {  // not done: the next start uploads them
            log::warn("shutdown: queued uploads left in the write-back journal for the next start",
                      {{"count", std::to_string(queue_.size())}, {"path", journal_->path().string()}});
          } else {
            stats_.dropped.fetch_add(queue_.size(), std::memory_order_relaxed);
            log::warn("shutdown: queued uploads dropped", {{"count", std::to_string(queue_.size())}});
          }
          queue_.clear();
          idle_.notify_all();
          return;
        }
        job = std::move(queue_.front());
        queue_.pop_front();
        running_ = true;
      }
      const bool landed = run_with_retries(job);
      if (journal_ && job.seq != 0 && (landed || !left_for_next_start_)) (void)journal_->done(job.seq);
      {
        std::lock_guard lock(mu_);
        running_ = false;
        if (journal_ && queue_.empty()) (void)journal_->reset_if_idle();
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

  /// True once the job's upload landed. False when it was given up (dropped, counted) or,
  /// with a journal, interrupted by the end of the stop deadline (`left_for_next_start_`).
  bool run_with_retries(Job& job) {
    auto delay = opt_.backoff;
    Status s;
    left_for_next_start_ = false;
    for (int attempt = 1; opt_.attempts == 0 || attempt <= opt_.attempts; ++attempt) {
      s = job.run();
      if (s.ok()) {
        stats_.uploaded.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
      stats_.upstream_errors.fetch_add(1, std::memory_order_relaxed);
      if (!transient(s.code())) break;
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, delay, [&] { return stopping_ && std::chrono::steady_clock::now() > stop_deadline_; })) {
        if (journal_ && job.seq != 0) {
          left_for_next_start_ = true;
          return false;
        }
        break;
      }
      delay = std::min(delay * 2, opt_.max_backoff);
    }
    stats_.dropped.fetch_add(1, std::memory_order_relaxed);
    log::warn("write-back upload failed: dropped", {{"object", job.what}, {"error", s.to_string()}});
    return false;
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
  std::unique_ptr<WriteBackJournal> journal_;
  bool left_for_next_start_ = false;  // the worker thread's only
  std::thread worker_;
};

}  // namespace gorego
