#pragma once
// gorego-load: the gRPC side. A Connection (channel and stubs), the per-call settings
// (instance, deadline) and the ByteStream transfers, each verifying what it reads.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "google/longrunning/operations.pb.h"

#include <gorego/core/digest.hpp>
#include <gorego/core/status.hpp>
#include <gorego/core/zstd.hpp>
#include <gorego/hash/content_hash.hpp>
#include <gorego/reapi/convert.hpp>

#include "blobs.hpp"

namespace gorego::load {

namespace re = gorego::reapi::re;
namespace bs = google::bytestream;

/// "grpc://host:port", "grpcs://host:port" or "host:port" -> "host:port".
inline std::string grpc_address(std::string_view target) {
  if (target.starts_with("grpc://")) target.remove_prefix(7);
  if (target.starts_with("grpcs://")) target.remove_prefix(8);
  return std::string(target);
}

/// A channel to `target`. With `own_connection` it gets its own TCP connection (a local
/// subchannel pool); otherwise gRPC shares one connection between channels with equal
/// arguments. No message size limits: the server's limits are the ones under test. A
/// grpcs:// target is reached over TLS, verified with `ca_pem` (empty: the system roots).
inline std::shared_ptr<grpc::Channel> make_channel(const std::string& target, bool own_connection,
                                                   const std::string& ca_pem = {}) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (target.starts_with("grpcs://")) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ca_pem;
    creds = grpc::SslCredentials(ssl);
  }
  return grpc::CreateCustomChannel(grpc_address(target), creds, args);
}

/// A channel and a stub of every service used. Stubs are thread-safe; each client thread
/// has its own Connection object, which may share the channel with others.
struct Connection {
  explicit Connection(std::shared_ptr<grpc::Channel> ch)
      : channel(std::move(ch)),
        cas(re::ContentAddressableStorage::NewStub(channel)),
        ac(re::ActionCache::NewStub(channel)),
        caps(re::Capabilities::NewStub(channel)),
        bytestream(bs::ByteStream::NewStub(channel)),
        exec(re::Execution::NewStub(channel)) {}

  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<re::ContentAddressableStorage::Stub> cas;
  std::unique_ptr<re::ActionCache::Stub> ac;
  std::unique_ptr<re::Capabilities::Stub> caps;
  std::unique_ptr<bs::ByteStream::Stub> bytestream;
  std::unique_ptr<re::Execution::Stub> exec;
};

/// "BatchReadBlobs: UNAVAILABLE: connection refused"
inline Status from_grpc(const grpc::Status& s, std::string_view rpc) {
  return Status(static_cast<Code>(s.error_code()), fmt::format("{}: {}", rpc, s.error_message()));
}

/// Settings shared by every call.
struct Rpc {
  std::string instance;
  std::chrono::milliseconds timeout{60000};
  bool zstd = false;  ///< ByteStream through compressed-blobs/zstd/ names
  std::string authorization;  ///< sent as the authorization header when not empty

  [[nodiscard]] std::string blobs() const { return zstd ? "compressed-blobs/zstd" : "blobs"; }

  void prepare(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  }
  [[nodiscard]] std::string prefix() const { return instance.empty() ? "" : instance + "/"; }
  [[nodiscard]] std::string read_name(const Digest& d) const {
    return fmt::format("{}{}/{}/{}", prefix(), blobs(), d.hex(), d.size);
  }
  [[nodiscard]] std::string write_name(const Digest& d, Rng& rng) const {
    const std::uint64_t a = rng.next();
    const std::uint64_t b = rng.next();
    // A version 4 UUID.
    return fmt::format("{}uploads/{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}/{}/{}/{}", prefix(),
                       a >> 32, (a >> 16) & 0xffff, a & 0xfff, 0x8000 | (b >> 48 & 0x3fff),
                       b & 0xffffffffffffULL, blobs(), d.hex(), d.size);
  }
};

/// Fills `out` with bytes [offset, offset + n) of the blob being uploaded.
using ChunkSource = std::function<void(std::uint64_t offset, std::uint64_t n, std::string& out)>;

