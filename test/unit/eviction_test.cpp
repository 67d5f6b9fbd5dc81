// Eviction policies on their own, and the disk tier's restart and corruption behaviour.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <random>
#include <unordered_set>

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

TEST_CASE("ShardedDisk: a verified upload replaces whatever file had its name", "[disk]") {
  TempDir dir;
  const std::string blob = make_blob(12, 3000);
  const Digest d = Sha256::digest_of(blob);
  for (const bool fsync : {false, true}) {
    ShardedDisk disk(ShardedDisk::Options{.root = dir.path() / (fsync ? "sync" : "nosync"), .fsync = fsync});
    REQUIRE(disk.init().ok());
    const std::string path = disk.path({d, Tree::kCas});
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << "damaged";
    REQUIRE(disk.put(d, blob).ok());
    CHECK(*disk.get(d, /*verify=*/true) == blob);
    CHECK(testing::upload_leftovers(dir.path()) == 0);
  }
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
  const std::string blob = make_blob(9, 5000);
  {
    auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
    auto w = store->open_write(Sha256::digest_of(blob));
    REQUIRE(w.ok());
    REQUIRE(w->append(std::string_view(blob).substr(0, 100)).ok());
    // A CAS upload writes an unnamed (O_TMPFILE) file: a crash now would leave nothing.
    CHECK(testing::upload_leftovers(dir.path()) == 0);
  }
  // What an interrupted named write leaves (an upload replacing a name, between its link and
  // its rename, or any upload on a filesystem without O_TMPFILE), and the temporary
  // directory of older versions.
  const std::filesystem::path leaf = dir.path() / "cas" / "ab" / "cd";
  std::filesystem::create_directories(leaf);
  std::ofstream(leaf / ".tmp-0123456789abcdef-7") << "half an entry";
  std::filesystem::create_directories(dir.path() / "tmp");
  std::ofstream(dir.path() / "tmp" / "partial.tmp") << "half a blob";
  CHECK(testing::upload_leftovers(dir.path()) == 1);
  auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);  // waits for the walk
  CHECK(testing::upload_leftovers(dir.path()) == 0);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "tmp"));
  CHECK(store->index_size() == 0);
}

TEST_CASE("Local: a corrupt file is dropped, not served (verify_reads always)", "[disk]") {
  TempDir dir;
  auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30, false, VerifyReads::kAlways);
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
  const std::string blob = make_blob(5, 90000);  // over 64 KiB: not held in memory
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
  store.wait_walked();  // the pass after the walk must not run after the files are aged below
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

TEST_CASE("AtimeJanitor: a presence check counts as use, though it leaves the file's atime alone", "[disk][eviction]") {
  TempDir dir;
  test::DiskAtime store(ShardedDisk::Options{.root = dir.path(), .fsync = false},
                        AtimeJanitor::Options{.scan_interval = std::chrono::hours(1), .low_watermark = 0.5},
                        {.max_bytes = 10 * 4096});
  REQUIRE(store.start().ok());
  store.wait_walked();
  std::vector<Digest> ds;
  for (int i = 0; i < 10; ++i) {
    const std::string b = make_blob(i, 4000);
    ds.push_back(Sha256::digest_of(b));
    REQUIRE(store.put(ds.back(), b).ok());
  }
  // By file atime blob 0 is the oldest, by far; then a client asks only whether it is there
  // (FindMissingBlobs before a build): no read, so no atime update, on any mount.
  for (std::size_t i = 0; i < ds.size(); ++i) {
    const struct timespec t[2] = {{static_cast<time_t>(1000 + i), 0}, {static_cast<time_t>(1000 + i), 0}};
    REQUIRE(::utimensat(AT_FDCWD, store.backend().path({ds[i], Tree::kCas}).c_str(), t, 0) == 0);
  }
  REQUIRE(store.find_missing(std::span(ds.data(), 1)).empty());
  const std::string extra = make_blob(99, 4000);
  REQUIRE(store.put(Sha256::digest_of(extra), extra).ok());  // needs room: a scan runs
  CHECK(store.contains(ds[0]));
  int evicted = 0;
  for (const Digest& d : ds) evicted += store.contains(d) ? 0 : 1;
  CHECK(evicted >= 5);
}

