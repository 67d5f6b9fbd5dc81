#pragma once
/// EvictionPolicy: decides which objects a size-bounded Local tier drops first.
///
/// Semantics: Local reports every object it indexes (`on_insert` with its stored bytes),
/// every read or presence check (`on_access`) and every removal (`on_erase`). When space
/// is needed it calls `select_victims(bytes, source)`, which returns keys whose removal
/// should free at least `bytes` (fewer when the store holds less), least valuable first,
/// and forgets them. The source offers the backend's scan (`for_each_entry`: key, stored
/// bytes, file access time) and Local's index, which stamps every access itself
/// (`indexed()`, `sample(n, out)`, `for_each_indexed(fn)`, each giving key, bytes, stamp).
/// A policy may keep its own order (exact LRU), scan the backend (the atime janitor) or
/// sample the index (sampled LRU). Optional hooks, found with `requires`:
/// - `touch_on_read()`: Local asks the backend to update the access time on reads;
/// - `scan_interval()`: Local runs `select_victims` periodically, not only when full;
/// - `low_watermark()`: fraction of the limit a run frees down to (amortises scans).
/// Thread safety: members may be called concurrently; a policy guards its own state.
/// Complexity: hooks O(1) for in-memory policies; a scan is O(objects).
///
///   Lru lru;
///   lru.on_insert(key, 4096);
///   std::vector<ObjectKey> out = lru.select_victims(4096, source);

#include <concepts>
#include <cstdint>
#include <string_view>
#include <vector>

#include <gorego/core/digest.hpp>

namespace gorego {

/// One indexed object as an eviction source reports it.
struct IndexedObject {
  ObjectKey key;
  std::uint64_t bytes;
  std::uint64_t stamp;  ///< last access; larger is more recent
};

namespace detail {
/// Archetype of what `select_victims` may use.
struct VictimSourceArchetype {
  template <class F>
  void for_each_entry(F&&) {}
  template <class F>
  void for_each_indexed(F&&) {}
  [[nodiscard]] std::size_t indexed() const { return 0; }
  void sample(std::size_t /*n*/, std::vector<IndexedObject>& /*out*/) {}
};
}  // namespace detail

template <class E>
concept EvictionPolicy = requires(E& e, const ObjectKey& k, std::uint64_t n,
                                  detail::VictimSourceArchetype& source) {
  { E::kName } -> std::convertible_to<std::string_view>;
  { e.on_insert(k, n) } -> std::same_as<void>;
  { e.on_access(k) } -> std::same_as<void>;
  { e.on_erase(k) } -> std::same_as<void>;
  { e.select_victims(n, source) } -> std::same_as<std::vector<ObjectKey>>;
};

}  // namespace gorego
