// Tests of the built `gorego` binary as a process: config errors, graceful shutdown,
// crash safety under kill -9 (blobs and ActionCache entries), the size limit under load, and
// start-up on a full cache.
#include <catch2/catch.hpp>

#include <sys/mount.h>

#include <cstring>
#include <map>

#include "harness.hpp"

using namespace gorego;
using namespace gorego::e2e;


TEST_CASE("gorego: --help lists the flags and exits 0", "[process]") {
  TempDir dir;
  std::string out;
  CHECK(run({"--help"}, dir, out) == 0);
  for (const char* flag : {"--listen", "--data-dir", "--max-size", "--eviction", "--log-level", "--config"}) {
    CHECK_THAT(out, Catch::Matchers::Contains(flag));
  }
}

TEST_CASE("gorego: a bad configuration exits non-zero naming the problem", "[process]") {
  TempDir dir;
  std::string out;
  CHECK(run({"--max-size", "12XB"}, dir, out) != 0);
  CHECK_THAT(out, Catch::Matchers::Contains("12XB"));
  CHECK(run({"--eviction", "lfu"}, dir, out) != 0);
  CHECK_THAT(out, Catch::Matchers::Contains("lfu"));
  std::ofstream(dir.path() / "bad.yaml") << "listen_addr: 127.0.0.1:0\nstorage:\n  fsnyc: true\n";
  CHECK(run({"--config", (dir.path() / "bad.yaml").string()}, dir, out) != 0);
  CHECK_THAT(out, Catch::Matchers::Contains("storage.fsnyc"));
  std::ofstream(dir.path() / "file") << "not a directory";
  CHECK(run({"--listen", "127.0.0.1:0", "--data-dir", (dir.path() / "file" / "sub").string()}, dir, out) != 0);
  CHECK_THAT(out, Catch::Matchers::Contains((dir.path() / "file").string()));
}

TEST_CASE("gorego: a gRPC port already in use stops the start, naming the address", "[process]") {
  TempDir dir;
  Server first(dir, {}, "first");
  TempDir other;
  const auto log = other.path() / "second.log";
  Process second({"--listen", first.address(), "--data-dir", (other.path() / "data").string(), "--metrics-addr", ""},
                 log);
  // Before the fix the second one served too (SO_REUSEPORT), taking half the connections.
  REQUIRE(eventually([&] {
    const std::string l = slurp(log);
    return l.find("cannot start") != std::string::npos || l.find("\"serving\"") != std::string::npos;
  }));
  const std::string l = slurp(log);
  INFO(l);
  REQUIRE_THAT(l, Catch::Matchers::Contains("cannot start"));
  CHECK_THAT(l, Catch::Matchers::Contains(first.address()));
  CHECK(second.wait() != 0);
  CHECK(first.upload("still served by the first"));
}

TEST_CASE("gorego: SIGTERM shuts down gracefully with exit status 0", "[process]") {
  TempDir dir;
  Server s(dir);
  CHECK(s.upload("hello"));
  s.proc->signal(SIGTERM);
  CHECK(s.proc->wait() == 0);
  CHECK_THAT(slurp(s.log), Catch::Matchers::Contains("stopped"));
}

