#pragma once
/// Index: the local tier's in-memory map of what it holds, built for presence checks.
///
/// One entry per object: for CAS blobs the 32-byte hash and the size (the digest is the
/// whole key and the stored size), a last-access stamp and a `verified` bit; ActionCache
/// entries also keep their stored size. Entries live in `kShards` shards chosen by hash
/// byte, each behind its own `shared_mutex`: lookups of different blobs rarely meet, and a
/// lookup that records an access writes only the entry's own stamp (a relaxed atomic store
/// under the shared lock), so presence checks never serialize on a global lock.
///
/// CAS entries sit in a flat open-addressing table (linear probing, backward-shift
/// deletion, capacity grown by 1.5x at 3/4 load): 48 bytes per slot, 64-96 bytes per blob
/// including the empty slots. ActionCache entries, usually a small share, sit in a
/// per-shard hash map and may carry their serialized bytes, so that a hit needs no disk
/// read, within a memory budget (`Options::ac_memory_bytes`). `sample` draws random
/// entries for approximate-LRU eviction.
/// Thread safety: every member may be called concurrently.
///
///   Index index;
///   index.insert({d, Tree::kCas}, {.bytes = 1024, .stamp = Index::now(), .verified = true});
///   if (auto hit = index.touch({d, Tree::kCas}, Index::now())) use(hit->verified);

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <gorego/concepts/eviction_policy.hpp>
#include <gorego/core/digest.hpp>

namespace gorego {

class Index {
 public:
  static constexpr std::size_t kShards = 64;

  /// What the index knows of one object. `bytes`: stored size (for CAS, the digest's size).
  struct Entry {
    std::uint64_t bytes = 0;
    std::uint64_t stamp = 0;  ///< last access, `now()` units (steady clock, ns)
    bool verified = false;    ///< the stored bytes were hashed by this process
    bool seen = true;         ///< known to be on disk (false: from a snapshot, unconfirmed)
  };
  using Sample = IndexedObject;
  struct Hit {
    bool verified;
    std::shared_ptr<const std::string> bytes;  ///< an ActionCache entry's bytes, when held
  };
  struct Options {
    std::uint64_t ac_memory_bytes = std::uint64_t{64} << 20;  ///< budget for held AC bytes
    std::uint64_t ac_max_entry_bytes = std::uint64_t{64} << 10;
  };

