// gorego-load: the workloads. Each checks every answer: statuses, digests, and the SHA-256
// of every byte read. A wrong answer is an error of the request it came in.

#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <google/protobuf/util/message_differencer.h>

#include <gorego/core/files.hpp>

#include "harness.hpp"

namespace gorego::load {

CpuTimes self_cpu() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return {.user = secs(ru.ru_utime), .sys = secs(ru.ru_stime)};
}

std::optional<CpuTimes> process_cpu(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // Fields after the command name (which may hold spaces) start at the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // After ")": state(3) ... utime is field 14, stime 15 of the whole line.
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  const auto tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return CpuTimes{.user = static_cast<double>(utime) / tick,
                  .sys = static_cast<double>(stime) / tick};
}

std::optional<std::pair<double, double>> machine_steal() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  if (!(in >> cpu) || cpu != "cpu") return std::nullopt;
  // user nice system idle iowait irq softirq steal
  double v[8] = {};
  for (double& x : v) {
    if (!(in >> x)) return std::nullopt;
  }
  double total = 0;
  for (double x : v) total += x;
  return std::pair{v[7], total};
}

namespace {

std::string digest_key(const re::Digest& d) {
  return fmt::format("{}/{}", d.hash(), d.size_bytes());
}

/// Opens the connections and asks the server for its batch limit.
Result<Env> connect(const Options& o) {
  Env env;
  env.rpc = {.instance = o.instance,
             .timeout = std::chrono::milliseconds(static_cast<std::int64_t>(o.rpc_timeout * 1000)),
             .zstd = o.zstd,
             .authorization = o.bearer_token.empty() ? std::string() : "Bearer " + o.bearer_token};
  std::string ca_pem;
  if (!o.tls_ca_file.empty()) {
    auto pem = read_whole_file(o.tls_ca_file, "--tls-ca");
    if (!pem) return pem.error();
    ca_pem = std::move(*pem);
  }
  std::shared_ptr<grpc::Channel> shared;
  for (unsigned i = 0; i < o.concurrency; ++i) {
    std::shared_ptr<grpc::Channel> ch;
    if (o.shared_channel) {
      if (!shared) shared = make_channel(o.target, true, ca_pem);
      ch = shared;
    } else {
      ch = make_channel(o.target, true, ca_pem);
    }
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      return error(Code::kUnavailable, "cannot connect to {} within 10 s", o.target);
    }
    env.conns.push_back(std::make_unique<Connection>(std::move(ch)));
  }
  auto limit = max_batch_bytes(*env.conns.front(), env.rpc);
  if (!limit) return limit.error();
  const std::uint64_t l = *limit == 0 ? 4 * kMiB : *limit;
  env.batch_budget = l > 64 * kKiB ? l - 16 * kKiB : l / 2;
  return env;
}

/// Runs `fn(connection, rng, i)` for i in [0, n) on every connection's thread (untimed set-up
/// work); the first error, if any.
Status parallel_setup(Env& env, std::uint64_t n,
                      const std::function<Status(Connection&, Rng&, std::uint64_t)>& fn) {
  Errors errors;
  std::atomic<std::uint64_t> next{0};
  {
    std::vector<std::jthread> threads;
    for (std::size_t t = 0; t < env.conns.size(); ++t) {
      threads.emplace_back([&, t] {
        Rng rng(mix64(t) ^ static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()));
        for (std::uint64_t i; (i = next.fetch_add(1)) < n;) {
          if (Status s = fn(*env.conns[t], rng, i); !s.ok()) errors.add(s);
        }
      });
    }
  }
  if (errors.count() == 0) return {};
  return error(Code::kFailedPrecondition, "set-up failed {} time(s), first: {}", errors.count(),
               errors.samples().front());
}

void progress(const Options& o, std::string_view msg) {
  if (!o.json) fmt::print(stderr, "gorego-load: {}\n", msg);
}

/// Computes the population's digest table (untimed), saying so when it takes a while.
void compute_digests(const Options& o, Population& pop) {
  if (pop.count() >= 100000)
    progress(o, fmt::format("computing the digests of {} population blobs", pop.count()));
  pop.compute_digests(std::max(1u, std::thread::hardware_concurrency()));
}

