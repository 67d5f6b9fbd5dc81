#pragma once
/// Lru: exact least-recently-used eviction, in memory.
///
/// A doubly linked recency list plus a hash map from key to list node. Every hook is O(1)
/// under one mutex; `select_victims` pops from the cold end. Ignores the backend.

#include <list>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <gorego/concepts/eviction_policy.hpp>

namespace gorego {

class Lru {
 public:
  static constexpr std::string_view kName = "lru";
  struct Options {};

  explicit Lru(Options = {}) {}

  void on_insert(const ObjectKey& k, std::uint64_t bytes) {
    std::lock_guard lock(mu_);
    if (auto it = map_.find(k); it != map_.end()) {
      it->second->bytes = bytes;
      order_.splice(order_.begin(), order_, it->second);
      return;
    }
    order_.push_front({k, bytes});
    map_.emplace(k, order_.begin());
  }

  void on_access(const ObjectKey& k) {
    std::lock_guard lock(mu_);
    if (auto it = map_.find(k); it != map_.end()) order_.splice(order_.begin(), order_, it->second);
  }

  void on_erase(const ObjectKey& k) {
    std::lock_guard lock(mu_);
    if (auto it = map_.find(k); it != map_.end()) {
      order_.erase(it->second);
      map_.erase(it);
    }
  }

  template <class Backend>
  std::vector<ObjectKey> select_victims(std::uint64_t bytes, Backend& /*unused*/) {
    std::vector<ObjectKey> out;
    std::lock_guard lock(mu_);
    std::uint64_t freed = 0;
    while (freed < bytes && !order_.empty()) {
      const Node& n = order_.back();
      freed += n.bytes;
      out.push_back(n.key);
      map_.erase(n.key);
      order_.pop_back();
    }
    return out;
  }

 private:
  struct Node {
    ObjectKey key;
    std::uint64_t bytes;
  };
  std::mutex mu_;
  std::list<Node> order_;  // front = most recent
  std::unordered_map<ObjectKey, std::list<Node>::iterator> map_;
};
static_assert(EvictionPolicy<Lru>);

}  // namespace gorego
