// TLS, mTLS, authentication, rights and call limits of a real gorego process: certificates
// made by the test with openssl (test/e2e/make_test_certs.sh), clients over real gRPC.
#include <catch2/catch.hpp>

#include <grpcpp/security/credentials.h>

#include <cstdlib>
#include <fstream>

#include "harness.hpp"

using namespace gorego;
using namespace gorego::e2e;

namespace {

/// A CA with a server certificate for 127.0.0.1 and a client certificate
/// (CN "gorego test client"), made fresh in `dir`.
struct Certs {
  std::filesystem::path dir;
  Certs(const TempDir& t, const std::string& name) : dir(t.path() / name) {
    const auto cmd = fmt::format("bash {}/test/e2e/make_test_certs.sh {}", GOREGO_SOURCE_DIR, dir.string());
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  [[nodiscard]] std::string path(const char* file) const { return (dir / file).string(); }
  [[nodiscard]] std::string pem(const char* file) const { return slurp(dir / file); }
};

std::shared_ptr<grpc::ChannelCredentials> tls(const Certs& roots, const Certs* client = nullptr) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = roots.pem("ca.pem");
  if (client != nullptr) {
    o.pem_cert_chain = client->pem("client.pem");
    o.pem_private_key = client->pem("client.key");
  }
  return grpc::SslCredentials(o);
}

/// A channel of its own (not shared with other channels of this process): its own connection.
std::shared_ptr<grpc::Channel> own_channel(const std::string& address,
                                           std::shared_ptr<grpc::ChannelCredentials> creds = nullptr) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, creds ? creds : grpc::InsecureChannelCredentials(), args);
}

/// FindMissingBlobs of one digest over `ch`, with `authorization` when not empty.
grpc::Status find_missing(const std::shared_ptr<grpc::Channel>& ch, const std::string& authorization = {}) {
  auto stub = re::ContentAddressableStorage::NewStub(ch);
  re::FindMissingBlobsRequest req;
  *req.add_blob_digests() = reapi::to_proto(Sha256::digest_of("probe"));
  re::FindMissingBlobsResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  return stub->FindMissingBlobs(&ctx, req, &resp);
}

/// The calls a cache client makes, each with `authorization`.
struct Caller {
  std::shared_ptr<grpc::Channel> ch;
  std::string authorization;

  void prepare(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  }
  [[nodiscard]] grpc::Status find() const { return find_missing(ch, authorization); }
  [[nodiscard]] grpc::Status batch_upload(const std::string& data) const {
    re::BatchUpdateBlobsRequest req;
    auto* r = req.add_requests();
    *r->mutable_digest() = reapi::to_proto(Sha256::digest_of(data));
    r->set_data(data);
    re::BatchUpdateBlobsResponse resp;
    grpc::ClientContext ctx;
    prepare(ctx);
    grpc::Status s = re::ContentAddressableStorage::NewStub(ch)->BatchUpdateBlobs(&ctx, req, &resp);
    if (s.ok() && resp.responses(0).status().code() != 0) {
      s = grpc::Status(static_cast<grpc::StatusCode>(resp.responses(0).status().code()), resp.responses(0).status().message());
    }
    return s;
  }
  [[nodiscard]] grpc::Status write(const std::string& data) const {
    const auto d = reapi::to_proto(Sha256::digest_of(data));
    grpc::ClientContext ctx;
    prepare(ctx);
    bs::WriteResponse resp;
    auto w = bs::ByteStream::NewStub(ch)->Write(&ctx, &resp);
    bs::WriteRequest req;
    req.set_resource_name(
        fmt::format("uploads/0e2b7f4c-1d3a-4b5c-8d6e-7f8091a2b3c4/blobs/{}/{}", d.hash(), d.size_bytes()));
    req.set_data(data);
    req.set_finish_write(true);
    w->Write(req);
    w->WritesDone();
    return w->Finish();
  }
  [[nodiscard]] grpc::Status read(const std::string& data, std::string& out) const {
    const auto d = reapi::to_proto(Sha256::digest_of(data));
    grpc::ClientContext ctx;
    prepare(ctx);
    bs::ReadRequest req;
    req.set_resource_name(fmt::format("blobs/{}/{}", d.hash(), d.size_bytes()));
    auto r = bs::ByteStream::NewStub(ch)->Read(&ctx, req);
    bs::ReadResponse resp;
    out.clear();
    while (r->Read(&resp)) out += resp.data();
    return r->Finish();
  }
  [[nodiscard]] grpc::Status update_action(const std::string& output) const {
    re::UpdateActionResultRequest req;
    *req.mutable_action_digest() = reapi::to_proto(Sha256::digest_of("action " + output));
    req.mutable_action_result()->set_stdout_raw(output);
    re::ActionResult resp;
    grpc::ClientContext ctx;
    prepare(ctx);
    return re::ActionCache::NewStub(ch)->UpdateActionResult(&ctx, req, &resp);
  }
  [[nodiscard]] grpc::Status get_action(const std::string& output) const {
    re::GetActionResultRequest req;
    *req.mutable_action_digest() = reapi::to_proto(Sha256::digest_of("action " + output));
    re::ActionResult resp;
    grpc::ClientContext ctx;
    prepare(ctx);
    return re::ActionCache::NewStub(ch)->GetActionResult(&ctx, req, &resp);
  }
  [[nodiscard]] grpc::Status capabilities() const {
    re::GetCapabilitiesRequest req;
    re::ServerCapabilities resp;
    grpc::ClientContext ctx;
    prepare(ctx);
    return re::Capabilities::NewStub(ch)->GetCapabilities(&ctx, req, &resp);
  }
};

