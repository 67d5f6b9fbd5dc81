// The per-call cost of authentication and rights: what the admission interceptor adds to
// every call once auth is on. No server: AccessControl and Admission's table alone.
#include <benchmark/benchmark.h>

#include <crypt.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "auth/access_control.hpp"
#include "auth/admission.hpp"

using namespace gorego;
using namespace gorego::auth;

namespace {

std::filesystem::path scratch(const char* name) {
  auto p = std::filesystem::temp_directory_path() / fmt::format("gorego-auth-bench-{}-{}", ::getpid(), name);
  std::filesystem::create_directories(p);
  return p;
}

/// An AccessControl with `n` tokens ("principal-i token-i-...") and one htpasswd user.
std::shared_ptr<AccessControl> make(int n) {
  const auto dir = scratch("files");
  {
    std::ofstream t(dir / "tokens");
    for (int i = 0; i < n; ++i) t << fmt::format("principal-{} token-{}-7c1e9a0b5d3f42e8\n", i, i);
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    crypt_gensalt_rn("$2b$", 10, nullptr, 0, salt, sizeof salt);
    struct crypt_data data {};
    std::ofstream(dir / "htpasswd") << "alice:" << crypt_rn("s3same", salt, &data, sizeof data) << "\n";
  }
  auto ac = AccessControl::open({.auth = {.tokens_file = dir / "tokens", .htpasswd_file = dir / "htpasswd"}});
  std::filesystem::remove_all(dir);
  return *ac;
}

void BM_AdmitBearer(benchmark::State& state) {
  const auto ac = make(static_cast<int>(state.range(0)));
  const std::string header = fmt::format("Bearer token-{}-7c1e9a0b5d3f42e8", state.range(0) / 2);
  for (auto _ : state) {
    auto p = ac->admit({.authorization = header}, Right::kRead, "FindMissingBlobs");
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_AdmitBearer)->Arg(10)->Arg(10000);

void BM_AdmitBasicRemembered(benchmark::State& state) {
  const auto ac = make(1);
  const std::string header = "Basic YWxpY2U6czNzYW1l";  // alice:s3same; bcrypt once, then remembered
  for (auto _ : state) {
    auto p = ac->admit({.authorization = header}, Right::kRead, "FindMissingBlobs");
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_AdmitBasicRemembered);

void BM_AdmitOff(benchmark::State& state) {
  const auto ac = *AccessControl::open({});
  for (auto _ : state) {
    auto p = ac->admit({}, Right::kRead, "FindMissingBlobs");
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_AdmitOff);

void BM_RightOfMethod(benchmark::State& state) {
  for (auto _ : state) {
    auto r = Admission::right_of("/google.bytestream.ByteStream/Write");
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_RightOfMethod);

void BM_ConnectionLimitEnterLeave(benchmark::State& state) {
  Admission a({});
  const std::string peer = "ipv4:127.0.0.1:54321";
  std::string why;
  for (auto _ : state) {
    benchmark::DoNotOptimize(a.enter(peer, &why));
    a.leave(peer);
  }
}
BENCHMARK(BM_ConnectionLimitEnterLeave);

}  // namespace
