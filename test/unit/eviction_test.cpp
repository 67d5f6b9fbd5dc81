// Eviction policies on their own, and the disk tier's restart and corruption behaviour.
#include <catch2/catch.hpp>

#include <fstream>

#include "stacks.hpp"

using namespace gorego;
using gorego::testing::make_blob;
using gorego::testing::TempDir;

namespace {
ObjectKey key(int i) { return {Sha256::digest_of(std::to_string(i)), Tree::kCas}; }

/// A backend that only offers a scan, with access times chosen by the test.
struct FakeScan {
  std::vector<std::tuple<ObjectKey, std::uint64_t, std::int64_t>> entries;
  template <class F>
  void for_each_entry(F&& fn) {
    for (const auto& [k, n, t] : entries) fn(k, n, t);
  }
};
}  // namespace

TEST_CASE("Lru: evicts least recently used first, touched keys survive", "[eviction]") {
  Lru lru;
  FakeScan unused;
  for (int i = 0; i < 5; ++i) lru.on_insert(key(i), 100);
  lru.on_access(key(0));  // 0 becomes the most recent
  lru.on_erase(key(2));
  const auto victims = lru.select_victims(150, unused);
  REQUIRE(victims.size() == 2);
  CHECK(victims[0] == key(1));
  CHECK(victims[1] == key(3));
  const auto rest = lru.select_victims(1000, unused);
  REQUIRE(rest.size() == 2);
  CHECK(rest[0] == key(4));
  CHECK(rest[1] == key(0));
  CHECK(lru.select_victims(1, unused).empty());
}

TEST_CASE("AtimeJanitor: picks the oldest access times until enough bytes are freed", "[eviction]") {
  AtimeJanitor janitor;
  FakeScan scan;
  scan.entries = {{key(0), 100, 50}, {key(1), 100, 10}, {key(2), 100, 30}, {key(3), 100, 20}};
  const auto victims = janitor.select_victims(150, scan);
  REQUIRE(victims.size() == 2);
  CHECK(victims[0] == key(1));
  CHECK(victims[1] == key(3));
}

TEST_CASE("ShardedDisk: blobs live at cas/ab/cd/<hash> and survive a restart", "[disk]") {
  TempDir dir;
  const std::string blob = make_blob(3, 5000);
  const Digest d = Sha256::digest_of(blob);
  const std::string hex = d.hex();
  {
    auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
    REQUIRE(store->put(d, blob).ok());
    REQUIRE(store->put_action(d, "result").ok());
  }
  CHECK(std::filesystem::exists(dir.path() / "cas" / hex.substr(0, 2) / hex.substr(2, 2) / hex));
  test::DiskLru reopened(ShardedDisk::Options{.root = dir.path()}, {.max_bytes = 1 << 30});
  REQUIRE(reopened.start().ok());
  // Correct answers even before the index load is known to be complete.
  CHECK(reopened.contains(d));
  CHECK(*reopened.get(d) == blob);
  CHECK(*reopened.get_action(d) == "result");
  reopened.wait_loaded();
  CHECK(reopened.index_size() == 2);
  CHECK(reopened.usage_bytes() == 2 * 8192 - 4096);  // 5000 B → 8 KiB, "result" → 4 KiB
}

TEST_CASE("ShardedDisk: a second process cannot open the same directory", "[disk]") {
  TempDir dir;
  auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
  ShardedDisk other(ShardedDisk::Options{.root = dir.path()});
  const Status s = other.init();
  CHECK(s.code() == Code::kFailedPrecondition);
  CHECK_THAT(s.message(), Catch::Matchers::Contains("in use"));
}

TEST_CASE("ShardedDisk: leftovers of interrupted uploads are removed at start", "[disk]") {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "tmp");
  std::ofstream(dir.path() / "tmp" / "partial.tmp") << "half a blob";
  auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
  CHECK(std::filesystem::is_empty(dir.path() / "tmp"));
}

TEST_CASE("Local: a corrupt file is dropped, not served", "[disk]") {
  TempDir dir;
  auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
  const std::string blob = make_blob(4, 20000);
  const Digest d = Sha256::digest_of(blob);
  REQUIRE(store->put(d, blob).ok());
  const std::string path = store->backend().path({d, Tree::kCas});
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10000);
    f.put('X');
  }
  auto got = store->get(d);
  REQUIRE_FALSE(got.ok());
  CHECK(got.error().code() == Code::kNotFound);
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK_FALSE(store->contains(d));
  CHECK(store->usage_bytes() == 0);

  // The same through a stream: the reader ends in DATA_LOSS instead of success.
  REQUIRE(store->put(d, blob).ok());
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(19999);
    f.put('X');
  }
  auto r = store->open_read(d, 0);
  REQUIRE(r.ok());
  std::array<char, 65536> buf{};
  auto n = r->read(buf);
  CHECK_FALSE(n.ok());
  CHECK(n.error().code() == Code::kDataLoss);
  CHECK_FALSE(store->contains(d));
}

TEST_CASE("Local: a truncated file is a miss", "[disk]") {
  TempDir dir;
  auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
  const std::string blob = make_blob(5, 9000);
  const Digest d = Sha256::digest_of(blob);
  REQUIRE(store->put(d, blob).ok());
  std::filesystem::resize_file(store->backend().path({d, Tree::kCas}), 100);
  CHECK(store->get(d).error().code() == Code::kNotFound);
  CHECK(store->open_read(d, 0).error().code() == Code::kNotFound);
}

TEST_CASE("AtimeJanitor: force_update_atime marks reads so read blobs survive", "[disk][eviction]") {
  TempDir dir;
  test::DiskAtime store(ShardedDisk::Options{.root = dir.path(), .fsync = false},
                        AtimeJanitor::Options{.scan_interval = std::chrono::hours(1),
                                              .force_update_atime = true,
                                              .low_watermark = 0.5},
                        {.max_bytes = 10 * 4096});
  REQUIRE(store.start().ok());
  store.wait_loaded();
  std::vector<Digest> ds;
  for (int i = 0; i < 10; ++i) {
    const std::string b = make_blob(i, 4000);
    ds.push_back(Sha256::digest_of(b));
    REQUIRE(store.put(ds.back(), b).ok());
  }
  // Make every file look old, then read blob 0: its atime becomes now.
  for (const Digest& d : ds) {
    const struct timespec old[2] = {{1000, 0}, {1000, 0}};
    REQUIRE(::utimensat(AT_FDCWD, store.backend().path({d, Tree::kCas}).c_str(), old, 0) == 0);
  }
  REQUIRE(store.get(ds[0]).ok());
  const std::string extra = make_blob(99, 4000);
  REQUIRE(store.put(Sha256::digest_of(extra), extra).ok());  // needs room: a scan runs
  CHECK(store.contains(ds[0]));
  CHECK(store.usage_bytes() <= 10 * 4096);
  int evicted = 0;
  for (const Digest& d : ds) evicted += store.contains(d) ? 0 : 1;
  CHECK(evicted >= 5);  // freed down to the low watermark, not just one blob
}
