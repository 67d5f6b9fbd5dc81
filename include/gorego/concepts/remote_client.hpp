#pragma once
/// RemoteClient: the transport a `Remote<Client>` tier uses to reach a backing cache
/// (`Reapi` speaks REAPI v2 over gRPC; tests use an in-memory client).
///
/// Semantics: every member is one logical call, with the client's own deadlines and
/// retries of transient failures already applied. `read` streams the blob's bytes from
/// `offset` into `sink` (a sink error aborts the call and is returned); `write` uploads a
/// blob whose bytes come from `open_source(offset)`, called again to restart after a
/// transient failure. A client never verifies digests: the Remote tier writes through a
/// verifying local writer, so a wrong upstream byte is never stored or served.
/// NOT_FOUND means the upstream does not have the object; UNAVAILABLE and
/// DEADLINE_EXCEEDED mean it could not be asked.
/// Thread safety: every member may be called concurrently.
///
///   auto missing = client.find_missing(digests);
///   GOREGO_RETURN_IF_ERROR(client.read(d, 0, [&](std::string_view c) { return w.append(c); }));

#include <concepts>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gorego/core/digest.hpp>

namespace gorego {

/// Receives consecutive chunks of a blob.
using ChunkSink = std::function<Status(std::string_view)>;
/// Fills a buffer with the next bytes of a blob; 0 at the end.
using ChunkSource = std::function<Result<std::size_t>(std::span<char>)>;
/// Opens a fresh ChunkSource positioned at an offset.
using SourceFactory = std::function<Result<ChunkSource>(std::uint64_t offset)>;

template <class C>
concept RemoteClient = requires(C& c, const Digest& d, std::span<const Digest> ds,
                                std::string_view bytes, std::uint64_t offset, ChunkSink sink,
                                SourceFactory source) {
  { C::kName } -> std::convertible_to<std::string_view>;
  { c.find_missing(ds) } -> std::same_as<Result<std::vector<Digest>>>;
  { c.get(d) } -> std::same_as<Result<std::string>>;
  { c.read(d, offset, sink) } -> std::same_as<Status>;
  { c.put(d, bytes) } -> std::same_as<Status>;
  { c.write(d, source) } -> std::same_as<Status>;
  { c.get_action(d) } -> std::same_as<Result<std::string>>;
  { c.put_action(d, bytes) } -> std::same_as<Status>;
  { c.max_batch_bytes() } -> std::same_as<std::uint64_t>;
  { c.target() } -> std::convertible_to<std::string_view>;
};

}  // namespace gorego
