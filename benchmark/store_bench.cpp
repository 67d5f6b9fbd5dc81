// Micro-benchmarks of the framework: hashing, each store stack's basic operations, and
// each eviction policy's cost per access, per insert that evicts, and memory per entry.
// Run: build/benchmark/gorego_bench_store (see docs/performance.md).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cstring>
#include <random>

#include <gorego/core/log.hpp>
#include <gorego/eviction/atime_janitor.hpp>
#include <gorego/eviction/lru.hpp>
#include <gorego/eviction/sampled_lru.hpp>
#include <gorego/store/index.hpp>
#include <gorego/store/local.hpp>
#include <gorego/store/memory_store.hpp>
#include <gorego/store/proxy_store.hpp>
#include <gorego/store/sharded_disk.hpp>
#include <gorego/testing/op_counter.hpp>
#include <gorego/testing/temp_dir.hpp>

namespace {

using namespace gorego;
using gorego::testing::make_blob;

// Index-load lines would drown the table.
const bool kQuiet = gorego::log::set_level("warn");

void BM_Sha256OneShot(benchmark::State& st) {
  const std::string data = make_blob(1, static_cast<std::size_t>(st.range(0)));
  for (auto _ : st) benchmark::DoNotOptimize(Sha256::of(data));
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * st.range(0));
}
BENCHMARK(BM_Sha256OneShot)->Arg(1 << 10)->Arg(1 << 20);

void BM_Sha256Streaming(benchmark::State& st) {
  const std::string data = make_blob(1, 4 << 20);
  const auto chunk = static_cast<std::size_t>(st.range(0));
  for (auto _ : st) {
    Sha256 h;
    for (std::size_t off = 0; off < data.size(); off += chunk) {
      h.update(std::string_view(data).substr(off, chunk));
    }
    benchmark::DoNotOptimize(h.finish());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(data.size()));
}
BENCHMARK(BM_Sha256Streaming)->Arg(16 << 10)->Arg(1 << 20);

/// The copy every byte of a read or write pays at least once in user space: memcpy of a
/// buffer that stays in the caches (1 MiB, one gRPC chunk) and of one that cannot (64 MiB).
void BM_Memcpy(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const std::string src = make_blob(2, n);
  std::string dst(n, '\0');
  for (auto _ : st) {
    std::memcpy(dst.data(), src.data(), n);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * st.range(0));
}
BENCHMARK(BM_Memcpy)->Arg(1 << 20)->Arg(64 << 20);

template <class S>
std::unique_ptr<S> make(const std::filesystem::path& dir) {
  constexpr std::uint64_t kMax = std::uint64_t{8} << 30;
  std::unique_ptr<S> s;
  if constexpr (std::is_constructible_v<S, ShardedDisk::Options, typename Local<ShardedDisk, Lru>::Options>) {
    s = std::make_unique<S>(ShardedDisk::Options{.root = dir, .fsync = false},
                            typename Local<ShardedDisk, Lru>::Options{.max_bytes = kMax});
  } else if constexpr (std::is_constructible_v<S, ShardedDisk::Options, typename Local<ShardedDisk, SampledLru>::Options>) {
    s = std::make_unique<S>(ShardedDisk::Options{.root = dir, .fsync = false},
                            typename Local<ShardedDisk, SampledLru>::Options{.max_bytes = kMax});
  } else {
    s = std::make_unique<S>(MemoryStore::Options{}, typename Local<MemoryStore, Lru>::Options{.max_bytes = kMax});
  }
  if (!s->start().ok()) std::abort();
  return s;
}

template <class S>
void BM_FindMissing(benchmark::State& st) {
  gorego::testing::TempDir dir("bench");
  auto s = make<S>(dir.path());
  std::vector<Digest> ds;
  for (int i = 0; i < 1000; ++i) {
    const std::string b = make_blob(i, 64);
    ds.push_back(Sha256::digest_of(b));
    if (i % 2 == 0 && !s->put(ds.back(), b).ok()) std::abort();
  }
  for (auto _ : st) benchmark::DoNotOptimize(s->find_missing(ds));
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * 1000);
  st.SetLabel(std::string(S::kName));
}

template <class S>
void BM_PutGetSmall(benchmark::State& st) {
  gorego::testing::TempDir dir("bench");
  auto s = make<S>(dir.path());
  std::vector<std::pair<Digest, std::string>> blobs;
  for (int i = 0; i < 256; ++i) {
    std::string b = make_blob(i, 1024);
    blobs.emplace_back(Sha256::digest_of(b), std::move(b));
  }
  std::size_t i = 0;
  for (auto _ : st) {
    const auto& [d, b] = blobs[i++ % blobs.size()];
    if (!s->put(d, b).ok()) std::abort();
    benchmark::DoNotOptimize(s->get(d));
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
  st.SetLabel(std::string(S::kName));
}

constexpr std::size_t kLargeBlob = 4 << 20;  // ByteStream-sized, past the memory cache
constexpr std::size_t kChunk = 1 << 20;      // the server's ByteStream chunk

/// A streamed upload of a 4 MiB blob in 1 MiB appends, verified at commit. The same blob
/// is written again each time (its file is replaced), so the store's size stays put.
template <class S>
void BM_PutLarge(benchmark::State& st) {
  gorego::testing::TempDir dir("bench");
  auto s = make<S>(dir.path());
  const std::string b = make_blob(3, kLargeBlob);
  const Digest d = Sha256::digest_of(b);
  for (auto _ : st) {
    auto w = s->open_write(d);
    if (!w) std::abort();
    for (std::size_t off = 0; off < b.size(); off += kChunk) {
      if (!w->append(std::string_view(b).substr(off, kChunk)).ok()) std::abort();
    }
    if (!w->commit().ok()) std::abort();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * kLargeBlob));
  st.SetLabel(std::string(S::kName));
}

