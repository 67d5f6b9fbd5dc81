#pragma once
/// OpCounter: a minimal Instrumentation for tests of ProxyStore's instrumentation hooks.
/// Counts begun and ended operations and failures, per StoreOp.

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

  Token begin(StoreOp op) {
    begun_[static_cast<std::size_t>(op)].fetch_add(1, std::memory_order_relaxed);
    return {op};
  }
  void end(Token& t, const Status& s) {
    ended_[static_cast<std::size_t>(t.op)].fetch_add(1, std::memory_order_relaxed);
    if (!s.ok()) failed_[static_cast<std::size_t>(t.op)].fetch_add(1, std::memory_order_relaxed);
  }

  [[nodiscard]] int begun(StoreOp op) const { return begun_[static_cast<std::size_t>(op)].load(); }
  [[nodiscard]] int ended(StoreOp op) const { return ended_[static_cast<std::size_t>(op)].load(); }
  [[nodiscard]] int failed(StoreOp op) const { return failed_[static_cast<std::size_t>(op)].load(); }

 private:
  static constexpr std::size_t kOps = 8;
  std::array<std::atomic<int>, kOps> begun_{};
  std::array<std::atomic<int>, kOps> ended_{};
  std::array<std::atomic<int>, kOps> failed_{};
};
static_assert(Instrumentation<OpCounter>);

}  // namespace gorego::testing
