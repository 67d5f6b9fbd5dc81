// ProxyStore over a chain of two in-memory tiers (a peer-like cache that is no authority,
// then the backing cache): read order, passing a miss or failure on, write modes per tier,
// and which tier answers FindMissingBlobs.
#include <catch2/catch.hpp>

#include <gorego/store/tiers.hpp>
#include <gorego/testing/memory_client.hpp>

#include "stacks.hpp"

using namespace gorego;
using gorego::testing::make_blob;
using gorego::testing::MemoryClient;
using gorego::testing::TempDir;

namespace {

using Chain = Tiers<Remote<MemoryClient>, Remote<MemoryClient>>;
using Chained = ProxyStore<test::MemLru, Chain>;

static_assert(RemoteTier<Chain> && TierChain<Chain>);
static_assert(RemoteTier<Remote<MemoryClient>> && EnabledTier<Remote<MemoryClient>>);
static_assert(RemoteTier<NoRemote> && !EnabledTier<NoRemote>);
static_assert(Chain::kName == "tiers<remote<memory>,remote<memory>>");

struct Setup {
  explicit Setup(WriteMode peer_mode = WriteMode::kThrough, WriteMode up_mode = WriteMode::kThrough) {
    auto p = std::make_unique<MemoryClient>();
    auto u = std::make_unique<MemoryClient>();
    peer = p.get();
    up = u.get();
    store.remote().get<0>().connect(std::move(p), {.mode = peer_mode, .backoff = std::chrono::milliseconds(1),
                                                   .authority = false});
    store.remote().get<1>().connect(std::move(u), {.mode = up_mode, .backoff = std::chrono::milliseconds(1)});
    REQUIRE(store.start().ok());
  }
  Chained store{MemoryStore::Options{}, test::MemLru::Options{.max_bytes = std::uint64_t{1} << 30}};
  MemoryClient* peer = nullptr;
  MemoryClient* up = nullptr;
};

}  // namespace

TEST_CASE("Tier chain: a local miss is read from the first tier that has it", "[tiers]") {
  Setup s;
  const std::string a = make_blob(1, 1000);
  const std::string b = make_blob(2, 1000);
  REQUIRE(s.peer->upstream.put(Sha256::digest_of(a), a).ok());
  REQUIRE(s.up->upstream.put(Sha256::digest_of(a), a).ok());
  REQUIRE(s.up->upstream.put(Sha256::digest_of(b), b).ok());
  CHECK(*s.store.get(Sha256::digest_of(a)) == a);
  CHECK(s.peer->reads == 1);
  CHECK(s.up->reads == 0);  // the peer had it: the upstream was not asked
  CHECK(*s.store.get(Sha256::digest_of(b)) == b);
  CHECK(s.peer->reads == 2);  // asked first, missed
  CHECK(s.up->reads == 1);
  CHECK(s.store.local().contains(Sha256::digest_of(b)));  // kept locally
}

TEST_CASE("Tier chain: a tier that fails or sends wrong bytes passes the read on", "[tiers]") {
  Setup s;
  const std::string small = make_blob(3, 1000);
  const std::string large = make_blob(4, 300000);
  for (MemoryClient* c : {s.peer, s.up}) {
    REQUIRE(c->upstream.put(Sha256::digest_of(small), small).ok());
    REQUIRE(c->upstream.put(Sha256::digest_of(large), large).ok());
  }
  s.peer->corrupt = true;
  CHECK(*s.store.get(Sha256::digest_of(small)) == small);
  auto r = s.store.open_read(Sha256::digest_of(large), 0);
  REQUIRE(r.ok());
  CHECK(r->remaining() == large.size());
  CHECK(s.peer->reads == 2);
  CHECK(s.up->reads == 2);
  CHECK(s.store.remote().get<0>().stats().errors_by_code[static_cast<int>(Code::kDataLoss)] == 2);

  s.peer->corrupt = false;
  s.peer->unavailable = true;
  s.up->unavailable = true;
  auto miss = s.store.get(Sha256::digest_of(make_blob(5, 10)));
  REQUIRE_FALSE(miss.ok());
  CHECK(miss.error().code() == Code::kNotFound);  // every tier failed: a miss for the caller
  CHECK_THAT(miss.error().message(), Catch::Matchers::Contains("memory upstream is down"));
}

TEST_CASE("Tier chain: FindMissingBlobs is answered by the first active authority", "[tiers]") {
  Setup s;
  const std::string blob = make_blob(6, 100);
  const Digest d = Sha256::digest_of(blob);
  REQUIRE(s.peer->upstream.put(d, blob).ok());  // the peer has it; the authority does not
  CHECK(s.store.find_missing(std::vector<Digest>{d}) == std::vector<Digest>{d});
  REQUIRE(s.up->upstream.put(d, blob).ok());
  CHECK(s.store.find_missing(std::vector<Digest>{d}).empty());
  s.up->unavailable = true;  // the authority cannot be asked: the local tier answers
  CHECK(s.store.find_missing(std::vector<Digest>{d}) == std::vector<Digest>{d});
  CHECK(s.store.find_unavailable(std::vector<Digest>{d}).empty());  // but the peer can serve it
}

TEST_CASE("Tier chain: writes reach every tier, each acknowledged per its mode", "[tiers]") {
  Setup s(WriteMode::kBack, WriteMode::kThrough);
  const std::string blob = make_blob(7, 2000);
  const Digest d = Sha256::digest_of(blob);
  REQUIRE(s.store.put(d, blob).ok());
  CHECK(s.up->upstream.stat({d, Tree::kCas}));  // through: there before the acknowledgement
  s.store.remote().get<0>().flush();
  CHECK(s.peer->upstream.stat({d, Tree::kCas}));  // back: there once its queue drained
  REQUIRE(s.store.put_action(Sha256::digest_of("act"), "result").ok());
  s.store.remote().get<0>().flush();
  CHECK(*s.up->upstream.get_action(Sha256::digest_of("act")) == "result");
  CHECK(*s.peer->upstream.get_action(Sha256::digest_of("act")) == "result");

  s.up->unavailable = true;  // the through tier refuses: the write is not acknowledged
  const std::string more = make_blob(8, 10);
  const Status st = s.store.put(Sha256::digest_of(more), more);
  CHECK(st.code() == Code::kUnavailable);
  CHECK_THAT(st.message(), Catch::Matchers::Contains("did not accept"));
  CHECK(s.store.local().contains(Sha256::digest_of(more)));
}

TEST_CASE("Tier chain: an action result is read from the first tier that has it", "[tiers]") {
  Setup s;
  const Digest a = Sha256::digest_of("action");
  REQUIRE(s.up->upstream.put_action(a, "bytes").ok());
  CHECK(*s.store.get_action(a) == "bytes");
  s.up->unavailable = true;
  CHECK(*s.store.get_action(a) == "bytes");  // kept locally
  auto none = s.store.get_action(Sha256::digest_of("none"));
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code() == Code::kNotFound);
}
