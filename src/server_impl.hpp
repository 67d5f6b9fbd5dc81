#pragma once
/// ServerImpl<Store>: the template behind start_server. Instantiated only in
/// server_sampled.cpp, server_lru.cpp and server_atime.cpp (one eviction policy each) so the expensive
/// service templates compile once per store stack.

#include <fcntl.h>
#include <sys/statvfs.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <gorego/core/executor.hpp>
#include <gorego/core/log.hpp>
#include <gorego/eviction/atime_janitor.hpp>
#include <gorego/eviction/lru.hpp>
#include <gorego/eviction/sampled_lru.hpp>
#include <gorego/instrument/traced.hpp>
#include <gorego/reapi/action_cache_service.hpp>
#include <gorego/reapi/bytestream_service.hpp>
#include <gorego/reapi/capabilities_service.hpp>
#include <gorego/reapi/cas_service.hpp>
#include <gorego/reapi/reapi_client.hpp>
#include <gorego/store/local.hpp>
#include <gorego/store/proxy_store.hpp>
#include <gorego/store/sharded_disk.hpp>
#include <gorego/telemetry/counted.hpp>
#include <gorego/telemetry/metrics.hpp>
#include <gorego/telemetry/otlp_exporter.hpp>

#include "admin_server.hpp"
#include "exec/execution.hpp"
#include "process_metrics.hpp"
#include "rpc_observer.hpp"
#include "server.hpp"

namespace gorego {

/// The shipped stacks: the local disk tier with one of the eviction policies, the REAPI
/// backing tier (connected only when `remote.target` is set), spans and metrics.
template <EvictionPolicy E>
using AppStore = ProxyStore<Local<ShardedDisk, E>, Remote<reapi::Reapi>, Traced, Counted>;

/// Builds the span exporter named by `telemetry.tracing_endpoint`; null when tracing is off.
Result<std::shared_ptr<Tracer>> make_tracer(const Config& c);

/// The services whose methods get their own metric labels.
std::vector<std::string> served_services();

/// Execution's view of the store: CAS reads, the ActionCache with its completeness check.
template <class Store>
class StoreForExecution final : public exec::ExecStore {
 public:
  StoreForExecution(Store& store, reapi::ActionCacheService<Store>& ac) : store_(store), ac_(ac) {}
  void get_blob(const Digest& d, Callback<Result<std::string>> done) override { store_.get(d, std::move(done)); }
  void lookup_result(const Digest& action, Callback<Result<reapi::re::ActionResult>> done) override {
    ac_.lookup(action, std::move(done));
  }
  void store_result(const Digest& action, const reapi::re::ActionResult& r, Callback<Status> done) override {
    store_.put_action(action, r.SerializeAsString(), std::move(done));
  }

 private:
  Store& store_;
  reapi::ActionCacheService<Store>& ac_;
};

template <class Store>
class ServerImpl final : public Server {
 public:
  explicit ServerImpl(const Config& c)
      : store_(ShardedDisk::Options{.root = c.storage.data_dir,
                                    .fsync = c.storage.fsync,
                                    .block_size = c.storage.block_size},
               eviction_options(c),
               typename Store::Local::Options{
                   .max_bytes = c.storage.max_size_bytes,
                   .verify_reads = c.storage.verify_reads == ReadVerification::kAlways
                                       ? VerifyReads::kAlways
                                       : VerifyReads::kFirst,
                   .ac_memory_bytes = c.storage.ac_memory_bytes,
                   .memory_cache_bytes = c.storage.memory_cache_bytes}),
        // Disk I/O and hashing only: upstream calls complete through callbacks and hold
        // no thread (see docs/architecture.md, "Threads").
        pool_({.threads = c.server.io_threads, .max_queued = c.server.io_queue, .name = "io"}),
        opt_{.max_batch_total_size_bytes = c.server.max_batch_total_size_bytes,
             .max_cas_blob_size_bytes = c.server.max_blob_size_bytes,
             .exec_enabled = c.execution.enabled},
        caps_(opt_),
        cas_(store_, pool_, opt_),
        bytestream_(store_, pool_, opt_),
        ac_(store_, pool_) {}

