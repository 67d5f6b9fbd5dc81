#pragma once
/// Process metrics in the Prometheus client conventions (process_cpu_seconds_total,
/// process_resident_memory_bytes, process_open_fds, ...), read from /proc when scraped.

#include <memory>

#include <gorego/telemetry/metrics.hpp>

namespace gorego {

/// Adds the process_* families to `c`.
void add_process_metrics(telemetry::CallbackCollector& c);

}  // namespace gorego
