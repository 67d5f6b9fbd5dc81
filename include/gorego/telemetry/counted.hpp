#pragma once
/// Counted: the Instrumentation policy that counts store operations as Prometheus
/// metrics, on a registry of its own.
///
/// Per top-level operation: `gorego_cache_requests_total{method,tier,status}` (status:
/// hit, miss, ok, invalid, error; tier: local, remote, none),
/// `gorego_cache_latency_seconds{method,tier}` and `gorego_blob_size_bytes{method}`;
/// FindMissing also counts the digests it was asked about and found missing. Eviction
/// passes count objects and bytes by trigger. `attach(store)` adds gauges read at scrape
/// time: disk use and limit, index size and load state, and, with a remote tier, the
/// upstream's errors by code, the write-back queue and singleflight savings. Labels are
/// fixed sets: never a digest or an instance name. Nested steps are not counted (they are
/// spans, see Traced). Thread safety: fully concurrent; series are created on first use
/// and then updated without a registry lock.
///
///   ProxyStore<Local<...>, Remote<...>, Counted> store(...);
///   source.add(store.instrumentation<Counted>().registry());

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <gorego/concepts/instrumentation.hpp>
#include <gorego/concepts/remote_tier.hpp>
#include <gorego/core/status.hpp>
#include <gorego/telemetry/metrics.hpp>

namespace gorego {

class Counted {
 public:
  static constexpr std::string_view kName = "counted";

  /// The `status` label of gorego_cache_requests_total.
  enum class Result : std::uint8_t { kHit, kMiss, kOk, kInvalid, kError };
  static constexpr std::size_t kResults = 5;
  static constexpr std::string_view result_name(Result r) {
    constexpr std::array<std::string_view, kResults> kNames{"hit", "miss", "ok", "invalid", "error"};
    return kNames[static_cast<std::size_t>(r)];
  }

  struct Token {
    StoreOp op;
    std::chrono::steady_clock::time_point start;
    std::size_t digests = 0;
  };

  Counted()
      : registry_(std::make_shared<prometheus::Registry>()),
        gauges_(std::make_shared<telemetry::CallbackCollector>()),
        requests_(prometheus::BuildCounter()
                      .Name("gorego_cache_requests_total")
                      .Help("Store operations by method, the tier that answered, and result")
                      .Register(*registry_)),
        latency_(prometheus::BuildHistogram()
                     .Name("gorego_cache_latency_seconds")
                     .Help("Store operation latency by method and the tier that answered")
                     .Register(*registry_)),
        sizes_(prometheus::BuildHistogram()
                   .Name("gorego_blob_size_bytes")
                   .Help("Sizes of blobs and action results read and written, by method")
                   .Register(*registry_)),
        digests_(prometheus::BuildCounter()
                     .Name("gorego_find_missing_digests_total")
                     .Help("Digests asked about in FindMissingBlobs, by whether they were missing")
                     .Register(*registry_)),
        evictions_(prometheus::BuildCounter()
                       .Name("gorego_janitor_evictions_total")
                       .Help("Objects evicted from the local tier, by trigger (janitor run or size limit)")
                       .Register(*registry_)),
        evicted_bytes_(prometheus::BuildCounter()
                           .Name("gorego_janitor_evicted_bytes_total")
                           .Help("Disk bytes freed by eviction, by trigger")
                           .Register(*registry_)),
        runs_(prometheus::BuildCounter()
                  .Name("gorego_janitor_runs_total")
                  .Help("Eviction passes, including janitor runs that freed nothing, by trigger")
                  .Register(*registry_)),
        present_(&digests_.Add({{"result", "present"}})),
        missing_(&digests_.Add({{"result", "missing"}})) {
    std::size_t i = 0;  // in the order of EvictionRun::Trigger
    for (const char* trigger : {"janitor", "limit", "disk_full"}) {
      evicted_objects_by_trigger_[i] = &evictions_.Add({{"trigger", trigger}});
      evicted_bytes_by_trigger_[i] = &evicted_bytes_.Add({{"trigger", trigger}});
      runs_by_trigger_[i] = &runs_.Add({{"trigger", trigger}});
      ++i;
    }
  }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;

  /// The operation metrics, and the gauges added by attach().
  [[nodiscard]] std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  [[nodiscard]] std::shared_ptr<telemetry::CallbackCollector> gauges() const { return gauges_; }

  Token begin(const OpInfo& info) {
    if (nested(info.op)) return {info.op, {}};
    return {info.op, std::chrono::steady_clock::now(), info.digests};
  }

