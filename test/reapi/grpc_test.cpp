// In-process gRPC tests of every RPC, good and bad input, against the shipped store stack.
#include <catch2/catch.hpp>

#include <thread>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

#include <gorego/hash/sha256.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/testing/temp_dir.hpp>

#include "server.hpp"

using namespace gorego;
using gorego::reapi::re::Digest;
namespace re = gorego::reapi::re;
namespace bs = google::bytestream;
using gorego::testing::make_blob;

namespace {

struct Fixture {
  explicit Fixture(Eviction eviction = Eviction::kLru, std::uint64_t max_blob = 0) {
    Config c;
    c.server.listen_addr = "127.0.0.1:0";
    c.telemetry.metrics_addr = "127.0.0.1:0";
    c.storage.data_dir = dir.path();
    c.storage.max_size_bytes = std::uint64_t{1} << 30;
    c.storage.fsync = false;
    c.server.io_threads = 4;
    c.server.max_batch_total_size_bytes = std::uint64_t{1} << 20;
    c.storage.eviction = eviction;
    c.server.max_blob_size_bytes = max_blob;
    auto s = start_server(c);
    REQUIRE(s.ok());
    server = std::move(*s);
    channel = grpc::CreateChannel(fmt::format("127.0.0.1:{}", server->port()),
                                  grpc::InsecureChannelCredentials());
    cas = re::ContentAddressableStorage::NewStub(channel);
    ac = re::ActionCache::NewStub(channel);
    caps = re::Capabilities::NewStub(channel);
    bytestream = bs::ByteStream::NewStub(channel);
  }

  gorego::testing::TempDir dir;
  std::unique_ptr<Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<re::ContentAddressableStorage::Stub> cas;
  std::unique_ptr<re::ActionCache::Stub> ac;
  std::unique_ptr<re::Capabilities::Stub> caps;
  std::unique_ptr<bs::ByteStream::Stub> bytestream;

  re::Digest upload(const std::string& data) {
    re::BatchUpdateBlobsRequest req;
    auto* r = req.add_requests();
    *r->mutable_digest() = reapi::to_proto(Sha256::digest_of(data));
    r->set_data(data);
    re::BatchUpdateBlobsResponse resp;
    grpc::ClientContext ctx;
    REQUIRE(cas->BatchUpdateBlobs(&ctx, req, &resp).ok());
    REQUIRE(resp.responses(0).status().code() == 0);
    return r->digest();
  }

  grpc::Status write(const std::string& resource, const std::string& data, bs::WriteResponse& resp,
                     std::size_t chunk = 16384, std::int64_t offset_skew = 0) {
    grpc::ClientContext ctx;
    auto w = bytestream->Write(&ctx, &resp);
    std::size_t off = 0;
    do {
      bs::WriteRequest req;
      if (off == 0) req.set_resource_name(resource);
      req.set_write_offset(static_cast<std::int64_t>(off) + (off > 0 ? offset_skew : 0));
      const std::size_t n = std::min(chunk, data.size() - off);
      req.set_data(data.substr(off, n));
      off += n;
      req.set_finish_write(off == data.size());
      if (!w->Write(req)) break;
    } while (off < data.size());
    w->WritesDone();
    return w->Finish();
  }

  grpc::Status read(const std::string& resource, std::string& out, std::int64_t offset = 0,
                    std::int64_t limit = 0) {
    grpc::ClientContext ctx;
    bs::ReadRequest req;
    req.set_resource_name(resource);
    req.set_read_offset(offset);
    req.set_read_limit(limit);
    auto r = bytestream->Read(&ctx, req);
    bs::ReadResponse resp;
    out.clear();
    while (r->Read(&resp)) out += resp.data();
    return r->Finish();
  }
};

std::string blob_name(const re::Digest& d) { return fmt::format("blobs/{}/{}", d.hash(), d.size_bytes()); }
std::string upload_name(const re::Digest& d, std::string_view instance = "") {
  return fmt::format("{}{}uploads/6b3f0b2e-1c1e-4d0a-9c5e-0a1b2c3d4e5f/blobs/{}/{}", instance,
                     instance.empty() ? "" : "/", d.hash(), d.size_bytes());
}

re::Digest bad_digest(std::string hash, std::int64_t size) {
  re::Digest d;
  d.set_hash(std::move(hash));
  d.set_size_bytes(size);
  return d;
}

#define CHECK_STATUS(expr, code, needle)                                        \
  do {                                                                          \
    const grpc::Status s_ = (expr);                                             \
    CHECK(s_.error_code() == (code));                                           \
    CHECK_THAT(s_.error_message(), Catch::Matchers::Contains(std::string(needle))); \
  } while (0)

}  // namespace