void write_file(const std::filesystem::path& p, const std::string& text) {
  const auto tmp = p.string() + ".tmp";
  std::ofstream(tmp) << text;
  std::filesystem::rename(tmp, p);  // atomic: a reader sees the old or the new file
}

/// A ByteStream upload of `data` of which the first `sent` bytes go out at once; the rest
/// waits for finish() (or never comes: abandon(), or Finish() on `w` after the server cuts it).
struct HeldUpload {
  HeldUpload(const std::shared_ptr<grpc::Channel>& ch, std::string bytes, std::size_t sent, int id)
      : data(std::move(bytes)), first(sent) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    w = bs::ByteStream::NewStub(ch)->Write(&ctx, &resp);
    const auto d = reapi::to_proto(Sha256::digest_of(data));
    bs::WriteRequest req;
    req.set_resource_name(fmt::format("uploads/3c4d5e6f-0a1b-4c2d-9e3f-{:012}/blobs/{}/{}", id, d.hash(), d.size_bytes()));
    req.set_data(data.substr(0, first));
    started = w->Write(req);
  }
  /// Sends the rest with finish_write; the call's status.
  grpc::Status finish() {
    bs::WriteRequest req;
    req.set_write_offset(static_cast<std::int64_t>(first));
    req.set_data(data.substr(first));
    req.set_finish_write(true);
    if (w->Write(req)) w->WritesDone();
    return w->Finish();
  }
  /// Ends the stream without finishing the upload; the call's status.
  grpc::Status abandon() {
    w->WritesDone();
    return w->Finish();
  }

  std::string data;
  std::size_t first;
  grpc::ClientContext ctx;
  bs::WriteResponse resp;
  std::unique_ptr<grpc::ClientWriter<bs::WriteRequest>> w;
  bool started = false;
};

constexpr const char* kCiToken = "ci-7d1f0c2e9a8b4c3d";
constexpr const char* kReaderToken = "reader-52b6e1a09f7c4d88";
constexpr const char* kAdminToken = "admin-0a9f8e7d6c5b4a39";

std::string bearer(const char* token) { return std::string("Bearer ") + token; }

}  // namespace