  void end(Token& t, const Outcome& o) {
    if (nested(t.op)) return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t.start).count();
    const Result r = classify(t.op, o.status);
    request_counter(t.op, o.tier, r).Increment();
    latency_histogram(t.op, o.tier).Observe(seconds);
    if (o.status.ok() && sized(t.op)) size_histogram(t.op).Observe(static_cast<double>(o.bytes));
    if (t.op == StoreOp::kFindMissing && o.status.ok()) {
      missing_->Increment(static_cast<double>(o.missing));
      present_->Increment(static_cast<double>(t.digests - std::min(t.digests, o.missing)));
    }
  }

  void on_eviction(const EvictionRun& run) {
    const auto i = static_cast<std::size_t>(run.trigger);
    runs_by_trigger_[i]->Increment();
    evicted_objects_by_trigger_[i]->Increment(static_cast<double>(run.objects));
    evicted_bytes_by_trigger_[i]->Increment(static_cast<double>(run.bytes));
  }

  /// Gauges read from the store at scrape time. The store must outlive every scrape.
  template <class Store>
  void attach(Store& store) {
    auto& local = store.local();
    gauges_->gauge("gorego_disk_usage_bytes", "Disk footprint of the local tier (block-rounded)",
                   [&local] { return static_cast<double>(local.usage_bytes()); });
    gauges_->gauge("gorego_disk_limit_bytes", "The local tier's size limit (max_size)",
                   [&local] { return static_cast<double>(local.max_bytes()); });
    gauges_->gauge("gorego_index_blobs", "Objects (CAS blobs and action results) in the local index",
                   [&local] { return static_cast<double>(local.index_size()); });
    gauges_->gauge("gorego_index_memory_bytes", "Memory of the local index's tables and of the ActionCache entries held with it",
                   [&local] { return static_cast<double>(local.index_memory_bytes()); });
    gauges_->gauge("gorego_memory_cache_bytes", "Memory held by the small-blob cache (storage.memory_cache), with per-entry overhead",
                   [&local] { return static_cast<double>(local.memory_cache().bytes()); });
    gauges_->add("gorego_memory_cache_lookups_total", "Small-blob cache lookups, by result",
                 prometheus::MetricType::Counter,
                 {{{{"result", "hit"}}, [&local] { return static_cast<double>(local.memory_cache().hits()); }},
                  {{{"result", "miss"}}, [&local] { return static_cast<double>(local.memory_cache().misses()); }}});
    gauges_->gauge("gorego_index_loaded", "1 once the start-up walk of the local tier has finished",
                   [&local] { return local.loaded() ? 1.0 : 0.0; });
    if constexpr (requires { local.backend().action_log().stats(); }) {
      auto& log = local.backend().action_log();
      gauges_->add("gorego_action_log_bytes",
                   "ActionCache log segments on disk (file) and the records of current entries in them (live)",
                   prometheus::MetricType::Gauge,
                   {{{{"kind", "file"}}, [&log] { return static_cast<double>(log.stats().file_bytes); }},
                    {{{"kind", "live"}}, [&log] { return static_cast<double>(log.stats().live_bytes); }}});
      gauges_->counter("gorego_action_log_compactions_total",
                       "ActionCache log segments compacted (live records copied forward, segment deleted)",
                       [&log] { return static_cast<double>(log.stats().compactions); });
    }
    if constexpr (Store::Remote::kEnabled) {
      // Summed over the tiers behind the local one (one, the upstream, in the shipped stack).
      auto sum = [&store](auto field) {
        return [&store, field] {
          double total = 0;
          store.for_each_tier([&](auto& t) { total += static_cast<double>(field(t.stats()).load()); });
          return total;
        };
      };
      gauges_->gauge("gorego_upstream_configured", "1 when a backing cache (remote.target) is configured",
                     [&store] { return store.tiers_active() ? 1.0 : 0.0; });
      std::vector<telemetry::CallbackCollector::Series> by_code;
      for (std::size_t c = 1; c < 17; ++c) {
        by_code.push_back({{{"code", std::string(code_name(static_cast<Code>(c)))}},
                           sum([c](TierStats& st) -> auto& { return st.errors_by_code[c]; })});
      }
      gauges_->add("gorego_upstream_errors_total", "Failed calls to the backing cache, by gRPC status code",
                   prometheus::MetricType::Counter, std::move(by_code));
      gauges_->counter("gorego_writeback_queued_total", "Uploads queued for the backing cache (mode back)",
                       sum([](TierStats& st) -> auto& { return st.queued; }));
      gauges_->counter("gorego_writeback_uploaded_total", "Queued uploads the backing cache accepted",
                       sum([](TierStats& st) -> auto& { return st.uploaded; }));
      gauges_->counter("gorego_writeback_dropped_total",
                       "Queued uploads given up (queue full, retries exhausted, or shutdown)",
                       sum([](TierStats& st) -> auto& { return st.dropped; }));
      gauges_->counter("gorego_writeback_journal_errors_total",
                       "Write-back journal writes or syncs that failed: those uploads were queued in memory only",
                       sum([](TierStats& st) -> auto& { return st.journal_errors; }));
      gauges_->counter("gorego_singleflight_saved_fetches_total",
                       "Upstream fetches saved because a concurrent read of the same blob was already fetching it",
                       [&store] {
                         return static_cast<double>(store.small_fetches().followers() + store.large_fetches().followers());
                       });
    }
  }