TEST_CASE("gorego: an upload in flight at SIGTERM finishes within the grace; new calls are refused", "[process]") {
  TempDir dir;
  const std::string blob = make_blob(77, 3 * 65536 + 123);
  const auto d = reapi::to_proto(Sha256::digest_of(blob));
  const std::string name = fmt::format("uploads/0d6c1e2a-3b4c-4d5e-8f90-a1b2c3d4e5f6/blobs/{}/{}", d.hash(), d.size_bytes());
  {
    Server s(dir);
    grpc::ClientContext ctx;
    bs::WriteResponse resp;
    auto w = s.bytestream->Write(&ctx, &resp);
    const auto send = [&](std::size_t off, bool last) {
      bs::WriteRequest req;
      req.set_resource_name(name);
      req.set_write_offset(static_cast<std::int64_t>(off));
      req.set_data(blob.substr(off, last ? std::string::npos : 65536));
      req.set_finish_write(last);
      return w->Write(req);
    };
    REQUIRE(send(0, false));
    REQUIRE(send(65536, false));
    REQUIRE(eventually([&] {  // the server holds the partial upload
      return parse_metrics(http_get(s.admin_port, "/metrics").body)["gorego_upload_bytes_in_flight"] > 0;
    }, 10));
    s.proc->signal(SIGTERM);
    REQUIRE(eventually([&] { return http_get(s.admin_port, "/health/ready").status == 503; }, 10));
    // A call that starts now is refused with UNAVAILABLE, which clients retry (gRPC's own
    // shutdown would answer CANCELLED, which they do not).
    auto fresh = grpc::CreateChannel(s.address(), grpc::InsecureChannelCredentials());
    auto fresh_cas = re::ContentAddressableStorage::NewStub(fresh);
    grpc::ClientContext late;
    late.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    re::FindMissingBlobsRequest fm;
    *fm.add_blob_digests() = d;
    re::FindMissingBlobsResponse fm_resp;
    const grpc::Status refused = fresh_cas->FindMissingBlobs(&late, fm, &fm_resp);
    CHECK(refused.error_code() == grpc::StatusCode::UNAVAILABLE);
    // The upload that was in flight completes.
    REQUIRE(send(2 * 65536, false));
    REQUIRE(send(3 * 65536, true));
    w->WritesDone();
    const grpc::Status st = w->Finish();
    INFO(st.error_message());
    INFO(s.proc->log());
    CHECK(st.ok());
    CHECK(resp.committed_size() == d.size_bytes());
    CHECK(s.proc->wait() == 0);
  }
  Server again(dir);
  CHECK(again.read_verified(d));  // acknowledged, so durable
}

namespace {
/// Once `enough()`, kills `s` with SIGKILL while `writers` are still busy, then stops them.
template <class F>
void kill_mid_writes(Server& s, std::vector<std::thread>& writers, std::atomic<bool>& stop, F&& enough) {
  while (!enough()) std::this_thread::yield();
  s.proc->signal(SIGKILL);
  s.proc->wait();
  stop = true;
  for (auto& w : writers) w.join();
}
}  // namespace

TEST_CASE("gorego: after kill -9 during uploads every acknowledged blob is intact", "[process][crash]") {
  TempDir dir;
  std::vector<re::Digest> acknowledged;
  std::vector<re::Digest> attempted;
  std::mutex mu;
  {
    Server s(dir);
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int t = 0; t < 4; ++t) {
      writers.emplace_back([&, t] {
        for (int i = 0; !stop; ++i) {
          const std::string data = make_blob(t * 100000 + i, 1000 + (i % 7) * 150000);
          const auto d = reapi::to_proto(Sha256::digest_of(data));
          {
            std::lock_guard lock(mu);
            attempted.push_back(d);
          }
          if (s.upload(data)) {
            std::lock_guard lock(mu);
            acknowledged.push_back(d);
          }
        }
      });
    }
    kill_mid_writes(s, writers, stop, [&] {
      std::lock_guard lock(mu);
      return acknowledged.size() >= 40;
    });
  }
  Server restarted(dir);
  std::vector<re::Digest> acked_copy;
  {
    std::lock_guard lock(mu);
    acked_copy = acknowledged;
  }
  CHECK(restarted.find_missing(acked_copy).empty());  // nothing acknowledged is lost
  const auto missing = restarted.find_missing(attempted);
  std::size_t present = 0;
  for (const auto& d : attempted) {
    const bool is_missing = std::any_of(missing.begin(), missing.end(),
                                        [&](const re::Digest& m) { return m.hash() == d.hash(); });
    if (is_missing) continue;
    ++present;
    INFO(d.hash());
    CHECK(restarted.read_verified(d));  // every blob reported present reads back correctly
  }
  CHECK(present >= acked_copy.size());
  // No half-written upload is visible or left over.
  CHECK(gorego::testing::upload_leftovers(dir.path() / "data") == 0);
}

