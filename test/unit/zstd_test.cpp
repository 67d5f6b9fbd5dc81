#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <gorego/core/zstd.hpp>

using namespace gorego;

namespace {

std::string text(std::size_t n) {
  std::string out;
  for (unsigned x = 7; out.size() < n; x = x * 1103515245u + 12345u) out += fmt::format("entry {:08x}\n", x >> 4);
  out.resize(n);
  return out;
}

/// Feeds `z` to a decoder in pieces of `piece` bytes; the decoded bytes, or the first error.
Result<std::string> decode_in_pieces(const std::string& z, std::size_t piece, std::uint64_t limit) {
  auto d = std::make_unique<zstd::Decoder>(limit);
  std::string out;
  for (std::size_t off = 0; off < z.size(); off += piece) {
    GOREGO_RETURN_IF_ERROR(d->add(std::string_view(z).substr(off, piece), [&](std::string_view p) {
      out.append(p);
      return Status{};
    }));
  }
  GOREGO_RETURN_IF_ERROR(d->finish());
  return out;
}

}  // namespace

TEST_CASE("zstd: output that ends exactly at the decoder's buffer size is a complete frame", "[zstd]") {
  // 80 x 64 KiB: the last call fills the buffer and ends the frame at once.
  const std::string data = text(std::size_t{80} << 16);
  auto z = zstd::compress(data);
  REQUIRE(z.ok());
  auto back = zstd::decompress(*z, data.size());
  INFO((back.ok() ? "" : back.error().message()));
  REQUIRE(back.ok());
  CHECK((*back == data));
}

TEST_CASE("zstd: concatenated frames decode as one stream, however the input is cut", "[zstd]") {
  const std::string data = text(300000);
  std::string z;
  for (std::size_t off = 0; off < data.size(); off += 4096) z += *zstd::compress(std::string_view(data).substr(off, 4096));
  for (std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, z.size()}) {
    auto back = decode_in_pieces(z, piece, data.size());
    INFO(piece);
    REQUIRE(back.ok());
    CHECK((*back == data));
  }
}

TEST_CASE("zstd: the streaming encoder's frame decodes to its input", "[zstd]") {
  const std::string data = text(3 << 20);
  zstd::Encoder enc;
  std::vector<char> buf(zstd::Encoder::bound(1 << 20));
  std::string z;
  for (std::size_t off = 0; off < data.size(); off += 1 << 20) {
    auto n = enc.add(std::string_view(data).substr(off, 1 << 20), buf, off + (1 << 20) >= data.size());
    REQUIRE(n.ok());
    z.append(buf.data(), *n);
  }
  CHECK(z.size() < data.size() / 2);
  auto back = zstd::decompress(z, data.size());
  REQUIRE(back.ok());
  CHECK((*back == data));
}

TEST_CASE("zstd: truncated, corrupt and oversized input are INVALID_ARGUMENT", "[zstd]") {
  const std::string data = text(100000);
  const std::string z = *zstd::compress(data);
  auto truncated = zstd::decompress(z.substr(0, z.size() - 3), data.size());
  REQUIRE_FALSE(truncated.ok());
  CHECK(truncated.error().code() == Code::kInvalidArgument);
  CHECK_THAT(truncated.error().message(), Catch::Matchers::Contains("ends inside a frame"));
  std::string bad = z;
  bad[0] ^= 0x40;  // the magic number
  auto corrupt = zstd::decompress(bad, data.size());
  REQUIRE_FALSE(corrupt.ok());
  CHECK_THAT(corrupt.error().message(), Catch::Matchers::Contains("corrupt"));
  auto bomb = zstd::decompress(z, data.size() - 1);
  REQUIRE_FALSE(bomb.ok());
  CHECK_THAT(bomb.error().message(), Catch::Matchers::Contains("more than the 99999 bytes"));
  auto empty = zstd::decompress("", 0);  // no frame at all: the empty blob sent as no bytes
  REQUIRE(empty.ok());
  CHECK(empty->empty());
}
