// The server, assembled from its parts: the store stack (the one part that depends on the
// eviction policy), the I/O executor, the listener with the services, health, the admin
// server, execution, and the server's own metrics. See docs/architecture.md, "The server's
// parts".
#include "server.hpp"

#include <sys/statvfs.h>

#include <absl/synchronization/mutex.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <gorego/core/executor.hpp>
#include <gorego/core/log.hpp>
#include <gorego/eviction/atime_janitor.hpp>
#include <gorego/eviction/lru.hpp>
#include <gorego/eviction/sampled_lru.hpp>
#include <gorego/reapi/capabilities_service.hpp>
#include <gorego/telemetry/metrics.hpp>
#include <gorego/telemetry/otlp_exporter.hpp>

#include "admin_server.hpp"
#include "auth/access_control.hpp"
#include "auth/admission.hpp"
#include "auth/tls.hpp"
#include "auth/tls_context.hpp"
#include "exec/execution.hpp"
#include "health.hpp"
#include "http_cache.hpp"
#include "listener.hpp"
#include "process_metrics.hpp"
#include "rpc_observer.hpp"
#include "store_stack.hpp"

namespace gorego {
namespace {

/// Builds the span exporter named by `telemetry.tracing_endpoint`; null when tracing is off.
Result<std::shared_ptr<Tracer>> make_tracer(const Config& c) {
  const TelemetrySettings& t = c.telemetry;
  if (t.tracing_endpoint.empty()) return std::shared_ptr<Tracer>();
  telemetry::ServiceInfo service{.service_name = t.service_name,
                                 .service_version = GOREGO_VERSION,
                                 .attributes = t.resource_attributes};
  std::unique_ptr<SpanExporter> exporter;
  if (t.tracing_endpoint == "stdout") {
    exporter = std::make_unique<telemetry::JsonLinesExporter>(service);
  } else {
    auto otlp = telemetry::OtlpExporter::connect({.endpoint = t.tracing_endpoint, .service = service});
    if (!otlp) return otlp.error();
    exporter = std::move(*otlp);
  }
  return std::make_shared<Tracer>(Tracer::Options{.sample_rate = t.sample_rate}, std::move(exporter));
}

/// The services whose methods get their own metric labels.
std::vector<std::string> served_services() {
  return {"build.bazel.remote.execution.v2.Capabilities", "build.bazel.remote.execution.v2.ContentAddressableStorage",
          "build.bazel.remote.execution.v2.ActionCache", "google.bytestream.ByteStream", "grpc.health.v1.Health",
          "build.bazel.remote.execution.v2.Execution", "google.longrunning.Operations", "gorego.worker.v1.Workers"};
}

class AssembledServer final : public Server {
 public:
  explicit AssembledServer(const Config& c)
      : config_(c),
        // Disk I/O and hashing only: upstream calls complete through callbacks and hold
        // no thread (see docs/architecture.md, "Threads").
        pool_({.threads = c.server.io_threads, .max_queued = c.server.io_queue, .name = "io"}),
        opt_{.max_batch_total_size_bytes = c.server.max_batch_total_size_bytes,
             .max_cas_blob_size_bytes = c.server.max_blob_size_bytes,
             .exec_enabled = c.execution.enabled,
             .upload_budget = std::make_shared<reapi::UploadBudget>(c.server.max_upload_bytes_per_connection,
                                                                    c.server.max_upload_bytes)},
        caps_(opt_) {}

  ~AssembledServer() override { shutdown(std::chrono::system_clock::now()); }

