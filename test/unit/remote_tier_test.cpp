// ProxyStore with a connected remote tier, over an in-memory upstream: read-through,
// singleflight, FindMissingBlobs authority, both write modes and upstream faults.
#include <catch2/catch.hpp>

#include <thread>

#include <gorego/testing/memory_client.hpp>

#include "stacks.hpp"

using namespace gorego;
using gorego::testing::make_blob;
using gorego::testing::MemoryClient;
using gorego::testing::TempDir;

namespace {

using Proxy = ProxyStore<test::DiskLru, Remote<MemoryClient>>;

struct Setup {
  explicit Setup(WriteMode mode = WriteMode::kThrough) {
    auto c = std::make_unique<MemoryClient>();
    client = c.get();
    store = std::make_unique<Proxy>(ShardedDisk::Options{.root = dir.path(), .fsync = false},
                                    test::DiskLru::Options{.max_bytes = std::uint64_t{1} << 30});
    store->remote().connect(std::move(c), {.mode = mode, .backoff = std::chrono::milliseconds(1)});
    REQUIRE(store->start().ok());
    store->local().wait_loaded();
  }
  TempDir dir;
  MemoryClient* client = nullptr;
  std::unique_ptr<Proxy> store;
};

std::string read_all(Proxy& s, const Digest& d) {
  auto r = s.open_read(d, 0);
  REQUIRE(r.ok());
  std::string out;
  std::array<char, 65536> buf{};
  while (true) {
    auto n = r->read(buf);
    REQUIRE(n.ok());
    if (*n == 0) return out;
    out.append(buf.data(), *n);
  }
}

}  // namespace

TEST_CASE("Remote tier: a local miss is read through once and then served locally", "[remote]") {
  Setup s;
  const std::string small = make_blob(1, 1000);
  const std::string large = make_blob(2, 300000);
  const Digest ds = Sha256::digest_of(small);
  const Digest dl = Sha256::digest_of(large);
  REQUIRE(s.client->upstream.put(ds, small).ok());
  REQUIRE(s.client->upstream.put(dl, large).ok());
  CHECK(*s.store->get(ds) == small);
  CHECK(read_all(*s.store, dl) == large);
  CHECK(s.client->reads == 2);
  s.client->unavailable = true;  // local copies now answer
  CHECK(*s.store->get(ds) == small);
  CHECK(read_all(*s.store, dl) == large);
  CHECK(s.client->reads == 2);
}

TEST_CASE("Remote tier: concurrent misses of one digest cost one upstream fetch", "[remote]") {
  Setup s;
  const std::string blob = make_blob(3, 1 << 20);
  const Digest d = Sha256::digest_of(blob);
  REQUIRE(s.client->upstream.put(d, blob).ok());
  s.client->close_gate();
  std::atomic<int> correct{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 20; ++i) {
    readers.emplace_back([&] { correct += read_all(*s.store, d) == blob ? 1 : 0; });
  }
  // Let every reader reach the flight before the leader's fetch may complete.
  while (s.store->large_fetches().followers() < 19) std::this_thread::yield();
  s.client->open_gate();
  for (auto& t : readers) t.join();
  CHECK(correct == 20);
  CHECK(s.client->reads == 1);
}

TEST_CASE("Remote tier: followers of a failed fetch get the same error", "[remote]") {
  Setup s;
  const Digest d = Sha256::digest_of("nowhere");
  s.client->close_gate();
  std::vector<Result<std::string>> results(5, Result<std::string>(error(Code::kUnknown, "unset")));
  std::vector<std::thread> readers;
  for (int i = 0; i < 5; ++i) readers.emplace_back([&, i] { results[i] = s.store->get(d); });
  while (s.store->small_fetches().followers() < 4) std::this_thread::yield();
  s.client->open_gate();
  for (auto& t : readers) t.join();
  for (const auto& r : results) {
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::kNotFound);
    CHECK(r.error() == results[0].error());
  }
  CHECK(s.client->reads == 1);
}