  static Result classify(StoreOp op, const Status& s) {
    if (s.ok()) return reads(op) ? Result::kHit : Result::kOk;
    if (s.code() == Code::kNotFound && reads(op)) return Result::kMiss;
    if (s.code() == Code::kInvalidArgument) return Result::kInvalid;
    return Result::kError;
  }

 private:
  static constexpr bool reads(StoreOp op) {
    return op == StoreOp::kGet || op == StoreOp::kOpenRead || op == StoreOp::kGetAction || op == StoreOp::kContains;
  }
  static constexpr bool sized(StoreOp op) {
    return op == StoreOp::kGet || op == StoreOp::kPut || op == StoreOp::kOpenRead || op == StoreOp::kCommit ||
           op == StoreOp::kGetAction || op == StoreOp::kPutAction || op == StoreOp::kPutBatch;
  }

  static constexpr std::size_t kTiers = 3;

  prometheus::Counter& request_counter(StoreOp op, Tier tier, Result r) {
    const std::size_t i = (static_cast<std::size_t>(op) * kTiers + static_cast<std::size_t>(tier)) * kResults +
                          static_cast<std::size_t>(r);
    return lazy(requests_cells_[i], [&] {
      return &requests_.Add({{"method", std::string(op_name(op))},
                             {"tier", std::string(tier_name(tier))},
                             {"status", std::string(result_name(r))}});
    });
  }
  prometheus::Histogram& latency_histogram(StoreOp op, Tier tier) {
    const std::size_t i = static_cast<std::size_t>(op) * kTiers + static_cast<std::size_t>(tier);
    return lazy(latency_cells_[i], [&] {
      return &latency_.Add({{"method", std::string(op_name(op))}, {"tier", std::string(tier_name(tier))}},
                           prometheus::Histogram::BucketBoundaries{0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                                                   0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                   0.5, 1, 2.5, 5, 10});
    });
  }
  prometheus::Histogram& size_histogram(StoreOp op) {
    return lazy(size_cells_[static_cast<std::size_t>(op)], [&] {
      prometheus::Histogram::BucketBoundaries b;
      for (double v = 256; v <= 1073741824.0; v *= 4) b.push_back(v);
      return &sizes_.Add({{"method", std::string(op_name(op))}}, b);
    });
  }

  /// A series pointer, created once (Family::Add is idempotent for the same labels).
  template <class T, class Make>
  static T& lazy(std::atomic<T*>& cell, Make&& make) {
    T* p = cell.load(std::memory_order_acquire);
    if (p == nullptr) {
      p = make();
      cell.store(p, std::memory_order_release);
    }
    return *p;
  }

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<telemetry::CallbackCollector> gauges_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Histogram>& sizes_;
  prometheus::Family<prometheus::Counter>& digests_;
  prometheus::Family<prometheus::Counter>& evictions_;
  prometheus::Family<prometheus::Counter>& evicted_bytes_;
  prometheus::Family<prometheus::Counter>& runs_;
  prometheus::Counter* present_;
  prometheus::Counter* missing_;
  std::array<prometheus::Counter*, 3> evicted_objects_by_trigger_{};
  std::array<prometheus::Counter*, 3> evicted_bytes_by_trigger_{};
  std::array<prometheus::Counter*, 3> runs_by_trigger_{};
  std::array<std::atomic<prometheus::Counter*>, kTopLevelOps * kTiers * kResults> requests_cells_{};
  std::array<std::atomic<prometheus::Histogram*>, kTopLevelOps * kTiers> latency_cells_{};
  std::array<std::atomic<prometheus::Histogram*>, kTopLevelOps> size_cells_{};
};
static_assert(Instrumentation<Counted>);

}  // namespace gorego
