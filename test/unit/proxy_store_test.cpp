// ProxyStore's composition: forwarding to the local tier and reporting to instrumentation.
#include <catch2/catch.hpp>

#include "stacks.hpp"

using namespace gorego;
using gorego::testing::make_blob;
using gorego::testing::OpCounter;

TEST_CASE("ProxyStore: names itself after its parts", "[proxy]") {
  CHECK(test::ProxyDisk::kName == "proxy<local<disk,sampled-lru>,none>");
  CHECK(test::MemAtime::kName == "local<memory,atime>");
}

TEST_CASE("ProxyStore: every operation is reported to instrumentation with its outcome",
          "[proxy]") {
  testing::TempDir dir;
  auto store = test::make_store<test::ProxyMemCounted>(dir.path(), 1 << 20);
  auto& counter = store->instrumentation<OpCounter>();
  const std::string blob = make_blob(1, 100);
  const Digest d = Sha256::digest_of(blob);
  CHECK(store->get(d).error().code() == Code::kNotFound);
  REQUIRE(store->put(d, blob).ok());
  REQUIRE(store->get(d).ok());
  CHECK(store->put(d, "wrong").code() == Code::kInvalidArgument);
  const std::vector<Digest> ds{d};
  CHECK(store->find_missing(ds).empty());
  CHECK(counter.begun(StoreOp::kGet) == 2);
  CHECK(counter.ended(StoreOp::kGet) == 2);
  CHECK(counter.failed(StoreOp::kGet) == 1);
  CHECK(counter.begun(StoreOp::kPut) == 2);
  CHECK(counter.failed(StoreOp::kPut) == 1);
  CHECK(counter.ended(StoreOp::kFindMissing) == 1);
  CHECK(counter.begun(StoreOp::kGetAction) == 0);
}

TEST_CASE("ProxyStore: without instrumentation adds no state beyond its local tier", "[proxy]") {
  STATIC_REQUIRE(sizeof(ProxyStore<test::MemLru, NoRemote>) == sizeof(test::MemLru));
}
