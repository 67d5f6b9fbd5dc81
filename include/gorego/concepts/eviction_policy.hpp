#pragma once
/// EvictionPolicy: decides which objects a size-bounded Local tier drops first.
///
/// Semantics: Local reports every object it indexes (`on_insert` with its stored bytes),
/// every read (`on_access`) and every removal (`on_erase`). When space is needed it calls
/// `select_victims(bytes, backend)`, which returns keys whose removal should free at least
/// `bytes` (fewer when the store holds less), least valuable first, and forgets them.
/// A policy may ignore `backend` (exact LRU keeps its own order) or scan it (the atime
/// janitor reads access times). Optional hooks, found with `requires`:
/// - `touch_on_read()`: Local asks the backend to update the access time on reads;
/// - `scan_interval()`: Local runs `select_victims` periodically, not only when full;
/// - `low_watermark()`: fraction of the limit a run frees down to (amortises scans).
/// Thread safety: members may be called concurrently; a policy guards its own state.
/// Complexity: hooks O(1) for in-memory policies; a scan is O(objects).
///
///   Lru lru;
///   lru.on_insert(key, 4096);
///   std::vector<ObjectKey> out = lru.select_victims(4096, backend);

#include <concepts>
#include <cstdint>
#include <string_view>
#include <vector>

#include <gorego/core/digest.hpp>

namespace gorego {

namespace detail {
/// Archetype of the backend a policy may scan: only `for_each_entry` is promised.
struct ScannableArchetype {
  template <class F>
  void for_each_entry(F&&) {}
};
}  // namespace detail

template <class E>
concept EvictionPolicy = requires(E& e, const ObjectKey& k, std::uint64_t n,
                                  detail::ScannableArchetype& backend) {
  { E::kName } -> std::convertible_to<std::string_view>;
  { e.on_insert(k, n) } -> std::same_as<void>;
  { e.on_access(k) } -> std::same_as<void>;
  { e.on_erase(k) } -> std::same_as<void>;
  { e.select_victims(n, backend) } -> std::same_as<std::vector<ObjectKey>>;
};

}  // namespace gorego
