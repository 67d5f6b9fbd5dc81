#pragma once
/// ExecutionSettings: remote execution (`execution.*`). Part of Config; see config.hpp for
/// how settings are read and docs/configuration.md for what each one does.

#include <chrono>
#include <cstdint>

namespace gorego {

/// The scheduler's settings. Workers (gorego-worker) take their own settings as flags.
struct ExecutionSettings {
  /// `execution.enabled`, `--execution`: serve the Execution and Operations services and
  /// accept gorego-worker streams; off, the server is a plain cache and Capabilities says
  /// execution is not available.
  bool enabled = false;
  /// `execution.default_timeout`: the timeout of actions that set none (a duration, > 0).
  std::chrono::seconds default_timeout{3600};
  /// `execution.max_timeout`: actions asking for a longer timeout are refused with
  /// INVALID_ARGUMENT (a duration >= default_timeout).
  std::chrono::seconds max_timeout{3 * 3600};
  /// `execution.max_attempts`: how often an action is leased before a lost worker fails it,
  /// 1..10.
  std::uint32_t max_attempts = 3;
  /// `execution.heartbeat_timeout`: a worker silent this long is lost; workers heartbeat at
  /// a third of it (a duration, > 0).
  std::chrono::seconds heartbeat_timeout{30};
  /// `execution.worker_wait`: how long a queued action waits for a worker offering its
  /// platform when none is connected (a duration, > 0).
  std::chrono::seconds worker_wait{60};
  /// `execution.retention`: how long a finished operation stays resolvable by
  /// WaitExecution and GetOperation (a duration, > 0).
  std::chrono::seconds retention{120};
  /// `execution.keepalive`: operation streams get the current state at least this often, so
  /// clients' idle timeouts never cut a long action (a duration, > 0).
  std::chrono::seconds keepalive{10};
  /// `execution.max_queued`: actions queued at most; more are RESOURCE_EXHAUSTED,
  /// 1..10000000.
  std::uint32_t max_queued = 100000;

  friend bool operator==(const ExecutionSettings&, const ExecutionSettings&) = default;
};

}  // namespace gorego