  Status start() {
    const Config& c = config_;
    auto tracer = make_tracer(c);
    if (!tracer) return tracer.error();
    tracer_ = std::move(*tracer);
    auto stack = make_store_stack(c, opt_, pool_, tracer_);
    if (!stack) return stack.error();
    stack_ = std::move(*stack);
    observer_ = std::make_unique<RpcObserver>(served_services(), tracer_);
    const bool mtls = !c.tls.client_ca_file.empty();
    auto access = auth::AccessControl::open({.auth = c.auth, .mtls = mtls, .allowed_clients = c.tls.allowed_clients});
    if (!access) return access.error();
    access_ = std::move(*access);
    admission_ = std::make_unique<auth::Admission>(
        auth::Admission::Options{.access = access_,
                                 .mtls = mtls,
                                 .max_calls_per_connection = c.server.max_calls_per_connection,
                                 .max_calls = c.server.max_calls});
    auto credentials = auth::server_credentials(c.tls);
    if (!credentials) return credentials.error();
    GOREGO_RETURN_IF_ERROR(stack_->start(pool_));
    add_metrics();

    Listener::Options lo{.address = c.server.listen_addr,
                         .credentials = std::move(*credentials),
                         .max_message_bytes =
                             static_cast<int>(c.server.max_batch_total_size_bytes + (std::uint64_t{1} << 20)),
                         .idle_timeout = c.server.idle_timeout,
                         .max_connection_age = c.server.max_connection_age,
                         .max_connection_age_grace = c.server.max_connection_age_grace,
                         .keepalive = c.server.keepalive};
    lo.interceptors.push_back(admission_->factory());
    lo.interceptors.push_back(observer_->factory());
    listener_ = std::make_unique<Listener>(std::move(lo));
    listener_->add(&caps_);
    for (grpc::Service* s : stack_->services()) listener_->add(s);
    if (c.execution.enabled) start_execution();
    GOREGO_RETURN_IF_ERROR(listener_->start());
    listening_ = true;

    health_ = std::make_unique<HealthMonitor>(HealthMonitor::Probes{
        .data_dir = c.storage.data_dir,
        .loaded = [s = stack_.get()] { return s->loaded(); },
        .ping_upstream = stack_->has_upstream()
                             ? std::function<Status(std::chrono::milliseconds)>(
                                   [s = stack_.get()](std::chrono::milliseconds t) { return s->ping_upstream(t); })
                             : nullptr,
        .set_serving = [l = listener_.get()](bool on) { l->set_serving(on); },
        .listening = [this] { return listening_.load(); }});
    if (!c.telemetry.metrics_addr.empty()) {
      AdminServer::Handlers handlers{.metrics = [this] { return metrics_.render(); },
                                     .health = [this] { return health_->report(); },
                                     .pprof = c.telemetry.pprof};
      if (access_->enabled()) {
        handlers.authorize = [a = access_](std::string_view authorization, std::string_view what) -> Status {
          auto p = a->admit({.authorization = authorization}, Right::kAdmin, what);
          return p ? Status() : p.error();
        };
      }
      auto admin = AdminServer::start(c.telemetry.metrics_addr, std::move(handlers));
      if (!admin) return admin.error();
      admin_ = std::move(*admin);
    }
    if (!c.http.addr.empty()) {
      std::shared_ptr<auth::ServerTlsContext> http_tls;
      if (!c.tls.cert_file.empty()) {  // the same certificate as the gRPC port
        auto t = auth::ServerTlsContext::open(c.tls);
        if (!t) return t.error();
        http_tls = std::move(*t);
      }
      auto http = HttpCacheServer::start(c.http, stack_->http_store(), access_, std::move(http_tls));
      if (!http) return http.error();
      http_ = std::move(*http);
    }
    health_->start();
    if (c.execution.enabled && !access_->enabled()) {
      log::warn("execution is on without authentication: anyone who reaches the port can run commands on the "
                "workers and connect as a worker (see docs/operations.md, Security)");
    }
    log::info("listener security", {{"tls", c.tls.cert_file.empty() ? "off" : (mtls ? "mtls" : "on")},
                                    {"auth", access_->enabled() ? "on" : "off (everyone may do everything)"},
                                    {"pprof", c.telemetry.pprof ? "on" : "off"}});
    return {};
  }

  [[nodiscard]] int port() const override { return listener_ ? listener_->port() : 0; }
  [[nodiscard]] int admin_port() const override { return admin_ ? admin_->port() : 0; }
  [[nodiscard]] int http_port() const override { return http_ ? http_->port() : 0; }

  void begin_shutdown() override {
    if (admission_) admission_->begin_drain();
    if (health_) health_->begin_shutdown();
    if (listener_) listener_->set_serving(false);
  }

