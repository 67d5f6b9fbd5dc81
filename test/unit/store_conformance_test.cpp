// One conformance suite for every store stack (BlobStore + ActionStore semantics).
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "stacks.hpp"

using namespace gorego;
using gorego::testing::make_blob;
using gorego::testing::TempDir;

namespace {

std::string read_all(auto& reader) {
  std::string out;
  std::array<char, 7000> buf{};  // an odd size, so reads straddle chunk boundaries
  while (true) {
    auto n = reader.read(buf);
    REQUIRE(n.ok());
    if (*n == 0) return out;
    out.append(buf.data(), *n);
  }
}

constexpr std::uint64_t kBig = std::uint64_t{1} << 30;

}  // namespace

TEMPLATE_LIST_TEST_CASE("Store: put then get returns the same bytes", "[store]", test::AllStacks) {
  INFO(TestType::kName);
  TempDir dir;
  auto store = test::make_store<TestType>(dir.path(), kBig);
  for (std::size_t size : {1UL, 100UL, 4096UL, 70000UL}) {
    const std::string blob = make_blob(size, size);
    const Digest d = Sha256::digest_of(blob);
    CHECK_FALSE(store->contains(d));
    REQUIRE(store->put(d, blob).ok());
    CHECK(store->contains(d));
    auto got = store->get(d);
    REQUIRE(got.ok());
    CHECK(*got == blob);
    CHECK(store->put(d, blob).ok());  // idempotent
  }
}

TEMPLATE_LIST_TEST_CASE("Store: the empty blob is always present", "[store]", test::AllStacks) {
  INFO(TestType::kName);
  TempDir dir;
  auto store = test::make_store<TestType>(dir.path(), kBig);
  const Digest empty = Sha256::digest_of("");
  CHECK(store->contains(empty));
  auto got = store->get(empty);
  REQUIRE(got.ok());
  CHECK(got->empty());
  auto r = store->open_read(empty, 0);
  REQUIRE(r.ok());
  CHECK(r->remaining() == 0);
  CHECK(store->open_read(empty, 1).error().code() == Code::kOutOfRange);
}

TEMPLATE_LIST_TEST_CASE("Store: find_missing keeps request order and skips present blobs",
                        "[store]", test::AllStacks) {
  INFO(TestType::kName);
  TempDir dir;
  auto store = test::make_store<TestType>(dir.path(), kBig);
  std::vector<Digest> ds;
  for (int i = 0; i < 10; ++i) {
    const std::string blob = make_blob(100 + i, 50);
    ds.push_back(Sha256::digest_of(blob));
    if (i % 3 == 0) REQUIRE(store->put(ds.back(), blob).ok());
  }
  const auto missing = store->find_missing(ds);
  std::vector<Digest> expected;
  for (int i = 0; i < 10; ++i) {
    if (i % 3 != 0) expected.push_back(ds[i]);
  }
  CHECK(missing == expected);
}

TEMPLATE_LIST_TEST_CASE("Store: data that does not match its digest is refused and not stored",
                        "[store]", test::AllStacks) {
  INFO(TestType::kName);
  TempDir dir;
  auto store = test::make_store<TestType>(dir.path(), kBig);
  const std::string blob = make_blob(1, 1000);
  const Digest d = Sha256::digest_of(blob);
  std::string wrong = blob;
  wrong[500] ^= 1;
  const Status s = store->put(d, wrong);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK_THAT(s.message(), Catch::Matchers::Contains(d.hex()));
  CHECK_FALSE(store->contains(d));
  CHECK(store->put(d, blob.substr(0, 999)).code() == Code::kInvalidArgument);
  CHECK_FALSE(store->contains(d));
  CHECK(store->get(d).error().code() == Code::kNotFound);
  // Once stored, wrong bytes for the same digest are still refused.
  REQUIRE(store->put(d, blob).ok());
  CHECK(store->put(d, wrong).code() == Code::kInvalidArgument);
  CHECK(*store->get(d) == blob);
}

