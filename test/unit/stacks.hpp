#pragma once
// The store stacks every conformance test runs over, and how to build one.

#include <memory>
#include <tuple>

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

namespace gorego::test {

using MemLru = Local<MemoryStore, Lru>;
using MemAtime = Local<MemoryStore, AtimeJanitor>;
using DiskLru = Local<ShardedDisk, Lru>;
using DiskAtime = Local<ShardedDisk, AtimeJanitor>;
using DiskSampled = Local<ShardedDisk, SampledLru>;
using ProxyDisk = ProxyStore<DiskSampled, NoRemote>;
using ProxyMemCounted = ProxyStore<MemLru, NoRemote, testing::OpCounter>;

using AllStacks = std::tuple<MemLru, MemAtime, DiskLru, DiskAtime, DiskSampled, ProxyDisk, ProxyMemCounted>;

template <class S>
struct LocalOf {
  using type = S;
};
template <class L, class R, class... I>
struct LocalOf<ProxyStore<L, R, I...>> {
  using type = L;
};

template <class S>
constexpr bool kOnDisk = std::is_same_v<typename LocalOf<S>::type, DiskLru> ||
                         std::is_same_v<typename LocalOf<S>::type, DiskAtime> ||
                         std::is_same_v<typename LocalOf<S>::type, DiskSampled>;

/// Builds and starts a store of stack S with `max_bytes`, on `dir` when it is disk-based.
template <class S>
std::unique_ptr<S> make_store(const std::filesystem::path& dir, std::uint64_t max_bytes,
                              bool fsync = false, VerifyReads verify = VerifyReads::kFirst) {
  using L = typename LocalOf<S>::type;
  typename L::Options lo{.max_bytes = max_bytes, .verify_reads = verify};
  std::unique_ptr<S> s;
  if constexpr (kOnDisk<S>) {
    s = std::make_unique<S>(ShardedDisk::Options{.root = dir, .fsync = fsync}, lo);
  } else {
    s = std::make_unique<S>(MemoryStore::Options{}, lo);
  }
  REQUIRE(s->start().ok());
  if constexpr (requires { s->wait_walked(); }) s->wait_walked();
  else s->local().wait_walked();
  return s;
}

template <class S>
auto& local_of(S& s) {
  if constexpr (requires { s.local(); }) return s.local();
  else return s;
}

}  // namespace gorego::test
