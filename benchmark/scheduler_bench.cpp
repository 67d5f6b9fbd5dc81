// Benchmarks of the execution scheduler (include/gorego/exec/scheduler.hpp) over simulated
// workers, in one thread:
// - dispatch throughput: how many trivial actions per second go through submit, dispatch
//   and finished, for each placement policy, with idle or saturated workers, with and
//   without platform properties;
// - placement: each policy's makespan and waits on workers of unequal speed, simulated in
//   virtual time (no sleeps), on identical fixed-seed job sets.
// Run: build/benchmark/gorego_bench_scheduler (see docs/performance.md).
#include <malloc.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <numbers>
#include <queue>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include <gorego/exec/placement.hpp>
#include <gorego/exec/scheduler.hpp>

namespace {

using namespace gorego;
using namespace gorego::exec;

// ---- dispatch throughput ------------------------------------------------------------------

/// Shaped like the server's (src/exec/execution.cpp): the merge key and label carry an action
/// digest, the payload stands for a serialized Assignment.
const std::string kPayload(512, 'a');

/// `pools`: every worker offers OSFamily=linux and pool=p0 or p1 (alternately), every other
/// one of each pool also ISA=x86-64; the actions require pool=p0 or p1, alternately, so each
/// can run on half the workers and demand matches supply.
JobSpec action(std::uint64_t n, bool pools) {
  JobSpec j{.merge_key = fmt::format("|{:064x}/142", n),
            .payload = kPayload,
            .label = fmt::format("{:064x}/142", n)};
  if (pools) j.platform = {{"pool", n % 2 == 0 ? "p0" : "p1"}};
  return j;
}

/// Workers that only record the leases they are sent; the benchmark loop finishes them,
/// oldest first, as if each action took no time.
class Farm {
 public:
  template <class S>
  Farm(S& s, std::size_t workers, std::uint32_t slots, bool pools) {
    ids_.resize(workers);
    for (std::size_t i = 0; i < workers; ++i) {
      Properties props;
      if (pools) {
        props = {{"OSFamily", "linux"}, {"pool", i % 2 == 0 ? "p0" : "p1"}};
        if (i % 4 < 2) props.emplace_back("ISA", "x86-64");
      }
      ids_[i] = s.connect(
          {.id = fmt::format("worker-{}", i), .properties = std::move(props), .slots = slots},
          {.assign =
               [this, i](const Lease& l) {
                 running_.push_back({i, l.id});
               },
           .cancel = [](const std::string&) {}});
    }
  }

  template <class S>
  void submit(S& s, bool pools) {
    auto sub =
        s.submit(action(next_++, pools), [this](const Event& e) { done_ += e.done ? 1 : 0; });
    if (!sub) std::abort();
  }

  /// False when no lease is running.
  template <class S>
  bool finish_oldest(S& s) {
    if (running_.empty()) return false;
    auto [worker, lease] = std::move(running_.front());
    running_.pop_front();
    s.finished(ids_[worker], lease, "r");
    return true;
  }

  [[nodiscard]] std::uint64_t done() const { return done_; }