TEMPLATE_LIST_TEST_CASE("Store: streamed writes are verified and published at commit",
                        "[store]", test::AllStacks) {
  INFO(TestType::kName);
  TempDir dir;
  auto store = test::make_store<TestType>(dir.path(), kBig);
  const std::string blob = make_blob(7, 300000);
  const Digest d = Sha256::digest_of(blob);
  {
    auto w = store->open_write(d);
    REQUIRE(w.ok());
    for (std::size_t off = 0; off < blob.size(); off += 65536) {
      REQUIRE(w->append(std::string_view(blob).substr(off, 65536)).ok());
      CHECK_FALSE(store->contains(d));  // nothing visible before commit
    }
    CHECK(w->written() == blob.size());
    REQUIRE(w->commit().ok());
  }
  CHECK(store->contains(d));
  for (std::uint64_t offset : {0UL, 1UL, 65536UL, 299999UL, 300000UL}) {
    auto r = store->open_read(d, offset);
    REQUIRE(r.ok());
    CHECK(r->remaining() == blob.size() - offset);
    CHECK(read_all(*r) == blob.substr(offset));
  }
  CHECK(store->open_read(d, 300001).error().code() == Code::kOutOfRange);
}

TEMPLATE_LIST_TEST_CASE("Store: a bad streamed write leaves nothing behind", "[store]",
                        test::AllStacks) {
  INFO(TestType::kName);
  TempDir dir;
  auto store = test::make_store<TestType>(dir.path(), kBig);
  const std::string blob = make_blob(8, 10000);
  const Digest d = Sha256::digest_of(blob);
  {
    auto w = store->open_write(d);
    REQUIRE(w.ok());
    REQUIRE(w->append(blob).ok());
    CHECK(w->append("x").code() == Code::kInvalidArgument);  // past the digest's size
  }
  {
    auto w = store->open_write(d);
    REQUIRE(w.ok());
    REQUIRE(w->append(blob.substr(0, 9999)).ok());
    CHECK(w->commit().code() == Code::kInvalidArgument);  // short
  }
  {
    auto w = store->open_write(d);
    REQUIRE(w.ok());
    std::string wrong = blob;
    wrong[0] ^= 1;
    REQUIRE(w->append(wrong).ok());
    const Status s = w->commit();
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK_THAT(s.message(), Catch::Matchers::Contains("hashes to"));
  }
  {
    auto w = store->open_write(d);  // abandoned without commit
    REQUIRE(w.ok());
    REQUIRE(w->append(blob).ok());
  }
  CHECK_FALSE(store->contains(d));
  CHECK(test::local_of(*store).usage_bytes() == 0);
  if constexpr (test::kOnDisk<TestType>) {
    CHECK(testing::upload_leftovers(dir.path()) == 0);
  }
}

TEMPLATE_LIST_TEST_CASE("Store: action results are stored, replaced and missed", "[store]",
                        test::AllStacks) {
  INFO(TestType::kName);
  TempDir dir;
  auto store = test::make_store<TestType>(dir.path(), kBig);
  const Digest action = Sha256::digest_of("action");
  CHECK(store->get_action(action).error().code() == Code::kNotFound);
  REQUIRE(store->put_action(action, "first").ok());
  CHECK(*store->get_action(action) == "first");
  REQUIRE(store->put_action(action, "second result").ok());
  CHECK(*store->get_action(action) == "second result");
  CHECK_FALSE(store->contains(action));  // the AC and the CAS are separate trees
}

