// Remote execution: the Execution, Operations and Workers services over the scheduler.
//
// An Execute call: validate, look the action up in the ActionCache (unless
// skip_cache_lookup), read the Action and the Command (missing ones are FAILED_PRECONDITION
// with MISSING violations, as Bazel expects to re-upload), validate the Command, then submit
// to the scheduler, merging with an identical action in flight. The stream sends every stage
// change and, while the action runs, the current state every `keepalive`. A worker's
// Finished report is stored in the ActionCache (exit code 0, cacheable) before the
// operation completes, so a client that sees the result can also look it up.
#include "exec/execution.hpp"

#include <google/protobuf/util/time_util.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "google/longrunning/operations.grpc.pb.h"
#include "gorego/worker/v1/worker.grpc.pb.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <gorego/core/log.hpp>
#include <gorego/core/stop.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/reapi/rpc_context.hpp>

#include "worker/runner.hpp"

namespace gorego::exec {
namespace {

namespace lr = google::longrunning;
namespace wk = gorego::worker::v1;
using google::protobuf::util::TimeUtil;
using reapi::from_proto;
using reapi::to_grpc;
using reapi::to_proto;
using reapi::to_rpc_status;

constexpr int kCacheCheck = re::ExecutionStage::CACHE_CHECK;

std::string random_name() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("operations/{:016x}{:016x}", rng(), rng());
}

/// The answer for a blob the action needs and the CAS does not hold.
re::ExecuteResponse missing_blob(std::string_view what, const Digest& d) {
  re::ExecuteResponse r;
  *r.mutable_status() =
      reapi::missing_blobs({&d, 1}, fmt::format("the {} {} is not in the CAS; upload it and retry", what, d));
  return r;
}

re::ExecuteResponse failed(const Status& s) {
  re::ExecuteResponse r;
  *r.mutable_status() = to_rpc_status(s);
  return r;
}

lr::Operation operation(const std::string& name, int stage, const re::Digest& action,
                        const re::ExecuteResponse* done) {
  lr::Operation op;
  op.set_name(name);
  re::ExecuteOperationMetadata md;
  md.set_stage(static_cast<re::ExecutionStage::Value>(stage));
  *md.mutable_action_digest() = action;
  md.set_digest_function(re::DigestFunction::SHA256);
  op.mutable_metadata()->PackFrom(md);
  if (done != nullptr) {
    op.set_done(true);
    op.mutable_response()->PackFrom(*done);
  }
  return op;
}

re::Digest label_digest(const std::string& label) {
  re::Digest d;
  const auto slash = label.find('/');
  if (slash == std::string::npos) return d;
  d.set_hash(label.substr(0, slash));
  d.set_size_bytes(std::strtoll(label.c_str() + slash + 1, nullptr, 10));
  return d;
}

lr::Operation operation_of(const Event& e) {
  const re::Digest action = label_digest(e.label);
  if (!e.done) return operation(e.name, static_cast<int>(e.stage), action, nullptr);
  re::ExecuteResponse r;
  if (!e.status.ok()) {
    r = failed(e.status);
  } else if (!r.ParseFromString(e.response)) {
    r = failed(error(Code::kInternal, "the worker's answer for {} does not parse", e.name));
  }
  return operation(e.name, static_cast<int>(Stage::kCompleted), action, &r);
}

}  // namespace

// ---- one client stream of Operations ------------------------------------------------------

/// A stream of Operation messages (Execute or WaitExecution). Writes one message at a time;
/// a newer state replaces one not yet written. Thread-safe; deletes itself when done.
class OpStream final : public grpc::ServerWriteReactor<lr::Operation> {
 public:
  /// Guards the stream's lifetime against watchers called after it ended.
  struct Link {
    std::recursive_mutex mu;
    OpStream* stream = nullptr;
  };

  explicit OpStream(Execution::Impl& x) : x_(x), link_(std::make_shared<Link>()) { link_->stream = this; }

  [[nodiscard]] const std::shared_ptr<Link>& link() const { return link_; }

  /// The watcher to hand the scheduler.
  Watcher watcher() {
    return [link = link_](const Event& e) {
      std::lock_guard lock(link->mu);
      if (link->stream != nullptr) link->stream->on_event(e);
    };
  }