 private:
  struct Running {
    std::size_t worker;
    std::string lease;
  };
  std::vector<WorkerId> ids_;
  std::deque<Running> running_;
  std::uint64_t next_ = 0, done_ = 0;
};

/// Items: the actions completed in the timed loop. `retained_ops`: the operations the
/// scheduler holds at the end, nearly all finished ones kept for `retention` (10 min).
template <class S>
void report(benchmark::State& st, S& s, const Farm& farm, std::uint64_t items,
            std::uint64_t before = 0) {
  if (farm.done() != before + items) {
    st.SkipWithError(
        fmt::format("{} actions done, expected {}", farm.done(), before + items).c_str());
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(items));
  st.counters["retained_ops"] = static_cast<double>(s.stats().operations);
}

/// Idle workers: each iteration submits workers × slots actions (every one is dispatched at
/// once, the policy choosing among ever fewer free workers), then finishes them all. Items:
/// actions completed.
template <PlacementPolicy P>
void BM_Dispatch(benchmark::State& st) {
  const auto workers = static_cast<std::size_t>(st.range(0));
  const auto slots = static_cast<std::uint32_t>(st.range(1));
  const bool pools = st.range(2) != 0;
  Scheduler<P> s;
  Farm farm(s, workers, slots, pools);
  const std::size_t batch = workers * slots;
  for (auto _ : st) {
    for (std::size_t i = 0; i < batch; ++i) farm.submit(s, pools);
    while (farm.finish_oldest(s)) {
    }
  }
  report(st, s, farm, static_cast<std::uint64_t>(st.iterations()) * batch);
  st.SetLabel(std::string(P::kName));
}

/// Saturated workers with `depth` actions queued behind them: each iteration finishes the
/// oldest lease (its slot takes the head of the queue) and submits one more action, so the
/// queue stays `depth` deep. Items: actions completed.
template <PlacementPolicy P>
void BM_DispatchQueued(benchmark::State& st) {
  const auto workers = static_cast<std::size_t>(st.range(0));
  const auto slots = static_cast<std::uint32_t>(st.range(1));
  const auto depth = static_cast<std::size_t>(st.range(2));
  const bool pools = st.range(3) != 0;
  Scheduler<P> s;
  Farm farm(s, workers, slots, pools);
  for (std::size_t i = 0; i < workers * slots + depth; ++i) farm.submit(s, pools);
  if (s.stats().queued != depth) std::abort();
  for (auto _ : st) {
    if (!farm.finish_oldest(s)) {
      st.SkipWithError("no lease running");
      break;
    }
    farm.submit(s, pools);
  }
  report(st, s, farm, static_cast<std::uint64_t>(st.iterations()));
  st.counters["queued"] = static_cast<double>(s.stats().queued);
  st.SetLabel(std::string(P::kName));
}

/// BM_DispatchQueued on 8 × 4 workers and 10 000 queued, after `retained` actions have
/// already finished: a server keeps every finished operation resolvable for `retention`
/// (10 min by default), so at 5 000 actions/s it holds 3 M. Fixed iterations: the fill
/// runs once per repetition. `heap_per_op`: heap bytes per retained operation.
void BM_DispatchRetained(benchmark::State& st) {
  const auto retained = static_cast<std::size_t>(st.range(0));
  Scheduler<LeastLoaded> s;
  Farm farm(s, 8, 4, false);
  const std::size_t heap = ::mallinfo2().uordblks;
  for (std::size_t i = 0; i < retained; ++i) {
    farm.submit(s, false);
    if (!farm.finish_oldest(s)) std::abort();
  }
  const auto per_op =
      retained == 0 ? 0.0 : static_cast<double>(::mallinfo2().uordblks - heap) / retained;
  for (std::size_t i = 0; i < 8 * 4 + 10'000; ++i) farm.submit(s, false);
  for (auto _ : st) {
    if (!farm.finish_oldest(s)) {
      st.SkipWithError("no lease running");
      break;
    }
    farm.submit(s, false);
  }
  report(st, s, farm, static_cast<std::uint64_t>(st.iterations()), retained);
  st.counters["heap_per_op"] = per_op;
  st.SetLabel(std::string(LeastLoaded::kName));
}

void dispatch_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"workers", "slots", "pools"});
  for (const bool pools : {false, true}) {
    b->Args({8, 4, pools});
    b->Args({64, 8, pools});
  }
}

