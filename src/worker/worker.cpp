// gorego-worker's process: the scheduler stream, the slots, and the store-backed inputs.
#include "worker/worker.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <fstream>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <tuple>

#include "gorego/worker/v1/worker.grpc.pb.h"

#include <gorego/core/executor.hpp>
#include <gorego/core/files.hpp>
#include <gorego/core/log.hpp>
#include <gorego/eviction/lru.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/reapi/reapi_client.hpp>
#include <gorego/store/detail/file.hpp>
#include <gorego/store/local.hpp>
#include <gorego/store/proxy_store.hpp>
#include <gorego/store/remote.hpp>
#include <gorego/store/sharded_disk.hpp>

#include "worker/runner.hpp"

namespace gorego::worker {
namespace {

namespace wk = gorego::worker::v1;
using google::protobuf::util::TimeUtil;

/// The worker's cache: the framework's disk tier reading through from the gorego CAS.
using WorkerStore = ProxyStore<Local<ShardedDisk, Lru>, Remote<reapi::Reapi>>;

google::protobuf::Timestamp now_ts() { return TimeUtil::GetCurrentTime(); }
google::protobuf::Timestamp ts(std::chrono::system_clock::time_point t) {
  return TimeUtil::MicrosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count());
}

/// HOST:PID:RANDOM. The random part keeps two workers apart that share a host name and a
/// pid (containers): the scheduler drops a worker when its id connects again.
std::string default_id() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::random_device rd;
  return fmt::format("{}:{}:{:04x}", host, ::getpid(), rd() & 0xffff);
}

/// Inputs from the worker's store: prefetch reads through from the CAS into the disk tier,
/// place hard-links the cached file (copies executables, whose mode is per file).
class StoreInputs final : public InputSource {
 public:
  explicit StoreInputs(WorkerStore& s) : store_(s) {}

  Status prefetch(std::span<const Digest> ds, std::vector<Digest>& missing) override {
    std::vector<Digest> want;
    for (const Digest& d : ds) {
      if (!d.empty_blob()) want.push_back(d);
    }
    const std::vector<Digest> absent = store_.local().find_missing(want);
    struct Fetch {
      std::mutex mu;
      std::condition_variable cv;
      std::size_t in_flight = 0;
      std::vector<Digest> missing;
      std::optional<Status> failure;
    } f;
    constexpr std::size_t kParallel = 16;
    for (const Digest& d : absent) {
      {
        std::unique_lock lock(f.mu);
        f.cv.wait(lock, [&] { return f.in_flight < kParallel; });
        ++f.in_flight;
      }
      fetch(d, [&f, d](const Status& s) {
        std::lock_guard lock(f.mu);
        if (s.code() == Code::kNotFound) f.missing.push_back(d);
        else if (!s.ok() && !f.failure) f.failure = s;
        --f.in_flight;
        f.cv.notify_all();
      });
    }
    std::unique_lock lock(f.mu);
    f.cv.wait(lock, [&] { return f.in_flight == 0; });
    if (f.failure) return *f.failure;
    missing.insert(missing.end(), f.missing.begin(), f.missing.end());
    if (!f.missing.empty()) {
      return error(Code::kFailedPrecondition, "{} input blob(s) are not in the CAS, first {}", f.missing.size(),
                   f.missing.front());
    }
    return {};
  }

  Result<std::string> get(const Digest& d) override { return store_.get(d); }

  /// The runner creates empty files itself; every other blob was prefetched.
  Status place(const Digest& d, const std::filesystem::path& path, bool executable) override {
    const std::string cached = store_.local().backend().path({d, Tree::kCas});
    for (int attempt = 0; attempt < 2; ++attempt) {
      int e = 0;
      if (!executable) {
        // The link shares the cache file's inode: make it read-only, so that an action (run
        // by a user other than root) cannot change the cached blob through its input.
        if (::chmod(cached.c_str(), 0444) == 0 && ::link(cached.c_str(), path.c_str()) == 0) return {};
        e = errno;
        if (e == EEXIST) return error(Code::kInvalidArgument, "input {} exists twice", path.string());
      }
      // Executables get their own inode (a file's mode is per inode), as do links across
      // filesystems or past the link limit.
      if (executable || e == EXDEV || e == EMLINK) {
        std::error_code ec;
        if (std::filesystem::copy_file(cached, path, ec) && ::chmod(path.c_str(), executable ? 0555 : 0444) == 0) {
          return {};
        }
        e = ec ? ec.value() : errno;
      }
      if (e != ENOENT || attempt > 0) {
        return error(Code::kInternal, "cannot place input {} at {}: {}", d, path.string(), std::strerror(e));
      }
      // Evicted since the prefetch: read it through again.
      GOREGO_RETURN_IF_ERROR(detail::wait_for<Status>([&](auto done) { fetch(d, done); }));
    }
    return error(Code::kInternal, "input {} was evicted again before it could be placed at {}", d, path.string());
  }

