// The HTTP cache protocol against a real gorego process, with a Boost.Beast client: CAS and
// AC GET/HEAD/PUT, verification of uploads, precise 4xx answers, keep-alive, an instance
// prefix, zstd in both directions, /status, large bodies streamed both ways, and the one
// store shared with gRPC (a blob put over HTTP is a gRPC hit and the other way round).
#include <catch2/catch.hpp>

#include <crypt.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fstream>

#include <gorego/core/zstd.hpp>

#include "harness.hpp"

using namespace gorego;
using namespace gorego::e2e;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

using Response = http::response<http::string_body>;

/// One keep-alive connection to the HTTP listener.
class Client {
 public:
  explicit Client(int port) : sock_(io_) {
    tcp::resolver resolver(io_);
    asio::connect(sock_, resolver.resolve("127.0.0.1", std::to_string(port)));
  }

  Response send(http::verb method, const std::string& target, std::string body = {},
                std::vector<std::pair<http::field, std::string>> headers = {}) {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (auto& [f, v] : headers) req.set(f, v);
    req.body() = std::move(body);
    if (method == http::verb::put || !req.body().empty()) req.prepare_payload();
    beast::error_code ec;
    http::write(sock_, req, ec);  // may fail when the server answers early (413) and closes
    if (method == http::verb::head) {
      http::response_parser<http::string_body> p;
      p.skip(true);  // a HEAD answer has headers only
      http::read(sock_, buf_, p);
      return p.release();
    }
    http::response_parser<http::string_body> p;
    p.body_limit(std::uint64_t{1} << 30);
    http::read(sock_, buf_, p);
    return p.release();
  }
  Response get(const std::string& target) { return send(http::verb::get, target); }
  Response put(const std::string& target, std::string body) { return send(http::verb::put, target, std::move(body)); }

  /// Whether the server closed the connection (a read finds its end).
  bool closed() {
    beast::error_code ec;
    char c;
    sock_.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

 private:
  asio::io_context io_;
  tcp::socket sock_;
  beast::flat_buffer buf_;
};

std::string sha(const std::string& data) { return Sha256::digest_of(data).hex(); }

int code(const Response& r) { return static_cast<int>(r.result_int()); }

/// A gorego with its HTTP listener on a free port.
struct HttpServer {
  explicit HttpServer(const TempDir& dir, std::vector<std::string> extra = {})
      : http_port(free_port()), server(dir, with_http(http_port, std::move(extra))) {}
  static std::vector<std::string> with_http(int port, std::vector<std::string> extra) {
    extra.insert(extra.begin(), {"--http-addr", fmt::format("127.0.0.1:{}", port)});
    return extra;
  }
  int http_port;
  Server server;
};

}  // namespace

TEST_CASE("HTTP: CAS PUT, GET and HEAD; uploads verified; precise 4xx", "[http]") {
  TempDir dir;
  HttpServer s(dir);
  REQUIRE(wait_for_log(s.server.log, "HTTP cache listening"));
  Client c(s.http_port);  // every request below on this one connection (keep-alive)
  const std::string blob = make_blob(71, 3000);
  const std::string path = "/cas/" + sha(blob);

  CHECK(code(c.get(path)) == 404);
  CHECK(code(c.put(path, blob)) == 200);
  const Response got = c.get(path);
  CHECK(code(got) == 200);
  CHECK(got.body() == blob);
  const Response head = c.send(http::verb::head, path);
  CHECK(code(head) == 200);
  CHECK(head[http::field::content_length] == std::to_string(blob.size()));
  // A body that does not hash to the name: 400 naming both hashes, nothing stored.
  const std::string other = make_blob(72, 500);
  const Response bad = c.put("/cas/" + sha(make_blob(73, 500)), other);
  CHECK(code(bad) == 400);
  CHECK_THAT(bad.body(), Catch::Matchers::Contains("hashes to " + sha(other)));
  CHECK(code(c.get("/cas/" + sha(make_blob(73, 500)))) == 404);
  // Bad paths and methods.
  const Response short_hash = c.get("/cas/abc");
  CHECK(code(short_hash) == 400);
  CHECK_THAT(short_hash.body(), Catch::Matchers::Contains("\"abc\" has 3 characters"));
  CHECK(code(c.get("/cas/" + std::string(64, 'Z'))) == 400);
  CHECK(code(c.get("/blobs/" + sha(blob))) == 400);
  const Response del = c.send(http::verb::delete_, path);
  CHECK(code(del) == 405);
  CHECK(del[http::field::allow] == "GET, HEAD, PUT");
  // Still on the same connection, and the blob is intact.
  CHECK(c.get(path).body() == blob);
  // An instance prefix names the same store.
  CHECK(c.get("/main/cas/" + sha(blob)).body() == blob);
  CHECK(code(c.put("/ci/linux/cas/" + sha(other), other)) == 200);
  CHECK(c.get("/cas/" + sha(other)).body() == other);
  // The empty blob is always there.
  CHECK(code(c.get("/cas/" + sha(""))) == 200);
  // /status is JSON.
  const Response st = c.get("/status");
  CHECK(code(st) == 200);
  CHECK(st[http::field::content_type] == "application/json");
  CHECK_THAT(st.body(), Catch::Matchers::Contains("\"usage_bytes\":"));
}

