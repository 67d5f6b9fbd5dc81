// The cost of the proxy: a local hit through the full ProxyStore (with a connected remote
// tier) against the local tier alone, and read-through of large blobs over real gRPC
// against reading the upstream directly. Run: build/benchmark/gorego_bench_proxy.
#include <benchmark/benchmark.h>

#include <grpcpp/grpcpp.h>

#include "google/bytestream/bytestream.grpc.pb.h"

#include <gorego/core/log.hpp>
#include <gorego/eviction/lru.hpp>
#include <gorego/hash/sha256.hpp>
#include <gorego/store/local.hpp>
#include <gorego/store/proxy_store.hpp>
#include <gorego/store/sharded_disk.hpp>
#include <gorego/testing/memory_client.hpp>
#include <gorego/testing/temp_dir.hpp>

#include "server.hpp"

namespace {

using namespace gorego;
using gorego::testing::make_blob;
using gorego::testing::TempDir;

const bool kQuiet = gorego::log::set_level("warn");

using DiskLru = Local<ShardedDisk, Lru>;
using Proxied = ProxyStore<DiskLru, Remote<testing::MemoryClient>>;

template <class S>
std::unique_ptr<S> make(const TempDir& dir) {
  auto s = std::make_unique<S>(ShardedDisk::Options{.root = dir.path(), .fsync = false},
                               DiskLru::Options{.max_bytes = std::uint64_t{8} << 30});
  if constexpr (std::is_same_v<S, Proxied>) s->remote().connect(std::make_unique<testing::MemoryClient>(), {});
  if (!s->start().ok()) std::abort();
  return s;
}

/// get() of a stored blob of `range(0)` bytes: the local-hit path.
template <class S>
void BM_LocalHit(benchmark::State& st) {
  TempDir dir("bench");
  auto s = make<S>(dir);
  const std::string blob = make_blob(1, static_cast<std::size_t>(st.range(0)));
  const Digest d = Sha256::digest_of(blob);
  if (!s->put(d, blob).ok()) std::abort();
  for (auto _ : st) benchmark::DoNotOptimize(s->get(d));
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * st.range(0));
  st.SetLabel(std::string(S::kName));
}
BENCHMARK_TEMPLATE(BM_LocalHit, DiskLru)->Arg(1024)->Arg(1 << 20);
BENCHMARK_TEMPLATE(BM_LocalHit, Proxied)->Arg(1024)->Arg(1 << 20);

/// Two in-process servers on loopback: an upstream, and a proxy in front of it.
struct Pair {
  Pair() {
    Config c;
    c.server.listen_addr = "127.0.0.1:0";
    c.telemetry.metrics_addr = "";  // two servers in one process: no admin ports
    c.storage.data_dir = up_dir.path();
    c.storage.fsync = false;
    upstream = started(c);
    c.storage.data_dir = proxy_dir.path();
    c.remote.target = fmt::format("grpc://127.0.0.1:{}", upstream->port());
    proxy = started(c);
    up_stub = stub(upstream->port());
    proxy_stub = stub(proxy->port());
  }
  static std::unique_ptr<Server> started(const Config& c) {
    auto s = start_server(c);
    if (!s) {
      fmt::print(stderr, "cannot start a server: {}\n", s.error().to_string());
      std::abort();
    }
    return std::move(*s);
  }
  static std::unique_ptr<google::bytestream::ByteStream::Stub> stub(int port) {
    return google::bytestream::ByteStream::NewStub(
        grpc::CreateChannel(fmt::format("127.0.0.1:{}", port), grpc::InsecureChannelCredentials()));
  }
  static void write(google::bytestream::ByteStream::Stub& s, const std::string& data) {
    const Digest d = Sha256::digest_of(data);
    grpc::ClientContext ctx;
    google::bytestream::WriteResponse resp;
    auto w = s.Write(&ctx, &resp);
    for (std::size_t off = 0; off < data.size(); off += 1 << 20) {
      google::bytestream::WriteRequest req;
      if (off == 0) req.set_resource_name(fmt::format("uploads/bench/blobs/{}/{}", d.hex(), d.size));
      req.set_write_offset(static_cast<std::int64_t>(off));
      req.set_data(data.substr(off, 1 << 20));
      req.set_finish_write(off + (1 << 20) >= data.size());
      w->Write(req);
    }
    w->WritesDone();
    if (!w->Finish().ok()) std::abort();
  }
  static std::size_t read(google::bytestream::ByteStream::Stub& s, const Digest& d) {
    grpc::ClientContext ctx;
    google::bytestream::ReadRequest req;
    req.set_resource_name(fmt::format("blobs/{}/{}", d.hex(), d.size));
    auto r = s.Read(&ctx, req);
    google::bytestream::ReadResponse resp;
    std::size_t n = 0;
    while (r->Read(&resp)) n += resp.data().size();
    if (!r->Finish().ok() || n != static_cast<std::size_t>(d.size)) std::abort();
    return n;
  }
  TempDir up_dir{"bench-up"};
  TempDir proxy_dir{"bench-proxy"};
  std::unique_ptr<Server> upstream;
  std::unique_ptr<Server> proxy;
  std::unique_ptr<google::bytestream::ByteStream::Stub> up_stub;
  std::unique_ptr<google::bytestream::ByteStream::Stub> proxy_stub;
};

constexpr std::size_t kLarge = 32 << 20;

/// arg 0: read the upstream directly; 1: read through the proxy, uncached (read-through);
/// 2: read through the proxy, cached (local hit over gRPC).
void BM_ReadLarge(benchmark::State& st) {
  Pair p;
  std::uint64_t seed = 100;
  const std::string warm = make_blob(seed, kLarge);
  Pair::write(*p.up_stub, warm);
  Pair::read(*p.proxy_stub, Sha256::digest_of(warm));  // now cached in the proxy
  for (auto _ : st) {
    Digest d = Sha256::digest_of(warm);
    if (st.range(0) == 1) {
      st.PauseTiming();
      const std::string fresh = make_blob(++seed, kLarge);
      d = Sha256::digest_of(fresh);
      Pair::write(*p.up_stub, fresh);
      st.ResumeTiming();
    }
    benchmark::DoNotOptimize(Pair::read(st.range(0) == 0 ? *p.up_stub : *p.proxy_stub, d));
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * kLarge));
  static constexpr const char* kLabels[] = {"upstream directly", "proxy, read-through", "proxy, cached"};
  st.SetLabel(kLabels[st.range(0)]);
}
BENCHMARK(BM_ReadLarge)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
