#pragma once
/// StoreStack: the one part of the server that depends on the store's type. It holds the
/// shipped store stack (ProxyStore<Local<ShardedDisk, E>, Remote<Reapi>, Traced, Counted>) and
/// the gRPC services that are templates over it; everything else (the listener, health, the
/// admin server, execution, the server's own metrics) is compiled once and reaches the store
/// through this interface. One instantiation per eviction policy, each in its own
/// translation unit (store_stack_sampled.cpp, _lru.cpp, _atime.cpp); the choice and its cost
/// are in docs/architecture.md ("The server's parts").

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include <prometheus/collectable.h>

#include <gorego/config/config.hpp>
#include <gorego/core/executor.hpp>
#include <gorego/core/status.hpp>
#include <gorego/instrument/tracer.hpp>
#include <gorego/reapi/service_options.hpp>

#include "exec/execution.hpp"
#include "http_cache.hpp"

namespace gorego {

class StoreStack {
 public:
  virtual ~StoreStack() = default;

  /// Connects the upstream (when `remote.target` is set), starts the local tier's index
  /// load and the write-back worker. Work that needs a thread goes to `pool`.
  virtual Status start(Executor& pool) = 0;
  /// Drains the write-back queue (bounded) and stops the store; `pool` is shut down by then.
  virtual void stop() = 0;

  /// ContentAddressableStorage, ByteStream and ActionCache over the store.
  virtual std::vector<grpc::Service*> services() = 0;
  /// Execution's view of the store.
  virtual exec::ExecStore& exec_store() = 0;
  /// The HTTP cache listener's view of the store.
  virtual HttpStore& http_store() = 0;
  /// The store's metrics (Counted's families and gauges).
  virtual std::vector<std::shared_ptr<prometheus::Collectable>> metrics() = 0;

  [[nodiscard]] virtual bool loaded() = 0;
  [[nodiscard]] virtual std::uint64_t usage_bytes() = 0;

  // The upstream tier; all no-ops (or "none") without `remote.target`.
  [[nodiscard]] virtual bool has_upstream() = 0;
  virtual Status ping_upstream(std::chrono::milliseconds timeout) = 0;
  [[nodiscard]] virtual std::size_t upstream_calls_in_flight() = 0;
  /// At the end of a shutdown's grace: no new upstream calls, and those in flight cancelled.
  virtual void cancel_upstream() = 0;
  /// After the listener stopped: the write-back queue may use the upstream again to drain.
  virtual void allow_upstream() = 0;
};

/// The three instantiations (store_stack_<policy>.cpp).
std::unique_ptr<StoreStack> make_sampled_lru_stack(const Config& c, const reapi::ServiceOptions& opt, Executor& pool,
                                                   std::shared_ptr<Tracer> tracer);
std::unique_ptr<StoreStack> make_lru_stack(const Config& c, const reapi::ServiceOptions& opt, Executor& pool,
                                           std::shared_ptr<Tracer> tracer);
std::unique_ptr<StoreStack> make_atime_stack(const Config& c, const reapi::ServiceOptions& opt, Executor& pool,
                                             std::shared_ptr<Tracer> tracer);

/// The stack for `c.storage.eviction`, spans to `tracer` (may be null).
Result<std::unique_ptr<StoreStack>> make_store_stack(const Config& c, const reapi::ServiceOptions& opt,
                                                     Executor& pool, std::shared_ptr<Tracer> tracer);

}  // namespace gorego
