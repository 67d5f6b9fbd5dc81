#pragma once
/// SampledLru: approximate least-recently-used eviction with no state of its own.
///
/// Local's index stamps every access (reads and presence checks) on the entry itself, so
/// a hit costs no shared lock and no list splice. To pick a victim the policy draws
/// `samples` random entries and takes the least recently used of them; the victim is
/// then, on average, older than all but 1/(samples+1) of the cache (Redis evicts the same
/// way). Below `exact_below` entries it sorts them all instead, which is exact LRU.
/// Memory: nothing beyond the index's 8-byte stamp per entry.

#include <algorithm>
#include <random>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <gorego/concepts/eviction_policy.hpp>

namespace gorego {

class SampledLru {
 public:
  static constexpr std::string_view kName = "sampled-lru";
  struct Options {
    std::size_t samples = 16;       ///< candidates drawn per victim
    std::size_t exact_below = 4096; ///< below this many entries: exact LRU by sorting
  };

  SampledLru() = default;
  explicit SampledLru(Options o) : opt_(o) {}

  void on_insert(const ObjectKey& /*k*/, std::uint64_t /*bytes*/) {}
  void on_access(const ObjectKey& /*k*/) {}
  void on_erase(const ObjectKey& /*k*/) {}

  template <class Source>
  std::vector<ObjectKey> select_victims(std::uint64_t bytes, Source& source) {
    std::vector<ObjectKey> out;
    if (source.indexed() <= opt_.exact_below) {
      std::vector<IndexedObject> all;
      source.for_each_indexed([&](const IndexedObject& o) { all.push_back(o); });
      std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.stamp < b.stamp; });
      std::uint64_t freed = 0;
      for (const IndexedObject& o : all) {
        if (freed >= bytes) break;
        out.push_back(o.key);
        freed += o.bytes;
      }
      return out;
    }
    std::unordered_set<ObjectKey> chosen;
    std::vector<IndexedObject> pool;
    std::uint64_t freed = 0;
    std::size_t idle = 0;  // rounds that found nothing new: the index is nearly all chosen
    while (freed < bytes && idle < 64) {
      pool.clear();
      source.sample(opt_.samples, pool);
      const IndexedObject* best = nullptr;
      for (const IndexedObject& o : pool) {
        if ((best == nullptr || o.stamp < best->stamp) && !chosen.contains(o.key)) best = &o;
      }
      if (best == nullptr) {
        ++idle;
        continue;
      }
      idle = 0;
      chosen.insert(best->key);
      out.push_back(best->key);
      freed += best->bytes;
    }
    return out;
  }

 private:
  Options opt_;
};
static_assert(EvictionPolicy<SampledLru>);

}  // namespace gorego
