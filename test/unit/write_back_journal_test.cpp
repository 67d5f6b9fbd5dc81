// WriteBackJournal on its own (what a restart finds pending, torn tails, compaction) and a
// ProxyStore in mode back whose queued uploads outlive the store that acknowledged them.
#include <catch2/catch.hpp>

#include <fstream>

#include <gorego/store/write_back_journal.hpp>
#include <gorego/testing/memory_client.hpp>

#include "stacks.hpp"

using namespace gorego;
using gorego::testing::make_blob;
using gorego::testing::MemoryClient;
using gorego::testing::TempDir;

namespace {
std::string got(Result<std::string> r) { return r.ok() ? *r : std::string("<missing>"); }
ObjectKey blob_key(int i) { return {Sha256::digest_of(make_blob(i, 100)), Tree::kCas}; }
}  // namespace

TEST_CASE("WriteBackJournal: entries not done are pending after a reopen, in order", "[journal]") {
  TempDir dir;
  const auto path = dir.path() / "wb.journal";
  std::vector<std::uint64_t> seqs;
  {
    auto j = WriteBackJournal::open(path, {.fsync = true});
    REQUIRE(j.ok());
    CHECK((*j)->pending().empty());
    for (int i = 0; i < 5; ++i) {
      auto s = (*j)->record(i == 3 ? ObjectKey{blob_key(i).digest, Tree::kAc} : blob_key(i));
      REQUIRE(s.ok());
      seqs.push_back(*s);
    }
    REQUIRE((*j)->sync().ok());
    REQUIRE((*j)->done(seqs[1]).ok());
    REQUIRE((*j)->done(seqs[4]).ok());
  }
  auto j = WriteBackJournal::open(path, {.fsync = true});
  REQUIRE(j.ok());
  const auto& p = (*j)->pending();
  REQUIRE(p.size() == 3);
  CHECK(p[0].key == blob_key(0));
  CHECK(p[1].key == blob_key(2));
  CHECK(p[2].key == ObjectKey{blob_key(3).digest, Tree::kAc});
  // New entries never reuse a pending sequence number.
  auto next = (*j)->record(blob_key(9));
  REQUIRE(next.ok());
  CHECK(*next > seqs.back());
}

TEST_CASE("WriteBackJournal: a torn or damaged tail is skipped, not fatal", "[journal]") {
  TempDir dir;
  const auto path = dir.path() / "wb.journal";
  {
    auto j = WriteBackJournal::open(path, {.fsync = false});
    REQUIRE(j.ok());
    REQUIRE((*j)->record(blob_key(1)).ok());
    REQUIRE((*j)->record(blob_key(2)).ok());
  }
  {
    std::ofstream f(path, std::ios::app | std::ios::binary);
    f << "D 1\nA 7 c 0 zz\n" << std::string(5, '\0') << "\nA 8 c 0 12";  // damage, zeros, a torn line
  }
  auto j = WriteBackJournal::open(path, {.fsync = false});
  REQUIRE(j.ok());
  REQUIRE((*j)->pending().size() == 1);
  CHECK((*j)->pending()[0].key == blob_key(2));
  CHECK((*j)->skipped() == 2);
}

TEST_CASE("WriteBackJournal: a file that is not a journal is refused, naming it", "[journal]") {
  TempDir dir;
  const auto path = dir.path() / "wb.journal";
  std::ofstream(path) << "something else\n";
  auto j = WriteBackJournal::open(path, {});
  REQUIRE_FALSE(j.ok());
  CHECK_THAT(j.error().message(), Catch::Matchers::Contains(path.string()));
}

TEST_CASE("WriteBackJournal: reset_if_idle empties a grown file and keeps it usable", "[journal]") {
  TempDir dir;
  const auto path = dir.path() / "wb.journal";
  auto j = WriteBackJournal::open(path, {.fsync = false});
  REQUIRE(j.ok());
  for (int i = 0; i < 100; ++i) {
    auto s = (*j)->record(blob_key(i));
    REQUIRE(s.ok());
    REQUIRE((*j)->done(*s).ok());
  }
  const auto grown = std::filesystem::file_size(path);
  REQUIRE((*j)->reset_if_idle(1024).ok());
  CHECK(std::filesystem::file_size(path) < grown / 10);
  REQUIRE((*j)->record(blob_key(500)).ok());
  j->reset();
  auto again = WriteBackJournal::open(path, {});
  REQUIRE(again.ok());
  REQUIRE((*again)->pending().size() == 1);
  CHECK((*again)->pending()[0].key == blob_key(500));
}

namespace {
using Proxy = ProxyStore<test::DiskLru, Remote<MemoryClient>>;

/// A proxy in mode back over `dir`, its upstream `client`, journal in `dir`/journal.
std::unique_ptr<Proxy> back_proxy(const TempDir& dir, std::unique_ptr<MemoryClient> client, bool journal,
                                  std::chrono::milliseconds drain) {
  auto store = std::make_unique<Proxy>(ShardedDisk::Options{.root = dir.path() / "data", .fsync = false},
                                       test::DiskLru::Options{.max_bytes = std::uint64_t{1} << 30});
  if (journal) REQUIRE(store->remote().use_journal(dir.path() / "journal", false).ok());
  store->remote().connect(std::move(client), {.mode = WriteMode::kBack,
                                              .attempts = 1000,
                                              .backoff = std::chrono::milliseconds(1),
                                              .drain_on_stop = drain});
  REQUIRE(store->start().ok());
  store->local().wait_loaded();
  return store;
}
}  // namespace

TEST_CASE("Remote tier: acknowledged write-back uploads reach the upstream after the store that took them ended",
          "[journal][remote]") {
  const bool journal = GENERATE(true, false);
  TempDir dir;
  const std::string big = make_blob(1, 300000);  // streamed from disk
  const std::string small = make_blob(2, 500);
  const Digest action = Sha256::digest_of("action");
  {
    auto down = std::make_unique<MemoryClient>();
    down->unavailable = true;  // the upstream is down while the uploads are acknowledged
    auto store = back_proxy(dir, std::move(down), journal, std::chrono::milliseconds(20));
    REQUIRE(store->put(Sha256::digest_of(big), big).ok());
    REQUIRE(store->put(Sha256::digest_of(small), small).ok());
    REQUIRE(store->put_action(action, "result bytes").ok());
    store->stop();  // the stop gives up after 20 ms, as a crash would
  }
  auto up = std::make_unique<MemoryClient>();
  MemoryClient* upstream = up.get();
  auto store = back_proxy(dir, std::move(up), journal, std::chrono::seconds(10));
  store->remote().flush();
  if (journal) {
    CHECK(got(upstream->upstream.get(Sha256::digest_of(big))) == big);
    CHECK(got(upstream->upstream.get(Sha256::digest_of(small))) == small);
    CHECK(got(upstream->upstream.get_action(action)) == "result bytes");
    CHECK(store->remote().stats().uploaded == 3);
  } else {  // the in-memory queue forgets them: what the journal is for
    CHECK_FALSE(upstream->upstream.get(Sha256::digest_of(small)).ok());
    CHECK(store->remote().stats().uploaded == 0);
  }
}
