// The settings of remote execution: `execution.*` (ExecutionSettings).
#include "settings.hpp"

namespace gorego::settings {
namespace {

template <auto Member>
using Execution = Field<&Config::execution, Member>;

constexpr std::array kSettings{
    scalar<Execution<&ExecutionSettings::enabled>, &parse_bool, &format_bool>(
        "execution.enabled", "execution", "BOOL",
        "serve remote execution (Execution, Operations, and the gorego-worker stream)"),
    scalar<Execution<&ExecutionSettings::default_timeout>, &parse_positive_duration, &format_duration>(
        "execution.default_timeout", "", "DURATION", "timeout of actions that set none"),
    scalar<Execution<&ExecutionSettings::max_timeout>, &parse_positive_duration, &format_duration>(
        "execution.max_timeout", "", "DURATION", "longest action timeout accepted"),
    scalar<Execution<&ExecutionSettings::max_attempts>, &parse_uint_in<1, 10>, &format_uint>(
        "execution.max_attempts", "", "N", "leases of an action before lost workers fail it, 1..10"),
    scalar<Execution<&ExecutionSettings::heartbeat_timeout>, &parse_positive_duration, &format_duration>(
        "execution.heartbeat_timeout", "", "DURATION", "a worker silent this long is lost"),
    scalar<Execution<&ExecutionSettings::worker_wait>, &parse_positive_duration, &format_duration>(
        "execution.worker_wait", "", "DURATION",
        "how long an action waits for a worker offering its platform"),
    scalar<Execution<&ExecutionSettings::retention>, &parse_positive_duration, &format_duration>(
        "execution.retention", "", "DURATION", "how long finished operations stay resolvable"),
    scalar<Execution<&ExecutionSettings::keepalive>, &parse_positive_duration, &format_duration>(
        "execution.keepalive", "", "DURATION", "operation streams get an update at least this often"),
    scalar<Execution<&ExecutionSettings::max_queued>, &parse_uint_in<1, 10'000'000>, &format_uint>(
        "execution.max_queued", "", "N", "actions queued at most, 1..10000000"),
};

Status validate_execution(const Config& config) {
  const ExecutionSettings& e = config.execution;
  if (e.max_timeout < e.default_timeout) {
    return invalid(fmt::format("execution.max_timeout {} is shorter than execution.default_timeout {}",
                               format_duration(e.max_timeout), format_duration(e.default_timeout)));
  }
  return ok_status();
}

}  // namespace

Area execution_area() { return {kSettings, &validate_execution}; }

}  // namespace gorego::settings