TEST_CASE("HTTP: large bodies stream both ways; zstd both ways; the body limit is 413", "[http]") {
  TempDir dir;
  ::setenv("GOREGO_HTTP_MAX_BODY", "8MiB", 1);
  HttpServer s(dir);
  ::unsetenv("GOREGO_HTTP_MAX_BODY");
  Client c(s.http_port);
  const std::string large = make_blob(81, (6 << 20) + 3);
  CHECK(code(c.put("/cas/" + sha(large), large)) == 200);
  CHECK(c.get("/cas/" + sha(large)).body() == large);
  // zstd: an upload with Content-Encoding: zstd, and a download that asks for it.
  std::string text;
  while (text.size() < 300000) text += fmt::format("line {} of a log\n", text.size());
  auto z = zstd::compress(text);
  REQUIRE(z.ok());
  CHECK(code(c.send(http::verb::put, "/cas/" + sha(text), *z, {{http::field::content_encoding, "zstd"}})) == 200);
  CHECK(c.get("/cas/" + sha(text)).body() == text);
  const Response zr = c.send(http::verb::get, "/cas/" + sha(text), {}, {{http::field::accept_encoding, "zstd"}});
  CHECK(code(zr) == 200);
  CHECK(zr[http::field::content_encoding] == "zstd");
  CHECK(zr.body().size() < text.size() / 4);
  auto plain = zstd::decompress(zr.body(), text.size());
  REQUIRE(plain.ok());
  CHECK(*plain == text);
  // A zstd body that is not zstd, and an unknown encoding.
  CHECK(code(c.send(http::verb::put, "/cas/" + sha(text), "not zstd", {{http::field::content_encoding, "zstd"}})) == 400);
  CHECK(code(c.send(http::verb::put, "/cas/" + sha(text), "x", {{http::field::content_encoding, "br"}})) == 415);
  // Over http.max_body: 413 naming the limit, and the connection is closed (body unread).
  const std::string huge = make_blob(82, (8 << 20) + 1);
  const Response big = c.put("/cas/" + sha(huge), huge);
  CHECK(code(big) == 413);
  CHECK_THAT(big.body(), Catch::Matchers::Contains("http.max_body"));
  CHECK(c.closed());
  Client fresh(s.http_port);
  CHECK(code(fresh.get("/cas/" + sha(huge))) == 404);
}

TEST_CASE("HTTP: ActionCache entries are validated and served only when complete", "[http]") {
  TempDir dir;
  HttpServer s(dir);
  Client c(s.http_port);
  const std::string out = make_blob(91, 2000);
  re::ActionResult r;
  auto* f = r.add_output_files();
  f->set_path("out/file");
  *f->mutable_digest() = reapi::to_proto(Sha256::digest_of(out));
  r.set_exit_code(0);
  const std::string action = "/ac/" + sha("an action");
  // Not an ActionResult: 400, nothing stored.
  const Response bad = c.put(action, "this is not a protobuf \xff\xff\xff");
  CHECK(code(bad) == 400);
  CHECK_THAT(bad.body(), Catch::Matchers::Contains("not an ActionResult"));
  CHECK(code(c.get(action)) == 404);
  // Stored, but its output is missing: not served.
  CHECK(code(c.put(action, r.SerializeAsString())) == 200);
  CHECK(code(c.get(action)) == 404);
  // Once the output is there, the entry comes back as the same ActionResult.
  CHECK(code(c.put("/cas/" + sha(out), out)) == 200);
  const Response got = c.get(action);
  REQUIRE(code(got) == 200);
  re::ActionResult back;
  REQUIRE(back.ParseFromString(got.body()));
  CHECK(back.output_files(0).digest().hash() == sha(out));
  CHECK(code(c.send(http::verb::head, action)) == 200);
}