 private:
  static constexpr std::int64_t kSmall = 1 << 20;

  /// Reads `d` through into the disk tier (a small blob whole, a large one streamed to disk);
  /// `done(status)`.
  template <class Done>
  void fetch(const Digest& d, Done&& done) {
    if (d.size <= kSmall) {
      store_.get(d, [done](Result<std::string> r) { done(r ? Status{} : r.error()); });
    } else {
      store_.open_read(d, 0, [done](auto r) { done(r ? Status{} : r.error()); });
    }
  }

  WorkerStore& store_;
};

/// An upload's bytes, from memory or from its file (opened once per upload).
class UploadSource {
 public:
  explicit UploadSource(const Upload& u) : u_(u) {
    if (!u.file.empty()) fd_ = detail::Fd(::open(u.file.c_str(), O_RDONLY | O_CLOEXEC));
  }
  Result<std::string> read(std::uint64_t offset, std::size_t max) const {
    if (u_.file.empty()) return u_.bytes.substr(std::min<std::size_t>(offset, u_.bytes.size()), max);
    if (!fd_) return error(Code::kInternal, "cannot open output {}", u_.file.string());
    std::string out(max, '\0');
    std::size_t got = 0;
    while (got < max) {
      const ssize_t n = ::pread(fd_.get(), out.data() + got, max - got, static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return error(Code::kInternal, "cannot read output {}: {}", u_.file.string(), std::strerror(errno));
      if (n == 0) break;
      got += static_cast<std::size_t>(n);
    }
    out.resize(got);
    return out;
  }

 private:
  const Upload& u_;
  detail::Fd fd_;
};

/// Uploads what the CAS lacks: FindMissingBlobs first, then each missing blob (batched
/// calls for small ones, ByteStream for large ones: the client picks by size).
Status upload(reapi::Reapi& cas, const std::vector<Upload>& uploads) {
  std::vector<Digest> ds;
  std::map<std::string, const Upload*> by_digest;  // by hex hash
  for (const Upload& u : uploads) {
    if (u.digest.empty_blob() || !by_digest.emplace(u.digest.hex(), &u).second) continue;
    ds.push_back(u.digest);
  }
  if (ds.empty()) return {};
  auto missing = detail::wait_for<Result<std::vector<Digest>>>([&](auto cb) { cas.find_missing(ds, cb); });
  if (!missing) return missing.error();
  std::mutex mu;
  std::condition_variable cv;
  std::size_t left = missing->size();
  Status first;
  for (const Digest& d : *missing) {
    const auto found = by_digest.find(d.hex());
    if (found == by_digest.end()) {
      std::lock_guard lock(mu);
      if (first.ok()) first = error(Code::kInternal, "FindMissingBlobs answered {}, which was not asked for", d);
      if (--left == 0) cv.notify_all();
      continue;
    }
    const Upload* u = found->second;
    auto done = [&](Status s) {
      std::lock_guard lock(mu);
      if (!s.ok() && first.ok()) first = std::move(s);
      if (--left == 0) cv.notify_all();
    };
    auto source = std::make_shared<const UploadSource>(*u);
    if (static_cast<std::uint64_t>(d.size) <= cas.max_batch_bytes() / 2) {
      auto data = source->read(0, static_cast<std::size_t>(d.size));
      if (!data) {
        done(data.error());
        continue;
      }
      cas.put(d, *data, done);
    } else {
      cas.write(d,
                [source](std::uint64_t offset, std::size_t max, const Callback<Result<std::string>>& got) {
                  got(source->read(offset, max));
                },
                done);
    }
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return left == 0; });
  return first;
}

