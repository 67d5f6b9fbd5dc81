#pragma once
/// Executor: a fixed pool of threads for blocking local work (disk I/O and hashing), so
/// that gRPC threads never block. Nothing that waits on another server runs here: upstream
/// calls complete through callbacks, and only their local follow-up work is posted.
///
/// Two ways in. `try_post` admits new work (a request starting) only while fewer than
/// `max_queued` tasks wait, so an overloaded server answers "busy, retry" instead of
/// queueing without bound; `post` always queues, for continuations of work already
/// admitted (they must not be dropped, and their number is bounded by the admitted work).
/// Neither blocks; neither runs the task inline, except `post` once `shutdown` began (then
/// on the caller's thread, so late continuations still complete). The poster's TraceContext
/// travels with the task
/// and is current while it runs. `shutdown` (also run by the destructor) lets queued tasks
/// finish, then joins. The poster's CallContext travels the same way. Thread safety: fully
/// concurrent.
///
///   Executor pool({.threads = 8, .max_queued = 4096});
///   if (!pool.try_post([reactor, this] { reactor->Finish(do_disk_work()); })) reject_busy();

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include <gorego/core/call_context.hpp>
#include <gorego/core/trace_context.hpp>

namespace gorego {

class Executor {
 public:
  using Task = std::function<void()>;

  struct Options {
    std::size_t threads = 8;
    std::size_t max_queued = 4096;  ///< tasks waiting before try_post refuses; 0: no bound
    std::string_view name = "io";   ///< for logs and busy messages
  };

  explicit Executor(Options o) : opt_(o) {
    if (opt_.threads == 0) opt_.threads = 1;
    workers_.reserve(opt_.threads);
    for (std::size_t i = 0; i < opt_.threads; ++i) workers_.emplace_back([this] { run(); });
  }
  explicit Executor(std::size_t threads) : Executor(Options{.threads = threads, .max_queued = 0}) {}
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  ~Executor() { shutdown(); }

  void post(Task t) { post(TraceContext::current(), std::move(t)); }
  /// Runs `t` with `tc` as the current trace context. Always queues.
  /// After `shutdown` began, `t` runs on the calling thread instead (late continuations
  /// of upstream calls still complete).
  void post(TraceContext tc, Task t) {
    {
      std::unique_lock lock(mu_);
      if (stopping_) {
        lock.unlock();
        TraceContext::Scope scope(std::move(tc));
        t();
        return;
      }
      queue_.push_back({std::move(t), std::move(tc), CallContext::current()});
      queued_.store(queue_.size(), std::memory_order_relaxed);
    }
    cv_.notify_one();
  }

  /// Queues `t` unless `max_queued` tasks already wait or shutdown began; false (and `t`
  /// dropped) then.
  [[nodiscard]] bool try_post(Task t) { return try_post(TraceContext::current(), std::move(t)); }
  [[nodiscard]] bool try_post(TraceContext tc, Task t) {
    {
      std::lock_guard lock(mu_);
      if (stopping_ || (opt_.max_queued != 0 && queue_.size() >= opt_.max_queued)) {
        refused_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      queue_.push_back({std::move(t), std::move(tc), CallContext::current()});
      queued_.store(queue_.size(), std::memory_order_relaxed);
    }
    cv_.notify_one();
    return true;
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
  [[nodiscard]] std::size_t max_queued() const { return opt_.max_queued; }
  [[nodiscard]] std::string_view name() const { return opt_.name; }
  /// Tasks waiting now (a gauge; relaxed).
  [[nodiscard]] std::size_t queued() const { return queued_.load(std::memory_order_relaxed); }
  /// try_post calls refused so far.
  [[nodiscard]] std::uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

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
        queued_.store(queue_.size(), std::memory_order_relaxed);
      }
      std::optional<CallContext::Scope> call;
      if (!job.call.empty()) call.emplace(std::move(job.call));
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
    CallContext call;  // the poster's, current while the task runs
  };

  Options opt_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::atomic<std::size_t> queued_{0};
  std::atomic<std::uint64_t> refused_{0};
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

/// Starts `op(callback)` and runs `then(value)` once the callback delivered its value:
/// right here when it did so before `op` returned (a local answer), else posted to
/// `pool` (an upstream answer arrives on a thread that must not do disk work).
///
///   then_on<bool>(pool, [&](auto cb) { store.contains(d, cb); }, [this](bool present) { ... });
template <class T, class Op, class Then>
void then_on(Executor& pool, Op&& op, Then&& then) {
  struct Shared {
    explicit Shared(Then&& t) : then(std::forward<Then>(t)) {}
    std::atomic<int> turn{0};  // 1: op returned first; 2: the value came first
    std::optional<T> value;
    std::decay_t<Then> then;
  };
  auto s = std::make_shared<Shared>(std::forward<Then>(then));
  op([s, &pool, tc = TraceContext::current()](T v) {
    s->value.emplace(std::move(v));
    if (s->turn.exchange(2, std::memory_order_acq_rel) == 1) {
      pool.post(tc, [s] { s->then(std::move(*s->value)); });  // in the starter's trace
    }
  });
  if (s->turn.exchange(1, std::memory_order_acq_rel) == 2) s->then(std::move(*s->value));
}

}  // namespace gorego