  /// The access clock: nanoseconds of the steady clock (never 0).
  static std::uint64_t now() {
    const auto t = std::chrono::steady_clock::now().time_since_epoch();
    return std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t).count()));
  }
  /// The stamp for an object last accessed at wall-clock `unix_ns` (a file's atime).
  static std::uint64_t stamp_of_wall_time(std::int64_t unix_ns) {
    const auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    const std::int64_t age = std::max<std::int64_t>(0, wall - unix_ns);
    const std::uint64_t n = now();
    return n > static_cast<std::uint64_t>(age) ? n - static_cast<std::uint64_t>(age) : 1;
  }

  Index() : Index(Options{}) {}
  explicit Index(Options o) : opt_(o), shards_(std::make_unique<Shard[]>(kShards)) {}
  ~Index() = default;
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  /// Looks `k` up and, when present, records an access at `stamp`.
  std::optional<Hit> touch(const ObjectKey& k, std::uint64_t stamp) {
    Shard& s = shard(k);
    std::shared_lock lock(s.mu);
    if (k.tree == Tree::kAc) {
      auto it = s.ac.find(k.digest);
      if (it == s.ac.end()) return std::nullopt;
      std::atomic_ref(it->second.stamp).store(stamp, std::memory_order_relaxed);
      return Hit{true, it->second.held};
    }
    Slot* slot = s.cas.find(k.digest);
    if (slot == nullptr) return std::nullopt;
    std::atomic_ref(slot->stamp).store(stamp, std::memory_order_relaxed);
    return Hit{slot->verified(), nullptr};
  }

  /// The last-access stamp of `k` when indexed; records no access.
  [[nodiscard]] std::optional<std::uint64_t> stamp(const ObjectKey& k) const {
    const Shard& s = shard(k);
    std::shared_lock lock(s.mu);
    if (k.tree == Tree::kAc) {
      auto it = s.ac.find(k.digest);
      if (it == s.ac.end()) return std::nullopt;
      return std::atomic_ref(const_cast<std::uint64_t&>(it->second.stamp)).load(std::memory_order_relaxed);
    }
    const Slot* slot = s.cas.find(k.digest);
    if (slot == nullptr) return std::nullopt;
    return std::atomic_ref(const_cast<std::uint64_t&>(slot->stamp)).load(std::memory_order_relaxed);
  }
  /// The wall-clock time (ns since the epoch) of stamp `s`: the inverse of stamp_of_wall_time.
  static std::int64_t wall_time_of_stamp(std::uint64_t s) {
    const auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    const std::uint64_t n = now();
    return wall - static_cast<std::int64_t>(n > s ? n - s : 0);
  }

  [[nodiscard]] bool contains(const ObjectKey& k) const {
    const Shard& s = shard(k);
    std::shared_lock lock(s.mu);
    if (k.tree == Tree::kAc) return s.ac.contains(k.digest);
    return s.cas.find(k.digest) != nullptr;
  }

  /// Adds `k` unless present. Returns whether it was added.
  bool insert(const ObjectKey& k, const Entry& e) {
    Shard& s = shard(k);
    std::unique_lock lock(s.mu);
    bool fresh;
    if (k.tree == Tree::kAc) {
      fresh = s.ac.try_emplace(k.digest, AcEntry{e.bytes, e.stamp, nullptr, e.seen}).second;
    } else {
      fresh = s.cas.insert(k.digest, e.stamp, e.verified, e.seen) != nullptr;
    }
    if (fresh) size_.fetch_add(1, std::memory_order_relaxed);
    return fresh;
  }

  /// Adds or replaces `k`. Returns the stored size it replaced, if any. For an ActionCache
  /// entry, `held` are its bytes, kept in memory if the budget allows.
  std::optional<std::uint64_t> upsert(const ObjectKey& k, const Entry& e, std::string_view held = {}) {
    Shard& s = shard(k);
    std::unique_lock lock(s.mu);
    if (k.tree == Tree::kAc) {
      auto [it, fresh] = s.ac.try_emplace(k.digest, AcEntry{e.bytes, e.stamp, nullptr, e.seen});
      std::optional<std::uint64_t> replaced;
      if (fresh) size_.fetch_add(1, std::memory_order_relaxed);
      else replaced = it->second.bytes;
      release(it->second);
      it->second = AcEntry{e.bytes, e.stamp, hold(held), e.seen};
      return replaced;
    }
    if (Slot* slot = s.cas.find(k.digest)) {
      slot->stamp = e.stamp;
      if (e.verified) slot->meta |= kVerified;
      if (e.seen) slot->meta |= kSeen;
      return static_cast<std::uint64_t>(k.digest.size);
    }
    s.cas.insert(k.digest, e.stamp, e.verified, e.seen);
    size_.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }

  /// Removes `k`. Returns its stored size when it was present.
  std::optional<std::uint64_t> erase(const ObjectKey& k) {
    Shard& s = shard(k);
    std::unique_lock lock(s.mu);
    return erase_locked(s, k);
  }

  /// A write of `k` is starting: until `end_write(k)`, `erase_and_delete` leaves the file
  /// alone. Pair every call with one `end_write`.
  void begin_write(const ObjectKey& k) {
    Shard& s = shard(k);
    std::unique_lock lock(s.mu);
    ++s.writing[k];
  }
  void end_write(const ObjectKey& k) {
    Shard& s = shard(k);
    std::unique_lock lock(s.mu);
    auto it = s.writing.find(k);
    if (it != s.writing.end() && --it->second == 0) s.writing.erase(it);
  }

  /// Erases `k` and, unless a write of `k` is in progress, calls `delete_file()` under the
  /// same lock. A writer publishes its file before indexing it: deleting without this check
  /// could remove a file just published for a new, acknowledged entry. Returns the stored
  /// size erased, if any.
  template <class F>
  std::optional<std::uint64_t> erase_and_delete(const ObjectKey& k, F&& delete_file) {
    Shard& s = shard(k);
    std::unique_lock lock(s.mu);
    auto out = erase_locked(s, k);
    if (!s.writing.contains(k)) delete_file();
    return out;
  }

  /// Marks `k` as found on disk, adding it (as `e`) when absent. Returns whether it was added.
  bool mark_seen(const ObjectKey& k, const Entry& e) {
    Shard& s = shard(k);
    std::unique_lock lock(s.mu);
    if (k.tree == Tree::kAc) {
      auto [it, fresh] = s.ac.try_emplace(k.digest, AcEntry{e.bytes, e.stamp, nullptr, true});
      it->second.seen = true;
      if (fresh) size_.fetch_add(1, std::memory_order_relaxed);
      return fresh;
    }
    if (Slot* slot = s.cas.find(k.digest)) {
      slot->meta |= kSeen;
      return false;
    }
    s.cas.insert(k.digest, e.stamp, e.verified, true);
    size_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  /// Removes every entry not marked seen, calling `fn(key, bytes)` for each.
  template <class F>
  void sweep_unseen(F&& fn) {
    for (std::size_t i = 0; i < kShards; ++i) {
      Shard& s = shards_[i];
      std::vector<std::pair<ObjectKey, std::uint64_t>> gone;
      {
        // One exclusive hold: an entry written meanwhile (and so seen) is never swept.
        std::unique_lock lock(s.mu);
        std::vector<ObjectKey> unseen;
        s.cas.for_each([&](const Slot& slot) {
          if ((slot.meta & kSeen) == 0) unseen.push_back({slot.digest(), Tree::kCas});
        });
        for (const auto& [d, e] : s.ac) {
          if (!e.seen) unseen.push_back({d, Tree::kAc});
        }
        for (const ObjectKey& k : unseen) {
          if (auto bytes = erase_locked(s, k)) gone.emplace_back(k, *bytes);
        }
      }
      for (const auto& [k, bytes] : gone) fn(k, bytes);
    }
  }

  /// Sizes the tables for about `n` entries in all (avoids growth while loading).
  void reserve(std::size_t n) {
    for (std::size_t i = 0; i < kShards; ++i) {
      std::unique_lock lock(shards_[i].mu);
      shards_[i].cas.reserve(n / kShards + n / kShards / 16 + 16);  // shards differ by a few %
    }
  }

  /// Keeps the bytes of ActionCache entry `d` (read from disk) in memory, budget allowing.
  void hold_action(const Digest& d, std::string_view bytes) {
    Shard& s = shard(ObjectKey{d, Tree::kAc});
    std::unique_lock lock(s.mu);
    if (auto it = s.ac.find(d); it != s.ac.end() && !it->second.held && it->second.bytes == bytes.size()) {
      it->second.held = hold(bytes);
    }
  }

  /// The size of a CAS blob known by its hash alone (the HTTP cache protocol names blobs
  /// so), if the index holds one with hash `h` under function `f`.
  [[nodiscard]] std::optional<std::int64_t> cas_size(const Hash256& h, DigestFunction f) const {
    Digest probe;
    probe.hash = h;
    probe.function = f;
    const Shard& s = shard(ObjectKey{probe, Tree::kCas});
    std::shared_lock lock(s.mu);
    return s.cas.size_of(h, f);
  }

  /// Records that the stored bytes of CAS blob `d` were found to match it.
  void set_verified(const Digest& d) {
    Shard& s = shard(ObjectKey{d, Tree::kCas});
    std::unique_lock lock(s.mu);
    if (Slot* slot = s.cas.find(d)) slot->meta |= kVerified;
  }

  [[nodiscard]] std::size_t size() const { return size_.load(std::memory_order_relaxed); }

  /// ActionCache bytes held in memory (within `Options::ac_memory_bytes`).
  [[nodiscard]] std::uint64_t held_action_bytes() const { return held_.load(std::memory_order_relaxed); }

  /// Bytes held by the tables (not counting the allocator's own overhead).
  [[nodiscard]] std::size_t memory_bytes() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < kShards; ++i) {
      std::shared_lock lock(shards_[i].mu);
      n += shards_[i].cas.capacity() * sizeof(Slot) +
           shards_[i].ac.size() * (sizeof(Digest) + sizeof(AcEntry) + 2 * sizeof(void*)) +
           shards_[i].ac.bucket_count() * sizeof(void*);
    }
    return n;
  }

  /// Appends up to `n` entries drawn at random (with repetition possible) to `out`.
  template <class Rng>
  void sample(Rng& rng, std::size_t n, std::vector<Sample>& out) const {
    if (size() == 0) return;
    const std::size_t max_tries = 4 * n + 16;  // shards may be empty
    for (std::size_t tries = 0; n > 0 && tries < max_tries; ++tries) {
      const Shard& s = shards_[rng() % kShards];
      std::shared_lock lock(s.mu);
      const std::size_t cas = s.cas.size();
      const std::size_t total = cas + s.ac.size();
      if (total == 0) continue;
      if (rng() % total < cas) {
        const Slot& slot = s.cas.at_or_after(rng());
        out.push_back({ObjectKey{slot.digest(), Tree::kCas}, slot.size(),
                       std::atomic_ref(const_cast<Slot&>(slot).stamp).load(std::memory_order_relaxed)});
      } else {
        std::size_t b = rng() % s.ac.bucket_count();
        while (s.ac.bucket_size(b) == 0) b = (b + 1) % s.ac.bucket_count();
        const auto& [d, e] = *s.ac.begin(b);
        out.push_back({ObjectKey{d, Tree::kAc}, e.bytes, e.stamp});
      }
      --n;
    }
  }

  /// Calls `fn(Sample)` for every entry; each shard is locked while it is visited.
  template <class F>
  void for_each(F&& fn) const {
    for (std::size_t i = 0; i < kShards; ++i) {
      const Shard& s = shards_[i];
      std::shared_lock lock(s.mu);
      s.cas.for_each([&](const Slot& slot) {
        fn(Sample{ObjectKey{slot.digest(), Tree::kCas}, slot.size(),
                  std::atomic_ref(const_cast<Slot&>(slot).stamp).load(std::memory_order_relaxed)});
      });
      for (const auto& [d, e] : s.ac) fn(Sample{ObjectKey{d, Tree::kAc}, e.bytes, e.stamp});
    }
  }

 private:
  static constexpr std::uint64_t kUsed = std::uint64_t{1} << 63;
  static constexpr std::uint64_t kVerified = std::uint64_t{1} << 62;
  static constexpr std::uint64_t kSeen = std::uint64_t{1} << 61;
  static constexpr std::uint64_t kSizeMask = (std::uint64_t{1} << 48) - 1;  // > kMaxDigestSize
  /// The digest function, in the bits above the size (DigestFunction's value).
  static constexpr int kFunctionShift = 48;
  static constexpr std::uint64_t kFunctionMask = std::uint64_t{0xf} << kFunctionShift;
  /// Size and function: what a slot must match besides the hash.
  static std::uint64_t identity(const Digest& d) {
    return static_cast<std::uint64_t>(d.size) | static_cast<std::uint64_t>(d.function) << kFunctionShift;
  }

  /// One CAS blob: hash, size and flags, access stamp. 48 bytes.
  struct Slot {
    Hash256 hash;
    std::uint64_t meta = 0;  // kUsed | kVerified | kSeen | function | size
    std::uint64_t stamp = 0;

    [[nodiscard]] bool used() const { return (meta & kUsed) != 0; }
    [[nodiscard]] bool verified() const { return (meta & kVerified) != 0; }
    [[nodiscard]] std::uint64_t size() const { return meta & kSizeMask; }
    [[nodiscard]] Digest digest() const {
      Digest d;
      d.hash = hash;
      d.size = static_cast<std::int64_t>(size());
      d.function = static_cast<DigestFunction>((meta & kFunctionMask) >> kFunctionShift);
      return d;
    }
    [[nodiscard]] bool holds(const Digest& d) const {
      return used() && (meta & (kSizeMask | kFunctionMask)) == identity(d) && hash == d.hash;
    }
  };
  static_assert(sizeof(Slot) == 48);

  /// Open addressing with linear probing. The home slot is `(h * capacity) >> 64` of the
  /// hash's first 8 bytes, monotonic in h, so any capacity works and growth can be 1.5x.
  class Table {
   public:
    [[nodiscard]] std::size_t size() const { return size_; }
    [[nodiscard]] std::size_t capacity() const { return slots_.size(); }

    Slot* find(const Digest& d) {
      return const_cast<Slot*>(std::as_const(*this).find(d));
    }
    [[nodiscard]] const Slot* find(const Digest& d) const {
      if (slots_.empty()) return nullptr;
      for (std::size_t i = home(d.hash);; i = next(i)) {
        const Slot& s = slots_[i];
        if (!s.used()) return nullptr;
        if (s.holds(d)) return &s;
      }
    }

    /// The size of the first slot with hash `h` under `f` (a probe run holds every slot of
    /// its home position).
    [[nodiscard]] std::optional<std::int64_t> size_of(const Hash256& h, DigestFunction f) const {
      if (slots_.empty()) return std::nullopt;
      const std::uint64_t fn = static_cast<std::uint64_t>(f) << kFunctionShift;
      for (std::size_t i = home(h);; i = next(i)) {
        const Slot& s = slots_[i];
        if (!s.used()) return std::nullopt;
        if (s.hash == h && (s.meta & kFunctionMask) == fn) return static_cast<std::int64_t>(s.size());
      }
    }

    /// Inserts `d` when absent; returns the new slot, or nullptr when it was present.
    Slot* insert(const Digest& d, std::uint64_t stamp, bool verified, bool seen) {
      if ((size_ + 1) * 4 > slots_.size() * 3) grow(slots_.size() + slots_.size() / 2);
      for (std::size_t i = home(d.hash);; i = next(i)) {
        Slot& s = slots_[i];
        if (s.holds(d)) return nullptr;
        if (!s.used()) {
          s.hash = d.hash;
          s.meta = kUsed | (verified ? kVerified : 0) | (seen ? kSeen : 0) | identity(d);
          s.stamp = stamp;
          ++size_;
          return &s;
        }
      }
    }

    bool erase(const Digest& d) {
      Slot* s = find(d);
      if (s == nullptr) return false;
      // Backward-shift deletion: pull later entries of the probe run into the hole.
      auto hole = static_cast<std::size_t>(s - slots_.data());
      for (std::size_t j = next(hole);; j = next(j)) {
        Slot& cand = slots_[j];
        if (!cand.used()) break;
        const std::size_t h = home(cand.hash);
        const bool movable = hole <= j ? (h <= hole || h > j) : (h <= hole && h > j);
        if (movable) {
          slots_[hole] = cand;
          hole = j;
        }
      }
      slots_[hole] = Slot{};
      --size_;
      return true;
    }

    /// The first used slot at or after a position drawn from `r`. Requires size() > 0.
    [[nodiscard]] const Slot& at_or_after(std::uint64_t r) const {
      std::size_t i = static_cast<std::size_t>(r % slots_.size());
      while (!slots_[i].used()) i = next(i);
      return slots_[i];
    }

    template <class F>
    void for_each(F&& fn) const {
      for (const Slot& s : slots_) {
        if (s.used()) fn(s);
      }
    }

    /// Room for `n` entries within the load limit.
    void reserve(std::size_t n) {
      if (n * 4 > slots_.size() * 3) grow(n * 4 / 3 + 1);
    }

   private:
    [[nodiscard]] std::size_t home(const Hash256& h) const {
      std::uint64_t x;
      std::memcpy(&x, h.data(), sizeof x);
      __extension__ using U128 = unsigned __int128;  // GCC and Clang; -Wpedantic knows it is an extension
      return static_cast<std::size_t>((static_cast<U128>(x) * slots_.size()) >> 64);
    }
    [[nodiscard]] std::size_t next(std::size_t i) const { return i + 1 == slots_.size() ? 0 : i + 1; }

    void grow(std::size_t capacity) {
      std::vector<Slot> old;
      old.swap(slots_);
      slots_.assign(std::max<std::size_t>(16, capacity), Slot{});
      size_ = 0;
      for (const Slot& s : old) {
        if (!s.used()) continue;
        std::size_t i = home(s.hash);
        while (slots_[i].used()) i = next(i);
        slots_[i] = s;
        ++size_;
      }
    }

    std::vector<Slot> slots_;
    std::size_t size_ = 0;
  };

  struct AcEntry {
    std::uint64_t bytes;
    std::uint64_t stamp;
    std::shared_ptr<const std::string> held;
    bool seen = true;
  };

  /// A held copy of `bytes` if they fit the budget; null otherwise (or when empty).
  std::shared_ptr<const std::string> hold(std::string_view bytes) {
    if (bytes.empty() || bytes.size() > opt_.ac_max_entry_bytes) return nullptr;
    std::uint64_t used = held_.load(std::memory_order_relaxed);
    do {
      if (used + bytes.size() > opt_.ac_memory_bytes) return nullptr;
    } while (!held_.compare_exchange_weak(used, used + bytes.size()));
    return std::make_shared<const std::string>(bytes);
  }
  void release(AcEntry& e) {
    if (e.held) held_.fetch_sub(e.held->size(), std::memory_order_relaxed);
    e.held.reset();
  }

  struct alignas(64) Shard {
    mutable std::shared_mutex mu;
    Table cas;
    std::unordered_map<Digest, AcEntry> ac;
    std::unordered_map<ObjectKey, std::uint32_t> writing;  // writes in progress, by key
  };

  // Shards by the hash's last byte: the table's home slot uses the first eight.
  Shard& shard(const ObjectKey& k) { return shards_[k.digest.hash[31] % kShards]; }
  [[nodiscard]] const Shard& shard(const ObjectKey& k) const { return shards_[k.digest.hash[31] % kShards]; }

  /// `erase` with `s.mu` held exclusively.
  std::optional<std::uint64_t> erase_locked(Shard& s, const ObjectKey& k) {
    std::optional<std::uint64_t> out;
    if (k.tree == Tree::kAc) {
      if (auto it = s.ac.find(k.digest); it != s.ac.end()) {
        out = it->second.bytes;
        release(it->second);
        s.ac.erase(it);
      }
    } else if (s.cas.erase(k.digest)) {
      out = static_cast<std::uint64_t>(k.digest.size);
    }
    if (out) size_.fetch_sub(1, std::memory_order_relaxed);
    return out;
  }

  Options opt_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<std::size_t> size_{0};
  std::atomic<std::uint64_t> held_{0};
};

}  // namespace gorego
