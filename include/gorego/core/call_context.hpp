#pragma once
/// CallContext: what the store stack knows of the client call that caused an operation:
/// its REAPI instance name, its deadline and (once authentication exists) its principal.
///
/// Carried like the TraceContext: `current()` is per thread; a service sets it with a
/// `Scope` for the handler, the Executor carries the poster's to the pool thread, a
/// ProxyStore operation that waits for a tier keeps its caller's for the continuation, and
/// the Reapi client caps each upstream attempt at the caller's deadline (a client that gave
/// up leaves no upstream wait behind). Outside a call (tests, background work) it is empty:
/// no instance, no deadline, no principal.
///
/// What an instance name means here: gorego serves one keyspace. The CAS is content
/// addressed, so sharing it across instance names cannot serve a wrong byte; the ActionCache
/// is keyed by the Action digest, which already covers the command, its inputs and its
/// platform, as bazel-remote does. The upstream is asked with `remote.instance_name` (the
/// deployment's choice), not the caller's. The instance name is carried so that rights can
/// be granted per instance and the mesh can route by it.
/// Thread safety: each thread has its own current context.
///
///   CallContext::Scope scope({.instance_name = "ci", .deadline = ctx->deadline()});
///   pool.post([] { assert(CallContext::current().instance_name == "ci"); });

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include <gorego/core/rights.hpp>

namespace gorego {

/// Who is calling, as the admission layer found (src/auth/; null: authentication is off).
struct Principal {
  std::string name;  ///< "anonymous" for a caller without credentials
  Rights rights;     ///< what it may do, fixed when the call was admitted
};

struct CallContext {
  using Clock = std::chrono::system_clock;

  std::string instance_name;
  Clock::time_point deadline = Clock::time_point::max();
  std::shared_ptr<const Principal> principal;

  /// Whether the call has a deadline.
  [[nodiscard]] bool bounded() const { return deadline != Clock::time_point::max(); }
  /// Nothing known of a call (outside one).
  [[nodiscard]] bool empty() const { return instance_name.empty() && !bounded() && !principal; }
  /// The same call without its deadline: for work shared with other callers (one fetch for
  /// all the readers of a blob must not end when the first reader gives up).
  [[nodiscard]] CallContext unbounded() const { return {instance_name, Clock::time_point::max(), principal}; }

  /// The thread's current context (empty outside a call).
  static CallContext& current() {
    thread_local CallContext tc;
    return tc;
  }

  /// Sets the thread's current context for a block, and restores the previous one.
  class Scope;
};

class CallContext::Scope {
 public:
  explicit Scope(CallContext c) : saved_(std::move(current())) { current() = std::move(c); }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  ~Scope() { current() = std::move(saved_); }

 private:
  CallContext saved_;
};

}  // namespace gorego