/// Kills what a killed worker's actions left running: the processes of each process group
/// recorded in an action directory under `actions`, but only those whose working directory
/// is inside that action directory (a recorded group id may since belong to someone else).
void kill_leftovers(const std::filesystem::path& actions) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(actions, ec)) {
    std::ifstream in(e.path() / "pgid");
    pid_t pgid = 0;
    if (!(in >> pgid) || pgid <= 1) continue;
    const std::string dir = std::filesystem::weakly_canonical(e.path(), ec).string() + "/";
    int killed = 0;
    for (const auto& p : std::filesystem::directory_iterator("/proc", ec)) {
      const std::string name = p.path().filename().string();
      if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
      const pid_t pid = std::stoi(name);
      if (::getpgid(pid) != pgid) continue;
      std::error_code cwd_ec;
      const std::string cwd = std::filesystem::read_symlink(p.path() / "cwd", cwd_ec).string() + "/";
      if (cwd_ec || !cwd.starts_with(dir)) continue;
      if (::kill(pid, SIGKILL) == 0) ++killed;
    }
    if (killed > 0) {
      log::warn("killed the processes of an interrupted action",
                {{"dir", e.path().string()}, {"processes", std::to_string(killed)}});
    }
  }
}

std::string dir_name(std::string lease) {
  for (char& c : lease) {
    if (c == '/' || c == '#') c = '_';
  }
  return lease;
}

re::ExecuteResponse missing_inputs(const std::vector<Digest>& missing) {
  re::ExecuteResponse r;
  *r.mutable_status() = reapi::missing_blobs(
      missing, fmt::format("{} input blob(s) are not in the CAS, first {}; upload them and retry", missing.size(),
                           missing.front()));
  return r;
}

class Worker {
 public:
  explicit Worker(WorkerOptions o) : opt_(std::move(o)) {}

