// gorego-load cold-start: populate a server started from a command line, stop it, start it
// again and measure how soon it answers correctly and how much memory it holds.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.hpp"

extern char** environ;

namespace gorego::load {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail(const fs::path& p, std::size_t n = 2000) {
  const std::string s = slurp(p);
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

Result<int> free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return error(Code::kInternal, "socket: {}", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok)
    return error(Code::kInternal, "cannot find a free loopback port: {}", std::strerror(errno));
  return static_cast<int>(ntohs(addr.sin_port));
}

bool port_open(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

/// VmRSS of `pid` in bytes; 0 if unreadable.
double rss_bytes(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) return std::stod(line.substr(6)) * 1024.0;  // "  1234 kB"
  }
  return 0;
}

std::string substitute(std::string s, std::string_view key, const std::string& value) {
  for (std::size_t at = 0; (at = s.find(key, at)) != std::string::npos; at += value.size()) {
    s.replace(at, key.size(), value);
  }
  return s;
}

/// The server under test: `/bin/sh -c "exec CMD"`, so the shell's PID becomes the server's;
/// stdout and stderr go to `log`. Killed (SIGKILL) if still running on destruction.
class ServerProcess {
 public:
  static Result<std::unique_ptr<ServerProcess>> start(const std::string& cmd, const fs::path& log) {
    auto p = std::unique_ptr<ServerProcess>(new ServerProcess());
    p->log_ = log;
    std::string script = "exec " + cmd;
    std::string sh = "/bin/sh", dash_c = "-c";
    char* argv[] = {sh.data(), dash_c.data(), script.data(), nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    const int rc = ::posix_spawn(&p->pid_, "/bin/sh", &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return error(Code::kInternal, "cannot start \"{}\": {}", cmd, std::strerror(rc));
    return p;
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() {
    if (running()) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const fs::path& log() const { return log_; }

  /// Reaps the process if it has exited.
  bool running() {
    if (exited_) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return false;
    }
    return true;
  }
  [[nodiscard]] int exit_status() const { return status_; }

  Status died(std::string_view when) const {
    return error(Code::kUnavailable, "the server exited with status {} {}; its log {}:\n{}",
                 status_, when, log_.string(), tail(log_));
  }

  /// SIGTERM, then waits up to `timeout` s (then SIGKILL). The seconds it took; an error if
  /// SIGKILL was needed.
  Result<double> stop(double timeout) {
    const auto t0 = Clock::now();
    if (!running()) return died("before it was stopped");
    ::kill(pid_, SIGTERM);
    while (running()) {
      if (std::chrono::duration<double>(Clock::now() - t0).count() > timeout) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        exited_ = true;
        return error(Code::kDeadlineExceeded,
                     "the server did not exit within {} s of SIGTERM; killed", timeout);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }

 private:
  ServerProcess() = default;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  fs::path log_;
};

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Waits until `port` accepts connections; the seconds since `t0`.
Result<double> wait_listening(ServerProcess& p, int port, Clock::time_point t0, double timeout) {
  while (!port_open(port)) {
    if (!p.running()) return p.died("before it listened");
    if (since(t0) > timeout) {
      return error(Code::kDeadlineExceeded,
                   "the server did not listen on port {} within {} s; its log:\n{}", port, timeout,
                   tail(p.log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return since(t0);
}

/// FindMissingBlobs of `digests`: how many the server reports missing.
Result<std::uint64_t> count_missing(Connection& c, const Rpc& rpc,
                                    const std::vector<re::Digest>& digests, std::size_t from,
                                    std::size_t n) {
  re::FindMissingBlobsRequest req;
  req.set_instance_name(rpc.instance);
  for (std::size_t i = from; i < from + n; ++i) *req.add_blob_digests() = digests[i];
  grpc::ClientContext ctx;
  rpc.prepare(ctx);
  ctx.set_wait_for_ready(true);
  re::FindMissingBlobsResponse resp;
  const grpc::Status s = c.cas->FindMissingBlobs(&ctx, req, &resp);
  if (!s.ok()) return from_grpc(s, "FindMissingBlobs");
  return static_cast<std::uint64_t>(resp.missing_blob_digests_size());
}

/// Removes the working directory on destruction unless told to keep it.
struct DirGuard {
  fs::path path;
  bool keep = false;
  ~DirGuard() {
    std::error_code ec;
    if (!keep && !path.empty()) fs::remove_all(path, ec);
  }
};

}  // namespace

Result<ColdStartReport> run_cold_start(const Options& o) {
  DirGuard base{.keep = o.keep_dir};
  if (o.dir.empty()) {
    const char* t = std::getenv("TMPDIR");
    std::string templ = fmt::format("{}/gorego-load-cold.XXXXXX", t && *t ? t : "/tmp");
    if (::mkdtemp(templ.data()) == nullptr)
      return error(Code::kInternal, "mkdtemp {}: {}", templ, std::strerror(errno));
    base.path = templ;
  } else {
    base.path = o.dir;
    base.keep = true;  // not ours to remove
    std::error_code ec;
    fs::create_directories(base.path, ec);
    if (ec) return error(Code::kInternal, "cannot create {}: {}", o.dir, ec.message());
  }
  const fs::path data = base.path / "data";
  std::error_code ec;
  fs::create_directories(data, ec);
  if (ec) return error(Code::kInternal, "cannot create {}: {}", data.string(), ec.message());
  auto port = free_port();
  if (!port) return port.error();
  const std::string cmd =
      substitute(substitute(o.server_cmd, "{port}", std::to_string(*port)), "{dir}", data.string());
  const Rpc rpc{
      .instance = o.instance,
      .timeout = std::chrono::milliseconds(static_cast<std::int64_t>(o.rpc_timeout * 1000))};
  auto say = [&](std::string_view msg) {
    if (!o.json) fmt::print(stderr, "gorego-load: cold-start: {}\n", msg);
  };

  ColdStartReport rep;
  rep.blobs = o.population.blobs;
  Population pop(o.population);
  Errors errors;

  // 1. A first server on an empty directory: its memory before it holds anything.
  say(fmt::format("starting `{}`", cmd));
  auto first = ServerProcess::start(cmd, base.path / "server-1.log");
  if (!first) return first.error();
  if (auto t = wait_listening(**first, *port, Clock::now(), o.start_timeout); !t) return t.error();
  {
    Connection c(make_channel(fmt::format("127.0.0.1:{}", *port), true));
    const std::vector<re::Digest> none{
        reapi::to_proto(Sha256::digest_of("gorego-load cold-start probe"))};
    auto m = count_missing(c, rpc, none, 0, 1);
    if (!m) return m.error();
    rep.rss_empty_bytes = rss_bytes((*first)->pid());
  }

  // 2. Populate it.
  say(fmt::format("populating {} blobs", pop.count()));
  Options po = o;
  po.target = fmt::format("127.0.0.1:{}", *port);
  po.server_pid = (*first)->pid();
  po.workload = "populate";
  auto filled = populate(po, pop);
  if (!filled) return filled.error();
  rep.populate = std::move(*filled);
  rep.populate.workload = "cold-start populate";
  if (rep.populate.errors > 0)
    return error(Code::kDataLoss, "populate failed: {}", rep.populate.error_samples.front());

  // 3. Stop it.
  auto stopped = (*first)->stop(60);
  if (!stopped) return stopped.error();
  rep.stop_seconds = *stopped;
  rep.stop_status = (*first)->exit_status();
  if (o.drop_caches) {
    ::sync();
    std::ofstream dc("/proc/sys/vm/drop_caches");
    if (!(dc << "3\n") || !dc.flush()) {
      return error(Code::kPermissionDenied, "cannot write /proc/sys/vm/drop_caches (needs root)");
    }
  }

  // 4. Start it again: time to listening, to a correct answer, to the index loaded.
  std::vector<re::Digest> digests;
  digests.reserve(pop.count());
  for (std::uint64_t i = 0; i < pop.count(); ++i) digests.push_back(reapi::to_proto(pop.digest(i)));
  const std::size_t k = std::min<std::size_t>(o.check_digests, digests.size());
  std::vector<re::Digest> sample;
  for (std::size_t s = 0; s < k; ++s) sample.push_back(digests[s * digests.size() / k]);
  rep.check_digests = k;

  say("restarting");
  const auto t0 = Clock::now();
  auto second = ServerProcess::start(cmd, base.path / "server-2.log");
  if (!second) return second.error();
  ServerProcess& p = **second;
  auto listening = wait_listening(p, *port, t0, o.start_timeout);
  if (!listening) return listening.error();
  rep.listen_seconds = *listening;
  Connection c(make_channel(fmt::format("127.0.0.1:{}", *port), true));
  while (true) {
    auto m = count_missing(c, rpc, sample, 0, sample.size());
    if (m && *m == 0) {
      rep.correct_seconds = since(t0);
      rep.rss_correct_bytes = rss_bytes(p.pid());
      break;
    }
    if (m) {
      ++rep.wrong_answers;
      errors.add(error(Code::kDataLoss,
                       "after restart, FindMissingBlobs reported {} of {} stored blobs missing", *m,
                       sample.size()));
    } else {
      errors.add(m.error());
    }
    if (!p.running()) return p.died("after restart");
    if (since(t0) > o.start_timeout) {
      return error(Code::kDeadlineExceeded,
                   "no correct FindMissingBlobs answer within {} s of restart", o.start_timeout);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  say(fmt::format("answered correctly after {:.3f} s; waiting for \"{}\" in {}",
                  rep.correct_seconds, o.loaded_pattern, p.log().string()));
  while (since(t0) < o.index_timeout) {
    if (slurp(p.log()).find(o.loaded_pattern) != std::string::npos) {
      rep.loaded_seconds = since(t0);
      rep.rss_loaded_bytes = rss_bytes(p.pid());
      break;
    }
    if (!p.running()) return p.died("while loading its index");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  // 5. Every populated blob must be present.
  for (std::size_t from = 0; from < digests.size(); from += 10000) {
    const std::size_t n = std::min<std::size_t>(10000, digests.size() - from);
    auto m = count_missing(c, rpc, digests, from, n);
    if (!m) {
      errors.add(m.error());
      continue;
    }
    rep.verified_present += n - *m;
    if (*m > 0) {
      errors.add(error(Code::kDataLoss, "after restart, {} of blobs {}..{} are reported missing",
                       *m, from, from + n - 1));
    }
  }
  if (auto s = p.stop(60); !s) errors.add(s.error());
  rep.errors = errors.count();
  rep.error_samples = errors.samples();
  if (o.keep_dir || !o.dir.empty()) say(fmt::format("kept {}", base.path.string()));
  return rep;
}

}  // namespace gorego::load