  void watching(const std::string& name, std::uint64_t token) {
    std::lock_guard lock(mu_);
    name_ = name;
    token_ = token;
  }

  void push(lr::Operation op, bool last) {
    std::unique_lock lock(mu_);
    push_locked(lock, std::move(op), last);
  }

  /// Ends the stream with `s` (after the write in progress, if any).
  void close(grpc::Status s) {
    std::unique_lock lock(mu_);
    if (finish_called_ || deferred_finish_) return;
    if (writing_) {
      deferred_finish_ = std::move(s);
      return;
    }
    finish_called_ = true;
    lock.unlock();
    Finish(std::move(s));
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(mu_);
    writing_ = false;
    std::optional<grpc::Status> end;
    if (deferred_finish_) end = std::move(*deferred_finish_);
    else if (!ok) end = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    else if (out_last_) end = grpc::Status::OK;
    if (end) {
      if (finish_called_) return;
      finish_called_ = true;
      lock.unlock();
      Finish(std::move(*end));
      return;
    }
    if (!pending_) return;
    writing_ = true;
    out_ = std::move(*pending_);
    out_last_ = pending_last_;
    pending_.reset();
    lock.unlock();
    StartWrite(&out_);
  }

  void OnCancel() override { close(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client")); }

  void OnDone() override;

 private:
  void on_event(const Event& e) {
    lr::Operation op = operation_of(e);
    std::unique_lock lock(mu_);
    // Events may arrive out of order from different threads; equal versions are keepalives.
    // The check and the push are one step, so an older state can never follow a newer one.
    if (e.version < version_) return;
    version_ = e.version;
    push_locked(lock, std::move(op), e.done);
  }

  /// Writes `op` now, or keeps it as the next write; the final Operation, once pending or
  /// written, is never replaced. Releases `lock` before starting a write.
  void push_locked(std::unique_lock<std::mutex>& lock, lr::Operation op, bool last) {
    if (finish_called_ || deferred_finish_) return;
    if (writing_) {
      if (out_last_ || (pending_ && pending_last_)) return;
      pending_ = std::move(op);
      pending_last_ = last;
      return;
    }
    if (out_last_) return;  // the final one was written; Finish follows
    writing_ = true;
    out_ = std::move(op);
    out_last_ = last;
    lock.unlock();
    StartWrite(&out_);
  }

  Execution::Impl& x_;
  std::shared_ptr<Link> link_;
  std::mutex mu_;
  bool writing_ = false, finish_called_ = false, out_last_ = false, pending_last_ = false;
  std::optional<grpc::Status> deferred_finish_;
  lr::Operation out_;
  std::optional<lr::Operation> pending_;
  std::uint64_t version_ = 0;
  std::string name_;
  std::uint64_t token_ = 0;
};

// ---- the services -------------------------------------------------------------------------

struct Execution::Impl {
  Impl(ExecStore& s, Executor& p, ExecutionOptions o)
      : store(s), pool(p), opt(o), sched(o.scheduler), registry(std::make_shared<prometheus::Registry>()),
        outcomes(prometheus::BuildCounter()
                     .Name("gorego_execution_actions_total")
                     .Help("Actions finished, by outcome (cached: answered from the ActionCache by Execute)")
                     .Register(*registry)),
        stages(prometheus::BuildHistogram()
                   .Name("gorego_execution_stage_duration_seconds")
                   .Help("Time of each stage of executed actions, from the workers' timestamps")
                   .Register(*registry)),
        execution(*this), operations(*this), workers(*this) {
    sched.on_done([this](const Event& e) { count(e); });
    // Every series exists from the start, so rate() and the dashboards see zeros, not gaps.
    for (const char* o : {"success", "failure", "cached", "timeout", "cancelled", "error", "lost"}) outcome(o);
    for (const char* s : {"queue", "input_fetch", "execute", "output_upload"}) stage(s);
  }

  ExecStore& store;
  Executor& pool;
  ExecutionOptions opt;
  Scheduler<LeastLoaded> sched;
  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<prometheus::Counter>& outcomes;
  prometheus::Family<prometheus::Histogram>& stages;
  std::jthread ticker;

  prometheus::Counter& outcome(const std::string& name) { return outcomes.Add({{"outcome", name}}); }

  prometheus::Histogram& stage(const std::string& name) {
    return stages.Add({{"stage", name}}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
                                                                                1, 5, 10, 30, 60, 300, 1800});
  }

  void observe(const std::string& name, const google::protobuf::Timestamp& from,
               const google::protobuf::Timestamp& to) {
    if (from.seconds() == 0 || to.seconds() == 0) return;
    const double s = static_cast<double>(TimeUtil::DurationToMicroseconds(to - from)) / 1e6;
    if (s < 0) return;
    stage(name).Observe(s);
  }

  /// Counts a finished job by outcome and records its stage durations.
  void count(const Event& e) {
    if (!e.status.ok()) {
      const Code c = e.status.code();
      outcome(c == Code::kCancelled ? "cancelled" : c == Code::kUnavailable ? "lost" : "error").Increment();
      return;
    }
    re::ExecuteResponse r;
    if (!r.ParseFromString(e.response)) return outcome("error").Increment();
    const Code c = static_cast<Code>(r.status().code());
    if (c == Code::kDeadlineExceeded) outcome("timeout").Increment();
    else if (c == Code::kCancelled) outcome("cancelled").Increment();
    else if (c != Code::kOk) outcome("error").Increment();
    else outcome(r.result().exit_code() == 0 ? "success" : "failure").Increment();
    const auto& m = r.result().execution_metadata();
    observe("queue", m.queued_timestamp(), m.worker_start_timestamp());
    observe("input_fetch", m.input_fetch_start_timestamp(), m.input_fetch_completed_timestamp());
    observe("execute", m.execution_start_timestamp(), m.execution_completed_timestamp());
    observe("output_upload", m.output_upload_start_timestamp(), m.output_upload_completed_timestamp());
    log::info("action finished", {{"operation", e.name},
                                  {"action", e.label},
                                  {"worker", e.worker},
                                  {"exit_code", std::to_string(r.result().exit_code())},
                                  {"status", std::string(code_name(c))}});
  }

  // ---- Execution ----

  class ExecutionService final : public re::Execution::CallbackService {
   public:
    explicit ExecutionService(Impl& x) : x_(x) {}

    grpc::ServerWriteReactor<lr::Operation>* Execute(grpc::CallbackServerContext* ctx,
                                                     const re::ExecuteRequest* req) override {
      if (auto refused = reapi::refusal(ctx); !refused.ok()) {
        return new reapi::RefusedStream<grpc::ServerWriteReactor<lr::Operation>>(std::move(refused));
      }
      auto* s = new OpStream(x_);
      Status v = reapi::check_digest_function(req->digest_function(), "Execute");
      auto action = from_proto(req->action_digest(), "action_digest");
      if (!v.ok() || !action) {
        s->close(to_grpc(!v.ok() ? v : action.error()));
        return s;
      }
      auto call = std::make_shared<Call>();
      call->req = *req;
      call->digest = *action;
      call->link = s->link();
      call->name = random_name();
      call->context = reapi::call_context(ctx, req->instance_name());
      call->trace = reapi::incoming_context(ctx);
      CallContext::Scope scope(call->context);
      if (!x_.pool.try_post(call->trace, [this, call] { x_.begin(call); })) {
        s->close(reapi::busy(x_.pool));
      }
      return s;
    }

    grpc::ServerWriteReactor<lr::Operation>* WaitExecution(grpc::CallbackServerContext* ctx,
                                                           const re::WaitExecutionRequest* req) override {
      if (auto refused = reapi::refusal(ctx); !refused.ok()) {
        return new reapi::RefusedStream<grpc::ServerWriteReactor<lr::Operation>>(std::move(refused));
      }
      auto* s = new OpStream(x_);
      auto token = x_.sched.watch(req->name(), s->watcher());
      if (!token) {
        s->close(to_grpc(token.error()));
      } else {
        s->watching(req->name(), *token);
      }
      return s;
    }

   private:
    Impl& x_;
  };

  /// One Execute call being prepared (cache check, Action and Command reads).
  struct Call {
    re::ExecuteRequest req;
    Digest digest;
    std::shared_ptr<OpStream::Link> link;
    std::string name;  ///< of the cache-check stage; the scheduler names the execution
    CallContext context;
    TraceContext trace;  ///< the Execute call's server span (empty when not traced)
    re::Action action;
    re::Command command;
  };

  /// Runs `f(stream)` if the client is still there.
  template <class F>
  static void with_stream(const Call& c, F&& f) {
    std::lock_guard lock(c.link->mu);
    if (c.link->stream != nullptr) f(*c.link->stream);
  }

  static void answer(const Call& c, const re::ExecuteResponse& r) {
    with_stream(c, [&](OpStream& s) {
      s.push(operation(c.name, static_cast<int>(Stage::kCompleted), c.req.action_digest(), &r), true);
    });
  }

  void begin(const std::shared_ptr<Call>& c) {
    if (c->req.skip_cache_lookup()) return read_action(c);
    with_stream(*c, [&](OpStream& s) { s.push(operation(c->name, kCacheCheck, c->req.action_digest(), nullptr), false); });
    store.lookup_result(c->digest, [this, c](Result<re::ActionResult> hit) {
      if (hit && hit->exit_code() == 0) {
        re::ExecuteResponse r;
        *r.mutable_result() = std::move(*hit);
        r.set_cached_result(true);
        r.mutable_status();  // OK
        outcome("cached").Increment();
        return answer(*c, r);
      }
      read_action(c);
    });
  }

  void read_action(const std::shared_ptr<Call>& c) {
    CallContext::Scope scope(c->context);
    store.get_blob(c->digest, [this, c](Result<std::string> bytes) {
      if (!bytes) {
        if (bytes.error().code() == Code::kNotFound) return answer(*c, missing_blob("Action", c->digest));
        return answer(*c, failed(bytes.error()));
      }
      if (!c->action.ParseFromString(*bytes)) {
        return answer(*c, failed(error(Code::kInvalidArgument, "action {} does not parse as an Action", c->digest)));
      }
      auto command = from_proto(c->action.command_digest(), "action.command_digest");
      if (!command) return answer(*c, failed(command.error()));
      if (auto root = from_proto(c->action.input_root_digest(), "action.input_root_digest"); !root) {
        return answer(*c, failed(root.error()));
      }
      CallContext::Scope scope(c->context);
      store.get_blob(*command, [this, c, d = *command](Result<std::string> cmd) {
        if (!cmd) {
          if (cmd.error().code() == Code::kNotFound) return answer(*c, missing_blob("Command", d));
          return answer(*c, failed(cmd.error()));
        }
        if (!c->command.ParseFromString(*cmd)) {
          return answer(*c, failed(error(Code::kInvalidArgument, "command {} does not parse as a Command", d)));
        }
        submit(c);
      });
    });
  }

  void submit(const std::shared_ptr<Call>& c) {
    if (Status s = worker::validate_command(c->command); !s.ok()) return answer(*c, failed(s));
    std::chrono::milliseconds timeout = opt.default_timeout;
    if (c->action.has_timeout()) {
      const auto& t = c->action.timeout();
      if (t.seconds() < 0 || t.nanos() < 0 || t.nanos() > 999'999'999) {
        return answer(*c, failed(error(Code::kInvalidArgument, "action.timeout {}s {}ns is not a valid duration",
                                       t.seconds(), t.nanos())));
      }
      const std::int64_t max_s = opt.max_timeout.count() / 1000;
      // Compared in seconds first, so that a huge value cannot overflow the milliseconds.
      const auto asked = [&] { return std::chrono::milliseconds(t.seconds() * 1000 + t.nanos() / 1'000'000); };
      if (t.seconds() > max_s || asked() > opt.max_timeout) {
        return answer(*c, failed(error(Code::kInvalidArgument,
                                       "action.timeout {}s exceeds this server's maximum of {}s "
                                       "(execution.max_timeout)",
                                       t.seconds(), max_s)));
      }
      if (asked().count() > 0) timeout = asked();
    }
    wk::Assignment a;
    a.set_instance_name(c->req.instance_name());
    *a.mutable_action_digest() = c->req.action_digest();
    *a.mutable_action() = c->action;
    *a.mutable_command() = c->command;
    a.set_timeout_ms(timeout.count());
    *a.mutable_queued() = TimeUtil::GetCurrentTime();
    if (c->trace.valid() && c->trace.sampled()) a.set_traceparent(c->trace.traceparent());
    JobSpec spec;
    if (!c->action.do_not_cache()) {
      spec.merge_key = fmt::format("{}|{}/{}", c->req.instance_name(), c->digest.hex(), c->digest.size);
    }
    spec.priority = std::clamp(c->req.execution_policy().priority(), opt.min_priority, opt.max_priority);
    const auto& platform = c->action.platform().properties_size() > 0 ? c->action.platform() : c->command.platform();
    for (const auto& p : platform.properties()) spec.platform.emplace_back(p.name(), p.value());
    spec.label = fmt::format("{}/{}", c->digest.hex(), c->digest.size);
    spec.timeout = timeout;
    a.SerializeToString(&spec.payload);
    Watcher w;
    with_stream(*c, [&](OpStream& s) { w = s.watcher(); });
    if (!w) w = [](const Event&) {};  // the client left: the action still runs and is cached
    auto sub = sched.submit(std::move(spec), std::move(w));
    if (!sub) return answer(*c, failed(sub.error()));
    with_stream(*c, [&](OpStream& s) { s.watching(sub->name, sub->watch); });
  }

  // ---- Operations ----

  class OperationsService final : public lr::Operations::CallbackService {
   public:
    explicit OperationsService(Impl& x) : x_(x) {}

    grpc::ServerUnaryReactor* GetOperation(grpc::CallbackServerContext* ctx, const lr::GetOperationRequest* req,
                                           lr::Operation* resp) override {
      auto* reactor = ctx->DefaultReactor();
      if (reapi::finish_if_refused(ctx, reactor)) return reactor;
      auto e = x_.sched.state(req->name());
      if (!e) {
        reactor->Finish({grpc::StatusCode::NOT_FOUND, fmt::format("operation \"{}\" is unknown", req->name())});
      } else {
        *resp = operation_of(*e);
        reactor->Finish(grpc::Status::OK);
      }
      return reactor;
    }

    grpc::ServerUnaryReactor* CancelOperation(grpc::CallbackServerContext* ctx,
                                              const lr::CancelOperationRequest* req,
                                              google::protobuf::Empty* /*resp*/) override {
      auto* reactor = ctx->DefaultReactor();
      if (reapi::finish_if_refused(ctx, reactor)) return reactor;
      reactor->Finish(to_grpc(x_.sched.cancel(req->name())));
      return reactor;
    }

   private:
    Impl& x_;
  };

  // ---- Workers ----

  class WorkerStream;

  class WorkersService final : public wk::Workers::CallbackService {
   public:
    explicit WorkersService(Impl& x) : x_(x) {}
    grpc::ServerBidiReactor<wk::WorkerMessage, wk::SchedulerMessage>* Connect(
        grpc::CallbackServerContext* ctx) override;

   private:
    Impl& x_;
  };

  /// A Finished report: stored in the ActionCache when cacheable, then the lease ends.
  void finished(WorkerId id, const std::string& lease, const std::string& payload, re::ExecuteResponse r) {
    wk::Assignment a;
    a.ParseFromString(payload);
    record_spans(a, r);
    // The worker's own trouble (its disk, its CAS connection), not the action's: another
    // attempt, on whichever worker is free, up to execution.max_attempts.
    if (const auto c = static_cast<Code>(r.status().code()); c == Code::kInternal || c == Code::kUnavailable) {
      log::warn("a worker could not run an action; retrying",
                {{"worker", r.result().execution_metadata().worker()}, {"error", r.status().message()}});
      return sched.retry(id, lease,
                         Status(c, fmt::format("worker {}: {}", r.result().execution_metadata().worker(),
                                               r.status().message())));
    }
    if (r.message().empty()) {
      const std::string worker = r.result().execution_metadata().worker();
      if (r.status().code() != 0) {
        r.set_message(fmt::format("{} on worker {}: {}", code_name(static_cast<Code>(r.status().code())), worker,
                                  r.status().message()));
      } else if (r.result().exit_code() != 0) {
        r.set_message(fmt::format("the command exited with {} on worker {}", r.result().exit_code(), worker));
      }
    }
    // Every digest a worker's result names must be well-formed before it is cached or served.
    std::vector<Digest> named;
    if (Status bad = reapi::result_digests(r.result(), named); r.status().code() == 0 && !bad.ok()) {
      log::warn("a worker returned a malformed result", {{"worker", r.result().execution_metadata().worker()},
                                                          {"error", bad.message()}});
      r = failed(error(Code::kInternal, "worker {} returned a malformed result: {}",
                       r.result().execution_metadata().worker(), bad.message()));
    }
    const bool cacheable = r.status().code() == 0 && r.has_result() && r.result().exit_code() == 0 &&
                           !a.action().do_not_cache();
    if (!cacheable) return sched.finished(id, lease, r.SerializeAsString());
    auto action = from_proto(a.action_digest());
    if (!action) return sched.finished(id, lease, r.SerializeAsString());
    auto shared = std::make_shared<re::ExecuteResponse>(std::move(r));
    store.store_result(*action, shared->result(), [this, id, lease, shared, d = *action](Status s) {
      if (!s.ok()) log::warn("storing an executed result failed", {{"action", fmt::format("{}", d)}, {"error", s.message()}});
      sched.finished(id, lease, shared->SerializeAsString());
    });
  }

  /// The stage spans of one executed action, children of the client's Execute span.
  void record_spans(const wk::Assignment& a, const re::ExecuteResponse& r) {
    if (!tracer || a.traceparent().empty()) return;
    const auto parent = TraceContext::parse(a.traceparent());
    if (!parent) return;
    const auto& m = r.result().execution_metadata();
    const std::string action = fmt::format("{}/{}", a.action_digest().hash(), a.action_digest().size_bytes());
    auto span = [&](std::string name, const google::protobuf::Timestamp& from, const google::protobuf::Timestamp& to) {
      if (from.seconds() == 0 || to.seconds() == 0) return;
      const TraceContext tc = tracer->start_context(parent);
      SpanData s;
      s.trace_id = tc.trace_id;
      s.span_id = tc.span_id;
      s.parent_span_id = parent->span_id;
      s.flags = tc.flags;
      s.tracestate = parent->tracestate;
      s.name = std::move(name);
      s.start_unix_ns = TimeUtil::TimestampToNanoseconds(from);
      s.end_unix_ns = TimeUtil::TimestampToNanoseconds(to);
      s.set("gorego.action", action);
      s.set("gorego.worker", m.worker());
      tracer->record(std::move(s));
    };
    span("execution queue", m.queued_timestamp(), m.worker_start_timestamp());
    span("execution input fetch", m.input_fetch_start_timestamp(), m.input_fetch_completed_timestamp());
    span("execution run", m.execution_start_timestamp(), m.execution_completed_timestamp());
    span("execution output upload", m.output_upload_start_timestamp(), m.output_upload_completed_timestamp());
  }

  std::shared_ptr<Tracer> tracer;
  ExecutionService execution;
  OperationsService operations;
  WorkersService workers;
};

void OpStream::OnDone() {
  std::string name;
  std::uint64_t token = 0;
  {
    std::lock_guard lock(link_->mu);
    link_->stream = nullptr;
  }
  {
    std::lock_guard lock(mu_);
    name = name_;
    token = token_;
  }
  if (token != 0) x_.sched.unwatch(name, token);
  delete this;
}

/// One gorego-worker's stream.
class Execution::Impl::WorkerStream final : public grpc::ServerBidiReactor<wk::WorkerMessage, wk::SchedulerMessage> {
 public:
  struct Link {
    std::recursive_mutex mu;
    WorkerStream* stream = nullptr;
  };

