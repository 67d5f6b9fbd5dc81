#pragma once
/// MemoryClient: an in-memory RemoteClient for unit tests of ProxyStore's remote tier.
/// An upstream made of a MemoryStore, with call counters and injectable faults
/// (unavailable, wrong bytes, a gate that holds reads until released). Calls complete
/// before they return, except reads while the gate is closed: those are parked (no thread
/// waits) and complete, on the thread that opens the gate, when it opens.

#include <atomic>
#include <deque>
#include <functional>
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

  /// While closed, reads are held (so tests can pile up concurrent misses).
  void close_gate() {
    std::lock_guard lock(mu_);
    gate_open_ = false;
  }
  /// Opens the gate and completes the held reads on this thread.
  void open_gate() {
    std::deque<std::function<void()>> held;
    {
      std::lock_guard lock(mu_);
      gate_open_ = true;
      held.swap(held_);
    }
    for (auto& f : held) f();
  }
  /// Reads held at the gate now.
  [[nodiscard]] std::size_t held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }

  [[nodiscard]] std::string_view target() const { return "memory://"; }
  [[nodiscard]] std::uint64_t max_batch_bytes() const { return 64 << 10; }

  void find_missing(std::span<const Digest> ds, const Callback<Result<std::vector<Digest>>>& done) {
    if (Status s = check(); !s.ok()) return done(s);
    std::vector<Digest> out;
    for (const Digest& d : ds) {
      if (!d.empty_blob() && !upstream.stat({d, Tree::kCas})) out.push_back(d);
    }
    done(std::move(out));
  }

  void get(const Digest& d, Callback<Result<std::string>> done) {
    ++reads;
    at_gate([this, d, done = std::move(done)] { done(fetch(d)); });
  }

  void read(const Digest& d, std::uint64_t offset, AsyncSink sink, Callback<Status> done) {
    ++reads;
    at_gate([this, d, offset, sink = std::move(sink), done = std::move(done)] {
      auto r = fetch(d);
      if (!r) return done(r.error());
      auto all = std::make_shared<std::string>(std::move(*r));
      send_from(all, offset, sink, done);
    });
  }

  void put(const Digest& d, std::string_view data, const Callback<Status>& done) {
    ++writes;
    if (Status s = check(); !s.ok()) return done(s);
    done(upstream.put(d, data));
  }

  void write(const Digest& d, AsyncSource source, Callback<Status> done) {
    ++writes;
    if (Status s = check(); !s.ok()) return done(s);
    pull(d, std::move(source), std::make_shared<std::string>(), std::move(done));
  }

  void get_action(const Digest& d, const Callback<Result<std::string>>& done) {
    if (Status s = check(); !s.ok()) return done(s);
    done(upstream.get_action(d));
  }

  void put_action(const Digest& d, std::string_view bytes, const Callback<Status>& done) {
    ++action_writes;
    if (Status s = check(); !s.ok()) return done(s);
    done(upstream.put_action(d, bytes));
  }

 private:
  Status check() const {
    if (unavailable) return error(Code::kUnavailable, "memory upstream is down");
    return {};
  }

  Result<std::string> fetch(const Digest& d) {
    GOREGO_RETURN_IF_ERROR(check());
    auto r = upstream.get(d);
    if (r && corrupt && !r->empty()) (*r)[0] ^= 1;
    return r;
  }

  void at_gate(std::function<void()> f) {
    {
      std::lock_guard lock(mu_);
      if (!gate_open_) {
        held_.push_back(std::move(f));
        return;
      }
    }
    f();
  }

  /// Hands `all` from `offset` to `sink` in 4 KiB chunks, each after the previous `next`.
  static void send_from(const std::shared_ptr<std::string>& all, std::uint64_t offset, const AsyncSink& sink,
                        const Callback<Status>& done) {
    if (offset >= all->size()) return done(Status{});
    const std::size_t n = std::min<std::size_t>(4096, all->size() - offset);
    sink(all->substr(offset, n), [all, offset, n, sink, done](Status s) {
      if (!s.ok()) return done(s);
      send_from(all, offset + n, sink, done);
    });
  }

  /// Asks `source` for the blob's bytes until it answers empty, then stores them.
  void pull(const Digest& d, AsyncSource source, std::shared_ptr<std::string> data, Callback<Status> done) {
    const std::uint64_t at = data->size();
    source(at, 8192, [this, d, source, data, done](Result<std::string> got) {
      if (!got) return done(got.error());
      if (got->empty()) return done(upstream.put(d, *data));
      data->append(*got);
      pull(d, source, data, done);
    });
  }

  std::mutex mu_;
  bool gate_open_ = true;
  std::deque<std::function<void()>> held_;
};
static_assert(RemoteClient<MemoryClient>);

}  // namespace gorego::testing
