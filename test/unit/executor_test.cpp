// The non-blocking seams: the Executor's bounded admission, Singleflight's continuations,
// then_on's hand-off, and a ProxyStore whose upstream holds its reads while the caller's
// thread goes on and local hits are served.
#include <catch2/catch.hpp>

#include <latch>
#include <thread>

#include <gorego/core/executor.hpp>
#include <gorego/store/singleflight.hpp>
#include <gorego/testing/memory_client.hpp>

#include "stacks.hpp"

using namespace gorego;
using gorego::testing::make_blob;
using gorego::testing::MemoryClient;
using gorego::testing::TempDir;

TEST_CASE("Executor: try_post refuses past max_queued, post always queues", "[executor]") {
  Executor pool({.threads = 1, .max_queued = 4, .name = "test"});
  std::latch started(1);
  std::latch release(1);
  pool.post([&] {
    started.count_down();
    release.wait();
  });
  started.wait();  // the only thread is busy: everything below waits in the queue
  std::atomic<int> ran{0};
  for (int i = 0; i < 4; ++i) CHECK(pool.try_post([&] { ++ran; }));
  CHECK(pool.queued() == 4);
  CHECK_FALSE(pool.try_post([&] { ++ran; }));  // full: refused and dropped
  CHECK(pool.refused() == 1);
  pool.post([&] { ++ran; });  // a continuation of admitted work is never refused
  CHECK(pool.queued() == 5);
  release.count_down();
  pool.shutdown();
  CHECK(ran == 5);
  CHECK(pool.queued() == 0);
}

TEST_CASE("Executor: after shutdown, post runs the task on the caller's thread", "[executor]") {
  Executor pool({.threads = 2, .max_queued = 8});
  pool.shutdown();
  std::thread::id where;
  pool.post([&] { where = std::this_thread::get_id(); });
  CHECK(where == std::this_thread::get_id());
  CHECK_FALSE(pool.try_post([] {}));
}

TEST_CASE("Singleflight: followers leave a continuation and park no thread", "[executor]") {
  Singleflight<int, std::string> flights;
  std::function<void(std::string)> complete;
  int started = 0;
  std::vector<std::string> got;
  for (int i = 0; i < 10; ++i) {
    flights.run(
        7,
        [&](auto c) {
          ++started;
          complete = std::move(c);
        },
        [&](const std::string& v) { got.push_back(v); });
  }
  // Ten calls returned on this one thread while the work is still out.
  CHECK(started == 1);
  CHECK(flights.followers() == 9);
  CHECK(flights.in_flight() == 1);
  CHECK(got.empty());
  complete("value");
  CHECK(got == std::vector<std::string>(10, "value"));
  CHECK(flights.in_flight() == 0);
  // The key was forgotten: the next call starts again, and may complete inline.
  flights.run(7, [&](auto c) { c("again"); }, [&](const std::string& v) { got.push_back(v); });
  CHECK(got.back() == "again");
}

TEST_CASE("then_on: inline answers go on here, late ones on the executor", "[executor]") {
  Executor pool({.threads = 1, .max_queued = 0});
  std::thread::id where;
  then_on<int>(pool, [](auto cb) { cb(1); }, [&](int) { where = std::this_thread::get_id(); });
  CHECK(where == std::this_thread::get_id());

  std::function<void(int)> late;
  std::latch done(1);
  then_on<int>(pool, [&](auto cb) { late = cb; }, [&](int v) {
    CHECK(v == 2);
    where = std::this_thread::get_id();
    done.count_down();
  });
  std::thread other([&] { late(2); });
  other.join();
  done.wait();
  CHECK(where != std::this_thread::get_id());
  CHECK(where != other.get_id());  // not the thread that delivered the value: the pool's
}