TEST_CASE("Security: a TLS listener serves TLS 1.2+ clients and refuses plaintext and TLS 1.1", "[security][tls]") {
  TempDir dir;
  Certs certs(dir, "certs");
  Server s(dir, {"--tls-cert", certs.path("server.pem"), "--tls-key", certs.path("server.key")}, "", tls(certs));
  CHECK(find_missing(s.channel).ok());
  const grpc::Status plain = find_missing(own_channel(s.address()));
  CHECK(plain.error_code() == grpc::StatusCode::UNAVAILABLE);
  // The handshake itself, with openssl as the client: TLS 1.2 is accepted (the control),
  // TLS 1.1 is not, even with a client willing to use old ciphers.
  const auto probe = [&](const char* version) {
    const auto out = dir.path() / "s_client.txt";
    const auto cmd = fmt::format(
        "echo | timeout 10 openssl s_client -connect {} {} -CAfile {} -cipher DEFAULT@SECLEVEL=0 -alpn h2 >{} 2>&1",
        s.address(), version, certs.path("ca.pem"), out.string());
    [[maybe_unused]] const int rc = std::system(cmd.c_str());
    return slurp(out);
  };
  const std::string v12 = probe("-tls1_2");
  INFO(v12);
  CHECK(v12.find("New, TLSv1.2, Cipher is") != std::string::npos);
  const std::string v11 = probe("-tls1_1");
  INFO(v11);
  CHECK(v11.find("Cipher is (NONE)") != std::string::npos);
  CHECK(v11.find("New, TLSv1.1, Cipher is") == std::string::npos);
  INFO(s.proc->log());
  CHECK(s.proc->log().find("\"tls\":\"on\"") != std::string::npos);
}

