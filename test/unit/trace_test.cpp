// W3C trace context, the Tracer's sampling and batching, and the Traced policy's spans over
// an in-memory stack (parent/child links, attributes, nothing recorded when unsampled).
#include <catch2/catch.hpp>

#include <future>

#include <gorego/core/executor.hpp>
#include <gorego/core/trace_context.hpp>
#include <gorego/instrument/traced.hpp>

#include "stacks.hpp"

using namespace gorego;
using gorego::testing::make_blob;

namespace {

/// Keeps every exported span; or fails every export.
class Capture final : public SpanExporter {
 public:
  explicit Capture(bool fail = false) : fail_(fail) {}
  Status export_spans(std::span<const SpanData> spans) override {
    if (fail_) return error(Code::kUnavailable, "receiver down");
    std::lock_guard lock(mu_);
    got_.insert(got_.end(), spans.begin(), spans.end());
    return {};
  }
  std::vector<SpanData> spans() {
    std::lock_guard lock(mu_);
    return got_;
  }

 private:
  bool fail_;
  std::mutex mu_;
  std::vector<SpanData> got_;
};

const SpanData* named(const std::vector<SpanData>& spans, std::string_view name) {
  for (const auto& s : spans) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

template <class T>
bool has_attr(const SpanData& s, const std::string& key, const T& value) {
  for (const auto& [k, v] : s.attributes) {
    if (k == key && std::holds_alternative<T>(v) && std::get<T>(v) == value) return true;
  }
  return false;
}

TraceContext sampled_root(bool sampled = true) {
  TraceContext tc;
  tc.trace_id = TraceContext::new_trace_id();
  tc.span_id = TraceContext::new_span_id();
  tc.flags = sampled ? 1 : 0;
  return tc;
}

}  // namespace

TEST_CASE("TraceContext: parses and formats W3C traceparent", "[trace]") {
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto tc = TraceContext::parse(tp, "congo=t61rcWkgMzE");
  REQUIRE(tc);
  CHECK(tc->sampled());
  CHECK(tc->trace_id_hex() == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(tc->span_id_hex() == "00f067aa0ba902b7");
  CHECK(tc->traceparent() == tp);
  REQUIRE(tc->tracestate);
  CHECK(*tc->tracestate == "congo=t61rcWkgMzE");
  CHECK_FALSE(TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")->sampled());
  // a later version may append fields
  CHECK(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));

  for (const char* bad : {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   // upper case
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   // zero trace id
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   // zero span id
                          "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version ff
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // v00 is exact
                          "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"}) {
    INFO(bad);
    CHECK_FALSE(TraceContext::parse(bad));
  }
}

TEST_CASE("Tracer: roots are sampled by ratio, children follow their parent", "[trace]") {
  Tracer none({.sample_rate = 0.0}, std::make_unique<Capture>());
  Tracer all({.sample_rate = 1.0}, std::make_unique<Capture>());
  Tracer quarter({.sample_rate = 0.25}, std::make_unique<Capture>());
  CHECK_FALSE(none.start_context(std::nullopt).sampled());
  CHECK(all.start_context(std::nullopt).sampled());
  const TraceContext parent = sampled_root(true);
  const TraceContext child = none.start_context(parent);
  CHECK(child.sampled());  // the parent's decision wins over the ratio
  CHECK(child.trace_id == parent.trace_id);
  CHECK(child.span_id != parent.span_id);
  CHECK_FALSE(all.start_context(sampled_root(false)).sampled());
  int sampled = 0;
  for (int i = 0; i < 4000; ++i) sampled += quarter.start_context(std::nullopt).sampled() ? 1 : 0;
  CHECK(sampled > 800);   // 1000 expected; 7 standard deviations either way
  CHECK(sampled < 1200);
}

TEST_CASE("Tracer: failed exports and a full queue drop spans, counted", "[trace]") {
  Tracer t({.queue_size = 2}, std::make_unique<Capture>(/*fail=*/true));
  for (int i = 0; i < 3; ++i) t.record(SpanData{.name = "x"});
  t.flush();
  CHECK(t.stats().exported == 0);
  CHECK(t.stats().dropped == 3);  // one at the full queue, two in the failed export
  CHECK(t.stats().export_failures >= 1);
}

TEST_CASE("Traced: store operations become child spans of the current context", "[trace]") {
  testing::TempDir dir;
  using S = ProxyStore<test::MemLru, NoRemote, Traced>;
  auto store = test::make_store<S>(dir.path(), 1 << 20);
  auto capture = std::make_unique<Capture>();
  Capture* got = capture.get();
  auto tracer = std::make_shared<Tracer>(Tracer::Options{}, std::move(capture));
  store->instrumentation<Traced>().enable(tracer);

  const std::string blob = make_blob(3, 200);
  const Digest d = Sha256::digest_of(blob);
  const TraceContext root = sampled_root();
  {
    TraceContext::Scope scope(root);
    REQUIRE(store->put(d, blob).ok());
    REQUIRE(store->get(d).ok());
    CHECK(store->get(Sha256::digest_of("absent")).error().code() == Code::kNotFound);
    CHECK(TraceContext::current().span_id == root.span_id);  // restored after each operation
  }
  {
    TraceContext::Scope scope(sampled_root(false));
    REQUIRE(store->get(d).ok());  // unsampled: no spans
  }
  REQUIRE(store->get(d).ok());  // no trace at all: no spans
  tracer->flush();
  const auto spans = got->spans();
  CHECK(spans.size() == 6);  // put + write, get + read, get + read (miss)
  const SpanData* put = named(spans, "proxy.Put");
  const SpanData* write = named(spans, "local.Write");
  REQUIRE(put);
  REQUIRE(write);
  CHECK(put->trace_id == root.trace_id);
  CHECK(put->parent_span_id == root.span_id);
  CHECK(write->parent_span_id == put->span_id);
  CHECK(has_attr<std::string>(*put, "gorego.digest.hash", d.hex()));
  CHECK(has_attr<std::int64_t>(*put, "gorego.bytes", 200));
  int hits = 0;
  int misses = 0;
  for (const auto& s : spans) {
    if (s.name != "proxy.Get") continue;
    CHECK(s.parent_span_id == root.span_id);
    CHECK_FALSE(s.error);  // a miss is an answer, not an error
    hits += has_attr(s, "gorego.cache.hit", true) ? 1 : 0;
    misses += has_attr(s, "gorego.cache.hit", false) ? 1 : 0;
  }
  CHECK(hits == 1);
  CHECK(misses == 1);
}

TEST_CASE("Executor: a task runs in the trace context of the thread that posted it", "[trace]") {
  Executor pool(2);
  const TraceContext root = sampled_root();
  std::promise<TraceContext> seen;
  {
    TraceContext::Scope scope(root);
    pool.post([&] { seen.set_value(TraceContext::current()); });
  }
  const TraceContext got = seen.get_future().get();
  CHECK(got.trace_id == root.trace_id);
  CHECK(got.span_id == root.span_id);
  std::promise<bool> empty;
  pool.post([&] { empty.set_value(TraceContext::current().valid()); });
  CHECK_FALSE(empty.get_future().get());
}

TEST_CASE("Traced and OpCounter: eviction passes and janitor runs are reported", "[trace]") {
  // A write that needs room evicts inside its own span.
  testing::TempDir dir;
  using S = ProxyStore<test::MemLru, NoRemote, Traced, testing::OpCounter>;
  auto store = test::make_store<S>(dir.path(), 64 << 10);
  auto capture = std::make_unique<Capture>();
  Capture* got = capture.get();
  auto tracer = std::make_shared<Tracer>(Tracer::Options{}, std::move(capture));
  store->instrumentation<Traced>().enable(tracer);
  {
    TraceContext::Scope scope(sampled_root());
    for (int i = 0; i < 40; ++i) {
      const std::string b = make_blob(100 + i, 4000);
      REQUIRE(store->put(Sha256::digest_of(b), b).ok());
    }
  }
  tracer->flush();
  CHECK(store->instrumentation<testing::OpCounter>().evicted() > 0);
  const auto spans = got->spans();
  const SpanData* evict = named(spans, "local.Evict");
  REQUIRE(evict);
  // Its parent is the local write that needed the room, inside a proxy.Put.
  bool under_write = false;
  for (const auto& s : spans) under_write |= s.name == "local.Write" && s.span_id == evict->parent_span_id;
  CHECK(under_write);

  // The atime janitor's periodic runs are root spans, even when they free nothing.
  using J = ProxyStore<test::MemAtime, NoRemote, Traced>;
  J janitored(MemoryStore::Options{}, AtimeJanitor::Options{.scan_interval = std::chrono::milliseconds(20)},
              test::MemAtime::Options{.max_bytes = 1 << 20});
  auto capture2 = std::make_unique<Capture>();
  Capture* runs = capture2.get();
  auto tracer2 = std::make_shared<Tracer>(Tracer::Options{}, std::move(capture2));
  janitored.instrumentation<Traced>().enable(tracer2);
  REQUIRE(janitored.start().ok());
  janitored.local().wait_loaded();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (named(runs->spans(), "local.JanitorRun") == nullptr && std::chrono::steady_clock::now() < deadline) {
    tracer2->flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto run_spans = runs->spans();
  const SpanData* run = named(run_spans, "local.JanitorRun");
  REQUIRE(run);
  CHECK(run->parent_span_id == TraceContext::SpanId{});
  CHECK(has_attr<std::int64_t>(*run, "gorego.evicted.objects", 0));
  janitored.stop();
}