TEST_CASE("Local: with verify_reads first, bytes found on disk at start are re-hashed on first read", "[disk]") {
  TempDir dir;
  const std::string a = make_blob(6, 20000);
  const std::string b = make_blob(7, 100000);  // streamed: not held in memory
  const std::string c = make_blob(8, 20000);
  std::string pa;
  std::string pb;
  {
    auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
    for (const std::string* blob : {&a, &b, &c}) REQUIRE(store->put(Sha256::digest_of(*blob), *blob).ok());
    pa = store->backend().path({Sha256::digest_of(a), Tree::kCas});
    pb = store->backend().path({Sha256::digest_of(b), Tree::kCas});
  }
  for (const std::string& path : {pa, pb}) {  // damage both while no process owns the directory
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(5000);
    f.put('X');
  }
  auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
  CHECK(store->get(Sha256::digest_of(a)).error().code() == Code::kNotFound);
  CHECK_FALSE(std::filesystem::exists(pa));
  auto r = store->open_read(Sha256::digest_of(b), 0);
  REQUIRE(r.ok());
  std::array<char, 65536> buf{};
  auto n = r->read(buf);
  while (n.ok() && *n > 0) n = r->read(buf);
  CHECK(n.error().code() == Code::kDataLoss);
  CHECK_FALSE(store->contains(Sha256::digest_of(b)));
  auto good = store->get(Sha256::digest_of(c));
  REQUIRE(good.ok());
  CHECK(*good == c);
}

TEST_CASE("SampledLru: below exact_below it is exact LRU, and presence checks count as use", "[eviction]") {
  using MemSampled = Local<MemoryStore, SampledLru>;
  MemSampled store(MemoryStore::Options{}, MemSampled::Options{.max_bytes = 500});
  REQUIRE(store.start().ok());
  store.wait_loaded();
  std::vector<std::string> blobs;
  for (int i = 0; i < 6; ++i) blobs.push_back(make_blob(100 + i, 100));
  for (int i = 0; i < 5; ++i) REQUIRE(store.put(Sha256::digest_of(blobs[i]), blobs[i]).ok());
  REQUIRE(store.find_missing(std::array{Sha256::digest_of(blobs[0])}).empty());  // 0 is now the most recent
  REQUIRE(store.get(Sha256::digest_of(blobs[1])).ok());                       // then 1
  REQUIRE(store.put(Sha256::digest_of(blobs[5]), blobs[5]).ok());             // evicts 2, the oldest
  CHECK(store.contains(Sha256::digest_of(blobs[0])));
  CHECK(store.contains(Sha256::digest_of(blobs[1])));
  CHECK_FALSE(store.contains(Sha256::digest_of(blobs[2])));
  CHECK(store.contains(Sha256::digest_of(blobs[3])));
  CHECK(store.usage_bytes() == 500);
}

namespace {
/// An index-like source of `n` objects of 1 byte whose stamp is their number.
struct FakeIndex {
  std::vector<IndexedObject> objects;
  std::mt19937_64 rng{42};
  explicit FakeIndex(int n) {
    for (int i = 0; i < n; ++i) objects.push_back({key(i), 1, static_cast<std::uint64_t>(i) + 1});
  }
  [[nodiscard]] std::size_t indexed() const { return objects.size(); }
  void sample(std::size_t k, std::vector<IndexedObject>& out) {
    for (std::size_t i = 0; i < k; ++i) out.push_back(objects[rng() % objects.size()]);
  }
  template <class F>
  void for_each_indexed(F&& fn) {
    for (const auto& o : objects) fn(o);
  }
};
}  // namespace

