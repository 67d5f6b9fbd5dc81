#pragma once
/// MemoryClient: an in-memory RemoteClient for unit tests of ProxyStore's remote tier.
/// An upstream made of a MemoryStore, with call counters and injectable faults
/// (unavailable, wrong bytes, a gate that holds reads until released).

#include <atomic>
#include <condition_variable>
#include <mutex>

#include <gorego/concepts/remote_client.hpp>
#include <gorego/store/memory_store.hpp>

namespace gorego::testing {

class MemoryClient {
 public:
  static constexpr std::string_view kName = "memory";

  MemoryStore upstream;
  std::atomic<int> reads{0};         ///< get + read calls
  std::atomic<int> writes{0};        ///< put + write calls
  std::atomic<int> action_writes{0};
  std::atomic<bool> unavailable{false};
  std::atomic<bool> corrupt{false};  ///< flip one byte of everything read

  /// While closed, reads wait (so tests can pile up concurrent misses).
  void close_gate() {
    std::lock_guard lock(mu_);
    gate_open_ = false;
  }
  void open_gate() {
    {
      std::lock_guard lock(mu_);
      gate_open_ = true;
    }
    cv_.notify_all();
  }

  [[nodiscard]] std::string_view target() const { return "memory://"; }
  [[nodiscard]] std::uint64_t max_batch_bytes() const { return 64 << 10; }

  Result<std::vector<Digest>> find_missing(std::span<const Digest> ds) {
    GOREGO_RETURN_IF_ERROR(check());
    std::vector<Digest> out;
    for (const Digest& d : ds) {
      if (!d.empty_blob() && !upstream.stat({d, Tree::kCas})) out.push_back(d);
    }
    return out;
  }

  Result<std::string> get(const Digest& d) {
    ++reads;
    wait_gate();
    GOREGO_RETURN_IF_ERROR(check());
    auto r = upstream.get(d);
    if (r && corrupt && !r->empty()) (*r)[0] ^= 1;
    return r;
  }

  Status read(const Digest& d, std::uint64_t offset, const ChunkSink& sink) {
    auto r = get(d);
    if (!r) return r.error();
    const std::string_view all = std::string_view(*r).substr(offset);
    for (std::size_t off = 0; off < all.size(); off += 4096) GOREGO_RETURN_IF_ERROR(sink(all.substr(off, 4096)));
    return {};
  }

  Status put(const Digest& d, std::string_view data) {
    ++writes;
    GOREGO_RETURN_IF_ERROR(check());
    return upstream.put(d, data);
  }

  Status write(const Digest& d, const SourceFactory& open) {
    ++writes;
    GOREGO_RETURN_IF_ERROR(check());
    auto source = open(0);
    if (!source) return source.error();
    std::string data;
    std::array<char, 8192> buf{};
    while (true) {
      auto n = (*source)(buf);
      if (!n) return n.error();
      if (*n == 0) break;
      data.append(buf.data(), *n);
    }
    return upstream.put(d, data);
  }

  Result<std::string> get_action(const Digest& d) {
    GOREGO_RETURN_IF_ERROR(check());
    return upstream.get_action(d);
  }

  Status put_action(const Digest& d, std::string_view bytes) {
    ++action_writes;
    GOREGO_RETURN_IF_ERROR(check());
    return upstream.put_action(d, bytes);
  }

 private:
  Status check() const {
    if (unavailable) return error(Code::kUnavailable, "memory upstream is down");
    return {};
  }
  void wait_gate() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return gate_open_; });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool gate_open_ = true;
};
static_assert(RemoteClient<MemoryClient>);

}  // namespace gorego::testing
