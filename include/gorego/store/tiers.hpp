#pragma once
/// Tiers<T...>: a chain of tiers behind a ProxyStore's local tier, in read order.
///
/// A local miss is read from the first active tier that has the blob (each answer verified
/// before it is kept or served); a write goes to every active tier, acknowledged per each
/// one's mode; FindMissingBlobs is answered by the first active tier that is an authority.
/// So the mesh's peer tier is one more element, not an edit of the store:
///
///   using Store = ProxyStore<Local<ShardedDisk>, Tiers<Remote<Reapi>, Remote<Reapi>>>;
///   store.remote().get<0>().connect(peer, {.authority = false});  // a cache of part of it
///   store.remote().get<1>().connect(upstream, {});                // the backing cache
///
/// Thread safety: as its tiers.

#include <cstddef>
#include <string_view>
#include <tuple>

#include <gorego/concepts/remote_tier.hpp>
#include <gorego/core/name.hpp>

namespace gorego {

namespace detail {

template <class... T>
struct TierNames;
template <class T>
struct TierNames<T> {
  static constexpr std::string_view value = T::kName;
};
template <class T, class U, class... Rest>
struct TierNames<T, U, Rest...> {
  static constexpr std::string_view value =
      JoinNames<T::kName, kComma, TierNames<U, Rest...>::value>::value;
};

}  // namespace detail

template <RemoteTier... T>
  requires(sizeof...(T) > 0 && ((!T::kEnabled || EnabledTier<T>) && ...))
class Tiers {
 public:
  using IsChain = void;
  static constexpr std::string_view kTiers = "tiers";
  static constexpr std::string_view kName =
      detail::JoinNames<kTiers, detail::kOpen, detail::TierNames<T...>::value, detail::kClose>::value;
  static constexpr bool kEnabled = (T::kEnabled || ...);

  Tiers() = default;
  Tiers(const Tiers&) = delete;
  Tiers& operator=(const Tiers&) = delete;
  /// Stops every tier, then ends them in read order while all of them still exist: a
  /// callback of tier I may pass its work on to tier I+1, never back.
  ~Tiers() {
    stop();
    std::apply([](auto&... t) { (end_one(t), ...); }, tiers_);
  }

  /// The I-th tier, to connect it.
  template <std::size_t I>
  auto& get() {
    return std::get<I>(tiers_);
  }
  /// References to every tier, in read order.
  auto tiers() {
    return std::apply([](auto&... t) { return std::tie(t...); }, tiers_);
  }

  /// Stops every tier that can be stopped (their write-back queues drain), last first.
  void stop() {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (stop_one(std::get<sizeof...(T) - 1 - I>(tiers_)), ...);
    }(std::index_sequence_for<T...>{});
  }

 private:
  template <class X>
  static void stop_one(X& x) {
    if constexpr (requires { x.stop(); }) x.stop();
  }
  template <class X>
  static void end_one(X& x) {
    if constexpr (requires { x.disconnect(); }) x.disconnect();
  }

  std::tuple<T...> tiers_;
};

}  // namespace gorego
