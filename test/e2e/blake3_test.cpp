// BLAKE3 against a real gorego process: every CAS, ByteStream and ActionCache call in the
// BLAKE3 keyspace, kept apart from SHA-256 digests with equal bytes, unsupported functions
// refused by every call, the keyspace kept across a crash and a clean restart, and BLAKE3
// through a proxy to a gorego upstream.
#include <catch2/catch.hpp>

#include <gorego/core/zstd.hpp>
#include <gorego/hash/blake3.hpp>

#include "harness.hpp"

using namespace gorego;
using namespace gorego::e2e;

namespace {

constexpr auto kBlake3 = re::DigestFunction::BLAKE3;

re::Digest b3(const std::string& data) { return reapi::to_proto(Blake3::digest_of(data)); }

std::string name_of(const re::Digest& d, std::string_view kind = "blobs") {
  return fmt::format("{}/blake3/{}/{}", kind, d.hash(), d.size_bytes());
}

grpc::Status read(const Server& s, const std::string& resource, std::string& out) {
  grpc::ClientContext ctx;
  bs::ReadRequest req;
  req.set_resource_name(resource);
  auto r = s.bytestream->Read(&ctx, req);
  bs::ReadResponse resp;
  out.clear();
  while (r->Read(&resp)) out += resp.data();
  return r->Finish();
}

std::vector<std::string> missing(const Server& s, const std::vector<re::Digest>& ds,
                                 re::DigestFunction::Value fn = kBlake3) {
  re::FindMissingBlobsRequest req;
  req.set_digest_function(fn);
  for (const auto& d : ds) *req.add_blob_digests() = d;
  re::FindMissingBlobsResponse resp;
  grpc::ClientContext ctx;
  const grpc::Status st = s.cas->FindMissingBlobs(&ctx, req, &resp);
  REQUIRE(st.ok());
  std::vector<std::string> out;
  for (const auto& d : resp.missing_blob_digests()) out.push_back(d.hash());
  return out;
}

/// BatchUpdateBlobs of `blobs` under `fn`; the per-blob status codes.
std::vector<int> batch_update(const Server& s, const std::vector<std::pair<re::Digest, std::string>>& blobs,
                              re::DigestFunction::Value fn = kBlake3) {
  re::BatchUpdateBlobsRequest req;
  req.set_digest_function(fn);
  for (const auto& [d, data] : blobs) {
    auto* r = req.add_requests();
    *r->mutable_digest() = d;
    r->set_data(data);
  }
  re::BatchUpdateBlobsResponse resp;
  grpc::ClientContext ctx;
  REQUIRE(s.cas->BatchUpdateBlobs(&ctx, req, &resp).ok());
  std::vector<int> out;
  for (const auto& r : resp.responses()) out.push_back(r.status().code());
  return out;
}

/// BatchReadBlobs of one blob; its status code and data.
std::pair<int, std::string> batch_read(const Server& s, const re::Digest& d, re::DigestFunction::Value fn = kBlake3) {
  re::BatchReadBlobsRequest req;
  req.set_digest_function(fn);
  *req.add_digests() = d;
  re::BatchReadBlobsResponse resp;
  grpc::ClientContext ctx;
  REQUIRE(s.cas->BatchReadBlobs(&ctx, req, &resp).ok());
  REQUIRE(resp.responses_size() == 1);
  return {resp.responses(0).status().code(), resp.responses(0).data()};
}

grpc::Status update_action(const Server& s, const re::Digest& action, const re::ActionResult& r,
                           re::DigestFunction::Value fn = kBlake3) {
  re::UpdateActionResultRequest req;
  req.set_digest_function(fn);
  *req.mutable_action_digest() = action;
  *req.mutable_action_result() = r;
  re::ActionResult out;
  grpc::ClientContext ctx;
  return s.ac->UpdateActionResult(&ctx, req, &out);
}

grpc::Status get_action(const Server& s, const re::Digest& action, re::ActionResult& out,
                        re::DigestFunction::Value fn = kBlake3) {
  re::GetActionResultRequest req;
  req.set_digest_function(fn);
  *req.mutable_action_digest() = action;
  grpc::ClientContext ctx;
  return s.ac->GetActionResult(&ctx, req, &out);
}

/// The same hash bytes as `d`, read as a SHA-256 digest: another blob.
re::Digest same_bytes(const re::Digest& d) { return d; }

}  // namespace

