#pragma once
/// MemoryStore: a StorageBackend that keeps every object in RAM. For unit tests of the
/// framework and for benchmarks that want no disk in the picture.

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <gorego/concepts/storage_backend.hpp>
#include <gorego/hash/content_hash.hpp>
#include <gorego/hash/sha256.hpp>

namespace gorego {

/// Thread-safe in-memory backend. Reads share the stored string; nothing is copied until a
/// reader copies out.
class MemoryStore {
 public:
  static constexpr std::string_view kName = "memory";

  struct Options {};

  explicit MemoryStore(Options = {}) {}

  class Reader {
   public:
    Reader(std::shared_ptr<const std::string> data, std::uint64_t offset)
        : data_(std::move(data)), pos_(offset) {}
    Result<std::size_t> read(std::span<char> buf) {
      const std::size_t n = std::min<std::uint64_t>(buf.size(), remaining());
      std::memcpy(buf.data(), data_->data() + pos_, n);
      pos_ += n;
      return n;
    }
    [[nodiscard]] std::uint64_t remaining() const { return data_->size() - pos_; }

   private:
    std::shared_ptr<const std::string> data_;
    std::uint64_t pos_;
  };

  class Writer {
   public:
    Writer(MemoryStore* owner, const Digest& d) : owner_(owner), digest_(d) {}
    Status append(std::string_view data) {
      if (buf_.size() + data.size() > static_cast<std::uint64_t>(digest_.size)) {
        return error(Code::kInvalidArgument, "{} bytes written exceed the digest size of blob {}",
                     buf_.size() + data.size(), digest_);
      }
      buf_.append(data);
      return {};
    }
    Status commit() { return owner_->put(digest_, buf_); }
    [[nodiscard]] std::uint64_t written() const { return buf_.size(); }

   private:
    MemoryStore* owner_;
    Digest digest_;
    std::string buf_;
  };

  Result<std::string> get(const Digest& d) {
    auto e = find({d, Tree::kCas});
    if (!e) return error(Code::kNotFound, "blob {} not found", d);
    return std::string(*e);
  }

  Status put(const Digest& d, std::string_view data) {
    GOREGO_RETURN_IF_ERROR(verify_blob(d, data));
    store({d, Tree::kCas}, std::string(data));
    return {};
  }

  Result<Reader> open_read(const Digest& d, std::uint64_t offset) {
    auto e = find({d, Tree::kCas});
    if (!e) return error(Code::kNotFound, "blob {} not found", d);
    if (offset > e->size()) {
      return error(Code::kOutOfRange, "read offset {} is past the end of blob {}", offset, d);
    }
    return Reader(std::move(e), offset);
  }

  Result<Writer> open_write(const Digest& d) { return Writer(this, d); }

  Result<std::string> get_action(const Digest& d) {
    auto e = find({d, Tree::kAc});
    if (!e) return error(Code::kNotFound, "action {} not in the action cache", d);
    return std::string(*e);
  }

  Status put_action(const Digest& d, std::string_view bytes) {
    store({d, Tree::kAc}, std::string(bytes));
    return {};
  }

  std::optional<std::uint64_t> stat(const ObjectKey& k) {
    std::shared_lock lock(mu_);
    auto it = map_.find(k);
    if (it == map_.end()) return std::nullopt;
    return it->second.data->size();
  }

  void remove(const ObjectKey& k) {
    std::unique_lock lock(mu_);
    map_.erase(k);
  }

  template <class F>
  void for_each_entry(F&& fn) {
    std::vector<std::tuple<ObjectKey, std::uint64_t, std::int64_t>> snapshot;
    {
      std::shared_lock lock(mu_);
      snapshot.reserve(map_.size());
      for (const auto& [k, e] : map_) {
        snapshot.emplace_back(k, e.data->size(), e.atime->load(std::memory_order_relaxed));
      }
    }
    for (const auto& [k, n, t] : snapshot) fn(k, n, t);
  }

  [[nodiscard]] std::uint64_t footprint(std::uint64_t bytes) const { return bytes; }

 private:
  struct Entry {
    std::shared_ptr<const std::string> data;
    std::unique_ptr<std::atomic<std::int64_t>> atime;
  };

  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  std::shared_ptr<const std::string> find(const ObjectKey& k) {
    std::shared_lock lock(mu_);
    auto it = map_.find(k);
    if (it == map_.end()) return nullptr;
    it->second.atime->store(now_ns(), std::memory_order_relaxed);
    return it->second.data;
  }

  void store(const ObjectKey& k, std::string data) {
    auto p = std::make_shared<const std::string>(std::move(data));
    std::unique_lock lock(mu_);
    auto& e = map_[k];
    e.data = std::move(p);
    if (!e.atime) e.atime = std::make_unique<std::atomic<std::int64_t>>();
    e.atime->store(now_ns(), std::memory_order_relaxed);
  }

  std::shared_mutex mu_;
  std::unordered_map<ObjectKey, Entry> map_;
};
static_assert(StorageBackend<MemoryStore>);

}  // namespace gorego
