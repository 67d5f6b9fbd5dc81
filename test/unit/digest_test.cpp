#include <catch2/catch.hpp>

#include <gorego/hash/sha256.hpp>

using namespace gorego;

namespace {
constexpr std::string_view kAbcHash = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
}

TEST_CASE("Sha256: known vectors, one-shot equals streaming", "[hash]") {
  CHECK(to_hex(Sha256::of("abc")) == kAbcHash);
  CHECK(to_hex(Sha256::of("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(Sha256::of("") == kEmptySha256);
  Sha256 h;
  h.update("a");
  h.update("");
  h.update("bc");
  CHECK(h.finish() == Sha256::of("abc"));
  h.reset();
  std::string big(1 << 20, 'x');
  for (std::size_t off = 0; off < big.size(); off += 4099) h.update(std::string_view(big).substr(off, 4099));
  CHECK(h.finish() == Sha256::of(big));
}

TEST_CASE("Digest: parse accepts canonical digests and formats as hash/size", "[digest]") {
  auto d = Digest::parse(kAbcHash, 3);
  REQUIRE(d.ok());
  CHECK(d->hex() == kAbcHash);
  CHECK(fmt::format("{}", *d) == fmt::format("{}/3", kAbcHash));
  CHECK(*d == Sha256::digest_of("abc"));
  CHECK(Sha256::digest_of("").empty_blob());
  CHECK_FALSE(d->empty_blob());
}

TEST_CASE("Digest: parse rejects malformed input with a message naming the value", "[digest]") {
  auto check = [](std::string_view hex, std::int64_t size, std::string_view needle) {
    auto d = Digest::parse(hex, size);
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().code() == Code::kInvalidArgument);
    CHECK_THAT(d.error().message(), Catch::Matchers::Contains(std::string(needle)));
  };
  check("abc", 3, "\"abc\" has 3 characters");
  check(std::string(kAbcHash).replace(10, 1, "g"), 3, "not lower-case hex");
  check(std::string(kAbcHash).replace(0, 1, "B"), 3, "not lower-case hex");
  check(std::string(kAbcHash) + "00", 3, "66 characters");
  check(kAbcHash, -5, "digest size -5 is negative");
  check(kAbcHash, std::int64_t{1} << 50, "exceeds the maximum");
  check("", 0, "has 0 characters");
}
