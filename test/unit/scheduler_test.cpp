// The execution scheduler over simulated workers: matching, priorities, merging, requeue
// on worker loss, heartbeats, waiting for workers, cancellation and retention.
#include <catch2/catch.hpp>

#include <gorego/exec/scheduler.hpp>

using namespace gorego;
using namespace gorego::exec;
using namespace std::chrono_literals;

namespace {

/// Records what the scheduler sends one worker.
struct SimWorker {
  std::vector<Lease> leases;
  std::vector<std::string> cancelled;
  std::vector<std::string> closed;
  WorkerLink link() {
    return {.assign = [this](const Lease& l) { leases.push_back(l); },
            .cancel = [this](const std::string& l) { cancelled.push_back(l); },
            .close = [this](const std::string& why) { closed.push_back(why); }};
  }
};

/// Collects one watcher's events.
struct Seen {
  std::vector<Event> events;
  Watcher watcher() {
    return [this](const Event& e) { events.push_back(e); };
  }
  [[nodiscard]] const Event& last() const { return events.back(); }
  [[nodiscard]] bool done() const { return !events.empty() && events.back().done; }
};

/// A watcher for jobs whose events the test does not look at (a temporary Seen's watcher
/// would outlive it).
Watcher ignore() {
  return [](const Event&) {};
}

JobSpec job(std::string key, std::string payload = "p", std::int32_t priority = 0, Properties platform = {}) {
  return {.merge_key = std::move(key), .priority = priority, .platform = std::move(platform),
          .payload = std::move(payload)};
}

}  // namespace

TEST_CASE("Scheduler: an action runs only on a worker offering its platform", "[scheduler]") {
  Scheduler<> s;
  SimWorker plain, gpu;
  const auto p = s.connect({.id = "plain", .properties = {{"OSFamily", "linux"}}, .slots = 4}, plain.link());
  const auto g = s.connect({.id = "gpu", .properties = {{"gpu", "1"}, {"OSFamily", "linux"}}, .slots = 1}, gpu.link());
  (void)p;
  (void)g;
  Seen seen;
  auto sub = s.submit(job("a", "gpu-job", 0, {{"gpu", "1"}, {"OSFamily", "linux"}}), seen.watcher());
  REQUIRE(sub);
  CHECK(plain.leases.empty());
  REQUIRE(gpu.leases.size() == 1);
  CHECK(*gpu.leases[0].payload == "gpu-job");
  CHECK(seen.last().worker == "gpu");

  // A second GPU action waits for the busy GPU worker rather than going to the plain one.
  Seen second;
  REQUIRE(s.submit(job("b", "gpu-2", 0, {{"gpu", "1"}}), second.watcher()));
  CHECK(plain.leases.empty());
  CHECK(s.stats().queued == 1);
  s.finished(g, gpu.leases[0].id, "done-a");
  REQUIRE(gpu.leases.size() == 2);
  CHECK(*gpu.leases[1].payload == "gpu-2");

  // Nobody offers Windows: refused at once, naming what the workers offer.
  auto bad = s.submit(job("c", "x", 0, {{"OSFamily", "windows"}}), ignore());
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code() == Code::kFailedPrecondition);
  CHECK_THAT(bad.error().message(), Catch::Contains("OSFamily=windows") && Catch::Contains("OSFamily=linux"));
}

TEST_CASE("Scheduler: lower priority values run first, then arrival order", "[scheduler]") {
  Scheduler<> s;
  SimWorker w;
  const auto id = s.connect({.id = "w", .slots = 1}, w.link());
  Seen a, b, c, d;
  REQUIRE(s.submit(job("busy", "busy"), a.watcher()));
  REQUIRE(s.submit(job("late", "late", 5), b.watcher()));
  REQUIRE(s.submit(job("urgent", "urgent", -3), c.watcher()));
  REQUIRE(s.submit(job("late2", "late2", 5), d.watcher()));
  REQUIRE(w.leases.size() == 1);
  for (const char* want : {"urgent", "late", "late2"}) {
    s.finished(id, w.leases.back().id, "r");
    REQUIRE(*w.leases.back().payload == want);
  }
}

