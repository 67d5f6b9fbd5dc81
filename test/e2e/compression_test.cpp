// zstd on the wire against a real gorego process: ByteStream compressed-blobs reads and
// writes (offsets, early return, one frame per chunk as Bazel sends them, wrong bytes after
// decompression, corrupt and truncated frames, a decompression bomb) and compressed
// BatchUpdateBlobs / BatchReadBlobs.
#include <catch2/catch.hpp>

#include <gorego/core/zstd.hpp>

#include "harness.hpp"

using namespace gorego;
using namespace gorego::e2e;

namespace {

re::Digest digest_of(const std::string& data) { return reapi::to_proto(Sha256::digest_of(data)); }

/// Compressible test data: runs of text with some noise, like build outputs.
std::string compressible(std::size_t n, std::uint32_t seed) {
  std::string out;
  out.reserve(n);
  std::uint32_t x = seed * 2654435761u + 1;
  while (out.size() < n) {
    x = x * 1103515245u + 12345u;
    out += fmt::format("line {} of a build log, value {:08x}\n", out.size() / 40, x >> 8);
  }
  out.resize(n);
  return out;
}

std::string upload_name(const re::Digest& d, const std::string& uuid = "3e8f7a52-1c2b-4d5e-9f60-7a8b9c0d1e2f") {
  return fmt::format("uploads/{}/compressed-blobs/zstd/{}/{}", uuid, d.hash(), d.size_bytes());
}

/// One zstd frame per `chunk` bytes of `data` (what Bazel's uploader sends).
std::vector<std::string> frames(const std::string& data, std::size_t chunk) {
  std::vector<std::string> out;
  for (std::size_t off = 0; off < data.size(); off += chunk) {
    auto z = zstd::compress(std::string_view(data).substr(off, chunk));
    REQUIRE(z.ok());
    out.push_back(std::move(*z));
  }
  return out;
}

/// A compressed ByteStream read; the decompressed bytes in `out`.
grpc::Status read_compressed(const Server& s, const re::Digest& d, std::int64_t offset, std::int64_t limit,
                             std::string& out, std::size_t* messages = nullptr) {
  grpc::ClientContext ctx;
  bs::ReadRequest req;
  req.set_resource_name(fmt::format("compressed-blobs/zstd/{}/{}", d.hash(), d.size_bytes()));
  req.set_read_offset(offset);
  req.set_read_limit(limit);
  auto r = s.bytestream->Read(&ctx, req);
  bs::ReadResponse resp;
  std::string z;
  std::size_t n = 0;
  while (r->Read(&resp)) {
    z += resp.data();
    ++n;
  }
  if (messages) *messages = n;
  grpc::Status st = r->Finish();
  out.clear();
  if (st.ok()) {
    auto plain = zstd::decompress(z, std::uint64_t{1} << 34);
    INFO((plain.ok() ? std::string() : plain.error().message()));
    REQUIRE(plain.ok());
    out = std::move(*plain);
  }
  return st;
}

}  // namespace

TEST_CASE("zstd: Capabilities advertise ZSTD for ByteStream and batches", "[process][zstd]") {
  TempDir dir;
  Server s(dir);
  auto caps_stub = re::Capabilities::NewStub(s.channel);
  re::GetCapabilitiesRequest req;
  re::ServerCapabilities caps;
  grpc::ClientContext ctx;
  REQUIRE(caps_stub->GetCapabilities(&ctx, req, &caps).ok());
  const auto& c = caps.cache_capabilities();
  CHECK(std::count(c.supported_compressors().begin(), c.supported_compressors().end(), re::Compressor::ZSTD) == 1);
  CHECK(std::count(c.supported_batch_update_compressors().begin(), c.supported_batch_update_compressors().end(),
                   re::Compressor::ZSTD) == 1);
}