  void shutdown(std::chrono::system_clock::time_point deadline) override {
    // The health monitor touches the listener: it stops first (readiness is 503 from now on).
    if (health_) health_->stop();
    if (listener_ && listener_->listening()) {
      begin_shutdown();
      // Workers and queued actions would otherwise hold the listener's shutdown open for
      // the whole grace period.
      if (exec_) exec_->drain();
      // Calls still waiting on the upstream at the deadline are cancelled, so a hung
      // upstream cannot hold the shutdown beyond the grace period.
      std::jthread canceller([this, deadline](std::stop_token st) {
        std::mutex mu;
        std::condition_variable_any cv;
        std::unique_lock lock(mu);
        if (!cv.wait_until(lock, st, deadline, [] { return false; }) && !st.stop_requested()) {
          stack_->cancel_upstream();
        }
      });
      // New calls are refused with UNAVAILABLE (begin_shutdown) while those in flight finish;
      // gRPC's shutdown starts once none is left, or at the deadline, and then cancels what
      // still runs.
      while (admission_->calls_in_flight() > 0 && std::chrono::system_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      listener_->shutdown(deadline);
      listening_ = false;
    }
    http_.reset();  // closes its connections; requests in flight end with them
    if (exec_) exec_->stop();
    if (stack_) {
      // The canceller has ended: the write-back queue may use the upstream again to drain.
      stack_->allow_upstream();
      pool_.shutdown();  // from now on, late continuations run where they land
      stack_->stop();    // drains the write-back queue for a bounded time
    }
    admin_.reset();
    if (tracer_) tracer_->shutdown();  // exports the spans still queued
  }

  [[nodiscard]] std::uint64_t usage_bytes() const override { return stack_ ? stack_->usage_bytes() : 0; }
  [[nodiscard]] bool index_loaded() const override { return stack_ && stack_->loaded(); }

 private:
  void start_execution() {
    const ExecutionSettings& e = config_.execution;
    exec_ = std::make_unique<exec::Execution>(
        stack_->exec_store(), pool_,
        exec::ExecutionOptions{.default_timeout = e.default_timeout,
                               .max_timeout = e.max_timeout,
                               .keepalive = e.keepalive,
                               .min_priority = opt_.min_priority,
                               .max_priority = opt_.max_priority,
                               .scheduler = {.max_attempts = e.max_attempts,
                                             .heartbeat_timeout = e.heartbeat_timeout,
                                             .worker_wait = e.worker_wait,
                                             .retention = e.retention,
                                             .max_queued = e.max_queued}});
    exec_->set_tracer(tracer_);
    for (grpc::Service* svc : exec_->services()) listener_->add(svc);
    for (auto& m : exec_->metrics()) metrics_.add(std::move(m));
    exec_->start();
  }

  /// Metrics beyond the store's own: per-RPC, process, readiness, upstream, tracing.
  void add_metrics() {
    for (auto& m : stack_->metrics()) metrics_.add(std::move(m));
    metrics_.add(observer_->registry());
    auto own = std::make_shared<telemetry::CallbackCollector>();
    add_process_metrics(*own);
    own->add("gorego_build_info", "Version of the running gorego (always 1)", prometheus::MetricType::Gauge,
             {{{{"version", GOREGO_VERSION}}, [] { return 1.0; }}});
    own->gauge("gorego_disk_free_bytes", "Free bytes on the filesystem of the data directory (for unprivileged users)",
               [dir = config_.storage.data_dir] {
                 struct statvfs v {};
                 if (::statvfs(dir.c_str(), &v) != 0) return 0.0;
                 return static_cast<double>(v.f_bavail) * static_cast<double>(v.f_frsize);
               });
    own->add("gorego_executor_queued", "Tasks waiting for a thread of the executor", prometheus::MetricType::Gauge,
             {{{{"executor", std::string(pool_.name())}}, [this] { return static_cast<double>(pool_.queued()); }}});
    own->add("gorego_executor_refused_total", "New calls refused busy (UNAVAILABLE) because the executor's queue was full",
             prometheus::MetricType::Counter,
             {{{{"executor", std::string(pool_.name())}}, [this] { return static_cast<double>(pool_.refused()); }}});
    own->gauge("gorego_upstream_calls_in_flight", "Calls to the backing cache under way (none of them holds a thread)",
               [s = stack_.get()] { return static_cast<double>(s->upstream_calls_in_flight()); });
    own->gauge("gorego_ready", "1 while /health/ready answers 200 (ready or degraded)",
               [this] { return health_ && health_->ready() ? 1.0 : 0.0; });
    own->gauge("gorego_upstream_up", "1 while the backing cache answers health checks; 0 when down or not configured",
               [this] { return health_ && health_->upstream_up() ? 1.0 : 0.0; });
    own->add("gorego_calls_refused_total", "Calls refused RESOURCE_EXHAUSTED by a call limit, by limit",
             prometheus::MetricType::Counter,
             {{{{"limit", "connection"}},
               [a = admission_.get()] { return static_cast<double>(a->stats().over_connection_limit.load()); }},
              {{{"limit", "listener"}},
               [a = admission_.get()] { return static_cast<double>(a->stats().over_listener_limit.load()); }}});
    own->gauge("gorego_upload_bytes_in_flight", "Bytes of ByteStream uploads under way, by their declared sizes",
               [b = opt_.upload_budget] { return static_cast<double>(b->in_flight()); });
    own->counter("gorego_uploads_refused_total",
                 "ByteStream uploads refused RESOURCE_EXHAUSTED by server.max_upload_bytes(_per_connection)",
                 [b = opt_.upload_budget] { return static_cast<double>(b->refused()); });
    own->gauge("gorego_calls_in_flight", "Calls admitted and not yet finished (health checks not counted)",
               [a = admission_.get()] { return static_cast<double>(a->calls_in_flight()); });
    own->add("gorego_auth_refused_total", "Requests refused by authentication or rights, by reason",
             prometheus::MetricType::Counter,
             {{{{"reason", "unauthenticated"}},
               [a = access_] { return static_cast<double>(a->stats().unauthenticated.load()); }},
              {{{"reason", "permission_denied"}}, [a = access_] { return static_cast<double>(a->stats().denied.load()); }}});
    own->counter("gorego_credentials_reloads_total", "Times a changed credentials file was read and put in force",
                 [a = access_] { return static_cast<double>(a->stats().reloads.load()); });
    own->counter("gorego_credentials_reload_errors_total",
                 "Times a changed credentials file could not be read or parsed (the previous stayed in force)",
                 [a = access_] { return static_cast<double>(a->stats().reload_errors.load()); });
    if (tracer_) {
      own->counter("gorego_trace_spans_exported_total", "Spans the exporter delivered",
                   [t = tracer_] { return static_cast<double>(t->stats().exported.load()); });
      own->counter("gorego_trace_spans_dropped_total", "Spans dropped: export queue full or export failed",
                   [t = tracer_] { return static_cast<double>(t->stats().dropped.load()); });
    }
    metrics_.add(std::move(own));
  }

  Config config_;
  Executor pool_;
  reapi::ServiceOptions opt_;
  reapi::CapabilitiesService caps_;
  std::shared_ptr<Tracer> tracer_;
  std::unique_ptr<StoreStack> stack_;
  std::unique_ptr<RpcObserver> observer_;
  std::shared_ptr<auth::AccessControl> access_;
  std::unique_ptr<auth::Admission> admission_;  // outlives the listener
  std::unique_ptr<exec::Execution> exec_;  // with execution.enabled
  std::unique_ptr<Listener> listener_;
  std::unique_ptr<HealthMonitor> health_;
  telemetry::MetricsSource metrics_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<HttpCacheServer> http_;
  std::atomic<bool> listening_{false};  // read by admin threads
};

}  // namespace

Result<std::unique_ptr<StoreStack>> make_store_stack(const Config& c, const reapi::ServiceOptions& opt,
                                                     Executor& pool, std::shared_ptr<Tracer> tracer) {
  switch (c.storage.eviction) {
    case Eviction::kAtime: return make_atime_stack(c, opt, pool, std::move(tracer));
    case Eviction::kLru: return make_lru_stack(c, opt, pool, std::move(tracer));
    case Eviction::kSampledLru: return make_sampled_lru_stack(c, opt, pool, std::move(tracer));
  }
  return error(Code::kInvalidArgument, "eviction {} is not one of: sampled-lru, lru, atime",
               static_cast<int>(c.storage.eviction));
}

Result<std::unique_ptr<Server>> start_server(const Config& c) {
  // Debian's Abseil tracks lock ordering on every absl::Mutex acquisition (gRPC's locks):
  // a debugging aid that costs a few percent of CPU per RPC. Turn it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  auto s = std::make_unique<AssembledServer>(c);
  GOREGO_RETURN_IF_ERROR(s->start());
  return std::unique_ptr<Server>(std::move(s));
}

// The config's names of the policies are the policies' own.
static_assert(enum_name(Eviction::kAtime) == AtimeJanitor::kName);
static_assert(enum_name(Eviction::kLru) == Lru::kName);
static_assert(enum_name(Eviction::kSampledLru) == SampledLru::kName);

}  // namespace gorego