TEST_CASE("Scheduler: identical in-flight actions merge onto one execution", "[scheduler]") {
  Scheduler<> s;
  SimWorker w;
  const auto id = s.connect({.id = "w", .slots = 8}, w.link());
  std::vector<Seen> seen(20);
  std::set<std::string> names;
  for (auto& one : seen) {
    auto sub = s.submit(job("action-1"), one.watcher());
    REQUIRE(sub);
    names.insert(sub->name);
  }
  CHECK(names.size() == 1);
  REQUIRE(w.leases.size() == 1);
  CHECK(s.stats().merged == 19);
  s.started(id, w.leases[0].id);
  s.finished(id, w.leases[0].id, "the-result");
  for (const auto& one : seen) {
    REQUIRE(one.done());
    CHECK(one.last().status.ok());
    CHECK(one.last().response == "the-result");
  }
  // Once finished, the same action runs again (the AC answers repeats, not the scheduler).
  REQUIRE(s.submit(job("action-1"), ignore()));
  CHECK(w.leases.size() == 2);
  // An action that must not be merged (empty key) always runs on its own.
  REQUIRE(s.submit(job(""), ignore()));
  REQUIRE(s.submit(job(""), ignore()));
  CHECK(w.leases.size() == 4);
}

TEST_CASE("Scheduler: a lost worker's action is requeued, up to max_attempts", "[scheduler]") {
  Scheduler<> s({.max_attempts = 2});
  SimWorker one, two, three;
  const auto w1 = s.connect({.id = "one", .slots = 1}, one.link());
  Seen seen;
  REQUIRE(s.submit(job("k"), seen.watcher()));
  REQUIRE(one.leases.size() == 1);
  s.started(w1, one.leases[0].id);
  CHECK(seen.last().stage == Stage::kExecuting);

  s.disconnect(w1);
  CHECK(seen.last().stage == Stage::kQueued);
  CHECK_FALSE(seen.done());
  CHECK(s.stats().requeued == 1);

  const auto w2 = s.connect({.id = "two", .slots = 1}, two.link());
  REQUIRE(two.leases.size() == 1);
  CHECK(two.leases[0].id != one.leases[0].id);
  // A late report of the first lease is ignored: the action is the second worker's now.
  s.finished(w1, one.leases[0].id, "stale");
  CHECK_FALSE(seen.done());

  // The second loss is the last attempt.
  s.disconnect(w2);
  REQUIRE(seen.done());
  CHECK(seen.last().status.code() == Code::kUnavailable);
  CHECK_THAT(seen.last().status.message(), Catch::Contains("lost with its worker 2 times"));
  s.connect({.id = "three", .slots = 1}, three.link());
  CHECK(three.leases.empty());
}

TEST_CASE("Scheduler: a worker whose heartbeats stop is lost", "[scheduler]") {
  Scheduler<> s({.heartbeat_timeout = 1000ms});
  SimWorker quiet, alive;
  s.connect({.id = "quiet", .slots = 1}, quiet.link());
  Seen seen;
  REQUIRE(s.submit(job("k"), seen.watcher()));
  REQUIRE(quiet.leases.size() == 1);
  const auto a = s.connect({.id = "alive", .slots = 1}, alive.link());
  const auto later = Clock::now() + 1500ms;
  s.heartbeat(a, later);  // only this one stays in touch
  s.tick(later);
  const auto st = s.stats();
  CHECK(st.workers == 1);
  CHECK(st.workers_lost == 1);
  REQUIRE(alive.leases.size() == 1);  // the action moved to the live worker
  CHECK(alive.leases[0].operation == quiet.leases[0].operation);
  CHECK_FALSE(seen.done());
  // The silent worker's stream is closed, so it stops running the action and reconnects.
  REQUIRE(quiet.closed.size() == 1);
  CHECK_THAT(quiet.closed[0], Catch::Contains("quiet") && Catch::Contains("heartbeats"));
  CHECK(alive.closed.empty());
}

