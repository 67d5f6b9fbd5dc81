#pragma once
/// Instrumentation: a policy that observes each store operation of a ProxyStore
/// (`Counted` for metrics, `Traced` for spans, `testing::OpCounter` for tests).
///
/// Semantics: `begin(info)` is called before an operation and returns a token;
/// `end(token, outcome)` after it, with its status, the tier that served it and the bytes
/// it moved. Top-level operations (what the services call) may contain nested steps
/// (`kRemoteFetch`, `kLocalRead`, `kLocalWrite`), reported the same way between the
/// begin and end of their operation, on the same thread. Optional hooks, used when a
/// policy has them: `on_eviction(run)` after each eviction pass of the local tier, and
/// `attach(store)` once at start, to read gauges (disk use, index size) from the store.
/// Instrumentation never changes results. Thread safety: begin/end may be called
/// concurrently.
///
///   auto t = counted.begin({.op = StoreOp::kGet, .digest = &d});
///   auto r = local.get(d);
///   counted.end(t, {.status = r.status(), .tier = Tier::kLocal, .bytes = r ? r->size() : 0});

#include <chrono>
#include <concepts>
#include <cstdint>
#include <string_view>

#include <gorego/core/digest.hpp>
#include <gorego/core/status.hpp>

namespace gorego {

/// The operations a ProxyStore reports to its instrumentation.
enum class StoreOp : std::uint8_t {
  kContains, kFindMissing, kGet, kPut, kOpenRead, kOpenWrite, kCommit, kGetAction, kPutAction,
  kPutBatch,  // several puts with one durability barrier; `digests` says how many
  // nested steps of the operations above
  kRemoteFetch, kLocalRead, kLocalWrite,
};
inline constexpr std::size_t kStoreOps = 13;
inline constexpr std::size_t kTopLevelOps = 10;

constexpr bool nested(StoreOp op) { return static_cast<std::size_t>(op) >= kTopLevelOps; }

constexpr std::string_view op_name(StoreOp op) {
  switch (op) {
    case StoreOp::kContains: return "contains";
    case StoreOp::kFindMissing: return "find_missing";
    case StoreOp::kGet: return "get";
    case StoreOp::kPut: return "put";
    case StoreOp::kOpenRead: return "open_read";
    case StoreOp::kOpenWrite: return "open_write";
    case StoreOp::kCommit: return "commit";
    case StoreOp::kGetAction: return "get_action";
    case StoreOp::kPutAction: return "put_action";
    case StoreOp::kPutBatch: return "put_batch";
    case StoreOp::kRemoteFetch: return "remote_fetch";
    case StoreOp::kLocalRead: return "local_read";
    case StoreOp::kLocalWrite: return "local_write";
  }
  return "unknown";
}

/// Span names: what a trace viewer shows.
constexpr std::string_view span_name(StoreOp op) {
  switch (op) {
    case StoreOp::kContains: return "proxy.Contains";
    case StoreOp::kFindMissing: return "proxy.FindMissing";
    case StoreOp::kGet: return "proxy.Get";
    case StoreOp::kPut: return "proxy.Put";
    case StoreOp::kOpenRead: return "proxy.OpenRead";
    case StoreOp::kOpenWrite: return "proxy.OpenWrite";
    case StoreOp::kCommit: return "proxy.Commit";
    case StoreOp::kGetAction: return "proxy.GetAction";
    case StoreOp::kPutAction: return "proxy.PutAction";
    case StoreOp::kPutBatch: return "proxy.PutBatch";
    case StoreOp::kRemoteFetch: return "proxy.Get.RemoteFetch";
    case StoreOp::kLocalRead: return "local.Read";
    case StoreOp::kLocalWrite: return "local.Write";
  }
  return "unknown";
}

/// Which tier answered: the local disk, the upstream, or neither (a miss or an error).
enum class Tier : std::uint8_t { kNone, kLocal, kRemote };

constexpr std::string_view tier_name(Tier t) {
  switch (t) {
    case Tier::kNone: return "none";
    case Tier::kLocal: return "local";
    case Tier::kRemote: return "remote";
  }
  return "none";
}

/// What an operation is about.
struct OpInfo {
  StoreOp op = StoreOp::kGet;
  const Digest* digest = nullptr;  ///< for single-object operations
  std::size_t digests = 0;         ///< for FindMissing: how many were asked about
};

/// How it went.
struct Outcome {
  Status status;
  Tier tier = Tier::kNone;
  std::uint64_t bytes = 0;    ///< payload moved (read or written)
  std::size_t missing = 0;    ///< for FindMissing: how many were missing
};

/// One eviction pass of the local tier.
struct EvictionRun {
  enum class Trigger : std::uint8_t { kJanitor, kLimit, kDiskFull };  ///< kDiskFull: the filesystem said ENOSPC
  Trigger trigger = Trigger::kLimit;
  std::uint64_t objects = 0;
  std::uint64_t bytes = 0;
  std::chrono::system_clock::time_point started;
  std::chrono::system_clock::time_point finished;
};

template <class I>
concept Instrumentation = requires(I& i, const OpInfo& info, const Outcome& o) {
  { I::kName } -> std::convertible_to<std::string_view>;
  typename I::Token;
  { i.begin(info) } -> std::same_as<typename I::Token>;
  { i.end(std::declval<typename I::Token&>(), o) } -> std::same_as<void>;
};

}  // namespace gorego
