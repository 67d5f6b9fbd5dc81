#pragma once
/// File-descriptor helpers shared by the disk backends: an owning `Fd`, error text, and
/// whole writes that retry short writes and EINTR. A full disk is RESOURCE_EXHAUSTED.

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include <gorego/core/status.hpp>

namespace gorego::detail {

/// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  [[nodiscard]] int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

inline std::string errno_text(int e) { return std::strerror(e); }

/// The code for a failed write: RESOURCE_EXHAUSTED for a full disk or quota.
inline Code write_error_code(int e) {
  return (e == ENOSPC || e == EDQUOT) ? Code::kResourceExhausted : Code::kInternal;
}

/// What `bytes` of content occupy on a filesystem of `block_size` blocks: whole blocks, at
/// least one.
inline std::uint64_t block_footprint(std::uint64_t bytes, std::uint64_t block_size) {
  return std::max<std::uint64_t>(1, (bytes + block_size - 1) / block_size) * block_size;
}

/// Writes all of `data` at the current position, retrying short writes and EINTR.
inline Status write_all(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return error(write_error_code(errno), "writing {}: {}", what, errno_text(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

/// Writes all of `data` at `offset`, retrying short writes and EINTR.
inline Status pwrite_all(int fd, std::string_view data, std::uint64_t offset,
                         const std::string& what) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return error(write_error_code(errno), "writing {}: {}", what, errno_text(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

/// Reads exactly `out.size()` bytes at `offset`; false on an error or a short file.
inline bool pread_exact(int fd, std::string& out, std::uint64_t offset) {
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n =
        ::pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace gorego::detail