TEST_CASE("Remote tier: reads waiting on the upstream hold no thread, local hits go on", "[remote][executor]") {
  using Proxy = ProxyStore<test::DiskLru, Remote<MemoryClient>>;
  TempDir dir;
  auto owned = std::make_unique<MemoryClient>();
  MemoryClient* client = owned.get();
  Proxy store(ShardedDisk::Options{.root = dir.path(), .fsync = false},
              test::DiskLru::Options{.max_bytes = std::uint64_t{1} << 30, .memory_cache_bytes = 0});
  store.remote().connect(std::move(owned), {});
  Executor pool({.threads = 1, .max_queued = 0});
  store.set_executor(&pool);
  REQUIRE(store.start().ok());
  store.local().wait_loaded();

  const std::string local = make_blob(1, 300000);
  REQUIRE(store.local().put(Sha256::digest_of(local), local).ok());
  std::vector<std::string> remote;
  for (int i = 0; i < 50; ++i) {
    remote.push_back(make_blob(100 + static_cast<std::uint64_t>(i), i % 2 == 0 ? 1000 : 200000));
    REQUIRE(client->upstream.put(Sha256::digest_of(remote.back()), remote.back()).ok());
  }
  client->close_gate();
  std::atomic<int> correct{0};
  std::atomic<int> landed{0};
  for (const std::string& blob : remote) {
    const Digest d = Sha256::digest_of(blob);
    if (blob.size() < 64 << 10) {
      store.get(d, [&, blob](Result<std::string> r) {
        correct += r && *r == blob ? 1 : 0;
        ++landed;
      });
    } else {
      store.open_read(d, 0, [&, blob](Result<Proxy::Reader> r) {
        std::string got(blob.size(), '\0');
        std::size_t n = 0;
        while (r && n < got.size()) {
          auto k = r->read({got.data() + n, got.size() - n});
          if (!k || *k == 0) break;
          n += *k;
        }
        correct += r && got == blob ? 1 : 0;
        ++landed;
      });
    }
  }
  // Fifty reads are out, all on this thread, none answered, and the one pool thread is free.
  CHECK(client->held() == 50);
  CHECK(landed == 0);
  auto hit = store.get(Sha256::digest_of(local));  // a disk read: the memory cache is off
  REQUIRE(hit.ok());
  CHECK(*hit == local);
  std::latch idle(1);
  pool.post([&] { idle.count_down(); });
  idle.wait();

  client->open_gate();  // the held reads complete: verified, stored and answered via the pool
  pool.shutdown();
  store.set_executor(nullptr);
  CHECK(landed == 50);
  CHECK(correct == 50);
  for (const std::string& blob : remote) CHECK(store.local().contains(Sha256::digest_of(blob)));
}

TEST_CASE("CallContext: the executor and a continuation after the upstream keep the caller's", "[executor]") {
  Executor pool({.threads = 1, .max_queued = 0});
  std::latch ran(1);
  std::string seen;
  {
    CallContext::Scope call({.instance_name = "ci"});
    pool.post([&] {
      seen = CallContext::current().instance_name;
      ran.count_down();
    });
  }
  CHECK(CallContext::current().empty());  // the scope ended here
  ran.wait();
  CHECK(seen == "ci");

  using Proxy = ProxyStore<test::MemLru, Remote<MemoryClient>>;
  Proxy store(MemoryStore::Options{}, test::MemLru::Options{.max_bytes = std::uint64_t{1} << 30});
  auto owned = std::make_unique<MemoryClient>();
  MemoryClient* client = owned.get();
  store.remote().connect(std::move(owned), {});
  REQUIRE(store.start().ok());
  const std::string blob = make_blob(9, 100);
  REQUIRE(client->upstream.put(Sha256::digest_of(blob), blob).ok());
  client->close_gate();
  std::string in_done;
  {
    CallContext::Scope call({.instance_name = "main"});
    store.get(Sha256::digest_of(blob), [&](Result<std::string> r) {
      REQUIRE(r.ok());
      in_done = CallContext::current().instance_name;
    });
  }
  std::thread other([&] { client->open_gate(); });  // the answer lands on a thread of no call
  other.join();
  CHECK(in_done == "main");
  pool.shutdown();
}
