// BLAKE3 as the second digest function: the hasher against the published vector and against
// the b3sum tool (Debian's, built from the Rust implementation) over sizes at BLAKE3's chunk
// (1 KiB) and tree boundaries, and the keyspaces: a SHA-256 and a BLAKE3 digest with equal
// bytes are different objects in the index, on disk, in the ActionCache log and in the
// index snapshot.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <gorego/hash/blake3.hpp>
#include <gorego/hash/content_hash.hpp>
#include <gorego/store/index.hpp>
#include <gorego/testing/temp_dir.hpp>

#include "stacks.hpp"

using namespace gorego;
using gorego::testing::make_blob;
using gorego::testing::TempDir;

namespace {

/// What `b3sum --no-names` prints for the file `p` (64 hex characters), or "" on failure.
std::string b3sum(const std::filesystem::path& p) {
  const std::string cmd = "b3sum --no-names '" + p.string() + "'";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return {};
  char buf[128] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  ::pclose(f);
  std::string out(buf, n);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

/// The input BLAKE3's published test vectors use: byte i is i % 251.
std::string vector_input(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i % 251);
  return s;
}

}  // namespace

TEST_CASE("Blake3: the empty input's published hash; streaming equals one-shot", "[hash][blake3]") {
  CHECK(to_hex(Blake3::of("")) == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
  CHECK(Blake3::of("") == kEmptyBlake3);
  CHECK(Blake3::digest_of("").empty_blob());
  CHECK_FALSE(Sha256::digest_of("").function == DigestFunction::kBlake3);
  // Pieces that straddle 64-byte blocks and 1 KiB chunks in every way.
  const std::string big = vector_input((1 << 20) + 7);
  for (const std::size_t piece : {1u, 63u, 64u, 65u, 1023u, 1024u, 1025u, 4099u}) {
    Blake3 h;
    for (std::size_t off = 0; off < big.size(); off += piece) h.update(std::string_view(big).substr(off, piece));
    CHECK(h.finish() == Blake3::of(big));
  }
  Blake3 h;
  h.update("abc");
  h.reset();
  h.update("x");
  CHECK(h.finish() == Blake3::of("x"));
  ContentHasher c(DigestFunction::kBlake3);
  CHECK(c.function() == DigestFunction::kBlake3);
  c.update("abc");
  CHECK(c.finish() == Blake3::of("abc"));
  ContentHasher s;
  s.update("abc");
  CHECK(s.finish() == Sha256::of("abc"));
}

TEST_CASE("Blake3: equals b3sum at chunk and tree boundaries and at 64 MiB", "[hash][blake3]") {
  TempDir dir;
  std::vector<std::size_t> sizes = {0,     1,     63,    64,    65,        1023,      1024,     1025,
                                    2047,  2048,  2049,  3072,  4096,      4097,      8192,     16384,
                                    31744, 32768, 32769, 65537, 1 << 20,   (1 << 20) + 1};
  std::uint64_t x = 88172645463325252ull;  // random sizes too, from a fixed seed
  for (int i = 0; i < 8; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    sizes.push_back(static_cast<std::size_t>(x % 300000));
  }
  sizes.push_back(std::size_t{64} << 20);
  for (const std::size_t n : sizes) {
    const std::string data = n == (std::size_t{64} << 20) ? make_blob(n, n) : vector_input(n);
    const auto p = dir.path() / fmt::format("in-{}", n);
    std::ofstream(p, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
    INFO("size " << n);
    const std::string want = b3sum(p);
    REQUIRE(want.size() == 64);  // b3sum ran (scripts/setup.sh installs it)
    CHECK(to_hex(Blake3::of(data)) == want);
    CHECK(Blake3::digest_of(data).hex() == want);
    CHECK(digest_of(DigestFunction::kBlake3, data).hex() == want);
  }
}

TEST_CASE("Digest: the function is part of the identity", "[digest][blake3]") {
  const std::string hex = Sha256::digest_of("abc").hex();
  auto sha = Digest::parse(hex, 3);
  auto b3 = Digest::parse(hex, 3, DigestFunction::kBlake3);
  REQUIRE(sha.ok());
  REQUIRE(b3.ok());
  CHECK(sha->hash == b3->hash);
  CHECK(*sha != *b3);
  CHECK(std::hash<Digest>{}(*sha) != std::hash<Digest>{}(*b3));
  CHECK(fmt::format("{}", *b3) == fmt::format("blake3/{}/3", hex));
  CHECK(fmt::format("{}", *sha) == fmt::format("{}/3", hex));
  CHECK(Digest::parse(hex.substr(2), 3, DigestFunction::kBlake3).error().message().find("BLAKE3 needs 64") !=
        std::string::npos);
  // verify_blob hashes with the digest's own function.
  CHECK(verify_blob(Blake3::digest_of("abc"), "abc").ok());
  CHECK(verify_blob(*b3, "abc").code() == Code::kInvalidArgument);
  CHECK(verify_blob(*sha, "abc").ok());
}

TEST_CASE("Index: equal hash bytes under two functions are two entries", "[index][blake3]") {
  Index index;
  const Digest sha = Sha256::digest_of("payload");
  Digest b3 = sha;
  b3.function = DigestFunction::kBlake3;
  REQUIRE(index.insert({sha, Tree::kCas}, {.bytes = 7}));
  CHECK(index.contains({sha, Tree::kCas}));
  CHECK_FALSE(index.contains({b3, Tree::kCas}));
  REQUIRE(index.insert({b3, Tree::kCas}, {.bytes = 7}));
  CHECK(index.contains({b3, Tree::kCas}));
  CHECK(index.size() == 2);
  index.erase({sha, Tree::kCas});
  CHECK_FALSE(index.contains({sha, Tree::kCas}));
  CHECK(index.contains({b3, Tree::kCas}));
  std::vector<Digest> seen;
  index.for_each([&](const auto& o) { seen.push_back(o.key.digest); });
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == b3);  // the function survives the slot's packing
}

TEST_CASE("ShardedDisk: BLAKE3 blobs and results keep their keyspace across restarts", "[disk][blake3]") {
  TempDir dir;
  const std::string blob = make_blob(7, 5000);
  const Digest b3 = Blake3::digest_of(blob);
  const Digest sha = Sha256::digest_of(blob);
  Digest b3_bytes_as_sha = b3;  // the BLAKE3 hash's bytes read as a SHA-256 digest
  b3_bytes_as_sha.function = DigestFunction::kSha256;
  auto check = [&](test::DiskLru& s) {
    CHECK(s.contains(b3));
    CHECK(s.contains(sha));
    CHECK_FALSE(s.contains(b3_bytes_as_sha));
    CHECK(*s.get(b3) == blob);
    CHECK(s.get(b3_bytes_as_sha).error().code() == Code::kNotFound);
    CHECK(*s.get_action(b3) == "b3 result");
    CHECK(*s.get_action(sha) == "sha result");
    CHECK(s.get_action(b3_bytes_as_sha).error().code() == Code::kNotFound);
  };
  {
    auto s = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
    // The wrong function's bytes are refused: nothing unverified is stored.
    CHECK(s->put(b3_bytes_as_sha, blob).code() == Code::kInvalidArgument);
    REQUIRE(s->put(b3, blob).ok());
    REQUIRE(s->put(sha, blob).ok());
    REQUIRE(s->put_action(b3, "b3 result").ok());
    REQUIRE(s->put_action(sha, "sha result").ok());
    check(*s);
  }
  const std::string hex = b3.hex();
  CHECK(std::filesystem::exists(dir.path() / "cas" / hex.substr(0, 2) / hex.substr(2, 2) / (hex + ".b3")));
  REQUIRE(std::filesystem::exists(dir.path() / "index.snapshot"));
  {  // from the snapshot of the clean stop
    test::DiskLru s(ShardedDisk::Options{.root = dir.path()}, {.max_bytes = 1 << 30});
    REQUIRE(s.start().ok());
    s.wait_loaded();
    check(s);
    CHECK(s.index_size() == 4);
  }
  std::filesystem::remove(dir.path() / "index.snapshot");
  {  // from a walk of the disk and a replay of the ActionCache log
    test::DiskLru s(ShardedDisk::Options{.root = dir.path()}, {.max_bytes = 1 << 30});
    REQUIRE(s.start().ok());
    s.wait_loaded();
    check(s);
    CHECK(s.index_size() == 4);
  }
}
