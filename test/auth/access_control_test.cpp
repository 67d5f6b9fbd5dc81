// AccessControl and Admission's table without a server: token and basic authentication,
// rights and their defaults, mTLS names, reloads, and the errors of bad files.
#include <catch2/catch.hpp>

#include <crypt.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "auth/access_control.hpp"
#include "auth/admission.hpp"
#include <gorego/reapi/upload_budget.hpp>

using namespace gorego;
using namespace gorego::auth;

namespace {

struct Dir {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("gorego-auth-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
  Dir() { std::filesystem::create_directories(path); }
  ~Dir() { std::filesystem::remove_all(path); }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

void write(const std::filesystem::path& p, const std::string& text) {
  const auto tmp = p.string() + ".tmp";
  std::ofstream(tmp) << text;
  std::filesystem::rename(tmp, p);
}

std::string bcrypt(const std::string& password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  REQUIRE(crypt_gensalt_rn("$2b$", 4, nullptr, 0, salt, sizeof salt) != nullptr);
  struct crypt_data data {};
  const char* h = crypt_rn(password.c_str(), salt, &data, sizeof data);
  REQUIRE(h != nullptr);
  return h;
}

std::string basic(const std::string& user_password) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < user_password.size(); i += 3) {
    const auto n = (static_cast<unsigned char>(user_password[i]) << 16) |
                   (static_cast<unsigned char>(user_password[i + 1]) << 8) | static_cast<unsigned char>(user_password[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += kAlphabet[(n >> k) & 63];
  }
  if (const std::size_t rest = user_password.size() - i; rest > 0) {
    unsigned n = static_cast<unsigned char>(user_password[i]) << 16;
    if (rest == 2) n |= static_cast<unsigned char>(user_password[i + 1]) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return "Basic " + out;
}

std::shared_ptr<AccessControl> open_ok(AccessControl::Options o) {
  auto ac = AccessControl::open(std::move(o));
  INFO((ac ? std::string() : ac.error().message()));
  REQUIRE(ac);
  return *ac;
}

}  // namespace

TEST_CASE("AccessControl: off without settings; everyone has every right", "[auth]") {
  auto ac = open_ok({});
  CHECK_FALSE(ac->enabled());
  auto p = ac->admit({}, Right::kAdmin, "x");
  REQUIRE(p);
  CHECK((*p)->rights == Rights::all());
}

TEST_CASE("AccessControl: bearer tokens, rights and their defaults", "[auth]") {
  Dir d;
  write(d.path / "tokens", "# comment\n\nci   tok-ci-123\n  reader tok-reader-456  \nother tok-other-789\n");
  auto ac = open_ok({.auth = {.tokens_file = d.path / "tokens", .rights = {{"ci", "all"}, {"reader", "read"}}}});
  CHECK(ac->enabled());
  auto ci = ac->admit({.authorization = "Bearer tok-ci-123"}, Right::kExecute, "Execute");
  REQUIRE(ci);
  CHECK((*ci)->name == "ci");
  CHECK(ac->admit({.authorization = "bearer tok-reader-456"}, Right::kRead, "Read"));  // the scheme is any case
  auto denied = ac->admit({.authorization = "Bearer tok-reader-456"}, Right::kWriteAc, "UpdateActionResult");
  REQUIRE_FALSE(denied);
  CHECK(denied.error().code() == Code::kPermissionDenied);
  CHECK(denied.error().message() == "principal \"reader\" lacks the write-ac right for UpdateActionResult");
  // A principal without an entry gets `authenticated`'s rights: read+write-cas by default.
  CHECK(ac->admit({.authorization = "Bearer tok-other-789"}, Right::kWriteCas, "Write"));
  CHECK_FALSE(ac->admit({.authorization = "Bearer tok-other-789"}, Right::kWriteAc, "UpdateActionResult"));
  CHECK_FALSE(ac->admit({.authorization = "Bearer tok-other-789"}, Right::kExecute, "Execute"));
  // Unknown tokens and missing credentials.
  auto unknown = ac->admit({.authorization = "Bearer tok-ci-12"}, Right::kRead, "Read");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code() == Code::kUnauthenticated);
  CHECK(unknown.error().message().find("tok-ci-12") == std::string::npos);
  auto anonymous = ac->admit({}, Right::kRead, "FindMissingBlobs");
  REQUIRE_FALSE(anonymous);
  CHECK(anonymous.error().code() == Code::kUnauthenticated);
  CHECK(anonymous.error().message() == "FindMissingBlobs needs credentials with the read right (anonymous callers may: none)");
  // A bare token (no scheme) is refused without being quoted.
  auto bare = ac->admit({.authorization = "tok-ci-123"}, Right::kRead, "Read");
  REQUIRE_FALSE(bare);
  CHECK(bare.error().message().find("tok-ci-123") == std::string::npos);
  CHECK(ac->stats().unauthenticated == 3);
  CHECK(ac->stats().denied == 3);
}

TEST_CASE("AccessControl: anonymous and authenticated defaults are configurable", "[auth]") {
  auto ac = open_ok({.auth = {.rights = {{"anonymous", "read"}, {"authenticated", "read+write-cas"}}}});
  CHECK(ac->admit({}, Right::kRead, "Read"));
  CHECK(ac->admit({}, Right::kWriteCas, "Write").error().code() == Code::kUnauthenticated);
}

TEST_CASE("AccessControl: htpasswd with bcrypt; verified credentials are remembered", "[auth]") {
  Dir d;
  write(d.path / "htpasswd", "alice:" + bcrypt("wonderland") + "\nbob:" + bcrypt("builder") + "\n");
  auto ac = open_ok({.auth = {.htpasswd_file = d.path / "htpasswd", .rights = {{"bob", "read"}}}});
  auto alice = ac->admit({.authorization = basic("alice:wonderland")}, Right::kWriteCas, "Write");
  REQUIRE(alice);
  CHECK((*alice)->name == "alice");
  CHECK(ac->admit({.authorization = basic("alice:wonderland")}, Right::kRead, "Read"));  // remembered
  auto wrong = ac->admit({.authorization = basic("alice:wonderlan")}, Right::kRead, "Read");
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().code() == Code::kUnauthenticated);
  CHECK(wrong.error().message().find("wonderlan") == std::string::npos);
  CHECK(wrong.error().message().find("alice") == std::string::npos);  // nor which users exist
  // The same pair spelt differently (scheme case, padding) is remembered as the same.
  CHECK(ac->admit({.authorization = "basic  " + basic("alice:wonderland").substr(6)}, Right::kRead, "Read"));
  CHECK_FALSE(ac->admit({.authorization = basic("carol:x")}, Right::kRead, "Read"));
  CHECK_FALSE(ac->admit({.authorization = "Basic !!!"}, Right::kRead, "Read"));
  CHECK(ac->admit({.authorization = basic("bob:builder")}, Right::kWriteCas, "Write").error().code() ==
        Code::kPermissionDenied);
}

TEST_CASE("AccessControl: bad files are refused naming the file and line, never the secret", "[auth]") {
  Dir d;
  write(d.path / "t1", "ci secret-one\nreader\n");
  auto a = AccessControl::open({.auth = {.tokens_file = d.path / "t1"}});
  REQUIRE_FALSE(a);
  CHECK(a.error().code() == Code::kInvalidArgument);
  CHECK(a.error().message().find("line 2") != std::string::npos);
  write(d.path / "t2", "ci secret-one\nother secret-one\n");
  auto b = AccessControl::open({.auth = {.tokens_file = d.path / "t2"}});
  REQUIRE_FALSE(b);
  CHECK(b.error().message().find("already given") != std::string::npos);
  CHECK(b.error().message().find("secret-one") == std::string::npos);
  write(d.path / "t3", "anonymous secret-two\n");
  auto c = AccessControl::open({.auth = {.tokens_file = d.path / "t3"}});
  REQUIRE_FALSE(c);
  CHECK(c.error().message().find("reserved") != std::string::npos);
  write(d.path / "h1", "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
  auto h = AccessControl::open({.auth = {.htpasswd_file = d.path / "h1"}});
  REQUIRE_FALSE(h);
  CHECK(h.error().message().find("not bcrypt") != std::string::npos);
  auto missing = AccessControl::open({.auth = {.tokens_file = d.path / "nope"}});
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code() == Code::kNotFound);
}

TEST_CASE("AccessControl: reload picks up changes and keeps the old entries when the new file is bad", "[auth]") {
  Dir d;
  write(d.path / "tokens", "ci tok-a\n");
  auto ac = open_ok({.auth = {.tokens_file = d.path / "tokens", .reload_interval = std::chrono::hours(1)}});
  CHECK(ac->admit({.authorization = "Bearer tok-a"}, Right::kRead, "Read"));
  write(d.path / "tokens", "ci tok-b\n");
  ac->reload();
  CHECK_FALSE(ac->admit({.authorization = "Bearer tok-a"}, Right::kRead, "Read"));
  CHECK(ac->admit({.authorization = "Bearer tok-b"}, Right::kRead, "Read"));
  CHECK(ac->stats().reloads == 1);
  write(d.path / "tokens", "broken\n");
  ac->reload();
  ac->reload();  // the same broken file is not read (and counted) twice
  CHECK(ac->stats().reload_errors == 1);
  CHECK(ac->admit({.authorization = "Bearer tok-b"}, Right::kRead, "Read"));
}

TEST_CASE("AccessControl: mTLS names; allowed_clients", "[auth]") {
  const std::vector<std::string> names{"build-42", "build-42.ci.example"};
  auto any = open_ok({.mtls = true});
  auto p = any->admit({.certificate_names = names, .over_mtls = true}, Right::kRead, "Read");
  REQUIRE(p);
  CHECK((*p)->name == "build-42");
  auto listed = open_ok({.auth = {.rights = {{"build-42.ci.example", "read"}}},
                         .mtls = true,
                         .allowed_clients = {"build-42.ci.example"}});
  auto q = listed->admit({.certificate_names = names, .over_mtls = true}, Right::kRead, "Read");
  REQUIRE(q);
  CHECK((*q)->name == "build-42.ci.example");
  const std::vector<std::string> stranger{"laptop"};
  auto r = listed->admit({.certificate_names = stranger, .over_mtls = true}, Right::kRead, "Read");
  REQUIRE_FALSE(r);
  CHECK(r.error().message() == "the client certificate \"laptop\" is not in tls.allowed_clients");
  // A token overrides the certificate's name, but not the certificate check.
  CHECK_FALSE(listed->admit({.authorization = "Bearer x", .certificate_names = stranger, .over_mtls = true},
                            Right::kRead, "Read"));
  // A certificate without a common name (gRPC reports an empty one) is not the principal "".
  const std::vector<std::string> unnamed{""};
  CHECK(any->admit({.certificate_names = unnamed, .over_mtls = true}, Right::kRead, "Read").error().code() ==
        Code::kUnauthenticated);
  const std::vector<std::string> reserved{"anonymous"};
  CHECK(any->admit({.certificate_names = reserved, .over_mtls = true}, Right::kRead, "Read").error().code() ==
        Code::kUnauthenticated);
  // Over mTLS a certificate is required; a plain-HTTP listener (admin, HTTP cache) asks for none.
  CHECK(listed->admit({.over_mtls = true}, Right::kRead, "Read").error().message() ==
        "a client certificate with a name is required (tls.client_ca_file is set)");
  CHECK(listed->admit({}, Right::kRead, "admin /metrics").error().message().find("needs credentials") !=
        std::string::npos);
}

TEST_CASE("Admission: the right each method needs; unknown methods need admin", "[auth]") {
  CHECK(Admission::right_of("/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs") ==
        Right::kRead);
  CHECK(Admission::right_of("/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs") ==
        Right::kWriteCas);
  CHECK(Admission::right_of("/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult") == Right::kWriteAc);
  CHECK(Admission::right_of("/build.bazel.remote.execution.v2.ActionCache/GetActionResult") == Right::kRead);
  CHECK(Admission::right_of("/google.bytestream.ByteStream/Write") == Right::kWriteCas);
  CHECK(Admission::right_of("/google.bytestream.ByteStream/Read") == Right::kRead);
  CHECK(Admission::right_of("/build.bazel.remote.execution.v2.Execution/Execute") == Right::kExecute);
  CHECK(Admission::right_of("/gorego.worker.v1.Workers/Connect") == Right::kWorker);
  CHECK(Admission::right_of("/grpc.health.v1.Health/Check") == std::nullopt);
  CHECK(Admission::right_of("/build.bazel.remote.execution.v2.ActionCacheX/GetActionResult") == Right::kAdmin);
  CHECK(Admission::right_of("/some.Other/Method") == Right::kAdmin);
}

TEST_CASE("Admission: connection and listener limits count calls in and out", "[auth]") {
  Admission a({.max_calls_per_connection = 2, .max_calls = 3});
  std::string why;
  CHECK(a.enter("ipv4:1", &why));
  CHECK(a.enter("ipv4:1", &why));
  CHECK_FALSE(a.enter("ipv4:1", &why));
  CHECK(why.find("max_calls_per_connection") != std::string::npos);
  CHECK(a.enter("ipv4:2", &why));
  CHECK_FALSE(a.enter("ipv4:3", &why));
  CHECK(why.find("server.max_calls") != std::string::npos);
  a.leave("ipv4:1");
  CHECK(a.enter("ipv4:3", &why));
  CHECK(a.calls_in_flight() == 3);
  CHECK(a.stats().over_connection_limit == 1);
  CHECK(a.stats().over_listener_limit == 1);
}

TEST_CASE("Rights: parsing and printing", "[auth]") {
  CHECK(to_string(*parse_rights("x", "read+write")) == "read+write-cas+write-ac");
  CHECK(*parse_rights("x", "all") == Rights::all());
  CHECK(parse_rights("x", "none")->empty());
  auto bad = parse_rights("auth.rights.ci", "read+wrte");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message().find("\"wrte\"") != std::string::npos);
}

TEST_CASE("UploadBudget: per connection and overall, given back on release", "[auth]") {
  reapi::UploadBudget b(100, 150);
  CHECK(b.reserve("a", 60).ok());
  CHECK(b.reserve("a", 50).code() == Code::kResourceExhausted);  // a: 110 > 100
  CHECK(b.reserve("b", 80).ok());
  const Status overall = b.reserve("c", 20);  // 160 > 150
  CHECK(overall.code() == Code::kResourceExhausted);
  CHECK(overall.message().find("server.max_upload_bytes (150)") != std::string::npos);
  b.release("a", 60);
  CHECK(b.in_flight() == 80);
  CHECK(b.reserve("a", 70).ok());
  CHECK(b.refused() == 2);
  CHECK(b.reserve("d", 101).code() == Code::kInvalidArgument);  // can never fit a connection
}
