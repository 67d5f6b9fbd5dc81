// A gorego proxy in front of real upstreams: a second gorego process and BuildStream's
// CAS server. Read-through, write-through in both modes, the ActionCache through the
// proxy, singleflight counted at the upstream, and upstream faults.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <regex>
#include <thread>

#include "harness.hpp"

using namespace gorego;
using namespace gorego::e2e;

namespace {

re::Digest digest_of(const std::string& data) { return reapi::to_proto(Sha256::digest_of(data)); }

/// Lines of an upstream's debug log that record a ByteStream Read of `d`.
int upstream_reads(const Server& up, const re::Digest& d) {
  const std::string log = slurp(up.log);
  int n = 0;
  for (std::size_t pos = 0; (pos = log.find("\"msg\":\"ByteStream.Read\"", pos)) != std::string::npos; ++pos) {
    const std::size_t eol = log.find('\n', pos);
    if (log.substr(pos, eol - pos).find(d.hash()) != std::string::npos) ++n;
  }
  return n;
}

re::ActionResult result_with(const re::Digest& out) {
  re::ActionResult r;
  auto* f = r.add_output_files();
  f->set_path("out");
  *f->mutable_digest() = out;
  return r;
}

grpc::Status update_action(const Server& s, const re::Digest& action, const re::ActionResult& r) {
  re::UpdateActionResultRequest req;
  *req.mutable_action_digest() = action;
  *req.mutable_action_result() = r;
  re::ActionResult resp;
  grpc::ClientContext ctx;
  return s.ac->UpdateActionResult(&ctx, req, &resp);
}

grpc::Status get_action(const Server& s, const re::Digest& action, re::ActionResult& out) {
  re::GetActionResultRequest req;
  *req.mutable_action_digest() = action;
  grpc::ClientContext ctx;
  return s.ac->GetActionResult(&ctx, req, &out);
}

/// BuildStream's CAS server (a REAPI server we did not write) on a free loopback port.

}  // namespace

TEST_CASE("Proxy: a miss is read through, verified and kept locally", "[proxy]") {
  TempDir dir;
  Server up(dir, {}, "up");
  Server proxy(dir, {"--upstream", up.url()}, "proxy");
  const std::string small = make_blob(1, 2000);
  const std::string large = make_blob(2, 6 << 20);
  REQUIRE(up.batch_upload(small).ok());
  REQUIRE(up.upload(large));
  std::string out;
  REQUIRE(proxy.read(digest_of(small), out).ok());
  CHECK(out == small);
  REQUIRE(proxy.read(digest_of(large), out).ok());
  CHECK(out == large);
  // With the upstream gone, the local copies keep being served.
  up.proc->signal(SIGKILL);
  up.proc->wait();
  REQUIRE(proxy.read(digest_of(small), out).ok());
  CHECK(out == small);
  REQUIRE(proxy.read(digest_of(large), out).ok());
  CHECK(out == large);
}

TEST_CASE("Proxy: FindMissingBlobs is answered by the upstream", "[proxy]") {
  TempDir dir;
  Server up(dir, {}, "up");
  const std::string local_only = make_blob(3, 500);
  {
    Server alone(dir, {}, "proxy");  // the same data directory, before it had an upstream
    REQUIRE(alone.batch_upload(local_only).ok());
    alone.proc->signal(SIGTERM);
    REQUIRE(alone.proc->wait() == 0);
  }
  Server proxy(dir, {"--upstream", up.url()}, "proxy");
  CHECK_FALSE(proxy.has(digest_of(local_only)));  // reported missing, so clients upload it
  REQUIRE(proxy.batch_upload(local_only).ok());
  CHECK(up.has(digest_of(local_only)));
}

TEST_CASE("Proxy: mode through writes blobs and action results to the upstream before acknowledging",
          "[proxy]") {
  TempDir dir;
  Server up(dir, {}, "up");
  Server proxy(dir, {"--upstream", up.url(), "--upstream-mode", "through"}, "proxy");
  const std::string small = make_blob(4, 100);
  const std::string large = make_blob(5, 3 << 20);
  REQUIRE(proxy.batch_upload(small).ok());
  REQUIRE(proxy.upload(large));
  CHECK(up.has(digest_of(small)));  // no waiting: acknowledged means upstream has it
  CHECK(up.has(digest_of(large)));
  const auto action = digest_of("action through");
  REQUIRE(update_action(proxy, action, result_with(digest_of(large))).ok());
  re::ActionResult got;
  REQUIRE(get_action(up, action, got).ok());
  CHECK(got.output_files(0).digest().hash() == digest_of(large).hash());

  // A second proxy with an empty local tier gets the result and its output from upstream.
  Server fresh(dir, {"--upstream", up.url()}, "fresh");
  REQUIRE(get_action(fresh, action, got).ok());
  std::string out;
  REQUIRE(fresh.read(digest_of(large), out).ok());
  CHECK(out == large);

  // Blobs the upstream already has, uploaded through a proxy that does not: its streamed
  // write-through ends early (the upstream answers before the last chunk), several times.
  Server other(dir, {"--upstream", up.url(), "--upstream-mode", "through"}, "other");
  for (std::uint64_t seed = 20; seed < 24; ++seed) {
    const std::string blob = make_blob(seed, 5 << 20);
    REQUIRE(up.upload(blob));
    INFO("seed " << seed << "\n" << other.proc->log());
    CHECK(other.upload(blob));
    CHECK(other.read_verified(digest_of(blob)));
  }
}