TEST_CASE("BLAKE3: CAS, ByteStream and ActionCache in their own keyspace", "[blake3]") {
  TempDir dir;
  Server s(dir);
  const std::string small = make_blob(31, 3000);
  const std::string large = make_blob(32, (3 << 20) + 17);
  const re::Digest ds = b3(small);
  const re::Digest dl = b3(large);

  // FindMissing, BatchUpdate, BatchRead.
  CHECK(missing(s, {ds, dl}).size() == 2);
  CHECK(batch_update(s, {{ds, small}}) == std::vector<int>{0});
  CHECK(missing(s, {ds, dl}) == std::vector<std::string>{dl.hash()});
  // The same bytes as a SHA-256 digest are another blob, and absent.
  CHECK(missing(s, {same_bytes(ds)}, re::DigestFunction::SHA256).size() == 1);
  CHECK(missing(s, {same_bytes(ds)}, re::DigestFunction::UNKNOWN).size() == 1);
  auto [code, data] = batch_read(s, ds);
  CHECK(code == 0);
  CHECK(data == small);
  CHECK(batch_read(s, ds, re::DigestFunction::SHA256).first == grpc::StatusCode::NOT_FOUND);
  // Bytes whose BLAKE3 is not the digest's are refused per blob, and not stored.
  const re::Digest sha_of_other = reapi::to_proto(Sha256::digest_of("other"));
  CHECK(batch_update(s, {{sha_of_other, "other"}}) == std::vector<int>{grpc::StatusCode::INVALID_ARGUMENT});
  CHECK(missing(s, {sha_of_other}).size() == 1);

  // ByteStream: a multi-message upload and read under blobs/blake3/.
  std::vector<std::string> pieces;
  for (std::size_t off = 0; off < large.size(); off += 1 << 20) pieces.push_back(large.substr(off, 1 << 20));
  std::int64_t committed = 0;
  REQUIRE(write_pieces(s, "uploads/1b2c3d4e-0000-4000-8000-000000000001/" + name_of(dl), pieces, committed).ok());
  CHECK(committed == dl.size_bytes());
  std::string out;
  REQUIRE(read(s, name_of(dl), out).ok());
  CHECK(out == large);
  CHECK(read(s, fmt::format("blobs/{}/{}", dl.hash(), dl.size_bytes()), out).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(read(s, fmt::format("blobs/sha256/{}/{}", dl.hash(), dl.size_bytes()), out).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  // An upload whose bytes do not hash to the BLAKE3 digest.
  const std::string wrong = make_blob(33, 70000);
  re::Digest lie = b3(wrong);
  lie.set_hash(reapi::to_proto(Sha256::digest_of(wrong)).hash());
  const grpc::Status bad = write_pieces(s, "uploads/1b2c3d4e-0000-4000-8000-000000000002/" + name_of(lie), {wrong}, committed);
  CHECK(bad.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(bad.error_message(), Catch::Matchers::Contains("hashes to"));
  // zstd with BLAKE3: compressed-blobs/zstd/blake3/...
  const std::string text(200000, 'b');
  const re::Digest dt = b3(text);
  auto z = zstd::compress(text);
  REQUIRE(z.ok());
  REQUIRE(write_pieces(s, "uploads/1b2c3d4e-0000-4000-8000-000000000003/" + name_of(dt, "compressed-blobs/zstd"), {*z},
                committed).ok());
  REQUIRE(read(s, name_of(dt), out).ok());
  CHECK(out == text);
  REQUIRE(read(s, name_of(dt, "compressed-blobs/zstd"), out).ok());
  auto plain = zstd::decompress(out, text.size());
  REQUIRE(plain.ok());
  CHECK(*plain == text);

  // GetTree over BLAKE3 directories.
  re::Directory leaf;
  auto* f = leaf.add_files();
  f->set_name("small");
  *f->mutable_digest() = ds;
  const std::string leaf_bytes = leaf.SerializeAsString();
  re::Directory root;
  auto* sub = root.add_directories();
  sub->set_name("sub");
  *sub->mutable_digest() = b3(leaf_bytes);
  const std::string root_bytes = root.SerializeAsString();
  CHECK(batch_update(s, {{b3(leaf_bytes), leaf_bytes}, {b3(root_bytes), root_bytes}}) == std::vector<int>{0, 0});
  {
    re::GetTreeRequest req;
    req.set_digest_function(kBlake3);
    *req.mutable_root_digest() = b3(root_bytes);
    grpc::ClientContext ctx;
    auto r = s.cas->GetTree(&ctx, req);
    re::GetTreeResponse resp;
    int dirs = 0;
    while (r->Read(&resp)) dirs += resp.directories_size();
    REQUIRE(r->Finish().ok());
    CHECK(dirs == 2);
  }
  {  // the same root as SHA-256: not there
    re::GetTreeRequest req;
    *req.mutable_root_digest() = b3(root_bytes);
    grpc::ClientContext ctx;
    auto r = s.cas->GetTree(&ctx, req);
    re::GetTreeResponse resp;
    while (r->Read(&resp)) {
    }
    CHECK(r->Finish().error_code() == grpc::StatusCode::NOT_FOUND);
  }

  // ActionCache: a BLAKE3 action whose outputs are BLAKE3 blobs.
  const re::Digest action = b3("an action");
  re::ActionResult result;
  auto* of = result.add_output_files();
  of->set_path("out/large");
  *of->mutable_digest() = dl;
  result.set_exit_code(0);
  REQUIRE(update_action(s, action, result).ok());
  re::ActionResult got;
  REQUIRE(get_action(s, action, got).ok());
  CHECK(got.output_files(0).digest().hash() == dl.hash());
  CHECK(get_action(s, action, got, re::DigestFunction::SHA256).error_code() == grpc::StatusCode::NOT_FOUND);
  // A result whose BLAKE3 output is not stored is not served (completeness).
  re::ActionResult incomplete = result;
  *incomplete.mutable_output_files(0)->mutable_digest() = b3("never uploaded");
  const re::Digest action2 = b3("another action");
  REQUIRE(update_action(s, action2, incomplete).ok());
  CHECK(get_action(s, action2, got).error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("BLAKE3: every call refuses a digest function it does not serve, naming it", "[blake3]") {
  TempDir dir;
  Server s(dir);
  const re::Digest d = b3("x");
  const std::string needle = "digest_function MD5 is not supported";
  auto check = [&](const grpc::Status& st) {
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(st.error_message(), Catch::Matchers::Contains(needle));
  };
  {
    re::FindMissingBlobsRequest req;
    req.set_digest_function(re::DigestFunction::MD5);
    *req.add_blob_digests() = d;
    re::FindMissingBlobsResponse resp;
    grpc::ClientContext ctx;
    check(s.cas->FindMissingBlobs(&ctx, req, &resp));
  }
  {
    re::BatchUpdateBlobsRequest req;
    req.set_digest_function(re::DigestFunction::MD5);
    re::BatchUpdateBlobsResponse resp;
    grpc::ClientContext ctx;
    check(s.cas->BatchUpdateBlobs(&ctx, req, &resp));
  }
  {
    re::BatchReadBlobsRequest req;
    req.set_digest_function(re::DigestFunction::MD5);
    *req.add_digests() = d;
    re::BatchReadBlobsResponse resp;
    grpc::ClientContext ctx;
    check(s.cas->BatchReadBlobs(&ctx, req, &resp));
  }
  {
    re::GetTreeRequest req;
    req.set_digest_function(re::DigestFunction::MD5);
    *req.mutable_root_digest() = d;
    grpc::ClientContext ctx;
    auto r = s.cas->GetTree(&ctx, req);
    re::GetTreeResponse resp;
    while (r->Read(&resp)) {
    }
    check(r->Finish());
  }
  re::ActionResult out;
  check(get_action(s, d, out, re::DigestFunction::MD5));
  check(update_action(s, d, out, re::DigestFunction::MD5));
  std::string data;
  const grpc::Status st = read(s, fmt::format("blobs/md5/{}/1", d.hash()), data);
  CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(st.error_message(), Catch::Matchers::Contains("digest function \"md5\""));
  // Capabilities list exactly the two served.
  auto caps_stub = re::Capabilities::NewStub(s.channel);
  re::GetCapabilitiesRequest creq;
  re::ServerCapabilities caps;
  grpc::ClientContext ctx;
  REQUIRE(caps_stub->GetCapabilities(&ctx, creq, &caps).ok());
  const auto& fns = caps.cache_capabilities().digest_functions();
  CHECK(std::vector<int>(fns.begin(), fns.end()) == std::vector<int>{re::DigestFunction::SHA256, kBlake3});
}

TEST_CASE("BLAKE3: the keyspace survives a crash and a clean restart", "[blake3]") {
  TempDir dir;
  const std::string blob = make_blob(41, 9000);
  const re::Digest d = b3(blob);
  const re::Digest action = b3("restart action");
  re::ActionResult result;
  *result.mutable_stdout_digest() = d;
  {
    Server s(dir);
    REQUIRE(batch_update(s, {{d, blob}}) == std::vector<int>{0});
    REQUIRE(update_action(s, action, result).ok());
    s.proc->signal(SIGKILL);  // no snapshot: the next start walks the disk and replays the log
    s.proc->wait();
  }
  for (int round = 0; round < 2; ++round) {
    Server s(dir);
    INFO("round " << round);
    CHECK(missing(s, {d}).empty());
    CHECK(missing(s, {same_bytes(d)}, re::DigestFunction::SHA256).size() == 1);
    CHECK(batch_read(s, d).second == blob);
    re::ActionResult got;
    CHECK(get_action(s, action, got).ok());
    CHECK(get_action(s, action, got, re::DigestFunction::SHA256).error_code() == grpc::StatusCode::NOT_FOUND);
    s.proc->signal(SIGTERM);  // a clean stop: the next round starts from the index snapshot
    CHECK(s.proc->wait() == 0);
  }
}

TEST_CASE("BLAKE3: a proxy reads and writes BLAKE3 through a gorego upstream", "[blake3][proxy]") {
  TempDir dir;
  Server up(dir, {}, "up");
  Server proxy(dir, {"--upstream", up.url(), "--upstream-mode", "through"}, "proxy");
  const std::string upstream_only = make_blob(51, 4000);
  const std::string large_upstream_only = make_blob(52, 5 << 20);
  REQUIRE(batch_update(up, {{b3(upstream_only), upstream_only}}) == std::vector<int>{0});
  std::int64_t committed = 0;
  REQUIRE(write_pieces(up, "uploads/1b2c3d4e-0000-4000-8000-000000000004/" + name_of(b3(large_upstream_only)),
                {large_upstream_only.substr(0, 3 << 20), large_upstream_only.substr(3 << 20)}, committed)
              .ok());
  // FindMissing and reads of the proxy see the upstream's BLAKE3 blobs.
  CHECK(missing(proxy, {b3(upstream_only), b3(large_upstream_only)}).empty());
  CHECK(batch_read(proxy, b3(upstream_only)).second == upstream_only);
  std::string out;
  REQUIRE(read(proxy, name_of(b3(large_upstream_only)), out).ok());
  CHECK(out == large_upstream_only);
  // Not under SHA-256.
  CHECK(batch_read(proxy, b3(upstream_only), re::DigestFunction::SHA256).first == grpc::StatusCode::NOT_FOUND);
  // Writes through the proxy land upstream in the BLAKE3 keyspace.
  const std::string via_proxy = make_blob(53, 6000);
  REQUIRE(batch_update(proxy, {{b3(via_proxy), via_proxy}}) == std::vector<int>{0});
  CHECK(missing(up, {b3(via_proxy)}).empty());
  CHECK(missing(up, {b3(via_proxy)}, re::DigestFunction::SHA256).size() == 1);
  const re::Digest action = b3("proxied action");
  re::ActionResult result;
  *result.mutable_stdout_digest() = b3(via_proxy);
  REQUIRE(update_action(proxy, action, result).ok());
  re::ActionResult got;
  CHECK(get_action(up, action, got).ok());
}

TEST_CASE("BLAKE3: behind an upstream without BLAKE3, BLAKE3 stays in the local tier", "[blake3][proxy][bst]") {
  TempDir dir;
  auto bst = start_bst(dir);  // BuildStream's CAS server lists SHA256 only
  Server proxy(dir, {"--upstream", bst->url(), "--upstream-mode", "through"}, "proxy");
  REQUIRE(wait_for_log(proxy.log, "upstream does not list BLAKE3"));
  const std::string blob = make_blob(61, 7000);
  const re::Digest d = b3(blob);
  // A miss is a plain miss (the upstream is not asked, so it cannot refuse the function).
  CHECK(missing(proxy, {d}).size() == 1);
  CHECK(batch_read(proxy, d).first == grpc::StatusCode::NOT_FOUND);
  // Writes are acknowledged and served from the local tier.
  REQUIRE(batch_update(proxy, {{d, blob}}) == std::vector<int>{0});
  CHECK(missing(proxy, {d}).empty());
  CHECK(batch_read(proxy, d).second == blob);
  const re::Digest action = b3("local action");
  re::ActionResult result;
  *result.mutable_stdout_digest() = d;
  REQUIRE(update_action(proxy, action, result).ok());
  re::ActionResult got;
  CHECK(get_action(proxy, action, got).ok());
  // SHA-256 still goes through to the upstream.
  REQUIRE(proxy.batch_upload("sha through").ok());
  CHECK(bst->has(reapi::to_proto(Sha256::digest_of("sha through"))));
}