TEST_CASE("Capabilities: advertises SHA256 and BLAKE3, AC updates and the batch limit", "[grpc]") {
  Fixture f;
  grpc::ClientContext ctx;
  re::GetCapabilitiesRequest req;
  req.set_instance_name("any/instance");
  re::ServerCapabilities caps;
  REQUIRE(f.caps->GetCapabilities(&ctx, req, &caps).ok());
  const auto& cache = caps.cache_capabilities();
  REQUIRE(cache.digest_functions_size() == 2);
  CHECK(cache.digest_functions(0) == re::DigestFunction::SHA256);
  CHECK(cache.digest_functions(1) == re::DigestFunction::BLAKE3);
  CHECK(cache.action_cache_update_capabilities().update_enabled());
  CHECK(cache.max_batch_total_size_bytes() == 1 << 20);
  CHECK(caps.low_api_version().major() == 2);
  CHECK(caps.high_api_version().major() == 2);
  CHECK_FALSE(caps.has_execution_capabilities());
}

TEST_CASE("CAS: FindMissingBlobs reports exactly the missing blobs", "[grpc]") {
  Fixture f;
  const auto present = f.upload("present");
  const auto absent = reapi::to_proto(Sha256::digest_of("absent"));
  re::FindMissingBlobsRequest req;
  *req.add_blob_digests() = present;
  *req.add_blob_digests() = absent;
  *req.add_blob_digests() = reapi::to_proto(Sha256::digest_of(""));
  re::FindMissingBlobsResponse resp;
  grpc::ClientContext ctx;
  REQUIRE(f.cas->FindMissingBlobs(&ctx, req, &resp).ok());
  REQUIRE(resp.missing_blob_digests_size() == 1);
  CHECK(resp.missing_blob_digests(0).hash() == absent.hash());
}