  ~ServerImpl() override { shutdown(std::chrono::system_clock::now()); }

  Status start(const Config& c) {
    data_dir_ = c.storage.data_dir;
    auto tracer = make_tracer(c);
    if (!tracer) return tracer.error();
    tracer_ = std::move(*tracer);
    store_.template instrumentation<Traced>().enable(tracer_);
    observer_ = std::make_unique<RpcObserver>(served_services(), tracer_);
    if (!c.remote.target.empty()) {
      auto client = reapi::Reapi::connect({.target = c.remote.target,
                                           .instance_name = c.remote.instance_name,
                                           .timeout = c.remote.timeout,
                                           .retries = static_cast<int>(c.remote.retries),
                                           .tls_ca_file = c.remote.tls_ca_file.string(),
                                           .tls_cert_file = c.remote.tls_cert_file.string(),
                                           .tls_key_file = c.remote.tls_key_file.string(),
                                           .bearer_token = c.remote.bearer_token,
                                           .header = c.remote.header,
                                           .headers = c.remote.headers});
      if (!client) return client.error();
      store_.remote().connect(
          std::move(*client),
          {.mode = c.remote.mode == RemoteMode::kBack ? WriteMode::kBack : WriteMode::kThrough,
           .queue_size = c.remote.queue_size});
    }
    store_.set_executor(&pool_);
    GOREGO_RETURN_IF_ERROR(store_.start());
    add_metrics();
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
    interceptors.push_back(observer_->factory());
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    builder.AddListeningPort(c.server.listen_addr, grpc::InsecureServerCredentials(), &port_);
    const int max_message =
        static_cast<int>(c.server.max_batch_total_size_bytes + (std::uint64_t{1} << 20));
    builder.SetMaxReceiveMessageSize(max_message);
    builder.SetMaxSendMessageSize(max_message);
    builder.RegisterService(&caps_);
    builder.RegisterService(&cas_);
    builder.RegisterService(&bytestream_);
    builder.RegisterService(&ac_);
    if (c.execution.enabled) {
      exec_store_ = std::make_unique<StoreForExecution<Store>>(store_, ac_);
      using std::chrono::milliseconds;
      const auto& e = c.execution;
      exec_ = std::make_unique<exec::Execution>(
          *exec_store_, pool_,
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
      for (grpc::Service* svc : exec_->services()) builder.RegisterService(svc);
      metrics_.add(exec_->metrics());
      exec_->start();
    }
    server_ = builder.BuildAndStart();
    if (!server_ || port_ == 0) {
      server_.reset();
      return error(Code::kUnavailable, "cannot listen on {}", c.server.listen_addr);
    }
    server_->GetHealthCheckService()->SetServingStatus(false);  // until the first check passes
    serving_ = true;
    if (!c.telemetry.metrics_addr.empty()) {
      auto admin = AdminServer::start(
          c.telemetry.metrics_addr,
          {.metrics = [this] { return metrics_.render(); }, .health = [this] { return health(); }});
      if (!admin) return admin.error();
      admin_ = std::move(*admin);
    }
    check_health(/*ping_upstream=*/false);  // start-up never waits on the upstream
    monitor_ = std::jthread([this](std::stop_token st) { monitor(st); });
    return {};
  }

  [[nodiscard]] int port() const override { return port_; }
  [[nodiscard]] int admin_port() const override { return admin_ ? admin_->port() : 0; }

  void begin_shutdown() override {
    shutting_down_ = true;
    if (server_) server_->GetHealthCheckService()->SetServingStatus(false);
  }

  void shutdown(std::chrono::system_clock::time_point deadline) override {
    // The health monitor touches server_: it stops first (readiness is 503 from now on).
    if (monitor_.joinable()) {
      monitor_.request_stop();
      monitor_.join();
    }
    if (server_) {
      begin_shutdown();
      // Calls still waiting on the upstream at the deadline are cancelled, so a hung
      // upstream cannot hold the shutdown beyond the grace period.
      std::jthread canceller([this, deadline](std::stop_token st) {
        std::mutex mu;
        std::condition_variable_any cv;
        std::unique_lock lock(mu);
        if (!cv.wait_until(lock, st, deadline, [] { return false; }) && !st.stop_requested()) {
          if (store_.remote().active()) {
            // Work that goes on after the cancellation starts no new upstream waits.
            store_.remote().client().refuse_new_calls(true);
            store_.remote().client().cancel_in_flight();
          }
        }
      });
      server_->Shutdown(deadline);
      server_->Wait();
      serving_ = false;
      server_.reset();
    }
    if (exec_) exec_->stop();
    // The canceller has ended: the write-back queue may use the upstream again to drain.
    if (store_.remote().active()) store_.remote().client().refuse_new_calls(false);
    pool_.shutdown();  // from now on, late continuations run where they land
    store_.set_executor(nullptr);
    store_.stop();     // drains the write-back queue for a bounded time
    admin_.reset();
    if (tracer_) tracer_->shutdown();  // exports the spans still queued
  }

  [[nodiscard]] std::uint64_t usage_bytes() const override {
    return const_cast<Store&>(store_).local().usage_bytes();
  }
  [[nodiscard]] bool index_loaded() const override {
    return const_cast<Store&>(store_).local().loaded();
  }

 private:
  /// Metrics beyond the store's own: per-RPC, process, readiness, upstream, tracing.
  void add_metrics() {
    auto& counted = store_.template instrumentation<Counted>();
    metrics_.add(counted.registry());
    metrics_.add(counted.gauges());
    metrics_.add(observer_->registry());
    auto own = std::make_shared<telemetry::CallbackCollector>();
    add_process_metrics(*own);
    own->add("gorego_build_info", "Version of the running gorego (always 1)", prometheus::MetricType::Gauge,
             {{{{"version", GOREGO_VERSION}}, [] { return 1.0; }}});
    own->gauge("gorego_disk_free_bytes", "Free bytes on the filesystem of the data directory (for unprivileged users)",
               [dir = data_dir_] {
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
               [this] {
                 return store_.remote().active() ? static_cast<double>(store_.remote().client().in_flight()) : 0.0;
               });
    own->gauge("gorego_ready", "1 while /health/ready answers 200 (ready or degraded)",
               [this] { return ready_.load() ? 1.0 : 0.0; });
    own->gauge("gorego_upstream_up", "1 while the backing cache answers health checks; 0 when down or not configured",
               [this] { return upstream_up_.load() ? 1.0 : 0.0; });
    if (tracer_) {
      own->counter("gorego_trace_spans_exported_total", "Spans the exporter delivered",
                   [t = tracer_] { return static_cast<double>(t->stats().exported.load()); });
      own->counter("gorego_trace_spans_dropped_total", "Spans dropped: export queue full or export failed",
                   [t = tracer_] { return static_cast<double>(t->stats().dropped.load()); });
    }
    metrics_.add(std::move(own));
  }

  /// Creates and deletes a small file in the data directory: can the store write?
  Status probe_writable() const {
    const std::string path = (data_dir_ / ".gorego-health").string();
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return error(Code::kUnavailable, "cannot create {}: {}", path, std::strerror(errno));
    const bool wrote = ::write(fd, "ok", 2) == 2;
    ::close(fd);
    ::unlink(path.c_str());
    if (!wrote) return error(Code::kUnavailable, "cannot write {}", path);
    return {};
  }

  /// Re-evaluates readiness; grpc.health.v1 follows it. The upstream is pinged (when due)
  /// only from the monitor thread.
  void check_health(bool ping_upstream = true) {
    const Status w = probe_writable();
    if (ping_upstream && store_.remote().active()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= next_upstream_check_) {
        const Status up = store_.remote().client().ping(std::chrono::milliseconds(2000));
        upstream_up_ = up.ok();
        next_upstream_check_ = now + (up.ok() ? std::chrono::seconds(5) : std::chrono::seconds(1));
        std::lock_guard lock(health_mu_);
        upstream_error_ = up.ok() ? "" : up.message();
      }
    }
    {
      std::lock_guard lock(health_mu_);
      writable_error_ = w.ok() ? "" : w.message();
    }
    const bool ready = !shutting_down_ && w.ok() && store_.local().loaded();
    const bool was = ready_.exchange(ready);
    if (ready != was && !shutting_down_) {
      if (server_) server_->GetHealthCheckService()->SetServingStatus(ready);
      if (!ready) log::warn("not ready", {{"store_writable", w.ok() ? "ok" : w.message()}});
      else log::info("ready");
    }
  }

  void monitor(const std::stop_token& st) {
    std::mutex mu;
    std::condition_variable_any cv;
    while (!st.stop_requested()) {
      {
        std::unique_lock lock(mu);
        // Quick checks until the first time ready (the index walk ends), then every second.
        const auto period = ready_ ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(100);
        cv.wait_for(lock, st, period, [] { return false; });
      }
      if (st.stop_requested()) return;
      check_health();
    }
  }

  HealthReport health() const {
    HealthReport r;
    std::lock_guard lock(health_mu_);
    const bool loaded = const_cast<Store&>(store_).local().loaded();
    r.started = serving_.load() && loaded;
    r.checks.emplace_back("store_writable", writable_error_.empty() ? "ok" : writable_error_);
    r.checks.emplace_back("index_loaded", loaded ? "ok" : "walking the local store");
    const bool remote = const_cast<Store&>(store_).remote().active();
    if (remote) r.checks.emplace_back("upstream", upstream_up_ ? "ok" : "unreachable: " + upstream_error_);
    r.ready = ready_.load() && !shutting_down_;
    if (shutting_down_) r.state = "shutting_down";
    else if (!loaded) r.state = "starting";
    else if (!r.ready) r.state = "not_ready";
    else if (remote && !upstream_up_) r.state = "degraded";
    else r.state = "ready";
    return r;
  }

  static auto eviction_options(const Config& c) {
    using E = std::remove_cvref_t<decltype(std::declval<Store&>().local())>;
    if constexpr (std::is_same_v<E, Local<ShardedDisk, AtimeJanitor>>) {
      return AtimeJanitor::Options{.scan_interval = c.storage.janitor_interval,
                                   .force_update_atime = c.storage.force_update_atime};
    } else if constexpr (std::is_same_v<E, Local<ShardedDisk, SampledLru>>) {
      return SampledLru::Options{};
    } else {
      return Lru::Options{};
    }
  }

  Store store_;
  Executor pool_;
  reapi::ServiceOptions opt_;
  reapi::CapabilitiesService caps_;
  reapi::CasService<Store> cas_;
  reapi::ByteStreamService<Store> bytestream_;
  reapi::ActionCacheService<Store> ac_;
  std::unique_ptr<StoreForExecution<Store>> exec_store_;
  std::unique_ptr<exec::Execution> exec_;  // with execution.enabled
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::filesystem::path data_dir_;
  std::shared_ptr<Tracer> tracer_;
  std::unique_ptr<RpcObserver> observer_;
  telemetry::MetricsSource metrics_;
  std::unique_ptr<AdminServer> admin_;
  std::atomic<bool> serving_{false};  // server_ is listening (read by admin threads)
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> ready_{false};
  std::atomic<bool> upstream_up_{false};
  std::chrono::steady_clock::time_point next_upstream_check_{};
  mutable std::mutex health_mu_;
  std::string writable_error_;
  std::string upstream_error_;
  std::jthread monitor_;
};

/// Builds and starts a ServerImpl<Store>.
template <class Store>
Result<std::unique_ptr<Server>> start_server_with(const Config& c) {
  auto s = std::make_unique<ServerImpl<Store>>(c);
  GOREGO_RETURN_IF_ERROR(s->start(c));
  return std::unique_ptr<Server>(std::move(s));
}

extern template class ServerImpl<AppStore<SampledLru>>;
extern template Result<std::unique_ptr<Server>> start_server_with<AppStore<SampledLru>>(const Config&);
extern template class ServerImpl<AppStore<Lru>>;
extern template class ServerImpl<AppStore<AtimeJanitor>>;
extern template Result<std::unique_ptr<Server>> start_server_with<AppStore<Lru>>(const Config&);
extern template Result<std::unique_ptr<Server>> start_server_with<AppStore<AtimeJanitor>>(const Config&);

}  // namespace gorego