  int run(std::stop_token stop) {
    if (opt_.id.empty()) opt_.id = default_id();
    if (opt_.slots == 0) opt_.slots = std::max(1u, std::thread::hardware_concurrency());
    if (opt_.cas.empty()) opt_.cas = opt_.scheduler;
    std::error_code ec;
    // A worker killed mid-action leaves its action directories and maybe their processes:
    // the next start kills those and clears the directories.
    kill_leftovers(opt_.work_dir / "actions");
    remove_tree(opt_.work_dir / "actions");
    std::filesystem::create_directories(opt_.work_dir / "actions", ec);
    std::filesystem::create_directories(opt_.work_dir / "cache", ec);
    if (ec) {
      log::error("cannot create the work directory", {{"dir", opt_.work_dir.string()}, {"error", ec.message()}});
      return 1;
    }
    store_.emplace(ShardedDisk::Options{.root = opt_.work_dir / "cache", .fsync = false}, Lru::Options{},
                   Local<ShardedDisk, Lru>::Options{.max_bytes = opt_.cache_bytes, .memory_cache_bytes = 0});
    // Outputs of many GB go up in one ByteStream call: a generous deadline per attempt.
    auto client = reapi::Reapi::connect(
        {.target = opt_.cas,
         .instance_name = opt_.instance_name,
         .timeout = std::chrono::minutes(30),
         .tls_ca_file = opt_.cas.starts_with("grpcs://") ? opt_.tls_ca_file : std::string(),
         .tls_cert_file = opt_.cas.starts_with("grpcs://") ? opt_.tls_cert_file : std::string(),
         .tls_key_file = opt_.cas.starts_with("grpcs://") ? opt_.tls_key_file : std::string(),
         .bearer_token = opt_.bearer_token});
    if (!client) {
      log::error("cannot reach the CAS", {{"cas", opt_.cas}, {"error", client.error().message()}});
      return 2;
    }
    store_->remote().connect(std::move(*client), {.mode = WriteMode::kThrough});
    store_->set_executor(&pool_);
    if (Status s = store_->start(); !s.ok()) {
      log::error("cannot open the worker cache", {{"error", s.message()}});
      return 1;
    }
    store_->local().wait_loaded();
    for (std::uint32_t i = 0; i < opt_.slots; ++i) slots_.emplace_back([this] { slot(); });

    const bool tls = opt_.scheduler.starts_with("grpcs://");
    if (!tls && !opt_.bearer_token.empty()) {
      log::warn("the bearer token goes to the scheduler in plaintext (grpc://); use grpcs:// on untrusted networks",
                {{"scheduler", opt_.scheduler}});
    }
    std::string address = opt_.scheduler.substr(opt_.scheduler.find("://") + 3);
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (tls) {
      grpc::SslCredentialsOptions ssl;
      for (auto [file, what, out] : {std::tuple{&opt_.tls_ca_file, "--tls-ca", &ssl.pem_root_certs},
                                     std::tuple{&opt_.tls_cert_file, "--tls-cert", &ssl.pem_cert_chain},
                                     std::tuple{&opt_.tls_key_file, "--tls-key", &ssl.pem_private_key}}) {
        if (file->empty()) continue;
        auto pem = read_whole_file(*file, what);
        if (!pem) {
          log::error("cannot read a TLS file", {{"error", pem.error().message()}});
          return 2;
        }
        *out = std::move(*pem);
      }
      creds = grpc::SslCredentials(ssl);
    }
    grpc::ChannelArguments args;
    // Assignments carry the Action and Command: as large as the server's message limit.
    args.SetMaxReceiveMessageSize(64 << 20);
    // Notice a silent partition within half a minute instead of TCP's quarter of an hour.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20'000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
    auto channel = grpc::CreateCustomChannel(address, creds, args);
    auto stub = wk::Workers::NewStub(channel);
    std::chrono::milliseconds backoff{200};
    while (!stop.stop_requested()) {
      const bool welcomed = session(*stub, stop);
      if (stop.stop_requested()) break;
      if (welcomed) backoff = std::chrono::milliseconds(200);
      log::warn("scheduler stream ended; reconnecting", {{"scheduler", opt_.scheduler},
                                                         {"in_ms", std::to_string(backoff.count())}});
      std::mutex mu;
      std::condition_variable_any cv;
      std::unique_lock lock(mu);
      cv.wait_for(lock, stop, backoff, [] { return false; });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (auto& [lease, flag] : running_) flag->store(true);
    }
    work_cv_.notify_all();
    for (auto& t : slots_) t.join();
    store_->set_executor(nullptr);
    pool_.shutdown();
    store_->stop();
    return 0;
  }

