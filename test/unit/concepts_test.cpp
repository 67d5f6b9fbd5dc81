// The concepts accept gorego's types and reject types that break a requirement.
#include <catch2/catch.hpp>

#include <gorego/concepts/blob_store.hpp>
#include <gorego/concepts/eviction_policy.hpp>
#include <gorego/concepts/hasher.hpp>
#include <gorego/concepts/storage_backend.hpp>

#include "stacks.hpp"

using namespace gorego;

namespace {
// get returns the wrong type.
struct BadGet : test::MemLru {
  int get(const Digest&);
};
// No Writer type.
struct NoWriter {
  static constexpr std::string_view kName = "no_writer";
  using Reader = test::MemLru::Reader;
  bool contains(const Digest&);
  std::vector<Digest> find_missing(std::span<const Digest>);
  Result<std::string> get(const Digest&);
  Status put(const Digest&, std::string_view);
  Result<Reader> open_read(const Digest&, std::uint64_t);
};
// on_access missing.
struct HalfPolicy {
  static constexpr std::string_view kName = "half";
  void on_insert(const ObjectKey&, std::uint64_t);
  void on_erase(const ObjectKey&);
  template <class B>
  std::vector<ObjectKey> select_victims(std::uint64_t, B&);
};
// finish returns a string, not a Hash256.
struct StringHasher {
  static constexpr std::string_view kName = "str";
  void update(std::string_view);
  std::string finish();
  void reset();
  static Hash256 of(std::string_view);
};
}  // namespace

TEST_CASE("Concepts: gorego's types model them, broken types do not", "[concepts]") {
  STATIC_REQUIRE(BlobStore<test::MemLru>);
  STATIC_REQUIRE(BlobStore<test::DiskAtime>);
  STATIC_REQUIRE(BlobStore<test::ProxyDisk>);
  STATIC_REQUIRE(ActionStore<test::ProxyDisk>);
  STATIC_REQUIRE(StorageBackend<ShardedDisk>);
  STATIC_REQUIRE(EvictionPolicy<Lru>);
  STATIC_REQUIRE(Hasher<Sha256>);
  STATIC_REQUIRE_FALSE(BlobStore<BadGet>);
  STATIC_REQUIRE_FALSE(BlobStore<NoWriter>);
  STATIC_REQUIRE_FALSE(StorageBackend<test::MemLru>);  // a Local is not a backend
  STATIC_REQUIRE_FALSE(EvictionPolicy<HalfPolicy>);
  STATIC_REQUIRE_FALSE(Hasher<StringHasher>);
}