TEST_CASE("CAS: malformed digests and unknown digest functions are INVALID_ARGUMENT", "[grpc]") {
  Fixture f;
  const std::string good = Sha256::digest_of("x").hex();
  struct Case {
    re::Digest d;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {bad_digest("zz" + good.substr(2), 1), "not lower-case hex"},
      {bad_digest(good.substr(1), 1), "63 characters"},
      {bad_digest(good, -5), "digest size -5 is negative"},
      {bad_digest(good, std::int64_t{1} << 55), "exceeds the maximum"},
  };
  for (const auto& c : cases) {
    re::FindMissingBlobsRequest req;
    *req.add_blob_digests() = reapi::to_proto(Sha256::digest_of("ok"));
    *req.add_blob_digests() = c.d;
    re::FindMissingBlobsResponse resp;
    grpc::ClientContext ctx;
    CHECK_STATUS(f.cas->FindMissingBlobs(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
                 "blob_digests[1]");
    grpc::ClientContext ctx2;
    CHECK_STATUS(f.cas->FindMissingBlobs(&ctx2, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
                 c.needle);
  }
  for (const auto fn : {re::DigestFunction::MD5, re::DigestFunction::SHA1, re::DigestFunction::VSO,
                        re::DigestFunction::SHA256TREE}) {
    re::FindMissingBlobsRequest req;
    req.set_digest_function(fn);
    re::FindMissingBlobsResponse resp;
    grpc::ClientContext ctx;
    CHECK_STATUS(f.cas->FindMissingBlobs(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
                 fmt::format("digest_function {} is not supported", re::DigestFunction::Value_Name(fn)));
  }
  re::FindMissingBlobsRequest req;
  req.set_digest_function(static_cast<re::DigestFunction::Value>(77));
  re::FindMissingBlobsResponse resp;
  grpc::ClientContext ctx;
  CHECK_STATUS(f.cas->FindMissingBlobs(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
               "digest_function 77 is not supported");
  // The server keeps serving.
  f.upload("still alive");
}

TEST_CASE("CAS: BatchUpdateBlobs stores good blobs and refuses bad ones per blob", "[grpc]") {
  Fixture f;
  re::BatchUpdateBlobsRequest req;
  auto add = [&](const std::string& data, const re::Digest& d) {
    auto* r = req.add_requests();
    *r->mutable_digest() = d;
    r->set_data(data);
    return r;
  };
  add("good", reapi::to_proto(Sha256::digest_of("good")));
  add("evil!", reapi::to_proto(Sha256::digest_of("good!")));  // data does not match
  add("x", bad_digest("nothex", 1));
  add("zstd", reapi::to_proto(Sha256::digest_of("zstd")))->set_compressor(re::Compressor::ZSTD);  // not zstd data
  add("deflate", reapi::to_proto(Sha256::digest_of("deflate")))->set_compressor(re::Compressor::DEFLATE);
  re::BatchUpdateBlobsResponse resp;
  grpc::ClientContext ctx;
  REQUIRE(f.cas->BatchUpdateBlobs(&ctx, req, &resp).ok());
  REQUIRE(resp.responses_size() == 5);
  CHECK(resp.responses(0).status().code() == 0);
  CHECK(resp.responses(1).status().code() == static_cast<int>(Code::kInvalidArgument));
  CHECK_THAT(resp.responses(1).status().message(), Catch::Matchers::Contains("hashes to"));
  CHECK(resp.responses(2).status().code() == static_cast<int>(Code::kInvalidArgument));
  CHECK_THAT(resp.responses(2).status().message(), Catch::Matchers::Contains("\"nothex\""));
  CHECK(resp.responses(3).status().code() == static_cast<int>(Code::kInvalidArgument));
  CHECK_THAT(resp.responses(3).status().message(), Catch::Matchers::Contains("zstd data"));
  CHECK(resp.responses(4).status().code() == static_cast<int>(Code::kInvalidArgument));
  CHECK_THAT(resp.responses(4).status().message(), Catch::Matchers::Contains("compressor DEFLATE is not supported"));

  re::FindMissingBlobsRequest fm;
  *fm.add_blob_digests() = reapi::to_proto(Sha256::digest_of("good"));
  *fm.add_blob_digests() = reapi::to_proto(Sha256::digest_of("good!"));
  re::FindMissingBlobsResponse missing;
  grpc::ClientContext ctx2;
  REQUIRE(f.cas->FindMissingBlobs(&ctx2, fm, &missing).ok());
  REQUIRE(missing.missing_blob_digests_size() == 1);
  CHECK(missing.missing_blob_digests(0).size_bytes() == 5);  // the evil upload stored nothing
}

TEST_CASE("CAS: batches over max_batch_total_size_bytes are INVALID_ARGUMENT", "[grpc]") {
  Fixture f;
  const std::string big((1 << 20) + 1, 'b');
  re::BatchUpdateBlobsRequest req;
  auto* r = req.add_requests();
  *r->mutable_digest() = reapi::to_proto(Sha256::digest_of(big));
  r->set_data(big);
  re::BatchUpdateBlobsResponse resp;
  grpc::ClientContext ctx;
  CHECK_STATUS(f.cas->BatchUpdateBlobs(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
               "1048577 bytes, over max_batch_total_size_bytes 1048576");

  re::BatchReadBlobsRequest rr;
  *rr.add_digests() = reapi::to_proto(Sha256::digest_of(big));
  re::BatchReadBlobsResponse rresp;
  grpc::ClientContext ctx2;
  CHECK_STATUS(f.cas->BatchReadBlobs(&ctx2, rr, &rresp), grpc::StatusCode::INVALID_ARGUMENT,
               "over max_batch_total_size_bytes");
}

TEST_CASE("CAS and ByteStream: blobs over max_cas_blob_size_bytes are refused", "[grpc]") {
  Fixture f(Eviction::kLru, 1000);
  const std::string big(1001, 'z');
  const auto d = reapi::to_proto(Sha256::digest_of(big));
  re::BatchUpdateBlobsRequest req;
  auto* r = req.add_requests();
  *r->mutable_digest() = d;
  r->set_data(big);
  re::BatchUpdateBlobsResponse resp;
  grpc::ClientContext ctx;
  REQUIRE(f.cas->BatchUpdateBlobs(&ctx, req, &resp).ok());
  CHECK(resp.responses(0).status().code() == static_cast<int>(Code::kInvalidArgument));
  CHECK_THAT(resp.responses(0).status().message(),
             Catch::Matchers::Contains("larger than max_cas_blob_size_bytes 1000"));
  bs::WriteResponse wr;
  CHECK_STATUS(f.write(upload_name(d), big, wr), grpc::StatusCode::INVALID_ARGUMENT,
               "larger than max_cas_blob_size_bytes 1000");
  re::GetCapabilitiesRequest creq;
  re::ServerCapabilities caps;
  grpc::ClientContext ctx2;
  REQUIRE(f.caps->GetCapabilities(&ctx2, creq, &caps).ok());
  CHECK(caps.cache_capabilities().max_cas_blob_size_bytes() == 1000);
}

TEST_CASE("CAS: BatchReadBlobs returns data or NOT_FOUND per blob", "[grpc]") {
  Fixture f;
  const std::string data = make_blob(1, 5000);
  const auto d = f.upload(data);
  re::BatchReadBlobsRequest req;
  *req.add_digests() = d;
  *req.add_digests() = reapi::to_proto(Sha256::digest_of("nope"));
  *req.add_digests() = reapi::to_proto(Sha256::digest_of(""));
  re::BatchReadBlobsResponse resp;
  grpc::ClientContext ctx;
  REQUIRE(f.cas->BatchReadBlobs(&ctx, req, &resp).ok());
  REQUIRE(resp.responses_size() == 3);
  CHECK(resp.responses(0).status().code() == 0);
  CHECK(resp.responses(0).data() == data);
  CHECK(resp.responses(1).status().code() == static_cast<int>(Code::kNotFound));
  CHECK(resp.responses(2).status().code() == 0);
  CHECK(resp.responses(2).data().empty());
}

TEST_CASE("CAS: GetTree pages through a tree breadth-first", "[grpc]") {
  Fixture f;
  // root → a, b; a → c; b → c (shared); c is a leaf with one file.
  re::Directory c;
  auto* file = c.add_files();
  file->set_name("f");
  *file->mutable_digest() = f.upload("content");
  const auto dc = f.upload(c.SerializeAsString());
  re::Directory a, b;
  auto* na = a.add_directories();
  na->set_name("c");
  *na->mutable_digest() = dc;
  auto* nb = b.add_directories();
  nb->set_name("c2");
  *nb->mutable_digest() = dc;
  b.add_files()->set_name("marker");
  *b.mutable_files(0)->mutable_digest() = reapi::to_proto(Sha256::digest_of(""));
  const auto da = f.upload(a.SerializeAsString());
  const auto db = f.upload(b.SerializeAsString());
  re::Directory root;
  *root.add_directories() = *na;
  root.mutable_directories(0)->set_name("a");
  *root.mutable_directories(0)->mutable_digest() = da;
  auto* rb = root.add_directories();
  rb->set_name("b");
  *rb->mutable_digest() = db;
  const auto droot = f.upload(root.SerializeAsString());

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    re::GetTreeRequest req;
    *req.mutable_root_digest() = droot;
    req.set_page_size(2);
    req.set_page_token(token);
    grpc::ClientContext ctx;
    auto r = f.cas->GetTree(&ctx, req);
    re::GetTreeResponse resp;
    token.clear();
    while (r->Read(&resp)) {
      for (const auto& d : resp.directories()) seen.push_back(d.SerializeAsString());
      if (!resp.next_page_token().empty()) token = resp.next_page_token();
    }
    REQUIRE(r->Finish().ok());
    ++pages;
  } while (!token.empty() && pages < 10);
  CHECK(pages == 2);
  REQUIRE(seen.size() == 4);  // root, a, b, c once
  CHECK(seen[0] == root.SerializeAsString());
  CHECK(seen[1] == a.SerializeAsString());
  CHECK(seen[2] == b.SerializeAsString());
  CHECK(seen[3] == c.SerializeAsString());

  re::GetTreeRequest missing;
  *missing.mutable_root_digest() = reapi::to_proto(Sha256::digest_of("no such dir"));
  grpc::ClientContext ctx;
  auto r = f.cas->GetTree(&ctx, missing);
  re::GetTreeResponse resp;
  while (r->Read(&resp)) {
  }
  CHECK_STATUS(r->Finish(), grpc::StatusCode::NOT_FOUND, "root directory");

  re::GetTreeRequest bad_token;
  *bad_token.mutable_root_digest() = droot;
  bad_token.set_page_token("xyz");
  grpc::ClientContext ctx2;
  auto r2 = f.cas->GetTree(&ctx2, bad_token);
  while (r2->Read(&resp)) {
  }
  CHECK_STATUS(r2->Finish(), grpc::StatusCode::INVALID_ARGUMENT, "page_token \"xyz\"");
}

TEST_CASE("ByteStream: chunked write then read, with offsets and limits", "[grpc]") {
  Fixture f;
  const std::string data = make_blob(2, 3'000'000);
  const auto d = reapi::to_proto(Sha256::digest_of(data));
  bs::WriteResponse wr;
  REQUIRE(f.write(upload_name(d, "my/instance"), data, wr).ok());
  CHECK(wr.committed_size() == static_cast<std::int64_t>(data.size()));

  std::string out;
  REQUIRE(f.read("my/instance/" + blob_name(d), out).ok());
  CHECK(out == data);
  REQUIRE(f.read(blob_name(d), out, 1'000'000).ok());  // instance names share one namespace
  CHECK(out == data.substr(1'000'000));
  REQUIRE(f.read(blob_name(d), out, 10, 100).ok());
  CHECK(out == data.substr(10, 100));
  REQUIRE(f.read(blob_name(d), out, static_cast<std::int64_t>(data.size())).ok());
  CHECK(out.empty());

  CHECK_STATUS(f.read(blob_name(d), out, static_cast<std::int64_t>(data.size()) + 1),
               grpc::StatusCode::OUT_OF_RANGE, "read_offset 3000001 is past the end");
  CHECK_STATUS(f.read(blob_name(d), out, -1), grpc::StatusCode::OUT_OF_RANGE, "read_offset -1");
  CHECK_STATUS(f.read(blob_name(d), out, 0, -1), grpc::StatusCode::INVALID_ARGUMENT, "read_limit -1");
  CHECK_STATUS(f.read(blob_name(reapi::to_proto(Sha256::digest_of("gone"))), out),
               grpc::StatusCode::NOT_FOUND, "not found");

  // Uploading it again finishes early with the full committed size.
  bs::WriteResponse again;
  REQUIRE(f.write(upload_name(d), data, again, 1 << 20).ok());
  CHECK(again.committed_size() == static_cast<std::int64_t>(data.size()));
}

TEST_CASE("ByteStream: malformed resource names are INVALID_ARGUMENT", "[grpc]") {
  Fixture f;
  std::string out;
  const std::string h = Sha256::digest_of("x").hex();
  CHECK_STATUS(f.read("blobs/" + h, out), grpc::StatusCode::INVALID_ARGUMENT, "lacks {hash}/{size}");
  CHECK_STATUS(f.read("nothing/here", out), grpc::StatusCode::INVALID_ARGUMENT, "not of the form");
  CHECK_STATUS(f.read("blobs/" + h + "/12x", out), grpc::StatusCode::INVALID_ARGUMENT, "size \"12x\"");
  CHECK_STATUS(f.read("blobs/" + h.substr(3) + "/1", out), grpc::StatusCode::INVALID_ARGUMENT,
               "digest function");
  CHECK_STATUS(f.read("compressed-blobs/lz4/" + h + "/1", out), grpc::StatusCode::INVALID_ARGUMENT,
               "compressor \"lz4\"");
  CHECK_STATUS(f.read("uploads/u1/blobs/" + h + "/1", out), grpc::StatusCode::INVALID_ARGUMENT,
               "\"uploads\" is reserved");
  bs::WriteResponse wr;
  CHECK_STATUS(f.write("blobs/" + h + "/1", "x", wr), grpc::StatusCode::INVALID_ARGUMENT,
               "uploads/uuid/blobs");
}

TEST_CASE("ByteStream: a Read request that does not parse is INVALID_ARGUMENT", "[grpc]") {
  // Read is served raw (the server decodes the request itself): send undecodable bytes.
  Fixture f;
  grpc::GenericStub stub(f.channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  auto step = [&cq](std::intptr_t want) {
    void* tag = nullptr;
    bool ok = false;
    REQUIRE(cq.Next(&tag, &ok));
    CHECK(reinterpret_cast<std::intptr_t>(tag) == want);
    return ok;
  };
  auto call = stub.PrepareCall(&ctx, "/google.bytestream.ByteStream/Read", &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  REQUIRE(step(1));
  const char garbage[] = {0x0a, static_cast<char>(0xff)};  // field 1, a length that never ends
  grpc::Slice slice(garbage, sizeof garbage);
  call->WriteLast(grpc::ByteBuffer(&slice, 1), grpc::WriteOptions(), reinterpret_cast<void*>(2));
  step(2);
  grpc::ByteBuffer resp;
  call->Read(&resp, reinterpret_cast<void*>(3));
  CHECK_FALSE(step(3));  // no data message
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  REQUIRE(step(4));
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(status.error_message(), Catch::Matchers::Contains("ReadRequest of 2 bytes does not parse"));
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_CASE("ByteStream: bad uploads are refused and store nothing", "[grpc]") {
  Fixture f;
  const std::string data = make_blob(3, 100000);
  const auto d = reapi::to_proto(Sha256::digest_of(data));
  bs::WriteResponse wr;
  std::string wrong = data;
  wrong[5] ^= 1;
  CHECK_STATUS(f.write(upload_name(d), wrong, wr), grpc::StatusCode::INVALID_ARGUMENT, "hashes to");
  CHECK_STATUS(f.write(upload_name(d), data, wr, 16384, 7), grpc::StatusCode::INVALID_ARGUMENT,
               "write_offset 16391 does not match the 16384 bytes");
  CHECK_STATUS(f.write(upload_name(d), data + "extra", wr), grpc::StatusCode::INVALID_ARGUMENT,
               "exceed the size");
  {
    // Stream closed without finish_write.
    grpc::ClientContext ctx;
    auto w = f.bytestream->Write(&ctx, &wr);
    bs::WriteRequest req;
    req.set_resource_name(upload_name(d));
    req.set_data(data.substr(0, 100));
    REQUIRE(w->Write(req));
    w->WritesDone();
    CHECK_STATUS(w->Finish(), grpc::StatusCode::INVALID_ARGUMENT, "without finish_write");
  }
  std::string out;
  CHECK(f.read(blob_name(d), out).error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("ByteStream: QueryWriteStatus reports stored blobs and unknown uploads", "[grpc]") {
  Fixture f;
  const auto d = f.upload("stored");
  bs::QueryWriteStatusRequest req;
  req.set_resource_name(upload_name(d));
  bs::QueryWriteStatusResponse resp;
  grpc::ClientContext ctx;
  REQUIRE(f.bytestream->QueryWriteStatus(&ctx, req, &resp).ok());
  CHECK(resp.complete());
  CHECK(resp.committed_size() == 6);

  req.set_resource_name(upload_name(reapi::to_proto(Sha256::digest_of("never"))));
  grpc::ClientContext ctx2;
  CHECK_STATUS(f.bytestream->QueryWriteStatus(&ctx2, req, &resp), grpc::StatusCode::NOT_FOUND,
               "no upload in progress");
}

TEST_CASE("ActionCache: update then get; results with missing outputs are misses", "[grpc]") {
  Fixture f;
  const auto action = reapi::to_proto(Sha256::digest_of("action 1"));
  re::GetActionResultRequest get;
  *get.mutable_action_digest() = action;
  re::ActionResult got;
  {
    grpc::ClientContext ctx;
    CHECK(f.ac->GetActionResult(&ctx, get, &got).error_code() == grpc::StatusCode::NOT_FOUND);
  }
  const auto out = f.upload("output bytes");
  re::ActionResult result;
  auto* file = result.add_output_files();
  file->set_path("out.txt");
  *file->mutable_digest() = out;
  result.set_exit_code(0);
  *result.mutable_stdout_digest() = reapi::to_proto(Sha256::digest_of(""));
  re::UpdateActionResultRequest update;
  *update.mutable_action_digest() = action;
  *update.mutable_action_result() = result;
  {
    re::ActionResult stored;
    grpc::ClientContext ctx;
    REQUIRE(f.ac->UpdateActionResult(&ctx, update, &stored).ok());
    CHECK(stored.output_files(0).path() == "out.txt");
  }
  {
    grpc::ClientContext ctx;
    REQUIRE(f.ac->GetActionResult(&ctx, get, &got).ok());
    CHECK(got.SerializeAsString() == result.SerializeAsString());
  }
  // A result referencing a blob that is not in the CAS is a miss.
  auto* missing = update.mutable_action_result()->add_output_files();
  missing->set_path("missing.txt");
  *missing->mutable_digest() = reapi::to_proto(Sha256::digest_of("not uploaded"));
  {
    re::ActionResult stored;
    grpc::ClientContext ctx;
    REQUIRE(f.ac->UpdateActionResult(&ctx, update, &stored).ok());
    grpc::ClientContext ctx2;
    CHECK_STATUS(f.ac->GetActionResult(&ctx2, get, &got), grpc::StatusCode::NOT_FOUND,
                 "missing blob");
  }
}

TEST_CASE("ActionCache: output directories count their files for completeness", "[grpc]") {
  Fixture f;
  re::Tree tree;
  auto* ff = tree.mutable_root()->add_files();
  ff->set_name("inner");
  *ff->mutable_digest() = reapi::to_proto(Sha256::digest_of("inner file, not uploaded"));
  const auto tree_digest = f.upload(tree.SerializeAsString());
  re::UpdateActionResultRequest update;
  *update.mutable_action_digest() = reapi::to_proto(Sha256::digest_of("action 2"));
  auto* od = update.mutable_action_result()->add_output_directories();
  od->set_path("dir");
  *od->mutable_tree_digest() = tree_digest;
  re::ActionResult stored;
  grpc::ClientContext ctx;
  REQUIRE(f.ac->UpdateActionResult(&ctx, update, &stored).ok());
  re::GetActionResultRequest get;
  *get.mutable_action_digest() = update.action_digest();
  re::ActionResult got;
  grpc::ClientContext ctx2;
  CHECK(f.ac->GetActionResult(&ctx2, get, &got).error_code() == grpc::StatusCode::NOT_FOUND);
  f.upload("inner file, not uploaded");
  grpc::ClientContext ctx3;
  CHECK(f.ac->GetActionResult(&ctx3, get, &got).ok());
}

TEST_CASE("ActionCache: malformed digests are INVALID_ARGUMENT and store nothing", "[grpc]") {
  Fixture f;
  re::UpdateActionResultRequest update;
  *update.mutable_action_digest() = bad_digest("short", 1);
  re::ActionResult stored;
  {
    grpc::ClientContext ctx;
    CHECK_STATUS(f.ac->UpdateActionResult(&ctx, update, &stored),
                 grpc::StatusCode::INVALID_ARGUMENT, "action_digest");
  }
  *update.mutable_action_digest() = reapi::to_proto(Sha256::digest_of("action 3"));
  *update.mutable_action_result()->add_output_files()->mutable_digest() = bad_digest("x", -1);
  {
    grpc::ClientContext ctx;
    CHECK_STATUS(f.ac->UpdateActionResult(&ctx, update, &stored),
                 grpc::StatusCode::INVALID_ARGUMENT, "output_files[0].digest");
  }
  re::GetActionResultRequest get;
  *get.mutable_action_digest() = update.action_digest();
  re::ActionResult got;
  grpc::ClientContext ctx;
  CHECK(f.ac->GetActionResult(&ctx, get, &got).error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("Health: SERVING once ready, NOT_SERVING once shutdown begins", "[grpc]") {
  Fixture f(Eviction::kAtime);
  auto health = grpc::health::v1::Health::NewStub(f.channel);
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  // Readiness (index walked, store writable) is checked in the background: poll for it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    grpc::ClientContext ctx;
    REQUIRE(health->Check(&ctx, req, &resp).ok());
    if (resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  CHECK(resp.status() == grpc::health::v1::HealthCheckResponse::SERVING);
  f.server->begin_shutdown();
  grpc::ClientContext ctx1;
  REQUIRE(health->Check(&ctx1, req, &resp).ok());
  CHECK(resp.status() == grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  f.server->shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  grpc::ClientContext ctx2;
  ctx2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  CHECK_FALSE(health->Check(&ctx2, req, &resp).ok());  // no longer accepting calls
}