TEST_CASE("Security: mTLS refuses clients without a certificate or with another CA's; allowed_clients names them",
          "[security][tls]") {
  TempDir dir;
  Certs certs(dir, "certs");
  Certs other(dir, "other");  // an unrelated CA and its client certificate
  const std::vector<std::string> mtls{"--tls-cert", certs.path("server.pem"), "--tls-key", certs.path("server.key"),
                                      "--tls-client-ca", certs.path("ca.pem")};
  Server s(dir, mtls, "mtls", tls(certs, &certs));
  CHECK(find_missing(s.channel).ok());
  CHECK(find_missing(own_channel(s.address(), tls(certs))).error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(find_missing(own_channel(s.address(), tls(certs, &other))).error_code() == grpc::StatusCode::UNAVAILABLE);

  // A certificate of the right CA whose name is not allowed: the handshake succeeds, the
  // call is refused naming the certificate.
  std::ofstream(dir.path() / "allowed.yaml") << "tls:\n  allowed_clients: [\"ci-runner\", \"build-farm\"]\n";
  auto args = mtls;
  args.insert(args.end(), {"--config", (dir.path() / "allowed.yaml").string()});
  Server filtered(dir, args, "filtered", tls(certs, &certs));
  const grpc::Status st = find_missing(filtered.channel);
  CHECK(st.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK_THAT(st.error_message(), Catch::Contains("gorego test client") && Catch::Contains("tls.allowed_clients"));

  std::ofstream(dir.path() / "allowed2.yaml")
      << "tls:\n  allowed_clients: [\"gorego test client\"]\nauth:\n  rights:\n    gorego test client: read\n";
  args = mtls;
  args.insert(args.end(), {"--config", (dir.path() / "allowed2.yaml").string()});
  Server named(dir, args, "named", tls(certs, &certs));
  CHECK(find_missing(named.channel).ok());
  // The certificate's name is the principal, with the rights given to it.
  const grpc::Status up = Caller{named.channel, {}}.batch_upload("not for readers");
  CHECK(up.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK_THAT(up.error_message(), Catch::Contains("\"gorego test client\"") && Catch::Contains("write-cas"));
}

TEST_CASE("Security: a rotated certificate reaches new connections while an open one keeps working",
          "[security][tls]") {
  TempDir dir;
  Certs first(dir, "first");
  Certs second(dir, "second");  // another CA: only a client trusting it can talk to the new certificate
  const auto live = dir.path() / "live";
  std::filesystem::create_directories(live);
  std::filesystem::copy_file(first.dir / "server.pem", live / "server.pem");
  std::filesystem::copy_file(first.dir / "server.key", live / "server.key");
  std::ofstream(dir.path() / "tls.yaml") << fmt::format(
      "tls:\n  cert_file: {}\n  key_file: {}\n  reload_interval: 1s\n", (live / "server.pem").string(),
      (live / "server.key").string());
  Server s(dir, {"--config", (dir.path() / "tls.yaml").string()}, "", tls(first));
  REQUIRE(find_missing(s.channel).ok());

  write_file(live / "server.key", second.pem("server.key"));
  write_file(live / "server.pem", second.pem("server.pem"));
  CHECK(eventually([&] { return find_missing(own_channel(s.address(), tls(second))).ok(); }, 20));
  // The connection opened before the rotation is still up: its client trusts only the first
  // CA, so a new handshake would have failed.
  CHECK(find_missing(s.channel).ok());
  CHECK(find_missing(own_channel(s.address(), tls(first))).error_code() == grpc::StatusCode::UNAVAILABLE);
}

TEST_CASE("Security: each right is enforced per token; bad tokens are UNAUTHENTICATED; no secret is logged",
          "[security][auth]") {
  TempDir dir;
  std::ofstream(dir.path() / "tokens") << "# principal token\nci " << kCiToken << "\nreader " << kReaderToken
                                       << "\nops " << kAdminToken << "\n";
  std::ofstream(dir.path() / "auth.yaml") << fmt::format(
      "auth:\n  tokens_file: {}\n  rights:\n    ci: read+write\n    reader: read\n    ops: admin\n",
      (dir.path() / "tokens").string());
  Server s(dir, {"--config", (dir.path() / "auth.yaml").string()});
  const Caller ci{s.channel, bearer(kCiToken)};
  const Caller reader{s.channel, bearer(kReaderToken)};
  const Caller nobody{s.channel, {}};
  const Caller wrong{s.channel, "Bearer not-a-token-of-ours"};

  CHECK(ci.batch_upload("uploaded by ci").ok());
  CHECK(ci.write("written by ci").ok());
  CHECK(ci.update_action("ci result").ok());
  std::string out;
  CHECK(reader.read("written by ci", out).ok());
  CHECK(out == "written by ci");
  CHECK(reader.find().ok());
  CHECK(reader.get_action("ci result").ok());
  CHECK(reader.capabilities().ok());

  for (const grpc::Status& st : {reader.batch_upload("reader upload"), reader.write("reader write"),
                                 reader.update_action("reader result")}) {
    CHECK(st.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK_THAT(st.error_message(), Catch::Contains("\"reader\""));
  }
  // Nothing of the refused calls was stored.
  CHECK(ci.get_action("reader result").error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(ci.read("reader upload", out).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(ci.read("reader write", out).error_code() == grpc::StatusCode::NOT_FOUND);

  for (const Caller* c : {&nobody, &wrong}) {
    CHECK(c->find().error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(c->read("written by ci", out).error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(c->write("anonymous write").error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }
  CHECK(Caller{s.channel, "Digest abc"}.find().error_code() == grpc::StatusCode::UNAUTHENTICATED);
  // The admin right is not a cache right.
  CHECK(Caller{s.channel, bearer(kAdminToken)}.find().error_code() == grpc::StatusCode::PERMISSION_DENIED);

  // The admin port: probes are open, the rest needs the admin right; profiles are off.
  CHECK(http_get(s.admin_port, "/health/ready").status == 200);
  CHECK(http_get(s.admin_port, "/metrics").status == 401);
  CHECK(http_get(s.admin_port, "/metrics", "Authorization: Bearer wrong\r\n").status == 401);
  CHECK(http_get(s.admin_port, "/metrics", fmt::format("Authorization: Bearer {}\r\n", kReaderToken)).status == 403);
  const HttpResponse metrics = http_get(s.admin_port, "/metrics", fmt::format("Authorization: Bearer {}\r\n", kAdminToken));
  CHECK(metrics.status == 200);
  const auto m = parse_metrics(metrics.body);
  CHECK(m.at("gorego_auth_refused_total{reason=\"permission_denied\"}") >= 3);
  CHECK(m.at("gorego_auth_refused_total{reason=\"unauthenticated\"}") >= 6);
  CHECK(http_get(s.admin_port, "/debug/pprof/heap", fmt::format("Authorization: Bearer {}\r\n", kAdminToken)).status ==
        404);

  const std::string log = s.proc->log();
  INFO(log);
  CHECK(log.find("\"principal\":\"reader\"") != std::string::npos);
  CHECK(log.find("write-cas") != std::string::npos);
  for (const char* secret : {kCiToken, kReaderToken, kAdminToken}) CHECK(log.find(secret) == std::string::npos);
}

TEST_CASE("Security: anonymous reads with authenticated writes, when configured", "[security][auth]") {
  TempDir dir;
  std::ofstream(dir.path() / "tokens") << "ci " << kCiToken << "\n";
  std::ofstream(dir.path() / "auth.yaml") << fmt::format(
      "auth:\n  tokens_file: {}\n  rights:\n    anonymous: read\n    ci: read+write\n", (dir.path() / "tokens").string());
  Server s(dir, {"--config", (dir.path() / "auth.yaml").string()});
  const Caller ci{s.channel, bearer(kCiToken)};
  const Caller anonymous{s.channel, {}};
  REQUIRE(ci.write("shared with everyone").ok());
  std::string out;
  CHECK(anonymous.read("shared with everyone", out).ok());
  CHECK(out == "shared with everyone");
  CHECK(anonymous.find().ok());
  const grpc::Status up = anonymous.write("anonymous write");
  CHECK(up.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK_THAT(up.error_message(), Catch::Contains("write-cas") && Catch::Contains("anonymous callers may: read"));
  CHECK(anonymous.update_action("anonymous result").error_code() == grpc::StatusCode::UNAUTHENTICATED);
  // A wrong token is not anonymous: it is refused even for reads.
  CHECK(Caller{s.channel, "Bearer wrong-token"}.find().error_code() == grpc::StatusCode::UNAUTHENTICATED);
}

TEST_CASE("Security: a changed tokens file is re-read; a broken one keeps the previous tokens", "[security][auth]") {
  TempDir dir;
  const auto tokens = dir.path() / "tokens";
  write_file(tokens, fmt::format("ci {}\n", kCiToken));
  std::ofstream(dir.path() / "auth.yaml") << fmt::format("auth:\n  tokens_file: {}\n  reload_interval: 1s\n",
                                                         tokens.string());
  Server s(dir, {"--config", (dir.path() / "auth.yaml").string()});
  CHECK(Caller{s.channel, bearer(kCiToken)}.find().ok());
  CHECK(Caller{s.channel, bearer(kReaderToken)}.find().error_code() == grpc::StatusCode::UNAUTHENTICATED);

  write_file(tokens, fmt::format("ci {}\nreader {}\n", kCiToken, kReaderToken));
  CHECK(eventually([&] { return Caller{s.channel, bearer(kReaderToken)}.find().ok(); }, 20));

  write_file(tokens, "this line has no token\n");
  CHECK(wait_for_log(s.log, "credentials not reloaded", 20));
  CHECK(Caller{s.channel, bearer(kReaderToken)}.find().ok());
  CHECK(Caller{s.channel, bearer(kCiToken)}.find().ok());

  write_file(tokens, fmt::format("reader {}\n", kReaderToken));  // ci's token revoked
  CHECK(eventually([&] { return Caller{s.channel, bearer(kCiToken)}.find().error_code() ==
                                grpc::StatusCode::UNAUTHENTICATED; },
                   20));
  CHECK(Caller{s.channel, bearer(kReaderToken)}.find().ok());
  const std::string log = s.proc->log();
  CHECK(log.find(kCiToken) == std::string::npos);
  CHECK(log.find(kReaderToken) == std::string::npos);
}

TEST_CASE("Security: a bad credentials file or TLS file stops the start with a precise error", "[security]") {
  TempDir dir;
  Certs certs(dir, "certs");
  std::string out;
  std::ofstream(dir.path() / "tokens") << "ci " << kCiToken << "\nreader\n";
  std::ofstream(dir.path() / "a.yaml") << "auth:\n  tokens_file: " << (dir.path() / "tokens").string() << "\n";
  CHECK(run({"--listen", "127.0.0.1:0", "--data-dir", (dir.path() / "d1").string(), "--metrics-addr", "",
             "--config", (dir.path() / "a.yaml").string()},
            dir, out) != 0);
  CHECK_THAT(out, Catch::Contains("line 2") && Catch::Contains("PRINCIPAL TOKEN"));
  CHECK(out.find(kCiToken) == std::string::npos);

  // A key that is not the certificate's.
  CHECK(run({"--listen", "127.0.0.1:0", "--data-dir", (dir.path() / "d2").string(), "--metrics-addr", "", "--tls-cert",
             certs.path("server.pem"), "--tls-key", certs.path("client.key")},
            dir, out) != 0);
  CHECK_THAT(out, Catch::Contains("is not the key of tls.cert_file"));
  CHECK(run({"--listen", "127.0.0.1:0", "--data-dir", (dir.path() / "d3").string(), "--metrics-addr", "", "--tls-cert",
             certs.path("server.pem")},
            dir, out) != 0);
  CHECK_THAT(out, Catch::Contains("tls.cert_file") && Catch::Contains("without tls.key_file"));
}

TEST_CASE("Limits: a connection past max_calls_per_connection is refused RESOURCE_EXHAUSTED; others are served",
          "[security][limits]") {
  TempDir dir;
  std::ofstream(dir.path() / "limits.yaml") << "server:\n  max_calls_per_connection: 2\n";
  Server s(dir, {"--config", (dir.path() / "limits.yaml").string()});
  const auto greedy = own_channel(s.address());
  // Two uploads held open on one connection.
  std::vector<std::unique_ptr<HeldUpload>> held;
  for (int i = 0; i < 2; ++i) {
    held.push_back(std::make_unique<HeldUpload>(greedy, std::string(1000, static_cast<char>('a' + i)), 500, i));
    REQUIRE(held.back()->started);
  }
  // The two streams are admitted once the server has seen them; then a third call waits for none.
  REQUIRE(eventually([&] {
    const grpc::Status st = find_missing(greedy);
    return st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
           st.error_message().find("max_calls_per_connection") != std::string::npos;
  }, 20));
  CHECK(find_missing(own_channel(s.address())).ok());  // another client is served meanwhile
  CHECK(find_missing(s.channel).ok());
  for (auto& h : held) CHECK_FALSE(h->abandon().ok());  // the uploads were never finished
  CHECK(eventually([&] { return find_missing(greedy).ok(); }, 20));
  const auto m = parse_metrics(http_get(s.admin_port, "/metrics").body);
  CHECK(m.at("gorego_calls_refused_total{limit=\"connection\"}") >= 1);
}

TEST_CASE("Security: a proxy calls its upstream with its own credentials, never its clients'", "[security][proxy]") {
  TempDir dir;
  const std::string proxy_token = "proxy-4b8e0d1c6a2f9735";
  std::ofstream(dir.path() / "up-tokens") << "proxy " << proxy_token << "\ndev " << kCiToken << "\n";
  std::ofstream(dir.path() / "up.yaml") << fmt::format("auth:\n  tokens_file: {}\n", (dir.path() / "up-tokens").string());
  Server up(dir, {"--config", (dir.path() / "up.yaml").string()}, "up");
  const std::string blob = "only the upstream has this blob";
  REQUIRE(Caller{up.channel, bearer(kCiToken)}.write(blob).ok());

  // A proxy without upstream credentials: the client's token, valid upstream, stays with
  // the proxy (were it forwarded, the read-through would succeed).
  Server plain(dir, {"--upstream", up.url()}, "plain");
  std::string out;
  CHECK_FALSE(Caller{plain.channel, bearer(kCiToken)}.read(blob, out).ok());
  CHECK(wait_for_log(up.log, "\"principal\":\"unauthenticated\"", 10));

  // With remote.bearer_token the proxy is its own principal upstream.
  std::ofstream(dir.path() / "proxy.yaml")
      << fmt::format("remote:\n  target: {}\n  bearer_token: {}\n", up.url(), proxy_token);
  Server own(dir, {"--config", (dir.path() / "proxy.yaml").string()}, "own");
  CHECK(Caller{own.channel, {}}.read(blob, out).ok());
  CHECK(out == blob);
  CHECK(slurp(up.log).find(proxy_token) == std::string::npos);
  CHECK(slurp(own.log).find(proxy_token) == std::string::npos);
}

namespace {

/// curl's status code and body for `args` (the exit status when curl failed: no answer).
struct Curl {
  int code = 0;
  std::string body;
};
Curl curl(const TempDir& dir, const std::string& args) {
  const auto out = dir.path() / "curl.out";
  const auto status = dir.path() / "curl.status";
  const int rc = std::system(
      fmt::format("curl -sS --max-time 20 -o {} -w '%{{http_code}}' {} > {} 2>/dev/null", out.string(), args, status.string())
          .c_str());
  Curl c;
  c.body = slurp(out);
  const std::string code = slurp(status);
  c.code = rc == 0 && !code.empty() ? std::stoi(code) : -1;
  return c;
}

}  // namespace

TEST_CASE("Security: the HTTP cache listener serves https:// with the gRPC port's certificate, mTLS and rotation",
          "[security][tls][http]") {
  TempDir dir;
  Certs first(dir, "first");
  Certs second(dir, "second");
  const auto live = dir.path() / "live";
  std::filesystem::create_directories(live);
  for (const char* f : {"server.pem", "server.key", "ca.pem"}) std::filesystem::copy_file(first.dir / f, live / f);
  const int http_port = free_port();
  std::ofstream(dir.path() / "tls.yaml") << fmt::format(
      "tls:\n  cert_file: {0}/server.pem\n  key_file: {0}/server.key\n  client_ca_file: {0}/ca.pem\n"
      "  reload_interval: 1s\nhttp:\n  addr: 127.0.0.1:{1}\n",
      live.string(), http_port);
  Server s(dir, {"--config", (dir.path() / "tls.yaml").string()}, "", tls(first, &first));
  const std::string blob = "sent over https";
  std::ofstream(dir.path() / "blob") << blob;
  const std::string url = fmt::format("https://127.0.0.1:{}/cas/{}", http_port, Sha256::digest_of(blob).hex());
  const auto client = [](const Certs& c) {
    return fmt::format("--cacert {} --cert {} --key {}", c.path("ca.pem"), c.path("client.pem"), c.path("client.key"));
  };

  REQUIRE(eventually([&] { return curl(dir, fmt::format("{} -T {} {}", client(first), (dir.path() / "blob").string(), url)).code == 200; }, 10));
  const Curl got = curl(dir, fmt::format("{} {}", client(first), url));
  CHECK(got.code == 200);
  CHECK(got.body == blob);
  // A blob put over https is a gRPC hit, over the gRPC port's mTLS.
  std::string out;
  CHECK(Caller{s.channel, {}}.read(blob, out).ok());
  CHECK(out == blob);
  // Plaintext to the TLS port, and TLS without a client certificate, get no answer.
  CHECK(curl(dir, fmt::format("http://127.0.0.1:{}/status", http_port)).code != 200);
  CHECK(curl(dir, fmt::format("--cacert {} {}", first.path("ca.pem"), url)).code == -1);

  // Rotation: the server certificate and the client CA replaced by the second CA's.
  for (const char* f : {"server.key", "server.pem", "ca.pem"}) write_file(live / f, second.pem(f));
  CHECK(eventually([&] { return curl(dir, fmt::format("{} {}", client(second), url)).code == 200; }, 20));
  CHECK(curl(dir, fmt::format("{} {}", client(first), url)).code == -1);
  INFO(s.proc->log());
  CHECK(s.proc->log().find("HTTP TLS certificate reloaded") != std::string::npos);
}

TEST_CASE("Limits: uploads past max_upload_bytes_per_connection are RESOURCE_EXHAUSTED; others go on",
          "[security][limits]") {
  TempDir dir;
  std::ofstream(dir.path() / "limits.yaml") << "server:\n  max_upload_bytes_per_connection: 1MiB\n";
  Server s(dir, {"--config", (dir.path() / "limits.yaml").string()});
  const auto greedy = own_channel(s.address());
  // An upload of 800 kB held open after its first half.
  HeldUpload open(greedy, std::string(800'000, 'a'), 400'000, 1);
  REQUIRE(open.started);
  REQUIRE(eventually([&] {
    return parse_metrics(http_get(s.admin_port, "/metrics").body)["gorego_upload_bytes_in_flight"] == 800'000;
  }, 20));
  // A second one on the same connection would pass the 1 MiB: refused, nothing stored.
  const std::string second(800'000, 'b');
  const grpc::Status refused = Caller{greedy, {}}.write(second);
  CHECK(refused.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK_THAT(refused.error_message(), Catch::Contains("server.max_upload_bytes_per_connection"));
  CHECK_FALSE(s.has(reapi::to_proto(Sha256::digest_of(second))));
  // Another connection uploads it meanwhile.
  CHECK(Caller{own_channel(s.address()), {}}.write(second).ok());
  // The held upload finishes, and its bytes are given back.
  CHECK(open.finish().ok());
  CHECK(open.resp.committed_size() == 800'000);
  CHECK(Caller{greedy, {}}.write(std::string(900'000, 'c')).ok());
  // The reservation is given back when the call is done, which may be just after the client
  // read its answer.
  CHECK(eventually([&] {
    return parse_metrics(http_get(s.admin_port, "/metrics").body)["gorego_upload_bytes_in_flight"] == 0;
  }, 10));
  const auto m = parse_metrics(http_get(s.admin_port, "/metrics").body);
  CHECK(m.at("gorego_uploads_refused_total") == 1);
}

TEST_CASE("Limits: max_connection_age bounds how long a stuck upload holds its call and reservation",
          "[security][limits]") {
  TempDir dir;
  std::ofstream(dir.path() / "age.yaml") << "server:\n  max_connection_age: 2s\n  max_connection_age_grace: 2s\n";
  Server s(dir, {"--config", (dir.path() / "age.yaml").string()});
  // 1000 bytes, and then nothing more: a client that stalled (its deadline: 60 s).
  HeldUpload stuck(own_channel(s.address()), std::string(500'000, 's'), 1000, 2);
  REQUIRE(stuck.started);
  const auto d = reapi::to_proto(Sha256::digest_of(stuck.data));
  REQUIRE(eventually([&] {
    return parse_metrics(http_get(s.admin_port, "/metrics").body)["gorego_upload_bytes_in_flight"] == 500'000;
  }, 20));
  const grpc::Status ended = stuck.w->Finish();  // returns once the server has cut the call
  CHECK_FALSE(ended.ok());
  // Cut by the server, not ended by the client's own 60 s deadline.
  CHECK(ended.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED);
  CHECK(eventually([&] {
    return parse_metrics(http_get(s.admin_port, "/metrics").body)["gorego_upload_bytes_in_flight"] == 0;
  }, 20));
  CHECK_FALSE(s.has(d));
  CHECK(find_missing(own_channel(s.address())).ok());  // the server serves new connections
}

TEST_CASE("Limits: absurd headers and resource names are refused early", "[security][limits]") {
  TempDir dir;
  Server s(dir);
  // A 64 KiB header value: over the 16 KiB of metadata the listener accepts. On a connection
  // of its own: gRPC may close the connection that carried it.
  re::FindMissingBlobsRequest req;
  re::FindMissingBlobsResponse resp;
  grpc::ClientContext small;  // the control: a 1 KiB header is fine
  small.AddMetadata("x-padding", std::string(1 << 10, 'p'));
  CHECK(re::ContentAddressableStorage::NewStub(s.channel)->FindMissingBlobs(&small, req, &resp).ok());
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-padding", std::string(64 << 10, 'p'));
  const grpc::Status big = re::ContentAddressableStorage::NewStub(own_channel(s.address()))->FindMissingBlobs(&ctx, req, &resp);
  CHECK_FALSE(big.ok());
  CHECK_THAT(big.error_message(), Catch::Contains("metadata size exceeds limit"));
  // A 100 kB resource name: INVALID_ARGUMENT with the length, not the name.
  grpc::ClientContext rctx;
  bs::ReadRequest rr;
  rr.set_resource_name(std::string(100'000, 'n') + "/blobs/" + std::string(64, 'a') + "/1");
  auto reader = s.bytestream->Read(&rctx, rr);
  bs::ReadResponse chunk;
  while (reader->Read(&chunk)) {
  }
  const grpc::Status name = reader->Finish();
  CHECK(name.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(name.error_message().size() < 200);
  CHECK(find_missing(s.channel).ok());  // and the server goes on
}