TEST_CASE("Scheduler: a second stream with a worker's id replaces the first and closes it", "[scheduler]") {
  Scheduler<> s;
  SimWorker first, second;
  const auto w1 = s.connect({.id = "same", .slots = 1}, first.link());
  Seen seen;
  REQUIRE(s.submit(job("k"), seen.watcher()));
  REQUIRE(first.leases.size() == 1);
  s.connect({.id = "same", .slots = 1}, second.link());
  REQUIRE(first.closed.size() == 1);
  CHECK_THAT(first.closed[0], Catch::Contains("connected again"));
  REQUIRE(second.leases.size() == 1);  // requeued onto the new stream
  s.finished(w1, first.leases[0].id, "late");  // the old stream's report does not count
  CHECK_FALSE(seen.done());
  // A worker whose stream ended by itself is not told anything.
  const auto st = s.stats();
  CHECK(st.workers == 1);
}

TEST_CASE("Scheduler: a queued action fails after worker_wait when no worker can run it", "[scheduler]") {
  Scheduler<> s({.worker_wait = 500ms});
  Seen seen;
  REQUIRE(s.submit(job("k"), seen.watcher()));  // no workers yet: it waits
  const auto t0 = Clock::now();
  s.tick(t0);
  CHECK_FALSE(seen.done());
  s.tick(t0 + 400ms);
  CHECK_FALSE(seen.done());
  s.tick(t0 + 600ms);
  REQUIRE(seen.done());
  CHECK(seen.last().status.code() == Code::kUnavailable);
  CHECK_THAT(seen.last().status.message(), Catch::Contains("no worker connected"));

  // A worker that connects in time takes the action.
  Seen ok;
  REQUIRE(s.submit(job("k2"), ok.watcher()));
  s.tick(t0);
  SimWorker w;
  s.connect({.id = "w"}, w.link());
  s.tick(t0 + 10s);
  CHECK_FALSE(ok.done());
  CHECK(w.leases.size() == 1);
}

TEST_CASE("Scheduler: cancel removes a queued action and kills a running one", "[scheduler]") {
  Scheduler<> s;
  SimWorker w;
  const auto id = s.connect({.id = "w", .slots = 1}, w.link());
  Seen running, queued;
  auto r = s.submit(job("r"), running.watcher());
  auto q = s.submit(job("q"), queued.watcher());
  REQUIRE((r && q));
  REQUIRE(s.cancel(q->name).ok());
  REQUIRE(queued.done());
  CHECK(queued.last().status.code() == Code::kCancelled);
  CHECK(s.stats().queued == 0);

  REQUIRE(s.cancel(r->name).ok());
  REQUIRE(running.done());
  CHECK(running.last().status.code() == Code::kCancelled);
  REQUIRE(w.cancelled.size() == 1);
  CHECK(w.cancelled[0] == w.leases[0].id);
  // The slot stays busy until the worker reports the killed lease.
  Seen next;
  REQUIRE(s.submit(job("n"), next.watcher()));
  CHECK(w.leases.size() == 1);
  s.finished(id, w.leases[0].id, "killed");
  CHECK(running.last().status.code() == Code::kCancelled);
  CHECK(w.leases.size() == 2);
  CHECK(s.cancel("operations/nope").code() == Code::kNotFound);
}

TEST_CASE("Scheduler: finished operations stay resolvable for the retention time", "[scheduler]") {
  Scheduler<> s({.retention = 1000ms});
  SimWorker w;
  const auto id = s.connect({.id = "w"}, w.link());
  Seen first;  // outlives the finish that calls it
  auto sub = s.submit(job("k"), first.watcher());
  REQUIRE(sub);
  s.finished(id, w.leases[0].id, "answer");
  Seen late;
  REQUIRE(s.watch(sub->name, late.watcher()));
  REQUIRE(late.done());
  CHECK(late.last().response == "answer");
  s.heartbeat(id);
  s.tick(Clock::now() + 500ms);
  CHECK(s.state(sub->name).has_value());
  s.heartbeat(id);
  s.tick(Clock::now() + 1500ms);
  CHECK_FALSE(s.state(sub->name).has_value());
  auto gone = s.watch(sub->name, ignore());
  REQUIRE_FALSE(gone);
  CHECK(gone.error().code() == Code::kNotFound);
}