  WorkerStream(Impl& x, std::string peer) : x_(x), peer_(std::move(peer)), link_(std::make_shared<Link>()) {
    link_->stream = this;
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return end(grpc::Status::OK);  // the worker closed its side, or the stream broke
    switch (in_.kind_case()) {
      case wk::WorkerMessage::kHello: hello(in_.hello()); break;
      case wk::WorkerMessage::kHeartbeat:
        if (id_ != 0) x_.sched.heartbeat(id_);
        break;
      case wk::WorkerMessage::kStarted:
        if (id_ != 0) x_.sched.started(id_, in_.started().lease());
        break;
      case wk::WorkerMessage::kFinished: finished(in_.finished()); break;
      default: return end({grpc::StatusCode::INVALID_ARGUMENT, "empty WorkerMessage"});
    }
    if (ended_) return;
    if (id_ == 0) return end({grpc::StatusCode::INVALID_ARGUMENT, "the first WorkerMessage must be a Hello"});
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(mu_);
    writing_ = false;
    if (deferred_) {
      grpc::Status s = std::move(*deferred_);
      deferred_.reset();
      lock.unlock();
      Finish(std::move(s));
      return;
    }
    if (!ok || ended_) return;
    if (queue_.empty()) return;
    writing_ = true;
    out_ = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    StartWrite(&out_);
  }

