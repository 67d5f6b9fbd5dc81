// REAPI blob splitting against a real gorego process: SplitBlob cuts a stored blob with
// FastCDC 2020 and stores the chunks, SpliceBlob rebuilds a blob from stored chunks after
// verifying it, with the errors the spec names; and what splitting saves on a modified
// large blob (the figure is in docs/performance.md).
#include <catch2/catch.hpp>

#include <set>

#include <gorego/core/fastcdc.hpp>
#include <gorego/hash/blake3.hpp>

#include "harness.hpp"

using namespace gorego;
using namespace gorego::e2e;

namespace {

grpc::Status split(const Server& s, const re::Digest& d, re::SplitBlobResponse& resp,
                   re::DigestFunction::Value fn = re::DigestFunction::SHA256) {
  re::SplitBlobRequest req;
  *req.mutable_blob_digest() = d;
  req.set_digest_function(fn);
  req.set_chunking_function(re::ChunkingFunction::FAST_CDC_2020);
  grpc::ClientContext ctx;
  return s.cas->SplitBlob(&ctx, req, &resp);
}

grpc::Status splice(const Server& s, const re::Digest& blob, const std::vector<re::Digest>& chunks,
                    re::DigestFunction::Value fn = re::DigestFunction::SHA256) {
  re::SpliceBlobRequest req;
  *req.mutable_blob_digest() = blob;
  for (const auto& c : chunks) *req.add_chunk_digests() = c;
  req.set_digest_function(fn);
  re::SpliceBlobResponse resp;
  grpc::ClientContext ctx;
  return s.cas->SpliceBlob(&ctx, req, &resp);
}

/// Reads every chunk back (BatchRead) and concatenates them.
std::string join(const Server& s, const re::SplitBlobResponse& r, re::DigestFunction::Value fn) {
  std::string out;
  for (const auto& c : r.chunk_digests()) {
    re::BatchReadBlobsRequest req;
    req.set_digest_function(fn);
    *req.add_digests() = c;
    re::BatchReadBlobsResponse resp;
    grpc::ClientContext ctx;
    REQUIRE(s.cas->BatchReadBlobs(&ctx, req, &resp).ok());
    REQUIRE(resp.responses(0).status().code() == 0);
    out += resp.responses(0).data();
  }
  return out;
}

re::Digest sha(std::string_view data) { return reapi::to_proto(Sha256::digest_of(data)); }

}  // namespace

TEST_CASE("FastCDC: the gear table and cut points follow the REAPI parameters", "[split]") {
  // The gear table's first entries as REAPI's reference implementations publish them.
  CHECK(fastcdc::gear()[0] == 0x3b5d3c7d207e37dcULL);
  CHECK(fastcdc::gear()[1] == 0x784d68ba91123086ULL);
  CHECK_FALSE(fastcdc::Chunker::make(3000).ok());
  CHECK_FALSE(fastcdc::Chunker::make(2 << 20).ok());
  const auto c = *fastcdc::Chunker::make(64 << 10);
  const std::string data = make_blob(1, 4 << 20);
  const auto sizes = c.split(data);
  std::size_t total = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    total += sizes[i];
    if (i + 1 < sizes.size()) {
      CHECK(sizes[i] >= c.min_size());
      CHECK(sizes[i] <= c.max_size());
    }
  }
  CHECK(total == data.size());
  // Content-defined: the cuts after an insertion realign with the original's.
  const std::string edited = data.substr(0, 1000) + "inserted bytes" + data.substr(1000);
  std::set<std::string> a;
  for (std::size_t off = 0; const auto n : sizes) a.insert(data.substr((off += n) - n, n));
  std::size_t shared = 0;
  for (std::size_t off = 0; const auto n : c.split(edited)) shared += a.count(edited.substr((off += n) - n, n));
  CHECK(shared + 2 >= sizes.size());
}