TEST_CASE("gorego: after kill -9 during ActionCache updates every acknowledged result is served", "[process][crash]") {
  TempDir dir;
  const std::string out = "the one output of every action";
  const re::Digest out_digest = reapi::to_proto(Sha256::digest_of(out));
  std::map<std::string, std::pair<re::Digest, re::ActionResult>> acknowledged;  // by action hash
  std::mutex mu;
  {
    Server s(dir);  // default durability: fsync on
    REQUIRE(s.upload(out));
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int t = 0; t < 4; ++t) {
      writers.emplace_back([&, t] {
        for (int i = 0; !stop; ++i) {
          re::UpdateActionResultRequest req;
          *req.mutable_action_digest() = reapi::to_proto(Sha256::digest_of(fmt::format("action {} {}", t, i % 50)));
          req.mutable_action_result()->set_exit_code(i);  // later updates replace earlier ones
          *req.mutable_action_result()->mutable_stdout_digest() = out_digest;
          grpc::ClientContext ctx;
          re::ActionResult resp;
          if (s.ac->UpdateActionResult(&ctx, req, &resp).ok()) {
            std::lock_guard lock(mu);
            acknowledged[req.action_digest().hash()] = {req.action_digest(), req.action_result()};
          }
        }
      });
    }
    kill_mid_writes(s, writers, stop, [&] {
      std::lock_guard lock(mu);
      return acknowledged.size() >= 100;
    });
  }
  Server restarted(dir);
  std::lock_guard lock(mu);
  for (const auto& [hash, entry] : acknowledged) {
    const auto& [action, result] = entry;
    re::GetActionResultRequest req;
    *req.mutable_action_digest() = action;
    re::ActionResult got;
    grpc::ClientContext ctx;
    const grpc::Status st = restarted.ac->GetActionResult(&ctx, req, &got);
    INFO(hash);
    REQUIRE(st.ok());
    // An update sent after the acknowledged one may have landed before the kill: the result
    // is the acknowledged one or a later one of the same writer.
    CHECK(got.exit_code() >= result.exit_code());
    CHECK(got.stdout_digest().hash() == out_digest.hash());
  }
}

TEST_CASE("gorego: with a small limit, 3x the limit written keeps disk use within it", "[process][eviction]") {
  for (const char* eviction : {"lru", "atime"}) {
    INFO(eviction);
    TempDir dir;
    constexpr std::uint64_t kLimit = 4 << 20;
    Server s(dir, {"--max-size", "4MiB", "--eviction", eviction});
    std::vector<re::Digest> all;
    std::uint64_t written = 0;
    for (int i = 0; written < 3 * kLimit; ++i) {
      const std::string data = make_blob(i + 7, 10000 + (i % 5) * 60000);
      REQUIRE(s.upload(data));
      written += data.size();
      all.push_back(reapi::to_proto(Sha256::digest_of(data)));
      CHECK(allocated_bytes(dir.path() / "data") <= kLimit);
    }
    const auto missing = s.find_missing(all);
    CHECK(missing.size() < all.size());
    CHECK(missing.size() > 0);
    for (const auto& d : all) {
      const bool gone = std::any_of(missing.begin(), missing.end(),
                                    [&](const re::Digest& m) { return m.hash() == d.hash(); });
      if (!gone) CHECK(s.read_verified(d));
    }
  }
}

TEST_CASE("gorego: answers correctly right after start on a full cache", "[process][startup]") {
  TempDir dir;
  // Lay out 20000 blobs directly in the on-disk format, as a previous run would have.
  std::vector<re::Digest> ds;
  for (int i = 0; i < 20000; ++i) {
    const std::string data = fmt::format("blob number {}", i);
    const Digest d = Sha256::digest_of(data);
    const std::string hex = d.hex();
    const auto shard = dir.path() / "data" / "cas" / hex.substr(0, 2) / hex.substr(2, 2);
    std::filesystem::create_directories(shard);
    std::ofstream(shard / hex) << data;
    if (i % 100 == 0) ds.push_back(reapi::to_proto(d));
  }
  ds.push_back(reapi::to_proto(Sha256::digest_of("never stored")));
  Server s(dir);
  const auto missing = s.find_missing(ds);
  REQUIRE(missing.size() == 1);
  CHECK(missing[0].hash() == ds.back().hash());
  CHECK(s.read_verified(ds.front()));
}