/// Checks a sample of the population is on the server, so a workload that reads it fails
/// with a clear message, not with thousands of NOT_FOUNDs, when populate was not run first.
Status check_population(const Options& o, Env& env, const Population& pop) {
  const std::uint64_t sample = std::min<std::uint64_t>(pop.count(), 1000);
  std::uint64_t missing = 0;
  for (std::uint64_t from = 0; from < sample; from += 500) {
    re::FindMissingBlobsRequest req;
    req.set_instance_name(o.instance);
    for (std::uint64_t s = from; s < std::min(sample, from + 500); ++s) {
      *req.add_blob_digests() = reapi::to_proto(pop.digest(s * pop.count() / sample));
    }
    grpc::ClientContext ctx;
    env.rpc.prepare(ctx);
    re::FindMissingBlobsResponse resp;
    const grpc::Status st = env.conns.front()->cas->FindMissingBlobs(&ctx, req, &resp);
    if (!st.ok()) return from_grpc(st, "FindMissingBlobs (population check)");
    missing += static_cast<std::uint64_t>(resp.missing_blob_digests_size());
  }
  if (missing == 0) return {};
  const auto& p = pop.spec();
  return error(Code::kFailedPrecondition,
               "{} of {} sampled population blobs (--seed {} --blobs {} {}) are missing at {}; run "
               "--workload populate with the same population options first",
               missing, sample, p.seed, p.blobs,
               p.mixed ? "--mixed" : fmt::format("--size {}", p.size), o.target);
}

/// Checks a BatchUpdateBlobs answer: one OK response per blob sent, for exactly those digests.
Status check_update(const re::BatchUpdateBlobsRequest& req,
                    const re::BatchUpdateBlobsResponse& resp) {
  std::vector<std::string> sent, got;
  for (const auto& r : req.requests()) sent.push_back(digest_key(r.digest()));
  std::uint64_t failed = 0;
  Status first;
  for (const auto& r : resp.responses()) {
    got.push_back(digest_key(r.digest()));
    if (r.status().code() != 0 && failed++ == 0) {
      first = error(Code::kInternal, "BatchUpdateBlobs: blob {} got {}: {}", digest_key(r.digest()),
                    code_name(static_cast<Code>(r.status().code())), r.status().message());
    }
  }
  if (failed > 0) {
    return failed == 1
               ? first
               : error(first.code(), "{} (and {} more blobs failed)", first.message(), failed - 1);
  }
  std::sort(sent.begin(), sent.end());
  std::sort(got.begin(), got.end());
  if (sent != got) {
    return error(Code::kInternal,
                 "BatchUpdateBlobs answered for {} digests that are not the {} sent", got.size(),
                 sent.size());
  }
  return {};
}

/// An ActionResult whose outputs are population blobs chosen by `key`.
re::ActionResult make_result(const Population& pop, std::uint64_t key, unsigned outputs) {
  re::ActionResult r;
  for (unsigned k = 0; k < outputs; ++k) {
    auto* f = r.add_output_files();
    f->set_path(fmt::format("out/{}.o", k));
    *f->mutable_digest() = reapi::to_proto(pop.digest(mix64(key + k) % pop.count()));
  }
  *r.mutable_stdout_digest() =
      reapi::to_proto(pop.digest(mix64(key ^ 0x5354444f5554ULL) % pop.count()));
  r.set_exit_code(0);
  return r;
}

/// OK when `got` has the outputs, stdout and exit code of `want`.
Status same_result(const re::ActionResult& want, const re::ActionResult& got, std::string_view rpc,
                   const re::Digest& action) {
  using google::protobuf::util::MessageDifferencer;
  bool same = want.output_files_size() == got.output_files_size() &&
              want.exit_code() == got.exit_code() &&
              MessageDifferencer::Equals(want.stdout_digest(), got.stdout_digest());
  for (int i = 0; same && i < want.output_files_size(); ++i) {
    same = want.output_files(i).path() == got.output_files(i).path() &&
           MessageDifferencer::Equals(want.output_files(i).digest(), got.output_files(i).digest());
  }
  if (same) return {};
  return error(Code::kDataLoss,
               "{} of action {} returned a result that differs from the one stored: {}", rpc,
               digest_key(action), got.ShortDebugString().substr(0, 300));
}

