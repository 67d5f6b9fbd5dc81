#pragma once
/// Scheduler<Placement>: the execution queue, the connected workers and the operations.
///
/// Protocol-free: an action is a JobSpec with an opaque payload (what a worker is sent) and
/// a finished lease carries an opaque response (what the worker answered). The Execution
/// service and the worker stream (src/exec/) translate to and from the wire; unit tests and
/// benchmarks drive simulated workers directly.
///
/// - Queue order: lower `priority` first, then arrival. Each free slot takes the first
///   queued action that a free worker can run (platform-property matching); the `Placement`
///   policy chooses among the workers that can.
/// - Identical actions merge: a submit whose `merge_key` equals that of an unfinished job
///   watches that job instead of queuing another.
/// - A worker whose stream ends or whose heartbeats stop is lost: its leases go back to the
///   queue (ahead of later arrivals) until an action has been lost `max_attempts` times.
/// - An action no connected worker can run fails at once when workers are connected, or
///   after `worker_wait` when none (or none matching) connects.
/// - Finished operations stay resolvable for `retention` (clients resume with WaitExecution).
///
/// Thread-safe. Watchers and worker links are called with no lock held, possibly from
/// several threads at once; each Event carries the job's version so that a watcher can
/// drop one that arrives after a newer one.
///
///     Scheduler<LeastLoaded> s({});
///     auto w = s.connect({.id = "w1", .slots = 4}, link);
///     auto op = s.submit({.merge_key = key, .payload = bytes}, [](const Event& e) { ... });

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <gorego/core/status.hpp>
#include <gorego/exec/placement.hpp>

