#pragma once
/// Singleflight: concurrent calls for the same key share one execution, without parking
/// a thread per caller.
///
/// The first caller of `run(key, start, done)` (the leader) calls `start(complete)`, which
/// begins the work and calls `complete(value)` once when it lands (on any thread, at any
/// later time, or before `start` returns). Callers arriving while the work runs
/// (followers) only leave their `done`. When the value lands, the key is forgotten (later
/// calls start again) and every caller's `done` runs with it, on the thread that called
/// `complete`, the leader's first. `followers()` counts calls that were saved an execution.
/// Thread safety: fully concurrent.
///
///   Singleflight<Digest, Status> fetches;
///   fetches.run(d, [&](auto complete) { fetch_from_upstream(d, complete); },
///               [reactor](const Status& s) { reactor->Finish(to_grpc(s)); });

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gorego {

template <class Key, class Value, class Hash = std::hash<Key>>
class Singleflight {
 public:
  using Done = std::function<void(const Value&)>;
  using Complete = std::function<void(Value)>;

  template <class Start, class D>
  void run(const Key& key, Start&& start, D&& done) {
    std::shared_ptr<Flight> flight;
    {
      std::lock_guard lock(mu_);
      auto& slot = flights_[key];
      if (slot) {
        slot->waiters.emplace_back(std::forward<D>(done));
        followers_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      slot = std::make_shared<Flight>();
      slot->waiters.emplace_back(std::forward<D>(done));
      flight = slot;
    }
    start(Complete([this, key, flight](Value v) { land(key, *flight, v); }));
  }

  [[nodiscard]] std::uint64_t followers() const { return followers_.load(); }
  /// Keys with work under way now.
  [[nodiscard]] std::size_t in_flight() {
    std::lock_guard lock(mu_);
    return flights_.size();
  }

 private:
  struct Flight {
    std::vector<Done> waiters;  // guarded by the Singleflight's mu_
  };

  void land(const Key& key, Flight& flight, const Value& v) {
    std::vector<Done> waiters;
    {
      std::lock_guard lock(mu_);
      waiters = std::move(flight.waiters);
      flights_.erase(key);
    }
    for (auto& w : waiters) w(v);
  }

  std::mutex mu_;
  std::unordered_map<Key, std::shared_ptr<Flight>, Hash> flights_;
  std::atomic<std::uint64_t> followers_{0};
};

}  // namespace gorego