// ---- the workloads ----------------------------------------------------------------------

Result<Report> find_missing(const Options& o, Env& env, const Population& pop) {
  const std::uint64_t k = o.per_request;
  const auto absent_n =
      static_cast<std::uint64_t>(std::llround(o.missing_fraction * static_cast<double>(k)));
  Op op = [&, k, absent_n](Worker& w, std::uint64_t) -> Status {
    re::FindMissingBlobsRequest req;
    req.set_instance_name(o.instance);
    std::vector<std::string> absent;
    absent.reserve(absent_n);
    for (std::uint64_t i = 0; i < k; ++i) {
      // Absent digests spread evenly among the present ones.
      if ((i + 1) * absent_n / k != i * absent_n / k) {
        const Digest d = random_digest(w.rng);
        *req.add_blob_digests() = reapi::to_proto(d);
        absent.push_back(fmt::format("{}/{}", d.hex(), d.size));
      } else {
        *req.add_blob_digests() = reapi::to_proto(pop.digest(w.rng.below(pop.count())));
      }
    }
    grpc::ClientContext ctx;
    env.rpc.prepare(ctx);
    re::FindMissingBlobsResponse resp;
    const grpc::Status s = w.timed([&] { return w.conn->cas->FindMissingBlobs(&ctx, req, &resp); });
    if (!s.ok()) return from_grpc(s, "FindMissingBlobs");
    w.items += k;
    std::vector<std::string> got;
    for (const auto& d : resp.missing_blob_digests()) got.push_back(digest_key(d));
    std::sort(got.begin(), got.end());
    std::sort(absent.begin(), absent.end());
    if (got != absent) {
      std::vector<std::string> wrong;
      std::set_difference(got.begin(), got.end(), absent.begin(), absent.end(),
                          std::back_inserter(wrong));
      return error(
          Code::kDataLoss,
          "FindMissingBlobs reported {} of {} digests missing where {} are absent; {} present "
          "blob(s) reported missing{}{}",
          got.size(), k, absent.size(), wrong.size(), wrong.empty() ? "" : ", first ",
          wrong.empty() ? "" : wrong.front());
    }
    return {};
  };
  return run_timed(o, env, "find-missing", "digests", false, o.duration, o.requests, op);
}

Result<Report> batch_read(const Options& o, Env& env, const Population& pop) {
  const std::uint64_t k = o.per_request;
  // Blobs that fit k to a request within the server's batch limit.
  const std::uint64_t max_blob =
      env.batch_budget / k - std::min(env.batch_budget / k, kBatchOverheadPerBlob);
  std::vector<std::uint64_t> eligible;
  if (pop.spec().mixed) {
    for (std::uint64_t i = 0; i < pop.count(); ++i) {
      if (pop.size_of(i) <= max_blob) eligible.push_back(i);
    }
    if (eligible.empty())
      return error(Code::kInvalidArgument, "no population blob fits {} to a batch", k);
  } else if (pop.spec().size > max_blob) {
    return error(
        Code::kInvalidArgument,
        "--per-request {} blobs of {} bytes exceed the server's batch limit ({} bytes usable)", k,
        pop.spec().size, env.batch_budget);
  }
  Op op = [&, k](Worker& w, std::uint64_t) -> Status {
    re::BatchReadBlobsRequest req;
    req.set_instance_name(o.instance);
    std::vector<std::string> want;
    for (std::uint64_t i = 0; i < k; ++i) {
      const std::uint64_t b =
          eligible.empty() ? w.rng.below(pop.count()) : eligible[w.rng.below(eligible.size())];
      *req.add_digests() = reapi::to_proto(pop.digest(b));
      want.push_back(digest_key(req.digests(static_cast<int>(i))));
    }
    grpc::ClientContext ctx;
    env.rpc.prepare(ctx);
    re::BatchReadBlobsResponse resp;
    const grpc::Status s = w.timed([&] { return w.conn->cas->BatchReadBlobs(&ctx, req, &resp); });
    if (!s.ok()) return from_grpc(s, "BatchReadBlobs");
    std::vector<std::string> got;
    std::uint64_t bad = 0;
    Status first;
    for (const auto& r : resp.responses()) {
      got.push_back(digest_key(r.digest()));
      Status st;
      if (r.status().code() != 0) {
        st = error(Code::kInternal, "BatchReadBlobs: blob {} got {}: {}", got.back(),
                   code_name(static_cast<Code>(r.status().code())), r.status().message());
      } else if (r.compressor() != re::Compressor::IDENTITY) {
        st = error(Code::kInternal,
                   "BatchReadBlobs: blob {} came compressed though none was asked for", got.back());
      } else if (auto d = reapi::from_proto(r.digest()); !d) {
        st = error(Code::kInternal, "BatchReadBlobs: response digest {} is invalid", got.back());
      } else if (Status v = verify_blob(*d, r.data()); !v.ok()) {
        st = error(Code::kDataLoss, "BatchReadBlobs: blob {}: {}", got.back(), v.message());
      } else {
        w.bytes += r.data().size();
        ++w.items;
      }
      if (!st.ok() && bad++ == 0) first = st;
    }
    if (bad > 0)
      return bad == 1
                 ? first
                 : error(first.code(), "{} (and {} more blobs failed)", first.message(), bad - 1);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    if (want != got) {
      return error(Code::kDataLoss,
                   "BatchReadBlobs answered for {} digests that are not the {} asked for",
                   got.size(), want.size());
    }
    return {};
  };
  return run_timed(o, env, "batch-read", "blobs", true, o.duration, o.requests, op);
}

