#include "rpc_observer.hpp"

#include <google/protobuf/descriptor.h>

#include <chrono>

#include <gorego/core/log.hpp>
#include <gorego/core/status.hpp>
#include <gorego/reapi/rpc_context.hpp>

namespace gorego {

namespace {

namespace gx = grpc::experimental;

/// Server codes that mean the server failed (OpenTelemetry's rule for server spans);
/// NOT_FOUND, INVALID_ARGUMENT and the like are the client's business.
bool server_error(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DATA_LOSS:
      return true;
    default:
      return false;
  }
}

class Interceptor final : public gx::Interceptor {
 public:
  Interceptor(gx::ServerRpcInfo* info, RpcObserver* obs)
      : info_(info), obs_(obs), method_(obs->method_index(info->method())),
        start_(std::chrono::steady_clock::now()), start_unix_ns_(unix_nanos_now()) {}

  ~Interceptor() override {
    if (!recorded_) finish(grpc::StatusCode::CANCELLED, "call ended without a status");
  }

  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      on_metadata(methods->GetRecvInitialMetadata());
    }
    if (methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::PRE_SEND_STATUS) && !recorded_) {
      const grpc::Status s = methods->GetSendStatus();
      finish(s.error_code(), s.error_message());
    }
    methods->Proceed();
  }

 private:
  void on_metadata(std::multimap<grpc::string_ref, grpc::string_ref>* md) {
    if (md == nullptr) return;
    // Never trust a client-sent value of our internal key.
    const grpc::string_ref key(reapi::kServerSpanKey.data(), reapi::kServerSpanKey.size());
    md->erase(key);
    Tracer* tracer = obs_->tracer();
    if (tracer == nullptr) return;
    std::optional<TraceContext> parent;
    if (const auto tp = md->find("traceparent"); tp != md->end()) {
      std::string_view state;
      if (const auto ts = md->find("tracestate"); ts != md->end()) state = {ts->second.data(), ts->second.size()};
      parent = TraceContext::parse({tp->second.data(), tp->second.size()}, state);
    }
    context_ = tracer->start_context(parent);
    if (parent) parent_span_ = parent->span_id;
    span_header_ = context_.traceparent();
    md->emplace(key, grpc::string_ref(span_header_));
  }

  void finish(grpc::StatusCode code, const std::string& message) {
    recorded_ = true;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    obs_->record(method_, code, seconds);
    const RpcObserver::Method& m = obs_->method(method_);
    if (context_.sampled()) {
      SpanData s;
      s.trace_id = context_.trace_id;
      s.span_id = context_.span_id;
      s.parent_span_id = parent_span_;
      s.flags = context_.flags;
      s.tracestate = context_.tracestate;
      s.kind = SpanData::Kind::kServer;
      s.name = m.service + "/" + m.name;
      s.start_unix_ns = start_unix_ns_;
      s.end_unix_ns = unix_nanos_now();
      s.set("rpc.system", std::string("grpc"));
      s.set("rpc.service", m.service);
      s.set("rpc.method", m.name);
      s.set("rpc.grpc.status_code", static_cast<std::int64_t>(code));
      if (server_error(code)) {
        s.error = true;
        s.status_message = message;
      }
      obs_->tracer()->record(std::move(s));
    }
    if (log::threshold().load(std::memory_order_relaxed) <= log::Level::kDebug) {
      TraceContext::Scope scope(context_);
      log::debug("rpc", {{"method", std::string(info_->method())},
                         {"code", std::string(code_name(static_cast<Code>(code)))},
                         {"duration_ms", fmt::format("{:.3f}", seconds * 1000)},
                         {"peer", info_->server_context() ? info_->server_context()->peer() : std::string()}});
    }
  }

  gx::ServerRpcInfo* info_;
  RpcObserver* obs_;
  int method_;
  std::chrono::steady_clock::time_point start_;
  std::int64_t start_unix_ns_;
  TraceContext context_;
  TraceContext::SpanId parent_span_{};
  std::string span_header_;
  bool recorded_ = false;
};

class Factory final : public gx::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(RpcObserver* obs) : obs_(obs) {}
  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override { return new Interceptor(info, obs_); }

 private:
  RpcObserver* obs_;
};

}  // namespace

RpcObserver::RpcObserver(const std::vector<std::string>& services, std::shared_ptr<Tracer> tracer)
    : registry_(std::make_shared<prometheus::Registry>()),
      tracer_(std::move(tracer)),
      requests_(prometheus::BuildCounter()
                    .Name("gorego_grpc_requests_total")
                    .Help("gRPC calls handled, by service, method and status code")
                    .Register(*registry_)),
      duration_(prometheus::BuildHistogram()
                    .Name("gorego_grpc_request_duration_seconds")
                    .Help("gRPC call duration from arrival to status, by service and method")
                    .Register(*registry_)) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const std::string& name : services) {
    const auto* svc = pool->FindServiceByName(name);
    if (svc == nullptr) continue;
    for (int i = 0; i < svc->method_count(); ++i) {
      methods_.push_back({"/" + name + "/" + svc->method(i)->name(), name, svc->method(i)->name()});
    }
  }
  methods_.push_back({"", "unknown", "unknown"});
  for (std::size_t i = 0; i + 1 < methods_.size(); ++i) by_path_.emplace(methods_[i].path, static_cast<int>(i));
  counters_ = std::make_unique<std::atomic<prometheus::Counter*>[]>(methods_.size() * kCodes);
  histograms_ = std::make_unique<std::atomic<prometheus::Histogram*>[]>(methods_.size());
  for (std::size_t i = 0; i < methods_.size() * kCodes; ++i) counters_[i] = nullptr;
  for (std::size_t i = 0; i < methods_.size(); ++i) histograms_[i] = nullptr;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcObserver::factory() {
  return std::make_unique<Factory>(this);
}

int RpcObserver::method_index(std::string_view path) const {
  const auto it = by_path_.find(path);
  return it == by_path_.end() ? static_cast<int>(methods_.size() - 1) : it->second;
}

void RpcObserver::record(int method, grpc::StatusCode code, double seconds) {
  const auto m = static_cast<std::size_t>(method);
  const auto c = static_cast<std::size_t>(code) < kCodes ? static_cast<std::size_t>(code) : 2;
  auto& cell = counters_[m * kCodes + c];
  prometheus::Counter* counter = cell.load(std::memory_order_acquire);
  if (counter == nullptr) {
    counter = &requests_.Add({{"grpc_service", methods_[m].service},
                              {"grpc_method", methods_[m].name},
                              {"grpc_code", std::string(code_name(static_cast<Code>(c)))}});
    cell.store(counter, std::memory_order_release);
  }
  counter->Increment();
  auto& hcell = histograms_[m];
  prometheus::Histogram* h = hcell.load(std::memory_order_acquire);
  if (h == nullptr) {
    h = &duration_.Add({{"grpc_service", methods_[m].service}, {"grpc_method", methods_[m].name}},
                       prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                               0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
    hcell.store(h, std::memory_order_release);
  }
  h->Observe(seconds);
}

}  // namespace gorego