 private:
  /// One stream: hello, then assignments until it breaks. True if it was welcomed.
  bool session(wk::Workers::Stub& stub, const std::stop_token& stop) {
    grpc::ClientContext ctx;
    if (!opt_.bearer_token.empty()) ctx.AddMetadata("authorization", "Bearer " + opt_.bearer_token);
    std::stop_callback on_stop(stop, [&ctx] { ctx.TryCancel(); });
    auto stream = stub.Connect(&ctx);
    {
      wk::WorkerMessage hello;
      auto* h = hello.mutable_hello();
      h->set_worker_id(opt_.id);
      h->set_slots(opt_.slots);
      h->set_version(GOREGO_VERSION);
      for (const auto& [k, v] : opt_.properties) {
        auto* p = h->add_properties();
        p->set_name(k);
        p->set_value(v);
      }
      if (!stream->Write(hello)) {
        // The server ended the stream at once (refused credentials, shutting down): say why.
        const grpc::Status s = stream->Finish();
        if (!stop.stop_requested()) {
          log::warn("scheduler stream failed",
                    {{"code", std::string(code_name(static_cast<Code>(s.error_code())))}, {"error", s.error_message()}});
        }
        return false;
      }
    }
    {
      std::lock_guard lock(mu_);
      stream_ = stream.get();
    }
    bool welcomed = false;
    std::jthread heartbeat;
    wk::SchedulerMessage m;
    while (stream->Read(&m)) {
      switch (m.kind_case()) {
        case wk::SchedulerMessage::kWelcome: {
          welcomed = true;
          log::info("connected to the scheduler", {{"scheduler", opt_.scheduler}, {"worker", opt_.id},
                                                    {"slots", std::to_string(opt_.slots)}});
          const auto every = std::chrono::milliseconds(std::max<std::int64_t>(100, m.welcome().heartbeat_interval_ms()));
          heartbeat = std::jthread([this, every](std::stop_token st) {
            std::mutex mu;
            std::condition_variable_any cv;
            while (!st.stop_requested()) {
              {
                std::unique_lock lock(mu);
                cv.wait_for(lock, st, every, [] { return false; });
              }
              if (st.stop_requested()) return;
              wk::WorkerMessage hb;
              {
                std::lock_guard lock(mu_);
                for (const auto& [lease, flag] : running_) hb.mutable_heartbeat()->add_leases(lease);
              }
              hb.mutable_heartbeat();
              send(hb);
            }
          });
          break;
        }
        case wk::SchedulerMessage::kAssign: {
          std::lock_guard lock(mu_);
          work_.push_back(m.assign());
          running_[m.assign().lease()] = std::make_shared<std::atomic<bool>>(false);
          work_cv_.notify_one();
          break;
        }
        case wk::SchedulerMessage::kCancel: {
          std::lock_guard lock(mu_);
          if (auto it = running_.find(m.cancel().lease()); it != running_.end()) it->second->store(true);
          break;
        }
        default: break;
      }
    }
    heartbeat = {};
    {
      // The scheduler requeues whatever this stream held: stop running it here.
      std::lock_guard wlock(write_mu_);
      std::lock_guard lock(mu_);
      stream_ = nullptr;
      for (auto& [lease, flag] : running_) flag->store(true);
      for (const auto& a : work_) running_.erase(a.lease());  // never started
      work_.clear();
    }
    const grpc::Status s = stream->Finish();
    if (!s.ok() && !stop.stop_requested()) {
      log::warn("scheduler stream failed",
                {{"code", std::string(code_name(static_cast<Code>(s.error_code())))}, {"error", s.error_message()}});
    }
    return welcomed;
  }

  /// Writes on the current stream, if any (write_mu_ before mu_).
  void send(const wk::WorkerMessage& m) {
    std::lock_guard lock(write_mu_);
    grpc::ClientReaderWriter<wk::WorkerMessage, wk::SchedulerMessage>* s = nullptr;
    {
      std::lock_guard l(mu_);
      s = stream_;
    }
    if (s != nullptr) s->Write(m);
  }

  void slot() {
    while (true) {
      wk::Assignment a;
      std::shared_ptr<std::atomic<bool>> cancel;
      {
        std::unique_lock lock(mu_);
        work_cv_.wait(lock, [&] { return stopping_ || !work_.empty(); });
        if (stopping_) return;
        a = std::move(work_.front());
        work_.pop_front();
        auto it = running_.find(a.lease());
        cancel = it != running_.end() ? it->second : std::make_shared<std::atomic<bool>>(true);
      }
      re::ExecuteResponse r = execute(a, *cancel);
      wk::WorkerMessage done;
      done.mutable_finished()->set_lease(a.lease());
      *done.mutable_finished()->mutable_response() = std::move(r);
      {
        std::lock_guard lock(mu_);
        running_.erase(a.lease());
      }
      send(done);
    }
  }