TEST_CASE("zstd: a multi-frame compressed upload is stored once and read back in either form", "[process][zstd]") {
  TempDir dir;
  Server s(dir);
  const std::string data = compressible(5 << 20, 1);
  const auto d = digest_of(data);
  const auto pieces = frames(data, 16 << 10);  // 320 frames, one per message
  std::size_t compressed = 0;
  for (const auto& p : pieces) compressed += p.size();
  REQUIRE(compressed < data.size() / 2);
  std::int64_t committed = 0;
  REQUIRE(write_pieces(s, upload_name(d), pieces, committed).ok());
  CHECK(committed == static_cast<std::int64_t>(compressed));

  std::string out;
  REQUIRE(s.read(d, out).ok());  // the plain form
  CHECK((out == data));
  std::size_t messages = 0;
  REQUIRE(read_compressed(s, d, 0, 0, out, &messages).ok());
  CHECK((out == data));
  CHECK(messages >= 5);  // streamed chunk by chunk, not compressed as one piece
  // read_offset counts uncompressed bytes.
  const std::int64_t off = 1234567;
  REQUIRE(read_compressed(s, d, off, 0, out).ok());
  CHECK((out == data.substr(static_cast<std::size_t>(off))));
  REQUIRE(read_compressed(s, d, d.size_bytes(), 0, out).ok());
  CHECK(out.empty());
}

TEST_CASE("zstd: a plain upload is served compressed, and the empty blob too", "[process][zstd]") {
  TempDir dir;
  Server s(dir);
  const std::string data = compressible(300000, 2);
  REQUIRE(s.upload(data));
  std::string out;
  REQUIRE(read_compressed(s, digest_of(data), 0, 0, out).ok());
  CHECK((out == data));
  REQUIRE(read_compressed(s, digest_of(""), 0, 0, out).ok());
  CHECK(out.empty());
}

TEST_CASE("zstd: a compressed read with a read_limit is INVALID_ARGUMENT", "[process][zstd]") {
  TempDir dir;
  Server s(dir);
  const std::string data = compressible(1000, 3);
  REQUIRE(s.batch_upload(data).ok());
  std::string out;
  const grpc::Status st = read_compressed(s, digest_of(data), 0, 10, out);
  CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(st.error_message(), Catch::Matchers::Contains("read_limit 10"));
  CHECK(read_compressed(s, digest_of(data), 2000, 0, out).error_code() == grpc::StatusCode::OUT_OF_RANGE);
}

TEST_CASE("zstd: a compressed upload of a present blob returns early with committed_size -1", "[process][zstd]") {
  TempDir dir;
  Server s(dir);
  const std::string data = compressible(1 << 20, 4);
  REQUIRE(s.upload(data));
  const auto d = digest_of(data);
  // Only the first of many frames is sent before the server answers.
  grpc::ClientContext ctx;
  bs::WriteResponse resp;
  auto w = s.bytestream->Write(&ctx, &resp);
  const auto pieces = frames(data, 64 << 10);
  bs::WriteRequest req;
  req.set_resource_name(upload_name(d));
  req.set_data(pieces[0]);
  REQUIRE(w->Write(req));
  w->WritesDone();
  REQUIRE(w->Finish().ok());
  CHECK(resp.committed_size() == -1);
}

