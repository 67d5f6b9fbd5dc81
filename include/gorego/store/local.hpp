#pragma once
/// Local<Backend, Eviction>: the local tier. A size-bounded store that keeps an in-memory
/// Index (key → size, last access, verified) in front of a StorageBackend and lets an
/// EvictionPolicy choose what to drop when a write needs room.
///
/// Start-up: `start()` returns at once; the index is loaded by a background walk of the
/// backend. Until the walk is done an index miss falls back to asking the backend, so
/// answers are correct from the first request. The size limit is enforced from the moment
/// the walk completes (writes before that are counted, and eviction catches up).
/// Backends with a `snapshot_path()` get the index written there at a clean `stop()`; the
/// next `start()` reads it (and deletes it) instead of waiting for the walk, then walks in
/// the background to add what the snapshot lacks and drop what is no longer on disk.
/// Integrity: a blob the backend reports missing or corrupt is dropped from the index
/// (and, when corrupt, from the backend) and answered as a miss. Reads: with
/// `VerifyReads::kFirst` the backend re-hashes a blob on its first full read after start
/// (bytes found on disk), never one this process verified when it was written or read
/// before; `kAlways` re-hashes every full read from the backend. Backends without the
/// choice decide alone. Small blobs verified by this process (uploaded, or read in full)
/// are also kept in a BlobCache (`Options::memory_cache_bytes`; none with `kAlways`);
/// `get` and `open_read` serve a blob the index holds from there without the backend.
/// Thread safety: every public member may be called concurrently.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <random>
#include <vector>

#include <gorego/concepts/blob_store.hpp>
#include <gorego/concepts/eviction_policy.hpp>
#include <gorego/concepts/instrumentation.hpp>
#include <gorego/concepts/storage_backend.hpp>
#include <gorego/core/log.hpp>
#include <gorego/core/name.hpp>
#include <gorego/eviction/lru.hpp>
#include <gorego/eviction/sampled_lru.hpp>
#include <gorego/hash/content_hash.hpp>
#include <gorego/hash/sha256.hpp>
#include <gorego/store/blob_cache.hpp>
#include <gorego/store/index.hpp>

namespace gorego {

/// Which full reads the backend re-hashes (see the file comment).
enum class VerifyReads : std::uint8_t { kFirst, kAlways };

template <StorageBackend Backend, EvictionPolicy Eviction = SampledLru>
class Local {
 public:
  static constexpr std::string_view kLocal = "local";
  static constexpr std::string_view kName =
      detail::JoinNames<kLocal, detail::kOpen, Backend::kName, detail::kComma, Eviction::kName,
                        detail::kClose>::value;

  struct Options {
    std::uint64_t max_bytes = std::uint64_t{10} << 30;  ///< limit on backend footprint
    VerifyReads verify_reads = VerifyReads::kFirst;
    /// ActionCache entries up to 64 KiB are also kept in memory, up to this many bytes.
    std::uint64_t ac_memory_bytes = std::uint64_t{64} << 20;
    /// Verified CAS blobs up to `memory_cache_max_blob` bytes are kept in memory, up to this
    /// many bytes in all (0: none).
    std::uint64_t memory_cache_bytes = std::uint64_t{256} << 20;
    std::uint64_t memory_cache_max_blob = std::uint64_t{64} << 10;
  };

  Local(typename Backend::Options backend, typename Eviction::Options eviction, Options o)
      : backend_(std::move(backend)),
        eviction_(std::move(eviction)),
        opt_(o),
        index_(Index::Options{.ac_memory_bytes = o.ac_memory_bytes}),
        // `kAlways` promises a re-hash of the disk's bytes on every read: no memory cache.
        cache_(BlobCache::Options{.capacity_bytes = o.verify_reads == VerifyReads::kAlways ? 0 : o.memory_cache_bytes,
                                  .max_entry_bytes = o.memory_cache_max_blob}) {}
  Local(typename Backend::Options backend, Options o)
      : Local(std::move(backend), typename Eviction::Options{}, o) {}
  Local(const Local&) = delete;
  Local& operator=(const Local&) = delete;
  ~Local() { stop(); }

  /// Prepares the backend and starts loading the index in the background.
  Status start() {
    if constexpr (requires { backend_.init(); }) GOREGO_RETURN_IF_ERROR(backend_.init());
    started_ = true;
    const bool from_snapshot = load_snapshot();
    if (from_snapshot) {
      std::lock_guard lock(wake_mu_);
      loaded_ = true;
    }
    loader_ = std::jthread([this, from_snapshot](std::stop_token st) { load(st, from_snapshot); });
    if constexpr (requires { eviction_.scan_interval(); }) {
      janitor_ = std::jthread([this](std::stop_token st) { janitor_loop(st); });
    }
    return {};
  }

  /// Stops background work and writes the index snapshot; called by the destructor.
  void stop() {
    for (std::jthread* t : {&janitor_, &loader_}) {
      if (t->joinable()) {
        t->request_stop();
        wake_.notify_all();
        t->join();
      }
    }
    if (std::exchange(started_, false)) save_snapshot();
  }

