// Builds a store stack from the installed headers and converts a digest with the installed
// protocol library: both targets of find_package(gorego) are usable.
#include <cstdio>

#include <gorego/eviction/lru.hpp>
#include <gorego/hash/sha256.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/store/local.hpp>
#include <gorego/store/memory_store.hpp>
#include <gorego/store/proxy_store.hpp>

int main() {
  using Store = gorego::ProxyStore<gorego::Local<gorego::MemoryStore, gorego::Lru>>;
  Store store(gorego::MemoryStore::Options{}, gorego::Local<gorego::MemoryStore, gorego::Lru>::Options{.max_bytes = 1 << 20});
  if (!store.start().ok()) return 1;
  const gorego::Digest d = gorego::Sha256::digest_of("hello");
  if (!store.put(d, "hello").ok() || *store.get(d) != "hello") return 1;
  const auto wire = gorego::reapi::to_proto(d);
  std::printf("%s %s/%lld\n", std::string(Store::kName).c_str(), wire.hash().c_str(),
              static_cast<long long>(wire.size_bytes()));
  return wire.size_bytes() == 5 ? 0 : 1;
}
