#pragma once
/// Waiting in background threads: a sleep that a stop request ends at once, for the loops of
/// the threads that wake up every so often (health, reloads, the execution ticker).

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stop_token>

namespace gorego {

/// Sleeps for `d`, or less when `st` asks to stop; whether a stop was requested.
template <class Rep, class Period>
bool sleep_unless_stopped(const std::stop_token& st, std::chrono::duration<Rep, Period> d) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  cv.wait_for(lock, st, d, [] { return false; });
  return st.stop_requested();
}

}  // namespace gorego