  /// Blocks until the background walk is over: the index is loaded (after a start from a
  /// snapshot, checked against the backend) and the eviction pass that follows it has run
  /// (tests: nothing in the background evicts after this, short of new writes).
  void wait_walked() {
    std::unique_lock lock(wake_mu_);
    wake_.wait(lock, [&] { return walked_; });
  }

  /// Blocks until the background index load is complete (tests, benchmarks).
  void wait_loaded() {
    std::unique_lock lock(wake_mu_);
    wake_.wait(lock, [&] { return loaded_.load(); });
  }

  [[nodiscard]] bool loaded() const { return loaded_.load(); }
  [[nodiscard]] std::uint64_t usage_bytes() const { return usage_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t index_size() const { return index_.size(); }
  [[nodiscard]] std::uint64_t max_bytes() const { return opt_.max_bytes; }
  [[nodiscard]] const BlobCache& memory_cache() const { return cache_; }
  /// Memory of the index's tables and of the ActionCache entries it holds.
  [[nodiscard]] std::uint64_t index_memory_bytes() const {
    return index_.memory_bytes() + index_.held_action_bytes();
  }
  Backend& backend() { return backend_; }

  /// Called after every eviction pass (and every janitor run, even one that frees
  /// nothing), on the thread that ran it. Set before start().
  void set_eviction_observer(std::function<void(const EvictionRun&)> f) { on_eviction_ = std::move(f); }

  // ---- BlobStore -------------------------------------------------------------------

  class Reader {
   public:
    Reader() = default;  // the empty blob
    Reader(typename Backend::Reader inner, Local* owner, ObjectKey key, bool verifying)
        : inner_(std::move(inner)), owner_(owner), key_(key), verifying_(verifying) {}
    /// Reads held bytes from `offset` on.
    Reader(BlobCache::Bytes held, std::uint64_t offset) : held_(std::move(held)), pos_(offset) {}
    Result<std::size_t> read(std::span<char> buf) {
      if (held_) {
        const std::size_t n = std::min<std::size_t>(buf.size(), held_->size() - pos_);
        std::memcpy(buf.data(), held_->data() + pos_, n);
        pos_ += n;
        return n;
      }
      if (!inner_) return std::size_t{0};
      auto r = inner_->read(buf);
      if (!r) {
        if (r.error().code() == Code::kDataLoss) owner_->drop_corrupt(key_, r.error());
      } else if (verifying_ && inner_->remaining() == 0) {
        verifying_ = false;  // the backend checked the hash on this last read
        owner_->index_.set_verified(key_.digest);
      }
      return r;
    }
    [[nodiscard]] std::uint64_t remaining() const {
      if (held_) return held_->size() - pos_;
      return inner_ ? inner_->remaining() : 0;
    }
    /// `read` without waiting for the disk or hashing: nullopt, with nothing consumed, when
    /// only `read` can go on (the backend cannot tell, the bytes are not all cached, or the
    /// blob is being verified).
    std::optional<Result<std::size_t>> read_cached(std::span<char> buf) {
      if (held_) return read(buf);
      if constexpr (requires(typename Backend::Reader& r) { r.read_cached(buf); }) {
        if (inner_ && !verifying_) return inner_->read_cached(buf);
      }
      return std::nullopt;
    }

   private:
    BlobCache::Bytes held_;
    std::uint64_t pos_ = 0;
    std::optional<typename Backend::Reader> inner_;
    Local* owner_ = nullptr;
    ObjectKey key_;
    bool verifying_ = false;
  };

  class Writer {
   public:
    Writer() = default;  // the empty blob
    /// Takes over the reservation and the `begin_write` registration of `key`.
    Writer(typename Backend::Writer inner, Local* owner, ObjectKey key, std::uint64_t reserved)
        : inner_(std::move(inner)), owner_(owner), key_(key), reserved_(reserved), writing_(true) {}
    Writer(Writer&& o) noexcept { *this = std::move(o); }
    Writer& operator=(Writer&& o) noexcept {
      if (this != &o) {
        release();
        inner_ = std::move(o.inner_);
        o.inner_.reset();
        owner_ = o.owner_;
        key_ = o.key_;
        reserved_ = std::exchange(o.reserved_, 0);
        writing_ = std::exchange(o.writing_, false);
      }
      return *this;
    }
    ~Writer() { release(); }

    Status append(std::string_view data) {
      if (!inner_) {
        if (data.empty()) return {};
        return error(Code::kInvalidArgument, "{} bytes written to the empty blob", data.size());
      }
      Status s = inner_->append(data);
      if (!s.ok()) return owner_->on_write_error(std::move(s), reserved_);
      return s;
    }
    Status commit() {
      if (!inner_) return {};
      if (Status s = inner_->commit(); !s.ok()) return owner_->on_write_error(std::move(s), reserved_);
      owner_->commit_index(key_, inner_->written(), std::exchange(reserved_, 0));
      if (std::exchange(writing_, false)) owner_->index_.end_write(key_);
      return {};
    }
    [[nodiscard]] std::uint64_t written() const { return inner_ ? inner_->written() : 0; }

   private:
    void release() {
      if (reserved_ != 0) owner_->unreserve(std::exchange(reserved_, 0));
      if (std::exchange(writing_, false)) owner_->index_.end_write(key_);
    }
    std::optional<typename Backend::Writer> inner_;
    Local* owner_ = nullptr;
    ObjectKey key_;
    std::uint64_t reserved_ = 0;
    bool writing_ = false;  // registered with Index::begin_write
  };

  bool contains(const Digest& d) { return d.empty_blob() || present({d, Tree::kCas}); }

  /// The size of the CAS blob with hash `h` under `f`, when the index holds one (the empty
  /// blob always): for protocols that name blobs by hash alone (HTTP). Memory only.
  [[nodiscard]] std::optional<std::int64_t> size_of(const Hash256& h, DigestFunction f) const {
    if (h == empty_hash(f)) return 0;
    return index_.cas_size(h, f);
  }

  std::vector<Digest> find_missing(std::span<const Digest> ds) {
    std::vector<Digest> out;
    const std::uint64_t stamp = Index::now();  // one access time for the batch: a clock read per digest was 3 % of the CPU
    for (const Digest& d : ds) {
      if (!d.empty_blob() && !present({d, Tree::kCas}, stamp)) out.push_back(d);
    }
    return out;
  }

  Result<std::string> get(const Digest& d) {
    if (d.empty_blob()) return std::string();
    const ObjectKey key{d, Tree::kCas};
    const auto hit = present(key);
    if (!hit) return error(Code::kNotFound, "blob {} not found", d);
    if (auto held = from_memory(key)) return std::string(*held);
    return read_backend(key, *hit);
  }

  /// The bytes of `d` when memory alone holds them (index loaded, blob in the memory
  /// cache); nullopt when the answer needs the backend or is a miss.
  std::optional<std::string> blob_in_memory(const Digest& d) {
    if (d.empty_blob()) return std::string();
    if (!loaded_ || !cache_.admits(static_cast<std::uint64_t>(d.size))) return std::nullopt;
    const ObjectKey key{d, Tree::kCas};
    if (!present(key)) return std::nullopt;
    auto held = from_memory(key, /*count=*/false);  // the caller reports what it serves
    if (!held) return std::nullopt;
    return std::string(*held);
  }

  /// Counts `n` reads served from `blob_in_memory` as memory-cache hits.
  void count_memory_hits(std::uint64_t n) { cache_.count_hits(n); }

  Status put(const Digest& d, std::string_view data) {
    if (d.empty_blob() && data.empty()) return {};
    const ObjectKey key{d, Tree::kCas};
    if (index_.contains(key)) return verify_blob(d, data);  // a client sending wrong bytes must hear it
    const std::uint64_t fp = backend_.footprint(data.size());
    GOREGO_RETURN_IF_ERROR(reserve(fp, d));
    const WriteScope writing(index_, key);
    Status s = backend_.put(d, data);
    if (!s.ok() && on_write_error(s, fp).code() == Code::kResourceExhausted) s = backend_.put(d, data);  // once, after room was made
    if (!s.ok()) {
      unreserve(fp);
      return on_write_error(std::move(s), fp, /*evict=*/false);
    }
    commit_index(key, data.size(), fp);
    cache_.put(d, data);
    return {};
  }

  /// Stores several blobs as `put` does; a backend that can make a batch durable at once
  /// (ShardedDisk: one group sync) does so. `out[i]` is the result for `blobs[i]`.
  std::vector<Status> put_batch(std::span<const BlobWrite> blobs) {
    std::vector<Status> out(blobs.size());
    std::vector<BlobWrite> todo;
    std::vector<std::size_t> where;
    std::vector<std::uint64_t> fps;
    for (std::size_t i = 0; i < blobs.size(); ++i) {
      const BlobWrite& b = blobs[i];
      if (b.digest.empty_blob() && b.data.empty()) continue;
      if (index_.contains({b.digest, Tree::kCas})) {
        out[i] = verify_blob(b.digest, b.data);
        continue;
      }
      const std::uint64_t fp = backend_.footprint(b.data.size());
      if (out[i] = reserve(fp, b.digest); !out[i].ok()) continue;
      todo.push_back(b);
      where.push_back(i);
      fps.push_back(fp);
    }
    std::vector<Status> res(todo.size());
    for (const BlobWrite& b : todo) index_.begin_write({b.digest, Tree::kCas});
    if constexpr (requires(std::span<const BlobWrite> in, std::span<Status> st) { backend_.put_batch(in, st); }) {
      backend_.put_batch(todo, res);
    } else {
      for (std::size_t j = 0; j < todo.size(); ++j) res[j] = backend_.put(todo[j].digest, todo[j].data);
    }
    for (std::size_t j = 0; j < todo.size(); ++j) {
      if (res[j].ok()) {
        commit_index({todo[j].digest, Tree::kCas}, todo[j].data.size(), fps[j]);
        cache_.put(todo[j].digest, todo[j].data);
      } else {
        unreserve(fps[j]);
        res[j] = on_write_error(std::move(res[j]), fps[j]);
      }
      index_.end_write({todo[j].digest, Tree::kCas});
      out[where[j]] = std::move(res[j]);
    }
    return out;
  }

  Result<Reader> open_read(const Digest& d, std::uint64_t offset) {
    if (d.empty_blob()) {
      if (offset > 0) return error(Code::kOutOfRange, "read offset {} is past the end of blob {}", offset, d);
      return Reader();
    }
    const ObjectKey key{d, Tree::kCas};
    const auto hit = present(key);
    if (!hit) return error(Code::kNotFound, "blob {} not found", d);
    if (offset > static_cast<std::uint64_t>(d.size)) {
      return error(Code::kOutOfRange, "read offset {} is past the end of blob {}", offset, d);
    }
    if (cache_.admits(static_cast<std::uint64_t>(d.size))) {  // small: whole, from memory
      if (auto held = from_memory(key)) return Reader(std::move(held), offset);
      if (offset == 0) {
        auto r = read_backend(key, *hit);
        if (!r) return r.error();
        return Reader(std::make_shared<const std::string>(std::move(*r)), 0);
      }
    }
    const bool verify = kBackendVerifies && offset == 0 && must_verify(*hit);
    auto r = [&] {
      if constexpr (kBackendVerifies) return backend_.open_read(d, offset, verify);
      else return backend_.open_read(d, offset);
    }();
    if (!r) {
      if (r.error().code() == Code::kOutOfRange) return r.error();
      return on_read_error(key, r.error());
    }
    after_read(key);
    return Reader(std::move(*r), this, key, verify);
  }

  Result<Writer> open_write(const Digest& d) {
    if (d.empty_blob()) return Writer();
    const std::uint64_t fp = backend_.footprint(static_cast<std::uint64_t>(d.size));
    GOREGO_RETURN_IF_ERROR(reserve(fp, d));
    const ObjectKey key{d, Tree::kCas};
    index_.begin_write(key);
    auto w = backend_.open_write(d);
    if (!w) {
      index_.end_write(key);
      unreserve(fp);
      return w.error();
    }
    return Writer(std::move(*w), this, key, fp);
  }

  // ---- ActionStore -----------------------------------------------------------------

  Result<std::string> get_action(const Digest& d) {
    const ObjectKey key{d, Tree::kAc};
    const auto hit = present(key);
    if (!hit) return error(Code::kNotFound, "action {} not in the action cache", d);
    if (hit->bytes) return std::string(*hit->bytes);
    auto r = backend_.get_action(d);
    if (!r) return on_read_error(key, r.error());
    index_.hold_action(d, *r);
    after_read(key);
    return r;
  }

  /// The ActionCache entry for `d` when memory alone can answer (index loaded; a miss, or a
  /// hit whose bytes are held); nullopt when the answer needs the disk.
  std::optional<Result<std::string>> action_in_memory(const Digest& d) {
    if (!loaded_) return std::nullopt;  // present() would stat() the disk on a miss
    const auto hit = present({d, Tree::kAc});
    if (!hit) return Result<std::string>(error(Code::kNotFound, "action {} not in the action cache", d));
    if (!hit->bytes) return std::nullopt;
    return Result<std::string>(std::string(*hit->bytes));
  }

  Status put_action(const Digest& d, std::string_view bytes) {
    const ObjectKey key{d, Tree::kAc};
    const std::uint64_t fp = backend_.footprint(bytes.size());
    GOREGO_RETURN_IF_ERROR(reserve(fp, d));
    const WriteScope writing(index_, key);
    Status s = backend_.put_action(d, bytes);
    if (!s.ok() && on_write_error(s, fp).code() == Code::kResourceExhausted) s = backend_.put_action(d, bytes);
    if (!s.ok()) {
      unreserve(fp);
      return on_write_error(std::move(s), fp, /*evict=*/false);
    }
    commit_index(key, bytes.size(), fp, bytes);
    return {};
  }

  /// One eviction pass now: frees down to the policy's low watermark if above the limit
  /// or, for scanning policies, above their high watermark. Returns keys evicted.
  std::size_t maintain() { return maintain(EvictionRun::Trigger::kLimit); }

 private:
  std::size_t maintain(EvictionRun::Trigger trigger) {
    if (!loaded_) return 0;
    const std::uint64_t used = usage_bytes();
    const auto low = static_cast<std::uint64_t>(static_cast<double>(opt_.max_bytes) * low_watermark());
    const bool over = used > opt_.max_bytes || (periodic() && used > high_watermark_bytes());
    if (!over || used <= low) {
      if (trigger == EvictionRun::Trigger::kJanitor && on_eviction_) {
        const auto now = std::chrono::system_clock::now();
        on_eviction_({.trigger = trigger, .started = now, .finished = now});
      }
      return 0;
    }
    return evict(used - low, trigger);
  }

  static constexpr bool periodic() {
    return requires(Eviction& e) { e.scan_interval(); };
  }
  double low_watermark() const {
    if constexpr (requires { eviction_.low_watermark(); }) return eviction_.low_watermark();
    return 1.0;
  }
  std::uint64_t high_watermark_bytes() const {
    return opt_.max_bytes - (opt_.max_bytes - static_cast<std::uint64_t>(static_cast<double>(
                                                  opt_.max_bytes) * low_watermark())) / 2;
  }

  static constexpr bool kBackendVerifies = requires(Backend& b, const Digest& d) {
    { b.open_read(d, std::uint64_t{0}, true) } -> std::same_as<Result<typename Backend::Reader>>;
    { b.get(d, true) } -> std::same_as<Result<std::string>>;
  };

  [[nodiscard]] bool must_verify(const Index::Hit& hit) const {
    return opt_.verify_reads == VerifyReads::kAlways || !hit.verified;
  }

  /// The memory cache's bytes of CAS blob `key`, recorded as a read; null when not held.
  /// `count`: whether the lookup counts in the cache's hits and misses.
  BlobCache::Bytes from_memory(const ObjectKey& key, bool count = true) {
    if (!cache_.admits(static_cast<std::uint64_t>(key.digest.size))) return nullptr;
    auto held = cache_.get(key.digest, count);
    if (held) after_read(key);
    return held;
  }

  /// Reads a whole CAS blob the index holds from the backend, verifying it as the read
  /// policy asks; verified bytes go to the memory cache.
  Result<std::string> read_backend(const ObjectKey& key, const Index::Hit& hit) {
    const bool verify = kBackendVerifies && must_verify(hit);
    Result<std::string> r = [&] {
      if constexpr (kBackendVerifies) return backend_.get(key.digest, verify);
      else return backend_.get(key.digest);
    }();
    if (!r) return on_read_error(key, r.error());
    if (verify) index_.set_verified(key.digest);
    if (verify || hit.verified) cache_.offer(key.digest, *r);
    after_read(key);
    return r;
  }

  /// Index lookup, recorded as an access; during the initial load a miss asks the backend.
  std::optional<Index::Hit> present(const ObjectKey& key, std::uint64_t stamp = Index::now()) {
    if (auto hit = index_.touch(key, stamp)) {
      eviction_.on_access(key);
      return hit;
    }
    if (loaded_) return std::nullopt;
    auto bytes = backend_.stat(key);
    if (!bytes) return std::nullopt;
    insert_if_absent(key, *bytes, stamp);
    return Index::Hit{false};
  }

  void after_read(const ObjectKey& key) {
    if constexpr (requires { eviction_.touch_on_read(); backend_.touch(key); }) {
      if (eviction_.touch_on_read()) backend_.touch(key);
    }
  }

  Status on_read_error(const ObjectKey& key, const Status& s) {
    if (s.code() == Code::kNotFound || s.code() == Code::kDataLoss) {
      if (s.code() == Code::kDataLoss) drop_corrupt(key, s);
      else drop(key);
      return error(Code::kNotFound, "{} {} not found ({})", key.tree == Tree::kCas ? "blob" : "action",
                   key.digest, s.message());
    }
    return s;
  }

  /// Forgets an object the backend no longer has (and, with `delete_file`, deletes its file
  /// unless a write of it is in progress).
  void drop(const ObjectKey& key, bool delete_file = false) {
    const auto bytes = index_.erase_and_delete(key, [&] {
      if (delete_file) backend_.remove(key);
    });
    if (bytes) usage_.fetch_sub(backend_.footprint(*bytes));
    if (key.tree == Tree::kCas) cache_.erase(key.digest);
    eviction_.on_erase(key);
  }

  /// Forgets and deletes an object found not to match its digest.
  void drop_corrupt(const ObjectKey& key, const Status& why) {
    log::warn("dropped a corrupt object", {{"digest", fmt::format("{}", key.digest)}, {"error", why.message()}});
    drop(key, /*delete_file=*/true);
  }

  /// Registers a write of one key with the index for its lifetime (see Index::begin_write).
  struct WriteScope {
    WriteScope(Index& i, const ObjectKey& k) : index(i), key(k) { index.begin_write(key); }
    ~WriteScope() { index.end_write(key); }
    WriteScope(const WriteScope&) = delete;
    WriteScope& operator=(const WriteScope&) = delete;
    Index& index;
    ObjectKey key;
  };

  /// Indexes an object found in the backend (not verified by this process).
  void insert_if_absent(const ObjectKey& key, std::uint64_t bytes, std::uint64_t stamp) {
    if (index_.insert(key, {.bytes = bytes, .stamp = stamp, .verified = false})) account_new(key, bytes);
  }

  /// Counts an object just added to the index (not through a reservation).
  void account_new(const ObjectKey& key, std::uint64_t bytes) {
    const std::uint64_t fp = backend_.footprint(bytes);
    usage_.fetch_add(fp);
    eviction_.on_insert(key, fp);
  }

  /// Records a published, verified object whose footprint `fp` was reserved.
  void commit_index(const ObjectKey& key, std::uint64_t bytes, std::uint64_t fp, std::string_view held = {}) {
    const auto replaced = index_.upsert(key, {.bytes = bytes, .stamp = Index::now(), .verified = true}, held);
    if (replaced) usage_.fetch_sub(backend_.footprint(*replaced));  // AC update, or a racing writer
    eviction_.on_insert(key, fp);
  }

  Status reserve(std::uint64_t fp, const Digest& d) {
    if (fp > opt_.max_bytes) {
      return error(Code::kResourceExhausted,
                   "blob {} needs {} bytes on disk, more than the cache limit of {} bytes", d, fp,
                   opt_.max_bytes);
    }
    for (int attempt = 0; attempt < 4; ++attempt) {
      std::uint64_t used = usage_.load();
      while (!loaded_ || used + fp <= opt_.max_bytes) {
        if (usage_.compare_exchange_weak(used, used + fp)) return {};
      }
      const auto low = static_cast<std::uint64_t>(static_cast<double>(opt_.max_bytes) * low_watermark());
      if (evict(used + fp - std::min(low, used + fp), EvictionRun::Trigger::kLimit) == 0 && attempt > 0) break;
    }
    return error(Code::kResourceExhausted,
                 "cache is full: storing blob {} needs {} bytes, {} of {} are in use by writes in "
                 "progress or recent objects",
                 d, fp, usage_bytes(), opt_.max_bytes);
  }

  void unreserve(std::uint64_t fp) { usage_.fetch_sub(fp); }

  /// A backend write failed with `s`. When the filesystem is full (RESOURCE_EXHAUSTED from
  /// ENOSPC or a quota, below the cache's own limit) and `evict`, makes room for the next
  /// writes: evicts twice the write's footprint or 2 % of the cache, whichever is more,
  /// so that a client's retry, or the caller's own, fits. Returns `s` with that said.
  Status on_write_error(Status s, std::uint64_t fp, bool evict_room = true) {
    if (s.code() != Code::kResourceExhausted || s.message().find("disk full") != std::string_view::npos) return s;
    std::size_t evicted = 0;
    if (evict_room && loaded_) {
      const std::uint64_t want = std::max<std::uint64_t>(2 * fp, usage_bytes() / 50);
      evicted = evict(want, EvictionRun::Trigger::kDiskFull);
    }
    if (should_warn_disk_full()) {
      log::warn("disk full: a write failed; evicting to make room",
                {{"error", s.message()}, {"evicted_objects", std::to_string(evicted)}});
    }
    return error(Code::kResourceExhausted, "disk full: {}; {} cached objects evicted to make room, retry", s.message(),
                 evicted);
  }

  bool should_warn_disk_full() {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_disk_full_warn_.load(std::memory_order_relaxed);
    if (now - last < std::chrono::nanoseconds(std::chrono::seconds(10)).count()) return false;
    return last_disk_full_warn_.compare_exchange_strong(last, now);
  }

  /// What a policy's `select_victims` sees: the backend's scan and the index.
  struct VictimSource {
    Local* self;
    /// The backend's scan, with each access time raised to the index's last access: the
    /// index sees uses that leave a file's atime alone (presence checks, memory-cache
    /// hits, relatime and noatime mounts).
    template <class F>
    void for_each_entry(F&& fn) {
      self->backend_.for_each_entry([&](const ObjectKey& k, std::uint64_t bytes, std::int64_t atime) {
        if (auto s = self->index_.stamp(k)) atime = std::max(atime, Index::wall_time_of_stamp(*s));
        fn(k, bytes, atime);
      });
    }
    template <class F>
    void for_each_indexed(F&& fn) {
      self->index_.for_each([&](IndexedObject o) {
        o.bytes = self->backend_.footprint(o.bytes);
        fn(o);
      });
    }
    [[nodiscard]] std::size_t indexed() const { return self->index_.size(); }
    void sample(std::size_t n, std::vector<IndexedObject>& out) {
      const std::size_t first = out.size();
      self->index_.sample(self->rng_, n, out);
      for (std::size_t i = first; i < out.size(); ++i) out[i].bytes = self->backend_.footprint(out[i].bytes);
    }
  };

  /// Removes victims worth at least `bytes`; returns how many objects were removed.
  std::size_t evict(std::uint64_t bytes, EvictionRun::Trigger trigger) {
    std::lock_guard evicting(evict_mu_);
    EvictionRun run{.trigger = trigger, .started = std::chrono::system_clock::now()};
    VictimSource source{this};
    const std::vector<ObjectKey> victims = eviction_.select_victims(bytes, source);
    for (const ObjectKey& k : victims) {
      // The file goes with the entry, under the index's lock, unless the same key is being
      // written right now: that writer's file, published or about to be, must stay.
      if (auto stored = index_.erase_and_delete(k, [&] { backend_.remove(k); })) {
        const std::uint64_t fp = backend_.footprint(*stored);
        usage_.fetch_sub(fp);
        run.bytes += fp;
      }
      if (k.tree == Tree::kCas) cache_.erase(k.digest);
    }
    run.objects = victims.size();
    run.finished = std::chrono::system_clock::now();
    if (on_eviction_) on_eviction_(run);
    if (log::enabled(log::Level::kDebug)) {
      log::debug("evicted", {{"policy", std::string(Eviction::kName)},
                             {"objects", std::to_string(victims.size())},
                             {"requested_bytes", std::to_string(bytes)}});
    }
    return victims.size();
  }

  void load(const std::stop_token& st, bool from_snapshot) {
    const auto started = std::chrono::steady_clock::now();
    struct Stopped {};
    std::size_t added = 0;
    try {
      backend_.for_each_entry([&](const ObjectKey& k, std::uint64_t bytes, std::int64_t atime) {
        if (st.stop_requested()) throw Stopped{};
        const std::uint64_t stamp = Index::stamp_of_wall_time(atime);
        if (!from_snapshot) return insert_if_absent(k, bytes, stamp);
        if (index_.mark_seen(k, {.bytes = bytes, .stamp = stamp, .verified = false})) {
          account_new(k, bytes);
          ++added;
        }
      });
    } catch (const Stopped&) {
      return;
    }
    std::size_t removed = 0;
    if (from_snapshot) {
      index_.sweep_unseen([&](const ObjectKey& k, std::uint64_t bytes) {
        usage_.fetch_sub(backend_.footprint(bytes));
        if (k.tree == Tree::kCas) cache_.erase(k.digest);
        eviction_.on_erase(k);
        ++removed;
      });
    }
    {
      std::lock_guard lock(wake_mu_);
      loaded_ = true;
    }
    wake_.notify_all();
    const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    log::info(from_snapshot ? "index checked against the disk" : "index loaded",
              {{"store", std::string(kName)},
               {"objects", std::to_string(index_size())},
               {"bytes", std::to_string(usage_bytes())},
               {"added", std::to_string(added)},
               {"removed", std::to_string(removed)},
               {"seconds", fmt::format("{:.3f}", seconds)}});
    maintain();  // the limit holds from here on
    {
      std::lock_guard lock(wake_mu_);
      walked_ = true;
    }
    wake_.notify_all();
  }

  // ---- index snapshot ---------------------------------------------------------------
  // File: "GOREGOIX", u32 version, u64 count, count records, SHA-256 of all before it.
  // Record: 32-byte hash, i64 digest size, u8 tree (low 4 bits) and digest function (high 4
  // bits; 0 is SHA-256, so version 1 files of older releases read the same), u64 stored
  // bytes, i64 last access (Unix ns). Integers in host byte order; a file that fails any
  // check is ignored.

  static constexpr std::string_view kSnapshotMagic = "GOREGOIX";
  static constexpr std::uint32_t kSnapshotVersion = 1;
  static constexpr std::size_t kSnapshotHeader = 8 + 4 + 8;
  static constexpr std::size_t kSnapshotRecord = 32 + 8 + 1 + 8 + 8;

  template <class T>
  static void put_raw(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  template <class T>
  static T get_raw(const char*& p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    p += sizeof v;
    return v;
  }

  void save_snapshot() {
    if constexpr (requires { backend_.snapshot_path(); }) {
      if (!loaded_) return;  // an incomplete index must not pass for a complete one
      const auto started = std::chrono::steady_clock::now();
      const std::filesystem::path path = backend_.snapshot_path();
      std::string buf;
      buf.reserve(kSnapshotHeader + index_.size() * kSnapshotRecord + 32);
      buf.append(kSnapshotMagic);
      put_raw(buf, kSnapshotVersion);
      put_raw(buf, std::uint64_t{0});  // count, patched below
      const auto wall_now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count();
      const std::uint64_t steady_now = Index::now();
      std::uint64_t count = 0;
      index_.for_each([&](const IndexedObject& o) {
        buf.append(reinterpret_cast<const char*>(o.key.digest.hash.data()), o.key.digest.hash.size());
        put_raw(buf, o.key.digest.size);
        put_raw(buf, static_cast<std::uint8_t>(static_cast<unsigned>(o.key.tree) |
                                               static_cast<unsigned>(o.key.digest.function) << 4));
        put_raw(buf, o.bytes);
        put_raw(buf, wall_now - static_cast<std::int64_t>(steady_now - std::min(o.stamp, steady_now)));
        ++count;
      });
      std::memcpy(buf.data() + 12, &count, sizeof count);
      const Hash256 sum = Sha256::digest_of(buf).hash;
      buf.append(reinterpret_cast<const char*>(sum.data()), sum.size());
      const std::filesystem::path tmp = path.string() + ".tmp";
      {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        f.write(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (!f.flush()) {
          log::warn("could not write the index snapshot", {{"path", tmp.string()}});
          return;
        }
      }
      std::error_code ec;
      std::filesystem::rename(tmp, path, ec);
      log::info("index snapshot written",
                {{"path", path.string()}, {"objects", std::to_string(count)},
                 {"seconds", fmt::format("{:.3f}", std::chrono::duration<double>(
                                                        std::chrono::steady_clock::now() - started).count())}});
    }
  }

  /// Loads the snapshot of the last clean stop, if there is a valid one, and deletes it
  /// (a crash later must not leave a stale one behind). Returns whether it was loaded.
  bool load_snapshot() {
    if constexpr (requires { backend_.snapshot_path(); }) {
      const std::filesystem::path path = backend_.snapshot_path();
      // Mapped, not read into the heap: the pages go back to the kernel when unmapped, so
      // the snapshot does not stay in the resident set.
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return false;
      struct stat st {};
      void* map = MAP_FAILED;
      if (::fstat(fd, &st) == 0 && st.st_size > 0) {
        map = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
      }
      ::close(fd);
      std::error_code ec;
      std::filesystem::remove(path, ec);
      if (map == MAP_FAILED) return false;
      const std::size_t mapped = static_cast<std::size_t>(st.st_size);
      const std::unique_ptr<void, std::function<void(void*)>> unmap(map, [mapped](void* m) { ::munmap(m, mapped); });
      const std::string_view buf(static_cast<const char*>(map), mapped);
      auto reject = [&](std::string_view why) {
        log::warn("ignored the index snapshot; walking the store instead", {{"path", path.string()}, {"reason", std::string(why)}});
        return false;
      };
      if (buf.size() < kSnapshotHeader + 32 || buf.substr(0, 8) != kSnapshotMagic) {
        return reject("not a snapshot");
      }
      const char* p = buf.data() + 8;
      if (get_raw<std::uint32_t>(p) != kSnapshotVersion) return reject("unknown version");
      const auto count = get_raw<std::uint64_t>(p);
      if (count > (buf.size() - kSnapshotHeader - 32) / kSnapshotRecord ||
          buf.size() != kSnapshotHeader + count * kSnapshotRecord + 32) {
        return reject("truncated");
      }
      const std::string_view body(buf.data(), buf.size() - 32);
      if (std::memcmp(Sha256::digest_of(body).hash.data(), body.data() + body.size(), 32) != 0) {
        return reject("checksum mismatch");
      }
      for (std::uint64_t i = 0; i < count; ++i) {  // check every record before using any
        const char* r = p + i * kSnapshotRecord + 32;
        const auto size = get_raw<std::int64_t>(r);
        const auto tree = get_raw<std::uint8_t>(r);
        if (size < 0 || size > kMaxDigestSize || (tree & 0xf) > static_cast<std::uint8_t>(Tree::kAc) ||
            (tree >> 4) > static_cast<std::uint8_t>(kLastDigestFunction)) {
          return reject("bad record");
        }
      }
      index_.reserve(static_cast<std::size_t>(count));  // no growth (and no freed old tables)
      for (std::uint64_t i = 0; i < count; ++i) {
        Digest d;
        std::memcpy(d.hash.data(), p, d.hash.size());
        p += d.hash.size();
        d.size = get_raw<std::int64_t>(p);
        const auto tree_and_function = get_raw<std::uint8_t>(p);
        const auto tree = static_cast<Tree>(tree_and_function & 0xf);
        d.function = static_cast<DigestFunction>(tree_and_function >> 4);
        const auto bytes = get_raw<std::uint64_t>(p);
        const auto atime = get_raw<std::int64_t>(p);
        const ObjectKey key{d, tree};
        if (index_.insert(key, {.bytes = bytes, .stamp = Index::stamp_of_wall_time(atime), .verified = false, .seen = false})) {
          account_new(key, bytes);
        }
      }
      log::info("index loaded from snapshot", {{"store", std::string(kName)}, {"objects", std::to_string(count)}});
      return true;
    }
    return false;
  }

  void janitor_loop(const std::stop_token& st) {
    if constexpr (periodic()) {
      while (!st.stop_requested()) {
        {
          std::unique_lock lock(wake_mu_);
          wake_.wait_for(lock, eviction_.scan_interval(), [&] { return st.stop_requested(); });
        }
        if (st.stop_requested()) return;
        maintain(EvictionRun::Trigger::kJanitor);
      }
    }
  }

  Backend backend_;
  Eviction eviction_;
  Options opt_;

  Index index_;
  BlobCache cache_;
  std::atomic<std::uint64_t> usage_{0};  // footprint of indexed objects and reservations
  std::atomic<std::int64_t> last_disk_full_warn_{0};  // rate limit of the disk-full warning
  std::mutex evict_mu_;                  // one eviction pass at a time; guards rng_
  std::mt19937_64 rng_{std::random_device{}()};
  std::atomic<bool> loaded_{false};
  bool walked_ = false;   // guarded by wake_mu_
  bool started_ = false;  // start() succeeded: the directory is ours
  std::mutex wake_mu_;
  std::condition_variable wake_;
  std::function<void(const EvictionRun&)> on_eviction_;
  std::jthread loader_;
  std::jthread janitor_;
};

}  // namespace gorego