void queued_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"workers", "slots", "depth", "pools"});
  for (const bool pools : {false, true}) {
    b->Args({8, 4, 10'000, pools});
    b->Args({64, 8, 10'000, pools});
  }
}

BENCHMARK_TEMPLATE(BM_Dispatch, LeastLoaded)->Apply(dispatch_args);
BENCHMARK_TEMPLATE(BM_Dispatch, RoundRobin)->Apply(dispatch_args);
BENCHMARK_TEMPLATE(BM_Dispatch, FastestFirst)->Apply(dispatch_args);
BENCHMARK_TEMPLATE(BM_DispatchQueued, LeastLoaded)->Apply(queued_args);
BENCHMARK_TEMPLATE(BM_DispatchQueued, RoundRobin)->Apply(queued_args);
BENCHMARK_TEMPLATE(BM_DispatchQueued, FastestFirst)->Apply(queued_args);
BENCHMARK(BM_DispatchRetained)
    ->ArgName("retained")
    ->Arg(0)
    ->Arg(1'000'000)
    ->Arg(3'000'000)
    ->Iterations(200'000);

// ---- placement on workers of unequal speed, in virtual time --------------------------------

struct SimWorker {
  double multiplier;  ///< an action's duration on it: base × multiplier
  std::uint32_t slots;
};

/// 4 fast and 4 slow workers of 2 slots, interleaved in connection order so that no policy's
/// tie-break favours one kind. Capacity: 8 × 1/1.0 + 8 × 1/4.0 = 10 base-seconds per second.
constexpr std::array<SimWorker, 8> kWorkers{
    {{1.0, 2}, {4.0, 2}, {1.0, 2}, {4.0, 2}, {1.0, 2}, {4.0, 2}, {1.0, 2}, {4.0, 2}}};

double capacity() {
  double c = 0;
  for (const auto& w : kWorkers) c += w.slots / w.multiplier;
  return c;
}

struct JobSet {
  std::string name;
  std::vector<double> arrival_s, base_s;
};

/// Raw mt19937_64 output turned into doubles by hand: the standard fixes the engine's
/// sequence but not its distributions', so these job sets are the same under every library.
class Draw {
 public:
  explicit Draw(std::uint64_t seed) : rng_(seed) {}
  double uniform() { return static_cast<double>(rng_() >> 11) * 0x1p-53; }  // [0, 1)
  /// Median 1 s, mean e^0.5 = 1.65 s, 1 % above 10 s: mostly short compiles, a few long links.
  double lognormal_s() {
    const double r = std::sqrt(-2.0 * std::log(1.0 - uniform()));
    return std::exp(r * std::cos(2.0 * std::numbers::pi * uniform()));
  }
  double exponential_s(double mean) { return -mean * std::log(1.0 - uniform()); }

 private:
  std::mt19937_64 rng_;
};

constexpr std::uint64_t kSeed = 20261207;
constexpr std::size_t kJobSets =
    10;  // seeds kSeed, kSeed + 1, ...: one set's outcome is mostly luck of its tail
constexpr std::size_t kJobs = 2000;

constexpr std::array<std::string_view, 3> kScenarios{"batch", "stream_50pct", "stream_90pct"};

/// Scenario 0: kJobs submitted at once. 1 and 2: kJobs arriving as a Poisson stream whose
/// work is 50 % and 90 % of the farm's capacity (the fast workers alone have 80 %).
JobSet make_jobs(std::size_t scenario, std::uint64_t seed) {
  Draw d(seed);
  JobSet js{std::string(kScenarios.at(scenario)), {}, std::vector<double>(kJobs)};
  double mean = 0;
  for (auto& b : js.base_s) mean += (b = d.lognormal_s()) / kJobs;
  if (scenario == 0) {
    js.arrival_s.assign(kJobs, 0.0);
  } else {
    const double mean_gap = mean / ((scenario == 1 ? 0.5 : 0.9) * capacity());
    double t = 0;
    for (std::size_t i = 0; i < kJobs; ++i) js.arrival_s.push_back(t += d.exponential_s(mean_gap));
  }
  return js;
}

/// The same kJobSets job sets for every policy.
const std::vector<JobSet>& job_sets(std::size_t scenario) {
  static const auto sets = [] {
    std::array<std::vector<JobSet>, kScenarios.size()> out;
    for (std::size_t sc = 0; sc < kScenarios.size(); ++sc) {
      for (std::size_t i = 0; i < kJobSets; ++i) out[sc].push_back(make_jobs(sc, kSeed + i));
    }
    return out;
  }();
  return sets.at(scenario);
}

struct SimResult {
  double makespan_s = 0, mean_wait_s = 0, p95_wait_s = 0, mean_turnaround_s = 0, fast_share = 0;
};

/// Runs one job set to completion in virtual time. A lease's finish is now + base ×
/// multiplier; the clock jumps to the next arrival or finish, whichever is sooner, and a
/// finish reports the virtual duration to the scheduler (the overload of `finished` taking
/// `ran_for`), which is what FastestFirst ranks by.
template <PlacementPolicy P>
SimResult simulate(const JobSet& jobs) {
  struct Finish {
    double at;
    std::uint64_t seq;  // ties break in dispatch order
    std::size_t worker, job;
    std::string lease;
  };
  auto later = [](const Finish& a, const Finish& b) {
    return std::tie(a.at, a.seq) > std::tie(b.at, b.seq);
  };
  std::priority_queue<Finish, std::vector<Finish>, decltype(later)> finishes(later);

  const std::size_t n = jobs.base_s.size();
  Scheduler<P> s;
  double now = 0;
  std::uint64_t seq = 0;
  std::vector<double> started(n, -1), ended(n, -1);
  std::size_t on_fast = 0;
  std::vector<WorkerId> ids(kWorkers.size());
  for (std::size_t i = 0; i < kWorkers.size(); ++i) {
    ids[i] = s.connect(
        {.id = fmt::format("w{}x{}", i, kWorkers[i].multiplier), .slots = kWorkers[i].slots},
        {.assign =
             [&, i](const Lease& l) {
               const std::size_t job = std::stoul(*l.payload);
               started[job] = now;
               on_fast += kWorkers[i].multiplier == 1.0 ? 1 : 0;
               finishes.push(
                   {now + jobs.base_s[job] * kWorkers[i].multiplier, seq++, i, job, l.id});
             },
         .cancel = [](const std::string&) {}});
  }

  std::size_t next = 0, done = 0;
  while (done < n) {
    if (next < n && (finishes.empty() || jobs.arrival_s[next] <= finishes.top().at)) {
      now = jobs.arrival_s[next];
      if (!s.submit({.payload = std::to_string(next)}, [](const Event&) {})) std::abort();
      ++next;
      continue;
    }
    Finish f = finishes.top();
    finishes.pop();
    now = f.at;
    ended[f.job] = now;
    ++done;
    const std::chrono::duration<double> ran(jobs.base_s[f.job] * kWorkers[f.worker].multiplier);
    s.finished(ids[f.worker], f.lease, "",
               std::chrono::duration_cast<std::chrono::nanoseconds>(ran));
  }

  SimResult r;
  std::vector<double> waits(n);
  for (std::size_t j = 0; j < n; ++j) {
    waits[j] = started[j] - jobs.arrival_s[j];
    r.makespan_s = std::max(r.makespan_s, ended[j]);
    r.mean_wait_s += waits[j] / n;
    r.mean_turnaround_s += (ended[j] - jobs.arrival_s[j]) / n;
  }
  std::sort(waits.begin(), waits.end());
  r.p95_wait_s = waits[n * 95 / 100];
  r.fast_share = static_cast<double>(on_fast) / n;
  return r;
}

/// Counters: the simulated outcome, averaged over the kJobSets job sets (identical in every
/// iteration); the time is what simulating all of them costs in real time.
template <PlacementPolicy P>
void BM_Placement(benchmark::State& st) {
  const std::size_t scenario = static_cast<std::size_t>(st.range(0));
  const auto& sets = job_sets(scenario);
  std::vector<SimResult> rs(sets.size());
  for (auto _ : st) {
    for (std::size_t i = 0; i < sets.size(); ++i) rs[i] = simulate<P>(sets[i]);
    benchmark::DoNotOptimize(rs.data());
  }
  SimResult mean;
  double worst = 0;
  for (const auto& r : rs) {
    mean.makespan_s += r.makespan_s / rs.size();
    mean.mean_wait_s += r.mean_wait_s / rs.size();
    mean.p95_wait_s += r.p95_wait_s / rs.size();
    mean.mean_turnaround_s += r.mean_turnaround_s / rs.size();
    mean.fast_share += r.fast_share / rs.size();
    worst = std::max(worst, r.makespan_s);
  }
  st.counters["makespan_s"] = mean.makespan_s;
  st.counters["makespan_max_s"] = worst;
  st.counters["mean_wait_s"] = mean.mean_wait_s;
  st.counters["p95_wait_s"] = mean.p95_wait_s;
  st.counters["mean_turnaround_s"] = mean.mean_turnaround_s;
  st.counters["fast_share"] = mean.fast_share;
  if (scenario == 0) {
    // No schedule of a batch ends before its work is spread over the whole capacity, nor
    // before its longest job has run on a fast worker.
    double bound = 0;
    for (const auto& js : sets) {
      double work = 0;
      for (double b : js.base_s) work += b;
      bound += std::max(work / capacity(), *std::max_element(js.base_s.begin(), js.base_s.end())) /
               sets.size();
    }
    st.counters["lower_bound_s"] = bound;
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * sets.size() * kJobs));
  st.SetLabel(fmt::format("{} {}", P::kName, kScenarios.at(scenario)));
}

void placement_args(benchmark::internal::Benchmark* b) {
  b->ArgName("scenario")->DenseRange(0, 2)->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_Placement, LeastLoaded)->Apply(placement_args);
BENCHMARK_TEMPLATE(BM_Placement, RoundRobin)->Apply(placement_args);
BENCHMARK_TEMPLATE(BM_Placement, FastestFirst)->Apply(placement_args);

}  // namespace