TEST_CASE("SplitBlob and SpliceBlob: round trips, and the errors the spec names", "[split]") {
  TempDir dir;
  Server s(dir);
  // Capabilities advertise both, with FastCDC 2020 at 512 KiB.
  auto caps_stub = re::Capabilities::NewStub(s.channel);
  re::GetCapabilitiesRequest creq;
  re::ServerCapabilities caps;
  grpc::ClientContext cctx;
  REQUIRE(caps_stub->GetCapabilities(&cctx, creq, &caps).ok());
  CHECK(caps.cache_capabilities().split_blob_support());
  CHECK(caps.cache_capabilities().splice_blob_support());
  CHECK(caps.cache_capabilities().fast_cdc_2020_params().avg_chunk_size_bytes() == 512 << 10);

  const std::string blob = make_blob(5, (7 << 20) + 123);
  REQUIRE(s.upload(blob));
  re::SplitBlobResponse r;
  REQUIRE(split(s, sha(blob), r).ok());
  CHECK(r.chunking_function() == re::ChunkingFunction::FAST_CDC_2020);
  CHECK(r.chunk_digests_size() > 3);
  CHECK(join(s, r, re::DigestFunction::SHA256) == blob);  // the chunks are stored, in order

  // Missing blob: NOT_FOUND.
  re::SplitBlobResponse none;
  CHECK(split(s, sha("never stored"), none).error_code() == grpc::StatusCode::NOT_FOUND);

  // Splice: chunks the client cut itself, uploaded first.
  const std::string other = make_blob(6, 3 << 20);
  std::vector<re::Digest> parts;
  for (std::size_t off = 0; off < other.size(); off += 700000) {
    const std::string p = other.substr(off, 700000);
    REQUIRE(s.batch_upload(p).ok());
    parts.push_back(sha(p));
  }
  CHECK(s.find_missing({sha(other)}).size() == 1);
  REQUIRE(splice(s, sha(other), parts).ok());
  std::string back;
  REQUIRE(s.read(sha(other), back).ok());
  CHECK(back == other);
  CHECK(splice(s, sha(other), parts).ok());  // already stored: a no-op

  // A chunk not stored: NOT_FOUND naming it; nothing stored.
  const std::string third = make_blob(7, 100000);
  const std::vector<re::Digest> missing_chunk = {sha(third.substr(0, 50000)), sha(third.substr(50000))};
  REQUIRE(s.batch_upload(third.substr(0, 50000)).ok());
  const grpc::Status nf = splice(s, sha(third), missing_chunk);
  CHECK(nf.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK_THAT(nf.error_message(), Catch::Matchers::Contains("chunk_digests[1]"));
  CHECK(s.find_missing({sha(third)}).size() == 1);
  // Chunks that do not make the blob: INVALID_ARGUMENT, nothing stored.
  re::Digest lie = sha(third);
  lie.set_hash(sha("something else").hash());
  REQUIRE(s.batch_upload(third.substr(50000)).ok());
  const grpc::Status bad = splice(s, lie, missing_chunk);
  CHECK(bad.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(bad.error_message(), Catch::Matchers::Contains("hashes to"));
  CHECK(s.find_missing({lie}).size() == 1);
  // Sizes that do not add up, and no blob_digest at all.
  re::Digest wrong_size = sha(third);
  wrong_size.set_size_bytes(99999);
  CHECK(splice(s, wrong_size, missing_chunk).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  {
    re::SpliceBlobRequest req;
    re::SpliceBlobResponse resp;
    grpc::ClientContext ctx;
    const grpc::Status st = s.cas->SpliceBlob(&ctx, req, &resp);
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), Catch::Matchers::Contains("blob_digest is required"));
  }
  // A digest function not served.
  re::SplitBlobResponse md5;
  CHECK(split(s, sha(blob), md5, re::DigestFunction::MD5).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_CASE("SplitBlob: BLAKE3 blobs split into BLAKE3 chunks", "[split][blake3]") {
  TempDir dir;
  Server s(dir);
  const std::string blob = make_blob(8, 5 << 20);
  const re::Digest d = reapi::to_proto(Blake3::digest_of(blob));
  std::vector<std::string> pieces = {blob.substr(0, 3 << 20), blob.substr(3 << 20)};
  std::int64_t committed = 0;
  REQUIRE(write_pieces(s, fmt::format("uploads/2a2b2c2d-0000-4000-8000-000000000001/blobs/blake3/{}/{}", d.hash(),
                                      d.size_bytes()),
                       pieces, committed)
              .ok());
  re::SplitBlobResponse r;
  REQUIRE(split(s, d, r, re::DigestFunction::BLAKE3).ok());
  CHECK(join(s, r, re::DigestFunction::BLAKE3) == blob);
  CHECK(r.chunk_digests(0).hash() == Blake3::digest_of(blob.substr(0, static_cast<std::size_t>(r.chunk_digests(0).size_bytes()))).hex());
}

TEST_CASE("SplitBlob: a modified large blob shares most chunks with the original", "[split]") {
  TempDir dir;
  Server s(dir);
  const std::string original = make_blob(9, 64 << 20);
  // An edit in the middle: 4 KiB replaced and 100 bytes inserted, as a relinked binary.
  std::string edited = original;
  edited.replace(20 << 20, 4096, make_blob(10, 4096));
  edited.insert(40 << 20, make_blob(11, 100));
  REQUIRE(s.upload(original));
  REQUIRE(s.upload(edited));
  re::SplitBlobResponse a, b;
  REQUIRE(split(s, sha(original), a).ok());
  REQUIRE(split(s, sha(edited), b).ok());
  std::set<std::string> have;
  for (const auto& c : a.chunk_digests()) have.insert(c.hash());
  std::uint64_t fetch = 0;
  int fresh = 0;
  for (const auto& c : b.chunk_digests()) {
    if (have.count(c.hash())) continue;
    fetch += static_cast<std::uint64_t>(c.size_bytes());
    ++fresh;
  }
  const double saved = 1.0 - static_cast<double>(fetch) / static_cast<double>(edited.size());
  WARN(fmt::format("modified 64 MiB blob: {} of {} chunks new, {} bytes to fetch, {:.1f}% saved", fresh,
                   b.chunk_digests_size(), fetch, 100 * saved));
  CHECK(saved > 0.9);  // two edits touch a few 0.5-2 MiB chunks of 64 MiB
  CHECK(fetch > 0);
}