TEST_CASE("Proxy: mode back acknowledges locally and uploads in the background", "[proxy]") {
  TempDir dir;
  Server up(dir, {}, "up");
  Server proxy(dir, {"--upstream", up.url(), "--upstream-mode", "back"}, "proxy");
  const std::string blob = make_blob(6, 2 << 20);
  REQUIRE(proxy.upload(blob));
  const auto action = digest_of("action back");
  REQUIRE(update_action(proxy, action, result_with(digest_of(blob))).ok());
  re::ActionResult got;
  REQUIRE(get_action(proxy, action, got).ok());  // served at once, from the local tier
  CHECK(eventually([&] { return up.has(digest_of(blob)); }));
  CHECK(eventually([&] { re::ActionResult r; return get_action(up, action, r).ok(); }));
}

TEST_CASE("Proxy: mode back uploads what it acknowledged even after kill -9 (the write-back journal)",
          "[proxy][crash]") {
  TempDir dir;
  // The upstream's port takes connections but never answers, so each queued upload waits
  // (no attempt fails and is given up) until the proxy is killed.
  const int up_port = free_port();
  const int mute = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(mute >= 0);
  const int one = 1;
  ::setsockopt(mute, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(up_port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(mute, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(mute, 64) == 0);
  const std::vector<std::string> proxy_args{"--upstream", fmt::format("grpc://127.0.0.1:{}", up_port),
                                            "--upstream-mode", "back"};
  std::vector<std::string> blobs;
  std::vector<re::Digest> actions;
  {
    Server proxy(dir, proxy_args, "proxy");
    for (int i = 0; i < 12; ++i) {
      blobs.push_back(make_blob(400 + i, i % 3 == 0 ? (1 << 20) + i : 1000 + i * 37));
      REQUIRE(proxy.upload(blobs.back()));  // acknowledged: stored locally, queued
    }
    for (int i = 0; i < 4; ++i) {
      actions.push_back(digest_of(fmt::format("journal action {}", i)));
      REQUIRE(update_action(proxy, actions.back(), result_with(digest_of(blobs[i]))).ok());
    }
    proxy.proc->signal(SIGKILL);
    proxy.proc->wait();
  }
  ::close(mute);
  auto up_proc = std::make_unique<Process>(
      std::vector<std::string>{"--listen", fmt::format("127.0.0.1:{}", up_port), "--data-dir",
                               (dir.path() / "up-data").string(), "--metrics-addr",
                               fmt::format("127.0.0.1:{}", free_port())},
      dir.path() / "up.log");
  Server up(up_port, std::move(up_proc), dir.path() / "up.log");
  Server proxy(dir, proxy_args, "proxy");  // the same data directory: replays the journal
  std::vector<re::Digest> ds;
  for (const auto& b : blobs) ds.push_back(digest_of(b));
  INFO(slurp(proxy.log));
  CHECK(eventually([&] { return up.find_missing(ds).empty(); }));
  for (const auto& d : ds) CHECK(up.read_verified(d));
  for (const auto& action : actions) {
    CHECK(eventually([&] { re::ActionResult r; return get_action(up, action, r).ok(); }));
  }
  CHECK_THAT(slurp(proxy.log), Catch::Matchers::Contains("write-back journal replayed"));
}

TEST_CASE("Proxy: 100 concurrent readers of one uncached blob cost one upstream read", "[proxy]") {
  TempDir dir;
  Server up(dir, {"--log-level", "debug"}, "up");
  Server proxy(dir, {"--upstream", up.url(), "--io-threads", "16"}, "proxy");
  const std::string blob = make_blob(7, 32 << 20);
  const auto d = digest_of(blob);
  REQUIRE(up.upload(blob));
  std::atomic<int> correct{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 100; ++i) {
    readers.emplace_back([&] {
      std::string out;
      if (proxy.read(d, out).ok() && out == blob) ++correct;
    });
  }
  for (auto& t : readers) t.join();
  CHECK(correct == 100);
  CHECK(upstream_reads(up, d) == 1);
}

TEST_CASE("Proxy: an unreachable upstream does not stop the proxy", "[proxy][faults]") {
  TempDir dir;
  const std::string local = make_blob(8, 700);
  {
    Server alone(dir, {}, "proxy");
    REQUIRE(alone.batch_upload(local).ok());
    alone.proc->signal(SIGTERM);
    REQUIRE(alone.proc->wait() == 0);
  }
  const std::string nowhere = fmt::format("grpc://127.0.0.1:{}", free_port());
  std::ofstream(dir.path() / "fast.yaml") << "remote:\n  timeout: 2s\n  retries: 0\n";
  Server proxy(dir, {"--upstream", nowhere, "--config", (dir.path() / "fast.yaml").string()}, "proxy");
  std::string out;
  REQUIRE(proxy.read(digest_of(local), out).ok());  // local hits are served
  CHECK(out == local);
  CHECK(proxy.has(digest_of(local)));  // degraded: the local tier answers FindMissingBlobs
  CHECK(proxy.read(digest_of("absent"), out).error_code() == grpc::StatusCode::NOT_FOUND);
  const Status s = proxy.batch_upload(make_blob(9, 10));  // mode through cannot acknowledge
  CHECK(s.code() == Code::kUnavailable);
  CHECK_THAT(s.message(), Catch::Matchers::Contains("did not accept"));
}

TEST_CASE("Proxy: a hung upstream times out and a killed one fails cleanly", "[proxy][faults]") {
  TempDir dir;
  Server up(dir, {}, "up");
  std::ofstream(dir.path() / "fast.yaml") << "remote:\n  timeout: 2s\n  retries: 0\n";
  Server proxy(dir, {"--upstream", up.url(), "--config", (dir.path() / "fast.yaml").string()}, "proxy");
  const std::string cached = make_blob(10, 1000);
  const std::string big = make_blob(11, 8 << 20);
  REQUIRE(proxy.batch_upload(cached).ok());
  REQUIRE(up.upload(big));
  std::string out;
  up.proc->signal(SIGSTOP);  // slow: accepts connections, never answers
  CHECK(proxy.read(digest_of(big), out).error_code() == grpc::StatusCode::NOT_FOUND);
  REQUIRE(proxy.read(digest_of(cached), out).ok());
  CHECK(out == cached);
  // Killed while a read-through is in flight: the caller gets a miss, nothing is stored.
  grpc::Status in_flight;
  std::thread reader([&] {
    std::string o;
    in_flight = proxy.read(digest_of(big), o);
  });
  up.proc->signal(SIGKILL);
  up.proc->wait();
  reader.join();
  CHECK(in_flight.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(proxy.read(digest_of(big), out).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(gorego::testing::upload_leftovers(proxy.data) == 0);
}

TEST_CASE("Proxy: in front of BuildStream's CAS server, read-through and write-through work",
          "[proxy][bst]") {
  TempDir dir;
  auto bst = start_bst(dir);
  Server proxy(dir, {"--upstream", bst->url()}, "proxy");
  const std::string small = make_blob(12, 300);
  const std::string large = make_blob(13, 5 << 20);
  REQUIRE(proxy.batch_upload(small).ok());
  REQUIRE(proxy.upload(large));
  CHECK(bst->has(digest_of(small)));
  CHECK(bst->has(digest_of(large)));
  std::string out;
  REQUIRE(bst->read(digest_of(large), out).ok());
  CHECK(out == large);

  const std::string theirs = make_blob(14, 4 << 20);
  REQUIRE(bst->upload(theirs));
  REQUIRE(proxy.read(digest_of(theirs), out).ok());
  CHECK(out == theirs);
}

TEST_CASE("Proxy: wrong bytes from the upstream are never stored or served", "[proxy][bst][faults]") {
  TempDir dir;
  auto bst = start_bst(dir);
  Server proxy(dir, {"--upstream", bst->url()}, "proxy");
  const std::string small = make_blob(15, 300);
  const std::string large = make_blob(16, 3 << 20);
  REQUIRE(bst->batch_upload(small).ok());
  REQUIRE(bst->upload(large));
  // Overwrite BuildStream's copies with same-length garbage; it does not re-verify reads.
  for (const auto& d : {digest_of(small), digest_of(large)}) {
    const auto path = dir.path() / "bst" / "cas" / "objects" / d.hash().substr(0, 2) / d.hash().substr(2);
    REQUIRE(std::filesystem::exists(path));
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(d.size_bytes() / 2);
    f.put('!');
  }
  std::string out;
  CHECK(proxy.read(digest_of(small), out).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(proxy.read(digest_of(large), out).error_code() == grpc::StatusCode::NOT_FOUND);
  re::BatchReadBlobsRequest req;
  *req.add_digests() = digest_of(small);
  re::BatchReadBlobsResponse resp;
  grpc::ClientContext ctx;
  REQUIRE(proxy.cas->BatchReadBlobs(&ctx, req, &resp).ok());
  CHECK(resp.responses(0).status().code() == static_cast<int>(Code::kNotFound));
  CHECK(resp.responses(0).data().empty());
  CHECK_THAT(slurp(proxy.log), Catch::Matchers::Contains("upstream returned wrong bytes"));
  // Nothing was kept: the proxy's CAS holds no file.
  std::size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(proxy.data / "cas")) files += e.is_regular_file();
  CHECK(files == 0);
}

TEST_CASE("Proxy: a grpcs:// upstream with mutual TLS", "[proxy][bst][tls]") {
  TempDir dir;
  const auto certs = dir.path() / "certs";
  REQUIRE(std::system(fmt::format("bash {}/test/e2e/make_test_certs.sh {}", GOREGO_SOURCE_DIR, certs.string()).c_str()) == 0);
  const int port = free_port();
  Process bst("/usr/bin/python3",
              {GOREGO_SOURCE_DIR "/test/e2e/bst_cas_server.py", "--repo", (dir.path() / "bst").string(),
               "--port", std::to_string(port), "--tls-cert", (certs / "server.pem").string(),
               "--tls-key", (certs / "server.key").string(), "--tls-client-ca", (certs / "ca.pem").string()},
              dir.path() / "bst.log");
  REQUIRE(wait_for_log(dir.path() / "bst.log", "listening on"));
  const std::string target = fmt::format("grpcs://127.0.0.1:{}", port);
  std::ofstream(dir.path() / "mtls.yaml") << fmt::format(
      "remote:\n  tls_ca_file: {}\n  tls_cert_file: {}\n  tls_key_file: {}\n", (certs / "ca.pem").string(),
      (certs / "client.pem").string(), (certs / "client.key").string());
  const std::string small = make_blob(20, 200);
  const std::string large = make_blob(21, 3 << 20);
  {
    Server proxy(dir, {"--upstream", target, "--config", (dir.path() / "mtls.yaml").string()}, "proxy");
    REQUIRE(proxy.batch_upload(small).ok());  // mode through: acknowledged by the TLS upstream
    REQUIRE(proxy.upload(large));
  }
  Server fresh(dir, {"--upstream", target, "--config", (dir.path() / "mtls.yaml").string()}, "fresh");
  std::string out;
  REQUIRE(fresh.read(digest_of(large), out).ok());
  CHECK(out == large);
  REQUIRE(fresh.read(digest_of(small), out).ok());
  CHECK(out == small);

  // Without a client certificate the upstream refuses the connection.
  std::ofstream(dir.path() / "nocert.yaml") << fmt::format(
      "remote:\n  tls_ca_file: {}\n  timeout: 3s\n  retries: 0\n", (certs / "ca.pem").string());
  Server nocert(dir, {"--upstream", target, "--config", (dir.path() / "nocert.yaml").string()}, "nocert");
  const Status s = nocert.batch_upload(make_blob(22, 10));
  CHECK(s.code() == Code::kUnavailable);
  CHECK(nocert.read(digest_of(large), out).error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("Proxy: the bearer token and extra headers reach the upstream", "[proxy][bst][auth]") {
  for (const auto& [setting, required] :
       {std::pair{std::string("bearer_token: s3cret"), std::string("authorization:Bearer s3cret")},
        std::pair{std::string("header: \"x-api-key: k3y\""), std::string("x-api-key:k3y")},
        std::pair{std::string("headers: [\"x-other: 1\", \"x-api-key: k3y\"]"),
                  std::string("x-api-key:k3y")}}) {
    INFO(setting);
    TempDir dir;
    auto bst = start_bst(dir, {"--require-header", required});
    std::ofstream(dir.path() / "auth.yaml") << "remote:\n  " << setting << "\n";
    std::ofstream(dir.path() / "none.yaml") << "remote:\n  retries: 0\n";
    Server with(dir, {"--upstream", bst->url(), "--config", (dir.path() / "auth.yaml").string()}, "with");
    Server without(dir, {"--upstream", bst->url(), "--config", (dir.path() / "none.yaml").string()}, "without");
    const std::string blob = make_blob(30, 100);
    REQUIRE(with.batch_upload(blob).ok());
    const Status refused = without.batch_upload(make_blob(31, 100));
    CHECK(refused.code() == Code::kUnauthenticated);
    std::string out;
    CHECK(without.read(digest_of(blob), out).error_code() == grpc::StatusCode::NOT_FOUND);
    REQUIRE(with.read(digest_of(blob), out).ok());
    CHECK(out == blob);
  }
}