TEST_CASE("Scheduler: event versions grow with every change", "[scheduler]") {
  Scheduler<> s;
  SimWorker w;
  const auto id = s.connect({.id = "w"}, w.link());
  Seen seen;
  REQUIRE(s.submit(job("k"), seen.watcher()));
  s.started(id, w.leases[0].id);
  s.finished(id, w.leases[0].id, "r");
  REQUIRE(seen.events.size() >= 3);
  for (std::size_t i = 1; i < seen.events.size(); ++i) CHECK(seen.events[i].version > seen.events[i - 1].version);
}

TEST_CASE("Placement: least-loaded spreads by slots, round-robin takes turns", "[scheduler]") {
  std::vector<WorkerLoad> ws{{"a", 4, 3, 10, 0}, {"b", 2, 0, 12, 0}, {"c", 8, 2, 5, 0}};
  CHECK(LeastLoaded{}.pick(ws) == 1);
  ws[1].busy = 1;  // b at 1/2, c at 2/8
  CHECK(LeastLoaded{}.pick(ws) == 2);
  RoundRobin rr;
  CHECK(rr.pick(ws) == 0);
  CHECK(rr.pick(ws) == 1);
  CHECK(rr.pick(ws) == 2);
  CHECK(rr.pick(ws) == 0);
  std::vector<WorkerLoad> speeds{{"slow", 1, 0, 3, 900}, {"fast", 1, 0, 3, 100}, {"new", 1, 0, 0, 0}};
  CHECK(FastestFirst{}.pick(speeds) == 2);  // unknown speed first
  speeds[2].mean_run_ms = 500;
  CHECK(FastestFirst{}.pick(speeds) == 1);
}

TEST_CASE("Scheduler: a stated lease duration is what FastestFirst ranks workers by", "[scheduler]") {
  Scheduler<FastestFirst> s;
  SimWorker slow, fast;
  const auto sw = s.connect({.id = "slow", .slots = 1}, slow.link());
  const auto fw = s.connect({.id = "fast", .slots = 1}, fast.link());
  // Neither has history: the first action goes to the first connected, the second to the other.
  Seen a, b;
  REQUIRE(s.submit(job("a"), a.watcher()));
  REQUIRE(s.submit(job("b"), b.watcher()));
  REQUIRE((slow.leases.size() == 1 && fast.leases.size() == 1));
  // Both return at once in wall time; only the stated durations tell them apart.
  s.finished(sw, slow.leases[0].id, "r", 900ms);
  s.finished(fw, fast.leases[0].id, "r", 100ms);
  for (const char* key : {"c", "d", "e"}) {
    Seen seen;
    REQUIRE(s.submit(job(key), seen.watcher()));
    CHECK(seen.last().worker == "fast");
    s.finished(fw, fast.leases.back().id, "r", 100ms);
  }
  CHECK(slow.leases.size() == 1);
  CHECK(fast.leases.size() == 4);
}

TEST_CASE("Scheduler: a lease not reported within its timeout plus grace fails and is cancelled", "[scheduler]") {
  Scheduler<> s({.lease_grace = 1000ms});
  SimWorker w;
  const auto id = s.connect({.id = "stuck", .slots = 1}, w.link());
  Seen seen;
  JobSpec spec = job("k");
  spec.timeout = 2000ms;
  REQUIRE(s.submit(std::move(spec), seen.watcher()));
  REQUIRE(w.leases.size() == 1);
  const auto t0 = Clock::now();
  s.heartbeat(id, t0 + 2500ms);
  s.tick(t0 + 2500ms);  // within timeout + grace
  CHECK_FALSE(seen.done());
  s.heartbeat(id, t0 + 3500ms);
  s.tick(t0 + 3500ms);
  REQUIRE(seen.done());
  CHECK(seen.last().status.code() == Code::kDeadlineExceeded);
  CHECK_THAT(seen.last().status.message(), Catch::Contains("stuck"));
  REQUIRE(w.cancelled.size() == 1);
  CHECK(w.cancelled[0] == w.leases[0].id);
  // An action without a timeout is never failed this way.
  Seen forever;
  s.finished(id, w.leases[0].id, "late");
  REQUIRE(s.submit(job("k2"), forever.watcher()));
  s.heartbeat(id, t0 + 100s);
  s.tick(t0 + 100s);
  CHECK_FALSE(forever.done());
}