TEST_CASE("SampledLru: above exact_below, victims come from the least recently used", "[eviction]") {
  SampledLru policy;
  FakeIndex source(20000);
  const auto victims = policy.select_victims(2000, source);
  REQUIRE(victims.size() == 2000);
  std::unordered_map<ObjectKey, std::uint64_t> stamp;
  for (const auto& o : source.objects) stamp[o.key] = o.stamp;
  std::unordered_set<ObjectKey> distinct(victims.begin(), victims.end());
  CHECK(distinct.size() == victims.size());
  // The least of 16 random draws is in the newer half with probability 2^-16: of 2000
  // victims, expect none; allow 1 %.
  const auto old = std::count_if(victims.begin(), victims.end(), [&](const ObjectKey& k) { return stamp[k] <= 10000; });
  CHECK(old >= 1980);
}

TEST_CASE("Index: agrees with a hash map under random inserts, updates and erases", "[index]") {
  Index index;
  std::unordered_map<ObjectKey, std::uint64_t> model;
  std::mt19937_64 rng(7);
  for (int step = 0; step < 200000; ++step) {
    const int i = static_cast<int>(rng() % 30000);
    const ObjectKey k{Digest{Sha256::digest_of(std::to_string(i)).hash, i}, i % 10 == 0 ? Tree::kAc : Tree::kCas};
    switch (rng() % 4) {
      case 0:
      case 1: {
        const std::uint64_t bytes = k.tree == Tree::kCas ? static_cast<std::uint64_t>(i) : rng() % 1000;
        CHECK(index.insert(k, {.bytes = bytes, .stamp = 1}) == model.emplace(k, bytes).second);
        break;
      }
      case 2: {
        const auto it = model.find(k);
        const auto erased = index.erase(k);
        CHECK(erased.has_value() == (it != model.end()));
        if (it != model.end()) {
          CHECK(*erased == it->second);
          model.erase(it);
        }
        break;
      }
      default:
        CHECK(index.touch(k, 2).has_value() == model.contains(k));
    }
  }
  CHECK(index.size() == model.size());
  std::size_t seen = 0;
  index.for_each([&](const IndexedObject& o) {
    ++seen;
    const auto it = model.find(o.key);
    REQUIRE(it != model.end());
    CHECK(o.bytes == it->second);
  });
  CHECK(seen == model.size());
  std::vector<IndexedObject> drawn;
  std::mt19937_64 r2(1);
  index.sample(r2, 100, drawn);
  CHECK(drawn.size() == 100);
  for (const auto& o : drawn) CHECK(model.contains(o.key));
}

TEST_CASE("Index: an upsert keeps one entry; verified and stamps are per entry", "[index]") {
  Index index;
  const ObjectKey cas{Sha256::digest_of("x"), Tree::kCas};
  const ObjectKey ac{Sha256::digest_of("y"), Tree::kAc};
  CHECK_FALSE(index.upsert(cas, {.bytes = 1, .stamp = 5, .verified = false}));
  CHECK_FALSE(index.touch(cas, 6)->verified);
  index.set_verified(cas.digest);
  CHECK(index.touch(cas, 7)->verified);
  CHECK_FALSE(index.upsert(ac, {.bytes = 300, .stamp = 1}));
  CHECK(index.upsert(ac, {.bytes = 400, .stamp = 2}) == std::optional<std::uint64_t>(300));
  CHECK(index.size() == 2);
  std::map<std::uint64_t, std::uint64_t> stamps;  // bytes → stamp
  index.for_each([&](const IndexedObject& o) { stamps[o.bytes] = o.stamp; });
  CHECK(stamps == std::map<std::uint64_t, std::uint64_t>{{1, 7}, {400, 2}});
}

