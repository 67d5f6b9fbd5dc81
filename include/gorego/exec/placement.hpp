#pragma once
/// Placement policies of the execution scheduler: which of the workers that can take an
/// action now gets it. The queue order (priority, then arrival) is the scheduler's; a
/// policy only breaks the tie among eligible workers.
///
///     Scheduler<LeastLoaded> s;     // the server's default
///     Scheduler<RoundRobin> r;      // spreads blindly
///     Scheduler<FastestFirst> f;    // prefers workers whose recent actions ended sooner

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace gorego::exec {

/// What a placement policy sees of one eligible worker (it has a free slot and offers the
/// action's platform).
struct WorkerLoad {
  std::string_view id;
  std::uint32_t slots = 1;
  std::uint32_t busy = 0;
  std::uint64_t assigned_total = 0;  ///< leases given to it since it connected
  double mean_run_ms = 0;            ///< moving average of its lease durations; 0 before the first
};

/// `pick(eligible)` returns an index into a non-empty span. Called under the scheduler's
/// lock: constant or linear time, no blocking.
template <class P>
concept PlacementPolicy = requires(P& p, std::span<const WorkerLoad> eligible) {
  { P::kName } -> std::convertible_to<std::string_view>;
  { p.pick(eligible) } -> std::same_as<std::size_t>;
};

/// The least busy worker relative to its slots; ties go to the one given fewer leases.
struct LeastLoaded {
  static constexpr std::string_view kName = "least_loaded";
  std::size_t pick(std::span<const WorkerLoad> ws) const {
    std::size_t best = 0;
    for (std::size_t i = 1; i < ws.size(); ++i) {
      const auto lhs = std::uint64_t{ws[i].busy} * ws[best].slots;
      const auto rhs = std::uint64_t{ws[best].busy} * ws[i].slots;
      if (lhs < rhs || (lhs == rhs && ws[i].assigned_total < ws[best].assigned_total)) best = i;
    }
    return best;
  }
};
static_assert(PlacementPolicy<LeastLoaded>);

/// Each eligible worker in turn, whatever its load or speed.
struct RoundRobin {
  static constexpr std::string_view kName = "round_robin";
  std::uint64_t next = 0;
  std::size_t pick(std::span<const WorkerLoad> ws) { return static_cast<std::size_t>(next++ % ws.size()); }
};
static_assert(PlacementPolicy<RoundRobin>);

/// The worker expected to finish soonest: the lowest moving-average lease duration scaled by
/// how busy it is; workers without history first (to learn their speed).
struct FastestFirst {
  static constexpr std::string_view kName = "fastest_first";
  std::size_t pick(std::span<const WorkerLoad> ws) const {
    std::size_t best = 0;
    auto cost = [](const WorkerLoad& w) { return w.mean_run_ms * (1.0 + static_cast<double>(w.busy) / w.slots); };
    for (std::size_t i = 1; i < ws.size(); ++i) {
      if (cost(ws[i]) < cost(ws[best])) best = i;
    }
    return best;
  }
};
static_assert(PlacementPolicy<FastestFirst>);

}  // namespace gorego::exec