TEST_CASE("HTTP: one store with gRPC, in both directions", "[http]") {
  TempDir dir;
  HttpServer s(dir);
  Client c(s.http_port);
  const std::string via_http = make_blob(95, 5000);
  REQUIRE(code(c.put("/cas/" + sha(via_http), via_http)) == 200);
  std::string out;
  REQUIRE(s.server.read(reapi::to_proto(Sha256::digest_of(via_http)), out).ok());
  CHECK(out == via_http);
  const std::string via_grpc = make_blob(96, 3 << 20);
  REQUIRE(s.server.upload(via_grpc));
  CHECK(c.get("/cas/" + sha(via_grpc)).body() == via_grpc);
}

TEST_CASE("HTTP: authentication and rights, bearer and basic (htpasswd, bcrypt)", "[http][security]") {
  TempDir dir;
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  REQUIRE(crypt_gensalt_rn("$2b$", 4, nullptr, 0, salt, sizeof salt) != nullptr);
  struct crypt_data data {};
  const char* hash = crypt_rn("s3same", salt, &data, sizeof data);
  REQUIRE(hash != nullptr);
  std::ofstream(dir.path() / "htpasswd") << "alice:" << hash << "\n";
  std::ofstream(dir.path() / "tokens") << "reader tok-reader-8d2f41\n";
  std::ofstream(dir.path() / "auth.yaml") << fmt::format(
      "auth:\n  tokens_file: {}\n  htpasswd_file: {}\n  rights:\n    reader: read\n    alice: read+write\n",
      (dir.path() / "tokens").string(), (dir.path() / "htpasswd").string());
  HttpServer h(dir, {"--config", (dir.path() / "auth.yaml").string()});
  const std::string blob = "uploaded over HTTP by alice";
  const std::string alice = "Basic YWxpY2U6czNzYW1l";  // alice:s3same
  using H = std::vector<std::pair<http::field, std::string>>;

  Client anonymous(h.http_port);
  const Response refused = anonymous.send(http::verb::put, "/cas/" + sha(blob), blob);
  CHECK(code(refused) == 401);
  CHECK(std::string(refused[http::field::www_authenticate]) == "Basic realm=\"gorego\"");
  Client c(h.http_port);
  CHECK(code(c.send(http::verb::put, "/cas/" + sha(blob), blob, H{{http::field::authorization, "Basic YWxpY2U6d3Jvbmc="}})) == 401);
  Client c2(h.http_port);
  CHECK(code(c2.send(http::verb::put, "/cas/" + sha(blob), blob, H{{http::field::authorization, alice}})) == 200);
  // The same connection carries on after a success.
  CHECK(code(c2.send(http::verb::get, "/cas/" + sha(blob), {}, H{{http::field::authorization, alice}})) == 200);
  Client r(h.http_port);
  const Response got = r.send(http::verb::get, "/cas/" + sha(blob), {}, H{{http::field::authorization, "Bearer tok-reader-8d2f41"}});
  CHECK(code(got) == 200);
  CHECK(got.body() == blob);
  Client r2(h.http_port);
  const Response forbidden =
      r2.send(http::verb::put, "/cas/" + sha("reader's"), "reader's", H{{http::field::authorization, "Bearer tok-reader-8d2f41"}});
  CHECK(code(forbidden) == 403);
  CHECK_THAT(forbidden.body(), Catch::Contains("\"reader\"") && Catch::Contains("write-cas"));
  Client a(h.http_port);
  CHECK(code(a.get("/cas/" + sha(blob))) == 401);
  CHECK(code(Client(h.http_port).get("/status")) == 200);  // the status page is open, like the health probes
  const std::string log = h.server.proc->log();
  CHECK(log.find("tok-reader-8d2f41") == std::string::npos);
  CHECK(log.find("s3same") == std::string::npos);
  CHECK(log.find("YWxpY2U6czNzYW1l") == std::string::npos);
}
