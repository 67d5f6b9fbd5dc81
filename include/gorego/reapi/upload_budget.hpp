#pragma once
/// UploadBudget: how many bytes of ByteStream uploads may be in flight at once, per client
/// connection and on the whole server (`server.max_upload_bytes_per_connection`,
/// `server.max_upload_bytes`). An upload reserves the size its resource name declares when
/// its first message arrives and gives it back when it ends, however it ends; one that would
/// pass a limit is refused RESOURCE_EXHAUSTED naming the limit, before anything is written,
/// while other clients' uploads go on; one larger than a limit on its own is INVALID_ARGUMENT.
/// So a client cannot hold more than its share of the disk's temporary space, however many
/// streams it opens.
///
/// Thread-safe.

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include <gorego/core/status.hpp>

namespace gorego::reapi {

class UploadBudget {
 public:
  UploadBudget(std::uint64_t per_connection, std::uint64_t overall)
      : per_connection_(per_connection), overall_(overall) {}

  /// Reserves `bytes` for an upload on connection `peer`.
  [[nodiscard]] Status reserve(const std::string& peer, std::uint64_t bytes) {
    // One that could never fit is the client's problem, not a busy server's.
    if (bytes > per_connection_ || bytes > overall_) {
      return error(Code::kInvalidArgument, "an upload of {} bytes is larger than {} ({} bytes)", bytes,
                   bytes > per_connection_ ? "server.max_upload_bytes_per_connection" : "server.max_upload_bytes",
                   bytes > per_connection_ ? per_connection_ : overall_);
    }
    std::lock_guard lock(mu_);
    if (total_ + bytes > overall_) {
      ++refused_;
      return error(Code::kResourceExhausted,
                   "uploads of {} bytes are in flight; this one of {} bytes would pass server.max_upload_bytes ({}); "
                   "retry later",
                   total_, bytes, overall_);
    }
    std::uint64_t& mine = by_peer_[peer];
    if (mine + bytes > per_connection_) {
      if (mine == 0) by_peer_.erase(peer);
      ++refused_;
      return error(Code::kResourceExhausted,
                   "connection {} has uploads of {} bytes in flight; this one of {} bytes would pass "
                   "server.max_upload_bytes_per_connection ({})",
                   peer, mine, bytes, per_connection_);
    }
    mine += bytes;
    total_ += bytes;
    return {};
  }

  void release(const std::string& peer, std::uint64_t bytes) {
    std::lock_guard lock(mu_);
    total_ -= std::min(total_, bytes);
    const auto it = by_peer_.find(peer);
    if (it == by_peer_.end()) return;
    it->second -= std::min(it->second, bytes);
    if (it->second == 0) by_peer_.erase(it);
  }

  [[nodiscard]] std::uint64_t in_flight() const {
    std::lock_guard lock(mu_);
    return total_;
  }
  [[nodiscard]] std::uint64_t refused() const {
    std::lock_guard lock(mu_);
    return refused_;
  }

 private:
  const std::uint64_t per_connection_, overall_;
  mutable std::mutex mu_;
  std::uint64_t total_ = 0, refused_ = 0;
  std::unordered_map<std::string, std::uint64_t> by_peer_;
};

}  // namespace gorego::reapi