Result<Report> batch_update(const Options& o, Env& env) {
  const std::uint64_t k = o.per_request;
  if (k * (o.size + kBatchOverheadPerBlob) > env.batch_budget) {
    return error(
        Code::kInvalidArgument,
        "--per-request {} blobs of {} bytes exceed the server's batch limit ({} bytes usable)", k,
        o.size, env.batch_budget);
  }
  const FreshBlobs fresh(o.size, o.population.seed);
  Op op = [&, k](Worker& w, std::uint64_t) -> Status {
    re::BatchUpdateBlobsRequest req;
    req.set_instance_name(o.instance);
    for (std::uint64_t i = 0; i < k; ++i) {
      const auto b = fresh.make(w.rng);
      auto* r = req.add_requests();
      *r->mutable_digest() = reapi::to_proto(b.digest);
      r->set_data(fresh.whole(b));
    }
    grpc::ClientContext ctx;
    env.rpc.prepare(ctx);
    re::BatchUpdateBlobsResponse resp;
    const grpc::Status s = w.timed([&] { return w.conn->cas->BatchUpdateBlobs(&ctx, req, &resp); });
    if (!s.ok()) return from_grpc(s, "BatchUpdateBlobs");
    GOREGO_RETURN_IF_ERROR(check_update(req, resp));
    w.items += k;
    w.bytes += k * o.size;
    return {};
  };
  return run_timed(o, env, "batch-update", "blobs", true, o.duration, o.requests, op);
}

Result<Report> bytestream_write(const Options& o, Env& env) {
  const FreshBlobs fresh(o.size, o.population.seed);
  Op op = [&](Worker& w, std::uint64_t) -> Status {
    const auto b = fresh.make(w.rng);
    const Status s = w.timed([&] {
      return write_blob(*w.conn, env.rpc, w.rng, b.digest, o.chunk,
                        [&](std::uint64_t off, std::uint64_t n, std::string& out) {
                          fresh.copy(b, off, n, out);
                        });
    });
    GOREGO_RETURN_IF_ERROR(s);
    ++w.items;
    w.bytes += o.size;
    return {};
  };
  return run_timed(o, env, "bytestream-write", "blobs", true, o.duration, o.requests, op);
}