namespace {
/// A size-limited tmpfs at `at` for the lifetime of the object (the tests run as root).
class SmallDisk {
 public:
  SmallDisk(const std::filesystem::path& at, const std::string& size) : at_(at) {
    std::filesystem::create_directories(at_);
    mounted_ = ::mount("gorego-test", at_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
    if (!mounted_) WARN("cannot mount a tmpfs (not root?): " << std::strerror(errno));
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(at_.c_str(), MNT_DETACH);
  }
  [[nodiscard]] bool mounted() const { return mounted_; }

 private:
  std::filesystem::path at_;
  bool mounted_ = false;
};

grpc::Status upload_status(const Server& s, const std::string& data) {
  const auto d = reapi::to_proto(Sha256::digest_of(data));
  std::vector<std::string> pieces;
  for (std::size_t off = 0; off < data.size(); off += 65536) pieces.push_back(data.substr(off, 65536));
  std::int64_t committed = 0;
  return write_pieces(s, fmt::format("uploads/6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d/blobs/{}/{}", d.hash(), d.size_bytes()),
                      pieces, committed);
}

/// Fills the filesystem of `path` with one file until not a page is left.
void fill(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  const std::string chunk(1 << 20, 'f');
  for (std::size_t n : {std::size_t{1} << 20, std::size_t{4096}, std::size_t{1}}) {
    while (::write(fd, chunk.data(), n) > 0) {
    }
  }
  ::close(fd);
}
}  // namespace

TEST_CASE("gorego: on a full disk uploads get RESOURCE_EXHAUSTED, nothing half-written shows, and it recovers",
          "[process][diskfull]") {
  TempDir dir;
  SmallDisk disk(dir.path() / "mnt", "40m");
  if (!disk.mounted()) return;
  // The cache's own limit is far above the filesystem's size: only ENOSPC can stop writes.
  Server s(dir, {"--data-dir", (dir.path() / "mnt" / "data").string(), "--max-size", "1GiB"});
  std::vector<std::string> acked;
  grpc::Status full;
  std::string refused;
  for (int i = 0; i < 80 && full.ok(); ++i) {
    std::string b = make_blob(9000 + i, (1 << 20) + i);
    full = upload_status(s, b);
    if (full.ok()) acked.push_back(std::move(b));
    else refused = std::move(b);
  }
  INFO(full.error_message());
  REQUIRE_FALSE(full.ok());  // 80 MiB cannot fit in 40
  CHECK(full.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK_THAT(full.error_message(), Catch::Matchers::Contains("disk full"));
  CHECK(acked.size() >= 20);
  const auto refused_digest = reapi::to_proto(Sha256::digest_of(refused));
  // The refused upload is not visible, and leaves no file behind.
  CHECK(s.find_missing({refused_digest}).size() == 1);
  CHECK(gorego::testing::upload_leftovers(dir.path() / "mnt" / "data") == 0);
  // Every acknowledged blob still there reads back intact (eviction may have made room).
  std::size_t present = 0;
  for (const auto& b : acked) {
    const auto d = reapi::to_proto(Sha256::digest_of(b));
    if (!s.has(d)) continue;
    ++present;
    CHECK(s.read_verified(d));
  }
  CHECK(present > 0);
  // Eviction made room: the client's retry succeeds.
  CHECK(upload_status(s, refused).ok());
  CHECK(s.read_verified(refused_digest));

  // Something else fills the disk: uploads may fail, nothing breaks; once the space is back
  // the server is ready and takes uploads, without a restart.
  fill(dir.path() / "mnt" / "filler");
  for (int i = 0; i < 5; ++i) {
    const std::string b = make_blob(9500 + i, 300000);
    const grpc::Status st = upload_status(s, b);
    INFO(st.error_message());
    CHECK((st.ok() || st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED));
    if (st.ok()) CHECK(s.read_verified(reapi::to_proto(Sha256::digest_of(b))));
  }
  fill(dir.path() / "mnt" / "filler2");  // whatever eviction freed, it is taken again
  std::filesystem::remove(dir.path() / "mnt" / "filler");
  std::filesystem::remove(dir.path() / "mnt" / "filler2");
  CHECK(eventually([&] { return http_get(s.admin_port, "/health/ready").status == 200; }, 10));
  const std::string after = make_blob(9999, 2 << 20);
  CHECK(upload_status(s, after).ok());
  CHECK(s.read_verified(reapi::to_proto(Sha256::digest_of(after))));
  s.proc->signal(SIGTERM);
  CHECK(s.proc->wait() == 0);
}