  /// The scheduler already removed this worker: OnDone has nothing to tell it.
  void dropped() { dropped_ = true; }

  void OnDone() override {
    {
      std::lock_guard lock(link_->mu);
      link_->stream = nullptr;
    }
    if (id_ != 0 && !dropped_) {
      log::info("worker disconnected", {{"worker", worker_id_}, {"peer", peer_}});
      x_.sched.disconnect(id_);
    }
    delete this;
  }

 private:
  void hello(const wk::Hello& h) {
    if (id_ != 0) return end({grpc::StatusCode::INVALID_ARGUMENT, "a second Hello on one stream"});
    if (h.worker_id().empty() || h.worker_id().size() > 256) {
      return end({grpc::StatusCode::INVALID_ARGUMENT,
                  fmt::format("Hello.worker_id must have 1 to 256 characters, not {}", h.worker_id().size())});
    }
    if (h.slots() == 0 || h.slots() > 4096) {
      return end({grpc::StatusCode::INVALID_ARGUMENT, fmt::format("Hello.slots {} is not in 1..4096", h.slots())});
    }
    WorkerInfo info{.id = h.worker_id(), .slots = h.slots()};
    for (const auto& p : h.properties()) info.properties.emplace_back(p.name(), p.value());
    worker_id_ = h.worker_id();
    wk::SchedulerMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_interval_ms(
        std::max<std::int64_t>(100, x_.opt.scheduler.heartbeat_timeout.count() / 3));
    send(std::move(welcome));
    log::info("worker connected", {{"worker", worker_id_}, {"peer", peer_},
                                   {"slots", std::to_string(h.slots())},
                                   {"properties", describe(info.properties)}});
    auto link = link_;
    id_ = x_.sched.connect(std::move(info),
                           {.assign = [link](const Lease& l) {
                              std::lock_guard lock(link->mu);
                              if (link->stream != nullptr) link->stream->assign(l);
                            },
                            .cancel = [link](const std::string& lease) {
                              std::lock_guard lock(link->mu);
                              if (link->stream == nullptr) return;
                              wk::SchedulerMessage m;
                              m.mutable_cancel()->set_lease(lease);
                              link->stream->send(std::move(m));
                            },
                            .close = [link](const std::string& why) {
                              std::lock_guard lock(link->mu);
                              if (link->stream == nullptr) return;
                              log::warn("dropping a worker", {{"reason", why}});
                              link->stream->dropped();
                              link->stream->end({grpc::StatusCode::UNAVAILABLE,
                                                 fmt::format("the scheduler dropped this stream: {}", why)});
                            }});
  }

