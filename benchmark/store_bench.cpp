// Micro-benchmarks of the framework: hashing, and each store stack's basic operations.
// Run: build/benchmark/gorego_bench_store (see docs/performance.md).
#include <benchmark/benchmark.h>

#include <gorego/core/log.hpp>
#include <gorego/eviction/atime_janitor.hpp>
#include <gorego/eviction/lru.hpp>
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

template <class S>
std::unique_ptr<S> make(const std::filesystem::path& dir) {
  constexpr std::uint64_t kMax = std::uint64_t{8} << 30;
  std::unique_ptr<S> s;
  if constexpr (std::is_constructible_v<S, ShardedDisk::Options, typename Local<ShardedDisk, Lru>::Options>) {
    s = std::make_unique<S>(ShardedDisk::Options{.root = dir, .fsync = false},
                            typename Local<ShardedDisk, Lru>::Options{.max_bytes = kMax});
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

using MemLru = Local<MemoryStore, Lru>;
using DiskLru = Local<ShardedDisk, Lru>;
using ProxyMem = ProxyStore<MemLru, NoRemote>;
using ProxyMemCounted = ProxyStore<MemLru, NoRemote, gorego::testing::OpCounter>;

BENCHMARK_TEMPLATE(BM_FindMissing, MemLru);
BENCHMARK_TEMPLATE(BM_FindMissing, DiskLru);
BENCHMARK_TEMPLATE(BM_FindMissing, ProxyMem);
BENCHMARK_TEMPLATE(BM_FindMissing, ProxyMemCounted);
BENCHMARK_TEMPLATE(BM_PutGetSmall, MemLru);
BENCHMARK_TEMPLATE(BM_PutGetSmall, DiskLru);
BENCHMARK_TEMPLATE(BM_PutGetSmall, ProxyMem);
BENCHMARK_TEMPLATE(BM_PutGetSmall, ProxyMemCounted);

}  // namespace
