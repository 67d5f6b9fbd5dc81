// A proxy whose upstream freezes (SIGSTOP: it accepts connections and never answers) while
// hundreds of read-throughs wait on it: local hits are still served, the waiting reads do not
// each hold a thread of the proxy, and every one of them completes once the upstream resumes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>

#include "harness.hpp"

using namespace gorego;
using namespace gorego::e2e;
using namespace std::chrono_literals;

namespace {

re::Digest digest_of(const std::string& data) { return reapi::to_proto(Sha256::digest_of(data)); }

std::string resource(const re::Digest& d) {
  return fmt::format("blobs/{}/{}", d.hash(), d.size_bytes());
}

/// The PID of the gorego process started with `--listen address`; -1 if there is none.
pid_t pid_listening_on(const std::string& address) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    std::vector<std::string> argv;
    for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(arg);
    if (argv.empty() || argv[0] != GOREGO_BINARY) continue;
    for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == "--listen" && argv[i + 1] == address) return std::stoi(name);
    }
  }
  return -1;
}

/// SIGSTOPs the gorego serving `s` and waits until every one of its threads is stopped: the
/// signal takes effect only when each thread is next scheduled, and on a loaded machine a
/// thread could still answer a call sent right after kill() returned.
void freeze(Server& s) {
  const pid_t pid = pid_listening_on(s.address());
  REQUIRE(pid > 0);
  s.proc->signal(SIGSTOP);
  REQUIRE(eventually(
      [&] {
        std::error_code ec;
        for (const auto& t : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
          std::ifstream in(t.path() / "stat");
          std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
          const auto paren = stat.rfind(')');
          if (paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'T') return false;
        }
        return true;
      },
      10));
}

std::size_t thread_count(pid_t pid) {
  using It = std::filesystem::directory_iterator;
  return static_cast<std::size_t>(std::distance(It(fmt::format("/proc/{}/task", pid)), It()));
}

/// The proxy's count of calls to its upstream under way (-1 when /metrics does not answer).
double upstream_calls_in_flight(const Server& s) {
  const auto m = parse_metrics(http_get(s.admin_port, "/metrics").body);
  const auto it = m.find("gorego_upstream_calls_in_flight");
  return it == m.end() ? -1 : it->second;
}

/// One ByteStream Read on gRPC's callback API, so that hundreds wait without a test thread each.
class AsyncRead final : public grpc::ClientReadReactor<bs::ReadResponse> {
 public:
  AsyncRead(bs::ByteStream::Stub& stub, const re::Digest& d, std::chrono::seconds deadline) {
    ctx_.set_deadline(std::chrono::system_clock::now() + deadline);
    req_.set_resource_name(resource(d));
    stub.async()->Read(&ctx_, &req_, this);
    StartRead(&resp_);
    StartCall();
  }
  AsyncRead(const AsyncRead&) = delete;
  AsyncRead& operator=(const AsyncRead&) = delete;
  ~AsyncRead() override {  // a failed REQUIRE must not free a call still in flight
    ctx_.TryCancel();
    wait();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    data_ += resp_.data();
    StartRead(&resp_);
  }
  void OnDone(const grpc::Status& s) override {
    std::lock_guard lock(mu_);
    status_ = s;
    done_ = true;
    cv_.notify_all();
  }

  [[nodiscard]] bool done() {
    std::lock_guard lock(mu_);
    return done_;
  }
  /// Waits for the end of the call (bounded by its deadline); its status.
  const grpc::Status& wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return status_;
  }
  /// The bytes received; read only after wait().
  [[nodiscard]] const std::string& data() const { return data_; }

 private:
  grpc::ClientContext ctx_;
  bs::ReadRequest req_;
  bs::ReadResponse resp_;
  std::string data_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  grpc::Status status_;
};

/// ByteStream Read of a whole blob with a deadline.
grpc::Status read_within(const Server& s, const re::Digest& d, std::chrono::seconds limit,
                         std::string& out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + limit);
  bs::ReadRequest req;
  req.set_resource_name(resource(d));
  auto r = s.bytestream->Read(&ctx, req);
  bs::ReadResponse resp;
  out.clear();
  while (r->Read(&resp)) out += resp.data();
  return r->Finish();
}

}  // namespace

