#pragma once
/// RemoteTier: a tier behind a ProxyStore's local one (`NoRemote`, `Remote<Client>`, or a
/// chain of them, `Tiers<...>`).
///
/// Semantics. `kEnabled` says whether the tier exists; a ProxyStore never calls a disabled
/// tier, so `NoRemote` costs nothing. An enabled tier (`EnabledTier`) offers:
/// - `active()`: connected now; an inactive tier is skipped.
/// - `client()`: its RemoteClient, through which the ProxyStore reads (fetch on a local
///   miss, in chain order), writes (store) and asks presence.
/// - `authority()`: whether its FindMissingBlobs answer is the truth for the whole store
///   (an upstream cache is; a peer that caches part of the keyspace is not). The first
///   active authority in the chain answers FindMissingBlobs; with none, the local tier does.
/// - `mode()`: when a write through it is acknowledged (`kThrough`: once it accepted;
///   `kBack`: once the local tier stored it, the upload of its key queued with `enqueue`,
///   which a tier may make durable before it returns; such a tier offers `replay(make)`,
///   which queues again what an earlier run left, building each job with `make(key)`).
/// - `stats()`: its counters (errors by code, write-back queue), for logs and metrics;
///   `should_warn()` rate-limits warnings repeated per request during an outage.
/// Complexity: every member is O(1) and never blocks, except `enqueue` on a full queue,
/// which drops (counted). Thread safety: every member may be called concurrently.
///
///   static_assert(RemoteTier<NoRemote> && RemoteTier<Remote<Reapi>>);
///   using Chain = Tiers<Remote<Reapi>, Remote<Reapi>>;  // a peer, then the upstream
///   if constexpr (R::kEnabled) if (tier.active() && tier.authority()) tier.client().find_missing(ds, done);

#include <array>
#include <atomic>
#include <concepts>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <gorego/concepts/remote_client.hpp>
#include <gorego/core/digest.hpp>
#include <gorego/core/status.hpp>

namespace gorego {

/// When an upload is acknowledged: after the tier accepted it (`kThrough`), or after the
/// local tier stored it, with the tier's upload queued (`kBack`).
enum class WriteMode { kThrough, kBack };

/// A tier's counters for logs, metrics and tests.
struct TierStats {
  std::atomic<std::uint64_t> queued{0};
  std::atomic<std::uint64_t> uploaded{0};
  std::atomic<std::uint64_t> dropped{0};  ///< queue full, retries exhausted, or stop
  std::atomic<std::uint64_t> upstream_errors{0};
  std::atomic<std::uint64_t> journal_errors{0};  ///< write-back journal writes that failed
  /// upstream_errors by gRPC status code (index = code, 0..16).
  std::array<std::atomic<std::uint64_t>, 17> errors_by_code{};

  void count_error(Code c) {
    upstream_errors.fetch_add(1, std::memory_order_relaxed);
    const auto i = static_cast<std::size_t>(c);
    errors_by_code[i < errors_by_code.size() ? i : 2].fetch_add(1, std::memory_order_relaxed);  // 2: UNKNOWN
  }
};

template <class T>
concept EnabledTier = requires(T& t, const ObjectKey& key, std::function<Status()> job) {
  { t.active() } -> std::same_as<bool>;
  requires RemoteClient<std::remove_cvref_t<decltype(t.client())>>;
  { t.authority() } -> std::same_as<bool>;
  { t.mode() } -> std::same_as<WriteMode>;
  { t.stats() } -> std::same_as<TierStats&>;
  { t.should_warn() } -> std::same_as<bool>;
  { t.enqueue(key, job) } -> std::same_as<void>;
};

/// A chain of tiers (`Tiers<...>`): `tiers()` is a tuple of references to its tiers, in read
/// order; each is an EnabledTier or a disabled one.
template <class R>
concept TierChain = requires(R& r) {
  typename R::IsChain;
  r.tiers();
};

template <class R>
concept RemoteTier = requires {
  { R::kName } -> std::convertible_to<std::string_view>;
  { R::kEnabled } -> std::convertible_to<bool>;
} && (!R::kEnabled || EnabledTier<R> || TierChain<R>);

}  // namespace gorego