Result<Report> bytestream_read(const Options& o, Env& env) {
  // Their own deterministic blobs, so a second run finds them stored (early return).
  Population large(
      {.seed = mix64(o.population.seed ^ 0x4c41524745ULL), .blobs = o.distinct, .size = o.size});
  large.reserve_digests();
  GOREGO_RETURN_IF_ERROR(
      parallel_setup(env, o.distinct, [&](Connection& c, Rng& rng, std::uint64_t i) {
        const std::string data = large.content(i);
        const Digest d = Sha256::digest_of(data);
        large.set_digest(i, d);
        return write_blob(c, env.rpc, rng, d, o.chunk,
                          [&](std::uint64_t off, std::uint64_t n, std::string& out) {
                            out.assign(data, off, n);
                          });
      }));
  Op op = [&](Worker& w, std::uint64_t) -> Status {
    const Digest& d = large.digest(w.rng.below(large.count()));
    std::uint64_t n = 0;
    const Status s = w.timed([&] { return read_blob(*w.conn, env.rpc, d, n); });
    GOREGO_RETURN_IF_ERROR(s);
    ++w.items;
    w.bytes += n;
    return {};
  };
  return run_timed(o, env, "bytestream-read", "blobs", true, o.duration, o.requests, op);
}

Result<Report> ac_update(const Options& o, Env& env, const Population& pop) {
  Op op = [&](Worker& w, std::uint64_t) -> Status {
    re::UpdateActionResultRequest req;
    req.set_instance_name(o.instance);
    Digest action = random_digest(w.rng);
    action.size = static_cast<std::int64_t>(100 + w.rng.below(400));
    *req.mutable_action_digest() = reapi::to_proto(action);
    *req.mutable_action_result() = make_result(pop, w.rng.next(), o.outputs);
    grpc::ClientContext ctx;
    env.rpc.prepare(ctx);
    re::ActionResult resp;
    const grpc::Status s =
        w.timed([&] { return w.conn->ac->UpdateActionResult(&ctx, req, &resp); });
    if (!s.ok()) return from_grpc(s, "UpdateActionResult");
    GOREGO_RETURN_IF_ERROR(
        same_result(req.action_result(), resp, "UpdateActionResult", req.action_digest()));
    ++w.items;
    return {};
  };
  return run_timed(o, env, "ac-update", "actions", false, o.duration, o.requests, op);
}

Result<Report> ac_get(const Options& o, Env& env, const Population& pop) {
  // Deterministic actions, stored (again) before the timed run.
  std::vector<re::Digest> actions(o.actions);
  std::vector<re::ActionResult> results(o.actions);
  for (std::uint64_t j = 0; j < o.actions; ++j) {
    actions[j] = reapi::to_proto(Sha256::digest_of(
        fmt::format("gorego-load action seed={} index={}", o.population.seed, j)));
    results[j] = make_result(pop, mix64(o.population.seed ^ mix64(j)), o.outputs);
  }
  GOREGO_RETURN_IF_ERROR(
      parallel_setup(env, o.actions, [&](Connection& c, Rng&, std::uint64_t j) -> Status {
        re::UpdateActionResultRequest req;
        req.set_instance_name(o.instance);
        *req.mutable_action_digest() = actions[j];
        *req.mutable_action_result() = results[j];
        grpc::ClientContext ctx;
        env.rpc.prepare(ctx);
        re::ActionResult resp;
        const grpc::Status s = c.ac->UpdateActionResult(&ctx, req, &resp);
        return s.ok() ? Status{} : from_grpc(s, "UpdateActionResult (set-up)");
      }));
  Op op = [&](Worker& w, std::uint64_t) -> Status {
    const std::uint64_t j = w.rng.below(o.actions);
    re::GetActionResultRequest req;
    req.set_instance_name(o.instance);
    *req.mutable_action_digest() = actions[j];
    grpc::ClientContext ctx;
    env.rpc.prepare(ctx);
    re::ActionResult resp;
    const grpc::Status s = w.timed([&] { return w.conn->ac->GetActionResult(&ctx, req, &resp); });
    if (!s.ok()) return from_grpc(s, fmt::format("GetActionResult of {}", digest_key(actions[j])));
    GOREGO_RETURN_IF_ERROR(same_result(results[j], resp, "GetActionResult", actions[j]));
    ++w.items;
    return {};
  };
  return run_timed(o, env, "ac-get", "actions", false, o.duration, o.requests, op);
}

}  // namespace