TEMPLATE_LIST_TEST_CASE("Store: the size limit holds and every blob served is correct",
                        "[store][eviction]", test::AllStacks) {
  INFO(TestType::kName);
  TempDir dir;
  constexpr std::uint64_t kLimit = 1 << 20;
  auto store = test::make_store<TestType>(dir.path(), kLimit);
  std::vector<std::pair<Digest, std::string>> blobs;
  for (int i = 0; i < 96; ++i) {  // 3x the limit in 32 KiB blobs
    std::string b = make_blob(1000 + i, 32768);
    const Digest d = Sha256::digest_of(b);
    REQUIRE(store->put(d, b).ok());
    CHECK(test::local_of(*store).usage_bytes() <= kLimit);
    blobs.emplace_back(d, std::move(b));
  }
  int present = 0;
  for (const auto& [d, b] : blobs) {
    auto got = store->get(d);
    if (got) {
      ++present;
      CHECK(*got == b);
    } else {
      CHECK(got.error().code() == Code::kNotFound);
    }
  }
  CHECK(present > 0);
  CHECK(present <= 32);
  CHECK(store->contains(blobs.back().first));  // the newest survives
  // A blob larger than the whole cache is refused up front.
  const std::string huge = make_blob(5, kLimit + 1);
  CHECK(store->put(Sha256::digest_of(huge), huge).code() == Code::kResourceExhausted);
}

TEMPLATE_LIST_TEST_CASE("Store: concurrent writers and readers agree", "[store][threads]",
                        test::AllStacks) {
  INFO(TestType::kName);
  TempDir dir;
  auto store = test::make_store<TestType>(dir.path(), kBig);
  constexpr int kThreads = 6;
  constexpr int kBlobs = 40;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBlobs; ++i) {
        const std::string b = make_blob(i, 1000 + i);  // every thread writes the same blobs
        const Digest d = Sha256::digest_of(b);
        if (!store->put(d, b).ok()) ++bad;
        auto got = store->get(d);
        if (!got || *got != b) ++bad;
        if (t % 2 == 0 && !store->put_action(d, fmt::format("result {}", i)).ok()) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(bad == 0);
  CHECK(test::local_of(*store).index_size() == kBlobs + kBlobs);  // CAS + AC entries
}

TEMPLATE_LIST_TEST_CASE("Store: put_batch stores, refuses and reports each blob on its own", "[store]",
                        test::AllStacks) {
  TempDir dir;
  auto store = test::make_store<TestType>(dir.path(), 1 << 30, /*fsync=*/true);
  const std::string a = make_blob(31, 3000);
  const std::string b = make_blob(32, 70000);
  const std::string present = make_blob(33, 10);
  REQUIRE(store->put(Sha256::digest_of(present), present).ok());
  const std::string wrong = "not the bytes of digest a";
  const std::vector<BlobWrite> batch = {
      {Sha256::digest_of(a), a},
      {Sha256::digest_of(a), wrong},  // wrong bytes for a digest the batch also stores
      {Sha256::digest_of(b), b},
      {Sha256::digest_of(""), ""},
      {Sha256::digest_of(present), present},
      {Sha256::digest_of(present), wrong},  // wrong bytes for a stored digest
      {Sha256::digest_of(a), a},            // a duplicate
  };
  const std::vector<Status> out = store->put_batch(batch);
  REQUIRE(out.size() == batch.size());
  CHECK(out[0].ok());
  CHECK(out[1].code() == Code::kInvalidArgument);
  CHECK(out[2].ok());
  CHECK(out[3].ok());
  CHECK(out[4].ok());
  CHECK(out[5].code() == Code::kInvalidArgument);
  CHECK(out[6].ok());
  CHECK(*store->get(Sha256::digest_of(a)) == a);
  CHECK(*store->get(Sha256::digest_of(b)) == b);
  CHECK(*store->get(Sha256::digest_of(present)) == present);
  auto& local = test::local_of(*store);
  CHECK(local.usage_bytes() == local.backend().footprint(a.size()) + local.backend().footprint(b.size()) +
                                   local.backend().footprint(present.size()));
  if constexpr (test::kOnDisk<TestType>) CHECK(testing::upload_leftovers(dir.path()) == 0);
}