TEST_CASE("Index: erase_and_delete leaves the file of a key being written", "[index]") {
  Index index;
  const ObjectKey k = key(7);
  int deleted = 0;
  auto del = [&] { ++deleted; };
  REQUIRE(index.insert(k, {.bytes = 10, .stamp = 1}));
  index.begin_write(k);  // an upload of the same blob is publishing its file
  const auto stored = static_cast<std::uint64_t>(k.digest.size);  // a CAS entry's stored size
  CHECK(index.erase_and_delete(k, del) == stored);
  CHECK(deleted == 0);  // its file must survive the eviction of the old entry
  index.begin_write(k);  // a second writer of the same key
  index.end_write(k);
  CHECK_FALSE(index.erase_and_delete(k, del).has_value());
  CHECK(deleted == 0);  // one writer is still in progress
  index.end_write(k);
  REQUIRE(index.insert(k, {.bytes = 10, .stamp = 2}));
  CHECK(index.erase_and_delete(k, del) == stored);
  CHECK(deleted == 1);  // no writer: entry and file go together
}

TEST_CASE("Local: an eviction during an upload of the same blob keeps the uploaded file", "[disk]") {
  TempDir dir;
  test::DiskLru store(ShardedDisk::Options{.root = dir.path(), .fsync = false},
                      test::DiskLru::Options{.max_bytes = 3 * 4096, .memory_cache_bytes = 0});
  REQUIRE(store.start().ok());
  store.wait_walked();
  const std::string a = make_blob(60, 3000);
  const Digest da = Sha256::digest_of(a);
  REQUIRE(store.put(da, a).ok());
  auto w = store.open_write(da);  // a second upload of `a` (ByteStream does not ask the index)
  REQUIRE(w.ok());
  REQUIRE(w->append(a).ok());
  for (int i = 0; i < 3; ++i) {  // room for the new blobs evicts `a`, the least recent
    const std::string b = make_blob(61 + i, 3000);
    REQUIRE(store.put(Sha256::digest_of(b), b).ok());
  }
  REQUIRE_FALSE(store.contains(da));
  CHECK(std::filesystem::exists(store.backend().path({da, Tree::kCas})));  // left for the writer
  REQUIRE(w->commit().ok());
  CHECK(store.contains(da));
  CHECK(*store.get(da) == a);
}

TEST_CASE("Index: at most 100 bytes per CAS entry at any fill", "[index]") {
  Index index;
  std::size_t worst = 0;
  for (int i = 1; i <= 300000; ++i) {
    index.insert({Digest{Sha256::digest_of(std::to_string(i)).hash, i}, Tree::kCas}, {.bytes = 1, .stamp = 1});
    if (i % 10000 == 0) worst = std::max(worst, index.memory_bytes() / index.size());
  }
  CHECK(worst <= 100);
}

TEST_CASE("Local: ActionCache entries are held in memory within their budget", "[disk]") {
  TempDir dir;
  test::DiskLru store(ShardedDisk::Options{.root = dir.path(), .fsync = false},
                      test::DiskLru::Options{.max_bytes = 1 << 30, .ac_memory_bytes = 1000});
  REQUIRE(store.start().ok());
  store.wait_loaded();
  const Digest a = Sha256::digest_of("action a");
  const Digest b = Sha256::digest_of("action b");
  const Digest c = Sha256::digest_of("action c");
  REQUIRE(store.put_action(a, std::string(500, 'a')).ok());
  REQUIRE(store.put_action(b, std::string(400, 'b')).ok());
  REQUIRE(store.put_action(c, std::string(300, 'c')).ok());  // over the budget: disk only
  for (const Digest& d : {a, b, c}) store.backend().remove({d, Tree::kAc});  // behind Local's back
  CHECK(*store.get_action(a) == std::string(500, 'a'));  // served without the file
  CHECK(*store.get_action(b) == std::string(400, 'b'));
  CHECK(store.get_action(c).error().code() == Code::kNotFound);
  REQUIRE(store.put_action(a, std::string(200, 'A')).ok());  // a replacement replaces the held copy
  CHECK(*store.get_action(a) == std::string(200, 'A'));
  REQUIRE(store.put_action(c, std::string(300, 'C')).ok());  // 200 + 400 + 300 fit now
  store.backend().remove({c, Tree::kAc});
  CHECK(*store.get_action(c) == std::string(300, 'C'));
}

