#pragma once
/// RemoteClient: the transport a `Remote<Client>` tier uses to reach a backing cache
/// (`Reapi` speaks REAPI v2 over gRPC; tests use an in-memory client).
///
/// Every member starts one logical call and returns at once; the call ends by invoking its
/// `done` callback exactly once, with the client's own deadlines and retries of transient
/// failures already applied. `done` may run before the member returns (an in-memory client)
/// or later on a thread of the client's (gRPC's callback threads): it must not block, so
/// disk work after an upstream answer is posted to an Executor. Arguments passed by view
/// are read only before the member returns.
///
/// `read` hands the blob's bytes from `offset` to `sink` one chunk at a time; the sink
/// calls its `next` with OK to ask for the next chunk or with an error to abort the call
/// (that error is then the call's result). `write` uploads a blob whose bytes come from
/// `source(offset, max, got)`, asked again from 0 to restart after a transient failure.
/// A client never verifies digests: the Remote tier writes through a verifying local
/// writer, so a wrong upstream byte is never stored or served. NOT_FOUND means the upstream
/// does not have the object; UNAVAILABLE and DEADLINE_EXCEEDED mean it could not be asked.
/// Thread safety: every member may be called concurrently.
///
///   client.find_missing(digests, [](Result<std::vector<Digest>> r) { ... });
///   client.read(d, 0, [&](std::string chunk, Callback<Status> next) { next(w.append(chunk)); },
///               [](Status s) { ... });

#include <concepts>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gorego/core/digest.hpp>

namespace gorego {

/// A completion callback.
template <class T>
using Callback = std::function<void(T)>;
/// Receives consecutive chunks of a blob; calls `next` once per chunk.
using AsyncSink = std::function<void(std::string chunk, Callback<Status> next)>;
/// Produces up to `max` bytes of a blob from `offset` (empty at the end) and passes them
/// to `got`.
using AsyncSource = std::function<void(std::uint64_t offset, std::size_t max, Callback<Result<std::string>> got)>;

template <class C>
concept RemoteClient = requires(C& c, const Digest& d, std::span<const Digest> ds, std::string_view bytes,
                                std::uint64_t offset, AsyncSink sink, AsyncSource source,
                                Callback<Result<std::vector<Digest>>> on_digests,
                                Callback<Result<std::string>> on_bytes, Callback<Status> on_status) {
  { C::kName } -> std::convertible_to<std::string_view>;
  { c.find_missing(ds, on_digests) } -> std::same_as<void>;
  { c.get(d, on_bytes) } -> std::same_as<void>;
  { c.read(d, offset, sink, on_status) } -> std::same_as<void>;
  { c.put(d, bytes, on_status) } -> std::same_as<void>;
  { c.write(d, source, on_status) } -> std::same_as<void>;
  { c.get_action(d, on_bytes) } -> std::same_as<void>;
  { c.put_action(d, bytes, on_status) } -> std::same_as<void>;
  { c.max_batch_bytes() } -> std::same_as<std::uint64_t>;
  { c.target() } -> std::convertible_to<std::string_view>;
};

}  // namespace gorego