  re::ExecuteResponse execute(const wk::Assignment& a, const std::atomic<bool>& cancel) {
    re::ExecuteResponse r;
    auto& meta = *r.mutable_result()->mutable_execution_metadata();
    meta.set_worker(opt_.id);
    *meta.mutable_queued_timestamp() = a.queued();
    *meta.mutable_worker_start_timestamp() = now_ts();
    {
      wk::WorkerMessage started;
      started.mutable_started()->set_lease(a.lease());
      send(started);
    }
    const std::filesystem::path dir = opt_.work_dir / "actions" / dir_name(a.lease());
    const std::filesystem::path root = dir / "root";
    std::error_code ec;
    remove_tree(dir);
    std::filesystem::create_directories(root, ec);
    auto fail = [&](const Status& s) {
      re::ExecuteResponse out;
      *out.mutable_status() = reapi::to_rpc_status(s);
      *out.mutable_result()->mutable_execution_metadata() = meta;  // which worker, and when
      remove_tree(dir);
      return out;
    };
    if (ec) return fail(error(Code::kInternal, "cannot create {}: {}", root.string(), ec.message()));
    auto input_root = reapi::from_proto(a.action().input_root_digest(), "action.input_root_digest");
    if (!input_root) return fail(input_root.error());
    const std::string action = fmt::format("{}/{}", a.action_digest().hash(), a.action_digest().size_bytes());
    log::debug("action started", {{"action", action}, {"lease", a.lease()}});

    *meta.mutable_input_fetch_start_timestamp() = now_ts();
    StoreInputs inputs(*store_);
    std::vector<Digest> missing;
    Status laid = materialise_inputs(inputs, *input_root, root, missing);
    *meta.mutable_input_fetch_completed_timestamp() = now_ts();
    if (!missing.empty()) {
      remove_tree(dir);
      return missing_inputs(missing);
    }
    if (!laid.ok()) return fail(laid);
    if (Status s = create_output_parents(a.command(), root); !s.ok()) return fail(s);
    if (cancel.load()) return fail(error(Code::kCancelled, "the action was cancelled before it started"));

    const RunOptions run_opt{.timeout = std::chrono::milliseconds(a.timeout_ms()),
                             .cancel = &cancel,
                             .stdout_path = dir / "stdout",
                             .stderr_path = dir / "stderr",
                             .pgid_file = dir / "pgid"};
    const RunOutcome run = run_command(a.command(), root, run_opt);
    *meta.mutable_execution_start_timestamp() = ts(run.started);
    *meta.mutable_execution_completed_timestamp() = ts(run.completed);
    if (!run.status.ok()) return fail(run.status);
    // Cancelled (by the client, a lost stream or SIGTERM): nobody wants the outputs.
    if (run.cancelled) return fail(error(Code::kCancelled, "the action was cancelled and killed"));

    *meta.mutable_output_upload_start_timestamp() = now_ts();
    auto collected = collect_outputs(a.command(), root, run, run_opt.stdout_path, run_opt.stderr_path);
    if (!collected) return fail(collected.error());
    if (Status s = upload(store_->remote().client(), collected->uploads); !s.ok()) {
      // UNAVAILABLE (retried by clients) whatever the CAS said: a DEADLINE_EXCEEDED here would
      // read as the action's own timeout.
      return fail(error(Code::kUnavailable, "uploading the outputs failed: {} {}", code_name(s.code()), s.message()));
    }
    *meta.mutable_output_upload_completed_timestamp() = now_ts();
    *meta.mutable_worker_completed_timestamp() = now_ts();
    auto saved_meta = meta;
    *r.mutable_result() = std::move(collected->result);
    *r.mutable_result()->mutable_execution_metadata() = std::move(saved_meta);
    if (run.timed_out) {
      *r.mutable_status() = reapi::to_rpc_status(
          error(Code::kDeadlineExceeded, "the action timed out after {} ms and was killed", a.timeout_ms()));
    } else if (run.cancelled) {
      *r.mutable_status() = reapi::to_rpc_status(error(Code::kCancelled, "the action was cancelled"));
    }
    log::info("action done", {{"action", action},
                              {"lease", a.lease()},
                              {"exit_code", std::to_string(r.result().exit_code())},
                              {"timed_out", run.timed_out ? "true" : "false"}});
    remove_tree(dir);
    return r;
  }

  WorkerOptions opt_;
  Executor pool_{Executor::Options{.threads = 4, .max_queued = 0, .name = "worker-io"}};
  std::optional<WorkerStore> store_;
  std::mutex mu_;  // work_, running_, stream_, stopping_
  std::condition_variable work_cv_;
  std::deque<wk::Assignment> work_;
  std::map<std::string, std::shared_ptr<std::atomic<bool>>> running_;
  grpc::ClientReaderWriter<wk::WorkerMessage, wk::SchedulerMessage>* stream_ = nullptr;
  bool stopping_ = false;
  std::mutex write_mu_;
  std::vector<std::thread> slots_;
};

}  // namespace

int run_worker(WorkerOptions o, std::stop_token stop) { return Worker(std::move(o)).run(std::move(stop)); }

}  // namespace gorego::worker
