#pragma once
/// StoreStackImpl<Store>: the template behind make_store_stack. Included only by
/// store_stack_sampled.cpp, store_stack_lru.cpp and store_stack_atime.cpp (one eviction
/// policy each), so the service templates compile once per store stack.

#include <gorego/eviction/atime_janitor.hpp>
#include <gorego/eviction/lru.hpp>
#include <gorego/eviction/sampled_lru.hpp>
#include <gorego/instrument/traced.hpp>
#include <gorego/reapi/action_cache_service.hpp>
#include <gorego/reapi/bytestream_service.hpp>
#include <gorego/reapi/cas_service.hpp>
#include <gorego/reapi/reapi_client.hpp>
#include <gorego/store/local.hpp>
#include <gorego/store/proxy_store.hpp>
#include <gorego/store/sharded_disk.hpp>
#include <gorego/telemetry/counted.hpp>

#include "store_stack.hpp"

namespace gorego {

/// The shipped stacks: the local disk tier with one of the eviction policies, the REAPI
/// backing tier (connected only when `remote.target` is set), spans and metrics.
template <EvictionPolicy E>
using AppStore = ProxyStore<Local<ShardedDisk, E>, Remote<reapi::Reapi>, Traced, Counted>;

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

/// The HTTP cache listener's view of the store: the same stack, called synchronously from
/// the listener's connection threads. SHA-256 only (the HTTP protocol has no digest
/// function).
template <class Store>
class StoreForHttp final : public HttpStore {
 public:
  StoreForHttp(Store& store, reapi::ActionCacheService<Store>& ac) : store_(store), ac_(ac) {}

  std::optional<std::int64_t> size_of(const Hash256& h) override {
    return store_.local().size_of(h, DigestFunction::kSha256);
  }
  Result<std::unique_ptr<Reader>> open_read(const Digest& d) override {
    auto r = store_.open_read(d, 0);
    if (!r) return r.error();
    return std::unique_ptr<Reader>(std::make_unique<ReaderOf>(std::move(*r)));
  }
  Result<std::unique_ptr<Writer>> open_write(const Digest& d) override {
    auto w = store_.open_write(d);
    if (!w) return w.error();
    return std::unique_ptr<Writer>(std::make_unique<WriterOf>(std::move(*w)));
  }
  Result<std::string> get_action(const Digest& action) override {
    return detail::wait_for<Result<std::string>>([&](auto done) {
      ac_.lookup(action, [done = std::move(done)](Result<reapi::re::ActionResult> r) mutable {
        if (!r) return done(r.error());
        done(r->SerializeAsString());
      });
    });
  }
  Status put_action(const Digest& action, std::string_view bytes) override {
    reapi::re::ActionResult r;
    if (!r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return error(Code::kInvalidArgument, "the body ({} bytes) is not an ActionResult", bytes.size());
    }
    std::vector<Digest> referenced;
    GOREGO_RETURN_IF_ERROR(reapi::result_digests(r, referenced));
    return store_.put_action(action, r.SerializeAsString());
  }
  std::uint64_t usage_bytes() override { return store_.local().usage_bytes(); }
  bool loaded() override { return store_.local().loaded(); }

 private:
  class ReaderOf final : public Reader {
   public:
    explicit ReaderOf(typename Store::Reader r) : r_(std::move(r)) {}
    Result<std::size_t> read(std::span<char> buf) override { return r_.read(buf); }

   private:
    typename Store::Reader r_;
  };
  class WriterOf final : public Writer {
   public:
    explicit WriterOf(typename Store::Writer w) : w_(std::move(w)) {}
    Status append(std::string_view data) override { return w_.append(data); }
    Status commit() override { return w_.commit(); }

   private:
    typename Store::Writer w_;
  };

