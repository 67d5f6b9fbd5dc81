#pragma once
/// Reapi: a RemoteClient for any REAPI v2 server (bazel-remote, Buildbarn, BuildBuddy,
/// BuildStream's CAS server, another gorego).
///
/// - `grpc://host:port` or `grpcs://host:port` (TLS with an optional CA bundle and client
///   certificate); an optional bearer token and one extra header on every call.
/// - Every call has a deadline (`timeout`) and is retried with exponential backoff on
///   transient codes only (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED). A call that ran
///   out of time is not repeated: a hung upstream costs one timeout, not several.
///   Streamed reads resume from the last byte received.
/// - Small blobs go by BatchReadBlobs/BatchUpdateBlobs, larger ones by ByteStream; the
///   batch limit is learnt from GetCapabilities, probed in the background: `connect`
///   never blocks on the upstream.
/// - Upload resource names carry a random version-4 UUID; an upload the server ends early
///   because it already has the blob counts as done.
/// Thread safety: fully concurrent.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"

#include <gorego/concepts/remote_client.hpp>
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
  }

  /// Cancels the calls in flight now (CANCELLED is final, so they are not retried); later
  /// calls run normally. At the end of a shutdown's grace period this keeps a hung upstream
  /// from holding the server, while the write-back queue can still drain afterwards.
  void cancel_in_flight() {
    std::lock_guard lock(active_mu_);
    for (grpc::ClientContext* ctx : active_) ctx->TryCancel();
  }

  [[nodiscard]] std::string_view target() const { return opt_.target; }
  [[nodiscard]] std::uint64_t max_batch_bytes() const { return max_batch_.load(); }
  /// Whether GetCapabilities has answered (readiness of the upstream).
  [[nodiscard]] bool reachable() const { return probed_.load(); }

  /// One GetCapabilities call with its own deadline and no retries: is the upstream
  /// answering now? (health checks)
  Status ping(std::chrono::milliseconds timeout) { return capabilities(timeout).status(); }

  Result<std::vector<Digest>> find_missing(std::span<const Digest> ds) {
    // Large requests go in slices so no message nears the upstream's size limit.
    if (ds.size() > kFindMissingSlice) {
      std::vector<Digest> out;
      for (std::size_t i = 0; i < ds.size(); i += kFindMissingSlice) {
        auto part = find_missing(ds.subspan(i, std::min(kFindMissingSlice, ds.size() - i)));
        if (!part) return part.error();
        out.insert(out.end(), part->begin(), part->end());
      }
      return out;
    }
    re::FindMissingBlobsRequest req;
    req.set_instance_name(opt_.instance_name);
    for (const Digest& d : ds) *req.add_blob_digests() = to_proto(d);
    re::FindMissingBlobsResponse resp;
    GOREGO_RETURN_IF_ERROR(call("FindMissingBlobs", [&](grpc::ClientContext& ctx) {
      resp.Clear();
      return cas_->FindMissingBlobs(&ctx, req, &resp);
    }));
    std::vector<Digest> out;
    out.reserve(static_cast<std::size_t>(resp.missing_blob_digests_size()));
    for (const auto& m : resp.missing_blob_digests()) {
      auto d = from_proto(m);
      if (!d) return error(Code::kInternal, "upstream answered a malformed digest: {}", d.error().message());
      if (!d->empty_blob()) out.push_back(*d);  // the empty blob is always available here
    }
    return out;
  }

  Result<std::string> get(const Digest& d) {
    if (static_cast<std::uint64_t>(d.size) > max_batch_bytes()) {
      std::string out;
      out.reserve(static_cast<std::size_t>(d.size));
      GOREGO_RETURN_IF_ERROR(read(d, 0, [&](std::string_view c) {
        out.append(c);
        return Status{};
      }));
      return out;
    }
    re::BatchReadBlobsRequest req;
    req.set_instance_name(opt_.instance_name);
    *req.add_digests() = to_proto(d);
    re::BatchReadBlobsResponse resp;
    GOREGO_RETURN_IF_ERROR(call("BatchReadBlobs", [&](grpc::ClientContext& ctx) {
      resp.Clear();
      return cas_->BatchReadBlobs(&ctx, req, &resp);
    }));
    if (resp.responses_size() != 1) {
      return error(Code::kInternal, "upstream BatchReadBlobs answered {} blobs for 1", resp.responses_size());
    }
    auto* r = resp.mutable_responses(0);
    if (r->status().code() != 0) return Status(static_cast<Code>(r->status().code()), r->status().message());
    if (r->compressor() != re::Compressor::IDENTITY) {
      return error(Code::kInternal, "upstream sent blob {} compressed although not asked to", d);
    }
    return std::move(*r->mutable_data());
  }

  Status read(const Digest& d, std::uint64_t offset, const ChunkSink& sink) {
    std::uint64_t received = offset;
    bool sink_failed = false;
    Status sink_status;
    const Status s = call("ByteStream.Read", [&](grpc::ClientContext& ctx) {
      google::bytestream::ReadRequest req;
      req.set_resource_name(read_name(d));
      req.set_read_offset(static_cast<std::int64_t>(received));  // resumes after a failure
      auto stream = bytestream_->Read(&ctx, req);
      google::bytestream::ReadResponse resp;
      while (stream->Read(&resp)) {
        if (received + resp.data().size() > static_cast<std::uint64_t>(d.size)) {
          ctx.TryCancel();
          sink_failed = true;
          sink_status = error(Code::kDataLoss, "upstream sent more than the {} bytes of blob {}", d.size, d);
          break;
        }
        if (Status st = sink(resp.data()); !st.ok()) {
          ctx.TryCancel();
          sink_failed = true;
          sink_status = st;
          break;
        }
        received += resp.data().size();
      }
      grpc::Status fin = stream->Finish();
      if (sink_failed) return grpc::Status(grpc::StatusCode::CANCELLED, "local write failed");
      if (fin.ok() && received != static_cast<std::uint64_t>(d.size)) {
        return grpc::Status(grpc::StatusCode::DATA_LOSS,
                            fmt::format("upstream ended blob {} after {} bytes", fmt::format("{}", d), received));
      }
      return fin;
    });
    if (sink_failed) return sink_status;
    return s;
  }

  Status put(const Digest& d, std::string_view data) {
    if (data.size() > max_batch_bytes()) {
      return write(d, [data](std::uint64_t offset) -> Result<ChunkSource> {
        auto pos = std::make_shared<std::uint64_t>(offset);
        return ChunkSource([data, pos](std::span<char> buf) -> Result<std::size_t> {
          const std::size_t n = std::min<std::uint64_t>(buf.size(), data.size() - *pos);
          std::memcpy(buf.data(), data.data() + *pos, n);
          *pos += n;
          return n;
        });
      });
    }
    re::BatchUpdateBlobsRequest req;
    req.set_instance_name(opt_.instance_name);
    auto* r = req.add_requests();
    *r->mutable_digest() = to_proto(d);
    r->set_data(std::string(data));
    re::BatchUpdateBlobsResponse resp;
    GOREGO_RETURN_IF_ERROR(call("BatchUpdateBlobs", [&](grpc::ClientContext& ctx) {
      resp.Clear();
      return cas_->BatchUpdateBlobs(&ctx, req, &resp);
    }));
    if (resp.responses_size() != 1) {
      return error(Code::kInternal, "upstream BatchUpdateBlobs answered {} blobs for 1", resp.responses_size());
    }
    const auto& st = resp.responses(0).status();
    if (st.code() != 0) return Status(static_cast<Code>(st.code()), st.message());
    return {};
  }

  Status write(const Digest& d, const SourceFactory& open_source) {
    return call("ByteStream.Write", [&](grpc::ClientContext& ctx) {
      auto source = open_source(0);
      if (!source) return grpc::Status(grpc::StatusCode::INTERNAL, source.error().message());
      google::bytestream::WriteResponse resp;
      auto stream = bytestream_->Write(&ctx, &resp);
      const std::string name = upload_name(d);
      std::string buf(std::min<std::uint64_t>(opt_.chunk_bytes, std::max<std::int64_t>(d.size, 1)), '\0');
      std::uint64_t sent = 0;
      bool server_closed = false;
      do {
        auto n = (*source)({buf.data(), buf.size()});
        if (!n) {
          ctx.TryCancel();
          stream->Finish();
          return grpc::Status(grpc::StatusCode::INTERNAL, "reading the local copy: " + n.error().message());
        }
        google::bytestream::WriteRequest req;
        if (sent == 0) req.set_resource_name(name);
        req.set_write_offset(static_cast<std::int64_t>(sent));
        req.set_data(buf.data(), *n);
        sent += *n;
        req.set_finish_write(sent == static_cast<std::uint64_t>(d.size) || *n == 0);
        if (!stream->Write(req)) {
          server_closed = true;  // e.g. an early return: the server already has the blob
          break;
        }
        if (req.finish_write()) break;
      } while (true);
      if (!server_closed) stream->WritesDone();
      grpc::Status fin = stream->Finish();
      if (fin.ok() && resp.committed_size() != d.size) {
        return grpc::Status(grpc::StatusCode::DATA_LOSS,
                            fmt::format("upstream committed {} of {} bytes", resp.committed_size(), d.size));
      }
      return fin;
    });
  }

  Result<std::string> get_action(const Digest& d) {
    re::GetActionResultRequest req;
    req.set_instance_name(opt_.instance_name);
    *req.mutable_action_digest() = to_proto(d);
    re::ActionResult resp;
    GOREGO_RETURN_IF_ERROR(call("GetActionResult", [&](grpc::ClientContext& ctx) {
      resp.Clear();
      return ac_->GetActionResult(&ctx, req, &resp);
    }));
    return resp.SerializeAsString();
  }

  Status put_action(const Digest& d, std::string_view bytes) {
    re::UpdateActionResultRequest req;
    req.set_instance_name(opt_.instance_name);
    *req.mutable_action_digest() = to_proto(d);
    if (!req.mutable_action_result()->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return error(Code::kInvalidArgument, "action result for {} does not parse", d);
    }
    re::ActionResult resp;
    return call("UpdateActionResult", [&](grpc::ClientContext& ctx) {
      return ac_->UpdateActionResult(&ctx, req, &resp);
    });
  }

 private:
  Reapi(Options o, std::shared_ptr<grpc::Channel> channel)
      : opt_(std::move(o)),
        channel_(std::move(channel)),
        cas_(re::ContentAddressableStorage::NewStub(channel_)),
        ac_(re::ActionCache::NewStub(channel_)),
        caps_(re::Capabilities::NewStub(channel_)),
        bytestream_(google::bytestream::ByteStream::NewStub(channel_)) {
    if (auto colon = opt_.header.find(':'); colon != std::string::npos) {
      header_name_ = opt_.header.substr(0, colon);
      for (char& c : header_name_) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      header_value_ = opt_.header.substr(colon + 1);
      header_value_.erase(0, header_value_.find_first_not_of(" \t"));
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
    if (!track(&ctx)) return error(Code::kUnavailable, "{}: shutting down", opt_.target);
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

  void prepare(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() + opt_.timeout);
    // W3C trace context: the upstream's spans join the trace of the call that caused this one.
    if (const TraceContext& tc = TraceContext::current(); tc.valid()) {
      ctx.AddMetadata("traceparent", tc.traceparent());
      if (tc.tracestate) ctx.AddMetadata("tracestate", *tc.tracestate);
    }
    if (!opt_.bearer_token.empty()) ctx.AddMetadata("authorization", "Bearer " + opt_.bearer_token);
    if (!header_name_.empty()) ctx.AddMetadata(header_name_, header_value_);
  }

  /// Registers a call for cancel_in_flight(); false once the client is being destroyed.
  bool track(grpc::ClientContext* ctx) {
    std::lock_guard lock(active_mu_);
    if (stop_) return false;
    active_.insert(ctx);
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

  /// Runs `fn` with a fresh context per attempt, retrying transient failures.
  template <class F>
  Status call(std::string_view method, F&& fn) {
    auto delay = opt_.backoff;
    grpc::Status s;
    for (int attempt = 0; attempt <= opt_.retries; ++attempt) {
      if (attempt > 0) {
        std::this_thread::sleep_for(delay);
        delay = std::min(delay * 2, std::chrono::milliseconds(5000));
      }
      grpc::ClientContext ctx;
      prepare(ctx);
      if (!track(&ctx)) return error(Code::kUnavailable, "{} {}: shutting down", opt_.target, method);
      s = fn(ctx);
      untrack(&ctx);
      if (s.ok() || !transient(s.error_code())) break;
    }
    if (s.ok()) return {};
    return error(static_cast<Code>(s.error_code()), "{} {}: {}", opt_.target, method, s.error_message());
  }

  [[nodiscard]] std::string read_name(const Digest& d) const {
    return fmt::format("{}{}blobs/{}/{}", opt_.instance_name, opt_.instance_name.empty() ? "" : "/",
                       d.hex(), d.size);
  }

  [[nodiscard]] std::string upload_name(const Digest& d) const {
    return fmt::format("{}{}uploads/{}/blobs/{}/{}", opt_.instance_name,
                       opt_.instance_name.empty() ? "" : "/", uuid4(), d.hex(), d.size);
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
  std::string header_name_;
  std::string header_value_;
  std::atomic<std::uint64_t> max_batch_{std::uint64_t{512} << 10};  // until probed: safe for any server
  std::atomic<bool> probed_{false};
  std::atomic<bool> stop_{false};
  std::mutex active_mu_;
  std::unordered_set<grpc::ClientContext*> active_;
  std::thread probe_;
};
static_assert(RemoteClient<Reapi>);

}  // namespace gorego::reapi
