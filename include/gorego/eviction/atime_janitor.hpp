#pragma once
/// AtimeJanitor: eviction by file access time, as simple disk caches do it.
///
/// Keeps no per-object state. When space is needed, and every `scan_interval`, it scans
/// the backend's access times and picks the least recently accessed objects until the
/// store is down to `low_watermark` of its limit (so one O(objects) scan frees room for
/// many writes). On `noatime` mounts set `force_update_atime` so reads touch the file.

#include <algorithm>
#include <chrono>
#include <string_view>
#include <tuple>
#include <vector>

#include <gorego/concepts/eviction_policy.hpp>

namespace gorego {

class AtimeJanitor {
 public:
  static constexpr std::string_view kName = "atime";

  struct Options {
    std::chrono::milliseconds scan_interval{std::chrono::seconds(60)};
    bool force_update_atime = false;
    double low_watermark = 0.9;  ///< a run frees down to this fraction of the limit
  };

  AtimeJanitor() = default;
  explicit AtimeJanitor(Options o) : opt_(o) {}

  void on_insert(const ObjectKey& /*k*/, std::uint64_t /*bytes*/) {}
  void on_access(const ObjectKey& /*k*/) {}
  void on_erase(const ObjectKey& /*k*/) {}

  [[nodiscard]] bool touch_on_read() const { return opt_.force_update_atime; }
  [[nodiscard]] std::chrono::milliseconds scan_interval() const { return opt_.scan_interval; }
  [[nodiscard]] double low_watermark() const { return opt_.low_watermark; }

  template <class Backend>
  std::vector<ObjectKey> select_victims(std::uint64_t bytes, Backend& backend) {
    std::vector<std::tuple<std::int64_t, ObjectKey, std::uint64_t>> all;
    backend.for_each_entry([&](const ObjectKey& k, std::uint64_t n, std::int64_t atime) {
      all.emplace_back(atime, k, n);
    });
    std::sort(all.begin(), all.end(),
              [](const auto& a, const auto& b) { return std::get<0>(a) < std::get<0>(b); });
    std::vector<ObjectKey> out;
    std::uint64_t freed = 0;
    for (const auto& [atime, k, n] : all) {
      if (freed >= bytes) break;
      out.push_back(k);
      freed += n;
    }
    return out;
  }

 private:
  Options opt_;
};
static_assert(EvictionPolicy<AtimeJanitor>);

}  // namespace gorego