  Store& store_;
  reapi::ActionCacheService<Store>& ac_;
};

template <class Store>
class StoreStackImpl final : public StoreStack {
 public:
  StoreStackImpl(const Config& c, const reapi::ServiceOptions& opt, Executor& pool, std::shared_ptr<Tracer> tracer)
      : config_(c),
        store_(ShardedDisk::Options{.root = c.storage.data_dir,
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
        cas_(store_, pool, opt),
        bytestream_(store_, pool, opt),
        ac_(store_, pool),
        exec_store_(store_, ac_),
        http_store_(store_, ac_) {
    store_.template instrumentation<Traced>().enable(std::move(tracer));
  }

  Status start(Executor& pool) override {
    const RemoteSettings& r = config_.remote;
    if (!r.target.empty()) {
      auto client = reapi::Reapi::connect({.target = r.target,
                                           .instance_name = r.instance_name,
                                           .timeout = r.timeout,
                                           .retries = static_cast<int>(r.retries),
                                           .tls_ca_file = r.tls_ca_file.string(),
                                           .tls_cert_file = r.tls_cert_file.string(),
                                           .tls_key_file = r.tls_key_file.string(),
                                           .bearer_token = r.bearer_token,
                                           .header = r.header,
                                           .headers = r.headers});
      if (!client) return client.error();
      if (r.mode == RemoteMode::kBack && r.journal) {
        GOREGO_RETURN_IF_ERROR(
            store_.remote().use_journal(config_.storage.data_dir / "write-back.journal", config_.storage.fsync));
      }
      store_.remote().connect(std::move(*client),
                              {.mode = r.mode == RemoteMode::kBack ? WriteMode::kBack : WriteMode::kThrough,
                               .queue_size = r.queue_size,
                               // An outage of any length: the upload waits in the queue (and
                               // the journal) until the upstream is back.
                               .attempts = 0});
    }
    store_.set_executor(&pool);
    return store_.start();
  }

  void stop() override {
    store_.set_executor(nullptr);
    store_.stop();
  }

  std::vector<grpc::Service*> services() override { return {&cas_, &bytestream_, &ac_}; }
  exec::ExecStore& exec_store() override { return exec_store_; }
  HttpStore& http_store() override { return http_store_; }
  std::vector<std::shared_ptr<prometheus::Collectable>> metrics() override {
    auto& counted = store_.template instrumentation<Counted>();
    return {counted.registry(), counted.gauges()};
  }

  bool loaded() override { return store_.local().loaded(); }
  std::uint64_t usage_bytes() override { return store_.local().usage_bytes(); }

  bool has_upstream() override { return store_.remote().active(); }
  Status ping_upstream(std::chrono::milliseconds timeout) override {
    if (!has_upstream()) return error(Code::kFailedPrecondition, "no upstream is configured");
    return store_.remote().client().ping(timeout);
  }
  std::size_t upstream_calls_in_flight() override {
    return has_upstream() ? store_.remote().client().in_flight() : 0;
  }
  void cancel_upstream() override {
    if (!has_upstream()) return;
    // Work that goes on after the cancellation starts no new upstream waits.
    store_.remote().client().refuse_new_calls(true);
    store_.remote().client().cancel_in_flight();
  }
  void allow_upstream() override {
    if (has_upstream()) store_.remote().client().refuse_new_calls(false);
  }

 private:
  static auto eviction_options(const Config& c) {
    using L = typename Store::Local;
    if constexpr (std::is_same_v<L, Local<ShardedDisk, AtimeJanitor>>) {
      return AtimeJanitor::Options{.scan_interval = c.storage.janitor_interval,
                                   .force_update_atime = c.storage.force_update_atime};
    } else if constexpr (std::is_same_v<L, Local<ShardedDisk, SampledLru>>) {
      return SampledLru::Options{};
    } else {
      return Lru::Options{};
    }
  }

  Config config_;
  Store store_;
  reapi::CasService<Store> cas_;
  reapi::ByteStreamService<Store> bytestream_;
  reapi::ActionCacheService<Store> ac_;
  StoreForExecution<Store> exec_store_;
  StoreForHttp<Store> http_store_;
};

}  // namespace gorego