  void assign(const Lease& l) {
    wk::SchedulerMessage m;
    auto* a = m.mutable_assign();
    if (!a->ParseFromString(*l.payload)) return;
    a->set_lease(l.id);
    {
      std::lock_guard lock(mu_);
      payloads_[l.id] = l.payload;
    }
    send(std::move(m));
  }

  void finished(const wk::Finished& f) {
    if (id_ == 0) return;
    std::shared_ptr<const std::string> payload;
    {
      std::lock_guard lock(mu_);
      auto it = payloads_.find(f.lease());
      if (it == payloads_.end()) return;  // not ours (any more)
      payload = std::move(it->second);
      payloads_.erase(it);
    }
    // Storing the result is disk I/O: not on this gRPC thread.
    x_.pool.post([x = &x_, id = id_, lease = f.lease(), payload = std::move(payload), r = f.response()]() mutable {
      x->finished(id, lease, *payload, std::move(r));
    });
  }

  void send(wk::SchedulerMessage m) {
    std::unique_lock lock(mu_);
    if (ended_) return;
    if (writing_) {
      queue_.push_back(std::move(m));
      return;
    }
    writing_ = true;
    out_ = std::move(m);
    lock.unlock();
    StartWrite(&out_);
  }

  /// Finishes the stream, after the write in progress if any.
  void end(grpc::Status s) {
    std::unique_lock lock(mu_);
    if (ended_) return;
    ended_ = true;
    if (writing_) {
      deferred_ = std::move(s);
      return;
    }
    lock.unlock();
    Finish(std::move(s));
  }

