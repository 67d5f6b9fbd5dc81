#pragma once
/// TempDir: a fresh directory under the system temp dir, removed with its contents on
/// destruction. For tests and benchmarks.

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

#include <fmt/format.h>

namespace gorego::testing {

class TempDir {
 public:
  explicit TempDir(std::string_view tag = "gorego") {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("{}-{}-{}", tag, ::getpid(), counter.fetch_add(1));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// Temporary upload files (".tmp-*", ShardedDisk's uploads in progress) anywhere under
/// the data directory `root`.
inline std::size_t upload_leftovers(const std::filesystem::path& root) {
  std::size_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root, ec)) {
    if (e.path().filename().string().starts_with(".tmp-")) ++n;
  }
  return n;
}

/// Deterministic test content: `size` bytes derived from `seed`.
inline std::string make_blob(std::uint64_t seed, std::size_t size) {
  std::string out(size, '\0');
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (std::size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<char>(x);
  }
  return out;
}

}  // namespace gorego::testing