namespace {
/// `n` blobs of 100 bytes (seeds from `seed` on) that fall into the same BlobCache shard.
std::pair<std::vector<Digest>, std::vector<std::string>> one_shard_blobs(std::size_t n, int seed) {
  std::vector<Digest> ds;
  std::vector<std::string> blobs;
  for (int i = seed; ds.size() < n; ++i) {
    std::string b = make_blob(i, 100);
    const Digest d = Sha256::digest_of(b);
    if (!ds.empty() && d.hash[1] % BlobCache::kShards != ds[0].hash[1] % BlobCache::kShards) continue;
    ds.push_back(d);
    blobs.push_back(std::move(b));
  }
  return {ds, blobs};
}
}  // namespace

TEST_CASE("BlobCache: holds within its capacity, least recently used out", "[cache]") {
  // 16 shards of 1000 bytes; every entry costs its size plus kEntryOverhead.
  BlobCache cache({.capacity_bytes = 16 * 1000, .max_entry_bytes = 600});
  CHECK(cache.admits(600));
  CHECK_FALSE(cache.admits(601));
  std::vector<Digest> ds;
  std::vector<std::string> blobs;
  for (int i = 0; i < 400; ++i) {
    blobs.push_back(make_blob(300 + i, 200));
    ds.push_back(Sha256::digest_of(blobs.back()));
    cache.put(ds.back(), blobs.back());
    CHECK(cache.bytes() <= cache.capacity());
  }
  std::size_t held = 0;
  for (std::size_t i = 0; i < ds.size(); ++i) {
    if (auto b = cache.get(ds[i])) {
      CHECK(*b == blobs[i]);
      ++held;
    }
  }
  CHECK(held > 0);
  CHECK(held < ds.size());  // 400 x 360 bytes do not fit in 16000
  CHECK(cache.hits() == held);
  CHECK(cache.misses() == ds.size() - held);

  // Within one shard: the entry used last survives a put that needs room.
  BlobCache one({.capacity_bytes = 16 * (2 * (100 + BlobCache::kEntryOverhead)), .max_entry_bytes = 100});
  auto [same, data] = one_shard_blobs(3, 1000);
  one.put(same[0], data[0]);
  one.put(same[1], data[1]);
  REQUIRE(one.get(same[0]) != nullptr);  // 0 is now the most recent
  one.put(same[2], data[2]);              // evicts 1
  CHECK(one.get(same[0]) != nullptr);
  CHECK(one.get(same[1]) == nullptr);
  CHECK(one.get(same[2]) != nullptr);
  one.erase(same[2]);
  CHECK(one.get(same[2]) == nullptr);
  CHECK(one.bytes() == 100 + BlobCache::kEntryOverhead);

  // Offers (bytes read from disk) enter while there is room; once full, one in kAdmitOneIn.
  BlobCache admit({.capacity_bytes = 16 * 4 * (100 + BlobCache::kEntryOverhead), .max_entry_bytes = 100});
  auto [shard, bytes] = one_shard_blobs(20, 2000);  // room for 4 of them
  for (std::size_t i = 0; i < shard.size(); ++i) admit.offer(shard[i], bytes[i]);
  std::size_t old_held = 0;
  std::size_t new_held = 0;
  for (std::size_t i = 0; i < shard.size(); ++i) {
    if (admit.get(shard[i]) == nullptr) continue;
    (i < 4 ? old_held : new_held) += 1;
  }
  CHECK(new_held == 16 / BlobCache::kAdmitOneIn);  // offers 0 and 8 of the 16 made when full
  CHECK(old_held == 4 - new_held);                 // each admission evicted the oldest

  BlobCache off({.capacity_bytes = 0});
  off.put(ds[0], blobs[0]);
  CHECK(off.get(ds[0]) == nullptr);
  CHECK(off.bytes() == 0);
}