Result<Report> populate(const Options& o, Population& pop) {
  auto env = connect(o);
  if (!env) return env.error();
  pop.reserve_digests();
  // Plan the requests: runs of consecutive small blobs in one BatchUpdateBlobs (at most
  // per_request, within the batch limit), each blob over 1 MiB (or over the limit) alone
  // by ByteStream.
  struct Job {
    std::uint64_t first = 0;
    std::uint64_t count = 0;
    bool bytestream = false;
  };
  std::vector<Job> jobs;
  const std::uint64_t max_batched = std::min(kMiB, env->batch_budget - kBatchOverheadPerBlob);
  Job cur;
  std::uint64_t cur_bytes = 0;
  auto flush = [&] {
    if (cur.count > 0) jobs.push_back(cur);
    cur = {};
    cur_bytes = 0;
  };
  for (std::uint64_t i = 0; i < pop.count(); ++i) {
    const std::uint64_t s = pop.size_of(i);
    if (s > max_batched) {
      flush();
      jobs.push_back({.first = i, .count = 1, .bytestream = true});
      continue;
    }
    if (cur.count == o.per_request || cur_bytes + s + kBatchOverheadPerBlob > env->batch_budget)
      flush();
    if (cur.count == 0) cur.first = i;
    ++cur.count;
    cur_bytes += s + kBatchOverheadPerBlob;
  }
  flush();

  Op op = [&](Worker& w, std::uint64_t r) -> Status {
    const Job& job = jobs[r];
    if (job.bytestream) {
      const std::string data = pop.content(job.first);
      const Digest d = Sha256::digest_of(data);
      pop.set_digest(job.first, d);
      const Status s = w.timed([&] {
        return write_blob(*w.conn, env->rpc, w.rng, d, o.chunk,
                          [&](std::uint64_t off, std::uint64_t n, std::string& out) {
                            out.assign(data, off, n);
                          });
      });
      GOREGO_RETURN_IF_ERROR(s);
      ++w.items;
      w.bytes += data.size();
      return {};
    }
    re::BatchUpdateBlobsRequest req;
    req.set_instance_name(o.instance);
    std::uint64_t bytes = 0;
    for (std::uint64_t i = job.first; i < job.first + job.count; ++i) {
      std::string data = pop.content(i);
      const Digest d = Sha256::digest_of(data);
      pop.set_digest(i, d);
      auto* br = req.add_requests();
      *br->mutable_digest() = reapi::to_proto(d);
      bytes += data.size();
      br->set_data(std::move(data));
    }
    grpc::ClientContext ctx;
    env->rpc.prepare(ctx);
    re::BatchUpdateBlobsResponse resp;
    const grpc::Status s = w.timed([&] { return w.conn->cas->BatchUpdateBlobs(&ctx, req, &resp); });
    if (!s.ok()) return from_grpc(s, "BatchUpdateBlobs");
    GOREGO_RETURN_IF_ERROR(check_update(req, resp));
    w.items += job.count;
    w.bytes += bytes;
    return {};
  };
  return run_timed(o, *env, "populate", "blobs", true, std::nullopt, jobs.size(), op);
}

