#pragma once
/// GroupSync: group commit for flushes. `run(op)` returns once an `op` that started after
/// the call has finished. One caller at a time runs it; callers arriving meanwhile share the
/// next one. A caller fails if any flush since its own call started failed: a later success
/// does not prove its pages reached the disk (the kernel may have dropped them at the failed
/// writeback). Thread-safe.

#include <condition_variable>
#include <cstdint>
#include <mutex>

#include <gorego/core/status.hpp>

namespace gorego::detail {

class GroupSync {
 public:
  /// `op` flushes and returns its status; every caller of one GroupSync passes the same flush.
  template <class Op>
  Status run(Op&& op) {
    std::unique_lock lock(mu_);
    const std::uint64_t need = started_ + 1;
    while (done_ < need) {
      if (running_) {
        cv_.wait(lock);
        continue;
      }
      running_ = true;
      const std::uint64_t mine = ++started_;
      lock.unlock();
      Status s = op();
      lock.lock();
      running_ = false;
      done_ = mine;
      if (!s.ok()) {
        failed_ = mine;
        error_ = std::move(s);
      }
      cv_.notify_all();
    }
    return failed_ >= need ? error_ : Status{};
  }

 private:
  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  bool running_ = false;
  std::uint64_t started_ = 0;
  std::uint64_t done_ = 0;
  std::uint64_t failed_ = 0;  // generation of the last failed flush
  Status error_;              // its error
};

}  // namespace gorego::detail
