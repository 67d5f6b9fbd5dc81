#pragma once
/// Tracer: span records, parent-based ratio sampling, and a batch processor with a bounded
/// queue in front of a SpanExporter (OTLP/gRPC in gorego::telemetry, or JSON lines).
///
/// Spans are recorded when they end. `record` never blocks on the exporter: a full queue
/// drops the span and counts it. A background thread exports a batch when it is full or
/// every `interval`; `shutdown` exports what is queued, for a bounded time. Sampling is
/// decided once per trace: a context with a parent follows the parent's sampled flag, a
/// root is sampled when the low 8 bytes of its trace id fall under `sample_rate`.
/// Thread safety: fully concurrent.
///
///   auto tracer = std::make_shared<Tracer>(Tracer::Options{.sample_rate = 0.1}, std::move(exporter));
///   TraceContext server = tracer->start_context(parsed_traceparent);  // new span id
///   ...
///   tracer->record(std::move(span));

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <gorego/core/log.hpp>
#include <gorego/core/status.hpp>
#include <gorego/core/trace_context.hpp>

namespace gorego {

using AttributeValue = std::variant<std::string, std::int64_t, bool, double>;

struct SpanData {
  enum class Kind : std::uint8_t { kInternal, kServer, kClient };
  TraceContext::TraceId trace_id{};
  TraceContext::SpanId span_id{};
  TraceContext::SpanId parent_span_id{};  ///< all zero for a root span
  std::uint8_t flags = 0;
  std::shared_ptr<const std::string> tracestate;
  std::string name;
  Kind kind = Kind::kInternal;
  std::int64_t start_unix_ns = 0;
  std::int64_t end_unix_ns = 0;
  std::vector<std::pair<std::string, AttributeValue>> attributes;
  bool error = false;
  std::string status_message;

  void set(std::string key, AttributeValue v) { attributes.emplace_back(std::move(key), std::move(v)); }
};

inline std::int64_t unix_nanos(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
inline std::int64_t unix_nanos_now() { return unix_nanos(std::chrono::system_clock::now()); }

/// Where finished spans go. Called from the processor's one thread only.
class SpanExporter {
 public:
  virtual ~SpanExporter() = default;
  virtual Status export_spans(std::span<const SpanData> spans) = 0;
};

class Tracer {
 public:
  struct Options {
    double sample_rate = 1.0;                     ///< for root spans: 0 none, 1 all
    std::size_t queue_size = 4096;                ///< spans waiting at most
    std::size_t batch_size = 512;                 ///< spans per export
    std::chrono::milliseconds interval{1000};     ///< export at least this often
    std::chrono::milliseconds flush_timeout{5000};  ///< shutdown's bound
  };

  struct Stats {
    std::atomic<std::uint64_t> exported{0};
    std::atomic<std::uint64_t> dropped{0};        ///< queue full, or the export failed
    std::atomic<std::uint64_t> export_failures{0};
  };

  Tracer(Options o, std::unique_ptr<SpanExporter> exporter)
      : opt_(o), exporter_(std::move(exporter)), worker_([this] { run(); }) {}
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;
  ~Tracer() { shutdown(); }

  /// The context of a new span: a child of `parent` when it is valid (its sampling
  /// decision is kept), else the root of a new trace (sampled by ratio).
  [[nodiscard]] TraceContext start_context(const std::optional<TraceContext>& parent) const {
    TraceContext tc;
    if (parent && parent->valid()) {
      tc.trace_id = parent->trace_id;
      tc.flags = parent->flags;
      tc.tracestate = parent->tracestate;
    } else {
      tc.trace_id = TraceContext::new_trace_id();
      tc.flags = sample_root(tc.trace_id) ? 1 : 0;
    }
    tc.span_id = TraceContext::new_span_id();
    return tc;
  }

  [[nodiscard]] bool sample_root(const TraceContext::TraceId& id) const {
    if (opt_.sample_rate >= 1.0) return true;
    if (opt_.sample_rate <= 0.0) return false;
    std::uint64_t low = 0;
    for (std::size_t i = 8; i < 16; ++i) low = low << 8 | id[i];
    return static_cast<double>(low) < opt_.sample_rate * 18446744073709551616.0;
  }

  /// Queues a finished span for export; drops it (counted) when the queue is full.
  void record(SpanData span) {
    {
      std::lock_guard lock(mu_);
      if (queue_.size() < opt_.queue_size && !stopping_) {
        queue_.push_back(std::move(span));
        if (queue_.size() >= opt_.batch_size) cv_.notify_one();
        return;
      }
    }
    stats_.dropped.fetch_add(1, std::memory_order_relaxed);
  }

  /// Exports everything queued now (tests, shutdown).
  void flush() {
    std::unique_lock lock(mu_);
    flush_requested_ = true;
    cv_.notify_one();
    idle_.wait(lock, [&] { return (queue_.empty() && !exporting_) || stopped_; });
  }

  /// Exports what is queued (for at most flush_timeout) and stops. Idempotent.
  void shutdown() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (worker_.joinable()) worker_.join();
  }

  Stats& stats() { return stats_; }

 private:
  /// Waits for a full batch, a flush, a stop or the interval; then takes everything queued
  /// (so record() never waits behind an export) and exports it in batches.
  void run() {
    std::unique_lock lock(mu_);
    std::optional<std::chrono::steady_clock::time_point> stop_deadline;
    while (true) {
      cv_.wait_for(lock, opt_.interval,
                   [&] { return stopping_ || flush_requested_ || queue_.size() >= opt_.batch_size; });
      if (stopping_ && !stop_deadline) stop_deadline = std::chrono::steady_clock::now() + opt_.flush_timeout;
      flush_requested_ = false;
      std::vector<SpanData> pending;
      pending.swap(queue_);
      exporting_ = true;
      lock.unlock();
      export_all(pending, stop_deadline);
      lock.lock();
      exporting_ = false;
      if (stopping_ && queue_.empty()) stopped_ = true;
      idle_.notify_all();
      if (stopped_) return;
    }
  }

  /// Exports `pending` in batches; past the stop deadline the rest is dropped, counted.
  void export_all(std::span<const SpanData> pending,
                  const std::optional<std::chrono::steady_clock::time_point>& stop_deadline) {
    for (std::size_t i = 0; i < pending.size(); i += opt_.batch_size) {
      if (stop_deadline && std::chrono::steady_clock::now() > *stop_deadline) {
        stats_.dropped.fetch_add(pending.size() - i, std::memory_order_relaxed);
        return;
      }
      const auto batch = pending.subspan(i, std::min(opt_.batch_size, pending.size() - i));
      const Status s = exporter_->export_spans(batch);
      if (s.ok()) {
        stats_.exported.fetch_add(batch.size(), std::memory_order_relaxed);
        continue;
      }
      stats_.export_failures.fetch_add(1, std::memory_order_relaxed);
      stats_.dropped.fetch_add(batch.size(), std::memory_order_relaxed);
      if (std::chrono::steady_clock::now() - last_warning_ > std::chrono::seconds(10)) {
        last_warning_ = std::chrono::steady_clock::now();
        log::warn("span export failed; spans dropped", {{"spans", std::to_string(batch.size())}, {"error", s.to_string()}});
      }
    }
  }

  Options opt_;
  std::unique_ptr<SpanExporter> exporter_;
  Stats stats_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_;
  std::vector<SpanData> queue_;
  bool stopping_ = false;
  bool stopped_ = false;
  bool flush_requested_ = false;
  bool exporting_ = false;
  std::chrono::steady_clock::time_point last_warning_{};  // the worker's own
  std::thread worker_;
};

}  // namespace gorego