namespace gorego::exec {

using Clock = std::chrono::steady_clock;

/// Platform properties, sorted by name then value.
using Properties = std::vector<std::pair<std::string, std::string>>;

inline void normalise(Properties& p) {
  std::sort(p.begin(), p.end());
  p.erase(std::unique(p.begin(), p.end()), p.end());
}

/// Every property of `want` is offered by `have` (both normalised).
inline bool satisfies(const Properties& have, const Properties& want) {
  return std::includes(have.begin(), have.end(), want.begin(), want.end());
}

inline std::string describe(const Properties& p) {
  std::string out = "{";
  for (const auto& [k, v] : p) out += fmt::format("{}{}={}", out.size() > 1 ? ", " : "", k, v);
  return out + "}";
}

/// Values of REAPI's ExecutionStage.
enum class Stage { kQueued = 2, kExecuting = 3, kCompleted = 4 };

struct JobSpec {
  std::string merge_key;       ///< empty: never merged (do_not_cache actions)
  std::int32_t priority = 0;   ///< lower runs sooner
  Properties platform;         ///< normalised by submit
  std::string payload;
  std::string label;           ///< carried into every Event (the server puts the action digest here)
  /// The action's own timeout (0: none). A lease not reported within it plus
  /// `Options::lease_grace` fails DEADLINE_EXCEEDED and is cancelled on its worker, so a
  /// worker that keeps heartbeating with a stuck slot cannot hold an action forever.
  std::chrono::milliseconds timeout{0};
};

/// A job's state as its watchers see it.
struct Event {
  std::string name;
  Stage stage = Stage::kQueued;
  bool done = false;
  Status status;             ///< when done: the scheduler's verdict; OK means `response` is the worker's
  std::string response;      ///< when done and OK
  std::string worker;        ///< the worker running (or that ran) it
  std::uint32_t attempt = 0; ///< leases given so far
  std::uint64_t version = 0; ///< grows with every change of this job
  Clock::time_point queued_at{};
  std::string label;
};

using Watcher = std::function<void(const Event&)>;

/// What a worker is sent.
struct Lease {
  std::string id;         ///< unique per attempt
  std::string operation;
  std::shared_ptr<const std::string> payload;
};

/// How the scheduler reaches one worker's stream. None may block.
struct WorkerLink {
  std::function<void(const Lease&)> assign;
  std::function<void(const std::string& lease)> cancel;
  /// The scheduler dropped the worker (heartbeats stopped, or the same id connected again):
  /// end its stream, so that it stops running what was requeued and connects afresh.
  std::function<void(const std::string& why)> close;
};

struct WorkerInfo {
  std::string id;
  Properties properties;
  std::uint32_t slots = 1;
};

using WorkerId = std::uint64_t;

struct SchedulerStats {
  std::size_t queued = 0, running = 0, workers = 0, slots = 0, busy = 0, operations = 0;
  std::uint64_t dispatched = 0, requeued = 0, workers_lost = 0, merged = 0;
};

struct Submitted {
  std::string name;
  bool merged = false;
  std::uint64_t watch = 0;  ///< for unwatch
};

template <PlacementPolicy Placement = LeastLoaded>
class Scheduler {
 public:
  struct Options {
    std::uint32_t max_attempts = 3;                  ///< leases of one action when workers are lost
    std::chrono::milliseconds heartbeat_timeout{30'000};
    std::chrono::milliseconds worker_wait{60'000};   ///< queued with no worker able to run it
    std::chrono::milliseconds retention{120'000};    ///< finished operations stay resolvable
    std::size_t max_queued = 100'000;
    std::chrono::milliseconds lease_grace{60'000};   ///< beyond an action's timeout
  };

  explicit Scheduler(Options o = {}, Placement p = {}) : opt_(o), placement_(std::move(p)) {
    std::random_device rd;
    rng_.seed((std::uint64_t{rd()} << 32) ^ rd());
  }
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // ---- clients -------------------------------------------------------------------------

  /// Queues an action (or joins the unfinished one with the same merge key). `w` is called
  /// with the current state before submit returns, then with every change.
  /// RESOURCE_EXHAUSTED when the queue is full; FAILED_PRECONDITION when workers are
  /// connected and none offers the platform.
  Result<Submitted> submit(JobSpec spec, Watcher w) {
    normalise(spec.platform);
    Effects fx;
    Submitted out;
    {
      std::lock_guard lock(mu_);
      auto joined = spec.merge_key.empty() ? merging_.end() : merging_.find(spec.merge_key);
      if (joined != merging_.end()) {
        Job& j = *joined->second;
        // A more urgent caller makes the shared action more urgent (while it still waits).
        if (spec.priority < j.priority && queue_.erase({j.priority, j.seq, &j}) == 1) {
          j.priority = spec.priority;
          queue_.insert({j.priority, j.seq, &j});
        }
        out = {j.name, true, add_watcher(j, std::move(w), fx)};
        ++stats_.merged;
      } else {
        GOREGO_RETURN_IF_ERROR(admit(spec));
        enqueue(std::move(spec), std::move(w), out, fx);
      }
    }
    fx.run();
    return out;
  }

  /// Watches a known operation (resumed streams). NOT_FOUND for names never issued or
  /// forgotten after `retention`.
  Result<std::uint64_t> watch(const std::string& name, Watcher w) {
    Effects fx;
    std::uint64_t token = 0;
    {
      std::lock_guard lock(mu_);
      auto it = jobs_.find(name);
      if (it == jobs_.end()) return unknown(name);
      token = add_watcher(*it->second, std::move(w), fx);
    }
    fx.run();
    return token;
  }

  void unwatch(const std::string& name, std::uint64_t token) {
    std::lock_guard lock(mu_);
    if (auto it = jobs_.find(name); it != jobs_.end()) it->second->watchers.erase(token);
  }

  std::optional<Event> state(const std::string& name) {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(name);
    if (it == jobs_.end()) return std::nullopt;
    return event_of(*it->second);
  }

  /// Cancels an unfinished operation for all its watchers (merged calls share it): a queued
  /// one leaves the queue, a running one is killed on its worker. Done ones are left alone.
  Status cancel(const std::string& name) {
    Effects fx;
    {
      std::lock_guard lock(mu_);
      auto it = jobs_.find(name);
      if (it == jobs_.end()) return unknown(name);
      Job& j = *it->second;
      if (j.done) return {};
      if (j.lease.empty()) queue_.erase({j.priority, j.seq, &j});
      stop(j, error(Code::kCancelled, "operation {} was cancelled", name), fx);
    }
    fx.run();
    return {};
  }

  // ---- workers -------------------------------------------------------------------------

  WorkerId connect(WorkerInfo info, WorkerLink link) {
    normalise(info.properties);
    Effects fx;
    WorkerId id = 0;
    {
      std::lock_guard lock(mu_);
      // A worker that reconnects before its old stream was noticed broken replaces it.
      for (auto it = workers_.begin(); it != workers_.end(); ++it) {
        if (it->second.id == info.id) {
          lose(it, "connected again on another stream", fx, /*tell_worker=*/true);
          break;
        }
      }
      id = next_worker_++;
      Worker& w = workers_[id];
      w.id = std::move(info.id);
      w.properties = std::move(info.properties);
      w.slots = std::max<std::uint32_t>(1, info.slots);
      w.link = std::move(link);
      w.last_seen = Clock::now();
      free_slots_ += w.slots;
      if (draining_) close_if_idle(w, fx);
      pump(fx);
    }
    fx.run();
    return id;
  }

  void heartbeat(WorkerId id, Clock::time_point now = Clock::now()) {
    std::lock_guard lock(mu_);
    if (auto it = workers_.find(id); it != workers_.end()) it->second.last_seen = now;
  }

  /// The worker's stream ended: its leases are requeued (or failed after max_attempts).
  void disconnect(WorkerId id) {
    Effects fx;
    {
      std::lock_guard lock(mu_);
      if (auto it = workers_.find(id); it != workers_.end()) lose(it, "disconnected", fx);
    }
    fx.run();
  }

  /// The worker began a lease: the operation is EXECUTING.
  void started(WorkerId id, const std::string& lease) {
    Effects fx;
    {
      std::lock_guard lock(mu_);
      Job* j = leased(id, lease);
      if (j == nullptr || j->done) return;
      j->stage = Stage::kExecuting;
      notify(*j, fx);
    }
    fx.run();
  }

  /// The worker ended a lease with `response`. Ignored for leases it no longer holds. The
  /// lease's duration (steady_clock, dispatch to this call) feeds WorkerLoad::mean_run_ms.
  void finished(WorkerId id, const std::string& lease, std::string response) {
    complete(id, lease, std::move(response), std::nullopt);
  }

  /// The same, with the lease's duration given rather than measured: for a caller that knows
  /// better how long the action ran (a worker's own timestamps), or a simulation in virtual
  /// time (benchmark/scheduler_bench.cpp), so that FastestFirst ranks by that. Negative
  /// durations count as zero.
  void finished(WorkerId id, const std::string& lease, std::string response, std::chrono::nanoseconds ran_for) {
    complete(id, lease, std::move(response), std::max(ran_for, std::chrono::nanoseconds::zero()));
  }

  /// The worker could not run a lease for reasons of its own (its disk, its connection to the
  /// CAS): the action goes back to the queue like a lost worker's, up to `max_attempts`, after
  /// which it fails with `why`. Ignored for leases the worker no longer holds.
  void retry(WorkerId id, const std::string& lease, Status why) {
    Effects fx;
    {
      std::lock_guard lock(mu_);
      std::shared_ptr<Job> j = take_lease(id, lease, std::nullopt, fx);
      if (j != nullptr && !j->done) requeue_or_fail(*j, std::move(why), fx);
      pump(fx);
    }
    fx.run();
  }

  /// Periodic work (the server calls it every second): heartbeat timeouts, leases past their
  /// deadline, actions waiting for a worker that never comes, forgetting old operations.
  void tick(Clock::time_point now = Clock::now()) {
    Effects fx;
    {
      std::lock_guard lock(mu_);
      for (auto it = workers_.begin(); it != workers_.end();) {
        auto next = std::next(it);
        if (now - it->second.last_seen > opt_.heartbeat_timeout) {
          lose(it, "missed its heartbeats", fx, /*tell_worker=*/true);
        }
        it = next;
      }
      for (auto& [lease, held] : leases_) {
        Job& j = *held.job;
        if (j.done || j.timeout.count() == 0 || now - held.since <= j.timeout + opt_.lease_grace) continue;
        stop(j,
             error(Code::kDeadlineExceeded, "worker {} did not report the action within its timeout of {} ms plus {} ms",
                   j.worker_name, j.timeout.count(), opt_.lease_grace.count()),
             fx);
      }
      for (auto it = queue_.begin(); it != queue_.end();) {
        Job& j = *std::get<2>(*it);
        ++it;
        if (anyone_offers(j.platform)) {
          j.unmatched_since.reset();
        } else if (!j.unmatched_since) {
          j.unmatched_since = now;
        } else if (now - *j.unmatched_since >= opt_.worker_wait) {
          queue_.erase({j.priority, j.seq, &j});
          finish(j,
                 workers_.empty()
                     ? error(Code::kUnavailable, "no worker connected for {} s; start gorego-worker processes",
                             std::chrono::duration_cast<std::chrono::seconds>(opt_.worker_wait).count())
                     : error(Code::kFailedPrecondition, "no connected worker offers platform {}; workers offer {}",
                             describe(j.platform), offered()),
                 {}, fx);
        }
      }
      while (!expiry_.empty() && expiry_.front().first <= now) {
        jobs_.erase(expiry_.front().second);
        expiry_.pop_front();
      }
      pump(fx);
    }
    fx.run();
  }

  SchedulerStats stats() const {
    std::lock_guard lock(mu_);
    SchedulerStats s = stats_;
    s.queued = queue_.size();
    s.running = leases_.size();
    s.workers = workers_.size();
    s.operations = jobs_.size();
    for (const auto& [id, w] : workers_) {
      s.slots += w.slots;
      s.busy += w.busy;
    }
    return s;
  }

  [[nodiscard]] const Options& options() const { return opt_; }

  /// The server is stopping: queued actions fail UNAVAILABLE (clients retry elsewhere), new
  /// ones are refused, nothing more is dispatched, and each worker's stream is closed as soon
  /// as it runs nothing, so that the listener's shutdown does not wait for idle workers.
  void drain() {
    Effects fx;
    {
      std::lock_guard lock(mu_);
      draining_ = true;
      while (!queue_.empty()) {
        Job& j = *std::get<2>(*queue_.begin());
        queue_.erase(queue_.begin());
        finish(j, error(Code::kUnavailable, "the server is shutting down; retry on another"), {}, fx);
      }
      for (auto& [id, w] : workers_) close_if_idle(w, fx);
    }
    fx.run();
  }

  /// Called once per job when it is done (outside the lock); set before use.
  void on_done(Watcher hook) { done_hook_ = std::move(hook); }

  /// Calls every watcher of an unfinished job with its current state (same version): a
  /// keepalive for streams that would otherwise stay silent while an action runs.
  void refresh() {
    Effects fx;
    {
      std::lock_guard lock(mu_);
      // Every unfinished job is queued or leased; the retained finished ones are not visited.
      auto keepalive = [&](const Job& j) {
        if (j.done || j.watchers.empty()) return;
        auto e = std::make_shared<const Event>(event_of(j));
        for (const auto& [token, w] : j.watchers) fx.calls.push_back([w, e] { w(*e); });
      };
      for (const auto& q : queue_) keepalive(*std::get<2>(q));
      for (const auto& [lease, held] : leases_) keepalive(*held.job);
    }
    fx.run();
  }

 private:
  struct Job {
    std::string name, merge_key, label;
    std::int32_t priority = 0;
    std::chrono::milliseconds timeout{0};
    Properties platform;
    std::shared_ptr<const std::string> payload;
    std::uint64_t seq = 0;
    Stage stage = Stage::kQueued;
    bool done = false;
    Status status;
    std::string response;
    std::uint32_t attempts = 0;
    WorkerId worker = 0;
    std::string worker_name;
    std::string lease;
    std::uint64_t version = 0;
    Clock::time_point queued_at;
    std::optional<Clock::time_point> unmatched_since;
    std::map<std::uint64_t, Watcher> watchers;
  };
  struct Worker {
    std::string id;
    Properties properties;
    std::uint32_t slots = 1, busy = 0;
    std::uint64_t assigned = 0;
    double mean_run_ms = 0;
    std::set<std::string> leases;
    Clock::time_point last_seen;
    WorkerLink link;
    bool closing = false;  ///< drain() asked its stream to close
  };
  struct Held {
    std::shared_ptr<Job> job;  // outlives the operation's retention while a worker holds it
    WorkerId worker = 0;
    Clock::time_point since;
  };
  /// Calls to make once the lock is released.
  struct Effects {
    std::vector<std::function<void()>> calls;
    void run() {
      for (auto& c : calls) c();
      calls.clear();
    }
  };
  using QueueKey = std::tuple<std::int32_t, std::uint64_t, Job*>;

  Status admit(const JobSpec& spec) const {
    if (draining_) return error(Code::kUnavailable, "the server is shutting down; retry on another");
    if (queue_.size() >= opt_.max_queued) {
      return error(Code::kResourceExhausted, "the execution queue is full ({} actions); retry later",
                   queue_.size());
    }
    if (!workers_.empty() && !anyone_offers(spec.platform)) {
      return error(Code::kFailedPrecondition, "no connected worker offers platform {}; workers offer {}",
                   describe(spec.platform), offered());
    }
    return {};
  }

  void enqueue(JobSpec spec, Watcher w, Submitted& out, Effects& fx) {
    auto job = std::make_shared<Job>();
    job->name = new_name();
    job->merge_key = std::move(spec.merge_key);
    job->label = std::move(spec.label);
    job->timeout = spec.timeout;
    job->priority = spec.priority;
    job->platform = std::move(spec.platform);
    job->payload = std::make_shared<const std::string>(std::move(spec.payload));
    job->seq = next_seq_++;
    job->queued_at = Clock::now();
    if (!job->merge_key.empty()) merging_.emplace(job->merge_key, job.get());
    jobs_.emplace(job->name, job);
    queue_.insert({job->priority, job->seq, job.get()});
    out = {job->name, false, add_watcher(*job, std::move(w), fx)};
    pump(fx);
  }


  static Status unknown(const std::string& name) {
    return error(Code::kNotFound, "operation \"{}\" is unknown: never issued, or finished too long ago", name);
  }

  std::string new_name() {
    return fmt::format("operations/{:016x}{:016x}", rng_(), rng_());
  }

  Event event_of(const Job& j) const {
    return Event{.name = j.name,
                 .stage = j.done ? Stage::kCompleted : j.stage,
                 .done = j.done,
                 .status = j.status,
                 .response = j.response,
                 .worker = j.worker_name,
                 .attempt = j.attempts,
                 .version = j.version,
                 .queued_at = j.queued_at,
                 .label = j.label};
  }

  std::uint64_t add_watcher(Job& j, Watcher w, Effects& fx) {
    const std::uint64_t token = next_watch_++;
    fx.calls.push_back([w, e = event_of(j)] { w(e); });
    if (!j.done) j.watchers.emplace(token, std::move(w));
    return token;
  }

  void notify(Job& j, Effects& fx) {
    ++j.version;
    if (j.watchers.empty()) return;
    auto e = std::make_shared<const Event>(event_of(j));
    for (const auto& [token, w] : j.watchers) fx.calls.push_back([w, e] { w(*e); });
  }

  void finish(Job& j, Status s, std::string response, Effects& fx) {
    j.done = true;
    j.status = std::move(s);
    j.response = std::move(response);
    if (!j.merge_key.empty()) {
      if (auto it = merging_.find(j.merge_key); it != merging_.end() && it->second == &j) merging_.erase(it);
    }
    // The hook first: whoever sees the final event also sees what the hook recorded.
    if (done_hook_) fx.calls.push_back([hook = &done_hook_, e = event_of(j)] { (*hook)(e); });
    notify(j, fx);
    j.watchers.clear();
    j.payload.reset();
    expiry_.emplace_back(Clock::now() + opt_.retention, j.name);
  }

  bool anyone_offers(const Properties& want) const {
    return std::any_of(workers_.begin(), workers_.end(),
                       [&](const auto& w) { return satisfies(w.second.properties, want); });
  }

  std::string offered() const {
    std::set<std::string> seen;
    for (const auto& [id, w] : workers_) seen.insert(describe(w.properties));
    std::string out;
    for (const auto& s : seen) out += (out.empty() ? "" : " or ") + s;
    return out;
  }

  Job* leased(WorkerId id, const std::string& lease) {
    auto it = leases_.find(lease);
    if (it == leases_.end() || it->second.worker != id) return nullptr;
    return it->second.job.get();
  }

  void complete(WorkerId id, const std::string& lease, std::string response,
                std::optional<std::chrono::nanoseconds> ran_for) {
    Effects fx;
    {
      std::lock_guard lock(mu_);
      std::shared_ptr<Job> j = take_lease(id, lease, ran_for, fx);
      if (j != nullptr && !j->done) {
        j->lease.clear();
        finish(*j, Status{}, std::move(response), fx);
      }
      pump(fx);
    }
    fx.run();
  }

  /// Ends the lease `lease` of worker `id` and frees its slot; its job, or null when the
  /// worker does not hold that lease.
  std::shared_ptr<Job> take_lease(WorkerId id, const std::string& lease, std::optional<std::chrono::nanoseconds> ran_for,
                                  Effects& fx) {
    auto it = leases_.find(lease);
    if (it == leases_.end() || it->second.worker != id) return nullptr;
    std::shared_ptr<Job> j = it->second.job;
    auto w = workers_.find(id);
    if (w != workers_.end()) release(w->second, lease, ran_for.value_or(Clock::now() - it->second.since));
    leases_.erase(it);
    if (draining_ && w != workers_.end()) close_if_idle(w->second, fx);
    return j;
  }

  /// Ends an unfinished job with `why`; a running one is cancelled on its worker, whose slot
  /// stays taken until it reports the lease (or is lost).
  void stop(Job& j, Status why, Effects& fx) {
    if (!j.lease.empty()) {
      if (auto w = workers_.find(j.worker); w != workers_.end()) {
        fx.calls.push_back([cancel = w->second.link.cancel, lease = j.lease] { cancel(lease); });
      }
    }
    finish(j, std::move(why), {}, fx);
  }

  /// Back to its old place in the queue, or failed with `why` once it had max_attempts leases.
  void requeue_or_fail(Job& j, Status why, Effects& fx) {
    j.lease.clear();
    if (j.attempts >= opt_.max_attempts) return finish(j, std::move(why), {}, fx);
    ++stats_.requeued;
    j.stage = Stage::kQueued;
    j.worker = 0;
    queue_.insert({j.priority, j.seq, &j});
    notify(j, fx);
  }

  void release(Worker& w, const std::string& lease, std::chrono::nanoseconds ran) {
    w.leases.erase(lease);
    --w.busy;
    ++free_slots_;
    const double ms = std::chrono::duration<double, std::milli>(ran).count();
    w.mean_run_ms = w.mean_run_ms == 0 ? ms : 0.8 * w.mean_run_ms + 0.2 * ms;
  }

  /// Drops a worker; its leases are requeued or failed.
  /// `tell_worker`: its stream is still open (the worker did not leave by itself): close it.
  void lose(typename std::map<WorkerId, Worker>::iterator it, std::string_view why, Effects& fx,
            bool tell_worker = false) {
    Worker& w = it->second;
    ++stats_.workers_lost;
    if (tell_worker && w.link.close) {
      fx.calls.push_back([close = w.link.close, why = fmt::format("worker {} {}", w.id, why)] { close(why); });
    }
    free_slots_ -= (w.slots - w.busy);
    for (const auto& lease : w.leases) {
      auto h = leases_.find(lease);
      if (h == leases_.end()) continue;
      std::shared_ptr<Job> j = h->second.job;
      leases_.erase(h);
      if (j == nullptr || j->done) continue;
      requeue_or_fail(*j,
                      error(Code::kUnavailable, "action was lost with its worker {} times (last: worker {} {})",
                            j->attempts, w.id, why),
                      fx);
    }
    workers_.erase(it);
    pump(fx);
  }

  void close_if_idle(Worker& w, Effects& fx) {
    if (!w.leases.empty() || w.closing || !w.link.close) return;
    w.closing = true;
    fx.calls.push_back([close = w.link.close, why = fmt::format("worker {}: the server is shutting down", w.id)] {
      close(why);
    });
  }

  /// Gives free slots the first queued actions their workers can run.
  void pump(Effects& fx) {
    if (draining_) return;
    std::vector<WorkerLoad> loads;
    std::vector<std::pair<WorkerId, Worker*>> who;
    for (auto it = queue_.begin(); it != queue_.end() && free_slots_ > 0;) {
      Job& j = *std::get<2>(*it);
      loads.clear();
      who.clear();
      for (auto& [id, w] : workers_) {
        if (w.busy < w.slots && satisfies(w.properties, j.platform)) {
          loads.push_back({w.id, w.slots, w.busy, w.assigned, w.mean_run_ms});
          who.emplace_back(id, &w);
        }
      }
      if (loads.empty()) {
        ++it;
        continue;
      }
      const std::size_t pick = std::min(placement_.pick(loads), loads.size() - 1);
      auto [wid, w] = who[pick];
      ++j.attempts;
      j.lease = fmt::format("{}#{}", j.name, j.attempts);
      j.worker = wid;
      j.worker_name = w->id;
      j.unmatched_since.reset();
      leases_[j.lease] = {jobs_.at(j.name), wid, Clock::now()};
      w->leases.insert(j.lease);
      ++w->busy;
      ++w->assigned;
      --free_slots_;
      ++stats_.dispatched;
      fx.calls.push_back([assign = w->link.assign, l = Lease{j.lease, j.name, j.payload}] { assign(l); });
      notify(j, fx);  // the worker's name is known now; the stage changes when it starts
      it = queue_.erase(it);
    }
  }

  Options opt_;
  Placement placement_;
  mutable std::mutex mu_;
  std::mt19937_64 rng_;
  std::unordered_map<std::string, std::shared_ptr<Job>> jobs_;
  std::unordered_map<std::string, Job*> merging_;
  std::set<QueueKey> queue_;
  std::unordered_map<std::string, Held> leases_;
  std::map<WorkerId, Worker> workers_;
  std::deque<std::pair<Clock::time_point, std::string>> expiry_;  // in completion order
  std::uint64_t next_seq_ = 0, next_watch_ = 1;
  WorkerId next_worker_ = 1;
  std::int64_t free_slots_ = 0;
  SchedulerStats stats_;
  Watcher done_hook_;
  bool draining_ = false;
};

}  // namespace gorego::exec
