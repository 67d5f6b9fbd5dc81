// The cost of instrumentation: one small local hit (ProxyStore::get of 1 KiB from memory)
// through the uninstrumented twin, through Counted, and through Traced with tracing off,
// with an unsampled trace, and with a sampled one (spans recorded into a tracer whose
// exporter discards them). docs/performance.md compares them as ratios of one run.
#include <benchmark/benchmark.h>

#include <gorego/eviction/lru.hpp>
#include <gorego/hash/sha256.hpp>
#include <gorego/instrument/traced.hpp>
#include <gorego/store/local.hpp>
#include <gorego/store/memory_store.hpp>
#include <gorego/store/proxy_store.hpp>
#include <gorego/telemetry/counted.hpp>
#include <gorego/testing/temp_dir.hpp>

namespace {

using namespace gorego;
using gorego::testing::make_blob;

using MemLru = Local<MemoryStore, Lru>;
using Plain = ProxyStore<MemLru, NoRemote>;
using WithCounted = ProxyStore<MemLru, NoRemote, Counted>;
using WithTraced = ProxyStore<MemLru, NoRemote, Traced>;
using WithBoth = ProxyStore<MemLru, NoRemote, Traced, Counted>;

class Discard final : public SpanExporter {
 public:
  Status export_spans(std::span<const SpanData>) override { return {}; }
};

enum class Trace { kOff, kUnsampled, kSampled };

template <class S, Trace T>
void BM_LocalHit(benchmark::State& st) {
  S s(MemoryStore::Options{}, typename MemLru::Options{.max_bytes = std::uint64_t{1} << 30});
  std::shared_ptr<Tracer> tracer;
  if constexpr (std::is_same_v<S, WithTraced> || std::is_same_v<S, WithBoth>) {
    if (T != Trace::kOff) {
      tracer = std::make_shared<Tracer>(Tracer::Options{.queue_size = 1 << 16}, std::make_unique<Discard>());
      s.template instrumentation<Traced>().enable(tracer);
    }
  }
  if (!s.start().ok()) std::abort();
  const std::string blob = make_blob(1, 1024);
  const Digest d = Sha256::digest_of(blob);
  if (!s.put(d, blob).ok()) std::abort();
  TraceContext tc;
  if (T != Trace::kOff) {
    tc.trace_id = TraceContext::new_trace_id();
    tc.span_id = TraceContext::new_span_id();
    tc.flags = T == Trace::kSampled ? 1 : 0;
  }
  TraceContext::Scope scope(tc);
  for (auto _ : st) benchmark::DoNotOptimize(s.get(d));
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
  if (tracer) st.counters["spans_dropped"] = static_cast<double>(tracer->stats().dropped.load());
}

BENCHMARK_TEMPLATE(BM_LocalHit, Plain, Trace::kOff)->Name("LocalHit/plain");
BENCHMARK_TEMPLATE(BM_LocalHit, WithCounted, Trace::kOff)->Name("LocalHit/counted");
BENCHMARK_TEMPLATE(BM_LocalHit, WithTraced, Trace::kOff)->Name("LocalHit/traced_off");
BENCHMARK_TEMPLATE(BM_LocalHit, WithTraced, Trace::kUnsampled)->Name("LocalHit/traced_unsampled");
BENCHMARK_TEMPLATE(BM_LocalHit, WithTraced, Trace::kSampled)->Name("LocalHit/traced_sampled");
BENCHMARK_TEMPLATE(BM_LocalHit, WithBoth, Trace::kUnsampled)->Name("LocalHit/traced_unsampled+counted");

}  // namespace
