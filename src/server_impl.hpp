#pragma once
/// ServerImpl<Store>: the template behind start_server. Instantiated only in
/// server_lru.cpp and server_atime.cpp (one eviction policy each) so the expensive
/// service templates compile once per store stack.

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <gorego/core/executor.hpp>
#include <gorego/core/log.hpp>
#include <gorego/eviction/atime_janitor.hpp>
#include <gorego/eviction/lru.hpp>
#include <gorego/reapi/action_cache_service.hpp>
#include <gorego/reapi/bytestream_service.hpp>
#include <gorego/reapi/capabilities_service.hpp>
#include <gorego/reapi/cas_service.hpp>
#include <gorego/reapi/reapi_client.hpp>
#include <gorego/store/local.hpp>
#include <gorego/store/proxy_store.hpp>
#include <gorego/store/sharded_disk.hpp>

#include "server.hpp"

namespace gorego {

/// The shipped stacks: the local disk tier with one of the eviction policies and the
/// REAPI backing tier (connected only when `remote.target` is set); no instrumentation yet.
template <EvictionPolicy E>
using AppStore = ProxyStore<Local<ShardedDisk, E>, Remote<reapi::Reapi>>;

template <class Store>
class ServerImpl final : public Server {
 public:
  explicit ServerImpl(const Config& c)
      : store_(ShardedDisk::Options{.root = c.data_dir,
                                    .fsync = c.fsync,
                                    .block_size = c.block_size},
               eviction_options(c), typename Store::Local::Options{.max_bytes = c.max_size_bytes}),
        // Threads that wait on the upstream are cheap; extra ones keep local hits flowing
        // while read-throughs wait (see docs/architecture.md).
        pool_(c.io_threads + (c.remote_target.empty() ? 0 : kUpstreamWaiters)),
        opt_{.max_batch_total_size_bytes = c.max_batch_total_size_bytes,
             .max_cas_blob_size_bytes = c.max_blob_size_bytes},
        caps_(opt_),
        cas_(store_, pool_, opt_),
        bytestream_(store_, pool_, opt_),
        ac_(store_, pool_) {}

  ~ServerImpl() override { shutdown(std::chrono::system_clock::now()); }

  Status start(const Config& c) {
    if (!c.remote_target.empty()) {
      auto client = reapi::Reapi::connect({.target = c.remote_target,
                                           .instance_name = c.remote_instance_name,
                                           .timeout = c.remote_timeout,
                                           .retries = static_cast<int>(c.remote_retries),
                                           .tls_ca_file = c.remote_tls_ca_file.string(),
                                           .tls_cert_file = c.remote_tls_cert_file.string(),
                                           .tls_key_file = c.remote_tls_key_file.string(),
                                           .bearer_token = c.remote_bearer_token,
                                           .header = c.remote_header});
      if (!client) return client.error();
      store_.remote().connect(std::move(*client),
                              {.mode = c.remote_mode == "back" ? WriteMode::kBack : WriteMode::kThrough,
                               .queue_size = c.remote_queue_size});
    }
    GOREGO_RETURN_IF_ERROR(store_.start());
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(c.listen_addr, grpc::InsecureServerCredentials(), &port_);
    const int max_message = static_cast<int>(c.max_batch_total_size_bytes + (std::uint64_t{1} << 20));
    builder.SetMaxReceiveMessageSize(max_message);
    builder.SetMaxSendMessageSize(max_message);
    builder.RegisterService(&caps_);
    builder.RegisterService(&cas_);
    builder.RegisterService(&bytestream_);
    builder.RegisterService(&ac_);
    server_ = builder.BuildAndStart();
    if (!server_ || port_ == 0) {
      server_.reset();
      return error(Code::kUnavailable, "cannot listen on {}", c.listen_addr);
    }
    server_->GetHealthCheckService()->SetServingStatus(true);
    return {};
  }

  [[nodiscard]] int port() const override { return port_; }

  void begin_shutdown() override {
    if (server_) server_->GetHealthCheckService()->SetServingStatus(false);
  }

  void shutdown(std::chrono::system_clock::time_point deadline) override {
    if (server_) {
      begin_shutdown();
      // Calls still waiting on the upstream at the deadline are cancelled, so a hung
      // upstream cannot hold the shutdown beyond the grace period.
      std::jthread canceller([this, deadline](std::stop_token st) {
        std::mutex mu;
        std::condition_variable_any cv;
        std::unique_lock lock(mu);
        if (!cv.wait_until(lock, st, deadline, [] { return false; }) && !st.stop_requested()) {
          if (store_.remote().active()) store_.remote().client().cancel_in_flight();
        }
      });
      server_->Shutdown(deadline);
      server_->Wait();
      server_.reset();
    }
    pool_.shutdown();
    store_.stop();  // drains the write-back queue for a bounded time
  }

  [[nodiscard]] std::uint64_t usage_bytes() const override {
    return const_cast<Store&>(store_).local().usage_bytes();
  }
  [[nodiscard]] bool index_loaded() const override {
    return const_cast<Store&>(store_).local().loaded();
  }

 private:
  static auto eviction_options(const Config& c) {
    using E = std::remove_cvref_t<decltype(std::declval<Store&>().local())>;
    if constexpr (std::is_same_v<E, Local<ShardedDisk, AtimeJanitor>>) {
      return AtimeJanitor::Options{.scan_interval = c.janitor_interval,
                                   .force_update_atime = c.force_update_atime};
    } else {
      return Lru::Options{};
    }
  }

  static constexpr std::uint32_t kUpstreamWaiters = 64;

  Store store_;
  Executor pool_;
  reapi::ServiceOptions opt_;
  reapi::CapabilitiesService caps_;
  reapi::CasService<Store> cas_;
  reapi::ByteStreamService<Store> bytestream_;
  reapi::ActionCacheService<Store> ac_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

/// Builds and starts a ServerImpl<Store>.
template <class Store>
Result<std::unique_ptr<Server>> start_server_with(const Config& c) {
  auto s = std::make_unique<ServerImpl<Store>>(c);
  GOREGO_RETURN_IF_ERROR(s->start(c));
  return std::unique_ptr<Server>(std::move(s));
}

extern template class ServerImpl<AppStore<Lru>>;
extern template class ServerImpl<AppStore<AtimeJanitor>>;
extern template Result<std::unique_ptr<Server>> start_server_with<AppStore<Lru>>(const Config&);
extern template Result<std::unique_ptr<Server>> start_server_with<AppStore<AtimeJanitor>>(const Config&);

}  // namespace gorego
