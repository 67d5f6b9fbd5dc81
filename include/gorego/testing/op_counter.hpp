#pragma once
/// OpCounter: a minimal Instrumentation for tests of ProxyStore's instrumentation hooks.
/// Counts begun and ended operations, failures, and the tier and bytes of each, per StoreOp.

#include <array>
#include <atomic>
#include <string_view>

#include <gorego/concepts/instrumentation.hpp>

namespace gorego::testing {

class OpCounter {
 public:
  static constexpr std::string_view kName = "op_counter";
  struct Token {
    StoreOp op;
  };

  Token begin(const OpInfo& info) {
    begun_[idx(info.op)].fetch_add(1, std::memory_order_relaxed);
    return {info.op};
  }
  void end(Token& t, const Outcome& o) {
    ended_[idx(t.op)].fetch_add(1, std::memory_order_relaxed);
    if (!o.status.ok()) failed_[idx(t.op)].fetch_add(1, std::memory_order_relaxed);
    bytes_[idx(t.op)].fetch_add(o.bytes, std::memory_order_relaxed);
    if (o.tier == Tier::kRemote) remote_[idx(t.op)].fetch_add(1, std::memory_order_relaxed);
  }
  void on_eviction(const EvictionRun& run) { evicted_.fetch_add(run.objects, std::memory_order_relaxed); }

  [[nodiscard]] int begun(StoreOp op) const { return begun_[idx(op)].load(); }
  [[nodiscard]] int ended(StoreOp op) const { return ended_[idx(op)].load(); }
  [[nodiscard]] int failed(StoreOp op) const { return failed_[idx(op)].load(); }
  [[nodiscard]] int served_remotely(StoreOp op) const { return remote_[idx(op)].load(); }
  [[nodiscard]] std::uint64_t bytes(StoreOp op) const { return bytes_[idx(op)].load(); }
  [[nodiscard]] std::uint64_t evicted() const { return evicted_.load(); }

 private:
  static std::size_t idx(StoreOp op) { return static_cast<std::size_t>(op); }
  std::array<std::atomic<int>, kStoreOps> begun_{};
  std::array<std::atomic<int>, kStoreOps> ended_{};
  std::array<std::atomic<int>, kStoreOps> failed_{};
  std::array<std::atomic<int>, kStoreOps> remote_{};
  std::array<std::atomic<std::uint64_t>, kStoreOps> bytes_{};
  std::atomic<std::uint64_t> evicted_{0};
};
static_assert(Instrumentation<OpCounter>);

}  // namespace gorego::testing
