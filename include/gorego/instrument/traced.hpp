#pragma once
/// Traced: the Instrumentation policy that turns store operations into spans.
///
/// Each operation inside a sampled trace becomes a child span of the thread's current
/// context (the RPC's server span, carried to pool threads by the Executor), named by
/// `span_name(op)` (`proxy.Get`, `proxy.Get.RemoteFetch`, `local.Read`, ...) with the
/// digest, hit or miss, tier and bytes as attributes. While it runs, it is the current
/// context, so nested steps and calls to the upstream name it as their parent. Eviction
/// passes and janitor runs become spans too (roots when no request caused them).
/// Without a tracer, or outside a sampled trace, `begin` is one thread-local read and a
/// branch. Thread safety: fully concurrent.
///
///   ProxyStore<Local<...>, Remote<...>, Traced> store(...);
///   store.instrumentation<Traced>().enable(tracer);

#include <memory>
#include <string_view>

#include <gorego/concepts/instrumentation.hpp>
#include <gorego/core/trace_context.hpp>
#include <gorego/instrument/tracer.hpp>

namespace gorego {

class Traced {
 public:
  static constexpr std::string_view kName = "traced";

  /// Live while a sampled operation runs: the span being built and the parent to restore.
  struct Token {
    std::unique_ptr<SpanData> span;
    TraceContext::SpanId parent{};
    StoreOp op = StoreOp::kGet;
  };

  /// Starts recording into `tracer`; before this (and with nullptr) nothing is recorded.
  /// Call before the store serves.
  void enable(std::shared_ptr<Tracer> tracer) { tracer_ = std::move(tracer); }

  Token begin(const OpInfo& info) {
    TraceContext& tc = TraceContext::current();
    if (!tracer_ || !tc.sampled()) return {};
    Token t{std::make_unique<SpanData>(), tc.span_id, info.op};
    SpanData& s = *t.span;
    s.trace_id = tc.trace_id;
    s.parent_span_id = tc.span_id;
    s.span_id = TraceContext::new_span_id();
    s.flags = tc.flags;
    s.tracestate = tc.tracestate;
    s.name = span_name(info.op);
    s.start_unix_ns = unix_nanos_now();
    if (info.digest != nullptr) {
      s.set("gorego.digest.hash", info.digest->hex());
      s.set("gorego.digest.size", info.digest->size);
    }
    if (info.op == StoreOp::kFindMissing || info.op == StoreOp::kPutBatch) {
      s.set("gorego.digests", static_cast<std::int64_t>(info.digests));
    }
    tc.span_id = s.span_id;
    return t;
  }

  void end(Token& t, const Outcome& o) {
    if (!t.span) return;
    TraceContext::current().span_id = t.parent;
    SpanData& s = *t.span;
    s.end_unix_ns = unix_nanos_now();
    const StoreOp op = t.op;
    if (reads(op)) {
      s.set("gorego.cache.hit", o.status.ok());
    }
    s.set("gorego.tier", std::string(tier_name(o.tier)));
    s.set("gorego.bytes", static_cast<std::int64_t>(o.bytes));
    if (op == StoreOp::kFindMissing) s.set("gorego.missing", static_cast<std::int64_t>(o.missing));
    // A miss is an answer, not a failure of the operation.
    if (!o.status.ok() && !(reads(op) && o.status.code() == Code::kNotFound)) {
      s.error = true;
      s.status_message = o.status.to_string();
    }
    tracer_->record(std::move(s));
  }

  /// Eviction passes: children of the operation that caused them, or (janitor runs with
  /// no request around them) roots sampled like any other trace.
  void on_eviction(const EvictionRun& run) {
    if (!tracer_) return;
    const TraceContext& tc = TraceContext::current();
    SpanData s;
    if (tc.valid()) {
      if (!tc.sampled()) return;
      s.trace_id = tc.trace_id;
      s.parent_span_id = tc.span_id;
      s.flags = tc.flags;
    } else {
      s.trace_id = TraceContext::new_trace_id();
      if (!tracer_->sample_root(s.trace_id)) return;
      s.flags = 1;
    }
    s.span_id = TraceContext::new_span_id();
    s.name = run.trigger == EvictionRun::Trigger::kJanitor ? "local.JanitorRun" : "local.Evict";
    s.start_unix_ns = unix_nanos(run.started);
    s.end_unix_ns = unix_nanos(run.finished);
    s.set("gorego.evicted.objects", static_cast<std::int64_t>(run.objects));
    s.set("gorego.evicted.bytes", static_cast<std::int64_t>(run.bytes));
    tracer_->record(std::move(s));
  }

 private:
  static constexpr bool reads(StoreOp op) {
    return op == StoreOp::kGet || op == StoreOp::kOpenRead || op == StoreOp::kGetAction ||
           op == StoreOp::kContains || op == StoreOp::kLocalRead || op == StoreOp::kRemoteFetch;
  }

  std::shared_ptr<Tracer> tracer_;
};
static_assert(Instrumentation<Traced>);

}  // namespace gorego
