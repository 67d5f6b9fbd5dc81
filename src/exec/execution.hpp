#pragma once
/// Remote execution inside the gorego server: the scheduler and the three gRPC services on
/// the gorego listener (REAPI Execution, google.longrunning.Operations, and gorego's own
/// Workers stream that gorego-worker processes connect to). See docs/architecture.md,
/// "Remote execution".
///
/// Compiled once: the cache is reached through ExecStore, which the server implements over
/// its store stack, so the execution code does not multiply with the eviction policies.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "build/bazel/remote/execution/v2/remote_execution.pb.h"

#include <gorego/core/digest.hpp>
#include <gorego/concepts/remote_client.hpp>
#include <gorego/core/executor.hpp>
#include <gorego/core/status.hpp>
#include <gorego/exec/scheduler.hpp>
#include <gorego/instrument/tracer.hpp>
#include <gorego/telemetry/metrics.hpp>

namespace gorego::exec {

namespace re = build::bazel::remote::execution::v2;

/// What execution needs of the cache. Every call completes through its callback and may
/// call it on any thread (or before returning).
class ExecStore {
 public:
  virtual ~ExecStore() = default;
  /// A blob of the CAS (an Action or a Command); NOT_FOUND when absent.
  virtual void get_blob(const Digest& d, Callback<Result<std::string>> done) = 0;
  /// A cached result whose outputs are all downloadable; NOT_FOUND otherwise.
  virtual void lookup_result(const Digest& action, Callback<Result<re::ActionResult>> done) = 0;
  virtual void store_result(const Digest& action, const re::ActionResult& r, Callback<Status> done) = 0;
};

struct ExecutionOptions {
  std::chrono::milliseconds default_timeout{3'600'000};  ///< for actions without a timeout
  std::chrono::milliseconds max_timeout{10'800'000};     ///< longer asked timeouts are refused (INVALID_ARGUMENT)
  std::chrono::milliseconds keepalive{10'000};           ///< an Operation is re-sent at least this often
  std::int32_t min_priority = -1000, max_priority = 1000;
  Scheduler<LeastLoaded>::Options scheduler;
};

/// The scheduler and the services. start() before the listener serves, stop() after it
/// shut down.
class Execution {
 public:
  Execution(ExecStore& store, Executor& pool, ExecutionOptions o);
  ~Execution();
  Execution(const Execution&) = delete;
  Execution& operator=(const Execution&) = delete;

  /// The services to register on the listener.
  [[nodiscard]] std::vector<grpc::Service*> services();
  /// Starts the ticker (heartbeat timeouts, keepalives, retention).
  void start();
  /// The server begins to stop: queued actions fail UNAVAILABLE, idle workers are sent
  /// away, busy ones once their actions end (see Scheduler::drain).
  void drain();
  /// Ends the ticker; open streams are finished by the listener's shutdown.
  void stop();

  Scheduler<LeastLoaded>& scheduler();
  /// Spans per stage (queue, input fetch, execute, output upload) of traced Execute calls;
  /// set before start().
  void set_tracer(std::shared_ptr<Tracer> t);
  /// gorego_execution_* metrics.
  [[nodiscard]] std::vector<std::shared_ptr<prometheus::Collectable>> metrics() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gorego::exec
