#pragma once
/// Singleflight: concurrent calls for the same key share one execution.
///
/// The first caller of `run(key, fn)` (the leader) runs `fn`; callers arriving while it
/// runs (followers) wait and receive a copy of the leader's result. A key is forgotten as
/// soon as its flight lands, so later calls run `fn` again. `followers()` counts calls
/// that were saved an execution. Thread safety: fully concurrent.
///
///   Singleflight<Digest, Status> fetches;
///   Status s = fetches.run(d, [&] { return fetch_from_upstream(d); });

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace gorego {

template <class Key, class Value, class Hash = std::hash<Key>>
class Singleflight {
 public:
  template <class F>
  Value run(const Key& key, F&& fn) {
    std::shared_ptr<Flight> flight;
    bool leader = false;
    {
      std::lock_guard lock(mu_);
      auto& slot = flights_[key];
      if (!slot) {
        slot = std::make_shared<Flight>();
        leader = true;
      }
      flight = slot;
    }
    if (!leader) {
      followers_.fetch_add(1, std::memory_order_relaxed);
      std::unique_lock lock(flight->mu);
      flight->cv.wait(lock, [&] { return flight->value.has_value(); });
      return *flight->value;
    }
    Value v = fn();
    {
      std::lock_guard lock(mu_);
      flights_.erase(key);
    }
    {
      std::lock_guard lock(flight->mu);
      flight->value.emplace(v);
    }
    flight->cv.notify_all();
    return v;
  }

  [[nodiscard]] std::uint64_t followers() const { return followers_.load(); }

 private:
  struct Flight {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Value> value;
  };
  std::mutex mu_;
  std::unordered_map<Key, std::shared_ptr<Flight>, Hash> flights_;
  std::atomic<std::uint64_t> followers_{0};
};

}  // namespace gorego