/// Execute of one trivial action (`true`, no inputs) with do_not_cache and
/// skip_cache_lookup, so every call is queued, runs on a worker and is reported: the
/// per-action cost of remote execution. The answer must be a done Operation with exit code 0.
Result<Report> execute(const Options& o, Env& env) {
  re::Command cmd;
  cmd.add_arguments("true");
  auto* path = cmd.add_environment_variables();
  path->set_name("PATH");
  path->set_value("/bin:/usr/bin");
  const std::string cmd_bytes = cmd.SerializeAsString();
  const std::string root_bytes = re::Directory().SerializeAsString();
  re::Action action;
  *action.mutable_command_digest() = reapi::to_proto(Sha256::digest_of(cmd_bytes));
  *action.mutable_input_root_digest() = reapi::to_proto(Sha256::digest_of(root_bytes));
  action.set_do_not_cache(true);
  const std::string action_bytes = action.SerializeAsString();
  {
    re::BatchUpdateBlobsRequest req;
    req.set_instance_name(o.instance);
    for (const std::string* b : {&cmd_bytes, &root_bytes, &action_bytes}) {
      auto* r = req.add_requests();
      *r->mutable_digest() = reapi::to_proto(Sha256::digest_of(*b));
      r->set_data(*b);
    }
    grpc::ClientContext ctx;
    env.rpc.prepare(ctx);
    re::BatchUpdateBlobsResponse resp;
    const grpc::Status s = env.conns[0]->cas->BatchUpdateBlobs(&ctx, req, &resp);
    if (!s.ok()) return from_grpc(s, "BatchUpdateBlobs");
    GOREGO_RETURN_IF_ERROR(check_update(req, resp));
  }
  const re::Digest action_digest = reapi::to_proto(Sha256::digest_of(action_bytes));
  Op op = [&](Worker& w, std::uint64_t) -> Status {
    re::ExecuteRequest req;
    req.set_instance_name(o.instance);
    *req.mutable_action_digest() = action_digest;
    req.set_skip_cache_lookup(true);
    const Status s = w.timed([&]() -> Status {
      grpc::ClientContext ctx;
      env.rpc.prepare(ctx);
      auto stream = w.conn->exec->Execute(&ctx, req);
      google::longrunning::Operation op, last;
      while (stream->Read(&op)) last = op;
      const grpc::Status end = stream->Finish();
      if (!end.ok()) return from_grpc(end, "Execute");
      re::ExecuteResponse resp;
      if (!last.done() || !last.response().UnpackTo(&resp)) {
        return error(Code::kDataLoss, "Execute ended without a done Operation carrying an ExecuteResponse");
      }
      if (resp.status().code() != 0) {
        return error(static_cast<Code>(resp.status().code()), "Execute: {}", resp.status().message());
      }
      if (resp.result().exit_code() != 0) {
        return error(Code::kDataLoss, "Execute of `true` reported exit code {}", resp.result().exit_code());
      }
      return {};
    });
    GOREGO_RETURN_IF_ERROR(s);
    ++w.items;
    return {};
  };
  return run_timed(o, env, "execute", "actions", false, o.duration, o.requests, op);
}

/// The same command run here (posix_spawn and wait): the baseline of `execute`.
Result<Report> spawn_local(const Options& o, Env& env) {
  Op op = [](Worker& w, std::uint64_t) -> Status {
    const Status s = w.timed([]() -> Status {
      std::string prog = "true";
      char* argv[] = {prog.data(), nullptr};
      pid_t pid = 0;
      if (::posix_spawnp(&pid, "true", nullptr, nullptr, argv, environ) != 0) {
        return error(Code::kInternal, "posix_spawnp true: {}", std::strerror(errno));
      }
      int st = 0;
      ::waitpid(pid, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return error(Code::kInternal, "`true` failed ({})", st);
      return {};
    });
    GOREGO_RETURN_IF_ERROR(s);
    ++w.items;
    return {};
  };
  return run_timed(o, env, "spawn-local", "actions", false, o.duration, o.requests, op);
}

Result<Report> run_workload(const Options& o) {
  if (o.workload == "populate") {
    Population pop(o.population);
    return populate(o, pop);
  }
  auto env = connect(o);
  if (!env) return env.error();
  if (o.workload == "batch-update") return batch_update(o, *env);
  if (o.workload == "bytestream-write") return bytestream_write(o, *env);
  if (o.workload == "bytestream-read") return bytestream_read(o, *env);
  if (o.workload == "execute") return execute(o, *env);
  if (o.workload == "spawn-local") return spawn_local(o, *env);
  if (o.workload == "http-put") return http_put(o, *env);
  if (o.workload == "http-get") return http_get(o, *env);

  Population pop(o.population);
  compute_digests(o, pop);
  GOREGO_RETURN_IF_ERROR(check_population(o, *env, pop));
  if (o.workload == "find-missing") return find_missing(o, *env, pop);
  if (o.workload == "batch-read") return batch_read(o, *env, pop);
  if (o.workload == "ac-update") return ac_update(o, *env, pop);
  if (o.workload == "ac-get") return ac_get(o, *env, pop);
  return error(Code::kInvalidArgument, "unknown workload \"{}\"", o.workload);
}

}  // namespace gorego::load