TEST_CASE("Proxy: a frozen upstream delays only the reads that need it", "[proxy][faults]") {
  constexpr int kWaiting = 300;
  constexpr std::size_t kSpareThreads = 16;  // far fewer than kWaiting
  TempDir dir;
  Server up(dir, {}, "up");
  std::ofstream(dir.path() / "patient.yaml") << "remote:\n  timeout: 60s\n  retries: 0\n";
  // No memory cache: a local hit needs a disk read, as a large blob's always does.
  Server proxy(dir,
               {"--upstream", up.url(), "--memory-cache", "0", "--config",
                (dir.path() / "patient.yaml").string()},
               "proxy");
  const std::string local = make_blob(40, 3 << 20);
  REQUIRE(proxy.upload(local));     // kept locally (and written through)
  std::vector<std::string> remote;  // only the upstream has these
  for (int i = 0; i <= kWaiting; ++i) {
    remote.push_back(make_blob(1000 + static_cast<std::uint64_t>(i), 1000));
    REQUIRE(up.batch_upload(remote.back()).ok());
  }
  // One read-through and one local hit first, so that threads started lazily count as idle.
  std::string out;
  REQUIRE(proxy.read(digest_of(remote.back()), out).ok());
  CHECK(out == remote.back());
  remote.pop_back();
  REQUIRE(proxy.read_verified(digest_of(local)));
  const pid_t pid = pid_listening_on(proxy.address());
  REQUIRE(pid > 0);
  const std::size_t idle = thread_count(pid);

  freeze(up);
  std::vector<std::unique_ptr<AsyncRead>> waiting;
  for (const auto& blob : remote)
    waiting.push_back(std::make_unique<AsyncRead>(*proxy.bytestream, digest_of(blob), 120s));
  // Every one of them has reached the upstream (and waits there) before the local reads.
  const bool forwarded = eventually([&] { return upstream_calls_in_flight(proxy) >= kWaiting; });
  {
    INFO("upstream calls in flight: " << upstream_calls_in_flight(proxy));
    INFO(proxy.proc->log());
    REQUIRE(forwarded);
  }

  std::size_t busiest = thread_count(pid);
  for (int i = 0; i < 5; ++i) {
    std::string got;  // 10 s is a bound on a correct answer, not a measurement
    const grpc::Status s = read_within(proxy, digest_of(local), 10s, got);
    const bool same = got == local;
    INFO("local read " << i << ": " << s.error_message() << "\n" << proxy.proc->log());
    CHECK(s.error_code() == grpc::StatusCode::OK);
    CHECK(same);
    busiest = std::max(busiest, thread_count(pid));
  }
  INFO("idle threads " << idle << ", busiest " << busiest);
  CHECK(busiest <= idle + kSpareThreads);  // a thread per waiting read would be 300 more
  CHECK(std::none_of(waiting.begin(), waiting.end(), [](const auto& r) { return r->done(); }));

  up.proc->signal(SIGCONT);
  int correct = 0;
  std::string first_failure;
  for (std::size_t i = 0; i < waiting.size(); ++i) {
    const grpc::Status& s = waiting[i]->wait();
    if (s.ok() && waiting[i]->data() == remote[i]) {
      ++correct;
    } else if (first_failure.empty()) {
      first_failure =
          fmt::format("read {}: code {} ({}), {} bytes", i, static_cast<int>(s.error_code()),
                      s.error_message(), waiting[i]->data().size());
    }
  }
  INFO(first_failure << "\n" << proxy.proc->log());
  CHECK(correct == kWaiting);
  CHECK(thread_count(pid) <= idle + kSpareThreads);
}

TEST_CASE("Proxy: a client's deadline bounds the upstream calls made for it", "[proxy][faults]") {
  constexpr int kCalls = 20;
  TempDir dir;
  Server up(dir, {}, "up");
  std::ofstream(dir.path() / "patient.yaml") << "remote:\n  timeout: 120s\n  retries: 0\n";
  Server proxy(dir, {"--upstream", up.url(), "--config", (dir.path() / "patient.yaml").string()},
               "proxy");
  const std::string deadline_series = R"(gorego_upstream_errors_total{code="DEADLINE_EXCEEDED"})";
  auto upstream_deadlines = [&] {
    const auto m = parse_metrics(http_get(proxy.admin_port, "/metrics").body);
    const auto it = m.find(deadline_series);
    return it == m.end() ? 0.0 : it->second;
  };
  const double before = upstream_deadlines();

  freeze(up);
  // FindMissingBlobs is asked of the upstream (the authority), one call per request.
  std::vector<grpc::StatusCode> codes(kCalls, grpc::StatusCode::OK);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&, i] {
      re::FindMissingBlobsRequest req;
      *req.add_blob_digests() = digest_of(make_blob(500 + static_cast<std::uint64_t>(i), 10));
      re::FindMissingBlobsResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 1s);
      codes[static_cast<std::size_t>(i)] = proxy.cas->FindMissingBlobs(&ctx, req, &resp).error_code();
    });
  }
  for (auto& t : callers) t.join();
  for (auto c : codes) CHECK(c == grpc::StatusCode::DEADLINE_EXCEEDED);
  // With the upstream still stopped, the proxy's calls for them end at the callers' deadline,
  // not at remote.timeout (120 s): none is left waiting, each counted as DEADLINE_EXCEEDED.
  const bool drained = eventually([&] { return upstream_calls_in_flight(proxy) == 0; }, 30);
  {
    INFO("upstream calls in flight: " << upstream_calls_in_flight(proxy) << "\n" << proxy.proc->log());
    CHECK(drained);
    CHECK(upstream_deadlines() - before >= kCalls);
  }
  up.proc->signal(SIGCONT);
  CHECK(proxy.find_missing({digest_of("after")}).size() == 1);
}
