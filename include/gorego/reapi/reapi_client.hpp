#pragma once
/// Reapi: a RemoteClient for any REAPI v2 server (bazel-remote, Buildbarn, BuildBuddy,
/// BuildStream's CAS server, another gorego).
///
/// - `grpc://host:port` or `grpcs://host:port` (TLS with an optional CA bundle and client
///   certificate); an optional bearer token and extra headers on every call.
/// - Every call is asynchronous (gRPC's callback API): it returns at once and its
///   callback runs on a gRPC thread when the upstream answers, so a slow or frozen
///   upstream holds no thread of ours. Each attempt has a deadline (`timeout`); transient
///   codes only (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED) are retried with exponential
///   backoff, timed by a gRPC alarm. A call that ran out of time is not repeated: a hung
///   upstream costs one timeout, not several. Streamed reads resume from the last byte
///   received, and ask for the next message only when the sink took the last one.
/// - Small blobs go by BatchReadBlobs/BatchUpdateBlobs, larger ones by ByteStream; the
///   batch limit is learnt from GetCapabilities, probed in the background: `connect`
///   never blocks on the upstream.
/// - Upload resource names carry a random version-4 UUID; an upload the server ends early
///   because it already has the blob counts as done.
/// Thread safety: fully concurrent.

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"

#include <gorego/concepts/remote_client.hpp>
#include <gorego/core/call_context.hpp>
#include <gorego/core/log.hpp>
#include <gorego/core/trace_context.hpp>
#include <gorego/reapi/convert.hpp>

namespace gorego::reapi {

class Reapi {
 public:
  static constexpr std::string_view kName = "reapi";

  struct Options {
    std::string target;                          ///< grpc://host:port or grpcs://host:port
    std::string instance_name;
    std::chrono::milliseconds timeout{60'000};   ///< per call (per attempt)
    int retries = 3;                             ///< extra attempts on transient codes
    std::chrono::milliseconds backoff{100};      ///< first retry delay, doubling, max 5 s
    std::string tls_ca_file, tls_cert_file, tls_key_file;
    std::string bearer_token;
    std::string header;                          ///< "name: value"
    std::vector<std::string> headers;            ///< more "name: value", after `header`
    std::size_t chunk_bytes = std::size_t{1} << 20;
  };

