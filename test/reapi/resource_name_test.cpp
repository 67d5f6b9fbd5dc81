#include <catch2/catch.hpp>

#include <gorego/hash/sha256.hpp>
#include <gorego/reapi/resource_name.hpp>

using namespace gorego;
using namespace gorego::reapi;

namespace {
const std::string kHash = Sha256::digest_of("abc").hex();
}

TEST_CASE("ResourceName: read names with and without instance and digest function", "[resource]") {
  auto r = parse_read_resource("blobs/" + kHash + "/3");
  REQUIRE(r.ok());
  CHECK(r->instance.empty());
  CHECK(r->digest == Sha256::digest_of("abc"));
  r = parse_read_resource("a/b/c/blobs/" + kHash + "/3");
  REQUIRE(r.ok());
  CHECK(r->instance == "a/b/c");
  r = parse_read_resource("main/blobs/sha256/" + kHash + "/3");
  REQUIRE(r.ok());
  CHECK(r->instance == "main");
}

TEST_CASE("ResourceName: write names carry an upload id and optional metadata", "[resource]") {
  auto w = parse_write_resource("inst/uploads/abc-123/blobs/" + kHash + "/3/some/metadata");
  REQUIRE(w.ok());
  CHECK(w->instance == "inst");
  CHECK(w->uuid == "abc-123");
  CHECK(w->digest.size == 3);
}

TEST_CASE("ResourceName: malformed names name the problem", "[resource]") {
  auto bad = [](Result<ResourceName> r, std::string_view needle) {
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == Code::kInvalidArgument);
    CHECK_THAT(r.error().message(), Catch::Matchers::Contains(std::string(needle)));
  };
  bad(parse_read_resource(""), "not of the form");
  bad(parse_read_resource("blobs/" + kHash), "lacks");
  bad(parse_read_resource("blobs/" + kHash + "/-3"), "size \"-3\"");
  bad(parse_read_resource("blobs/" + kHash + "/3/extra"), "trailing");
  bad(parse_read_resource("blobs/md5/" + kHash + "/3"), "digest function \"md5\"");
  bad(parse_read_resource("blobs/blake3/" + kHash.substr(1) + "/3"), "BLAKE3 needs 64");
  bad(parse_read_resource("blobs/" + kHash + "/99999999999999999999"), "is not a number");
  bad(parse_write_resource("uploads//blobs/" + kHash + "/3"), "empty upload id");
  bad(parse_write_resource("uploads/x/nope/" + kHash + "/3"), "not of the form");
  bad(parse_write_resource("uploads/x/compressed-blobs/lz4/" + kHash + "/3"), "compressor \"lz4\"");
  bad(parse_read_resource("compressed-blobs/deflate/" + kHash + "/3"), "compressor \"deflate\"");
  // An upload's name is not a read name (it used to be read as instance "uploads/x").
  bad(parse_read_resource("uploads/x/blobs/" + kHash + "/3"), "\"uploads\" is reserved");
  bad(parse_read_resource("inst/uploads/x/blobs/" + kHash + "/3"), "an upload's name cannot be read");
  bad(parse_read_resource("actions/blobs/" + kHash + "/3"), "\"actions\" is reserved");
  bad(parse_write_resource("blobs/uploads/x/blobs/" + kHash + "/3"), "\"blobs\" is reserved");
}

TEST_CASE("ResourceName: a digest function segment picks the keyspace", "[resource]") {
  auto plain = parse_read_resource("main/blobs/" + kHash + "/3");
  auto sha = parse_read_resource("main/blobs/sha256/" + kHash + "/3");
  auto b3 = parse_read_resource("main/blobs/blake3/" + kHash + "/3");
  REQUIRE(plain.ok());
  REQUIRE(sha.ok());
  REQUIRE(b3.ok());
  CHECK(plain->digest.function == DigestFunction::kSha256);
  CHECK(sha->digest == plain->digest);
  CHECK(b3->digest.function == DigestFunction::kBlake3);
  CHECK(b3->digest.hash == plain->digest.hash);
  CHECK(b3->digest != plain->digest);  // equal bytes, different blobs
  CHECK(b3->instance == "main");
  auto w = parse_write_resource("uploads/u/compressed-blobs/zstd/blake3/" + kHash + "/3");
  REQUIRE(w.ok());
  CHECK(w->zstd());
  CHECK(w->digest.function == DigestFunction::kBlake3);
}

TEST_CASE("ResourceName: compressed-blobs names name their compressor", "[resource]") {
  auto r = parse_read_resource("main/compressed-blobs/zstd/" + kHash + "/3");
  REQUIRE(r.ok());
  CHECK(r->zstd());
  CHECK(r->instance == "main");
  CHECK(r->digest == Sha256::digest_of("abc"));
  auto w = parse_write_resource("uploads/u1/compressed-blobs/zstd/sha256/" + kHash + "/3/meta");
  REQUIRE(w.ok());
  CHECK(w->zstd());
  CHECK(w->uuid == "u1");
  auto plain = parse_read_resource("blobs/" + kHash + "/3");
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->zstd());
}

TEST_CASE("ResourceName: an absurdly long name is refused early, without quoting it", "[resource]") {
  const std::string name = std::string(100000, 'x') + "/blobs/" + std::string(64, 'a') + "/1";
  for (const auto& r : {parse_read_resource(name), parse_write_resource(name)}) {
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Code::kInvalidArgument);
    CHECK(r.error().message().find("100073 bytes") != std::string::npos);
    CHECK(r.error().message().size() < 200);
  }
}