TEST_CASE("Remote tier: FindMissingBlobs is the upstream's answer", "[remote]") {
  Setup s;
  const std::string blob = make_blob(4, 100);
  const Digest d = Sha256::digest_of(blob);
  REQUIRE(s.store->local().put(d, blob).ok());  // local only
  const std::vector<Digest> ds{d, Sha256::digest_of("")};
  CHECK(s.store->find_missing(ds) == std::vector<Digest>{d});
  CHECK_FALSE(s.store->contains(d));
  CHECK(s.store->find_unavailable(ds).empty());  // but it can be served
  s.client->unavailable = true;                  // degraded: the local tier answers
  CHECK(s.store->find_missing(ds).empty());
}

TEST_CASE("Remote tier: mode through acknowledges after the upstream accepted", "[remote]") {
  Setup s;
  const std::string small = make_blob(5, 1000);
  const std::string large = make_blob(6, 200000);
  REQUIRE(s.store->put(Sha256::digest_of(small), small).ok());
  auto w = s.store->open_write(Sha256::digest_of(large));
  REQUIRE(w.ok());
  REQUIRE(w->append(large).ok());
  REQUIRE(w->commit().ok());
  CHECK(*s.client->upstream.get(Sha256::digest_of(small)) == small);
  CHECK(*s.client->upstream.get(Sha256::digest_of(large)) == large);
  REQUIRE(s.store->put_action(Sha256::digest_of("a"), "result").ok());
  CHECK(*s.client->upstream.get_action(Sha256::digest_of("a")) == "result");

  s.client->unavailable = true;
  const std::string more = make_blob(7, 10);
  const Status st = s.store->put(Sha256::digest_of(more), more);
  CHECK(st.code() == Code::kUnavailable);
  CHECK_THAT(st.message(), Catch::Matchers::Contains("did not accept"));
  CHECK(s.store->local().contains(Sha256::digest_of(more)));  // kept locally all the same
  // Wrong bytes never go anywhere.
  s.client->unavailable = false;
  const int before = s.client->writes;
  CHECK(s.store->put(Sha256::digest_of(more), "wrong!!!!!").code() == Code::kInvalidArgument);
  CHECK(s.client->writes == before);
}

TEST_CASE("Remote tier: mode back acknowledges locally and uploads from a queue", "[remote]") {
  Setup s(WriteMode::kBack);
  s.client->unavailable = true;  // even with the upstream down, writes are acknowledged
  const std::string blob = make_blob(8, 500000);
  const Digest d = Sha256::digest_of(blob);
  REQUIRE(s.store->put(d, blob).ok());
  REQUIRE(s.store->put_action(Sha256::digest_of("act"), "r").ok());
  s.store->remote().flush();
  CHECK(s.store->remote().stats().dropped == 2);  // retries exhausted: counted
  s.client->unavailable = false;
  const std::string blob2 = make_blob(9, 500);
  REQUIRE(s.store->put(Sha256::digest_of(blob2), blob2).ok());
  s.store->remote().flush();
  CHECK(*s.client->upstream.get(Sha256::digest_of(blob2)) == blob2);
  CHECK(s.store->remote().stats().uploaded == 1);
}

TEST_CASE("Remote tier: wrong upstream bytes are never stored or served", "[remote]") {
  Setup s;
  const std::string small = make_blob(10, 100);
  const std::string large = make_blob(11, 200000);
  REQUIRE(s.client->upstream.put(Sha256::digest_of(small), small).ok());
  REQUIRE(s.client->upstream.put(Sha256::digest_of(large), large).ok());
  s.client->corrupt = true;
  auto g = s.store->get(Sha256::digest_of(small));
  REQUIRE_FALSE(g.ok());
  CHECK(g.error().code() == Code::kNotFound);
  CHECK_THAT(g.error().message(), Catch::Matchers::Contains("wrong bytes"));
  auto r = s.store->open_read(Sha256::digest_of(large), 0);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == Code::kNotFound);
  CHECK_FALSE(s.store->local().contains(Sha256::digest_of(small)));
  CHECK_FALSE(s.store->local().contains(Sha256::digest_of(large)));
}

TEST_CASE("Remote tier: action results are read through and kept locally", "[remote]") {
  Setup s;
  const Digest a = Sha256::digest_of("action");
  REQUIRE(s.client->upstream.put_action(a, "bytes").ok());
  CHECK(*s.store->get_action(a) == "bytes");
  s.client->unavailable = true;
  CHECK(*s.store->get_action(a) == "bytes");
  CHECK(s.store->get_action(Sha256::digest_of("other")).error().code() == Code::kNotFound);
}