TEST_CASE("Local: small verified blobs are served from memory; the index decides presence", "[disk][cache]") {
  TempDir dir;
  const std::string blob = make_blob(21, 3000);
  const Digest d = Sha256::digest_of(blob);
  {
    auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
    REQUIRE(store->put(d, blob).ok());
    CHECK(store->memory_cache().bytes() == blob.size() + BlobCache::kEntryOverhead);
    const std::string path = store->backend().path({d, Tree::kCas});
    std::filesystem::remove(path);  // the file is gone; its verified bytes are in memory
    CHECK(*store->get(d) == blob);
    auto r = store->open_read(d, 1000);
    REQUIRE(r.ok());
    CHECK(r->remaining() == 2000);
    std::array<char, 4096> buf{};
    auto n = r->read(buf);
    REQUIRE(n.ok());
    CHECK(std::string_view(buf.data(), *n) == std::string_view(blob).substr(1000));
    CHECK(store->open_read(d, 3001).error().code() == Code::kOutOfRange);  // known from the digest
    CHECK(store->memory_cache().hits() == 2);  // the get and the read at 1000; not the bad offset
    std::ofstream(path, std::ios::binary) << blob;  // restore the file for the restart below
  }
  // A new process starts with an empty cache: the first read goes to disk (and verifies),
  // the next one is served from memory.
  auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
  CHECK(store->memory_cache().bytes() == 0);
  CHECK(*store->get(d) == blob);
  CHECK(store->memory_cache().misses() == 1);
  auto r = store->open_read(d, 0);
  REQUIRE(r.ok());
  CHECK(store->memory_cache().hits() == 1);
  store->maintain();  // under the limit: nothing evicted
  CHECK(store->contains(d));

  // Evicted by the policy: gone from the index and from memory.
  test::DiskLru small(ShardedDisk::Options{.root = dir.path() / "small", .fsync = false},
                      test::DiskLru::Options{.max_bytes = 3 * 4096});
  REQUIRE(small.start().ok());
  small.wait_walked();
  std::vector<Digest> ds;
  for (int i = 0; i < 4; ++i) {
    const std::string b = make_blob(40 + i, 3000);
    ds.push_back(Sha256::digest_of(b));
    REQUIRE(small.put(ds.back(), b).ok());
  }
  CHECK_FALSE(small.contains(ds[0]));  // the least recent went to make room
  CHECK(small.get(ds[0]).error().code() == Code::kNotFound);
  CHECK(small.memory_cache().bytes() <= 3 * (3000 + BlobCache::kEntryOverhead));
}