  Impl& x_;
  std::string peer_, worker_id_;
  std::shared_ptr<Link> link_;
  WorkerId id_ = 0;
  wk::WorkerMessage in_;
  std::mutex mu_;
  bool writing_ = false;
  std::atomic<bool> ended_{false};
  std::atomic<bool> dropped_{false};
  std::optional<grpc::Status> deferred_;
  wk::SchedulerMessage out_;
  std::deque<wk::SchedulerMessage> queue_;
  std::unordered_map<std::string, std::shared_ptr<const std::string>> payloads_;
};

grpc::ServerBidiReactor<wk::WorkerMessage, wk::SchedulerMessage>* Execution::Impl::WorkersService::Connect(
    grpc::CallbackServerContext* ctx) {
  if (auto refused = reapi::refusal(ctx); !refused.ok()) {
    return new reapi::RefusedStream<grpc::ServerBidiReactor<wk::WorkerMessage, wk::SchedulerMessage>>(
        std::move(refused));
  }
  return new WorkerStream(x_, ctx->peer());
}

// ---- Execution ----------------------------------------------------------------------------

Execution::Execution(ExecStore& store, Executor& pool, ExecutionOptions o)
    : impl_(std::make_unique<Impl>(store, pool, o)) {}

Execution::~Execution() { stop(); }

std::vector<grpc::Service*> Execution::services() {
  return {&impl_->execution, &impl_->operations, &impl_->workers};
}

void Execution::start() {
  impl_->ticker = std::jthread([x = impl_.get()](std::stop_token st) {
    auto next_keepalive = Clock::now() + x->opt.keepalive;
    while (!sleep_unless_stopped(st, std::chrono::seconds(1))) {
      x->sched.tick();
      if (Clock::now() >= next_keepalive) {
        x->sched.refresh();
        next_keepalive = Clock::now() + x->opt.keepalive;
      }
    }
  });
}

void Execution::drain() { impl_->sched.drain(); }

void Execution::stop() {
  if (impl_->ticker.joinable()) {
    impl_->ticker.request_stop();
    impl_->ticker.join();
  }
}

Scheduler<LeastLoaded>& Execution::scheduler() { return impl_->sched; }

void Execution::set_tracer(std::shared_ptr<Tracer> t) { impl_->tracer = std::move(t); }

std::vector<std::shared_ptr<prometheus::Collectable>> Execution::metrics() const {
  auto own = std::make_shared<telemetry::CallbackCollector>();
  auto* s = &impl_->sched;
  auto stat = [s](auto field) { return [s, field] { return static_cast<double>(s->stats().*field); }; };
  own->gauge("gorego_execution_queue_depth", "Actions waiting for a worker", stat(&SchedulerStats::queued));
  own->gauge("gorego_execution_running", "Actions leased to workers", stat(&SchedulerStats::running));
  own->gauge("gorego_execution_active_workers", "Workers connected", stat(&SchedulerStats::workers));
  own->gauge("gorego_execution_worker_slots", "Action slots of the connected workers", stat(&SchedulerStats::slots));
  own->gauge("gorego_execution_worker_slots_busy", "Slots running an action", stat(&SchedulerStats::busy));
  own->counter("gorego_execution_requeued_total", "Actions put back in the queue: their worker was lost, or could not run them",
               stat(&SchedulerStats::requeued));
  own->counter("gorego_execution_workers_lost_total", "Workers whose stream broke or whose heartbeats stopped",
               stat(&SchedulerStats::workers_lost));
  own->counter("gorego_execution_merged_total", "Execute calls merged onto an identical action in flight",
               stat(&SchedulerStats::merged));
  return {own, impl_->registry};
}

}  // namespace gorego::exec