  /// Builds the channel (lazily connecting) and starts the capabilities probe.
  static Result<std::unique_ptr<Reapi>> connect(Options o) {
    std::string address;
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (o.target.starts_with("grpc://")) {
      address = o.target.substr(7);
      creds = grpc::InsecureChannelCredentials();
    } else if (o.target.starts_with("grpcs://")) {
      address = o.target.substr(8);
      grpc::SslCredentialsOptions ssl;
      for (auto [path, out] : {std::pair{&o.tls_ca_file, &ssl.pem_root_certs},
                               std::pair{&o.tls_cert_file, &ssl.pem_cert_chain},
                               std::pair{&o.tls_key_file, &ssl.pem_private_key}}) {
        if (path->empty()) continue;
        auto text = read_file(*path);
        if (!text) return text.error();
        *out = std::move(*text);
      }
      creds = grpc::SslCredentials(ssl);
    } else {
      return error(Code::kInvalidArgument, "remote.target \"{}\" must start with grpc:// or grpcs://", o.target);
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
    auto channel = grpc::CreateCustomChannel(address, creds, args);
    return std::unique_ptr<Reapi>(new Reapi(std::move(o), std::move(channel)));
  }

  Reapi(const Reapi&) = delete;
  Reapi& operator=(const Reapi&) = delete;
  ~Reapi() {
    {
      std::lock_guard lock(active_mu_);
      stop_ = true;  // no new calls, and the probe loop ends
    }
    cancel_in_flight();
    if (probe_.joinable()) probe_.join();
    // Every call's callback refers to this client: wait until the cancelled ones ended.
    std::unique_lock lock(active_mu_);
    idle_.wait(lock, [&] { return in_flight_.load(std::memory_order_acquire) == 0; });
  }

  /// Cancels the calls in flight now (CANCELLED is final, so they are not retried); later
  /// calls run normally. At the end of a shutdown's grace period this keeps a hung upstream
  /// from holding the server, while the write-back queue can still drain afterwards.
  void cancel_in_flight() {
    // A cancellation may run the call's reactions right here, and they may end the call:
    // each call (and retry) is held alive while it is cancelled, outside the lock.
    std::vector<std::pair<grpc::ClientContext*, std::shared_ptr<void>>> calls;
    std::vector<std::shared_ptr<Retry>> retries;
    {
      std::lock_guard lock(active_mu_);
      for (auto& [ctx, owner] : active_) {
        if (auto keep = owner.lock()) calls.emplace_back(ctx, std::move(keep));
      }
      for (auto& [r, keep] : waiting_) retries.push_back(keep);
    }
    for (auto& [ctx, keep] : calls) ctx->TryCancel();
    for (auto& r : retries) r->alarms.back()->Cancel();  // a retry not yet run ends CANCELLED
  }

  /// While on, calls not yet started fail at once (UNAVAILABLE, not retried): after a
  /// shutdown's deadline, work that goes on after a cancellation cannot start new waits.
  void refuse_new_calls(bool on) {
    std::lock_guard lock(active_mu_);
    refusing_ = on;
  }

  [[nodiscard]] std::string_view target() const { return opt_.target; }
  [[nodiscard]] std::uint64_t max_batch_bytes() const { return max_batch_.load(); }
  /// Whether GetCapabilities has answered (readiness of the upstream).
  [[nodiscard]] bool reachable() const { return probed_.load(); }
  /// Whether the upstream can hold `d` at all (its digest function is one it serves, or
  /// it has not been asked yet). For the others the local tier answers presence.
  [[nodiscard]] bool serves(const Digest& d) const { return d.function != DigestFunction::kBlake3 || blake3_.load(std::memory_order_relaxed); }

  /// One GetCapabilities call with its own deadline and no retries: is the upstream
  /// answering now? (health checks)
  Status ping(std::chrono::milliseconds timeout) { return capabilities(timeout).status(); }

  void find_missing(std::span<const Digest> ds, Callback<Result<std::vector<Digest>>> done) {
    if (std::any_of(ds.begin(), ds.end(), [this](const Digest& d) { return lacks(d); })) {
      // An upstream without BLAKE3 holds none of those blobs: ask it only about the rest.
      std::vector<Digest> asked;
      std::vector<Digest> absent;
      for (const Digest& d : ds) (lacks(d) ? absent : asked).push_back(d);
      return find_missing(asked, [absent = std::move(absent), done = std::move(done)](Result<std::vector<Digest>> r) mutable {
        if (!r) return done(std::move(r));
        for (const Digest& d : absent) {
          if (!d.empty_blob()) r->push_back(d);
        }
        done(std::move(r));
      });
    }
    // Large requests go in slices so no message nears the upstream's size limit, one
    // digest function per slice (a request names one); the slices run concurrently and
    // their answers are merged.
    std::vector<std::vector<Digest>> groups;
    for (const DigestFunction f : {DigestFunction::kSha256, DigestFunction::kBlake3}) {
      bool open = false;  // groups.back() takes more digests of `f`
      for (const Digest& d : ds) {
        if (d.function != f) continue;
        if (!open || groups.back().size() == kFindMissingSlice) groups.emplace_back();
        open = true;
        groups.back().push_back(d);
      }
    }
    if (groups.empty()) groups.emplace_back();
    const std::size_t slices = groups.size();
    struct Merge {
      std::mutex mu;
      std::vector<Digest> out;
      std::optional<Status> failed;
      std::size_t left;
      Callback<Result<std::vector<Digest>>> done;
    };
    auto merge = std::make_shared<Merge>();
    merge->left = slices;
    merge->done = std::move(done);
    for (std::size_t i = 0; i < slices; ++i) {
      auto req = std::make_shared<re::FindMissingBlobsRequest>();
      req->set_instance_name(opt_.instance_name);
      const DigestFunction fn = groups[i].empty() ? DigestFunction::kSha256 : groups[i].front().function;
      set_function(*req, fn);
      for (const Digest& d : groups[i]) *req->add_blob_digests() = to_proto(d);
      unary<re::FindMissingBlobsResponse>(
          "FindMissingBlobs",
          [this, req](grpc::ClientContext* ctx, re::FindMissingBlobsResponse* resp, std::function<void(grpc::Status)> cb) {
            cas_->async()->FindMissingBlobs(ctx, req.get(), resp, std::move(cb));
          },
          [merge, fn](Status s, re::FindMissingBlobsResponse& resp) {
            std::unique_lock lock(merge->mu);
            if (!s.ok()) merge->failed = std::move(s);
            for (const auto& m : resp.missing_blob_digests()) {
              if (merge->failed) break;
              auto d = from_proto(m, fn);
              if (!d) {
                merge->failed = error(Code::kInternal, "upstream answered a malformed digest: {}", d.error().message());
                break;
              }
              if (!d->empty_blob()) merge->out.push_back(*d);  // the empty blob is always available here
            }
            if (--merge->left > 0) return;
            lock.unlock();
            if (merge->failed) return merge->done(std::move(*merge->failed));
            merge->done(std::move(merge->out));
          });
    }
  }

  void get(const Digest& d, Callback<Result<std::string>> done) {
    if (lacks(d)) return done(not_served(d));
    if (static_cast<std::uint64_t>(d.size) > max_batch_bytes()) {
      auto out = std::make_shared<std::string>();
      out->reserve(static_cast<std::size_t>(d.size));
      read(
          d, 0,
          [out](std::string chunk, const Callback<Status>& next) {
            out->append(chunk);
            next(Status{});
          },
          [out, done = std::move(done)](Status s) {
            if (!s.ok()) return done(std::move(s));
            done(std::move(*out));
          });
      return;
    }
    auto req = std::make_shared<re::BatchReadBlobsRequest>();
    req->set_instance_name(opt_.instance_name);
    set_function(*req, d.function);
    *req->add_digests() = to_proto(d);
    unary<re::BatchReadBlobsResponse>(
        "BatchReadBlobs",
        [this, req](grpc::ClientContext* ctx, re::BatchReadBlobsResponse* resp, std::function<void(grpc::Status)> cb) {
          cas_->async()->BatchReadBlobs(ctx, req.get(), resp, std::move(cb));
        },
        [d, done = std::move(done)](Status s, re::BatchReadBlobsResponse& resp) {
          if (!s.ok()) return done(std::move(s));
          if (resp.responses_size() != 1) {
            return done(error(Code::kInternal, "upstream BatchReadBlobs answered {} blobs for 1", resp.responses_size()));
          }
          auto* r = resp.mutable_responses(0);
          if (r->status().code() != 0) return done(Status(static_cast<Code>(r->status().code()), r->status().message()));
          if (r->compressor() != re::Compressor::IDENTITY) {
            return done(error(Code::kInternal, "upstream sent blob {} compressed although not asked to", d));
          }
          done(std::move(*r->mutable_data()));
        });
  }

  void read(const Digest& d, std::uint64_t offset, AsyncSink sink, Callback<Status> done) {
    if (lacks(d)) return done(not_served(d));
    auto st = std::make_shared<ReadState>();
    st->digest = d;
    st->received = offset;
    st->sink = std::move(sink);
    start("ByteStream.Read", [this, st](const std::shared_ptr<Retry>& r) { ReadAttempt::go(this, r, st); },
          std::move(done));
  }

  void put(const Digest& d, std::string_view data, Callback<Status> done) {
    if (lacks(d)) return done(Status{});  // nowhere to put it upstream: it stays local
    if (data.size() > max_batch_bytes()) {
      auto copy = std::make_shared<const std::string>(data);
      write(
          d,
          [copy](std::uint64_t offset, std::size_t max, const Callback<Result<std::string>>& got) {
            if (offset >= copy->size()) return got(std::string());
            got(copy->substr(offset, max));
          },
          std::move(done));
      return;
    }
    auto req = std::make_shared<re::BatchUpdateBlobsRequest>();
    req->set_instance_name(opt_.instance_name);
    set_function(*req, d.function);
    auto* r = req->add_requests();
    *r->mutable_digest() = to_proto(d);
    r->set_data(std::string(data));
    unary<re::BatchUpdateBlobsResponse>(
        "BatchUpdateBlobs",
        [this, req](grpc::ClientContext* ctx, re::BatchUpdateBlobsResponse* resp, std::function<void(grpc::Status)> cb) {
          cas_->async()->BatchUpdateBlobs(ctx, req.get(), resp, std::move(cb));
        },
        [done = std::move(done)](Status s, re::BatchUpdateBlobsResponse& resp) {
          if (!s.ok()) return done(std::move(s));
          if (resp.responses_size() != 1) {
            return done(error(Code::kInternal, "upstream BatchUpdateBlobs answered {} blobs for 1", resp.responses_size()));
          }
          const auto& st = resp.responses(0).status();
          if (st.code() != 0) return done(Status(static_cast<Code>(st.code()), st.message()));
          done(Status{});
        });
  }

  void write(const Digest& d, AsyncSource source, Callback<Status> done) {
    if (lacks(d)) return done(Status{});
    auto st = std::make_shared<WriteState>();
    st->digest = d;
    st->source = std::move(source);
    start("ByteStream.Write", [this, st](const std::shared_ptr<Retry>& r) { WriteAttempt::go(this, r, st); },
          std::move(done));
  }

  void get_action(const Digest& d, Callback<Result<std::string>> done) {
    if (lacks(d)) return done(not_served(d));
    auto req = std::make_shared<re::GetActionResultRequest>();
    req->set_instance_name(opt_.instance_name);
    set_function(*req, d.function);
    *req->mutable_action_digest() = to_proto(d);
    unary<re::ActionResult>(
        "GetActionResult",
        [this, req](grpc::ClientContext* ctx, re::ActionResult* resp, std::function<void(grpc::Status)> cb) {
          ac_->async()->GetActionResult(ctx, req.get(), resp, std::move(cb));
        },
        [done = std::move(done)](Status s, re::ActionResult& resp) {
          if (!s.ok()) return done(std::move(s));
          done(resp.SerializeAsString());
        });
  }

  void put_action(const Digest& d, std::string_view bytes, Callback<Status> done) {
    if (lacks(d)) return done(Status{});
    auto req = std::make_shared<re::UpdateActionResultRequest>();
    req->set_instance_name(opt_.instance_name);
    set_function(*req, d.function);
    *req->mutable_action_digest() = to_proto(d);
    if (!req->mutable_action_result()->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return done(error(Code::kInvalidArgument, "action result for {} does not parse", d));
    }
    unary<re::ActionResult>(
        "UpdateActionResult",
        [this, req](grpc::ClientContext* ctx, re::ActionResult* resp, std::function<void(grpc::Status)> cb) {
          ac_->async()->UpdateActionResult(ctx, req.get(), resp, std::move(cb));
        },
        [done = std::move(done)](Status s, re::ActionResult&) { done(std::move(s)); });
  }

  /// Logical calls not yet ended (a gauge; each holds no thread while it waits).
  [[nodiscard]] std::size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

 private:
  Reapi(Options o, std::shared_ptr<grpc::Channel> channel)
      : opt_(std::move(o)),
        channel_(std::move(channel)),
        cas_(re::ContentAddressableStorage::NewStub(channel_)),
        ac_(re::ActionCache::NewStub(channel_)),
        caps_(re::Capabilities::NewStub(channel_)),
        bytestream_(google::bytestream::ByteStream::NewStub(channel_)) {
    std::vector<std::string> headers{opt_.header};
    headers.insert(headers.end(), opt_.headers.begin(), opt_.headers.end());
    for (const std::string& header : headers) {
      const auto colon = header.find(':');
      if (colon == std::string::npos) continue;
      auto& [name, value] =
          headers_.emplace_back(header.substr(0, colon), header.substr(colon + 1));
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      value.erase(0, value.find_first_not_of(" \t"));
    }
    probe_ = std::thread([this] { probe(); });
  }

  static Result<std::string> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return error(Code::kInvalidArgument, "cannot read TLS file \"{}\"", path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  /// Learns the upstream's batch limit; retries in the background until it answers.
  void probe() {
    auto delay = std::chrono::milliseconds(200);
    while (!stop_) {
      auto caps = capabilities(opt_.timeout);
      if (stop_) return;
      if (caps) {
        const auto limit = caps->cache_capabilities().max_batch_total_size_bytes();
        // Leave room for the request's own framing; 0 means "no limit" in REAPI.
        const std::uint64_t usable = limit <= 0 ? kDefaultBatch : static_cast<std::uint64_t>(limit) * 3 / 4;
        max_batch_ = std::min<std::uint64_t>(usable, kMaxBatch);
        const auto& fns = caps->cache_capabilities().digest_functions();
        blake3_ = std::find(fns.begin(), fns.end(), re::DigestFunction::BLAKE3) != fns.end();
        if (!blake3_) {
          log::info("upstream does not list BLAKE3: BLAKE3 blobs and results stay in the local tier",
                    {{"upstream", opt_.target}});
        }
        probed_ = true;
        log::info("upstream reachable", {{"upstream", opt_.target},
                                         {"max_batch_total_size_bytes", std::to_string(limit)}});
        return;
      }
      log::warn("upstream capabilities probe failed; will retry",
                {{"upstream", opt_.target}, {"error", caps.error().message()}});
      for (auto waited = std::chrono::milliseconds(0); waited < delay && !stop_; waited += std::chrono::milliseconds(50)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      delay = std::min(delay * 2, std::chrono::milliseconds(10'000));
    }
  }

  /// One GetCapabilities call, no retries, with `timeout` as its deadline.
  Result<re::ServerCapabilities> capabilities(std::chrono::milliseconds timeout) {
    grpc::ClientContext ctx;
    prepare(ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    if (!track(&ctx, {})) return error(Code::kUnavailable, "{}: shutting down", opt_.target);
    re::GetCapabilitiesRequest req;
    req.set_instance_name(opt_.instance_name);
    re::ServerCapabilities caps;
    const grpc::Status s = caps_->GetCapabilities(&ctx, req, &caps);
    untrack(&ctx);
    if (!s.ok()) {
      return error(static_cast<Code>(s.error_code()), "{} GetCapabilities: {}", opt_.target, s.error_message());
    }
    return caps;
  }

  void prepare(grpc::ClientContext& ctx) const { prepare(ctx, TraceContext::current()); }
  /// Sets an attempt's deadline (`remote.timeout`, or the caller's own when sooner) and its
  /// metadata (trace context, credentials, extra headers).
  void prepare(grpc::ClientContext& ctx, const TraceContext& tc,
               CallContext::Clock::time_point caller_deadline = CallContext::Clock::time_point::max()) const {
    ctx.set_deadline(std::min(std::chrono::system_clock::now() + opt_.timeout, caller_deadline));
    // W3C trace context: the upstream's spans join the trace of the call that caused this one.
    if (tc.valid()) {
      ctx.AddMetadata("traceparent", tc.traceparent());
      if (tc.tracestate) ctx.AddMetadata("tracestate", *tc.tracestate);
    }
    if (!opt_.bearer_token.empty()) ctx.AddMetadata("authorization", "Bearer " + opt_.bearer_token);
    for (const auto& [name, value] : headers_) ctx.AddMetadata(name, value);
  }

  /// Registers a call for cancel_in_flight(), with what keeps `ctx` alive; false once the
  /// client is being destroyed, or refuses new calls.
  bool track(grpc::ClientContext* ctx, std::weak_ptr<void> owner) {
    std::lock_guard lock(active_mu_);
    if (stop_ || refusing_) return false;
    active_.emplace(ctx, std::move(owner));
    return true;
  }
  void untrack(grpc::ClientContext* ctx) {
    std::lock_guard lock(active_mu_);
    active_.erase(ctx);
  }

  static bool transient(grpc::StatusCode c) {
    return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::RESOURCE_EXHAUSTED ||
           c == grpc::StatusCode::ABORTED;
  }

  /// One logical call: its attempts, the backoff between them and the caller's `done`.
  /// Shared by the attempt in flight and the alarm of a pending retry; nothing waits.
  struct Retry {
    std::string_view method;
    int attempt = 0;
    std::chrono::milliseconds delay{};
    TraceContext trace;  // the caller's, for every attempt's traceparent
    CallContext::Clock::time_point deadline;  // the caller's: no attempt waits beyond it
    std::function<void(const std::shared_ptr<Retry>&)> run;
    Callback<Status> done;
    std::vector<std::unique_ptr<grpc::Alarm>> alarms;  // one per retry, kept until the call ends
  };

  /// Starts a logical call whose attempts `run` starts; `done` gets its final status.
  void start(std::string_view method, std::function<void(const std::shared_ptr<Retry>&)> run, Callback<Status> done) {
    auto r = std::make_shared<Retry>();
    r->method = method;
    r->delay = opt_.backoff;
    r->trace = TraceContext::current();
    r->deadline = CallContext::current().deadline;
    r->run = std::move(run);
    r->done = std::move(done);
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    r->run(r);
  }

  /// An attempt ended with `s`: retried after a backoff when transient, else the end.
  void attempt_done(const std::shared_ptr<Retry>& r, const grpc::Status& s) {
    if (!s.ok() && transient(s.error_code()) && r->attempt < opt_.retries) {
      std::lock_guard lock(active_mu_);
      if (!stop_ && !refusing_) {
        ++r->attempt;
        waiting_.emplace(r.get(), r);
        r->alarms.push_back(std::make_unique<grpc::Alarm>());
        // Weak: the alarm lives in the Retry, and waiting_ keeps the Retry alive meanwhile.
        r->alarms.back()->Set(std::chrono::system_clock::now() + r->delay,
                              [this, weak = std::weak_ptr<Retry>(r)](bool fired) {
                                std::shared_ptr<Retry> self;
                                {
                                  std::lock_guard l(active_mu_);
                                  auto it = waiting_.find(weak.lock().get());
                                  if (it == waiting_.end()) return;
                                  self = std::move(it->second);
                                  waiting_.erase(it);
                                }
                                if (!fired) return end(self, grpc::Status(grpc::StatusCode::CANCELLED, "retry cancelled"));
                                self->run(self);
                              });
        r->delay = std::min(r->delay * 2, std::chrono::milliseconds(5000));
        return;
      }
    }
    end(r, s);
  }

  void end(const std::shared_ptr<Retry>& r, const grpc::Status& s) {
    finish(r, s.ok() ? Status{}
                     : error(static_cast<Code>(s.error_code()), "{} {}: {}", opt_.target, r->method, s.error_message()));
  }
  /// Ends the logical call with `s` as it is (a local failure: no retry, no prefix). What
  /// the call's closures hold (the caller's state) is released before the call stops
  /// counting, so a destructor waiting for in_flight_ returns only after all of it.
  void finish(const std::shared_ptr<Retry>& r, Status s) {
    auto done = std::move(r->done);
    r->done = nullptr;
    r->run = nullptr;
    done(std::move(s));
    done = nullptr;
    std::lock_guard lock(active_mu_);
    if (in_flight_.fetch_sub(1, std::memory_order_acq_rel) == 1) idle_.notify_all();
  }

  /// A unary call: `issue(ctx, resp, cb)` starts one attempt; `done(status, resp)` once.
  template <class Resp, class Issue>
  void unary(std::string_view method, Issue issue, std::function<void(Status, Resp&)> done) {
    auto resp = std::make_shared<Resp>();
    start(
        method,
        [this, resp, issue = std::move(issue)](const std::shared_ptr<Retry>& r) {
          auto ctx = std::make_shared<grpc::ClientContext>();
          prepare(*ctx, r->trace, r->deadline);
          if (!track(ctx.get(), ctx)) {
            return attempt_done(r, grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
          }
          resp->Clear();
          issue(ctx.get(), resp.get(), [this, r, ctx](grpc::Status s) {
            untrack(ctx.get());
            attempt_done(r, s);
          });
        },
        [resp, done = std::move(done)](Status s) { done(std::move(s), *resp); });
  }

  struct ReadState {
    Digest digest;
    std::uint64_t received = 0;  // resumes from here after a failure
    AsyncSink sink;
    std::optional<Status> local_error;  // the sink's, or too many bytes: final
  };

  /// One attempt of a ByteStream Read: one read in flight; the next is asked for only when
  /// the sink calls `next`, from whichever thread it does (a hold keeps the call open).
  /// Owned by itself (released in OnDone) and, while it is cancelled, by cancel_in_flight.
  class ReadAttempt final : public grpc::ClientReadReactor<google::bytestream::ReadResponse> {
   public:
    static void go(Reapi* self, std::shared_ptr<Retry> r, std::shared_ptr<ReadState> st) {
      auto a = std::make_shared<ReadAttempt>(self, std::move(r), std::move(st));
      if (!self->track(&a->ctx_, a)) {
        return self->attempt_done(a->r_, grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
      }
      a->keep_ = a;
      self->bytestream_->async()->Read(&a->ctx_, &a->req_, a.get());
      a->AddHold();
      a->StartRead(&a->resp_);
      a->StartCall();
    }
    ReadAttempt(Reapi* self, std::shared_ptr<Retry> r, std::shared_ptr<ReadState> st)
        : self_(self), r_(std::move(r)), st_(std::move(st)) {
      self_->prepare(ctx_, r_->trace, r_->deadline);
      req_.set_resource_name(self_->read_name(st_->digest));
      req_.set_read_offset(static_cast<std::int64_t>(st_->received));
    }
    void OnReadDone(bool ok) override {
      if (!ok) return release();
      const std::size_t n = resp_.data().size();
      if (st_->received + n > static_cast<std::uint64_t>(st_->digest.size)) {
        return fail(error(Code::kDataLoss, "upstream sent more than the {} bytes of blob {}", st_->digest.size,
                          st_->digest));
      }
      st_->sink(std::move(*resp_.mutable_data()), [this, n](Status s) {
        if (!s.ok()) return fail(std::move(s));
        st_->received += n;
        StartRead(&resp_);
      });
    }
    void OnDone(const grpc::Status& s) override {
      auto keep = std::move(keep_);  // this attempt lives until the end of this function
      self_->untrack(&ctx_);
      std::optional<Status> local = std::move(st_->local_error);
      const bool short_read = s.ok() && st_->received != static_cast<std::uint64_t>(st_->digest.size);
      const std::uint64_t received = st_->received;
      const Digest d = st_->digest;
      st_.reset();  // the sink's captures go before the call may end
      if (local) return self_->finish(r_, std::move(*local));
      if (short_read) {
        return self_->end(r_, grpc::Status(grpc::StatusCode::DATA_LOSS,
                                           fmt::format("upstream ended blob {} after {} bytes", d, received)));
      }
      self_->attempt_done(r_, s);
    }

   private:
    void fail(Status s) {
      st_->local_error = std::move(s);
      ctx_.TryCancel();
      release();
    }
    void release() {
      if (std::exchange(held_, false)) RemoveHold();
    }

    Reapi* self_;
    std::shared_ptr<Retry> r_;
    std::shared_ptr<ReadState> st_;
    std::shared_ptr<ReadAttempt> keep_;
    grpc::ClientContext ctx_;
    google::bytestream::ReadRequest req_;
    google::bytestream::ReadResponse resp_;
    bool held_ = true;
  };

  struct WriteState {
    Digest digest;
    AsyncSource source;
    std::optional<Status> local_error;  // the source's: final
  };

  /// One attempt of a ByteStream Write, from offset 0: one write in flight, each chunk
  /// asked of the source after the previous one went out. The hold is released once: when
  /// the last write completed, when a write failed (the server closed the stream, e.g. an
  /// early return), or when the source failed. Owned like ReadAttempt.
  class WriteAttempt final : public grpc::ClientWriteReactor<google::bytestream::WriteRequest> {
   public:
    static void go(Reapi* self, std::shared_ptr<Retry> r, std::shared_ptr<WriteState> st) {
      auto a = std::make_shared<WriteAttempt>(self, std::move(r), std::move(st));
      if (!self->track(&a->ctx_, a)) {
        return self->attempt_done(a->r_, grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
      }
      a->keep_ = a;
      self->bytestream_->async()->Write(&a->ctx_, &a->resp_, a.get());
      a->AddHold();
      a->StartCall();
      a->pull();
    }
    WriteAttempt(Reapi* self, std::shared_ptr<Retry> r, std::shared_ptr<WriteState> st)
        : self_(self), r_(std::move(r)), st_(std::move(st)), name_(self_->upload_name(st_->digest)) {
      self_->prepare(ctx_, r_->trace, r_->deadline);
    }
    void OnWriteDone(bool ok) override {
      if (!ok || last_) return release();
      pull();
    }
    void OnDone(const grpc::Status& s) override {
      auto keep = std::move(keep_);
      self_->untrack(&ctx_);
      std::optional<Status> local = std::move(st_->local_error);
      const std::int64_t size = st_->digest.size;
      st_.reset();  // the source's captures go before the call may end
      if (local) return self_->finish(r_, std::move(*local));
      if (s.ok() && resp_.committed_size() != size) {
        return self_->end(r_, grpc::Status(grpc::StatusCode::DATA_LOSS,
                                           fmt::format("upstream committed {} of {} bytes", resp_.committed_size(), size)));
      }
      self_->attempt_done(r_, s);
    }

   private:
    void pull() {
      const std::size_t max = std::min<std::uint64_t>(self_->opt_.chunk_bytes, std::max<std::int64_t>(st_->digest.size, 1));
      st_->source(sent_, max, [this](Result<std::string> got) {
        if (!got) {
          st_->local_error = error(got.error().code(), "reading the local copy: {}", got.error().message());
          ctx_.TryCancel();
          return release();
        }
        const std::size_t n = got->size();
        req_.Clear();
        if (sent_ == 0) req_.set_resource_name(name_);
        req_.set_write_offset(static_cast<std::int64_t>(sent_));
        *req_.mutable_data() = std::move(*got);
        sent_ += n;
        last_ = sent_ >= static_cast<std::uint64_t>(st_->digest.size) || n == 0;
        req_.set_finish_write(last_);
        if (last_) return StartWriteLast(&req_, grpc::WriteOptions());  // OnWriteDone releases
        StartWrite(&req_);
      });
    }
    void release() {
      if (std::exchange(held_, false)) RemoveHold();
    }

    Reapi* self_;
    std::shared_ptr<Retry> r_;
    std::shared_ptr<WriteState> st_;
    std::shared_ptr<WriteAttempt> keep_;
    std::string name_;
    grpc::ClientContext ctx_;
    google::bytestream::WriteRequest req_;
    google::bytestream::WriteResponse resp_;
    std::uint64_t sent_ = 0;
    bool last_ = false;
    bool held_ = true;
  };

  /// Whether `d` is of a digest function the (probed) upstream does not serve. Such blobs
  /// are never asked for upstream (a miss), and writes of them are done at once: the local
  /// tier keeps them.
  [[nodiscard]] bool lacks(const Digest& d) const { return !serves(d); }
  static Status not_served(const Digest& d) {
    return error(Code::kNotFound, "blob {} not found upstream (the upstream does not serve BLAKE3)", d);
  }

  /// A request's digest_function: left unset (the server's default) for SHA-256, so that
  /// upstreams older than REAPI v2.3 see the requests they always saw.
  template <class Request>
  static void set_function(Request& req, DigestFunction f) {
    if (f != DigestFunction::kSha256) req.set_digest_function(to_proto(f));
  }
  /// "blake3/" for a BLAKE3 blob's resource name; nothing for SHA-256.
  static std::string_view function_segment(const Digest& d) {
    return d.function == DigestFunction::kBlake3 ? "blake3/" : "";
  }

  [[nodiscard]] std::string read_name(const Digest& d) const {
    return fmt::format("{}{}blobs/{}{}/{}", opt_.instance_name, opt_.instance_name.empty() ? "" : "/",
                       function_segment(d), d.hex(), d.size);
  }

  [[nodiscard]] std::string upload_name(const Digest& d) const {
    return fmt::format("{}{}uploads/{}/blobs/{}{}/{}", opt_.instance_name,
                       opt_.instance_name.empty() ? "" : "/", uuid4(), function_segment(d), d.hex(), d.size);
  }

  static std::string uuid4() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::uint64_t hi = rng();
    std::uint64_t lo = rng();
    hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
    lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
    return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                       hi & 0xffff, lo >> 48, lo & 0xffffffffffffULL);
  }

  static constexpr std::size_t kFindMissingSlice = 10000;  // about 1 MB of request
  static constexpr std::uint64_t kDefaultBatch = std::uint64_t{1} << 20;
  static constexpr std::uint64_t kMaxBatch = std::uint64_t{4} << 20;

  Options opt_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<re::ContentAddressableStorage::Stub> cas_;
  std::unique_ptr<re::ActionCache::Stub> ac_;
  std::unique_ptr<re::Capabilities::Stub> caps_;
  std::unique_ptr<google::bytestream::ByteStream::Stub> bytestream_;
  std::vector<std::pair<std::string, std::string>> headers_;        ///< lower-case name, value
  std::atomic<std::uint64_t> max_batch_{std::uint64_t{512} << 10};  // until probed: safe for any server
  std::atomic<bool> probed_{false};
  std::atomic<bool> blake3_{true};  // the upstream lists BLAKE3 (assumed until probed)
  std::atomic<bool> stop_{false};
  std::recursive_mutex active_mu_;
  std::unordered_map<grpc::ClientContext*, std::weak_ptr<void>> active_;  // and what owns each
  bool refusing_ = false;
  std::unordered_map<Retry*, std::shared_ptr<Retry>> waiting_;  // retries waiting for their alarm
  std::atomic<std::size_t> in_flight_{0};
  std::condition_variable_any idle_;  // in_flight_ reached 0 (with active_mu_)
  std::thread probe_;
};
static_assert(RemoteClient<Reapi>);

}  // namespace gorego::reapi