TEST_CASE("Scheduler: drain fails queued actions, refuses new ones and sends workers away once idle", "[scheduler]") {
  Scheduler<> s;
  SimWorker busy, idle;
  const auto b = s.connect({.id = "busy", .slots = 1}, busy.link());
  Seen running, queued;
  REQUIRE(s.submit(job("r"), running.watcher()));
  REQUIRE(s.submit(job("q"), queued.watcher()));  // waits: the only slot runs "r"
  REQUIRE(busy.leases.size() == 1);
  s.drain();
  REQUIRE(queued.done());
  CHECK(queued.last().status.code() == Code::kUnavailable);
  CHECK(busy.closed.empty());  // still running "r"
  const auto late = s.submit(job("new"), ignore());
  REQUIRE_FALSE(late);
  CHECK(late.error().code() == Code::kUnavailable);
  s.connect({.id = "idle", .slots = 1}, idle.link());
  CHECK(idle.leases.empty());  // nothing is dispatched while draining
  CHECK(idle.closed.size() == 1);  // and a worker that connects now is sent away at once
  s.finished(b, busy.leases[0].id, "done-r");
  CHECK(running.done());
  CHECK(running.last().status.ok());
  REQUIRE(busy.closed.size() == 1);
  CHECK_THAT(busy.closed[0], Catch::Contains("shutting down"));
}

TEST_CASE("Scheduler: a lease the worker could not run is retried, up to max_attempts", "[scheduler]") {
  Scheduler<> s({.max_attempts = 2});
  SimWorker one, two;
  const auto w1 = s.connect({.id = "one", .slots = 1}, one.link());
  Seen seen;
  REQUIRE(s.submit(job("k"), seen.watcher()));
  REQUIRE(one.leases.size() == 1);
  const auto w2 = s.connect({.id = "two", .slots = 1}, two.link());
  s.retry(w1, one.leases[0].id, error(Code::kInternal, "disk full"));
  CHECK_FALSE(seen.done());
  CHECK(s.stats().requeued == 1);
  // Requeued onto a free worker (either); the second failure is the last attempt.
  const bool on_two = two.leases.size() == 1;
  REQUIRE((on_two || one.leases.size() == 2));
  s.retry(on_two ? w2 : w1, on_two ? two.leases[0].id : one.leases[1].id, error(Code::kInternal, "disk full"));
  REQUIRE(seen.done());
  CHECK(seen.last().status.code() == Code::kInternal);
  CHECK_THAT(seen.last().status.message(), Catch::Contains("disk full"));
  CHECK(s.stats().busy == 0);
}

TEST_CASE("Scheduler: a more urgent caller merging onto a queued action raises its priority", "[scheduler]") {
  Scheduler<> s;
  SimWorker w;
  const auto id = s.connect({.id = "w", .slots = 1}, w.link());
  REQUIRE(s.submit(job("busy", "busy"), ignore()));
  REQUIRE(s.submit(job("other", "other", 0), ignore()));
  REQUIRE(s.submit(job("shared", "shared", 5), ignore()));
  REQUIRE(s.submit(job("shared", "shared", -1), ignore()));  // merges, and is more urgent than "other"
  s.finished(id, w.leases.back().id, "r");
  REQUIRE(w.leases.size() == 2);
  CHECK(*w.leases.back().payload == "shared");
}