/// A ByteStream Write of blob `d` in pieces of `chunk` bytes. OK when the server answers OK
/// with committed_size equal to the size (it may end the stream early if it has the blob).
/// With `rpc.zstd` each piece is its own zstd frame, as Bazel sends them; offsets then count
/// compressed bytes, and an early return answers -1.
inline Status write_blob(Connection& c, const Rpc& rpc, Rng& rng, const Digest& d,
                         std::uint64_t chunk, const ChunkSource& source) {
  grpc::ClientContext ctx;
  rpc.prepare(ctx);
  bs::WriteResponse resp;
  auto stream = c.bytestream->Write(&ctx, &resp);
  const auto size = static_cast<std::uint64_t>(d.size);
  bs::WriteRequest req;
  std::uint64_t offset = 0;
  std::uint64_t sent = 0;  // compressed bytes, with rpc.zstd
  std::string plain;
  do {
    const std::uint64_t n = std::min(chunk, size - offset);
    if (offset == 0)
      req.set_resource_name(rpc.write_name(d, rng));
    else
      req.clear_resource_name();
    req.set_write_offset(static_cast<std::int64_t>(rpc.zstd ? sent : offset));
    if (rpc.zstd) {
      source(offset, n, plain);
      auto z = zstd::compress(plain);
      if (!z) return z.error();
      sent += z->size();
      *req.mutable_data() = std::move(*z);
    } else {
      source(offset, n, *req.mutable_data());
    }
    offset += n;
    req.set_finish_write(offset == size);
    if (!stream->Write(req)) break;  // the server finished early; Finish tells how
  } while (offset < size);
  stream->WritesDone();
  const grpc::Status s = stream->Finish();
  if (!s.ok()) return from_grpc(s, "ByteStream.Write");
  if (rpc.zstd && (resp.committed_size() == -1 || resp.committed_size() == static_cast<std::int64_t>(sent))) {
    return {};
  }
  if (!rpc.zstd && resp.committed_size() != d.size) {
    return error(Code::kDataLoss,
                 "ByteStream.Write of {}: committed_size {} is not the blob's size", d,
                 resp.committed_size());
  }
  return {};
}

/// A ByteStream Read of the whole blob `d`, hashing it on the way: OK only when exactly
/// d.size bytes arrived and they hash to d. `bytes` gets the count received.
inline Status read_blob(Connection& c, const Rpc& rpc, const Digest& d, std::uint64_t& bytes) {
  grpc::ClientContext ctx;
  rpc.prepare(ctx);
  bs::ReadRequest req;
  req.set_resource_name(rpc.read_name(d));
  auto stream = c.bytestream->Read(&ctx, req);
  bs::ReadResponse resp;
  Sha256 h;
  bytes = 0;
  std::optional<zstd::Decoder> z;
  if (rpc.zstd) z.emplace(static_cast<std::uint64_t>(d.size));
  Status bad;
  while (stream->Read(&resp)) {
    if (z) {
      if (!bad.ok()) continue;
      bad = z->add(resp.data(), [&](std::string_view part) {
        h.update(part);
        bytes += part.size();
        return Status{};
      });
      continue;
    }
    h.update(resp.data());
    bytes += resp.data().size();
  }
  const grpc::Status s = stream->Finish();
  if (!s.ok()) return from_grpc(s, fmt::format("ByteStream.Read of {}", d));
  if (!bad.ok()) return error(Code::kDataLoss, "ByteStream.Read of {}: {}", d, bad.message());
  if (z) {
    if (Status f = z->finish(); !f.ok()) return error(Code::kDataLoss, "ByteStream.Read of {}: {}", d, f.message());
  }
  if (bytes != static_cast<std::uint64_t>(d.size)) {
    return error(Code::kDataLoss, "ByteStream.Read of {} returned {} bytes", d, bytes);
  }
  if (const Hash256 got = h.finish(); got != d.hash) {
    return error(Code::kDataLoss, "ByteStream.Read of {} returned data hashing to {}", d,
                 to_hex(got));
  }
  return {};
}

/// GetCapabilities' max_batch_total_size_bytes; 0 means the server sets no limit.
inline Result<std::uint64_t> max_batch_bytes(Connection& c, const Rpc& rpc) {
  grpc::ClientContext ctx;
  rpc.prepare(ctx);
  re::GetCapabilitiesRequest req;
  req.set_instance_name(rpc.instance);
  re::ServerCapabilities caps;
  const grpc::Status s = c.caps->GetCapabilities(&ctx, req, &caps);
  if (!s.ok()) return from_grpc(s, "GetCapabilities");
  return static_cast<std::uint64_t>(caps.cache_capabilities().max_batch_total_size_bytes());
}

}  // namespace gorego::load
