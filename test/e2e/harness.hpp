#pragma once
// Test harness for tests that drive built binaries as processes: a child process with
// its output in a log file, and a client for a running gorego (or any REAPI server).

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
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"

#include <gorego/hash/content_hash.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/testing/temp_dir.hpp>

extern char** environ;

namespace gorego::e2e {

namespace re = gorego::reapi::re;
namespace bs = google::bytestream;
using gorego::testing::make_blob;
using gorego::testing::TempDir;



inline int free_port() {
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

/// Polls `cond` until it holds or `seconds` pass (for work that happens in the background).
template <class F>
bool eventually(F&& cond, int seconds = 30) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A gorego child process with its output in `log`.
class Process {
 public:
  Process(std::vector<std::string> args, std::filesystem::path log)
      : Process(GOREGO_BINARY, std::move(args), std::move(log)) {}
  Process(const std::string& program, std::vector<std::string> args, std::filesystem::path log)
      : log_(std::move(log)) {
    args.insert(args.begin(), program);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    REQUIRE(posix_spawn(&pid_, program.c_str(), &fa, nullptr, argv.data(), environ) == 0);
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
  /// Starts gorego on a free port with data in `dir`/`name`-data (or `dir`/data when
  /// `name` is empty) and its log in `dir`/`name`.log (or gorego.log).
  /// With `creds`, the client channel uses them (a TLS listener); else plaintext.
  Server(const TempDir& dir, std::vector<std::string> extra = {}, const std::string& name = "",
         std::shared_ptr<grpc::ChannelCredentials> creds = nullptr)
      : port(free_port()),
        admin_port(free_port()),
        data(dir.path() / (name.empty() ? "data" : name + "-data")),
        log(dir.path() / (name.empty() ? "gorego.log" : name + ".log")) {
    std::vector<std::string> args = {"--listen", address(), "--data-dir", data.string(), "--metrics-addr",
                                     fmt::format("127.0.0.1:{}", admin_port)};
    args.insert(args.end(), extra.begin(), extra.end());
    proc = std::make_unique<Process>(args, log);
    connect(std::move(creds));
  }
  /// A client for a server started some other way (e.g. a third-party peer).
  Server(int port_, std::unique_ptr<Process> p, std::filesystem::path log_)
      : port(port_), log(std::move(log_)), proc(std::move(p)) {
    connect();
  }

  [[nodiscard]] std::string address() const { return fmt::format("127.0.0.1:{}", port); }
  [[nodiscard]] std::string url() const { return "grpc://" + address(); }

  void connect(std::shared_ptr<grpc::ChannelCredentials> creds = nullptr) {
    channel = grpc::CreateChannel(address(), creds ? creds : grpc::InsecureChannelCredentials());
    const bool up = channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30));
    INFO(proc->log());
    REQUIRE(up);
    cas = re::ContentAddressableStorage::NewStub(channel);
    ac = re::ActionCache::NewStub(channel);
    bytestream = bs::ByteStream::NewStub(channel);
  }

  int port;
  int admin_port = 0;  ///< the admin HTTP server (/metrics, /health/*)
  std::filesystem::path data;
  std::filesystem::path log;
  std::unique_ptr<Process> proc;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<re::ContentAddressableStorage::Stub> cas;
  std::unique_ptr<re::ActionCache::Stub> ac;
  std::unique_ptr<bs::ByteStream::Stub> bytestream;

  /// BatchUpdateBlobs of one blob; the per-blob status.
  [[nodiscard]] Status batch_upload(const std::string& data) const {
    re::BatchUpdateBlobsRequest req;
    auto* r = req.add_requests();
    *r->mutable_digest() = reapi::to_proto(Sha256::digest_of(data));
    r->set_data(data);
    re::BatchUpdateBlobsResponse resp;
    grpc::ClientContext ctx;
    const grpc::Status s = cas->BatchUpdateBlobs(&ctx, req, &resp);
    if (!s.ok()) return Status(static_cast<Code>(s.error_code()), s.error_message());
    return Status(static_cast<Code>(resp.responses(0).status().code()), resp.responses(0).status().message());
  }

  /// ByteStream Read of a whole blob into `out`; the call's status.
  grpc::Status read(const re::Digest& d, std::string& out) const {
    grpc::ClientContext ctx;
    bs::ReadRequest req;
    req.set_resource_name(fmt::format("blobs/{}/{}", d.hash(), d.size_bytes()));
    auto r = bytestream->Read(&ctx, req);
    bs::ReadResponse resp;
    out.clear();
    while (r->Read(&resp)) out += resp.data();
    return r->Finish();
  }

  [[nodiscard]] bool has(const re::Digest& d) const { return find_missing({d}).empty(); }

  bool upload(const std::string& data) const {
    const auto d = reapi::to_proto(Sha256::digest_of(data));
    grpc::ClientContext ctx;
    bs::WriteResponse resp;
    auto w = bytestream->Write(&ctx, &resp);
    const std::string name = fmt::format("uploads/5f0c9d3e-8a1b-4c2d-9e3f-0a1b2c3d4e5f/blobs/{}/{}", d.hash(), d.size_bytes());
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

/// Waits until `path` contains `text` (a server announcing it listens); false after `seconds`.
inline bool wait_for_log(const std::filesystem::path& path, std::string_view text, int seconds = 30) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (slurp(path).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

/// Bytes of blob files and ActionCache log segments under `data`, as the filesystem
/// allocates them.
inline std::uint64_t allocated_bytes(const std::filesystem::path& data) {
  std::uint64_t total = 0;
  for (const char* tree : {"cas", "ac-log"}) {
    std::error_code ec;  // ac-log/ appears with the first start
    for (const auto& e : std::filesystem::recursive_directory_iterator(data / tree, ec)) {
      struct stat st {};
      if (e.is_regular_file() && ::stat(e.path().c_str(), &st) == 0) total += st.st_blocks * 512ULL;
    }
  }
  return total;
}

struct HttpResponse {
  int status = 0;
  std::string body;
};

/// A plain HTTP/1.0 GET to 127.0.0.1:port; `headers` are more "Name: value\r\n" lines.
inline HttpResponse http_get(int port, const std::string& path, const std::string& headers = {}) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return {};
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n" + headers + "\r\n";
  [[maybe_unused]] auto w = ::write(fd, req.data(), req.size());
  std::string raw;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) raw.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  HttpResponse r;
  if (raw.size() > 12 && raw.starts_with("HTTP/1.")) r.status = std::stoi(raw.substr(9, 3));
  if (const auto end = raw.find("\r\n\r\n"); end != std::string::npos) r.body = raw.substr(end + 4);
  return r;
}

/// Series ("name{labels}" exactly as exposed) to value.
inline std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

inline int run(std::vector<std::string> args, const TempDir& dir, std::string& output) {
  Process p(std::move(args), dir.path() / "run.log");
  const int rc = p.wait();
  output = p.log();
  return rc;
}


/// A ByteStream Write of `name` in which message i carries `pieces[i]`; each write_offset
/// counts the bytes sent before (compressed bytes for compressed-blobs names, as the spec
/// has it). Returns the call's status and sets `committed`.
inline grpc::Status write_pieces(const Server& s, const std::string& name, const std::vector<std::string>& pieces,
                                 std::int64_t& committed) {
  grpc::ClientContext ctx;
  bs::WriteResponse resp;
  auto w = s.bytestream->Write(&ctx, &resp);
  std::int64_t off = 0;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    bs::WriteRequest req;
    req.set_resource_name(name);
    req.set_write_offset(off);
    req.set_data(pieces[i]);
    req.set_finish_write(i + 1 == pieces.size());
    if (!w->Write(req)) break;
    off += static_cast<std::int64_t>(pieces[i].size());
  }
  w->WritesDone();
  grpc::Status st = w->Finish();
  committed = resp.committed_size();
  return st;
}

/// BuildStream's CAS server (bst-artifact-server, a third-party REAPI server) on a free
/// port, with its repository in `dir`/bst and its log in `dir`/bst.log.
inline std::unique_ptr<Server> start_bst(const TempDir& dir, std::vector<std::string> extra = {}) {
  const int port = free_port();
  std::vector<std::string> args{GOREGO_SOURCE_DIR "/test/e2e/bst_cas_server.py", "--repo",
                                (dir.path() / "bst").string(), "--port", std::to_string(port)};
  args.insert(args.end(), extra.begin(), extra.end());
  auto proc = std::make_unique<Process>("/usr/bin/python3", args, dir.path() / "bst.log");
  return std::make_unique<Server>(port, std::move(proc), dir.path() / "bst.log");
}

}  // namespace gorego::e2e