/// A streamed read of a stored 4 MiB blob in 1 MiB reads. The first read verifies it; the
/// timed ones do not (`verify_reads: first`), as for a blob this process already served.
template <class S>
void BM_GetLarge(benchmark::State& st) {
  gorego::testing::TempDir dir("bench");
  auto s = make<S>(dir.path());
  const std::string b = make_blob(4, kLargeBlob);
  const Digest d = Sha256::digest_of(b);
  if (!s->put(d, b).ok()) std::abort();
  std::string buf(kChunk, '\0');
  for (auto _ : st) {
    auto r = s->open_read(d, 0);
    if (!r) std::abort();
    std::size_t total = 0;
    while (true) {
      auto n = r->read(buf);
      if (!n) std::abort();
      if (*n == 0) break;
      total += *n;
    }
    if (total != kLargeBlob) std::abort();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * kLargeBlob));
  st.SetLabel(std::string(S::kName));
}

using MemLru = Local<MemoryStore, Lru>;
using DiskLru = Local<ShardedDisk, Lru>;
using DiskSampled = Local<ShardedDisk, SampledLru>;
using ProxyMem = ProxyStore<MemLru, NoRemote>;
using ProxyMemCounted = ProxyStore<MemLru, NoRemote, gorego::testing::OpCounter>;

BENCHMARK_TEMPLATE(BM_FindMissing, MemLru);
BENCHMARK_TEMPLATE(BM_FindMissing, DiskLru);
BENCHMARK_TEMPLATE(BM_FindMissing, DiskSampled);
BENCHMARK_TEMPLATE(BM_FindMissing, ProxyMem);
BENCHMARK_TEMPLATE(BM_FindMissing, ProxyMemCounted);
BENCHMARK_TEMPLATE(BM_PutGetSmall, MemLru);
BENCHMARK_TEMPLATE(BM_PutGetSmall, DiskLru);
BENCHMARK_TEMPLATE(BM_PutGetSmall, DiskSampled);
BENCHMARK_TEMPLATE(BM_PutGetSmall, ProxyMem);
BENCHMARK_TEMPLATE(BM_PutGetSmall, ProxyMemCounted);
BENCHMARK_TEMPLATE(BM_PutLarge, MemLru);
BENCHMARK_TEMPLATE(BM_PutLarge, DiskSampled);
BENCHMARK_TEMPLATE(BM_PutLarge, ProxyMem);
BENCHMARK_TEMPLATE(BM_PutLarge, ProxyMemCounted);
BENCHMARK_TEMPLATE(BM_GetLarge, MemLru);
BENCHMARK_TEMPLATE(BM_GetLarge, DiskSampled);
BENCHMARK_TEMPLATE(BM_GetLarge, ProxyMem);
BENCHMARK_TEMPLATE(BM_GetLarge, ProxyMemCounted);

/// A get of a stored, verified 1 KiB blob from the disk tier, served from the memory cache
/// (argument 1) or from its file (argument 0, `memory_cache_bytes = 0`).
void BM_GetSmallDisk(benchmark::State& st) {
  gorego::testing::TempDir dir("bench");
  DiskSampled s(ShardedDisk::Options{.root = dir.path(), .fsync = false},
                DiskSampled::Options{.max_bytes = std::uint64_t{8} << 30,
                                     .memory_cache_bytes = st.range(0) != 0 ? std::uint64_t{64} << 20 : 0});
  if (!s.start().ok()) std::abort();
  s.wait_loaded();
  std::vector<Digest> ds;
  for (int i = 0; i < 256; ++i) {
    const std::string b = make_blob(i, 1024);
    ds.push_back(Sha256::digest_of(b));
    if (!s.put(ds.back(), b).ok()) std::abort();
  }
  std::size_t i = 0;
  for (auto _ : st) benchmark::DoNotOptimize(s.get(ds[i++ % ds.size()]));
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
  st.SetLabel(st.range(0) != 0 ? "memory cache" : "file");
}
BENCHMARK(BM_GetSmallDisk)->Arg(0)->Arg(1);