TEST_CASE("Local: a clean stop leaves an index snapshot; the next start uses it and checks it", "[disk]") {
  TempDir dir;
  const std::string a = make_blob(41, 3000);
  const std::string b = make_blob(42, 5000);
  const Digest action = Sha256::digest_of("an action");
  {
    auto store = test::make_store<test::DiskSampled>(dir.path(), 1 << 30);
    REQUIRE(store->put(Sha256::digest_of(a), a).ok());
    REQUIRE(store->put(Sha256::digest_of(b), b).ok());
    REQUIRE(store->put_action(action, "result").ok());
  }
  const auto snapshot = dir.path() / "index.snapshot";
  REQUIRE(std::filesystem::exists(snapshot));
  SECTION("used: loaded before start() returns, then pruned of what left the disk") {
    std::filesystem::remove(ShardedDisk(ShardedDisk::Options{.root = dir.path()}).path({Sha256::digest_of(b), Tree::kCas}));
    test::DiskSampled store(ShardedDisk::Options{.root = dir.path()}, test::DiskSampled::Options{.max_bytes = 1 << 30});
    REQUIRE(store.start().ok());
    CHECK(store.loaded());  // from the snapshot, without waiting for the walk
    CHECK_FALSE(std::filesystem::exists(snapshot));
    CHECK(store.contains(Sha256::digest_of(a)));
    store.wait_walked();
    CHECK(store.contains(Sha256::digest_of(a)));
    CHECK_FALSE(store.contains(Sha256::digest_of(b)));  // gone from the disk: dropped by the walk
    CHECK(*store.get_action(action) == "result");
    CHECK(store.index_size() == 2);
    CHECK(store.usage_bytes() == 2 * 4096);
    CHECK(*store.get(Sha256::digest_of(a)) == a);
  }
  SECTION("ignored when damaged: the walk loads the index instead") {
    {
      std::fstream f(snapshot, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(30);
      f.put('\x7f');
    }
    test::DiskSampled store(ShardedDisk::Options{.root = dir.path()}, test::DiskSampled::Options{.max_bytes = 1 << 30});
    REQUIRE(store.start().ok());
    store.wait_walked();
    CHECK_FALSE(std::filesystem::exists(snapshot));
    CHECK(store.index_size() == 3);
    CHECK(store.contains(Sha256::digest_of(b)));
  }
}

TEST_CASE("Local: read_cached never serves bytes that still need verifying", "[disk]") {
  TempDir dir;
  const std::string big = make_blob(51, 200000);  // over 64 KiB: read from the file
  const std::string small = make_blob(52, 3000);  // held in memory after upload
  const Digest db = Sha256::digest_of(big);
  const Digest ds = Sha256::digest_of(small);
  // Reads alternate read_cached and read; when read_cached declines, nothing is consumed.
  int served_cached = 0;
  auto drain = [&served_cached](auto& r) -> Result<std::string> {
    std::string out;
    std::array<char, 30000> buf{};
    for (bool cached = true;; cached = !cached) {
      const std::uint64_t before = r.remaining();
      if (cached) {
        auto n = r.read_cached(buf);
        if (!n) {
          if (r.remaining() != before) return error(Code::kInternal, "a declined read_cached consumed bytes");
          continue;
        }
        if (!*n) return n->error();
        ++served_cached;
        out.append(buf.data(), **n);
      } else {
        auto n = r.read(buf);
        if (!n) return n.error();
        if (*n == 0) return out;
        out.append(buf.data(), *n);
      }
    }
  };
  std::string path;
  {
    auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
    REQUIRE(store->put(db, big).ok());
    REQUIRE(store->put(ds, small).ok());
    path = store->backend().path({db, Tree::kCas});
    auto r = store->open_read(db, 0);  // verified at upload
    REQUIRE(r.ok());
    auto got = drain(*r);
    REQUIRE(got.ok());
    CHECK(*got == big);
    // Just written, so in the page cache: read_cached served some chunks, where the kernel
    // and filesystem support RWF_NOWAIT at all.
    const int fd = ::open(path.c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    char probe[16];
    iovec iov{probe, sizeof probe};
    const bool nowait = ::preadv2(fd, &iov, 1, 0, RWF_NOWAIT) == static_cast<ssize_t>(sizeof probe);
    ::close(fd);
    if (nowait) CHECK(served_cached > 0);
    served_cached = 0;
    auto held = store->open_read(ds, 100);
    REQUIRE(held.ok());
    std::array<char, 5000> buf{};
    auto n = held->read_cached(buf);
    REQUIRE(n.has_value());  // held bytes are always available without waiting
    REQUIRE(n->ok());
    CHECK(std::string_view(buf.data(), **n) == std::string_view(small).substr(100));
  }
  {
    // Found on disk at start: not verified yet, so only read() may serve it, and it hashes.
    auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
    auto r = store->open_read(db, 0);
    REQUIRE(r.ok());
    std::array<char, 4096> buf{};
    CHECK_FALSE(r->read_cached(buf).has_value());
    auto got = drain(*r);
    REQUIRE(got.ok());
    CHECK(*got == big);
    CHECK(served_cached == 0);  // every byte went through the hashing read
  }
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(150000);
    f.put('X');
  }
  auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
  auto r = store->open_read(db, 0);
  REQUIRE(r.ok());
  auto got = drain(*r);
  REQUIRE_FALSE(got.ok());
  CHECK(got.error().code() == Code::kDataLoss);
  CHECK(served_cached == 0);
  CHECK_FALSE(store->contains(db));
}
