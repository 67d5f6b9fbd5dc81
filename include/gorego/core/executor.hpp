#pragma once
/// Executor: a fixed pool of threads for blocking work (disk, hashing, later upstream
/// calls), so that gRPC completion threads never block.
///
/// `post` never blocks and never runs the task inline. The poster's TraceContext travels
/// with the task and is current while it runs. `shutdown` (also run by the destructor)
/// lets queued tasks finish, then joins. Thread safety: fully concurrent.
///
///   Executor pool(8);
///   pool.post([reactor, this] { reactor->Finish(do_disk_work()); });

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <gorego/core/trace_context.hpp>

namespace gorego {

class Executor {
 public:
  using Task = std::function<void()>;

  explicit Executor(std::size_t threads) {
    if (threads == 0) threads = 1;
    workers_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { run(); });
  }
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  ~Executor() { shutdown(); }

  void post(Task t) { post(TraceContext::current(), std::move(t)); }
  /// Runs `t` with `tc` as the current trace context.
  void post(TraceContext tc, Task t) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back({std::move(t), std::move(tc)});
    }
    cv_.notify_one();
  }

  /// Runs what is queued, then stops the threads. Idempotent.
  void shutdown() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) {
      if (w.joinable()) w.join();
    }
  }

  [[nodiscard]] std::size_t threads() const { return workers_.size(); }

 private:
  void run() {
    while (true) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      if (job.context.valid()) {
        TraceContext::Scope scope(std::move(job.context));
        job.task();
      } else {
        job.task();
      }
    }
  }

  struct Job {
    Task task;
    TraceContext context;
  };

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace gorego