/// FindMissingBlobs' inner loop on a large index: lookups (recorded as accesses) of random
/// keys among 1 M CAS entries, each a cache miss into a table of about 70 MB.
void BM_IndexLookupLarge(benchmark::State& st) {
  constexpr std::size_t kKeys = 1'000'000;
  std::vector<ObjectKey> keys(kKeys);
  std::mt19937_64 rng(7);
  for (ObjectKey& k : keys) {
    for (std::size_t i = 0; i < k.digest.hash.size(); i += 8) {
      const std::uint64_t r = rng();
      std::memcpy(k.digest.hash.data() + i, &r, 8);
    }
    k.digest.size = 1024;
  }
  Index index;
  for (const ObjectKey& k : keys) index.insert(k, {.stamp = 1});
  std::shuffle(keys.begin(), keys.end(), std::mt19937_64(3));
  std::size_t at = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(index.touch(keys[at], 2));
    if (++at == kKeys) at = 0;
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}
BENCHMARK(BM_IndexLookupLarge);

// ---- Eviction policies, each on Local<MemoryStore, E> ---------------------------------

constexpr int kEntries = 100'000;

template <class E>
auto make_filled(std::uint64_t max_bytes, std::vector<std::pair<Digest, std::string>>& blobs) {
  using L = Local<MemoryStore, E>;
  auto s = std::make_unique<L>(MemoryStore::Options{}, typename E::Options{}, typename L::Options{.max_bytes = max_bytes});
  if (!s->start().ok()) std::abort();
  s->wait_loaded();
  for (int i = 0; i < kEntries; ++i) {
    std::string b = make_blob(static_cast<std::uint64_t>(i), 64);
    blobs.emplace_back(Sha256::digest_of(b), std::move(b));
    if (!s->put(blobs.back().first, blobs.back().second).ok()) std::abort();
  }
  return s;
}

/// A presence check that hits: the index lookup plus the policy's access hook.
template <class E>
void BM_EvictionTouch(benchmark::State& st) {
  std::vector<std::pair<Digest, std::string>> blobs;
  auto s = make_filled<E>(std::uint64_t{1} << 30, blobs);
  std::minstd_rand rng(1);
  for (auto _ : st) benchmark::DoNotOptimize(s->contains(blobs[rng() % blobs.size()].first));
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
  st.SetLabel(std::string(E::kName));
}

/// A put into a full store: insert plus the eviction it causes (the atime janitor frees
/// down to 90 % per scan, so its scans are amortised over many puts).
template <class E>
void BM_EvictionInsertEvict(benchmark::State& st) {
  std::vector<std::pair<Digest, std::string>> blobs;
  auto s = make_filled<E>(static_cast<std::uint64_t>(kEntries) * 64, blobs);
  std::vector<std::pair<Digest, std::string>> fresh;
  for (int i = 0; i < kEntries; ++i) {
    std::string b = make_blob(static_cast<std::uint64_t>(kEntries + i), 64);
    fresh.emplace_back(Sha256::digest_of(b), std::move(b));
  }
  std::size_t i = 0;
  for (auto _ : st) {
    const auto& [d, b] = (i / fresh.size()) % 2 == 0 ? fresh[i % fresh.size()] : blobs[i % blobs.size()];
    ++i;
    if (!s->put(d, b).ok()) std::abort();
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
  st.SetLabel(std::string(E::kName));
}

/// Heap bytes per entry of the local index plus the policy's own structures (glibc's
/// allocator statistics, so allocator overhead is included).
template <class E>
void BM_EvictionMemoryPerEntry(benchmark::State& st) {
  constexpr int kN = 1'000'000;
  std::vector<ObjectKey> keys;
  keys.reserve(kN);
  for (int i = 0; i < kN; ++i) keys.push_back({Sha256::digest_of(std::to_string(i)), Tree::kCas});
  double per_entry = 0;
  for (auto _ : st) {
    const std::size_t before = ::mallinfo2().uordblks;
    auto index = std::make_unique<Index>();
    auto policy = std::make_unique<E>();
    for (const ObjectKey& k : keys) {
      index->insert(k, {.bytes = 1024, .stamp = 1});
      policy->on_insert(k, 4096);
    }
    per_entry = static_cast<double>(::mallinfo2().uordblks - before) / kN;
    benchmark::DoNotOptimize(index.get());
  }
  st.counters["bytes_per_entry"] = per_entry;
  st.SetLabel(std::string(E::kName));
}

BENCHMARK_TEMPLATE(BM_EvictionTouch, SampledLru);
BENCHMARK_TEMPLATE(BM_EvictionTouch, Lru);
BENCHMARK_TEMPLATE(BM_EvictionTouch, AtimeJanitor);
BENCHMARK_TEMPLATE(BM_EvictionInsertEvict, SampledLru);
BENCHMARK_TEMPLATE(BM_EvictionInsertEvict, Lru);
BENCHMARK_TEMPLATE(BM_EvictionInsertEvict, AtimeJanitor);
BENCHMARK_TEMPLATE(BM_EvictionMemoryPerEntry, SampledLru)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_EvictionMemoryPerEntry, Lru)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_EvictionMemoryPerEntry, AtimeJanitor)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