TEST_CASE("zstd: bad compressed uploads are INVALID_ARGUMENT and store nothing", "[process][zstd]") {
  TempDir dir;
  Server s(dir);
  const std::string data = compressible(200000, 5);
  const auto d = digest_of(data);
  std::int64_t committed = 0;

  SECTION("the bytes decompress to something else") {
    std::string other = data;
    other[100000] ^= 1;
    const grpc::Status st = write_pieces(s, upload_name(d), frames(other, 32 << 10), committed);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), Catch::Matchers::Contains("hashes to"));
  }
  SECTION("a frame is corrupt") {
    auto pieces = frames(data, 32 << 10);
    pieces[2][pieces[2].size() / 2] ^= 0x5a;
    pieces[2][0] ^= 0xff;  // and its magic number, so the damage cannot go unnoticed
    const grpc::Status st = write_pieces(s, upload_name(d), pieces, committed);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), Catch::Matchers::Contains("zstd data is corrupt"));
  }
  SECTION("the stream ends inside a frame") {
    auto pieces = frames(data, 32 << 10);
    pieces.back().resize(pieces.back().size() / 2);
    const grpc::Status st = write_pieces(s, upload_name(d), pieces, committed);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), Catch::Matchers::Contains("zstd data"));
  }
  SECTION("the bytes decompress to more than the digest's size") {
    const std::string bomb(64 << 20, 'A');  // 64 MiB of one byte, a few KiB compressed
    const grpc::Status st = write_pieces(s, upload_name(d), frames(bomb, 8 << 20), committed);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), Catch::Matchers::Contains("more than the 200000 bytes"));
  }
  SECTION("a later message's offset counts uncompressed bytes instead of compressed ones") {
    grpc::ClientContext ctx;
    bs::WriteResponse resp;
    auto w = s.bytestream->Write(&ctx, &resp);
    const auto pieces = frames(data, 100000);
    bs::WriteRequest req;
    req.set_resource_name(upload_name(d));
    req.set_data(pieces[0]);
    REQUIRE(w->Write(req));
    req.set_write_offset(100000);
    req.set_data(pieces[1]);
    req.set_finish_write(true);
    w->Write(req);
    w->WritesDone();
    const grpc::Status st = w->Finish();
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), Catch::Matchers::Contains("write_offset 100000"));
  }
  CHECK_FALSE(s.has(d));
}

TEST_CASE("zstd: compressed BatchUpdateBlobs and BatchReadBlobs", "[process][zstd]") {
  TempDir dir;
  Server s(dir);
  const std::string big = compressible(100000, 6);
  const std::string tiny = "x";
  const std::string bad = compressible(5000, 7);
  re::BatchUpdateBlobsRequest up;
  for (const auto* blob : {&big, &tiny}) {
    auto* r = up.add_requests();
    *r->mutable_digest() = digest_of(*blob);
    r->set_compressor(re::Compressor::ZSTD);
    r->set_data(*zstd::compress(*blob));
  }
  auto* wrong = up.add_requests();  // compressed bytes of other data
  *wrong->mutable_digest() = digest_of(bad);
  wrong->set_compressor(re::Compressor::ZSTD);
  wrong->set_data(*zstd::compress(bad + "!"));
  re::BatchUpdateBlobsResponse up_resp;
  {
    grpc::ClientContext ctx;
    REQUIRE(s.cas->BatchUpdateBlobs(&ctx, up, &up_resp).ok());
  }
  REQUIRE(up_resp.responses_size() == 3);
  CHECK(up_resp.responses(0).status().code() == 0);
  CHECK(up_resp.responses(1).status().code() == 0);
  CHECK(up_resp.responses(2).status().code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_FALSE(s.has(digest_of(bad)));

  re::BatchReadBlobsRequest rd;
  *rd.add_digests() = digest_of(big);
  *rd.add_digests() = digest_of(tiny);
  rd.add_acceptable_compressors(re::Compressor::ZSTD);
  re::BatchReadBlobsResponse rd_resp;
  {
    grpc::ClientContext ctx;
    REQUIRE(s.cas->BatchReadBlobs(&ctx, rd, &rd_resp).ok());
  }
  REQUIRE(rd_resp.responses_size() == 2);
  // The compressible blob comes compressed; the one-byte blob would grow, so it does not.
  CHECK(rd_resp.responses(0).compressor() == re::Compressor::ZSTD);
  CHECK(rd_resp.responses(0).data().size() < big.size() / 2);
  CHECK((*zstd::decompress(rd_resp.responses(0).data(), big.size()) == big));
  CHECK(rd_resp.responses(1).compressor() == re::Compressor::IDENTITY);
  CHECK(rd_resp.responses(1).data() == tiny);

  // Without ZSTD among the acceptable compressors, everything comes plain.
  rd.clear_acceptable_compressors();
  rd_resp.Clear();
  grpc::ClientContext ctx;
  REQUIRE(s.cas->BatchReadBlobs(&ctx, rd, &rd_resp).ok());
  CHECK(rd_resp.responses(0).compressor() == re::Compressor::IDENTITY);
  CHECK((rd_resp.responses(0).data() == big));
}
