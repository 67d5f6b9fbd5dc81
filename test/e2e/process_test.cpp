// Tests of the built `gorego` binary as a process: config errors, graceful shutdown,
// crash safety under kill -9, the size limit under load, and start-up on a full cache.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"

#include <gorego/hash/sha256.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/testing/temp_dir.hpp>

extern char** environ;

using namespace gorego;
namespace re = gorego::reapi::re;
namespace bs = google::bytestream;
using gorego::testing::make_blob;
using gorego::testing::TempDir;

namespace {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A gorego child process with its output in `log`.
class Process {
 public:
  Process(std::vector<std::string> args, std::filesystem::path log) : log_(std::move(log)) {
    args.insert(args.begin(), GOREGO_BINARY);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    REQUIRE(posix_spawn(&pid_, GOREGO_BINARY, &fa, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  /// Waits for exit; returns the exit status, or 128+signal.
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  [[nodiscard]] std::string log() const { return slurp(log_); }

 private:
  pid_t pid_ = -1;
  std::filesystem::path log_;
};

/// A running server on a free port over `data`.
struct Server {
  Server(const TempDir& dir, std::vector<std::string> extra = {})
      : port(free_port()), log(dir.path() / "gorego.log") {
    std::vector<std::string> args = {"--listen", fmt::format("127.0.0.1:{}", port), "--data-dir",
                                     (dir.path() / "data").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    proc = std::make_unique<Process>(args, log);
    channel = grpc::CreateChannel(fmt::format("127.0.0.1:{}", port), grpc::InsecureChannelCredentials());
    const bool up = channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30));
    INFO(proc->log());
    REQUIRE(up);
    cas = re::ContentAddressableStorage::NewStub(channel);
    bytestream = bs::ByteStream::NewStub(channel);
  }
  int port;
  std::filesystem::path log;
  std::unique_ptr<Process> proc;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<re::ContentAddressableStorage::Stub> cas;
  std::unique_ptr<bs::ByteStream::Stub> bytestream;

  bool upload(const std::string& data) const {
    const auto d = reapi::to_proto(Sha256::digest_of(data));
    grpc::ClientContext ctx;
    bs::WriteResponse resp;
    auto w = bytestream->Write(&ctx, &resp);
    const std::string name = fmt::format("uploads/u/blobs/{}/{}", d.hash(), d.size_bytes());
    for (std::size_t off = 0; off < data.size() || off == 0; off += 65536) {
      bs::WriteRequest req;
      req.set_resource_name(name);
      req.set_write_offset(static_cast<std::int64_t>(off));
      req.set_data(data.substr(off, 65536));
      req.set_finish_write(off + 65536 >= data.size());
      if (!w->Write(req)) break;
      if (data.empty()) break;
    }
    w->WritesDone();
    return w->Finish().ok() && resp.committed_size() == d.size_bytes();
  }

  std::vector<re::Digest> find_missing(const std::vector<re::Digest>& ds) const {
    re::FindMissingBlobsRequest req;
    for (const auto& d : ds) *req.add_blob_digests() = d;
    re::FindMissingBlobsResponse resp;
    grpc::ClientContext ctx;
    REQUIRE(cas->FindMissingBlobs(&ctx, req, &resp).ok());
    return {resp.missing_blob_digests().begin(), resp.missing_blob_digests().end()};
  }

  /// Reads the blob back; returns whether it came back complete and with the right digest.
  bool read_verified(const re::Digest& d) const {
    grpc::ClientContext ctx;
    bs::ReadRequest req;
    req.set_resource_name(fmt::format("blobs/{}/{}", d.hash(), d.size_bytes()));
    auto r = bytestream->Read(&ctx, req);
    bs::ReadResponse resp;
    Sha256 h;
    std::int64_t n = 0;
    while (r->Read(&resp)) {
      h.update(resp.data());
      n += static_cast<std::int64_t>(resp.data().size());
    }
    return r->Finish().ok() && n == d.size_bytes() && to_hex(h.finish()) == d.hash();
  }
};

/// Bytes of blob and action files under `data`, as the filesystem allocates them.
std::uint64_t allocated_bytes(const std::filesystem::path& data) {
  std::uint64_t total = 0;
  for (const char* tree : {"cas", "ac"}) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(data / tree)) {
      struct stat st {};
      if (e.is_regular_file() && ::stat(e.path().c_str(), &st) == 0) total += st.st_blocks * 512ULL;
    }
  }
  return total;
}

int run(std::vector<std::string> args, const TempDir& dir, std::string& output) {
  Process p(std::move(args), dir.path() / "run.log");
  const int rc = p.wait();
  output = p.log();
  return rc;
}

}  // namespace

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

TEST_CASE("gorego: SIGTERM shuts down gracefully with exit status 0", "[process]") {
  TempDir dir;
  Server s(dir);
  CHECK(s.upload("hello"));
  s.proc->signal(SIGTERM);
  CHECK(s.proc->wait() == 0);
  CHECK_THAT(slurp(s.log), Catch::Matchers::Contains("stopped"));
}

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
    while (true) {
      {
        std::lock_guard lock(mu);
        if (acknowledged.size() >= 40) break;
      }
      std::this_thread::yield();
    }
    s.proc->signal(SIGKILL);  // mid-upload: the writers are still busy
    s.proc->wait();
    stop = true;
    for (auto& w : writers) w.join();
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
  CHECK(std::filesystem::is_empty(dir.path() / "data" / "tmp"));
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
